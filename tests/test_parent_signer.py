"""The parent's key holder (parent_kernel/signer.py) as the daemon builds it from the
database: each method signs HASH_I/HASH_R over our configured identity, and a key that does
not serve the stored method, or a file that became unsafe, makes that definition unusable
with a log line naming the field (issue 10)."""

from __future__ import annotations

import ipaddress
import logging
import os
import sqlite3
import struct
from pathlib import Path

import pki
import pytest

from ikepriv.config import load_definitions
from ikepriv.config.store import TunnelDB
from ikepriv.crypto.oakley import hash_i, hash_r
from ikepriv.crypto.signatures import verify
from ikepriv.ipc import messages as m
from ikepriv.isakmp.constants import AuthMethod, IdType, IkeHash
from ikepriv.parent_kernel.definitions import DbView

OUR_ID = "gw-a.example.org"  # an FQDN this time: ID_FQDN, the name's ASCII bytes
DEF = """\
[[phase1]]
name = "sig"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
local_id = "{our_id}"
remote_id = "C=CH, O=ikepriv test, CN=gw-b"
auth = "{auth}"
{files}proposals = ["aes256-sha384-ecp384"]
"""


def stored(tmp_path: Path, key_kind: str) -> tuple[Path, pki.Issued]:
    ca = pki.make_ca()
    ee = pki.make_end_entity(ca, "C=CH, O=ikepriv test, CN=gw-a", [OUR_ID], key_kind=key_kind)
    files = pki.write_credentials(tmp_path, ee, ca)
    auth = "rsa-sig" if key_kind.startswith("rsa") else "ecdsa-sig"
    text = DEF.format(our_id=OUR_ID, auth=auth, files=files.toml())
    db = tmp_path / "t.db"
    with TunnelDB(db) as tdb:
        tdb.put(load_definitions(text, check_files=True))
    return db, ee


def view_of(db: Path) -> DbView:
    with TunnelDB(db, create=False, readonly=True) as tdb:
        return DbView.load(tdb)


def request(initiator: bool) -> m.SignatureRequest:
    return m.SignatureRequest(
        request_id=1, phase1_number=1, peer=ipaddress.ip_address("192.0.2.2"),
        prf=IkeHash.SHA2_384, initiator=initiator, skeyid=os.urandom(48),
        g_xi=os.urandom(96), g_xr=os.urandom(96), icookie=os.urandom(8),
        rcookie=os.urandom(8), sa_i_body=b"SAi_b as the initiator sent it",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("key_kind", "method"),
    [
        ("rsa2048", AuthMethod.RSA_SIGNATURES),
        ("rsa4096", AuthMethod.RSA_SIGNATURES),
        ("p256", AuthMethod.ECDSA_SHA256_P256),
        ("p384", AuthMethod.ECDSA_SHA384_P384),
        ("p521", AuthMethod.ECDSA_SHA512_P521),
    ],
)
def test_each_method_signs_our_hash_over_our_configured_identity(
    tmp_path: Path, key_kind: str, method: AuthMethod
) -> None:
    db, ee = stored(tmp_path, key_kind)
    signer = view_of(db).signers[1]
    assert signer.method is method
    our_id_b = struct.pack(">BBH", IdType.FQDN, 0, 0) + OUR_ID.encode()
    for initiator, compute in ((True, hash_i), (False, hash_r)):
        req = request(initiator)
        signature = signer.sign(req)
        expected = compute(req.prf, req.skeyid, req.g_xi, req.g_xr, req.icookie, req.rcookie,
                           req.sa_i_body, our_id_b)  # fmt: skip
        assert verify(method, ee.cert.public_key(), expected, signature)  # type: ignore[arg-type]
    assert "PRIVATE" not in repr(signer) and "private_numbers" not in repr(signer)


def test_a_key_that_no_longer_serves_the_stored_method_leaves_the_definition_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db, _ = stored(tmp_path, "p384")
    pki.write(tmp_path / "key.pem", pki.private_pem(pki.key("p256")), 0o600)
    with caplog.at_level(logging.ERROR, "ikepriv.parent"):
        view = view_of(db)
    assert 1 not in view.phase1 and 1 not in view.signers and not view.ipc_phase1
    assert "field 'key'" in caplog.text and "ECDSA_SHA384_P384" in caplog.text


@pytest.mark.parametrize(
    ("column", "mode", "words"),
    [("key", 0o640, "group or others have access"), ("ca", 0o666, "writable by group")],
)
def test_a_file_made_unsafe_after_ikedb_leaves_the_definition_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, column: str, mode: int, words: str
) -> None:
    db, _ = stored(tmp_path, "p256")
    os.chmod(tmp_path / ("key.pem" if column == "key" else "ca.pem"), mode)
    with sqlite3.connect(db) as raw:  # a second, good definition keeps working
        raw.execute("INSERT INTO phase1 SELECT NULL, 'psk', local_addr, '192.0.2.9', "
                    "local_id_type, local_id, remote_id_type, remote_id, mode, 1, X'6b6579', "
                    "proposals, lifetime, rekey_margin, keying_tries, dpd_delay, dpd_timeout, "
                    "dpd_action, nat_traversal, autostart, encap, rekey, NULL, NULL, '[]', "
                    "'[]', send_cert, fragmentation, fragment_size FROM phase1")  # fmt: skip
    raw.close()
    with caplog.at_level(logging.ERROR, "ikepriv.parent"):
        view = view_of(db)
    assert sorted(view.phase1) == [2]
    assert f"field '{column}'" in caplog.text and words in caplog.text
