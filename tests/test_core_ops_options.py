"""Operator options of issue 9 between two in-process cores: `encap = true` (forced UDP
encapsulation without a NAT) and `rekey = false` (this side never rekeys)."""

from __future__ import annotations

import dataclasses

import pytest
from harness.core_sim import Simulation, esp_proposal, ike_proposal, mirrored

from ikepriv.child_negotiator.core import natt
from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.ipc.messages import NatTEncap
from ikepriv.isakmp.constants import NATT_KEEPALIVE, NATT_PORT, ExchangeType

P2_LIFETIME = 600
P1_LIFETIME = 900
SIDES = ("initiator", "responder")


def _with(
    snap: ConfigSnapshot, p1: dict[str, object] | None = None, p2: dict[str, object] | None = None
) -> ConfigSnapshot:
    """`snap` with its (only) phase 1 and phase 2 definitions changed."""
    return ConfigSnapshot.of(
        [dataclasses.replace(d, **(p1 or {})) for d in snap.phase1.values()],  # type: ignore[arg-type]
        [dataclasses.replace(d, **(p2 or {})) for d in snap.phase2.values()],  # type: ignore[arg-type]
    )  # fmt: skip


def _advance(sim: Simulation, seconds: float) -> None:
    """Simulated time moves on by `seconds`, even when nothing happens on the way."""
    end = sim.now + seconds
    sim.run(duration=seconds)
    sim.now = max(sim.now, end)


# ------------------------------------------------------------------------------ encap


@pytest.mark.parametrize("forcing", SIDES)
@pytest.mark.parametrize("phase1_mode", [ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE])
def test_encap_true_moves_both_sides_to_4500_and_installs_esp_in_udp(
    forcing: str, phase1_mode: ExchangeType
) -> None:
    """No NAT between the gateways; one side has encap = true (the other plain NAT-T): both
    float to 4500 and every SA is ESP-in-UDP 4500 <-> 4500; nobody sends keepalives (there
    is no NAT mapping to keep open)."""
    init, resp = mirrored(esp=[esp_proposal()], nat_t=True, phase1_mode=phase1_mode)
    if forcing == "initiator":
        init = _with(init, {"encap": True})
    else:
        resp = _with(resp, {"encap": True})
    sim = Simulation(init, resp, seed=91)
    sim.initiate()
    sim.run(duration=60)
    sim.assert_keys_match(expected_pairs=2)
    for side in SIDES:
        adds = sim.sides[side].parent.sa_adds
        assert len(adds) == 2
        assert all(a.encap == NatTEncap(NATT_PORT, NATT_PORT) for a in adds), side
        (sa,) = sim.established_isakmp(side)
        assert sa.natt and sa.local.port == NATT_PORT and sa.remote.port == NATT_PORT
        st = natt.state_of(sa)
        assert st is not None and st.nat
    assert not any(d.data == NATT_KEEPALIVE for s in SIDES for d in sim.sides[s].sent)


def test_without_encap_and_without_nat_nothing_is_encapsulated() -> None:
    init, resp = mirrored(esp=[esp_proposal()], nat_t=True)
    sim = Simulation(init, resp, seed=92)
    sim.initiate()
    sim.run(duration=60)
    for side in SIDES:
        assert all(a.encap is None for a in sim.sides[side].parent.sa_adds)
        (sa,) = sim.established_isakmp(side)
        assert not sa.natt


# ------------------------------------------------------------------------------ rekey


def test_phase2_rekey_false_on_both_sides_lets_the_sa_expire() -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)])
    sim = Simulation(_with(init, p2={"rekey": False}), _with(resp, p2={"rekey": False}),
                     seed=93)  # fmt: skip
    sim.initiate()
    _advance(sim, P2_LIFETIME - 10)  # past every soft lifetime
    sim.assert_keys_match(expected_pairs=2)  # still the first pair, nothing new
    assert all(len(sim.established_children(s)) == 1 for s in SIDES)
    _advance(sim, 80)  # past the hard lifetime
    for side in SIDES:
        assert not sim.established_children(side), side
        assert len(sim.sides[side].parent.sa_adds) == 2  # never a second pair
        assert "rekeying" not in sim.sides[side].log_text()
        assert sim.sides[side].core.counters.phase2_rekeys == 0


@pytest.mark.parametrize("quiet", SIDES)
def test_phase2_rekey_false_on_one_side_leaves_the_rekey_to_the_peer(quiet: str) -> None:
    init, resp = mirrored(esp=[esp_proposal(lifetime=P2_LIFETIME)])
    if quiet == "initiator":
        init = _with(init, p2={"rekey": False})
    else:
        resp = _with(resp, p2={"rekey": False})
    sim = Simulation(init, resp, seed=94)
    sim.initiate()
    sim.run(duration=3 * P2_LIFETIME)
    other = SIDES[1 - SIDES.index(quiet)]
    assert sim.sides[quiet].core.counters.phase2_rekeys == 0
    assert sim.sides[other].core.counters.phase2_rekeys >= 3
    assert all(len(sim.established_children(s)) >= 1 for s in SIDES)


def test_phase1_rekey_false_never_starts_a_new_main_mode() -> None:
    ike = [ike_proposal(lifetime=P1_LIFETIME)]
    init, resp = mirrored(ike=ike, esp=[esp_proposal(lifetime=3 * P1_LIFETIME)])
    sim = Simulation(_with(init, {"rekey": False}), _with(resp, {"rekey": False}), seed=95)
    sim.initiate()
    _advance(sim, P1_LIFETIME - 10)
    assert all(len(sim.established_isakmp(s)) == 1 for s in SIDES)
    _advance(sim, 60)
    for side in SIDES:
        assert sim.sides[side].core.counters.phase1_rekeys == 0
        assert not sim.established_isakmp(side)  # expired, not replaced
        assert len(sim.established_children(side)) == 1  # the IPsec SAs live on
