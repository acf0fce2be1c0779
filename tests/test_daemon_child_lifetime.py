"""The negotiator child lives as long as the daemon: its parent-death signal must not fire
while the daemon runs (it is tied to the thread that forked it, so the child has to be
forked from the daemon's main thread, not from a worker thread that is later retired)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import Daemon, Topology

from ikepriv.parent_kernel.shards import default_children

pytestmark = pytest.mark.root

IDLE = 13.0  # longer than trio's worker-thread idle timeout (10 s)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with Topology.create() as topo:
        d = Daemon.start(topo.a, tmp_path)
        try:
            yield d
        finally:
            d.stop()


def test_idle_child_is_not_killed(daemon: Daemon) -> None:
    daemon.wait_log("configuration generation 1 loaded", default_children())
    children = sorted(daemon.children())
    assert len(children) == default_children()
    time.sleep(IDLE)
    assert sorted(daemon.children()) == children
    assert "restarting the negotiator child" not in daemon.log()
