"""A hostile child against the real daemon: nothing out of policy reaches the kernel.

The test stands in for the negotiator (see test_daemon_support.StandIn) in a network
namespace it creates, asks for what a compromised child would want, and checks three things
each time: the answer is an error, the kernel's SAs and policies are unchanged (`ip xfrm`),
and the refusal is in the log with its reason. Protocol violations get the child killed
and a new one started.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import GW_A, GW_B, Daemon, StandIn, Topology, run, send_udp, xfrm

from ikepriv.ipc import messages as m
from ikepriv.ipc.schema import MAX_MESSAGE_SIZE
from ikepriv.isakmp.constants import (
    AuthAlgorithm,
    EncapsulationMode,
    EspTransformId,
    IkeHash,
    ProtocolId,
)

pytestmark = pytest.mark.root

A, B = ipaddress.ip_address(GW_A), ipaddress.ip_address(GW_B)
LAN_A, LAN_B = ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24")
PSK_B = b"a long random shared secret for the tests"
ESP = ProtocolId.IPSEC_ESP
TUNNEL = EncapsulationMode.TUNNEL


PEER_NS: list[str] = []


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Daemon, StandIn, str]]:
    with Topology.create() as topo:
        PEER_NS[:] = [topo.b]
        standin = StandIn(tmp_path)
        daemon = Daemon.start(topo.a, tmp_path, child_cmd=standin.child_cmd)
        try:
            standin.accept()
            yield daemon, standin, topo.a
        finally:
            daemon.stop()
            standin.close()


def kernel(ns: str) -> tuple[str, str]:
    return xfrm(ns, "state"), xfrm(ns, "policy")


def ts(src: str, dst: str, proto: int = 0) -> m.TrafficSelector:
    return m.TrafficSelector(
        m.SelectorSide(ipaddress.ip_network(src), proto, 0),
        m.SelectorSide(ipaddress.ip_network(dst), proto, 0),
    )


LANS = "198.51.100.0/24", "203.0.113.0/24"


def policies(selector: m.TrafficSelector, priority: int = 1000) -> tuple[m.Phase2Policy, ...]:
    back = m.TrafficSelector(selector.dst, selector.src)
    return (m.Phase2Policy(m.PolicyDirection.OUT, selector, priority),
            m.Phase2Policy(m.PolicyDirection.IN, back, priority),
            m.Phase2Policy(m.PolicyDirection.FWD, back, priority))  # fmt: skip


def install(rid: int, *, spi_in: int = 0x1001, spi_out: int = 0x1000, remote=B,
            phase1: int = 1, phase2: int = 1, hard: int = 3600, key_len: int = 16,
            selector: m.TrafficSelector | None = None,
            pols: tuple[m.Phase2Policy, ...] | None = None) -> m.Phase2Install:  # fmt: skip
    """A Phase2Install as a correct child sends it for phase 2 1 (AES-CBC-128/SHA-256)."""
    sel = selector if selector is not None else ts(*LANS)

    def keys(spi: int, length: int) -> m.Phase2Sa:
        return m.Phase2Sa(spi, m.CryptKey(EspTransformId.AES_CBC, bytes(length)),
                          m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, bytes(32)), None,
                          m.Lifetimes(hard - 60, hard, 0, 0))  # fmt: skip

    return m.Phase2Install(
        request_id=rid, phase1_number=phase1, phase2_number=phase2, tunnel_id=1, local=A,
        remote=remote, proto=ESP, mode=TUNNEL, reqid=7, inbound=keys(spi_in, 16),
        outbound=keys(spi_out, key_len), encap=None, selector=sel,
        policies=pols if pols is not None else policies(sel),
    )  # fmt: skip


def allocate(child: StandIn, rid: int, phase2: int = 1, peer=B) -> int:
    spi = child.ask(m.SpiRequest(rid, phase2, ESP, peer, A))
    assert isinstance(spi, m.SpiReply) and spi.error is m.ErrorCode.OK, spi
    return spi.spi


def talk(child: StandIn) -> None:
    """Gateway B sends us a datagram (what a peer in a negotiation does): its tunnel is in
    use and its SKEYID may be computed."""
    send_udp(PEER_NS[0], GW_A, 500, bytes(28))
    got = child.recv()
    assert isinstance(got, m.DatagramIn) and got.remote.addr == B and got.local.addr == A


def activate_phase1(daemon: Daemon, number: int) -> None:
    code, lines, _ = daemon.call(m.ActivateRequest(m.Phase.PHASE1, (m.NumRange(number, number),),
                                                   (), None, None, None, False))  # fmt: skip
    assert code is m.ErrorCode.OK, lines


def refused(daemon: Daemon, what: str, reason: str) -> None:
    daemon.wait_log(rf"refused {what} from the child: .*{reason}")


def test_sa_to_another_address_is_refused(setup: tuple[Daemon, StandIn, str]) -> None:
    daemon, child, ns = setup
    before = kernel(ns)
    other = ipaddress.ip_address("192.0.2.99")
    reply = child.ask(install(1, remote=other))
    assert isinstance(reply, m.ResultReply) and reply.error is m.ErrorCode.NOT_PERMITTED
    # the gateway of another tunnel is just as wrong for this one
    reply = child.ask(install(2, remote=ipaddress.ip_address("192.0.2.3")))
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    assert kernel(ns) == before
    refused(daemon, "phase 2 install", "192.0.2.99 is not the gateway")
    refused(daemon, "phase 2 install", "192.0.2.3 is not the gateway")


def test_wider_selector_and_foreign_template_are_refused(
    setup: tuple[Daemon, StandIn, str],
) -> None:
    daemon, child, ns = setup
    talk(child)
    spi = allocate(child, 90)
    before = kernel(ns)
    good = ts(*LANS)
    cases = [
        install(1, spi_in=spi, selector=ts("198.51.100.0/23", "203.0.113.0/24")),  # wider SAs
        install(2, spi_in=spi, pols=policies(ts("198.51.100.0/23", "203.0.113.0/24"))),
        install(3, spi_in=spi, pols=policies(ts("198.51.100.0/24", "0.0.0.0/0"))),
        install(4, spi_in=spi, pols=policies(ts("203.0.113.0/24", "198.51.100.0/24"))),  # reversed
        install(5, spi_in=spi, remote=ipaddress.ip_address("192.0.2.9")),
        install(6, spi_in=spi, phase2=2),  # tunnel 2 is /25s
        # one bad part among good ones refuses the whole: only the fwd policy is wider
        install(7, spi_in=spi, pols=(*policies(good)[:2], policies(ts("0.0.0.0/0", LANS[0]))[2])),
        install(8, spi_in=spi, pols=(*policies(good)[:2], policies(good, priority=1)[2])),
    ]
    for request in cases:
        reply = child.ask(request)
        assert isinstance(reply, m.ResultReply), reply
        assert reply.error is m.ErrorCode.NOT_PERMITTED, (request, reply)
    assert kernel(ns) == before
    refused(daemon, "phase 2 install", "SA selector wider than the definition")
    refused(daemon, "phase 2 install", "policy selector wider than the definition")
    refused(daemon, "phase 2 install", "192.0.2.9 is not the gateway")
    refused(daemon, "phase 2 install", "priority 1 above the operator's")


def test_spi_not_allocated_and_spi_of_another_tunnel(setup: tuple[Daemon, StandIn, str]) -> None:
    daemon, child, ns = setup
    talk(child)
    before = kernel(ns)
    reply = child.ask(install(1, spi_in=0x4242))
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    assert kernel(ns) == before
    refused(daemon, "phase 2 install", "was not allocated for this phase 2")
    # an SPI the parent allocated for tunnel 2 cannot be filled as tunnel 1
    c = ipaddress.ip_address("192.0.2.3")
    activate_phase1(daemon, 2)
    spi = allocate(child, 2, phase2=2, peer=c)
    assert f"spi 0x{spi:08x}" in xfrm(ns, "state")
    with_larval = kernel(ns)
    reply = child.ask(install(3, spi_in=spi, remote=c))
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    reply = child.ask(install(4, spi_in=spi))
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    assert kernel(ns) == with_larval


def test_removes_of_what_the_parent_did_not_install(setup: tuple[Daemon, StandIn, str]) -> None:
    daemon, child, ns = setup
    talk(child)
    # installed by someone else (an operator, another daemon)
    run("ip", "-n", ns, "xfrm", "policy", "add", "src", "198.51.100.0/24", "dst",
        "203.0.113.0/24", "dir", "out", "tmpl", "src", GW_A, "dst", GW_B, "proto", "esp",
        "mode", "tunnel", "reqid", "7")  # fmt: skip
    run("ip", "-n", ns, "xfrm", "state", "allocspi", "src", GW_B, "dst", GW_A, "proto", "esp")
    before = kernel(ns)
    spi = int(before[0].split("spi ")[1].split()[0], 16)
    for rid, (spi_in, spi_out) in enumerate([(spi, 0x5000), (0x5000, spi)], start=1):
        reply = child.ask(m.Phase2Remove(rid, 1, 1, A, B, ESP, spi_in, spi_out, 7, False))
        assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    assert kernel(ns) == before
    refused(daemon, "phase 2 remove", "not ours")
    # and the child cannot take over the operator's policy by installing it either
    ours = allocate(child, 3)
    before = kernel(ns)
    reply = child.ask(install(4, spi_in=ours))
    assert reply.error is m.ErrorCode.KERNEL_ERROR  # type: ignore[attr-defined]
    assert kernel(ns) == before


def test_one_install_is_all_or_nothing_in_the_real_kernel(
    setup: tuple[Daemon, StandIn, str],
) -> None:
    """This kernel has XFRM but no ESP: the in and fwd policies are written, the inbound SA
    (the larval SPI filled) is refused (EPROTONOSUPPORT), and the policies are taken out
    again, so the kernel is as before the install; one error answers it. The remove that
    follows takes the allocated SPI (its install never happened) and nothing else."""
    daemon, child, ns = setup
    talk(child)
    spi = allocate(child, 1)
    before = kernel(ns)
    monitor_cmd = ["ip", "-n", ns, "xfrm", "monitor", "policy"]
    with subprocess.Popen(monitor_cmd, stdout=subprocess.PIPE, text=True) as monitor:  # noqa: S603
        try:
            time.sleep(0.3)  # the monitor subscribes
            reply = child.ask(install(2, spi_in=spi))
            time.sleep(0.3)
        finally:
            monitor.terminate()
        events = monitor.communicate(timeout=10)[0]
    assert isinstance(reply, m.ResultReply) and reply.error is m.ErrorCode.KERNEL_ERROR, reply
    assert f"in SA spi {spi:#x}" in reply.reason
    assert kernel(ns) == before  # the larval SPI still there, no policy, no SA
    assert "dir in" in events and "dir fwd" in events and "Deleted" in events  # written, undone
    assert "dir out" not in events  # never reached: it comes after the SAs
    daemon.wait_log(rf"in SA spi {spi:#x} not installed: .*undoing 2 earlier write")
    reply = child.ask(m.Phase2Remove(3, 1, 1, A, B, ESP, spi, 0x1000, 7, False))
    assert reply.error is m.ErrorCode.OK  # type: ignore[attr-defined]
    assert kernel(ns) == ("", before[1])  # the SPI is gone; the policies are as they were


def test_wrong_key_length_and_long_lifetime(setup: tuple[Daemon, StandIn, str]) -> None:
    daemon, child, ns = setup
    talk(child)
    spi = allocate(child, 9)
    before = kernel(ns)
    reply = child.ask(install(1, spi_in=spi, key_len=24))  # aes192: not configured here
    assert reply.error is m.ErrorCode.BAD_ALGORITHM  # type: ignore[attr-defined]
    reply = child.ask(install(2, spi_in=spi, hard=7200))  # the definition says 3600 s
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    reply = child.ask(install(3, spi_in=spi, phase1=2))  # phase 2 1 is not phase 1 2's
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    assert kernel(ns) == before
    refused(daemon, "phase 2 install", "hard lifetime 7200 s outside")


def test_psk_prf_only_for_known_tunnels_and_their_prf(setup: tuple[Daemon, StandIn, str]) -> None:
    daemon, child, _ = setup
    ni = bytes(range(16))
    # nobody is negotiating: not even a configured tunnel gets an answer (no PSK oracle)
    reply = child.ask(m.SkeyidRequest(7, 1, None, IkeHash.SHA2_256, 0, ni))
    assert reply.error is m.ErrorCode.NO_SUCH_TUNNEL  # type: ignore[attr-defined]
    # by peer address (Main Mode responder) only for a peer that talked to us
    reply = child.ask(m.SkeyidRequest(6, None, B, IkeHash.SHA2_256, 0, ni))
    assert reply.error is m.ErrorCode.NO_SUCH_TUNNEL  # type: ignore[attr-defined]
    talk(child)
    for rid, request, code in [
        (1, m.SkeyidRequest(1, 99, None, IkeHash.SHA2_256, 0, ni), m.ErrorCode.NO_SUCH_TUNNEL),
        (2, m.SkeyidRequest(2, None, ipaddress.ip_address("192.0.2.77"), IkeHash.SHA2_256, 0,
                            ni), m.ErrorCode.NO_SUCH_TUNNEL),
        (3, m.SkeyidRequest(3, 1, None, IkeHash.SHA, 0, ni), m.ErrorCode.BAD_ALGORITHM),
    ]:  # fmt: skip
        reply = child.ask(request)
        assert isinstance(reply, m.SkeyidReply) and reply.error is code, (rid, reply)
        assert reply.skeyid == b"" and reply.nonce == b""
    refused(daemon, "SKEYID request", "no definition for phase 1 99")
    refused(daemon, "SKEYID request", "prf SHA not configured")
    # the legitimate questions get the right answers, with the parent's nonce in them
    for request in (m.SkeyidRequest(4, 1, None, IkeHash.SHA2_256, 0, ni),
                    m.SkeyidRequest(5, None, B, IkeHash.SHA2_256, 0, ni)):  # fmt: skip
        reply = child.ask(request)
        assert isinstance(reply, m.SkeyidReply) and reply.error is m.ErrorCode.OK
        assert reply.skeyid == hmac.new(PSK_B, ni + reply.nonce, hashlib.sha256).digest()
    issued = child.ask(m.NonceRequest(8, 1))
    assert isinstance(issued, m.NonceReply) and issued.error is m.ErrorCode.OK
    reply = child.ask(m.SkeyidRequest(9, 1, None, IkeHash.SHA2_256, issued.nonce_id, ni))
    assert isinstance(reply, m.SkeyidReply) and reply.error is m.ErrorCode.OK
    assert reply.skeyid == hmac.new(PSK_B, issued.nonce + ni, hashlib.sha256).digest()
    assert PSK_B.decode() not in daemon.log()


def test_datagram_to_a_stranger_is_not_sent(setup: tuple[Daemon, StandIn, str]) -> None:
    daemon, child, _ = setup
    child.send(m.DatagramOut(m.Endpoint(A, 500), m.Endpoint(ipaddress.ip_address("192.0.2.50"),
                                                              500), False, bytes(28)))  # fmt: skip
    refused(daemon, "datagram", "192.0.2.50 is no peer")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\x02\x99" + bytes(8), id="unknown-type"),
        pytest.param(b"\x02\x10" + bytes(MAX_MESSAGE_SIZE), id="oversized"),
        pytest.param(struct.pack(">H", m.Hello.TYPE) + b"\x00\x01", id="wrong-direction"),
        pytest.param(struct.pack(">HI", m.StateReportEnd.TYPE, 77) + bytes(4), id="unasked"),
    ],
)
def test_protocol_violation_restarts_the_child(
    setup: tuple[Daemon, StandIn, str], raw: bytes
) -> None:
    daemon, child, ns = setup
    before = kernel(ns)
    child.send_raw(raw)
    assert child.closed()
    daemon.wait_log("protocol violation")
    child.accept()  # the daemon started a new child, which gets Hello and the config again
    assert any(isinstance(msg, m.ConfigPhase1) for msg in child.config)
    talk(child)
    reply = child.ask(m.SkeyidRequest(9, 1, None, IkeHash.SHA2_256, 0, bytes(16)))
    assert reply.error is m.ErrorCode.OK  # type: ignore[attr-defined]
    assert kernel(ns) == before
