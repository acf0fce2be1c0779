"""Issue 8, point 4: `ike cmd=remove`, definition changes and restarts act on the parent's
own records, never on the child's word.

A hostile child (a real process speaking the IPC, see test_daemon_support.StandIn) gets
vetted kernel objects written and then reports nothing. The host kernel has XFRM but no ESP,
so the objects here are the SPIs the parent allocates (larval SAs): they are kernel state the
parent wrote and recorded, the same class as installed SAs and policies (the User Mode Linux
tier covers those). Each test checks the kernel itself (`ip xfrm state`).
"""

from __future__ import annotations

import ipaddress
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import GW_A, GW_B, Daemon, StandIn, Topology, run, send_udp, xfrm

from ikepriv.config.store import TunnelDB
from ikepriv.ipc import messages as m
from ikepriv.isakmp.constants import ProtocolId
from ikepriv.parent_kernel.journal import SUFFIX, Journal

pytestmark = [pytest.mark.root, pytest.mark.attacks]

A, B = ipaddress.ip_address(GW_A), ipaddress.ip_address(GW_B)
ESP = ProtocolId.IPSEC_ESP


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology.create() as t:
        # larval SAs live net.core.xfrm_acq_expires seconds (30 by default): long enough
        # here that only ikepriv can make them go during a test, however loaded the machine
        run("ip", "netns", "exec", t.a, "sysctl", "-qw", "net.core.xfrm_acq_expires=3600")
        yield t


def start(topo: Topology, tmp: Path, run_number: int = 1) -> tuple[Daemon, StandIn]:
    here = tmp / f"standin{run_number}"
    here.mkdir()
    standin = StandIn(here)
    daemon = Daemon.start(topo.a, tmp, child_cmd=standin.child_cmd)
    standin.accept()
    return daemon, standin


def allocate(topo: Topology, child: StandIn, count: int, phase2: int = 1) -> list[int]:
    """The peer talks to us (a negotiation is under way), then the child takes SPIs."""
    send_udp(topo.b, GW_A, 500, bytes(28))
    spis = []
    for rid in range(1, count + 1):
        reply = child.ask(m.SpiRequest(rid, phase2, ESP, B, A))
        assert isinstance(reply, m.SpiReply) and reply.error is m.ErrorCode.OK, reply
        spis.append(reply.spi)
    return spis


def spis_in_kernel(ns: str) -> set[int]:
    return {int(line.split("spi ")[1].split()[0], 16)
            for line in xfrm(ns, "state").splitlines() if " spi " in line}  # fmt: skip


def call_with_silent_child(
    daemon: Daemon, child: StandIn, request: m.ActivateRequest | m.RemoveRequest | m.DbChanged
) -> tuple[m.ErrorCode, list[str], list[m.Message]]:
    """Run a control request while the child answers every ListCommand with no tunnel at
    all (what a compromised child, or a freshly restarted one, says)."""
    result: list[tuple[m.ErrorCode, list[str], list[m.TunnelRow]]] = []
    thread = threading.Thread(target=lambda: result.append(daemon.call(request)))
    thread.start()
    seen: list[m.Message] = []
    assert child.conn is not None
    child.conn.settimeout(0.2)
    try:
        while thread.is_alive():
            try:
                msg = child.recv()
            except TimeoutError:
                continue
            if isinstance(msg, m.ListCommand):
                child.send(m.StateReportEnd(msg.request_id, 0))
            elif msg is not None:
                seen.append(msg)
    finally:
        thread.join()
        child.conn.settimeout(30)
    code, lines, _ = result[0]
    return code, lines, seen


def test_bare_remove_takes_everything_whatever_the_child_reports(
    topo: Topology, tmp_path: Path
) -> None:
    daemon, child = start(topo, tmp_path)
    try:
        spis = allocate(topo, child, 3)
        assert set(spis) <= spis_in_kernel(topo.a)
        code, lines, _ = call_with_silent_child(
            daemon, child, m.RemoveRequest(m.Phase.ALL, (), False)
        )
        assert spis_in_kernel(topo.a) == set(), (code, lines)
        assert code is m.ErrorCode.OK, lines
        # the activations are gone as well: a refused SPI request proves it needs a peer again
    finally:
        daemon.stop()
        child.close()


def test_definition_deleted_revokes_what_was_installed_for_it(
    topo: Topology, tmp_path: Path
) -> None:
    daemon, child = start(topo, tmp_path)
    try:
        spis = allocate(topo, child, 2)
        with TunnelDB(str(tmp_path / "d.db"), create=False) as db:
            db.delete_phase2("lanA-lanB")
        code, lines, _ = call_with_silent_child(daemon, child, m.DbChanged())
        assert code is m.ErrorCode.OK, lines
        assert not set(spis) & spis_in_kernel(topo.a)
        daemon.wait_log(r"SAs and policies of phase 2 1 revoked")
    finally:
        daemon.stop()
        child.close()


def as_version_1(path: str) -> None:
    """Rewrite a state file as ikeprivd wrote it before it became a log (an upgrade after
    a crash of the old version leaves this)."""
    sas, pols = Journal(path).load()
    doc = {"version": 1,
           "sas": [{"dst": str(s.dst), "spi": s.spi, "proto": s.proto, "reqid": s.reqid}
                   for s in sas],
           "policies": [{"sel": {"src": str(p.selector.src), "dst": str(p.selector.dst),
                                 "proto": p.selector.proto, "sport": p.selector.sport,
                                 "dport": p.selector.dport},
                         "dir": int(p.direction), "reqid": p.reqid} for p in pols]}  # fmt: skip
    Path(path).write_text(json.dumps(doc, separators=(",", ":")))


@pytest.mark.parametrize("version", [2, 1])
def test_leftovers_of_a_killed_parent_are_removed_at_start(
    topo: Topology, tmp_path: Path, version: int
) -> None:
    """kill -9 of the parent: nothing removes its kernel objects. The next daemon (same
    control socket, so the same state file) recognises them and removes them before its
    child runs; what another program put into the kernel stays. Also when the state file
    is one the previous version of ikeprivd wrote (an upgrade after its crash)."""
    run("ip", "-n", topo.a, "xfrm", "state", "allocspi", "src", GW_B, "dst", GW_A,
        "proto", "esp")  # fmt: skip
    foreign = spis_in_kernel(topo.a)
    daemon, child = start(topo, tmp_path)
    try:
        spis = allocate(topo, child, 3)
        assert set(spis) | foreign == spis_in_kernel(topo.a)
    finally:
        daemon.stop(signal.SIGKILL)
        child.close()
    assert set(spis) <= spis_in_kernel(topo.a)  # left behind, as a crash leaves them
    if version == 1:
        as_version_1(daemon.control_path + SUFFIX)
    daemon, child = start(topo, tmp_path, 2)
    try:
        assert spis_in_kernel(topo.a) == foreign
        daemon.wait_log(r"removed 3 SA\(s\) and 0 policy\(ies\) a previous run")
    finally:
        daemon.stop()
        child.close()
