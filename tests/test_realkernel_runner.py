"""tests/realkernel/run-in-kernel.sh and harness.uml: what every UML test relies on."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import uml

pytestmark = [pytest.mark.uml, pytest.mark.root]


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    missing = uml.missing_prerequisites()
    if missing:
        pytest.skip(f"UML tier needs: {', '.join(missing)}")


def guest_probe(path: str) -> dict[str, Any]:
    """Runs in the guest: writes `path` (in the repo) and reports what it sees."""
    Path(path).write_text("written in the guest\n")
    return {
        "in_guest": uml.in_guest(),
        "uid": os.geteuid(),
        "kernel": os.uname().release,
        "prefix": sys.prefix,
        "cwd": os.getcwd(),
    }


def test_exit_status_and_separate_streams() -> None:
    r = uml.run(["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"], timeout=120)
    assert r.rc == 7
    assert r.stdout.strip() == "to-stdout"
    assert "to-stderr" in r.stderr
    assert "to-stdout" not in r.stderr


def test_venv_python_runs_inside_with_repo_read_write() -> None:
    probe = uml.REPO / "tests" / "realkernel" / f".probe-{os.getpid()}"
    try:
        value, run = uml.run_function(
            "test_realkernel_runner", "guest_probe", str(probe), timeout=120
        )
        assert run.rc == 0, run.stderr
        assert value["in_guest"] is True
        assert value["uid"] == 0
        assert value["kernel"] != os.uname().release
        assert value["prefix"] == sys.prefix
        assert value["cwd"] == str(uml.REPO)
        assert probe.read_text() == "written in the guest\n"
    finally:
        probe.unlink(missing_ok=True)


def test_timeout_kills_the_guest() -> None:
    r = uml.run(["sleep", "300"], timeout=8)
    assert r.rc == 124
    assert "killed after 8s" in r.stderr
