"""Issue 9 point 5, operator options of ikepriv against strongSwan 5.9 and libreswan 4.10 in
a real kernel (one UML boot).

Guest entry point: `run_interop_ops(names, log_dir)`. Each scenario: the options go to the
ikepriv side only (the reference peer keeps its defaults), then start, initiate, both sides
established, a lanA -> lanB ping counted by the ESP SAs of both gateways, and the option's
own check:

- encap (`encap = true` on ikepriv's phase 1, no NAT anywhere): the peer sees ikepriv's faked
  NAT-D, both sides move to UDP 4500 and every ESP SA of both gateways is ESP-in-UDP
  4500 <-> 4500; ikepriv initiating and answering, against both peers;
- norekey (`rekey = false` on ikepriv's phase 2, lifetime 60 s, rekey_margin 30 s): without
  the option ikepriv replaces the SA within the first 30 s; with it, the ESP SPIs on
  ikepriv's gateway stay the same until the hard lifetime, the SA then goes away, and
  ikepriv's log has no rekey.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import netns as nsmod
from harness.interop import Scenario, peer_spec
from harness.peer_ikepriv import Ikepriv
from harness.peers import Peer, PeerError, make_peer

from e2e.common import Case, check_esp_ping, guarded
from e2e.interop_cases import EST_TIMEOUT, IKE_MM, Verify, run_catalogue
from e2e.interop_more_cases import _stats, verify_encap

ESP_CBC = "aes128-sha256"
P2_LIFETIME = 60
P2_MARGIN = 30  # the most a 60 s lifetime allows (half of it)
NOREKEY_WATCH = 56.0  # seconds after establishment: past any rekey ikepriv would start
NOREKEY_GONE = P2_LIFETIME + 12.0  # by then the hard lifetime removed the SA


@dataclass(frozen=True)
class OpsCase:
    sc: Scenario
    phase1: dict[str, Any] = field(default_factory=dict)  # ikepriv phase 1 keys
    phase2: dict[str, Any] = field(default_factory=dict)  # ikepriv phase 2 keys
    verify: Verify | None = None
    algs: tuple[str, ...] = ("cbc(aes)", "hmac(sha256)")


def _ikepriv(peers: list[Peer]) -> Ikepriv:
    return next(p for p in peers if isinstance(p, Ikepriv))


def _ikepriv_gw(topo: nsmod.Topology, peers: list[Peer]) -> str:
    return topo.gw_a if peers[0] is _ikepriv(peers) else topo.gw_b


def _esp_spis(topo: nsmod.Topology, gw: str) -> set[int]:
    return {sa.spi for sa in nsmod.parse_xfrm_state(topo.xfrm_state(gw)) if sa.proto == "esp"}


def verify_norekey(case: Case, topo: nsmod.Topology, peers: list[Peer], since: float) -> None:
    """ikepriv's gateway keeps its first ESP SA pair to the end, then loses it."""
    case.step("norekey")
    gw = _ikepriv_gw(topo, peers)
    first = _esp_spis(topo, gw)
    case.details["first_spis"] = sorted(first)
    case.check(len(first) == 2, f"{gw}: {len(first)} ESP SAs at the start, want 2")
    seen = set(first)
    while time.monotonic() < since + NOREKEY_WATCH:
        seen |= _esp_spis(topo, gw)
        time.sleep(1.0)
    case.details["seen_spis"] = sorted(seen)
    case.check(
        seen == first,
        f"{gw}: new ESP SAs {sorted(seen - first)} within {NOREKEY_WATCH:.0f}s: someone rekeyed",
    )
    ikp = _ikepriv(peers)
    case.check(
        "rekeying" not in ikp.daemon_log.read_text(errors="replace"),
        "ikepriv's log says it rekeyed",
    )
    stats = _stats(ikp)
    case.details["rekey_stats"] = {k: v for k, v in stats.items() if "rekey" in k}
    case.check(
        stats.get("phase2_rekeys", -1) == 0,
        f"ikepriv phase2_rekeys {stats.get('phase2_rekeys')}, want 0",
    )
    case.step("hard expiry")
    while time.monotonic() < since + NOREKEY_GONE and _esp_spis(topo, gw) & first:
        time.sleep(1.0)
    left = _esp_spis(topo, gw) & first
    case.check(not left, f"{gw}: SAs {sorted(left)} outlived the {P2_LIFETIME}s lifetime")


