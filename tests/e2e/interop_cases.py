"""ikepriv against strongSwan 5.9 and libreswan 4.10 in a real kernel, both directions.

Guest entry point: `run_interop(names, log_dir)`. Each scenario (harness.interop.Scenario:
initiator in gwA, responder in gwB) starts both daemons, initiates, waits until both sides
report phase 1 and phase 2 established, checks `ike cmd=list` on every ikepriv side, pings
lanA -> lanB through ESP (counters of both gateways rise both ways) and stops the daemons.
The time from the initiate call to both sides established is recorded for every scenario, so
ikepriv <-> ikepriv, ikepriv <-> strongSwan and strongSwan <-> strongSwan can be compared in
one boot (printed by the test, never asserted).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import netns as nsmod
from harness.interop import Scenario, peer_spec
from harness.peer_ikepriv import PHASE1_NAME, PHASE2_NAME, Ikepriv
from harness.peers import Peer, PeerError, make_peer

from e2e.common import Case, check_esp_ping, check_listing, guarded, guards_present

CBC = "aes128-sha256"
CBC_PFS = "aes128-sha256-modp2048"
GCM = "aes256gcm16"
IKE_MM = "aes128-sha256-modp2048"
IKE_AM = "aes256-sha256-modp2048"
EST_TIMEOUT = 20.0

_SHORT = {"ikepriv": "ikp", "strongswan": "ss", "libreswan": "lsw"}


def _sc(init: str, resp: str, exchange: str, esp: str) -> Scenario:
    tag = {CBC: "cbc", CBC_PFS: "cbc-pfs", GCM: "gcm"}[esp]
    ex = "mm" if exchange == "main" else "am"
    return Scenario(
        f"{_SHORT[init]}-{_SHORT[resp]}-{ex}-{tag}",
        init,
        resp,
        exchange,
        ike=IKE_MM if exchange == "main" else IKE_AM,
        esp=esp,
    )


def catalogue() -> dict[str, Scenario]:
    """Per reference peer and direction: Main Mode with ESP AES-CBC/SHA2-256 without and
    with PFS and with AES-GCM; Aggressive Mode with AES-CBC/SHA2-256 and PFS and with
    AES-GCM; plus ikepriv <-> ikepriv and strongSwan <-> strongSwan in Main Mode for the
    timing comparison."""
    scs: list[Scenario] = []
    for ref in ("strongswan", "libreswan"):
        for init, resp in (("ikepriv", ref), (ref, "ikepriv")):
            scs += [
                _sc(init, resp, "main", CBC),
                _sc(init, resp, "main", CBC_PFS),
                _sc(init, resp, "main", GCM),
                _sc(init, resp, "aggressive", CBC_PFS),
                _sc(init, resp, "aggressive", GCM),
            ]
    scs += [_sc("ikepriv", "ikepriv", "main", CBC), _sc("strongswan", "strongswan", "main", CBC)]
    return {s.name: s for s in scs}


CATALOGUE = catalogue()
TIMING = ("ikp-ikp-mm-cbc", "ikp-ss-mm-cbc", "ss-ikp-mm-cbc", "ss-ss-mm-cbc")


Verify = Callable[[Case, nsmod.Topology, list[Peer]], None]


def run_one(
    topo: nsmod.Topology,
    sc: Scenario,
    root: Path,
    *,
    spec_extra: dict[str, Any] | None = None,
    verify: Verify | None = None,
    role_extra: dict[str, dict[str, Any]] | None = None,
    ping_dst: str = nsmod.LAN_B_HOST,
) -> tuple[dict[str, Any], list[Peer]]:
    """`spec_extra`: PeerSpec fields beyond the Scenario's (both sides), `role_extra` the
    same per role ("initiator", "responder"); `verify`: more checks once both sides are
    established, before the listing and the ping (to `ping_dst` in lanB)."""
    case = Case(sc.name)
    topo.reset_xfrm()
    extra = spec_extra or {}
    per_role = role_extra or {}
    resp = make_peer(
        sc.responder,
        replace(peer_spec(topo, sc, "responder"), **{**extra, **per_role.get("responder", {})}),
        root,
    )
    init = make_peer(
        sc.initiator,
        replace(peer_spec(topo, sc, "initiator"), **{**extra, **per_role.get("initiator", {})}),
        root,
    )
    peers = [init, resp]
    try:
        with guarded(case):
            case.step("start")
            t = time.monotonic()
            try:
                resp.start()
                init.start()
            except PeerError as e:
                case.check(False, f"start failed: {e}")
                return case.result(peers), peers
            case.timed("start", t)
            case.step("initiate")
            t = time.monotonic()
            ok = init.initiate(timeout=EST_TIMEOUT)
            case.timed("initiate", t)
            case.check(ok, "initiate failed")
            deadline = time.monotonic() + EST_TIMEOUT
            while not (init.established() and resp.established()):
                if time.monotonic() > deadline:
                    case.check(False, "not established on both sides")
                    break
                time.sleep(0.05)
            case.timed("initiate_to_both_established", t)
            if isinstance(init, Ikepriv) and init.activate_exec_s is not None:
                case.times["activate_exec"] = round(init.activate_exec_s, 3)
            if not case.why and verify is not None:
                verify(case, topo, peers)
            if not case.why:
                case.step("verify")
                case.check(guards_present(topo), "guard policy missing")
                for p in peers:
                    if isinstance(p, Ikepriv):
                        check_listing(case, p, (PHASE1_NAME,), (PHASE2_NAME,))
                check_esp_ping(case, topo, dst=ping_dst)
                case.details["algs"] = {
                    gw: topo.esp_counters(gw).as_dict()["algs"] for gw in (topo.gw_a, topo.gw_b)
                }
    finally:
        for p in peers:
            p.stop()
    return case.result(peers), peers


def run_catalogue(
    names: list[str],
    log_dir: str | None,
    prefix: str,
    run: Callable[[nsmod.Topology, str, Path], tuple[dict[str, Any], list[Peer]]],
    *,
    ipv6: bool = False,
) -> dict[str, Any]:
    """One boot's scenario loop: topology (`ipv6`: with IPv6 too), guard check, each
    scenario, logs, clean-up."""
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix=prefix))
    topo = nsmod.Topology(ipv6=ipv6)
    topo.build()
    out: dict[str, Any] = {"kernel": os.uname().release, "results": {}}
    try:
        topo.reset_xfrm()
        out["guard_blocks"] = topo.guard_blocks()
        for name in names:
            r, peers = run(topo, name, root)
            status = "PASS" if r["ok"] else "FAIL " + "; ".join(r["why"])[:400]
            print(f"{status} {name}: {r['times']}", flush=True)
            out["results"][name] = r
            if log_dir:
                dest = Path(log_dir) / name
                dest.mkdir(parents=True, exist_ok=True)
                for p in peers:
                    for f in p.logs():
                        shutil.copy(f, dest / f"{p.spec.role}.{f.name}")
    finally:
        topo.destroy()
    out["guest_s"] = round(time.monotonic() - t0, 3)
    return out


def run_interop(names: list[str] | None = None, log_dir: str | None = None) -> dict[str, Any]:
    return run_catalogue(
        names or list(CATALOGUE), log_dir, "e2e-interop.",
        lambda topo, name, root: run_one(topo, CATALOGUE[name], root),
    )  # fmt: skip
