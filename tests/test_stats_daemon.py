"""`ike cmd=list stats` against a real ikeprivd: malformed datagrams are dropped and counted.

A peer namespace sends datagrams that are not ISAKMP to the daemon's UDP 500; the
operator's `ike` (the installed script, through the real control socket) shows the
negotiator's dropped_malformed counter rise by exactly that many, the parent's
udp_forwarded with it, and `ike cmd=list verbose` ends with them. With a stand-in child
the numbers are exactly what the child said, and a child that invents counter names is a
protocol violation (killed and restarted).
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
from test_daemon_support import GW_A, Daemon, StandIn, Topology, send_udp, wait_for

from ikepriv.ipc import messages as m
from ikepriv.ipc.control import CONTROL_PATH_ENV
from ikepriv.isakmp.constants import ExchangeType

pytestmark = pytest.mark.root

IKE = str(Path(sys.executable).parent / "ike")
A = ipaddress.ip_address(GW_A)

# Each is dropped by the negotiator's decoder: too short for a header, an ISAKMP header
# of version 2.0, a header whose length field is larger than the datagram.
MALFORMED = (
    b"not isakmp",
    bytes(range(1, 9))
    + bytes(8)
    + bytes([0, 0x20, ExchangeType.IDENTITY_PROTECTION, 0])
    + bytes(4)
    + (28).to_bytes(4, "big"),
    bytes(range(1, 9))
    + bytes(8)
    + bytes([0, 0x10, ExchangeType.IDENTITY_PROTECTION, 0])
    + bytes(4)
    + (4096).to_bytes(4, "big"),
)


def ike(daemon: Daemon, *words: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, CONTROL_PATH_ENV: daemon.control_path}
    return subprocess.run(  # noqa: S603 -- our own installed script
        [IKE, *words], capture_output=True, text=True, env=env, check=False, timeout=60
    )


def stats(daemon: Daemon) -> dict[str, int]:
    result = ike(daemon, "cmd=list", "stats", "json")
    assert result.returncode == 0, result
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology.create() as t:
        yield t


def test_malformed_datagrams_are_counted_and_shown(topo: Topology, tmp_path: Path) -> None:
    daemon = Daemon.start(topo.a, tmp_path)
    try:
        daemon.wait_log("configuration generation 1 loaded")
        before = stats(daemon)
        assert before["dropped_malformed"] == 0 and before["child_restarts"] == 0
        for data in MALFORMED:
            send_udp(topo.b, GW_A, 500, data)
        want = len(MALFORMED)
        after = wait_for(
            "the drops in ike's counters",
            lambda: (s := stats(daemon))["dropped_malformed"] >= want and s,
        )
        assert isinstance(after, dict)
        assert after["dropped_malformed"] == want  # each one counted, and only once
        assert after["datagrams_in"] - before["datagrams_in"] == want
        assert after["udp_forwarded"] - before["udp_forwarded"] == want
        assert after["dropped_unknown_sa"] == before["dropped_unknown_sa"]
        assert after["phase1_failed"] == 0  # nothing was negotiated with garbage
        # the text forms: every counter with stats, the ones not zero after the tables
        table = ike(daemon, "cmd=list", "stats")
        assert table.returncode == 0 and table.stdout.startswith("Counters:\n"), table
        assert any(line.split() == ["dropped_malformed", str(want)]
                   for line in table.stdout.splitlines())  # fmt: skip
        assert any(line.split() == ["retransmits", "0"] for line in table.stdout.splitlines())
        verbose = ike(daemon, "cmd=list", "verbose")
        assert verbose.returncode == 0, verbose
        assert verbose.stdout.startswith("No active tunnels.\n\nCounters (not zero):\n")
        shown = dict(line.split() for line in verbose.stdout.splitlines()[3:])
        assert shown["dropped_malformed"] == str(want)
        assert "retransmits" not in shown
    finally:
        daemon.stop()


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


def next_list(child: StandIn) -> m.ListCommand:
    """The daemon's next ListCommand (what else it sends the child is not asked about)."""
    while True:
        ask = child.recv()
        assert ask is not None, "the daemon closed the channel"
        if isinstance(ask, m.ListCommand):
            return ask


def test_the_childs_counters_reach_ike_as_sent(standin: tuple[Daemon, StandIn]) -> None:
    daemon, child = standin
    env = {**os.environ, CONTROL_PATH_ENV: daemon.control_path}
    with subprocess.Popen(  # noqa: S603 -- our own installed script
        [IKE, "cmd=list", "stats", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    ) as proc:  # fmt: skip
        ask = next_list(child)
        counters = (m.CounterValue("dropped_malformed", 5), m.CounterValue("dpd_dead_peers", 2))
        child.send(m.Stats(ask.request_id, counters))
        child.send(m.StateReportEnd(ask.request_id, 0))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    data = json.loads(out)
    assert (data["dropped_malformed"], data["dpd_dead_peers"]) == (5, 2)
    assert list(data)[:2] == ["dropped_malformed", "dpd_dead_peers"]  # the child's, first
    assert "udp_forwarded" in data and "refused_requests" in data  # then the parent's
    assert err == ""


def test_a_child_inventing_counters_is_restarted(standin: tuple[Daemon, StandIn]) -> None:
    daemon, child = standin
    env = {**os.environ, CONTROL_PATH_ENV: daemon.control_path}
    with subprocess.Popen(  # noqa: S603 -- our own installed script
        [IKE, "cmd=list", "stats"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    ) as proc:  # fmt: skip
        ask = next_list(child)
        child.send(m.Stats(ask.request_id, (m.CounterValue("tunnels_hijacked", 0),)))
        assert child.closed()  # the daemon killed the child at once
        out, err = proc.communicate(timeout=60)
    daemon.wait_log(r"protocol violation: Stats: unknown counter 'tunnels_hijacked'")
    # the operator still gets the parent's counters, and is told why the rest is missing
    assert proc.returncode == 0, err
    assert "negotiator not answering: the parent's counters only" in out
    assert any(line.split() == ["refused_requests", "0"] for line in out.splitlines())
    child.accept()  # a new child was started
    restarted = stats_with_child(daemon, child)
    assert restarted["child_restarts"] == 1


def stats_with_child(daemon: Daemon, child: StandIn) -> dict[str, int]:
    env = {**os.environ, CONTROL_PATH_ENV: daemon.control_path}
    with subprocess.Popen(  # noqa: S603 -- our own installed script
        [IKE, "cmd=list", "stats", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    ) as proc:  # fmt: skip
        child.send(m.StateReportEnd(next_list(child).request_id, 0))
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    data = json.loads(out)
    assert isinstance(data, dict)
    assert err == "ike: the negotiator sent no counters: the parent's counters only\n"
    return data


def test_a_second_stats_for_one_list_is_a_violation(standin: tuple[Daemon, StandIn]) -> None:
    daemon, child = standin
    env = {**os.environ, CONTROL_PATH_ENV: daemon.control_path}
    with subprocess.Popen(  # noqa: S603 -- our own installed script
        [IKE, "cmd=list", "stats"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env,
    ) as proc:  # fmt: skip
        ask = next_list(child)
        one = (m.CounterValue("retransmits", 1),)
        child.send(m.Stats(ask.request_id, one))
        child.send(m.Stats(ask.request_id, one))
        assert child.closed()
        proc.communicate(timeout=60)
    daemon.wait_log(r"protocol violation: second Stats for request \d+")
