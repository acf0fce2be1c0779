"""Issue 9 point 5 (c) and (d) against strongSwan 5.9 and libreswan 4.10 in a real kernel
(one UML boot). Guest entry point: `run_interop_features(names, log_dir)`.

- ctr: ESP AES-CTR (RFC 3686) on both sides, ikepriv initiating and answering against both
  peers; both gateways' ESP SAs are `rfc3686(ctr(aes))` with HMAC-SHA-256 and carry the
  lanA -> lanB ping.
- subnets: two subnets per side in one phase 2 definition (ikepriv `local_subnets` /
  `remote_subnets`, libreswan `leftsubnets={..}`/`rightsubnets={..}`, strongSwan one child
  per pair), ikepriv initiating and answering against both peers: all four (local, remote)
  pairs come up with SPIs of their own; `ike cmd=list` shows one established phase 2 row per
  pair with its selectors (and the kernel SA of that row's SPI has those selectors); a ping
  per pair (from a lanA address in the local subnet to a lanB address in the remote one) is
  counted on that pair's SAs on both gateways and on no other pair's; `ike cmd=remove`
  leaves no ESP SA and no policy but the guard on either gateway (libreswan: but its own
  trap policies; as initiator it negotiates the pairs again, so only the removed SAs must
  be gone there).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness import netns as nsmod
from harness.interop import Scenario, peer_spec
from harness.peer_ikepriv import PHASE1_NAME, PHASE2_NAME, Ikepriv
from harness.peers import Peer, PeerError, make_peer

from e2e.common import Case, guarded, guards_present, ping, ping_stats
from e2e.interop_cases import EST_TIMEOUT, IKE_MM, run_catalogue
from e2e.interop_ops_cases import OpsCase, run_ops

_SHORT = {"ikepriv": "ikp", "strongswan": "ss", "libreswan": "lsw"}
CTR_ALGS = ("rfc3686(ctr(aes))", "hmac(sha256)")


def catalogue() -> dict[str, OpsCase]:
    cases: list[OpsCase] = []
    for ref, bits in (("strongswan", 128), ("libreswan", 256)):
        for init, resp in (("ikepriv", ref), (ref, "ikepriv")):
            name = f"{_SHORT[init]}-{_SHORT[resp]}-mm-aes{bits}ctr"
            sc = Scenario(name, init, resp, "main", ike=IKE_MM, esp=f"aes{bits}ctr-sha256")
            cases.append(OpsCase(sc, algs=CTR_ALGS))
    return {c.sc.name: c for c in cases}


# two /28s per LAN, each with a host address of its own (the /24 routes cover them)
A_SUBNETS = ("198.51.100.0/28", "198.51.100.16/28")
B_SUBNETS = ("203.0.113.0/28", "203.0.113.16/28")
A_HOSTS = {"198.51.100.0/28": nsmod.LAN_A_HOST, "198.51.100.16/28": "198.51.100.20"}
B_HOSTS = {"203.0.113.0/28": nsmod.LAN_B_HOST, "203.0.113.16/28": "203.0.113.20"}
PAIRS = [(lo, re) for lo in A_SUBNETS for re in B_SUBNETS]  # lanA side -> lanB side
PING_COUNT = 3
SUBNET_ALGS = ("cbc(aes)", "hmac(sha256)")


def subnet_scenarios() -> dict[str, Scenario]:
    scs = []
    for ref in ("strongswan", "libreswan"):
        for init, resp in (("ikepriv", ref), (ref, "ikepriv")):
            name = f"{_SHORT[init]}-{_SHORT[resp]}-mm-subnets"
            scs.append(Scenario(name, init, resp, "main", ike=IKE_MM, esp="aes128-sha256"))
    return {s.name: s for s in scs}


SUBNETS = subnet_scenarios()
CATALOGUE: dict[str, Any] = {**catalogue(), **SUBNETS}


def _add_hosts(topo: nsmod.Topology) -> None:
    """The second host address of each LAN (idempotent: replace)."""
    nsmod.ip_batch([f"addr replace {A_HOSTS[A_SUBNETS[1]]}/24 dev eth0"], topo.lan_a)
    nsmod.ip_batch([f"addr replace {B_HOSTS[B_SUBNETS[1]]}/24 dev eth0"], topo.lan_b)


def _esp(topo: nsmod.Topology, gw: str) -> dict[int, nsmod.XfrmSa]:
    return {sa.spi: sa for sa in nsmod.parse_xfrm_state(topo.xfrm_state(gw)) if sa.proto == "esp"}


def _lan_policies(topo: nsmod.Topology, gw: str) -> list[str]:
    """Policies of `gw` for LAN traffic other than the guard (the daemons' per-socket IKE
    bypasses and pluto's IPv6 ND bypasses are no tunnel's)."""
    blocks = ("\n" + topo.xfrm_policy(gw)).split("\nsrc ")[1:]
    return [" ".join(("src " + b).split()) for b in blocks
            if f"priority {nsmod.GUARD_PRIORITY}" not in b
            and ("198.51.100." in b or "203.0.113." in b)]  # fmt: skip


def _pair_rows(case: Case, ikp: Ikepriv, a_side: bool) -> dict[tuple[str, str], dict[str, Any]]:
    """The real `ike cmd=list json` of an ikepriv side: one established phase 2 row per pair,
    its selectors (oriented lanA -> lanB) as the key."""
    rc, rows, err = ikp.list_json()
    side = ikp.spec.name
    case.details[f"list_{side}"] = [
        {k: r.get(k) for k in ("phase", "name", "state", "spi_in", "spi_out", "local_selector",
                               "remote_selector")} for r in rows]  # fmt: skip
    if not case.check(rc == 0, f"{side}: ike cmd=list json rc {rc}: {err.strip()}"):
        return {}
    p1 = [r for r in rows if r["phase"] == 1]
    case.check(len(p1) == 1 and p1[0]["name"] == PHASE1_NAME
               and p1[0]["state"] == "established", f"{side}: phase 1 rows {p1}")  # fmt: skip
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in (r for r in rows if r["phase"] == 2):
        case.check(r["name"] == PHASE2_NAME and r["state"] == "established",
                   f"{side}: phase 2 row {r['name']} {r['state']}")  # fmt: skip
        lo, re = r["local_selector"], r["remote_selector"]
        key = (lo, re) if a_side else (re, lo)
        case.check(key not in out, f"{side}: two rows for pair {key}")
        out[key] = r
    case.check(sorted(out) == sorted(PAIRS),
               f"{side}: phase 2 rows for pairs {sorted(out)}, want {sorted(PAIRS)}")  # fmt: skip
    return out


def _verify_pairs(case: Case, topo: nsmod.Topology, peers: list[Peer]) -> None:
    ikps = [(p, p is peers[0]) for p in peers if isinstance(p, Ikepriv)]
    case.step("list")
    rows = {p.spec.name: _pair_rows(case, p, a_side) for p, a_side in ikps}
    ikp, a_side = ikps[0]
    mine = rows[ikp.spec.name]
    if case.why:
        return
    spis = [s for r in mine.values() for s in (r["spi_in"], r["spi_out"])]
    case.details["spis"] = {f"{lo} -> {re}": [hex(r["spi_in"]), hex(r["spi_out"])]
                            for (lo, re), r in mine.items()}  # fmt: skip
    case.check(len(set(spis)) == 2 * len(PAIRS) and 0 not in spis,
               f"SPIs not distinct per pair: {case.details['spis']}")  # fmt: skip
    gw_ikp = topo.gw_a if a_side else topo.gw_b
    kernel = _esp(topo, gw_ikp)
    for (lo, re), r in mine.items():  # the listing's selectors are the kernel SA's
        sa = kernel.get(r["spi_out"])
        want = (lo, re) if a_side else (re, lo)
        case.check(
            sa is not None and sa.sel == want,
            f"{gw_ikp}: SA {r['spi_out']:#x} selector {sa and sa.sel}, listed {want}",
        )
    for gw in (topo.gw_a, topo.gw_b):
        n = len(_esp(topo, gw))
        case.check(n == 2 * len(PAIRS), f"{gw}: {n} ESP SAs, want {2 * len(PAIRS)}")
    for lo, re in PAIRS:
        case.step(f"ping {lo} -> {re}")
        before = {gw: _esp(topo, gw) for gw in (topo.gw_a, topo.gw_b)}
        res = ping(topo, count=PING_COUNT, src_addr=A_HOSTS[lo], dst=B_HOSTS[re])
        sent, got = ping_stats(res.stdout)
        if not case.check(
            got == PING_COUNT, f"ping {A_HOSTS[lo]} -> {B_HOSTS[re]}: {got}/{sent} replies"
        ):
            continue
        own = {mine[(lo, re)]["spi_in"], mine[(lo, re)]["spi_out"]}
        for gw in (topo.gw_a, topo.gw_b):
            after = _esp(topo, gw)
            rose = {spi: after[spi].packets - before[gw][spi].packets
                    for spi in after if spi in before[gw]}  # fmt: skip
            for spi in own:
                case.check(
                    rose.get(spi, 0) >= PING_COUNT,
                    f"{gw}: SA {spi:#x} of its pair counted {rose.get(spi)} packets",
                )
            other = {hex(s): n for s, n in rose.items() if s not in own and n}
            case.check(not other, f"{gw}: other pairs' SAs counted this ping: {other}")
    case.details["algs"] = {gw: topo.esp_counters(gw).as_dict()["algs"]
                            for gw in (topo.gw_a, topo.gw_b)}  # fmt: skip


def _is_trap(policy: str) -> bool:
    """pluto's on-demand trap: no SA behind it (template without endpoints, reqid 0)."""
    return "tmpl src 0.0.0.0 dst 0.0.0.0" in policy and "reqid 0 " in policy + " "


