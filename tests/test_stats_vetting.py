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

import pytest
from test_vetting_rules import DEFS, A, B, allocate, install, numbered

from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.ipc import decode, encode
from ikepriv.ipc import messages as m
from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.schema import Direction
from ikepriv.parent_kernel.installed import Installed
from ikepriv.parent_kernel.kernel.specs import SelectorSpec
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.state import PARENT_COUNTER_NAMES, ParentCounters
from ikepriv.parent_kernel.udp import Drop
from ikepriv.parent_kernel.vetting import Phase2Plan, Vetter, stats_problem
from ikepriv.process_contract import COUNTER_NAMES, Counters


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
