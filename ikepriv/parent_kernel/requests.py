"""Child -> parent messages: vet, carry out, answer.

Every request gets exactly one answer (SpiReply, ResultReply, SkeyidReply,
SignatureReply); a refusal is logged with its reason and tunnel number and answered with
an error code. What cannot happen in a correct child (a StateReport nobody asked for, a
second StateReportEnd, a second Stats or one with names the core does not keep) raises
ProtocolViolation, and the supervisor restarts the child.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass, field
from typing import Final

import trio

from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.ipc.schema import Message
from ikepriv.parent_kernel.installed import SaEntry
from ikepriv.parent_kernel.kernel.specs import XfrmError
from ikepriv.parent_kernel.state import ParentState
from ikepriv.parent_kernel.supervisor import ProtocolViolation
from ikepriv.parent_kernel.udp import IkeSocket, send
from ikepriv.parent_kernel.vetting import (
    XFRM_MODE,
    XFRM_PROTO,
    PolicyRemoval,
    Refusal,
    SaRemoval,
    stats_problem,
)

log = logging.getLogger("ikepriv.parent")

MAX_REASON: Final = 255
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


def _reason(text: str) -> str:
    return text[:MAX_REASON]


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


class ChildRequests:
    def __init__(
        self,
        state: ParentState,
        send_to_child: Callable[[Message], bool],
        sockets: list[IkeSocket],
    ) -> None:
        self.state = state
        self._send = send_to_child
        self._sockets = {(s.family, s.port): s for s in sockets}
        self._ports = frozenset(s.port for s in sockets)
        self._lists: dict[int, _PendingList] = {}
        self._expired: list[int] = []
        self._next_list = 1
        self._handlers: dict[type[Message], Callable[[Message], Awaitable[None]]] = {
            m.DatagramOut: self._datagram,  # type: ignore[dict-item]
            m.SkeyidRequest: self._skeyid,  # type: ignore[dict-item]
            m.SignatureRequest: self._signature,  # type: ignore[dict-item]
            m.SpiRequest: self._spi,  # type: ignore[dict-item]
            m.SaAdd: self._sa_add,  # type: ignore[dict-item]
            m.SaDelete: self._sa_delete,  # type: ignore[dict-item]
            m.PolicyAdd: self._policy_add,  # type: ignore[dict-item]
            m.PolicyDelete: self._policy_delete,  # type: ignore[dict-item]
            m.StateReport: self._report,  # type: ignore[dict-item]
            m.StateReportEnd: self._report_end,  # type: ignore[dict-item]
            m.Stats: self._stats,  # type: ignore[dict-item]
            m.Log: self._log,  # type: ignore[dict-item]
            m.KeyLog: self._keylog,  # type: ignore[dict-item]
        }

    async def handle(self, msg: Message) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            raise ProtocolViolation(f"unexpected {type(msg).__name__}")
        await handler(msg)

    def child_down(self) -> None:
        for pending in self._lists.values():
            pending.done.set()

    def _refuse(self, what: str, refusal: Refusal) -> None:
        self.state.refused(what, refusal.tunnel, refusal.reason)

    def _refuse_result(self, request_id: int, what: str, refusal: Refusal) -> None:
        """Log and count a refused request answered by a ResultReply."""
        self._refuse(what, refusal)
        self._send(m.ResultReply(request_id, refusal.code, _reason(refusal.reason)))

    def _answer_removal(self, request_id: int, what: str,
                        removal: SaRemoval | PolicyRemoval | Refusal,
                        installed: Container[object]) -> None:  # fmt: skip
        """Answer a delete request once the removal (if any) has been attempted: the
        entry still being in `installed` means the kernel refused to delete it."""
        if isinstance(removal, Refusal):
            self._refuse_result(request_id, what, removal)
        elif removal.entry is not None and removal.key in installed:
            self._send(m.ResultReply(request_id, ErrorCode.KERNEL_ERROR,
                                     "kernel refused the delete"))  # fmt: skip
        else:
            self._send(m.ResultReply(request_id, ErrorCode.OK, ""))

    # -- datagrams -------------------------------------------------------------------------

    async def _datagram(self, msg: m.DatagramOut) -> None:
        refusal = self.state.vetter.datagram(msg, self._ports)
        family = 10 if msg.local.addr.version == 6 else 2
        sock = self._sockets.get((family, msg.local.port))
        if refusal is None and sock is None:
            refusal = Refusal(ErrorCode.NOT_PERMITTED, f"no IPv{msg.local.addr.version} socket")
        if refusal is not None:
            self._refuse("datagram", refusal)
            return
        assert sock is not None
        try:
            await send(sock, msg.local.addr, msg.remote.addr, msg.remote.port, msg.data)
        except OSError as exc:
            self.state.counters.udp_send_errors += 1
            log.warning("cannot send to %s port %d: %s", msg.remote.addr, msg.remote.port, exc)

    # -- secrets ---------------------------------------------------------------------------

    async def _skeyid(self, msg: m.SkeyidRequest) -> None:
        result = self.state.vetter.skeyid(msg, time.monotonic())
        if isinstance(result, Refusal):
            self._refuse("SKEYID request", result)
            self._send(m.SkeyidReply(msg.request_id, result.code, b""))
            return
        self._send(m.SkeyidReply(msg.request_id, ErrorCode.OK, result))

    async def _signature(self, msg: m.SignatureRequest) -> None:
        self._refuse("signature request",
                     Refusal(ErrorCode.UNSUPPORTED, "signatures are not supported",
                             msg.phase1_number))  # fmt: skip
        self._send(m.SignatureReply(msg.request_id, ErrorCode.UNSUPPORTED, b""))

    # -- SPIs and SAs ----------------------------------------------------------------------

    async def _spi(self, msg: m.SpiRequest) -> None:
        st = self.state
        async with st.lock:
            plan = st.vetter.spi(msg)
            if isinstance(plan, Refusal):
                self._refuse("SPI request", plan)
                self._send(m.SpiReply(msg.request_id, plan.code, 0))
                return
            mode = XFRM_MODE[st.view.phase2[plan.phase2_number].mode]
            try:
                spi = await st.kernel_call(st.kernel.alloc_spi, plan.src, plan.dst,
                                           XFRM_PROTO[plan.proto], 0, mode)  # fmt: skip
            except (XfrmError, ValueError) as exc:
                log.error("phase 2 %d: SPI allocation failed: %s", plan.phase2_number, exc)
                self._send(m.SpiReply(msg.request_id, ErrorCode.KERNEL_ERROR, 0))
                return
            st.installed.add_sa(SaEntry(
                key=(plan.dst, spi, plan.proto), phase1_number=plan.phase1_number,
                phase2_number=plan.phase2_number, src=plan.src, larval=True,
            ))  # fmt: skip
        self._send(m.SpiReply(msg.request_id, ErrorCode.OK, spi))

    async def _sa_add(self, msg: m.SaAdd) -> None:
        st = self.state
        async with st.lock:
            plan = st.vetter.sa_add(msg, time.time())
            if isinstance(plan, Refusal):
                self._refuse_result(msg.request_id, "SA", plan)
                return
            try:
                operation = st.kernel.update_sa if plan.update else st.kernel.add_sa
                await st.kernel_call(operation, plan.spec)
            except XfrmError as exc:
                log.error("tunnel %d (phase 2 %d): SA spi %#x not installed: %s",
                          msg.tunnel_id, msg.phase2_number, msg.spi, exc)  # fmt: skip
                self._send(m.ResultReply(msg.request_id, ErrorCode.KERNEL_ERROR,
                                         _reason(str(exc))))  # fmt: skip
                return
            st.installed.add_sa(plan.entry)
        log.info("tunnel %d (phase 2 %d): %s SA spi %#x %s -> %s installed (%s)",
                 msg.tunnel_id, msg.phase2_number, msg.direction.name.lower(), msg.spi,
                 msg.src, msg.dst, plan.entry.algorithms)  # fmt: skip
        if st.keylog is not None:
            try:
                st.keylog.esp(msg)
            except OSError as exc:
                log.error("keylog: %s", exc)
        self._send(m.ResultReply(msg.request_id, ErrorCode.OK, ""))

    async def _sa_delete(self, msg: m.SaDelete) -> None:
        st = self.state
        async with st.lock:
            removal = st.vetter.sa_delete(msg)
            if not isinstance(removal, Refusal) and removal.entry is not None:
                await st.remove_sa(removal.entry)
            self._answer_removal(msg.request_id, "SA delete", removal, st.installed.sas)

    # -- policies --------------------------------------------------------------------------

    async def _policy_add(self, msg: m.PolicyAdd) -> None:
        st = self.state
        async with st.lock:
            plan = st.vetter.policy_add(msg)
            if isinstance(plan, Refusal):
                self._refuse_result(msg.request_id, "policy", plan)
                return
            try:
                operation = st.kernel.update_policy if plan.update else st.kernel.add_policy
                await st.kernel_call(operation, plan.spec)
            except XfrmError as exc:
                log.error("phase 2 %d: policy not installed: %s", msg.phase2_number, exc)
                self._send(m.ResultReply(msg.request_id, ErrorCode.KERNEL_ERROR,
                                         _reason(str(exc))))  # fmt: skip
                return
            st.installed.add_policy(plan.entry)
        sel = plan.spec.selector
        log.info("phase 2 %d: %s policy %s -> %s installed", msg.phase2_number,
                 msg.direction.name.lower(), sel.src, sel.dst)  # fmt: skip
        self._send(m.ResultReply(msg.request_id, ErrorCode.OK, ""))

    async def _policy_delete(self, msg: m.PolicyDelete) -> None:
        st = self.state
        async with st.lock:
            removal = st.vetter.policy_delete(msg)
            if not isinstance(removal, Refusal) and removal.entry is not None:
                await st.remove_policy(removal.entry)
            self._answer_removal(msg.request_id, "policy delete", removal,
                                 st.installed.policies)

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
            return ChildListing(pending.reports,
                                pending.stats.counters if pending.stats else ())  # fmt: skip
        finally:
            self._lists.pop(request_id, None)

    def _pending(self, request_id: int, what: str) -> _PendingList | None:
        pending = self._lists.get(request_id)
        if pending is None or pending.done.is_set():
            if request_id in self._expired:
                return None  # the answer to a list that timed out: late, not impossible
            raise ProtocolViolation(f"{what} for request {request_id} nobody asked for")
        return pending

    async def _report(self, msg: m.StateReport) -> None:
        if msg.request_id == UNSOLICITED:
            if not self.state.child_lines.allow(time.monotonic()):
                return
            log.info("tunnel %d (phase %d definition %d) %s with %s: %s", msg.tunnel_id,
                     int(msg.phase), msg.number, msg.state.name.lower(), msg.remote.addr,
                     msg.algorithms or "-")  # fmt: skip
            return
        pending = self._pending(msg.request_id, "StateReport")
        if pending is None:
            return
        if len(pending.reports) >= MAX_REPORTS:
            raise ProtocolViolation("more StateReports than rows")
        pending.reports.append(msg)

    async def _stats(self, msg: m.Stats) -> None:
        pending = self._pending(msg.request_id, "Stats")
        if pending is None:
            return
        if pending.stats is not None:
            raise ProtocolViolation(f"second Stats for request {msg.request_id}")
        problem = stats_problem(msg)
        if problem is not None:
            raise ProtocolViolation(f"Stats: {problem}")
        pending.stats = msg

    async def _report_end(self, msg: m.StateReportEnd) -> None:
        pending = self._pending(msg.request_id, "StateReportEnd")
        if pending is None:
            return
        if msg.count != len(pending.reports):
            log.warning("child reported %d tunnels, %d arrived", msg.count, len(pending.reports))
        pending.complete = True
        pending.done.set()

    # -- logging ---------------------------------------------------------------------------

    async def _log(self, msg: m.Log) -> None:
        if self.state.child_lines.allow(time.monotonic()):
            log.log(_LOG_LEVELS[msg.level], "%s", msg.text)

    async def _keylog(self, msg: m.KeyLog) -> None:
        if self.state.keylog is None:
            self.state.refused("key log line", None, "the daemon runs without --keylog")
            return
        try:
            self.state.keylog.ike(msg)
        except OSError as exc:
            log.error("keylog: %s", exc)
