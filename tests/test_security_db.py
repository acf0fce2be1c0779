"""A tunnel database edited by hand: a row is decoded into a definition, which checks
itself, before the daemon vets by it; a bad row is left out (and logged), the rest loads.

`ikedb` only writes what the loader accepted, but root can edit the SQLite file directly
(or an older version wrote it). A row the loader would refuse must not become the
reference for vetting: a lifetime of years lets the child install SAs that never expire,
a "%any" Main Mode peer would make every address a candidate for the PSK.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_daemon_support import SITE, write_db

from ikepriv.config.store import TunnelDB
from ikepriv.parent_kernel.definitions import DbView


def edited(tmp_path: Path, sql: str) -> DbView:
    path = tmp_path / "t.db"
    write_db(path, SITE)
    with sqlite3.connect(path) as db:
        db.execute(sql)
    with TunnelDB(path, create=False, readonly=True) as tdb:
        return DbView.load(tdb)


def test_untouched_database_is_fully_usable(tmp_path: Path) -> None:
    view = edited(tmp_path, "UPDATE phase1 SET autostart = 0")
    assert sorted(view.phase1) == [1, 2] and sorted(view.phase2) == [1, 2]


@pytest.mark.parametrize(
    ("sql", "p1_left", "p2_left"),
    [
        ("UPDATE phase2 SET lifetime = 100000000 WHERE name = 'lanA-lanB'", [1, 2], [2]),
        ("UPDATE phase2 SET lifetime = 0 WHERE name = 'lanA-lanB'", [1, 2], [2]),
        ("UPDATE phase2 SET protocol = 1, remote_port = 443 WHERE name = 'lanA-lanB'", [1, 2],
         [2]),
        ("UPDATE phase1 SET remote_addr = NULL WHERE name = 'to-siteC'", [1], [1]),
        ("UPDATE phase1 SET psk = NULL WHERE name = 'to-siteB'", [2], [2]),
        ("UPDATE phase1 SET lifetime = -5 WHERE name = 'to-siteB'", [2], [2]),
    ],
    ids=["p2-lifetime-years", "p2-lifetime-zero", "port-without-tcp",
         "main-mode-any-peer", "psk-missing", "p1-lifetime-negative"],
)  # fmt: skip
def test_hand_edited_bad_rows_are_left_out(
    tmp_path: Path, sql: str, p1_left: list[int], p2_left: list[int]
) -> None:
    view = edited(tmp_path, sql)
    assert sorted(view.phase1) == p1_left
    assert sorted(view.phase2) == p2_left
    assert {d.number for d in view.ipc_phase2} == set(p2_left)  # the child never sees them


def test_a_row_that_does_not_parse_is_left_out_and_the_rest_loads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Fail closed for that row only: nothing that was working is lost."""
    view = edited(tmp_path, "UPDATE phase2 SET local_subnet = '198.51.100.7/24' WHERE number = 1")
    assert sorted(view.phase1) == [1, 2] and sorted(view.phase2) == [2]
    assert {d.number for d in view.ipc_phase2} == {2}
    assert "bad phase2 row number 1 ('lanA-lanB'): field 'local_subnet'" in caplog.text
    assert "host bits" in caplog.text
