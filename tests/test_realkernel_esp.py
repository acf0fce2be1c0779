"""Real kernel ESP in User Mode Linux: the harness itself, proved with hand-made SAs.

One UML boot runs `guest_esp` (below) inside the guest: it builds the gwA/gwB/lanA/lanB
topology, checks that the guard blocks a cleartext ping, then installs static tunnel-mode ESP SAs
per algorithm with `ip xfrm`, pings lanA -> lanB and reads the ESP counters of both gateways.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from harness import netns as nsmod
from harness import uml

pytestmark = [pytest.mark.uml, pytest.mark.root]

ALGS = ("cbc-hmac", "gcm")
PINGS = 3
EXPECTED_ALGS = {"cbc-hmac": {"cbc(aes)", "hmac(sha256)"}, "gcm": {"rfc4106(gcm(aes))"}}


def guest_esp(algs: list[str]) -> dict[str, Any]:
    """Runs inside the guest; returns what the host asserts on."""
    topo = nsmod.Topology()
    topo.build()
    try:
        res: dict[str, Any] = {"kernel": os.uname().release, "guard_blocks": topo.guard_blocks()}
        for alg in algs:
            topo.reset_xfrm()
            nsmod.add_static_tunnel(topo, alg)
            before = {gw: nsmod.xfrm_stat_errors(gw) for gw in (topo.gw_a, topo.gw_b)}
            p = topo.ping(count=PINGS)
            res[alg] = {
                "ping_rc": p.returncode,
                "ping": p.stdout[-1000:],
                "gwA": topo.esp_counters(topo.gw_a).as_dict(),
                "gwB": topo.esp_counters(topo.gw_b).as_dict(),
                "xfrm_stat_new_errors": {
                    gw: nsmod.counter_increase(before[gw], nsmod.xfrm_stat_errors(gw))
                    for gw in (topo.gw_a, topo.gw_b)
                },
            }
        # negative control: policies and SAs gone, only the guards left
        topo.reset_xfrm()
        p = topo.ping(count=2, wait_s=1)
        res["no_sa"] = {"ping_rc": p.returncode, "gwA": topo.esp_counters(topo.gw_a).as_dict()}
        return res
    finally:
        topo.destroy()


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    missing = uml.missing_prerequisites()
    if missing:
        pytest.skip(f"UML tier needs: {', '.join(missing)}")
    value, run = uml.run_function("test_realkernel_esp", "guest_esp", list(ALGS), timeout=240)
    assert run.rc == 0, run.stderr[-3000:]
    assert isinstance(value, dict)
    return value


def test_guest_kernel_is_uml(guest: dict[str, Any]) -> None:
    assert guest["kernel"] != os.uname().release


def test_guard_blocks_cleartext_ping(guest: dict[str, Any]) -> None:
    assert guest["guard_blocks"] is True


@pytest.mark.parametrize("alg", ALGS)
def test_ping_through_static_esp(guest: dict[str, Any], alg: str) -> None:
    r = guest[alg]
    assert r["ping_rc"] == 0, r["ping"]
    for gw in ("gwA", "gwB"):
        c = r[gw]
        assert c["out_sas"] == 1 and c["in_sas"] == 1, (gw, c)
        assert c["out_packets"] >= PINGS and c["in_packets"] >= PINGS, (gw, c)
        assert EXPECTED_ALGS[alg] <= set(c["algs"]), (gw, c)
    assert r["xfrm_stat_new_errors"] == {"gwA": {}, "gwB": {}}


def test_no_sa_means_no_ping(guest: dict[str, Any]) -> None:
    assert guest["no_sa"]["ping_rc"] != 0
    assert guest["no_sa"]["gwA"]["out_sas"] == 0
