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
from harness.interop import Scenario, peer_spec
from harness.peer_ikepriv import PHASE1_NAME, Ikepriv
from harness.peers import PubkeyAuth, make_peer

pytestmark = [pytest.mark.root]

AUTH = {"rsa2048": "rsa-sig", "p256": "ecdsa-sig", "p384": "ecdsa-sig"}


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


def _files(tmp: Path, role: str, address: str, kind: str, inter: pki.Issued) -> tuple[
    pki.CredentialFiles, pki.Issued
]:  # fmt: skip
    ee = pki.make_end_entity(inter, f"C=CH, O=ikepriv test, CN=gw-{role}", [address], kind,
                             fresh_key=True)  # fmt: skip
    files = pki.write_credentials(tmp / f"creds-{role}", ee, inter.issuer or inter, inter,
                                  crl=pki.make_crl(inter))  # fmt: skip
    return files, ee


# Aggressive Mode: the responder's AM2 carries its chain before the initiator proved its
# address, and the parent's egress rule (parent_kernel/egress.py: PRE_MULT = 3 times the
# bytes received, before proof) refuses an AM2 of ~2 KiB answering an AM1 of ~500 bytes
# ("over the destination's budget"). A policy decision for the parent (a larger pre-proof
# allowance for signature definitions, or none for AM with certificates); the core is fine
# (tests/test_core_signatures.py runs Aggressive Mode with certificates in-process).
_AM_EGRESS = pytest.mark.xfail(
    strict=True, reason="parent egress budget refuses a certificate-sized AM2 before proof"
)


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("main", "rsa2048"),
        ("main", "p256"),
        ("main", "p384"),
        pytest.param("aggressive", "p256", marks=_AM_EGRESS),
    ],
)
def test_two_daemons_authenticate_each_other_with_certificates(
    topo: nsmod.Topology, tmp_path: Path, mode: str, kind: str
) -> None:
    root = pki.make_ca()
    inter = pki.make_intermediate(root)
    sc = Scenario(f"sig-{mode}-{kind}", "ikepriv", "ikepriv", mode)
    peers, subjects = [], {}
    for role in ("responder", "initiator"):
        spec = peer_spec(topo, sc, role)
        files, ee = _files(tmp_path, role, spec.local, kind, inter)
        subjects[role] = ee.cert.subject.rfc4514_string()
        peer = make_peer("ikepriv", spec, tmp_path)
        assert isinstance(peer, Ikepriv)
        peer.options.phase1_extra = {
            "auth": AUTH[kind], "cert": str(files.cert), "key": str(files.key),
            "ca": [str(files.ca)], "crl": [str(files.crl)], "send_cert": "ifasked",
        }  # fmt: skip
        peers.append(peer)
    resp, init = peers
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
            assert row["peer_cert_subject"] == subjects[other], row
            assert row["peer_cert_issuer"] == inter.cert.subject.rfc4514_string(), row
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
    """strongSwan 5.9 and ikepriv, each role: DN identities, certificates sent when asked
    (both send CRs), RSA (PKCS#1 v1.5 without DigestInfo) and ECDSA (RFC 4754) signatures."""
    _need_strongswan()
    root = pki.make_ca()
    sc = Scenario(f"sig-{initiator[:3]}-{responder[:3]}-{kind}", initiator, responder, "main")
    dns = {role: f"C=CH, O=ikepriv test, CN=gw-{role}" for role in ("initiator", "responder")}
    peers = {}
    for role, impl in (("responder", responder), ("initiator", initiator)):
        spec = peer_spec(topo, sc, role)
        ee = pki.make_end_entity(root, dns[role], [spec.local], kind, fresh_key=True)
        files = pki.write_credentials(tmp_path / f"creds-{role}", ee, root)
        other = "initiator" if role == "responder" else "responder"
        auth = PubkeyAuth(files.cert, files.key, files.ca, dns[role], dns[other], AUTH[kind])
        peers[role] = make_peer(impl, dataclasses.replace(spec, pubkey=auth), tmp_path)
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
        assert row["peer_cert_subject"] == pki.name(dns[theirs]).rfc4514_string(), row
        assert ours.child_sandboxed(), ours.log_tail()
