"""`ike` as an operator runs it: the installed script and main(), against a real AF_UNIX
SEQPACKET control socket.

The server here stands in for ikeprivd only to check what the CLI sends and prints; it
speaks the real ikepriv.ipc control protocol (framing, codec, split_response). The
daemon's own end-to-end test lives with the daemon.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from ikepriv.cli import ike
from ikepriv.ipc.control import (
    CONTROL_PATH_ENV,
    DEFAULT_CONTROL_PATH,
    control_path,
    split_response,
)
from ikepriv.ipc.framing import recv_message, send_message
from ikepriv.ipc.messages import (
    PROTOCOL_VERSION,
    ActivateRequest,
    ControlHello,
    CounterValue,
    DefinitionCounts,
    ErrorCode,
    Identity,
    ListRequest,
    NumRange,
    Phase,
    RemoveRequest,
    Response,
    Role,
    StatsRequest,
    TunnelRow,
    TunnelState,
)
from ikepriv.ipc.schema import Direction, Message
from ikepriv.isakmp.constants import IdType

IKE = str(Path(sys.executable).parent / "ike")
A = ipaddress.ip_address


def run_ike(
    *words: str | bytes, control: Path | str | None, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != CONTROL_PATH_ENV}
    if control is not None:
        env[CONTROL_PATH_ENV] = str(control)
    return subprocess.run(  # noqa: S603  # our own installed script
        [*prefix, IKE, *words],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        env=env,
        check=False,
        timeout=60,
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ike: "), result.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------
# A stand-in daemon on a real control socket
# ---------------------------------------------------------------------------------------


class FakeDaemon:
    """Serves one session per entry of `answers`: records ControlHello and the request,
    sends the Responses of that entry (None: close without answering the request)."""

    def __init__(self, path: Path, answers: Sequence[Sequence[Response] | None]) -> None:
        self.path = path
        self.answers = list(answers)
        self.hellos: list[Message | None] = []
        self.requests: list[Message | None] = []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(str(path))
        self.listener.listen(len(self.answers))
        self.listener.settimeout(60)
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        for answer in self.answers:
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(60)
                self.hellos.append(recv_message(conn, Direction.CLI_TO_DAEMON))
                send_message(conn, Response(ErrorCode.OK, (), ()))
                self.requests.append(recv_message(conn, Direction.CLI_TO_DAEMON))
                for part in answer or ():
                    send_message(conn, part)

    @contextmanager
    def running(self) -> Iterator[FakeDaemon]:
        self.thread.start()
        try:
            yield self
        finally:
            self.thread.join(60)
            self.listener.close()
        assert not self.thread.is_alive()
        assert self.hellos == [ControlHello(PROTOCOL_VERSION)] * len(self.answers)


def ok(lines: Sequence[str] = (), rows: Sequence[TunnelRow] = ()) -> list[Response]:
    return split_response(ErrorCode.OK, lines, rows)


def tunnel_row(number: int, tunnel_id: int, phase: Phase, phase1: int | None = None) -> TunnelRow:
    return TunnelRow(
        number=number,
        tunnel_id=tunnel_id,
        phase=phase,
        name=f"t{number}-p{phase.value}",
        role=Role.INITIATOR,
        state=TunnelState.ESTABLISHED,
        local_addr=A("192.0.2.1"),
        remote_addr=A("192.0.2.2"),
        local_id=Identity(IdType.IPV4_ADDR, bytes([192, 0, 2, 1])),
        remote_id=Identity(IdType.FQDN, b"gw-b.example.org"),
        algorithms="aes128-sha256-modp2048",
        remaining_seconds=3600,
        spi_in=0x1000 if phase is Phase.PHASE2 else 0,
        spi_out=0x2000 if phase is Phase.PHASE2 else 0,
        bytes=0,
        packets=0,
        phase1_number=phase1,
    )


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "control.sock"


# ---------------------------------------------------------------------------------------
# Usage errors through the installed script (no daemon, no root needed)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "line"),
    [
        (["cmd=bogus"], "ike: unknown subcommand cmd=bogus (expected activate, list or remove)"),
        (["cmd=list", "numlist=3-1"], "ike: numlist=3-1: range 3-1 is backwards (write 1-3)"),
        (["cmd=list", "numlist=1,,2"],
         "ike: numlist=1,,2: empty item (two commas, or one at an end)"),
        (["cmd=list", "ipaddr=192.0.2.1,192.0.2.2"], "ike: ipaddr is not valid with cmd=list "
         "(valid: phase, numlist, db, role, verbose, json, stats, prom)"),
        (["cmd=list", "stats", "phase=1"], "ike: stats shows the daemon's counters; it does "
         "not combine with phase="),
        (["cmd=list", "verbose", "stats"], "ike: stats shows the daemon's counters; it does "
         "not combine with verbose"),
        (["cmd=list", "db", "role=r"], "ike: db and role= exclude each other (db lists "
         "definitions, role= filters active tunnels)"),
        (["cmd=list", "phase=1", "phase=1"], "ike: phase is given twice"),
        (["cmd=activate", "ipaddr=192.0.2.1,2001:db8::1"],
         "ike: ipaddr=192.0.2.1,2001:db8::1: mixes IPv4 and IPv6"),
        (["cmd=list", b"numlist=\xff"], "ike: numlist='\\udcff': '\\udcff' is not a number or a "
         "range N-M"),  # undecodable byte from the command line
    ],
)  # fmt: skip
def test_usage_error_from_the_script(words: list[str | bytes], line: str, sock_path: Path) -> None:
    result = run_ike(*words, control=sock_path)
    assert one_error_line(result, ike.EXIT_USAGE) == line
    assert result.stdout == ""


def test_script_without_arguments_and_with_help(sock_path: Path) -> None:
    bare = run_ike(control=sock_path)
    assert (
        bare.returncode == ike.EXIT_USAGE and bare.stdout == "" and "Traceback" not in bare.stderr
    )
    assert bare.stderr.startswith("usage: ike cmd=activate")
    helped = run_ike("help", control=sock_path)
    assert helped.returncode == 0 and helped.stderr == ""
    assert helped.stdout == bare.stderr


# ---------------------------------------------------------------------------------------
# Root and reachability
# ---------------------------------------------------------------------------------------

NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")


@pytest.mark.root
def test_not_root_is_refused(sock_path: Path) -> None:
    with FakeDaemon(sock_path, []).running():  # nothing may connect
        result = run_ike("cmd=list", control=sock_path, prefix=NOBODY)
    assert one_error_line(result, ike.EXIT_REFUSED) == "ike: must be run as root"
    assert result.stdout == ""


@pytest.mark.root
def test_not_root_still_gets_usage_errors_and_help(sock_path: Path) -> None:
    result = run_ike("cmd=lst", control=sock_path, prefix=NOBODY)
    assert one_error_line(result, ike.EXIT_USAGE).startswith("ike: unknown subcommand cmd=lst")
    assert run_ike("help", control=sock_path, prefix=NOBODY).returncode == 0


@pytest.mark.root
def test_daemon_not_running_no_socket(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "control.sock"
    result = run_ike("cmd=list", control=path)
    assert one_error_line(result, ike.EXIT_UNREACHABLE) == (
        f"ike: the daemon is not running (no control socket at {path})"
    )


@pytest.mark.root
def test_daemon_not_running_stale_socket(sock_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as stale:
        stale.bind(str(sock_path))  # bound, never listening: what a dead daemon leaves
        result = run_ike("cmd=activate", "phase=1", control=sock_path)
    assert one_error_line(result, ike.EXIT_UNREACHABLE) == (
        f"ike: the daemon is not running (no control socket at {sock_path})"
    )


@pytest.mark.root
def test_daemon_not_running_in_process(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    assert ike.main(["cmd=remove", "phase=2", "numlist=1"]) == ike.EXIT_UNREACHABLE
    assert capsys.readouterr() == (
        "",
        f"ike: the daemon is not running (no control socket at {sock_path})\n",
    )


@pytest.mark.root
def test_control_path_not_a_seqpacket_socket(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stream:
        stream.bind(str(sock_path))
        stream.listen(1)
        monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
        assert ike.main(["cmd=list"]) == ike.EXIT_UNREACHABLE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"ike: cannot reach the daemon at {str(sock_path)!r}: ")
    assert err.count("\n") == 1


def test_control_path_default_and_environment() -> None:
    assert DEFAULT_CONTROL_PATH == "/run/ikepriv/control.sock"
    assert control_path({}) == DEFAULT_CONTROL_PATH
    assert control_path({CONTROL_PATH_ENV: ""}) == DEFAULT_CONTROL_PATH
    assert control_path({CONTROL_PATH_ENV: "/tmp/x.sock"}) == "/tmp/x.sock"  # noqa: S108


# ---------------------------------------------------------------------------------------
# Round trips: exactly this request, and this answer printed
# ---------------------------------------------------------------------------------------


@pytest.mark.root
def test_list_json_round_trip_through_the_script(sock_path: Path) -> None:
    rows = [
        tunnel_row(1, 5, Phase.PHASE1),
        tunnel_row(2, 6, Phase.PHASE2, phase1=5),
    ]
    daemon = FakeDaemon(sock_path, [ok(["2 tunnels"], rows)])
    with daemon.running():
        result = run_ike("cmd=list", "phase=1+", "numlist=5-6", "json", control=sock_path)
    assert daemon.requests == [
        ListRequest(Phase.PHASE1_PLUS, (NumRange(5, 6),), False, None, False, True)
    ]
    assert result.returncode == 0, result
    data = json.loads(result.stdout)  # stdout is exactly one JSON document
    assert [(d["number"], d["tunnel_id"], d["phase"], d["state"]) for d in data] == [
        (1, 5, 1, "established"),
        (2, 6, 2, "established"),
    ]
    for entry in data:
        assert entry["role"] == "i"
        assert (entry["local_addr"], entry["remote_addr"]) == ("192.0.2.1", "192.0.2.2")
        assert {"name", "algorithms", "remaining_seconds", "spi_in", "bytes"} <= entry.keys()
    assert result.stderr == "ike: 2 tunnels\n"  # the daemon's text goes beside the JSON


@pytest.mark.root
def test_list_table_round_trip_in_process(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [tunnel_row(1, 5, Phase.PHASE1), tunnel_row(2, 6, Phase.PHASE2, phase1=5)]
    daemon = FakeDaemon(sock_path, [ok((), rows)])
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    with daemon.running():
        assert ike.main(["cmd=list", "role=i", "verbose"]) == 0
    assert daemon.requests == [ListRequest(Phase.ALL, (), False, Role.INITIATOR, True, False)]
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "Phase 1 tunnels (1):"
    assert lines[1].split()[:3] == ["Phase", "Tun", "Id"]
    assert lines[2].split()[:6] == ["1", "5", "1", "t1-p1", "i", "established"]
    assert "Phase 2 tunnels (1):" in lines
    assert "0x00001000" in out and "0x00002000" in out  # verbose: SPIs


@pytest.mark.root
def test_long_answer_in_many_responses(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [tunnel_row(n, n, Phase.PHASE1) for n in range(1, 3001)]
    answer = ok((), rows)
    assert len(answer) > 1
    daemon = FakeDaemon(sock_path, [answer])
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    with daemon.running():
        assert ike.main(["cmd=list", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["tunnel_id"] for d in data] == list(range(1, 3001))


@pytest.mark.root
def test_activate_round_trip(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = FakeDaemon(sock_path, [ok(["phase 1 tunnel 3 (to-siteB): negotiation started"])])
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    with daemon.running():
        code = ike.main(
            ["cmd=activate", "phase=1", "namelist=to-siteB", "ipaddr=192.0.2.1,192.0.2.2"]
        )
    assert daemon.requests == [
        ActivateRequest(
            Phase.PHASE1, (), ("to-siteB",), None, A("192.0.2.1"), A("192.0.2.2"), False
        )
    ]
    assert code == 0
    assert capsys.readouterr() == ("phase 1 tunnel 3 (to-siteB): negotiation started\n", "")


@pytest.mark.root
def test_unknown_tunnel_from_the_daemon(sock_path: Path) -> None:
    refusal = [Response(ErrorCode.NO_SUCH_TUNNEL, ("no phase 2 tunnel 9",), ())]
    daemon = FakeDaemon(sock_path, [refusal])
    with daemon.running():
        result = run_ike("cmd=remove", "phase=2", "numlist=9", control=sock_path)
    assert daemon.requests == [RemoveRequest(Phase.PHASE2, (NumRange(9, 9),), False)]
    assert one_error_line(result, ike.EXIT_REFUSED) == "ike: no phase 2 tunnel 9"
    assert result.stdout == ""


@pytest.mark.root
@pytest.mark.parametrize(
    ("status", "line"),
    [
        (ErrorCode.NO_SUCH_TUNNEL, "ike: no such tunnel"),
        (ErrorCode.BUSY, "ike: the daemon is busy, try again"),
        (ErrorCode.DB_ERROR, "ike: tunnel database error"),
    ],
)
def test_refusal_without_text_is_named(
    status: ErrorCode,
    line: str,
    sock_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    daemon = FakeDaemon(sock_path, [[Response(status, (), ())]])
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    with daemon.running():
        assert ike.main(["cmd=remove", "db", "phase=1", "numlist=2"]) == ike.EXIT_REFUSED
    assert daemon.requests == [RemoveRequest(Phase.PHASE1, (NumRange(2, 2),), True)]
    assert capsys.readouterr() == ("", line + "\n")


@pytest.mark.root
def test_daemon_hangs_up_mid_session(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = FakeDaemon(sock_path, [None])
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    with daemon.running():
        assert ike.main(["cmd=list"]) == ike.EXIT_UNREACHABLE
    assert capsys.readouterr() == (
        "",
        f"ike: the daemon closed the control connection ({sock_path})\n",
    )


@pytest.mark.root
def test_version_mismatch_at_hello(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(sock_path))
    listener.listen(1)
    listener.settimeout(60)
    seen: list[Message | None] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            seen.append(recv_message(conn, Direction.CLI_TO_DAEMON))
            send_message(conn, Response(ErrorCode.VERSION_MISMATCH, (), ()))
            conn.settimeout(60)
            seen.append(recv_message(conn, Direction.CLI_TO_DAEMON))  # None: CLI hung up

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    try:
        assert ike.main(["cmd=list"]) == ike.EXIT_REFUSED
    finally:
        server.join(60)
        listener.close()
    assert seen == [ControlHello(PROTOCOL_VERSION), None]  # the request was never sent
    assert capsys.readouterr() == (
        "",
        f"ike: the daemon speaks another control protocol version (ike speaks "
        f"{PROTOCOL_VERSION})\n",
    )


@pytest.mark.root
def test_garbage_answer_is_one_line(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(sock_path))
    listener.listen(1)
    listener.settimeout(60)

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            recv_message(conn, Direction.CLI_TO_DAEMON)
            conn.send(b"\x04\x01\xff\xff")  # a Response type with an impossible status

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    try:
        assert ike.main(["cmd=list"]) == ike.EXIT_REFUSED
    finally:
        server.join(60)
        listener.close()
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("ike: unreadable answer from the daemon: ") and err.count("\n") == 1


# ---------------------------------------------------------------------------------------
# Event counters: `list verbose` (the ones not zero) and `list stats` (all, or json)
# ---------------------------------------------------------------------------------------

COUNTERS = (
    CounterValue("datagrams_in", 7),
    CounterValue("dropped_malformed", 2),
    CounterValue("retransmits", 0),
    CounterValue("udp_dropped_truncated", 1),
    CounterValue("child_restarts", 0),
)


def with_counters(responses: list[Response]) -> list[Response]:
    """As the daemon answers: the rows and lines, then a last Response with the counters."""
    *head, last = responses
    return [*head, Response(last.status, last.lines, last.rows, more=True),
            Response(last.status, (), (), counters=COUNTERS)]  # fmt: skip


@pytest.mark.root
def test_stats_prints_every_counter(sock_path: Path) -> None:
    daemon = FakeDaemon(sock_path, [with_counters(ok())])
    with daemon.running():
        result = run_ike("cmd=list", "stats", control=sock_path)
    assert daemon.requests == [StatsRequest(json=False)]
    assert result.returncode == 0 and result.stderr == "", result
    assert result.stdout.splitlines() == [
        "Counters:",
        "  datagrams_in           7",
        "  dropped_malformed      2",
        "  retransmits            0",
        "  udp_dropped_truncated  1",
        "  child_restarts         0",
    ]


@pytest.mark.root
def test_stats_json_is_one_object(sock_path: Path) -> None:
    answer = with_counters(ok(["negotiator not answering: the parent's counters only"]))
    daemon = FakeDaemon(sock_path, [answer])
    with daemon.running():
        result = run_ike("cmd=list", "json", "stats", control=sock_path)
    assert daemon.requests == [StatsRequest(json=True)]
    assert result.returncode == 0, result
    assert json.loads(result.stdout) == {c.name: c.value for c in COUNTERS} | {"definitions": []}
    assert result.stderr == "ike: negotiator not answering: the parent's counters only\n"


@pytest.mark.root
def test_stats_json_carries_the_per_definition_tally(sock_path: Path) -> None:
    tally = (DefinitionCounts(Phase.PHASE1, 1, 2, 3), DefinitionCounts(Phase.PHASE2, 4, 5, 0))
    *head, last = with_counters(ok())
    answer = [*head, Response(last.status, (), (), counters=COUNTERS, definitions=tally)]
    daemon = FakeDaemon(sock_path, [answer])
    with daemon.running():
        result = run_ike("cmd=list", "stats", "json", control=sock_path)
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["definitions"] == [
        {"phase": 1, "number": 1, "rekeys": 2, "dpd_failures": 3},
        {"phase": 2, "number": 4, "rekeys": 5, "dpd_failures": 0},
    ]


@pytest.mark.root
def test_verbose_list_ends_with_the_counters_that_are_not_zero(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [tunnel_row(1, 5, Phase.PHASE1)]
    daemon = FakeDaemon(sock_path, [with_counters(ok((), rows))] * 2)
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    with daemon.running():
        assert ike.main(["cmd=list", "verbose"]) == 0
        table = capsys.readouterr().out
        assert ike.main(["cmd=list", "verbose", "json"]) == 0
        as_json = capsys.readouterr().out
    tunnels, counters = table.split("\n\n")
    assert tunnels.splitlines()[0] == "Phase 1 tunnels (1):"
    assert counters.splitlines() == [
        "Counters (not zero):",
        "  datagrams_in           7",
        "  dropped_malformed      2",
        "  udp_dropped_truncated  1",
    ]
    # json stays the list of rows scripts already read; counters are `stats json`
    assert [d["tunnel_id"] for d in json.loads(as_json)] == [5]


@pytest.mark.root
def test_plain_list_prints_no_counters(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    daemon = FakeDaemon(sock_path, [ok((), [tunnel_row(1, 5, Phase.PHASE1)])])
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    with daemon.running():
        assert ike.main(["cmd=list"]) == 0
    assert "Counters" not in capsys.readouterr().out


# ---------------------------------------------------------------------------------------
# A full listen backlog (EAGAIN) is asked again, briefly
# ---------------------------------------------------------------------------------------


def fill_backlog(path: Path) -> list[socket.socket]:
    """Connections nobody accepts, until the listener's backlog refuses more (EAGAIN)."""
    waiting: list[socket.socket] = []
    for _ in range(64):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError:
            sock.close()
            return waiting
        waiting.append(sock)
    raise AssertionError("the backlog never filled")


