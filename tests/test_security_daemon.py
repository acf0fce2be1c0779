"""The real daemon against hostile datagrams, a hostile child and hostile control clients.

One daemon with a stand-in child (test_daemon_support) per test, in namespaces the test
creates. What is checked is what an operator would notice: what reaches the child, what
leaves the box, what the kernel holds, whether the daemon keeps serving.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import (
    GW_A,
    GW_B,
    PYTHON,
    Daemon,
    StandIn,
    Topology,
    run,
    send_udp,
    wait_for,
)

from ikepriv.ipc import messages as m
from ikepriv.ipc.control import connect
from ikepriv.parent_kernel.control_socket import MAX_SESSIONS

pytestmark = pytest.mark.root

A, B = ipaddress.ip_address(GW_A), ipaddress.ip_address(GW_B)
MARKER = b"unicast marker".ljust(28, b".")


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


def send_from(ns: str, src: str, dst: str, data: bytes, *, broadcast: bool = False) -> None:
    code = ("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, int(sys.argv[3])); "
            "s.bind((sys.argv[1], 0)); "
            "s.sendto(bytes.fromhex(sys.argv[4]), (sys.argv[2], 500))")  # fmt: skip
    run("ip", "netns", "exec", ns, PYTHON, "-c", code, src, dst, str(int(broadcast)), data.hex())


def test_broadcast_and_self_addressed_datagrams_never_reach_the_child(
    setup: tuple[Daemon, StandIn, Topology],
) -> None:
    """A broadcast would make 192.0.2.255 "our" address; a datagram a local user sends from
    our own address would make us our own peer."""
    daemon, child, topo = setup
    send_from(topo.b, GW_B, "192.0.2.255", bytes(28), broadcast=True)
    send_from(topo.a, GW_A, GW_A, bytes(28))  # a local user, from our own address
    send_from(topo.a, "127.0.0.1", "127.0.0.1", bytes(28))
    send_udp(topo.b, GW_A, 500, MARKER)
    got = child.recv()
    assert isinstance(got, m.DatagramIn), got
    assert got.data == MARKER and got.local.addr == A and got.remote.addr == B
    # and the child cannot send from the broadcast address either
    child.send(m.DatagramOut(m.Endpoint(ipaddress.ip_address("192.0.2.255"), 500),
                             m.Endpoint(B, 500), False, bytes(28)))  # fmt: skip
    daemon.wait_log("refused datagram from the child: source 192.0.2.255 is not ours")


def test_datagram_to_another_service_of_a_peer_is_not_sent(
    setup: tuple[Daemon, StandIn, Topology],
) -> None:
    daemon, child, topo = setup
    send_udp(topo.b, GW_A, 500, MARKER)
    assert isinstance(child.recv(), m.DatagramIn)
    child.send(m.DatagramOut(m.Endpoint(A, 500), m.Endpoint(B, 53), False, bytes(28)))
    daemon.wait_log("refused datagram from the child: destination port 53 of 192.0.2.2")


def test_garbage_on_the_control_socket_does_not_stop_the_daemon(
    setup: tuple[Daemon, StandIn, Topology],
) -> None:
    daemon, _child, _topo = setup
    for junk in (b"", b"\x03", b"\x03\x01\x00", b"\xff" * 70000, b"\x03\x10" + bytes(100)):
        with connect(daemon.control_path, timeout=30) as sock:
            try:
                sock.send(junk)
                sock.recv(1 << 17)
            except OSError:
                pass
    code, _, rows = daemon.call(m.ListRequest(m.Phase.ALL, (), True, None, False, False))
    assert code is m.ErrorCode.OK and len(rows) == 4


def connect_retry(path: str) -> socket.socket:
    """Connect, waiting while the listen backlog is momentarily full (EAGAIN)."""
    return wait_for("a control connection", lambda: _try_connect(path))  # type: ignore[return-value]


def _try_connect(path: str) -> socket.socket | None:
    try:
        return connect(path, timeout=30)
    except BlockingIOError:
        return None


def test_idle_control_clients_cannot_lock_out_root(setup: tuple[Daemon, StandIn, Topology]) -> None:
    """Sessions that say nothing: past the session bound a client is turned away at once
    (never left hanging), and once they go the daemon serves normally."""
    daemon, _child, _topo = setup
    idle = [connect_retry(daemon.control_path) for _ in range(MAX_SESSIONS)]
    try:
        with connect_retry(daemon.control_path) as extra:
            assert extra.recv(1) == b""  # closed by the daemon: no slot
    finally:
        for sock in idle:
            sock.close()
    # the daemon notices the closed sessions on its own time; then it serves again
    code, _, rows = wait_for("a served request", lambda: _try_list(daemon))  # type: ignore[misc]
    assert code is m.ErrorCode.OK and len(rows) == 4


def _try_list(daemon: Daemon) -> tuple[m.ErrorCode, list[str], list[m.TunnelRow]] | None:
    try:
        return daemon.call(m.ListRequest(m.Phase.ALL, (), True, None, False, False))
    except ConnectionError:
        return None
