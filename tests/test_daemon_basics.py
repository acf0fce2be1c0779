"""ikeprivd as an operator sees it: it starts, binds, serves root only, supervises a
sandboxed child, restarts it, answers `ike`, and cleans up what it installed on SIGTERM.

Every test runs the real daemon in network namespaces it creates (veth, 192.0.2.x, no
default route). The host kernel has no ESP, so SAs cannot be installed here; policies,
SPI allocation and everything around them can (SA installation is the UML tier's).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_daemon_support import (
    GW_A,
    GW_B,
    PYTHON,
    SITE,
    Daemon,
    StandIn,
    Topology,
    isakmp,
    run,
    send_udp,
    wait_for,
    write_db,
    xfrm,
)

from ikepriv.ipc import decode
from ikepriv.ipc import messages as m
from ikepriv.ipc.schema import Direction
from ikepriv.isakmp.constants import AuthAlgorithm, EncapsulationMode, EspTransformId, ProtocolId
from ikepriv.parent_kernel.shards import default_children

pytestmark = pytest.mark.root

A, B = ipaddress.ip_address(GW_A), ipaddress.ip_address(GW_B)
ESP = ProtocolId.IPSEC_ESP
ALL_DB = m.ListRequest(m.Phase.ALL, (), True, None, False, False)


def peer_talks(child: StandIn, topo: Topology) -> None:
    """Gateway B sends a datagram, as in a negotiation: the parent now serves its tunnel."""
    send_udp(topo.b, GW_A, 500, bytes(28))
    got = child.recv()
    assert isinstance(got, m.DatagramIn) and got.remote.addr == B


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology.create() as t:
        yield t


@pytest.fixture
def daemon(topo: Topology, tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon.start(topo.a, tmp_path)
    try:
        yield d
    finally:
        d.stop()


def test_binds_ike_ports_and_control_socket_is_root_only(daemon: Daemon, topo: Topology) -> None:
    listening = run("ip", "netns", "exec", topo.a, "ss", "-Hlun")
    for port in (":500 ", ":4500 "):
        assert f"0.0.0.0{port}" in listening  # noqa: S104 -- reading ss output
    st = os.stat(daemon.control_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    status_code, _, rows = daemon.call(ALL_DB)
    assert status_code is m.ErrorCode.OK
    assert {(r.phase, r.number, r.name) for r in rows} == {
        (m.Phase.PHASE1, 1, "to-siteB"), (m.Phase.PHASE2, 1, "lanA-lanB"),
        (m.Phase.PHASE1, 2, "to-siteC"), (m.Phase.PHASE2, 2, "lanA-lanC"),
    }  # fmt: skip


CLIENT = """\
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit(0)
s.settimeout(30)
print(s.recv(70000).hex())
"""


def test_non_root_clients_are_refused(daemon: Daemon) -> None:
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    out = run(*nobody, PYTHON, "-c", CLIENT, daemon.control_path)
    assert out.strip() == "EACCES"  # the socket is 0600
    # past the file mode (CAP_DAC_OVERRIDE), the daemon's SO_PEERCRED check still refuses
    caps = ["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]
    out = run(*nobody, *caps, PYTHON, "-c", CLIENT, daemon.control_path)
    answer = decode(bytes.fromhex(out.strip()), Direction.DAEMON_TO_CLI)
    assert isinstance(answer, m.Response) and answer.status is m.ErrorCode.NOT_PERMITTED
    daemon.wait_log("control connection from uid 65534 refused")


def test_real_child_is_sandboxed_and_restarted_after_kill(daemon: Daemon) -> None:
    """Every negotiator child (one per CPU by default) runs sandboxed; killing one
    restarts that one alone."""
    count = default_children()
    daemon.wait_log("configuration generation 1 loaded", count)  # each read its first messages
    wait_for("every child", lambda: len(daemon.children()) == count)
    children = daemon.children()
    for child in children:
        st = status(child)
        assert st["Seccomp"].strip() == "2"
        assert st["Uid"].split()[0] != "0" and st["CapEff"].strip() == "0000000000000000"
    os.kill(children[0], 9)
    daemon.wait_log("restarting the negotiator child")
    new = wait_for("a new child", lambda: [p for p in daemon.children() if p not in children])
    assert isinstance(new, list) and len(new) == 1
    assert sorted(daemon.children()) == sorted(children[1:] + new)  # the others untouched
    daemon.wait_log("configuration generation 1 loaded", count=count + 1)
    assert status(new[0])["Seccomp"].strip() == "2"
    assert daemon.call(ALL_DB)[0] is m.ErrorCode.OK  # the daemon itself kept serving


@pytest.fixture
def standin(topo: Topology, tmp_path: Path) -> Iterator[tuple[Daemon, StandIn]]:
    child = StandIn(tmp_path)
    d = Daemon.start(topo.a, tmp_path, child_cmd=child.child_cmd)
    try:
        child.accept()
        yield d, child
    finally:
        d.stop()
        child.close()


def install(rid: int, spi_in: int) -> m.Phase2Install:
    """A correct child's install of phase 2 1 (it cannot succeed here: no ESP in this kernel)."""
    sel = m.TrafficSelector(
        m.SelectorSide(ipaddress.ip_network("198.51.100.0/24"), 0, 0),
        m.SelectorSide(ipaddress.ip_network("203.0.113.0/24"), 0, 0),
    )
    back = m.TrafficSelector(sel.dst, sel.src)
    pols = tuple(m.Phase2Policy(d, sel if d is m.PolicyDirection.OUT else back, 1000)
                 for d in m.PolicyDirection)  # fmt: skip

    def keys(spi: int) -> m.Phase2Sa:
        return m.Phase2Sa(spi, m.CryptKey(EspTransformId.AES_CBC, bytes(16)),
                          m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, bytes(32)), None,
                          m.Lifetimes(3000, 3600, 0, 0))  # fmt: skip

    return m.Phase2Install(rid, 1, 1, 5, A, B, ESP, EncapsulationMode.TUNNEL, 5, keys(spi_in),
                           keys(0x5000), None, sel, pols)  # fmt: skip


