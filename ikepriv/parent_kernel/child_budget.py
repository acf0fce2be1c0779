"""How much work the child may make the parent do: token budgets with back-pressure.

A compromised child can send any valid message in any order, as fast as the socketpair
carries them. Each message costs the parent work (decoding and vetting always; kernel
writes, SKEYID computations, SPI allocations, datagrams, log lines depending on its kind),
so every message is charged, before it is handled, to the budget of its class and to the
overall budget:

| class | messages | cost | rate/s | burst |
|---|---|---|---|---|
| kernel | SpiRequest, Phase2Install, Phase2Commit, Phase2Remove | objects written | 128 | 1024 |
| secret | SkeyidRequest, NonceRequest (1), SignatureRequest (4) | 1, 4 | 1024 | 2048 |
| datagram | DatagramOut | 1 | 64 + credit | 1024 |
| report | StateReport (asked for), StateReportEnd, Stats | 1 | 8192 + credit | 2 x MAX_ROWS |
| line | Log, KeyLog, unsolicited StateReport | 1 | 1024 | 2048 |
| all | every message | 1 | 8192 | 16384 |

Datagrams are tied to what the parent received: every datagram it forwards to the child
grants DATAGRAM_CREDIT more (an honest child answers each with at most one or two, and
retransmits from the steady rate), capped at DATAGRAM_CAP, so under a UDP flood the child
may answer what the flood brought, and without one a hostile child's datagrams cost at most
the steady rate. Reports are tied to what the parent asked for in the same way: each page
of a listing it asks for (ListCommand, at most LIST_PAGE reports, which the parent
enforces) grants a page's worth, up to the burst, so a long listing is never throttled.
A kernel request is charged, before it is handled, the number of kernel objects it can
write: an SPI one, an install its two SAs and its policies, twice (an install the kernel
refuses half way is undone; the same for one sent with inbound_first, which writes part of
it), a commit its outbound SA and out policy and the undo of the whole install, twice, a
remove its two SAs and the policies of its reqid. One the parent carried out gets back what
it did not write (`refund`): a rekey keeps its policies, so an SA pair replaced costs about
5 objects instead of 16 to 21, and the budget's rate bounds what is really written.

When a budget is short the parent does not drop the message (an honest child never loses
an answer), with one exception: a Log line over the line budget is read and dropped
(`child_lines_dropped`), since waiting for it would stall the child's answers too, and a
child logging a flood of unauthenticated input must not stop its tunnels. Otherwise it stops
reading the child's socket until the budget covers it (back-pressure:
the socketpair fills and the child's sends block), then handles it. Each pause is counted
(`child_throttled`, and its length in `child_throttled_ms`) and logged, rate-limited. The
budgets outlive a child: a child that crashes itself gets no fresh burst, only the restart
back-off. So the parent's work for the child is bounded by these rates times the (bounded)
cost of one message, whatever the child does.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

import trio

from ikepriv.ipc import messages as m
from ikepriv.ipc.schema import Message
from ikepriv.parent_kernel.ratelimit import RateLimit

log = logging.getLogger("ikepriv.parent")


class Kind(Enum):
    KERNEL = "kernel"
    SECRET = "secret"  # noqa: S105 - a class of requests, not a password
    DATAGRAM = "datagram"
    REPORT = "report"
    LINE = "line"
    ALL = "all"


# (rate per second, burst)
BUDGETS: Final[dict[Kind, tuple[float, float]]] = {
    Kind.KERNEL: (128.0, 1024.0),
    # one per phase 1 (SKEYID, or nonce and signature): 256/s held one child under load at
    # 256 Main Modes/s while the parent's work for it is an HMAC (about 0.8 % of a core at
    # 256/s); the parent's nonce in every prf input makes it work bounded, not an oracle
    Kind.SECRET: (1024.0, 2048.0),
    Kind.DATAGRAM: (64.0, 1024.0),
    Kind.REPORT: (8192.0, 2.0 * m.MAX_ROWS + 16),
    Kind.LINE: (1024.0, 2048.0),  # one per tunnel established (its report, which the parent logs)
    Kind.ALL: (8192.0, 16384.0),
}
DATAGRAM_CREDIT: Final = 2.0  # DatagramOut allowed per datagram forwarded to the child
DATAGRAM_CAP: Final = 16384.0  # at most this much credit, steady and granted together
# a signature is a private-key operation (RSA-2048 about 0.4 ms in the parent): it costs
# four, so signatures stay at 256 a second per child, as before the secret rate was raised
SIGNATURE_COST: Final = 4.0
REMOVE_POLICIES: Final = 3  # out, in, fwd: what a Phase2Remove may take with its SAs
UNSOLICITED: Final = 0  # StateReport request id of an event the child reports by itself


@dataclass
class Bucket:
    """Tokens refilled at `rate` per second up to `burst`; taking may leave a debt, which
    is what the caller waits out before it goes on."""

    rate: float
    burst: float
    cap: float = 0.0  # how far granted credit may fill it (at least burst)
    tokens: float = 0.0
    stamp: float = 0.0
    started: bool = False

    def refill(self, now: float) -> None:
        if not self.started:
            self.tokens, self.stamp, self.started = self.burst, now, True
        if self.tokens < self.burst:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now

    def take(self, cost: float, now: float) -> float:
        """Take `cost` tokens; the seconds until the debt (if any) is paid off."""
        self.refill(now)
        self.tokens -= cost
        return max(0.0, -self.tokens / self.rate)

    def grant(self, amount: float, now: float) -> None:
        self.refill(now)
        self.tokens = min(max(self.cap, self.burst), self.tokens + amount)


# the classes whose cost is fixed, by message type: one dict lookup per message (the hot
# ones, DatagramOut and SkeyidRequest, come several times per handshake)
_FIXED: Final[dict[type, tuple[Kind, float]]] = {
    m.SpiRequest: (Kind.KERNEL, 1.0),
    m.Phase2Remove: (Kind.KERNEL, 2.0 + REMOVE_POLICIES),
    # its outbound SA and out policy, and when the kernel refuses them the undo of those and
    # of the first half (inbound SA deleted and reserved again, in and fwd policies)
    m.Phase2Commit: (Kind.KERNEL, 2.0 * (2 + REMOVE_POLICIES)),
    m.SkeyidRequest: (Kind.SECRET, 1.0),
    m.NonceRequest: (Kind.SECRET, 1.0),
    m.SignatureRequest: (Kind.SECRET, SIGNATURE_COST),
    m.DatagramOut: (Kind.DATAGRAM, 1.0),
    m.StateReportEnd: (Kind.REPORT, 1.0),
    m.Stats: (Kind.REPORT, 1.0),
}


def cost(msg: Message) -> tuple[Kind, float]:
    """The class a child message is charged to, and its cost there."""
    fixed = _FIXED.get(type(msg))
    if fixed is not None:
        return fixed
    match msg:
        case m.Phase2Install():
            return Kind.KERNEL, 2.0 * (2 + len(msg.policies))
        case m.StateReport() if msg.request_id == UNSOLICITED:
            return Kind.LINE, 1.0
        case m.StateReport():
            return Kind.REPORT, 1.0
        case _:
            return Kind.LINE, 1.0  # Log, KeyLog, and whatever dispatch then refuses


@dataclass
class ChildBudget:
    buckets: dict[Kind, Bucket] = field(
        default_factory=lambda: {k: Bucket(rate, burst) for k, (rate, burst) in BUDGETS.items()}
    )
    _forwarded: int = 0  # the parent's udp_forwarded counter when last looked at
    _lines: RateLimit = field(default_factory=lambda: RateLimit("throttling notices", 10))

    def __post_init__(self) -> None:
        self.buckets[Kind.DATAGRAM].cap = DATAGRAM_CAP

    def charge(self, msg: Message, now: float, forwarded: int = 0) -> tuple[float, Kind]:
        """Charge `msg`; how long to stop reading the child first (0: go on), and why.
        `forwarded`: datagrams handed to the child so far (the parent's counter)."""
        kind, amount = cost(msg)
        if forwarded > self._forwarded:
            new, self._forwarded = forwarded - self._forwarded, forwarded
            self.buckets[Kind.DATAGRAM].grant(DATAGRAM_CREDIT * min(new, DATAGRAM_CAP), now)
        wait_kind = self.buckets[kind].take(amount, now)
        wait_all = self.buckets[Kind.ALL].take(1.0, now)
        return (wait_kind, kind) if wait_kind >= wait_all else (wait_all, Kind.ALL)

    def refund(self, msg: Message, used: float, now: float) -> None:
        """`msg` was carried out with `used` of what `charge` took for it: the rest comes
        back, never more than was taken, and at least one stays charged (a request that
        wrote nothing, say the remove of a pair already gone, still cost its vetting), so
        the class's rate bounds both the writes and the requests."""
        kind, amount = cost(msg)
        kept = max(used, 1.0)
        if kept < amount:
            self.buckets[kind].grant(amount - kept, now)

    def grant_reports(self, amount: float, now: float) -> None:
        """The parent asked for a page of reports: that many more may come."""
        self.buckets[Kind.REPORT].grant(amount, now)

    def drop_log(self, msg: Message, now: float) -> bool:
        """Whether `msg` is a Log line over the line budget, to be dropped unhandled (its
        decoding still counts against the overall budget)."""
        if not isinstance(msg, m.Log):
            return False
        line = self.buckets[Kind.LINE]
        line.refill(now)
        if line.tokens >= 1.0:
            return False
        self.buckets[Kind.ALL].take(1.0, now)
        return True

    async def admit(self, msg: Message, forwarded: int = 0) -> float:
        """Charge `msg` and, if its budget is short, wait (not reading the child: the
        caller is its only reader) until it is not. The seconds waited."""
        now = time.monotonic()
        delay, kind = self.charge(msg, now, forwarded)
        if delay <= 0.0:
            return 0.0
        await self.pause(delay, kind, now)
        return delay

    async def pause(self, delay: float, kind: Kind, now: float) -> None:
        """Wait out the debt `charge` reported (logged, rate-limited)."""
        if self._lines.allow(now):
            log.warning("child exceeds its %s request budget: not reading it for %.3f s",
                        kind.value, delay)  # fmt: skip
        await trio.sleep(delay)
