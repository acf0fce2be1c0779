"""Egress before proof (parent_kernel/egress.py): an Aggressive Mode responder with
certificates may answer one AM1 with a few KB (its chain and signature), and nobody else
gains from it."""

from __future__ import annotations

import ipaddress
import os
import struct

from ikepriv.parent_kernel.egress import AM_SIG_FLOOR, PRE_MULT, Egress

LOCAL = ipaddress.ip_address("192.0.2.1")
OTHER_LOCAL = ipaddress.ip_address("192.0.2.3")
PEER = ipaddress.ip_address("203.0.113.9")


def _isakmp(icookie: bytes, rcookie: bytes, exchange: int, size: int) -> bytes:
    header = icookie + rcookie + struct.pack("!BBBBII", 1, 0x10, exchange, 0, 0, size)
    return header + bytes(size - len(header))


def _answer_fits(egress: Egress, local: ipaddress.IPv4Address, exchange: int) -> list[bool]:
    icookie, rcookie = os.urandom(8), os.urandom(8)
    am1 = _isakmp(icookie, bytes(8), exchange, 500)
    egress.received(local, 500, PEER, 500, False, am1, 0.0)
    # AM2: four 1280-byte fragments of a certificate chain (the IKE header of each)
    fragment = _isakmp(icookie, rcookie, exchange, 1280)
    return [
        egress.check_send(local, 500, PEER, 500, False, fragment, False, 0.0) is None
        for _ in range(4)
    ]


def test_am1_to_a_signature_definition_may_be_answered_with_a_certificate_chain() -> None:
    egress = Egress()
    egress.am_signature_locals = frozenset({LOCAL})
    assert AM_SIG_FLOOR[1] >= 4 * 1280 and AM_SIG_FLOOR[0] >= 4
    assert _answer_fits(egress, LOCAL, 4) == [True] * 4


def test_without_such_a_definition_the_amplification_stays_three_fold() -> None:
    egress = Egress()
    egress.am_signature_locals = frozenset({LOCAL})
    assert PRE_MULT * 500 < 2 * 1280
    assert _answer_fits(egress, OTHER_LOCAL, 4) == [True, False, False, False]  # other address
    assert _answer_fits(Egress(), LOCAL, 4) == [True, False, False, False]  # no definition
    assert _answer_fits(egress, LOCAL, 2) == [True, False, False, False]  # Main Mode MM1
