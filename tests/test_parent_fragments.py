"""The parent and IKE fragments: a fragment datagram carries the header of the message it
was cut from (same cookies, next payload 132), so admission and egress, which read only
the fixed-offset header fields, must treat it exactly like that message: no drop, no other
class, and a forged fragment stream costs what forged first messages cost."""

from __future__ import annotations

import ipaddress
import random

from ikepriv.child_negotiator.core import fragments
from ikepriv.isakmp import VendorIdPayload, build_message, encode_message
from ikepriv.isakmp.constants import ExchangeType
from ikepriv.parent_kernel.admission import FIRST_PER_SOURCE, Admission, Kind
from ikepriv.parent_kernel.egress import looks_like_isakmp

PEER = ipaddress.ip_address("192.0.2.2")
LIMIT = 548
MM = ExchangeType.IDENTITY_PROTECTION


def _message(icookie: bytes, rcookie: bytes, size: int = 1500) -> bytes:
    vid = VendorIdPayload(bytes(size))
    return encode_message(build_message(icookie, rcookie, MM, 0, [vid]))


def _pieces(icookie: bytes, rcookie: bytes) -> tuple[bytes, ...]:
    return fragments.split(_message(icookie, rcookie), LIMIT, 1)


def test_a_fragmented_first_message_reaches_the_child_whole() -> None:
    dropped: list[str] = []
    adm: Admission[bytes] = Admission(dropped.append)
    adm.set_peers([PEER])
    pieces = _pieces(b"\x01" * 8, bytes(8))
    assert 1 < len(pieces) <= FIRST_PER_SOURCE
    kinds = [adm.classify(p, PEER, 0.0) for p in pieces]
    for kind, piece in zip(kinds, pieces, strict=True):
        adm.put(kind, PEER, piece, 0.0)
    assert kinds[0] is Kind.FIRST and set(kinds[1:]) == {Kind.REPEAT}
    got = []
    while (item := adm.get(0.0)) is not None:
        got.append(item)
    assert sorted(got) == sorted(pieces) and dropped == []  # order is the child's concern


def test_fragments_are_classified_exactly_like_their_messages() -> None:
    """Two admissions see the same conversation, one whole, one in fragments, amid forged
    traffic: every fragment gets the class its message got, and the drop counts agree."""
    rng = random.Random(4)  # noqa: S311
    dropped_whole: list[str] = []
    dropped_frag: list[str] = []
    whole: Admission[bytes] = Admission(dropped_whole.append)
    cut: Admission[bytes] = Admission(dropped_frag.append)
    ours, peer_i, our_r, peer_r = (rng.randbytes(8) for _ in range(4))
    events: list[tuple[str, bytes, bytes]] = [
        ("out", ours, bytes(8)),  # our MM1
        ("in", ours, peer_r),  # its MM2
        ("in", peer_i, bytes(8)),  # a peer's MM1
        ("out", peer_i, our_r),  # our MM2
        ("in", peer_i, our_r),  # its MM3: live from now on
        ("in", rng.randbytes(8), rng.randbytes(8)),  # a pair nobody relayed
    ]
    events += [("in", rng.randbytes(8), bytes(8)) for _ in range(300)]  # forged MM1s
    for now, (direction, icookie, rcookie) in enumerate(events):
        message = _message(icookie, rcookie)
        source = PEER if now < 6 else ipaddress.IPv4Address("203.0.113.9")
        if direction == "out":
            whole.outbound(message, float(now))
            for piece in _pieces(icookie, rcookie):
                cut.outbound(piece, float(now))
            continue
        kind = whole.classify(message, source, float(now))
        whole.put(kind, source, message, float(now))
        for n, piece in enumerate(_pieces(icookie, rcookie)):
            piece_kind = cut.classify(piece, source, float(now))
            # after the first piece of a first message, its other pieces are repeats
            assert piece_kind is kind or (kind is Kind.FIRST and piece_kind is Kind.REPEAT and n)
            cut.put(piece_kind, source, piece, float(now))
    assert set(dropped_frag) == set(dropped_whole)  # the same counters, nothing new


def test_egress_lets_our_fragments_out() -> None:
    for piece in _pieces(b"\x05" * 8, b"\x06" * 8):
        assert looks_like_isakmp(piece) is None
