"""The parent's state and the kernel operations that change it.

One object holds what the parent knows (database view, what it installed, peers it saw,
activations) and is the only place that installs or removes kernel objects, so the record
and the kernel cannot drift apart: an entry is recorded only after the kernel accepted
it, and forgotten only after the kernel removed it (or said it was already gone).
Kernel calls run in a worker thread (each is one netlink round trip) under one lock, so
vetting and installing happen as one step.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Final, TypeVar

import trio

from ikepriv.ipc import messages as m
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.installed import Installed, PolicyEntry, SaEntry
from ikepriv.parent_kernel.kernel.client import XfrmKernel
from ikepriv.parent_kernel.kernel.specs import XfrmError
from ikepriv.parent_kernel.keylog import KeyLog
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.ratelimit import RateLimit
from ikepriv.parent_kernel.vetting import XFRM_PROTO, Activation, Vetter

log = logging.getLogger("ikepriv.parent")

_T = TypeVar("_T")
GONE: Final = frozenset({errno.ESRCH, errno.ENOENT})


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
    udp_receive_errors: int = 0
    udp_send_errors: int = 0
    refused_requests: int = 0  # child requests the vetting refused
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
    installed: Installed = field(default_factory=Installed)
    peers: PeerTable = field(default_factory=PeerTable)
    activations: dict[int, Activation] = field(default_factory=dict)
    # what `ike cmd=activate` (or autostart) asked for, replayed to a restarted child
    intents: dict[tuple[m.Phase, int], m.InitiateCommand] = field(default_factory=dict)
    lock: trio.Lock = field(default_factory=trio.Lock)
    refusals: RateLimit = field(default_factory=RateLimit)
    # the child's own Log lines and tunnel events: it can send them as fast as it likes
    child_lines: RateLimit = field(default_factory=lambda: RateLimit("lines from the child"))
    counters: ParentCounters = field(default_factory=ParentCounters)

    def __post_init__(self) -> None:
        self.vetter = Vetter(self.view, self.installed, self.peers, self.activations)

    def set_view(self, view: DbView) -> None:
        self.view = view
        self.vetter.view = view

    async def kernel_call(self, fn: Callable[..., _T], *args: object) -> _T:
        return await trio.to_thread.run_sync(fn, *args)

    def refused(self, what: str, tunnel: int | None, reason: str) -> None:
        self.counters.refused_requests += 1
        if self.refusals.allow(time.monotonic()):
            where = f"tunnel {tunnel}: " if tunnel is not None else ""
            log.warning("%srefused %s from the child: %s", where, what, reason)

    # -- removal (caller holds the lock) ---------------------------------------------------

    async def remove_sa(self, entry: SaEntry) -> None:
        try:
            await self.kernel_call(self.kernel.delete_sa, entry.dst, entry.spi,
                                   XFRM_PROTO[entry.proto])  # fmt: skip
        except XfrmError as exc:
            if exc.errno not in GONE:
                log.error("phase 2 %d: cannot delete SA spi %#x: %s", entry.phase2_number,
                          entry.spi, exc)  # fmt: skip
                return
        self.installed.forget_sa(entry.key)
        if not entry.larval:
            log.info("tunnel %s (phase 2 %d): SA spi %#x to %s removed",
                     entry.tunnel_id, entry.phase2_number, entry.spi, entry.dst)  # fmt: skip

    async def remove_policy(self, entry: PolicyEntry) -> None:
        try:
            await self.kernel_call(self.kernel.delete_policy, entry.spec.selector,
                                   entry.spec.direction)  # fmt: skip
        except XfrmError as exc:
            if exc.errno not in GONE:
                log.error("phase 2 %d: cannot delete policy: %s", entry.phase2_number, exc)
                return
        self.installed.forget_policy(entry.key)
        log.info("phase 2 %d: %s policy %s removed", entry.phase2_number,
                 entry.spec.direction.name.lower(), _selector_text(entry))  # fmt: skip

    async def remove_tunnel_sas(self, tunnel_id: int) -> int:
        entries = self.installed.sas_of_tunnel(tunnel_id)
        for entry in entries:
            await self.remove_sa(entry)
        return len(entries)

    async def remove_phase2_if_unused(self, phase2: int) -> None:
        """Policies go with the last SA of their phase 2 (nothing would carry the traffic)."""
        if any(not e.larval for e in self.installed.sas_of_phase2(phase2)):
            return
        for entry in self.installed.policies_of_phase2(phase2):
            await self.remove_policy(entry)

    async def remove_everything(self) -> None:
        for pol in list(self.installed.policies.values()):
            await self.remove_policy(pol)
        for sa in list(self.installed.sas.values()):
            await self.remove_sa(sa)

    async def remove_larval(self) -> None:
        for sa in self.installed.larval():
            await self.remove_sa(sa)


def _selector_text(entry: PolicyEntry) -> str:
    sel = entry.spec.selector
    return f"{sel.src} -> {sel.dst}"
