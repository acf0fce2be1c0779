"""Egress at gateway scale (parent_kernel/egress.py): every ISAKMP SA of 10,000 tunnels
keeps its right to our own messages (a rekey we start, a Delete) through hours of quiet,
and a sender proving exchanges from its own address evicts only its own."""

from __future__ import annotations

import ipaddress
import struct

from ikepriv.parent_kernel.egress import MAX_PROVEN_PER_DEST, Egress

LOCAL = ipaddress.ip_address("192.0.2.2")
MAIN_MODE, QUICK_MODE = 2, 32


def _isakmp(icookie: bytes, rcookie: bytes, exchange: int, size: int = 200) -> bytes:
    header = icookie + rcookie + struct.pack("!BBBBII", 1, 0x10, exchange, 0, 0, size)
    return header + bytes(size - len(header))


def _cookie(n: int, tag: int) -> bytes:
    return struct.pack("!IHH", n, tag, 0x5A5A)


def _prove(egress: Egress, peer: ipaddress.IPv4Address, n: int, now: float) -> tuple[bytes, bytes]:
    """A peer's Main Mode up to MM3: MM1 in, our MM2 out (our responder cookie), MM3 in
    with it (the peer receives at its address)."""
    icookie, rcookie = _cookie(n, 1), _cookie(n, 2)
    egress.received(LOCAL, 500, peer, 500, False, _isakmp(icookie, bytes(8), MAIN_MODE), now)
    assert egress.check_send(LOCAL, 500, peer, 500, False, _isakmp(icookie, rcookie, MAIN_MODE),
                             False, now) is None  # fmt: skip
    egress.received(LOCAL, 500, peer, 500, False, _isakmp(icookie, rcookie, MAIN_MODE), now)
    return icookie, rcookie


def _peers(count: int) -> list[ipaddress.IPv4Address]:
    return [ipaddress.ip_address(f"198.51.100.{k + 1}") for k in range(count)]


def _our_quick_modes(egress: Egress, sas: list[tuple[ipaddress.IPv4Address, bytes, bytes]],
                     now: float) -> list[str]:  # fmt: skip
    """Our QM1 on each SA, one second apart per peer: the refusals."""
    refused = []
    for k, (peer, icookie, rcookie) in enumerate(sas):
        why = egress.check_send(LOCAL, 500, peer, 500, False,
                                _isakmp(icookie, rcookie, QUICK_MODE), False,
                                now + k // 250)  # fmt: skip
        if why is not None:
            refused.append(why)
    return refused


def test_ten_thousand_quiet_isakmp_sas_may_all_start_a_rekey() -> None:
    egress = Egress()
    peers = _peers(250)
    sas = [(peer, *_prove(egress, peer, k, float(k // 100))) for k in range(10_000)
           for peer in (peers[k % 250],)]  # fmt: skip
    # three hours without a datagram (longer than the entries lived before), then each
    # SA's phase 2 is rekeyed by us
    assert _our_quick_modes(egress, sas, 3 * 3600.0) == []


def test_a_sender_proving_exchanges_from_its_address_evicts_only_its_own() -> None:
    egress = Egress()
    peers = _peers(50)
    sas = [(peers[k % 50], *_prove(egress, peers[k % 50], k, 0.0)) for k in range(2_000)]
    flooder = ipaddress.ip_address("203.0.113.66")
    for n in range(MAX_PROVEN_PER_DEST * 20):  # 81,920 proven exchanges from one address
        _prove(egress, flooder, 1_000_000 + n, 10.0)
    assert _our_quick_modes(egress, sas, 60.0) == []
    # its own oldest are gone, its newest are there
    first, last = _cookie(1_000_000, 1), _cookie(1_000_000 + MAX_PROVEN_PER_DEST * 20 - 1, 1)
    own = [egress.check_send(LOCAL, 500, flooder, 500, False,
                             _isakmp(icookie, _cookie(n, 2), QUICK_MODE), False, 60.0)
           for icookie, n in ((first, 1_000_000),
                              (last, 1_000_000 + MAX_PROVEN_PER_DEST * 20 - 1))]  # fmt: skip
    assert own[0] is not None and "no exchange relayed" in own[0]
    assert own[1] is None
