"""Shared pieces of the guest-side e2e scenarios: case records, tunnel checks, capture.

Everything here runs inside the UML guest (a kernel with ESP), in the gwA/gwB/lanA/lanB
topology of harness.netns. Results are plain dicts so they travel back to pytest as JSON.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import netns as nsmod
from harness import uml
from harness.peer_ikepriv import Ikepriv
from harness.peers import CHARON, LSW_ROOT, Peer

# a second host on each LAN, for a phase 2 that covers only the upper half of each /24
LAN_A_HOST_HI = "198.51.100.200"
LAN_B_HOST_HI = "203.0.113.200"
LAN_A_LO, LAN_A_HI = "198.51.100.0/25", "198.51.100.128/25"
LAN_B_LO, LAN_B_HI = "203.0.113.0/25", "203.0.113.128/25"

ROLE_LETTER = {"initiator": "i", "responder": "r"}


def add_hi_hosts(topo: nsmod.Topology) -> None:
    """A second address on each LAN host (same /24, so the existing routes cover it)."""
    nsmod.ip_batch([f"addr add {LAN_A_HOST_HI}/24 dev eth0"], topo.lan_a)
    nsmod.ip_batch([f"addr add {LAN_B_HOST_HI}/24 dev eth0"], topo.lan_b)


@dataclass
class Case:
    """One named case: problems found, timings, free-form details; never raises."""

    name: str
    why: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def check(self, cond: bool, problem: str) -> bool:
        if not cond:
            self.why.append(f"[{self.steps[-1] if self.steps else '-'}] {problem}")
        return cond

    def step(self, text: str) -> None:
        self.steps.append(text)

    def timed(self, key: str, since: float) -> None:
        self.times[key] = round(time.monotonic() - since, 3)

    def result(self, peers: Sequence[Peer] = ()) -> dict[str, Any]:
        self.times["total"] = round(time.monotonic() - self.t0, 3)
        return {
            "ok": not self.why,
            "why": self.why,
            "times": self.times,
            "details": self.details,
            "steps": self.steps,
            "log_tails": {p.spec.name: p.log_tail(25) for p in peers} if self.why else {},
        }


@contextmanager
def guarded(case: Case) -> Iterator[None]:
    """An exception inside a case becomes a problem of that case, with its traceback."""
    try:
        yield
    except Exception as e:
        case.why.append(
            f"[{case.steps[-1] if case.steps else '-'}] exception {e!r}\n"
            + traceback.format_exc()[-3000:]
        )


def ping(
    topo: nsmod.Topology,
    *,
    count: int = 3,
    src_addr: str | None = None,
    dst: str = nsmod.LAN_B_HOST,
    interval: float = 0.2,
    wait_s: int = 2,
) -> subprocess.CompletedProcess[str]:
    """Ping from lanA (from `src_addr` if given) to `dst` in lanB."""
    argv = nsmod.ping_argv(dst, count, interval, wait_s)
    if src_addr:
        argv[1:1] = ["-I", src_addr]
    return nsmod.run(argv, topo.lan_a, check=False, timeout=count * (interval + wait_s) + 10)


def ping_stats(text: str) -> tuple[int, int]:
    """(transmitted, received) from ping's summary line; (0, 0) if absent."""
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", text)
    return (int(m[1]), int(m[2])) if m else (0, 0)


def esp_totals(topo: nsmod.Topology) -> dict[str, dict[str, int]]:
    out = {}
    for gw in (topo.gw_a, topo.gw_b):
        c = topo.esp_counters(gw)
        out[gw] = {
            "out_packets": c.out_packets,
            "in_packets": c.in_packets,
            "out_sas": c.out_sas,
            "in_sas": c.in_sas,
        }
    return out


def guards_present(topo: nsmod.Topology) -> bool:
    """Both gateways still have their blocking guard policy (nothing removed it)."""

    def has_guard(text: str) -> bool:
        blocks = text.split("\nsrc ")
        return any(f"priority {nsmod.GUARD_PRIORITY}" in b and "action block" in b for b in blocks)

    return all(has_guard(topo.xfrm_policy(gw)) for gw in (topo.gw_a, topo.gw_b))


def check_esp_ping(
    case: Case,
    topo: nsmod.Topology,
    *,
    src_addr: str | None = None,
    dst: str = nsmod.LAN_B_HOST,
    label: str = "ping",
) -> None:
    """A LAN-to-LAN ping succeeds and the ESP counters of both gateways rise both ways."""
    before = esp_totals(topo)
    r = ping(topo, src_addr=src_addr, dst=dst)
    after = esp_totals(topo)
    case.details[f"{label}_esp"] = after
    if not case.check(
        r.returncode == 0,
        f"{label} {src_addr or 'lanA'} -> {dst} failed: {(r.stdout + r.stderr)[-300:]}",
    ):
        return
    for gw in after:
        for k in ("out_packets", "in_packets"):
            case.check(
                after[gw][k] > before[gw][k],
                f"{label}: {gw} ESP {k} did not rise ({before[gw][k]} -> {after[gw][k]})",
            )


def check_blocked(
    case: Case,
    topo: nsmod.Topology,
    *,
    src_addr: str | None = None,
    dst: str = nsmod.LAN_B_HOST,
    label: str = "ping",
) -> None:
    r = ping(topo, count=1, src_addr=src_addr, dst=dst, wait_s=1)
    case.check(
        r.returncode != 0,
        f"{label} {src_addr or 'lanA'} -> {dst} passed without a tunnel (guard policy missing?)",
    )


