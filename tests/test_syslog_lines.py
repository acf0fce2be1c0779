"""The daemon's log lines about its negotiator child say what happened to it.

A child that exits by itself is logged with its exit status ("exited with status 3"), not
as a protocol violation; only a child that broke the protocol is logged as killed for it.
The daemon runs for real in a namespace; its child is a small stand-in that completes the
handshake and the configuration, then exits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import PYTHON, Daemon, StandIn, Topology

from ikepriv.ipc import messages as m

pytestmark = pytest.mark.root

EXITING_CHILD = """\
import socket, sys
from ikepriv.ipc import messages as m
from ikepriv.ipc.framing import recv_message, send_message
from ikepriv.ipc.schema import Direction
sock = socket.socket(fileno=int(sys.argv[1]))
assert isinstance(recv_message(sock, Direction.PARENT_TO_CHILD), m.Hello)
send_message(sock, m.Ready(m.PROTOCOL_VERSION))
while not isinstance(recv_message(sock, Direction.PARENT_TO_CHILD), m.ConfigEnd):
    pass
sys.exit(3)
"""


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology.create() as t:
        yield t


def test_child_that_exits_is_logged_with_its_status(topo: Topology, tmp_path: Path) -> None:
    script = tmp_path / "exiting_child.py"
    script.write_text(EXITING_CHILD)
    daemon = Daemon.start(topo.a, tmp_path, child_cmd=f"{PYTHON} {script} {{fd}}")
    try:
        text = daemon.wait_log(r"negotiator child pid \d+ exited with status 3", count=2)
    finally:
        daemon.stop()
    assert "protocol violation" not in text
    assert re.search(r"restarting the negotiator child in [\d.]+ s", text)


def test_a_real_violation_is_still_called_one(topo: Topology, tmp_path: Path) -> None:
    child = StandIn(tmp_path)
    daemon = Daemon.start(topo.a, tmp_path, child_cmd=child.child_cmd)
    try:
        child.accept()
        child.send(m.Ready(m.PROTOCOL_VERSION))  # a second Ready cannot happen
        assert child.closed()
        text = daemon.wait_log(r"negotiator child pid \d+ killed: protocol violation: "
                               r"second Ready")  # fmt: skip
    finally:
        daemon.stop()
        child.close()
    assert "exited with status" not in text


def test_child_that_closes_its_channel_is_not_a_violation(topo: Topology, tmp_path: Path) -> None:
    child = StandIn(tmp_path)
    daemon = Daemon.start(topo.a, tmp_path, child_cmd=child.child_cmd)
    try:
        child.accept()
        assert child.conn is not None
        child.conn.close()  # the relay sees its end close and exits with status 0
        child.conn = None
        text = daemon.wait_log(r"negotiator child pid \d+ exited with status 0")
        child.accept()  # and a new one is started
    finally:
        daemon.stop()
        child.close()
    assert "protocol violation" not in text and "SIGKILL" not in text
