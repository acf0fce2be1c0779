"""Forged first messages (MM1, AM1) against the in-process core (issue 8, point 2).

Whoever can send a datagram with any source address can send a first message; nothing
proves it came from there until the peer's second message echoes our responder cookie.
So: our own initiations never compete with such state; it is cheap and evicts the oldest
(per source, per prefix) instead of refusing the newest; our reply to it is not resent on
a timer (no amplification); Aggressive Mode work before proof is rationed so that it
cannot use up the parent's SKEYID bucket.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random

from harness.core_sim import LEFT, RIGHT, Simulation, datagram, mirrored

from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc.messages import (
    PARENT_NONCE_BYTES,
    DatagramOut,
    ErrorCode,
    InitiateCommand,
    NonceReply,
    NonceRequest,
    Phase,
    SkeyidRequest,
)
from ikepriv.isakmp.constants import ExchangeType
from ikepriv.parent_kernel.vetting import SKEYID_BURST

AM = ExchangeType.AGGRESSIVE


def _first_message(config: object, seed: int) -> bytes:
    rng = random.Random(seed)  # noqa: S311
    core = Negotiator(config, 0.0, rng.randbytes)  # type: ignore[arg-type]
    out = core.handle(InitiateCommand(Phase.PHASE1, 1, None, None), 0.0)
    for msg in out:  # our nonce comes from the parent (Aggressive Mode waits for it)
        if isinstance(msg, NonceRequest):
            reply = NonceReply(msg.request_id, ErrorCode.OK, 1, rng.randbytes(PARENT_NONCE_BYTES))
            core.handle(reply, 0.0)
    return core.sas.by_tunnel[1].flight.datagrams[0].data


def _forged(template: bytes, rng: random.Random) -> bytes:
    return rng.randbytes(8) + template[8:]  # a fresh initiator cookie, the rest as sent


def _random_source(rng: random.Random) -> ipaddress.IPv4Address:
    net = rng.choice(("192.0.2.", "198.51.100.", "203.0.113."))
    return ipaddress.IPv4Address(net + str(rng.randrange(3, 250)))


def test_forged_mm1_from_the_peer_does_not_block_our_own_initiation() -> None:
    """Before: 16 forged MM1 from the peer's address filled its half-open slots, and our
    own `activate` was refused ("too many half-open exchanges")."""
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=11)
    rng = random.Random(1)  # noqa: S311
    template = _first_message(resp, 5)  # an MM1 as the peer (RIGHT) would send it
    for _ in range(100):
        sim.command("initiator", datagram(RIGHT, LEFT, _forged(template, rng)))
    sim.initiate(phase=1)
    sim.run(duration=10)
    assert sim.established_isakmp("initiator") and sim.established_isakmp("responder")
    assert sim.initiator.core.counters.dropped_half_open == 0


def test_forged_mm1_gets_one_reply_and_a_repeat_only_a_few() -> None:
    """Before: one forged MM1 made the responder send MM2 six times (timer)."""
    init, resp = mirrored()
    core = Negotiator(resp, 0.0, random.Random(2).randbytes)  # noqa: S311
    mm1 = _first_message(init, 3)
    sent = [m for m in core.handle(datagram(LEFT, RIGHT, mm1), 0.0) if isinstance(m, DatagramOut)]
    for t in range(1, 200):
        sent += [m for m in core.handle_timers(float(t)) if isinstance(m, DatagramOut)]
    assert len(sent) == 1, "MM2 to an unproven peer is never resent on a timer"
    core2 = Negotiator(resp, 0.0, random.Random(2).randbytes)  # noqa: S311
    replies = 0
    for t in range(10):  # the same MM1 again and again: the stored MM2, a few times only
        out = core2.handle(datagram(LEFT, RIGHT, mm1), float(t))
        replies += sum(isinstance(m, DatagramOut) for m in out)
    assert replies == 1 + core2.settings.unproven_repeats
    assert len(core2.sas.by_tunnel) == 1


def test_legit_main_mode_survives_forged_mm1_from_its_own_and_random_addresses() -> None:
    """Before: the 17th MM1 from one address, or the 257th in all, was refused."""
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=12)
    rng = random.Random(3)  # noqa: S311
    template = _first_message(init, 7)
    for _ in range(1200):
        sim.command("responder", datagram(LEFT, RIGHT, _forged(template, rng)))
        src = _random_source(rng)
        sim.command("responder", datagram(src, RIGHT, _forged(template, rng)))
    sim.run(duration=0.5)
    core = sim.responder.core
    # (random sources match no definition here: dropped before any state)
    per_source = Settings().unproven_max_per_source
    assert len(core.sas.by_tunnel) == per_source and core.counters.dropped_half_open == 0
    sim.initiate(phase=1)
    sim.run(duration=10)
    assert sim.established_isakmp("initiator") and sim.established_isakmp("responder")


def test_unproven_table_is_fair_per_source_and_prefix() -> None:
    from ikepriv.child_negotiator.core.half_open import UnprovenTable, prefix_of

    table = UnprovenTable(max_count=8, per_source=2, per_prefix=4, max_age=60.0)
    a, b = ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("203.0.113.9")
    for i in range(10):  # a flood from one address only recycles that address's slots
        table.add(("a", i), a, 0.0)
    table.add("legit", b, 0.0)
    assert len(table) == 3 and "legit" in table
    others = [ipaddress.ip_address(f"192.0.2.{i}") for i in range(10, 20)]
    for i, src in enumerate(others):  # one prefix: at most per_prefix slots
        table.add(("p", i), src, 0.0)
    assert "legit" in table and len(table) == 5
    assert prefix_of(a) == prefix_of(others[0]) != prefix_of(b)


def test_forged_am1_cannot_drain_the_skeyid_bucket_and_road_warriors_get_through() -> None:
    """Before: every forged AM1 (up to 256 at once) cost a DH and an SKEYID request, and
    more than 64 emptied the definition's SKEYID bucket in the parent."""
    init, resp = mirrored(phase1_mode=AM)
    anyone = dataclasses.replace(resp.phase1[1], remote_addr=None)  # a road-warrior %any
    resp = dataclasses.replace(resp, phase1={1: anyone})
    sim = Simulation(init, resp, seed=13)
    core = sim.responder.core
    rng = random.Random(4)  # noqa: S311
    template = _first_message(init, 9)  # with the road warrior's own IDii: the worst case
    requests = 0
    for _ in range(300):
        out = core.handle(datagram(_random_source(rng), RIGHT, _forged(template, rng)), sim.now)
        requests += sum(isinstance(m, SkeyidRequest) for m in out)
    assert requests <= 16 < SKEYID_BURST  # Settings.am_budget_definition: burst 16
    sim.initiate(phase=1)  # the real road warrior, within a retransmission or two
    sim.run(duration=10)
    assert sim.established_isakmp("initiator") and sim.established_isakmp("responder")


