"""The project's own negotiation core as a many-peer IKEv1 initiator (driven by bench/load.py).

    ip netns exec NS .venv/bin/python bench/core_initiator.py --peers 32 --responder 192.0.2.2 \\
        --psk PSK --window 16 --duration 6 [--phase 2] [--per-peer 100]

One sans-I/O Negotiator (ikepriv.child_negotiator.core) holds PEERS x PER_PEER phase 1
definitions, Main Mode PSK aes128-sha256-modp2048 (each with one phase 2 definition, ESP
aes128-sha256, tunnel mode, 198.51.100.<j+1>/32 <-> 203.0.113.<j+1>/32), from peer address j
(192.0.2.1, 192.0.2.3 ..; ID = address) to the responder; each initiation uses a definition
of its own, so every one is a new ISAKMP SA. The parent's part is the test harness's
stand-in parent (tests/harness/core_sim.py: nonces, SKEYID from the PSK, SPIs, installs
answered OK without a kernel). Real UDP sockets on port 500 of each peer address; one
thread, select(), closed loop: WINDOW initiations under way until DURATION s have passed,
then the ones under way finish (or time out after --timeout s).

Protocol with load.py on stdin/stdout: after a warm-up handshake it prints `READY`, waits for
a line on stdin, runs the load printing `PROGRESS <ok>` once a second, and ends with one line
`RESULT {json}`: started, ok, failed, latencies (ms, successful initiations), elapsed, and the
initiator's own CPU seconds.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import select
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness.core_sim import (
    StandInParent,
    address_identity,
    esp_proposal,
    ike_proposal,
    phase1_def,
    phase2_def,
    selector,
)

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc.messages import (
    DatagramIn,
    DatagramOut,
    Endpoint,
    InitiateCommand,
    Phase,
    StateReport,
    TunnelState,
)
from ikepriv.ipc.schema import Message
from ikepriv.isakmp.constants import GroupId, IkeEncryption, IkeHash

IKE_PORT = 500
BURST = 64  # datagrams read from one socket per poll: timers and progress lines still run
RECORDS_EVERY = 10.0  # seconds between two trims of the stand-in parent's records


def peer_addr(j: int) -> str:
    return "192.0.2.1" if j == 0 else f"192.0.2.{j + 2}"


@dataclass
class Load:
    started: int = 0
    ok: int = 0
    failed: int = 0
    latencies: list[float] = field(default_factory=list)
    pending: dict[int, float] = field(default_factory=dict)  # definition number: start


class CoreInitiator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.phase = args.phase
        self.timeout = args.timeout
        responder = ipaddress.ip_address(args.responder)
        proposal = ike_proposal(
            IkeEncryption.AES_CBC, 128, IkeHash.SHA2_256, GroupId.MODP_2048, lifetime=28800
        )
        p1s, p2s = [], []
        self.numbers: list[int] = []  # initiation order: round robin over the peers
        for k in range(args.per_peer):
            for j in range(args.peers):
                n = k * args.peers + j + 1
                local = ipaddress.ip_address(peer_addr(j))
                p1s.append(
                    phase1_def(
                        n, local, responder, [proposal], remote_id=address_identity(responder)
                    )
                )
                # distinct: one /32 pair per definition (k < 254), so every phase 2 has
                # kernel policies of its own; else one pair per peer address
                remote_host = k + 1 if getattr(args, "distinct", False) else j + 1
                p2s.append(
                    phase2_def(
                        n,
                        n,
                        selector(f"198.51.100.{j + 1}/32"),
                        selector(f"203.0.113.{remote_host}/32"),
                        [esp_proposal(lifetime=getattr(args, "p2_lifetime", 3600))],
                    )
                )
                if getattr(args, "p2_margin", 0):
                    p2s[-1] = replace(p2s[-1], rekey_margin=args.p2_margin)
                self.numbers.append(n)
        config = ConfigSnapshot.of(p1s, p2s)
        psk = args.psk.encode()
        settings = Settings(half_open_max=4096, half_open_max_per_peer=4096)
        self.core = Negotiator(config, time.time(), os.urandom, settings=settings)
        self.parent = StandInParent(
            {n: psk for n in config.phase1},
            {},
            random.Random(),  # noqa: S311 -- SPIs and parent nonces of a bench initiator
        )
        self.socks: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, socket.socket] = {}
        for j in range(args.peers):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((peer_addr(j), IKE_PORT))
            s.setblocking(False)
            self.socks[ipaddress.ip_address(peer_addr(j))] = s
        self.by_fd = {s.fileno(): (addr, s) for addr, s in self.socks.items()}
        self.load = Load()
        self.trimmed = time.monotonic()

    # -- the core and its stand-in parent ---------------------------------------------------
    def feed(self, message: Message) -> None:
        queue = [message]
        while queue:
            out = self.core.handle(queue.pop(0), time.time())
            queue += self.dispatch(out)

    def dispatch(self, actions: list[Message]) -> list[Message]:
        replies: list[Message] = []
        for action in actions:
            if isinstance(action, DatagramOut):
                sock = self.socks[action.local.addr]
                try:
                    sock.sendto(action.data, (str(action.remote.addr), action.remote.port))
                except BlockingIOError:
                    pass  # the peer retransmits
            elif isinstance(action, StateReport):
                self.on_report(action)
            else:
                reply = self.parent.answer(action)
                if reply is not None:
                    replies.append(reply)
        return replies

    def on_report(self, report: StateReport) -> None:
        if report.state is not TunnelState.ESTABLISHED or report.phase != self.phase:
            return
        started = self.load.pending.pop(report.number, None)
        if started is not None:
            self.load.ok += 1
            self.load.latencies.append(time.monotonic() - started)

    def initiate(self, number: int) -> None:
        self.load.started += 1
        self.load.pending[number] = time.monotonic()
        self.feed(InitiateCommand(Phase(self.phase), number, None, None))

    # -- the loop ---------------------------------------------------------------------------
    def run(self, numbers: list[int], window: int, duration: float, progress: bool) -> float:
        todo = iter(numbers)
        t0 = time.monotonic()
        deadline = t0 + duration
        next_progress = t0 + 1.0
        exhausted = False
        while True:
            now = time.monotonic()
            for number, started in list(self.load.pending.items()):
                if now - started > self.timeout:
                    del self.load.pending[number]
                    self.load.failed += 1
            while not exhausted and now < deadline and len(self.load.pending) < window:
                number = next(todo, None)
                if number is None:
                    exhausted = True
                else:
                    self.initiate(number)
            if not self.load.pending and (exhausted or now >= deadline):
                return now - t0
            if progress and now >= next_progress:
                print(f"PROGRESS {self.load.ok}", flush=True)
                next_progress += 1.0
            self.poll(0.05)

    def poll(self, wait: float, extra: tuple[int, ...] = ()) -> list[int]:
        """Wait up to `wait` s (less if a core timer is due) for datagrams, feed them to the
        core (at most BURST per socket: under a flood, reading a socket until it is empty
        never ends, and neither timers nor progress lines would run), run its timers; the
        fds of `extra` that are readable are returned."""
        core_deadline = self.core.next_deadline()
        if core_deadline is not None:
            wait = max(0.0, min(wait, core_deadline - time.time()))
        ready, _, _ = select.select([*self.by_fd, *extra], [], [], wait)
        for fd in ready:
            if fd not in self.by_fd:
                continue
            addr, sock = self.by_fd[fd]
            for _ in range(BURST):
                try:
                    data, (src, port) = sock.recvfrom(65535)
                except BlockingIOError:
                    break
                local = Endpoint(addr, IKE_PORT)
                remote = Endpoint(ipaddress.ip_address(src), port)
                self.feed(DatagramIn(local, remote, False, data))
        for reply in self.dispatch(self.core.handle_timers(time.time())):
            self.feed(reply)
        if time.monotonic() >= self.trimmed + RECORDS_EVERY:
            self.parent.forget_records()  # a long hold adds thousands of installs
            self.trimmed = time.monotonic()
        return [fd for fd in ready if fd in extra]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peers", type=int, required=True)
    parser.add_argument("--per-peer", type=int, default=100, help="definitions per peer")
    parser.add_argument("--responder", required=True)
    parser.add_argument("--psk", required=True)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--phase", type=int, choices=(1, 2), default=1)
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args()
    init = CoreInitiator(args)
    numbers = init.numbers
    init.run(numbers[:1], 1, 30.0, progress=False)  # warm-up
    if init.load.ok != 1:
        print("RESULT " + json.dumps({"error": "warm-up handshake failed"}), flush=True)
        sys.exit(1)
    print("READY", flush=True)
    sys.stdin.readline()
    init.load = Load()
    cpu0 = time.process_time()
    elapsed = init.run(numbers[1:], args.window, args.duration, progress=True)
    lat = [1000 * x for x in init.load.latencies]
    result = {
        "started": init.load.started,
        "ok": init.load.ok,
        "failed": init.load.failed,
        "latencies_ms": lat,
        "elapsed": elapsed,
        "cpu_s": time.process_time() - cpu0,
        "counters": {k: v for k, v in init.core.counters.as_dict().items() if v},
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
