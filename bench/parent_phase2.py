"""The parent's memory per phase 2 pair and per phase 2 rekey (issue 11, goal 4).

Drives the parent's own write path (installer.Installer with its vetting, records, state
file and XFRM client) as a negotiator child would: TUNNELS phase 2 pairs set up (SpiRequest,
Phase2Install), then ROUNDS rekeys of every one (a new SPI, a new pair of SAs under the same
reqid and policies, the old pair removed), and prints what the parent holds: live Python
memory (tracemalloc, attributed to the lines that allocated it), the sizes of its tables,
and RSS. Live bytes and RSS are printed apart: Python's allocator keeps freed memory.

It also prints the parent's CPU per phase 2 install (SPI + install), per rekey (SPI,
install, the old pair removed) and per remove (the pair's SAs and policies deleted, as at
a tunnel's end): wall time, process CPU (user: Python, ours and pyroute2's; sys: the
kernel's netlink and XFRM work, in all threads), and with --profile a cProfile breakdown of
each phase (sampled: see Sampler). tracemalloc (--frames, on by default) inflates the CPU
figures: compare CPU with --frames 0.

The SAs need a kernel with ESP: run it in User Mode Linux (root, its own kernel):

    tests/realkernel/run-in-kernel.sh .venv/bin/python bench/parent_phase2.py --tunnels 2000

A bench: it prints figures, never passes or fails.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import ipaddress
import os
import re
import signal
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness.sizes import deep_size

from ikepriv.config import load_definitions
from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.isakmp.constants import AuthAlgorithm, EncapsulationMode, EspTransformId, ProtocolId
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.installer import Installer
from ikepriv.parent_kernel.journal import Journal
from ikepriv.parent_kernel.kernel.client import XfrmKernel
from ikepriv.parent_kernel.state import ParentState
from ikepriv.parent_kernel.vetting import Activation

LOCAL = ipaddress.ip_address("192.0.2.254")
ESP = ProtocolId.IPSEC_ESP
PER_PEER = 100  # phase 2 definitions under one phase 1 (local subnets 198.51.100.<peer+1>)
_T = TypeVar("_T")


def peer_address(peer: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(f"192.0.2.{peer + 1}")


def definitions(tunnels: int) -> DbView:
    """One phase 1 per peer, one phase 2 per selector pair (as bench/tunnels.py)."""
    peers = (tunnels + PER_PEER - 1) // PER_PEER
    lines: list[str] = []
    for p in range(peers):
        lines += ["[[phase1]]", f'name = "p{p}"', f'local_addr = "{LOCAL}"',
                  f'remote_addr = "{peer_address(p)}"', 'psk = "bench secret"',
                  'proposals = ["aes128-sha256-modp2048"]', ""]  # fmt: skip
    for t in range(tunnels):
        p, k = divmod(t, PER_PEER)
        lines += ["[[phase2]]", f'name = "t{t}"', f'phase1 = "p{p}"',
                  f'local_subnet = "198.51.100.{p + 1}/32"',
                  f'remote_subnet = "203.0.113.{k + 1}/32"',
                  'proposals = ["aes128-sha256"]', ""]  # fmt: skip
    defs = load_definitions("\n".join(lines))
    p1 = [dataclasses.replace(d, number=i + 1) for i, d in enumerate(defs.phase1)]
    p2 = [dataclasses.replace(d, number=i + 1) for i, d in enumerate(defs.phase2)]
    return DbView.build(1, p1, p2)


@dataclass
class Pair:
    """One tunnel's live phase 2 as the child knows it."""

    phase2: int
    tunnel_id: int
    reqid: int
    spi_in: int
    spi_out: int


