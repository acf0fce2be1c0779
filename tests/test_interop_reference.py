"""Reference interop runs in one UML boot: strongSwan <-> strongSwan and strongSwan <-> libreswan.

These prove the peer drivers and the topology with real daemons and real kernel ESP before
ikepriv is put on either side, and give the reference handshake times (printed, never asserted:
run with -s to see them).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from harness import uml
from harness.interop import CATALOGUE
from harness.peers import CHARON, LSW_ROOT

pytestmark = [pytest.mark.uml, pytest.mark.interop, pytest.mark.root]

CBC_SHA256 = {"cbc(aes)", "hmac(sha256)"}
GCM = {"rfc4106(gcm(aes))"}
# scenario -> kernel algorithms its ESP SAs must use
POSITIVE = {
    "ss-ss-mm": CBC_SHA256,
    "ss-ss-am-ecp-gcm": GCM,
    "ss-lsw-mm-pfs": CBC_SHA256,
    "lsw-ss-mm-pfs": CBC_SHA256,
    "ss-lsw-am": CBC_SHA256,
    "lsw-ss-am-gcm": GCM,
}
NEGATIVE = "neg-ss-ss-psk"
SCENARIOS = [CATALOGUE[n] for n in [*POSITIVE, NEGATIVE]]


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
    # IKEPRIV_UML_LOGS=DIR keeps daemon logs, configs and xfrm dumps per scenario there
    logs = os.environ.get("IKEPRIV_UML_LOGS")
    if logs:
        Path(logs).mkdir(parents=True, exist_ok=True)
    value, run = uml.run_function(
        "harness.interop",
        "run_scenarios",
        [asdict(s) for s in SCENARIOS],
        None,
        logs,
        timeout=420,
        rw_dirs=[Path(logs)] if logs else [],
    )
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert isinstance(value, dict)
    print(
        f"\nguest: kernel {value['kernel']}, topology {value['topology_s']}s, "
        f"all scenarios {value['guest_s']}s"
    )
    for name, r in value["results"].items():
        t = r["times"]
        print(
            f"  {name}: initiate -> both established "
            f"{t.get('initiate_to_both_established', float('nan')):.2f}s "
            f"(initiate call {t.get('initiate', float('nan')):.2f}s, daemon start "
            f"{t['start']:.2f}s, scenario {t['total']:.2f}s)"
        )
    return value


def test_guard_blocks_cleartext(guest: dict[str, Any]) -> None:
    assert guest["guard_blocks"] is True


@pytest.mark.parametrize(("name", "algs"), POSITIVE.items())
def test_reference_scenario(guest: dict[str, Any], name: str, algs: set[str]) -> None:
    r = guest["results"][name]
    assert r["ok"], f"{r['why']}\n{r['ping']}\n" + "\n".join(r["log_tails"].values())
    for gw, c in r["counters"].items():
        assert c["out_packets"] > 0 and c["in_packets"] > 0, (gw, c)
        assert algs <= set(c["algs"]), (gw, c)
    assert all(not errs for errs in r["xfrm_stat_new_errors"].values()), r["xfrm_stat_new_errors"]


def test_psk_mismatch_fails(guest: dict[str, Any]) -> None:
    r = guest["results"][NEGATIVE]
    assert not r["ok"]
    assert "initiate failed" in r["why"]
    assert all(c["out_sas"] == 0 and c["in_sas"] == 0 for c in r["counters"].values())
