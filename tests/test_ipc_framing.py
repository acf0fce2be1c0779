"""One message per SEQPACKET datagram, on real sockets: blocking, trio, and the CLI session."""

from __future__ import annotations

import array
import os
import socket
import threading
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest
import trio

from ikepriv.ipc import messages as m
from ikepriv.ipc.control import connect, control_call, merge, split_response
from ikepriv.ipc.framing import (
    recv_message,
    recv_message_trio,
    send_message,
    send_message_trio,
    socketpair,
)
from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.schema import MAX_MESSAGE_SIZE, Direction, decode, encode

C2P = Direction.CHILD_TO_PARENT
P2C = Direction.PARENT_TO_CHILD
V4 = ip_address("192.0.2.1")
DATAGRAM = m.DatagramOut(m.Endpoint(V4, 500), m.Endpoint(ip_address("192.0.2.9"), 500), False, b"x")


Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    parent, child = socketpair()
    yield parent, child
    parent.close()
    child.close()


def test_messages_keep_their_boundaries(pair: Pair) -> None:
    parent, child = pair
    send_message(parent, m.Hello(m.PROTOCOL_VERSION))
    send_message(child, m.Ready(m.PROTOCOL_VERSION))
    send_message(child, DATAGRAM)
    assert recv_message(child, P2C) == m.Hello(m.PROTOCOL_VERSION)
    assert recv_message(parent, C2P) == m.Ready(m.PROTOCOL_VERSION)
    assert recv_message(parent, C2P) == DATAGRAM


def test_full_size_datagram_passes(pair: Pair) -> None:
    parent, child = pair
    big = m.DatagramIn(m.Endpoint(V4, 4500), m.Endpoint(V4, 4500), True, b"\x5a" * 65535)
    send_message(parent, big)
    assert recv_message(child, P2C) == big


def test_parent_refuses_parent_only_messages_from_the_child(pair: Pair) -> None:
    parent, child = pair
    send_message(child, m.SkeyidReply(1, m.ErrorCode.OK, b"s" * 20, b""))  # forged reply
    with pytest.raises(IpcError) as info:
        recv_message(parent, C2P)
    assert info.value.reason is Reason.WRONG_DIRECTION


def test_oversize_datagram_is_refused_and_the_next_one_still_arrives(pair: Pair) -> None:
    parent, child = pair
    child.send(encode(DATAGRAM)[:2] + bytes(MAX_MESSAGE_SIZE))
    send_message(child, DATAGRAM)
    with pytest.raises(IpcError) as info:
        recv_message(parent, C2P)
    assert info.value.reason is Reason.TOO_LARGE
    assert recv_message(parent, C2P) == DATAGRAM


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_smuggled_descriptor_is_refused_and_not_installed(pair: Pair, tmp_path: Path) -> None:
    parent, child = pair
    with open(tmp_path / "secret", "w") as handle:
        fds = array.array("i", [handle.fileno()])
        child.sendmsg([encode(DATAGRAM)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
        before = _open_fds()
        with pytest.raises(IpcError) as info:
            recv_message(parent, C2P)
        assert info.value.reason is Reason.ANCILLARY
        assert _open_fds() == before


def test_end_of_stream_is_none(pair: Pair) -> None:
    parent, child = pair
    child.close()
    assert recv_message(parent, C2P) is None


def test_message_too_large_is_not_sent(pair: Pair) -> None:
    parent, _ = pair
    rows = split_response(m.ErrorCode.OK, [f"{n:0255d}" for n in range(400)])
    assert len(rows) > 1
    with pytest.raises(IpcError) as info:
        send_message(parent, m.Response(m.ErrorCode.OK, rows[0].lines + rows[1].lines, ()))
    assert info.value.reason is Reason.TOO_LARGE


def test_trio_helpers() -> None:
    async def main() -> None:
        left, right = socketpair()
        with trio.socket.from_stdlib_socket(left) as parent:
            with trio.socket.from_stdlib_socket(right) as child:
                await send_message_trio(parent, m.Hello(m.PROTOCOL_VERSION))
                assert await recv_message_trio(child, P2C) == m.Hello(m.PROTOCOL_VERSION)
                await send_message_trio(child, m.Ready(m.PROTOCOL_VERSION))
                await child.send(b"\x02\x01")  # Ready without its version
                assert await recv_message_trio(parent, C2P) == m.Ready(m.PROTOCOL_VERSION)
                with pytest.raises(IpcError) as info:
                    await recv_message_trio(parent, C2P)
                assert info.value.reason is Reason.TRUNCATED
                child.close()
                assert await recv_message_trio(parent, C2P) is None

    trio.run(main)


def _row(number: int) -> m.TunnelRow:
    return m.TunnelRow(
        number, None, m.Phase.PHASE1, f"tunnel-{number}", None, m.TunnelState.DEFINED,
        V4, ip_address("198.51.100.1"), None, None, "AES-CBC-256 SHA2-256 MODP-2048",
        0, 0, 0, 0, 0, None,
    )  # fmt: skip


def _serve(listener: socket.socket, version_ok: bool, seen: list[object]) -> None:
    """A stand-in for the daemon's control loop, speaking the same session."""
    conn, _ = listener.accept()
    with conn:
        hello = recv_message(conn, Direction.CLI_TO_DAEMON)
        seen.append(hello)
        if not version_ok:
            send_message(conn, m.Response(m.ErrorCode.VERSION_MISMATCH, ("upgrade ike",), ()))
            return
        send_message(conn, m.Response(m.ErrorCode.OK, (), ()))
        seen.append(recv_message(conn, Direction.CLI_TO_DAEMON))
        rows = [_row(n) for n in range(1, 4097)]
        for part in split_response(m.ErrorCode.OK, ["Phase 1 tunnels"], rows):
            send_message(conn, part)


@pytest.mark.parametrize("version_ok", [True, False])
def test_cli_session_over_a_real_control_socket(tmp_path: Path, version_ok: bool) -> None:
    path = str(tmp_path / "ctl")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(path)
    listener.listen(1)
    seen: list[object] = []
    server = threading.Thread(target=_serve, args=(listener, version_ok, seen))
    server.start()
    request = m.ListRequest(m.Phase.PHASE1, (m.NumRange(1, 4096),), True, None, False, False)
    try:
        with connect(path, timeout=30) as sock:
            answers = control_call(sock, request)
    finally:
        server.join(30)
        listener.close()
    assert seen[0] == m.ControlHello(m.PROTOCOL_VERSION)
    status, lines, rows = merge(answers)
    if not version_ok:
        assert (status, lines, rows) == (m.ErrorCode.VERSION_MISMATCH, ["upgrade ike"], [])
        assert len(seen) == 1  # the request was never sent
        return
    assert seen[1] == request
    assert status is m.ErrorCode.OK
    assert lines == ["Phase 1 tunnels"]
    assert [row.number for row in rows] == list(range(1, 4097))
    assert len(answers) > 1
    for answer in answers:
        assert len(encode(answer)) <= MAX_MESSAGE_SIZE
        assert decode(encode(answer), Direction.DAEMON_TO_CLI) == answer
