"""The production entry point runs only the sandboxed negotiator (issue 8, point 6).

`ikeprivd` once had a hidden `--child-cmd` that made the root daemon run any command line,
unsandboxed, as its child. Tests stand in for the child through the test launcher
(tests/programs/ikeprivd_standin.py, the Python API) instead; ikeprivd refuses the option.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ikepriv.cli import ikeprivd


@pytest.mark.parametrize("option", ["--child-cmd", "--child-cm", "--child"])
def test_ikeprivd_has_no_option_to_run_another_child(tmp_path: Path, option: str) -> None:
    marker = tmp_path / "ran"
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "ikepriv.cli.ikeprivd", "--db", str(tmp_path / "db"),
         "--control", str(tmp_path / "ctl"), "--log-stderr", option, f"touch {marker}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "unrecognized arguments" in proc.stderr
    assert not marker.exists()


def test_options_from_the_command_line_never_name_a_child_command() -> None:
    args = ikeprivd._parser().parse_args(["--db", "/nonexistent/db"])
    assert ikeprivd.options_from(args).child_cmd is None
    # --children N is how many sandboxed negotiators run, never what they run
    text = ikeprivd._parser().format_help().replace("negotiator", "").replace("--children", "")
    assert "child" not in text
