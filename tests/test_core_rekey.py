"""Rekeying between two in-process cores, on simulated time.

Phase 2: a new SA pair before the old one's lifetime ends, keys matching on both sides, the
old pair deleted only after the new one is in the kernel. Phase 1: a new ISAKMP SA, the
IPsec SAs untouched and carried over. Collisions (both peers rekey at once) end with one
surviving SA per tunnel, the same on both peers.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from harness.core_sim import (
    LEFT_NET,
    RIGHT_NET,
    SaAdd,
    SaDelete,
    Simulation,
    StandInParent,
    esp_proposal,
    ike_proposal,
    mirrored,
    phase2_def,
    selector,
)

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc.messages import (
    DefinitionCounts,
    KernelExpire,
    Phase,
    Phase2Install,
    RemoveCommand,
    Role,
    SaDirection,
    TunnelState,
)
from ikepriv.isakmp.constants import GroupId, ProtocolId

P2_LIFETIME = 600  # soft lifetime (rekey) between 480 and 540 s with the default margins


def _up(sim: Simulation) -> None:
    sim.initiate()
    sim.run(duration=60)
    sim.assert_keys_match(expected_pairs=2)


def assert_never_without_pair(parent: StandInParent) -> None:
    """Replaying the parent's kernel requests in order: once the first SA pair is in, some
    tunnel has both its inbound and its outbound SA at every step."""
    installed: dict[int, dict[int, SaDirection]] = {}  # tunnel id -> spi -> direction
    up = False
    for request in parent.kernel_log:
        if isinstance(request, SaAdd):
            installed.setdefault(request.tunnel_id, {})[request.spi] = request.direction
        elif isinstance(request, SaDelete):
            for spis in installed.values():
                spis.pop(request.spi, None)
        complete = any(set(spis.values()) == set(SaDirection) for spis in installed.values())
        if up:
            assert complete, f"no installed SA pair after {request}"
        up = up or complete
    assert up


def _live_pair(sim: Simulation) -> tuple[int, int]:
    """(initiator inbound SPI, initiator outbound SPI) of the one live phase 2 on both sides,
    once an overlap that may be running is over."""
    sim.run(duration=Settings().rekey_overlap + 5)
    (ichild,) = sim.established_children("initiator")
    (rchild,) = sim.established_children("responder")
    assert (ichild.spi_in, ichild.spi_out) == (rchild.spi_out, rchild.spi_in)
    return ichild.spi_in, ichild.spi_out


@pytest.mark.parametrize("pfs", [None, GroupId.MODP_1024])
def test_phase2_rekey_before_expiry_without_a_gap(pfs: GroupId | None) -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME, pfs=pfs)])
    sim = Simulation(init, resp, seed=31)
    _up(sim)
    old = _live_pair(sim)
    start = sim.now
    sim.run(duration=P2_LIFETIME - 30)  # past every soft lifetime, before the hard one
    assert sim.now < start + P2_LIFETIME
    new = _live_pair(sim)
    assert set(new).isdisjoint(old)
    # both directions of both generations have the same keys on both sides
    sim.assert_keys_match(expected_pairs=4)
    for name in ("initiator", "responder"):
        parent = sim.sides[name].parent
        assert {d.spi for d in parent.sa_deletes} == set(old)  # the old pair, nothing else
        assert not parent.policy_deletes  # the policies serve the new pair
        assert len(parent.policy_adds) == 3  # added once, with the first pair
        assert_never_without_pair(parent)
        new_adds = [a for a in parent.sa_adds if a.spi in new]
        assert len(new_adds) == 2 and len({a.reqid for a in parent.sa_adds}) == 1
        assert all(a.lifetimes.hard_seconds == P2_LIFETIME for a in new_adds)
    counters = [sim.sides[name].core.counters for name in ("initiator", "responder")]
    assert sum(c.phase2_rekeys for c in counters) == 1  # one side rekeyed, the other answered
    assert all(c.rekey_collisions == 0 and c.phase1_rekeys == 0 for c in counters)


def test_rekeys_repeat_for_as_long_as_the_tunnel_lives() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)])
    sim = Simulation(init, resp, seed=32)
    _up(sim)
    sim.run(duration=5 * P2_LIFETIME)
    pairs = sim.assert_keys_match()
    assert len(pairs) >= 2 * 6  # six generations at least, each both ways
    _live_pair(sim)
    for name in ("initiator", "responder"):
        assert_never_without_pair(sim.sides[name].parent)
        assert not sim.sides[name].parent.policy_deletes


def _early(fraction: float) -> Settings:
    """Settings that put the soft lifetime early (rekey first) or late."""
    return Settings(rekey_margin=10_000, rekey_margin_fraction=fraction)


def test_the_responder_may_rekey_too() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)])
    sim = Simulation(init, resp, seed=33, settings=_early(0.05), responder_settings=_early(0.3))
    _up(sim)
    old = _live_pair(sim)
    sim.run(duration=P2_LIFETIME - 60)
    new = _live_pair(sim)
    assert set(new).isdisjoint(old)
    (rchild,) = sim.established_children("responder")
    assert rchild.role is Role.INITIATOR  # the responder of phase 1 started this Quick Mode
    for name in ("initiator", "responder"):
        assert {d.spi for d in sim.sides[name].parent.sa_deletes} == set(old)
        assert_never_without_pair(sim.sides[name].parent)


def test_a_responder_for_any_peer_leaves_the_rekey_to_the_peer() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)], responder_peer=None)
    sim = Simulation(init, resp, seed=34, settings=_early(0.05), responder_settings=_early(0.3))
    _up(sim)
    old = _live_pair(sim)
    sim.run(duration=P2_LIFETIME - 20)
    new = _live_pair(sim)
    assert set(new).isdisjoint(old)
    (rchild,) = sim.established_children("responder")
    assert rchild.role is Role.RESPONDER
    assert all(sa.role is Role.RESPONDER for sa in sim.established_isakmp("responder"))
    assert "rekeying" not in sim.responder.log_text()


def test_a_selector_narrower_than_the_definition_is_rekeyed_as_negotiated() -> None:
    narrow_l, narrow_r = selector("198.51.100.0/26"), selector("198.51.100.128/26")
    init, resp = mirrored(
        esp=[esp_proposal(lifetime=P2_LIFETIME)],
        left_sel=narrow_l,
        right_sel=narrow_r,
        responder_left_sel=selector(LEFT_NET),
        responder_right_sel=selector(RIGHT_NET),
    )
    # the responder (whose definition is wider) rekeys
    sim = Simulation(init, resp, seed=35, settings=_early(0.05), responder_settings=_early(0.3))
    _up(sim)
    sim.run(duration=P2_LIFETIME - 60)
    _live_pair(sim)
    (rchild,) = sim.established_children("responder")
    assert rchild.role is Role.INITIATOR
    assert (rchild.selector_out.src, rchild.selector_out.dst) == (narrow_r, narrow_l)
    assert len(sim.responder.parent.policy_adds) == 3  # the same policies, not wider ones


@pytest.mark.parametrize("refusing", ["initiator", "responder"])
def test_a_failed_successor_puts_the_old_pair_back_at_once(refusing: str) -> None:
    """The kernel of one side refuses the new SAs: both sides learn it when it happens (not
    at the old pair's scheduled deletion, which the side that does not delete never has),
    keep the old pair in service, and the rekey is tried again and succeeds."""
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)])
    sim = Simulation(init, resp, seed=47, settings=_early(0.3), responder_settings=_early(0.05))
    _up(sim)
    old = _live_pair(sim)
    sim.sides[refusing].parent.refuse = {Phase2Install}
    icore = sim.initiator.core
    while not icore.counters.phase2_rekeys:
        sim.advance(1)
    sim.advance(1)  # the Quick Mode, the refusal and its Delete: far less than the overlap
    for name in ("initiator", "responder"):
        (child,) = sim.established_children(name)
        assert child.superseded_by == 0 and child.delete_at == 0.0, name
        assert {child.spi_in, child.spi_out} == set(old)
        # a responder's parent refuses before QM3 (the inbound half, before QM2 leaves):
        # its exchange fails and nothing replaced the old pair there
        learned = ("the parent refused the install" if (name, refusing) == ("responder",) * 2
                   else "replacement failed, keeping SA")  # fmt: skip
        assert learned in sim.sides[name].log_text(), name
    assert sim.sides[refusing].core.counters.phase2_failed == 1
    sim.sides[refusing].parent.refuse = set()
    sim.run(duration=Settings().rekey_retry + 10)
    assert icore.counters.phase2_rekeys == 2
    new = _live_pair(sim)
    assert set(new).isdisjoint(old)
    for name in ("initiator", "responder"):
        assert old[0] in {d.spi for d in sim.sides[name].parent.sa_deletes}
        assert_never_without_pair(sim.sides[name].parent)


# ---------------------------------------------------------------------------- kernel events


def test_soft_volume_expiry_from_the_kernel_starts_a_rekey() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=3600, kilobytes=50_000)])
    sim = Simulation(init, resp, seed=36)
    _up(sim)
    for add in sim.initiator.parent.sa_adds:
        assert add.lifetimes.hard_kilobytes == 50_000
        assert 0 < add.lifetimes.soft_kilobytes < 50_000
    old = _live_pair(sim)
    out_sa = next(a for a in sim.initiator.parent.sa_adds if a.direction is SaDirection.OUT)
    sim.command("initiator", KernelExpire(out_sa.spi, ProtocolId.IPSEC_ESP, out_sa.dst, False))
    sim.run(duration=60)  # far from any soft lifetime in seconds
    new = _live_pair(sim)
    assert set(new).isdisjoint(old)
    for name in ("initiator", "responder"):
        assert {d.spi for d in sim.sides[name].parent.sa_deletes} == set(old)
        assert_never_without_pair(sim.sides[name].parent)
    # a second soft event for the SA already replaced changes nothing
    adds = len(sim.initiator.parent.sa_adds)
    sim.command("initiator", KernelExpire(out_sa.spi, ProtocolId.IPSEC_ESP, out_sa.dst, False))
    sim.run(duration=60)
    assert len(sim.initiator.parent.sa_adds) == adds


def test_hard_expiry_from_the_kernel_cleans_up_both_sides() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=37)
    _up(sim)
    old = _live_pair(sim)
    in_sa = next(a for a in sim.initiator.parent.sa_adds if a.direction is SaDirection.IN)
    sim.command("initiator", KernelExpire(in_sa.spi, ProtocolId.IPSEC_ESP, in_sa.dst, True))
    sim.run(duration=30)
    for name in ("initiator", "responder"):
        parent = sim.sides[name].parent
        assert not sim.established_children(name)
        assert {d.spi for d in parent.sa_deletes} == set(old)
        assert len(parent.policy_deletes) == 3 and parent.installed_spis() == set()
    reports = [r for r in sim.initiator.parent.reports if r.phase is Phase.PHASE2]
    assert reports[-1].state is TunnelState.DELETING and reports[-1].spi_in == old[0]
    assert len(sim.established_isakmp("initiator")) == 1  # phase 1 is not affected


def test_unknown_kernel_expiry_is_ignored() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=38)
    _up(sim)
    sim.command(
        "initiator", KernelExpire(0x1234, ProtocolId.IPSEC_ESP, sim.initiator.address, True)
    )
    sim.run(duration=30)
    _live_pair(sim)
    assert not sim.initiator.parent.sa_deletes


def test_hard_lifetime_without_a_rekey_removes_the_sa() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)], responder_peer=None)
    sim = Simulation(init, resp, seed=39)
    _up(sim)
    old = _live_pair(sim)
    # the initiator's definition goes away (configuration reload): nobody rekeys any more
    icore = sim.initiator.core
    icore.config = ConfigSnapshot.of(icore.config.phase1.values(), [])
    sim.run(duration=P2_LIFETIME + 60)
    for name in ("initiator", "responder"):
        parent = sim.sides[name].parent
        assert not sim.established_children(name), name
        assert set(old) <= {d.spi for d in parent.sa_deletes}
        assert len(parent.policy_deletes) == 3
        assert len(parent.sa_adds) == 2  # no new pair


# ---------------------------------------------------------------------------- phase 1


def test_phase1_rekey_keeps_the_phase2_sas() -> None:
    init, resp = mirrored(ike=[ike_proposal(lifetime=600)], esp=[esp_proposal(lifetime=3600)])
    sim = Simulation(init, resp, seed=42)  # a seed whose jitter lets the initiator rekey first
    _up(sim)
    (old_i,) = sim.established_isakmp("initiator")
    spis = _live_pair(sim)
    sim.run(duration=590)
    (new_i,) = sim.established_isakmp("initiator")
    (new_r,) = sim.established_isakmp("responder")
    assert new_i is not old_i and new_i.cookies == new_r.cookies
    assert _live_pair(sim) == spis
    for name, sa in (("initiator", new_i), ("responder", new_r)):
        parent = sim.sides[name].parent
        assert len(parent.sa_adds) == 2 and not parent.sa_deletes and not parent.policy_deletes
        (child,) = sim.established_children(name)
        assert child.isakmp_tunnel_id == sa.tunnel_id  # re-parented
        assert len(parent.skeyid_requests) == 2
    assert sim.initiator.core.counters.phase1_rekeys == 1
    assert sim.responder.core.counters.phase1_rekeys == 0  # its soft lifetime comes later
    # the old ISAKMP SA was deleted with a Delete (both sides forgot it)
    assert old_i.cookies not in sim.responder.core.sas.by_cookies
    # a later Delete of the phase 2 travels over the new ISAKMP SA and is honoured
    (ichild,) = sim.established_children("initiator")
    sim.command("initiator", RemoveCommand(Phase.PHASE2, ichild.tunnel_id))
    sim.run(duration=30)
    assert not sim.established_children("responder")
    assert {d.spi for d in sim.responder.parent.sa_deletes} == set(spis)


def test_phase2_rekeys_keep_working_across_phase1_rekeys() -> None:
    init, resp = mirrored(ike=[ike_proposal(lifetime=600)], esp=[esp_proposal(lifetime=900)])
    sim = Simulation(init, resp, seed=42)
    _up(sim)
    sim.run(duration=3000)
    sim.assert_keys_match()
    _live_pair(sim)
    for name in ("initiator", "responder"):
        assert len(sim.established_isakmp(name)) == 1
        assert len(sim.sides[name].core.sas.by_tunnel) == 1
        assert_never_without_pair(sim.sides[name].parent)
        assert not sim.sides[name].parent.policy_deletes
    assert sim.initiator.core.counters.phase2_failed == 0


# ---------------------------------------------------------------------------- collisions

_NO_FUZZ = Settings(rekey_fuzz=0.0)  # both peers reach the soft lifetime at the same moment


def test_phase2_collision_leaves_one_sa_the_same_on_both_sides() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)])
    sim = Simulation(init, resp, seed=43, settings=_NO_FUZZ)
    _up(sim)
    old = _live_pair(sim)
    sim.run(duration=P2_LIFETIME - 30)
    for name in ("initiator", "responder"):
        assert len(sim.sides[name].parent.sa_adds) == 6, "both sides rekeyed: two new pairs"
        assert_never_without_pair(sim.sides[name].parent)
    sim.assert_keys_match(expected_pairs=6)
    new = _live_pair(sim)
    assert set(new).isdisjoint(old)
    # the survivor is the pair whose nonces rank higher, on both sides
    i_adds = sim.initiator.parent.sa_adds[2:]
    deleted = {d.spi for d in sim.initiator.parent.sa_deletes}
    assert deleted == {a.spi for a in sim.initiator.parent.sa_adds} - set(new)
    assert len(i_adds) == 4
    assert "both sides rekeyed" in sim.initiator.log_text()
    assert "both sides rekeyed" in sim.responder.log_text()
    for name in ("initiator", "responder"):
        counters = sim.sides[name].core.counters
        assert counters.phase2_rekeys == 1 and counters.rekey_collisions == 1


def test_phase1_collision_leaves_one_isakmp_sa() -> None:
    init, resp = mirrored(ike=[ike_proposal(lifetime=600)], esp=[esp_proposal(lifetime=3600)])
    # The initiator completes phase 1 one network latency (0.01 s) after the responder: a
    # margin longer by less than that makes both start their new Main Mode before either
    # hears of the other's.
    sim = Simulation(
        init,
        resp,
        seed=44,
        settings=Settings(rekey_fuzz=0.0, rekey_margin=60.005, rekey_margin_fraction=0.5),
        responder_settings=Settings(rekey_fuzz=0.0, rekey_margin=60, rekey_margin_fraction=0.5),
    )
    _up(sim)
    spis = _live_pair(sim)
    sim.run(duration=590)
    (sa_i,) = sim.established_isakmp("initiator")
    (sa_r,) = sim.established_isakmp("responder")
    assert sa_i.cookies == sa_r.cookies
    assert (
        len(sim.initiator.parent.skeyid_requests) + len(sim.responder.parent.skeyid_requests) == 6
    )
    assert _live_pair(sim) == spis
    for name, sa in (("initiator", sa_i), ("responder", sa_r)):
        (child,) = sim.established_children(name)
        assert child.isakmp_tunnel_id == sa.tunnel_id
        assert list(sim.sides[name].core.sas.by_tunnel.values()) == [sa]  # the rest deleted
        assert "both sides rekeyed" in sim.sides[name].log_text()
        counters = sim.sides[name].core.counters
        assert counters.phase1_rekeys == 1 and counters.rekey_collisions == 1


def test_rekey_survives_a_lossy_network() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)])
    sim = Simulation(init, resp, seed=45)
    _up(sim)
    old = _live_pair(sim)
    sim.loss, sim.duplicate, sim.reorder = 0.2, 0.2, 0.3
    sim.run(duration=P2_LIFETIME - 30)
    sim.loss = sim.duplicate = sim.reorder = 0.0
    sim.run(duration=60)
    new = _live_pair(sim)
    assert set(new).isdisjoint(old)
    for name in ("initiator", "responder"):
        assert_never_without_pair(sim.sides[name].parent)


def test_deadline_heap_tracks_every_sa() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)])
    sim = Simulation(init, resp, seed=46)
    _up(sim)
    core = sim.initiator.core
    deadline = core.next_deadline()
    assert deadline is not None
    (child,) = sim.established_children("initiator")
    assert deadline <= child.rekey_at
    # nothing is due before the deadline; at it, the work that was due gets done
    assert core.handle_timers(deadline - 1) == []
    assert core.next_deadline() == deadline
    assert len(core.deadlines) == 2  # one ISAKMP SA, one phase 2


# ------------------------------------------------------------------ per-definition tally


def test_a_phase2_rekey_is_tallied_for_its_definition() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)])
    (p1,) = init.phase1.values()
    (p2,) = init.phase2.values()
    # the initiator's numbers differ from the responder's (1, 1); a second phase 2
    # definition of the same phase 1 stays idle and must stay out of the tally
    idle = phase2_def(9, 4, selector("192.0.2.128/26"), selector("192.0.2.192/26"))
    init = ConfigSnapshot.of([replace(p1, number=4)],
                             [replace(p2, number=6, phase1_number=4), idle])  # fmt: skip
    sim = Simulation(init, resp, seed=31)
    sim.initiate(phase=2, number=6)
    sim.run(duration=60)
    sim.assert_keys_match(expected_pairs=2)
    sim.run(duration=P2_LIFETIME - 30)
    expected = {
        "initiator": (DefinitionCounts(Phase.PHASE2, 6, 1, 0),),
        "responder": (DefinitionCounts(Phase.PHASE2, 1, 1, 0),),
    }
    rekeyed = [name for name in expected if sim.sides[name].core.counters.phase2_rekeys]
    assert len(rekeyed) == 1  # one side rekeyed, the other answered
    for name, side in sim.sides.items():
        assert side.core.tally.entries() == (expected[name] if name in rekeyed else ())
        assert side.core.counters.phase1_rekeys == 0


def test_parallel_phase1_from_one_peer_is_not_a_collision() -> None:
    """A peer with several connections opens ISAKMP SAs at once (here: two definitions on
    its side, one on ours). Each establishes; ours keeps one for its own use and leaves the
    other to the peer (no Delete from us); nothing is counted or logged as a rekey collision."""
    init, resp = mirrored()
    twin = replace(init.phase1[1], number=2, name="twin")
    init = ConfigSnapshot.of([init.phase1[1], twin], list(init.phase2.values()))
    sim = Simulation(init, resp, seed=45)
    sim.initiate(phase=1, number=1)
    sim.initiate(phase=1, number=2)
    sim.run(duration=30)
    assert len(sim.established_isakmp("initiator")) == 2
    assert sim.responder.core.counters.phase1_established == 2
    for name in ("initiator", "responder"):
        counters = sim.sides[name].core.counters
        assert counters.rekey_collisions == 0, name
        assert "both sides rekeyed" not in sim.sides[name].log_text()
    assert sim.responder.core.counters.phase1_parallel == 1
    assert sim.responder.core.counters.deletes_received == 0
    assert sim.initiator.core.counters.deletes_received == 0


def two_connections() -> tuple[ConfigSnapshot, ConfigSnapshot]:
    """A peer with two connections to us: two phase 1 definitions on its side, each with
    its own phase 2; one phase 1 definition with both phase 2 on ours."""
    esp = [esp_proposal(lifetime=P2_LIFETIME)]
    lnet2, rnet2 = selector("203.0.113.0/25"), selector("203.0.113.128/25")
    init, resp = mirrored(esp=esp)
    p1 = init.phase1[1]
    init = ConfigSnapshot.of(
        [p1, replace(p1, number=2, name="twin")],
        [init.phase2[1], phase2_def(2, 2, lnet2, rnet2, esp)],
    )
    resp = ConfigSnapshot.of(
        list(resp.phase1.values()), [resp.phase2[1], phase2_def(2, 1, rnet2, lnet2, esp)]
    )
    return init, resp


def test_the_responder_rekeys_each_phase2_over_its_own_isakmp_sa() -> None:
    """A peer with two connections to us (two definitions on its side, each its own ISAKMP
    SA and its own phase 2; one phase 1 definition with both phase 2 on ours). When we rekey
    a phase 2, the Quick Mode goes over the ISAKMP SA it was negotiated on: the peer knows
    those selectors only there, and refuses them on the other one."""
    init, resp = two_connections()
    sim = Simulation(init, resp, seed=46, settings=_early(0.05), responder_settings=_early(0.3))
    sim.initiate(phase=2, number=1)
    sim.initiate(phase=2, number=2)
    sim.run(duration=60)
    assert len(sim.established_isakmp("responder")) == 2
    first = {c.definition.number: c.spi_in for c in sim.established_children("responder")}
    assert set(first) == {1, 2}
    sim.run(duration=P2_LIFETIME - 60)
    sim.run(duration=Settings().rekey_overlap + 5)
    responder = sim.responder.core.counters
    assert responder.phase2_rekeys >= 2
    assert responder.phase2_failed == 0
    assert sim.initiator.core.counters.dropped_policy == 0
    now = {c.definition.number: c.spi_in for c in sim.established_children("responder")}
    assert set(now) == {1, 2}
    assert all(now[n] != first[n] for n in now)
    for child in sim.established_children("responder"):
        assert child.role is Role.INITIATOR  # we, the responder of phase 1, rekeyed it


def test_a_delete_goes_over_the_isakmp_sa_its_phase2_was_negotiated_on() -> None:
    """The same two connections; we delete each phase 2. The Delete of each goes over the
    ISAKMP SA its Quick Mode ran on: the peer looks for the SPI among the SAs of that
    connection only, and an SPI deleted over the other one stays in its kernel (until
    its lifetime ends: a replaced SA of every rekey, when this side deletes it)."""
    init, resp = two_connections()
    sim = Simulation(init, resp, seed=47)
    sim.initiate(phase=2, number=1)
    sim.run(duration=30)
    sim.initiate(phase=2, number=2)  # the newer ISAKMP SA, on both sides
    sim.run(duration=30)
    assert len(sim.established_isakmp("responder")) == 2
    for child in sim.established_children("responder"):
        sim.command("responder", RemoveCommand(Phase.PHASE2, child.tunnel_id))
        sim.run(duration=10)
    initiator = sim.initiator.core
    assert initiator.counters.deletes_received == 2
    assert initiator.counters.deletes_unknown == 0
    assert not initiator.sas.children  # both gone, and from the kernel
    assert not sim.initiator.parent.installed_spis()
    assert not sim.responder.parent.installed_spis()
