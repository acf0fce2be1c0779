"""What a compromised child could get out of the parent's vetting, rule by rule (no kernel).

Each test names the attack, shows the request a correct child would send is accepted, and
that the hostile variant is refused: PSK oracle, datagrams to arbitrary services, our own
address as a "%any" peer, SAs for tunnels nobody activated or talked to, lifetimes that
would be infinite.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from test_vetting_rules import (
    DEFS,
    OUT_TS,
    STRANGER,
    A,
    B,
    ah_install,
    allocate,
    install,
    numbered,
    policies,
    refusal,
)

from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.isakmp.constants import IkeHash, ProtocolId
from ikepriv.parent_kernel.installed import Installed, SaEntry
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.vetting import (
    MIN_POLICY_PRIORITY,
    SKEYID_BURST,
    SKEYID_WINDOW,
    Activation,
    Phase2Plan,
    SpiPlan,
    Vetter,
)

NI, NR = b"i" * 16, b"r" * 16
NOW = 5000.0
PORTS = frozenset({500, 4500})


@pytest.fixture
def quiet() -> Vetter:
    """Nobody ever talked to us, nothing activated."""
    return Vetter(numbered(DEFS), Installed(), PeerTable(), {})


# -- SKEYID: no standing PSK oracle ------------------------------------------------------


def test_skeyid_by_number_needs_the_peer_talking_to_us_now(quiet: Vetter) -> None:
    ask = m.SkeyidRequest(1, 1, None, IkeHash.SHA2_256, 0, NI)
    refusal(quiet.skeyid(ask, NOW), ErrorCode.NO_SUCH_TUNNEL)
    quiet.peers.record(A, STRANGER, 500, natt=False, now=NOW)  # someone else: no help
    refusal(quiet.skeyid(ask, NOW), ErrorCode.NO_SUCH_TUNNEL)
    quiet.peers.record(A, B, 500, natt=False, now=NOW)
    assert isinstance(quiet.skeyid(ask, NOW + 1), tuple)
    refusal(quiet.skeyid(ask, NOW + SKEYID_WINDOW + 1), ErrorCode.NO_SUCH_TUNNEL)


def test_skeyid_for_an_activation_override_peer(quiet: Vetter) -> None:
    quiet.activations[1] = Activation(1, None, STRANGER)  # type: ignore[index]
    ask = m.SkeyidRequest(1, 1, None, IkeHash.SHA2_256, 0, NI)
    refusal(quiet.skeyid(ask, NOW), ErrorCode.NO_SUCH_TUNNEL)
    quiet.peers.record(A, STRANGER, 500, natt=False, now=NOW)
    assert isinstance(quiet.skeyid(ask, NOW), tuple)


def test_skeyid_any_peer_definition_needs_some_peer_at_its_address(quiet: Vetter) -> None:
    ask = m.SkeyidRequest(1, 2, None, IkeHash.SHA, 0, NI)
    refusal(quiet.skeyid(ask, NOW), ErrorCode.NO_SUCH_TUNNEL)
    quiet.peers.record(A, STRANGER, 500, natt=False, now=NOW)
    assert isinstance(quiet.skeyid(ask, NOW), tuple)


def test_skeyid_requests_are_rate_limited_per_definition(quiet: Vetter) -> None:
    quiet.peers.record(A, B, 500, natt=False, now=NOW)
    ask = m.SkeyidRequest(1, 1, None, IkeHash.SHA2_256, 0, NI)
    answers = [quiet.skeyid(ask, NOW) for _ in range(SKEYID_BURST + 50)]
    assert all(isinstance(a, tuple) for a in answers[:SKEYID_BURST])
    for late in answers[SKEYID_BURST:]:
        refusal(late, ErrorCode.LIMIT_REACHED)
    assert isinstance(quiet.skeyid(ask, NOW + 1), tuple)  # refilled with time
    quiet.peers.record(A, STRANGER, 500, natt=False, now=NOW)
    assert isinstance(quiet.skeyid(m.SkeyidRequest(2, 2, None, IkeHash.SHA, 0, NI), NOW), tuple)


# -- datagrams: IKE ports only ------------------------------------------------------------


def test_datagram_only_to_ike_ports_or_ports_the_peer_used(quiet: Vetter) -> None:
    out = m.DatagramOut(m.Endpoint(A, 500), m.Endpoint(B, 500), False, bytes(28))
    assert quiet.datagram(out, PORTS) is None
    for port in (53, 22, 4500):
        bad = dataclasses.replace(out, remote=m.Endpoint(B, port))
        refusal(quiet.datagram(bad, PORTS), ErrorCode.NOT_PERMITTED, "port")
    quiet.peers.record(A, B, 61000, natt=False, now=NOW)
    assert quiet.datagram(dataclasses.replace(out, remote=m.Endpoint(B, 61000)), PORTS) is None
    natt = m.DatagramOut(m.Endpoint(A, 4500), m.Endpoint(B, 61000), True, bytes(28))
    refusal(quiet.datagram(natt, PORTS), ErrorCode.NOT_PERMITTED, "port")  # seen on 500 only
    quiet.peers.record(A, B, 61000, natt=True, now=NOW)
    assert quiet.datagram(natt, PORTS) is None


def test_datagram_to_a_definitions_gateway_only_from_its_local_address(quiet: Vetter) -> None:
    other = ipaddress.ip_address("192.0.2.77")
    quiet.peers.record(other, STRANGER, 500, natt=False, now=NOW)  # `other` is ours
    good = m.DatagramOut(m.Endpoint(A, 500), m.Endpoint(B, 500), False, bytes(28))
    assert quiet.datagram(good, PORTS) is None
    bad = dataclasses.replace(good, local=m.Endpoint(other, 500))
    refusal(quiet.datagram(bad, PORTS), ErrorCode.NOT_PERMITTED, "no peer")


@pytest.mark.parametrize("target", ["192.0.2.1", "127.0.0.1", "224.0.0.1", "255.255.255.255"])
def test_our_own_address_is_never_a_peer(quiet: Vetter, target: str) -> None:
    """A local user writing to our port 500 from our own address must not make it a peer."""
    me = ipaddress.ip_address(target)
    quiet.peers.record(A, me, 500, natt=False, now=NOW)
    dg = m.DatagramOut(m.Endpoint(A, 500), m.Endpoint(me, 500), False, bytes(28))
    refusal(quiet.datagram(dg, PORTS), ErrorCode.NOT_PERMITTED)
    if me.version == 4:
        allocate(quiet, 0x6001, phase2=2, peer=me)  # even with an SPI "allocated" for it
    refusal(quiet.phase2_install(ah_install(me)), ErrorCode.NOT_PERMITTED, "not the gateway")
    quiet.peers.record(A, STRANGER, 500, natt=False, now=NOW)
    allocate(quiet, 0x6002, phase2=2, peer=STRANGER)
    assert isinstance(quiet.phase2_install(ah_install(STRANGER, inbound_spi=0x6002)), Phase2Plan)


# -- SAs only for tunnels in use ------------------------------------------------------------


def test_sa_and_spi_for_a_tunnel_nobody_activated_or_talked_to(quiet: Vetter) -> None:
    allocate(quiet)  # even an SPI on record does not make the tunnel active
    refusal(quiet.phase2_install(install()), ErrorCode.NOT_PERMITTED, "not active")
    refusal(quiet.spi(m.SpiRequest(1, 1, ProtocolId.IPSEC_ESP, B, A)), ErrorCode.NOT_PERMITTED,
            "not active")  # fmt: skip
    quiet.activations[1] = Activation(1)  # type: ignore[index]
    assert isinstance(quiet.phase2_install(install()), Phase2Plan)
    assert isinstance(quiet.spi(m.SpiRequest(1, 1, ProtocolId.IPSEC_ESP, B, A)), SpiPlan)


def test_a_rekey_survives_the_peer_falling_out_of_the_peer_table(quiet: Vetter) -> None:
    """Spoofed datagrams can push a peer out of the bounded table; its SAs still count."""
    quiet.installed.add_sa(SaEntry((B, 0x4444, ProtocolId.IPSEC_ESP), 1, 1, A, larval=False,
                                   tunnel_id=1, direction=m.SaDirection.OUT, reqid=9))  # fmt: skip
    allocate(quiet)
    assert isinstance(quiet.phase2_install(install()), Phase2Plan)


@pytest.mark.parametrize(
    "lifetimes",
    [m.Lifetimes(0, 0, 0, 0), m.Lifetimes(0, 0, 0, 100000), m.Lifetimes(100, 3600, 0, 0)],
)
def test_zero_means_infinite_never_sneaks_through(lifetimes: m.Lifetimes) -> None:
    vetter = Vetter(numbered(DEFS), Installed(), PeerTable(), {1: Activation(1)})
    allocate(vetter)
    refusal(vetter.phase2_install(install(out={"lifetimes": lifetimes})), ErrorCode.NOT_PERMITTED)
    refusal(vetter.phase2_install(install(inb={"lifetimes": lifetimes})), ErrorCode.NOT_PERMITTED)


def test_child_policies_never_outrank_the_operators() -> None:
    """XFRM: the lower number wins; a child policy at priority 0 would override an
    operator's bypass or block policy for the same traffic."""
    vetter = Vetter(numbered(DEFS), Installed(), PeerTable(), {1: Activation(1)})
    allocate(vetter)
    assert isinstance(vetter.phase2_install(install()), Phase2Plan)
    for priority in (0, 1, MIN_POLICY_PRIORITY - 1):
        refusal(vetter.phase2_install(install(policies=policies(OUT_TS, priority=priority))),
                ErrorCode.NOT_PERMITTED, "priority")  # fmt: skip
