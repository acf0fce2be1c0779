"""Lifetimes of ISAKMP and IPsec SAs: when each SA next needs the clock, soft expiry with a
randomised margin (the rekey), hard expiry, and the kernel's EXPIRE events.

Which clock watches which limit:

* seconds, both phases: the core's own timers. The rekey starts at the soft lifetime,
  ``lifetime - margin - random(0, fuzz * margin)`` with the randomness from the injected
  source, so two peers with the same lifetime rarely start at the same moment;
* kilobytes of an IPsec SA: only the kernel counts ESP bytes. It reports the soft limit
  (KernelExpire hard=False: rekey now) and the hard one (the SA is gone: report, clean up);
* kilobytes of an ISAKMP SA (only when the peer proposed one): the bytes of the IKE
  datagrams received on it. Reaching 90 % starts a rekey, 100 % ends the SA.

A tunnel whose phase 1 definition accepts any peer (%any) never starts a rekey: that side
cannot reach the peer on its own, so the peer rekeys (see rekey.py for the rules).

The daemon asks for ``next_deadline()`` after every event, so the engine keeps one deadline
per SA in a heap (DeadlineIndex). Whatever changes an SA's timing marks it; only marked SAs
are recomputed. The invariant: a cached deadline is never later than the SA's real next
deadline. One that is too early costs a wake-up that finds nothing to do and recomputes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ikepriv.child_negotiator.core import dpd, install, rekey
from ikepriv.child_negotiator.core.exchanges import informational
from ikepriv.child_negotiator.core.sa_table import ChildSa, ChildState, IsakmpSa, QuickExchange
from ikepriv.ipc.messages import KernelExpire, Lifetimes, LogLevel

if TYPE_CHECKING:
    from ikepriv.child_negotiator.core.engine import Negotiator

ISAKMP = 0
CHILD = 1
Key = tuple[int, int]  # (ISAKMP or CHILD, tunnel id), or (dpd.RESTART, phase 1 number)

PHASE1_SOFT_VOLUME = 0.9  # share of a phase 1 kilobyte lifetime that starts the rekey


class DeadlineIndex:
    """One deadline per SA, in a heap with lazy removal (a stale entry is skipped)."""

    __slots__ = ("_at", "_dirty", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, Key]] = []
        self._at: dict[Key, float] = {}
        self._dirty: set[Key] = set()

    def mark(self, key: Key) -> None:
        self._dirty.add(key)

    def refresh(self, compute: Callable[[Key], float | None]) -> None:
        """Recompute the deadlines of the marked keys."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            when = compute(key)
            if when is None:
                self._at.pop(key, None)
            elif self._at.get(key) != when:
                self._at[key] = when
                heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 2 * len(self._at) + 64:
            self._heap = [(when, key) for key, when in self._at.items()]
            heapq.heapify(self._heap)

    def next(self, alive: Callable[[Key], bool] | None = None) -> float | None:
        """The earliest deadline; with `alive`, keys whose SA is gone are dropped first (an
        SA removed by code that did not mark it)."""
        heap = self._heap
        while heap:
            when, key = heap[0]
            if self._at.get(key) == when:
                if alive is None or alive(key):
                    return when
                del self._at[key]
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> list[Key]:
        """Keys whose deadline has come, removed and marked for recomputation."""
        out: list[Key] = []
        while (when := self.next()) is not None and when <= now:
            _, key = heapq.heappop(self._heap)
            del self._at[key]
            self._dirty.add(key)
            out.append(key)
        return out

    def __len__(self) -> int:
        return len(self._at)


# ------------------------------------------------------------------------------ margins


def _uniform(core: Negotiator) -> float:
    """A draw in [0, 1) from the injected random source."""
    return int.from_bytes(core.random(4), "big") / 2**32


def _margin(core: Negotiator, lifetime: float) -> float:
    s = core.settings
    return min(s.rekey_margin, lifetime * s.rekey_margin_fraction)


def soft_time(core: Negotiator, start: float, lifetime: float) -> float:
    """When to start replacing an SA that lives `lifetime` seconds from `start`: between
    ``lifetime - margin * (1 + fuzz)`` and ``lifetime - margin``."""
    margin = _margin(core, lifetime)
    return start + lifetime - margin - margin * core.settings.rekey_fuzz * _uniform(core)