def test_sigterm_removes_exactly_what_it_installed(
    standin: tuple[Daemon, StandIn], topo: Topology
) -> None:
    """On this host only SPIs can be installed (SAs need ESP): the install is refused by the
    kernel and rolled back, the SPIs stay recorded, and SIGTERM removes exactly them. (The
    removal of SAs and policies at shutdown: test_installer.py and the UML tier.)"""
    daemon, child = standin
    peer_talks(child, topo)
    run("ip", "-n", topo.a, "xfrm", "policy", "add", "src", "192.0.2.0/24", "dst",
        "192.0.2.0/24", "proto", "icmp", "dir", "out", "action", "block")  # fmt: skip
    spis = []
    for rid in (1, 2):
        spi = child.ask(m.SpiRequest(rid, 1, ESP, B, A))
        assert isinstance(spi, m.SpiReply) and spi.error is m.ErrorCode.OK
        spis.append(spi.spi)
    reply = child.ask(install(3, spis[0]))
    assert isinstance(reply, m.ResultReply) and reply.error is m.ErrorCode.KERNEL_ERROR, reply
    policies = xfrm(topo.a, "policy")
    assert "198.51.100.0/24" not in policies  # rolled back
    for spi in spis:
        assert f"spi 0x{spi:08x}" in xfrm(topo.a, "state")
    run("ip", "-n", topo.a, "xfrm", "state", "allocspi", "src", GW_B, "dst", GW_A, "proto", "esp")
    theirs = xfrm(topo.a, "state").count("spi 0x") - len(spis)
    assert daemon.stop() == 0
    policies = xfrm(topo.a, "policy")
    assert "198.51.100.0/24" not in policies and "203.0.113" not in policies
    assert "proto icmp" in policies  # the operator's own policy stays
    state = xfrm(topo.a, "state")
    assert state.count("spi 0x") == theirs == 1  # only the operator's SPI is left
    assert all(f"spi 0x{spi:08x}" not in state for spi in spis)