def test_a_drowned_peer_gets_our_own_initiation_once() -> None:
    """The parent reports that first messages from the peer's address are being dropped
    (PeerFlooded): the peer's own MM1 may be among them, and nothing tells them apart. We
    initiate towards it ourselves (our exchange is live traffic at the parent, never queued
    behind forgeries), and the phase 1 comes up; reported again while it is up or under
    way, nothing more starts. Another address starts nothing."""
    from ikepriv.ipc.messages import PeerFlooded

    init, resp = mirrored()
    sim = Simulation(init, resp, seed=12)
    sim.command("initiator", PeerFlooded(ipaddress.ip_address("203.0.113.99")))
    assert sim.initiator.core.counters.flood_initiations == 0
    sim.command("initiator", PeerFlooded(RIGHT))
    sim.command("initiator", PeerFlooded(RIGHT))  # under way: not a second one
    sim.run(duration=10)
    assert sim.established_isakmp("initiator") and sim.established_isakmp("responder")
    sim.command("initiator", PeerFlooded(RIGHT))  # established: nothing new
    sim.run(duration=10)
    assert sim.initiator.core.counters.flood_initiations == 1
    assert len(sim.established_isakmp("initiator")) == 1
    assert "first messages from" in sim.initiator.log_text()


def test_forged_first_messages_cannot_turn_into_log_lines() -> None:
    """Found under a 10,000 pps flood against the daemon: every forged AM1 gave a NOTICE
    line ("unknown identity", "no acceptable proposal"), the child exceeded the parent's
    line budget, and the parent stopped reading it: our own activations and removes were
    dropped ("child is not reading"). Now at most 10 lines of each kind per 10 s, and a
    line saying how many were left out."""
    import sys
    from pathlib import Path

    from ikepriv.ipc.messages import Log

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    import flood  # the bench's forged MM1/AM1 templates

    mm1, am1 = flood._templates()
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=13)
    rng = random.Random(2)  # noqa: S311
    lines: list[str] = []
    dispatch = sim._dispatch

    def keep_logs(side: object, actions: object) -> None:
        actions = list(actions)  # type: ignore[call-overload]
        lines.extend(a.text for a in actions if isinstance(a, Log))
        dispatch(side, actions)  # type: ignore[arg-type]

    sim._dispatch = keep_logs  # type: ignore[method-assign]
    for i in range(1000):
        source = RIGHT if i % 2 else _random_source(rng)
        sim.command("initiator", datagram(source, LEFT, _forged(am1 if i % 4 < 2 else mm1, rng)))
    sim.run(duration=5)
    assert 0 < len(lines) <= 20, lines
    assert sim.initiator.core.counters.log_lines_suppressed > 400
    sim.advance(11)
    sim.command("initiator", datagram(RIGHT, LEFT, _forged(am1, rng)))
    sim.run(duration=1)
    assert any("more lines like" in line for line in lines), lines[-3:]


