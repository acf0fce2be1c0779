"""Certificate authentication between two real ikeprivd daemons on the host (phase 1 only:
the host kernel has no ESP), in namespaces of their own: ikedb takes the definitions with
their files, the parent signs, the sandboxed child parses and validates the peer's chain
(with the seccomp filter on) and `ike cmd=list verbose json` shows the peer's certificate.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pki
import pytest
from harness import netns as nsmod
from harness import pki_files
from harness.interop import Scenario, peer_spec
from harness.peer_ikepriv import PHASE1_NAME, Ikepriv
from harness.peers import make_peer

pytestmark = [pytest.mark.root]


@pytest.fixture
def topo() -> Iterator[nsmod.Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    t = nsmod.Topology(prefix=f"e2s{os.getpid()}")
    t.build()
    try:
        yield t
    finally:
        t.destroy()


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("main", "rsa2048"),
        ("main", "p256"),
        ("main", "p384"),
        ("aggressive", "p256"),
    ],
)
def test_two_daemons_authenticate_each_other_with_certificates(
    topo: nsmod.Topology, tmp_path: Path, mode: str, kind: str
) -> None:
    made = pki_files.make(tmp_path / "pki", {"initiator": kind, "responder": kind}, revoke=())
    sc = Scenario(f"sig-{mode}-{kind}", "ikepriv", "ikepriv", mode)
    peers = {}
    for role in ("responder", "initiator"):
        other = "initiator" if role == "responder" else "responder"
        spec = dataclasses.replace(
            peer_spec(topo, sc, role), auth="pubkey", pki=str(made.dirs[role]),
            local_id=made.ids[role], remote_id=made.ids[other],
        )  # fmt: skip
        peer = make_peer("ikepriv", spec, tmp_path)
        assert isinstance(peer, Ikepriv)
        peers[role] = peer
    resp, init = peers["responder"], peers["initiator"]
    with resp, init:
        resp.start()
        init.start()
        assert init.initiate_phase1(timeout=20), init.log_tail()
        deadline = time.monotonic() + 10
        while not resp.ike_established():
            assert time.monotonic() < deadline, resp.log_tail()
            time.sleep(0.1)
        for peer, other in ((init, "responder"), (resp, "initiator")):
            rc, rows, err = peer.list_json("phase=1", "verbose")
            assert rc == 0, err
            row = next(r for r in rows if r["name"] == PHASE1_NAME)
            assert row["state"] == "established", row
            assert row["peer_cert_subject"] == pki.name(made.ids[other]).rfc4514_string(), row
            assert row["peer_cert_issuer"] == pki.name(pki_files.IM_DN).rfc4514_string(), row
            assert peer.child_sandboxed(), peer.log_tail()


def _need_strongswan() -> None:
    from harness.peers import CHARON

    if not os.access(CHARON, os.X_OK) or not shutil.which("swanctl"):
        pytest.skip("needs strongSwan (scripts/setup.sh)")


@pytest.mark.interop
@pytest.mark.parametrize(
    ("initiator", "responder", "kind"),
    [
        ("ikepriv", "strongswan", "p256"),
        ("ikepriv", "strongswan", "rsa2048"),
        ("strongswan", "ikepriv", "p256"),
        ("strongswan", "ikepriv", "rsa2048"),
    ],
)
def test_main_mode_certificates_against_strongswan(
    topo: nsmod.Topology, tmp_path: Path, initiator: str, responder: str, kind: str
) -> None:
    """strongSwan 5.9 and ikepriv, each role, with an intermediate CA: DN identities (which
    strongSwan encodes with other string types than the certificates), CRs (strongSwan as
    initiator sends its CR in MM5), RSA (PKCS#1 v1.5 without DigestInfo) and ECDSA
    (RFC 4754: HASH with the method's SHA-2, signed as the digest)."""
    _need_strongswan()
    made = pki_files.make(tmp_path / "pki", {"initiator": kind, "responder": kind})
    sc = Scenario(f"sig-{initiator[:3]}-{responder[:3]}-{kind}", initiator, responder, "main")
    peers = {}
    for role, impl in (("responder", responder), ("initiator", initiator)):
        other = "initiator" if role == "responder" else "responder"
        spec = dataclasses.replace(
            peer_spec(topo, sc, role), auth="pubkey", pki=str(made.dirs[role]),
            local_id=made.ids[role], remote_id=made.ids[other],
        )  # fmt: skip
        peers[role] = make_peer(impl, spec, tmp_path)
    resp, init = peers["responder"], peers["initiator"]
    with resp, init:
        resp.start()
        init.start()
        assert init.initiate_phase1(timeout=20), init.log_tail() + resp.log_tail()
        deadline = time.monotonic() + 10
        while not resp.ike_established():
            assert time.monotonic() < deadline, resp.log_tail()
            time.sleep(0.1)
        ours = init if isinstance(init, Ikepriv) else resp
        assert isinstance(ours, Ikepriv)
        rc, rows, err = ours.list_json("phase=1", "verbose")
        assert rc == 0, err
        row = next(r for r in rows if r["name"] == PHASE1_NAME)
        theirs = "responder" if ours is init else "initiator"
        assert row["state"] == "established", row
        assert row["peer_cert_subject"] == pki.name(made.ids[theirs]).rfc4514_string(), row
        assert ours.child_sandboxed(), ours.log_tail()