def test_activate_list_and_reload(standin: tuple[Daemon, StandIn], tmp_path: Path) -> None:
    daemon, child = standin
    code, lines, _ = daemon.call(m.ActivateRequest(m.Phase.PHASE2, (m.NumRange(1, 1),), (), None,
                                                   None, None, False))  # fmt: skip
    assert code is m.ErrorCode.OK, lines
    command = child.recv()
    assert command == m.InitiateCommand(m.Phase.PHASE2, 1, None, None)
    # `ike cmd=list`: the daemon asks the child and turns its reports into rows
    answer: list[object] = []
    lister = threading.Thread(target=lambda: answer.append(
        daemon.call(m.ListRequest(m.Phase.ALL, (), False, None, False, False))))  # fmt: skip
    lister.start()
    ask = child.recv()
    assert isinstance(ask, m.ListCommand)
    child.send(m.StateReport(ask.request_id, m.Phase.PHASE1, 1, 3, None, m.Role.INITIATOR,
                             m.TunnelState.ESTABLISHED, m.Endpoint(A, 500), m.Endpoint(B, 500),
                             None, None, "aes128 sha256", 0, 0, 0))  # fmt: skip
    child.send(m.StateReportEnd(ask.request_id, 1))
    ask = child.recv()  # phase 1 first, then phase 2 (a listing comes phase by phase)
    assert isinstance(ask, m.ListCommand) and ask.phase is m.Phase.PHASE2
    child.send(m.StateReportEnd(ask.request_id, 0))
    lister.join(30)
    ((code, _, rows),) = answer  # type: ignore[misc]
    assert code is m.ErrorCode.OK
    assert [(r.tunnel_id, r.name, r.state) for r in rows] == [
        (3, "to-siteB", m.TunnelState.ESTABLISHED)
    ]
    # ikedb changes a definition: DbChanged -> a new snapshot for the child
    write_db(tmp_path / "d.db", SITE.replace('"to-siteB"', '"to-siteD"').replace(
        '"lanA-lanB"', '"lanA-lanD"').replace('"to-siteC"', '"to-siteE"').replace(
        '"lanA-lanC"', '"lanA-lanE"').replace("192.0.2.2", "192.0.2.4").replace(
        "192.0.2.3", "192.0.2.5"))  # fmt: skip
    code, lines, _ = daemon.call(m.DbChanged())
    assert code is m.ErrorCode.OK and "generation 2" in lines[0]
    begin = child.recv()
    assert isinstance(begin, m.ConfigBegin) and begin.generation == 2
    names = []
    while not isinstance(msg := child.recv(), m.ConfigEnd):
        if isinstance(msg, m.ConfigPhase1):
            names.append(msg.definition.name)
    assert "to-siteD" in names and msg.phase1_count == 4


def test_two_daemons_negotiate_and_install_policies(topo: Topology, tmp_path: Path) -> None:
    """Real children on both sides: Main Mode and Quick Mode through both parents; each
    asks for its phase 2 in one install, which this ESP-less kernel refuses at its first SA
    (the inbound one): the policies written before it are undone, nothing is left."""
    db_b = tmp_path / "b.db"
    write_db(db_b, swap=True)
    a = Daemon.start(topo.a, tmp_path, name="a")
    b = Daemon.start(topo.b, tmp_path, name="b", db=db_b)
    try:
        a.wait_log("configuration generation 1 loaded")
        b.wait_log("configuration generation 1 loaded")
        code, lines, _ = a.call(m.ActivateRequest(m.Phase.PHASE2, (m.NumRange(1, 1),), (), None,
                                                  None, None, False))  # fmt: skip
        assert code is m.ErrorCode.OK, lines
        a.wait_log("phase 1 to-siteB established with 192.0.2.2 as initiator")
        b.wait_log("phase 1 to-siteB established with 192.0.2.1 as responder")
        for d in (a, b):
            d.wait_log(r"\(phase 2 1\): in SA spi 0x[0-9a-f]+ not installed: update_sa: .*"
                       r"EPROTONOSUPPORT.*; undoing 2 earlier write")  # fmt: skip
        assert "refused" not in a.log().split("established")[0]
        code, _, rows = a.call(m.ListRequest(m.Phase.PHASE1, (), False, None, False, False))
        assert code is m.ErrorCode.OK
        assert [(r.name, r.state, r.remote_addr) for r in rows] == [
            ("to-siteB", m.TunnelState.ESTABLISHED, B)
        ]
        # one line per establishment, naming the tunnel number `ike cmd=list` shows
        ours = [line for line in a.log().splitlines() if "established" in line]
        assert len(ours) == 1 and ours[0].endswith(f", tunnel {rows[0].tunnel_id}"), ours
    finally:
        a.stop()
        b.stop()
    assert "198.51.100" not in xfrm(topo.a, "policy") + xfrm(topo.b, "policy")


def test_keylog_is_refused_without_the_option(standin: tuple[Daemon, StandIn]) -> None:
    daemon, child = standin
    child.send(m.KeyLog(bytes(8), bytes(16)))
    daemon.wait_log("refused key log line from the child: the daemon runs without --keylog")


