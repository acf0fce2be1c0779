"""ESP through ikepriv's own XFRM layer, in a kernel that has ESP (run inside UML).

    run-in-kernel.sh /work/main/.venv/bin/python tests/realkernel/xfrm_in_kernel.py [CASE...]

Two namespaces joined by a veth pair:

    [left]  lo 198.51.100.1/32, veth 192.0.2.1/24  ==  192.0.2.2/24 veth, lo 203.0.113.1/32 [right]

For each case, SAs and in/out/fwd policies are installed on both sides with
ikepriv.parent_kernel.kernel.client (inbound SPIs through alloc_spi + update_sa, as the daemon does;
outbound through add_sa), `ping -I 198.51.100.1 203.0.113.1` must succeed, the packet
counters from list_sas() must have risen on all four SAs, and after the deletes nothing of
ours may be left.  Prints one PASS/FAIL line per check; exits 0 only if all passed.

Cases: cbc-hmac (AES-CBC + HMAC-SHA256, plus a soft packet limit that must produce an
EXPIRE event), gcm (AES-GCM-128, 64-packet replay window), natt (AES-CBC + HMAC-SHA256 in
UDP 4500/4500), v6 (AES-GCM-128 over IPv6 outer and inner addresses), ah (AH with
HMAC-SHA1-96, tunnel mode), transport (AES-GCM-128 in transport mode between the veth
addresses, SA selectors set).
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ikepriv.isakmp.constants import IpProtocol
from ikepriv.parent_kernel.kernel.client import XfrmKernel
from ikepriv.parent_kernel.kernel.events import XfrmEvents
from ikepriv.parent_kernel.kernel.specs import (
    Aead,
    Encap,
    Encryption,
    Expire,
    Integrity,
    Lifetime,
    PolicySpec,
    SaSpec,
    SelectorSpec,
    Template,
    XfrmError,
)
from ikepriv.parent_kernel.kernel.xfrm_messages import Direction, XfrmMode

CLONE_NEWNET = 0x40000000
SOL_UDP = 17
UDP_ENCAP = 100
UDP_ENCAP_ESPINUDP = 2
PINGS = 3
EVENT_WAIT_S = 5.0

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Side:
    ns: str
    outer: str  # veth address
    inner: str  # the "LAN" address on lo
    outer_prefix: int
    inner_prefix: int


@dataclass(frozen=True)
class Net:
    left: Side
    right: Side
    family: int

    def sides(self) -> tuple[tuple[Side, Side], tuple[Side, Side]]:
        return ((self.left, self.right), (self.right, self.left))


NS_L = "ikx-left"
NS_R = "ikx-right"
V4 = Net(
    Side(NS_L, "192.0.2.1", "198.51.100.1", 24, 32),
    Side(NS_R, "192.0.2.2", "203.0.113.1", 24, 32),
    socket.AF_INET,
)
V6 = Net(
    Side(NS_L, "2001:db8::1", "2001:db8:a::1", 64, 128),
    Side(NS_R, "2001:db8::2", "2001:db8:b::1", 64, 128),
    socket.AF_INET6,
)

results: list[tuple[bool, str]] = []


def check(ok: bool, what: str) -> bool:
    results.append((ok, what))
    print(f"{'PASS' if ok else 'FAIL'} {what}", flush=True)
    return ok


@contextmanager
def in_netns(name: str) -> Iterator[None]:
    """The calling thread in netns `name`; sockets opened inside stay bound to it."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {name}")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(fd)
        os.close(home)


def ip_batch(lines: list[str], ns: str | None = None) -> None:
    """One `ip -batch` exec for many commands: every exec costs 30-100 ms under UML."""
    argv = ["ip", *(["-n", ns] if ns else []), "-batch", "-"]
    subprocess.run(argv, input="\n".join(lines) + "\n", text=True, check=True)  # noqa: S603


