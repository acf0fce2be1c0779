"""The two-gateway test topology, usable on the host and inside the UML guest.

    lanA 198.51.100.10 -eth0/eA- 198.51.100.1 [gwA] 192.0.2.1 -vA/vB- 192.0.2.2 [gwB]
         203.0.113.1 -eB/eth0- 203.0.113.10 lanB

Gateways forward; the only routes lead to the remote LAN; there is no default route anywhere
(checked: building refuses to finish otherwise). Each gateway carries a guard policy that blocks
LAN-to-LAN ICMP at the lowest possible precedence, so a ping lanA -> lanB only gets through
inside an ESP SA (any daemon's or a test's own policy wins over the guard).

Every process exec costs 30-100 ms under UML, so the topology is made with `ip -batch`, and
sysctls, default-route checks and xfrm_stat reads are done in-process after setns(2).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

GW_A_OUTER = "192.0.2.1"
GW_B_OUTER = "192.0.2.2"
GW_A_INNER = "198.51.100.1"
GW_B_INNER = "203.0.113.1"
LAN_A_HOST = "198.51.100.10"
LAN_B_HOST = "203.0.113.10"
LAN_A_NET = "198.51.100.0/24"
LAN_B_NET = "203.0.113.0/24"
GUARD_PRIORITY = 4000000000
# IPv6 (documentation prefix 2001:db8::/32), only with Topology(ipv6=True): the same links
# carry both families, for IPv6 LANs over IPv4 gateways and the reverse.
GW_A_OUTER6 = "2001:db8:1::1"
GW_B_OUTER6 = "2001:db8:1::2"
GW_A_INNER6 = "2001:db8:a::1"
GW_B_INNER6 = "2001:db8:b::1"
LAN_A_HOST6 = "2001:db8:a::10"
LAN_B_HOST6 = "2001:db8:b::10"
LAN_A_NET6 = "2001:db8:a::/64"
LAN_B_NET6 = "2001:db8:b::/64"

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(RuntimeError):
    pass


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def netns_path(name: str) -> str:
    return f"/run/netns/{name}"


def setns_to(name: str) -> None:
    """Move the calling thread into network namespace `name` (no way back: see in_netns)."""
    fd = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {name}")
    finally:
        os.close(fd)


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with the calling thread in netns `name`; /proc/thread-self/net and
    /proc/sys/net opened inside it refer to that namespace."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns_to(name)
        try:
            yield
        finally:
            _check(_libc.setns(home, CLONE_NEWNET), "setns back")
    finally:
        os.close(home)


def _mount(src: str, dst: str, flags: int) -> None:
    _check(_libc.mount(src.encode(), dst.encode(), None, flags, None), f"mount {src} {dst}")


def preexec(netns: str | None, binds: Sequence[tuple[str, str]] = ()) -> Callable[[], None]:
    """A subprocess preexec_fn: enter `netns`; with `binds`, a private mount namespace in which
    each (src, dst) is bind-mounted. Cheaper than `ip netns exec` + `unshare` + `sh` (3 execs)."""

    def enter() -> None:
        if netns is not None:
            setns_to(netns)
        if binds:
            _check(_libc.unshare(CLONE_NEWNS), "unshare mount ns")
            _mount("none", "/", MS_REC | MS_PRIVATE)
            for src, dst in binds:
                _mount(src, dst, MS_BIND)

    return enter


def run(
    argv: Sequence[str],
    netns: str | None = None,
    *,
    input: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run argv (in `netns`), capture text output; raise NetnsError on failure if `check`."""
    r = subprocess.run(  # noqa: S603 -- our own programs
        list(argv),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec(netns) if netns else None,
    )
    if check and r.returncode != 0:
        raise NetnsError(
            f"{' '.join(argv)} (netns {netns}) -> rc {r.returncode}: {r.stderr.strip()}"
        )
    return r


def ip_batch(lines: Sequence[str], netns: str | None = None) -> None:
    """One `ip [-n NS] -batch -` exec for many ip commands (stops at the first error)."""
    argv = ["ip", *(["-n", netns] if netns else []), "-batch", "-"]
    run(argv, input="\n".join(lines) + "\n")