def _verify_remove(case: Case, topo: nsmod.Topology, peers: list[Peer]) -> None:
    """`ike cmd=remove` on the ikepriv side: every pair's SAs go from both gateways, and
    every policy: on ikepriv's gateway all of them, on the peer's all but pluto's own trap
    policies (no SA behind them). libreswan, when it initiated (`whack --initiate` marks the
    connection up), answers each Delete by negotiating the pair again ("replace IPsec State
    now"): there only the removed SAs and ikepriv's old tunnels must be gone."""
    ikp = next(p for p in peers if isinstance(p, Ikepriv))
    peer = next(p for p in peers if p is not ikp)
    peer_gw = topo.gw_b if ikp is peers[0] else topo.gw_a
    revives = peer.impl == "libreswan" and peer is peers[0]
    old_rows = [r for r in ikp.rows() if r["phase"] == 2]
    old = {s for r in old_rows for s in (r["spi_in"], r["spi_out"])}
    old_tids = {r["tunnel_id"] for r in ikp.rows()}
    case.step("ike cmd=remove")
    t = time.monotonic()
    r = ikp.ike("cmd=remove")
    case.check(r.returncode == 0, f"remove rc {r.returncode}: {r.stderr.strip()}")

    def left_over() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for gw in (topo.gw_a, topo.gw_b):
            spis = set(_esp(topo, gw))
            pols = _lan_policies(topo, gw)
            if revives:
                items = [hex(s) for s in sorted(spis & old)]
            else:
                if gw == peer_gw and peer.impl == "libreswan":
                    pols = [p for p in pols if not _is_trap(p)]
                items = [hex(s) for s in sorted(spis)] + pols
            if items:
                out[gw] = items
        return out

    deadline = time.monotonic() + 10.0
    while left_over() and time.monotonic() < deadline:
        time.sleep(0.1)
    case.timed("remove_to_clean", t)
    for gw, items in left_over().items():
        case.check(False, f"{gw}: left after remove: {items[:6]}")
    case.check(guards_present(topo), "guard policy missing")
    case.details["peer_traps"] = [p for p in _lan_policies(topo, peer_gw) if _is_trap(p)]
    rows = ikp.rows()
    if revives:
        case.details["revived_by_peer"] = len([r for r in rows if r["phase"] == 2])
        stale = [r for r in rows if r["tunnel_id"] in old_tids]
        case.check(not stale, f"{ikp.spec.name}: removed tunnels still listed: {stale}")
    else:
        case.check(not rows, f"{ikp.spec.name}: listing after remove: {rows}")
    case.check(bool(old_rows), "no phase 2 rows before the remove")


