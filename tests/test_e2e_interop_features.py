"""Issue 9 point 5 (c), (d) in a real kernel (one UML boot): ESP AES-CTR and several subnets
per side (two /28s each side, four pairs) against strongSwan 5.9.8 and libreswan 4.10, ikepriv
initiating and answering (see e2e.interop_features_cases)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from e2e.interop_features_cases import CATALOGUE, SUBNET_ALGS, SUBNETS
from harness import uml
from harness.peers import CHARON

pytestmark = [pytest.mark.uml, pytest.mark.interop, pytest.mark.root,
              pytest.mark.timeout(1500)]  # fmt: skip


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    missing = uml.missing_prerequisites()
    if not os.access(CHARON, os.X_OK) or shutil.which("swanctl") is None:
        missing.append("strongSwan (strongswan-charon, strongswan-swanctl)")
    if missing:
        pytest.skip(f"interop tier needs: {', '.join(missing)}")
    logs = os.environ.get("IKEPRIV_UML_LOGS")
    if logs:
        Path(logs).mkdir(parents=True, exist_ok=True)
    names = os.environ.get("IKEPRIV_FEATURES_CASES")  # a comma-separated subset, for debugging
    value, run = uml.run_function("e2e.interop_features_cases", "run_interop_features",
                                  names.split(",") if names else None, logs, timeout=1400,
                                  rw_dirs=[Path(logs)] if logs else [])  # fmt: skip
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert isinstance(value, dict)
    print(f"\nguest: kernel {value['kernel']}, all scenarios {value['guest_s']}s")
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
    want = SUBNET_ALGS if name in SUBNETS else CATALOGUE[name].algs
    for gw, algs in r["details"]["algs"].items():
        assert set(want) <= set(algs), (gw, algs)
