"""Bounds on half-open phase 1 exchanges, and on unencrypted notifies per peer.

A half-open exchange holds DH state and a table slot before the peer has proven anything,
so both the number (overall and per peer address) and the age are bounded. Notifies in the
clear answer unauthenticated input; at most one per peer address per period goes out, so
the core can never be turned into an amplifier.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Hashable


class HalfOpenTable:
    """Which keys (exchanges) are half-open, since when, and for which peer."""

    __slots__ = ("_max", "_max_age", "_peers", "_per_peer", "_started")

    def __init__(self, max_count: int, max_per_peer: int, max_age: float) -> None:
        self._max = max_count
        self._per_peer = max_per_peer
        self._max_age = max_age
        self._started: OrderedDict[Hashable, tuple[float, Hashable]] = OrderedDict()
        self._peers: Counter[Hashable] = Counter()

    def __len__(self) -> int:
        return len(self._started)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._started

    def admit(self, peer: Hashable) -> bool:
        """Whether a new half-open exchange with this peer fits the bounds."""
        return len(self._started) < self._max and self._peers[peer] < self._per_peer

    def add(self, key: Hashable, peer: Hashable, now: float) -> None:
        self._started[key] = (now, peer)
        self._peers[peer] += 1

    def remove(self, key: Hashable) -> None:
        """The exchange completed or failed: it stops counting."""
        entry = self._started.pop(key, None)
        if entry is not None:
            peer = entry[1]
            self._peers[peer] -= 1
            if self._peers[peer] <= 0:
                del self._peers[peer]

    def expired(self, now: float) -> list[Hashable]:
        """Keys older than the age bound, oldest first (insertion order is start order)."""
        out = []
        for key, (started, _) in self._started.items():
            if now - started < self._max_age:
                break
            out.append(key)
        return out

    def next_deadline(self) -> float | None:
        for started, _ in self._started.values():
            return started + self._max_age
        return None


class NotifyLimiter:
    """At most one unencrypted notify per peer per period; the table of peers is bounded."""

    __slots__ = ("_last", "_max", "_period")

    def __init__(self, period: float, max_peers: int) -> None:
        self._period = period
        self._max = max_peers
        self._last: OrderedDict[Hashable, float] = OrderedDict()

    def allow(self, peer: Hashable, now: float) -> bool:
        last = self._last.get(peer)
        if last is not None and now - last < self._period:
            return False
        self._last[peer] = now
        self._last.move_to_end(peer)
        while len(self._last) > self._max:
            self._last.popitem(last=False)
        return True
