"""A hostile child asks the real daemon for signatures (issue 10): the parent signs only its
own HASH_I/HASH_R, over our configured identity, for a signature definition whose peer is
talking to us, with a configured prf and group, at a bounded rate; everything else is
refused, logged and counted. The test stands in for the negotiator (test_daemon_support).
"""

from __future__ import annotations

import ipaddress
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

import pki
import pytest
from test_daemon_support import GW_A, GW_B, Daemon, StandIn, Topology, send_udp, write_db

from ikepriv.crypto.oakley import hash_i, hash_r
from ikepriv.crypto.signatures import verify
from ikepriv.ipc import messages as m
from ikepriv.isakmp.constants import AuthMethod, IdType, IkeHash
from ikepriv.parent_kernel.vetting import SIGNATURE_BURST

pytestmark = pytest.mark.root

A, B = ipaddress.ip_address(GW_A), ipaddress.ip_address(GW_B)
OUR_DN = "C=CH, O=ikepriv test, CN=gw-a"
DEFS = """\
[[phase1]]
name = "sig"
local_addr = "{a}"
remote_addr = "{b}"
local_id = "{dn}"
remote_id = "C=CH, O=ikepriv test, CN=gw-b"
auth = "rsa-sig"
{files}send_cert = "always"
fragmentation = "accept"
fragment_size = 1400
proposals = ["aes128-sha256-modp2048"]

[[phase1]]
name = "psk"
local_addr = "{a}"
remote_addr = "192.0.2.3"
psk = "a long random shared secret for the tests"
proposals = ["aes128-sha256-modp2048"]

[[phase1]]
name = "broken"
local_addr = "{a}"
remote_addr = "192.0.2.4"
local_id = "{dn}"
remote_id = "C=CH, O=ikepriv test, CN=gw-c"
auth = "rsa-sig"
{files}proposals = ["aes128-sha256-modp2048"]
"""


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Daemon, StandIn, str, pki.Issued, pki.CredentialFiles]]:
    ca = pki.make_ca()
    ee = pki.make_end_entity(ca, OUR_DN, ["gw-a.example.org"])
    files = pki.write_credentials(tmp_path / "creds", ee, ca, crl=pki.make_crl(ca))
    db = tmp_path / "d.db"
    write_db(db, DEFS.format(a=GW_A, b=GW_B, dn=OUR_DN, files=files.toml()))
    # 'broken' gets a key file of its own that others can read (edited after ikedb checked
    # it): the daemon refuses that definition alone when it loads
    broken_key = pki.write(tmp_path / "creds" / "broken.pem", ee.key_pem(), 0o644)
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE phase1 SET key = ? WHERE name = 'broken'", (str(broken_key),))
    raw.close()
    with Topology.create() as topo:
        standin = StandIn(tmp_path)
        daemon = Daemon.start(topo.a, tmp_path, db=db, child_cmd=standin.child_cmd)
        try:
            standin.accept()
            yield daemon, standin, topo.b, ee, files
        finally:
            daemon.stop()
            standin.close()


def request(rid: int, *, number: int = 1, peer: object = B, prf: IkeHash = IkeHash.SHA2_256,
            initiator: bool = True, g_len: int = 256) -> m.SignatureRequest:  # fmt: skip
    return m.SignatureRequest(
        request_id=rid, phase1_number=number, peer=peer, prf=prf, initiator=initiator,
        skeyid=bytes(range(32)), g_xi=b"\x01" * g_len, g_xr=b"\x02" * 256,
        icookie=b"I" * 8, rcookie=b"R" * 8, sa_i_body=b"the initiator's SA body",
    )  # fmt: skip


def our_id_body() -> bytes:
    """IDii_b/IDir_b as RFC 2407 4.6.2 lays it out, built here independently of ikepriv's
    encoder: type ID_DER_ASN1_DN, protocol 0, port 0, the DER of our configured DN
    (PrintableString values, as strongSwan and libreswan encode a configured DN)."""
    return struct.pack(">BBH", IdType.DER_ASN1_DN, 0, 0) + pki.id_der(OUR_DN)


