"""The SQLite tunnel database: root-only file, atomic puts, stable numbers, cascades."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ikepriv.config import Definitions, load_definitions
from ikepriv.config.store import (
    DefinitionExistsError,
    DefinitionNotFoundError,
    TunnelDB,
    TunnelDBError,
)

PSK = "unmistakable-secret-7d1c9e"
FILE = f"""\
[[phase1]]
name = "to-siteB"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
psk = "{PSK}"
proposals = ["aes128-sha256-modp2048", "aes256-sha1-modp1024"]

[[phase2]]
name = "lanA-lanB"
phase1 = "to-siteB"
local_subnet = "198.51.100.0/24"
remote_subnet = "203.0.113.0/24"
proposals = ["aes128-sha256-modp2048", "aes256gcm16"]

[[phase2]]
name = "lanA-lanC"
phase1 = "to-siteB"
local_subnet = "198.51.100.0/25"
remote_subnet = "203.0.113.128/25"
protocol = "udp"
remote_port = 53
ah_proposals = ["sha256"]
"""

OTHER = """\
[[phase1]]
name = "to-siteC"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.3"
psk_hex = "00010203"
proposals = ["aes256-sha256-ecp256"]

[[phase2]]
name = "lanA-lanD"
phase1 = "to-siteC"
local_subnet = "198.51.100.0/24"
remote_subnet = "192.0.2.128/25"
proposals = ["aes256gcm16-ecp256"]
"""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "tunnels.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[TunnelDB]:
    with TunnelDB(db_path) as opened:
        yield opened


def test_created_root_only_whatever_the_umask(db_path: Path) -> None:
    old = os.umask(0)
    try:
        TunnelDB(db_path).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700


def test_group_or_world_accessible_file_refused(db_path: Path) -> None:
    TunnelDB(db_path).close()
    db_path.chmod(0o640)
    with pytest.raises(TunnelDBError, match=r"mode 0640.*chmod 600"):
        TunnelDB(db_path)


def test_symlink_refused(db_path: Path, tmp_path: Path) -> None:
    TunnelDB(db_path).close()
    link = tmp_path / "link.db"
    link.symlink_to(db_path)
    with pytest.raises(TunnelDBError, match="symbolic link"):
        TunnelDB(link)


@pytest.mark.root
def test_file_not_owned_by_root_refused(db_path: Path) -> None:
    TunnelDB(db_path).close()
    os.chown(db_path, 65534, 65534)
    with pytest.raises(TunnelDBError, match="not root"):
        TunnelDB(db_path)


def test_missing_database_not_created_when_asked(db_path: Path) -> None:
    with pytest.raises(TunnelDBError, match="no such database"):
        TunnelDB(db_path, create=False)
    assert not db_path.exists()


def test_not_a_database(db_path: Path) -> None:
    db_path.parent.mkdir()
    fd = os.open(db_path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"this is no sqlite file" * 100)
    os.close(fd)
    with pytest.raises(TunnelDBError, match="not a database"):
        TunnelDB(db_path)


def test_put_and_read_back(db: TunnelDB) -> None:
    defs = load_definitions(FILE)
    stored = db.put(defs)
    assert [d.number for d in stored.phase1] == [1]
    assert [d.number for d in stored.phase2] == [1, 2]
    assert db.phase1_definitions() == stored.phase1
    assert db.phase2_definitions() == stored.phase2
    assert db.phase1("to-siteB") == stored.phase1[0] == db.phase1_by_number(1)
    assert db.phase2("lanA-lanC") == stored.phase2[1] == db.phase2_by_number(2)
    assert db.phase1("nope") is None and db.phase2_by_number(99) is None
    assert db.phase1_definitions()[0].psk == PSK.encode()


def test_phase2_filtered_by_phase1(db: TunnelDB) -> None:
    db.put(load_definitions(FILE))
    db.put(load_definitions(OTHER))
    assert [d.name for d in db.phase2_definitions("to-siteC")] == ["lanA-lanD"]
    assert [d.name for d in db.phase2_definitions()] == ["lanA-lanB", "lanA-lanC", "lanA-lanD"]


def test_overwrite_refused_and_nothing_written(db: TunnelDB) -> None:
    db.put(load_definitions(FILE))
    before = db.generation()
    both = load_definitions(OTHER + "\n" + FILE)
    with pytest.raises(DefinitionExistsError, match=r"phase1 'to-siteB'.*-F"):
        db.put(both)
    assert db.phase1("to-siteC") is None  # the new part of the refused put is not there
    assert db.generation() == before


def test_force_overwrites_in_place_keeping_numbers(db: TunnelDB) -> None:
    db.put(load_definitions(OTHER))
    first = db.put(load_definitions(FILE))
    changed = load_definitions(
        FILE.replace('remote_addr = "192.0.2.2"', 'remote_addr = "192.0.2.5"')
    )
    again = db.put(changed, force=True)
    assert [d.number for d in again.phase1] == [d.number for d in first.phase1]
    assert [d.number for d in again.phase2] == [d.number for d in first.phase2]
    assert str(db.phase1("to-siteB").remote_addr) == "192.0.2.5"  # type: ignore[union-attr]


def test_delete_phase1_takes_its_phase2_along(db: TunnelDB) -> None:
    db.put(load_definitions(FILE))
    db.put(load_definitions(OTHER))
    assert db.delete_phase1("to-siteB") == 2
    assert [d.name for d in db.phase2_definitions()] == ["lanA-lanD"]
    assert [d.name for d in db.phase1_definitions()] == ["to-siteC"]


def test_delete_phase2_and_unknown_names(db: TunnelDB) -> None:
    db.put(load_definitions(FILE))
    db.delete_phase2("lanA-lanB")
    assert [d.name for d in db.phase2_definitions()] == ["lanA-lanC"]
    with pytest.raises(DefinitionNotFoundError):
        db.delete_phase2("lanA-lanB")
    with pytest.raises(DefinitionNotFoundError):
        db.delete_phase1("nope")


def test_numbers_are_never_reused(db: TunnelDB) -> None:
    db.put(load_definitions(FILE))
    db.delete_phase1("to-siteB")
    again = db.put(load_definitions(FILE))
    assert [d.number for d in again.phase1] == [2]
    assert [d.number for d in again.phase2] == [3, 4]


def test_phase2_needs_a_stored_phase1(db: TunnelDB) -> None:
    defs = load_definitions(FILE)
    with pytest.raises(DefinitionNotFoundError, match="no phase 1 named 'to-siteB'"):
        db.put(Definitions(phase2=defs.phase2))
    assert db.phase2_definitions() == ()


def test_other_processes_see_changes_through_generation(db_path: Path) -> None:
    with TunnelDB(db_path) as writer, TunnelDB(db_path, readonly=True) as daemon:
        token = daemon.generation()
        assert not daemon.changed_since(token)
        writer.put(load_definitions(FILE))
        assert daemon.changed_since(token)
        token = daemon.generation()
        writer.delete_phase2("lanA-lanB")
        assert daemon.changed_since(token)
        assert [d.name for d in daemon.phase2_definitions()] == ["lanA-lanC"]


def test_readonly_connection_cannot_write(db_path: Path) -> None:
    TunnelDB(db_path).close()
    with TunnelDB(db_path, readonly=True) as ro, pytest.raises(TunnelDBError):
        ro.put(load_definitions(FILE))


def test_deleted_psk_does_not_linger_in_the_file(db_path: Path) -> None:
    with TunnelDB(db_path) as db:
        db.put(load_definitions(FILE))
        assert PSK.encode() in db_path.read_bytes()
        db.delete_phase1("to-siteB")
    assert PSK.encode() not in db_path.read_bytes()


def test_hand_edited_bad_row_is_an_error_not_a_tunnel(db_path: Path) -> None:
    with TunnelDB(db_path) as db:
        db.put(load_definitions(FILE))
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE phase1 SET proposals = 'aes128-rot13-modp2048'")
    raw.commit()
    raw.close()
    with TunnelDB(db_path) as db, pytest.raises(TunnelDBError, match="bad phase1 row number 1"):
        db.phase1_definitions()


def test_newer_schema_refused(db_path: Path) -> None:
    TunnelDB(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(TunnelDBError, match="schema version 99"):
        TunnelDB(db_path)


def test_two_main_mode_psk_definitions_for_one_peer_refused(db: TunnelDB) -> None:
    db.put(load_definitions(FILE))
    twin = FILE.split("[[phase2]]")[0].replace("to-siteB", "to-siteB-again")
    with pytest.raises(TunnelDBError, match="'to-siteB' and 'to-siteB-again' would be ambiguous"):
        db.put(load_definitions(twin))
    assert db.phase1("to-siteB-again") is None
    aggressive = twin.replace("proposals =", 'mode = "aggressive"\nproposals =')
    assert db.put(load_definitions(aggressive)).phase1[0].name == "to-siteB-again"


def test_two_any_peer_definitions_with_one_remote_id_refused(db: TunnelDB) -> None:
    any_peer = """\
