"""What the daemon holds per definition, per ISAKMP SA and per phase 2 pair (issue 11, goal 4).

    .venv/bin/python bench/core_memory.py [--tunnels 2000] [--top 12] [--fields]

No root, no kernel: four measurements in one process.

* **Definitions.** TUNNELS phase 2 definitions under TUNNELS/100 phase 1s, shaped as
  bench/tunnels.py puts them (one phase 1 per peer address, selectors
  198.51.100.<peer+1>/32 <-> 203.0.113.<k+1>/32): in the parent, the DbView read from a
  real TunnelDB file and its ParentState (vetter and tables, no kernel); in a child, the
  ConfigSnapshot built from the parent's config messages after a trip through the IPC codec
  (encode, decode), as the child gets them.
* **Phase 1, phase 2, rekey** in the sans-I/O core (ikepriv.child_negotiator.core), two
  cores talking through tests/harness/core_sim.py (stand-in parent, no loss): the initiator
  holds TUNNELS phase 1 definitions to one responder, each with one phase 2; the responder
  one phase 1 for that peer and TUNNELS phase 2s under it (as ikeprivd under
  bench/tunnels.py: many ISAKMP SAs from one peer). All Main Modes (PSK
  aes128-sha256-modp2048), then a Quick Mode each (ESP aes128-sha256, lifetime 600 s), then
  time runs on until every phase 2 was rekeyed once and the replaced pairs deleted.

Printed: live bytes (tracemalloc, the harness's own lists emptied first) per definition, per
ISAKMP SA and per phase 2 pair, for each core; what each of the core's tables holds (deep
size, objects shared with the configuration not counted) and, with --fields, the bytes per
record of each field of the SA records; the lines that allocated the most. Python's
allocator keeps freed memory, so RSS is not the measure here (bench/tunnels.py has it).

A bench: it prints figures, never passes or fails.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import sys
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from harness.core_sim import (
    LEFT,
    RIGHT,
    Simulation,
    address_identity,
    esp_proposal,
    ike_proposal,
    phase1_def,
    phase2_def,
    selector,
)
from harness.sizes import deep_size

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.config import load_definitions
from ikepriv.config.store import TunnelDB
from ikepriv.ipc.schema import Direction, decode, encode
from ikepriv.isakmp.constants import GroupId, IkeEncryption, IkeHash
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.state import ParentState

PER_PEER = 100
BATCH = 16  # initiations at once (half_open_max_per_peer)
P2_LIFETIME = 600


# ----------------------------------------------------------------------------- measuring


def live() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot()


def total(snap: tracemalloc.Snapshot) -> int:
    return sum(s.size for s in snap.statistics("filename"))


def top_lines(now: tracemalloc.Snapshot, base: tracemalloc.Snapshot, per: int, top: int
              ) -> Iterator[str]:  # fmt: skip
    for d in now.compare_to(base, "lineno")[:top]:
        frame = d.traceback[0]
        yield (f"    {d.size_diff / max(1, per):7.0f} B {d.count_diff / max(1, per):+6.2f} blocks"
               f"  {frame.filename.split('ikepriv/')[-1]}:{frame.lineno}")  # fmt: skip


# --------------------------------------------------------------------------- definitions


def definitions_text(tunnels: int) -> str:
    peers = (tunnels + PER_PEER - 1) // PER_PEER
    lines: list[str] = []
    for p in range(peers):
        lines += ["[[phase1]]", f'name = "p{p}"', 'local_addr = "192.0.2.254"',
                  f'remote_addr = "192.0.2.{p % 250 + 1}"', 'psk = "bench secret"',
                  'proposals = ["aes128-sha256-modp2048"]', ""]  # fmt: skip
    for t in range(tunnels):
        p, k = divmod(t, PER_PEER)
        lines += ["[[phase2]]", f'name = "t{t}"', f'phase1 = "p{p}"',
                  f'local_subnet = "198.51.100.{p % 250 + 1}/32"',
                  f'remote_subnet = "203.0.113.{k + 1}/32"',
                  'proposals = ["aes128-sha256"]', ""]  # fmt: skip
    return "\n".join(lines)


def measure_definitions(tunnels: int, top: int) -> None:
    count = tunnels + (tunnels + PER_PEER - 1) // PER_PEER
    with tempfile.TemporaryDirectory() as tmp:
        db = TunnelDB(Path(tmp) / "tunnels.db")
        db.put(load_definitions(definitions_text(tunnels)))
        base = live()
        tracemalloc.reset_peak()
        view = DbView.load(db)
        state = ParentState(None, view)  # type: ignore[arg-type]  # no kernel: not used here
        wire = [encode(msg) for msg in view.config_messages()]  # what each child is sent
        peak = tracemalloc.get_traced_memory()[1] - total(base)
        del wire
        after = live()
        grown = total(after) - total(base)
        print(f"\n== parent: {count} definitions ({tunnels} phase 2): "
              f"{grown / count:.0f} B per definition (live); peak while loading them and "
              f"encoding them for a child {peak / count:.0f} B")  # fmt: skip
        seen: set[int] = set()
        for name, part in (("DbView: models (phase1, phase2, phase2_parent)",
                            (view.phase1, view.phase2, view.phase2_parent)),
                           ("DbView: IPC form (ipc_phase1, ipc_phase2)",
                            (view.ipc_phase1, view.ipc_phase2)),
                           ("ParentState (vetter, tables)", vars(state))):  # fmt: skip
            print(f"  {name}: {deep_size(part, seen) / count:.0f} B per definition")
        for line in top_lines(after, base, count, top):
            print(line)
        wire = [encode(msg) for msg in view.config_messages()]
        db.close()
    del state, view
    core = Negotiator(None, 0.0, lambda n: bytes(n))
    base = live()
    tracemalloc.reset_peak()
    for data in wire:
        core.handle(decode(data, Direction.PARENT_TO_CHILD), 0.0)
    peak = tracemalloc.get_traced_memory()[1] - total(base)
    del wire
    after = live()
    assert len(core.config.phase2) == tunnels
    grown = total(after) - total(base)
    print(f"\n== child: the same {count} definitions as decoded and snapshotted: "
          f"{grown / count:.0f} B per definition (live); peak while receiving them "
          f"{peak / count:.0f} B (the encoded messages not counted)")  # fmt: skip
    seen = set()
    config = core.config
    for name, part in (("phase 1 definitions", config.phase1),
                       ("phase 2 definitions", config.phase2),
                       ("indexes (by_peer, by_wild, by_remote, phase2_by_phase1)",
                        (config.by_peer, config.by_wild, config.by_remote,
                         config.phase2_by_phase1))):  # fmt: skip
        print(f"  {name}: {deep_size(part, seen) / count:.0f} B per definition")
    for line in top_lines(after, base, count, top):
        print(line)


# ------------------------------------------------------------------------- the two cores


def configs(tunnels: int) -> tuple[ConfigSnapshot, ConfigSnapshot]:
    ike = [ike_proposal(IkeEncryption.AES_CBC, 128, IkeHash.SHA2_256, GroupId.MODP_2048)]
    esp = [esp_proposal(lifetime=P2_LIFETIME)]

    def sel(net: str) -> object:
        return selector(ipaddress.ip_network(net))

    local = [sel(f"198.51.100.{1 + t // 250}/32") for t in range(tunnels)]
    remote = [sel(f"203.0.113.{1 + t % 250}/32") for t in range(tunnels)]
    init = ConfigSnapshot.of(
        [phase1_def(n + 1, LEFT, RIGHT, ike) for n in range(tunnels)],
        [phase2_def(n + 1, n + 1, local[n], remote[n], esp) for n in range(tunnels)],  # type: ignore[arg-type]
    )
    resp = ConfigSnapshot.of(
        [phase1_def(1, RIGHT, LEFT, ike, remote_id=address_identity(LEFT))],
        [phase2_def(n + 1, 1, remote[n], local[n], esp) for n in range(tunnels)],  # type: ignore[arg-type]
    )
    return init, resp


def forget_harness(sim: Simulation) -> None:
    """Empty what the simulation and its stand-in parents record for tests, so that only
    the cores (and the modelled kernel's live SAs) hold what the cores made."""
    for side in sim.sides.values():
        side.sent.clear()
        side.received.clear()
        side.trail.clear()
        side.notifies_received.clear()
        p = side.parent
        for name in ("installs", "removes", "sa_adds", "sa_deletes", "policy_adds",
                     "policy_deletes", "reports", "logs", "skeyid_requests", "issued_nonces",
                     "signature_requests", "kernel_log", "commits"):  # fmt: skip
            getattr(p, name).clear()


def tables(core: Negotiator) -> dict[str, object]:
    """The core's state by table; the configuration is counted apart."""
    parts = {k: v for k, v in vars(core).items() if k not in ("config", "_handlers")}
    sas = parts.pop("sas")
    parts["sas: ISAKMP SA records"] = list(sas.by_tunnel.values())  # type: ignore[attr-defined]
    parts["sas: IPsec SA records"] = list(sas.children.values())  # type: ignore[attr-defined]
    parts["sas: the tables and indexes"] = sas
    return parts


def held(core: Negotiator) -> int:
    """Bytes the core's tables hold, the configuration not counted."""
    seen: set[int] = set()
    deep_size(core.config, seen)
    deep_size(core.settings, seen)
    return sum(deep_size(part, seen) for part in tables(core).values())


def table_sizes(core: Negotiator, per: int, top: int) -> Iterator[str]:
    seen: set[int] = set()
    deep_size(core.config, seen)
    deep_size(core.settings, seen)
    rows = [(name, deep_size(part, seen)) for name, part in tables(core).items()]
    rows.sort(key=lambda r: -r[1])
    for name, size in rows[:top]:
        yield f"    {size / max(1, per):7.0f} B  {name}"


def field_sizes(records: list[object], per: int, shared: set[int]) -> Iterator[str]:
    """Bytes per `per` of each field of `records` (deep; what `shared` holds and what an
    earlier field reached is not counted again)."""
    if not records:
        return
    cls = type(records[0])
    seen = set(shared)
    base = sum(sys.getsizeof(r) for r in records)
    rows = [("(the records themselves)", base)]
    for name in getattr(cls, "__slots__", ()):
        rows.append((name, sum(deep_size(getattr(r, name), seen) for r in records)))
    rows.sort(key=lambda r: -r[1])
    yield f"  {cls.__name__} x {len(records)}:"
    for name, size in rows:
        if size:
            yield f"    {size / max(1, per):7.0f} B  {name}"


def report(label: str, sim: Simulation, base: tracemalloc.Snapshot, per: int,
           args: argparse.Namespace) -> tracemalloc.Snapshot:  # fmt: skip
    forget_harness(sim)
    snap = live()
    grown = total(snap) - total(base)
    print(f"\n== {label}: live growth {grown / max(1, per):.0f} B per tunnel, both cores")
    for name, side in sim.sides.items():
        core = side.core
        children = list(core.sas.children.values())
        isakmp = list(core.sas.by_tunnel.values())
        exchanges = [qe for sa in isakmp for qe in sa.exchanges.values()]
        print(f"  {name}: {len(isakmp)} ISAKMP SAs, {len(children)} IPsec SA pairs, "
              f"{len(exchanges)} Quick Modes held; its tables, per tunnel:")  # fmt: skip
        for line in table_sizes(core, per, args.top):
            print(line)
        if args.fields:
            shared: set[int] = set()
            deep_size(core.config, shared)
            shared |= {id(r) for r in (*isakmp, *children, *exchanges)}
            for records in (isakmp, children, exchanges):
                for line in field_sizes(records, per, shared):  # type: ignore[arg-type]
                    print(line)
    print("  lines that allocated the most (both cores), per tunnel:")
    for line in top_lines(snap, base, per, args.top):
        print(line)
    return snap


def in_batches(sim: Simulation, n: int, phase: int) -> None:
    """Initiate every definition, BATCH at a time (under the core's half-open bounds), and
    check that all of them got there."""
    for first in range(1, n + 1, BATCH):
        for number in range(first, min(n, first + BATCH - 1) + 1):
            sim.initiate(phase=phase, number=number)
        sim.run(duration=2.0)
    sim.run(duration=5.0)
    got = len(sim.established_isakmp("initiator") if phase == 1
              else sim.established_children("initiator"))  # fmt: skip
    assert got == n, f"{got} of {n} phase {phase} established"


def measure_cores(args: argparse.Namespace) -> None:
    n = args.tunnels
    init, resp = configs(n)
    sim = Simulation(init, resp, seed=args.seed, latency=0.002)
    forget_harness(sim)
    base = live()
    stages = [("none", {k: held(s.core) for k, s in sim.sides.items()})]
    in_batches(sim, n, phase=1)
    p1 = report(f"{n} phase 1", sim, base, n, args)
    stages.append(("phase 1", {k: held(s.core) for k, s in sim.sides.items()}))
    in_batches(sim, n, phase=2)
    p2 = report(f"{n} phase 1 + phase 2", sim, p1, n, args)
    stages.append(("phase 2", {k: held(s.core) for k, s in sim.sides.items()}))
    sim.advance(P2_LIFETIME + 30)  # every phase 2 rekeyed; the old pairs deleted
    report(f"after a rekey of every phase 2 ({P2_LIFETIME + 30} s on)", sim, p2, n, args)
    stages.append(("rekeyed", {k: held(s.core) for k, s in sim.sides.items()}))
    print(
        f"\n== summary, {n} tunnels: bytes the core's tables hold (deep size, definitions "
        "not counted)"
    )
    for name, side in sim.sides.items():
        c = side.core.counters
        (_, before), (_, p1h), (_, p2h), (_, rk) = stages
        print(f"  {name}: per ISAKMP SA {(p1h[name] - before[name]) / n:.0f} B; per phase 2 "
              f"pair {(p2h[name] - p1h[name]) / n:.0f} B right after the Quick Modes, "
              f"{(rk[name] - p1h[name]) / n:.0f} B after its rekey ({c.phase2_rekeys} "
              "rekeys started here)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tunnels", type=int, default=2000)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fields", action="store_true", help="bytes per field of the SA records")
    ap.add_argument("--skip-definitions", action="store_true")
    ap.add_argument("--skip-cores", action="store_true")
    args = ap.parse_args()
    tracemalloc.start(1)
    if not args.skip_definitions:
        measure_definitions(args.tunnels, args.top)
    if not args.skip_cores:
        measure_cores(args)


if __name__ == "__main__":
    main()
