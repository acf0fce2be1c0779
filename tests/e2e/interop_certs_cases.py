"""Certificate authentication against strongSwan 5.9 and libreswan 4.10 in a real kernel.

Guest entry point: `run_interop_certs(names, log_dir)`. Each scenario makes a fresh PKI (a
root CA, an intermediate, one certificate per gateway whose subject DN is its IKE identity:
harness.pki_files), starts both daemons with it, and runs the scenario runner of
e2e.interop_cases (both sides established, `ike cmd=list`, a LAN-to-LAN ping through ESP).
ikepriv's listings must name the peer's certificate subject and issuer.

- Main Mode RSA-2048 and ECDSA P-256 with an intermediate CA, both directions, against
  strongSwan; Main Mode RSA against libreswan both directions (libreswan 4.10 has no ECDSA
  in IKEv1); Aggressive Mode RSA against both, both directions;
- ss-ss-* / ss-lsw-*: the same PKI between the reference peers, proving the harness;
- frag: RSA-4096 certificates and both sides forced to fragment (strongSwan
  `fragmentation = force`, ikepriv `fragmentation = "force"`), Main Mode messages of several
  KB travel as IKE fragments;
- pathmtu: the network, not the configuration, forces IKE fragmentation. The link between
  the gateways drops every IP fragment (Topology.drop_ip_fragments: a tc filter, as many
  middleboxes do), the end entities are RSA-4096 under the intermediate (send_cert always,
  so MM5/MM6 are about 3 KB) and every side keeps its DEFAULT fragmentation settings
  (ikepriv and strongSwan `fragmentation = yes`, fragment size 1280; libreswan
  `fragmentation=yes`). Checked: both sides established, the ping goes through ESP,
  ikepriv sent its MM5/MM6 as IKE fragments and reassembled the peer's, and a 3000-byte
  ping between the gateways dies on the path (the drop counter rises). libreswan sends an
  oversized message whole first and fragments it on retransmission, so there the exchange
  itself shows dropped IP fragments too (recorded, not asserted: a peer's timing);
- neg-pathmtu-nofrag: the control, the same exchange with ikepriv's `fragmentation = "no"`
  (no vendor ID, so strongSwan never fragments either): the big messages leave as IP
  fragments, the path drops them (counter > 0) and no phase 1 comes up;
- neg-revoked: the CA's CRL revokes strongSwan's certificate; ikepriv must refuse it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import netns as nsmod
from harness import pki_files
from harness.interop import Scenario
from harness.peer_ikepriv import Ikepriv
from harness.peers import Peer

from e2e.common import Case
from e2e.interop_cases import IKE_AM, IKE_MM, run_catalogue, run_one

ESP = "aes128-sha256"
_SHORT = {"ikepriv": "ikp", "strongswan": "ss", "libreswan": "lsw"}
ROLES = ("initiator", "responder")


@dataclass(frozen=True)
class CertCase:
    sc: Scenario
    keys: dict[str, str] = field(default_factory=lambda: dict.fromkeys(ROLES, "rsa2048"))
    intermediate: bool = True
    revoke: tuple[str, ...] = ()
    fragmentation: str = ""
    expect_ok: bool = True
    # the gateway link drops IP fragments (Topology.drop_ip_fragments) for this scenario
    path_drops_fragments: bool = False
    ikepriv_fragmentation: str = ""  # ikepriv's `fragmentation` only ("" = as `fragmentation`)


# a probe across the gateway link that needs IP fragmentation (3028-byte datagrams)
PROBE_SIZE = 3000


def verify_peer_certificate(case: Case, topo: nsmod.Topology, peers: list[Peer]) -> None:
    """ikepriv's phase 1 rows name the peer's certificate subject and issuer."""
    case.step("peer certificate in listing")
    for p in peers:
        if not isinstance(p, Ikepriv):
            continue
        rows = [r for r in p.rows("verbose") if r["phase"] == 1 and r["state"] == "established"]
        want = pki_files.gateway_dn("responder" if p.spec.role == "initiator" else "initiator")
        case.details[f"cert_{p.spec.role}"] = [
            (r.get("peer_cert_subject"), r.get("peer_cert_issuer")) for r in rows
        ]
        case.check(len(rows) == 1, f"{p.spec.name}: {len(rows)} established phase 1 rows")
        for r in rows:
            subject = str(r.get("peer_cert_subject", ""))
            case.check(
                "CN=" + want.rsplit("CN=", 1)[1] in subject,
                f"{p.spec.name}: peer certificate subject {subject!r}, want {want!r}",
            )
            case.check(
                "Interop" in str(r.get("peer_cert_issuer", "")),
                f"{p.spec.name}: peer certificate issuer {r.get('peer_cert_issuer')!r}",
            )


def _ikepriv_stats(peer: Ikepriv) -> dict[str, int]:
    r = peer.ike("cmd=list", "stats", "json")
    value = json.loads(r.stdout) if r.returncode == 0 else {}
    return value if isinstance(value, dict) else {}


def verify_fragment_path(case: Case, topo: nsmod.Topology, peers: list[Peer]) -> None:
    """Established across a path that drops IP fragments: ikepriv's messages went as IKE
    fragments and the peer's came as IKE fragments (ikepriv's counters), and the path really
    drops IP fragments (a big gateway-to-gateway ping fails, the drop counter rises)."""
    verify_peer_certificate(case, topo, peers)
    case.step("ike fragments over the path")
    case.details["fragment_drops_exchange"] = topo.fragment_drops()
    for p in peers:
        if not isinstance(p, Ikepriv):
            continue
        stats = _ikepriv_stats(p)
        frag = {k: v for k, v in stats.items() if k.startswith("fragments_")}
        case.details[f"ike_fragments_{p.spec.role}"] = frag
        case.check(frag.get("fragments_sent", 0) > 0, f"{p.spec.name}: sent no IKE fragment")
        case.check(
            frag.get("fragments_reassembled", 0) > 0,
            f"{p.spec.name}: reassembled no IKE message of the peer: {frag}",
        )
    case.step("path drops ip fragments")
    before = topo.fragment_drops()
    argv = nsmod.ping_argv(nsmod.GW_B_OUTER, 1, 0.2, 1)
    argv[1:1] = ["-s", str(PROBE_SIZE)]
    probe = nsmod.run(argv, topo.gw_a, check=False, timeout=15)
    after = topo.fragment_drops()
    case.details["probe"] = {"rc": probe.returncode, "drops": after - before}
    case.check(probe.returncode != 0, f"a {PROBE_SIZE}-byte ping crossed the gateway link")
    case.check(after > before, f"fragment drop counter did not rise ({before} -> {after})")


def catalogue() -> dict[str, CertCase]:
    cases: list[CertCase] = []

    def add(init: str, resp: str, tag: str, exchange: str = "main", **kw: Any) -> None:
        name = f"{_SHORT[init]}-{_SHORT[resp]}-{tag}"
        ike = IKE_MM if exchange == "main" else IKE_AM
        cases.append(CertCase(Scenario(name, init, resp, exchange, ike=ike, esp=ESP), **kw))

    ecdsa = dict.fromkeys(ROLES, "p256")
    add("strongswan", "strongswan", "mm-rsa")
    add("strongswan", "libreswan", "mm-rsa")
    for ref in ("strongswan", "libreswan"):
        for init, resp in (("ikepriv", ref), (ref, "ikepriv")):
            add(init, resp, "mm-rsa")
    for init, resp in (("ikepriv", "strongswan"), ("strongswan", "ikepriv")):
        add(init, resp, "mm-ecdsa", keys=ecdsa)
    for ref in ("strongswan", "libreswan"):
        for init, resp in (("ikepriv", ref), (ref, "ikepriv")):
            # libreswan sends no intermediate in Aggressive Mode (sendca covers Main Mode):
            # its certificate comes straight from the root there
            add(init, resp, "am-rsa", "aggressive", intermediate=ref == "strongswan")
    add("strongswan", "ikepriv", "mm-rsa4096-frag", keys=dict.fromkeys(ROLES, "rsa4096"),
        fragmentation="force")  # fmt: skip
    add("ikepriv", "strongswan", "mm-rsa4096-frag", keys=dict.fromkeys(ROLES, "rsa4096"),
        fragmentation="force")  # fmt: skip
    rsa4096 = dict.fromkeys(ROLES, "rsa4096")
    for ref in ("strongswan", "libreswan"):
        for init, resp in (("ikepriv", ref), (ref, "ikepriv")):
            add(init, resp, "mm-rsa4096-pathmtu", keys=rsa4096, path_drops_fragments=True)
    for init, resp in (("ikepriv", "strongswan"), ("strongswan", "ikepriv")):
        add(init, resp, "neg-pathmtu-nofrag", keys=rsa4096, path_drops_fragments=True,
            ikepriv_fragmentation="no", expect_ok=False)  # fmt: skip
    add("strongswan", "ikepriv", "neg-revoked", revoke=("initiator",), expect_ok=False)
    return {c.sc.name: c for c in cases}


CATALOGUE = catalogue()


def _impl(sc: Scenario, role: str) -> str:
    return sc.initiator if role == "initiator" else sc.responder


def _fragmentation(c: CertCase, impl: str) -> str:
    return (
        c.ikepriv_fragmentation
        if impl == "ikepriv" and c.ikepriv_fragmentation
        else c.fragmentation
    )


def run_interop_certs(names: list[str] | None = None, log_dir: str | None = None) -> dict[str, Any]:
    def run(topo: nsmod.Topology, name: str, root: Path) -> tuple[dict[str, Any], list[Peer]]:
        c = CATALOGUE[name]
        made = pki_files.make(
            root / f"pki-{name}", c.keys, intermediate=c.intermediate, revoke=c.revoke
        )
        role_extra = {
            role: {
                "auth": "pubkey",
                "pki": str(made.dirs[role]),
                "local_id": made.ids[role],
                "remote_id": made.ids["responder" if role == "initiator" else "initiator"],
                "fragmentation": _fragmentation(c, _impl(c.sc, role)),
            }
            for role in ROLES
        }
        sc = c.sc
        if not c.expect_ok:  # a refusal: do not wait long for what must not happen
            sc = Scenario(sc.name, sc.initiator, sc.responder, sc.exchange, ike=sc.ike,
                          esp=sc.esp, init_timeout=8, est_timeout=4)  # fmt: skip
        has_ikepriv = "ikepriv" in (sc.initiator, sc.responder)
        verify = verify_fragment_path if c.path_drops_fragments else verify_peer_certificate
        if not c.path_drops_fragments:
            return run_one(
                topo, sc, root, role_extra=role_extra, verify=verify if has_ikepriv else None
            )
        topo.drop_ip_fragments()
        try:
            r, peers = run_one(topo, sc, root, role_extra=role_extra, verify=verify)
            r["details"]["fragment_drops"] = topo.fragment_drops()
        finally:
            topo.allow_ip_fragments()
        return r, peers

    return run_catalogue(names or list(CATALOGUE), log_dir, "e2e-interop-certs.", run)
