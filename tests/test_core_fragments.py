"""IKE fragmentation (the Cisco/Microsoft IKEv1 scheme) in the codec and the core.

What a user notices: with a small `fragment_size`, phase 1 still comes up in Main and
Aggressive Mode, both roles, and no datagram we send is larger than the size allows; a
lossy, reordering network is survived (retransmissions resend every fragment); a peer that
does not announce support gets whole messages. And what an attacker notices: fragments
cost bounded memory, are refused without an exchange (or a definition that would answer a
first message), and every refusal is counted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import random
import struct
from collections.abc import Sequence
from pathlib import Path

import dpkt
import pytest
from harness.core_sim import LEFT, RIGHT, Simulation, datagram, ike_proposal, mirrored

from ikepriv.child_negotiator.core import fragments
from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.cli.ikedump import main as ikedump
from ikepriv.ipc.messages import Fragmentation, InitiateCommand, Phase
from ikepriv.isakmp import IsakmpError, VendorIdPayload, build_message, decode_message
from ikepriv.isakmp import encode_message as encode
from ikepriv.isakmp.constants import ExchangeType, GroupId, HeaderFlag, IkeEncryption, IkeHash
from ikepriv.isakmp.fragment import (
    FragmentPayload,
    decode_fragment_datagram,
    encode_fragment_datagram,
    is_fragment_datagram,
)
from ikepriv.isakmp.vendor_ids import (
    FRAGMENTATION,
    FRAGMENTATION_VID,
    announces_fragmentation,
)
from ikepriv.process_contract import Counters

MM, AM = ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE
SIZE = 576  # the smallest fragment_size: IPv4's minimum reassembly size
LIMIT = SIZE - 20 - 8  # the largest datagram (ISAKMP message) that fits, on port 500
NO, ACCEPT, YES, FORCE = (
    Fragmentation.NO,
    Fragmentation.ACCEPT,
    Fragmentation.YES,
    Fragmentation.FORCE,
)
# Six proposals with 4096-bit MODP: KE payloads of 512 bytes make MM3/MM4 and AM1/AM2
# larger than LIMIT, which is what certificate chains do to MM5/MM6 in production.
PROPOSALS = [
    ike_proposal(IkeEncryption.AES_CBC, bits, h, GroupId.MODP_4096)
    for bits in (128, 256)
    for h in (IkeHash.SHA2_256, IkeHash.SHA, IkeHash.SHA2_512)
]


def _with(snap: ConfigSnapshot, mode: Fragmentation, size: int = SIZE) -> ConfigSnapshot:
    return ConfigSnapshot.of(
        [
            dataclasses.replace(d, fragmentation=mode, fragment_size=size)
            for d in snap.phase1.values()
        ],
        snap.phase2.values(),
    )


def _sim(
    exchange: ExchangeType,
    init_mode: Fragmentation,
    resp_mode: Fragmentation,
    *,
    seed: int = 3,
    responder_peer: ipaddress.IPv4Address | None = LEFT,
    **kwargs: object,
) -> Simulation:
    init, resp = mirrored(PROPOSALS, phase1_mode=exchange, responder_peer=responder_peer)
    sim = Simulation(_with(init, init_mode), _with(resp, resp_mode), seed=seed, **kwargs)  # type: ignore[arg-type]
    sim.initiate(phase=2, number=1)
    return sim


def _sizes(sim: Simulation, side: str) -> list[int]:
    return [len(out.data) for out in sim.sides[side].sent]


def _vids(data: bytes) -> set[bytes]:
    return {p.data for p in decode_message(data).payloads if isinstance(p, VendorIdPayload)}


def _message(size: int, exchange: ExchangeType = MM) -> bytes:
    vid = VendorIdPayload(bytes(range(256)) * (size // 256) + bytes(size % 256))
    return encode(build_message(b"\x11" * 8, bytes(8), exchange, 0, [vid]))


# ------------------------------------------------------------------------------ codec


def test_split_fragments_fit_the_limit_and_join_to_the_message() -> None:
    message = _message(2000)
    pieces = fragments.split(message, LIMIT, 7)
    assert len(pieces) == 4 and all(len(p) <= LIMIT for p in pieces)
    decoded = [decode_fragment_datagram(p) for p in pieces]
    assert [f.number for _, f in decoded] == [1, 2, 3, 4]
    assert [f.last for _, f in decoded] == [False, False, False, True]
    assert {f.fragment_id for _, f in decoded} == {7}
    assert b"".join(f.data for _, f in decoded) == message
    for header, _ in decoded:  # the message's own header: cookies, exchange, message ID
        assert header.cookies == message[:16] and header.exchange_type is MM
        assert header.message_id == 0 and header.flags is HeaderFlag.NONE
    # and the generic decoder sees the same payload (ikedump shows it)
    assert decode_message(pieces[0]).payloads == (decoded[0][1],)


def _fragment(number: int = 1, *, last: bool = True, data: bytes = b"x" * 40) -> bytes:
    return encode_fragment_datagram(_message(100)[:28], FragmentPayload(1, number, last, data))


def _patch(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + bytes([value]) + data[offset + 1 :]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("number 0", _patch(_fragment(), 34, 0)),
        ("undefined flag", _patch(_fragment(), 35, 0x81)),
        ("no data", _fragment()[:36]),
        ("a payload after it", _patch(_fragment(), 28, 13)),
        ("reserved set", _patch(_fragment(), 29, 1)),
        ("length short", _patch(_fragment(), 31, 40)),
        ("truncated", _fragment()[:-1]),
    ],
)
def test_malformed_fragment_datagrams_are_refused(name: str, data: bytes) -> None:
    with pytest.raises(IsakmpError):
        decode_fragment_datagram(data)


def test_the_e_flag_racoon_sets_on_fragments_is_ignored() -> None:
    data = _patch(_fragment(), 19, HeaderFlag.ENCRYPTION)
    header, fragment = decode_fragment_datagram(data)
    assert header.encrypted and fragment.data == b"x" * 40


# ------------------------------------------------------------------------------ vendor ID


def test_vendor_id_is_md5_fragmentation_with_the_phase1_capability() -> None:
    digest = hashlib.md5(b"FRAGMENTATION", usedforsecurity=False).digest()
    assert FRAGMENTATION == digest
    assert FRAGMENTATION_VID == digest + bytes.fromhex("80000000")  # as strongSwan sends it
    assert announces_fragmentation(digest)  # Windows: no capability bytes
    assert announces_fragmentation(digest + bytes.fromhex("c0000000"))  # Cisco
    assert not announces_fragmentation(digest + bytes.fromhex("40000000"))  # base only
    assert not announces_fragmentation(digest + b"\x80")
    assert not announces_fragmentation(bytes(16))


@pytest.mark.parametrize("init_mode", list(Fragmentation))
@pytest.mark.parametrize("resp_mode", list(Fragmentation))
def test_announcement_follows_the_definitions(
    init_mode: Fragmentation, resp_mode: Fragmentation
) -> None:
    sim = _sim(MM, init_mode, resp_mode)
    sim.run()
    first = sim.initiator.sent[0].data
    answer = next(out.data for out in sim.responder.sent if decode_message(out.data).payloads)
    assert (FRAGMENTATION_VID in _vids(first)) == (init_mode is not NO)
    # the responder answers with it only when the initiator sent it (strongSwan's rule)
    assert (FRAGMENTATION_VID in _vids(answer)) == (init_mode is not NO and resp_mode is not NO)


# ------------------------------------------------------------------------------ negotiations


@pytest.mark.parametrize("exchange", [MM, AM])
def test_phase1_comes_up_with_fragments_and_no_datagram_over_the_size(
    exchange: ExchangeType,
) -> None:
    whole = _sim(exchange, NO, NO)
    whole.run()
    assert max(_sizes(whole, "initiator") + _sizes(whole, "responder")) > LIMIT  # not vacuous

    sim = _sim(exchange, YES, YES)
    sim.run()
    sim.assert_keys_match(expected_pairs=2)
    for side in ("initiator", "responder"):
        assert len(sim.established_isakmp(side)) == 1
        # with `yes`, AM1 goes whole: nobody knows yet whether the peer reassembles
        skip = 1 if exchange is AM and side == "initiator" else 0
        assert max(_sizes(sim, side)[skip:]) <= LIMIT
    i, r = sim.initiator.core.counters, sim.responder.core.counters
    assert r.fragments_sent > 0 and i.fragments_reassembled > 0  # MM4 / AM2
    if exchange is MM:
        assert i.fragments_sent > 0 and r.fragments_reassembled > 0  # MM3
    assert i.fragments_dropped == r.fragments_dropped == 0


@pytest.mark.parametrize("exchange", [MM, AM])
def test_force_fragments_the_first_message_and_accept_only_reassembles(
    exchange: ExchangeType,
) -> None:
    sim = _sim(exchange, FORCE, ACCEPT)
    sim.run()
    assert len(sim.established_isakmp("responder")) == 1
    assert max(_sizes(sim, "initiator")) <= LIMIT
    assert sim.responder.core.counters.fragments_reassembled > 0
    assert sim.responder.core.counters.fragments_sent == 0  # accept: never sends any
    if exchange is AM:  # the first message itself went in pieces
        assert is_fragment_datagram(sim.initiator.sent[0].data)
        assert max(_sizes(sim, "responder")) > LIMIT


def test_yes_sends_whole_messages_to_a_peer_that_did_not_announce_it() -> None:
    sim = _sim(MM, YES, NO)
    sim.run()
    assert len(sim.established_isakmp("initiator")) == 1
    assert sim.initiator.core.counters.fragments_sent == 0
    assert max(_sizes(sim, "initiator")) > LIMIT


def test_a_responder_with_fragmentation_no_drops_fragments() -> None:
    sim = _sim(AM, FORCE, NO)
    sim.run(duration=120)
    assert sim.established_isakmp("responder") == []
    counters = sim.responder.core.counters
    assert counters.fragments_dropped > 0 and counters.fragments_received == 0


@pytest.mark.parametrize("exchange", [MM, AM])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_lossy_reordering_network_is_survived(exchange: ExchangeType, seed: int) -> None:
    sim = _sim(exchange, FORCE, YES, seed=seed, loss=0.15, duplicate=0.1, reorder=0.5)
    sim.run()
    sim.assert_keys_match(expected_pairs=2)
    assert sim.responder.core.counters.fragments_reassembled > 0


def test_a_retransmission_resends_every_fragment() -> None:
    sim = _sim(MM, YES, YES)
    lost: list[bytes] = []

    def lose_first_mm3(side: str, data: bytes) -> bytes | None:
        if side == "responder" and is_fragment_datagram(data) and len(lost) < 2:
            lost.append(data)
            return b"\x00"  # garbage instead: dropped as malformed
        return None

    sim.tamper = lose_first_mm3
    sim.run()
    assert len(sim.established_isakmp("responder")) == 1
    sent = [out.data for out in sim.initiator.sent]
    assert all(sent.count(piece) == 2 for piece in lost)  # the whole flight, byte for byte
    assert sim.initiator.core.counters.retransmits >= 1


# ------------------------------------------------------------------------------ reassembly


def _reassembly(**limits: object) -> tuple[fragments.Reassembly, Counters]:
    counters = Counters()
    return fragments.Reassembly(dataclasses.replace(Settings(), **limits), counters), counters  # type: ignore[arg-type]


def _pieces(message: bytes, fragment_id: int = 1) -> list[FragmentPayload]:
    return [decode_fragment_datagram(p)[1] for p in fragments.split(message, LIMIT, fragment_id)]


COOKIES = b"\x11" * 8 + bytes(8)


def test_out_of_order_and_duplicate_fragments_reassemble_once() -> None:
    r, c = _reassembly()
    message = _message(1500)
    one, two, three = _pieces(message)
    assert r.add("sa", three, COOKIES, 0.0) is None
    assert r.add("sa", one, COOKIES, 0.1) is None
    assert r.add("sa", one, COOKIES, 0.2) is None
    assert r.add("sa", two, COOKIES, 0.3) == message
    assert c.fragments_duplicate == 1 and c.fragments_reassembled == 1
    assert len(r) == 0 and r.total_bytes == 0


def test_a_message_without_its_last_fragment_times_out() -> None:
    r, c = _reassembly(fragment_timeout=30.0)
    one, two, _ = _pieces(_message(1500))
    r.add("sa", one, COOKIES, 0.0)
    r.add("sa", two, COOKIES, 29.0)  # a later fragment does not extend the deadline
    assert r.next_deadline() == 30.0
    r.expire(30.0)
    assert len(r) == 0 and r.total_bytes == 0 and c.fragments_abandoned == 1


def test_fragment_numbers_over_the_count_limit_are_dropped() -> None:
    r, c = _reassembly(fragment_max_count=2)
    one, _, three = _pieces(_message(1500))
    r.add("sa", one, COOKIES, 0.0)
    assert r.add("sa", three, COOKIES, 0.0) is None
    assert c.fragments_dropped == 1 and len(r) == 0


def test_a_message_over_the_size_limit_is_dropped() -> None:
    r, c = _reassembly(fragment_max_message=1000)
    one, two, three = _pieces(_message(1500))
    r.add("sa", one, COOKIES, 0.0)
    assert r.add("sa", two, COOKIES, 0.0) is None
    assert c.fragments_dropped == 1 and len(r) == 0
    assert r.add("sa", three, COOKIES, 0.0) is None  # the rest starts over, never completes
    assert c.fragments_reassembled == 0


def test_a_new_fragment_id_replaces_the_old_message() -> None:
    r, c = _reassembly()
    old, new = _message(1500), _message(1400)
    first_old = _pieces(old, 1)[0]
    r.add("sa", first_old, COOKIES, 0.0)
    out = None
    for piece in _pieces(new, 2):
        out = r.add("sa", piece, COOKIES, 0.0)
    assert out == new and c.fragments_abandoned == 1


@pytest.mark.parametrize(
    "order",
    [
        [(3, True), (2, True)],  # a second LAST
        [(3, False), (2, True)],  # LAST below a number already held
        [(2, True), (3, False)],  # a number beyond LAST
    ],
)
def test_inconsistent_last_flags_drop_the_message(order: list[tuple[int, bool]]) -> None:
    r, c = _reassembly()
    for number, last in order:
        r.add("sa", FragmentPayload(1, number, last, b"y" * 10), COOKIES, 0.0)
    assert c.fragments_dropped == 1 and len(r) == 0


def _sources(rng: random.Random) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address("203.0.113.0") + rng.randrange(1, 255)


def test_a_flood_of_first_fragments_is_bounded_and_spares_exchanges_we_hold() -> None:
    s = Settings()
    r, c = _reassembly()
    held = _pieces(_message(1500))
    r.add("ours", held[0], COOKIES, 0.0)
    rng = random.Random(5)  # noqa: S311
    for n in range(10_000):
        source = _sources(rng)
        piece = FragmentPayload(rng.randrange(65536), rng.randrange(1, 30), False, b"z" * 500)
        r.add((source, 500, rng.randbytes(8)), piece, COOKIES, n / 10_000, first_source=source)
        assert len(r) <= s.fragment_first_max + 1
        assert r.total_bytes <= (s.fragment_first_max + 1) * s.fragment_max_message
    assert c.fragments_evicted > 9000
    assert r.add("ours", held[1], COOKIES, 1.0) is None
    assert r.add("ours", held[2], COOKIES, 1.0) == _message(1500)  # still there, and whole


def test_the_byte_budget_evicts_first_message_buffers_before_ours() -> None:
    r, c = _reassembly(fragment_total_bytes=3000, fragment_first_per_source=8)
    held = _pieces(_message(1500))
    r.add("ours", held[0], COOKIES, 0.0)
    source = ipaddress.IPv4Address("203.0.113.9")
    for n in range(6):
        piece = FragmentPayload(1, 1, False, b"z" * 500)
        r.add((source, 500, bytes([n + 1]) * 8), piece, COOKIES, 0.0, first_source=source)
    assert r.total_bytes <= 3000 and c.fragments_evicted >= 2
    assert r.add("ours", held[1], COOKIES, 0.0) is None
    assert r.add("ours", held[2], COOKIES, 0.0) == _message(1500)


# ------------------------------------------------------------------------------ engine


def _responder(mode: Fragmentation = YES, peer: ipaddress.IPv4Address | None = LEFT) -> Negotiator:
    _, resp = mirrored(PROPOSALS, responder_peer=peer)
    rng = random.Random(9)  # noqa: S311
    return Negotiator(_with(resp, mode), 0.0, rng.randbytes)


def _feed(core: Negotiator, source: ipaddress.IPv4Address, data: Sequence[bytes]) -> None:
    for d in data:
        core.handle(datagram(source, RIGHT, d), 0.0)


def test_fragments_of_an_unknown_exchange_are_dropped_without_state() -> None:
    core = _responder()
    message = encode(build_message(b"\x22" * 8, b"\x33" * 8, MM, 0, [VendorIdPayload(b"v" * 900)]))
    _feed(core, LEFT, fragments.split(message, LIMIT, 1))
    assert core.counters.fragments_dropped == 2 and len(core.reassembly) == 0


@pytest.mark.parametrize(
    ("mode", "source"),
    [(NO, LEFT), (YES, ipaddress.IPv4Address("192.0.2.77"))],  # refused, or no definition
)
def test_first_message_fragments_need_a_definition_that_accepts_them(
    mode: Fragmentation, source: ipaddress.IPv4Address
) -> None:
    core = _responder(mode)
    _feed(core, source, fragments.split(_message(900), LIMIT, 1)[:1])
    assert core.counters.fragments_dropped == 1 and len(core.reassembly) == 0


def test_a_forged_fragment_flood_on_the_engine_stays_bounded() -> None:
    core = _responder(peer=None)  # a road-warrior definition: any source may start
    s = core.settings
    rng = random.Random(11)  # noqa: S311
    for _ in range(5000):
        header = rng.randbytes(8) + bytes(8) + bytes([132, 0x10, MM, 0]) + bytes(8)
        piece = FragmentPayload(rng.randrange(65536), rng.randrange(1, 40), False, b"f" * 480)
        core.handle(datagram(_sources(rng), RIGHT, encode_fragment_datagram(header, piece)), 0.0)
    assert len(core.reassembly) <= s.fragment_first_max
    assert core.reassembly.total_bytes <= s.fragment_first_max * s.fragment_max_message
    assert core.counters.fragments_evicted > 4000
    assert core.counters.datagrams_in == 5000 and not core.sas.by_tunnel


def test_a_reassembled_fragment_or_foreign_message_is_refused() -> None:
    core = _responder()
    inner = fragments.split(_message(300), LIMIT, 1)[0]  # a fragment, as the whole message
    _feed(core, LEFT, fragments.split(inner, 200, 2))
    assert core.counters.fragments_reassembled == 1 and core.counters.fragments_dropped == 1
    # pieces under one cookie pair that rebuild a message of another exchange
    foreign = _message(900).replace(b"\x11" * 8, b"\x44" * 8, 1)
    pieces = fragments.split(foreign, LIMIT, 3)
    relabelled = [b"\x11" * 8 + p[8:] for p in pieces]
    _feed(core, LEFT, relabelled)
    assert core.counters.fragments_reassembled == 2 and core.counters.fragments_dropped == 2
    assert not core.sas.by_tunnel


# ------------------------------------------------------------------------------ ikedump


def _ipv4_udp(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 500, 500, 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                         LEFT.packed, RIGHT.packed)  # fmt: skip
    return header + udp


def test_ikedump_shows_fragments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pieces = fragments.split(_message(900), LIMIT, 5)
    path = tmp_path / "frag.pcap"
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle, snaplen=65535, linktype=101)  # raw IP
        for n, piece in enumerate(pieces):
            writer.writepkt(_ipv4_udp(piece), ts=1_700_000_000 + n)
    assert ikedump([str(path)]) == 0
    text = capsys.readouterr().out
    assert "FRAGMENT fragment_id=5 number=1 last=False" in text
    assert "FRAGMENT fragment_id=5 number=2 last=True" in text


def test_a_partial_message_goes_with_its_exchange() -> None:
    init, _ = mirrored(PROPOSALS)
    rng = random.Random(13)  # noqa: S311
    core = Negotiator(_with(init, YES), 0.0, rng.randbytes)
    core.handle(InitiateCommand(Phase.PHASE1, 1, None, None), 0.0)
    ((icookie, sa),) = core.sas.initiating.items()
    reply = encode(build_message(icookie, b"\x77" * 8, MM, 0, [VendorIdPayload(b"r" * 900)]))
    _feed_from(core, RIGHT, fragments.split(reply, LIMIT, 1)[:1])
    assert len(core.reassembly) == 1 and core.counters.fragments_received == 1
    core.drop_isakmp(sa)
    assert len(core.reassembly) == 0 and core.reassembly.total_bytes == 0


def _feed_from(core: Negotiator, source: ipaddress.IPv4Address, data: Sequence[bytes]) -> None:
    for d in data:
        core.handle(datagram(source, LEFT, d), 0.0)


def test_the_size_budget_counts_ip_udp_and_the_non_esp_marker() -> None:
    assert fragments.max_message(576, ipv6=False, natt=False) == 576 - 20 - 8
    assert fragments.max_message(1280, ipv6=True, natt=True) == 1280 - 40 - 8 - 4


def test_the_engine_clock_abandons_partial_messages() -> None:
    init, _ = mirrored(PROPOSALS)
    rng = random.Random(17)  # noqa: S311
    core = Negotiator(_with(init, YES), 0.0, rng.randbytes)
    core.handle(InitiateCommand(Phase.PHASE1, 1, None, None), 0.0)
    ((icookie, _sa),) = core.sas.initiating.items()
    reply = encode(build_message(icookie, b"\x77" * 8, MM, 0, [VendorIdPayload(b"r" * 900)]))
    _feed_from(core, RIGHT, fragments.split(reply, LIMIT, 1)[:1])
    timeout = core.settings.fragment_timeout
    deadline = core.next_deadline()
    assert deadline is not None and deadline <= timeout
    core.handle_timers(timeout)
    assert len(core.reassembly) == 0 and core.counters.fragments_abandoned == 1
