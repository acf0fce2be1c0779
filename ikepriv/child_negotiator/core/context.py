"""What the exchange modules need from the engine, as a protocol they depend on instead.

Every module below the engine takes a `core: Core` argument. `Core` names exactly the
engine's services, tables and callbacks those modules use; the engine (engine.Negotiator)
satisfies it structurally, and mypy --strict checks that wherever the engine passes
itself. So the import graph runs one way, from the engine down, and a reader sees in one
place what an exchange may touch.

Callbacks are how a lower module reaches up without importing what is above it: install
tells the engine that a child SA was removed (`child_removed`, which lets the rekey logic
re-plan), Quick Mode that one was installed (`child_installed`), phase 1 that an ISAKMP SA
is up (`isakmp_established`), DPD that a phase 1 must start again (`start_phase1`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ikepriv.child_negotiator.core.certificates import ParsedCredentials
from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.cookies import CookieJar
from ikepriv.child_negotiator.core.datagram import Inbound, IPAddress
from ikepriv.child_negotiator.core.dpd_state import Restart
from ikepriv.child_negotiator.core.half_open import (
    HalfOpenTable,
    NotifyLimiter,
    UnprovenTable,
    WorkBudget,
)
from ikepriv.child_negotiator.core.hooks import Hooks
from ikepriv.child_negotiator.core.lifetimes import DeadlineIndex
from ikepriv.child_negotiator.core.retransmit import Flight
from ikepriv.child_negotiator.core.sa_table import (
    ChildSa,
    IsakmpSa,
    PolicySets,
    QuickExchange,
    SaTable,
)
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc.interning import Interner
from ikepriv.ipc.messages import (
    Endpoint,
    LogLevel,
    Phase1Def,
    StateReport,
)
from ikepriv.ipc.schema import Message as IpcMessage
from ikepriv.isakmp import NotifyPayload
from ikepriv.isakmp.constants import ExchangeType, NotifyType
from ikepriv.process_contract import Counters, DefinitionTally

Random = Callable[[int], bytes]
ReplyHandler = Callable[[Any], None]


class Services(Protocol):
    """Output, time, randomness and identifiers: what every exchange uses."""

    now: float
    random: Random
    settings: Settings
    counters: Counters
    tally: DefinitionTally  # the same rekeys and DPD failures, per definition
    hooks: Hooks

    def emit(self, message: IpcMessage) -> None: ...
    def log(self, level: LogLevel, text: str) -> None: ...
    def log_unproven(self, kind: str, level: LogLevel, text: str) -> None: ...
    def negotiating(
        self, phase1_number: int, peer: IPAddress | None = None, since: float | None = None
    ) -> bool: ...
    def request(
        self, make: Callable[[int], IpcMessage], reply: type, on_reply: ReplyHandler
    ) -> int: ...
    def nonce(self) -> bytes: ...
    def new_tunnel_id(self) -> int: ...
    def new_reqid(self) -> int: ...
    def new_message_id(self, sa: IsakmpSa) -> int: ...
    def wall(self, seconds_from_now: float) -> int: ...
    def wall_time(self) -> float: ...  # unix time: certificate validity
    def transmit(
        self, sa: IsakmpSa, flight: Flight, datagrams: tuple[bytes, ...], *, retransmit: bool
    ) -> None: ...
    def answer_duplicate(self, flight: Flight) -> None: ...
    def flight_timer(self, flight: Flight) -> bool: ...
    def notify_clear(
        self,
        local: Endpoint,
        remote: Endpoint,
        natt: bool,
        icookie: bytes,
        rcookie: bytes,
        notify_type: NotifyType,
    ) -> None: ...


class Tables(Protocol):
    """The state the engine owns and the exchanges read and change."""

    config: ConfigSnapshot
    sas: SaTable
    cookies: CookieJar
    half_open: HalfOpenTable  # responder exchanges whose peer proved its address
    half_open_own: HalfOpenTable  # exchanges we started (never compete with responders)
    unproven: UnprovenTable  # responder exchanges after a first message only
    responder_work: WorkBudget  # DH and SKEYID before proof (Aggressive Mode)
    notify_limit: NotifyLimiter
    policy_sets: PolicySets
    deadlines: DeadlineIndex
    pending_phase2: dict[int, list[int]]  # phase 1 number -> phase 2 numbers
    restarts: dict[int, Restart]  # phase 1 number -> restart after DPD
    credentials: Mapping[int, ParsedCredentials]  # usable signature definitions, parsed
    shared: Interner  # one object for equal values that many established SAs hold

    def responder_definitions(
        self, exchange: ExchangeType, local: IPAddress, peer: IPAddress
    ) -> tuple[Phase1Def, ...]: ...

    def responder_definition(
        self, exchange: ExchangeType, local: IPAddress, peer: IPAddress
    ) -> Phase1Def | None: ...
    def hooks_accept_peer(self, sa: IsakmpSa, inbound: Inbound) -> bool: ...


class Callbacks(Protocol):
    """Life-cycle events the engine handles: adding, establishing, failing and dropping
    SAs, and the news that lower modules pass up to the ones above them."""

    def touch(self, sa: IsakmpSa) -> None: ...
    def touch_child(self, child: ChildSa) -> None: ...
    def add_isakmp(self, sa: IsakmpSa) -> None: ...
    def prove(self, sa: IsakmpSa) -> bool: ...
    def may_answer_repeat(self, sa: IsakmpSa) -> bool: ...
    def isakmp_established(self, sa: IsakmpSa) -> None: ...
    def fail_isakmp(self, sa: IsakmpSa, reason: str) -> None: ...
    def drop_isakmp(self, sa: IsakmpSa) -> None: ...
    def report_isakmp(self, sa: IsakmpSa, request_id: int) -> StateReport: ...
    def start_phase1(
        self,
        d: Phase1Def,
        local: IPAddress | None = None,
        remote: IPAddress | None = None,
        *,
        via: IsakmpSa | None = None,
    ) -> IsakmpSa | None: ...
    def child_installed(self, child: ChildSa, qe: QuickExchange) -> None: ...
    def child_removed(self, child: ChildSa) -> None: ...
    def quick_mode_finished(self, qe: QuickExchange) -> None: ...


class Core(Services, Tables, Callbacks, Protocol):
    """The engine as the modules below it see it."""


# A handler for one notify type received in an authenticated informational: the engine
# builds the table (exchanges/informational.py's own handlers, and DPD's).
NotifyHandler = Callable[[Core, IsakmpSa, NotifyPayload], None]
