"""Issue 9 point 5 in a real kernel (one UML boot): ikepriv's `encap = true` and
`rekey = false` against strongSwan 5.9.8 and libreswan 4.10 (see e2e.interop_ops_cases)."""

from __future__ import annotations

from typing import Any

import pytest
from e2e.common import boot_scenarios
from e2e.interop_ops_cases import CATALOGUE

pytestmark = [pytest.mark.uml, pytest.mark.interop, pytest.mark.root,
              pytest.mark.timeout(1500)]  # fmt: skip


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    value = boot_scenarios(
        "e2e.interop_ops_cases",
        "run_interop_ops",
        timeout=1400,
        names_env="IKEPRIV_OPS_CASES",
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
