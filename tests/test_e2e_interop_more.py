"""ikepriv against strongSwan 5.9.8 beyond the base matrix, in a real kernel (one UML boot).

Per direction (ikepriv initiating and answering), Main Mode with a pre-shared key:
forced UDP encapsulation (strongSwan `encap = yes` fakes NAT-D, so both sides float to 4500
and install ESP-in-UDP SAs), IKE groups ecp256 and curve25519, 3DES/SHA-1/modp1024 with ESP
3DES/SHA-1, and DPD (strongSwan probes every 2 s; ikepriv answers, both stay up). Every
scenario ends as in test_e2e_interop.py: both sides established, `ike cmd=list json` right on
the ikepriv side, and a lanA -> lanB ping counted by the ESP SAs of both gateways.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from e2e.interop_more_cases import CATALOGUE
from harness import uml
from harness.peers import CHARON

pytestmark = [pytest.mark.uml, pytest.mark.interop, pytest.mark.root, pytest.mark.timeout(1000)]


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
    value, run = uml.run_function(
        "e2e.interop_more_cases",
        "run_interop_more",
        None,
        logs,
        timeout=900,
        rw_dirs=[Path(logs)] if logs else [],
    )
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
    for gw, algs in r["details"]["algs"].items():
        assert set(CATALOGUE[name].algs) <= set(algs), (gw, algs)
