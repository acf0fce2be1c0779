"""Lifetimes: randomised soft expiry, the deadline heap, phase 1 expiry and volume, and a
phase 2 rekey that first needs a new phase 1."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

import pytest
from harness.core_sim import LEFT, RIGHT, Simulation, datagram, esp_proposal, ike_proposal, mirrored
from test_core_rekey import assert_never_without_pair

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.lifetimes import (
    CHILD,
    ISAKMP,
    DeadlineIndex,
    kernel_lifetimes,
    soft_time,
)
from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.child_negotiator.core.wire import seal_hashed
from ikepriv.crypto.oakley import informational_hash
from ikepriv.ipc.messages import Lifetimes, SaDirection
from ikepriv.isakmp import NotifyPayload
from ikepriv.isakmp.constants import ExchangeType


def _core(seed: int, settings: Settings | None = None) -> Negotiator:
    rng = random.Random(seed)  # noqa: S311 - replayable on purpose
    return Negotiator(None, 0.0, rng.randbytes, settings=settings)


@pytest.mark.parametrize("lifetime", [600, 3600, 28800])
def test_soft_lifetime_lies_before_expiry_within_the_margin(lifetime: int) -> None:
    s = Settings()
    margin = min(s.rekey_margin, lifetime * s.rekey_margin_fraction)
    times = [soft_time(_core(seed), 100.0, lifetime) for seed in range(50)]
    for t in times:
        assert 100 + lifetime - 2 * margin <= t <= 100 + lifetime - margin
    # randomised: two peers with the same lifetime rarely pick the same moment
    assert len(set(times)) == len(times)
    assert max(times) - min(times) > margin / 2


@pytest.mark.parametrize("lifetime", [600, 3600, 28800])
def test_kernel_soft_limits_are_drawn_per_sa_after_our_rekey(lifetime: int) -> None:
    s = Settings()
    margin = min(s.rekey_margin, lifetime * s.rekey_margin_fraction)
    low, high = s.kernel_soft_volume_margin
    hard_kb = 100_000
    drawn = [kernel_lifetimes(_core(seed), lifetime, hard_kb) for seed in range(50)]
    latest_rekey = max(soft_time(_core(seed), 0.0, lifetime) for seed in range(50))
    for lt in drawn:
        assert (lt.hard_seconds, lt.hard_kilobytes) == (lifetime, hard_kb)
        # the kernel's soft event never comes before the core's own rekey
        assert latest_rekey <= lifetime - margin <= lt.soft_seconds <= lifetime - margin / 2 + 1
        assert hard_kb * (1 - high) <= lt.soft_kilobytes <= hard_kb * (1 - low)
    # two peers (two SAs) rarely hit the soft volume limit together (a few equal draws
    # among 50 over 10 000 values are expected: the birthday bound)
    assert len({lt.soft_kilobytes for lt in drawn}) >= len(drawn) - 3
    assert max(lt.soft_kilobytes for lt in drawn) - min(lt.soft_kilobytes for lt in drawn) > (
        hard_kb * (high - low) / 2
    )
    assert len({lt.soft_seconds for lt in drawn}) > 1


def test_kernel_soft_limits_of_unlimited_and_tiny_lifetimes() -> None:
    assert kernel_lifetimes(_core(1), 0, 0) == Lifetimes(0, 0, 0, 0)
    tiny = kernel_lifetimes(_core(1), 1, 1)
    assert (tiny.soft_seconds, tiny.soft_kilobytes) == (1, 1)


def test_both_peers_announce_different_soft_volumes_for_one_sa() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=3600, kilobytes=50_000)])
    sim = Simulation(init, resp, seed=77)
    sim.initiate()
    sim.run(duration=5)
    inbound = {a.spi: a for a in sim.responder.parent.sa_adds if a.direction is SaDirection.IN}
    for out in sim.initiator.parent.sa_adds:
        if out.direction is SaDirection.OUT:
            twin = inbound[out.spi]  # the same bytes, counted by both kernels
            assert out.lifetimes.soft_kilobytes != twin.lifetimes.soft_kilobytes
    i_adds = sim.initiator.parent.sa_adds
    assert i_adds[0].lifetimes.soft_kilobytes != i_adds[1].lifetimes.soft_kilobytes  # per SA


def test_no_fuzz_means_a_fixed_margin() -> None:
    s = Settings(rekey_fuzz=0.0, rekey_margin=60)
    assert soft_time(_core(1, s), 0.0, 3600) == soft_time(_core(2, s), 0.0, 3600) == 3540


def test_deadline_index_keeps_the_earliest_live_deadline() -> None:
    index = DeadlineIndex()
    table = {(ISAKMP, 1): 50.0, (CHILD, 7): 20.0, (CHILD, 8): None}
    for key in table:
        index.mark(key)
    index.refresh(table.get)
    assert index.next() == 20.0 and len(index) == 2
    table[(CHILD, 7)] = 80.0  # moved later: the stale entry is skipped
    index.mark((CHILD, 7))
    index.refresh(table.get)
    assert index.next() == 50.0
    assert index.due(49.0) == [] and index.due(50.0) == [(ISAKMP, 1)]
    assert index.next() == 80.0  # a due key is out until it is recomputed
    index.refresh(lambda key: None)  # its SA is gone
    assert index.next() == 80.0
    assert index.next(alive=lambda key: False) is None and len(index) == 0


def test_deadline_heap_stays_small_over_many_updates() -> None:
    index = DeadlineIndex()
    for step in range(10_000):
        index.mark((CHILD, step % 3))
        index.refresh(lambda key, step=step: 1000.0 - step + key[1])  # type: ignore[misc]
    assert len(index) == 3
    assert len(index._heap) <= 2 * 3 + 64


def test_the_daemon_loop_only_recomputes_what_an_event_touched() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=600)])
    sim = Simulation(init, resp, seed=71)
    sim.initiate()
    sim.run(duration=5)
    core = sim.initiator.core
    assert core.next_deadline() is not None
    assert not core.deadlines._dirty
    # an unrelated, malformed datagram changes no SA: nothing to recompute
    core.handle(datagram(RIGHT, LEFT, b"\x00" * 40), sim.now)
    assert not core.deadlines._dirty


# ---------------------------------------------------------------------------- phase 1


def test_phase1_expires_when_nobody_may_rekey_and_phase2_stays() -> None:
    init, resp = mirrored(ike=[ike_proposal(lifetime=600)], responder_peer=None)
    sim = Simulation(init, resp, seed=72)
    sim.initiate()
    sim.run(duration=5)
    # the initiator's phase 1 definition goes away: it must not (and cannot) rekey
    icore = sim.initiator.core
    (sa,) = sim.established_isakmp("initiator")
    sa.rekey_at = 0.0
    icore.touch(sa)
    sim.advance(700)
    for name in ("initiator", "responder"):
        assert not sim.sides[name].core.sas.by_tunnel, name
        assert len(sim.established_children(name)) == 1  # IPsec SAs live on their own
        assert not sim.sides[name].parent.sa_deletes
    assert "expired" in sim.initiator.log_text() + sim.responder.log_text()


def _volume_limited(seed: int) -> tuple[Simulation, IsakmpSa, Callable[[], None]]:
    """An established tunnel whose initiator-side ISAKMP SA has a 2 KiB lifetime (as if the
    peer had proposed one), and a function that delivers one authenticated informational
    from the peer to it."""
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=seed)
    sim.initiate()
    sim.run(duration=5)
    (sa,) = sim.established_isakmp("initiator")
    assert sa.choice is not None
    sa.choice = replace(sa.choice, lifetime_kilobytes=2)
    peer = sim.responder.core
    (peer_sa,) = sim.established_isakmp("responder")
    seq = iter(range(1, 100))

    def deliver() -> None:
        assert peer_sa.keys is not None and peer_sa.choice is not None
        mid = peer.new_message_id(peer_sa)
        alg, key = peer_sa.choice.hash, peer_sa.keys.skeyid_a
        data = seal_hashed(
            peer_sa,
            ExchangeType.INFORMATIONAL,
            mid,
            [NotifyPayload.dpd(peer_sa.cookies, next(seq))],
            lambda rest: informational_hash(alg, key, mid, rest),
        )
        sim.command("initiator", datagram(RIGHT, LEFT, data))
        sim.advance(0.5)

    return sim, sa, deliver


def test_phase1_kilobyte_soft_limit_starts_a_rekey() -> None:
    sim, sa, deliver = _volume_limited(73)
    while not sa.rekey_started:
        deliver()
    assert 0.9 * 2048 <= sa.octets < 2048
    assert "rekeying" in sim.initiator.log_text()
    sim.advance(30)
    (new,) = sim.established_isakmp("initiator")
    assert new is not sa and sa.retired_by == new.tunnel_id
    assert len(sim.established_children("initiator")) == 1


def test_phase1_kilobyte_hard_limit_ends_the_sa() -> None:
    sim, sa, deliver = _volume_limited(77)
    sa.rekey_at = 0.0  # nobody rekeys it
    while sa in sim.initiator.core.sas.by_tunnel.values():
        deliver()
    assert sa.octets >= 2048
    assert "kilobyte lifetime reached" in sim.initiator.log_text()
    assert not sim.responder.core.sas.by_tunnel  # told with a Delete
    assert len(sim.established_children("initiator")) == 1


# ---------------------------------------------------------------------------- phase 2


def test_phase2_rekey_brings_up_a_new_phase1_first_when_none_is_left() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=600)])
    sim = Simulation(init, resp, seed=74)
    sim.initiate()
    sim.run(duration=5)
    (old,) = sim.established_children("initiator")
    # both sides lost phase 1 (say, it expired with nobody there to rekey it)
    for name in ("initiator", "responder"):
        core = sim.sides[name].core
        for sa in list(core.sas.by_tunnel.values()):
            core.drop_isakmp(sa)
    sim.advance(560)
    for name in ("initiator", "responder"):
        assert len(sim.established_isakmp(name)) == 1, name
        (child,) = sim.established_children(name)
        assert child.spi_in not in (old.spi_in, old.spi_out)
        assert_never_without_pair(sim.sides[name].parent)
    sim.assert_keys_match(expected_pairs=4)


def test_soft_lifetime_is_announced_to_the_kernel_after_ours() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=600)])
    sim = Simulation(init, resp, seed=75)
    sim.initiate()
    sim.run(duration=5)
    (child,) = sim.established_children("initiator")
    for add in sim.initiator.parent.sa_adds:
        # the kernel's soft event comes no earlier than our own (randomised) rekey
        assert child.rekey_at <= child.created + add.lifetimes.soft_seconds
        assert add.lifetimes.hard_seconds == 600


def test_removed_definition_stops_rekeys_of_its_sas() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=600)], responder_peer=None)
    sim = Simulation(init, resp, seed=76)
    sim.initiate()
    sim.run(duration=5)
    icore = sim.initiator.core
    icore.config = ConfigSnapshot.of(icore.config.phase1.values(), [])
    sim.advance(590)
    assert len(sim.initiator.parent.sa_adds) == 2
    assert "rekeying" not in sim.initiator.log_text()
