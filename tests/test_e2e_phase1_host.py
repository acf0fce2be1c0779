"""The ikepriv peer driver on the host, phase 1 only (the host kernel has no ESP, so Quick
Mode cannot install SAs here): real ikeprivd daemons in namespaces of their own, driven with
ikedb and `ike cmd=activate phase=1`, against ikepriv, strongSwan and libreswan. A quick
check of the driver and the daemon before the UML tier (tests/test_e2e_*.py) boots a kernel.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import netns as nsmod
from harness.interop import Scenario, peer_spec
from harness.peer_ikepriv import PHASE1_NAME, Ikepriv
from harness.peers import CHARON, LSW_ROOT, Peer, make_peer

pytestmark = [pytest.mark.root]

CASES = [
    pytest.param(Scenario("ikp-ikp-mm", "ikepriv", "ikepriv", "main"), id="ikp-ikp-mm"),
    pytest.param(
        Scenario("ikp-ss-am", "ikepriv", "strongswan", "aggressive"),
        id="ikp-ss-am",
        marks=pytest.mark.interop,
    ),
    pytest.param(
        Scenario("lsw-ikp-mm", "libreswan", "ikepriv", "main"),
        id="lsw-ikp-mm",
        marks=pytest.mark.interop,
    ),
]


@pytest.fixture
def topo() -> Iterator[nsmod.Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    t = nsmod.Topology(prefix=f"e2h{os.getpid()}")
    t.build()
    try:
        yield t
    finally:
        t.destroy()


def _need(impl: str) -> None:
    if impl == "strongswan" and (not os.access(CHARON, os.X_OK) or not shutil.which("swanctl")):
        pytest.skip("needs strongSwan (scripts/setup.sh)")
    if impl == "libreswan" and not (LSW_ROOT / "usr/libexec/ipsec/pluto").exists():
        pytest.skip("needs libreswan (scripts/install-libreswan.sh)")


def _phase1_row(peer: Peer) -> dict[str, object] | None:
    assert isinstance(peer, Ikepriv)
    rc, rows, err = peer.list_json("phase=1")
    assert rc == 0, err
    return next((r for r in rows if r["name"] == PHASE1_NAME), None)


@pytest.mark.parametrize("sc", CASES)
def test_phase1_with_the_ikepriv_driver(topo: nsmod.Topology, sc: Scenario, tmp_path: Path) -> None:
    _need(sc.initiator)
    _need(sc.responder)
    resp = make_peer(sc.responder, peer_spec(topo, sc, "responder"), tmp_path)
    init = make_peer(sc.initiator, peer_spec(topo, sc, "initiator"), tmp_path)
    with resp, init:
        resp.start()
        init.start()
        assert init.initiate_phase1(timeout=15), init.log_tail()
        deadline = time.monotonic() + 10
        while not resp.ike_established():
            assert time.monotonic() < deadline, resp.log_tail()
            time.sleep(0.1)
        for peer, role in ((init, "i"), (resp, "r")):
            if isinstance(peer, Ikepriv):
                row = _phase1_row(peer)
                assert row is not None, peer.log_tail()
                assert (row["state"], row["role"]) == ("established", role), row
                assert (row["local_addr"], row["remote_addr"]) == (
                    peer.spec.local,
                    peer.spec.remote,
                ), row
                assert isinstance(peer.pid, int) and peer.child_sandboxed(), peer.log_tail()
    assert not init.alive() and not resp.alive()
