"""ikepriv <-> ikepriv end to end in a real kernel with ESP (one User Mode Linux boot).

The guest (tests/e2e/ikepriv_cases.py) runs two real ikeprivd daemons in the gwA/gwB
namespaces and drives them with ikedb and ike: activate everything, phase 1 then phase 2, two
phase 2 tunnels under one phase 1, remove phase=2 (the peer drops its SAs too), remove
phase=1, remove db, autostart; a capture of the first handshake decrypted by `ikedump --keys`
with the daemon's --keylog; the sandbox of the daemon's real child read from /proc; and a
kill -9 of the child while a ping runs through the tunnel. Every case that has a tunnel ends
with a ping carried as ESP (both gateways' counters rise; guard policies block cleartext) and
the real `ike cmd=list json` checked on both sides.

IKEPRIV_UML_LOGS=DIR keeps the daemons' logs, definitions, key logs and the capture.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from harness import uml

pytestmark = [pytest.mark.uml, pytest.mark.root]

CASES = (
    "activate-all",
    "keylog-capture",
    "sandbox",
    "activate-phased",
    "remove-phase1",
    "remove-all",
    "remove-db",
    "autostart",
    "crash",
    "two-phase2",
    "remove-phase2",
)


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    missing = uml.missing_prerequisites()
    if missing:
        pytest.skip(f"UML tier needs: {', '.join(missing)}")
    logs = os.environ.get("IKEPRIV_UML_LOGS")
    if logs:
        Path(logs).mkdir(parents=True, exist_ok=True)
    value, run = uml.run_function(
        "e2e.ikepriv_cases",
        "run_cases",
        None,
        logs,
        timeout=420,
        rw_dirs=[Path(logs)] if logs else [],
    )
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert isinstance(value, dict)
    r = value["results"]
    t = r.get("activate-all", {}).get("times", {})
    print(
        f"\nguest: kernel {value['kernel']}, all cases {value['guest_s']}s; ikepriv <-> ikepriv "
        f"activate -> both established {t.get('activate_to_both_established', 'n/a')}s"
    )
    for name, res in r.items():
        print(f"  {name}: {'ok' if res['ok'] else 'FAILED'} {res['times']}")
    return value


def _explain(res: dict[str, Any]) -> str:
    tails = "\n".join(f"--- {k}\n{v}" for k, v in res["log_tails"].items())
    return "\n".join(res["why"]) + f"\nsteps: {res['steps']}\n{tails}"


def test_guard_blocks_cleartext(guest: dict[str, Any]) -> None:
    assert guest["guard_blocks"] is True


@pytest.mark.parametrize("name", CASES)
def test_case(guest: dict[str, Any], name: str) -> None:
    res = guest["results"].get(name)
    assert res is not None, f"case {name} did not run"
    assert res["ok"], _explain(res)


def test_sandbox_facts_of_the_real_child(guest: dict[str, Any]) -> None:
    """uid != 0, no capabilities, no_new_privs, seccomp filter mode: as /proc shows them."""
    facts = guest["results"]["sandbox"]["details"]
    assert facts, "no child found"
    for side, f in facts.items():
        st = f["status"]
        assert "0" not in st["Uid"].split(), (side, st)
        assert st["CapEff"] == "0000000000000000", (side, st)
        assert st["NoNewPrivs"] == "1", (side, st)
        assert st["Seccomp"] == "2", (side, st)


def test_capture_decrypts_with_key_log(guest: dict[str, Any]) -> None:
    d = guest["results"]["keylog-capture"]["details"]
    assert d.get("ikedump_rc") == 0, d
    assert d.get("encrypted", 0) > 0 and d.get("decrypted") == d.get("encrypted"), d
