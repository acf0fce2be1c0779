"""The CLI <-> daemon conversation on the control socket, on top of the same codec.

A session: the CLI sends ControlHello, the daemon answers one Response (OK or
VERSION_MISMATCH); the CLI sends one request (Activate/List/Remove/DbChanged) and reads
Responses until one has more=False. Long answers are split so that each datagram stays
under the transport maximum: the daemon builds them with `split_response`, or, for an
answer it produces piece by piece (a listing of any length, page by page from the
negotiator), with `ResponseWriter`, which hands out each Response, encoded, as soon as it
is full so that the daemon never holds more than one.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import cast

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
from ikepriv.ipc.schema import (
    MAX_MESSAGE_SIZE,
    Direction,
    ListOf,
    Message,
    SchemaError,
    decode,
    encode,
)

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

_FIELDS = dict(Response.schema())
if tuple(_FIELDS) != ("status", "lines", "rows", "more", "counters", "definitions"):
    raise SchemaError("ResponseWriter joins a Response's fields in this wire order")
_STATUS = _FIELDS["status"]
_LINES = cast(ListOf, _FIELDS["lines"])
_ROWS = cast(ListOf, _FIELDS["rows"])
_MORE = _FIELDS["more"]
_NO_COUNTERS = _FIELDS["counters"].encoder(()) + _FIELDS["definitions"].encoder(())


def _budget() -> int:
    """Bytes left for lines and rows in one Response after its fixed part."""
    return MAX_MESSAGE_SIZE - len(encode(Response(ErrorCode.OK, (), (), more=False)))


class ResponseWriter:
    """Lines and rows packed into encoded Responses as they come: `line` and `row`
    return the bytes of the Response that just filled up (to be sent with more=True),
    `finish` the last one.

    Each line and row is encoded once, when it is added (that is how its size is known),
    and a Response is joined from those bytes: a listing of 10,000 rows is not encoded a
    second time as Responses. A row is a TunnelRow as constructed (every field checked), a
    line is checked as the Response's lines are; the bytes are those `encode` gives for
    the same Response (tests hold them to it). Each Response holds at most MAX_ROWS lines,
    MAX_ROWS rows and MAX_MESSAGE_SIZE bytes. A Response that is handed out before the
    answer is complete carries `progress` as its status (the CLI takes the status of the
    last one)."""

    __slots__ = ("_budget", "_lines", "_progress", "_rows", "_used")

    def __init__(self, progress: ErrorCode = ErrorCode.OK) -> None:
        self._budget = _budget()
        self._progress = progress
        self._lines: list[bytes] = []
        self._rows: list[bytes] = []
        self._used = 0

    def _take(self, status: ErrorCode, more: bool) -> bytes:
        data = b"".join((
            Response._TYPE_BYTES,
            _STATUS.encoder(_STATUS.coerce(status)),
            _LINES.join_encoded(self._lines),
            _ROWS.join_encoded(self._rows),
            _MORE.encoder(more is True),
            _NO_COUNTERS,
        ))  # fmt: skip
        self._lines, self._rows, self._used = [], [], 0
        if len(data) > MAX_MESSAGE_SIZE:  # as `encode` refuses it (one item over the budget)
            raise IpcError(Reason.TOO_LARGE, f"Response encodes to {len(data)} bytes")
        return data

    def _room(self, size: int, count: int) -> bool:
        return self._used + size <= self._budget and count < MAX_ROWS

    def line(self, line: str) -> bytes | None:
        """Add a line; raises IpcError for one that is not valid text."""
        data = _LINES.inner.encoder(_LINES.inner.coerce(line))
        full = None if self._room(len(data), len(self._lines)) else self._take(self._progress, True)
        self._lines.append(data)
        self._used += len(data)
        return full

    def row(self, row: TunnelRow) -> bytes | None:
        if type(row) is not TunnelRow:  # constructed, hence checked; never a look-alike
            raise IpcError(Reason.BAD_TYPE, f"expected TunnelRow, got {type(row).__name__}")
        data = TunnelRow._WRITER(row)
        full = None if self._room(len(data), len(self._rows)) else self._take(self._progress, True)
        self._rows.append(data)
        self._used += len(data)
        return full

    def finish(self, status: ErrorCode, *, more: bool = False) -> bytes:
        """What is left (perhaps nothing), as the Response with the final status."""
        return self._take(status, more)


def split_encoded(
    status: ErrorCode, lines: Iterable[str] = (), rows: Iterable[TunnelRow] = ()
) -> list[bytes]:
    """As many encoded Responses as needed (each <= MAX_ROWS items and MAX_MESSAGE_SIZE
    bytes); all but the last have more=True. Raises IpcError for a line that is not valid
    text."""
    writer = ResponseWriter(status)
    out = [full for line in lines if (full := writer.line(line)) is not None]
    out += [full for row in rows if (full := writer.row(row)) is not None]
    return [*out, writer.finish(status)]


def split_response(
    status: ErrorCode, lines: Iterable[str] = (), rows: Iterable[TunnelRow] = ()
) -> list[Response]:
    """`split_encoded`'s Responses as messages (as the CLI reads them)."""
    return [
        cast(Response, decode(data, Direction.DAEMON_TO_CLI))
        for data in split_encoded(status, lines, rows)
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
