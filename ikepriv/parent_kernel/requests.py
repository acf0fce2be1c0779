"""Child -> parent messages: dispatch and answer.

Every request gets exactly one answer (SpiReply, ResultReply, SkeyidReply, NonceReply,
SignatureReply); a refusal is logged with its reason and tunnel number and answered with
an error code. Every message is first charged to its budget (child_budget.py): a child
over budget is not read for a while, its requests wait rather than vanish. Requests that
change the kernel (SpiRequest, Phase2Install, Phase2Commit, Phase2Remove) are vetted, written and
recorded by installer.Installer, the one write path; this module only hands them over and
sends the answer. What cannot happen in a correct child (a
StateReport nobody asked for, a second StateReportEnd, a second Stats or one with names
the core does not keep or definitions the parent does not know) raises
ProtocolViolation, and the supervisor restarts the child.

With several negotiator children (shards.py) there is one ChildRequests per child, with its
own budget, listings and `child` index, which goes with every request to the vetting and
the installer (what the child may ask for, what it owns); a StateReport naming a tunnel
number outside the child's class is a protocol violation. The installer, the records and
the kernel are shared, behind the state's one lock.

Listings come in pages (ListCommand): the parent asks for at most LIST_PAGE StateReports
at a time and asks for the next page when this one has arrived (the child makes it while
the caller passes this one on), so it holds at most two pages per listing however many
tunnels the child has. A report beyond the page, out of
tunnel-id order, of a phase not asked for, or sent for a counters-only request is a
protocol violation; `walk` stops a listing after MAX_LISTED tunnels, so a child that
invents tunnels cannot keep a listing going for ever either.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Final

import trio

from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.ipc.schema import Message
from ikepriv.parent_kernel.child_budget import ChildBudget
from ikepriv.parent_kernel.installer import Installer
from ikepriv.parent_kernel.state import ParentState
from ikepriv.parent_kernel.supervisor import ProtocolViolation
from ikepriv.parent_kernel.udp import IkeSocket, send
from ikepriv.parent_kernel.vetting import Refusal, stats_problem

log = logging.getLogger("ikepriv.parent")

LIST_TIMEOUT: Final = 5.0  # per page
MAX_REPORTS: Final = m.LIST_PAGE  # StateReports in the answer to one ListCommand
# tunnels in one listing: far above what a child holds (see the load bench), below what
# the CLI reads (ipc.control.MAX_RESPONSES Responses of even the largest rows)
MAX_LISTED: Final = 1 << 17
EXPIRED_LISTS: Final = 64
UNSOLICITED: Final = 0  # StateReport request id of a tunnel event the child reports by itself

_LOG_LEVELS: Final[dict[m.LogLevel, int]] = {
    m.LogLevel.ERR: logging.ERROR,
    m.LogLevel.WARNING: logging.WARNING,
    m.LogLevel.NOTICE: logging.INFO,
    m.LogLevel.INFO: logging.INFO,
    m.LogLevel.DEBUG: logging.DEBUG,
}


_PHASES: Final[dict[m.Phase, frozenset[m.Phase]]] = {
    m.Phase.ALL: frozenset((m.Phase.PHASE1, m.Phase.PHASE2)),
    m.Phase.PHASE1_PLUS: frozenset((m.Phase.PHASE1, m.Phase.PHASE2)),
    m.Phase.PHASE1: frozenset((m.Phase.PHASE1,)),
    m.Phase.PHASE2: frozenset((m.Phase.PHASE2,)),
}


@dataclass
class _PendingList:
    command: m.ListCommand
    reports: list[m.StateReport] = field(default_factory=list)
    stats: m.Stats | None = None
    done: trio.Event = field(default_factory=trio.Event)
    complete: bool = False  # closed by StateReportEnd, not by the child going away


@dataclass(frozen=True)
class ChildListing:
    """The child's answer to one ListCommand (one page): its tunnels and (if asked for and
    sent) counters."""

    reports: list[m.StateReport]
    counters: tuple[m.CounterValue, ...] = ()
    definitions: tuple[m.DefinitionCounts, ...] = ()

    @property
    def full(self) -> bool:
        """A full page: there may be more."""
        return len(self.reports) >= MAX_REPORTS


class ChildRequests:
    def __init__(
        self,
        state: ParentState,
        send_to_child: Callable[[Message], bool],
        sockets: list[IkeSocket],
        installer: Installer | None = None,
        child: int = 0,
    ) -> None:
        self.state = state
        self.child = child  # which negotiator child (shard) this is
        self._partition = state.sharding.partition(child)
        self._who = "child" if state.sharding.count == 1 else f"child {child + 1}"
        self.forwarded = 0  # datagrams handed to this child (its datagram credit)
        self._send = send_to_child
        self._sockets = {(s.family, s.port): s for s in sockets}
        self._ports = frozenset(s.port for s in sockets)
        self._lists: dict[int, _PendingList] = {}
        self._expired: list[int] = []
        self._next_list = 1
        self.installer = installer if installer is not None else Installer(state)
        self.budget = ChildBudget()  # outlives a child: a restart brings no fresh burst

    async def handle(self, msg: Message) -> None:
        # The supervisor reads the next message only after this returns: waiting here is
        # back-pressure on the child, never a dropped request (child_budget.py).
        counters = self.state.counters
        now = time.monotonic()
        budget = self.budget
        if budget.drop_log(msg, now):
            counters.child_lines_dropped += 1
            return
        waited, kind = budget.charge(msg, now, self.forwarded)  # no await unless short
        if waited > 0.0:
            await budget.pause(waited, kind, now)
            counters.child_throttled += 1
            counters.child_throttled_ms += max(1, round(waited * 1000))
        match msg:
            case m.DatagramOut():
                await self._datagram(msg)
            case m.SkeyidRequest():
                self._skeyid(msg)
            case m.NonceRequest():
                self._nonce(msg)
            case m.SignatureRequest():
                self._signature(msg)
            case m.SpiRequest():
                self._send(await self.installer.allocate_spi(msg, self.child))
            case m.Phase2Install() | m.Phase2Commit() | m.Phase2Remove():
                await self._kernel_request(msg)
            case m.StateReport():
                self._report(msg)
            case m.StateReportEnd():
                self._report_end(msg)
            case m.Stats():
                self._stats(msg)
            case m.Log():
                self._log(msg)
            case m.KeyLog():
                self._keylog(msg)
            case _:
                raise ProtocolViolation(f"unexpected {type(msg).__name__}")

    async def _kernel_request(self, msg: m.Phase2Install | m.Phase2Commit | m.Phase2Remove) -> None:
        """Install, commit or remove. Charged (before) the most the request can write; one
        the parent carried out costs what it wrote: a rekey does not write its policies
        again and its removal leaves them to the new SAs, so it costs about a third of a
        first install, and a successful install pays no undo. A refused or failed one keeps
        the whole charge (the parent vetted it, and may have undone writes)."""
        installer = self.installer
        before = installer.writes
        match msg:
            case m.Phase2Install():
                reply = await installer.install_phase2(msg, self.child)
            case m.Phase2Commit():
                reply = await installer.commit_phase2(msg, self.child)
            case m.Phase2Remove():
                reply = await installer.remove_phase2(msg, self.child)
        if reply.error is ErrorCode.OK:
            # other writes in between (another child, a command) only lower the refund
            self.budget.refund(msg, installer.writes - before, time.monotonic())
        self._send(reply)

    def child_down(self) -> None:
        for pending in self._lists.values():
            pending.done.set()

    def _refuse(self, what: str, refusal: Refusal) -> None:
        self.state.refused(what, refusal.tunnel, refusal.reason, self.child)

    # -- datagrams -------------------------------------------------------------------------

    async def _datagram(self, msg: m.DatagramOut) -> None:
        refusal = self.state.vetter.datagram(msg, self._ports, self.child)
        family = 10 if msg.local.addr.version == 6 else 2
        sock = self._sockets.get((family, msg.local.port))
        if refusal is None and sock is None:
            refusal = Refusal(ErrorCode.NOT_PERMITTED, f"no IPv{msg.local.addr.version} socket")
        if refusal is None:
            why = self.state.egress.check_send(
                msg.local.addr, msg.local.port, msg.remote.addr, msg.remote.port, msg.natt,
                msg.data, self.state.vetter.names_peer(msg.local.addr, msg.remote.addr),
                time.monotonic(),
            )  # fmt: skip
            if why is not None:
                self.state.counters.udp_send_refused += 1
                where = f"to {msg.remote.addr} port {msg.remote.port}"
                refusal = Refusal(ErrorCode.NOT_PERMITTED, f"{where}: {why}")
        if refusal is not None:
            self._refuse("datagram", refusal)
            return
        assert sock is not None
        try:
            await send(sock, msg.local.addr, msg.remote.addr, msg.remote.port, msg.data)
        except OSError as exc:
            self.state.counters.udp_send_errors += 1
            if self.state.send_errors.allow(time.monotonic()):
                log.warning("cannot send to %s port %d: %s", msg.remote.addr, msg.remote.port,
                            exc)  # fmt: skip

    # -- secrets ---------------------------------------------------------------------------

    def _skeyid(self, msg: m.SkeyidRequest) -> None:
        result = self.state.vetter.skeyid(msg, time.monotonic(), self.child)
        if isinstance(result, Refusal):
            self._refuse("SKEYID request", result)
            self._send(m.SkeyidReply(msg.request_id, result.code, b"", b""))
            return
        skeyid, nonce = result
        self._send(m.SkeyidReply(msg.request_id, ErrorCode.OK, skeyid, nonce))

    def _nonce(self, msg: m.NonceRequest) -> None:
        result = self.state.vetter.nonce(msg, time.monotonic(), self.child)
        if isinstance(result, Refusal):
            self._refuse("nonce request", result)
            self._send(m.NonceReply(msg.request_id, result.code, 0, b""))
            return
        self._send(m.NonceReply(msg.request_id, ErrorCode.OK, *result))

    def _signature(self, msg: m.SignatureRequest) -> None:
        result = self.state.vetter.signature(msg, time.monotonic(), self.child)
        if isinstance(result, Refusal):
            self._refuse("signature request", result)
            self._send(m.SignatureReply(msg.request_id, result.code, b""))
            return
        self._send(m.SignatureReply(msg.request_id, ErrorCode.OK, result))

    # -- state reports ---------------------------------------------------------------------

    def _ask(
        self, phase: m.Phase, after: int, *, rows: bool, counters: bool
    ) -> _PendingList | None:
        """Send one ListCommand; what its answer will fill (None: the child is not
        running). The caller must `_collect` or `_abandon` it."""
        request_id = self._next_list  # never UNSOLICITED
        self._next_list = self._next_list % 0xFFFFFFFF + 1
        command = m.ListCommand(request_id, phase, after, rows, counters)
        pending = self._lists[request_id] = _PendingList(command)
        if not self._send(command):
            del self._lists[request_id]
            return None
        if rows:  # the reports the parent asked for are not the child's to ration
            self.budget.grant_reports(MAX_REPORTS + 2, time.monotonic())
        return pending

    def _abandon(self, pending: _PendingList) -> None:
        """Stop waiting for an answer: if it comes late it is ignored, not a violation."""
        request_id = pending.command.request_id
        if self._lists.pop(request_id, None) is not None and not pending.done.is_set():
            self._expired.append(request_id)
            del self._expired[:-EXPIRED_LISTS]

    async def _collect(self, pending: _PendingList | None) -> ChildListing | None:
        """The answer to `_ask` (LIST_TIMEOUT at most from now); None if the child is not
        running, does not answer in time or goes away in the middle of its answer."""
        if pending is None:
            return None
        try:
            with trio.move_on_after(LIST_TIMEOUT):
                await pending.done.wait()
            if not pending.done.is_set() or not pending.complete:
                return None
            if pending.stats is None:
                return ChildListing(pending.reports)
            return ChildListing(pending.reports, pending.stats.counters,
                                pending.stats.definitions)  # fmt: skip
        finally:
            self._abandon(pending)

    async def ask_child(
        self, phase: m.Phase, after: int = 0, *, rows: bool = True, counters: bool = True
    ) -> ChildListing | None:
        """One page of the child's tunnels (see m.ListCommand) and, with `counters`, its
        counters; None if it is not running or does not answer in time."""
        return await self._collect(self._ask(phase, after, rows=rows, counters=counters))

    async def child_counters(self) -> ChildListing | None:
        """The child's counters alone: `ike cmd=list stats` needs no tunnel."""
        return await self.ask_child(m.Phase.ALL, rows=False, counters=True)

    async def walk(
        self, phase: m.Phase, *, counters: bool = False
    ) -> AsyncGenerator[ChildListing | None, None]:
        """Every tunnel of `phase`, page by page (the first with the counters if asked).
        When a full page arrives the next one is asked for before this one is handed on,
        so the child makes it while the caller passes this one on (the two processes work
        at the same time): at most two pages are held. Ends with None if the child stops
        answering, and after MAX_LISTED tunnels."""
        listed = 0
        pending = self._ask(phase, 0, rows=True, counters=counters)
        try:
            while True:
                page = await self._collect(pending)
                pending = None
                if page is None:
                    yield None
                    return
                listed += len(page.reports)
                more = page.full and listed < MAX_LISTED
                if more:
                    after = page.reports[-1].tunnel_id
                    pending = self._ask(phase, after, rows=True, counters=False)
                yield page
                if not more:
                    return
        finally:  # the caller stopped early: the next page is not waited for
            if pending is not None:
                self._abandon(pending)

    def _pending(self, request_id: int, what: str) -> _PendingList | None:
        pending = self._lists.get(request_id)
        if pending is None or pending.done.is_set():
            if request_id in self._expired:
                return None  # the answer to a list that timed out: late, not impossible
            raise ProtocolViolation(f"{what} for request {request_id} nobody asked for")
        return pending

    def _report(self, msg: m.StateReport) -> None:
        for number in (msg.tunnel_id, msg.phase1_tunnel_id):
            if number is not None and not self._partition.owns(number):
                raise ProtocolViolation(f"StateReport of tunnel {number}, not of this "
                                        "child's numbers")  # fmt: skip
        if msg.request_id == UNSOLICITED:
            if self.state.child_lines.allow(time.monotonic()):
                log.info("%s: %s", self._who, self._event_line(msg))
            return
        pending = self._pending(msg.request_id, "StateReport")
        if pending is None:
            return
        command = pending.command
        if not command.rows:
            raise ProtocolViolation("StateReport for a counters-only list")
        if len(pending.reports) >= MAX_REPORTS:
            raise ProtocolViolation("more StateReports than one page")
        if msg.phase not in _PHASES[command.phase]:
            raise ProtocolViolation(f"phase {int(msg.phase)} StateReport in a phase "
                                    f"{int(command.phase)} list")  # fmt: skip
        last = pending.reports[-1].tunnel_id if pending.reports else command.after
        if msg.tunnel_id <= last:
            raise ProtocolViolation(f"StateReport of tunnel {msg.tunnel_id} after {last}")
        pending.reports.append(msg)

    def _event_line(self, msg: m.StateReport) -> str:
        """The log line of a tunnel event the child reports by itself. It is the child's
        only line for an establishment (one message per tunnel, not a Log and a report),
        worded as operators and their scripts read it: "phase 1 NAME established with
        ADDRESS as ROLE (ALGORITHMS)". The name is the parent's own for the number."""
        view = self.state.view
        found = (view.phase1 if msg.phase is m.Phase.PHASE1 else view.phase2).get(msg.number)
        name = found.name if found is not None else f"definition {msg.number}"
        head = f"phase {int(msg.phase)} {name}"
        if msg.state is not m.TunnelState.ESTABLISHED:
            return (f"{head}: tunnel {msg.tunnel_id} {msg.state.name.lower()} with "
                    f"{msg.remote.addr}: {msg.algorithms or '-'}")  # fmt: skip
        if msg.phase is m.Phase.PHASE1:
            detail = f"as {msg.role.name.lower()} ({msg.algorithms})"
        else:
            detail = f"(in {msg.spi_in:08x}, out {msg.spi_out:08x}, {msg.algorithms})"
        return f"{head} established with {msg.remote.addr} {detail}, tunnel {msg.tunnel_id}"

    def _stats(self, msg: m.Stats) -> None:
        pending = self._pending(msg.request_id, "Stats")
        if pending is None:
            return
        if pending.stats is not None:
            raise ProtocolViolation(f"second Stats for request {msg.request_id}")
        problem = stats_problem(msg, self.state.known_definitions())
        if problem is not None:
            raise ProtocolViolation(f"Stats: {problem}")
        pending.stats = msg

    def _report_end(self, msg: m.StateReportEnd) -> None:
        pending = self._pending(msg.request_id, "StateReportEnd")
        if pending is None:
            return
        if msg.count != len(pending.reports):
            log.warning("child reported %d tunnels, %d arrived", msg.count, len(pending.reports))
        pending.complete = True
        pending.done.set()

    # -- logging ---------------------------------------------------------------------------

    def _log(self, msg: m.Log) -> None:
        if self.state.child_lines.allow(time.monotonic()):
            log.log(_LOG_LEVELS[msg.level], "%s: %s", self._who, msg.text)  # never a parent line

    def _keylog(self, msg: m.KeyLog) -> None:
        if self.state.keylog is None:
            self.state.refused("key log line", None, "the daemon runs without --keylog")
            return
        try:
            if not self.state.keylog.ike(msg):
                log.warning("keylog: line dropped (%d so far: rate or size bound)",
                            self.state.keylog.dropped)  # fmt: skip
        except OSError as exc:
            log.error("keylog: %s", exc)
