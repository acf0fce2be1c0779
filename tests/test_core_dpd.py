"""Dead peer detection (RFC 3706) between two in-process cores, on simulated time.

An idle tunnel is probed and the answers keep it; a peer that vanishes is declared dead
after the timeout and its SAs are cleared, then the definition's action (clear, hold,
restart) decides what follows. Hostile or stale DPD messages are dropped and counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import replace

import pytest
from harness.core_sim import (
    LEFT,
    RIGHT,
    Simulation,
    datagram,
    forge_informational,
    mirrored,
)

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.natt import NatTHooks
from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc.messages import (
    ConfigBegin,
    ConfigEnd,
    ConfigPhase1,
    DefinitionCounts,
    DpdAction,
    DpdSettings,
    KernelAcquire,
    ListCommand,
    Phase,
    RemoveCommand,
    SaDirection,
    Stats,
    TunnelState,
)
from ikepriv.isakmp import NotifyPayload, Payload, vendor_ids
from ikepriv.isakmp.constants import ExchangeType, NotifyType
from ikepriv.parent_kernel.vetting import stats_problem

DELAY, TIMEOUT = 30, 120
OFF = DpdSettings(False, 0, 0)


def _dpd(action: DpdAction = DpdAction.CLEAR) -> DpdSettings:
    return DpdSettings(True, DELAY, TIMEOUT, action)


def _up(sim: Simulation) -> None:
    sim.initiate()
    sim.run(duration=5)
    sim.assert_keys_match(expected_pairs=2)


def _count(notifies: Sequence[int], kind: NotifyType) -> int:
    return sum(1 for n in notifies if n == kind)


def _main_mode_sent(sim: Simulation, side: str = "initiator") -> int:
    """Main Mode datagrams a side sent (exchange type is byte 18 of the header)."""
    return sum(1 for d in sim.sides[side].sent if d.data[18] == ExchangeType.IDENTITY_PROTECTION)


def _run_until(sim: Simulation, done: Callable[[], bool], limit: float = 1000) -> None:
    start = sim.now
    while not done():
        assert sim.now - start < limit, "condition never met"
        sim.advance(1)


def _forge(sim: Simulation, target: str, payloads: Sequence[Payload]) -> bytes:
    """An informational as the other side would send it (with its keys), never sent by it."""
    other = "responder" if target == "initiator" else "initiator"
    return forge_informational(sim.sides[other].core, payloads)


def _deliver(sim: Simulation, target: str, data: bytes) -> None:
    src, dst = (RIGHT, LEFT) if target == "initiator" else (LEFT, RIGHT)
    sim.command(target, datagram(src, dst, data))
    sim.advance(1)


def _inject(sim: Simulation, target: str, payloads: Sequence[Payload]) -> None:
    _deliver(sim, target, _forge(sim, target, payloads))


def _isakmp(sim: Simulation, side: str) -> IsakmpSa:
    (sa,) = sim.established_isakmp(side)
    return sa


# ---------------------------------------------------------------------------- liveness


def test_idle_tunnel_is_probed_and_the_answers_keep_it() -> None:
    init, resp = mirrored(dpd=_dpd())
    sim = Simulation(init, resp, seed=51)
    _up(sim)
    sim.run(duration=10 * DELAY)
    probes = _count(sim.initiator.notifies_received, NotifyType.R_U_THERE) + _count(
        sim.responder.notifies_received, NotifyType.R_U_THERE
    )
    acks = _count(sim.initiator.notifies_received, NotifyType.R_U_THERE_ACK) + _count(
        sim.responder.notifies_received, NotifyType.R_U_THERE_ACK
    )
    # either side's probe is a sign of life for the other: about one probe per delay
    assert 8 <= probes <= 11 and acks == probes
    counters = [sim.sides[name].core.counters for name in ("initiator", "responder")]
    assert sum(c.dpd_probes_sent for c in counters) == probes
    assert sum(c.dpd_acks_sent for c in counters) == acks
    assert sum(c.dpd_acks_received for c in counters) == acks
    assert all(c.dpd_dead_peers == 0 for c in counters)
    for name in ("initiator", "responder"):
        assert len(sim.established_isakmp(name)) == 1
        assert len(sim.established_children(name)) == 1
        assert not sim.sides[name].parent.sa_deletes
        assert "dead" not in sim.sides[name].log_text()


def test_probes_start_only_after_the_delay_without_messages() -> None:
    init, resp = mirrored(dpd=_dpd(), responder_dpd=OFF)
    sim = Simulation(init, resp, seed=52)
    _up(sim)
    sa = _isakmp(sim, "initiator")
    sim.advance(DELAY - 10)
    # an authenticated message from the peer (its own R-U-THERE) restarts the idle period
    _inject(sim, "initiator", [NotifyPayload.dpd(sa.cookies, 77)])
    assert _count(sim.responder.notifies_received, NotifyType.R_U_THERE_ACK) == 1
    heard_at = sim.now
    _run_until(sim, lambda: sim.now >= heard_at + DELAY - 2)
    assert NotifyType.R_U_THERE not in sim.responder.notifies_received
    _run_until(sim, lambda: NotifyType.R_U_THERE in sim.responder.notifies_received, limit=5)
    assert len(sim.established_children("initiator")) == 1


def test_a_peer_that_did_not_announce_dpd_is_not_probed_but_answered() -> None:
    class NoDpdVendorId(NatTHooks):
        def vendor_ids(self, sa: IsakmpSa) -> tuple[bytes, ...]:
            return tuple(v for v in super().vendor_ids(sa) if v != vendor_ids.DPD)

    init, resp = mirrored(dpd=_dpd())
    sim = Simulation(init, resp, seed=53, hooks=NoDpdVendorId())
    _up(sim)
    sent = len(sim.initiator.sent)
    sim.loss = 1.0  # even a dead peer: no probe, so no verdict
    sim.advance(10 * DELAY)
    assert len(sim.initiator.sent) == sent
    assert len(sim.established_children("initiator")) == 1
    assert "is dead" not in sim.initiator.log_text()
    assert "did not announce DPD" in sim.initiator.log_text()
    sim.loss = 0.0
    sa = _isakmp(sim, "initiator")
    _inject(sim, "initiator", [NotifyPayload.dpd(sa.cookies, 5)])
    assert _count(sim.responder.notifies_received, NotifyType.R_U_THERE_ACK) == 1


# ---------------------------------------------------------------------------- dead peers


def _kill_network_until_dead(sim: Simulation) -> float:
    sim.loss = 1.0
    _run_until(sim, lambda: "is dead" in sim.initiator.log_text())
    return sim.now


def test_dead_peer_clear_removes_everything_and_stays_down() -> None:
    init, resp = mirrored(dpd=_dpd(DpdAction.CLEAR), responder_dpd=OFF)
    sim = Simulation(init, resp, seed=54)
    _up(sim)
    spis = {a.spi for a in sim.initiator.parent.sa_adds}
    mm_before = _main_mode_sent(sim)
    lost_at = sim.now
    dead_at = _kill_network_until_dead(sim)
    assert TIMEOUT <= dead_at - lost_at <= DELAY + TIMEOUT + 1
    sim.loss = 0.0
    sim.run(duration=600)
    parent = sim.initiator.parent
    assert not sim.initiator.core.sas.by_tunnel and not sim.initiator.core.sas.children
    assert {d.spi for d in parent.sa_deletes} == spis
    assert len(parent.policy_deletes) == 3 and parent.installed_spis() == set()
    states = {(r.phase, r.state) for r in parent.reports}
    assert (Phase.PHASE1, TunnelState.DELETING) in states
    assert (Phase.PHASE2, TunnelState.DELETING) in states
    assert _main_mode_sent(sim) == mm_before  # no new negotiation
    assert sim.initiator.core.next_deadline() is None
    # probes went out, one sequence number each
    assert sim.initiator.core.counters.notifies_sent >= 3
    assert sim.initiator.core.counters.dpd_probes_sent >= 3
    assert sim.initiator.core.counters.dpd_acks_received == 0
    assert sim.initiator.core.counters.dpd_dead_peers == 1


def test_dead_peer_restart_negotiates_again_and_keeps_the_policies() -> None:
    init, resp = mirrored(dpd=_dpd(DpdAction.RESTART), responder_dpd=OFF)
    sim = Simulation(init, resp, seed=55)
    _up(sim)
    old = {a.spi for a in sim.initiator.parent.sa_adds}
    mm_before = _main_mode_sent(sim)
    _kill_network_until_dead(sim)
    assert _main_mode_sent(sim) == mm_before + 1  # MM1 of the new phase 1, lost for now
    parent = sim.initiator.parent
    assert {d.spi for d in parent.sa_deletes} == old
    assert not parent.policy_deletes  # traffic keeps being caught by the policies
    sim.loss = 0.0
    sim.run(duration=120)
    new = {a.spi for a in parent.sa_adds} - old
    assert len(new) == 2 and len(sim.established_children("initiator")) == 1
    assert len(parent.policy_adds) == 3  # the kept policies serve the new SAs
    # the peer, which kept its old state, dropped it on the new INITIAL-CONTACT
    assert len(sim.established_children("responder")) == 1
    live = {c.spi_in for c in sim.established_children("responder")}
    assert live <= {a.spi for a in sim.responder.parent.sa_adds if a.direction is SaDirection.IN}
    in_spi = next(c.spi_in for c in sim.established_children("initiator"))
    (r_child,) = sim.established_children("responder")
    assert r_child.spi_out == in_spi


def _attempt_times(sim: Simulation, until: float) -> list[float]:
    """When each restart attempt started, stepping the clock a second at a time."""
    times: list[float] = []
    counters = sim.initiator.core.counters
    while sim.now < until:
        before = counters.dpd_restarts
        sim.advance(1)
        times += [sim.now] * (counters.dpd_restarts - before)
    return times


def test_restart_retries_with_back_off_then_gives_up() -> None:
    init, resp = mirrored(dpd=_dpd(DpdAction.RESTART), responder_dpd=OFF)
    settings = Settings(keying_tries=3, restart_backoff=30, restart_backoff_max=45)
    sim = Simulation(init, resp, seed=58, settings=settings)
    _up(sim)
    policies = len(sim.initiator.parent.policy_adds)
    dead_at = _kill_network_until_dead(sim)
    assert sim.initiator.core.counters.dpd_restarts == 1  # the first attempt, at once
    times = [dead_at, *_attempt_times(sim, dead_at + 2000)]
    assert len(times) == 3  # keying_tries, the first included, then no more
    # each attempt lasts until its half-open exchange ages out, then the next one waits
    # 30 s, the one after 45 s (doubled, capped)
    age = settings.half_open_max_age
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] == pytest.approx(age + 30, abs=1.5)
    assert gaps[1] == pytest.approx(age + 45, abs=1.5)
    core = sim.initiator.core
    assert "giving up" in sim.initiator.log_text()
    assert not core.restarts and not core.sas.by_tunnel and core.next_deadline() is None
    assert core.counters.phase1_failed == 3
    assert not sim.initiator.parent.policy_deletes  # traffic can still bring it back
    assert len(sim.initiator.parent.policy_adds) == policies


def test_restart_succeeds_on_a_later_attempt() -> None:
    init, resp = mirrored(dpd=_dpd(DpdAction.RESTART), responder_dpd=OFF)
    sim = Simulation(init, resp, seed=59)
    _up(sim)
    dead_at = _kill_network_until_dead(sim)
    times = _attempt_times(sim, dead_at + 100)  # the first attempt gave up meanwhile
    assert len(times) == 1 and sim.initiator.core.counters.phase1_failed == 1
    assert sim.initiator.core.counters.dpd_restarts == 2
    sim.loss = 0.0
    sim.run(duration=120)
    core = sim.initiator.core
    assert core.counters.dpd_restarts == 2 and not core.restarts
    assert len(sim.established_isakmp("initiator")) == 1
    assert len(sim.established_children("initiator")) == 1  # the phase 2 followed
    sim.assert_keys_match()
    sim.advance(1000)
    assert core.counters.dpd_restarts == 2  # nothing left to retry


def test_removing_the_phase1_stops_the_restarts() -> None:
    init, resp = mirrored(dpd=_dpd(DpdAction.RESTART), responder_dpd=OFF)
    sim = Simulation(init, resp, seed=60)
    _up(sim)
    _kill_network_until_dead(sim)
    (attempt,) = sim.initiator.core.sas.by_tunnel.values()
    sim.command("initiator", RemoveCommand(Phase.PHASE1, attempt.tunnel_id))
    sim.advance(2000)
    core = sim.initiator.core
    assert core.counters.dpd_restarts == 1 and not core.restarts and not core.sas.by_tunnel


def test_dead_peer_hold_waits_for_traffic() -> None:
    init, resp = mirrored(dpd=_dpd(DpdAction.HOLD), responder_dpd=OFF)
    sim = Simulation(init, resp, seed=56)
    _up(sim)
    mm_before = _main_mode_sent(sim)
    out_sa = next(a for a in sim.initiator.parent.sa_adds if a.direction is SaDirection.OUT)
    _kill_network_until_dead(sim)
    sim.loss = 0.0
    sim.run(duration=300)
    assert _main_mode_sent(sim) == mm_before
    assert not sim.initiator.parent.policy_deletes
    assert not sim.initiator.core.sas.children
    # a packet hits the kept policy: the kernel asks, and the tunnel comes back
    assert out_sa.selector is not None
    sim.command("initiator", KernelAcquire(out_sa.reqid, 1, out_sa.selector, LEFT, RIGHT))
    sim.run(duration=60)
    assert len(sim.established_children("initiator")) == 1
    assert len(sim.established_children("responder")) == 1


# ---------------------------------------------------------------------------- hostile input


def test_dpd_notify_naming_another_sa_is_dropped() -> None:
    init, resp = mirrored(dpd=_dpd())
    sim = Simulation(init, resp, seed=57)
    _up(sim)
    core = sim.initiator.core
    before = core.counters.dropped_unknown_sa
    _inject(sim, "initiator", [NotifyPayload.dpd(b"\x42" * 16, 9)])
    assert core.counters.dropped_unknown_sa == before + 1
    assert NotifyType.R_U_THERE_ACK not in sim.responder.notifies_received
    # and one under cookies of no ISAKMP SA at all never gets as far as decryption
    sa = _isakmp(sim, "initiator")
    stray = bytearray(_forge(sim, "initiator", [NotifyPayload.dpd(sa.cookies, 10)]))
    stray[0:8] = b"\x13" * 8
    _deliver(sim, "initiator", bytes(stray))
    assert core.counters.dropped_unknown_sa == before + 2
    assert NotifyType.R_U_THERE_ACK not in sim.responder.notifies_received


def test_old_or_repeated_sequence_numbers_are_dropped() -> None:
    init, resp = mirrored(dpd=_dpd())
    sim = Simulation(init, resp, seed=58)
    _up(sim)
    core = sim.initiator.core
    sa = _isakmp(sim, "initiator")
    acks = lambda: _count(sim.responder.notifies_received, NotifyType.R_U_THERE_ACK)  # noqa: E731
    _inject(sim, "initiator", [NotifyPayload.dpd(sa.cookies, 1000)])
    assert acks() == 1
    before = core.counters.dropped_replay
    for seq in (1000, 999, 1):  # repeated, older, much older (fresh message IDs each time)
        _inject(sim, "initiator", [NotifyPayload.dpd(sa.cookies, seq)])
    assert core.counters.dropped_replay == before + 3 and acks() == 1
    _inject(sim, "initiator", [NotifyPayload.dpd(sa.cookies, 1001)])
    assert acks() == 2


def test_sequence_numbers_may_wrap() -> None:
    init, resp = mirrored(dpd=_dpd())
    sim = Simulation(init, resp, seed=59)
    _up(sim)
    sa = _isakmp(sim, "initiator")
    for seq in (0xFFFFFFFE, 0xFFFFFFFF, 0, 1):
        _inject(sim, "initiator", [NotifyPayload.dpd(sa.cookies, seq)])
    assert _count(sim.responder.notifies_received, NotifyType.R_U_THERE_ACK) == 4
    assert sim.initiator.core.counters.dropped_replay == 0


def test_ack_without_a_matching_probe_is_dropped() -> None:
    init, resp = mirrored(dpd=_dpd(), responder_dpd=OFF)
    sim = Simulation(init, resp, seed=60)
    _up(sim)
    core = sim.initiator.core
    sa = _isakmp(sim, "initiator")
    before = core.counters.dropped_replay
    _inject(sim, "initiator", [NotifyPayload.dpd(sa.cookies, 12345, ack=True)])
    assert core.counters.dropped_replay == before + 1
    # a forged ACK cannot keep a dead peer alive: the real probes stay unanswered
    sim.loss = 1.0
    assert sa.dpd is not None
    _run_until(sim, lambda: sa.dpd is not None and len(sa.dpd.outstanding) >= 2)
    stale = [NotifyPayload.dpd(sa.cookies, (sa.dpd.next_seq + 100) & 0xFFFFFFFF, ack=True)]
    sim.command("initiator", datagram(RIGHT, LEFT, _forge(sim, "initiator", stale)))
    _run_until(sim, lambda: "is dead" in sim.initiator.log_text())
    assert not sim.initiator.core.sas.children


def test_an_ack_for_an_outstanding_probe_ends_the_series() -> None:
    init, resp = mirrored(dpd=_dpd(), responder_dpd=OFF)
    sim = Simulation(init, resp, seed=61)
    _up(sim)
    sa = _isakmp(sim, "initiator")
    sim.loss = 1.0  # the real answers are lost...
    _run_until(sim, lambda: sa.dpd is not None and len(sa.dpd.outstanding) >= 2)
    assert sa.dpd is not None
    first = sa.dpd.outstanding[0]
    sim.loss = 0.0
    # ...but an answer to the first probe of the series still counts
    _inject(sim, "initiator", [NotifyPayload.dpd(sa.cookies, first, ack=True)])
    assert sa.dpd.series_start == 0.0 and not sa.dpd.outstanding
    sim.run(duration=TIMEOUT + DELAY)
    assert "dead" not in sim.initiator.log_text()
    assert len(sim.established_children("initiator")) == 1


# ------------------------------------------------------------------ per-definition tally


def test_a_dead_peer_is_tallied_for_its_phase1_definition_and_forgotten_at_reload() -> None:
    init, resp = mirrored(dpd=_dpd(DpdAction.CLEAR), responder_dpd=OFF)
    (p1,) = init.phase1.values()
    (p2,) = init.phase2.values()
    # numbers of the initiator's own (the peer's are 1 and 1): the tally must use these
    init = ConfigSnapshot.of([replace(p1, number=3)], [replace(p2, number=5, phase1_number=3)])
    sim = Simulation(init, resp, seed=54)
    sim.initiate(phase=2, number=5)
    sim.run(duration=5)
    sim.assert_keys_match(expected_pairs=2)
    _kill_network_until_dead(sim)
    core = sim.initiator.core
    assert core.counters.dpd_dead_peers == 1
    assert core.tally.entries() == (DefinitionCounts(Phase.PHASE1, 3, 0, 1),)
    assert sim.responder.core.tally.entries() == ()
    # the Stats of a listing carries it, and the parent's vetting accepts it for a
    # parent that knows phase 1 definition 3 (and refuses it for one that does not)
    (stats,) = [a for a in core.handle(ListCommand(9, Phase.ALL), sim.now) if isinstance(a, Stats)]
    assert stats.definitions == (DefinitionCounts(Phase.PHASE1, 3, 0, 1),)
    assert stats_problem(stats, ({3}, {5})) is None
    assert stats_problem(stats, ({1}, {5})) is not None
    # a reload without the definition drops its entry
    core.handle(ConfigBegin(2), sim.now)
    core.handle(ConfigPhase1(2, replace(p1, number=4)), sim.now)
    core.handle(ConfigEnd(2, 1, 0), sim.now)
    assert core.config.generation == 2 and core.tally.entries() == ()
