"""Attack: one of several negotiator children is compromised (issue 11, "every core").

A real ikeprivd with `--children 2` in a namespace the test creates; the test plays both
children over the IPC (tests/test_daemon_support.py StandIn). Peer 192.0.2.2 (to-siteB) is
served by child 2/2, 192.0.2.3 (to-siteC) by child 1/2 (shards.Sharding.of_address); child
k numbers its tunnels and reqids n with (n - 1) % 2 == k. The hostile child tries to reach
what belongs to the other: its peer's SPIs, SKEYID and datagrams, its tunnel numbers and
reqids. Each attempt is refused with a reason in the log, the other child's objects stay in
the kernel, and a child that breaks the protocol is restarted alone.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import GW_A, GW_B, Daemon, StandIn, Topology, xfrm

from ikepriv.ipc import messages as m
from ikepriv.ipc.control import connect, control_call
from ikepriv.isakmp.constants import (
    AuthAlgorithm,
    EncapsulationMode,
    EspTransformId,
    IkeHash,
    ProtocolId,
)
from ikepriv.parent_kernel.shards import Sharding

pytestmark = [pytest.mark.attacks, pytest.mark.root]

A, B = ipaddress.ip_address(GW_A), ipaddress.ip_address(GW_B)
C = ipaddress.ip_address("192.0.2.3")
ESP = ProtocolId.IPSEC_ESP
FOR_B, FOR_C = 1, 0  # the children serving B and C


def test_the_peers_land_on_different_children() -> None:
    """What the rest of the file relies on, from the daemon's own function."""
    sharding = Sharding(2)
    assert (sharding.of_address(B), sharding.of_address(C)) == (FOR_B, FOR_C)
    assert [sharding.partition(FOR_B).owns(n) for n in (1, 2, 3, 4)] == [False, True] * 2


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Daemon, dict[int, StandIn], Topology]]:
    with Topology.create() as topo:
        listener = StandIn(tmp_path)
        daemon = Daemon.start(topo.a, tmp_path, "--children", "2", child_cmd=listener.child_cmd)
        try:
            yield daemon, listener.accept_shards(2), topo
        finally:
            daemon.stop()
            listener.close()


def activate(daemon: Daemon, number: int) -> None:
    code, lines, _ = daemon.call(m.ActivateRequest(m.Phase.PHASE2, (m.NumRange(number, number),),
                                                   (), None, None, None, False))  # fmt: skip
    assert code is m.ErrorCode.OK, lines


def install(rid: int, tunnel: int, reqid: int, spi_in: int) -> m.Phase2Install:
    """Phase 2 1 (to B) as a child would install it."""
    net = ipaddress.ip_network
    sel = m.TrafficSelector(m.SelectorSide(net("198.51.100.0/24"), 0, 0),
                            m.SelectorSide(net("203.0.113.0/24"), 0, 0))  # fmt: skip
    back = m.TrafficSelector(sel.dst, sel.src)
    pols = tuple(m.Phase2Policy(d, sel if d is m.PolicyDirection.OUT else back, 1000)
                 for d in m.PolicyDirection)  # fmt: skip

    def keys(spi: int) -> m.Phase2Sa:
        return m.Phase2Sa(spi, m.CryptKey(EspTransformId.AES_CBC, bytes(16)),
                          m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, bytes(32)), None,
                          m.Lifetimes(3000, 3600, 0, 0))  # fmt: skip

    return m.Phase2Install(rid, 1, 1, tunnel, A, B, ESP, EncapsulationMode.TUNNEL, reqid,
                           keys(spi_in), keys(0x5000), None, sel, pols)  # fmt: skip


def test_activations_reach_the_child_of_the_peer(
    pair: tuple[Daemon, dict[int, StandIn], Topology],
) -> None:
    daemon, child, _ = pair
    activate(daemon, 1)  # to-siteB
    assert child[FOR_B].recv() == m.InitiateCommand(m.Phase.PHASE2, 1, None, None)
    activate(daemon, 2)  # to-siteC
    assert child[FOR_C].recv() == m.InitiateCommand(m.Phase.PHASE2, 2, None, None)


