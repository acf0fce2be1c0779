"""Many tunnels held by one daemon: memory per tunnel, listing time, rekeys (issue 11 goal 4).

    sudo .venv/bin/python bench/tunnels.py host [--tunnels 10000] [--peers 250] [--window 32]
        [--qm-seconds 60] [--responders ikepriv,strongswan] [--out results.json]
    sudo .venv/bin/python bench/tunnels.py uml [--tunnels 1000] [--mem 2G] [--p2-lifetime 300]
        [--p2-margin 60] [--hold 420]

`host`: on this machine (XFRM but no ESP). A real ikeprivd (default negotiator children, one
per CPU) answers; ikepriv's own negotiation core (bench/core_initiator.py) initiates from
PEERS addresses (192.0.2.1, 192.0.2.3 ..), TUNNELS / PEERS tunnels per address, each its own
phase 1 definition on the initiator (so its own ISAKMP SA: one peer opens many in parallel)
and its own phase 2 selectors (198.51.100.<peer+1>/32 <-> 203.0.113.<k+1>/32); the
responder has one phase 1 definition per address and one phase 2 definition per selector
pair. Measured: PSS and RSS of the parent and each child with 0 and with N ISAKMP SAs held,
bytes per tunnel; `ike cmd=list`, `ike cmd=list phase=1+ verbose json` and
`ike cmd=list stats` wall time and CPU (ike's and the daemon's) with N held; then the Quick
Modes for QM_SECONDS: on this host each one is negotiated in full and then refused at the
kernel SA add (EPROTONOSUPPORT, no ESP), so none stays. The same N phase 1 against a
strongSwan 5.9.8 charon responder (as bench/load.py starts it) for its memory per IKE SA.

`uml`: boots User Mode Linux (tests/realkernel/run-in-kernel.sh, guest RAM --mem) and runs
`guest` there: the same set-up with real kernel SAs, phase 1 then phase 2 for every tunnel,
the initiator's phase 2 lifetime short (--p2-lifetime, --p2-margin) so that every phase 2 is
rekeyed (by the initiator, spread out by the rekey margin and its random share) during
--hold seconds. Reported: pairs established, rekeys done and failed, kernel SAs and
policies, memory, listing time.

Network: two namespaces of its own (bench/load.py `namespaces`), addresses from
192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24 only, no default route; processes stopped
by PID. Prints figures, never passes or fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load
from load import (
    IP,
    RESPONDER_ADDR,
    SWANCTL,
    Ikepriv,
    Processes,
    children_of,
    cpu_seconds,
    namespaces,
    peer_addr,
    responder_swanctl,
    run_tool,
    start_charon,
    strongswan_conf,
    strongswan_held,
)
from load_auth import PSK

IKE = "aes128-sha256-modp2048"
ESP = "aes128-sha256"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SWAN_PLUGINS = "random nonce openssl kdf kernel-netlink socket-default vici"


# memory ----------------------------------------------------------------------------------------
def memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in kB from /proc/PID/smaps_rollup."""
    got = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Pss", "Rss"):
                got[key] = int(rest.split()[0])
    return got.get("Pss", 0), got.get("Rss", 0)


def memory(pids: dict[str, int]) -> dict[str, tuple[int, int]]:
    return {name: memory_kb(pid) for name, pid in pids.items()}


PAGEMAP_PRESENT = 1 << 63
PAGEMAP_PFN = (1 << 55) - 1