[[phase1]]
name = "{name}"
local_addr = "192.0.2.1"
remote_addr = "%any"
remote_id = "{rid}"
mode = "aggressive"
psk = "k"
proposals = ["aes128-sha256-modp2048"]
"""
    db.put(load_definitions(any_peer.format(name="rw1", rid="a@example.org")))
    db.put(load_definitions(any_peer.format(name="rw2", rid="b@example.org")))
    with pytest.raises(TunnelDBError, match="ambiguous"):
        db.put(load_definitions(any_peer.format(name="rw3", rid="a@example.org")))


# what migration 4 added, taken away again: a current file turned into a version 3 one
_V4_UNDO = (
    "ALTER TABLE phase1 DROP COLUMN cert; ALTER TABLE phase1 DROP COLUMN key;"
    "ALTER TABLE phase1 DROP COLUMN ca; ALTER TABLE phase1 DROP COLUMN crl;"
    "ALTER TABLE phase1 DROP COLUMN send_cert; ALTER TABLE phase1 DROP COLUMN fragmentation;"
    "ALTER TABLE phase1 DROP COLUMN fragment_size; ALTER TABLE phase1 ADD COLUMN key_ref TEXT;"
)


def test_schema_3_database_keeps_its_rows_and_gains_the_certificate_fields(
    db_path: Path,
) -> None:
    """A version 3 database (before certificates) opens with every row as it was, PSK
    definitions with the defaults of the new fields, and the file is version 4 afterwards."""
    with TunnelDB(db_path) as db:
        before = db.put(load_definitions(FILE))
    raw = sqlite3.connect(db_path)
    raw.executescript(_V4_UNDO)
    raw.execute("UPDATE schema_version SET version = 3")
    raw.commit()
    raw.close()
    with TunnelDB(db_path) as db:
        after = Definitions(db.phase1_definitions(), db.phase2_definitions())
    assert after == before
    (p1,) = after.phase1
    assert (p1.cert, p1.key, p1.ca, p1.crl) == (None, None, (), ())
    assert (p1.send_cert.value, p1.fragmentation.value, p1.fragment_size) == (
        "ifasked", "yes", 1280,
    )  # fmt: skip
    raw = sqlite3.connect(db_path)
    assert raw.execute("SELECT version FROM schema_version").fetchone() == (4,)
    columns = {row[1] for row in raw.execute("PRAGMA table_info(phase1)")}
    raw.close()
    assert "key_ref" not in columns and {"cert", "key", "ca", "crl"} <= columns


def test_schema_1_database_gains_encap_and_rekey_with_their_defaults(db_path: Path) -> None:
    """Rows written before `encap`/`rekey` existed read back with no forced encapsulation
    and rekeying on."""
    with TunnelDB(db_path) as db:
        db.put(load_definitions(FILE.replace("[[phase2]]", "rekey = false\n\n[[phase2]]")))
    raw = sqlite3.connect(db_path)
    raw.executescript(
        "ALTER TABLE phase1 DROP COLUMN encap; ALTER TABLE phase1 DROP COLUMN rekey;"
        "ALTER TABLE phase2 DROP COLUMN rekey; ALTER TABLE phase2 DROP COLUMN extra_local_subnets;"
        "ALTER TABLE phase2 DROP COLUMN extra_remote_subnets;"
        "UPDATE schema_version SET version = 1;"
    )
    raw.executescript(_V4_UNDO)
    raw.close()
    with TunnelDB(db_path) as db:
        (p1,) = db.phase1_definitions()
        assert (p1.encap, p1.rekey) == (False, True)
        assert all(d.rekey for d in db.phase2_definitions())
