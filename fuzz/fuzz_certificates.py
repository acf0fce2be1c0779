"""Atheris harness for the certificate path of the negotiator (core/certificates.py): the
peer's CERT payloads, our own credential files, and IDs matched against certificates.

The input is a list of blobs (each: one selector byte, a 2-byte length, the bytes). The
first blob's selector picks what they are:

* even: CERT payload data of a peer (the first MAX_PEER_CERTS + 1), validated against a
  fixed trust anchor with a fixed CRL, at a fixed time;
* odd: credential files of a definition (own chain, trust anchors, CRLs by selector).

Invariants, on every input: `peer_cert_payloads` refuses what is over the bounds and never
raises; `validate_peer` returns a PeerCertificate or Refused and raises nothing; a validated
chain ends at the anchor and its subject/issuer display texts are printable and bounded;
`load_credentials` raises CredentialError and nothing else; `id_in_certificate` returns a
bool for any ID payload (the last blob, as ID type byte + data).

    .venv/bin/python fuzz/make_cert_corpus.py    # (re)build the seed corpus
    .venv/bin/python fuzz/fuzz_certificates.py -max_total_time=20 fuzz/corpus/certificates
"""

from __future__ import annotations

import datetime
import struct
import sys
from collections.abc import Iterator

import atheris

with atheris.instrument_imports():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from ikepriv.child_negotiator.core import certificates
    from ikepriv.child_negotiator.core.certificates import (
        CredentialError,
        PeerCertificate,
        Refused,
    )
    from ikepriv.child_negotiator.core.config_snapshot import Credentials
    from ikepriv.ipc.messages import MAX_DN_TEXT, CredentialKind
    from ikepriv.isakmp import CertPayload, IdPayload, IsakmpError

START = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
WALL = (START + datetime.timedelta(days=30)).timestamp()
MAX_BLOBS = 12


def _key(secret: int) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(secret, ec.SECP256R1())  # deterministic: seeds stay valid


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])


Issuer = tuple[x509.Name, ec.EllipticCurvePrivateKey]


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: Issuer | None,
    *,
    ca: bool,
    serial: int,
    sans: tuple[x509.GeneralName, ...] = (),
) -> x509.Certificate:
    issuer_name, signer = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(START)
        .not_valid_after(START + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, ca, ca, False, False), critical=True
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), False)
    return builder.sign(signer, hashes.SHA256())


def fixture() -> tuple[list[x509.Certificate], x509.CertificateRevocationList]:
    """[end entity, intermediate, root] and a CRL of the intermediate (revoking serial 99)."""
    root_key, inter_key, ee_key = _key(1001), _key(1002), _key(1003)
    root = _cert("fuzz root", root_key, None, ca=True, serial=1)
    inter = _cert("fuzz inter", inter_key, (root.subject, root_key), ca=True, serial=2)
    ee = _cert("fuzz ee", ee_key, (inter.subject, inter_key), ca=False, serial=3,
               sans=(x509.DNSName("gw.example.org"), x509.RFC822Name("a@example.org")))  # fmt: skip
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(inter.subject)
        .last_update(START)
        .next_update(START + datetime.timedelta(days=7))  # stale at WALL: warnings path
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(99).revocation_date(START).build()
        )
        .sign(inter_key, hashes.SHA256())
    )
    return [ee, inter, root], crl


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


CHAIN, CRL = fixture()
CREDS = certificates.load_credentials(
    Credentials(
        own_cert=(_der(CHAIN[0]),),
        trust_anchors=(_der(CHAIN[2]),),
        crls=(CRL.public_bytes(serialization.Encoding.PEM),),
    )
)
KINDS = (CredentialKind.OWN_CERT, CredentialKind.TRUST_ANCHOR, CredentialKind.CRL)


def blobs(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(selector, bytes) items of the input, at most MAX_BLOBS."""
    offset = 0
    for _ in range(MAX_BLOBS):
        if offset + 3 > len(data):
            return
        selector, length = struct.unpack_from("!BH", data, offset)
        offset += 3
        yield selector, data[offset : offset + length]
        offset += length


def encode(items: list[tuple[int, bytes]]) -> bytes:
    """The input format, for the corpus builder."""
    return b"".join(struct.pack("!BH", s, len(b)) + b for s, b in items)


def _check_ids(cert: x509.Certificate, last: bytes) -> None:
    if not last:
        return
    try:
        idp = IdPayload(last[0], 0, 0, last[1:])
    except (IsakmpError, ValueError):
        return
    if not isinstance(certificates.id_in_certificate(idp, cert), bool):
        raise AssertionError("id_in_certificate returned a non-bool")


def _peer(items: list[tuple[int, bytes]]) -> None:
    payloads = [CertPayload(s % 16 if s % 3 == 0 else 4, b) for s, b in items]
    found = certificates.peer_cert_payloads(payloads)
    if found is None:
        if len(payloads) <= certificates.MAX_PEER_CERTS and all(
            len(b) <= certificates.MAX_PEER_CERT_BYTES for _, b in items
        ):
            raise AssertionError("payloads within bounds refused")
        return
    chain, _ = found
    result = certificates.validate_peer(CREDS, chain, WALL)
    if isinstance(result, Refused):
        if not result.reason:
            raise AssertionError("refusal without a reason")
        return
    if not isinstance(result, PeerCertificate):
        raise AssertionError(f"validate_peer returned {type(result).__name__}")
    if result.chain[-1] != CHAIN[2]:
        raise AssertionError("a validated chain that does not end at the anchor")
    for text in (result.subject, result.issuer):
        if not text.isprintable() or len(text.encode()) > MAX_DN_TEXT:
            raise AssertionError(f"display text {text!r} unbounded or not printable")
    _check_ids(result.leaf, items[-1][1])


def _credentials(items: list[tuple[int, bytes]]) -> None:
    files: dict[CredentialKind, list[bytes]] = {}
    for selector, blob in items:
        files.setdefault(KINDS[(selector >> 1) % 3], []).append(blob)
    try:
        creds = certificates.load_credentials(
            Credentials(
                tuple(files.get(CredentialKind.OWN_CERT, ())),
                tuple(files.get(CredentialKind.TRUST_ANCHOR, ())),
                tuple(files.get(CredentialKind.CRL, ())),
            )
        )
    except CredentialError:
        return
    if not creds.chain_der or not creds.anchors:
        raise AssertionError("credentials without a chain or an anchor")
    _check_ids(certificates.own_certificate(creds), items[-1][1])


def TestOneInput(data: bytes) -> None:
    items = list(blobs(data))
    if not items:
        return
    if items[0][0] % 2 == 0:
        _peer(items)
    else:
        _credentials(items)


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
