"""Reference interop runs in one UML boot: strongSwan <-> strongSwan and strongSwan <-> libreswan.

These prove the peer drivers and the topology with real daemons and real kernel ESP before
ikepriv is put on either side, and give the reference handshake times (printed, never asserted:
run with -s to see them).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from typing import Any

import pytest

from harness import uml
from harness.interop import Scenario
from harness.peers import CHARON, LSW_ROOT

pytestmark = [pytest.mark.uml, pytest.mark.interop, pytest.mark.root]

SCENARIOS = [
    Scenario("ss-ss-mm", "strongswan", "strongswan", "main", esp="aes128-sha256"),
    Scenario("ss-lsw-mm-pfs", "strongswan", "libreswan", "main",
             esp="aes128-sha256-modp2048"),
    Scenario("lsw-ss-am-gcm", "libreswan", "strongswan", "aggressive", esp="aes256gcm16"),
]
EXPECTED_ALGS = {"ss-ss-mm": {"cbc(aes)", "hmac(sha256)"},
                 "ss-lsw-mm-pfs": {"cbc(aes)", "hmac(sha256)"},
                 "lsw-ss-am-gcm": {"rfc4106(gcm(aes))"}}


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
    value, run = uml.run_function("harness.interop", "run_scenarios",
                                  [asdict(s) for s in SCENARIOS], timeout=420)
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert isinstance(value, dict)
    print(f"\nguest: kernel {value['kernel']}, topology {value['topology_s']}s, "
          f"all scenarios {value['guest_s']}s")
    for name, r in value["results"].items():
        t = r["times"]
        print(f"  {name}: initiate -> both established "
              f"{t.get('initiate_to_both_established', float('nan')):.2f}s "
              f"(initiate call {t.get('initiate', float('nan')):.2f}s, daemon start "
              f"{t['start']:.2f}s, scenario {t['total']:.2f}s)")
    return value


def test_guard_blocks_cleartext(guest: dict[str, Any]) -> None:
    assert guest["guard_blocks"] is True


@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_reference_scenario(guest: dict[str, Any], name: str) -> None:
    r = guest["results"][name]
    assert r["ok"], f"{r['why']}\n{r['ping']}\n" + "\n".join(r["log_tails"].values())
    for gw, c in r["counters"].items():
        assert c["out_packets"] > 0 and c["in_packets"] > 0, (gw, c)
        assert EXPECTED_ALGS[name] <= set(c["algs"]), (gw, c)
    assert all(not errs for errs in r["xfrm_stat_new_errors"].values()), r["xfrm_stat_new_errors"]
