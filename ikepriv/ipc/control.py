"""The CLI <-> daemon conversation on the control socket, on top of the same codec.

A session: the CLI sends ControlHello, the daemon answers one Response (OK or
VERSION_MISMATCH); the CLI sends one request (Activate/List/Remove/DbChanged) and reads
Responses until one has more=False. Long answers are split so that each datagram stays
under the transport maximum: the daemon builds them with `split_response`, or, for an
answer it produces piece by piece (a listing of any length, page by page from the
negotiator), with `ResponseWriter`, which hands out each Response as soon as it is full so
that the daemon never holds more than one.
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


MAX_RESPONSES = 16384
"""A CLI stops reading after this many Responses to one request (a runaway daemon). Room
for the daemon's longest listing (parent_kernel.requests.MAX_LISTED tunnels) even if
every row is as large as its bounds allow."""

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


class ResponseWriter:
    """Lines and rows packed into Responses as they come: `line` and `row` return the
    Response that just filled up (to be sent with more=True), `finish` the last one.

    Each Response holds at most MAX_ROWS lines, MAX_ROWS rows and MAX_MESSAGE_SIZE bytes.
    A Response that is handed out before the answer is complete carries `progress` as its
    status (the CLI takes the status of the last one)."""

    __slots__ = ("_budget", "_lines", "_progress", "_rows", "_used")

    def __init__(self, progress: ErrorCode = ErrorCode.OK) -> None:
        self._budget = _budget()
        self._progress = progress
        self._lines: list[str] = []
        self._rows: list[TunnelRow] = []
        self._used = 0

    def _take(self, status: ErrorCode, more: bool) -> Response:
        out = Response(status, tuple(self._lines), tuple(self._rows), more=more)
        self._lines, self._rows, self._used = [], [], 0
        return out

    def _room(self, size: int, count: int) -> bool:
        return self._used + size <= self._budget and count < MAX_ROWS

    def line(self, line: str) -> Response | None:
        """Add a line; raises IpcError for one that is not valid text."""
        size = _size_of_line(line)
        full = None if self._room(size, len(self._lines)) else self._take(self._progress, True)
        self._lines.append(line)
        self._used += size
        return full

    def row(self, row: TunnelRow) -> Response | None:
        size = _size_of_row(row)
        full = None if self._room(size, len(self._rows)) else self._take(self._progress, True)
        self._rows.append(row)
        self._used += size
        return full

    def finish(self, status: ErrorCode, *, more: bool = False) -> Response:
        """What is left (perhaps nothing), as the Response with the final status."""
        return self._take(status, more)


def split_response(
    status: ErrorCode, lines: Iterable[str] = (), rows: Iterable[TunnelRow] = ()
) -> list[Response]:
    """As many Responses as needed (each <= MAX_ROWS items and MAX_MESSAGE_SIZE bytes);
    all but the last have more=True. Raises IpcError for a line that is not valid text."""
    writer = ResponseWriter(status)
    out = [full for line in lines if (full := writer.line(line)) is not None]
    out += [full for row in rows if (full := writer.row(row)) is not None]
    return [*out, writer.finish(status)]


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