def kernel_lifetimes(core: Negotiator, hard_seconds: int, hard_kilobytes: int) -> Lifetimes:
    """The limits the kernel gets for one IPsec SA, soft ones drawn afresh for each SA.

    Seconds: the soft limit lies in ``[lifetime - margin, lifetime - margin / 2]``, never
    before the latest moment soft_time() can pick, so the core's own rekey comes first and
    the kernel's soft event is only a backstop. Kilobytes (counted by the kernel alone):
    ``hard * (1 - m)`` with m in Settings.kernel_soft_volume_margin, so the two peers,
    whose kernels count the same bytes, rarely reach their soft limits together."""
    soft_s = 0
    if hard_seconds:
        margin = _margin(core, hard_seconds)
        soft_s = min(hard_seconds, math.ceil(hard_seconds - margin + margin / 2 * _uniform(core)))
    soft_kb = 0
    if hard_kilobytes:
        low, high = core.settings.kernel_soft_volume_margin
        share = 1.0 - (low + (high - low) * _uniform(core))
        soft_kb = min(hard_kilobytes, max(1, int(hard_kilobytes * share)))
    return Lifetimes(soft_s, hard_seconds, soft_kb, hard_kilobytes)


# ------------------------------------------------------------------------------ deadlines


def exists(core: Negotiator, key: Key) -> bool:
    kind, number = key
    if kind == dpd.RESTART:
        return number in core.restarts
    return number in (core.sas.by_tunnel if kind == ISAKMP else core.sas.children)


def deadline_of(core: Negotiator, key: Key) -> float | None:
    kind, number = key
    if kind == dpd.RESTART:
        return dpd.restart_deadline(core, number)
    if kind == ISAKMP:
        sa = core.sas.by_tunnel.get(number)
        return isakmp_deadline(core, sa) if sa is not None else None
    child = core.sas.children.get(number)
    return child_deadline(core, child) if child is not None else None


def isakmp_deadline(core: Negotiator, sa: IsakmpSa) -> float | None:
    times: list[float] = []
    if sa.flight.deadline is not None:
        times.append(sa.flight.deadline)
    qm_age = core.settings.quick_mode_max_age
    for qe in sa.exchanges.values():
        if qe.flight.deadline is not None:
            times.append(qe.flight.deadline)
        times.append(qe.created + qm_age)
    hook_time = core.hooks.timer_deadline(sa)
    if hook_time is not None:
        times.append(hook_time)
    if sa.established:
        if sa.lifetime:
            times.append(sa.established_at + sa.lifetime)
        if sa.retire_at:
            times.append(sa.retire_at)
        elif sa.rekey_at and not sa.retired_by:
            times.append(
                sa.rekey_started + core.settings.rekey_retry if sa.rekey_started else sa.rekey_at
            )
        probe = dpd.deadline(sa)
        if probe is not None:
            times.append(probe)
    return min(times) if times else None


def child_deadline(core: Negotiator, child: ChildSa) -> float | None:
    if child.state is ChildState.DELETED:
        return None
    times: list[float] = []
    if child.lifetime_seconds:
        times.append(child.created + child.lifetime_seconds + core.settings.hard_expiry_grace)
    if child.delete_at:
        times.append(child.delete_at)
    if child.rekey_at and not child.superseded_by:
        times.append(
            child.rekey_started + core.settings.rekey_retry
            if child.rekey_started
            else child.rekey_at
        )
    return min(times) if times else None


# ------------------------------------------------------------------------------ phase 1


def on_isakmp_established(core: Negotiator, sa: IsakmpSa) -> None:
    """Soft lifetime, replacement of older SAs with this peer, DPD."""
    if sa.lifetime and rekey.may_initiate(sa.definition):
        sa.rekey_at = soft_time(core, sa.established_at, sa.lifetime)
    rekey.supersede_isakmp(core, sa)
    dpd.start(core, sa)
    core.touch(sa)