def build() -> None:
    ip_batch(
        [
            f"netns add {NS_L}",
            f"netns add {NS_R}",
            f"link add vl netns {NS_L} type veth peer name vr netns {NS_R}",
        ]
    )
    for (side, peer), (v6, v6peer), dev in zip(V4.sides(), V6.sides(), ("vl", "vr"), strict=True):
        ip_batch(
            [
                "link set lo up",
                f"addr add {side.inner}/32 dev lo",
                f"addr add {v6.inner}/128 dev lo",
                f"addr add {side.outer}/24 dev {dev}",
                f"addr add {v6.outer}/64 dev {dev} nodad",
                f"link set {dev} up",
                f"route add {peer.inner}/32 via {peer.outer}",
                f"route add {v6peer.inner}/128 via {v6peer.outer}",
            ],
            ns=side.ns,
        )


def destroy() -> None:
    for ns in (NS_L, NS_R):
        if os.path.exists(f"/run/netns/{ns}"):
            subprocess.run(["ip", "netns", "del", ns], check=False)  # noqa: S603, S607


def ping(case: Case) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("ping") or shutil.which("ping", path="/run/rk/bin")
    if exe is None:
        raise SystemExit("FAIL no ping (busybox) in the guest")
    src, dst = case.endpoints()
    argv = [exe, "-c", str(PINGS), "-W", "2", "-I", src, dst]
    if case.net.family == socket.AF_INET6:
        argv.insert(1, "-6")
    with in_netns(NS_L):
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603


# ----------------------------------------------------------------------------------------------
# Cases: what goes into the SAs


@dataclass(frozen=True)
class Case:
    name: str
    net: Net
    make_algs: Callable[[int], dict[str, object]]  # SA kwargs per direction index
    encap: bool = False
    replay_window: int = 32
    soft_packets: int | None = None
    proto: IpProtocol = IpProtocol.ESP
    mode: XfrmMode = XfrmMode.TUNNEL

    def endpoints(self) -> tuple[str, str]:
        """What the ping runs between: the LAN addresses, or the gateways for transport."""
        if self.mode == XfrmMode.TRANSPORT:
            return self.net.left.outer, self.net.right.outer
        return self.net.left.inner, self.net.right.inner


def cbc_hmac(i: int) -> dict[str, object]:
    return {
        "encryption": Encryption("cbc(aes)", bytes([0x10 + i]) * 16),
        "integrity": Integrity("hmac(sha256)", bytes([0x20 + i]) * 32, 128),
    }


def gcm(i: int) -> dict[str, object]:
    return {"aead": Aead("rfc4106(gcm(aes))", bytes([0x30 + i]) * 20, 128)}


def ah_sha1(i: int) -> dict[str, object]:
    return {"integrity": Integrity("hmac(sha1)", bytes([0x40 + i]) * 20, 96)}


CASES = {
    "cbc-hmac": Case("cbc-hmac", V4, cbc_hmac, soft_packets=2),
    "gcm": Case("gcm", V4, gcm, replay_window=64),
    "natt": Case("natt", V4, cbc_hmac, encap=True),
    "v6": Case("v6", V6, gcm),
    "ah": Case("ah", V4, ah_sha1, proto=IpProtocol.AH),
    "transport": Case("transport", V4, gcm, mode=XfrmMode.TRANSPORT),
}


def addr(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def net_of(side: Side) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(f"{side.inner}/{side.inner_prefix}")


def host_net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)  # a bare address: /32 or /128


def policies(case: Case, local: Side, remote: Side, reqid: int) -> list[PolicySpec]:
    if case.mode == XfrmMode.TRANSPORT:
        out_sel = SelectorSpec(host_net(local.outer), host_net(remote.outer))
        in_sel = SelectorSpec(host_net(remote.outer), host_net(local.outer))
        tmpl = Template(proto=case.proto, mode=XfrmMode.TRANSPORT, reqid=reqid)
        return [
            PolicySpec(out_sel, Direction.OUT, priority=100, templates=(tmpl,)),
            PolicySpec(in_sel, Direction.IN, priority=100, templates=(tmpl,)),
        ]
    out_sel = SelectorSpec(net_of(local), net_of(remote))
    in_sel = SelectorSpec(net_of(remote), net_of(local))
    to_remote = Template(
        proto=case.proto, src=addr(local.outer), dst=addr(remote.outer), reqid=reqid
    )
    from_remote = Template(
        proto=case.proto, src=addr(remote.outer), dst=addr(local.outer), reqid=reqid
    )
    return [
        PolicySpec(out_sel, Direction.OUT, priority=100, templates=(to_remote,)),
        PolicySpec(in_sel, Direction.IN, priority=100, templates=(from_remote,)),
        PolicySpec(in_sel, Direction.FWD, priority=100, templates=(from_remote,)),
    ]