def resident_across_kb(pids: dict[str, int]) -> int:
    """kB of physical memory the daemon's processes have resident, each page counted once
    however many of them map it (/proc/PID/pagemap frame numbers; root). RSS counts a
    shared page (libcrypto, libpython) in every process, PSS splits it among all the
    processes in the machine that map it; this is what the parent and children hold
    between them: "resident across parent and children"."""
    frames: set[int] = set()
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in pids.values():
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for line in maps:
                span, _, rest = line.partition(" ")
                if rest.rstrip().endswith("[vsyscall]"):
                    continue
                start, end = (int(x, 16) for x in span.split("-"))
                pagemap.seek(start // page * 8)
                raw = pagemap.read((end - start) // page * 8)
                for (entry,) in struct.iter_unpack("=Q", raw):
                    if entry & PAGEMAP_PRESENT:
                        frames.add(entry & PAGEMAP_PFN)
    return len(frames) * page // 1024


def total(mem: dict[str, tuple[int, int]], which: int) -> int:
    return sum(v[which] for v in mem.values())


# the initiator (runs in its namespace) --------------------------------------------------------
def initiator_main(args: argparse.Namespace) -> None:
    """Core initiator driven by commands on stdin: `phase1`, `phase2 SECONDS`, `hold SECONDS`,
    `quit`; each answered by one `DONE {json}` line (PROGRESS lines before it)."""
    from core_initiator import CoreInitiator, Load

    from ikepriv.child_negotiator.core.states import ChildState
    from ikepriv.ipc.messages import StateReport, TunnelState

    class Holder(CoreInitiator):
        """Counts phase 2 establishments that nobody initiated here: rekeys."""

        def __init__(self, a: argparse.Namespace) -> None:
            super().__init__(a)
            self.rekeys = 0
            self.p2_failed = 0
            self.p2_up: set[int] = set()

        def on_report(self, report: StateReport) -> None:
            if report.phase == 2 and report.state is TunnelState.FAILED:
                self.p2_failed += 1
            if report.phase == 2 and report.state is TunnelState.ESTABLISHED:
                if report.number not in self.load.pending and report.number in self.p2_up:
                    self.rekeys += 1
                self.p2_up.add(report.number)
            super().on_report(report)

    args.per_peer = args.tunnels // args.peers
    args.distinct = True
    init = Holder(args)
    numbers = init.numbers
    stdin = sys.stdin.fileno()
    print("READY", flush=True)

    def stage(phase: int, seconds: float) -> dict[str, object]:
        init.phase = phase
        init.load = Load()
        cpu0, t0 = time.process_time(), time.monotonic()
        elapsed = init.run(numbers, args.window, seconds, progress=True)
        return {
            "started": init.load.started,
            "ok": init.load.ok,
            "failed": init.load.failed,
            "elapsed": elapsed,
            "cpu_s": time.process_time() - cpu0,
            "p50_ms": 1000 * statistics.median(init.load.latencies) if init.load.ok else None,
            "wall": time.monotonic() - t0,
        }

    def hold(seconds: float) -> dict[str, object]:
        rekeys0, failed0 = init.rekeys, init.p2_failed
        deadline = time.monotonic() + seconds
        next_progress = time.monotonic() + 10
        while time.monotonic() < deadline:
            init.poll(0.2)
            if time.monotonic() >= next_progress:
                print(f"PROGRESS rekeys {init.rekeys - rekeys0}", flush=True)
                next_progress += 10
        return {"rekeys": init.rekeys - rekeys0, "p2_failed": init.p2_failed - failed0}

    while True:
        if not init.poll(0.2, (stdin,)):
            continue
        words = sys.stdin.readline().split()
        if not words or words[0] == "quit":
            return
        if words[0] == "phase1":
            result = stage(1, 1e9)
        elif words[0] == "phase2":
            result = stage(2, float(words[1]))
        else:
            result = hold(float(words[1]))
        result |= {
            "p2_definitions_up": len(
                {
                    c.definition.number
                    for c in init.core.sas.children.values()
                    if c.state is ChildState.ESTABLISHED
                }
            ),
            "rekeys_total": init.rekeys,
            "p2_failed_total": init.p2_failed,
            "counters": {k: v for k, v in init.core.counters.as_dict().items() if v},
        }
        print("DONE " + json.dumps(result), flush=True)


class Initiator:
    """bench/tunnels.py initiator in namespace `ns`, spoken to line by line."""

    def __init__(self, procs: Processes, ns: str, d: Path, args: argparse.Namespace) -> None:
        argv = [IP, "netns", "exec", ns, sys.executable, str(Path(__file__)), "initiator"]
        argv += ["--tunnels", str(args.tunnels), "--peers", str(args.peers)]
        argv += ["--window", str(args.window), "--p2-lifetime", str(args.p2_lifetime)]
        argv += ["--p2-margin", str(args.p2_margin)]
        self.proc = procs.start_piped(argv, d / "initiator.log")
        self.log = d / "initiator.log"
        if self._line() != "READY":
            raise RuntimeError("initiator failed:\n" + self.log.read_text()[-2000:])

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().decode().strip()

    def command(self, text: str, progress: Callable[[str], None] = print) -> dict[str, object]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            line = self._line()
            if line.startswith("DONE "):
                result: dict[str, object] = json.loads(line[5:])
                return result
            if not line:
                raise RuntimeError("initiator ended:\n" + self.log.read_text()[-2000:])
            progress(line)


def progress_every(seconds: float) -> Callable[[str], None]:
    last = [0.0]

    def show(line: str) -> None:
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            print(f"    {line}", flush=True)

    return show


class Sampler:
    """PSS and RSS (all of `pids`) and the SAs held, every 2 s while a load runs: the slope of
    memory over SAs held is the cost per SA even if the responder drops some on the way."""

    def __init__(self, pids: dict[str, int], held: Callable[[], int]) -> None:
        self.pids, self.held = pids, held
        self.samples: list[tuple[float, int, int, int]] = []  # t, held, PSS kB, RSS kB
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(2.0):
            mem = memory(self.pids)
            self.samples.append(
                (time.monotonic() - self.t0, self.held(), total(mem, 0), total(mem, 1))
            )

    def stop(self) -> dict[str, object]:
        self.done.set()
        self.thread.join()
        pts = [(h, pss, rss) for _, h, pss, rss in self.samples]
        return {
            "samples": self.samples,
            "held_max": max((h for h, _, _ in pts), default=0),
            "pss_bytes_per_sa": slope([(h, pss) for h, pss, _ in pts]),
            "rss_bytes_per_sa": slope([(h, rss) for h, _, rss in pts]),
        }


def slope(pts: list[tuple[int, int]]) -> float | None:
    """Least-squares slope of kB over SAs held, in bytes per SA."""
    if len(pts) < 3 or max(x for x, _ in pts) - min(x for x, _ in pts) < 100:
        return None
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return 1024 * sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else None


# the responders -------------------------------------------------------------------------------
def definitions(args: argparse.Namespace) -> list[str]:
    """One phase 1 definition per initiator address, one phase 2 per selector pair; in
    files of 20 addresses each (ikedb reads at most 1 MiB per file)."""
    per_peer = args.tunnels // args.peers
    files: list[str] = []
    for first in range(0, args.peers, 20):
        out = []
        for j in range(first, min(first + 20, args.peers)):
            out.append(
                f'[[phase1]]\nname = "peer{j}"\nlocal_addr = "{RESPONDER_ADDR}"\n'
                f'remote_addr = "{peer_addr(j)}"\nmode = "main"\npsk = "{PSK}"\n'
                f'proposals = ["{IKE}"]\ndpd_delay = 0\n\n'
            )
            for k in range(per_peer):
                out.append(
                    f'[[phase2]]\nname = "peer{j}-{k}"\nphase1 = "peer{j}"\n'
                    f'local_subnet = "203.0.113.{k + 1}/32"\n'
                    f'remote_subnet = "198.51.100.{j + 1}/32"\nproposals = ["{ESP}"]\n'
                    f"lifetime = {args.p2_lifetime}\n"
                    + (f"rekey_margin = {args.p2_margin}\n" if args.p2_margin else "")
                    + "\n"
                )
        files.append("".join(out))
    return files


def timed_ike(ipk: Ikepriv, pids: dict[str, int], *words: str) -> dict[str, float]:
    """Wall time of one `ike` run, its CPU, the daemon's CPU (parent + children), the
    output's size; the median wall of three runs."""
    env = {**os.environ, "IKEPRIV_CONTROL": str(ipk.control)}
    runs = []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        d0 = sum(cpu_seconds(p) for p in pids.values())
        t0 = time.perf_counter()
        res = subprocess.run(  # noqa: S603 -- our own installed script
            [str(load.VENV_BIN / "ike"), *words], env=env, capture_output=True, check=False
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if res.returncode != 0:
            raise RuntimeError(f"ike {' '.join(words)}: {res.stderr.decode()[-500:]}")
        runs.append(
            {
                "wall_s": wall,
                "ike_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
                "daemon_cpu_s": sum(cpu_seconds(p) for p in pids.values()) - d0,
                "bytes": len(res.stdout),
            }
        )
    runs.sort(key=lambda r: r["wall_s"])
    return runs[1]


def ikepriv_stats(ipk: Ikepriv) -> dict[str, int]:
    return ipk.counters()


class Stages(dict[str, object]):
    """The run's results, each also printed as it is measured (`STAGE key json`): a run of
    10,000 tunnels in UML takes most of an hour, and one that stalls or is stopped late
    still shows what it measured."""

    def __setitem__(self, key: str, value: object) -> None:
        super().__setitem__(key, value)
        print(f"STAGE {key} {json.dumps(value, default=str)}", flush=True)


def run_ikepriv(args: argparse.Namespace, base: Path, real_kernel: bool) -> dict[str, object]:
    """ikeprivd answering N phase 1 (then phase 2) from the core initiator."""
    out: dict[str, object] = Stages(responder="ikepriv")
    d = base / "ikepriv"
    (d / "I").mkdir(parents=True)
    procs = Processes()
    with namespaces(args.peers) as (nsi, nsr):
        try:
            t0 = time.monotonic()
            ipk = Ikepriv(procs, nsr, d / "R", args.peers, args, None, args.children,
                          definitions=definitions(args))  # fmt: skip
            out["start_s"] = time.monotonic() - t0
            pids = {"parent": ipk.pid} | {f"child{k}": p for k, p in enumerate(ipk.children)}
            init = Initiator(procs, nsi, d / "I", args)
            time.sleep(1.0)
            out["mem_0"] = memory(pids)
            out["across_0"] = resident_across_kb(pids)
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            print(f"  ikepriv: {args.tunnels} phase 1 ...", flush=True)
            established = [0]
            show = progress_every(10)

            def progress(line: str) -> None:
                established[0] = int(line.split()[-1])
                show(line)

            sampler = Sampler(pids, lambda: established[0])
            out["phase1"] = init.command("phase1", progress)
            out["phase1_samples"] = sampler.stop()
            out["phase1_daemon_cpu_s"] = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
            time.sleep(2.0)
            out["held_phase1"] = ipk.held()
            out["mem_p1"] = memory(pids)
            out["across_p1"] = resident_across_kb(pids)
            out["list"] = timed_ike(ipk, pids, "cmd=list")
            out["list_verbose_json"] = timed_ike(
                ipk, pids, "cmd=list", "phase=1+", "verbose", "json"
            )
            out["list_stats"] = timed_ike(ipk, pids, "cmd=list", "stats")
            print(f"  ikepriv: phase 2 (at most {args.qm_seconds} s) ...", flush=True)
            cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
            out["phase2"] = init.command(f"phase2 {args.qm_seconds}", progress_every(10))
            out["phase2_daemon_cpu_s"] = {k: cpu_seconds(p) - cpu0[k] for k, p in pids.items()}
            time.sleep(2.0)
            if real_kernel:
                # memory is taken before each listing too: a listing of thousands of rows
                # leaves the parent's heap larger than the tunnels need (see
                # docs/performance.md, "The parent's memory per phase 2")
                out["mem_p2"] = memory(pids)
                out["across_p2"] = resident_across_kb(pids)
                out["after_phase2"] = snapshot(ipk, pids, nsr, d / "after_phase2")
                out["list_p2"] = timed_ike(ipk, pids, "cmd=list")
                out["list_verbose_json_p2"] = timed_ike(
                    ipk, pids, "cmd=list", "phase=1+", "verbose", "json"
                )
                print(f"  ikepriv: holding {args.hold} s for the rekeys ...", flush=True)
                out["mem_p2_listed"] = memory(pids)
                out["hold"] = init.command(f"hold {args.hold}", print)
                out["mem_rekeyed"] = memory(pids)
                out["across_rekeyed"] = resident_across_kb(pids)
                out["after_hold"] = snapshot(ipk, pids, nsr, d / "after_hold")
            out["stats"] = ikepriv_stats(ipk)
            out["held_end"] = ipk.held()
            out["mem_end"] = memory(pids)
            out["across_end"] = resident_across_kb(pids)
            if sorted(children_of(ipk.pid)) != ipk.children:
                out["note"] = "a negotiator child was restarted during the run"
        finally:
            procs.stop_all()
    return out


def snapshot(ipk: Ikepriv, pids: dict[str, int], ns: str, keep: Path) -> dict[str, object]:
    """Tunnels by phase and state as ikepriv lists them, kernel SAs and policies, memory,
    and the listing against the kernel; the listing and the kernel's SAs and policies,
    dumped before and after it, are written under `keep` (kept with --keep)."""
    before = kernel_dump(ns)
    listing = ipk.ike("cmd=list", "json")
    after = kernel_dump(ns)
    rows = json.loads(listing)
    states: dict[str, int] = {}
    for r in rows:
        key = f"p{r.get('phase')} {r.get('state')}"
        states[key] = states.get(key, 0) + 1
    sas = run_tool([IP, "-n", ns, "xfrm", "state", "count"]).stdout.strip()
    pols = run_tool([IP, "-n", ns, "xfrm", "policy", "count"]).stdout.strip()
    keep.mkdir(parents=True, exist_ok=True)
    (keep / "list.json").write_text(listing)
    for when, (policies, kernel_sas) in (("before", before), ("after", after)):
        (keep / f"policies_{when}.txt").write_text(policies)
        (keep / f"states_{when}.txt").write_text(kernel_sas)
    return {"listed": states, "kernel_sas": sas, "kernel_policies": pols, "mem": memory(pids),
            "agree": listed_against_kernel(rows, before, after)}  # fmt: skip


def kernel_dump(ns: str) -> tuple[str, str]:
    """`ip xfrm policy` and `ip xfrm state` in namespace `ns`."""
    return (run_tool([IP, "-n", ns, "xfrm", "policy"]).stdout,
            run_tool([IP, "-n", ns, "xfrm", "state"]).stdout)  # fmt: skip


def listed_against_kernel(
    rows: list[dict[str, Any]], before: tuple[str, str], after: tuple[str, str]
) -> dict[str, int]:
    """What the daemon lists against what the kernel holds in dumps (policies, SAs) taken
    before and after the listing: phase 2 definitions listed with an established SA, how
    many of them lack an in, fwd or out policy in both dumps, and listed established SAs
    whose inbound SPI is in neither (a listing takes seconds, while rekeys replace SAs)."""
    pols = {d for policies, _ in (before, after)
            for d in re.findall(r"src (\S+) dst (\S+) \n\tdir (\w+) ", policies)}  # fmt: skip
    spis = {int(x, 16) for _, sas in (before, after)
            for x in re.findall(r"proto esp spi (0x[0-9a-f]+) ", sas)}  # fmt: skip
    up = [r for r in rows if r.get("phase") == 2 and r.get("state") == "established"]
    selectors = {r["number"]: (r["local_selector"], r["remote_selector"]) for r in up
                 if r.get("local_selector")}  # fmt: skip
    lacking = sum(1 for ls, rs in selectors.values()
                  if not {(rs, ls, "in"), (rs, ls, "fwd"), (ls, rs, "out")} <= pols)  # fmt: skip
    return {
        "p2_definitions_up": len({r["number"] for r in up}),
        "without_policies": lacking,
        "sa_not_in_kernel": sum(1 for r in up if r.get("spi_in") not in spis),
    }


def run_strongswan(args: argparse.Namespace, base: Path) -> dict[str, object]:
    """A charon responder (bench/load.py's configuration) answering the same N phase 1."""
    out: dict[str, object] = {"responder": "strongswan"}
    d = base / "strongswan"
    (d / "I").mkdir(parents=True)
    (d / "R").mkdir(parents=True)
    procs = Processes()
    with namespaces(args.peers) as (nsi, nsr):
        try:
            strongswan_conf(d / "R", 16, args.swan_log, SWAN_PLUGINS)
            responder_swanctl(d / "R", IKE, ESP, None)
            pids = {"charon": start_charon(procs, nsr, d / "R")}
            init = Initiator(procs, nsi, d / "I", args)
            time.sleep(1.0)
            out["mem_0"] = memory(pids)
            cpu0 = cpu_seconds(pids["charon"])
            print(f"  strongswan: {args.tunnels} phase 1 ...", flush=True)
            sampler = Sampler(pids, lambda: strongswan_held(d / "R"))
            out["phase1"] = init.command("phase1", progress_every(10))
            out["phase1_samples"] = sampler.stop()
            out["phase1_daemon_cpu_s"] = {"charon": cpu_seconds(pids["charon"]) - cpu0}
            time.sleep(2.0)
            out["held_phase1"] = strongswan_held(d / "R")
            out["mem_p1"] = memory(pids)
            t0 = time.perf_counter()
            res = run_tool([SWANCTL, "--list-sas", "--uri", f"unix://{d}/R/charon.vici"])
            out["list_sas_wall_s"] = time.perf_counter() - t0
            out["list_sas_bytes"] = len(res.stdout)
        finally:
            procs.stop_all()
    return out


def fmt(v: object) -> str:
    return f"{v:.0f}" if isinstance(v, float) else "-"


# report -----------------------------------------------------------------------------------------
def report(results: list[dict[str, object]], args: argparse.Namespace) -> None:
    print()
    print(f"{args.tunnels} tunnels: {args.peers} initiator addresses x "
          f"{args.tunnels // args.peers} ISAKMP SAs each; {IKE}, ESP {ESP}")  # fmt: skip
    for r in results:
        name = r["responder"]
        m0, m1 = r["mem_0"], r["mem_p1"]
        assert isinstance(m0, dict) and isinstance(m1, dict)
        p1 = r["phase1"]
        assert isinstance(p1, dict)
        held = r["held_phase1"]
        assert isinstance(held, int)
        print(f"\n{name}: phase 1 {p1['ok']} ok, {p1['failed']} failed in {p1['elapsed']:.1f} s "
              f"({p1['ok'] / max(p1['elapsed'], 1e-9):.0f}/s); held {held}; daemon CPU "
              f"{json.dumps(r['phase1_daemon_cpu_s'])}")  # fmt: skip
        print(
            f"  {'process':<10} {'PSS 0 kB':>10} {'PSS N kB':>10} {'RSS 0 kB':>10} {'RSS N kB':>10}"
        )
        for k in m1:
            print(f"  {k:<10} {m0[k][0]:>10} {m1[k][0]:>10} {m0[k][1]:>10} {m1[k][1]:>10}")
        across = [(k[7:], r[k]) for k in r if k.startswith("across_")]
        if across:
            print("  resident across the daemon's processes (pages counted once), MiB: "
                  + ", ".join(f"{k} {v / 1024:.1f}" for k, v in across))  # fmt: skip
        for which, label in ((0, "PSS"), (1, "RSS")):
            grow = total(m1, which) - total(m0, which)
            print(f"  {label} total {total(m0, which) / 1024:.1f} -> {total(m1, which) / 1024:.1f}"
                  f" MiB; {1024 * grow / max(held, 1):.0f} bytes per ISAKMP SA held")  # fmt: skip
        samples = r["phase1_samples"]
        assert isinstance(samples, dict)
        print(f"  during the load: at most {samples['held_max']} held; slope "
              f"{fmt(samples['pss_bytes_per_sa'])} bytes PSS, {fmt(samples['rss_bytes_per_sa'])}"
              " bytes RSS per SA held")  # fmt: skip
        for key in ("list", "list_verbose_json", "list_stats", "list_p2", "list_verbose_json_p2"):
            v = r.get(key)
            if isinstance(v, dict):
                print(f"  ike {key:<22} wall {v['wall_s']:.3f} s, ike CPU {v['ike_cpu_s']:.3f} s,"
                      f" daemon CPU {v['daemon_cpu_s']:.3f} s, {v['bytes']} bytes")  # fmt: skip
        if "list_sas_wall_s" in r:
            print(f"  swanctl --list-sas wall {r['list_sas_wall_s']:.3f} s, "
                  f"{r['list_sas_bytes']} bytes")  # fmt: skip
        if "phase2" in r:
            print(f"  phase 2: {json.dumps(r['phase2'])}")
            print(f"  phase 2 daemon CPU: {json.dumps(r['phase2_daemon_cpu_s'])}")
        for key in ("mem_p2", "after_phase2", "mem_p2_listed", "hold", "mem_rekeyed",
                    "after_hold", "held_end", "mem_end", "note"):  # fmt: skip
            if key in r:
                print(f"  {key}: {json.dumps(r[key])}")
        if "stats" in r:
            stats = r["stats"]
            assert isinstance(stats, dict)
            print("  stats: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items()) if v))


def run(args: argparse.Namespace, real_kernel: bool) -> None:
    if os.geteuid() != 0:
        sys.exit("tunnels.py: root needed (network namespaces)")
    args.ike, args.esp = IKE, ESP
    print(time.strftime("%Y-%m-%d %H:%M:%S %Z"), "tunnels.py", " ".join(sys.argv[1:]))
    if not real_kernel:
        print("Quick Mode on this host: no ESP in the kernel; each phase 2 is negotiated in full "
              "and its SA add refused (EPROTONOSUPPORT), so no phase 2 stays.")  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="tunnels-") as tmp:
        base = Path(tmp)
        for responder in args.responders.split(","):
            if responder == "ikepriv":
                results.append(run_ikepriv(args, base, real_kernel))
            else:
                results.append(run_strongswan(args, base))
        if args.keep:
            shutil.copytree(
                base,
                args.keep,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("*.vici", "*.sock"),
            )
    report(results, args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


def uml(args: argparse.Namespace) -> None:
    """Boot UML and run `guest` there with the same options."""
    env = {**os.environ, "RK_MEM": args.mem, "RK_TIMEOUT": str(args.uml_timeout),
           "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    argv = [str(REPO / "tests/realkernel/run-in-kernel.sh"), sys.executable, str(Path(__file__))]
    argv += ["guest", "--tunnels", str(args.tunnels), "--peers", str(args.peers)]
    argv += ["--window", str(args.window), "--qm-seconds", str(args.qm_seconds)]
    argv += ["--p2-lifetime", str(args.p2_lifetime), "--p2-margin", str(args.p2_margin)]
    argv += ["--hold", str(args.hold), "--children", str(args.children)]
    if args.out:
        argv += ["--out", str(Path(args.out).resolve())]
    if args.keep:  # under the checkout: the guest mounts it read-write
        argv += ["--keep", str(Path(args.keep).resolve())]
    print(f"UML guest RAM {args.mem}:", " ".join(argv[1:]), flush=True)
    sys.exit(subprocess.run(argv, env=env, check=False).returncode)  # noqa: S603


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("host", "uml", "guest", "initiator"))
    parser.add_argument("--tunnels", type=int, default=None)
    parser.add_argument("--peers", type=int, default=250)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--qm-seconds", type=float, default=60.0)
    parser.add_argument("--responders", default="ikepriv,strongswan")
    parser.add_argument("--children", type=int, default=0, help="0: ikeprivd's default")
    parser.add_argument("--p2-lifetime", type=int, default=3600)
    parser.add_argument("--p2-margin", type=int, default=0)
    parser.add_argument("--hold", type=float, default=420.0)
    parser.add_argument("--mem", default="2G", help="UML guest RAM")
    parser.add_argument("--uml-timeout", type=int, default=3000)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--responder", default=RESPONDER_ADDR)
    parser.add_argument("--psk", default=PSK)
    parser.add_argument("--keep", default="", help="copy the work directory here")
    parser.add_argument("--swan-log", type=int, default=0, help="charon log level")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    args.phase = 1
    if args.tunnels is None:
        args.tunnels = 10000 if args.mode == "host" else 1000
    args.peers = min(args.peers, args.tunnels, 253)
    if args.tunnels // args.peers > 254:
        parser.error("at most 254 tunnels per initiator address (one /32 each)")
    args.tunnels = args.tunnels // args.peers * args.peers
    if args.children == 0 and args.mode != "uml":  # the guest has CPUs of its own
        from ikepriv.parent_kernel.shards import default_children

        args.children = default_children()
    if args.mode == "initiator":
        initiator_main(args)
    elif args.mode == "uml":
        uml(args)
    elif args.mode == "guest":
        if args.p2_margin == 0:
            args.p2_margin = min(540, args.p2_lifetime // 2)
        args.responders = "ikepriv"
        run(args, real_kernel=True)
    else:
        run(args, real_kernel=False)


if __name__ == "__main__":
    main()
