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
        daemon = Daemon.start(topo.a, tmp_path, "--child-cmd", standin.child_cmd)
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


def policy(rid: int, selector: m.TrafficSelector, *, phase2: int = 1, src=A, dst=B,
           reqid: int = 7, direction=m.PolicyDirection.OUT) -> m.PolicyAdd:  # fmt: skip
    return m.PolicyAdd(rid, phase2, selector, direction,
                       m.PolicyTemplate(src, dst, ESP, TUNNEL, reqid), 1000)  # fmt: skip


def sa(rid: int, *, spi: int = 0x1000, direction=m.SaDirection.OUT, src=A, dst=B,
       phase1: int = 1, phase2: int = 1, hard: int = 3600,
       key_len: int = 16) -> m.SaAdd:  # fmt: skip
    return m.SaAdd(
        request_id=rid, phase1_number=phase1, phase2_number=phase2, tunnel_id=1,
        direction=direction, src=src, dst=dst, proto=ESP, spi=spi, mode=TUNNEL,
        encryption=m.CryptKey(EspTransformId.AES_CBC, bytes(key_len)),
        integrity=m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, bytes(32)), aead=None,
        lifetimes=m.Lifetimes(hard - 60, hard, 0, 0), encap=None, selector=None, reqid=7,
    )  # fmt: skip


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
    reply = child.ask(sa(1, dst=other))
    assert isinstance(reply, m.ResultReply) and reply.error is m.ErrorCode.NOT_PERMITTED
    # the gateway of another tunnel is just as wrong for this one
    reply = child.ask(sa(2, dst=ipaddress.ip_address("192.0.2.3")))
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    assert kernel(ns) == before
    refused(daemon, "SA", "192.0.2.99 is not the gateway")
    refused(daemon, "SA", "192.0.2.3 is not the gateway")


def test_wider_selector_and_foreign_template_are_refused(
    setup: tuple[Daemon, StandIn, str],
) -> None:
    daemon, child, ns = setup
    before = kernel(ns)
    cases = [
        policy(1, ts("198.51.100.0/23", "203.0.113.0/24")),  # wider local side
        policy(2, ts("198.51.100.0/24", "0.0.0.0/0")),  # everything as remote
        policy(3, ts("203.0.113.0/24", "198.51.100.0/24")),  # reversed for OUT
        policy(4, ts("198.51.100.0/24", "203.0.113.0/24"), dst=ipaddress.ip_address("192.0.2.9")),
        policy(5, ts("198.51.100.0/24", "203.0.113.0/24"), phase2=2),  # tunnel 2 is /25s
    ]
    for request in cases:
        reply = child.ask(request)
        assert isinstance(reply, m.ResultReply), reply
        assert reply.error is m.ErrorCode.NOT_PERMITTED, (request, reply)
    assert kernel(ns) == before
    refused(daemon, "policy", "selector wider than the definition")
    refused(daemon, "policy", "192.0.2.9 is not the gateway")


def test_spi_not_allocated_and_spi_of_another_tunnel(setup: tuple[Daemon, StandIn, str]) -> None:
    daemon, child, ns = setup
    talk(child)
    before = kernel(ns)
    reply = child.ask(sa(1, spi=0x4242, direction=m.SaDirection.IN, src=B, dst=A))
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    assert kernel(ns) == before
    refused(daemon, "SA", "was not allocated for this phase 2")
    # an SPI the parent allocated for tunnel 2 cannot be filled as tunnel 1
    c = ipaddress.ip_address("192.0.2.3")
    activate_phase1(daemon, 2)
    spi = child.ask(m.SpiRequest(2, 2, ESP, c, A))
    assert isinstance(spi, m.SpiReply) and spi.error is m.ErrorCode.OK
    assert f"spi 0x{spi.spi:08x}" in xfrm(ns, "state")
    with_larval = kernel(ns)
    reply = child.ask(sa(3, spi=spi.spi, direction=m.SaDirection.IN, src=c, dst=A))
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    assert kernel(ns) == with_larval


