"""One message per SEQPACKET datagram, on a trio socket (daemon) or a blocking one (CLI).

Both channels (parent <-> child socketpair, CLI <-> parent control socket) are AF_UNIX
SOCK_SEQPACKET, so framing is the kernel's: message boundaries are kept, nothing to parse.
Receiving asks for one byte more than the maximum and no ancillary buffer, so an oversize
datagram (truncated by the kernel) and smuggled descriptors or credentials (dropped by the
kernel, MSG_CTRUNC set) are both seen and refused before any decoding.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING

from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.schema import MAX_MESSAGE_SIZE, Direction, Message, decode, encode

if TYPE_CHECKING:
    import trio

RECV_SIZE = MAX_MESSAGE_SIZE + 1


def socketpair() -> tuple[socket.socket, socket.socket]:
    """The parent <-> child channel (close-on-exec; the parent passes the child's end)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)


def check_datagram(data: bytes, flags: int) -> bytes | None:
    """Vet what recvmsg returned: None at end of stream, IpcError if oversize or with
    ancillary data, else the bytes to decode."""
    if flags & socket.MSG_CTRUNC:
        raise IpcError(Reason.ANCILLARY, "ancillary data (descriptors or credentials)")
    if flags & socket.MSG_TRUNC or len(data) > MAX_MESSAGE_SIZE:
        raise IpcError(Reason.TOO_LARGE, f"datagram over {MAX_MESSAGE_SIZE} bytes")
    if not data:
        return None
    return data


def _check_sent(sent: int, data: bytes) -> None:
    if sent != len(data):  # SEQPACKET sends whole datagrams; anything else is a kernel oddity
        raise OSError(errno.EMSGSIZE, f"sent {sent} of {len(data)} bytes")


def send_message(sock: socket.socket, msg: Message) -> None:
    """Encode and send one message on a blocking socket."""
    data = encode(msg)
    _check_sent(sock.send(data), data)


def recv_message(sock: socket.socket, direction: Direction) -> Message | None:
    """Receive and decode one message on a blocking socket; None when the peer closed."""
    data, _, flags, _ = sock.recvmsg(RECV_SIZE)
    checked = check_datagram(data, flags)
    return None if checked is None else decode(checked, direction)


async def send_message_trio(sock: trio.socket.SocketType, msg: Message) -> None:
    """Encode and send one message on a trio socket."""
    data = encode(msg)
    _check_sent(await sock.send(data), data)


async def recv_message_trio(sock: trio.socket.SocketType, direction: Direction) -> Message | None:
    """Receive and decode one message on a trio socket; None when the peer closed."""
    data, _, flags, _ = await sock.recvmsg(RECV_SIZE)
    checked = check_datagram(data, flags)
    return None if checked is None else decode(checked, direction)
