"""The parent's state: what it knows, in one object.

Database view, what it installed (`Installed`), peers it saw, activations and intents,
counters, and the lock that installer.py holds while it vets, writes and records. This
module writes nothing to the kernel: installer.py is the one place that does (and the
one place that changes `installed`). Kernel calls that write SAs run in a worker thread
(`kernel_call`); the others run here, in the trio thread (`kernel_now`): see its docstring.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Final, TypeVar

import trio

from ikepriv.ipc import messages as m
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.egress import Egress
from ikepriv.parent_kernel.installed import Installed
from ikepriv.parent_kernel.journal import Journal
from ikepriv.parent_kernel.kernel.client import XfrmKernel
from ikepriv.parent_kernel.keylog import KeyLog
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.ratelimit import RateLimit
from ikepriv.parent_kernel.shards import Sharding
from ikepriv.parent_kernel.vetting import ActivationTable, KnownDefinitions, Vetter

log = logging.getLogger("ikepriv.parent")

_T = TypeVar("_T")


@dataclass(slots=True)
class ParentCounters:
    """What the parent itself dropped or refused, next to the child's counters in
    `ike cmd=list stats` (the names are disjoint from the child's: see vetting)."""

    udp_forwarded: int = 0  # datagrams handed to the child
    udp_keepalives: int = 0  # NAT-T keepalives (dropped, as they should be)
    udp_dropped_truncated: int = 0
    udp_dropped_no_marker: int = 0
    udp_dropped_not_unicast: int = 0
    udp_dropped_bad_source: int = 0
    udp_dropped_unsendable: int = 0  # cannot be put in a DatagramIn
    udp_dropped_no_child: int = 0  # child not running, or not reading its queue
    # admission.py: received, not yet forwarded, dropped by class (forged-flood defence)
    udp_dropped_live_overflow: int = 0
    udp_dropped_first_overflow: int = 0
    udp_dropped_unknown_cookies: int = 0
    udp_receive_errors: int = 0
    udp_send_errors: int = 0
    udp_send_refused: int = 0  # DatagramOut outside the relayed exchanges or their budgets
    refused_requests: int = 0  # child requests the vetting refused
    child_throttled: int = 0  # pauses in reading a child over its request budget
    child_throttled_ms: int = 0  # their total length
    child_lines_dropped: int = 0  # Log lines over the child's line budget
    child_restarts: int = 0  # kept by the supervisor, filled in when listed

    def bump(self, name: str) -> None:
        """Count one event of counter `name` (one of the fields)."""
        setattr(self, name, getattr(self, name) + 1)

    def values(self) -> tuple[m.CounterValue, ...]:
        top = (1 << 64) - 1
        return tuple(m.CounterValue(f.name, min(getattr(self, f.name), top))
                     for f in fields(self))  # fmt: skip


PARENT_COUNTER_NAMES: Final = frozenset(f.name for f in fields(ParentCounters))


@dataclass
class ParentState:
    kernel: XfrmKernel
    view: DbView
    keylog: KeyLog | None = None
    journal: Journal | None = None  # the state file (journal.py); None in unit tests
    installed: Installed = field(default_factory=Installed)
    peers: PeerTable = field(default_factory=PeerTable)
    egress: Egress = field(default_factory=Egress)  # what the child may send, and to whom
    activations: ActivationTable = field(default_factory=ActivationTable)
    # what `ike cmd=activate` (or autostart) asked for, replayed to a restarted child
    intents: dict[tuple[m.Phase, int], m.InitiateCommand] = field(default_factory=dict)
    lock: trio.Lock = field(default_factory=trio.Lock)
    refusals: RateLimit = field(default_factory=RateLimit)
    # the child's own Log lines and tunnel events: it can send them as fast as it likes
    child_lines: RateLimit = field(default_factory=lambda: RateLimit("lines from the child"))
    counters: ParentCounters = field(default_factory=ParentCounters)
    send_errors: RateLimit = field(default_factory=lambda: RateLimit("send errors"))
    sharding: Sharding = field(default_factory=Sharding)  # the negotiator children

    def __post_init__(self) -> None:
        self.vetter = Vetter(self.view, self.installed, self.peers, self.activations,
                             self.egress, self.sharding)  # fmt: skip
        # the view before the last reload: a child may answer a list before it has the new
        # configuration (the parent sends it after revoking what the change made stale)
        self.previous_view = self.view

    def set_view(self, view: DbView) -> None:
        self.previous_view = self.view
        self.view = view
        self.vetter.view = view

    def known_definitions(self) -> KnownDefinitions:
        """Definition numbers a correct child may name in its Stats: of this view or the
        one before the last reload."""
        now, before = self.view, self.previous_view
        return (frozenset(now.phase1) | frozenset(before.phase1),
                frozenset(now.phase2) | frozenset(before.phase2))  # fmt: skip

    async def kernel_call(self, fn: Callable[..., _T], *args: object) -> _T:
        """`fn` in a worker thread: for writes of SAs, which the kernel may hold up (it
        allocates the SA's ciphers, and loads their modules on first use)."""
        return await trio.to_thread.run_sync(fn, *args)

    def kernel_now(self, fn: Callable[..., _T], *args: object) -> _T:
        """`fn` in the trio thread: for requests the kernel carries out at once, in the
        send itself (SPI allocation, deletes), whose answer is then waiting on the socket.
        A hand-over to a worker thread costs more than such a request: about 60 us of CPU
        on a host, 400 us under User Mode Linux, against 13 and 60 us for an SPI."""
        return fn(*args)

    def refused(self, what: str, tunnel: int | None, reason: str, child: int = 0) -> None:
        self.counters.refused_requests += 1
        if self.refusals.allow(time.monotonic()):
            where = f"tunnel {tunnel}: " if tunnel is not None else ""
            who = "the child" if self.sharding.count == 1 else self.sharding.label(child)
            log.warning("%srefused %s from %s: %s", where, what, who, reason)
