"""The control socket: where `ike` and `ikedb` talk to the daemon.

AF_UNIX SOCK_SEQPACKET, created 0600 (umask while binding, so there is no window in
which it is wider), and every peer checked with SO_PEERCRED: uid 0 only, whatever the
file mode says (a process with CAP_DAC_OVERRIDE but another uid is still refused).
A session is ControlHello, Response, one request, its Responses (ikepriv.ipc.control).
Sessions are bounded in number and time, so a stuck client cannot hold the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import struct
from collections.abc import AsyncGenerator, Callable
from typing import Final

import trio

from ikepriv.ipc import messages as m
from ikepriv.ipc.control import split_response
from ikepriv.ipc.framing import recv_message_trio, send_encoded_trio, send_message_trio
from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.schema import Direction, Message

log = logging.getLogger("ikepriv.parent")

MAX_SESSIONS: Final = 16
SESSION_TIMEOUT: Final = 60.0
_UCRED: Final = struct.Struct("=iII")  # pid, uid, gid

Handler = Callable[[Message], AsyncGenerator[bytes, None]]  # encoded Responses, sent as they come


def peer_uid(sock: socket.socket | trio.socket.SocketType) -> int:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    _, uid, _ = _UCRED.unpack(raw)
    return int(uid)


def _check_directory(directory: str) -> None:
    """The socket's directory must be ours and writable by nobody else: otherwise another
    user could swap the socket for a symbolic link or their own listener."""
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{directory}: not a directory")
    if st.st_uid != os.geteuid():
        raise PermissionError(f"{directory}: owned by uid {st.st_uid}; the control socket "
                              "needs a directory of its own user")  # fmt: skip
    if st.st_mode & 0o022:
        raise PermissionError(f"{directory}: writable by group or others (mode "
                              f"{stat.S_IMODE(st.st_mode):04o})")  # fmt: skip


def _check_socket(path: str) -> None:
    """What we bound is a socket of ours with mode 0600 (never chmod by path: a symbolic
    link put there in the meantime would redirect the chmod)."""
    st = os.lstat(path)
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o177:
        raise PermissionError(f"{path}: not our socket with mode 0600 after bind")


def bind_control(path: str) -> socket.socket:
    """Create the listening socket at `path` (replacing a stale socket, nothing else)."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o755, exist_ok=True)
    _check_directory(directory)
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)
        if not stat.S_ISSOCK(st.st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # a socket nobody listens on: left by a daemon that died
        else:
            raise FileExistsError(f"{path}: another daemon is listening")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    try:
        _check_socket(path)
        sock.listen(MAX_SESSIONS)
    except BaseException:
        sock.close()
        raise
    return sock


class ControlServer:
    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._listener = trio.socket.from_stdlib_socket(bind_control(path))
        self._slots = trio.Semaphore(MAX_SESSIONS)

    def close(self) -> None:
        self._listener.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await self._listener.accept()
                try:  # taken here, not in the session task: the bound holds at every accept
                    self._slots.acquire_nowait()
                except trio.WouldBlock:
                    conn.close()  # too many sessions: the client sees a closed connection
                    continue
                nursery.start_soon(self._session, conn)

    async def _session(self, conn: trio.socket.SocketType) -> None:
        try:
            with conn, trio.move_on_after(SESSION_TIMEOUT):
                try:
                    await self._converse(conn)
                except (OSError, IpcError) as exc:
                    log.warning("control session ended: %s", exc)
                except Exception:  # a bug must not take the daemon down with the session
                    log.exception("internal error in a control session")
        finally:
            self._slots.release()

    async def _converse(self, conn: trio.socket.SocketType) -> None:
        uid = peer_uid(conn)
        if uid != 0:
            log.warning("control connection from uid %d refused: root only", uid)
            await send_message_trio(
                conn, m.Response(m.ErrorCode.NOT_PERMITTED, ("permission denied: root only",), ())
            )
            return  # fmt: skip
        hello = await recv_message_trio(conn, Direction.CLI_TO_DAEMON)
        if not isinstance(hello, m.ControlHello):
            return
        if hello.version != m.PROTOCOL_VERSION:
            text = f"version mismatch: daemon {m.PROTOCOL_VERSION}, client {hello.version}"
            await send_message_trio(conn, m.Response(m.ErrorCode.VERSION_MISMATCH, (text,), ()))
            return
        await send_message_trio(conn, m.Response(m.ErrorCode.OK, (), ()))
        request = await recv_message_trio(conn, Direction.CLI_TO_DAEMON)
        if request is None or isinstance(request, m.ControlHello):
            return
        try:  # each Response leaves when ready: a long listing is never held whole
            async with contextlib.aclosing(self._handler(request)) as responses:
                async for data in responses:
                    await send_encoded_trio(conn, data)
        except IpcError as exc:  # a line that is not valid text, a row out of bounds
            log.error("control: cannot answer %s: %s", type(request).__name__, exc)
            for response in split_response(m.ErrorCode.INTERNAL, [f"internal error: {exc}"]):
                await send_message_trio(conn, response)
