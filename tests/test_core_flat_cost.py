"""One more Main Mode next to thousands of held ISAKMP SAs, or thousands of definitions,
costs the core what it costs next to a few (issue 11, goal 4): establishing, superseding
and retiring look at the SAs of the peer concerned, and a responder finds its definition
by index, never by a pass over all. Counted, never timed: the core's tables and
definitions are put behind dicts that count the records every pass over them visits, and a
handshake is run next to 10 and next to 3000 (tests/harness/held.py for the SAs)."""

from __future__ import annotations

import dataclasses
import ipaddress
from types import MappingProxyType
from typing import Any

from harness.core_sim import Simulation, mirrored
from harness.held import hold

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.sa_table import ChildTable
from ikepriv.ipc.messages import LIST_PAGE, ListCommand, Phase, StateReport, StateReportEnd


def _counted(items: Any) -> Any:
    for item in items:
        CountingDict.visits += 1
        yield item


class CountingDict(dict[Any, Any]):
    """A dict that counts the records every pass over it visits (lookups by key are not
    counted)."""

    visits = 0

    def __iter__(self) -> Any:
        return _counted(super().__iter__())

    def items(self) -> Any:
        return _counted(super().items())

    def values(self) -> Any:
        return _counted(super().values())


class CountingChildren(ChildTable):
    def __iter__(self) -> Any:
        return _counted(super().__iter__())

    def items(self) -> Any:
        return _counted(super().items())

    def values(self) -> Any:
        return _counted(super().values())


def passes_for_one_more_main_mode(held: int) -> tuple[int, int]:
    """Records visited in the responder's SA tables during one Main Mode (the initiator's
    second: it replaces the first), and the responder's established count after it."""
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=11)
    sim.initiate()
    sim.run(duration=30.0)
    core = sim.responder.core
    (first,) = sim.established_isakmp("responder")
    hold(core, held, first)
    core.sas.by_tunnel = CountingDict(core.sas.by_tunnel)
    children = CountingChildren()
    for tid, child in core.sas.children.items():
        children[tid] = child
    core.sas.children = children
    CountingDict.visits = 0
    sim.initiate(phase=1)  # a new Main Mode with the same peer: it supersedes the first
    sim.run(duration=30.0)
    visits = CountingDict.visits
    return visits, sum(1 for sa in core.sas.by_tunnel.values() if sa.established)


def test_a_handshake_next_to_many_sas_visits_none_of_them() -> None:
    few, established_few = passes_for_one_more_main_mode(10)
    many, established_many = passes_for_one_more_main_mode(3000)
    assert few == many, (few, many)  # nothing per held SA
    # the new SA is up next to the held ones, which are all still there
    assert established_few - 10 == established_many - 3000 >= 1


def with_definitions(config: ConfigSnapshot, extra: int) -> ConfigSnapshot:
    """`config` and `extra` more phase 1 definitions (a peer of their own each, IPv6
    documentation addresses), behind counting dicts."""
    (template,) = config.phase1.values()
    base = ipaddress.IPv6Address("2001:db8:0:b::")
    local = ipaddress.IPv6Address("2001:db8:0:a::1")
    more = [dataclasses.replace(template, number=100 + i, name=f"peer{i}", local_addr=local,
                                remote_addr=base + i + 1)
            for i in range(extra)]  # fmt: skip
    grown = ConfigSnapshot.of([*config.phase1.values(), *more], config.phase2.values(),
                              config.generation)  # fmt: skip
    return dataclasses.replace(grown, phase1=MappingProxyType(CountingDict(grown.phase1)),
                               phase2=MappingProxyType(CountingDict(grown.phase2)))  # fmt: skip


def visits_with_definitions(extra: int) -> tuple[int, int]:
    """Records visited in the responder's definitions and tables during a first Main Mode
    and Quick Mode with `extra` more definitions, and the SAs it established."""
    init, resp = mirrored()
    sim = Simulation(init, with_definitions(resp, extra), seed=13)
    CountingDict.visits = 0
    sim.initiate()
    sim.run(duration=30.0)
    return CountingDict.visits, len(sim.established_isakmp("responder"))


def test_a_handshake_next_to_many_definitions_visits_none_of_them() -> None:
    few, up_few = visits_with_definitions(10)
    many, up_many = visits_with_definitions(3000)
    assert few == many, (few, many)
    assert up_few == up_many == 1


