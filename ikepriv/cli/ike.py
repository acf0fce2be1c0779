"""`ike`: the operator's client for ikeprivd's control socket, in IBM AIX syntax.

    ike cmd=activate [phase=1|2] [numlist=LIST] [namelist=NAMES] [remid=ID]
                     [ipaddr=SRC,DST] [autostart]
    ike cmd=list [phase=1|1+|2] [numlist=LIST] [db | role=i|r] [verbose] [json]
    ike cmd=list stats [json | prom]
    ike cmd=remove [phase=1|2] [numlist=LIST] [db]
    ike help

The command line becomes one typed control message (ikepriv.cli.ike_args), goes to the
daemon over the control socket ($IKEPRIV_CONTROL, else /run/ikepriv/control.sock; root
only), and the daemon's Response is printed: its text lines on stdout, its rows through
ikepriv.cli.listing, its event counters after them (verbose: those not zero; stats: all).
A daemon whose control socket has a full backlog (EAGAIN) is asked again for a few
seconds before `ike` gives up. Nothing is decided here that the daemon decides (which tunnels exist,
whether a negotiation may start); everything that can be judged from the words alone is.

Exit status:
    0  done
    1  refused or failed: by the daemon (unknown tunnel, tunnel already exists, ...), an
       unreadable answer from it, or not run as root
    2  the command line does not parse (also `ike` without arguments)
    3  the daemon is not reachable (no control socket, connection refused, no answer)

Every failure is one line on stderr, starting "ike: "; never a traceback.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ikepriv.cli import metrics
from ikepriv.cli.ike_args import Request, UsageError, parse_args
from ikepriv.cli.listing import format_counters, render, render_counters_json, render_table
from ikepriv.ipc.control import connect, control_call, control_path, merge
from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.messages import (
    PROTOCOL_VERSION,
    CounterValue,
    DefinitionCounts,
    ErrorCode,
    ListRequest,
    Phase,
    StatsRequest,
    TunnelRow,
)

PROG = "ike"
EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

TIMEOUT_SECONDS = 30.0
"""How long to wait for each answer; activate returns once a negotiation has started."""

BUSY_RETRY_FIRST = 0.02
BUSY_RETRY_MAX = 0.5
BUSY_RETRY_SECONDS = 5.0
"""A full listen backlog (EAGAIN on connect: many `ike` at once) is retried with back-off
from BUSY_RETRY_FIRST to BUSY_RETRY_MAX seconds, for BUSY_RETRY_SECONDS in all."""

USAGE = f"""\
usage: ike cmd=activate [phase=1|2] [numlist=LIST] [namelist=NAMES] [remid=ID]
                        [ipaddr=SRC,DST] [autostart]
       ike cmd=list [phase=1|1+|2] [numlist=LIST] [db | role=i|r] [verbose] [json]
       ike cmd=list stats [json | prom]
       ike cmd=remove [phase=1|2] [numlist=LIST] [db]
       ike help

  activate   start negotiations; no phase: phase 1, then phase 2 (phase=2 starts its
             phase 1 first when that is not up); returns once started
  list       active tunnels (tunnel-manager number, role, state, endpoints, IDs,
             algorithms, remaining lifetime); phase=1+ shows each phase 1 with its phase 2
  remove     deactivate tunnels; with db, delete definitions (a phase 1 definition takes
             its phase 2 definitions along; needs phase= and numlist=)

  phase=1|2|1+   which phase (1+ only with list); default: both
  numlist=LIST   numbers and ranges, e.g. 1,3-5 (tunnel-manager numbers of active
                 tunnels; definition numbers with db and with activate)
  namelist=NAMES definition names, e.g. to-siteB,lanA-lanB
  remid=ID       the remote identity of the definitions to activate
  ipaddr=SRC,DST use these endpoint addresses instead of the definition's
  autostart      activate every definition marked autostart
  db             list or remove definitions instead of active tunnels
  role=i|r       list only tunnels this host initiated (i) or answered (r)
  verbose        add SPIs, bytes and packets from the kernel, and after the tables the
                 daemon's event counters that are not zero
  stats          only the daemon's event counters, all of them: what the negotiator
                 dropped (malformed, replayed, unknown SA, failed authentication, ...),
                 retransmitted, rekeyed, DPD, and the parent's own (udp_*: datagrams
                 dropped before the negotiator, refused_requests, child_restarts)
  json           print a JSON list of objects (number, phase, name, role, state, ...);
                 with stats, one JSON object {{counter name: value}} with the key
                 "definitions": rekeys and DPD failures per definition
  prom           with stats: the counters and per-definition tunnel gauges in the
                 Prometheus text format (node_exporter textfile collector)

