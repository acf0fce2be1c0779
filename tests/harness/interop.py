"""One IKEv1 scenario over the gwA/gwB topology: initiator in gwA, responder in gwB.

A scenario passes when: both daemons start; the initiator's initiate succeeds; both sides report
an established ISAKMP SA and IPsec SA; a ping lanA -> lanB gets through (the guard policies make
that impossible without ESP); and each gateway's ESP SAs counted packets in both directions.
The result is a JSON-able dict, so it can travel out of the UML guest (harness.uml.run_function).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import netns as nsmod
from .peers import DEFAULT_ESP, DEFAULT_IKE, Peer, PeerError, PeerSpec, make_peer

DEFAULT_PSK = "interop-psk-0123456789abcdef"


@dataclass(frozen=True)
class Scenario:
    name: str
    initiator: str  # driver impl in gwA
    responder: str  # driver impl in gwB
    exchange: str = "main"
    ike: str = DEFAULT_IKE
    esp: str = DEFAULT_ESP
    psk: str = DEFAULT_PSK
    responder_psk: str | None = None  # a different PSK: negative scenarios
    init_timeout: float = 30  # seconds the initiate call may block
    est_timeout: float = 20  # seconds until both sides must report established


# Reference scenarios (strongSwan syntax proposals). IKE defaults to aes128-sha256-modp2048.
CATALOGUE: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("ss-ss-mm", "strongswan", "strongswan", "main", esp="aes128-sha256"),
        Scenario("ss-ss-mm-pfs", "strongswan", "strongswan", "main", esp="aes128-sha256-modp2048"),
        Scenario(
            "ss-ss-am-ecp-gcm",
            "strongswan",
            "strongswan",
            "aggressive",
            ike="aes256-sha384-ecp256",
            esp="aes128gcm16",
        ),
        Scenario("ss-lsw-mm-pfs", "strongswan", "libreswan", "main", esp="aes128-sha256-modp2048"),
        Scenario("lsw-ss-mm-pfs", "libreswan", "strongswan", "main", esp="aes128-sha256-modp2048"),
        Scenario("ss-lsw-am", "strongswan", "libreswan", "aggressive", esp="aes128-sha256"),
        Scenario("lsw-ss-am-gcm", "libreswan", "strongswan", "aggressive", esp="aes256gcm16"),
        Scenario("lsw-lsw-mm", "libreswan", "libreswan", "main", esp="aes128-sha256-modp2048"),
        # negative control: the responder holds another PSK, so the checks must fail
        Scenario(
            "neg-ss-ss-psk",
            "strongswan",
            "strongswan",
            "main",
            responder_psk="not-the-same-psk-0123456789",
            init_timeout=6,
            est_timeout=2,
        ),
    )
}


def peer_spec(topo: nsmod.Topology, sc: Scenario, role: str) -> PeerSpec:
    """The spec of the initiator (gwA side) or the responder (gwB side) of `sc`."""
    a = role == "initiator"
    psk = sc.psk if a or sc.responder_psk is None else sc.responder_psk
    return PeerSpec(
        name=f"{'i' if a else 'r'}-{sc.name}",
        netns=topo.gw_a if a else topo.gw_b,
        role=role,
        local=nsmod.GW_A_OUTER if a else nsmod.GW_B_OUTER,
        remote=nsmod.GW_B_OUTER if a else nsmod.GW_A_OUTER,
        psk=psk,
        local_ts=nsmod.LAN_A_NET if a else nsmod.LAN_B_NET,
        remote_ts=nsmod.LAN_B_NET if a else nsmod.LAN_A_NET,
        ike=sc.ike,
        esp=sc.esp,
        exchange=sc.exchange,
        debug=bool(os.environ.get("IKEPRIV_INTEROP_DEBUG")),
    )


def _save_logs(peers: list[Peer], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for p in peers:
        for f in p.logs():
            shutil.copy(f, dest / f"{p.spec.role}.{f.name}")


def run_scenario(
    topo: nsmod.Topology, sc: Scenario, state_root: Path, *, log_dir: Path | None = None
) -> dict[str, Any]:
    """Run `sc` once (xfrm of both gateways reset first); never raises for a failed check."""
    times: dict[str, float] = {}
    why: list[str] = []
    t0 = time.monotonic()
    topo.reset_xfrm()
    stat_before = {gw: nsmod.xfrm_stat_errors(gw) for gw in (topo.gw_a, topo.gw_b)}
    resp = make_peer(sc.responder, peer_spec(topo, sc, "responder"), state_root)
    init = make_peer(sc.initiator, peer_spec(topo, sc, "initiator"), state_root)
    peers = [init, resp]
    ping_out = ""
    try:
        try:
            resp.start()
            init.start()
        except PeerError as e:
            why.append(f"start failed: {e}")
        times["start"] = time.monotonic() - t0
        if not why:
            t1 = time.monotonic()
            if not init.initiate(timeout=sc.init_timeout):
                why.append("initiate failed")
            times["initiate"] = time.monotonic() - t1
            # a failed initiate gets one look; else the responder may lag behind QM3 a little
            deadline = time.monotonic() + (0 if why else sc.est_timeout)
            while not (init.established() and resp.established()):
                if time.monotonic() > deadline:
                    why.append("not established on both sides")
                    break
                time.sleep(0.1)
            times["initiate_to_both_established"] = time.monotonic() - t1
        if not why:
            t2 = time.monotonic()
            pr = topo.ping(count=3)
            times["ping"] = time.monotonic() - t2
            ping_out = pr.stdout + pr.stderr
            if pr.returncode != 0:
                why.append("ping lanA -> lanB failed")
        dumps = {gw: topo.xfrm_state(gw) for gw in (topo.gw_a, topo.gw_b)}
        counters = {gw: topo.esp_counters(gw, text) for gw, text in dumps.items()}
        if not why:
            for gw, c in counters.items():
                if not c.both_directions:
                    why.append(f"{gw}: ESP counters out={c.out_packets} in={c.in_packets}")
        stat_errors = {
            gw: nsmod.counter_increase(stat_before[gw], nsmod.xfrm_stat_errors(gw)) for gw in dumps
        }
    finally:
        for p in peers:
            p.stop()
    tails = {p.spec.role: p.log_tail() for p in peers} if why else {}
    if log_dir is not None:
        _save_logs(peers, log_dir / sc.name)
        for gw, text in dumps.items():
            (log_dir / sc.name / f"xfrm-state-{gw}.txt").write_text(text)
    times["total"] = time.monotonic() - t0
    return {
        "scenario": asdict(sc) | {"psk": "***", "responder_psk": None},
        "ok": not why,
        "why": why,
        "times": {k: round(v, 3) for k, v in times.items()},
        "counters": {gw: c.as_dict() for gw, c in counters.items()},
        "xfrm_stat_new_errors": stat_errors,
        "ping": ping_out[-2000:],
        "log_tails": tails,
    }


def run_scenarios(
    scenarios: list[dict[str, Any]], state_root: str | None = None, log_dir: str | None = None
) -> dict[str, Any]:
    """Guest entry point: build the topology once, self-check the guard, run every scenario.

    `scenarios` are Scenario fields as dicts (JSON from the host)."""
    t0 = time.monotonic()
    root = Path(state_root or tempfile.mkdtemp(prefix="interop."))
    topo = nsmod.Topology()
    topo.build()
    out: dict[str, Any] = {"kernel": os.uname().release}
    try:
        out["topology_s"] = round(time.monotonic() - t0, 3)
        topo.reset_xfrm()
        out["guard_blocks"] = topo.guard_blocks()
        results = {}
        for d in scenarios:
            sc = Scenario(**d)
            r = run_scenario(topo, sc, root, log_dir=Path(log_dir) if log_dir else None)
            status = "PASS" if r["ok"] else "FAIL " + "; ".join(r["why"])
            print(f"{status} {sc.name}: {r['times']}", flush=True)
            results[sc.name] = r
        out["results"] = results
    finally:
        topo.destroy()
    out["guest_s"] = round(time.monotonic() - t0, 3)
    return out
