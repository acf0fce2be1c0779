"""ikeprivd tells systemd it is ready (READY=1) only once a peer's first datagram will be
answered: after its first child answered Ready and was sent its configuration. A datagram
that arrives before that waits for the child instead of being lost (the peer would wait for
its retransmission).

The child here is the test's stand-in (a relay to this process), so the test decides when
the child answers Hello; the daemon is the real one, in a network namespace of its own.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import GW_A, GW_B, Daemon, StandIn, Topology, send_udp

from ikepriv.ipc import messages as m
from ikepriv.parent_kernel.shards import default_children

pytestmark = pytest.mark.root

B = ipaddress.ip_address(GW_B)


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology.create() as t:
        yield t


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(30)
        yield sock


def pending(sock: socket.socket) -> bytes | None:
    """A notification already sent, without waiting for one."""
    timeout = sock.gettimeout()
    sock.settimeout(0)
    try:
        return sock.recv(4096)
    except BlockingIOError:
        return None
    finally:
        sock.settimeout(timeout)


def test_ready_after_child_config_and_early_datagram_is_delivered(
    topo: Topology, tmp_path: Path, notify: socket.socket
) -> None:
    child = StandIn(tmp_path)
    d = Daemon.start(topo.a, tmp_path, child_cmd=child.child_cmd,
                     env={"NOTIFY_SOCKET": notify.getsockname()})  # fmt: skip
    try:
        child.conn, _ = child.listener.accept()
        child.conn.settimeout(30)
        assert isinstance(child.recv(), m.Hello)
        # the child has not answered: the daemon is not ready, a peer's datagram must wait
        assert pending(notify) is None
        send_udp(topo.b, GW_A, 500, b"early" + bytes(23))
        assert pending(notify) is None
        child.send(m.Ready(m.PROTOCOL_VERSION))
        got = child.recv()
        assert isinstance(got, m.ConfigBegin), got
        while not isinstance(got, m.ConfigEnd):
            got = child.recv()
            assert got is not None
        while not isinstance(got, m.DatagramIn):  # after the configuration: the datagram
            got = child.recv()
            assert got is not None, "the early datagram never reached the child"
        assert got.remote.addr == B and got.data.startswith(b"early")
        assert notify.recv(4096) == b"READY=1"
        # once ready, datagrams go straight through
        send_udp(topo.b, GW_A, 500, b"later" + bytes(23))
        got = child.recv()
        assert isinstance(got, m.DatagramIn) and got.data.startswith(b"later")
    finally:
        assert d.stop() == 0
        child.close()
    assert notify.recv(4096) == b"STOPPING=1"


def test_real_child_ready_means_configuration_loaded(
    topo: Topology, tmp_path: Path, notify: socket.socket
) -> None:
    d = Daemon.start(topo.a, tmp_path, env={"NOTIFY_SOCKET": notify.getsockname()})
    try:
        assert notify.recv(4096) == b"READY=1"
        # every real child answered Ready, so it was already in its sandbox
        children = d.children()
        assert len(children) == default_children()
        for child in children:
            assert "Seccomp:\t2" in Path(f"/proc/{child}/status").read_text()
        # and its configuration was sent before READY=1; each child reports it loaded
        d.wait_log("configuration generation 1 loaded", default_children())
    finally:
        assert d.stop() == 0