def test_unproven_first_messages_are_not_listed_as_tunnels() -> None:
    """Under a flood, every forged MM1 from the peer's address was listed as a negotiating
    phase 1 tunnel of its definition (hundreds of rows), and `ike cmd=remove phase=1` sent a
    RemoveCommand for each, more than the child's queue takes. Responder state that no
    second message has proven is not a tunnel: it is counted, not listed."""
    from ikepriv.ipc.messages import ListCommand, StateReport

    init, resp = mirrored()
    sim = Simulation(init, resp, seed=14)
    rng = random.Random(3)  # noqa: S311
    template = _first_message(resp, 5)
    for _ in range(50):
        sim.command("initiator", datagram(RIGHT, LEFT, _forged(template, rng)))
    sim.run(duration=1)
    assert len(sim.initiator.core.unproven) > 0
    out = sim.initiator.core.handle(ListCommand(7, Phase.PHASE1), sim.now)
    assert [r for r in out if isinstance(r, StateReport)] == []
    sim.initiate(phase=1)
    sim.run(duration=10)
    out = sim.initiator.core.handle(ListCommand(8, Phase.PHASE1), sim.now)
    assert len([r for r in out if isinstance(r, StateReport)]) == 1


def test_a_forged_first_message_does_not_hold_up_our_activation() -> None:
    """A forged MM1 from the peer's address made responder state for the definition, and
    `activate` of its phase 2 then waited for that "negotiation" (which never completes)
    instead of starting our own phase 1. Only ours, or a peer's exchange proven by its
    second message, count as under way; the PeerFlooded initiation likewise."""
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=15)
    rng = random.Random(4)  # noqa: S311
    template = _first_message(resp, 5)
    sim.command("initiator", datagram(RIGHT, LEFT, _forged(template, rng)))
    sim.run(duration=0.1)
    assert len(sim.initiator.core.unproven) == 1
    sim.initiate(phase=2)
    sim.run(duration=10)
    assert sim.established_isakmp("initiator") and sim.established_children("initiator")


def test_a_stale_negotiation_does_not_block_the_next_flood_initiation() -> None:
    """Seen in bench/flood.py once in a few runs: our PeerFlooded initiation lost its peer
    mid-way (the peer dropped it), and as long as it was "under way" no other started, so
    the peer's own first messages had to get through the flood by luck (30 s). An
    exchange of ours older than FLOOD_STALE no longer holds the next one back."""
    from ikepriv.child_negotiator.core.engine import FLOOD_STALE
    from ikepriv.ipc.messages import PeerFlooded

    init, resp = mirrored()
    sim = Simulation(init, resp, seed=16, loss=1.0)  # the peer never hears us
    sim.command("initiator", PeerFlooded(RIGHT))
    sim.advance(FLOOD_STALE / 2)
    sim.command("initiator", PeerFlooded(RIGHT))  # recent: still waits for the first
    sim.advance(0.1)
    assert sim.initiator.core.counters.flood_initiations == 1
    sim.advance(FLOOD_STALE)
    sim.command("initiator", PeerFlooded(RIGHT))
    sim.advance(0.1)
    assert sim.initiator.core.counters.flood_initiations == 2