@pytest.mark.root
def test_full_backlog_is_retried_until_the_daemon_accepts(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(sock_path))
    listener.listen(0)
    listener.settimeout(60)
    waiting = fill_backlog(sock_path)
    retried = threading.Event()
    real_sleep = ike.time.sleep

    def sleep(seconds: float) -> None:  # ike waits between tries: the daemon catches up
        retried.set()
        real_sleep(seconds)

    monkeypatch.setattr(ike.time, "sleep", sleep)
    seen: list[Message | None] = []

    def serve() -> None:
        assert retried.wait(60)  # ike met the full backlog and is trying again
        for _ in waiting:  # the daemon takes the sessions in its backlog
            listener.accept()[0].close()
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(60)
            recv_message(conn, Direction.CLI_TO_DAEMON)
            send_message(conn, Response(ErrorCode.OK, (), ()))
            seen.append(recv_message(conn, Direction.CLI_TO_DAEMON))
            send_message(conn, Response(ErrorCode.OK, ("phase 1 tunnel 1 removed",), ()))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    try:
        code = ike.main(["cmd=remove", "phase=1", "numlist=1"])
    finally:
        server.join(60)
        listener.close()
        for sock in waiting:
            sock.close()
    assert retried.is_set()
    assert code == 0
    assert seen == [RemoveRequest(Phase.PHASE1, (NumRange(1, 1),), False)]
    assert capsys.readouterr() == ("phase 1 tunnel 1 removed\n", "")


@pytest.mark.root
def test_backlog_that_stays_full_is_one_line(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(sock_path))
    listener.listen(0)
    waiting = fill_backlog(sock_path)
    monkeypatch.setattr(ike, "BUSY_RETRY_SECONDS", 0.2)
    monkeypatch.setenv(CONTROL_PATH_ENV, str(sock_path))
    try:
        assert ike.main(["cmd=list"]) == ike.EXIT_UNREACHABLE
    finally:
        listener.close()
        for sock in waiting:
            sock.close()
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("ike: the daemon is too busy to take the connection")
    assert err.count("\n") == 1
