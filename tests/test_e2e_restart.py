"""A child restart must not lose the tunnels (issue 8, point 7), in a real kernel (one UML
boot) against strongSwan 5.9.8 and libreswan 4.10, ikepriv initiating and answering.

Per scenario (tests/e2e/restart_cases.py): during a lanA -> lanB ping at 10/s the negotiator
child of ikeprivd gets SIGKILL; no ping may be lost, `ike cmd=list` must show the tunnel
established with new SAs within seconds (the previous child's SAs as `unmanaged` while they
live), ikepriv must rekey the resumed phase 2 on time (phase 2 lifetime 60 s), and
`ike cmd=remove` must leave no SA on either gateway and no policy of ikepriv. Figures
(pings sent/lost, seconds until managed again, until the rekey) are printed with -s.

The one loss excused (restart_cases.PEER_SENDS_FROM_QM2): libreswan as Quick Mode responder
sends on its new SA from QM2 on, before ikepriv, the initiator, can have the keys for it; a
packet in those milliseconds dies on ikepriv's larval SPI (XfrmAcquireError), at the resume
and at every rekey alike. It is excused only when the ping's trace (e2e.ping_trace: captures
on both gateways, their XFRM counters and xfrm events, in the details) shows exactly that,
packet by packet. IKEPRIV_RESTART_CASES=name,... runs only those scenarios.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e.common import boot_scenarios
from e2e.restart_cases import CATALOGUE

pytestmark = [pytest.mark.uml, pytest.mark.interop, pytest.mark.root, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def guest() -> dict[str, Any]:
    value = boot_scenarios(
        "e2e.restart_cases",
        "run_restart",
        timeout=800,
        certutil=True,
        tier="restart tier",
        names_env="IKEPRIV_RESTART_CASES",
    )
    for name, r in value["results"].items():
        p = r["details"].get("ping", {})
        print(
            f"  {name}: {'ok' if r['ok'] else 'FAILED'} pings sent {p.get('sent')} lost "
            f"{p.get('lost')} {p.get('lost_at_s_after_kill', '')} (to the peer's early "
            f"switch: {p.get('lost_to_peer_early_switch', [])}); kill -> managed "
            f"{r['times'].get('kill_to_managed')}s; resumed -> rekey "
            f"{r['times'].get('resumed_to_rekey')}s; total {r['times'].get('total')}s"
        )
    return value


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_child_restart(guest: dict[str, Any], name: str) -> None:
    r = guest["results"].get(name)
    assert r is not None, f"scenario {name} did not run"
    tails = "\n".join(f"--- {k}\n{v}" for k, v in r["log_tails"].items())
    assert r["ok"], "\n".join(r["why"]) + f"\nsteps: {r['steps']}\ndetails: {r['details']}\n{tails}"


# libreswan as the first initiator would keep the previous child's IPsec SA until its own
# lifetime (1 h here): the parent hands the new child the old pair's SPIs (ResumeCommand.old)
# and the new child retires it after the overlap, as after a rekey (Delete + Phase2Remove).
# libreswan as the first initiator (`whack --initiate` keeps its connection up) may answer
# our Deletes by negotiating the pair again ("replace IPsec State now", its own choice: the
# definition still allows it): then SAs of that new negotiation are on its side, never the
# removed ones. For it the check is that none of the SAs from before the remove is left.
LIBRESWAN_REPLACES = {"lsw-ikp-restart"}


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_remove_clears_the_peer(guest: dict[str, Any], name: str) -> None:
    """After `ike cmd=remove` the peer's gateway holds none of the removed ESP SAs (within
    15 s); a peer that does not renegotiate by itself holds no ESP SA at all."""
    r = guest["results"].get(name)
    assert r is not None and "peer_sas_gone" in r["details"], f"scenario {name} did not get there"
    d = r["details"]
    left = set(d["peer_sas_after_remove"]) & set(d["peer_spis_before_remove"])
    assert not left, f"removed SAs still on the peer: {sorted(left)}"
    if name not in LIBRESWAN_REPLACES:
        assert d["peer_sas_gone"], (
            f"peer SAs left after remove: {d['peer_sas_after_remove']} "
            f"(of them from before the kill: {d['peer_had_old_sas']})"
        )
