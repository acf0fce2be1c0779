"""Issue 9 points 1-4 against strongSwan 5.9 and libreswan 4.10 in a real kernel (one boot).

Guest entry point: `run_interop_i9(names, log_dir)`, the scenario runner of
e2e.interop_cases (both sides established, `ike cmd=list json`, a LAN-to-LAN ping counted by
the IPsec SAs of both gateways) over a topology with IPv6 as well, with per-scenario checks:

- ah-*: AH with HMAC-SHA-256/384/512 (ICVs of 16/24/32 bytes, which need RFC 4302's 32-bit
  alignment on IPv4: XFRM_STATE_ALIGN4, `flag align4` on ikepriv's AH SAs) carries the ping;
- 6in4 / 4in6: IPv6 LANs over IPv4 gateways and the reverse (tunnel-mode SAs of one family
  carrying the other; ikepriv's show `flag af-unspec`); the ping is of the LAN family;
- every scenario: ikepriv's phase 1 lifetime is 3600 s, shorter than the peer proposes
  (strongSwan 3960 s, libreswan 28800 s); `ike cmd=list` must show the 3600 s in force,
  never the peer's proposal;
- rekey: phase 2 lifetime 60 s and phase 1 80 s, `rekey_margin = 30` each, strongSwan never
  rekeys: ikepriv must start its phase 2 rekey 15-30 s after the SA was set up (the margin,
  randomised only towards earlier, by at most half of what precedes it) and its phase 1
  rekey 25-50 s after, with a ping every second going through all the while.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import netns as nsmod
from harness.interop import Scenario
from harness.peer_ikepriv import Ikepriv
from harness.peers import Peer

from e2e.common import Case, ping_stats
from e2e.interop_cases import IKE_MM, Verify, run_catalogue, run_one

ESP_CBC = "aes128-sha256"
IKE_LIFETIME = 3600
REKEY_P2 = (60, 30)  # lifetime, rekey_margin
REKEY_P1 = (80, 30)
SLACK = 3.0  # seconds: establishment seen late, Quick Mode time, polling


@dataclass(frozen=True)
class I9Case:
    sc: Scenario
    spec_extra: dict[str, Any] = field(default_factory=dict)
    role_extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    verify: Verify | None = None
    algs: tuple[str, ...] = ("cbc(aes)", "hmac(sha256)")
    ping_dst: str = nsmod.LAN_B_HOST


def _blocks(text: str, proto: str) -> list[str]:
    blocks = ["src " + b if i else b for i, b in enumerate(text.split("\nsrc "))]
    return [b for b in blocks if f"proto {proto} " in b]


def _ikepriv_gws(topo: nsmod.Topology, peers: list[Peer]) -> list[str]:
    return [
        topo.gw_a if p.spec.role == "initiator" else topo.gw_b
        for p in peers
        if isinstance(p, Ikepriv)
    ]


def verify_listing(case: Case, topo: nsmod.Topology, peers: list[Peer]) -> None:
    """`ike cmd=list json`: the phase 1 lifetime in force (ours, 3600 s), not the peer's."""
    case.step("listing lifetime")
    for p in peers:
        if not isinstance(p, Ikepriv):
            continue
        rows = [r for r in p.rows() if r["phase"] == 1 and r["state"] == "established"]
        case.details[f"p1_{p.spec.role}"] = [
            (r["algorithms"], r["remaining_seconds"]) for r in rows
        ]
        case.check(len(rows) == 1, f"{p.spec.name}: {len(rows)} established phase 1 rows")
        for r in rows:
            case.check(
                str(r["algorithms"]).endswith(f" {IKE_LIFETIME}s"),
                f"{p.spec.name}: phase 1 shows {r['algorithms']!r}, want the "
                f"{IKE_LIFETIME}s in force",
            )
            case.check(
                0 < int(r["remaining_seconds"] or 0) <= IKE_LIFETIME,
                f"{p.spec.name}: phase 1 remaining {r['remaining_seconds']} s, want "
                f"at most {IKE_LIFETIME}",
            )


def verify_flag(proto: str, flag: str) -> Verify:
    """The listing check, and every `proto` SA of ikepriv's gateway carries `flag`."""

    def verify(case: Case, topo: nsmod.Topology, peers: list[Peer]) -> None:
        verify_listing(case, topo, peers)
        case.step(f"{proto} {flag}")
        for gw in _ikepriv_gws(topo, peers):
            blocks = _blocks(topo.xfrm_state(gw), proto)
            case.details[f"sa_{gw}"] = [b.splitlines()[:4] for b in blocks]
            case.check(len(blocks) >= 2, f"{gw}: {len(blocks)} {proto} SAs, want 2")
            for b in blocks:
                case.check(flag in b, f"{gw}: {proto} SA without flag {flag}:\n{b[:400]}")

    return verify


def _out_spis(topo: nsmod.Topology) -> set[int]:
    return {
        sa.spi
        for sa in nsmod.parse_xfrm_state(topo.xfrm_state(topo.gw_a))
        if sa.proto == "esp" and sa.src == nsmod.GW_A_OUTER
    }