class Driver:
    def __init__(self, state: ParentState, tunnels: int) -> None:
        self.state = state
        self.installer = Installer(state)
        self.tunnels = tunnels
        self._ids = iter(range(1, 1 << 30))
        self._out_spi = 0x10000000
        self.pairs: list[Pair] = []

    def _selector(self, phase2: int) -> m.TrafficSelector:
        p, k = divmod(phase2 - 1, PER_PEER)
        return m.TrafficSelector(
            m.SelectorSide(ipaddress.ip_network(f"198.51.100.{p + 1}/32"), 0, 0),
            m.SelectorSide(ipaddress.ip_network(f"203.0.113.{k + 1}/32"), 0, 0))  # fmt: skip

    @staticmethod
    def _keys(spi: int) -> m.Phase2Sa:
        return m.Phase2Sa(spi, m.CryptKey(EspTransformId.AES_CBC, os.urandom(16)),
                          m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, os.urandom(32)), None,
                          m.Lifetimes(3000, 3600, 0, 0))  # fmt: skip

    async def one(self, phase2: int, reqid: int, old: Pair | None) -> Pair:
        """Set up (or rekey) one phase 2 as the child does; the old pair goes after."""
        peer = peer_address((phase2 - 1) // PER_PEER)
        spi = await self.installer.allocate_spi(
            m.SpiRequest(next(self._ids), phase2, ESP, peer, LOCAL)
        )
        assert spi.error is ErrorCode.OK, spi
        self._out_spi += 1
        sel = self._selector(phase2)
        back = m.TrafficSelector(sel.dst, sel.src)
        tunnel_id = next(self._ids)
        req = m.Phase2Install(
            request_id=next(self._ids), phase1_number=(phase2 - 1) // PER_PEER + 1,
            phase2_number=phase2, tunnel_id=tunnel_id, local=LOCAL, remote=peer, proto=ESP,
            mode=EncapsulationMode.TUNNEL, reqid=reqid, inbound=self._keys(spi.spi),
            outbound=self._keys(self._out_spi), encap=None, selector=sel,
            policies=(m.Phase2Policy(m.PolicyDirection.OUT, sel, 2000),
                      m.Phase2Policy(m.PolicyDirection.IN, back, 2000),
                      m.Phase2Policy(m.PolicyDirection.FWD, back, 2000)),
        )  # fmt: skip
        reply = await self.installer.install_phase2(req)
        assert reply.error is ErrorCode.OK, reply
        if old is not None:
            reply = await self.installer.remove_phase2(m.Phase2Remove(
                next(self._ids), phase2, old.tunnel_id, LOCAL, peer, ESP, old.spi_in,
                old.spi_out, reqid, False))  # fmt: skip
            assert reply.error is ErrorCode.OK, reply
        return Pair(phase2, tunnel_id, reqid, spi.spi, self._out_spi)

    async def set_up(self) -> None:
        for n in range(1, self.tunnels + 1):
            self.pairs.append(await self.one(n, 1000 + n, None))

    async def rekey_all(self) -> None:
        for i, pair in enumerate(self.pairs):
            self.pairs[i] = await self.one(pair.phase2, pair.reqid, pair)

    async def remove_all(self) -> None:
        """Every pair removed with its policies, as a child does at a tunnel's end."""
        for pair in self.pairs:
            peer = peer_address((pair.phase2 - 1) // PER_PEER)
            reply = await self.installer.remove_phase2(m.Phase2Remove(
                next(self._ids), pair.phase2, pair.tunnel_id, LOCAL, peer, ESP, pair.spi_in,
                pair.spi_out, pair.reqid, False))  # fmt: skip
            assert reply.error is ErrorCode.OK, reply
        self.pairs.clear()


class Sampler:
    """A statistical profile of the process's CPU: SIGPROF every `interval` s of CPU time
    (user + sys; the kernel may round it up to its tick, so a sample's worth is the phase's
    CPU over the samples), each sample counted for the Python function running then and for
    every function on its stack. Not cProfile: under User Mode Linux a clock read is a traced
    system call (about 12 us against 0.1 on the host), and cProfile reads the clock twice per
    call, so its times would count calls, not CPU. The handler sees the trio thread only, so
    while profiling the kernel calls run there (no worker-thread hand-over: the profiled
    phase's CPU figure without it, next to the plain run's, is what the hand-overs cost)."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.own: dict[tuple[str, str], int] = {}
        self.inclusive: dict[tuple[str, str], int] = {}
        self.samples = 0

    def _sample(self, signum: int, frame: Any) -> None:
        self.samples += 1
        seen: set[tuple[str, str]] = set()
        f, leaf = frame, True
        while f is not None:
            key = (f.f_code.co_filename, f.f_code.co_name)
            if leaf:
                self.own[key] = self.own.get(key, 0) + 1
                leaf = False
            if key not in seen:
                seen.add(key)
                self.inclusive[key] = self.inclusive.get(key, 0) + 1
            f = f.f_back

    def start(self) -> None:
        self.own, self.inclusive, self.samples = {}, {}, 0
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)

    def text(self, ops: int, cpu: float, top: int) -> Iterator[str]:
        """Own CPU by module and by function, then the functions' inclusive CPU (`cpu`: the
        phase's seconds, shared out by the samples)."""
        n = max(1, self.samples)
        per = cpu * 1e6 / n / max(1, ops)
        by_area: dict[str, int] = {}
        for (filename, _), count in self.own.items():
            by_area[area(filename)] = by_area.get(area(filename), 0) + count
        yield (f"profile: {self.samples} samples, {cpu / n * 1000:.1f} ms CPU each; "
               "own CPU by module:")  # fmt: skip
        for name, c in sorted(by_area.items(), key=lambda kv: -kv[1])[:top]:
            yield f"  {c / n * 100:5.1f} %  {c * per:7.1f} us/op  {name}"
        yield "own CPU by function (its C calls included):"
        for (filename, func), c in sorted(self.own.items(), key=lambda kv: -kv[1])[:top]:
            yield f"  {c / n * 100:5.1f} %  {c * per:7.1f} us/op  {area(filename)} {func}"
        yield "inclusive CPU by function:"
        for (filename, func), c in sorted(self.inclusive.items(), key=lambda kv: -kv[1])[:top]:
            if area(filename).startswith(("ikepriv/", "pyroute2/", "python: parent_phase2")):
                yield f"  {c / n * 100:5.1f} %  {c * per:7.1f} us/op  {area(filename)} {func}"


def area(filename: str) -> str:
    """Where a profiled function lives, coarsely: the module for ours and pyroute2's."""
    for root in ("ikepriv/", "pyroute2/", "trio/", "outcome/"):
        if root in filename:
            return root + filename.split(root, 1)[1]
    return "python: " + os.path.basename(filename)


async def timed(label: str, ops: int, work: Callable[[], Awaitable[None]],
                sampler: Sampler | None, top: int) -> None:  # fmt: skip
    """Run `work` (ops operations) and print its wall time and the process's CPU per op."""
    gc.collect()
    if sampler is not None:
        sampler.start()
    t0, c0 = time.monotonic(), os.times()
    await work()
    wall, c1 = time.monotonic() - t0, os.times()
    if sampler is not None:
        sampler.stop()
    user, sys_ = c1.user - c0.user, c1.system - c0.system
    n = max(1, ops)
    how = " [profiled, kernel calls in the trio thread]" if sampler is not None else ""
    print(f"\n-- CPU, {label}: {ops} in {wall:.2f} s wall; per op: wall "
          f"{wall / n * 1000:.3f} ms, CPU {(user + sys_) / n * 1000:.3f} ms "
          f"(user {user / n * 1000:.3f}, sys {sys_ / n * 1000:.3f}){how}", flush=True)  # fmt: skip
    if sampler is not None:
        for line in sampler.text(n, user + sys_, top):
            print("  " + line)


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]  # fmt: skip


def heap_text() -> str:
    """glibc's heap (all arenas: in use, free) and pymalloc's arenas (256 KiB each)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _Mallinfo2
    mi = libc.mallinfo2()
    with tempfile.TemporaryFile("w+") as f:
        saved = os.dup(2)
        try:
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read()
    arenas = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)
    blocks = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)
    return (
        f"malloc: in use {mi.uordblks / 1048576:.1f} MiB, free {mi.fordblks / 1048576:.1f}"
        f" MiB, mmapped {mi.hblkhd / 1048576:.1f} MiB; pymalloc: "
        f"{arenas.group(1) if arenas else '?'} arenas, "
        f"{int(blocks.group(1).replace(',', '')) / 1048576 if blocks else 0:.1f} MiB in "
        "blocks"
    )


def breakdown(state: ParentState, pairs: int) -> Iterator[str]:
    """Bytes per pair of each of the parent's tables (an object shared by two counts once,
    with the first)."""
    inst, seen = state.installed, set[int]()
    parts: list[tuple[str, object]] = [
        ("SA records (entries, keys)", dict(inst.sas)),
        ("policy records (entries, specs)", dict(inst.policies)),
        ("SA table itself", inst.sas),
        ("SA groups", inst.sas._by),
        ("policy table itself", inst.policies),
        ("policy groups", inst.policies._by),
        ("recently removed", (inst._removed_sas, inst._removed_policies)),
    ]
    if state.journal is not None:
        parts.append(("state file's index", (state.journal._sas, state.journal._policies)))
    for name, obj in parts:
        yield f"{name}: {deep_size(obj, seen) / max(1, pairs):.0f} B per pair"


def table_sizes(state: ParentState) -> Iterator[str]:
    inst = state.installed
    yield f"sas {len(inst.sas)}, policies {len(inst.policies)}"
    for name, table in (("sas", inst.sas), ("policies", inst.policies)):
        groups = table._by
        yield f"{name} groups: " + ", ".join(f"{k} {len(v)}" for k, v in groups.items())
    yield (
        f"recently removed: sas {len(inst._removed_sas)}, policies {len(inst._removed_policies)}"
    )
    j = state.journal
    if j is not None:
        yield f"state file: sas {len(j._sas)}, policies {len(j._policies)}"


def snapshot() -> tracemalloc.Snapshot | None:
    gc.collect()
    return tracemalloc.take_snapshot() if tracemalloc.is_tracing() else None


def report(label: str, state: ParentState, snap: tracemalloc.Snapshot | None,
           base: tracemalloc.Snapshot | None, top: int, pairs: int) -> None:  # fmt: skip
    traced = sum(s.size for s in snap.statistics("filename")) if snap is not None else 0
    print(f"\n== {label}: RSS {rss_kib() / 1024:.1f} MiB, live (tracemalloc) "
          f"{traced / 1048576:.2f} MiB", flush=True)  # fmt: skip
    print("  " + heap_text())
    for line in table_sizes(state):
        print("  " + line)
    if base is None or snap is None:
        return
    diff = snap.compare_to(base, "lineno")
    grown = sum(d.size_diff for d in diff)
    print(f"  live growth {grown / 1048576:.2f} MiB = {grown / max(1, pairs):.0f} B per pair; "
          f"top lines:")  # fmt: skip
    for d in diff[:top]:
        print(
            f"  {d.size_diff / max(1, pairs):8.0f} B/pair {d.count_diff:+8d} blocks  "
            f"{d.traceback[0].filename.split('ikepriv/')[-1]}:{d.traceback[0].lineno}"
        )


async def dump_cost(kernel: XfrmKernel, how: str) -> str:
    """What one dump of the kernel's SAs costs the parent: RSS after it and, when tracing,
    the live peak during it. `sa_counters` is what `ike cmd=list verbose` makes (list_sas
    was, before)."""
    tracing = tracemalloc.is_tracing()
    if tracing:
        tracemalloc.reset_peak()
    before, rss0 = tracemalloc.get_traced_memory()[0], rss_kib()
    t0 = time.monotonic()
    n = len(await trio.to_thread.run_sync(getattr(kernel, how)))  # as the daemon calls it
    took = time.monotonic() - t0
    peak = tracemalloc.get_traced_memory()[1] - before
    gc.collect()
    traced = f"live peak {peak / 1048576:.1f} MiB ({peak / max(1, n):.0f} B per SA), " * tracing
    return (
        f"{how}, {n} SAs: {took:.2f} s, {traced}RSS {rss0 / 1024:.1f} -> {rss_kib() / 1024:.1f} MiB"
    )


async def main_async(args: argparse.Namespace) -> None:
    view = definitions(args.tunnels)
    with tempfile.TemporaryDirectory() as tmp, XfrmKernel() as kernel:
        state = ParentState(kernel, view, journal=Journal(os.path.join(tmp, "state")))
        state.journal.save((), ())  # type: ignore[union-attr]
        for n in view.phase1:
            state.activations[n] = Activation(n)
        driver = Driver(state, args.tunnels)
        profiles = Sampler() if args.profile else None
        if profiles is not None:

            async def kernel_call(fn: Callable[..., _T], *a: object) -> _T:
                return fn(*a)

            state.kernel_call = kernel_call  # type: ignore[method-assign]
        if tracemalloc.is_tracing():
            print("note: tracemalloc is on: the CPU figures include its cost (--frames 0)")
        base = snapshot()
        report("no tunnel", state, base, None, args.top, 1)
        t0 = time.monotonic()
        await timed("phase 2 install (SPI + install)", args.tunnels, driver.set_up, profiles,
                    args.top)  # fmt: skip
        after_setup = snapshot()
        report(f"{args.tunnels} pairs set up ({time.monotonic() - t0:.1f} s)", state,
               after_setup, base, args.top, args.tunnels)  # fmt: skip
        for line in breakdown(state, args.tunnels):
            print("  " + line)
        if args.dump:
            for how in ("sa_counters", "list_sas"):
                print("  " + await dump_cost(kernel, how), flush=True)
        for r in range(args.rounds):
            t0 = time.monotonic()
            await timed(f"rekey round {r + 1} (SPI, install, old pair removed)",
                        args.tunnels, driver.rekey_all, profiles, args.top)  # fmt: skip
            snap = snapshot()
            report(f"after rekey round {r + 1} ({args.tunnels} rekeys, "
                   f"{time.monotonic() - t0:.1f} s)", state, snap, after_setup, args.top,
                   args.tunnels * (r + 1))  # fmt: skip
            if args.dump:
                for how in ("sa_counters", "list_sas"):
                    print("  " + await dump_cost(kernel, how), flush=True)
        await timed("phase 2 remove (2 SAs, 3 policies)", args.tunnels, driver.remove_all,
                    profiles, args.top)  # fmt: skip
        left = await driver.installer.remove_everything()
        print(f"\nleft over after the removes: {len(state.installed.sas)} SAs, "
              f"{len(state.installed.policies)} policies ({left} refused)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tunnels", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2, help="rekeys of every tunnel")
    ap.add_argument(
        "--dump",
        action="store_true",
        help="a dump of the kernel's SAs (ike cmd=list verbose) after each step",
    )
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--frames", type=int, default=1, help="tracemalloc frames; 0: off")
    ap.add_argument("--profile", action="store_true",
                    help="sample the CPU of each timed phase")  # fmt: skip
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("root needed (run it in User Mode Linux: see the docstring)")
    if args.frames:
        tracemalloc.start(args.frames)
    trio.run(main_async, args)


if __name__ == "__main__":
    main()
