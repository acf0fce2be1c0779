"""Spread-out phase 2 rekeys of many tunnels in two cores, on a simulated clock (issue 11,
goal 4): what the cost of one rekey does as the number of tunnels held grows.

    .venv/bin/python bench/core_rekey.py [--tunnels 10000] [--peers 250] [--p2-lifetime 1200]
        [--p2-margin 400] [--hold 1300] [--window 50] [--profile FILE]

No root, no kernel, no sockets: the shape of bench/tunnels.py's UML run, in one process.
The initiator is one sans-I/O core holding TUNNELS phase 1 definitions, TUNNELS / PEERS
per address (192.0.2.1, 192.0.2.3 ..), each with one phase 2 (198.51.100.<peer+1>/32 <->
203.0.113.<k+1>/32), as bench/core_initiator.py builds them; the responder is one core with
one phase 1 per address and one phase 2 per selector pair, as ikeprivd gets them from
bench/tunnels.py. Both talk through tests/harness/core_sim.py (stand-in parents, latency
2 ms, no loss). Every phase 1 then every phase 2 is set up, then the clock runs on for
HOLD s: each phase 2 (lifetime P2_LIFETIME, margin P2_MARGIN on both sides) is rekeyed.

Printed for each WINDOW simulated seconds of the hold: rekeys started (both cores), events
handled, CPU seconds of each core and of the stand-in parents, and CPU per rekey; at the
end the totals. Compare --tunnels 1000, 4000, 10000: CPU per rekey that grows with the
number held is a pass over all of them somewhere. --profile writes cProfile stats of the
hold. A bench: it prints figures, never passes or fails.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import ipaddress
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from core_initiator import peer_addr
from harness.core_sim import (
    PSK,
    RIGHT,
    Side,
    Simulation,
    address_identity,
    esp_proposal,
    ike_proposal,
    phase1_def,
    phase2_def,
    selector,
)

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc.schema import Message
from ikepriv.isakmp.constants import GroupId, IkeEncryption, IkeHash

BATCH = 64  # initiations at once while setting up


def configs(args: argparse.Namespace) -> tuple[ConfigSnapshot, ConfigSnapshot]:
    """The initiator's and the responder's definitions, shaped as bench/tunnels.py's."""
    per_peer = args.tunnels // args.peers
    ike = [ike_proposal(IkeEncryption.AES_CBC, 128, IkeHash.SHA2_256, GroupId(args.group))]
    esp = [esp_proposal(lifetime=args.p2_lifetime)]
    margin = args.p2_margin
    ip1, ip2, rp1, rp2 = [], [], [], []
    for j in range(args.peers):
        addr = ipaddress.ip_address(peer_addr(j))
        rp1.append(phase1_def(j + 1, RIGHT, addr, ike, remote_id=address_identity(addr)))
        for k in range(per_peer):
            n = k * args.peers + j + 1
            ip1.append(phase1_def(n, addr, RIGHT, ike, remote_id=address_identity(RIGHT)))
            ours, theirs = selector(f"198.51.100.{j + 1}/32"), selector(f"203.0.113.{k + 1}/32")
            mine = phase2_def(n, n, ours, theirs, esp)
            peers = phase2_def(j * per_peer + k + 1, j + 1, theirs, ours, esp)
            for out, p2 in ((ip2, mine), (rp2, peers)):
                out.append(dataclasses.replace(p2, rekey_margin=margin) if margin else p2)
    return ConfigSnapshot.of(ip1, ip2), ConfigSnapshot.of(rp1, rp2)


