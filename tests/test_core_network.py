"""Loss, duplication and reordering on the simulated wire; retransmission; parallel QMs."""

from __future__ import annotations

import pytest
from harness.core_sim import (
    LEFT,
    LEFT_NET,
    RIGHT,
    RIGHT_NET,
    Simulation,
    esp_proposal,
    ike_proposal,
    mirrored,
    phase1_def,
    phase2_def,
    selector,
)

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.isakmp.constants import GroupId


@pytest.mark.parametrize("seed", range(6))
def test_lossy_duplicating_reordering_network_still_agrees(seed: int) -> None:
    init, resp = mirrored(esp=[esp_proposal(pfs=GroupId.MODP_1024)])
    sim = Simulation(init, resp, seed=seed, loss=0.2, duplicate=0.2, reorder=0.3)
    sim.initiate()
    sim.run()
    sim.assert_keys_match(expected_pairs=2)
    assert len(sim.established_children("initiator")) == 1
    assert len(sim.established_children("responder")) == 1
    # one SA pair per side however many copies arrived
    assert len(sim.initiator.parent.sa_adds) == 2 and len(sim.responder.parent.sa_adds) == 2


def test_duplicates_are_answered_from_memory_not_recomputed() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=2, duplicate=1.0)
    sim.initiate()
    sim.run()
    sim.assert_keys_match(expected_pairs=2)
    r = sim.responder
    assert r.core.counters.duplicates_answered + r.core.counters.dropped_replay > 0
    # every SKEYID and SPI was asked for exactly once per exchange
    assert len(r.parent.skeyid_requests) == 1 and len(r.parent.allocated) == 1
    # a resent reply is the very same datagram (no new crypto, no new IV)
    sent = [d.data for d in r.sent]
    assert len(set(sent)) < len(sent)


def test_lost_messages_are_retransmitted_with_backoff() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=3)
    first = {"n": 0}

    def drop_first_two(side: str, data: bytes) -> bytes | None:
        first["n"] += 1
        return b"\x00" if first["n"] <= 2 else None  # garbage in place of the datagram

    sim.tamper = drop_first_two
    sim.initiate()
    sim.run()
    sim.assert_keys_match(expected_pairs=2)
    assert sim.initiator.core.counters.retransmits >= 1
    assert sim.responder.core.counters.dropped_malformed >= 1


def test_dead_peer_gives_up_after_bounded_tries() -> None:
    init, resp = mirrored()
    settings = Settings(retransmit_base=1.0, retransmit_factor=2.0, retransmit_tries=3)
    sim = Simulation(init, resp, seed=1, loss=1.0, settings=settings)
    sim.initiate(phase=1)
    sim.run(duration=3600)
    counters = sim.initiator.core.counters
    assert counters.retransmits == 3 and counters.exchanges_timed_out == 1
    assert counters.phase1_failed == 1
    assert not sim.initiator.core.sas.by_tunnel
    assert len(sim.initiator.sent) == 4
    assert sim.initiator.core.next_deadline() is None


def test_reordered_late_message_is_dropped_and_counted() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=8)
    sim.initiate()
    sim.run()
    # replay the initiator's first Quick Mode message after the exchange finished
    qm1 = next(d for d in sim.responder.received if d.data[18] == 32)
    before = sim.responder.core.counters.dropped_replay
    sim.command("responder", qm1)
    sim.run()
    assert sim.responder.core.counters.dropped_replay == before + 1
    assert len(sim.responder.parent.sa_adds) == 2


def test_two_quick_modes_in_parallel_under_one_phase1() -> None:
    sel_a_l, sel_a_r = selector("198.51.100.0/26"), selector("198.51.100.128/26")
    sel_b_l, sel_b_r = selector("198.51.100.64/26"), selector("198.51.100.192/26")
    init = ConfigSnapshot.of(
        [phase1_def(1, LEFT, RIGHT, [ike_proposal()])],
        [phase2_def(1, 1, sel_a_l, sel_a_r), phase2_def(2, 1, sel_b_l, sel_b_r)],
    )
    resp = ConfigSnapshot.of(
        [phase1_def(1, RIGHT, LEFT, [ike_proposal()])],
        [phase2_def(7, 1, selector(RIGHT_NET), selector(LEFT_NET))],
    )
    sim = Simulation(init, resp, seed=12, reorder=0.5)
    sim.initiate(phase=2, number=1)
    sim.initiate(phase=2, number=2)
    sim.run()
    pairs = sim.assert_keys_match(expected_pairs=4)
    assert len({out.spi for out, _ in pairs}) == 4
    assert len(sim.established_isakmp("initiator")) == 1
    children = sim.established_children("responder")
    assert len(children) == 2
    # the responder installs exactly the narrower selectors offered, never its wider ones
    assert {c.selector_out.src.network for c in children} == {
        sel_a_r.network,
        sel_b_r.network,
    }
    # each pair of negotiated selectors has policies (and a reqid) of its own
    adds = sim.responder.parent.policy_adds
    assert len(adds) == 6
    assert len({a.reqid for a in adds}) == 2