def test_the_child_gets_the_credential_files_and_the_new_phase1_fields(
    setup: tuple[Daemon, StandIn, str, pki.Issued, pki.CredentialFiles],
) -> None:
    daemon, child, _, _, files = setup
    phase1 = [msg.definition for msg in child.config if isinstance(msg, m.ConfigPhase1)]
    assert [d.name for d in phase1] == ["sig", "psk"]  # 'broken' is left out, 'psk' works
    daemon.wait_log(r"phase 1 definition 3 \(broken\) unusable: field 'key': .*broken\.pem: "
                    r"group or others have access")  # fmt: skip
    sig = phase1[0]
    assert sig.auth_method is AuthMethod.RSA_SIGNATURES
    assert (sig.send_cert, sig.fragmentation, sig.fragment_size) == (
        m.SendCert.ALWAYS, m.Fragmentation.ACCEPT, 1400,
    )  # fmt: skip
    creds = [msg for msg in child.config if isinstance(msg, m.ConfigCredential)]
    assert [(c.phase1_number, c.kind, c.index, c.blob) for c in creds] == [
        (1, m.CredentialKind.OWN_CERT, 0, files.cert.read_bytes()),
        (1, m.CredentialKind.TRUST_ANCHOR, 0, files.ca.read_bytes()),
        (1, m.CredentialKind.CRL, 0, files.crl.read_bytes()),  # type: ignore[union-attr]
    ]
    # each follows its definition's ConfigPhase1, and ConfigEnd counts them
    first = child.config.index(creds[0])
    assert isinstance(child.config[first - 1], m.ConfigPhase1)
    end = child.config[-1]
    assert isinstance(end, m.ConfigEnd) and end.credential_count == 3
    assert b"PRIVATE KEY" not in b"".join(c.blob for c in creds)


def test_signatures_only_for_a_live_signature_definition_and_over_our_own_id(
    setup: tuple[Daemon, StandIn, str, pki.Issued, pki.CredentialFiles],
) -> None:
    daemon, child, peer_ns, ee, _ = setup
    # the peer has not sent us anything: no signature (forged traffic cannot get one either)
    reply = child.ask(request(1))
    assert isinstance(reply, m.SignatureReply) and reply.error is m.ErrorCode.NOT_PERMITTED
    daemon.wait_log(r"tunnel 1: refused signature request from the child: .*not talked")
    send_udp(peer_ns, GW_A, 500, bytes(28))
    got = child.recv()
    assert isinstance(got, m.DatagramIn) and got.remote.addr == B
    for rid, bad, code, reason in [
        (2, request(2, number=99), m.ErrorCode.NO_SUCH_TUNNEL, "no phase 1 definition 99"),
        (3, request(3, number=2), m.ErrorCode.NO_SECRET, "does not use signature"),
        (4, request(4, number=3), m.ErrorCode.NO_SUCH_TUNNEL, "no phase 1 definition 3"),
        (5, request(5, peer=ipaddress.ip_address("192.0.2.77")), m.ErrorCode.NOT_PERMITTED,
         "192.0.2.77 is not the peer"),
        (6, request(6, peer=A), m.ErrorCode.NOT_PERMITTED, "is not the peer"),
        (7, request(7, prf=IkeHash.SHA), m.ErrorCode.BAD_ALGORITHM, "prf SHA not configured"),
        (8, request(8, g_len=128), m.ErrorCode.BAD_LENGTH, "fit no group"),
    ]:  # fmt: skip
        reply = child.ask(bad)
        assert isinstance(reply, m.SignatureReply) and reply.error is code, (rid, reply)
        assert reply.signature == b""
        daemon.wait_log(rf"refused signature request from the child: .*{reason}")
    public = ee.cert.public_key()
    for rid, initiator in ((10, True), (11, False)):
        req = request(rid, initiator=initiator)
        reply = child.ask(req)
        assert isinstance(reply, m.SignatureReply) and reply.error is m.ErrorCode.OK, reply
        compute = hash_i if initiator else hash_r
        parts = (req.prf, req.skeyid, req.g_xi, req.g_xr, req.icookie, req.rcookie,
                 req.sa_i_body)  # fmt: skip
        ours = compute(*parts, our_id_body())
        assert verify(AuthMethod.RSA_SIGNATURES, public, ours, reply.signature)  # type: ignore[arg-type]
        # not over any other identity, e.g. the peer's (what a child would like to choose)
        theirs = struct.pack(">BBH", IdType.DER_ASN1_DN, 0, 0) + pki.id_der(
            "C=CH, O=ikepriv test, CN=gw-b")  # fmt: skip
        assert not verify(AuthMethod.RSA_SIGNATURES, public, compute(*parts, theirs),  # type: ignore[arg-type]
                          reply.signature)  # fmt: skip
    # per-definition rate: the burst is spent after a few more; the rest wait for tokens
    codes = [child.ask(request(100 + i)).error  # type: ignore[attr-defined]
             for i in range(SIGNATURE_BURST + 8)]  # fmt: skip
    assert m.ErrorCode.LIMIT_REACHED in codes and m.ErrorCode.OK in codes
    daemon.wait_log("too many signature requests for phase 1 1")
    key_text = ee.key_pem().decode().splitlines()[1]
    assert key_text not in daemon.log()


