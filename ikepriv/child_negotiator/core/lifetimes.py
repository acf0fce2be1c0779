"""Lifetime arithmetic: when an SA should be replaced (soft expiry with a randomised
margin), the limits the kernel gets, and the index that keeps one deadline per SA. Pure
computation over the injected clock, random source and settings; timers.py decides what
runs when a deadline comes.

Which clock watches which limit:

* seconds, both phases: the core's own timers. The rekey starts at the soft lifetime,
  ``lifetime - margin - random(0, fuzz * margin)`` with the randomness from the injected
  source, so two peers with the same lifetime rarely start at the same moment;
* kilobytes of an IPsec SA: only the kernel counts ESP bytes. It reports the soft limit
  (KernelExpire hard=False: rekey now) and the hard one (the SA is gone: report, clean up);
* kilobytes of an ISAKMP SA (only when the peer proposed one): the bytes of the IKE
  datagrams received on it. Reaching 90 % starts a rekey, 100 % ends the SA.

The daemon asks for ``next_deadline()`` after every event, so the engine keeps one deadline
per SA in a heap (DeadlineIndex). Whatever changes an SA's timing marks it; only marked SAs
are recomputed. The invariant: a cached deadline is never later than the SA's real next
deadline. One that is too early costs a wake-up that finds nothing to do and recomputes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Protocol

from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc.messages import Lifetimes

# Deadline kinds: what the number in a Key names.
ISAKMP = 0  # an ISAKMP SA, by tunnel id
CHILD = 1  # an IPsec SA pair, by tunnel id
RESTART = 2  # a DPD restart of a phase 1, by definition number
Key = tuple[int, int]  # (kind, number)

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


class Draws(Protocol):
    """What the margins need from the core: its random source and its settings."""

    @property
    def settings(self) -> Settings: ...

    def random(self, n: int, /) -> bytes: ...


def _uniform(core: Draws) -> float:
    """A draw in [0, 1) from the injected random source."""
    return int.from_bytes(core.random(4), "big") / 2**32


def _margin(core: Draws, lifetime: float) -> float:
    s = core.settings
    return min(s.rekey_margin, lifetime * s.rekey_margin_fraction)


def soft_time(core: Draws, start: float, lifetime: float) -> float:
    """When to start replacing an SA that lives `lifetime` seconds from `start`: between
    ``lifetime - margin * (1 + fuzz)`` and ``lifetime - margin``."""
    margin = _margin(core, lifetime)
    return start + lifetime - margin - margin * core.settings.rekey_fuzz * _uniform(core)


def kernel_lifetimes(core: Draws, hard_seconds: int, hard_kilobytes: int) -> Lifetimes:
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
