"""ikepriv against strongSwan 5.9.8 and libreswan 4.10 for issue 9 points 1-4 (one UML boot).


The scenarios and what each checks: tests/e2e/interop_i9_cases.py (AH with SHA-2 against
both peers in both roles, IPv6 LANs over IPv4 gateways and the reverse, rekey_margin honoured
with a 60 s phase 2, and the phase 1 lifetime in force in `ike cmd=list`).
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e.common import boot_scenarios
from e2e.interop_i9_cases import CATALOGUE

pytestmark = [pytest.mark.uml, pytest.mark.interop, pytest.mark.root, pytest.mark.timeout(1300)]


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    value = boot_scenarios(
        "e2e.interop_i9_cases", "run_interop_i9", timeout=1200, names_env="IKEPRIV_I9_SCENARIOS"
    )
    for name, r in value["results"].items():
        print(f"  {name}: {'ok' if r['ok'] else 'FAILED'} {r['times']}")
    return value


def test_guard_blocks_cleartext(guest: dict[str, Any]) -> None:
    assert guest["guard_blocks"] is True


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_scenario(guest: dict[str, Any], name: str) -> None:
    r = guest["results"].get(name)
    assert r is not None, f"scenario {name} did not run"
    tails = "\n".join(f"--- {k}\n{v}" for k, v in r["log_tails"].items())
    assert r["ok"], "\n".join(r["why"]) + f"\nsteps: {r['steps']}\n{tails}"
    for gw, algs in r["details"]["algs"].items():
        assert set(CATALOGUE[name].algs) <= set(algs), (gw, algs)