def test_deletes_of_what_the_parent_did_not_install(setup: tuple[Daemon, StandIn, str]) -> None:
    daemon, child, ns = setup
    talk(child)
    # installed by someone else (an operator, another daemon)
    run("ip", "-n", ns, "xfrm", "policy", "add", "src", "198.51.100.0/24", "dst",
        "203.0.113.0/24", "dir", "out", "tmpl", "src", GW_A, "dst", GW_B, "proto", "esp",
        "mode", "tunnel")  # fmt: skip
    run("ip", "-n", ns, "xfrm", "state", "allocspi", "src", GW_B, "dst", GW_A, "proto", "esp")
    before = kernel(ns)
    spi = int(before[0].split("spi ")[1].split()[0], 16)
    reply = child.ask(m.SaDelete(1, spi, ESP, A))
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    reply = child.ask(m.PolicyDelete(2, ts("198.51.100.0/24", "203.0.113.0/24"),
                                     m.PolicyDirection.OUT))  # fmt: skip
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    # and the child cannot take over the operator's policy by re-adding it either
    reply = child.ask(policy(3, ts("198.51.100.0/24", "203.0.113.0/24")))
    assert reply.error is m.ErrorCode.KERNEL_ERROR  # type: ignore[attr-defined]  (EEXIST)
    assert kernel(ns) == before
    refused(daemon, "SA delete", "not ours")
    refused(daemon, "policy delete", "not installed by us")


def test_psk_prf_only_for_known_tunnels_and_their_prf(setup: tuple[Daemon, StandIn, str]) -> None:
    daemon, child, _ = setup
    ni, nr = bytes(range(16)), bytes(range(100, 132))
    # nobody is negotiating: not even a configured tunnel gets an answer (no PSK oracle)
    reply = child.ask(m.SkeyidRequest(7, 1, None, IkeHash.SHA2_256, ni, nr))
    assert reply.error is m.ErrorCode.NO_SUCH_TUNNEL  # type: ignore[attr-defined]
    # by peer address (Main Mode responder) only for a peer that talked to us
    reply = child.ask(m.SkeyidRequest(6, None, B, IkeHash.SHA2_256, ni, nr))
    assert reply.error is m.ErrorCode.NO_SUCH_TUNNEL  # type: ignore[attr-defined]
    talk(child)
    for rid, request, code in [
        (1, m.SkeyidRequest(1, 99, None, IkeHash.SHA2_256, ni, nr), m.ErrorCode.NO_SUCH_TUNNEL),
        (2, m.SkeyidRequest(2, None, ipaddress.ip_address("192.0.2.77"), IkeHash.SHA2_256, ni,
                            nr), m.ErrorCode.NO_SUCH_TUNNEL),
        (3, m.SkeyidRequest(3, 1, None, IkeHash.SHA, ni, nr), m.ErrorCode.BAD_ALGORITHM),
    ]:  # fmt: skip
        reply = child.ask(request)
        assert isinstance(reply, m.SkeyidReply) and reply.error is code, (rid, reply)
        assert reply.skeyid == b""
    refused(daemon, "SKEYID request", "no definition for phase 1 99")
    refused(daemon, "SKEYID request", "prf SHA not configured")
    # the legitimate question gets the right answer, by number and by peer address
    want = hmac.new(PSK_B, ni + nr, hashlib.sha256).digest()
    for request in (m.SkeyidRequest(4, 1, None, IkeHash.SHA2_256, ni, nr),
                    m.SkeyidRequest(5, None, B, IkeHash.SHA2_256, ni, nr)):  # fmt: skip
        reply = child.ask(request)
        assert isinstance(reply, m.SkeyidReply) and reply.error is m.ErrorCode.OK
        assert reply.skeyid == want
    assert PSK_B.decode() not in daemon.log()


def test_wrong_key_length_and_long_lifetime(setup: tuple[Daemon, StandIn, str]) -> None:
    daemon, child, ns = setup
    talk(child)
    before = kernel(ns)
    reply = child.ask(sa(1, key_len=24))  # aes192: not configured for this phase 2
    assert reply.error is m.ErrorCode.BAD_ALGORITHM  # type: ignore[attr-defined]
    reply = child.ask(sa(2, hard=7200))  # the definition says 3600 s
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    reply = child.ask(sa(3, phase1=2))  # phase 2 1 does not belong to phase 1 2
    assert reply.error is m.ErrorCode.NOT_PERMITTED  # type: ignore[attr-defined]
    assert kernel(ns) == before
    refused(daemon, "SA", "hard lifetime 7200 s outside")


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
    reply = child.ask(m.SkeyidRequest(9, 1, None, IkeHash.SHA2_256, bytes(8), bytes(8)))
    assert reply.error is m.ErrorCode.OK  # type: ignore[attr-defined]
    assert kernel(ns) == before