_SHORT = {"ikepriv": "ikp", "strongswan": "ss", "libreswan": "lsw"}


def catalogue() -> dict[str, OpsCase]:
    cases: list[OpsCase] = []
    for ref in ("strongswan", "libreswan"):
        for init, resp in (("ikepriv", ref), (ref, "ikepriv")):
            pre = f"{_SHORT[init]}-{_SHORT[resp]}-mm"
            sc = Scenario(f"{pre}-encap", init, resp, "main", ike=IKE_MM, esp=ESP_CBC)
            cases.append(OpsCase(sc, {"encap": True}, verify=verify_encap))
    for init, resp in (
        ("ikepriv", "strongswan"),
        ("strongswan", "ikepriv"),
        ("ikepriv", "libreswan"),
    ):
        pre = f"{_SHORT[init]}-{_SHORT[resp]}-mm"
        sc = Scenario(f"{pre}-norekey", init, resp, "main", ike=IKE_MM, esp=ESP_CBC)
        cases.append(
            OpsCase(sc, phase2={"rekey": False, "lifetime": P2_LIFETIME, "rekey_margin": P2_MARGIN})
        )
    return {c.sc.name: c for c in cases}


CATALOGUE = catalogue()


def run_ops(topo: nsmod.Topology, oc: OpsCase, root: Path
            ) -> tuple[dict[str, Any], list[Peer]]:  # fmt: skip
    sc = oc.sc
    case = Case(sc.name)
    topo.reset_xfrm()
    resp = make_peer(sc.responder, peer_spec(topo, sc, "responder"), root)
    init = make_peer(sc.initiator, peer_spec(topo, sc, "initiator"), root)
    peers = [init, resp]
    for p in peers:
        if isinstance(p, Ikepriv):
            p.options = replace(p.options, phase1_extra=dict(oc.phase1),
                                phase2_extra=dict(oc.phase2))  # fmt: skip
    try:
        with guarded(case):
            case.step("start")
            try:
                resp.start()
                init.start()
            except PeerError as e:
                case.check(False, f"start failed: {e}")
                return case.result(peers), peers
            case.step("initiate")
            t = time.monotonic()
            case.check(init.initiate(timeout=EST_TIMEOUT), "initiate failed")
            deadline = time.monotonic() + EST_TIMEOUT
            while not (init.established() and resp.established()):
                if time.monotonic() > deadline:
                    case.check(False, "not established on both sides")
                    break
                time.sleep(0.05)
            case.timed("initiate_to_both_established", t)
            if case.why:
                return case.result(peers), peers
            if oc.verify is not None:
                oc.verify(case, topo, peers)
            case.step("ping")
            check_esp_ping(case, topo)
            case.details["algs"] = {gw: topo.esp_counters(gw).as_dict()["algs"]
                                    for gw in (topo.gw_a, topo.gw_b)}  # fmt: skip
            if oc.phase2.get("rekey") is False and not case.why:
                verify_norekey(case, topo, peers, t)
    finally:
        for p in peers:
            p.stop()
    return case.result(peers), peers


def run_interop_ops(names: list[str] | None = None, log_dir: str | None = None
                    ) -> dict[str, Any]:  # fmt: skip
    return run_catalogue(
        names or list(CATALOGUE),
        log_dir,
        "e2e-interop-ops.",
        lambda topo, name, root: run_ops(topo, CATALOGUE[name], root),
    )
