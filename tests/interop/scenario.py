#!/usr/bin/env python3
"""Run IKEv1 interop scenarios by hand: one UML boot, any list of named scenarios.

    .venv/bin/python tests/interop/scenario.py --list
    .venv/bin/python tests/interop/scenario.py ss-ss-mm lsw-ss-am-gcm
    .venv/bin/python tests/interop/scenario.py all --logs /var/tmp/interop-logs
    .venv/bin/python tests/interop/scenario.py --responder ikepriv ss-ss-mm ss-ss-mm-pfs
    .venv/bin/python tests/interop/scenario.py --host ss-lsw-mm-pfs     # phase 1 only, no UML

--initiator/--responder put another driver (harness/peer_<impl>.py) on that side;
--ike/--esp override the proposals (strongSwan syntax). Exit status 0 iff every scenario
passed (for neg-* scenarios "passed" means the run failed, as it should).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import netns as nsmod
from harness import uml
from harness.interop import CATALOGUE, Scenario, peer_spec
from harness.peers import make_peer


def _pick(args: argparse.Namespace) -> list[Scenario]:
    names = list(CATALOGUE) if args.names == ["all"] else args.names
    out = []
    for n in names:
        if n not in CATALOGUE:
            sys.exit(f"unknown scenario {n}; known: {', '.join(CATALOGUE)}")
        sc = CATALOGUE[n]
        changes = {
            k: v
            for k, v in (
                ("initiator", args.initiator),
                ("responder", args.responder),
                ("ike", args.ike),
                ("esp", args.esp),
            )
            if v
        }
        out.append(dataclasses.replace(sc, **changes))
    return out


def _host_phase1(scenarios: list[Scenario]) -> int:
    topo = nsmod.Topology(prefix=f"cli{os.getpid()}")
    topo.build()
    root = Path(tempfile.mkdtemp(prefix="interop-host."))
    bad = 0
    try:
        for sc in scenarios:
            topo.reset_xfrm()
            resp = make_peer(sc.responder, peer_spec(topo, sc, "responder"), root)
            init = make_peer(sc.initiator, peer_spec(topo, sc, "initiator"), root)
            with resp, init:
                t0 = time.monotonic()
                resp.start()
                init.start()
                t1 = time.monotonic()
                ok = init.initiate_phase1(timeout=sc.init_timeout)
                deadline = time.monotonic() + sc.est_timeout
                while ok and not resp.ike_established():
                    if time.monotonic() > deadline:
                        ok = False
                        break
                    time.sleep(0.1)
                t2 = time.monotonic()
            good = ok != sc.name.startswith("neg-")
            bad += not good
            print(
                f"{'PASS' if good else 'FAIL'} {sc.name} (phase 1 {'up' if ok else 'down'};"
                f" start {t1 - t0:.2f}s, phase 1 {t2 - t1:.2f}s; logs {root}/[ir]-{sc.name})"
            )
    finally:
        topo.destroy()
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("names", nargs="*", help="scenario names, or 'all'")
    ap.add_argument("--list", action="store_true", help="list the scenarios")
    ap.add_argument("--initiator", help="driver for gwA (default: the scenario's)")
    ap.add_argument("--responder", help="driver for gwB (default: the scenario's)")
    ap.add_argument("--ike", help="IKE proposal override")
    ap.add_argument("--esp", help="ESP proposal override")
    ap.add_argument("--logs", type=Path, help="keep logs, configs and xfrm dumps here")
    ap.add_argument("--host", action="store_true", help="phase 1 only, on the host")
    ap.add_argument("--timeout", type=float, default=900, help="UML timeout (s)")
    args = ap.parse_args()
    if args.list:
        for sc in CATALOGUE.values():
            print(
                f"{sc.name:18} {sc.initiator:>10} -> {sc.responder:<10} {sc.exchange:10}"
                f" ike={sc.ike} esp={sc.esp}"
            )
        return 0
    if not args.names:
        ap.error("name at least one scenario (or 'all', or --list)")
    scenarios = _pick(args)
    if args.host:
        return _host_phase1(scenarios)
    logs = str(args.logs.resolve()) if args.logs else None
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    value, run = uml.run_function(
        "harness.interop",
        "run_scenarios",
        [dataclasses.asdict(s) for s in scenarios],
        None,
        logs,
        timeout=args.timeout,
        stream=True,
        rw_dirs=[args.logs] if args.logs else [],
    )
    bad = 0
    for name, r in value["results"].items():
        good = r["ok"] != name.startswith("neg-")
        bad += not good
        print(
            f"{'PASS' if good else 'FAIL'} {name}: {r['times']}"
            + ("" if r["ok"] else f" why={r['why']}")
        )
        if not good:
            for tail in r["log_tails"].values():
                print(tail)
    print(
        f"== {len(value['results']) - bad} passed, {bad} failed; guest {value['guest_s']}s, "
        f"wall {time.monotonic() - t0:.1f}s (UML rc {run.rc})"
    )
    return 1 if bad or run.rc else 0


if __name__ == "__main__":
    sys.exit(main())