def verify_rekey(case: Case, topo: nsmod.Topology, peers: list[Peer]) -> None:
    """ikepriv (gwA, initiator) rekeys phase 2 and phase 1 within their margins, no ping
    lost; at the end one phase 1 and one phase 2 are established again."""
    case.step("rekey")
    ikp = next(p for p in peers if isinstance(p, Ikepriv))
    t0 = time.monotonic()
    first_spis = _out_spis(topo)
    first_p1 = {r["tunnel_id"] for r in ikp.rows() if r["phase"] == 1}
    argv = nsmod.ping_argv(nsmod.LAN_B_HOST, 56, 1.0, 1)
    pinger = subprocess.Popen(  # noqa: S603 -- our own ping
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=nsmod.preexec(topo.lan_a),
    )
    p2_at = p1_at = None
    try:
        while time.monotonic() - t0 < 58 and (p2_at is None or p1_at is None):
            now = time.monotonic() - t0
            if p2_at is None and _out_spis(topo) - first_spis:
                p2_at = now
            if p1_at is None and {r["tunnel_id"] for r in ikp.rows() if r["phase"] == 1} - first_p1:
                p1_at = now
            time.sleep(0.5)
        out, _ = pinger.communicate(timeout=80)
    finally:
        if pinger.poll() is None:
            pinger.kill()
            pinger.wait()
    sent, got = ping_stats(out)
    case.details["rekey"] = {"p2_at": p2_at, "p1_at": p1_at, "ping": (sent, got)}
    for what, at, (life, margin) in (("phase 2", p2_at, REKEY_P2), ("phase 1", p1_at, REKEY_P1)):
        low, high = life - margin - min(margin, (life - margin) / 2), life - margin
        case.check(
            at is not None and low - 1 <= at <= high + SLACK,
            f"{what} rekey seen after {at} s, want {low}-{high} s "
            f"(lifetime {life}, rekey_margin {margin})",
        )
    case.check(sent >= 50 and got >= sent - 1, f"ping during the rekeys: {got}/{sent}")
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        rows = ikp.rows()
        if sorted((r["phase"], r["state"]) for r in rows) == [
            (1, "established"),
            (2, "established"),
        ]:
            break
        time.sleep(0.5)
    else:
        case.check(False, f"old SAs not gone: {[(r['phase'], r['state']) for r in rows]}")


_SHORT = {"ikepriv": "ikp", "strongswan": "ss", "libreswan": "lsw"}
_LIFE = {"ike_lifetime": IKE_LIFETIME}


def _addresses(kind: str) -> dict[str, dict[str, Any]]:
    """6in4: IPv6 LANs over the IPv4 gateways; 4in6: IPv4 LANs over IPv6 gateways."""
    n = nsmod
    gw_a, gw_b = (n.GW_A_OUTER, n.GW_B_OUTER) if kind == "6in4" else (n.GW_A_OUTER6, n.GW_B_OUTER6)
    lan_a, lan_b = (n.LAN_A_NET6, n.LAN_B_NET6) if kind == "6in4" else (n.LAN_A_NET, n.LAN_B_NET)
    return {
        "initiator": {"local": gw_a, "remote": gw_b, "local_ts": lan_a, "remote_ts": lan_b},
        "responder": {"local": gw_b, "remote": gw_a, "local_ts": lan_b, "remote_ts": lan_a},
    }


def catalogue() -> dict[str, I9Case]:
    cases: list[I9Case] = []
    ah = (
        ("ikepriv", "strongswan", "sha256"),
        ("strongswan", "ikepriv", "sha512"),
        ("ikepriv", "libreswan", "sha384"),
        ("libreswan", "ikepriv", "sha256"),
    )
    for init, resp, alg in ah:
        name = f"{_SHORT[init]}-{_SHORT[resp]}-ah-{alg}"
        cases.append(
            I9Case(
                Scenario(name, init, resp, "main", ike=IKE_MM, esp=alg),
                {"ah": True, **_LIFE},
                verify=verify_flag("ah", "align4"),
                algs=(f"hmac({alg})",),
            )
        )
    for kind in ("6in4", "4in6"):
        for init, resp in (
            ("ikepriv", "strongswan"),
            ("strongswan", "ikepriv"),
            ("ikepriv", "libreswan"),
            ("libreswan", "ikepriv"),
        ):
            name = f"{_SHORT[init]}-{_SHORT[resp]}-{kind}"
            cases.append(
                I9Case(
                    Scenario(name, init, resp, "main", ike=IKE_MM, esp=ESP_CBC),
                    dict(_LIFE),
                    _addresses(kind),
                    verify_flag("esp", "af-unspec"),
                    ping_dst=nsmod.LAN_B_HOST6 if kind == "6in4" else nsmod.LAN_B_HOST,
                )
            )
    cases.append(
        I9Case(
            Scenario("ikp-ss-rekey", "ikepriv", "strongswan", "main", ike=IKE_MM, esp=ESP_CBC),
            {
                "ike_lifetime": REKEY_P1[0],
                "ike_margin": REKEY_P1[1],
                "child_lifetime": REKEY_P2[0],
                "child_margin": REKEY_P2[1],
            },
            {"responder": {"rekey": False, "ike_lifetime": 0, "child_lifetime": 0}},
            verify_rekey,
        )
    )
    return {c.sc.name: c for c in cases}


CATALOGUE = catalogue()


def run_interop_i9(names: list[str] | None = None, log_dir: str | None = None) -> dict[str, Any]:
    def run(topo: nsmod.Topology, name: str, root: Path) -> tuple[dict[str, Any], list[Peer]]:
        c = CATALOGUE[name]
        return run_one(
            topo,
            c.sc,
            root,
            spec_extra=c.spec_extra,
            role_extra=c.role_extra,
            verify=c.verify,
            ping_dst=c.ping_dst,
        )

    return run_catalogue(names or list(CATALOGUE), log_dir, "e2e-interop-i9.", run, ipv6=True)