def check_listing(case: Case, peer: Ikepriv, p1: Sequence[str], p2: Sequence[str]) -> None:
    """The real `ike cmd=list json`: exactly these phase 1 / phase 2 names established, with
    this side's role and gateway addresses."""
    rc, rows, err = peer.list_json()
    side = peer.spec.name
    case.details[f"list_{side}"] = [
        {
            k: r.get(k)
            for k in ("phase", "tunnel_id", "name", "role", "state", "local_addr", "remote_addr")
        }
        for r in rows
    ]
    if not case.check(rc == 0, f"{side}: ike cmd=list json rc {rc}: {err.strip()}"):
        return
    for phase, names in ((1, p1), (2, p2)):
        got = sorted(r["name"] for r in rows if r["phase"] == phase)
        est = sorted(r["name"] for r in rows if r["phase"] == phase and r["state"] == "established")
        case.check(
            est == sorted(names) and got == sorted(names),
            f"{side}: phase {phase} rows {got} (established {est}), "
            f"want {sorted(names)} established",
        )
    for r in rows:
        case.check(
            r["role"] == ROLE_LETTER[peer.spec.role],
            f"{side}: row {r['name']} role {r['role']!r}, want {ROLE_LETTER[peer.spec.role]!r}",
        )
        case.check(
            r["local_addr"] == peer.spec.local and r["remote_addr"] == peer.spec.remote,
            f"{side}: row {r['name']} addresses {r['local_addr']} -> {r['remote_addr']}",
        )


def kernel_log_tail(lines: int = 40) -> list[str]:
    """The guest kernel's last messages (OOM kills, seccomp audit lines), for diagnosis."""
    exe = shutil.which("dmesg") or shutil.which("dmesg", path="/run/rk/bin")
    if exe is None:
        return []
    r = subprocess.run([exe], capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
    return r.stdout.splitlines()[-lines:]


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def esp_sa_count(topo: nsmod.Topology, gw: str) -> int:
    c = topo.esp_counters(gw)
    return c.in_sas + c.out_sas


# --- capture: AF_PACKET on one interface of one namespace, written as pcap ------------------

ETH_P_ALL = 0x0003
LINKTYPE_ETHERNET = 1


class Capture:
    """Every frame on `ifname` in `netns` (both directions), into a classic pcap file."""

    def __init__(self, netns: str, ifname: str, path: Path) -> None:
        self.path = path
        self.frames = 0
        self._stop = threading.Event()
        with nsmod.in_netns(netns):
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.bind((ifname, 0))
        self._sock.settimeout(0.1)
        self._out = open(path, "wb")
        self._out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            now = time.time()
            sec = int(now)
            self._out.write(
                struct.pack("<IIII", sec, int((now - sec) * 1e6), len(data), len(data)) + data
            )
            self.frames += 1

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()
        self._out.close()
        return self.frames


# --- the daemon's sandboxed child -----------------------------------------------------------

_STATUS_KEYS = (
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
)


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in _STATUS_KEYS:
            out[key] = value.strip()
    return out


def sandbox_facts(pid: int, parent: int) -> dict[str, Any]:
    """What /proc says about the child's confinement, next to its parent's namespace/root."""
    facts: dict[str, Any] = {"status": proc_status(pid)}
    for what in ("net", "mnt", "user"):
        try:
            facts[f"ns_{what}_same_as_parent"] = os.readlink(
                f"/proc/{pid}/ns/{what}"
            ) == os.readlink(f"/proc/{parent}/ns/{what}")
        except OSError as e:
            facts[f"ns_{what}_same_as_parent"] = f"error {e}"
    try:
        facts["root"] = os.readlink(f"/proc/{pid}/root")
    except OSError as e:
        facts["root"] = f"error {e}"
    try:
        facts["fds"] = sorted(int(f) for f in os.listdir(f"/proc/{pid}/fd"))
    except OSError as e:
        facts["fds"] = f"error {e}"
    try:
        facts["cmdline"] = (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode(errors="replace")[:300]
        )
    except OSError as e:
        facts["cmdline"] = f"error {e}"
    return facts


def boot_scenarios(
    module: str,
    function: str,
    *,
    timeout: float,
    names_env: str | None = None,
    libreswan: bool = True,
    certutil: bool = False,
    tier: str = "interop tier",
) -> dict[str, Any]:
    """The host side of one UML boot running a scenario catalogue: skip (naming what is
    missing) without the peers it needs, boot, run `module.function(names, logs)` in the
    guest and return its result. `names_env`: an environment variable holding a
    comma-separated subset of scenarios, for debugging. $IKEPRIV_UML_LOGS keeps the logs."""
    import pytest  # the guest imports this module too, and has no use for pytest

    missing = uml.missing_prerequisites()
    if not os.access(CHARON, os.X_OK) or shutil.which("swanctl") is None:
        missing.append("strongSwan (strongswan-charon, strongswan-swanctl)")
    if libreswan and not (LSW_ROOT / "usr/libexec/ipsec/pluto").exists():
        missing.append(f"libreswan in {LSW_ROOT} (scripts/install-libreswan.sh)")
    if certutil and shutil.which("certutil") is None:
        missing.append("certutil (libnss3-tools)")
    if missing:
        pytest.skip(f"{tier} needs: {', '.join(missing)}")
    logs = os.environ.get("IKEPRIV_UML_LOGS")
    if logs:
        Path(logs).mkdir(parents=True, exist_ok=True)
    names = os.environ.get(names_env) if names_env else None
    subset = names.split(",") if names else None
    rw_dirs = [Path(logs)] if logs else []
    value, run = uml.run_function(module, function, subset, logs, timeout=timeout, rw_dirs=rw_dirs)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert isinstance(value, dict)
    print(f"\nguest: kernel {value['kernel']}, all scenarios {value['guest_s']}s")
    return value
