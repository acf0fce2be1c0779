"""Exercise, before the sandbox, the code paths that import lazily on first use.

Under the seccomp filter an `import` that is not already in `sys.modules` is fatal: it
stats and opens files, and the filter answers with SIGSYS, so the whole negotiator dies
the first time a peer proposes such an algorithm. The cryptography library defers some
imports to the first call (X25519 keys load the OpenSSL backend module inside
`from_private_bytes` / `from_public_bytes`), so importing the modules is not enough: each
library-held DH group gets one key pair and one exchange here, with the process still
free to import. MODP groups run on our own extension, already loaded, and are left out:
their precomputation is memory only, which the filter allows.

The certificate path (core/certificates.py, crypto/signatures.py) gets the same treatment:
one small CA, end entity and CRL made here, parsed, validated, checked for revocation and
ID matching, and an RSA and an ECDSA signature verified, so whatever the library loads on
first use is loaded before the filter.
"""

from __future__ import annotations

import datetime
import secrets

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ikepriv.child_negotiator.core import certificates
from ikepriv.child_negotiator.core.config_snapshot import Credentials
from ikepriv.crypto import dh, signatures
from ikepriv.crypto.groups import GROUPS, ModpGroup
from ikepriv.isakmp import IdPayload
from ikepriv.isakmp.constants import AuthMethod, IdType


def warm_up() -> tuple[int, ...]:
    """One generate / validate / shared round per non-MODP group; returns the group ids
    warmed (for the caller's tests). Raises whatever the library raises: a group that
    cannot work before the sandbox will not work inside it either."""
    done: list[int] = []
    for gid in GROUPS:
        if isinstance(dh.group(gid), ModpGroup):
            continue
        key = dh.generate(gid, secrets.token_bytes)
        dh.validate_public(gid, key.public)
        key.shared(key.public)
        key.wipe()
        done.append(int(gid))
    return tuple(done)


def _certificate(
    name: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey, ca: bool, now: datetime.datetime,
) -> x509.Certificate:  # fmt: skip
    usage = x509.KeyUsage(True, False, False, False, False, ca, ca, False, False)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(1 if ca else 2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), False
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("warm.up")]), False)
        .sign(signer, hashes.SHA256())
    )


def warm_up_certificates() -> bool:
    """Run the certificate path once (parse PEM and DER, validate, CRL, ID matching, RSA
    and ECDSA verification). True when the chain made here validated, as it must."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ee_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "warm-up CA")])
    ee_name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "warm-up")])
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, True, now)
    ee = _certificate(ee_name, ee_key, ca_name, ca_key, False, now)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_name)
        .last_update(now - datetime.timedelta(days=1))
        .next_update(now + datetime.timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    pem, der = serialization.Encoding.PEM, serialization.Encoding.DER
    creds = certificates.load_credentials(
        Credentials(
            own_cert=(ee.public_bytes(pem),),
            trust_anchors=(ca.public_bytes(der),),
            crls=(crl.public_bytes(pem), crl.public_bytes(der)),
        )
    )
    found = certificates.validate_peer(creds, [ee.public_bytes(der)], now.timestamp())
    certificates.validate_peer(creds, [b"\x30\x00"], now.timestamp())  # the refusal path
    if not isinstance(found, certificates.PeerCertificate):
        return False
    certificates.id_in_certificate(IdPayload(IdType.FQDN, 0, 0, b"warm.up"), found.leaf)
    certificates.asked_for_ours(creds, [b""])
    _ = (found.subject, found.issuer, found.public_key())
    digest = bytes(32)
    ecdsa = signatures.sign(AuthMethod.ECDSA_SHA256_P256, ee_key, digest)
    signatures.verify(AuthMethod.ECDSA_SHA256_P256, ee_key.public_key(), digest, ecdsa)
    rsa_key = rsa.generate_private_key(65537, signatures.MIN_RSA_BITS)
    signed = signatures.sign(AuthMethod.RSA_SIGNATURES, rsa_key, digest)
    signatures.verify(AuthMethod.RSA_SIGNATURES, rsa_key.public_key(), digest, signed)
    return True
