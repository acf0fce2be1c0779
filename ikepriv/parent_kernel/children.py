"""The daemon's negotiator children as one: routing to the right one, listings merged.

Each child (`Shard`) has its own supervisor (process, socketpair, sandbox, back-off),
its own ChildRequests (budget, listings), its own admission queue (first messages of its
peers only, so a flood towards one shard's addresses fills that shard's queue), its own
queue of datagrams that wait while it restarts, and the count of datagrams it was given
(its DatagramOut credit). Shared, behind the state's lock: the records, the installer,
the kernel, the peer table, the definitions.

Routing (shards.py): a peer's datagrams, activations, resumed phase 2s and PeerFlooded go
to the child of the peer's address; a RemoveCommand to the child whose class holds the
tunnel number; configuration snapshots to all. `walk` merges the children's paged
listings into one in tunnel-number order, holding two pages per child at most; counters are
summed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, field

import trio

from ikepriv.ipc import messages as m
from ikepriv.ipc.schema import Message
from ikepriv.parent_kernel import udp
from ikepriv.parent_kernel.admission import Admission, IPAddress
from ikepriv.parent_kernel.installer import Installer
from ikepriv.parent_kernel.requests import MAX_REPORTS, ChildListing, ChildRequests
from ikepriv.parent_kernel.shards import Sharding
from ikepriv.parent_kernel.supervisor import Supervisor
from ikepriv.process_contract import COUNTER_MAX


@dataclass(eq=False)
class Shard:
    """One negotiator child and what the parent keeps for it alone."""

    index: int
    supervisor: Supervisor
    requests: ChildRequests
    admission: Admission[udp.Received]
    early: deque[tuple[float, m.DatagramIn]] = field(default_factory=deque)
    arrived: trio.Event = field(default_factory=trio.Event)
    flooded: dict[IPAddress, float] = field(default_factory=dict)  # configured peers only
    ever_ready: bool = False

    def send(self, msg: Message) -> bool:
        return self.supervisor.send(msg)


class _Cursor:
    """One child's listing, page by page, as the merge consumes it."""

    __slots__ = ("buffer", "done", "index", "pages")

    def __init__(self, index: int, pages: AsyncIterator[ChildListing | None]) -> None:
        self.index = index
        self.pages = pages
        self.buffer: deque[m.StateReport] = deque()
        self.done = False

    async def fetch(self, silent: set[int]) -> ChildListing | None:
        """The next page into the buffer (None at the end, or if the child went silent)."""
        page = await anext(self.pages, False)
        if page is False or page is None:
            self.done = True
            if page is None:
                silent.add(self.index)
            return None
        assert isinstance(page, ChildListing)
        self.buffer.extend(page.reports)
        return page


def merged_counters(
    listings: Sequence[ChildListing],
) -> tuple[tuple[m.CounterValue, ...], tuple[m.DefinitionCounts, ...]]:
    """The children's counters summed by name, and their per-definition tallies summed by
    definition (first-seen order; at most MAX_DEFINITION_COUNTS, as in one Stats)."""
    sums: dict[str, int] = {}
    for listing in listings:
        for c in listing.counters:
            sums[c.name] = min(COUNTER_MAX, sums.get(c.name, 0) + c.value)
    tallies: dict[tuple[m.Phase, int], tuple[int, int]] = {}
    for listing in listings:
        for d in listing.definitions:
            rekeys, dead = tallies.get((d.phase, d.number), (0, 0))
            tallies[(d.phase, d.number)] = (min(COUNTER_MAX, rekeys + d.rekeys),
                                            min(COUNTER_MAX, dead + d.dpd_failures))  # fmt: skip
    counters = tuple(m.CounterValue(name, value) for name, value in sums.items())
    definitions = tuple(m.DefinitionCounts(phase, number, rekeys, dead)
                        for (phase, number), (rekeys, dead) in tallies.items())  # fmt: skip
    return counters, definitions[: m.MAX_DEFINITION_COUNTS]


class Negotiators:
    """What the control commands need of the children, whatever their number."""

    def __init__(self, sharding: Sharding, shards: Sequence[Shard], installer: Installer) -> None:
        self.sharding = sharding
        self.shards = tuple(shards)
        self.installer = installer

    def label(self, index: int) -> str:
        return self.sharding.label(index)

    def restarts(self) -> int:
        return sum(s.supervisor.restarts for s in self.shards)

    def for_peer(self, peer: IPAddress) -> Shard:
        return self.shards[self.sharding.of_address(peer)]

    def for_tunnel(self, tunnel_id: int) -> Shard:
        return self.shards[self.sharding.of_number(tunnel_id)]

    def send_to_peer(self, peer: IPAddress, msg: Message) -> bool:
        """To the child that serves `peer` (an activation, a PeerFlooded, ...)."""
        return self.for_peer(peer).send(msg)

    def remove(self, phase: m.Phase, tunnel_id: int) -> bool:
        """RemoveCommand to the child that numbered the tunnel."""
        return self.for_tunnel(tunnel_id).send(m.RemoveCommand(phase, tunnel_id))

    async def walk(
        self, phase: m.Phase, silent: set[int], *, counters: bool = False
    ) -> AsyncGenerator[ChildListing, None]:
        """Every child's tunnels of `phase`, merged in tunnel-number order, in pages of at
        most MAX_REPORTS; the first page carries the summed counters (if asked for). A
        child that does not answer (or is in `silent` already) is added to `silent` and
        left out; the others are listed. Holds two pages per child at most (see
        ChildRequests.walk)."""
        cursors: list[_Cursor] = []
        firsts: list[ChildListing] = []
        for shard in self.shards:
            if shard.index in silent:
                continue
            cursor = _Cursor(shard.index, shard.requests.walk(phase, counters=counters))
            first = await cursor.fetch(silent)
            if first is not None:
                firsts.append(first)
            cursors.append(cursor)
        summed, definitions = merged_counters(firsts) if counters else ((), ())
        head: ChildListing | None = ChildListing([], summed, definitions) if firsts else None
        out: list[m.StateReport] = []
        while True:
            for cursor in cursors:
                if not cursor.buffer and not cursor.done:
                    await cursor.fetch(silent)
            live = [c for c in cursors if c.buffer]
            if not live:
                break
            out.append(min(live, key=lambda c: c.buffer[0].tunnel_id).buffer.popleft())
            if len(out) >= MAX_REPORTS:
                yield _page(out, head)
                out, head = [], None
        if out or head is not None:
            yield _page(out, head)

    async def counters(self, silent: set[int]) -> ChildListing | None:
        """Every child's counters summed (`ike cmd=list stats`); None if none answered."""
        answers: list[ChildListing] = []
        for shard in self.shards:
            listing = await shard.requests.child_counters()
            if listing is None:
                silent.add(shard.index)
            else:
                answers.append(listing)
        if not answers:
            return None
        return ChildListing([], *merged_counters(answers))

    def silent_text(self, silent: set[int]) -> str:
        """Who did not answer, for a listing's closing line."""
        if self.sharding.count == 1:
            return "negotiator"
        return ", ".join(self.label(i) for i in sorted(silent))

    async def stop(self, grace: float) -> None:
        """Ask every child to shut down, at the same time."""
        async with trio.open_nursery() as nursery:
            for shard in self.shards:
                nursery.start_soon(shard.supervisor.stop, grace)


def _page(reports: list[m.StateReport], head: ChildListing | None) -> ChildListing:
    if head is None:
        return ChildListing(list(reports))
    return ChildListing(list(reports), head.counters, head.definitions)