def one_phase1_up() -> tuple[Simulation, Any, Any]:
    """A responder core with one phase 1 established (the SA the held copies are made of)."""
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=12)
    sim.initiate()
    sim.run(duration=30.0)
    (first,) = sim.established_isakmp("responder")
    return sim, sim.responder.core, first


def test_the_core_lists_any_number_of_tunnels_in_pages() -> None:
    sim, core, first = one_phase1_up()
    held = hold(core, 4096 + 10, first)
    wanted = sorted([first.tunnel_id, *(sa.tunnel_id for sa in held)])
    seen: list[int] = []
    after = 0
    while True:
        out = core.handle(ListCommand(5, Phase.PHASE1, after, True, False), sim.now)
        reports = [a for a in out if isinstance(a, StateReport)]
        assert out[-1] == StateReportEnd(5, len(reports)) and len(reports) <= LIST_PAGE
        seen += [r.tunnel_id for r in reports]
        if len(reports) < LIST_PAGE:
            break
        after = reports[-1].tunnel_id
    assert seen == wanted  # every one, once, in tunnel-id order
    counters_only = core.handle(ListCommand(6, Phase.ALL, 0, False, True), sim.now)
    assert [type(a).__name__ for a in counters_only] == ["Stats", "StateReportEnd"]


def list_all(core: Any, now: float, request_id: int = 7, between: Any = None) -> list[int]:
    """Every tunnel id a listing of phase 1 returns, page by page; `between(page)` runs
    after each page (the daemon goes on while the parent passes a page on)."""
    seen: list[int] = []
    after, page = 0, 0
    while True:
        out = core.handle(ListCommand(request_id, Phase.PHASE1, after, True, False), now)
        reports = [a for a in out if isinstance(a, StateReport)]
        seen += [r.tunnel_id for r in reports]
        if len(reports) < LIST_PAGE:
            return seen
        after = reports[-1].tunnel_id
        page += 1
        if between is not None:
            between(page)


def test_a_listing_visits_each_tunnel_once_not_once_per_page() -> None:
    sim, core, first = one_phase1_up()
    hold(core, 8 * LIST_PAGE, first)
    core.sas.by_tunnel = CountingDict(core.sas.by_tunnel)
    CountingDict.visits = 0
    seen = list_all(core, sim.now)
    assert len(seen) == 8 * LIST_PAGE + 1
    # one pass to sort the ids when the listing begins; a scan per page would be 9 passes
    assert CountingDict.visits <= len(seen) + 1, CountingDict.visits


def test_tunnels_gone_during_a_listing_are_not_listed_and_none_twice() -> None:
    sim, core, first = one_phase1_up()
    held = hold(core, 3 * LIST_PAGE, first)
    doomed = {sa.tunnel_id for sa in held[-LIST_PAGE - 5 :: 7]}
    added: list[int] = []

    def meanwhile(page: int) -> None:
        if page == 1:
            for sa in held:
                if sa.tunnel_id in doomed:
                    core.sas.remove(sa)  # held copies share keys: no delete to send
            added.extend(sa.tunnel_id for sa in hold(core, 3, first))
            # another listing starting in between keeps its own place
            other = list_all(core, sim.now, request_id=8)
            assert other == sorted(other) and not doomed & set(other)

    seen = list_all(core, sim.now, between=meanwhile)
    assert seen == sorted(set(seen))  # ascending, none twice
    assert not doomed & set(seen)
    everyone = {first.tunnel_id, *(sa.tunnel_id for sa in held)}
    assert set(seen) == everyone - doomed  # set up after the listing began: the next one
    assert set(list_all(core, sim.now)) == everyone - doomed | set(added)


def test_a_page_that_continues_no_listing_starts_where_it_is_asked() -> None:
    sim, core, first = one_phase1_up()
    ids = sorted([first.tunnel_id, *(sa.tunnel_id for sa in hold(core, 2 * LIST_PAGE, first))])
    for after in (ids[100], ids[0] - 1, ids[-1]):
        out = core.handle(ListCommand(9, Phase.PHASE1, after, True, False), sim.now)
        got = [a.tunnel_id for a in out if isinstance(a, StateReport)]
        assert got == [i for i in ids if i > after][:LIST_PAGE]
