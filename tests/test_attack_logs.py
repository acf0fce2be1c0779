"""Attack: flood or forge the daemon's log (issue 8, point 5).

A real ikeprivd with the test as its (hostile) child, in namespaces the test creates.
Forged first messages come from sources the daemon has no route back to (203.0.113.x on
the peer's link, unknown to namespace a), so every reply the child asks for fails to send.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import GW_A, PYTHON, Daemon, StandIn, Topology, isakmp, run, send_udp

from ikepriv.ipc import messages as m
from ikepriv.isakmp.constants import ProtocolId

pytestmark = [pytest.mark.attacks, pytest.mark.root]

A = ipaddress.ip_address(GW_A)
SOURCES = [f"203.0.113.{i}" for i in range(10, 50)]
PER_SOURCE = 10

FORGER = """\
import socket, sys, time
for i, src in enumerate(sys.argv[2].split(",")):
    for j in range(int(sys.argv[3])):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src, 500))
        cookie = bytes([i + 1, j + 1]) + bytes(6)
        s.sendto(cookie + bytes(8) + bytes([1, 0x10, 2, 0]) + bytes(4) + (100).to_bytes(4, "big")
                 + bytes(72), (sys.argv[1], 500))
        s.close()
    time.sleep(0.02)  # the test counts lines, not how many the daemon can take in a burst
"""


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Daemon, StandIn, Topology]]:
    with Topology.create() as topo:
        batch = "".join(f"addr add {src}/32 dev vB\n" for src in SOURCES)
        (tmp_path / "addrs").write_text(batch)
        run("ip", "-n", topo.b, "-batch", str(tmp_path / "addrs"))
        for conf in ("all", "default", "vA"):  # accept sources it has no route back to
            run("ip", "netns", "exec", topo.a, "sysctl", "-qw", f"net.ipv4.conf.{conf}.rp_filter=0")
        standin = StandIn(tmp_path)
        daemon = Daemon.start(topo.a, tmp_path, child_cmd=standin.child_cmd)
        try:
            standin.accept()
            yield daemon, standin, topo
        finally:
            daemon.stop()
            standin.close()


def test_unsendable_replies_do_not_flood_the_log(
    setup: tuple[Daemon, StandIn, Topology], tmp_path: Path
) -> None:
    daemon, child, topo = setup
    send_udp(topo.b, GW_A, 500, isakmp(b"\x99" * 8))  # resolves our MAC address in b
    assert isinstance(child.recv(), m.DatagramIn)
    script = tmp_path / "forger.py"
    script.write_text(FORGER)
    run("ip", "netns", "exec", topo.b, PYTHON, str(script), GW_A, ",".join(SOURCES),
        str(PER_SOURCE))  # fmt: skip
    replies = 0
    assert child.conn is not None
    child.conn.settimeout(5)
    for _ in range(len(SOURCES) * PER_SOURCE):
        try:
            got = child.recv()
        except TimeoutError:
            break  # the rest were lost on the way: not what this test is about
        assert isinstance(got, m.DatagramIn)
        reply = isakmp(got.data[:8], b"\x22" * 8, bytes(40))
        child.send(m.DatagramOut(got.local, got.remote, False, reply))
        replies += 1
    child.conn.settimeout(30)
    assert replies >= 150
    reply = child.ask(m.SpiRequest(1, 99, ProtocolId.IPSEC_ESP, A, A))  # a barrier
    assert isinstance(reply, m.SpiReply)
    log = daemon.log()
    errors = len(re.findall(r"cannot send to", log))
    print(f"{replies} unsendable replies: {errors} 'cannot send to' lines")
    assert 0 < errors <= 100


def test_the_child_cannot_forge_a_parent_line(setup: tuple[Daemon, StandIn, Topology]) -> None:
    daemon, child, _topo = setup
    forged = "negotiator child pid 4242 was killed by SIGKILL"
    child.send(m.Log(m.LogLevel.ERR, forged))
    child.send(m.StateReport(0, m.Phase.PHASE1, 1, 7, None, m.Role.RESPONDER,
                             m.TunnelState.ESTABLISHED, m.Endpoint(A, 500), m.Endpoint(A, 500),
                             None, None, "x", 0, 0, 0))  # fmt: skip
    text = daemon.wait_log("pid 4242")
    text = daemon.wait_log(r"(?m)established with .*, tunnel 7$")
    for line in text.splitlines():
        if "pid 4242" in line or line.endswith(", tunnel 7"):
            assert re.search(r"(INFO|WARNING|ERROR): child: ", line), line


def test_line_rate_limit_sums_up_what_it_held_back() -> None:
    from ikepriv.parent_kernel.logsetup import LineRateLimit

    now = [0.0]
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("ikepriv.test-line-limit")
    logger.propagate = False
    handler = Keep()
    handler.addFilter(LineRateLimit(burst=5, period=10.0, clock=lambda: now[0]))
    logger.addHandler(handler)
    for i in range(1000):
        logger.warning("cannot send to %s", i)
    assert len(seen) == 5
    now[0] = 11.0
    logger.warning("cannot send to %s", "later")
    assert seen[5:] == ["995 more lines like 'cannot send to %s' not logged in 10 s",
                        "cannot send to later"]  # fmt: skip