def test_a_child_cannot_touch_the_other_childs_spi_peer_or_numbers(
    pair: tuple[Daemon, dict[int, StandIn], Topology],
) -> None:
    daemon, child, topo = pair
    owner, hostile = child[FOR_B], child[FOR_C]
    activate(daemon, 1)
    assert isinstance(owner.recv(), m.InitiateCommand)
    # the owner's inbound SPI for its peer B: allocated by the kernel, recorded as its own
    reply = owner.ask(m.SpiRequest(1, 1, ESP, B, A))
    assert isinstance(reply, m.SpiReply) and reply.error is m.ErrorCode.OK, reply
    spi = reply.spi
    assert f"spi 0x{spi:08x}" in xfrm(topo.a, "state")

    # the hostile child asks for an SPI of B's tunnel, removes or fills the owner's SPI
    got = hostile.ask(m.SpiRequest(2, 1, ESP, B, A))
    assert isinstance(got, m.SpiReply) and got.error is m.ErrorCode.NOT_PERMITTED
    daemon.wait_log(r"refused SPI request from negotiator child 1/2: peer 192\.0\.2\.2 is "
                    r"served by negotiator child 2/2")  # fmt: skip
    got = hostile.ask(m.Phase2Remove(3, 1, 1, A, B, ESP, spi, 0x5000, 1, False))
    assert isinstance(got, m.ResultReply) and got.error is m.ErrorCode.NOT_PERMITTED
    got = hostile.ask(install(4, tunnel=3, reqid=3, spi_in=spi))
    assert isinstance(got, m.ResultReply) and got.error is m.ErrorCode.NOT_PERMITTED
    # nor SKEYID for B's exchanges, nor datagrams to B
    got = hostile.ask(m.SkeyidRequest(5, None, B, IkeHash.SHA2_256, 0, bytes(16)))
    assert isinstance(got, m.SkeyidReply) and got.error is not m.ErrorCode.OK
    hostile.send(m.DatagramOut(m.Endpoint(A, 500), m.Endpoint(B, 500), False, bytes(28)))
    daemon.wait_log(r"refused datagram from negotiator child 1/2: peer 192\.0\.2\.2 is served")
    # the owner's SPI is untouched, no policy was written
    assert f"spi 0x{spi:08x}" in xfrm(topo.a, "state")
    assert "198.51.100" not in xfrm(topo.a, "policy")

    # the owner itself may not use the hostile child's tunnel numbers or reqids either
    got = owner.ask(install(6, tunnel=3, reqid=4, spi_in=spi))
    assert isinstance(got, m.ResultReply) and got.error is m.ErrorCode.NOT_PERMITTED
    assert "tunnel 3 belongs to negotiator child 1/2" in got.reason
    got = owner.ask(install(7, tunnel=4, reqid=5, spi_in=spi))
    assert isinstance(got, m.ResultReply) and got.error is m.ErrorCode.NOT_PERMITTED
    assert "reqid 5 belongs to negotiator child 1/2" in got.reason
    # and removes its own SPI as before
    got = owner.ask(m.Phase2Remove(8, 1, 2, A, B, ESP, spi, 0x5000, 2, False))
    assert isinstance(got, m.ResultReply) and got.error is m.ErrorCode.OK, got
    assert f"spi 0x{spi:08x}" not in xfrm(topo.a, "state")