@dataclass
class Installed:
    kernel: XfrmKernel
    side: Side
    proto: IpProtocol
    sas: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]]
    pols: list[PolicySpec]


def install(case: Case, kernels: dict[str, XfrmKernel]) -> tuple[list[Installed], int]:
    """Both sides; returns the installation record and the SPI of left's outbound SA."""
    reqid = 42
    left, right = case.net.left, case.net.right
    # inbound SPIs are allocated by the receiver, as the daemon does
    spi_l_in = kernels[left.ns].alloc_spi(
        addr(right.outer), addr(left.outer), case.proto, reqid, mode=case.mode
    )
    spi_r_in = kernels[right.ns].alloc_spi(
        addr(left.outer), addr(right.outer), case.proto, reqid, mode=case.mode
    )
    flows = [  # (sender, receiver, spi, key index)
        (left, right, spi_r_in, 0),
        (right, left, spi_l_in, 1),
    ]
    done = {
        left.ns: Installed(kernels[left.ns], left, case.proto, [], []),
        right.ns: Installed(kernels[right.ns], right, case.proto, [], []),
    }
    for sender, receiver, spi, i in flows:
        common: dict[str, object] = {
            "src": addr(sender.outer),
            "dst": addr(receiver.outer),
            "proto": case.proto,
            "spi": spi,
            "mode": case.mode,
            "reqid": reqid,
            "replay_window": case.replay_window,
            **case.make_algs(i),
        }
        if case.encap:
            common["encap"] = Encap(4500, 4500)
        if case.mode == XfrmMode.TRANSPORT:
            common["selector"] = SelectorSpec(host_net(sender.outer), host_net(receiver.outer))
        out_kwargs = dict(common)
        if case.soft_packets and sender is left:
            out_kwargs["lifetime"] = Lifetime(soft_packets=case.soft_packets)
        kernels[sender.ns].add_sa(SaSpec(**out_kwargs))  # type: ignore[arg-type]
        kernels[receiver.ns].update_sa(SaSpec(**common))  # type: ignore[arg-type]
        done[sender.ns].sas.append((addr(receiver.outer), spi))
        done[receiver.ns].sas.append((addr(receiver.outer), spi))
    for local, remote in case.net.sides():
        for spec in policies(case, local, remote, reqid):
            kernels[local.ns].add_policy(spec)
            done[local.ns].pols.append(spec)
    return list(done.values()), spi_r_in


def counters(inst: Installed) -> dict[int, int]:
    wanted = {spi for _, spi in inst.sas}
    return {r.spi: r.packets for r in inst.kernel.list_sas() if r.spi in wanted}


def remove(inst: Installed) -> None:
    for dst, spi in inst.sas:
        inst.kernel.delete_sa(dst, spi, inst.proto)
    for spec in inst.pols:
        inst.kernel.delete_policy(spec.selector, spec.direction)


@contextmanager
def encap_sockets(case: Case) -> Iterator[None]:
    """ESP-in-UDP is only decapsulated for a UDP socket on the port that asked for it."""
    socks = []
    try:
        if case.encap:
            for ns in (NS_L, NS_R):
                with in_netns(ns):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
                s.bind(("0.0.0.0", 4500))  # noqa: S104  (inside a test namespace)
                socks.append(s)
        yield
    finally:
        for s in socks:
            s.close()


