"""ikepriv against strongSwan 5.9.8 and libreswan 4.10 in a real kernel (one UML boot).

Each reference daemon meets ikepriv in both directions (ikepriv initiating and answering):
Main Mode and Aggressive Mode with a pre-shared key; ESP AES-CBC/HMAC-SHA2-256 with and
without PFS, and AES-GCM. Per peer and direction: MM CBC, MM CBC+PFS, MM GCM, AM CBC+PFS,
AM GCM (20 scenarios). A scenario passes when both sides report phase 1 and phase 2
established, `ike cmd=list` is right on the ikepriv side(s) and a lanA -> lanB ping travels in
ESP (both gateways' counters rise both ways; a guard policy blocks cleartext).

In the same boot, ikepriv <-> ikepriv, ikepriv <-> strongSwan (both ways) and strongSwan <->
strongSwan run the same Main Mode scenario: the times from the initiate command to both
sides established are printed (run with -s), never asserted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from e2e.interop_cases import CATALOGUE, GCM, TIMING
from harness import uml
from harness.peers import CHARON, LSW_ROOT

pytestmark = [
    pytest.mark.uml,
    pytest.mark.interop,
    pytest.mark.root,
    pytest.mark.timeout(1000),
]  # 22 scenarios in one boot

CBC_ALGS = {"cbc(aes)", "hmac(sha256)"}
GCM_ALGS = {"rfc4106(gcm(aes))"}


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    missing = uml.missing_prerequisites()
    if not os.access(CHARON, os.X_OK) or shutil.which("swanctl") is None:
        missing.append("strongSwan (strongswan-charon, strongswan-swanctl)")
    if not (LSW_ROOT / "usr/libexec/ipsec/pluto").exists():
        missing.append(f"libreswan in {LSW_ROOT} (scripts/install-libreswan.sh)")
    if shutil.which("certutil") is None:
        missing.append("certutil (libnss3-tools)")
    if missing:
        pytest.skip(f"interop tier needs: {', '.join(missing)}")
    logs = os.environ.get("IKEPRIV_UML_LOGS")
    if logs:
        Path(logs).mkdir(parents=True, exist_ok=True)
    value, run = uml.run_function(
        "e2e.interop_cases",
        "run_interop",
        None,
        logs,
        timeout=900,
        rw_dirs=[Path(logs)] if logs else [],
    )
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert isinstance(value, dict)
    res = value["results"]
    print(f"\nguest: kernel {value['kernel']}, all scenarios {value['guest_s']}s")
    print(
        "initiate -> both sides established (Main Mode, aes128-sha256-modp2048, ESP aes128-sha256):"
    )
    for name in TIMING:
        t = res.get(name, {}).get("times", {})
        exec_note = (
            f", of which the `ike cmd=activate` process {t['activate_exec']:.2f}s"
            if "activate_exec" in t
            else ""
        )
        print(
            f"  {name:16} {t.get('initiate_to_both_established', float('nan')):6.2f}s "
            f"(daemon start {t.get('start', float('nan')):.2f}s{exec_note})"
        )
    for name, r in res.items():
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
    want = GCM_ALGS if CATALOGUE[name].esp == GCM else CBC_ALGS
    for gw, algs in r["details"]["algs"].items():
        assert want <= set(algs), (gw, algs)
