"""Child -> parent messages: dispatch and answer.

Every request gets exactly one answer (SpiReply, ResultReply, SkeyidReply, NonceReply,
SignatureReply); a refusal is logged with its reason and tunnel number and answered with
an error code. Every message is first charged to its budget (child_budget.py): a child
over budget is not read for a while, its requests wait rather than vanish. Requests that
change the kernel (SpiRequest, Phase2Install, Phase2Remove) are vetted, written and
recorded by installer.Installer, the one write path; this module only hands them over and
sends the answer. What cannot happen in a correct child (a
StateReport nobody asked for, a second StateReportEnd, a second Stats or one with names
the core does not keep or definitions the parent does not know) raises
ProtocolViolation, and the supervisor restarts the child.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
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

LIST_TIMEOUT: Final = 5.0
MAX_REPORTS: Final = m.MAX_ROWS
EXPIRED_LISTS: Final = 64
UNSOLICITED: Final = 0  # StateReport request id of a tunnel event the child reports by itself

_LOG_LEVELS: Final[dict[m.LogLevel, int]] = {
    m.LogLevel.ERR: logging.ERROR,
    m.LogLevel.WARNING: logging.WARNING,
    m.LogLevel.NOTICE: logging.INFO,
    m.LogLevel.INFO: logging.INFO,
    m.LogLevel.DEBUG: logging.DEBUG,
}


@dataclass
class _PendingList:
    reports: list[m.StateReport] = field(default_factory=list)
    stats: m.Stats | None = None
    done: trio.Event = field(default_factory=trio.Event)
    complete: bool = False  # closed by StateReportEnd, not by the child going away


@dataclass(frozen=True)
class ChildListing:
    """The child's answer to one ListCommand: its tunnels and (if it sent them) counters."""

    reports: list[m.StateReport]
    counters: tuple[m.CounterValue, ...] = ()
    definitions: tuple[m.DefinitionCounts, ...] = ()


class ChildRequests:
    def __init__(
        self,
        state: ParentState,
        send_to_child: Callable[[Message], bool],
        sockets: list[IkeSocket],
        installer: Installer | None = None,
    ) -> None:
        self.state = state
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
        if self.budget.drop_log(msg, time.monotonic()):
            counters.child_lines_dropped += 1
            return
        waited = await self.budget.admit(msg, counters.udp_forwarded)
        if waited:
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
                self._send(await self.installer.allocate_spi(msg))
            case m.Phase2Install():
                self._send(await self.installer.install_phase2(msg))
            case m.Phase2Remove():
                self._send(await self.installer.remove_phase2(msg))
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

    def child_down(self) -> None:
        for pending in self._lists.values():
            pending.done.set()

    def _refuse(self, what: str, refusal: Refusal) -> None:
        self.state.refused(what, refusal.tunnel, refusal.reason)

    # -- datagrams -------------------------------------------------------------------------

    async def _datagram(self, msg: m.DatagramOut) -> None:
        refusal = self.state.vetter.datagram(msg, self._ports)
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
        result = self.state.vetter.skeyid(msg, time.monotonic())
        if isinstance(result, Refusal):
            self._refuse("SKEYID request", result)
            self._send(m.SkeyidReply(msg.request_id, result.code, b"", b""))
            return
        skeyid, nonce = result
        self._send(m.SkeyidReply(msg.request_id, ErrorCode.OK, skeyid, nonce))

    def _nonce(self, msg: m.NonceRequest) -> None:
        result = self.state.vetter.nonce(msg, time.monotonic())
        if isinstance(result, Refusal):
            self._refuse("nonce request", result)
            self._send(m.NonceReply(msg.request_id, result.code, 0, b""))
            return
        self._send(m.NonceReply(msg.request_id, ErrorCode.OK, *result))

    def _signature(self, msg: m.SignatureRequest) -> None:
        result = self.state.vetter.signature(msg, time.monotonic())
        if isinstance(result, Refusal):
            self._refuse("signature request", result)
            self._send(m.SignatureReply(msg.request_id, result.code, b""))
            return
        self._send(m.SignatureReply(msg.request_id, ErrorCode.OK, result))

    # -- state reports ---------------------------------------------------------------------

    async def ask_child(self, phase: m.Phase) -> ChildListing | None:
        """The child's tunnels and counters, or None if it is not running or does not
        answer in time."""
        request_id = self._next_list  # never UNSOLICITED
        self._next_list = self._next_list % 0xFFFFFFFF + 1
        pending = self._lists[request_id] = _PendingList()
        try:
            if not self._send(m.ListCommand(request_id, phase)):
                return None
            with trio.move_on_after(LIST_TIMEOUT):
                await pending.done.wait()
            if not pending.done.is_set():
                self._expired.append(request_id)
                del self._expired[:-EXPIRED_LISTS]
                return None
            if not pending.complete:
                return None  # the child went away in the middle of its answer
            if pending.stats is None:
                return ChildListing(pending.reports)
            return ChildListing(pending.reports, pending.stats.counters,
                                pending.stats.definitions)  # fmt: skip
        finally:
            self._lists.pop(request_id, None)

    def _pending(self, request_id: int, what: str) -> _PendingList | None:
        pending = self._lists.get(request_id)
        if pending is None or pending.done.is_set():
            if request_id in self._expired:
                return None  # the answer to a list that timed out: late, not impossible
            raise ProtocolViolation(f"{what} for request {request_id} nobody asked for")
        return pending

    def _report(self, msg: m.StateReport) -> None:
        if msg.request_id == UNSOLICITED:
            if not self.state.child_lines.allow(time.monotonic()):
                return
            log.info("child: tunnel %d (phase %d definition %d) %s with %s: %s", msg.tunnel_id,
                     int(msg.phase), msg.number, msg.state.name.lower(), msg.remote.addr,
                     msg.algorithms or "-")  # fmt: skip
            return
        pending = self._pending(msg.request_id, "StateReport")
        if pending is None:
            return
        if len(pending.reports) >= MAX_REPORTS:
            raise ProtocolViolation("more StateReports than rows")
        pending.reports.append(msg)

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
            log.log(_LOG_LEVELS[msg.level], "child: %s", msg.text)  # never a parent line

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