def run_case(case: Case, kernels: dict[str, XfrmKernel]) -> None:
    tag = case.name
    events = None
    if case.soft_packets:
        with in_netns(NS_L):
            events = XfrmEvents()
    try:
        installed, out_spi = install(case, kernels)
    except XfrmError as exc:
        check(False, f"{tag}: install: {exc}")
        if events:
            events.close()
        return
    check(True, f"{tag}: SAs and policies installed on both sides")
    try:
        with encap_sockets(case):
            before = {i.side.ns: counters(i) for i in installed}
            p = ping(case)
            after = {i.side.ns: counters(i) for i in installed}
        check(
            p.returncode == 0,
            f"{tag}: ping {' -> '.join(case.endpoints())} "
            f"rc={p.returncode} {p.stdout.strip().splitlines()[-1:] or p.stderr.strip()}",
        )
        for inst in installed:
            rose = {
                spi: after[inst.side.ns].get(spi, 0) - before[inst.side.ns].get(spi, 0)
                for _, spi in inst.sas
            }
            check(
                len(rose) == 2 and all(n >= PINGS for n in rose.values()),
                f"{tag}: {inst.side.ns} SA packet counters rose {rose}",
            )
        for inst in installed:  # the counters alone (ike cmd=list verbose) say the same
            full = {r.spi: (r.bytes, r.packets) for r in inst.kernel.list_sas()}
            light = {c.spi: (c.bytes, c.packets) for c in inst.kernel.sa_counters()}
            check(
                light == full and all(light[spi][1] >= PINGS for _, spi in inst.sas),
                f"{tag}: {inst.side.ns} sa_counters agree with list_sas {light}",
            )
        if case.net is V4 and case.name != "natt":
            sa = kernels[NS_L].get_sa(addr(V4.right.outer), out_spi, case.proto)
            check(
                sa is not None
                and sa.replay_window == case.replay_window
                and not sa.larval
                and sa.encap is None,
                f"{tag}: get_sa reports window {sa.replay_window if sa else None}",
            )
        if case.encap:
            sa = kernels[NS_L].get_sa(addr(V4.right.outer), out_spi, IpProtocol.ESP)
            check(
                sa is not None and sa.encap == Encap(4500, 4500),
                f"{tag}: SA reports UDP encapsulation {sa.encap if sa else None}",
            )
        if events is not None:
            got = events.recv_events(timeout=EVENT_WAIT_S)
            soft = [e for e in got if isinstance(e, Expire) and not e.hard]
            check(
                any(e.spi == out_spi and e.packets >= (case.soft_packets or 0) for e in soft),
                f"{tag}: soft EXPIRE event for SPI {out_spi:#x}: {soft}",
            )
    finally:
        if events is not None:
            events.close()
        for inst in installed:
            try:
                remove(inst)
            except XfrmError as exc:
                check(False, f"{tag}: delete on {inst.side.ns}: {exc}")
    for inst in installed:
        left_sas = counters(inst)
        left_pols = [
            p
            for p in inst.kernel.list_policies()
            if (p.selector, p.direction) in {(s.selector, s.direction) for s in inst.pols}
        ]
        check(
            not left_sas and not left_pols,
            f"{tag}: {inst.side.ns} clean after delete (SAs {left_sas}, policies {left_pols})",
        )


def main(argv: list[str]) -> int:
    names = argv or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown case(s) {unknown}; known: {list(CASES)}", file=sys.stderr)
        return 2
    destroy()
    build()
    kernels: dict[str, XfrmKernel] = {}
    try:
        for ns in (NS_L, NS_R):
            with in_netns(ns):
                kernels[ns] = XfrmKernel()
        for name in names:
            run_case(CASES[name], kernels)
    finally:
        for k in kernels.values():
            k.close()
        destroy()
    failed = [what for ok, what in results if not ok]
    print(
        f"{'PASS' if not failed else 'FAIL'} xfrm_in_kernel: {len(results) - len(failed)}/"
        f"{len(results)} checks passed",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
