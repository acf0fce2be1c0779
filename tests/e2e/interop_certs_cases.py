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
- neg-revoked: the CA's CRL revokes strongSwan's certificate; ikepriv must refuse it.
"""

from __future__ import annotations

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
    add("strongswan", "ikepriv", "neg-revoked", revoke=("initiator",), expect_ok=False)
    return {c.sc.name: c for c in cases}


CATALOGUE = catalogue()


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
                "fragmentation": c.fragmentation,
            }
            for role in ROLES
        }
        sc = c.sc
        if not c.expect_ok:  # a refusal: do not wait long for what must not happen
            sc = Scenario(sc.name, sc.initiator, sc.responder, sc.exchange, ike=sc.ike,
                          esp=sc.esp, init_timeout=8, est_timeout=4)  # fmt: skip
        has_ikepriv = "ikepriv" in (sc.initiator, sc.responder)
        return run_one(
            topo,
            sc,
            root,
            role_extra=role_extra,
            verify=verify_peer_certificate if has_ikepriv else None,
        )

    return run_catalogue(names or list(CATALOGUE), log_dir, "e2e-interop-certs.", run)
