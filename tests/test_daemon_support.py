"""Shared pieces of the daemon and vetting tests (no tests here).

- `Topology`: network namespaces the test creates, joined by a veth pair with 192.0.2.x
  addresses, no default route; removed afterwards.
- `Daemon`: a real `ikeprivd` inside a namespace, logging to a file the test reads.
- `StandIn`: the test playing the negotiator child. The daemon is started with
  `child_cmd=` (through tests/programs/ikeprivd_standin.py, the test launcher: ikeprivd
  itself has no option to run another child), which runs a relay: the relay is the process
  the daemon supervises, and it passes every datagram between the daemon's socketpair and
  a socket the test listens on.
  So the test speaks the IPC protocol directly, as a hostile child would, and when the
  daemon kills the relay (protocol violation) the test sees its connection end and the
  restarted relay connect again.
"""

from __future__ import annotations

import copy
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ikepriv.config import load_definitions
from ikepriv.config.store import TunnelDB
from ikepriv.ipc import messages as m
from ikepriv.ipc.control import connect, control_call, merge
from ikepriv.ipc.framing import recv_message, send_message
from ikepriv.ipc.schema import Direction, Message

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "tests" / "programs" / "ikeprivd_standin.py"
PYTHON = sys.executable
WAIT = 30.0  # seconds: turns a hang into a failure; never a speed claim

GW_A, GW_B = "192.0.2.1", "192.0.2.2"

SITE = """
[[phase1]]
name = "to-siteB"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
psk = "a long random shared secret for the tests"
proposals = ["aes128-sha256-modp2048"]
lifetime = 28800
nat_traversal = true

[[phase2]]
name = "lanA-lanB"
phase1 = "to-siteB"
local_subnet = "198.51.100.0/24"
remote_subnet = "203.0.113.0/24"
proposals = ["aes128-sha256", "aes256gcm16"]
lifetime = 3600

[[phase1]]
name = "to-siteC"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.3"
psk = "another secret for the third gateway"
proposals = ["aes256-sha1-modp2048"]
lifetime = 28800

[[phase2]]
name = "lanA-lanC"
phase1 = "to-siteC"
local_subnet = "198.51.100.0/25"
remote_subnet = "203.0.113.128/25"
proposals = ["aes128-sha1"]
lifetime = 3600
"""

RELAY = """\
import select, socket, sys
parent = socket.socket(fileno=int(sys.argv[1]))
test = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
test.connect(sys.argv[2])
while True:
    for s in select.select([parent, test], [], [])[0]:
        data = s.recv(1 << 18)
        if not data:
            sys.exit(0)
        (test if s is parent else parent).send(data)
"""


def isakmp(
    icookie: bytes, rcookie: bytes = bytes(8), body: bytes = b"", exchange: int = 2
) -> bytes:
    """A datagram shaped like ISAKMP (header: cookies, version 1.0, length) with `body`."""
    length = 28 + len(body)
    return (
        icookie
        + rcookie
        + bytes([1, 0x10, exchange, 0])
        + bytes(4)
        + length.to_bytes(4, "big")
        + body
    )


def run(*cmd: str, check: bool = True) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc.stdout


def wait_for(what: str, predicate: Callable[[], object], timeout: float = WAIT) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Topology:
    """Namespaces a and b, veth 192.0.2.1 <-> 192.0.2.2; no other route anywhere."""

    a: str
    b: str

    @classmethod
    @contextmanager
    def create(cls) -> Iterator[Topology]:
        tag = secrets.token_hex(3)
        topo = cls(f"ikpA-{tag}", f"ikpB-{tag}")
        try:
            for ns in (topo.a, topo.b):
                run("ip", "netns", "add", ns)
                run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", topo.a, "link", "add", "vA", "type", "veth", "peer", "name", "vB",
                "netns", topo.b)  # fmt: skip
            for ns, dev, addr in ((topo.a, "vA", GW_A), (topo.b, "vB", GW_B)):
                run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                run("ip", "-n", ns, "link", "set", dev, "up")
            yield topo
        finally:
            for ns in (topo.a, topo.b):
                run("ip", "netns", "del", ns, check=False)


def send_udp(ns: str, dst: str, port: int, data: bytes, sport: int = 500) -> None:
    """One datagram from inside namespace `ns` (a peer talking to the daemon)."""
    code = ("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind(('', int(sys.argv[3]))); "
            "s.sendto(bytes.fromhex(sys.argv[4]), (sys.argv[1], int(sys.argv[2])))")  # fmt: skip
    run("ip", "netns", "exec", ns, PYTHON, "-c", code, dst, str(port), str(sport), data.hex())


def xfrm(ns: str, what: str) -> str:
    return run("ip", "-n", ns, "xfrm", what)


def write_db(path: Path, text: str = SITE, *, swap: bool = False) -> None:
    with TunnelDB(path) as db:
        db.put(load_definitions(text, swap=swap))


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    control_path: str
    log_path: Path
    netns: str
    stderr: object = field(repr=False, default=None)

    @classmethod
    def start(cls, netns: str, tmp: Path, *extra: str, db: Path | None = None,
              name: str = "d", env: dict[str, str] | None = None,
              child_cmd: str | None = None) -> Daemon:  # fmt: skip
        """`child_cmd`: a stand-in negotiator ("{fd}": the IPC descriptor), started by the
        test launcher; without it, the real `ikeprivd` and its sandboxed child."""
        db = db or tmp / f"{name}.db"
        if not db.exists():
            write_db(db)
        empty = tmp / "empty"
        empty.mkdir(exist_ok=True)
        control = str(tmp / f"{name}.ctl")
        log_path = tmp / f"{name}.log"
        stderr = open(log_path, "wb")
        program = ["-m", "ikepriv.cli.ikeprivd"]
        if child_cmd is not None:
            program = [str(LAUNCHER), "--child-cmd", child_cmd]
        cmd = ["ip", "netns", "exec", netns, PYTHON, *program,
               "--db", str(db), "--control", control, "--chroot", str(empty),
               "--log-stderr", *extra]  # fmt: skip
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # noqa: S603
                                stderr=stderr, cwd=ROOT,
                                env={**os.environ, **(env or {})})  # fmt: skip
        daemon = cls(proc, control, log_path, netns, stderr)
        try:
            wait_for("the control socket", daemon._control_up)
        except AssertionError:
            daemon.stop()
            raise AssertionError(f"daemon did not come up:\n{daemon.log()}") from None
        return daemon

    def _control_up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
        try:
            connect(self.control_path, timeout=1).close()
        except OSError:
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, count: int = 1) -> str:
        wait_for(f"log {pattern!r} x{count}",
                 lambda: len(re.findall(pattern, self.log())) >= count)  # fmt: skip
        return self.log()

    def call(self, request: Message) -> tuple[m.ErrorCode, list[str], list[m.TunnelRow]]:
        with connect(self.control_path, timeout=WAIT) as sock:
            return merge(control_call(sock, request))

    def children(self) -> list[int]:
        """PIDs of the daemon's child processes (the `ip netns exec` process execs it)."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                continue
        return pids

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        if self.stderr is not None:
            self.stderr.close()  # type: ignore[attr-defined]
            self.stderr = None
        return self.proc.returncode


class StandIn:
    """The test's end of the relay: accepts the relay's connection, speaks IPC."""

    def __init__(self, tmp: Path) -> None:
        self.path = str(tmp / "standin.sock")
        self.relay = tmp / "relay.py"
        self.relay.write_text(RELAY)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.listener.settimeout(WAIT)
        self.conn: socket.socket | None = None
        self.hello = m.Hello(m.PROTOCOL_VERSION)
        self.config: list[Message] = []
        self.other: list[Message] = []

    @property
    def child_cmd(self) -> str:
        return f"{PYTHON} {self.relay} {{fd}} {self.path}"

    def accept(self) -> StandIn:
        """Take the (next) relay connection and complete Hello/Ready and the config."""
        if self.conn is not None:
            self.conn.close()
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(WAIT)
        hello = self.recv()
        assert isinstance(hello, m.Hello), hello
        self.hello = hello
        self.send(m.Ready(m.PROTOCOL_VERSION))
        self.config = []
        while True:
            msg = self.recv()
            assert msg is not None
            self.config.append(msg)
            if isinstance(msg, m.ConfigEnd):
                return self

    def accept_shards(self, count: int) -> dict[int, StandIn]:
        """With `--children count`: each child's connection (sharing this listener), by
        the shard its Hello names."""
        out: dict[int, StandIn] = {}
        for _ in range(count):
            one = copy.copy(self)
            one.conn, one.other = None, []
            one.accept()
            out[one.hello.shard] = one
        assert sorted(out) == list(range(count)), sorted(out)
        return out

    def send(self, msg: Message) -> None:
        assert self.conn is not None
        send_message(self.conn, msg)

    def send_raw(self, data: bytes) -> None:
        assert self.conn is not None
        self.conn.send(data)

    def recv(self) -> Message | None:
        assert self.conn is not None
        return recv_message(self.conn, Direction.PARENT_TO_CHILD)

    def ask(self, msg: Message) -> Message:
        """Send a request and return its reply (other messages are kept in `other`)."""
        self.send(msg)
        while True:
            reply = self.recv()
            assert reply is not None, "the daemon closed the channel"
            if getattr(reply, "request_id", None) == getattr(msg, "request_id", object()):
                return reply
            self.other.append(reply)

    def closed(self) -> bool:
        """True once the daemon killed the relay (end of stream)."""
        assert self.conn is not None
        try:
            return self.conn.recv(1 << 18) == b""
        except ConnectionResetError:
            return True

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


def kill_process(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