def test_a_snapshot_larger_than_the_child_queue_arrives_whole(tmp_path: Path) -> None:
    """Twenty signature definitions with a CRL file of 59000 bytes each: more than the 1 MiB
    the parent queues for the child at once. The snapshot waits for the child to read
    instead of losing messages (a child refuses a snapshot with one missing)."""
    ca = pki.make_ca()
    ee = pki.make_end_entity(ca, OUR_DN)
    files = pki.write_credentials(tmp_path / "creds", ee, ca)
    big = pki.write(tmp_path / "creds" / "big.crl", b"\x30" + bytes(58999))  # not parsed here
    tables = "".join(
        f'[[phase1]]\nname = "sig{i}"\nlocal_addr = "{GW_A}"\nremote_addr = "192.0.2.{10 + i}"\n'
        f'local_id = "{OUR_DN}"\nauth = "rsa-sig"\n{files.toml()}crl = ["{big}"]\n'
        'proposals = ["aes128-sha256-modp2048"]\n\n'
        for i in range(20)
    )
    db = tmp_path / "d.db"
    write_db(db, tables)
    with Topology.create() as topo:
        standin = StandIn(tmp_path)
        daemon = Daemon.start(topo.a, tmp_path, db=db, child_cmd=standin.child_cmd)
        try:
            standin.accept()
            creds = [msg for msg in standin.config if isinstance(msg, m.ConfigCredential)]
            crls = [c for c in creds if c.kind is m.CredentialKind.CRL]
            end = standin.config[-1]
            assert isinstance(end, m.ConfigEnd) and end.phase1_count == 20
            assert end.credential_count == 60 and len(crls) == 20
            assert all(c.blob == big.read_bytes() for c in crls)
            assert "dropped" not in daemon.log()
        finally:
            daemon.stop()
            standin.close()


def test_a_signature_initiator_gets_its_nonce_from_the_parent(
    setup: tuple[Daemon, StandIn, str, pki.Issued, pki.CredentialFiles],
) -> None:
    """Signature definitions initiate with the parent's Ni too (the child computes SKEYID
    itself, but no phase 1 we start runs on a nonce of the child's alone)."""
    _, child, _, _, _ = setup
    reply = child.ask(m.NonceRequest(1, 1))
    assert isinstance(reply, m.NonceReply) and reply.error is m.ErrorCode.OK
    assert len(reply.nonce) == m.PARENT_NONCE_BYTES and reply.nonce_id
    refused = child.ask(m.NonceRequest(2, 99))
    assert isinstance(refused, m.NonceReply) and refused.error is m.ErrorCode.NO_SUCH_TUNNEL
