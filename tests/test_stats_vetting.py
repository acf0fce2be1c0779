"""The counters' contract without a daemon: what the core sends, what the parent accepts.

- The core answers every ListCommand with one Stats, before the StateReportEnd that
  closes the answer, carrying each of its counters once, under the names `ike cmd=list
  stats` shows.
- The parent accepts only those names (an allowlist), each once; its own counters have
  names of their own, so the two never mix in one listing.
- Vetting added alongside: an SA always carries the install's selector (the inbound one
  turned around), never the kernel's wildcard.
"""

from __future__ import annotations

import ipaddress
from dataclasses import fields
from typing import Any, cast

import pytest
import trio
import trio.testing
from test_vetting_rules import DEFS, A, B, allocate, install, numbered

from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.ipc import decode, encode
from ikepriv.ipc import messages as m
from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.schema import Direction
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.installed import Installed
from ikepriv.parent_kernel.kernel.specs import SelectorSpec
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.requests import ChildListing, ChildRequests
from ikepriv.parent_kernel.state import PARENT_COUNTER_NAMES, ParentCounters, ParentState
from ikepriv.parent_kernel.supervisor import ProtocolViolation
from ikepriv.parent_kernel.udp import Drop
from ikepriv.parent_kernel.vetting import Phase2Plan, Vetter, stats_problem
from ikepriv.process_contract import COUNTER_NAMES, Counters, DefinitionTally


def test_the_core_answers_a_list_with_its_counters_before_the_end() -> None:
    core = Negotiator(None, 0.0, lambda n: bytes(n))
    core.counters.dropped_malformed = 3
    core.counters.retransmits = 1 << 70  # held to 64 bits, not an encoding error
    actions = core.handle(m.ListCommand(41, m.Phase.ALL), 0.0)
    assert [type(a) for a in actions] == [m.Stats, m.StateReportEnd]
    stats, end = actions
    assert isinstance(stats, m.Stats) and end == m.StateReportEnd(41, 0)
    assert stats.request_id == 41
    values = {c.name: c.value for c in stats.counters}
    assert list(values) == [f.name for f in fields(Counters)]  # every one, in field order
    assert values["dropped_malformed"] == 3 and values["retransmits"] == (1 << 64) - 1
    assert values["datagrams_in"] == 0
    assert decode(encode(stats), Direction.CHILD_TO_PARENT) == stats
    assert stats_problem(stats) is None


def test_counter_sets_fit_the_messages_and_do_not_overlap() -> None:
    assert len(COUNTER_NAMES) <= m.MAX_COUNTERS
    assert len(COUNTER_NAMES) + len(PARENT_COUNTER_NAMES) <= m.MAX_RESPONSE_COUNTERS
    assert not COUNTER_NAMES & PARENT_COUNTER_NAMES
    assert {drop.value for drop in Drop} <= PARENT_COUNTER_NAMES
    for name in COUNTER_NAMES | PARENT_COUNTER_NAMES:
        m.CounterValue(name, 0)  # a valid wire name: NAME charset, short enough


def test_parent_counters_count_by_name() -> None:
    counters = ParentCounters()
    counters.bump(Drop.TRUNCATED.value)
    counters.bump(Drop.TRUNCATED.value)
    counters.refused_requests += 1
    values = {c.name: c.value for c in counters.values()}
    assert values["udp_dropped_truncated"] == 2 and values["refused_requests"] == 1
    assert sum(values.values()) == 3


@pytest.mark.parametrize(
    ("counters", "problem"),
    [
        ((m.CounterValue("dropped_replay", 1), m.CounterValue("made_up", 1)),
         "unknown counter 'made_up'"),
        ((m.CounterValue("udp_forwarded", 1),), "unknown counter 'udp_forwarded'"),
        ((m.CounterValue("retransmits", 1), m.CounterValue("retransmits", 9)),
         "counter 'retransmits' twice"),
    ],
)  # fmt: skip
def test_parent_refuses_counters_the_core_does_not_keep(
    counters: tuple[m.CounterValue, ...], problem: str
) -> None:
    assert stats_problem(m.Stats(1, counters)) == problem
    assert stats_problem(m.Stats(1, counters[:1] if "twice" in problem else ())) is None


def test_counter_names_and_counts_are_bounded_on_the_wire() -> None:
    with pytest.raises(IpcError) as info:
        m.CounterValue("two words", 1)
    assert info.value.reason is Reason.BAD_CHARSET
    with pytest.raises(IpcError) as info:
        m.CounterValue("x" * (m.MAX_COUNTER_NAME + 1), 1)
    assert info.value.reason is Reason.BAD_LENGTH
    many = tuple(m.CounterValue(f"c{n}", n) for n in range(m.MAX_COUNTERS + 1))
    with pytest.raises(IpcError) as info:
        m.Stats(1, many)
    assert info.value.reason is Reason.TOO_MANY
    # a count byte above the bound is refused before any counter is read
    wire = bytearray(encode(m.Stats(1, many[: m.MAX_COUNTERS])))
    wire[6] = m.MAX_COUNTERS + 1
    with pytest.raises(IpcError) as info:
        decode(bytes(wire), Direction.CHILD_TO_PARENT)
    assert info.value.reason is Reason.TOO_MANY


# -- an SA without a selector ------------------------------------------------------------


def _vetter() -> Vetter:
    peers = PeerTable()
    peers.record(A, B, 500, natt=False, now=0.0)
    return Vetter(numbered(DEFS), Installed(), peers, {})


