"""The core's state machines as data: the states of each exchange and its legal moves.

Compare h11's ``_state.py``: every state a record can be in is a member of a unique enum,
and every move from one state to another is an edge in one table per exchange and role.
The code changes a record's state only through `transition`, which refuses a move the
table does not list, so a reader learns an exchange's life from the table alone and a
move that is not in it fails loudly instead of leaving a record in a state no handler
expects. tests/test_core_states.py enumerates the tables: every state is reachable, every
edge is taken by some negotiation, every other move raises.

Machines, by the record and what selects its table:

* phase 1 (IsakmpSa.state, by exchange and role): `MAIN_MODE_INITIATOR`,
  `MAIN_MODE_RESPONDER`, `AGGRESSIVE_INITIATOR`, `AGGRESSIVE_RESPONDER`;
* Quick Mode (QuickExchange.state, by role): `QUICK_MODE_INITIATOR`,
  `QUICK_MODE_RESPONDER`;
* an IPsec SA pair in the kernel (ChildSa.state): `CHILD_SA`.

Phase 1 ends in DEAD from any state: a failure, an expiry, a Delete or the operator ends
the SA whatever it was doing, and nothing comes back from DEAD.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, unique
from itertools import pairwise
from typing import Any, Generic, Protocol, TypeVar, overload

from ikepriv.ipc.messages import Role
from ikepriv.isakmp.constants import ExchangeType


@unique
class P1State(Enum):
    # Main Mode
    I_SA_SENT = "MM1 sent"
    I_KE_SENT = "MM3 sent"
    I_SKEYID_WAIT = "waiting for SKEYID"
    I_AUTH_SENT = "MM5 sent"
    R_SA_SENT = "MM2 sent"
    R_SKEYID_WAIT = "MM3 received, waiting for SKEYID and our nonce"
    R_KE_SENT = "MM4 sent"
    # Aggressive Mode
    I_AM_NONCE_WAIT = "waiting for our nonce"
    I_AM1_SENT = "AM1 sent"
    I_AM_SKEYID_WAIT = "AM2 received, waiting for SKEYID"
    R_AM_SKEYID_WAIT = "AM1 received, waiting for SKEYID"
    R_AM2_SENT = "AM2 sent"
    # both
    ESTABLISHED = "established"
    DEAD = "dead"


NEGOTIATING = frozenset(s for s in P1State if s not in (P1State.ESTABLISHED, P1State.DEAD))


@unique
class QmState(Enum):
    I_SPI_WAIT = "initiator waiting for SPI"
    I_SENT = "QM1 sent"
    R_SPI_WAIT = "responder waiting for SPI"
    R_SENT = "QM2 sent"
    DONE = "done"


@unique
class ChildState(Enum):
    INSTALLING = "installing"
    ESTABLISHED = "established"
    DELETED = "deleted"


S = TypeVar("S", bound=Enum)


class IllegalTransition(RuntimeError):
    """A move the exchange's table does not list: a bug in the core, never peer input."""


@dataclass(frozen=True, slots=True)
class Machine(Generic[S]):
    """One exchange in one role: the state its record is created in, and for each state
    the states it may move to (a state absent from `moves` is final)."""

    name: str
    initial: S
    moves: Mapping[S, frozenset[S]]

    def states(self) -> frozenset[S]:
        return frozenset(
            {self.initial, *self.moves, *(t for ts in self.moves.values() for t in ts)}
        )

    def edges(self) -> frozenset[tuple[S, S]]:
        return frozenset((a, b) for a, targets in self.moves.items() for b in targets)

    def allows(self, old: S, new: S) -> bool:
        return new in self.moves.get(old, frozenset())

    def check(self, old: S, new: S) -> None:
        if not self.allows(old, new):
            raise IllegalTransition(f"{self.name}: {old.name} -> {new.name} is not a legal move")


def _phase1(name: str, initial: P1State, path: tuple[P1State, ...]) -> Machine[P1State]:
    """A phase 1 exchange: `initial`, then each state of `path` in turn, the last one
    ESTABLISHED; DEAD from every state but DEAD itself."""
    order = (initial, *path)
    moves = {a: frozenset({b, P1State.DEAD}) for a, b in pairwise(order)}
    moves[P1State.ESTABLISHED] = frozenset({P1State.DEAD})
    return Machine(name, initial, moves)


