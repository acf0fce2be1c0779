"""Two ikeprivd daemons negotiate over IPv6: the sockets, the child, the vetting and the
kernel policies all have to work with 128-bit addresses, not only with IPv4.

The namespaces are joined by a veth pair carrying IPv6 documentation addresses
(2001:db8::/32, RFC 3849), added with `nodad` so they are usable at once; no default route.
The host kernel has no ESP, so the SAs are refused (EPROTONOSUPPORT); the policies land,
and are taken out again a few milliseconds later when the child drops the half-made phase 2
(as over IPv4). So the test does not poll `ip -6 xfrm policy` for them, which would race:
it reads the kernel's own XFRM notifications (`ip xfrm monitor policy`), which report every
policy the kernel accepted.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_daemon_support import Daemon, Topology, run, wait_for, write_db

from ikepriv.ipc import messages as m

pytestmark = pytest.mark.root

GW6_A, GW6_B = "2001:db8::1", "2001:db8::2"
LAN6_A, LAN6_B = "2001:db8:a::/64", "2001:db8:b::/64"
A6, B6 = ipaddress.ip_address(GW6_A), ipaddress.ip_address(GW6_B)

SITE6 = f"""
[[phase1]]
name = "to-siteB6"
local_addr = "{GW6_A}"
remote_addr = "{GW6_B}"
psk = "a long random shared secret for the IPv6 test"
proposals = ["aes128-sha256-modp2048"]
lifetime = 28800

[[phase2]]
name = "lanA6-lanB6"
phase1 = "to-siteB6"
local_subnet = "{LAN6_A}"
remote_subnet = "{LAN6_B}"
proposals = ["aes128-sha256"]
lifetime = 3600
"""


@contextmanager
def ipv6_topology() -> Iterator[Topology]:
    """Namespaces a and b, veth 2001:db8::1 <-> 2001:db8::2 (nodad); no other route."""
    tag = secrets.token_hex(3)
    topo = Topology(f"ikp6A-{tag}", f"ikp6B-{tag}")
    try:
        for ns in (topo.a, topo.b):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", topo.a, "link", "add", "vA", "type", "veth", "peer", "name", "vB",
            "netns", topo.b)  # fmt: skip
        for ns, dev, addr in ((topo.a, "vA", GW6_A), (topo.b, "vB", GW6_B)):
            run("ip", "-n", ns, "-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad")
            run("ip", "-n", ns, "link", "set", dev, "up")
        yield topo
    finally:
        for ns in (topo.a, topo.b):
            run("ip", "netns", "del", ns, check=False)


# a policy the test adds and deletes itself, to know the monitor is listening
MARKER = ("src", "2001:db8:ff::/64", "dst", "2001:db8:fe::/64", "dir", "out")
SA_REFUSED = r"SA spi 0x[0-9a-f]+ not installed: (add|update)_sa: .*\(EPROTONOSUPPORT\)"
EVENT = re.compile(r"^(Deleted )?src (\S+) dst (\S+) \n\s+dir (\w+)", re.MULTILINE)


@contextmanager
def policy_monitor(ns: str, out: Path) -> Iterator[Path]:
    """`ip xfrm monitor policy` in namespace `ns`, writing to `out`; listening on return."""
    with open(out, "wb") as sink:
        proc = subprocess.Popen(  # noqa: S603
            ["ip", "-n", ns, "xfrm", "monitor", "policy"],  # noqa: S607
            stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:

            def listening() -> bool:
                run("ip", "-n", ns, "-6", "xfrm", "policy", "add", *MARKER)
                run("ip", "-n", ns, "-6", "xfrm", "policy", "del", *MARKER)
                return MARKER[1] in out.read_text()

            wait_for("the xfrm monitor", listening)
            yield out
        finally:
            proc.terminate()
            proc.wait()


def policies_added(path: Path) -> set[tuple[str, str, str]]:
    """(src, dst, dir) of every policy the kernel reported as added, marker excepted."""
    return {
        (src, dst, direction)
        for deleted, src, dst, direction in EVENT.findall(path.read_text())
        if not deleted and src != MARKER[1]
    }


@pytest.fixture
def topo6() -> Iterator[Topology]:
    with ipv6_topology() as t:
        yield t


def phase1_rows(daemon: Daemon) -> list[tuple[str, m.TunnelState, object]]:
    code, lines, rows = daemon.call(m.ListRequest(m.Phase.PHASE1, (), False, None, False, False))
    assert code is m.ErrorCode.OK, lines
    return [(r.name, r.state, r.remote_addr) for r in rows]


def test_two_daemons_negotiate_over_ipv6(topo6: Topology, tmp_path: Path) -> None:
    """Main Mode and Quick Mode between 2001:db8::1 and 2001:db8::2 through both parents;
    the IPv6 policies reach both kernels, the SAs are refused by this ESP-less kernel, and
    each install is rolled back whole (all or nothing)."""
    db_a, db_b = tmp_path / "a.db", tmp_path / "b.db"
    write_db(db_a, SITE6)
    write_db(db_b, SITE6, swap=True)
    a = Daemon.start(topo6.a, tmp_path, name="a", db=db_a)
    b = Daemon.start(topo6.b, tmp_path, name="b", db=db_b)
    try:
        with (
            policy_monitor(topo6.a, tmp_path / "mon-a") as mon_a,
            policy_monitor(topo6.b, tmp_path / "mon-b") as mon_b,
        ):
            for ns in (topo6.a, topo6.b):
                listening = run("ip", "netns", "exec", ns, "ss", "-Hlun6")
                assert "]:500 " in listening and "]:4500 " in listening, listening
            a.wait_log("configuration generation 1 loaded")
            b.wait_log("configuration generation 1 loaded")
            code, lines, _ = a.call(m.ActivateRequest(m.Phase.PHASE2, (m.NumRange(1, 1),), (), None,
                                                      None, None, False))  # fmt: skip
            assert code is m.ErrorCode.OK, lines
            a.wait_log(f"phase 1 to-siteB6 established with {GW6_B} as initiator")
            b.wait_log(f"phase 1 to-siteB6 established with {GW6_A} as responder")
            assert phase1_rows(a) == [("to-siteB6", m.TunnelState.ESTABLISHED, B6)]
            assert phase1_rows(b) == [("to-siteB6", m.TunnelState.ESTABLISHED, A6)]
            # Quick Mode completed on both sides: each asked for its phase 2 (one install), the
            # kernel took the in and fwd policies, refused the outbound SA, and the policies
            # were taken out again
            for d in (a, b):
                d.wait_log(SA_REFUSED + r".*; undoing 2 earlier write")
            assert "refused" not in a.log().split("established")[0]
            assert "refused" not in b.log().split("established")[0]
            # both kernels accepted the IPv6 policies that come before the SAs (in, fwd)
            wait_for("kernel policy events", lambda: len(policies_added(mon_a)) >= 2
                     and len(policies_added(mon_b)) >= 2)  # fmt: skip
            assert policies_added(mon_a) == {(LAN6_B, LAN6_A, "in"), (LAN6_B, LAN6_A, "fwd")}
            assert policies_added(mon_b) == {(LAN6_A, LAN6_B, "in"), (LAN6_A, LAN6_B, "fwd")}
    finally:
        a.stop()
        b.stop()
    for ns in (topo6.a, topo6.b):
        assert "2001:db8:" not in run("ip", "-n", ns, "-6", "xfrm", "policy")
        assert "2001:db8:" not in run("ip", "-n", ns, "-6", "xfrm", "state")
