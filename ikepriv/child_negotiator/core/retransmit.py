"""Per-exchange memory of the last flight sent and of the messages received.

IKEv1 runs over UDP, so both ends resend. Three rules, all driven from here:

* a timer resends the last flight with exponential back-off, a bounded number of times;
* a datagram identical to the last one we accepted is the peer resending because our
  answer got lost: resend that answer as it was (same bytes, no new crypto, no IV change);
* a datagram identical to an older accepted one is late or replayed: drop and count it.

Datagrams are compared by a short digest of their bytes, computed once per datagram. A
Flight is kept by every ISAKMP SA for as long as it lives (the last flight answers a repeat
of the peer's last message), so what it remembers is one bytes object of concatenated
digests, not a container of them (an OrderedDict of three digests cost 0.6 kB per SA).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum

from ikepriv.ipc.messages import DatagramOut

SEEN_MAX = 8  # digests of accepted messages kept per exchange
DIGEST_BYTES = 16


def datagram_digest(data: bytes) -> bytes:
    """Identity of a datagram for duplicate detection (not a security check)."""
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


class Seen(Enum):
    NEW = 0
    LAST = 1  # the last accepted message again: answer with our last flight
    OLD = 2  # an older accepted message: late or replayed


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float
    factor: float
    max_interval: float
    tries: int

    def interval(self, sent_count: int) -> float:
        """Wait after the `sent_count`-th transmission (1 = the first send)."""
        return min(self.base * self.factor ** (sent_count - 1), self.max_interval)


class TimerResult(Enum):
    NOTHING = 0
    RESEND = 1
    GIVE_UP = 2


@dataclass(slots=True)
class Flight:
    """What one exchange last sent, and what it accepted."""

    datagrams: tuple[DatagramOut, ...] = ()
    sent_count: int = 0
    deadline: float | None = None  # None: not resent on a timer (answered on duplicates)
    # digests of the accepted messages, oldest first, the last accepted one at the end
    _seen: bytes = b""

    def sent(self, datagrams: tuple[DatagramOut, ...], now: float, backoff: Backoff | None) -> None:
        """A new flight went out; with `backoff`, it is resent until answered."""
        self.datagrams = datagrams
        self.sent_count = 1
        self.deadline = now + backoff.interval(1) if backoff is not None else None

    def stop_timer(self) -> None:
        self.deadline = None

    def on_timer(self, now: float, backoff: Backoff) -> TimerResult:
        if self.deadline is None or now < self.deadline:
            return TimerResult.NOTHING
        if self.sent_count > backoff.tries:
            self.deadline = None
            return TimerResult.GIVE_UP
        self.sent_count += 1
        self.deadline = now + backoff.interval(self.sent_count)
        return TimerResult.RESEND

    def classify(self, digest: bytes) -> Seen:
        seen = self._seen
        if len(digest) != DIGEST_BYTES or not seen:
            return Seen.NEW
        if seen.endswith(digest):
            return Seen.LAST
        for at in range(0, len(seen) - DIGEST_BYTES, DIGEST_BYTES):
            if seen.startswith(digest, at):
                return Seen.OLD
        return Seen.NEW

    def accepted(self, digest: bytes) -> None:
        """Record a received message that passed every check (never before: a forged copy
        must not be able to trigger resends). The previous flight answered an earlier
        message, so it is dropped: until we send again, a repeat gets no answer."""
        self.datagrams = ()
        self.deadline = None
        if len(digest) != DIGEST_BYTES:
            raise ValueError(f"a datagram digest has {DIGEST_BYTES} bytes")
        kept = self._seen[-(SEEN_MAX - 1) * DIGEST_BYTES :]
        self._seen = kept + digest