class Measured(Simulation):
    """The simulation, with the CPU of each core and of each stand-in parent kept apart."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.cpu: dict[str, float] = {}

    def _add(self, what: str, seconds: float) -> None:
        self.cpu[what] = self.cpu.get(what, 0.0) + seconds

    def _call(self, side: Side, fn: Callable[..., list[Message]], *args: Any) -> list[Message]:
        start = time.process_time()
        out = fn(*args)
        self._add(side.name, time.process_time() - start)
        side.handle_calls += 1
        return out

    def _dispatch(self, side: Side, actions: Any) -> None:
        start = time.process_time()
        super()._dispatch(side, actions)
        self._add("parents+network", time.process_time() - start)
        side.sent.clear()  # the harness's records: not needed here, and they grow
        side.trail.clear()
        side.received.clear()
        side.notifies_received.clear()


def simulation(args: argparse.Namespace) -> Measured:
    init, resp = configs(args)
    wide = Settings(half_open_max=4096, half_open_max_per_peer=4096)  # as CoreInitiator
    sim = Measured(init, resp, seed=args.seed, latency=0.002, settings=wide,
                   responder_settings=Settings())  # fmt: skip
    for j in range(args.peers):  # every initiator address reaches the initiator core
        addr = ipaddress.ip_address(peer_addr(j))
        sim._by_addr[addr] = sim.initiator
        sim.responder.parent.psk_by_peer[addr] = PSK
    return sim


def set_up(sim: Measured, n: int, phase: int) -> float:
    start = time.process_time()
    for first in range(1, n + 1, BATCH):
        for number in range(first, min(n, first + BATCH - 1) + 1):
            sim.initiate(phase=phase, number=number)
        sim.run(duration=2.0, max_events=10**8)
    sim.run(duration=5.0, max_events=10**8)
    got = len(sim.established_isakmp("initiator") if phase == 1
              else sim.established_children("initiator"))  # fmt: skip
    print(f"phase {phase}: {got} of {n} up, {time.process_time() - start:.1f} s CPU", flush=True)
    return time.process_time() - start


def rekeys(sim: Measured) -> int:
    return sum(s.core.counters.phase2_rekeys for s in sim.sides.values())


def hold(sim: Measured, args: argparse.Namespace) -> None:
    print(f"{'t':>6} {'rekeys':>7} {'events':>8} {'init s':>7} {'resp s':>7} {'parents':>7} "
          f"{'ms/rekey':>8} {'children':>9}")  # fmt: skip
    totals = {"rekeys": 0, "cpu": 0.0}
    t = 0.0
    while t < args.hold:
        r0, cpu0 = rekeys(sim), dict(sim.cpu)
        calls0 = sum(s.handle_calls for s in sim.sides.values())
        sim.advance(args.window)
        t += args.window
        for side in sim.sides.values():
            side.parent.forget_records()
        done = rekeys(sim) - r0
        d = {k: v - cpu0.get(k, 0.0) for k, v in sim.cpu.items()}
        cpu = sum(d.values())
        totals["rekeys"] += done
        totals["cpu"] += cpu
        calls = sum(s.handle_calls for s in sim.sides.values()) - calls0
        held = len(sim.initiator.core.sas.children)
        print(f"{t:6.0f} {done:7d} {calls:8d} {d.get('initiator', 0):7.2f} "
              f"{d.get('responder', 0):7.2f} {d.get('parents+network', 0):7.2f} "
              f"{1000 * cpu / done if done else 0:8.2f} {held:9d}", flush=True)  # fmt: skip
    c = {name: s.core.counters for name, s in sim.sides.items()}
    print(f"hold: {totals['rekeys']} rekeys, {totals['cpu']:.1f} s CPU, "
          f"{1000 * totals['cpu'] / max(1, totals['rekeys']):.2f} ms per rekey; "
          + "; ".join(f"{k}: {v.phase2_rekeys} rekeys, {v.rekey_collisions} collisions, "
                      f"{v.phase2_failed} failed, {len(sim.established_children(k))} up"
                      for k, v in c.items()))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tunnels", type=int, default=10000)
    ap.add_argument("--peers", type=int, default=250)
    ap.add_argument("--p2-lifetime", type=int, default=1200)
    ap.add_argument("--p2-margin", type=int, default=400)
    ap.add_argument("--hold", type=float, default=1300.0)
    ap.add_argument("--window", type=float, default=50.0, help="simulated s per line")
    ap.add_argument("--group", type=int, default=int(GroupId.MODP_2048))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", help="write cProfile stats of the hold here")
    args = ap.parse_args()
    sim = simulation(args)
    set_up(sim, args.tunnels, 1)
    set_up(sim, args.tunnels, 2)
    if args.profile:
        with cProfile.Profile() as prof:
            hold(sim, args)
        prof.dump_stats(args.profile)
    else:
        hold(sim, args)


if __name__ == "__main__":
    main()
