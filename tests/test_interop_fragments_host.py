"""IKE fragmentation against strongSwan 5.9.8 on the host (phase 1 only: the host kernel has
no ESP). strongSwan initiates with `fragmentation = force` and a 576-byte fragment_size,
with 4096-bit MODP so that its Main Mode 3/5 and its Aggressive Mode first message exceed
it: it cuts them into IKE fragments, and the ikepriv daemon (its default, `yes`) must
reassemble them, the Aggressive Mode one before any SA exists, and establish."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import netns as nsmod
from harness.interop import Scenario, peer_spec
from harness.peer_ikepriv import Ikepriv
from harness.peers import CHARON, LSW_ROOT, make_peer

pytestmark = [pytest.mark.root, pytest.mark.interop]

IKE = "aes128-sha256-modp4096"


@pytest.fixture
def topo() -> Iterator[nsmod.Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    if not os.access(CHARON, os.X_OK) or not shutil.which("swanctl"):
        pytest.skip("needs strongSwan (scripts/setup.sh)")
    t = nsmod.Topology(prefix=f"frg{os.getpid()}")
    t.build()
    try:
        yield t
    finally:
        t.destroy()


def _stats(peer: Ikepriv) -> dict[str, int]:
    r = peer.ike("cmd=list", "stats", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    return {k: v for k, v in doc.items() if isinstance(v, int)}


def _fragments_sent(charon_log: Path) -> int:
    return sum("splitting IKE message" in line for line in charon_log.read_text().splitlines())


@pytest.mark.parametrize("exchange", ["main", "aggressive"])
def test_strongswan_forced_fragments_are_reassembled(
    topo: nsmod.Topology, exchange: str, tmp_path: Path
) -> None:
    sc = Scenario(f"frag-ss-ikp-{exchange[:2]}", "strongswan", "ikepriv", exchange, ike=IKE)
    ss_spec = dataclasses.replace(
        peer_spec(topo, sc, "initiator"), fragmentation="force", fragment_size=576
    )
    resp = make_peer("ikepriv", peer_spec(topo, sc, "responder"), tmp_path)
    init = make_peer("strongswan", ss_spec, tmp_path)
    assert isinstance(resp, Ikepriv)
    with resp, init:
        resp.start()
        init.start()
        assert init.initiate_phase1(timeout=15), init.log_tail()
        deadline = time.monotonic() + 10
        while not resp.ike_established():
            assert time.monotonic() < deadline, resp.log_tail()
            time.sleep(0.1)
        stats = _stats(resp)
        split = _fragments_sent(init.dir / "charon.log")
    assert split >= 1, "strongSwan sent no fragments: the test proves nothing"
    assert stats["fragments_reassembled"] >= split, stats
    assert stats["fragments_dropped"] == 0, stats


def test_strongswan_reassembles_our_fragments(topo: nsmod.Topology, tmp_path: Path) -> None:
    """The other direction: strongSwan announces fragmentation (its default, `yes`), and our
    Aggressive Mode answer with a 8192-bit MODP value exceeds the default fragment_size
    (1280): ikepriv (`yes`) sends it in fragments, and strongSwan must reassemble them."""
    sc = Scenario(
        "frag-ss-ikp-rev", "strongswan", "ikepriv", "aggressive", ike="aes128-sha256-modp8192"
    )
    resp = make_peer("ikepriv", peer_spec(topo, sc, "responder"), tmp_path)
    init = make_peer("strongswan", peer_spec(topo, sc, "initiator"), tmp_path)
    assert isinstance(resp, Ikepriv)
    with resp, init:
        resp.start()
        init.start()
        assert init.initiate_phase1(timeout=15), init.log_tail()
        deadline = time.monotonic() + 10
        while not resp.ike_established():
            assert time.monotonic() < deadline, resp.log_tail()
            time.sleep(0.1)
        stats = _stats(resp)
    log = (init.dir / "charon.log").read_text()
    assert stats["fragments_sent"] >= 2, stats
    assert "reassembled fragmented IKE message" in log, log[-2000:]


@pytest.mark.parametrize("exchange", ["main", "aggressive"])
def test_libreswan_forced_fragments_are_reassembled(
    topo: nsmod.Topology, exchange: str, tmp_path: Path
) -> None:
    """libreswan 4.10 with `fragmentation=force` cuts every message from 576 bytes on but
    its first Main Mode one; with 4096-bit MODP that is MM3 (or the Aggressive Mode first
    message), and ikepriv must reassemble it."""
    if not (LSW_ROOT / "usr/libexec/ipsec/pluto").exists():
        pytest.skip("needs libreswan (scripts/install-libreswan.sh)")
    sc = Scenario(f"frag-lsw-ikp-{exchange[:2]}", "libreswan", "ikepriv", exchange, ike=IKE)
    lsw_spec = dataclasses.replace(peer_spec(topo, sc, "initiator"), fragmentation="force")
    resp = make_peer("ikepriv", peer_spec(topo, sc, "responder"), tmp_path)
    init = make_peer("libreswan", lsw_spec, tmp_path)
    assert isinstance(resp, Ikepriv)
    with resp, init:
        resp.start()
        init.start()
        assert init.initiate_phase1(timeout=15), init.log_tail()
        deadline = time.monotonic() + 10
        while not resp.ike_established():
            assert time.monotonic() < deadline, resp.log_tail()
            time.sleep(0.1)
        stats = _stats(resp)
    assert stats["fragments_reassembled"] >= 1, stats
    assert stats["fragments_dropped"] == 0, stats