def test_datagrams_flow_both_ways_with_nat_t_marker(
    standin: tuple[Daemon, StandIn], topo: Topology
) -> None:
    daemon, child = standin
    payload = isakmp(b"\x11" * 8, body=bytes(range(12)))
    reply = isakmp(b"\x11" * 8, b"\x22" * 8, bytes(range(12))[::-1])
    # from the port a NAT would have mapped: the only port besides 4500 a reply may go to
    send_udp(topo.b, GW_A, 4500, b"\x00\x00\x00\x00" + payload, sport=4501)
    got = child.recv()
    assert isinstance(got, m.DatagramIn)
    assert (got.natt, got.data, got.remote) == (True, payload, m.Endpoint(B, 4501))
    assert got.local == m.Endpoint(A, 4500)
    # the reply leaves from the address the request came to, with the marker
    listener = subprocess.Popen(  # noqa: S603
        ["ip", "netns", "exec", topo.b, PYTHON, "-c",  # noqa: S607
         "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
         "s.bind(('192.0.2.2', 4501)); s.settimeout(30); d, a = s.recvfrom(9000); "
         "print(d.hex(), a[0], a[1])"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for("the peer socket", lambda: ":4501" in run("ip", "netns", "exec", topo.b, "ss",
                                                            "-Hlun"))  # fmt: skip
        child.send(m.DatagramOut(m.Endpoint(A, 4500), m.Endpoint(B, 4501), True, reply))
        out, _ = listener.communicate(timeout=30)
    finally:
        if listener.poll() is None:
            listener.kill()
    data, addr, port = out.split()
    assert bytes.fromhex(data) == b"\x00\x00\x00\x00" + reply
    assert (addr, port) == (GW_A, "4500")
    assert "refused" not in daemon.log()


def test_readiness_notification(topo: Topology, tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(path)
        notify.settimeout(30)
        d = Daemon.start(topo.a, tmp_path, env={"NOTIFY_SOCKET": path})
        try:
            assert notify.recv(4096) == b"READY=1"
        finally:
            assert d.stop() == 0
        assert notify.recv(4096) == b"STOPPING=1"


def test_remove_takes_the_tunnel_down(standin: tuple[Daemon, StandIn], topo: Topology) -> None:
    daemon, child = standin
    peer_talks(child, topo)
    answer: list[object] = []
    remover = threading.Thread(target=lambda: answer.append(
        daemon.call(m.RemoveRequest(m.Phase.PHASE2, (m.NumRange(5, 5),), False))))  # fmt: skip
    remover.start()
    ask = child.recv()
    assert isinstance(ask, m.ListCommand)
    child.send(m.StateReport(ask.request_id, m.Phase.PHASE2, 1, 5, 3, m.Role.INITIATOR,
                             m.TunnelState.ESTABLISHED, m.Endpoint(A, 500), m.Endpoint(B, 500),
                             None, None, "esp", 0, 0x1234, 0x5678))  # fmt: skip
    child.send(m.StateReportEnd(ask.request_id, 1))
    assert child.recv() == m.RemoveCommand(m.Phase.PHASE2, 5)
    remover.join(30)
    ((code, lines, _),) = answer  # type: ignore[misc]
    assert code is m.ErrorCode.OK and lines == ["phase 2 tunnel 5 removed"]
    assert "198.51.100.0/24" not in xfrm(topo.a, "policy")


def test_db_listing_shows_every_subnet_of_a_definition(topo: Topology, tmp_path: Path) -> None:
    """`ike cmd=list db`: each phase 2 definition with the subnets it covers, all of them
    for one with several subnets per side (one tunnel per pair once active)."""
    db = tmp_path / "subnets.db"
    write_db(db, SITE.replace('local_subnet = "198.51.100.0/25"',
                              'local_subnets = ["198.51.100.0/28", "198.51.100.16/28"]')
             .replace('remote_subnet = "203.0.113.128/25"',
                      'remote_subnets = ["203.0.113.128/28", "203.0.113.144/28"]'))  # fmt: skip
    d = Daemon.start(topo.a, tmp_path, db=db)
    try:
        code, _, rows = d.call(ALL_DB)
    finally:
        d.stop()
    assert code is m.ErrorCode.OK
    assert {r.name: (r.local_selector, r.remote_selector) for r in rows
            if r.phase is m.Phase.PHASE2} == {
        "lanA-lanB": ("198.51.100.0/24", "203.0.113.0/24"),
        "lanA-lanC": ("198.51.100.0/28,198.51.100.16/28", "203.0.113.128/28,203.0.113.144/28"),
    }  # fmt: skip
