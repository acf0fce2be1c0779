"""Lifetime arithmetic: when an SA should be replaced (soft expiry with a randomised
margin), the limits the kernel gets, and the index that keeps one deadline per SA. Pure
computation over the injected clock, random source and settings; timers.py decides what
runs when a deadline comes.

Which clock watches which limit:

* seconds, both phases: the core's own timers. The rekey starts at the soft lifetime,
  ``lifetime - margin - random(0, fuzz * margin)`` (only ever earlier than the margin; the
  margin is the definition's ``rekey_margin``, see rekey_margin()) with the randomness from
  the injected source, so two peers with the same lifetime rarely start at the same moment;
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


HEAP_SLACK = 16  # stale heap entries allowed beyond twice the live ones, before a rebuild


class DeadlineIndex:
    """One deadline per SA, in a heap with lazy removal (a stale entry is skipped).

    The live entry of a key is one (when, key) tuple, in the heap and as the key's value
    in `_at`, and a key keeps the first tuple made for it: a core holding 10,000 tunnels
    has two keys each, re-marked on every event, and kept a copy of both per heap entry.
    """

    __slots__ = ("_at", "_dirty", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, Key]] = []
        self._at: dict[Key, tuple[float, Key]] = {}  # key -> its live heap entry
        self._dirty: set[Key] = set()

    def mark(self, key: Key) -> None:
        self._dirty.add(key)

    def refresh(self, compute: Callable[[Key], float | None]) -> None:
        """Recompute the deadlines of the marked keys."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        at = self._at
        for key in dirty:
            when = compute(key)
            entry = at.get(key)
            if when is None:
                if entry is not None:
                    del at[key]
            elif entry is None or entry[0] != when:
                entry = (when, key if entry is None else entry[1])
                at[key] = entry
                heapq.heappush(self._heap, entry)
        if len(self._heap) > 2 * len(at) + HEAP_SLACK:
            self._heap = list(at.values())
            heapq.heapify(self._heap)

    def next(self, alive: Callable[[Key], bool] | None = None) -> float | None:
        """The earliest deadline; with `alive`, keys whose SA is gone are dropped first (an
        SA removed by code that did not mark it)."""
        heap = self._heap
        while heap:
            entry = heap[0]
            key = entry[1]
            if self._at.get(key) is entry:
                if alive is None or alive(key):
                    return entry[0]
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


def rekey_margin(core: Draws, lifetime: float, configured: int = 0) -> float:
    """Seconds before the end of `lifetime` at which the replacement must have started.

    `configured` is the definition's ``rekey_margin`` (0: none came with it, the settings'
    default applies: ``min(rekey_margin, lifetime * rekey_margin_fraction)``). The margin is
    then kept within two bounds, so the old SA outlives its replacement's negotiation:

    * at least ``rekey_overlap + rekey_retry``: a rekey that started in time has a whole retry
      period to produce the successor, and the old SA still lives through the overlap after
      it (the definition model refuses smaller margins; this covers the default);
    * at most half the lifetime, which matters only when the peer made the lifetime shorter
      than ours (the model refuses more than half of our own).
    """
    s = core.settings
    base = configured or min(s.rekey_margin, lifetime * s.rekey_margin_fraction)
    return min(max(base, s.rekey_overlap + s.rekey_retry), lifetime / 2)


def soft_time(core: Draws, start: float, lifetime: float, configured: int = 0) -> float:
    """When to start replacing an SA that lives `lifetime` seconds from `start`.

    ``lifetime - margin - random(0, spread)``: randomised only towards earlier, like
    strongSwan's ``rand_time``, so the configured margin is always honoured and two peers
    with the same lifetime rarely start together. ``spread = fuzz * margin`` (strongSwan's
    default rand_time is the margin), at most half of what precedes the margin, so an SA is
    never replaced in the first half of its life before the margin."""
    margin = rekey_margin(core, lifetime, configured)
    spread = min(margin * core.settings.rekey_fuzz, (lifetime - margin) / 2)
    return start + lifetime - margin - spread * _uniform(core)


def kernel_lifetimes(
    core: Draws, hard_seconds: int, hard_kilobytes: int, configured_margin: int = 0
) -> Lifetimes:
    """The limits the kernel gets for one IPsec SA, soft ones drawn afresh for each SA.

    Seconds: the soft limit lies in ``[lifetime - margin, lifetime - margin / 2]``, never
    before the latest moment soft_time() can pick, so the core's own rekey comes first and
    the kernel's soft event is only a backstop. Kilobytes (counted by the kernel alone):
    ``hard * (1 - m)`` with m in Settings.kernel_soft_volume_margin, so the two peers,
    whose kernels count the same bytes, rarely reach their soft limits together."""
    soft_s = 0
    if hard_seconds:
        margin = rekey_margin(core, hard_seconds, configured_margin)
        soft_s = min(hard_seconds, math.ceil(hard_seconds - margin + margin / 2 * _uniform(core)))
    soft_kb = 0
    if hard_kilobytes:
        low, high = core.settings.kernel_soft_volume_margin
        share = 1.0 - (low + (high - low) * _uniform(core))
        soft_kb = min(hard_kilobytes, max(1, int(hard_kilobytes * share)))
    return Lifetimes(soft_s, hard_seconds, soft_kb, hard_kilobytes)
