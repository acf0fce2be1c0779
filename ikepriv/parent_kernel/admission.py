"""Which received datagram reaches the child next (issue 8, point 2: forged first messages).

The parent reads nothing of ISAKMP but the two cookies at their fixed offsets (bytes 0-7,
the initiator's; 8-15, the responder's) and learns which cookies are live from the
datagrams the child sends (every reply leaves through the parent). Each datagram falls in
one class, served in this order:

1. **live**: an exchange the child holds. Its cookie pair was sent by the child, or its
   initiator cookie is one of our own initiations (a reply to our first message carries our
   cookie and the responder's new one). Nobody off the path can guess 64 random bits, so a
   forger cannot get in here. Bounded FIFO (the oldest is dropped, counted).
2. **first**: a first message (responder cookie zero), in two fair queues: sources that
   the definitions name as a peer address (served three turns in four), and all others.
   Inside each, sources take turns (round robin), each source keeps at most a few messages
   (a new one pushes out its own oldest), and a full queue refuses new sources. A flood
   from random sources can only take the share of the others; a flood from a peer's own
   address only competes with that peer. A **repeat** (an initiator cookie that already
   came from the same source: the initiator retransmits) goes to the head of its source's
   queue, never ahead of other sources: a forger who repeats its cookies gains nothing
   over the other sources, only over its own forgeries.
3. **unknown**: a non-zero responder cookie the parent never relayed (or no ISAKMP
   header at all): a reflected answer to a forged first message that carried our address,
   or an exchange so old that its pair was forgotten. Rationed by a token bucket and served
   last; the rest is dropped, counted.

When a configured peer's own queue overflows, its real first message may be among those
lost: `peer_overflow` tells the daemon, which asks the child to initiate towards that peer
itself (PeerFlooded), since our own exchanges never compete with first messages.

The child's queue is kept short (see daemon.py), so a live datagram never waits behind more
than a few first messages; what does not fit waits here, in bounded queues, and what does
not fit those is dropped and counted (`udp_dropped_*` in `ike cmd=list stats`).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterable
from enum import Enum
from typing import Final, Generic, TypeVar

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ZERO: Final = bytes(8)
HEADER: Final = 28  # an ISAKMP header: anything shorter is no IKE message
OWN_INITIATIONS: Final = 4096  # our initiator cookies (first messages we sent)
PENDING_PAIRS: Final = 16384  # pairs the child sent, not yet answered
LIVE_PAIRS: Final = 16384  # pairs the child sent and the peer echoed
PENDING_AGE: Final = 120.0  # seconds a pair waits for its peer's answer
LIVE_QUEUE: Final = 1024
PEER_TURNS: Final = 3  # of every 4 turns, when both first-message queues are busy
FIRST_SOURCES: Final = 256  # sources with first messages waiting, per queue
FIRST_PER_SOURCE: Final = 16
PEER_PER_SOURCE: Final = 64  # a configured peer's address may hold more
SEEN_FIRST: Final = 65536  # (source, initiator cookie) of first messages recently seen
UNKNOWN_QUEUE: Final = 64
UNKNOWN_RATE: Final = (32.0, 64.0)  # burst, per second
# First messages handed to the child: a few times what a busy gateway starts per second
# (100-300 Main Modes/s per child in bench/load.py), far below what a forger sends. The
# rest waits in the fair queues, whose overflow is what tells the daemon a configured
# peer's own first messages drown (PeerFlooded): drained faster, they overflowed later and
# a flooded peer's tunnel came up later (tests/test_attack_flood.py).
FIRST_RATE: Final = (512.0, 512.0)  # burst, per second

T = TypeVar("T")


class Kind(Enum):
    LIVE = "live"
    REPEAT = "repeat"
    FIRST = "first"
    UNKNOWN = "unknown"


class Dropped(Enum):
    """Counters (ParentState.counters) for datagrams admission drops."""

    LIVE = "udp_dropped_live_overflow"
    REPEAT = "udp_dropped_first_overflow"
    FIRST = "udp_dropped_first_overflow"
    UNKNOWN = "udp_dropped_unknown_cookies"


class FairQueue(Generic[T]):
    """Per-source FIFOs served round robin; a source holds at most `per_source` items (a new
    one pushes out its own oldest), at most `max_sources` sources wait at once (a new
    source is refused while all are taken)."""

    __slots__ = ("_max_sources", "_per_source", "_queues", "_size")

    def __init__(self, max_sources: int, per_source: int) -> None:
        self._max_sources = max_sources
        self._per_source = per_source
        self._queues: OrderedDict[Hashable, deque[T]] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def put(self, source: Hashable, item: T, *, first: bool = False) -> int:
        """Enqueue (at the head of its source's queue if `first`); returns how many items
        were dropped for it (0 or 1): the source's oldest, or `item` itself."""
        q = self._queues.get(source)
        if q is None:
            if len(self._queues) >= self._max_sources:
                return 1
            q = self._queues[source] = deque()
        if first:
            q.appendleft(item)
        else:
            q.append(item)
        self._size += 1
        if len(q) > self._per_source:
            if first:
                q.pop()  # the newest of the others: the repeat is the one to keep
            else:
                q.popleft()
            self._size -= 1
            return 1
        return 0

    def get(self) -> T | None:
        """The oldest item of the source whose turn it is."""
        if not self._queues:
            return None
        source, q = next(iter(self._queues.items()))
        item = q.popleft()
        self._size -= 1
        if q:
            self._queues.move_to_end(source)
        else:
            del self._queues[source]
        return item


class _Bucket:
    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, burst: float, rate: float) -> None:
        self.burst, self.rate, self.tokens, self.last = burst, rate, burst, 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