Root only. Control socket: $IKEPRIV_CONTROL, else /run/ikepriv/control.sock.
Exit status: {EXIT_OK} done, {EXIT_REFUSED} refused or failed (daemon, or not root), \
{EXIT_USAGE} command line error,
             {EXIT_UNREACHABLE} daemon not reachable.
"""

_HELP_WORDS = frozenset({"help", "-h", "--help", "cmd=help", "-?"})

_STATUS_TEXT: dict[ErrorCode, str] = {
    ErrorCode.NO_SUCH_TUNNEL: "no such tunnel",
    ErrorCode.TUNNEL_INACTIVE: "the tunnel is not active",
    ErrorCode.NOT_PERMITTED: "refused by the daemon",
    ErrorCode.BAD_ALGORITHM: "algorithm not supported",
    ErrorCode.BAD_LENGTH: "bad length",
    ErrorCode.NO_SECRET: "no secret for this tunnel",
    ErrorCode.LIMIT_REACHED: "limit reached",
    ErrorCode.KERNEL_ERROR: "the kernel refused the request",
    ErrorCode.UNSUPPORTED: "not supported by this daemon",
    ErrorCode.VERSION_MISMATCH: (
        f"the daemon speaks another control protocol version (ike speaks {PROTOCOL_VERSION})"
    ),
    ErrorCode.INVALID_REQUEST: "the daemon refused the request as invalid",
    ErrorCode.DB_ERROR: "tunnel database error",
    ErrorCode.BUSY: "the daemon is busy, try again",
    ErrorCode.INTERNAL: "internal error in the daemon",
    ErrorCode.PARTIAL: "some of the tunnels failed",
}


def _error(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _write(text: str) -> None:
    """Print to stdout; a reader that went away (ike ... | head) is not an error."""
    if not text:
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@dataclass(frozen=True)
class _Answer:
    status: ErrorCode
    lines: list[str]
    rows: list[TunnelRow]
    counters: list[CounterValue]
    definitions: list[DefinitionCounts]


def _connect(path: str) -> socket.socket:
    """connect(), asking again while the daemon's listen backlog is full (EAGAIN)."""
    delay, deadline = BUSY_RETRY_FIRST, time.monotonic() + BUSY_RETRY_SECONDS
    while True:
        try:
            return connect(path, timeout=TIMEOUT_SECONDS)
        except BlockingIOError as exc:
            if exc.errno != errno.EAGAIN or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(2 * delay, BUSY_RETRY_MAX)


