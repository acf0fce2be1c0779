"""Attack: a hostile child uses the parent as a UDP cannon (issue 8, point 3).

A real ikeprivd with the test as its (hostile) child, in namespaces the test creates. The
victim, 192.0.2.50 in namespace b, is no configured peer: it only "talked" to us through
datagrams the attacker forged with its address. What reaches the victim is counted by a
listener there; the test compares it with what the victim (or the forger) sent.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import (
    GW_A,
    PYTHON,
    Daemon,
    StandIn,
    Topology,
    isakmp,
    run,
    wait_for,
)

from ikepriv.ipc import messages as m
from ikepriv.isakmp.constants import ProtocolId

pytestmark = [pytest.mark.attacks, pytest.mark.root]

A = ipaddress.ip_address(GW_A)
VICTIM = "192.0.2.50"
V = ipaddress.ip_address(VICTIM)
PRE_MULT = 3  # egress.PRE_MULT: the budget of a destination before any proof

LISTENER = """\
import json, os, select, socket, sys
ports = [int(p) for p in sys.argv[3].split(",")]
socks = []
for port in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24)
    s.bind((sys.argv[1], port))
    socks.append(s)
open(sys.argv[2] + ".up", "w").close()
got = {str(p): [0, 0] for p in ports}
while not os.path.exists(sys.argv[2] + ".stop"):
    for s in select.select(socks, [], [], 0.1)[0]:
        d = s.recv(1 << 17)
        got[str(s.getsockname()[1])][0] += 1
        got[str(s.getsockname()[1])][1] += len(d)
for s in socks:  # what is still queued
    s.setblocking(False)
    try:
        while True:
            d = s.recv(1 << 17)
            got[str(s.getsockname()[1])][0] += 1
            got[str(s.getsockname()[1])][1] += len(d)
    except BlockingIOError:
        pass
print(json.dumps(got))
"""


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Daemon, StandIn, Topology]]:
    with Topology.create() as topo:
        run("ip", "-n", topo.b, "addr", "add", f"{VICTIM}/24", "dev", "vB")
        standin = StandIn(tmp_path)
        daemon = Daemon.start(topo.a, tmp_path, child_cmd=standin.child_cmd)
        try:
            standin.accept()
            yield daemon, standin, topo
        finally:
            daemon.stop()
            standin.close()


def forge(topo: Topology, sport: int, dport: int, data: bytes) -> None:
    """One datagram with the victim's address and port (the victim never sent it)."""
    code = ("import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.bind((sys.argv[1], int(sys.argv[2]))); "
            "s.sendto(bytes.fromhex(sys.argv[5]), (sys.argv[3], int(sys.argv[4])))")  # fmt: skip
    run("ip", "netns", "exec", topo.b, PYTHON, "-c", code, VICTIM, str(sport), GW_A, str(dport),
        data.hex())  # fmt: skip


class Victim:
    def __init__(self, topo: Topology, tmp: Path, ports: tuple[int, ...]) -> None:
        self.flag = str(tmp / f"victim-{secrets.token_hex(3)}")
        script = tmp / "listener.py"
        script.write_text(LISTENER)
        self.proc = subprocess.Popen(  # noqa: S603
            ["ip", "netns", "exec", topo.b, PYTHON, str(script), VICTIM, self.flag,  # noqa: S607
             ",".join(map(str, ports))],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for("the victim's sockets", lambda: os.path.exists(self.flag + ".up"))

    def counts(self) -> dict[str, list[int]]:
        Path(self.flag + ".stop").touch()
        out, _ = self.proc.communicate(timeout=30)
        return json.loads(out)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def barrier(child: StandIn, request_id: int) -> None:
    """The parent handles the child's messages in order: once this request is answered,
    every datagram asked for before it has been sent (or refused)."""
    reply = child.ask(m.SpiRequest(request_id, 1, ProtocolId.IPSEC_ESP, V, A))
    assert isinstance(reply, m.SpiReply)


def out(port: int, data: bytes, natt: bool = False) -> m.DatagramOut:
    local = 4500 if natt else 500
    return m.DatagramOut(m.Endpoint(A, local), m.Endpoint(V, port), natt, data)


def test_one_forged_datagram_buys_a_small_multiple_and_nothing_else(
    setup: tuple[Daemon, StandIn, Topology],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    daemon, child, topo = setup
    icookie = secrets.token_bytes(8)
    forged = isakmp(icookie, body=bytes(72))  # a "first message" with the victim's address
    for sport in (53, 500):
        forge(topo, sport, 500, forged)
        got = child.recv()
        assert isinstance(got, m.DatagramIn) and got.remote == m.Endpoint(V, sport)
    victim = Victim(topo, tmp_path, (53, 500, 4500))
    request.addfinalizer(victim.close)
    received = 2 * len(forged)
    big = isakmp(icookie, secrets.token_bytes(8), bytes(60000))
    fits = isakmp(icookie, b"\x22" * 8, bytes(100))
    for _ in range(200):
        child.send(out(53, bytes(60000)))  # not ISAKMP at all, to a port that "talked"
        child.send(out(53, big))  # ISAKMP-shaped, to that port: bigger than any budget
        child.send(out(500, isakmp(secrets.token_bytes(8), bytes(8), bytes(100))))  # no exchange
        child.send(out(500, fits))  # right exchange, right size: only a few may leave
        child.send(out(500, isakmp(icookie, b"\x33" * 8, bytes(100))))  # another rcookie
        child.send(out(4500, b"\xff", natt=True))  # keepalive: no NAT-T exchange
    barrier(child, 1)
    counts = victim.counts()
    sent_packets = sum(c[0] for c in counts.values())
    sent_bytes = sum(c[1] for c in counts.values())
    print(f"victim received {sent_packets} datagrams, {sent_bytes} bytes "
          f"for {received} forged bytes: {counts}")  # fmt: skip
    assert counts["53"][0] <= PRE_MULT * 2 and counts["4500"] == [0, 0]
    assert sent_packets <= PRE_MULT * 2
    assert sent_bytes <= PRE_MULT * received
    assert counts["500"][0] >= 1  # the honest answer still goes out
    daemon.wait_log("refused datagram from the child")
    assert daemon.log().count("refused datagram") <= 200  # rate-limited, with a summary


def test_no_first_message_to_a_stranger_and_no_encap_port_from_a_forgery(
    setup: tuple[Daemon, StandIn, Topology],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    daemon, child, topo = setup
    # one forged NAT-T datagram from the victim's port 61000
    forge(topo, 61000, 4500, bytes(4) + isakmp(b"\x44" * 8, b"\x55" * 8))
    assert isinstance(child.recv(), m.DatagramIn)
    victim = Victim(topo, tmp_path, (500, 4500, 61000))
    request.addfinalizer(victim.close)
    for _ in range(50):
        child.send(out(500, isakmp(secrets.token_bytes(8))))  # "our initiation" to a stranger
        child.send(out(61000, b"\xff", natt=True))
    barrier(child, 2)
    counts = victim.counts()
    assert counts["500"] == [0, 0] and counts["61000"] == [0, 0], counts
    assert "a first message to 192.0.2.50" in daemon.log()