def ping_argv(dst: str, count: int, interval: float, wait_s: int) -> list[str]:
    """A ping command line: the host's ping, else busybox (the UML guest adds its applets)."""
    exe = shutil.which("ping") or shutil.which("ping", path="/run/rk/bin")
    if exe is None:
        bb = shutil.which("busybox")
        if bb is None:
            raise NetnsError("no ping and no busybox")
        return [bb, "ping", "-c", str(count), "-W", str(wait_s), dst]
    return [exe, "-c", str(count), "-i", str(interval), "-W", str(wait_s), dst]


def has_default_route(netns: str) -> bool:
    """True if `netns` has an IPv4 or IPv6 default route (read in-process, no exec)."""
    with in_netns(netns):
        v4 = Path("/proc/thread-self/net/route").read_text().splitlines()[1:]
        try:
            v6 = Path("/proc/thread-self/net/ipv6_route").read_text().splitlines()
        except FileNotFoundError:
            v6 = []
    if any(
        f[1] == "00000000" and f[7] == "00000000" for f in (ln.split() for ln in v4) if len(f) > 7
    ):
        return True
    # fields: dst dst_len src src_len nexthop metric refcnt use flags dev; skip unreachable lo
    return any(
        f[0] == "0" * 32 and f[1] == "00" and f[9] != "lo"
        for f in (ln.split() for ln in v6)
        if len(f) > 9
    )


def sysctl_set(netns: str, key: str, value: str) -> None:
    with in_netns(netns):
        Path("/proc/sys", key.replace(".", "/")).write_text(value)


def sysctl_get(netns: str, key: str) -> str:
    with in_netns(netns):
        return Path("/proc/sys", key.replace(".", "/")).read_text().strip()


def xfrm_stat_errors(netns: str) -> dict[str, int]:
    """Non-zero counters of /proc/net/xfrm_stat in `netns` (empty without XFRM_STATISTICS)."""
    with in_netns(netns):
        try:
            text = Path("/proc/thread-self/net/xfrm_stat").read_text()
        except FileNotFoundError:
            return {}
    pairs = (ln.split() for ln in text.splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1] != "0"}