def _ask(path: str, request: Request) -> _Answer | int:
    """The daemon's merged answer, or the exit status after printing why there is none."""
    unreachable = f"the daemon is not running (no control socket at {path})"
    try:
        with _connect(path) as sock:
            responses = control_call(sock, request)
    except (FileNotFoundError, ConnectionRefusedError):
        return _error(unreachable, EXIT_UNREACHABLE)
    except BlockingIOError:
        return _error(
            f"the daemon is too busy to take the connection (tried for "
            f"{BUSY_RETRY_SECONDS:.0f} s; {path})",
            EXIT_UNREACHABLE,
        )
    except TimeoutError:
        return _error(
            f"the daemon did not answer within {TIMEOUT_SECONDS:.0f} s ({path})", EXIT_UNREACHABLE
        )
    except (ConnectionResetError, BrokenPipeError):
        return _error(f"the daemon closed the control connection ({path})", EXIT_UNREACHABLE)
    except IpcError as exc:
        return _error(f"unreadable answer from the daemon: {exc}", EXIT_REFUSED)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in $IKEPRIV_CONTROL
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return _error(f"cannot reach the daemon at {path!r}: {reason}", EXIT_UNREACHABLE)
    status, lines, rows = merge(responses)
    counters = [counter for response in responses for counter in response.counters]
    definitions = [entry for response in responses for entry in response.definitions]
    return _Answer(status, lines, rows, counters, definitions)


def _show_data(request: Request, answer: _Answer) -> None:
    """The rows and counters of a successful answer (or rows that came with a refusal)."""
    if isinstance(request, StatsRequest):
        if answer.status is ErrorCode.OK:
            if request.json:
                _write(render_counters_json(answer.counters, answer.definitions))
            else:
                _write(format_counters(answer.counters))
        return
    if answer.rows or (isinstance(request, ListRequest) and answer.status is ErrorCode.OK):
        if isinstance(request, ListRequest):
            _write(render(answer.rows, request))
        else:
            _write(render_table(answer.rows))
    listed = isinstance(request, ListRequest) and not request.json
    if listed and answer.counters and answer.status is ErrorCode.OK:
        _write("\n" + format_counters(answer.counters, nonzero_only=True))


def _show_answer(request: Request, answer: _Answer) -> int:
    _show_data(request, answer)
    status, lines = answer.status, answer.lines
    as_json = isinstance(request, ListRequest | StatsRequest) and request.json
    if status is ErrorCode.OK:
        if as_json:  # stdout holds exactly one JSON document
            for line in lines:
                print(f"{PROG}: {line}", file=sys.stderr)
        else:
            _write("".join(f"{line}\n" for line in lines))
        return EXIT_OK
    if not lines:
        lines = [_STATUS_TEXT.get(status, f"refused ({status.name})")]
    for line in lines:
        print(f"{PROG}: {line}", file=sys.stderr)
    return EXIT_REFUSED


def _prometheus(path: str, request: StatsRequest) -> int:
    """`ike cmd=list stats prom`: counters, definitions and active tunnels, one text."""
    answers = []
    for asked in (request, ListRequest(Phase.ALL, (), True, None, False, False),
                  ListRequest(Phase.ALL, (), False, None, True, False)):  # fmt: skip
        answer = _ask(path, asked)
        if isinstance(answer, int):
            return answer
        if answer.status is not ErrorCode.OK:
            return _show_answer(asked, answer)
        answers.append(answer)
    _write(metrics.render(answers[0].counters, answers[1].rows, answers[2].rows,
                          answers[0].definitions))  # fmt: skip
    return EXIT_OK


def _run(argv: Sequence[str]) -> int:
    if not argv:
        sys.stderr.write(USAGE)
        return EXIT_USAGE
    if len(argv) == 1 and argv[0] in _HELP_WORDS:
        _write(USAGE)
        return EXIT_OK
    try:
        request = parse_args(argv)
    except UsageError as exc:
        return _error(str(exc), EXIT_USAGE)
    if os.geteuid() != 0:
        return _error("must be run as root", EXIT_REFUSED)
    path = control_path()
    if isinstance(request, StatsRequest) and "prom" in argv:
        return _prometheus(path, request)
    answer = _ask(path, request)
    if isinstance(answer, int):
        return answer
    return _show_answer(request, answer)


def main(argv: list[str] | None = None) -> int:
    """Run `ike` with these words (default: the command line); returns the exit status."""
    try:
        return _run(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # the promise is one line, never a traceback
        return _error(f"internal error: {type(exc).__name__}: {exc}", EXIT_REFUSED)


if __name__ == "__main__":
    sys.exit(main())
