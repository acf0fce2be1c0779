"""Phase 1 between strongSwan and libreswan on the host (its kernel has no ESP, so only the
ISAKMP SA can come up): the peer drivers and the topology work outside UML too, with
namespace names of their own so parallel tests do not collide."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import netns as nsmod
from harness.interop import Scenario, peer_spec
from harness.peers import CHARON, LSW_ROOT, make_peer

pytestmark = [pytest.mark.root, pytest.mark.interop]

CASES = [
    Scenario("ss-lsw-mm", "strongswan", "libreswan", "main"),
    Scenario("lsw-ss-am", "libreswan", "strongswan", "aggressive"),
]


@pytest.fixture
def topo() -> Iterator[nsmod.Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.access(CHARON, os.X_OK) or not (LSW_ROOT / "usr/libexec/ipsec/pluto").exists():
        pytest.skip("needs strongSwan and libreswan (scripts/setup.sh)")
    t = nsmod.Topology(prefix=f"p1h{os.getpid()}")
    t.build()
    try:
        yield t
    finally:
        t.destroy()


def test_guard_blocks_on_host(topo: nsmod.Topology) -> None:
    assert topo.guard_blocks()


@pytest.mark.parametrize("sc", CASES, ids=lambda s: s.name)
def test_phase1_established_both_sides(topo: nsmod.Topology, sc: Scenario, tmp_path: Path) -> None:
    resp = make_peer(sc.responder, peer_spec(topo, sc, "responder"), tmp_path)
    init = make_peer(sc.initiator, peer_spec(topo, sc, "initiator"), tmp_path)
    with resp, init:
        resp.start()
        init.start()
        assert init.initiate_phase1(timeout=10), init.log_tail()
        deadline = time.monotonic() + 10
        while not resp.ike_established():
            assert time.monotonic() < deadline, resp.log_tail()
            time.sleep(0.1)
    assert not init.alive() and not resp.alive()
