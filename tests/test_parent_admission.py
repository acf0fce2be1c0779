"""The parent's admission of received datagrams (issue 8, point 2): what reaches the child
first under a flood of forged first messages, classified by the fixed-offset cookies only."""

from __future__ import annotations

import ipaddress
import os

from ikepriv.parent_kernel.admission import (
    FIRST_PER_SOURCE,
    FIRST_RATE,
    FIRST_SOURCES,
    Admission,
    FairQueue,
    Kind,
)

PEER = ipaddress.ip_address("192.0.2.2")
OTHER = ipaddress.ip_address("203.0.113.7")
BODY = bytes(12)  # the rest of a 28-byte header: admission never reads it


def _msg(icookie: bytes, rcookie: bytes = bytes(8)) -> bytes:
    return icookie + rcookie + BODY


def _admission() -> tuple[Admission[bytes], list[str]]:
    dropped: list[str] = []
    adm: Admission[bytes] = Admission(dropped.append)
    adm.set_peers([PEER])
    return adm, dropped


def _put(
    adm: Admission[bytes], data: bytes, source: ipaddress.IPv4Address, now: float = 0.0
) -> Kind:
    kind = adm.classify(data, source, now)
    adm.put(kind, source, data, now)
    return kind


def _drain(adm: Admission[bytes]) -> list[bytes]:
    out = []
    while (item := adm.get(0.0)) is not None:
        out.append(item)
    return out


def test_answers_in_live_exchanges_overtake_any_flood_of_first_messages() -> None:
    adm, _ = _admission()
    ours, theirs_i, our_r = os.urandom(8), os.urandom(8), os.urandom(8)
    adm.outbound(_msg(ours), 0.0)  # our MM1
    adm.outbound(_msg(theirs_i, our_r), 0.0)  # our MM2 to a peer's MM1
    for _ in range(5000):
        _put(adm, _msg(os.urandom(8)), PEER)
    reply = _msg(ours, os.urandom(8))  # MM2 from the responder: our cookie and its own
    mm3 = _msg(theirs_i, our_r)
    assert _put(adm, reply, PEER) is Kind.LIVE
    assert _put(adm, mm3, PEER) is Kind.LIVE
    assert adm.get(0.0) == reply
    assert adm.get(0.0) == mm3
    # the pair is now live for the rest of the exchange, in both directions
    assert adm.classify(reply, PEER, 1.0) is Kind.LIVE
    assert adm.classify(mm3, PEER, 1.0) is Kind.LIVE


def test_responder_cookie_never_relayed_is_rationed_and_counted() -> None:
    adm, dropped = _admission()
    for _ in range(1000):  # reflected MM2s: answers to first messages we never sent
        assert _put(adm, _msg(os.urandom(8), os.urandom(8)), PEER) is Kind.UNKNOWN
    assert 0 < len(_drain(adm)) <= 64
    assert dropped.count("udp_dropped_unknown_cookies") >= 1000 - 64


def test_a_retransmitted_first_message_overtakes_fresh_ones_from_the_same_source() -> None:
    adm, dropped = _admission()
    real = _msg(os.urandom(8))
    assert _put(adm, real, PEER) is Kind.FIRST
    for _ in range(3000):  # the forger floods from the peer's own address
        _put(adm, _msg(os.urandom(8)), PEER)
    assert real not in _drain(adm)  # pushed out: indistinguishable from the forgeries
    assert "udp_dropped_first_overflow" in dropped
    for _ in range(100):
        _put(adm, _msg(os.urandom(8)), PEER)
    assert _put(adm, real, PEER, 2.0) is Kind.REPEAT  # the initiator retransmits
    assert adm.get(0.0) == real  # ahead of its own source's forgeries


def test_repeats_never_overtake_other_sources() -> None:
    adm, _ = _admission()
    other = _msg(os.urandom(8))
    cookies = [_msg(os.urandom(8)) for _ in range(4)]
    for c in cookies:
        _put(adm, c, OTHER)
    for c in cookies:  # a forger repeating its own cookies
        assert _put(adm, c, OTHER) is Kind.REPEAT
    _put(adm, other, ipaddress.ip_address("203.0.113.99"))
    assert other in [adm.get(0.0), adm.get(0.0)]


def test_random_sources_take_only_their_share_and_a_peer_address_its_own() -> None:
    adm, _ = _admission()
    real = _msg(os.urandom(8))
    for i in range(4000):  # a flood from many addresses ...
        _put(adm, _msg(os.urandom(8)), ipaddress.ip_address(f"203.0.113.{i % 250}"))
    _put(adm, real, PEER)  # ... does not push out the configured peer's first message
    out = [adm.get(0.0) for _ in range(2)]
    assert real in out
    assert len(adm) <= FIRST_SOURCES * FIRST_PER_SOURCE


def test_fair_queue_round_robin_and_bounds() -> None:
    q: FairQueue[int] = FairQueue(max_sources=2, per_source=2)
    assert q.put("a", 1) == 0
    assert q.put("a", 2) == 0
    assert q.put("a", 3) == 1  # pushes out its own oldest
    assert q.put("b", 10) == 0
    assert q.put("c", 20) == 1  # no room for a third source
    assert [q.get(), q.get(), q.get(), q.get()] == [2, 10, 3, None]
    assert len(q) == 0


def test_runts_are_rationed_like_unknown_cookies() -> None:
    adm, dropped = _admission()
    assert _put(adm, b"\x01" * 27, OTHER) is Kind.UNKNOWN
    assert adm.get(0.0) == b"\x01" * 27  # the child counts it as malformed
    assert dropped == []


def test_a_drowned_peer_is_reported_and_other_sources_are_not() -> None:
    """Forgeries carrying a configured peer's address overflow its queue: admission says
    so (the daemon then asks the child to initiate towards that peer, PeerFlooded); a flood
    from any other address never does."""
    flooded: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    adm: Admission[bytes] = Admission(lambda name: None, flooded.append)
    adm.set_peers([PEER])
    for _ in range(FIRST_SOURCES * 4):
        _put(adm, _msg(os.urandom(8)), OTHER)
    assert flooded == []
    for _ in range(200):
        _put(adm, _msg(os.urandom(8)), PEER)
    assert flooded and set(flooded) == {PEER}


def test_first_messages_reach_the_child_at_a_bounded_rate_live_ones_always() -> None:
    """A forger's first messages are handed over at FIRST_RATE at most; the rest wait in
    the fair queues (whose overflow is what reveals a drowned peer), and an answer in a live
    exchange is never held back by that rate."""
    dropped: list[str] = []
    adm: Admission[bytes] = Admission(dropped.append)
    burst, rate = FIRST_RATE
    sources = [ipaddress.ip_address(f"203.0.113.{n}") for n in range(1, 201)]
    for i in range(int(burst) + 300):
        _put(adm, _msg(os.urandom(8)), sources[i % len(sources)])
    handed = 0
    while adm.get(0.0) is not None:
        handed += 1
    assert handed == int(burst)  # then nothing, though first messages wait
    assert adm
    adm.outbound(_msg(b"o" * 8), 0.0)  # our own MM1: its answer is live
    reply = _msg(b"o" * 8, b"r" * 8)
    assert _put(adm, reply, PEER) is Kind.LIVE
    assert adm.get(0.0) == reply
    assert adm.get(0.0) is None
    assert adm.get(1.0 / rate) is not None  # the rate refills with time