P = P1State
MAIN_MODE_INITIATOR = _phase1(
    "Main Mode initiator",
    P.I_SA_SENT,  # MM1 sent
    (P.I_KE_SENT, P.I_SKEYID_WAIT, P.I_AUTH_SENT, P.ESTABLISHED),  # MM2, MM4, SKEYID, MM6
)
MAIN_MODE_RESPONDER = _phase1(
    "Main Mode responder",
    P.R_SA_SENT,  # MM1 answered with MM2
    (P.R_SKEYID_WAIT, P.R_KE_SENT, P.ESTABLISHED),  # MM3; SKEYID and Nr back, MM4; MM5, MM6
)
AGGRESSIVE_INITIATOR = _phase1(
    "Aggressive Mode initiator",
    P.I_AM_NONCE_WAIT,  # our Ni asked of the parent
    (P.I_AM1_SENT, P.I_AM_SKEYID_WAIT, P.ESTABLISHED),  # AM1; AM2 received; SKEYID, AM3
)
AGGRESSIVE_RESPONDER = _phase1(
    "Aggressive Mode responder",
    P.R_AM_SKEYID_WAIT,  # AM1 received, SKEYID asked for
    (P.R_AM2_SENT, P.ESTABLISHED),  # SKEYID back, AM2 sent; AM3 received
)
del P

Q = QmState
QUICK_MODE_INITIATOR = Machine(
    "Quick Mode initiator",
    Q.I_SPI_WAIT,
    {
        Q.I_SPI_WAIT: frozenset({Q.I_SENT, Q.DONE}),  # SPI back, QM1 sent; or refused
        Q.I_SENT: frozenset({Q.DONE}),  # QM2 answered with QM3; or failed, timed out
    },
)
QUICK_MODE_RESPONDER = Machine(
    "Quick Mode responder",
    Q.R_SPI_WAIT,  # QM1 accepted, SPI asked for
    {
        Q.R_SPI_WAIT: frozenset({Q.R_SENT, Q.DONE}),  # SPI back, QM2 sent; or refused
        Q.R_SENT: frozenset({Q.DONE}),  # QM3 received; or timed out
    },
)
del Q

CHILD_SA = Machine(
    "IPsec SA",
    ChildState.INSTALLING,  # kernel requests sent
    {
        ChildState.INSTALLING: frozenset({ChildState.ESTABLISHED, ChildState.DELETED}),
        ChildState.ESTABLISHED: frozenset({ChildState.DELETED}),
    },
)

PHASE1_MACHINES: Mapping[tuple[ExchangeType, Role], Machine[P1State]] = {
    (ExchangeType.IDENTITY_PROTECTION, Role.INITIATOR): MAIN_MODE_INITIATOR,
    (ExchangeType.IDENTITY_PROTECTION, Role.RESPONDER): MAIN_MODE_RESPONDER,
    (ExchangeType.AGGRESSIVE, Role.INITIATOR): AGGRESSIVE_INITIATOR,
    (ExchangeType.AGGRESSIVE, Role.RESPONDER): AGGRESSIVE_RESPONDER,
}
QUICK_MODE_MACHINES: Mapping[Role, Machine[QmState]] = {
    Role.INITIATOR: QUICK_MODE_INITIATOR,
    Role.RESPONDER: QUICK_MODE_RESPONDER,
}
MACHINES: tuple[Machine[Any], ...] = (
    *PHASE1_MACHINES.values(),
    *QUICK_MODE_MACHINES.values(),
    CHILD_SA,
)


# ------------------------------------------------------------------------------ records


class Phase1Record(Protocol):
    """An ISAKMP SA as far as its state machine goes (sa_table.IsakmpSa)."""

    state: P1State
    role: Role
    exchange: ExchangeType


class QuickModeRecord(Protocol):
    """A Quick Mode exchange as far as its state machine goes (sa_table.QuickExchange)."""

    state: QmState
    role: Role


class ChildRecord(Protocol):
    """An IPsec SA pair as far as its state machine goes (sa_table.ChildSa)."""

    state: ChildState


def machine_of(record: Any) -> Machine[Any]:
    """The table that governs `record` (one of the three records above)."""
    state = record.state
    if isinstance(state, P1State):
        return PHASE1_MACHINES[(record.exchange, record.role)]
    if isinstance(state, QmState):
        return QUICK_MODE_MACHINES[record.role]
    if isinstance(state, ChildState):
        return CHILD_SA
    raise TypeError(f"no state machine for {type(record).__name__}")


@overload
def transition(record: Phase1Record, new: P1State) -> None: ...
@overload
def transition(record: QuickModeRecord, new: QmState) -> None: ...
@overload
def transition(record: ChildRecord, new: ChildState) -> None: ...
def transition(record: Any, new: Enum) -> None:
    """Move `record` to `new`, or raise IllegalTransition when its table has no such move."""
    machine_of(record).check(record.state, new)
    record.state = new
