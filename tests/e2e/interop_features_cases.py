"""Issue 9 point 5 (c) and (d) against strongSwan 5.9 and libreswan 4.10 in a real kernel
(one UML boot). Guest entry point: `run_interop_features(names, log_dir)`.

- ctr: ESP AES-CTR (RFC 3686) on both sides, ikepriv initiating and answering against both
  peers; both gateways' ESP SAs are `rfc3686(ctr(aes))` with HMAC-SHA-256 and carry the
  lanA -> lanB ping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import netns as nsmod
from harness.interop import Scenario
from harness.peers import Peer

from e2e.interop_cases import IKE_MM, run_catalogue
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


CATALOGUE = catalogue()


def run_features(topo: nsmod.Topology, name: str, root: Path
                 ) -> tuple[dict[str, Any], list[Peer]]:  # fmt: skip
    return run_ops(topo, CATALOGUE[name], root)


def run_interop_features(names: list[str] | None = None, log_dir: str | None = None
                         ) -> dict[str, Any]:  # fmt: skip
    return run_catalogue(names or list(CATALOGUE), log_dir, "e2e-interop-features.",
                         run_features)  # fmt: skip