def counter_increase(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counters that grew between two xfrm_stat_errors() snapshots, with the increase."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}


@dataclass(frozen=True)
class XfrmSa:
    """One SA from `ip -s xfrm state`."""

    src: str
    dst: str
    proto: str
    spi: int
    algs: tuple[str, ...]
    bytes: int
    packets: int
    sel: tuple[str, str] | None = None  # the SA's own selector (src, dst), if it has one


_SA_SEL = re.compile(r"^\s+sel src (\S+) dst (\S+)")
_SA_HEAD = re.compile(r"^src (\S+) dst (\S+)$")
_SA_PROTO = re.compile(r"^\s+proto (\S+) spi (0x[0-9a-f]+)")
_SA_ALG = re.compile(r"^\s+(?:enc|auth|auth-trunc|aead|comp) (\S+)")
_SA_CUR = re.compile(r"^\s+(\d+)\(bytes\), (\d+)\(packets\)")


def parse_xfrm_state(text: str) -> list[XfrmSa]:
    """Parse `ip -s xfrm state` (iproute2 6.x layout)."""
    sas: list[XfrmSa] = []
    cur: dict[str, object] | None = None

    def flush() -> None:
        if cur is not None and "spi" in cur:
            sas.append(
                XfrmSa(
                    str(cur["src"]),
                    str(cur["dst"]),
                    str(cur["proto"]),
                    int(str(cur["spi"]), 16),
                    tuple(cur["algs"]),  # type: ignore[arg-type]
                    int(str(cur.get("bytes", 0))),
                    int(str(cur.get("packets", 0))),
                    cur.get("sel"),  # type: ignore[arg-type]
                )
            )

    for line in text.splitlines():
        if m := _SA_HEAD.match(line):
            flush()
            cur = {"src": m[1], "dst": m[2], "algs": []}
        elif cur is None:
            continue
        elif m := _SA_PROTO.match(line):
            cur["proto"], cur["spi"] = m[1], m[2]
        elif m := _SA_ALG.match(line):
            cur["algs"].append(m[1])  # type: ignore[attr-defined]
        elif m := _SA_SEL.match(line):
            cur["sel"] = (m[1], m[2])
        elif (m := _SA_CUR.match(line)) and "bytes" not in cur:
            cur["bytes"], cur["packets"] = m[1], m[2]
    flush()
    return sas


@dataclass(frozen=True)
class EspCounters:
    """ESP packet counters of one gateway: `out` on SAs it sends with, `in` on SAs it receives."""

    out_packets: int
    in_packets: int
    out_sas: int
    in_sas: int
    sas: tuple[XfrmSa, ...] = field(default=(), repr=False)

    @property
    def both_directions(self) -> bool:
        return self.out_packets > 0 and self.in_packets > 0

    def as_dict(self) -> dict[str, object]:
        return {
            "out_packets": self.out_packets,
            "in_packets": self.in_packets,
            "out_sas": self.out_sas,
            "in_sas": self.in_sas,
            "algs": sorted({a for sa in self.sas for a in sa.algs}),
        }


@dataclass
class Topology:
    """gwA/gwB/lanA/lanB. `prefix` keeps names apart from other tests on a shared host
    (inside UML the guest is ours alone and the prefix can stay empty)."""

    prefix: str = ""
    built: bool = False
    ipv6: bool = False  # IPv6 addresses, routes and guards too (the *6 constants)

    @property
    def gw_a(self) -> str:
        return self.prefix + "gwA"

    @property
    def gw_b(self) -> str:
        return self.prefix + "gwB"

    @property
    def lan_a(self) -> str:
        return self.prefix + "lanA"

    @property
    def lan_b(self) -> str:
        return self.prefix + "lanB"

    @property
    def namespaces(self) -> tuple[str, str, str, str]:
        return (self.gw_a, self.gw_b, self.lan_a, self.lan_b)

    def outer(self, gw: str) -> str:
        return {self.gw_a: GW_A_OUTER, self.gw_b: GW_B_OUTER}[gw]

    def outers(self, gw: str) -> set[str]:
        """The gateway's outer addresses, of both families with ipv6."""
        v6 = {self.gw_a: GW_A_OUTER6, self.gw_b: GW_B_OUTER6}[gw]
        return {self.outer(gw), v6} if self.ipv6 else {self.outer(gw)}

    def build(self) -> None:
        """Create namespaces, links, addresses, routes, forwarding and the guard policies."""
        self.destroy()
        a, b, la, lb = self.namespaces
        ip_batch(
            [f"netns add {n}" for n in self.namespaces]
            + [
                f"link add vA netns {a} type veth peer name vB netns {b}",
                f"link add eA netns {a} type veth peer name eth0 netns {la}",
                f"link add eB netns {b} type veth peer name eth0 netns {lb}",
            ]
        )
        self.built = True
        ip_batch(
            [
                "link set lo up",
                f"addr add {GW_A_OUTER}/24 dev vA",
                f"addr add {GW_A_INNER}/24 dev eA",
                "link set vA up",
                "link set eA up",
                f"route add {LAN_B_NET} via {GW_B_OUTER}",
                *self._guard_lines(a),
            ],
            a,
        )
        ip_batch(
            [
                "link set lo up",
                f"addr add {GW_B_OUTER}/24 dev vB",
                f"addr add {GW_B_INNER}/24 dev eB",
                "link set vB up",
                "link set eB up",
                f"route add {LAN_A_NET} via {GW_A_OUTER}",
                *self._guard_lines(b),
            ],
            b,
        )
        ip_batch(
            [
                "link set lo up",
                f"addr add {LAN_A_HOST}/24 dev eth0",
                "link set eth0 up",
                f"route add {LAN_B_NET} via {GW_A_INNER}",
            ],
            la,
        )
        ip_batch(
            [
                "link set lo up",
                f"addr add {LAN_B_HOST}/24 dev eth0",
                "link set eth0 up",
                f"route add {LAN_A_NET} via {GW_B_INNER}",
            ],
            lb,
        )
        for gw in (a, b):
            sysctl_set(gw, "net.ipv4.ip_forward", "1")
        if self.ipv6:
            self._build_ipv6()
        for n in self.namespaces:
            if has_default_route(n):
                self.destroy()
                raise NetnsError(f"default route in {n}: refusing to run (network rule)")

    def _build_ipv6(self) -> None:
        a, b, la, lb = self.namespaces
        ip_batch(
            [
                f"addr add {GW_A_OUTER6}/64 dev vA nodad",
                f"addr add {GW_A_INNER6}/64 dev eA nodad",
                f"route add {LAN_B_NET6} via {GW_B_OUTER6}",
            ],
            a,
        )
        ip_batch(
            [
                f"addr add {GW_B_OUTER6}/64 dev vB nodad",
                f"addr add {GW_B_INNER6}/64 dev eB nodad",
                f"route add {LAN_A_NET6} via {GW_A_OUTER6}",
            ],
            b,
        )
        ip_batch(
            [
                f"addr add {LAN_A_HOST6}/64 dev eth0 nodad",
                f"route add {LAN_B_NET6} via {GW_A_INNER6}",
            ],
            la,
        )
        ip_batch(
            [
                f"addr add {LAN_B_HOST6}/64 dev eth0 nodad",
                f"route add {LAN_A_NET6} via {GW_B_INNER6}",
            ],
            lb,
        )
        for gw in (a, b):
            sysctl_set(gw, "net.ipv6.conf.all.forwarding", "1")

    def destroy(self) -> None:
        for n in self.namespaces:
            if Path(netns_path(n)).exists():
                run(["ip", "netns", "del", n], check=False)
        self.built = False

    def _guard_lines(self, gw: str) -> list[str]:
        own, remote = (LAN_A_NET, LAN_B_NET) if gw == self.gw_a else (LAN_B_NET, LAN_A_NET)
        lines = [
            f"xfrm policy add src {own} dst {remote} proto icmp dir out action block "
            f"priority {GUARD_PRIORITY}"
        ]
        if self.ipv6:
            own6, remote6 = (
                (LAN_A_NET6, LAN_B_NET6) if gw == self.gw_a else (LAN_B_NET6, LAN_A_NET6)
            )
            lines.append(
                f"xfrm policy add src {own6} dst {remote6} proto ipv6-icmp dir out "
                f"action block priority {GUARD_PRIORITY}"
            )
        return lines

    def reset_xfrm(self) -> None:
        """Flush SAs and policies of both gateways and put the guards back."""
        for gw in (self.gw_a, self.gw_b):
            ip_batch(["xfrm state flush", "xfrm policy flush", *self._guard_lines(gw)], gw)

    def ping(
        self,
        count: int = 3,
        interval: float = 0.2,
        wait_s: int = 2,
        src: str | None = None,
        dst: str = LAN_B_HOST,
    ) -> subprocess.CompletedProcess[str]:
        """Ping lanB's host from lanA (default); returns the completed ping (check returncode)."""
        return run(
            ping_argv(dst, count, interval, wait_s),
            src or self.lan_a,
            check=False,
            timeout=count * (interval + wait_s) + 10,
        )

    def guard_blocks(self) -> bool:
        """Self-check with no SA installed: a cleartext ping lanA -> lanB must fail."""
        return self.ping(count=1, wait_s=1).returncode != 0

    def drop_ip_fragments(self) -> None:
        """Make the gateway-to-gateway link drop every IPv4 fragment, as many middleboxes do:
        a tc flower filter on the ingress of both outer interfaces (the sender gets no error,
        as behind a real middlebox; an egress drop would hand it ENOBUFS). Whole datagrams of
        any size still pass. `fragment_drops()` counts what it dropped."""
        for gw, dev in ((self.gw_a, "vA"), (self.gw_b, "vB")):
            run(["tc", "-batch", "-"], gw, input=(
                f"qdisc add dev {dev} clsact\n"
                f"filter add dev {dev} ingress protocol ip pref 1 flower ip_flags frag"
                " action drop\n"
            ))  # fmt: skip

    def allow_ip_fragments(self) -> None:
        """Undo drop_ip_fragments() (deleting the clsact qdisc removes its filters)."""
        for gw, dev in ((self.gw_a, "vA"), (self.gw_b, "vB")):
            run(["tc", "qdisc", "del", "dev", dev, "clsact"], gw, check=False)

    def fragment_drops(self) -> int:
        """IPv4 fragments dropped so far by drop_ip_fragments()' filters, both gateways."""
        total = 0
        for gw, dev in ((self.gw_a, "vA"), (self.gw_b, "vB")):
            out = run(["tc", "-s", "-j", "filter", "show", "dev", dev, "ingress"], gw).stdout
            for f in json.loads(out or "[]"):
                for action in f.get("options", {}).get("actions", []):
                    total += int(action.get("stats", {}).get("drops", 0))
        return total

    def xfrm_state(self, gw: str) -> str:
        return run(["ip", "-n", gw, "-s", "xfrm", "state"]).stdout

    def xfrm_policy(self, gw: str) -> str:
        return run(["ip", "-n", gw, "xfrm", "policy"]).stdout

    def esp_counters(self, gw: str, state_text: str | None = None) -> EspCounters:
        """ESP packet counters of gateway `gw` from `ip -s xfrm state` (or a dump of it)."""
        me = self.outers(gw)
        sas = tuple(
            sa
            for sa in parse_xfrm_state(state_text or self.xfrm_state(gw))
            if sa.proto in ("esp", "ah")
        )
        out = [sa for sa in sas if sa.src in me]
        inn = [sa for sa in sas if sa.dst in me]
        return EspCounters(
            sum(s.packets for s in out), sum(s.packets for s in inn), len(out), len(inn), sas
        )


# Static tunnel-mode ESP SAs (no IKE): key material is fixed test data.
STATIC_ALGS: dict[str, list[str]] = {
    "cbc-hmac": [
        "enc",
        "cbc(aes)",
        "0x" + bytes(range(16)).hex(),
        "auth-trunc",
        "hmac(sha256)",
        "0x" + bytes(range(32)).hex(),
        "128",
    ],
    "gcm": ["aead", "rfc4106(gcm(aes))", "0x" + bytes(range(16)).hex() + "0a0b0c0d", "128"],
}
STATIC_SPI_AB = 0x1000
STATIC_SPI_BA = 0x2000


def add_static_tunnel(topo: Topology, alg: str) -> None:
    """Install hand-made ESP tunnel SAs + policies for lanA <-> lanB on both gateways."""
    a = " ".join(STATIC_ALGS[alg])
    sa_ab = (
        f"xfrm state add src {GW_A_OUTER} dst {GW_B_OUTER} proto esp "
        f"spi {STATIC_SPI_AB:#x} reqid 1 mode tunnel {a}"
    )
    sa_ba = (
        f"xfrm state add src {GW_B_OUTER} dst {GW_A_OUTER} proto esp "
        f"spi {STATIC_SPI_BA:#x} reqid 2 mode tunnel {a}"
    )

    def pol(src: str, dst: str, d: str, ts: str, td: str, reqid: int) -> str:
        return (
            f"xfrm policy add src {src} dst {dst} dir {d} tmpl src {ts} dst {td} "
            f"proto esp reqid {reqid} mode tunnel"
        )

    ip_batch(
        [
            sa_ab,
            sa_ba,
            pol(LAN_A_NET, LAN_B_NET, "out", GW_A_OUTER, GW_B_OUTER, 1),
            pol(LAN_B_NET, LAN_A_NET, "in", GW_B_OUTER, GW_A_OUTER, 2),
            pol(LAN_B_NET, LAN_A_NET, "fwd", GW_B_OUTER, GW_A_OUTER, 2),
        ],
        topo.gw_a,
    )
    ip_batch(
        [
            sa_ab,
            sa_ba,
            pol(LAN_B_NET, LAN_A_NET, "out", GW_B_OUTER, GW_A_OUTER, 2),
            pol(LAN_A_NET, LAN_B_NET, "in", GW_A_OUTER, GW_B_OUTER, 1),
            pol(LAN_A_NET, LAN_B_NET, "fwd", GW_A_OUTER, GW_B_OUTER, 1),
        ],
        topo.gw_b,
    )
