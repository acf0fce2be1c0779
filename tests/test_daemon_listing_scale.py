"""`ike cmd=list` of more tunnels than one message holds, against a real ikeprivd.

A stand-in child holds more than MAX_ROWS (4096) phase 1 tunnels and answers the daemon's
ListCommands as the negotiator core does, page by page. The operator's `ike` (the
installed script, through the real control socket) gets every one of them, the child is
not taken for a protocol violation (before the listing was paged, the daemon killed the
child at the 4097th report and every ISAKMP SA was forgotten), and each page the daemon
asks for is answered before it asks for the next. `ike cmd=list stats` asks for the
counters alone: no tunnel crosses the socketpair for it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import GW_A, GW_B, Daemon, StandIn, Topology

from ikepriv.ipc import messages as m
from ikepriv.ipc.control import CONTROL_PATH_ENV

pytestmark = pytest.mark.root

IKE = str(Path(sys.executable).parent / "ike")
A, B = ipaddress.ip_address(GW_A), ipaddress.ip_address(GW_B)
HELD = m.MAX_ROWS + 904  # 5000: more than one message could ever carry


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology.create() as t:
        yield t


@pytest.fixture
def standin(topo: Topology, tmp_path: Path) -> Iterator[tuple[Daemon, StandIn]]:
    child = StandIn(tmp_path)
    daemon = Daemon.start(topo.a, tmp_path, child_cmd=child.child_cmd)
    try:
        child.accept()
        yield daemon, child
    finally:
        daemon.stop()
        child.close()


def report(request_id: int, tunnel_id: int) -> m.StateReport:
    return m.StateReport(request_id, m.Phase.PHASE1, 1, tunnel_id, None, m.Role.RESPONDER,
                         m.TunnelState.ESTABLISHED, m.Endpoint(A, 500), m.Endpoint(B, 500),
                         None, None, "aes128 sha256 modp2048", 0, 0, 0)  # fmt: skip


def serve(child: StandIn, held: int, until: int) -> list[m.ListCommand]:
    """Answer ListCommands as the core does (tunnels 1..held, all phase 1) until `until`
    have been answered; the commands, in order."""
    asked: list[m.ListCommand] = []
    while len(asked) < until:
        msg = child.recv()
        assert msg is not None, "the daemon closed the channel"
        if not isinstance(msg, m.ListCommand):
            continue
        asked.append(msg)
        count = 0
        if msg.rows and msg.phase in (m.Phase.ALL, m.Phase.PHASE1, m.Phase.PHASE1_PLUS):
            for tunnel_id in range(msg.after + 1, min(held, msg.after + m.LIST_PAGE) + 1):
                child.send(report(msg.request_id, tunnel_id))
                count += 1
        if msg.counters:
            child.send(m.Stats(msg.request_id, (m.CounterValue("phase1_established", held),)))
        child.send(m.StateReportEnd(msg.request_id, count))
    return asked


def run_ike(daemon: Daemon, *words: str) -> subprocess.Popen[str]:
    env = {**os.environ, CONTROL_PATH_ENV: daemon.control_path}
    return subprocess.Popen(  # noqa: S603 -- our own installed script
        [IKE, *words], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_a_listing_of_more_than_max_rows_tunnels_reaches_ike(
    standin: tuple[Daemon, StandIn],
) -> None:
    daemon, child = standin
    pages = -(-HELD // m.LIST_PAGE) + (HELD % m.LIST_PAGE == 0)  # a full page asks again
    with run_ike(daemon, "cmd=list", "json") as proc:
        asked = serve(child, HELD, pages + 1)  # phase 1 pages, then one of phase 2
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rows = json.loads(out)
    assert [row["tunnel_id"] for row in rows] == list(range(1, HELD + 1))
    # page by page: each asks for what follows the last tunnel of the one before
    phase1 = [a for a in asked if a.phase is m.Phase.PHASE1]
    assert [a.after for a in phase1] == [n * m.LIST_PAGE for n in range(len(phase1))]
    assert asked[-1].phase is m.Phase.PHASE2
    assert not any(a.counters for a in asked)  # not verbose: no counters asked for
    # the child was not killed: it still answers, and nothing was a protocol violation
    with run_ike(daemon, "cmd=list", "stats", "json") as proc:
        serve(child, HELD, 1)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["child_restarts"] == 0
    assert "protocol violation" not in daemon.log()


def test_list_stats_asks_for_counters_only(standin: tuple[Daemon, StandIn]) -> None:
    daemon, child = standin
    with run_ike(daemon, "cmd=list", "stats", "json") as proc:
        (asked,) = serve(child, HELD, 1)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert not asked.rows and asked.counters  # no tunnel is fetched to print counters
    assert json.loads(out)["phase1_established"] == HELD


def test_a_child_that_reports_tunnels_to_a_counters_only_request_is_restarted(
    standin: tuple[Daemon, StandIn],
) -> None:
    daemon, child = standin
    with run_ike(daemon, "cmd=list", "stats") as proc:
        while not isinstance(asked := child.recv(), m.ListCommand):
            pass
        child.send(report(asked.request_id, 1))
        assert child.closed()
        out, err = proc.communicate(timeout=60)
    daemon.wait_log(r"protocol violation: StateReport for a counters-only list")
    assert proc.returncode == 0, err
    assert "negotiator not answering: the parent's counters only" in out
