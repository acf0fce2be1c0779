"""ikepriv against strongSwan 5.9.8 beyond the base matrix, in a real kernel (one UML boot).

Per direction (ikepriv initiating and answering), Main Mode with a pre-shared key:
forced UDP encapsulation (strongSwan `encap = yes` fakes NAT-D, so both sides float to 4500
and install ESP-in-UDP SAs), IKE groups ecp256 and curve25519, 3DES/SHA-1/modp1024 with ESP
3DES/SHA-1, and DPD (strongSwan probes every 2 s; ikepriv answers, both stay up). Every
scenario ends as in test_e2e_interop.py: both sides established, `ike cmd=list json` right on
the ikepriv side, and a lanA -> lanB ping counted by the ESP SAs of both gateways.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e.common import boot_scenarios
from e2e.interop_more_cases import CATALOGUE

pytestmark = [pytest.mark.uml, pytest.mark.interop, pytest.mark.root, pytest.mark.timeout(1000)]


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    value = boot_scenarios(
        "e2e.interop_more_cases", "run_interop_more", timeout=900, libreswan=False
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