def run_subnets(topo: nsmod.Topology, sc: Scenario, root: Path
                ) -> tuple[dict[str, Any], list[Peer]]:  # fmt: skip
    case = Case(sc.name)
    topo.reset_xfrm()
    _add_hosts(topo)
    sides = {"initiator": (A_SUBNETS, B_SUBNETS), "responder": (B_SUBNETS, A_SUBNETS)}
    resp, init = (
        make_peer(impl, replace(peer_spec(topo, sc, role), local_subnets=sides[role][0],
                                remote_subnets=sides[role][1]), root)
        for impl, role in ((sc.responder, "responder"), (sc.initiator, "initiator"))
    )  # fmt: skip
    peers = [init, resp]
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

            def all_up() -> bool:
                ok = all(len(_esp(topo, gw)) >= 2 * len(PAIRS) for gw in (topo.gw_a, topo.gw_b))
                return ok and all(p.established(len(PAIRS)) if isinstance(p, Ikepriv)
                                  else p.established() for p in peers)  # fmt: skip

            deadline = time.monotonic() + EST_TIMEOUT
            while not all_up():
                if time.monotonic() > deadline:
                    case.check(False, f"not all {len(PAIRS)} pairs established on both sides")
                    break
                time.sleep(0.1)
            case.timed("initiate_to_all_pairs", t)
            if not case.why:
                _verify_pairs(case, topo, peers)
            if not case.why:
                _verify_remove(case, topo, peers)
    finally:
        for p in peers:
            p.stop()
    return case.result(peers), peers


def run_features(topo: nsmod.Topology, name: str, root: Path
                 ) -> tuple[dict[str, Any], list[Peer]]:  # fmt: skip
    if name in SUBNETS:
        return run_subnets(topo, SUBNETS[name], root)
    return run_ops(topo, CATALOGUE[name], root)


def run_interop_features(names: list[str] | None = None, log_dir: str | None = None
                         ) -> dict[str, Any]:  # fmt: skip
    return run_catalogue(names or list(CATALOGUE), log_dir, "e2e-interop-features.",
                         run_features)  # fmt: skip
