"""The CLI <-> daemon conversation on the control socket, on top of the same codec.

A session: the CLI sends ControlHello, the daemon answers one Response (OK or
VERSION_MISMATCH); the CLI sends one request (Activate/List/Remove/DbChanged) and reads
Responses until one has more=False. Long answers are split so that each datagram stays
under the transport maximum: the daemon builds them with `split_response`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence

from ikepriv.ipc.framing import recv_message, send_message
from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.messages import (
    MAX_ROWS,
    PROTOCOL_VERSION,
    ControlHello,
    ErrorCode,
    Response,
    TunnelRow,
)
from ikepriv.ipc.schema import MAX_MESSAGE_SIZE, Direction, Message, Str, encode

DEFAULT_CONTROL_PATH = "/run/ikepriv/control.sock"
"""Where the daemon listens (mode 0600) and the CLI connects, unless $IKEPRIV_CONTROL says."""

CONTROL_PATH_ENV = "IKEPRIV_CONTROL"


def control_path(environ: Mapping[str, str] | None = None) -> str:
    """The control socket path: $IKEPRIV_CONTROL if set and non-empty, else the default."""
    env = os.environ if environ is None else environ
    return env.get(CONTROL_PATH_ENV) or DEFAULT_CONTROL_PATH


MAX_RESPONSES = 1024
"""A CLI stops reading after this many Responses to one request (a runaway daemon)."""

_TEXT_LINE = Str(255)


def _budget() -> int:
    """Bytes left for lines and rows in one Response after its fixed part."""
    return MAX_MESSAGE_SIZE - len(encode(Response(ErrorCode.OK, (), (), more=False)))


def _size_of_row(row: TunnelRow) -> int:
    out = bytearray()
    row._write(out)
    return len(out)


def _size_of_line(line: str) -> int:
    out = bytearray()
    _TEXT_LINE.encode(_TEXT_LINE.coerce(line), out)
    return len(out)


def split_response(
    status: ErrorCode, lines: Iterable[str] = (), rows: Iterable[TunnelRow] = ()
) -> list[Response]:
    """As many Responses as needed (each <= MAX_ROWS items and MAX_MESSAGE_SIZE bytes);
    all but the last have more=True. Raises IpcError for a line that is not valid text."""
    budget = _budget()
    chunks: list[tuple[list[str], list[TunnelRow]]] = [([], [])]
    used = 0

    def room(size: int, count: int) -> bool:
        return used + size <= budget and count < MAX_ROWS

    for line in lines:
        size = _size_of_line(line)
        if not room(size, len(chunks[-1][0])):
            chunks.append(([], []))
            used = 0
        chunks[-1][0].append(line)
        used += size
    for row in rows:
        size = _size_of_row(row)
        if not room(size, len(chunks[-1][1])):
            chunks.append(([], []))
            used = 0
        chunks[-1][1].append(row)
        used += size
    last = len(chunks) - 1
    return [
        Response(status, tuple(chunk_lines), tuple(chunk_rows), more=index != last)
        for index, (chunk_lines, chunk_rows) in enumerate(chunks)
    ]


def _expect_response(sock: socket.socket) -> Response:
    msg = recv_message(sock, Direction.DAEMON_TO_CLI)
    if msg is None:
        raise ConnectionResetError("daemon closed the control connection")
    if not isinstance(msg, Response):
        raise IpcError(Reason.WRONG_DIRECTION, f"expected Response, got {type(msg).__name__}")
    return msg


def control_call(sock: socket.socket, request: Message) -> list[Response]:
    """Run one CLI session on a connected control socket: handshake, request, responses.

    Returns every Response (the handshake's too when it failed: its status says why).
    """
    send_message(sock, ControlHello(PROTOCOL_VERSION))
    hello = _expect_response(sock)
    if hello.status is not ErrorCode.OK:
        return [hello]
    send_message(sock, request)
    answers: list[Response] = []
    while len(answers) < MAX_RESPONSES:
        answer = _expect_response(sock)
        answers.append(answer)
        if not answer.more:
            return answers
    raise IpcError(Reason.TOO_MANY, f"more than {MAX_RESPONSES} responses")


def merge(responses: Sequence[Response]) -> tuple[ErrorCode, list[str], list[TunnelRow]]:
    """The status of the last Response and every line and row, in order."""
    lines = [line for answer in responses for line in answer.lines]
    rows = [row for answer in responses for row in answer.rows]
    status = responses[-1].status if responses else ErrorCode.INTERNAL
    return status, lines, rows


def connect(path: str, timeout: float | None = 30.0) -> socket.socket:
    """A blocking SEQPACKET connection to the daemon's control socket."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock
