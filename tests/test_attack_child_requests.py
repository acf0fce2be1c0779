"""Attack: a hostile child floods the parent with valid requests (issue 8, point 6).

A real ikeprivd in a namespace the test creates, with the test as its (compromised) child.
One thread cycles the requests that write the kernel as fast as the parent answers them
(SpiRequest; a Phase2Install that the kernel, without ESP, refuses half way, so its
policies are written and undone; a Phase2Remove of the SPI), another blasts cheap requests
without waiting (NonceRequest, SkeyidRequest, Log, DatagramOut). Measured, after the
budgets' bursts are spent: the kernel writes per second (counted independently with
`ip xfrm monitor`), the parent's CPU time, and that every request still gets its one
answer, so a request in the middle of the flood is answered, only later. The parent must
pause reading the child (back-pressure), not drop what it sent.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import GW_A, GW_B, Daemon, StandIn, Topology, send_udp
from test_stats_daemon import stats

from ikepriv.ipc import messages as m
from ikepriv.ipc.framing import recv_message, send_message
from ikepriv.ipc.schema import Direction, Message
from ikepriv.isakmp.constants import (
    AuthAlgorithm,
    EncapsulationMode,
    EspTransformId,
    IkeHash,
    ProtocolId,
)

pytestmark = [pytest.mark.attacks, pytest.mark.root]

A, B = ipaddress.ip_address(GW_A), ipaddress.ip_address(GW_B)
ESP = ProtocolId.IPSEC_ESP
WARM = 4.0  # seconds of flood before measuring: the bursts are spent by then
MEASURE = 5.0
# What the parent's budgets allow (child_budget.py: 128 kernel objects a second), with room
# for scheduling; without them this is thousands.
MAX_KERNEL_EVENTS_PER_S = 200.0
MAX_PARENT_CPU = 0.3  # of one core (without budgets: 0.5 in the mixed flood, 0.7 kernel)


def selector() -> m.TrafficSelector:
    return m.TrafficSelector(
        m.SelectorSide(ipaddress.ip_network("198.51.100.0/24"), 0, 0),
        m.SelectorSide(ipaddress.ip_network("203.0.113.0/24"), 0, 0),
    )


def install(rid: int, spi_in: int) -> m.Phase2Install:
    sel = selector()
    back = m.TrafficSelector(sel.dst, sel.src)

    def keys(spi: int) -> m.Phase2Sa:
        return m.Phase2Sa(spi, m.CryptKey(EspTransformId.AES_CBC, bytes(16)),
                          m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, bytes(32)), None,
                          m.Lifetimes(3540, 3600, 0, 0))  # fmt: skip

    pols = (m.Phase2Policy(m.PolicyDirection.OUT, sel, 1000),
            m.Phase2Policy(m.PolicyDirection.IN, back, 1000),
            m.Phase2Policy(m.PolicyDirection.FWD, back, 1000))  # fmt: skip
    return m.Phase2Install(
        request_id=rid, phase1_number=1, phase2_number=1, tunnel_id=1, local=A, remote=B,
        proto=ESP, mode=EncapsulationMode.TUNNEL, reqid=7, inbound=keys(spi_in),
        outbound=keys(0x1000), encap=None, selector=sel, policies=pols,
    )  # fmt: skip


class Flood:
    """The hostile child: two senders and one reader on the stand-in's connection."""

    def __init__(self, child: StandIn) -> None:
        assert child.conn is not None
        self.sock = child.conn
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answered: dict[int, tuple[float, Message]] = {}
        self.asked: dict[int, float] = {}
        self.arrived = threading.Condition(self.lock)
        self.next_rid = 1
        self.errors: list[BaseException] = []

    def rid(self) -> int:
        with self.lock:
            rid, self.next_rid = self.next_rid, self.next_rid + 1
            return rid

    def send(self, msg: Message) -> None:
        rid = getattr(msg, "request_id", None)
        if rid is not None:
            with self.lock:
                self.asked[rid] = time.monotonic()
        send_message(self.sock, msg)

    def wait_answer(self, rid: int, timeout: float = 30.0) -> Message:
        with self.arrived:
            if not self.arrived.wait_for(lambda: rid in self.answered, timeout):
                raise AssertionError(f"no answer to request {rid}")
            return self.answered[rid][1]

    def reader(self) -> None:
        try:
            while True:
                msg = recv_message(self.sock, Direction.PARENT_TO_CHILD)
                if msg is None:
                    return
                rid = getattr(msg, "request_id", None)
                if rid is not None and not isinstance(msg, m.ListCommand):
                    with self.arrived:
                        self.answered[rid] = (time.monotonic(), msg)
                        self.arrived.notify_all()
        except OSError:
            return  # the test closed the connection

    def kernel_cycles(self) -> None:
        try:
            while not self.stop.is_set():
                rid = self.rid()
                self.send(m.SpiRequest(rid, 1, ESP, B, A))
                reply = self.wait_answer(rid)
                if not isinstance(reply, m.SpiReply) or reply.error is not m.ErrorCode.OK:
                    continue
                self.send(install(self.rid(), reply.spi))
                self.send(m.Phase2Remove(self.rid(), 1, 1, A, B, ESP, reply.spi, 0x1000, 7, False))
        except BaseException as exc:
            self.errors.append(exc)

    def blast(self) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                match n % 4:
                    case 0:
                        self.send(m.NonceRequest(self.rid(), 1))
                    case 1:
                        self.send(m.SkeyidRequest(self.rid(), 1, None, IkeHash.SHA2_256, 0,
                                                  bytes(32)))  # fmt: skip
                    case 2:
                        self.send(m.Log(m.LogLevel.WARNING, f"flood line {n}"))
                    case _:
                        self.send(m.DatagramOut(m.Endpoint(A, 500), m.Endpoint(B, 500), False,
                                                bytes(28)))  # fmt: skip
        except BaseException as exc:
            self.errors.append(exc)


class Monitor:
    """`ip xfrm monitor` in the daemon's namespace: the time of every kernel event."""

    def __init__(self, ns: str) -> None:
        self.proc = subprocess.Popen(["ip", "-n", ns, "xfrm", "monitor"],  # noqa: S603, S607
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.times: list[float] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        time.sleep(0.3)  # subscribed

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() and not line.startswith((" ", "\t")):
                self.times.append(time.monotonic())

    def between(self, start: float, end: float) -> int:
        return sum(1 for t in list(self.times) if start <= t < end)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Daemon, StandIn, Topology]]:
    with Topology.create() as topo:
        standin = StandIn(tmp_path)
        daemon = Daemon.start(topo.a, tmp_path, child_cmd=standin.child_cmd)
        try:
            standin.accept()
            yield daemon, standin, topo
        finally:
            daemon.stop()
            standin.close()


@pytest.mark.parametrize("blast", [False, True], ids=["kernel-writes", "mixed"])
def test_a_request_flood_is_slowed_not_dropped_and_the_parent_stays_bounded(
    setup: tuple[Daemon, StandIn, Topology], blast: bool
) -> None:
    daemon, child, topo = setup
    send_udp(topo.b, GW_A, 500, bytes(28))  # gateway B talks: its tunnel is in use
    got = child.recv()
    assert isinstance(got, m.DatagramIn)
    monitor = Monitor(topo.a)
    flood = Flood(child)
    work = (flood.reader, flood.kernel_cycles, *([flood.blast] if blast else []))
    threads = [threading.Thread(target=t, daemon=True) for t in work]
    for t in threads:
        t.start()
    try:
        time.sleep(WARM)
        start, cpu0 = time.monotonic(), cpu_seconds(daemon.proc.pid)
        honest = flood.rid()  # a request in the middle of the flood
        flood.send(m.NonceRequest(honest, 1))
        time.sleep(MEASURE)
        end, cpu1 = time.monotonic(), cpu_seconds(daemon.proc.pid)
        reply = flood.wait_answer(honest)
    finally:
        flood.stop.set()
        for t in threads[1:]:
            t.join(60)
        monitor.close()
    assert not flood.errors, flood.errors
    assert isinstance(reply, m.NonceReply), reply
    events = monitor.between(start, end)
    rate, cpu = events / (end - start), (cpu1 - cpu0) / (end - start)
    sent = len(flood.asked)
    # every request sent gets its one answer, the last ones a little later
    last = max(flood.asked)
    flood.wait_answer(last, timeout=60)
    missing = [rid for rid in flood.asked if rid not in flood.answered]
    counters = stats(daemon)
    kind = "mixed" if blast else "kernel"
    print(f"\n{kind} flood: kernel events {rate:.0f}/s, parent CPU {cpu:.0%} of a core, "
          f"{sent} requests sent, {len(missing)} unanswered, honest answer after "
          f"{flood.answered[honest][0] - flood.asked[honest]:.2f} s, "
          f"throttled {counters['child_throttled']} times, "
          f"{counters['child_throttled_ms']} ms")  # fmt: skip
    assert not missing, missing[:10]
    assert rate <= MAX_KERNEL_EVENTS_PER_S
    assert cpu <= MAX_PARENT_CPU
    assert counters["child_throttled"] > 0 and counters["child_throttled_ms"] > 0
    daemon.wait_log(r"child exceeds its \w+ request budget")