def isakmp_timers(core: Negotiator, sa: IsakmpSa) -> None:
    """Runs after the engine's own checks (resends, hard expiry) for an established SA."""
    if not sa.established:
        return
    now = core.now
    if sa.retire_at:
        if now >= sa.retire_at:
            rekey.finish_retirement(core, sa)
        return
    if sa.retired_by:
        return
    dpd.timers(core, sa)
    if not sa.established or not sa.rekey_at:
        return
    if sa.rekey_started and now >= sa.rekey_started + core.settings.rekey_retry:
        sa.rekey_started = 0.0
    if not sa.rekey_started and now >= sa.rekey_at:
        rekey.rekey_isakmp(core, sa)


def count_octets(core: Negotiator, sa: IsakmpSa, size: int) -> None:
    """An accepted datagram of `size` bytes arrived on `sa`: the phase 1 volume limit."""
    sa.octets += size
    choice = sa.choice
    if not sa.established or choice is None or not choice.lifetime_kilobytes:
        return
    limit = choice.lifetime_kilobytes * 1024
    if sa.octets >= limit:
        core.log(
            LogLevel.INFO,
            f"phase 1 {sa.definition.name} with {sa.remote.addr}: kilobyte lifetime reached",
        )
        informational.send_delete_isakmp(core, sa)
        core.drop_isakmp(sa)
    elif (
        sa.octets >= limit * PHASE1_SOFT_VOLUME
        and not sa.rekey_started
        and not sa.retired_by
        and sa.rekey_at
    ):
        rekey.rekey_isakmp(core, sa)


# ------------------------------------------------------------------------------ phase 2


def on_child_installed(core: Negotiator, child: ChildSa, qe: QuickExchange) -> None:
    """A Quick Mode's SAs went to the kernel: lifetimes, and what the new SA replaces."""
    child.lifetime_kilobytes = qe.lifetime_kilobytes
    child.exchange_started = qe.created
    child.rank = min(qe.ni, qe.nr) + max(qe.ni, qe.nr)
    if child.lifetime_seconds and rekey.may_initiate(core.config.phase1.get(child.phase1_number)):
        child.rekey_at = soft_time(core, child.created, child.lifetime_seconds)
    sa = qe.isakmp
    if sa.retired_by and sa.retired_by in core.sas.by_tunnel:
        child.isakmp_tunnel_id = sa.retired_by
    rekey.supersede_child(core, child)
    core.touch_child(child)


def child_timers(core: Negotiator, child: ChildSa) -> None:
    if child.state is ChildState.DELETED:
        return
    now = core.now
    s = core.settings
    if (
        child.lifetime_seconds
        and now >= child.created + child.lifetime_seconds + s.hard_expiry_grace
    ):
        expire_child(core, child, "lifetime ended")
        return
    if child.delete_at and now >= child.delete_at:
        rekey.finish_supersede(core, child)
        return
    if not child.rekey_at or child.superseded_by:
        return
    if child.rekey_started and now >= child.rekey_started + s.rekey_retry:
        child.rekey_started = 0.0
    if not child.rekey_started and now >= child.rekey_at:
        rekey.rekey_child(core, child, "soft lifetime")


def expire_child(core: Negotiator, child: ChildSa, reason: str) -> None:
    """The SA reached its hard limit (the kernel removes it on its own): forget it, tell the
    peer and the parent, and remove what is left (its twin, the policies if unused)."""
    core.log(
        LogLevel.INFO,
        f"phase 2 {child.definition.name} with {child.remote.addr} "
        f"(in {child.spi_in:08x}): {reason}",
    )
    install.remove_child(core, child, send_delete=True, kernel=True)
    core.emit(install.report_child(core, child, 0))


def on_kernel_expire(core: Negotiator, msg: KernelExpire) -> None:
    child = _child_of_kernel_sa(core, msg)
    if child is None:
        core.log(LogLevel.DEBUG, f"kernel expire for unknown SA {msg.spi:08x} to {msg.dst}")
        return
    if msg.hard:
        expire_child(core, child, "hard limit reached in the kernel")
    else:
        rekey.rekey_child(core, child, "soft limit reached in the kernel")
    core.touch_child(child)


def _child_of_kernel_sa(core: Negotiator, msg: KernelExpire) -> ChildSa | None:
    for child in core.sas.children.values():
        if child.protocol != msg.proto or child.state is ChildState.DELETED:
            continue
        if (msg.spi == child.spi_in and msg.dst == child.local.addr) or (
            msg.spi == child.spi_out and msg.dst == child.remote.addr
        ):
            return child
    return None
