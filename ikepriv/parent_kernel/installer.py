"""The one write path to the kernel: vet, write, record, under one lock.

Every change ikepriv makes to the kernel's XFRM state goes through `Installer`, and so does
every change to the parent's records (`Installed`): SPI allocation, a whole phase 2
(Phase2Install, all or nothing), the removal of one (Phase2Remove), the removals the parent
decides itself (`ike cmd=remove`, shutdown) and SAs the kernel expired. Each step takes
the state's lock, vets (vetting.Vetter: pure), writes (one netlink round trip per object;
a whole install in one worker thread; SPI allocations and deletes, which the kernel does
at once, in the trio thread, the deletes of one removal in one datagram) and records: an
entry is recorded only after the kernel accepted it and forgotten only after the kernel
removed it (or said it was already gone), so the records and the kernel cannot drift
apart.

A phase 2 install writes, in this order: the policies that catch inbound traffic (in,
fwd), the inbound SA, which fills the larval SPI the parent allocated, then the outbound SA
and last the out policy (after its SA: no packet meets the policy without an SA and makes
the kernel ACQUIRE). The inbound SA comes as early as it can because the peer may already
send on it: libreswan (4.10) as Quick Mode responder installs its outbound SA when it sends
QM2, before our QM3, and its kernel sends on the newest SA at once; until our inbound SA is
filled, those packets meet a larval SA here and are dropped (XfrmAcquireError). QM2 is
where the initiator's keys come from, so that window cannot be closed, only kept short
(an ikepriv responder closes it on its side: see below): no write before
the inbound SA on a rekey, and all the writes of one install in one worker-thread call (one
hand-over to a thread, not one per write: on a loaded machine each hand-over can wait for
the scheduler, seen at 100 ms under User Mode Linux). A policy this phase 2 already owns
with the same spec (a rekey) is not written again; one that differs is replaced. If a write
fails, the writes before it are undone in reverse order (added objects deleted, replaced
policies put back, the filled inbound SA deleted and its SPI reserved again as a larval SA),
so the kernel is as before, and the install is answered with one error. An undo the kernel
refuses leaves an object ikepriv wrote: it is then recorded (and logged), so `remove` and
shutdown still take it away.

A Quick Mode responder splits the same install in two (Phase2Install.inbound_first): the
initiator sends on its new outbound SA as soon as it has QM2, so the responder's inbound SA
must be in before QM2 leaves, while its outbound SA must wait for QM3 (before, the
initiator may not have the SA yet). The whole install is vetted at once; the first step
writes the in/fwd policies and the inbound SA, and the vetted outbound SA and out policy
wait as a PendingHalf (installed.py) until the child's Phase2Commit names them. The commit
writes them (one worker-thread call) or, if the kernel refuses either, undoes the whole
install, the inbound SA back to its larval SPI. A Phase2Remove of the pair, an expiry of
the inbound SA or `remove` ends the half; a restarted child's halves are committed by the
parent (`settle`) so that the records hold whole pairs for the resume.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Final, NamedTuple

from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.parent_kernel.installed import PendingHalf, PolicyEntry, SaEntry, SaKey
from ikepriv.parent_kernel.journal import policy_mark, sa_mark
from ikepriv.parent_kernel.kernel.client import DELETE_BATCH, PolicyId, SaId
from ikepriv.parent_kernel.kernel.specs import SaSpec, XfrmError
from ikepriv.parent_kernel.kernel.xfrm_messages import Direction
from ikepriv.parent_kernel.state import ParentState
from ikepriv.parent_kernel.vetting import (
    XFRM_MODE,
    XFRM_PROTO,
    Phase2Plan,
    PolicyPlan,
    Refusal,
    SaPlan,
)

log = logging.getLogger("ikepriv.parent")

GONE: Final = frozenset({errno.ESRCH, errno.ENOENT})
MAX_REASON: Final = m.MAX_TEXT


class _LarvalLost(Exception):
    """An undone inbound SA whose SPI the kernel would not reserve again."""


class _Step(NamedTuple):
    """One kernel write of an install and what undoes it; both run in the worker thread."""

    entry: SaEntry | PolicyEntry  # what the kernel holds once `write` succeeded
    write: Callable[[], None]
    undo: Callable[[], None]

    @property
    def what(self) -> str:
        """The object, for the logs and the child's error text (made on a failure only)."""
        e = self.entry
        if isinstance(e, SaEntry):
            return f"{e.direction.name.lower()} SA spi {e.spi:#x}"
        return f"{e.spec.direction.name.lower()} policy {_selector_text(e)}"