def test_a_child_listing_anothers_numbers_is_restarted_alone(
    pair: tuple[Daemon, dict[int, StandIn], Topology],
) -> None:
    """A StateReport with a tunnel number of the other child's class is a protocol
    violation: that child is killed and restarted, the other keeps its connection, and the
    listing still shows what the other reported."""
    daemon, child, _ = pair
    answer: list[object] = []
    lister = threading.Thread(target=lambda: answer.append(
        daemon.call(m.ListRequest(m.Phase.PHASE1, (), False, None, False, False))))  # fmt: skip
    lister.start()
    good, bad = child[FOR_C], child[FOR_B]
    ask_good = good.recv()  # the children are asked in turn
    assert isinstance(ask_good, m.ListCommand)
    good.send(report(ask_good.request_id, 1, C))
    good.send(m.StateReportEnd(ask_good.request_id, 1))
    ask_bad = bad.recv()
    assert isinstance(ask_bad, m.ListCommand)
    bad.send(report(ask_bad.request_id, 3, B))  # 3 is child 1/2's
    assert bad.closed()
    lister.join(30)
    ((code, lines, rows),) = answer  # type: ignore[misc]
    assert code is m.ErrorCode.OK
    assert [(r.tunnel_id, r.remote_addr) for r in rows] == [(1, C)]
    assert any("negotiator child 2/2 not answering" in line for line in lines), lines
    log = daemon.wait_log("restarting the negotiator child 2/2")
    assert "negotiator child 2/2 pid" in log and "StateReport of tunnel 3" in log
    assert "negotiator child 1/2 pid" not in log  # the other was never stopped
    assert "restarting the negotiator child 1/2" not in log
    activate(daemon, 2)  # and still serves its peers
    assert good.recv() == m.InitiateCommand(m.Phase.PHASE2, 2, None, None)


def test_listings_merge_in_tunnel_order_with_counters_summed(
    pair: tuple[Daemon, dict[int, StandIn], Topology],
) -> None:
    daemon, child, _ = pair
    answer: list[object] = []
    lister = threading.Thread(target=lambda: answer.append(
        daemon.call(m.ListRequest(m.Phase.PHASE1, (), False, None, True, False))))  # fmt: skip
    lister.start()
    for k, tunnels, peer in ((FOR_C, (1, 5), C), (FOR_B, (2, 4), B)):
        ask = child[k].recv()
        assert isinstance(ask, m.ListCommand) and ask.counters
        for tid in tunnels:
            child[k].send(report(ask.request_id, tid, peer))
        child[k].send(m.Stats(ask.request_id, (m.CounterValue("dropped_malformed", k + 2),)))
        child[k].send(m.StateReportEnd(ask.request_id, len(tunnels)))
    lister.join(30)
    ((code, _, rows),) = answer  # type: ignore[misc]
    assert code is m.ErrorCode.OK
    assert [(r.tunnel_id, r.remote_addr) for r in rows] == [(1, C), (2, B), (4, B), (5, C)]
    assert daemon_counters(daemon, child)["dropped_malformed"] == 2 + 3


def daemon_counters(daemon: Daemon, child: dict[int, StandIn]) -> dict[str, int]:
    """`ike cmd=list stats` while both children answer with their counters."""
    answer: list[object] = []
    asker = threading.Thread(target=lambda: answer.append(stats_call(daemon)))
    asker.start()
    for k in (0, 1):
        ask = child[k].recv()
        assert isinstance(ask, m.ListCommand) and not ask.rows
        child[k].send(m.Stats(ask.request_id, (m.CounterValue("dropped_malformed", k + 2),)))
        child[k].send(m.StateReportEnd(ask.request_id, 0))
    asker.join(30)
    (counters,) = answer
    assert isinstance(counters, dict)
    return counters


def stats_call(daemon: Daemon) -> dict[str, int]:
    with connect(daemon.control_path, timeout=30) as sock:
        responses = list(control_call(sock, m.StatsRequest(False)))
    return {c.name: c.value for r in responses for c in r.counters}


def report(request_id: int, tunnel: int, peer: ipaddress.IPv4Address) -> m.StateReport:
    number = 1 if peer == B else 2
    return m.StateReport(request_id, m.Phase.PHASE1, number, tunnel, None, m.Role.INITIATOR,
                         m.TunnelState.ESTABLISHED, m.Endpoint(A, 500), m.Endpoint(peer, 500),
                         None, None, "aes128 sha256", 0, 0, 0)  # fmt: skip
