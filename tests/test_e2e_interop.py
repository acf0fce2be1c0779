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

from typing import Any

import pytest
from e2e.common import boot_scenarios
from e2e.interop_cases import CATALOGUE, GCM, TIMING

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
    value = boot_scenarios("e2e.interop_cases", "run_interop", timeout=900, certutil=True)
    res = value["results"]
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
