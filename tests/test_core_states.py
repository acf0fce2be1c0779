"""The state machines of states.py, enumerated: each table is well formed, every move it
lists is taken by an in-process negotiation, and every move it does not list raises.

The moves are observed, not inferred: Machine.check is wrapped while the scenarios below
run, so a move that some code makes without consulting the table would be missing here
(and one the table forbids would raise inside the scenario).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from enum import Enum
from types import SimpleNamespace
from typing import Any

import pytest
from harness.core_sim import Side, Simulation, mirrored

from ikepriv.child_negotiator.core import states
from ikepriv.child_negotiator.core.states import (
    MACHINES,
    PHASE1_MACHINES,
    QUICK_MODE_MACHINES,
    ChildState,
    IllegalTransition,
    Machine,
    P1State,
    QmState,
    transition,
)
from ikepriv.ipc.messages import (
    ErrorCode,
    Message,
    NonceRequest,
    Phase,
    Phase2Install,
    RemoveCommand,
    SkeyidRequest,
    SpiReply,
    SpiRequest,
)
from ikepriv.isakmp.constants import ExchangeType

MM = ExchangeType.IDENTITY_PROTECTION
AM = ExchangeType.AGGRESSIVE
Edge = tuple[str, Enum, Enum]  # (machine name, from, to)


# ------------------------------------------------------------------------------ tables


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_state_of_a_machine_is_reachable_from_its_initial_state(
    machine: Machine[Any],
) -> None:
    seen = {machine.initial}
    todo = [machine.initial]
    while todo:
        for nxt in machine.moves.get(todo.pop(), frozenset()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == machine.states()


@pytest.mark.parametrize(
    ("enum", "machines"),
    [
        (P1State, list(PHASE1_MACHINES.values())),
        (QmState, list(QUICK_MODE_MACHINES.values())),
        (ChildState, [states.CHILD_SA]),
    ],
)
def test_every_member_of_a_state_enum_belongs_to_a_machine(
    enum: type[Enum], machines: list[Machine[Any]]
) -> None:
    assert set(enum) == set().union(*(m.states() for m in machines))


def test_state_values_are_unique() -> None:
    """enum.unique: no member is an alias of another (R_SPI_WAIT was once I_SPI_WAIT)."""
    for enum in (P1State, QmState, ChildState):
        assert len(enum.__members__) == len(list(enum))
    assert QmState.R_SPI_WAIT is not QmState.I_SPI_WAIT


def _record(machine: Machine[Any], state: Enum) -> SimpleNamespace:
    for (exchange, role), m in PHASE1_MACHINES.items():
        if m is machine:
            return SimpleNamespace(state=state, role=role, exchange=exchange)
    for role, m in QUICK_MODE_MACHINES.items():
        if m is machine:
            return SimpleNamespace(state=state, role=role)
    return SimpleNamespace(state=state)


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_transition_takes_listed_moves_and_refuses_every_other(machine: Machine[Any]) -> None:
    enum = type(machine.initial)
    for old, new in itertools.product(enum, enum):
        record = _record(machine, old)
        if machine.allows(old, new):
            transition(record, new)
            assert record.state is new
        else:
            with pytest.raises(IllegalTransition):
                transition(record, new)
            assert record.state is old


# ------------------------------------------------------------------------------ negotiations


def _cut_after(sim: Simulation, side: str, delivered: int) -> None:
    """From the `delivered`+1-th datagram on, `side` receives only garbage (a dead link)."""
    count = 0

    def tamper(name: str, data: bytes) -> bytes | None:
        nonlocal count
        if name != side:
            return None
        count += 1
        return b"\x00" if count > delivered else None

    sim.tamper = tamper


def _refuse_spi(side: Side) -> None:
    answer = side.parent.answer

    def refusing(msg: Message) -> Message | None:
        if isinstance(msg, SpiRequest):
            return SpiReply(msg.request_id, ErrorCode.NOT_PERMITTED, 0)
        return answer(msg)

    side.parent.answer = refusing  # type: ignore[method-assign]


def _sim(mode: ExchangeType) -> Simulation:
    init, resp = mirrored(phase1_mode=mode)
    return Simulation(init, resp, seed=3)


def _full_life(mode: ExchangeType) -> None:
    """Phase 1 and Quick Mode in both roles, the IPsec SAs installed, then removed."""
    sim = _sim(mode)
    sim.initiate(phase=2, number=1)
    sim.run(duration=60)
    assert sim.established_children("initiator") and sim.established_children("responder")
    for name in ("initiator", "responder"):
        core = sim.sides[name].core
        for sa in list(core.sas.by_tunnel.values()):
            sim.command(name, RemoveCommand(Phase.PHASE1, sa.tunnel_id))
    sim.run(duration=60)


def _peer_goes_silent(mode: ExchangeType, side: str, delivered: int) -> None:
    sim = _sim(mode)
    _cut_after(sim, side, delivered)
    sim.initiate(phase=1, number=1)
    sim.run(duration=600)


def _parent_refuses_skeyid(mode: ExchangeType, side: str) -> None:
    sim = _sim(mode)
    sim.sides[side].parent.refuse.add(SkeyidRequest)
    sim.initiate(phase=1, number=1)
    sim.run(duration=600)


def _parent_refuses_nonce(mode: ExchangeType) -> None:
    sim = _sim(mode)
    sim.initiator.parent.refuse.add(NonceRequest)
    sim.initiate(phase=1, number=1)
    sim.run(duration=600)


def _parent_refuses_spi(side: str) -> None:
    sim = _sim(MM)
    _refuse_spi(sim.sides[side])
    sim.initiate(phase=2, number=1)
    sim.run(duration=60)


def _kernel_refuses_sa() -> None:
    sim = _sim(MM)
    sim.initiator.parent.refuse.add(Phase2Install)
    sim.initiate(phase=2, number=1)
    sim.run(duration=60)


SCENARIOS: list[Callable[[], None]] = [
    lambda: _full_life(MM),
    lambda: _full_life(AM),
    *(
        (lambda m=mode, s=side, k=k: _peer_goes_silent(m, s, k))
        for mode, side, k in [
            (MM, "initiator", 0),  # MM1 unanswered
            (MM, "initiator", 1),  # MM3 unanswered
            (MM, "initiator", 2),  # MM5 unanswered
            (MM, "responder", 1),  # MM2 unanswered
            (MM, "responder", 2),  # MM4 unanswered
            (AM, "initiator", 0),  # AM1 unanswered
            (AM, "responder", 1),  # AM2 unanswered
        ]
    ),
    *(
        (lambda m=mode, s=side: _parent_refuses_skeyid(m, s))
        for mode, side in [
            (MM, "initiator"),
            (MM, "responder"),
            (AM, "initiator"),
            (AM, "responder"),
        ]
    ),
    lambda: _parent_refuses_nonce(AM),
    lambda: _parent_refuses_nonce(MM),
    lambda: _parent_refuses_spi("initiator"),
    lambda: _parent_refuses_spi("responder"),
    _kernel_refuses_sa,
]


@pytest.fixture(scope="module")
def observed() -> Iterator[set[Edge]]:
    """Every move the scenarios make, as checked against the tables."""
    seen: set[Edge] = set()
    original = Machine.check

    def recording(self: Machine[Any], old: Enum, new: Enum) -> None:
        original(self, old, new)
        seen.add((self.name, old, new))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Machine, "check", recording)
        for scenario in SCENARIOS:
            scenario()
    yield seen


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_every_listed_move_is_taken_by_a_negotiation(
    machine: Machine[Any], observed: set[Edge]
) -> None:
    taken = {(old, new) for name, old, new in observed if name == machine.name}
    assert machine.edges() - taken == set()
