"""ikeprivd with two negotiator children and real peers (issue 11, "every core").

Three network namespaces joined by a bridge in the first: the daemon under test (192.0.2.1,
`--children 2`) and two real ikeprivd peers, B (192.0.2.2) and C (192.0.2.3), which the
daemon's shard function puts on different children (checked first). Phase 1 to both
establishes and is listed together with unique tunnel numbers; killing one child with
SIGKILL leaves the other's phase 1 as it was (same tunnel, not negotiated again) while the
killed child's is negotiated again by its successor; `remove` by tunnel number reaches the
child that holds it. The host kernel has no ESP, so phase 1 is what is shown here.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_daemon_support import SITE, Daemon, run, wait_for, write_db

from ikepriv.ipc import messages as m
from ikepriv.parent_kernel.shards import Sharding

pytestmark = pytest.mark.root

A = ipaddress.ip_address("192.0.2.1")
B = ipaddress.ip_address("192.0.2.2")
C = ipaddress.ip_address("192.0.2.3")
PHASE1 = m.ListRequest(m.Phase.PHASE1, (), False, None, False, False)


@dataclass
class Star:
    """Namespaces a (bridge, 192.0.2.1), b (192.0.2.2) and c (192.0.2.3); no other route."""

    a: str
    b: str
    c: str


@pytest.fixture
def star() -> Iterator[Star]:
    tag = secrets.token_hex(3)
    topo = Star(f"ikpA-{tag}", f"ikpB-{tag}", f"ikpC-{tag}")
    spaces = (topo.a, topo.b, topo.c)
    try:
        for ns in spaces:
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", topo.a, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", topo.a, "addr", "add", f"{A}/24", "dev", "br0")
        run("ip", "-n", topo.a, "link", "set", "br0", "up")
        for ns, addr, dev in ((topo.b, B, "vb"), (topo.c, C, "vc")):
            run("ip", "-n", topo.a, "link", "add", f"{dev}0", "type", "veth", "peer", "name",
                dev, "netns", ns)  # fmt: skip
            run("ip", "-n", topo.a, "link", "set", f"{dev}0", "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
        yield topo
    finally:
        for ns in spaces:
            run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def daemons(star: Star, tmp_path: Path) -> Iterator[tuple[Daemon, Daemon, Daemon]]:
    db_peer = tmp_path / "peer.db"
    write_db(db_peer, swap=True)  # to-siteB and to-siteC seen from the other end
    started: list[Daemon] = []
    try:
        started.append(Daemon.start(star.a, tmp_path, "--children", "2", name="a"))
        for ns, name in ((star.b, "b"), (star.c, "c")):
            started.append(Daemon.start(ns, tmp_path, "--children", "1", name=name, db=db_peer))
        for d in started:
            d.wait_log("configuration generation 1 loaded")
        yield started[0], started[1], started[2]
    finally:
        for d in started:
            d.stop()


def phase1_rows(daemon: Daemon) -> dict[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    code, lines, rows = daemon.call(PHASE1)
    assert code is m.ErrorCode.OK, lines
    return {r.remote_addr: r.tunnel_id for r in rows
            if r.state is m.TunnelState.ESTABLISHED and r.remote_addr and r.tunnel_id}  # fmt: skip


def child_pid(daemon: Daemon, label: str) -> int:
    found = re.findall(rf"{re.escape(label)} started, pid (\d+)", daemon.log())
    assert found, daemon.log()
    return int(found[-1])


def test_two_children_serve_two_peers_and_one_crash_stays_in_its_shard(
    daemons: tuple[Daemon, Daemon, Daemon],
) -> None:
    a, b, c = daemons
    sharding = Sharding(2)
    for_b, for_c = sharding.of_address(B), sharding.of_address(C)
    assert for_b != for_c
    assert "to-siteB" in SITE and "to-siteC" in SITE
    code, lines, _ = a.call(m.ActivateRequest(m.Phase.PHASE1, (m.NumRange(1, 2),), (), None,
                                              None, None, False))  # fmt: skip
    assert code is m.ErrorCode.OK, lines
    a.wait_log("phase 1 to-siteB established with 192.0.2.2 as initiator")
    a.wait_log("phase 1 to-siteC established with 192.0.2.3 as initiator")
    rows = wait_for("both listed", lambda: len(phase1_rows(a)) == 2 and phase1_rows(a))
    assert isinstance(rows, dict)
    # listed together, numbered by their own children: unique, each in its child's class
    assert sharding.of_number(rows[B]) == for_b and sharding.of_number(rows[C]) == for_c
    assert rows[B] != rows[C]

    # SIGKILL of C's child: C's phase 1 is negotiated again by its successor, B's stays
    os.kill(child_pid(a, sharding.label(for_c)), 9)
    a.wait_log(f"restarting the {re.escape(sharding.label(for_c))}")
    a.wait_log("phase 1 to-siteC established with 192.0.2.3 as initiator", count=2)
    after = wait_for("C listed again", lambda: C in phase1_rows(a) and phase1_rows(a))
    assert isinstance(after, dict)
    assert after[B] == rows[B]  # the same tunnel of the untouched child
    assert sharding.of_number(after[C]) == for_c
    log = a.log()
    assert log.count("phase 1 to-siteB established") == 1  # never negotiated again
    assert f"restarting the {sharding.label(for_b)}" not in log
    assert b.log().count("established with 192.0.2.1 as responder") == 1

    # remove by number reaches the child that holds the tunnel: B's goes, C's stays
    code, lines, _ = a.call(m.RemoveRequest(m.Phase.PHASE1, (m.NumRange(after[B], after[B]),),
                                            False))  # fmt: skip
    assert code is m.ErrorCode.OK, lines
    gone = wait_for("B's phase 1 gone", lambda: B not in phase1_rows(a) and phase1_rows(a))
    assert gone == {C: after[C]}
    b.wait_log(r"phase 1 to-siteB deleted by 192\.0\.2\.1")  # the Delete came from its child
    assert "deleted by" not in c.log()
    assert c.log().count("established with 192.0.2.1 as responder") == 2