def _remember(table: OrderedDict[bytes, float], key: bytes, now: float, bound: int) -> None:
    table[key] = now
    table.move_to_end(key)
    while len(table) > bound:
        table.popitem(last=False)


class Admission(Generic[T]):
    """The classes above. `count(name)` is called for every datagram dropped here."""

    def __init__(
        self,
        count: Callable[[str], None],
        peer_overflow: Callable[[IPAddress], None] | None = None,
    ) -> None:
        self._count = count
        self._peer_overflow = peer_overflow
        self._own: OrderedDict[bytes, float] = OrderedDict()  # our initiator cookies
        self._pending: OrderedDict[bytes, float] = OrderedDict()  # pairs sent, unanswered
        self._live: OrderedDict[bytes, float] = OrderedDict()  # pairs answered
        self._seen_first: OrderedDict[bytes, None] = OrderedDict()
        self._peers: frozenset[IPAddress] = frozenset()
        self._live_q: deque[T] = deque()
        self._peer_q: FairQueue[T] = FairQueue(FIRST_SOURCES, PEER_PER_SOURCE)
        self._other_q: FairQueue[T] = FairQueue(FIRST_SOURCES, FIRST_PER_SOURCE)
        self._turn = 0
        self._unknown_q: deque[T] = deque()
        self._unknown_bucket = _Bucket(*UNKNOWN_RATE)
        self._first_bucket = _Bucket(*FIRST_RATE)

    def __len__(self) -> int:
        return len(self._live_q) + len(self._peer_q) + len(self._other_q) + len(self._unknown_q)

    def set_peers(self, addresses: Iterable[IPAddress]) -> None:
        """The peer addresses the definitions name (their sources get a queue of their own)."""
        self._peers = frozenset(addresses)

    # -- what the child sends ----------------------------------------------------------

    def outbound(self, data: bytes, now: float) -> None:
        """A datagram the child sends: its cookies are live from now on."""
        if len(data) < HEADER:
            return
        icookie, pair = data[:8], data[:16]
        if pair[8:] == ZERO:
            _remember(self._own, icookie, now, OWN_INITIATIONS)
        elif pair in self._live:
            self._live[pair] = now
            self._live.move_to_end(pair)
        else:
            _remember(self._pending, pair, now, PENDING_PAIRS)

    # -- what arrives ------------------------------------------------------------------

    def classify(self, data: bytes, source: IPAddress, now: float) -> Kind:
        if len(data) < HEADER:
            return Kind.UNKNOWN  # no IKE message: rationed, the child counts it as malformed
        icookie, pair = data[:8], data[:16]
        if pair in self._live:
            self._live[pair] = now
            self._live.move_to_end(pair)
            return Kind.LIVE
        if icookie in self._own:  # an answer to our first message (or a notify about it)
            if pair[8:] != ZERO:
                _remember(self._live, pair, now, LIVE_PAIRS)
            return Kind.LIVE
        if pair[8:] != ZERO:
            sent = self._pending.pop(pair, None)
            if sent is not None and now - sent <= PENDING_AGE:
                _remember(self._live, pair, now, LIVE_PAIRS)  # the peer echoed our cookie
                return Kind.LIVE
            return Kind.UNKNOWN
        key = source.packed + icookie
        if key in self._seen_first:
            self._seen_first.move_to_end(key)
            return Kind.REPEAT
        self._seen_first[key] = None
        if len(self._seen_first) > SEEN_FIRST:
            self._seen_first.popitem(last=False)
        return Kind.FIRST

    def put(self, kind: Kind, source: IPAddress, item: T, now: float) -> None:
        dropped = 0
        if kind is Kind.LIVE:
            self._live_q.append(item)
            if len(self._live_q) > LIVE_QUEUE:
                self._live_q.popleft()
                dropped = 1
        elif kind is Kind.FIRST or kind is Kind.REPEAT:
            peer = source in self._peers
            queue = self._peer_q if peer else self._other_q
            dropped = queue.put(source, item, first=kind is Kind.REPEAT)
            if dropped and peer and self._peer_overflow is not None:
                self._peer_overflow(source)
        elif kind is Kind.UNKNOWN:
            if self._unknown_bucket.take(now):
                self._unknown_q.append(item)
                if len(self._unknown_q) > UNKNOWN_QUEUE:
                    self._unknown_q.popleft()
                else:
                    return
            dropped = 1
        if dropped:
            self._count(Dropped[kind.name].value)

    def get(self, now: float) -> T | None:
        """The next datagram for the child, by class (see the module docstring); first
        messages within FIRST_RATE (None while they wait for it)."""
        if self._live_q:
            return self._live_q.popleft()
        if (self._peer_q or self._other_q) and not self._first_bucket.take(now):
            return self._unknown_q.popleft() if self._unknown_q else None
        first, second = self._peer_q, self._other_q
        if self._turn >= PEER_TURNS:
            first, second = second, first
        self._turn = (self._turn + 1) % (PEER_TURNS + 1)
        item = first.get()
        if item is None:
            item = second.get()
        if item is not None:
            return item
        return self._unknown_q.popleft() if self._unknown_q else None
