"""The negotiation core: a sans-I/O state machine driven by IPC messages.

    core = Negotiator(config, now, random)
    actions = core.handle(message, now)     # any parent->child message
    actions = core.handle_timers(now)        # at core.next_deadline()

`actions` are child->parent messages (DatagramOut, SkeyidRequest, SpiRequest,
Phase2Install, Phase2Remove, StateReport, Log, ...). Requests carry a request id; the
continuation waiting for the reply is kept in a table keyed by that id, so other exchanges
go on meanwhile. Clock and randomness come from the caller: a run is a function of the
seed and the inputs.

Dispatch is by tables: parent messages by class, datagrams by exchange type
(EXCHANGES), first messages of phase 1 by exchange type (PHASE1_STARTERS), initiation by
phase 1 mode (PHASE1_INITIATORS). Aggressive Mode, DPD and NAT-T plug in by adding
entries and Hooks. Each datagram is decoded once; a duplicate is recognised by a digest
before any crypto runs.

Hostile input never raises: codec, crypto and DH errors end in a counted drop, plus a
notify where RFC 2408 wants one and only within the per-peer rate limit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from ikepriv.child_negotiator.core import dpd, fragments, informational_send, install, rekey, timers
from ikepriv.child_negotiator.core.certificates import (
    CredentialError,
    ParsedCredentials,
    load_credentials,
)
from ikepriv.child_negotiator.core.config_snapshot import (
    ConfigSnapshot,
    Credentials,
    SnapshotBuilder,
    SnapshotError,
)
from ikepriv.child_negotiator.core.context import NotifyHandler, Random, ReplyHandler
from ikepriv.child_negotiator.core.cookies import ZERO_COOKIE, CookieJar
from ikepriv.child_negotiator.core.datagram import Inbound, IPAddress
from ikepriv.child_negotiator.core.dpd_state import Restart
from ikepriv.child_negotiator.core.exchanges import aggressive_mode as phase1_aggressive
from ikepriv.child_negotiator.core.exchanges import informational, quick_mode
from ikepriv.child_negotiator.core.exchanges import main_mode as phase1_main
from ikepriv.child_negotiator.core.half_open import (
    HalfOpenTable,
    NotifyLimiter,
    UnprovenTable,
    WorkBudget,
)
from ikepriv.child_negotiator.core.hooks import Hooks
from ikepriv.child_negotiator.core.identities import as_identity
from ikepriv.child_negotiator.core.lifetimes import CHILD, ISAKMP, DeadlineIndex
from ikepriv.child_negotiator.core.list_pages import ListingCursors
from ikepriv.child_negotiator.core.natt import NatTHooks
from ikepriv.child_negotiator.core.offers import IkeChoice
from ikepriv.child_negotiator.core.retransmit import Backoff, Flight, TimerResult, datagram_digest
from ikepriv.child_negotiator.core.sa_table import (
    ChildSa,
    IsakmpSa,
    PolicySet,
    PolicySets,
    QuickExchange,
    SaTable,
)
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.child_negotiator.core.states import (
    NEGOTIATING,
    ChildState,
    P1State,
    QmState,
    transition,
)
from ikepriv.crypto.crypto_errors import CryptoError
from ikepriv.ipc.interning import Interner
from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.messages import (
    PROTOCOL_VERSION,
    ConfigBegin,
    ConfigCredential,
    ConfigEnd,
    ConfigPhase1,
    ConfigPhase2,
    DatagramIn,
    DatagramOut,
    Endpoint,
    Hello,
    InitiateCommand,
    KernelAcquire,
    KernelExpire,
    KeyLog,
    ListCommand,
    Log,
    LogLevel,
    NonceReply,
    PeerFlooded,
    Phase,
    Phase1Def,
    Ready,
    RemoveCommand,
    ResultReply,
    ResumeCommand,
    Role,
    Shutdown,
    SignatureReply,
    SkeyidReply,
    SpiReply,
    StateReport,
    StateReportEnd,
    TrafficSelector,
    TunnelState,
)
from ikepriv.ipc.schema import Message as IpcMessage
from ikepriv.isakmp import IsakmpError, NotifyPayload, build_message, decode_message, encode_message
from ikepriv.isakmp.constants import (
    IKE_PORT,
    SIGNATURE_METHODS,
    AuthMethod,
    ExchangeType,
    NotifyType,
)
from ikepriv.isakmp.fragment import decode_fragment_datagram, is_fragment_datagram
from ikepriv.process_contract import Counters, DefinitionTally, Partition

# Notifies in authenticated informationals, by type: informational.py's own, and DPD's.
NOTIFY_HANDLERS: Mapping[int, NotifyHandler] = {
    **informational.NOTIFY_HANDLERS,
    **dpd.NOTIFY_HANDLERS,
}


@functools.lru_cache(maxsize=256)
def _describe(choice: IkeChoice, lifetime: int | None) -> str:
    """IkeChoice.describe, kept for the few choices and lifetimes a daemon sees: listings
    describe every phase 1 (enum names and formatting, again and again)."""
    return choice.describe(lifetime)


def _on_informational(core: Negotiator, sa: IsakmpSa, inbound: Inbound) -> None:
    informational.on_message(core, sa, inbound, NOTIFY_HANDLERS)


# Datagrams for an existing ISAKMP SA, by exchange type.
EXCHANGES: dict[ExchangeType, Callable[[Negotiator, IsakmpSa, Inbound], None]] = {
    ExchangeType.IDENTITY_PROTECTION: phase1_main.on_message,
    ExchangeType.AGGRESSIVE: phase1_aggressive.on_message,
    ExchangeType.QUICK_MODE: quick_mode.on_message,
    ExchangeType.INFORMATIONAL: _on_informational,
}
# First message of a phase 1 exchange (responder cookie still zero), by exchange type.
PHASE1_STARTERS: dict[ExchangeType, Callable[[Negotiator, Inbound], None]] = {
    ExchangeType.IDENTITY_PROTECTION: phase1_main.on_first_message,
    ExchangeType.AGGRESSIVE: phase1_aggressive.on_first_message,
}
# Starting phase 1 as initiator, by (mode, auth method) of the definition.
# (local, remote, natt): where the exchange starts. The exchange modules branch on the
# method inside (exchanges/signature.py holds what signatures change).
PHASE1_INITIATORS: dict[
    tuple[ExchangeType, AuthMethod],
    Callable[[Negotiator, Phase1Def, Endpoint, Endpoint, bool], IsakmpSa | None],
] = {
    (mode, method): start
    for mode, start in (
        (ExchangeType.IDENTITY_PROTECTION, phase1_main.initiate),
        (ExchangeType.AGGRESSIVE, phase1_aggressive.initiate),
    )
    for method in (AuthMethod.PRE_SHARED_KEY, *sorted(SIGNATURE_METHODS))
}


UNPROVEN_LINES = 10  # lines of one kind about unauthenticated first messages per window
UNPROVEN_WINDOW = 10.0  # seconds
SHARED_VALUES = 256  # distinct values in Negotiator.shared; more are kept unshared
FLOOD_STALE = 5.0  # seconds after which our negotiation no longer stops a PeerFlooded one
_LISTS_PHASE1 = frozenset((Phase.ALL, Phase.PHASE1, Phase.PHASE1_PLUS))
_LISTS_PHASE2 = frozenset((Phase.ALL, Phase.PHASE2, Phase.PHASE1_PLUS))


class Negotiator:
    """The engine: owns the tables and the dispatch, and is the `context.Core` every module
    below it works through."""

    def __init__(
        self,
        config: ConfigSnapshot | None,
        now: float,
        random: Random,
        *,
        settings: Settings | None = None,
        hooks: Hooks | None = None,
        wall_clock_offset: float = 0.0,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.config = config if config is not None else ConfigSnapshot()
        self.now = now
        self.random = random
        self.settings = settings if settings is not None else Settings()
        self.hooks: Hooks = hooks if hooks is not None else NatTHooks()
        self.counters = Counters()
        self.tally = DefinitionTally()
        self.reassembly = fragments.Reassembly(self.settings, self.counters)
        self.sas = SaTable()
        self.cookies = CookieJar(random)
        s = self.settings
        # Three separate accountings of half-open phase 1 (see add_isakmp): our own
        # initiations and rekeys; responder exchanges whose peer proved its address (strict:
        # the newest is refused); responder exchanges after a first message only (cheap:
        # the oldest is evicted). Forged first messages only ever reach the last one.
        self.half_open = HalfOpenTable(
            s.half_open_max, s.half_open_max_per_peer, s.half_open_max_age
        )
        self.half_open_own = HalfOpenTable(
            s.half_open_max, s.half_open_max_per_peer, s.half_open_max_age
        )
        self.unproven = UnprovenTable(
            s.unproven_max, s.unproven_max_per_source, s.unproven_max_per_prefix,
            s.half_open_max_age,
        )  # fmt: skip
        self.responder_work = WorkBudget(
            s.am_budget_source, s.am_budget_prefix, s.am_budget_definition, s.am_budget_keys
        )
        self.notify_limit = NotifyLimiter(s.notify_period, s.notify_peers_tracked)
        self._listings: ListingCursors[tuple[IsakmpSa | None, ChildSa | None]] = ListingCursors()
        self.backoff = Backoff(
            s.retransmit_base, s.retransmit_factor, s.retransmit_max_interval, s.retransmit_tries
        )
        self.wall_clock_offset = wall_clock_offset
        # unix time for certificate validity; without one, the monotonic clock plus the
        # offset (the process passes time.time; a deterministic run passes its own)
        self._wall_clock = wall_clock
        # parsed credentials of the signature definitions that can be used
        self.credentials: Mapping[int, ParsedCredentials] = {}
        self.policy_sets = PolicySets()
        self.deadlines = DeadlineIndex()
        # a fresh child must not reuse reqids of SAs a previous child left in the kernel
        self._next_reqid = 1 + int.from_bytes(random(4), "big") % 0xFFFF0000
        # (ISAKMP SA tunnel id, phase 2 number): subnet pairs still to start (_start_phase2)
        self._pairs_waiting: set[tuple[int, int]] = set()
        # log_unproven: kind -> [window start, lines shown, lines left out]; fixed kinds
        self._unproven_lines: dict[str, list[float]] = {}
        self.pending_phase2: dict[int, list[int]] = {}  # phase 1 number -> phase 2 numbers
        self.restarts: dict[int, Restart] = {}  # phase 1 number -> restart after DPD
        self._builder: SnapshotBuilder | None = None
        self._out: list[IpcMessage] = []
        self._waiting: dict[int, tuple[type, ReplyHandler]] = {}
        self._next_request = 1
        self._next_tunnel = 1
        self.partition = Partition()  # which numbers are ours (Hello.shard/.shards)
        # one object for equal values every established SA would otherwise hold its own of
        # (the chosen phase 1 algorithms, the peer's vendor IDs): authenticated peers only
        self.shared = Interner(limit=SHARED_VALUES)
        self._handlers: dict[type, Callable[[Any], None]] = {
            DatagramIn: self._on_datagram,
            SkeyidReply: self._on_reply,
            NonceReply: self._on_reply,
            SpiReply: self._on_reply,
            ResultReply: self._on_reply,
            SignatureReply: self._on_reply,
            InitiateCommand: self._on_initiate,
            ResumeCommand: self._on_resume,
            RemoveCommand: self._on_remove,
            ListCommand: self._on_list,
            KernelAcquire: self._on_acquire,
            KernelExpire: self._on_expire,
            PeerFlooded: self._on_peer_flooded,
            ConfigBegin: self._on_config_begin,
            ConfigPhase1: self._on_config_item,
            ConfigPhase2: self._on_config_item,
            ConfigCredential: self._on_config_item,
            ConfigEnd: self._on_config_end,
            Hello: self._on_hello,
            Shutdown: self._on_shutdown,
        }
        self._load_credentials()  # a snapshot given at construction (tests, fuzzers)

    # ------------------------------------------------------------------ entry points

    def handle(self, message: IpcMessage, now: float) -> list[IpcMessage]:
        self.now = now
        handler = self._handlers.get(type(message))
        if handler is None:
            self.log(LogLevel.WARNING, f"ignored parent message {type(message).__name__}")
        else:
            handler(message)
        return self._take()

    def handle_timers(self, now: float) -> list[IpcMessage]:
        self.now = now
        self._refresh_deadlines()
        for due in self.deadlines.due(now):
            timers.run_due(self, due)
        for table in (self.half_open, self.half_open_own):
            for key in table.expired(now):
                sa = self.sas.by_tunnel.get(key)  # type: ignore[call-overload]
                table.remove(key)
                if sa is not None and sa.state in NEGOTIATING:
                    self.counters.half_open_expired += 1
                    self.fail_isakmp(sa, "half-open exchange expired")
        for key in self.unproven.expired(now):
            self.unproven.remove(key)
            sa = self.sas.by_tunnel.get(key)  # type: ignore[call-overload]
            if sa is not None and sa.state in NEGOTIATING:
                self.counters.half_open_expired += 1
                self.drop_isakmp(sa)  # nobody proved anything: not worth a log line
        self.reassembly.expire(now)
        return self._take()

    def next_deadline(self) -> float | None:
        """Cheap: one deadline per SA is kept in a heap (DeadlineIndex); only the
        SAs touched since the last call are recomputed."""
        self._refresh_deadlines()
        times = [
            t
            for t in (
                self.half_open.next_deadline(),
                self.half_open_own.next_deadline(),
                self.unproven.next_deadline(),
                self.reassembly.next_deadline(),
                self.deadlines.next(lambda key: timers.exists(self, key)),
            )
            if t is not None
        ]
        return min(times) if times else None

    def touch(self, sa: IsakmpSa) -> None:
        """`sa`'s timing may have changed: recompute its deadline before the next wait."""
        self.deadlines.mark((ISAKMP, sa.tunnel_id))

    def touch_child(self, child: ChildSa) -> None:
        self.deadlines.mark((CHILD, child.tunnel_id))

    def child_installed(self, child: ChildSa, qe: QuickExchange) -> None:
        """Quick Mode handed `child` to the kernel: its lifetimes, and what it replaces."""
        timers.on_child_installed(self, child, qe)

    def child_removed(self, child: ChildSa) -> None:
        """install.remove_child forgot `child`: SAs it was to replace learn it now."""
        rekey.on_child_removed(self, child)
        self.touch_child(child)

    def _refresh_deadlines(self) -> None:
        self.deadlines.refresh(lambda key: timers.deadline_of(self, key))

    # ------------------------------------------------------------------ services

    def _take(self) -> list[IpcMessage]:
        out, self._out = self._out, []
        return out

    def emit(self, message: IpcMessage) -> None:
        self._out.append(message)

    def log(self, level: LogLevel, text: str) -> None:
        clean = "".join(c if c.isprintable() else "?" for c in text)[:1000] or "?"
        self._out.append(Log(level, clean))

    def negotiating(
        self, phase1_number: int, peer: IPAddress | None = None, since: float | None = None
    ) -> bool:
        """Whether a phase 1 of this definition (with `peer`, when given; started at or
        after `since`, when given) is under way: ours, or the peer's once its second message
        proved its address. Responder state made by a first message alone is not (a forger's
        MM1 from the peer's address would otherwise hold up our own activation behind an
        exchange that never completes)."""
        group = (
            self.sas.of_definition(phase1_number)
            if peer is None
            else self.sas.with_peer(phase1_number, peer)
        )  # indexed: no pass over all
        return any(
            sa.state in NEGOTIATING
            and sa.tunnel_id not in self.unproven
            and (since is None or sa.created >= since)
            for sa in group
        )

    def log_unproven(self, kind: str, level: LogLevel, text: str) -> None:
        """A line caused by a first message nobody has authenticated: at most UNPROVEN_LINES
        of each `kind` (a fixed phrase of the caller's) per UNPROVEN_WINDOW seconds, then
        one line saying how many were left out, so a forger cannot turn its datagrams
        into log lines (syslog volume, and the parent's line budget)."""
        window = self._unproven_lines.get(kind)
        if window is None or self.now - window[0] >= UNPROVEN_WINDOW:
            if window is not None and window[2]:
                self.log(LogLevel.NOTICE, f"{window[2]} more lines like '{kind}' not logged "
                         f"in {UNPROVEN_WINDOW:.0f} s")  # fmt: skip
            window = self._unproven_lines[kind] = [self.now, 0, 0]
        if window[1] < UNPROVEN_LINES:
            window[1] += 1
            self.log(level, text)
        else:
            window[2] += 1
            self.counters.log_lines_suppressed += 1

    def new_tunnel_id(self) -> int:
        """A tunnel number of this child's class (Hello.shard: unique across children)."""
        tid = self._next_tunnel
        self._next_tunnel = self.partition.after(tid)
        return tid

    def new_reqid(self) -> int:
        """reqid of a new policy set (ties kernel policies to their SAs), of this child's
        class like its tunnel numbers."""
        reqid = self._next_reqid
        self._next_reqid = self.partition.after(reqid)
        return reqid

    def request(
        self, make: Callable[[int], IpcMessage], reply: type, on_reply: ReplyHandler
    ) -> int:
        """Send a request to the parent; `on_reply` runs when the reply with its id arrives."""
        rid = self._next_request
        self._next_request = rid + 1 if rid < 0xFFFFFFFF else 1
        while len(self._waiting) >= self.settings.max_pending_requests:
            oldest = next(iter(self._waiting))  # insertion order: the longest unanswered
            del self._waiting[oldest]
            self.counters.requests_abandoned += 1
            self.log(LogLevel.WARNING, f"no reply to request {oldest}: forgotten")
        self._waiting[rid] = (reply, on_reply)
        self.emit(make(rid))
        return rid

    def new_message_id(self, sa: IsakmpSa) -> int:
        self.touch(sa)  # a new exchange (or informational) on it
        for _ in range(16):
            mid = int.from_bytes(self.random(4), "big")
            if mid and mid not in sa.exchanges and mid not in sa.finished_mids:
                return mid
        raise ValueError("random source keeps repeating message IDs")

    def nonce(self) -> bytes:
        n = self.settings.nonce_bytes
        data = self.random(n)
        if len(data) != n:
            raise ValueError("random source returned a short nonce")
        return bytes(data)

    def transmit(
        self, sa: IsakmpSa, flight: Flight, datagrams: tuple[bytes, ...], *, retransmit: bool
    ) -> None:
        """Send a flight and remember it as the answer to the last accepted message.
        Phase 1 messages too large for the path go as IKE fragments (fragments.outbound),
        and the flight keeps the fragments, so a retransmission resends them all."""
        datagrams = fragments.outbound(sa, datagrams, self.counters)
        outs = tuple(DatagramOut(sa.local, sa.remote, sa.natt, d) for d in datagrams)
        for out in outs:
            self.emit(out)
        flight.sent(outs, self.now, self.backoff if retransmit else None)
        self.touch(sa)

    def answer_duplicate(self, flight: Flight) -> None:
        if flight.datagrams:
            self.counters.duplicates_answered += 1
            for out in flight.datagrams:
                self.emit(out)
        else:
            self.counters.dropped_replay += 1

    def notify_clear(
        self,
        local: Endpoint,
        remote: Endpoint,
        natt: bool,
        icookie: bytes,
        rcookie: bytes,
        notify_type: NotifyType,
    ) -> None:
        """An unencrypted notify about an ISAKMP SA, within the per-peer rate limit."""
        if not self.notify_limit.allow(remote.addr, self.now):
            self.counters.notifies_suppressed += 1
            return
        try:
            payload = NotifyPayload.isakmp(notify_type, icookie + rcookie)
            data = encode_message(
                build_message(icookie, rcookie, ExchangeType.INFORMATIONAL, 0, [payload])
            )
        except IsakmpError:
            return
        self.counters.notifies_sent += 1
        self.emit(DatagramOut(local, remote, natt, data))

    def wall(self, seconds_from_now: float) -> int:
        return max(0, int(self.now + self.wall_clock_offset + seconds_from_now))

    def wall_time(self) -> float:
        """Unix time now (certificate validity, CRL freshness)."""
        if self._wall_clock is not None:
            return self._wall_clock()
        return self.now + self.wall_clock_offset

    # ------------------------------------------------------------------ datagrams

    def _on_datagram(self, msg: DatagramIn) -> None:
        self.counters.datagrams_in += 1
        data = msg.data
        if is_fragment_datagram(data):
            whole = self._reassemble(msg)
            if whole is None:
                return
            if is_fragment_datagram(whole):  # fragments of fragments: no second round
                self.counters.fragments_dropped += 1
                return
            data = whole  # from here on, exactly as if it had come whole
        try:
            message = decode_message(data)
        except IsakmpError:
            self.counters.dropped_malformed += 1
            return
        inbound = Inbound(msg.local, msg.remote, msg.natt, data, datagram_digest(data), message)
        header = message.header
        try:
            sa = self.sas.by_cookies.get(header.icookie + header.rcookie)
            if sa is None:
                if header.rcookie == ZERO_COOKIE:
                    if header.exchange_type == ExchangeType.INFORMATIONAL:
                        sa = self.sas.initiating.get(header.icookie)
                    else:
                        starter = PHASE1_STARTERS.get(header.exchange_type)
                        if starter is None or header.message_id != 0 or message.encrypted:
                            self.counters.dropped_unknown_sa += 1
                        else:
                            starter(self, inbound)
                        return
                else:
                    sa = self.sas.initiating.get(header.icookie)
            if sa is None or not self.hooks_accept_peer(sa, inbound):
                self.counters.dropped_unknown_sa += 1
                return
            handler = EXCHANGES.get(header.exchange_type)
            if handler is None:
                self.counters.dropped_unexpected += 1
                return
            before = dpd.rejections(self.counters)
            try:
                handler(self, sa, inbound)
            finally:
                self.touch(sa)
            if dpd.rejections(self.counters) == before and sa.established:
                dpd.heard(self, sa)  # accepted: the peer is alive
                timers.count_octets(self, sa, len(data))
        except (IsakmpError, CryptoError, IpcError) as exc:
            self.counters.dropped_malformed += 1
            self.log(LogLevel.DEBUG, f"dropped datagram from {msg.remote.addr}: {exc}")

    def _reassemble(self, msg: DatagramIn) -> bytes | None:
        """Take one fragment datagram (fragments.py); the whole message once complete.

        Fragments are taken only for an exchange we hold, from its peer's address, whose
        definition accepts fragments, or for a first message from a source that a
        definition accepting fragments would answer; all else is dropped and counted, at
        the cost of parsing one header and one payload."""
        try:
            header, fragment = decode_fragment_datagram(msg.data)
        except IsakmpError:
            self.counters.fragments_dropped += 1
            return None
        cookies = header.icookie + header.rcookie
        first_source: IPAddress | None = None
        sa = self.sas.by_cookies.get(cookies)
        if sa is None and header.rcookie != ZERO_COOKIE:
            sa = self.sas.initiating.get(header.icookie)
        if sa is not None:
            if not fragments.accepts(sa.definition.fragmentation) or (
                msg.remote.addr != sa.remote.addr
            ):
                self.counters.fragments_dropped += 1
                return None
            key: object = sa.tunnel_id
        else:
            d = None
            if header.rcookie == ZERO_COOKIE and header.exchange_type in PHASE1_STARTERS:
                d = self.responder_definition(header.exchange_type, msg.local.addr, msg.remote.addr)
            if d is None or not fragments.accepts(d.fragmentation):
                self.counters.fragments_dropped += 1
                return None
            first_source = msg.remote.addr
            key = (msg.remote.addr, msg.remote.port, header.icookie)
        self.counters.fragments_received += 1
        whole = self.reassembly.add(key, fragment, cookies, self.now, first_source=first_source)
        if whole is not None and whole[:16] != cookies:
            self.counters.fragments_dropped += 1  # the pieces claim another exchange
            return None
        return whole

    def hooks_accept_peer(self, sa: IsakmpSa, inbound: Inbound) -> bool:
        return self.hooks.accept_peer(sa, inbound)

    # ------------------------------------------------------------------ replies

    def _on_reply(
        self, reply: SkeyidReply | NonceReply | SpiReply | ResultReply | SignatureReply
    ) -> None:
        entry = self._waiting.get(reply.request_id)
        if entry is None or not isinstance(reply, entry[0]):
            self.counters.dropped_stale_reply += 1
            return
        del self._waiting[reply.request_id]
        try:
            entry[1](reply)
        except (IsakmpError, CryptoError, IpcError) as exc:
            self.counters.dropped_malformed += 1
            self.log(LogLevel.ERR, f"reply {reply.request_id} could not be used: {exc}")

    # ------------------------------------------------------------------ phase 1 life

    def responder_definition(
        self, exchange: ExchangeType, local: IPAddress, peer: IPAddress
    ) -> Phase1Def | None:
        """The definition for a peer that starts phase 1: an exact remote address beats a
        wildcard one; then the lowest number. The parent picks the PSK the same way."""
        found = self.responder_definitions(exchange, local, peer)
        return found[0] if found else None

    def responder_definitions(
        self, exchange: ExchangeType, local: IPAddress, peer: IPAddress
    ) -> tuple[Phase1Def, ...]:
        """Every definition that may answer this peer, best first (exact remote address,
        then wildcard; each by number). Signature definitions whose files did not load are
        left out: they cannot authenticate anyone."""
        exact, wild = self.config.for_peer(exchange, local, peer)  # indexed: no scan
        return tuple(
            d
            for d in (*exact, *wild)
            if d.auth_method not in SIGNATURE_METHODS or d.number in self.credentials
        )

    def add_isakmp(self, sa: IsakmpSa) -> None:
        """A new phase 1 exchange: ours counts in our own table (start_phase1 checked the
        bound); a peer's is unproven until `prove`, and may push out older unproven ones."""
        self.sas.add(sa)
        if sa.role is Role.INITIATOR:
            self.half_open_own.add(sa.tunnel_id, sa.remote.addr, self.now)
        else:
            for key in self.unproven.add(sa.tunnel_id, sa.remote.addr, self.now):
                old = self.sas.by_tunnel.get(key)  # type: ignore[call-overload]
                if old is not None and old.state in NEGOTIATING:
                    self.counters.half_open_evicted += 1
                    self.drop_isakmp(old)
        self.touch(sa)

    def prove(self, sa: IsakmpSa) -> bool:
        """The peer of a responder exchange sent its second message: it echoed our
        cookie, so it receives at its address. From now on the exchange counts against the
        strict bounds; False (exchange dropped, counted) when they are full."""
        if sa.tunnel_id not in self.unproven:
            return True
        self.unproven.remove(sa.tunnel_id)
        if not self.half_open.admit(sa.remote.addr):
            self.counters.dropped_half_open += 1
            self.drop_isakmp(sa)
            return False
        self.half_open.add(sa.tunnel_id, sa.remote.addr, self.now)
        return True

    def may_answer_repeat(self, sa: IsakmpSa) -> bool:
        """Whether a repeated first message of an unproven exchange gets our stored reply
        again: a few times only, so a forged source gets no amplification."""
        if sa.tunnel_id not in self.unproven:
            return True
        if sa.flight.sent_count > self.settings.unproven_repeats:
            return False
        sa.flight.sent_count += 1
        return True

    def fail_isakmp(self, sa: IsakmpSa, reason: str) -> None:
        if sa.state is P1State.DEAD:
            return
        self.log(
            LogLevel.ERR,
            f"phase 1 tunnel {sa.tunnel_id} ({sa.definition.name}) with {sa.remote.addr} "
            f"failed: {reason}",
        )
        if sa.state in NEGOTIATING:
            self.counters.phase1_failed += 1
        self.drop_isakmp(sa)
        pending = self.pending_phase2.pop(sa.definition.number, [])
        for number in pending:
            self.counters.phase2_failed += 1
            self.log(LogLevel.ERR, f"phase 2 {number} not started: its phase 1 failed")
        dpd.on_phase1_failed(self, sa)

    def drop_isakmp(self, sa: IsakmpSa) -> None:
        """Forget an ISAKMP SA (its IPsec SAs stay: they live in the kernel on their own)."""
        transition(sa, P1State.DEAD)
        for qe in sa.exchanges.values():
            qe.wipe()
            install.remove_half(self, qe)  # a responder's inbound half still without QM3
        sa.exchanges.clear()
        sa.wipe()
        self.half_open.remove(sa.tunnel_id)
        self.half_open_own.remove(sa.tunnel_id)
        self.unproven.remove(sa.tunnel_id)
        self.reassembly.forget(sa.tunnel_id)
        self.sas.remove(sa)
        self.touch(sa)

    def isakmp_established(self, sa: IsakmpSa) -> None:
        transition(sa, P1State.ESTABLISHED)
        sa.established_at = self.now
        sa.flight.stop_timer()
        sa.clear_negotiation()
        # what every SA of a gateway negotiates alike is held once (bounded: see Interner)
        sa.choice = self.shared.one(sa.choice)
        sa.peer_vendor_ids = self.shared.one(sa.peer_vendor_ids)
        self.half_open.remove(sa.tunnel_id)
        self.half_open_own.remove(sa.tunnel_id)
        self.unproven.remove(sa.tunnel_id)
        self.counters.phase1_established += 1
        self.emit(self.report_isakmp(sa, 0))  # the parent logs the line from it
        if self.settings.keylog and sa.keys is not None:
            self.emit(KeyLog(sa.icookie, bytes(sa.keys.enc_key)))
        if sa.keys is not None:
            sa.keys.shed_phase1_keys()
        timers.on_isakmp_established(self, sa)
        for number in self.pending_phase2.pop(sa.definition.number, []):
            self._start_phase2(number, sa)

    def report_isakmp(self, sa: IsakmpSa, request_id: int) -> StateReport:
        """One phase 1 for a listing (or the parent's records on establishment). A listing
        of 10,000 tunnels builds 10,000 of these: our own ID is the definition's (the very
        value we send), and the algorithm text is formatted once per choice and lifetime."""
        if sa.state is P1State.ESTABLISHED:
            state = TunnelState.ESTABLISHED
        elif sa.state is P1State.DEAD:
            state = TunnelState.DELETING
        else:
            state = TunnelState.NEGOTIATING
        return StateReport(
            request_id=request_id,
            phase=Phase.PHASE1,
            number=sa.definition.number,
            tunnel_id=sa.tunnel_id,
            phase1_tunnel_id=None,
            role=sa.role,
            state=state,
            local=sa.local,
            remote=sa.remote,
            local_id=sa.definition.local_id,
            remote_id=as_identity(sa.peer_id) if sa.peer_id is not None else None,
            algorithms=_describe(sa.choice, sa.lifetime or None) if sa.choice else "",
            expires_at=self.wall(sa.established_at + sa.lifetime - self.now)
            if sa.established
            else 0,
            spi_in=0,
            spi_out=0,
            peer_cert_subject=sa.peer_cert_subject,
            peer_cert_issuer=sa.peer_cert_issuer,
        )

    def flight_timer(self, flight: Flight) -> bool:
        """Resend a flight whose time has come; True when its tries are used up."""
        result = flight.on_timer(self.now, self.backoff)
        if result is TimerResult.RESEND:
            self.counters.retransmits += 1
            for out in flight.datagrams:
                self.emit(out)
        elif result is TimerResult.GIVE_UP:
            self.counters.exchanges_timed_out += 1
            return True
        return False

    # ------------------------------------------------------------------ commands

    def _on_initiate(self, cmd: InitiateCommand) -> None:
        if cmd.phase == Phase.PHASE1:
            d = self.config.phase1.get(cmd.number)
            if d is None:
                self.log(LogLevel.ERR, f"activate: no phase 1 definition {cmd.number}")
                return
            self.start_phase1(d, cmd.local_override, cmd.remote_override)
            return
        p2 = self.config.phase2.get(cmd.number)
        if p2 is None:
            self.log(LogLevel.ERR, f"activate: no phase 2 definition {cmd.number}")
            return
        sa = self.sas.established_for(p2.phase1_number)
        if sa is not None:
            self._start_phase2(p2.number, sa)
            return
        queue = self.pending_phase2.setdefault(p2.phase1_number, [])
        if p2.number not in queue:
            queue.append(p2.number)
        if not self.negotiating(p2.phase1_number):
            d1 = self.config.phase1.get(p2.phase1_number)
            if d1 is not None:
                self.start_phase1(d1, cmd.local_override, cmd.remote_override)

    def _on_peer_flooded(self, msg: PeerFlooded) -> None:
        """The parent had to drop first messages from this peer's address (forgeries
        carrying it, at a rate that drowns the peer's own): initiate towards it ourselves,
        for each definition that may and has no phase 1 established or under way with it.
        Our exchanges are live traffic at the parent, never queued behind forgeries; the
        peer's pending phase 2 then runs over this phase 1. At most what the peer itself
        could start: only configured definitions for this exact address."""
        # indexed: a forger flooding from every configured peer's address gets one lookup
        # per peer and second, never a pass over all definitions
        for d in self.config.by_remote.get(msg.peer, ()):
            if self.sas.established_for(d.number, msg.peer):
                continue
            # an exchange of ours still going after FLOOD_STALE seconds has probably lost its
            # peer (which may be the one whose first messages drown): one more may start
            if self.negotiating(d.number, msg.peer, since=self.now - FLOOD_STALE):
                continue
            self.log(
                LogLevel.NOTICE,
                f"phase 1 {d.name}: first messages from {msg.peer} are being dropped "
                "(a flood with its address?); initiating towards it",
            )
            if self.start_phase1(d) is not None:
                self.counters.flood_initiations += 1

    def _on_resume(self, cmd: ResumeCommand) -> None:
        """A tunnel of the previous child (see ResumeCommand): its policy set keeps the
        reqid the kernel policies carry, then phase 2 is negotiated as on activation."""
        if cmd.number not in self.config.phase2:
            self.log(LogLevel.ERR, f"resume: no phase 2 definition {cmd.number}")
            return
        if cmd.reqid:
            self.policy_sets.add((cmd.number, cmd.selector), PolicySet(cmd.reqid, cmd.remote))
        if self._next_tunnel <= cmd.last_tunnel_id < 0xFFFFFFFF:
            self._next_tunnel = self.partition.after(cmd.last_tunnel_id)  # old SAs keep theirs
        if cmd.reqid:  # the old pairs go once the new SAs are in, as after a rekey
            for pair in cmd.old:
                if pair.tunnel_id <= cmd.last_tunnel_id:
                    rekey.adopt_resumed(self, self.config.phase2[cmd.number], pair,
                                        reqid=cmd.reqid, selector=cmd.selector,
                                        local=cmd.local, remote=cmd.remote)  # fmt: skip
        self._on_initiate(InitiateCommand(Phase.PHASE2, cmd.number, cmd.local, cmd.remote))

    def start_phase1(
        self,
        d: Phase1Def,
        local: IPAddress | None = None,
        remote: IPAddress | None = None,
        *,
        via: IsakmpSa | None = None,
    ) -> IsakmpSa | None:
        """Initiate phase 1 for `d`, from port 500 to port 500. `via` is the ISAKMP SA a
        rekey replaces: when it runs over the NAT-T ports, the new exchange starts on them
        (RFC 3947 allows it), since a NAT in front of the peer may map port 4500 only."""
        peer = remote if remote is not None else d.remote_addr
        if peer is None:
            self.log(LogLevel.ERR, f"phase 1 {d.name}: no remote address to initiate to")
            return None
        start = PHASE1_INITIATORS.get((d.mode, d.auth_method))
        if start is None:
            self.log(
                LogLevel.ERR, f"phase 1 {d.name}: {d.mode.name}/{d.auth_method.name} not supported"
            )
            return None
        if d.auth_method in SIGNATURE_METHODS and d.number not in self.credentials:
            self.log(LogLevel.ERR, f"phase 1 {d.name}: its certificate files are not usable")
            return None
        if not self.half_open_own.admit(peer):  # ours only: responders never block this
            self.counters.dropped_half_open += 1
            self.log(LogLevel.WARNING, f"phase 1 {d.name}: too many half-open exchanges")
            return None
        if via is not None and via.natt and via.remote.addr == peer:
            return start(self, d, via.local, via.remote, True)
        here = local if local is not None else d.local_addr
        return start(self, d, Endpoint(here, IKE_PORT), Endpoint(peer, IKE_PORT), False)

    def _start_phase2(self, number: int, sa: IsakmpSa) -> None:
        p2 = self.config.phase2.get(number)
        if p2 is None:
            return
        pairs = p2.pairs
        if len(pairs) == 1:
            quick_mode.initiate(self, p2, sa)
            return
        # several subnets per side: one Quick Mode per (local, remote) pair not yet up, at
        # most OWN_IN_FLIGHT of ours at a time; the next start as they finish
        # (quick_mode_finished)
        missing = [
            (local, remote)
            for local, remote in pairs
            if not self._pair_up(p2.number, TrafficSelector(local, remote), sa)
        ]
        room = max(0, quick_mode.OWN_IN_FLIGHT - quick_mode.own_in_flight(sa, p2.number))
        for local, remote in missing[:room]:
            quick_mode.initiate(self, p2, sa, (local, remote))
        key = (sa.tunnel_id, p2.number)
        if missing[room:]:
            self._pairs_waiting.add(key)
        else:
            self._pairs_waiting.discard(key)

    def quick_mode_finished(self, qe: QuickExchange) -> None:
        """One of our Quick Modes ended (done or failed): the next waiting subnet pairs of
        its definition start, if its ISAKMP SA is still the live one."""
        sa = qe.isakmp
        key = (sa.tunnel_id, qe.definition.number)
        if qe.role is not Role.INITIATOR or key not in self._pairs_waiting:
            return
        self._pairs_waiting.discard(key)
        if self.sas.by_tunnel.get(sa.tunnel_id) is sa and sa.state is P1State.ESTABLISHED:
            self._start_phase2(qe.definition.number, sa)

    def _pair_up(self, number: int, selector: TrafficSelector, sa: IsakmpSa) -> bool:
        """A live SA or a running Quick Mode of phase 2 `number` for exactly `selector`."""
        for qe in sa.exchanges.values():
            if (
                qe.definition.number == number
                and qe.state is not QmState.DONE
                and TrafficSelector(qe.local_sel, qe.remote_sel) == selector
            ):
                return True
        return any(
            c.state is not ChildState.DELETED and not c.resumed and c.selector_out == selector
            for c in self.sas.children.of_tunnel(number, sa.remote.addr)
        )

    def _on_acquire(self, msg: KernelAcquire) -> None:
        if msg.phase2_number is None:
            self.log(LogLevel.NOTICE, "kernel acquire without a matching phase 2 definition")
            return
        p2 = self.config.phase2.get(msg.phase2_number)
        # a Quick Mode of the phase 2 runs under an ISAKMP SA of its phase 1: only those
        # are looked at (a phase 2 no longer configured cannot be initiated anyway)
        for sa in self.sas.of_definition(p2.phase1_number) if p2 is not None else ():
            for qe in sa.exchanges.values():
                if qe.definition.number == msg.phase2_number and qe.state is not QmState.DONE:
                    return  # already negotiating
        self._on_initiate(InitiateCommand(Phase.PHASE2, msg.phase2_number, None, None))

    def _on_expire(self, msg: KernelExpire) -> None:
        timers.on_kernel_expire(self, msg)  # soft: rekey; hard: the SA is gone

    def _on_remove(self, cmd: RemoveCommand) -> None:
        if cmd.phase == Phase.PHASE2:
            child = self.sas.children.get(cmd.tunnel_id)
            if child is None:
                self.log(LogLevel.NOTICE, f"remove: no phase 2 tunnel {cmd.tunnel_id}")
                return
            install.remove_child(self, child, send_delete=True, kernel=True)
            return
        sa = self.sas.by_tunnel.get(cmd.tunnel_id)
        if sa is None:
            self.log(LogLevel.NOTICE, f"remove: no phase 1 tunnel {cmd.tunnel_id}")
            return
        self.remove_phase1(sa)

    def remove_phase1(self, sa: IsakmpSa) -> None:
        """Delete an ISAKMP SA and the IPsec SAs negotiated for its definition and peer."""
        dpd.cancel_restart(self, sa.definition.number)
        for child in self.sas.children.of_phase1(sa.definition.number, sa.remote.addr):
            install.remove_child(self, child, send_delete=sa.established, kernel=True)
        if sa.established:
            informational_send.send_delete_isakmp(self, sa)
        self.log(LogLevel.INFO, f"phase 1 {sa.definition.name} with {sa.remote.addr} removed")
        self.drop_isakmp(sa)

    def _on_list(self, cmd: ListCommand) -> None:
        """One page of the listing (see ListCommand): the tunnels of `cmd.phase` above
        `cmd.after`, lowest tunnel id first, at most LIST_PAGE; then the counters if asked."""
        count = 0
        if cmd.rows:
            for sa, child in self._list_page(cmd.phase, cmd.after):
                if sa is not None:
                    self.emit(self.report_isakmp(sa, cmd.request_id))
                elif child is not None:
                    self.emit(install.report_child(self, child, cmd.request_id))
                count += 1
        if cmd.counters:
            self.emit(self.counters.stats(cmd.request_id, self.tally))
        self.emit(StateReportEnd(cmd.request_id, count))

    def _list_page(self, phase: Phase, after: int) -> list[tuple[IsakmpSa | None, ChildSa | None]]:
        """The next page's tunnels in tunnel-id order (list_pages.ListingCursors)."""
        return self._listings.page(
            phase,
            after,
            functools.partial(self._listable_ids, phase),
            functools.partial(self._listable, phase),
        )

    def _listable_ids(self, phase: Phase) -> list[int]:
        ids: list[int] = []
        if phase in _LISTS_PHASE1:
            ids += self.sas.by_tunnel
        if phase in _LISTS_PHASE2:
            ids += self.sas.children
        return ids

    def _listable(
        self, phase: Phase, tunnel_id: int
    ) -> tuple[IsakmpSa | None, ChildSa | None] | None:
        if phase in _LISTS_PHASE1:
            sa = self.sas.by_tunnel.get(tunnel_id)
            # not a first message nobody proved yet: a forger's, maybe (stats)
            if sa is not None and tunnel_id not in self.unproven:
                return sa, None
        if phase in _LISTS_PHASE2:
            child = self.sas.children.get(tunnel_id)
            # a resumed SA is a previous child's: the parent lists its records
            if child is not None and not child.resumed:
                return None, child
        return None

    def _on_shutdown(self, _msg: Shutdown) -> None:
        for sa in self.sas.isakmp_sas():
            self.remove_phase1(sa)
        for child in list(self.sas.children.values()):
            install.remove_child(self, child, send_delete=False, kernel=True)

    def _on_hello(self, msg: Hello) -> None:
        self.partition = Partition(msg.shard, msg.shards)
        self._next_tunnel = self.partition.at_or_after(self._next_tunnel)
        self._next_reqid = self.partition.at_or_after(self._next_reqid)
        self.emit(Ready(PROTOCOL_VERSION))

    # ------------------------------------------------------------------ configuration

    def _on_config_begin(self, msg: ConfigBegin) -> None:
        self._builder = SnapshotBuilder(msg)

    def _on_config_item(self, msg: ConfigPhase1 | ConfigPhase2 | ConfigCredential) -> None:
        if self._builder is None:
            self.log(LogLevel.ERR, "configuration item outside ConfigBegin/ConfigEnd")
            return
        try:
            self._builder.add(msg)
        except SnapshotError as exc:
            self.log(LogLevel.ERR, f"configuration refused: {exc}")
            self._builder = None

    def _on_config_end(self, msg: ConfigEnd) -> None:
        if self._builder is None:
            self.log(LogLevel.ERR, "ConfigEnd without ConfigBegin")
            return
        try:
            self.config = self._builder.finish(msg)
            self.tally.forget_except(self.config.phase1, self.config.phase2)
            self._load_credentials()
            self.log(LogLevel.INFO, f"configuration generation {msg.generation} loaded")
        except SnapshotError as exc:
            self.log(LogLevel.ERR, f"configuration refused: {exc}")
        self._builder = None

    def _load_credentials(self) -> None:
        """Parse the certificate, CA and CRL files of every signature definition; one that
        does not parse is left out (logged), the others keep working."""
        loaded: dict[int, ParsedCredentials] = {}
        for number, d in sorted(self.config.phase1.items()):
            if d.auth_method not in SIGNATURE_METHODS:
                continue
            try:
                files = self.config.credentials.get(number, Credentials())
                loaded[number] = load_credentials(files)
            except CredentialError as exc:
                self.log(LogLevel.ERR, f"phase 1 {d.name}: unusable, {exc}")
        self.credentials = loaded