@dataclass
class _Outcome:
    """What one install's writes left behind (from the worker thread to the records)."""

    failure: str | None = None
    kept: list[SaEntry | PolicyEntry] = field(default_factory=list)  # undo refused
    lost: list[SaKey] = field(default_factory=list)  # larval SPIs that could not come back


def _reason(text: str) -> str:
    return text[:MAX_REASON]


def _selector_text(entry: PolicyEntry) -> str:
    sel = entry.spec.selector
    return f"{sel.src} -> {sel.dst}"


class Installer:
    def __init__(self, state: ParentState) -> None:
        self.state = state
        # kernel writes so far (each write, undo and delete; an undone inbound SA counts
        # two): the budget charges a request the child made what it really wrote
        # (child_budget.py), never more than it reserved for it
        self.writes = 0

    def _refused(self, what: str, refusal: Refusal, owner: int) -> None:
        self.state.refused(what, refusal.tunnel, refusal.reason, owner)

    def _journal_put(
        self, sas: tuple[SaEntry, ...] = (), pols: tuple[PolicyEntry, ...] = ()
    ) -> None:
        """Record objects before they are written (journal.py: write-ahead)."""
        if self.state.journal is not None:
            self.state.journal.put(map(sa_mark, sas), map(policy_mark, pols))

    def _journal_sync(
        self, sas: tuple[SaEntry, ...] = (), pols: tuple[PolicyEntry, ...] = ()
    ) -> None:
        """The state file says of these objects what the records say: as recorded (a policy
        an undo put back), or gone (removed, or never written)."""
        journal, rec = self.state.journal, self.state.installed
        if journal is None:
            return
        kept_sas = [rec.sas[e.key] for e in sas if e.key in rec.sas]
        kept_pols = [rec.policies[e.key] for e in pols if e.key in rec.policies]
        journal.drop((sa_mark(e) for e in sas if e.key not in rec.sas),
                     (policy_mark(e) for e in pols if e.key not in rec.policies))  # fmt: skip
        journal.put(map(sa_mark, kept_sas), map(policy_mark, kept_pols))

    # -- SPI allocation --------------------------------------------------------------------

    async def allocate_spi(self, req: m.SpiRequest, owner: int = 0) -> m.SpiReply:
        """An inbound SPI for child `owner` (recorded as its own, larval)."""
        st = self.state
        async with st.lock:
            plan = st.vetter.spi(req, owner)
            if isinstance(plan, Refusal):
                self._refused("SPI request", plan, owner)
                return m.SpiReply(req.request_id, plan.code, 0)
            mode = XFRM_MODE[st.view.phase2[plan.phase2_number].mode]
            try:
                spi = st.kernel_now(st.kernel.alloc_spi, plan.src, plan.dst,
                                    XFRM_PROTO[plan.proto], 0, mode)  # fmt: skip
            except (XfrmError, ValueError) as exc:
                log.error("phase 2 %d: SPI allocation failed: %s", plan.phase2_number, exc)
                return m.SpiReply(req.request_id, ErrorCode.KERNEL_ERROR, 0)
            st.installed.add_sa(SaEntry(
                key=(plan.dst, spi, plan.proto), phase1_number=plan.phase1_number,
                phase2_number=plan.phase2_number, src=plan.src, larval=True, owner=plan.owner,
            ))  # fmt: skip
            self._journal_put((st.installed.sas[(plan.dst, spi, plan.proto)],))
        return m.SpiReply(req.request_id, ErrorCode.OK, spi)

    # -- phase 2 install -------------------------------------------------------------------

    async def install_phase2(self, req: m.Phase2Install, owner: int = 0) -> m.ResultReply:
        st = self.state
        async with st.lock:
            plan = st.vetter.phase2_install(req, time.time(), owner)
            if isinstance(plan, Refusal):
                self._refused("phase 2 install", plan, owner)
                return m.ResultReply(req.request_id, plan.code, _reason(plan.reason))
            if req.inbound_first:
                failure = await self._install_inbound(plan, owner)
                if failure is not None:
                    return m.ResultReply(req.request_id, ErrorCode.KERNEL_ERROR,
                                         _reason(failure))  # fmt: skip
                return m.ResultReply(req.request_id, ErrorCode.OK, "")
            pending = (plan.outbound.entry, plan.inbound.entry)
            pending_pols = tuple(p.entry for p in plan.policies)
            self._journal_put(pending, pending_pols)
            failure = await self._write(plan)
            if failure is not None:
                self._journal_sync(pending, pending_pols)
                return m.ResultReply(req.request_id, ErrorCode.KERNEL_ERROR, _reason(failure))
            for pol in plan.policies:
                st.installed.add_policy(pol.entry)
            st.installed.add_sa(plan.outbound.entry)
            st.installed.add_sa(plan.inbound.entry)
        self._installed(plan)
        return m.ResultReply(req.request_id, ErrorCode.OK, "")

    def _installed(self, plan: Phase2Plan) -> None:
        st, out = self.state, plan.outbound
        log.info("tunnel %d (phase 2 %d): installed, in spi %#x, out spi %#x, %s -> %s (%s)",
                 plan.tunnel_id, plan.phase2_number, plan.inbound.entry.spi, out.entry.spi,
                 out.entry.src, out.entry.dst, out.entry.algorithms)  # fmt: skip
        if st.keylog is not None:
            try:
                st.keylog.esp(plan.inbound.request)
                st.keylog.esp(plan.outbound.request)
            except OSError as exc:
                log.error("keylog: %s", exc)

    # -- split install (Phase2Install.inbound_first, Phase2Commit) ------------------------

    async def _install_inbound(self, plan: Phase2Plan, owner: int) -> str | None:
        """The first half of a vetted install: in and fwd policies, then the inbound SA (one
        worker-thread call); the outbound SA and out policy wait as a PendingHalf. Caller
        holds the lock."""
        st = self.state
        larval = st.installed.sas[plan.inbound.entry.key]  # vetted: this child's, larval
        catching = tuple(p for p in plan.policies if p.spec.direction is not Direction.OUT)
        pending_pols = tuple(p.entry for p in catching)
        self._journal_put((plan.inbound.entry,), pending_pols)
        failure = await self._write(plan, self._inbound_steps(plan))
        if failure is not None:
            self._journal_sync((plan.inbound.entry,), pending_pols)
            return failure
        for pol in catching:
            st.installed.add_policy(pol.entry)
        st.installed.add_sa(plan.inbound.entry)
        st.installed.add_pending(PendingHalf(owner, plan.tunnel_id, plan.phase2_number,
                                             plan.inbound.entry.key, plan.outbound.entry.key,
                                             plan, larval))  # fmt: skip
        log.info("tunnel %d (phase 2 %d): inbound SA spi %#x installed, outbound waits for "
                 "the commit", plan.tunnel_id, plan.phase2_number,
                 plan.inbound.entry.spi)  # fmt: skip
        return None

    def _inbound_steps(self, plan: Phase2Plan) -> list[_Step]:
        """The first half's writes in order; unchanged policies are none."""
        catching = [p for p in plan.policies
                    if p.spec.direction is not Direction.OUT and not p.unchanged]  # fmt: skip
        return [*map(self._policy_step, catching), self._sa_step(plan.inbound)]

    async def commit_phase2(self, req: m.Phase2Commit, owner: int = 0) -> m.ResultReply:
        """Write the pending half a Phase2Commit names, exactly as vetted with its install."""
        st = self.state
        async with st.lock:
            half = st.vetter.phase2_commit(req, owner)
            if isinstance(half, Refusal):
                self._refused("phase 2 commit", half, owner)
                return m.ResultReply(req.request_id, half.code, _reason(half.reason))
            failure = await self._commit(half)
        if failure is not None:
            return m.ResultReply(req.request_id, ErrorCode.KERNEL_ERROR, _reason(failure))
        return m.ResultReply(req.request_id, ErrorCode.OK, "")

    async def settle(self, owner: int) -> None:
        """A child restarted: the halves its predecessor installed are committed by the
        parent, as vetted, so the records hold whole SA pairs only, which the new child
        resumes and retires like any other (daemon.py). The peer already holds both SAs if
        our QM2 reached it, the usual case; if not, the new child's fresh negotiation
        replaces the pair within a round trip."""
        st = self.state
        async with st.lock:
            for half in st.installed.pending_of_owner(owner):
                log.info("tunnel %d (phase 2 %d): committing the half install of a child "
                         "that went away", half.plan.tunnel_id,
                         half.plan.phase2_number)  # fmt: skip
                await self._commit(half)

    async def _commit(self, half: PendingHalf[Phase2Plan]) -> str | None:
        """The outbound SA, then the out policy (one worker-thread call). If the kernel
        refuses either, the whole install is undone: what the commit wrote, the inbound SA
        (its SPI reserved again as a larval SA) and the in/fwd policies the first half
        wrote, unless another SA of the reqid uses them. Caller holds the lock."""
        st, plan = self.state, half.plan
        st.installed.drop_pending(half.key)
        out_pol = st.vetter.out_policy(half)
        first = self._first_half_undo(half)
        if isinstance(out_pol, Refusal):
            steps: list[_Step] = []
            failure: str | None = out_pol.reason
        else:
            steps = [self._sa_step(plan.outbound)]
            if out_pol is not None and not out_pol.unchanged:
                steps.append(self._policy_step(out_pol))
            failure = None
        new_sas = (plan.outbound.entry,)
        new_pols = () if out_pol is None or isinstance(out_pol, Refusal) else (out_pol.entry,)
        self._journal_put(new_sas, new_pols)
        outcome = await st.kernel_call(self._write_all, plan, steps, first, failure)
        if outcome.failure is None:
            st.installed.add_sa(plan.outbound.entry)
            for pol in new_pols:
                st.installed.add_policy(pol)
            self._installed(plan)
            return None
        self._record_undone(half, outcome, first)
        first_pols = tuple(s.entry for s in first if isinstance(s.entry, PolicyEntry))
        self._journal_sync((*new_sas, plan.inbound.entry), (*new_pols, *first_pols))
        return outcome.failure

    def _first_half_undo(self, half: PendingHalf[Phase2Plan]) -> list[_Step]:
        """What undoes the first half of a pending install, in write order: the in/fwd
        policies it wrote (unless another live SA of the reqid uses them), its inbound SA."""
        plan, rec = half.plan, self.state.installed
        inbound = plan.inbound.entry
        shared = any(e.reqid == inbound.reqid and not e.larval and e.key != inbound.key
                     for e in rec.sas_of_phase2(plan.phase2_number))  # fmt: skip
        steps = [] if shared else [self._policy_step(p) for p in plan.policies
                                   if p.spec.direction is not Direction.OUT and not p.unchanged
                                   and rec.policies.get(p.entry.key) is p.entry]  # fmt: skip
        return [*steps, self._sa_step(plan.inbound)]

    def _record_undone(
        self, half: PendingHalf[Phase2Plan], outcome: _Outcome, first: list[_Step]
    ) -> None:
        """The records after an undone commit: the first half's objects as the undo left
        them (gone, put back, or kept where the kernel refused the undo)."""
        rec = self.state.installed
        kept = {id(e) for e in outcome.kept}
        for entry in outcome.kept:
            if isinstance(entry, SaEntry):
                rec.add_sa(entry)
            else:
                rec.add_policy(entry)
        for step in first:
            if id(step.entry) in kept:
                continue
            if isinstance(step.entry, SaEntry):
                if step.entry.key in outcome.lost:
                    rec.forget_sa(step.entry.key)
                else:
                    rec.add_sa(half.larval)  # the SPI is larval again, the child's as before
            else:
                plan = next(p for p in half.plan.policies if p.entry is step.entry)
                if plan.replaces is None:
                    rec.forget_policy(step.entry.key)
                else:
                    rec.add_policy(plan.replaces)

    def _policy_step(self, p: PolicyPlan) -> _Step:
        kernel, spec = self.state.kernel, p.spec
        if p.replaces is None:
            return _Step(p.entry, partial(kernel.add_policy, spec),
                         partial(kernel.delete_policy, spec.selector, spec.direction))  # fmt: skip
        return _Step(p.entry, partial(kernel.update_policy, spec),
                     partial(kernel.update_policy, p.replaces.spec))  # fmt: skip

    def _sa_step(self, s: SaPlan) -> _Step:
        kernel, e, spec = self.state.kernel, s.entry, s.spec
        if s.update:  # fills the larval SPI; undone by a delete and a fresh larval SA
            return _Step(e, partial(kernel.update_sa, spec), partial(self._unfill, spec))
        return _Step(e, partial(kernel.add_sa, spec),
                     partial(kernel.delete_sa, e.dst, e.spi, XFRM_PROTO[e.proto]))  # fmt: skip

    def _unfill(self, spec: SaSpec) -> None:
        """Undo of an inbound SA: delete it, then reserve its SPI again as allocate_spi
        left it (reqid 0), so the kernel holds the larval SA of before. A refused reserve
        raises _LarvalLost (the SA is gone and so is the larval one)."""
        kernel = self.state.kernel
        try:
            kernel.delete_sa(spec.dst, spec.spi, spec.proto)
        except XfrmError as exc:
            if exc.errno not in GONE:
                raise
        try:
            kernel.alloc_spi(spec.src, spec.dst, spec.proto, 0, spec.mode, spec.spi, spec.spi)
        except (XfrmError, ValueError) as exc:
            raise _LarvalLost(str(exc)) from exc

    def _steps(self, plan: Phase2Plan) -> list[_Step]:
        """The writes in order (see the module docstring); unchanged policies are none."""
        pending = [p for p in plan.policies if not p.unchanged]
        out = [p for p in pending if p.spec.direction is Direction.OUT]
        catching = [p for p in pending if p.spec.direction is not Direction.OUT]
        return [*map(self._policy_step, catching), self._sa_step(plan.inbound),
                self._sa_step(plan.outbound), *map(self._policy_step, out)]  # fmt: skip

    async def _write(self, plan: Phase2Plan, steps: list[_Step] | None = None) -> str | None:
        """Carry out the plan (one worker-thread call); on a kernel error undo what was
        written and return why. Caller holds the lock."""
        if steps is None:
            steps = self._steps(plan)
        outcome = await self.state.kernel_call(self._write_all, plan, steps)
        for entry in outcome.kept:
            if isinstance(entry, SaEntry):
                self.state.installed.add_sa(entry)
            else:
                self.state.installed.add_policy(entry)
        for key in outcome.lost:
            self.state.installed.forget_sa(key)
        return outcome.failure

    def _write_all(
        self,
        plan: Phase2Plan,
        steps: list[_Step],
        before: list[_Step] | None = None,
        refused: str | None = None,
    ) -> _Outcome:
        """In the worker thread: the writes, and on a failure the undo of those before it
        and of `before` (written earlier: a commit's first half); `refused` fails at once.
        Touches the kernel only; the records are the caller's, on the trio thread."""
        done: list[_Step] = list(before or ())
        if refused is not None:
            log.error("tunnel %d (phase 2 %d): not committed: %s; undoing %d earlier write(s)",
                      plan.tunnel_id, plan.phase2_number, refused, len(done))  # fmt: skip
            outcome = self._undo(plan, done)
            outcome.failure = refused
            return outcome
        for step in steps:
            self.writes += 1
            try:
                step.write()
            except XfrmError as exc:
                log.error("tunnel %d (phase 2 %d): %s not installed: %s; undoing %d earlier "
                          "write(s)", plan.tunnel_id, plan.phase2_number, step.what, exc,
                          len(done))  # fmt: skip
                outcome = self._undo(plan, done)
                outcome.failure = f"{step.what}: {exc}"
                return outcome
            done.append(step)
        return _Outcome()

    def _undo(self, plan: Phase2Plan, done: list[_Step]) -> _Outcome:
        outcome = _Outcome()
        for step in reversed(done):
            self.writes += 2  # a delete, or a delete and a fresh larval SA
            try:
                step.undo()
            except _LarvalLost as exc:
                log.error("tunnel %d (phase 2 %d): %s removed, its SPI not reserved again: %s",
                          plan.tunnel_id, plan.phase2_number, step.what, exc)  # fmt: skip
                assert isinstance(step.entry, SaEntry)
                outcome.lost.append(step.entry.key)
            except XfrmError as exc:
                if exc.errno in GONE:
                    continue
                # still in the kernel as written: record it, so remove and shutdown find it
                log.error("tunnel %d (phase 2 %d): cannot undo %s: %s (kept on record)",
                          plan.tunnel_id, plan.phase2_number, step.what, exc)  # fmt: skip
                outcome.kept.append(step.entry)
        return outcome

    # -- removal ---------------------------------------------------------------------------

    async def remove_phase2(self, req: m.Phase2Remove, owner: int = 0) -> m.ResultReply:
        st = self.state
        async with st.lock:
            removal = st.vetter.phase2_remove(req, owner)
            if isinstance(removal, Refusal):
                self._refused("phase 2 remove", removal, owner)
                return m.ResultReply(req.request_id, removal.code, _reason(removal.reason))
            if removal.pending is not None:  # a half install: its outbound half is never written
                st.installed.drop_pending(removal.pending)
            failed = await self._delete(removal.sas)
            if not removal.keep_policies:
                unused = st.installed.unused_policies(removal.phase2_number, removal.reqid)
                failed += await self._delete(unused)
        if failed:
            return m.ResultReply(req.request_id, ErrorCode.KERNEL_ERROR,
                                 f"the kernel refused {failed} delete(s)")  # fmt: skip
        return m.ResultReply(req.request_id, ErrorCode.OK, "")

    async def remove_tunnels(self, tunnel_ids: set[int], phase2s: set[int]) -> None:
        """`ike cmd=remove`: the recorded SAs of these tunnels, then the policies of the
        phase 2s that have no SA left (nothing would carry their traffic)."""
        st = self.state
        async with st.lock:
            sas = [e for tid in sorted(tunnel_ids) for e in st.installed.sas_of_tunnel(tid)]
            phase2s.update(e.phase2_number for e in sas)
            await self._delete(sas)
            await self._delete([pol for n2 in sorted(phase2s)
                                if not any(not e.larval for e in st.installed.sas_of_phase2(n2))
                                for pol in st.installed.policies_of_phase2(n2)])  # fmt: skip

    async def remove_phase2s(self, numbers: set[int]) -> int:
        """Every recorded SA (larval too) and policy of these phase 2 definitions, whoever
        negotiated them: `ike cmd=remove` and revoked definitions. The count of objects the
        kernel still holds (refused deletes)."""
        st = self.state
        async with st.lock:
            rec = st.installed
            entries: list[SaEntry | PolicyEntry] = []
            for n2 in sorted(numbers):
                entries += rec.policies_of_phase2(n2)
                entries += rec.sas_of_phase2(n2)
            return await self._delete(entries)

    async def remove_everything(self) -> int:
        """Shutdown and `ike cmd=remove` of everything: every recorded policy and SA. The
        count of objects the kernel refused to delete."""
        st = self.state
        async with st.lock:
            return await self._delete([*st.installed.policies.values(),
                                       *st.installed.sas.values()])  # fmt: skip

    def expired(self, key: SaKey) -> SaEntry | None:
        """The kernel removed an SA at its hard lifetime: forget it (no write; no await,
        so no other step sees the records half changed)."""
        entry = self.state.installed.forget_sa(key)
        if entry is not None:
            self._journal_sync((entry,))
            log.info("tunnel %s (phase 2 %d): SA spi %#x expired", entry.tunnel_id,
                     entry.phase2_number, entry.spi)  # fmt: skip
        return entry

    async def _delete(self, entries: Sequence[SaEntry | PolicyEntry]) -> int:
        """Delete these recorded objects from the kernel in this order (several to a
        datagram: kernel/client.py delete_all; one datagram's worth in the trio thread:
        ParentState.kernel_now), and forget each one the kernel removed or no longer had;
        one it refused stays recorded and is logged. Caller holds the lock. The count of
        refused deletes."""
        if not entries:
            return 0
        st = self.state
        self.writes += len(entries)
        ids = [SaId(e.dst, e.spi, XFRM_PROTO[e.proto]) if isinstance(e, SaEntry)
               else PolicyId(e.spec.selector, e.spec.direction) for e in entries]  # fmt: skip
        if len(ids) <= DELETE_BATCH:  # one datagram: at once, in the trio thread
            outcomes = st.kernel_now(st.kernel.delete_all, ids)
        else:  # `remove`, shutdown: the trio thread is not held up that long
            outcomes = await st.kernel_call(st.kernel.delete_all, ids)
        failed = 0
        gone_sas: list[SaEntry] = []
        gone_pols: list[PolicyEntry] = []
        for entry, exc in zip(entries, outcomes, strict=True):
            if exc is not None and exc.errno not in GONE:
                failed += 1
                if isinstance(entry, SaEntry):
                    log.error("phase 2 %d: cannot delete SA spi %#x: %s", entry.phase2_number,
                              entry.spi, exc)  # fmt: skip
                else:
                    log.error("phase 2 %d: cannot delete policy: %s", entry.phase2_number, exc)
            elif isinstance(entry, SaEntry):
                st.installed.forget_sa(entry.key)
                gone_sas.append(entry)
                if not entry.larval:
                    log.info("tunnel %s (phase 2 %d): SA spi %#x to %s removed",
                             entry.tunnel_id, entry.phase2_number, entry.spi,
                             entry.dst)  # fmt: skip
            else:
                st.installed.forget_policy(entry.key)
                gone_pols.append(entry)
                log.info("phase 2 %d: %s policy %s removed", entry.phase2_number,
                         entry.spec.direction.name.lower(), _selector_text(entry))  # fmt: skip
        self._journal_sync(tuple(gone_sas), tuple(gone_pols))
        return failed
