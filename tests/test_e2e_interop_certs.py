"""Certificate authentication (issue 10) against strongSwan 5.9.8 and libreswan 4.10, in a
real kernel (one UML boot): RSA and ECDSA, Main and Aggressive Mode, an intermediate CA, IKE
fragmentation of RSA-4096 chains (forced by configuration, and forced by a path that drops
IP fragments, with its control: tests/e2e/interop_certs_cases.py "pathmtu"), and a revoked
peer refused.

The scenarios and what each checks: tests/e2e/interop_certs_cases.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e.common import boot_scenarios
from e2e.interop_certs_cases import CATALOGUE

# what the path-MTU scenarios record (printed with -s): IP fragments the path dropped, the
# IKE fragment counters of ikepriv, the oversized probe across the path
FRAGMENT_DETAILS = ("fragment_drops", "ike_fragments", "probe")

pytestmark = [pytest.mark.uml, pytest.mark.interop, pytest.mark.root, pytest.mark.timeout(1300)]


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    value = boot_scenarios(
        "e2e.interop_certs_cases",
        "run_interop_certs",
        timeout=1200,
        names_env="IKEPRIV_CERT_SCENARIOS",
        certutil=True,
    )
    for name, r in value["results"].items():
        print(f"  {name}: {'ok' if r['ok'] else 'FAILED'} {r['times']}")
        frag = {k: v for k, v in r["details"].items() if k.startswith(FRAGMENT_DETAILS)}
        if frag:
            print(f"    {frag}")
    return value


def test_guard_blocks_cleartext(guest: dict[str, Any]) -> None:
    assert guest["guard_blocks"] is True


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_scenario(guest: dict[str, Any], name: str) -> None:
    r = guest["results"].get(name)
    assert r is not None, f"scenario {name} did not run"
    tails = "\n".join(f"--- {k}\n{v}" for k, v in r["log_tails"].items())
    if CATALOGUE[name].expect_ok:
        assert r["ok"], "\n".join(r["why"]) + f"\nsteps: {r['steps']}\n{tails}"
    elif CATALOGUE[name].path_drops_fragments:  # the control: nothing fragments IKE
        assert not r["ok"], f"established without IKE fragmentation over the path\n{tails}"
        drops = r["details"].get("fragment_drops", 0)
        assert drops > 0, f"the path dropped no IP fragment ({drops})\n{tails}"
    else:
        assert not r["ok"], f"a revoked certificate was accepted\n{tails}"
        assert "revoked" in tails.lower(), f"no log line says why\n{tails}"
