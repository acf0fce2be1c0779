"""One message per SEQPACKET datagram, on a trio socket (daemon) or a blocking one (CLI).

Both channels (parent <-> child socketpair, CLI <-> parent control socket) are AF_UNIX
SOCK_SEQPACKET, so framing is the kernel's: message boundaries are kept, nothing to parse.
Receiving asks for one byte more than the maximum and no ancillary buffer, so an oversize
datagram (truncated by the kernel) and smuggled descriptors or credentials (dropped by the
kernel, MSG_CTRUNC set) are both seen and refused before any decoding.

The daemon's and the child's hot loops use `receive_ready` and `send_ready` on the plain
(non-blocking) socket instead of trio's wrappers: trio's socket methods yield to the
scheduler after every call, even one that succeeded at once, which cost the parent about a
third of its time per Main Mode (docs/performance.md). They wait (trio.lowlevel
wait_readable / wait_writable) only when the kernel says EAGAIN.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.schema import MAX_MESSAGE_SIZE, Direction, Message, decode, encode

if TYPE_CHECKING:
    import trio

RECV_SIZE = MAX_MESSAGE_SIZE + 1
# plain ints: socket's MSG_* are IntFlag members, and `int & IntFlag` builds a new enum
# member on every call (a few microseconds per message on the hot path)
_CTRUNC = int(socket.MSG_CTRUNC)
_TRUNC = int(socket.MSG_TRUNC)
_DONTWAIT = int(socket.MSG_DONTWAIT)


def socketpair() -> tuple[socket.socket, socket.socket]:
    """The parent <-> child channel (close-on-exec; the parent passes the child's end)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)


def check_datagram(data: bytes, flags: int) -> bytes | None:
    """Vet what recvmsg returned: None at end of stream, IpcError if oversize or with
    ancillary data, else the bytes to decode."""
    if flags & _CTRUNC:
        raise IpcError(Reason.ANCILLARY, "ancillary data (descriptors or credentials)")
    if flags & _TRUNC or len(data) > MAX_MESSAGE_SIZE:
        raise IpcError(Reason.TOO_LARGE, f"datagram over {MAX_MESSAGE_SIZE} bytes")
    if not data:
        return None
    return data


def receive_ready(
    sock: socket.socket, direction: Direction, limit: int
) -> Iterator[Message | None]:
    """The messages already queued on `sock` (non-blocking), at most `limit`, each read and
    decoded only when the caller comes back for it (so a message is handled before the next
    is even read, as with one recv per message); a final None when the peer closed. Ends
    without waiting when nothing more is queued. IpcError for an undecodable message."""
    for _ in range(limit):
        try:
            data, _, flags, _ = sock.recvmsg(RECV_SIZE, 0, _DONTWAIT)
        except BlockingIOError:
            return
        checked = check_datagram(data, flags)
        if checked is None:
            yield None
            return
        yield decode(checked, direction)


def send_nowait(sock: socket.socket, data: bytes) -> bool:
    """Send one encoded message on a non-blocking socket if the kernel has room for it now;
    False (nothing sent) if not (EAGAIN)."""
    try:
        sent = sock.send(data, _DONTWAIT)
    except BlockingIOError:
        return False
    _check_sent(sent, data)
    return True


async def send_ready(sock: socket.socket, data: bytes) -> None:
    """Send one encoded message on a non-blocking socket, waiting only if the kernel's
    buffer is full (EAGAIN)."""
    while not send_nowait(sock, data):
        import trio  # here: the blocking CLI imports this module without trio

        await trio.lowlevel.wait_writable(sock)


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
    await send_encoded_trio(sock, encode(msg))


async def send_encoded_trio(sock: trio.socket.SocketType, data: bytes) -> None:
    """Send one message already encoded (by `encode`, or joined from encoded parts as
    ipc.control.ResponseWriter does) on a trio socket."""
    _check_sent(await sock.send(data), data)


async def recv_message_trio(sock: trio.socket.SocketType, direction: Direction) -> Message | None:
    """Receive and decode one message on a trio socket; None when the peer closed."""
    data, _, flags, _ = await sock.recvmsg(RECV_SIZE)
    checked = check_datagram(data, flags)
    return None if checked is None else decode(checked, direction)
