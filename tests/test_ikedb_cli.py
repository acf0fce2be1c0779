"""`ikedb` as an operator runs it: the installed script, against a temporary database."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ikepriv.cli import ikedb

pytestmark = pytest.mark.root  # ikedb refuses to run without root

IKEDB = str(Path(sys.executable).parent / "ikedb")

SITE_A = """\
[[phase1]]
name = "to-siteB"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
local_id = "gw-a.example.org"
remote_id = "gw-b.example.org"
psk = "swordfish-0815"
proposals = ["aes128-sha256-modp2048", "aes256-sha1-modp1024"]
lifetime = 28800
autostart = true

[[phase2]]
name = "lanA-lanB"
phase1 = "to-siteB"
local_subnet = "198.51.100.0/24"
remote_subnet = "203.0.113.0/24"
protocol = "tcp"
local_port = 0
remote_port = 443
proposals = ["aes128-sha256-modp2048", "aes256gcm16"]
lifetime = 3600
"""


def run(
    *args: str, db: Path | None, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [IKEDB, *(["--db", str(db)] if db is not None else []), *args]
    environment = {k: v for k, v in os.environ.items() if k != "IKEPRIV_DB"} | (env or {})
    return subprocess.run(  # noqa: S603  # our own installed script
        argv, input=stdin, capture_output=True, text=True, env=environment, check=False, timeout=60
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ikedb: "), result.stderr
    return lines[0]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "siteA.toml"
    src.write_text(SITE_A)
    return src, tmp_path / "db" / "tunnels.db"


def test_put_get_round_trip(files: tuple[Path, Path], tmp_path: Path) -> None:
    src, db = files
    put = run("-p", str(src), db=db)
    assert put.returncode == 0, put.stderr
    assert put.stdout.splitlines() == [
        "phase1 'to-siteB' stored as number 1",
        "phase2 'lanA-lanB' stored as number 1",
    ]
    assert (db.stat().st_mode & 0o777) == 0o600
    got = run("-g", db=db)
    assert got.returncode == 0 and "# phase1 definition number 1" in got.stdout
    assert 'psk = "swordfish-0815"' in got.stdout

    other = tmp_path / "other.db"
    assert run("-p", "-", db=other, stdin=got.stdout).returncode == 0
    assert run("-g", db=other).stdout == got.stdout


def test_overwrite_needs_force(files: tuple[Path, Path]) -> None:
    src, db = files
    assert run("-p", str(src), db=db).returncode == 0
    line = one_error_line(run("-p", str(src), db=db), 1)
    assert "already in the database" in line and "-F" in line
    forced = run("-p", str(src), "-F", db=db)
    assert forced.returncode == 0 and "number 1" in forced.stdout


def test_get_by_type_and_name(files: tuple[Path, Path]) -> None:
    src, db = files
    run("-p", str(src), db=db)
    phase1 = run("-g", "-t", "phase1", "-n", "to-siteB", db=db).stdout
    assert "[[phase1]]" in phase1 and "[[phase2]]" not in phase1
    phase2 = run("-g", "-t", "2", db=db).stdout
    assert "[[phase2]]" in phase2 and "[[phase1]]" not in phase2
    line = one_error_line(run("-g", "-t", "phase1", "-n", "nope", db=db), 1)
    assert "no phase1 definition named 'nope'" in line


def test_delete_phase1_cascades(files: tuple[Path, Path]) -> None:
    src, db = files
    run("-p", str(src), db=db)
    deleted = run("-d", "-t", "phase1", "-n", "to-siteB", db=db)
    assert deleted.returncode == 0
    assert "1 phase2" in deleted.stdout
    assert run("-g", db=db).stdout == ""
    one_error_line(run("-d", "-t", "phase2", "-n", "lanA-lanB", db=db), 1)


def test_swap_imports_the_peers_file(files: tuple[Path, Path]) -> None:
    src, db = files
    assert run("-p", str(src), "-s", db=db).returncode == 0
    out = run("-g", db=db).stdout
    for line in (
        'local_addr = "192.0.2.2"',
        'remote_addr = "192.0.2.1"',
        'local_id = "gw-b.example.org"',
        'remote_id = "gw-a.example.org"',
        'local_subnet = "203.0.113.0/24"',
        'remote_subnet = "198.51.100.0/24"',
        "local_port = 443",
        "remote_port = 0",
    ):
        assert line in out.splitlines()


def test_bad_file_refused_with_locations_and_nothing_written(files: tuple[Path, Path]) -> None:
    src, db = files
    src.write_text(SITE_A.replace('remote_addr = "192.0.2.2"', 'remote_addr = "192.0.2.256"')
                   .replace("lifetime = 3600", "lifetime = 3600\nlifetim_kb = 5"))  # fmt: skip
    result = run("-p", str(src), db=db)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"ikedb: {src}:4: phase1 'to-siteB': field 'remote_addr': "
        "'192.0.2.256' is not an IP address"
    )
    kb_line = SITE_A.splitlines().index("lifetime = 3600") + 2
    assert lines[1].startswith(f"ikedb: {src}:{kb_line}: phase2 'lanA-lanB': field 'lifetim_kb': ")
    assert not db.exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((), "give one of -p FILE, -g, -d or --schema"),
        (("-d", "-t", "phase1"), "-d needs -t"),
        (("-g", "-n", "x"), "-n needs -t"),
        (("-g", "-t", "phase3"), "expected phase1 or phase2"),
        (("-g", "-F"), "-F and -s go with -p"),
        (("-p", "f", "-n", "x"), "-t and -n go with -g and -d"),
        (("-p", "f", "-g"), "not allowed with argument"),
        (("--frobnicate",), "unrecognized arguments"),
    ],
)
def test_usage_errors_are_one_line_exit_2(files: tuple[Path, Path], args: tuple[str, ...],
                                          words: str) -> None:  # fmt: skip
    assert words in one_error_line(run(*args, db=files[1]), 2)


def test_runtime_errors_are_one_line_exit_1(files: tuple[Path, Path], tmp_path: Path) -> None:
    src, db = files
    assert "no such database" in one_error_line(run("-g", db=db), 1)
    assert "No such file" in one_error_line(run("-p", str(tmp_path / "missing.toml"), db=db), 1)
    run("-p", str(src), db=db)
    db.chmod(0o644)
    assert "chmod 600" in one_error_line(run("-g", db=db), 1)


def test_database_from_environment(files: tuple[Path, Path], tmp_path: Path) -> None:
    src, _ = files
    env_db = tmp_path / "env.db"
    assert run("-p", str(src), db=None, env={"IKEPRIV_DB": str(env_db)}).returncode == 0
    assert env_db.exists()


def test_non_root_refused(tmp_path: Path) -> None:
    """Drops to nobody in a forked child and runs the real main() there."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 99
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            sys.stderr = io.TextIOWrapper(os.fdopen(write_end, "wb"), write_through=True)
            code = ikedb.main(["--db", str(tmp_path / "x.db"), "-g"])
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as r:
        err = r.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 1
    assert err.strip() == "ikedb: must be run as root (the database holds pre-shared keys)"
    assert not (tmp_path / "x.db").exists()


