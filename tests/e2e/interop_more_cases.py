"""ikepriv against strongSwan 5.9 beyond the base matrix: NAT-T, ECP/Curve25519, 3DES, DPD.

Guest entry point: `run_interop_more(names, log_dir)`, the same scenario runner as
e2e.interop_cases (start both daemons, initiate, both sides established, `ike cmd=list json`
on the ikepriv side, a lanA -> lanB ping counted by the ESP SAs of both gateways), with
per-scenario PeerSpec extras and checks:

- encap: strongSwan `encap = yes` fakes its NAT-D hash, so both sides see a NAT, move IKE to
  UDP 4500 and must install ESP-in-UDP SAs (`encap type espinudp sport 4500 dport 4500` on
  every ESP SA of both gateways);
- ecp256 / curve25519: phase 1 with those groups;
- 3des: IKE 3des-sha1-modp1024, ESP 3des-sha1 (old peers);
- dpd: strongSwan probes every 2 s when idle; ikepriv must answer (its `dpd_acks_sent`
  counter rises) and both sides stay established.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import netns as nsmod
from harness.interop import Scenario
from harness.peer_ikepriv import Ikepriv
from harness.peers import Peer

from e2e.common import Case
from e2e.interop_cases import IKE_MM, Verify, run_catalogue, run_one

ESP_CBC = "aes128-sha256"
ENCAP_LINE = "encap type espinudp sport 4500 dport 4500"
DPD_DELAY = 2
DPD_WAIT = 20.0  # seconds to see the acks counted
DPD_MIN_ACKS = 2  # several rounds, not one lucky probe


@dataclass(frozen=True)
class MoreCase:
    sc: Scenario
    spec_extra: dict[str, Any] = field(default_factory=dict)
    verify: Verify | None = None
    algs: tuple[str, ...] = ("cbc(aes)", "hmac(sha256)")  # kernel names on both gateways


def _esp_blocks(text: str) -> list[str]:
    """The `ip xfrm state` blocks of ESP SAs."""
    blocks = ["src " + b if i else b for i, b in enumerate(text.split("\nsrc "))]
    return [b for b in blocks if "proto esp" in b]


def verify_encap(case: Case, topo: nsmod.Topology, peers: list[Peer]) -> None:
    """Every ESP SA of both gateways is ESP-in-UDP on port 4500 both ends."""
    case.step("encap")
    for gw in (topo.gw_a, topo.gw_b):
        blocks = _esp_blocks(topo.xfrm_state(gw))
        case.details[f"encap_{gw}"] = [b.splitlines()[0:3] for b in blocks]
        case.check(len(blocks) >= 2, f"{gw}: {len(blocks)} ESP SAs, want 2")
        for b in blocks:
            case.check(ENCAP_LINE in b, f"{gw}: ESP SA without '{ENCAP_LINE}':\n{b[:400]}")


def _stats(peer: Ikepriv) -> dict[str, int]:
    r = peer.ike("cmd=list", "stats", "json")
    if r.returncode != 0:
        return {}
    try:
        value = json.loads(r.stdout)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def verify_dpd(case: Case, topo: nsmod.Topology, peers: list[Peer]) -> None:
    """strongSwan's R-U-THEREs are answered (ikepriv counts its acks) and nobody drops."""
    case.step("dpd")
    ikp = next(p for p in peers if isinstance(p, Ikepriv))
    deadline = time.monotonic() + DPD_WAIT
    stats: dict[str, int] = {}
    while time.monotonic() < deadline:
        stats = _stats(ikp)
        if stats.get("dpd_acks_sent", 0) >= DPD_MIN_ACKS:
            break
        time.sleep(1.0)
    case.details["dpd_stats"] = {k: v for k, v in stats.items() if k.startswith("dpd")}
    case.check(
        stats.get("dpd_acks_sent", 0) >= DPD_MIN_ACKS,
        f"ikepriv dpd_acks_sent {stats.get('dpd_acks_sent')} after {DPD_WAIT}s, "
        f"want >= {DPD_MIN_ACKS}",
    )
    case.check(stats.get("dpd_dead_peers", 0) == 0, "ikepriv declared the peer dead")
    for p in peers:
        case.check(p.established(), f"{p.spec.name}: no longer established after DPD rounds")


_SHORT = {"ikepriv": "ikp", "strongswan": "ss"}
_BOTH = (("ikepriv", "strongswan"), ("strongswan", "ikepriv"))


def catalogue() -> dict[str, MoreCase]:
    cases: list[MoreCase] = []
    for init, resp in _BOTH:
        pre = f"{_SHORT[init]}-{_SHORT[resp]}-mm"
        cases += [
            MoreCase(
                Scenario(f"{pre}-encap", init, resp, "main", ike=IKE_MM, esp=ESP_CBC),
                {"encap": True},
                verify_encap,
            ),
            MoreCase(
                Scenario(
                    f"{pre}-ecp256", init, resp, "main", ike="aes128-sha256-ecp256", esp=ESP_CBC
                )
            ),
            MoreCase(
                Scenario(
                    f"{pre}-x25519", init, resp, "main", ike="aes128-sha256-curve25519", esp=ESP_CBC
                )
            ),
            MoreCase(
                Scenario(
                    f"{pre}-3des", init, resp, "main", ike="3des-sha1-modp1024", esp="3des-sha1"
                ),
                algs=("cbc(des3_ede)", "hmac(sha1)"),
            ),
            MoreCase(
                Scenario(f"{pre}-dpd", init, resp, "main", ike=IKE_MM, esp=ESP_CBC),
                {"dpd_delay": DPD_DELAY},
                verify_dpd,
            ),
        ]
    return {c.sc.name: c for c in cases}


CATALOGUE = catalogue()


def run_interop_more(names: list[str] | None = None, log_dir: str | None = None) -> dict[str, Any]:
    def run(topo: nsmod.Topology, name: str, root: Path) -> tuple[dict[str, Any], list[Peer]]:
        mc = CATALOGUE[name]
        return run_one(topo, mc.sc, root, spec_extra=mc.spec_extra, verify=mc.verify)

    return run_catalogue(names or list(CATALOGUE), log_dir, "e2e-interop-more.", run)
