"""The parent's state file (parent_kernel/journal.py): what a restarted daemon finds.

The file must name every kernel object the parent may have written, whatever the moment of
a kill, and cost O(1) per change (it was rewritten whole on every install: time in
proportion to the SAs held). These tests replay it as the next daemon does (`load`).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from ikepriv.parent_kernel.journal import COMPACT_SLACK, Journal, PolicyMark, SaMark
from ikepriv.parent_kernel.kernel.specs import SelectorSpec
from ikepriv.parent_kernel.kernel.xfrm_messages import Direction

DST = ipaddress.ip_address("192.0.2.2")


def sa(spi: int, reqid: int = 7) -> SaMark:
    return SaMark(DST, spi, 50, reqid)


def pol(n: int, direction: Direction = Direction.OUT, reqid: int = 7) -> PolicyMark:
    sel = SelectorSpec(ipaddress.ip_network(f"198.51.100.{n}/32"),
                       ipaddress.ip_network("203.0.113.0/24"), 0, 0, 0)  # fmt: skip
    return PolicyMark(sel, direction, reqid)


def fresh(tmp_path: Path) -> Journal:
    journal = Journal(str(tmp_path / "control.installed"))
    journal.save((), ())
    return journal


def test_replay_gives_the_live_objects(tmp_path: Path) -> None:
    journal = fresh(tmp_path)
    journal.put([sa(1, 0), sa(2)], [pol(1), pol(1, Direction.IN)])
    journal.put([sa(1, 9)])  # the larval SA filled: same kernel object, its reqid now
    journal.drop([sa(2)], [pol(1, Direction.IN)])
    journal.put([], [pol(1, reqid=8)])  # a replaced policy
    sas, pols = Journal(journal.path).load()
    assert sas == [sa(1, 9)]
    assert pols == [pol(1, reqid=8)]


def test_a_change_appends_a_line_instead_of_rewriting(tmp_path: Path) -> None:
    journal = fresh(tmp_path)
    journal.put([sa(n) for n in range(1, 501)])
    size = Path(journal.path).stat().st_size
    journal.put([sa(1000)])
    grown = Path(journal.path).stat().st_size - size
    assert 0 < grown < 80  # one line, not the 500 others again


def test_a_torn_last_line_is_ignored_the_rest_is_kept(tmp_path: Path) -> None:
    journal = fresh(tmp_path)
    journal.put([sa(1), sa(2)])
    with open(journal.path, "ab") as f:
        f.write(b'{"s":["192.0.2.2",3,50')  # killed in the middle of an append
    sas, _ = Journal(journal.path).load()
    assert sorted(s.spi for s in sas) == [1, 2]


def test_a_corrupt_file_is_ignored_whole(tmp_path: Path) -> None:
    journal = fresh(tmp_path)
    journal.put([sa(1)])
    with open(journal.path, "ab") as f:
        f.write(b'{"x":[1]}\n')
    assert Journal(journal.path).load() == ([], [])


def test_the_file_stays_bounded_under_churn(tmp_path: Path) -> None:
    journal = fresh(tmp_path)
    journal.put([sa(n) for n in range(1, 101)])
    for n in range(101, 20101):  # 20,000 rekeys: a new SA in, the oldest out
        journal.put([sa(n)])
        journal.drop([sa(n - 100)])
    lines = Path(journal.path).read_bytes().count(b"\n")
    assert lines <= 1 + 3 * 100 + COMPACT_SLACK + 2
    sas, _ = Journal(journal.path).load()
    assert sorted(s.spi for s in sas) == list(range(20001, 20101))


# What ikeprivd wrote before the state file became a log (version 1: one JSON document,
# rewritten whole, compact separators, no final newline), byte for byte.
V1 = (
    b'{"version":1,"sas":[{"dst":"192.0.2.2","spi":1,"proto":50,"reqid":7},'
    b'{"dst":"192.0.2.2","spi":2,"proto":50,"reqid":0}],"policies":[{"sel":'
    b'{"src":"198.51.100.1/32","dst":"203.0.113.0/24","proto":0,"sport":0,"dport":0},'
    b'"dir":1,"reqid":7}]}'
)


def test_a_state_file_of_the_previous_version_is_read(tmp_path: Path) -> None:
    """An upgrade after a crash of the old version: its leftovers must still be swept."""
    path = tmp_path / "control.installed"
    path.write_bytes(V1)
    sas, pols = Journal(str(path)).load()
    assert sorted(sas, key=lambda s: s.spi) == [sa(1), sa(2, 0)]
    assert pols == [pol(1, Direction.OUT)]


def test_a_previous_version_file_with_a_bad_value_is_ignored_whole(tmp_path: Path) -> None:
    path = tmp_path / "control.installed"
    path.write_bytes(V1.replace(b'"spi":2', b'"spi":{"x":2}'))
    assert Journal(str(path)).load() == ([], [])