def test_get_names_the_bad_row_and_field_of_a_hand_edited_database(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    (tmp_path / "a.toml").write_text(SITE_A)
    assert run("-p", str(tmp_path / "a.toml"), db=db).returncode == 0
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE phase2 SET lifetime = 0")
    raw.close()
    line = one_error_line(run("-g", db=db), 1)
    assert line == (
        f"ikedb: {db}: bad phase2 row number 1 ('lanA-lanB'): "
        "field 'lifetime': 0 is out of range (60..86400)"
    )
    assert "to-siteB" in run("-g", "-t", "phase1", db=db).stdout  # the good row still reads


# --- what user interfaces use: --schema, -g --json / --no-keys, -p --keep-keys -------------


def test_schema_lists_fields_defaults_ranges_and_keywords(tmp_path: Path) -> None:
    got = run("--schema", db=tmp_path / "never-created.db")
    assert got.returncode == 0, got.stderr
    schema = json.loads(got.stdout)
    p1 = {f["key"]: f for f in schema["fields"]["phase1"]}
    p2 = {f["key"]: f for f in schema["fields"]["phase2"]}
    assert list(p1)[:3] == ["name", "local_addr", "remote_addr"]
    assert p1["lifetime"] == {"key": "lifetime", "kind": "integer", "default": 28800,
                                   "min": 60, "max": 86400}  # fmt: skip
    assert p1["dpd_delay"]["zero_ok"] is True and p1["dpd_action"]["default"] == "clear"
    assert p1["rekey_margin"]["min"] == 30 and "default" not in p1["rekey_margin"]
    assert p1["proposals"]["required"] is True and p1["proposals"]["proposal_kind"] == "ike"
    assert p2["lifetime"]["default"] == 3600 and p2["mode"]["choices"] == ["tunnel", "transport"]
    assert p2["local_port"]["default"] == 0
    assert "modp2048" in schema["keywords"]["dh_group"]
    assert "aes256gcm16" in schema["keywords"]["esp_aead"]
    assert "aes256gcm16" not in schema["keywords"]["ike_encryption"]
    assert not (tmp_path / "never-created.db").exists()


def test_json_and_no_keys_never_print_the_key(files: tuple[Path, Path]) -> None:
    src, db = files
    assert run("-p", str(src), db=db).returncode == 0
    got = run("-g", "--json", db=db)
    assert got.returncode == 0, got.stderr
    assert "swordfish" not in got.stdout
    doc = json.loads(got.stdout)
    assert doc["phase1"][0]["number"] == 1 and doc["phase1"][0]["psk_stored"] is True
    assert "psk" not in doc["phase1"][0] and doc["phase2"][0]["remote_port"] == 443
    export = run("-g", "--no-keys", db=db)
    assert export.returncode == 0 and "swordfish" not in export.stdout
    assert "pre-shared key left out" in export.stdout


def test_keep_keys_replaces_a_definition_without_its_key(files: tuple[Path, Path]) -> None:
    src, db = files
    assert run("-p", str(src), db=db).returncode == 0
    export = run("-g", "--no-keys", db=db).stdout.replace("lifetime = 28800", "lifetime = 7200")
    refused = run("-p", "-", "-F", db=db, stdin=export)
    assert refused.returncode == 1 and "field 'psk': missing" in refused.stderr
    put = run("-p", "-", "-F", "--keep-keys", db=db, stdin=export)
    assert put.returncode == 0, put.stderr
    full = run("-g", db=db).stdout
    assert 'psk = "swordfish-0815"' in full and "lifetime = 7200" in full
    usage = run("-g", "--keep-keys", db=db)
    assert usage.returncode == 2
