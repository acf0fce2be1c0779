"""Attack: a child that stops reading makes the parent hoard memory (issue 8, point 6).

A real ikeprivd whose (stand-in) child never reads again, in namespaces the test creates;
the peer's namespace sends large datagrams, each of which the parent queues for the child.
What is measured is the parent's resident memory before and after.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import GW_A, PYTHON, Daemon, StandIn, Topology, isakmp, run

pytestmark = [pytest.mark.attacks, pytest.mark.root]

SENDER = """\
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", 500))
data = bytes.fromhex(sys.argv[2])
for i in range(int(sys.argv[3])):
    s.sendto(data, (sys.argv[1], 500))
    if i % 20 == 19:
        time.sleep(0.01)
"""


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Daemon, StandIn, Topology]]:
    with Topology.create() as topo:
        standin = StandIn(tmp_path)
        daemon = Daemon.start(topo.a, tmp_path, child_cmd=standin.child_cmd)
        try:
            standin.accept()
            yield daemon, standin, topo
        finally:
            daemon.stop()
            standin.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_queue_to_a_child_that_stops_reading_is_bounded_in_bytes(
    setup: tuple[Daemon, StandIn, Topology], tmp_path: Path
) -> None:
    daemon, _child, topo = setup  # the stand-in never reads from here on
    script = tmp_path / "sender.py"
    script.write_text(SENDER)
    big = isakmp(b"\x77" * 8, body=bytes(60000))
    before = rss_kib(daemon.proc.pid)
    run("ip", "netns", "exec", topo.b, PYTHON, str(script), GW_A, big.hex(), "3000")
    try:
        daemon.wait_log("child is not reading")
    except AssertionError:
        pass  # a parent without a byte bound keeps queueing and never says so: measure
    after = rss_kib(daemon.proc.pid)
    print(f"parent RSS {before} KiB -> {after} KiB (+{(after - before) // 1024} MiB)")
    assert after - before < 24 * 1024
