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


def prefix_of(addr: Hashable, v4_bits: int = 24, v6_bits: int = 64) -> Hashable:
    """The network a source address is counted in for fairness (/24, /64 by default)."""
    packed = getattr(addr, "packed", None)
    if not isinstance(packed, bytes):
        return addr
    bits = v4_bits if len(packed) == 4 else v6_bits
    whole, rest = divmod(bits, 8)
    head = packed[:whole]
    if rest:
        head += bytes([packed[whole] & (0xFF << (8 - rest)) & 0xFF])
    return (len(packed), head)


class UnprovenTable:
    """Responder exchanges started by a first message nobody has proven to come from its
    source address (MM1, AM1): cheap, and never a reason to refuse anything.

    A new exchange always gets in; what makes room is the oldest exchange of the same
    source (past `per_source`), else of the same prefix (past `per_prefix`), else the
    oldest of all. So a flood from one address or one prefix only recycles its own slots,
    and a flood from everywhere turns the table over in insertion order: an exchange whose
    peer answers within the time `max_count` first messages take to arrive survives. An
    exchange leaves once its peer echoes our cookie (see `Negotiator.prove`), fails,
    ends, or ages out.
    """

    __slots__ = ("_by_prefix", "_by_source", "_max", "_max_age", "_per_prefix", "_per_source",
                 "_started")  # fmt: skip

    def __init__(self, max_count: int, per_source: int, per_prefix: int, max_age: float) -> None:
        self._max = max(1, max_count)
        self._per_source = max(1, per_source)
        self._per_prefix = max(1, per_prefix)
        self._max_age = max_age
        self._started: OrderedDict[Hashable, tuple[float, Hashable, Hashable]] = OrderedDict()
        self._by_source: dict[Hashable, OrderedDict[Hashable, None]] = {}
        self._by_prefix: dict[Hashable, OrderedDict[Hashable, None]] = {}

    def __len__(self) -> int:
        return len(self._started)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._started

    def add(self, key: Hashable, peer: Hashable, now: float) -> list[Hashable]:
        """Admit `key`; returns the keys evicted to make room (the caller forgets them)."""
        evicted: list[Hashable] = []
        prefix = prefix_of(peer)
        same_source = self._by_source.get(peer)
        same_prefix = self._by_prefix.get(prefix)
        if same_source is not None and len(same_source) >= self._per_source:
            evicted.append(next(iter(same_source)))
        elif same_prefix is not None and len(same_prefix) >= self._per_prefix:
            evicted.append(next(iter(same_prefix)))
        elif len(self._started) >= self._max:
            evicted.append(next(iter(self._started)))
        for old in evicted:
            self.remove(old)
        self._started[key] = (now, peer, prefix)
        self._by_source.setdefault(peer, OrderedDict())[key] = None
        self._by_prefix.setdefault(prefix, OrderedDict())[key] = None
        return evicted

    def remove(self, key: Hashable) -> None:
        entry = self._started.pop(key, None)
        if entry is None:
            return
        _, peer, prefix = entry
        for table, group in ((self._by_source, peer), (self._by_prefix, prefix)):
            keys = table.get(group)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    del table[group]

    def expired(self, now: float) -> list[Hashable]:
        out = []
        for key, (started, _, _) in self._started.items():
            if now - started < self._max_age:
                break
            out.append(key)
        return out

    def next_deadline(self) -> float | None:
        for started, _, _ in self._started.values():
            return started + self._max_age
        return None


class WorkBudget:
    """Token buckets for work done before a peer proved anything (Aggressive Mode: DH and
    an SKEYID request per AM1): per source address, per source prefix and per definition,
    all of which must have a token. Tables of sources and prefixes are bounded (least
    recently used forgotten: a forgotten source starts with a full, small bucket)."""

    __slots__ = ("_buckets", "_max_keys", "_rates")

    def __init__(
        self,
        source: tuple[float, float],
        prefix: tuple[float, float],
        definition: tuple[float, float],
        max_keys: int,
    ) -> None:
        self._rates = {"source": source, "prefix": prefix, "definition": definition}
        self._max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, Hashable], list[float]] = OrderedDict()

    def _bucket(self, kind: str, key: Hashable, now: float) -> list[float]:
        burst, rate = self._rates[kind]
        b = self._buckets.get((kind, key))
        if b is None:
            b = self._buckets[(kind, key)] = [burst, now]
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end((kind, key))
            b[0] = min(burst, b[0] + max(0.0, now - b[1]) * rate)
            b[1] = now
        return b

    def take(self, peer: Hashable, definition: Hashable, now: float) -> bool:
        """One unit of work for `peer` under `definition`, if every bucket allows it."""
        buckets = [
            self._bucket("source", peer, now),
            self._bucket("prefix", prefix_of(peer), now),
            self._bucket("definition", definition, now),
        ]
        if any(b[0] < 1 for b in buckets):
            return False
        for b in buckets:
            b[0] -= 1
        return True