LAN_A = ipaddress.ip_network("198.51.100.0/24")
LAN_B = ipaddress.ip_network("203.0.113.0/24")


def test_sas_carry_the_installs_selector_never_the_wildcard() -> None:
    # the definition: 198.51.100.0/24 <-> 203.0.113.0/24, tcp, remote port 443
    vetter = _vetter()
    allocate(vetter)
    plan = vetter.phase2_install(install())
    assert isinstance(plan, Phase2Plan), plan
    assert plan.outbound.spec.selector == SelectorSpec(LAN_A, LAN_B, 6, 0, 443)
    assert plan.inbound.spec.selector == SelectorSpec(LAN_B, LAN_A, 6, 443, 0)


# -- the per-definition tally (rekeys, DPD failures) ----------------------------------------

KNOWN = ({1, 2}, {1})


@pytest.mark.parametrize(
    ("tally", "problem"),
    [
        ((m.DefinitionCounts(m.Phase.PHASE1, 7, 1, 0),),
         "counts for unknown phase 1 definition 7"),
        ((m.DefinitionCounts(m.Phase.PHASE2, 2, 1, 0),),  # a phase 1 number, not a phase 2
         "counts for unknown phase 2 definition 2"),
        ((m.DefinitionCounts(m.Phase.PHASE1, 1, 1, 0), m.DefinitionCounts(m.Phase.PHASE1, 1, 0, 5)),
         "counts for phase 1 definition 1 twice"),
    ],
)  # fmt: skip
def test_parent_refuses_a_tally_of_definitions_it_does_not_hold(
    tally: tuple[m.DefinitionCounts, ...], problem: str
) -> None:
    assert stats_problem(m.Stats(1, (), tally), KNOWN) == problem
    assert stats_problem(m.Stats(1, (), tally)) is not None  # nothing known: nothing accepted
    fine = (
        m.DefinitionCounts(m.Phase.PHASE1, 2, 3, 4),
        m.DefinitionCounts(m.Phase.PHASE2, 1, 9, 0),
    )
    assert stats_problem(m.Stats(1, (), fine), KNOWN) is None


def test_the_tally_is_bounded_and_dpd_failures_belong_to_phase1_on_the_wire() -> None:
    with pytest.raises(IpcError) as info:
        m.DefinitionCounts(m.Phase.PHASE2, 1, 0, 1)
    assert info.value.reason is Reason.INCONSISTENT
    with pytest.raises(IpcError):
        m.DefinitionCounts(m.Phase.PHASE1_PLUS, 1, 0, 0)
    entry = m.DefinitionCounts(m.Phase.PHASE1, 1, 0, 0)
    with pytest.raises(IpcError) as info:
        m.Stats(1, (), (entry,) * (m.MAX_DEFINITION_COUNTS + 1))
    assert info.value.reason is Reason.TOO_MANY
    wire = bytearray(encode(m.Stats(1, (), (entry,))))
    wire[7:9] = (m.MAX_DEFINITION_COUNTS + 1).to_bytes(2, "big")  # count above the bound
    with pytest.raises(IpcError) as info:
        decode(bytes(wire), Direction.CHILD_TO_PARENT)
    assert info.value.reason is Reason.TOO_MANY
    # the core's tally holds at most the bound, whatever it is told
    tally = DefinitionTally()
    for number in range(1, m.MAX_DEFINITION_COUNTS + 3):
        tally.rekey(m.Phase.PHASE2, number)
    assert len(tally.entries()) == m.MAX_DEFINITION_COUNTS and tally.untallied == 2


def _listing_with(state: ParentState, tally: tuple[m.DefinitionCounts, ...]) -> object:
    """What ChildRequests makes of a child answering one list with this tally."""
    sent: list[m.ListCommand] = []

    def send(msg: object) -> bool:
        assert isinstance(msg, m.ListCommand)
        sent.append(msg)
        return True

    requests = ChildRequests(state, send, [])
    result: list[object] = []

    async def main() -> None:
        async def ask() -> None:
            result.append(await requests.ask_child(m.Phase.ALL))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            (cmd,) = sent
            try:
                await requests.handle(m.Stats(cmd.request_id, (), tally))
            except ProtocolViolation as exc:
                result.append(exc)
                nursery.cancel_scope.cancel()
                return
            await requests.handle(m.StateReportEnd(cmd.request_id, 0))

    trio.run(main)
    return result[-1]


def test_a_hostile_tally_is_a_protocol_violation_and_a_reload_is_no_race() -> None:
    state = ParentState(cast(Any, None), numbered(DEFS))
    p1, p2 = min(state.view.phase1), min(state.view.phase2)
    good = (
        m.DefinitionCounts(m.Phase.PHASE1, p1, 1, 2),
        m.DefinitionCounts(m.Phase.PHASE2, p2, 3, 0),
    )
    listing = _listing_with(state, good)
    assert isinstance(listing, ChildListing) and listing.definitions == good
    hostile = (m.DefinitionCounts(m.Phase.PHASE2, max(state.view.phase2) + 1, 1, 0),)
    assert isinstance(_listing_with(state, hostile), ProtocolViolation)
    # after a reload that removed every definition, the child may still answer with the
    # old ones (it gets the new configuration after the revocations); after a second, not
    state.set_view(DbView())
    assert isinstance(_listing_with(state, good), ChildListing)
    state.set_view(DbView())
    assert isinstance(_listing_with(state, good), ProtocolViolation)
