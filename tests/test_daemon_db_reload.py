"""`ikedb -p` followed at once by `ike cmd=activate`: ikedb tells the running daemon to
reload, so the operator never meets a "no matching definition" for a definition just put."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import Daemon, Topology

pytestmark = pytest.mark.root

BIN = Path(sys.executable).parent
EXTRA = """
[[phase1]]
name = "to-siteD"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.4"
psk = "a fourth secret, only just put"
proposals = ["aes128-sha256-modp2048"]
lifetime = 28800
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with Topology.create() as topo:
        d = Daemon.start(topo.a, tmp_path)
        try:
            yield d
        finally:
            d.stop()


def test_activate_right_after_ikedb_put(daemon: Daemon, tmp_path: Path) -> None:
    daemon.wait_log("configuration generation 1 loaded")
    defs = tmp_path / "extra.toml"
    defs.write_text(EXTRA)
    db = next(tmp_path.glob("d.db"))
    env = {**os.environ, "IKEPRIV_CONTROL": daemon.control_path, "IKEPRIV_DB": str(db)}
    put = subprocess.run([BIN / "ikedb", "-p", str(defs)], env=env,  # noqa: S603
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert put.returncode == 0, put.stderr
    argv = [BIN / "ike", "cmd=activate", "phase=1", "namelist=to-siteD"]
    act = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    assert act.returncode == 0, act.stdout + act.stderr
