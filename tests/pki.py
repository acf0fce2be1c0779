"""A small test PKI made with `cryptography` at test time: CAs, intermediates, end entities,
CRLs, and the files a definition points at. The one place tests get certificates from.

Everything is deterministic enough for assertions (subjects, SANs, validity windows are the
caller's) and real enough for strongSwan and libreswan (X.509 v3, SKI/AKI, SHA-256).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

NOW = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
DAY = datetime.timedelta(days=1)

_CURVES: dict[str, ec.EllipticCurve] = {
    "p256": ec.SECP256R1(),
    "p384": ec.SECP384R1(),
    "p521": ec.SECP521R1(),
}
_KEY_CACHE: dict[str, list[PrivateKey]] = {}


def new_key(kind: str = "rsa2048") -> PrivateKey:
    """A fresh key: "rsa2048", "rsa4096", "rsa1024" (too short, for refusals), "p256",
    "p384", "p521"."""
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    return ec.generate_private_key(_CURVES[kind])


def key(kind: str = "rsa2048", slot: int = 0) -> PrivateKey:
    """A key shared within the test session (RSA-4096 generation is slow): same kind and
    slot give the same key."""
    keys = _KEY_CACHE.setdefault(kind, [])
    while len(keys) <= slot:
        keys.append(new_key(kind))
    return keys[slot]


def name(text: str) -> x509.Name:
    """A DN from "C=CH, O=ikepriv, CN=gw1" (RFC 4514-ish, in the order written)."""
    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME,
            "L": NameOID.LOCALITY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME}  # fmt: skip
    parts = [p.strip().split("=", 1) for p in text.split(",")]
    return x509.Name([x509.NameAttribute(oids[k.strip()], v.strip()) for k, v in parts])


def _san(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        if "@" in n:
            out.append(x509.RFC822Name(n))
        else:
            try:
                out.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                out.append(x509.DNSName(n))
    return out


@dataclass
class Issued:
    """A certificate with its key (and the issuer that signed it, None for a root)."""

    cert: x509.Certificate
    key: PrivateKey
    issuer: Issued | None = None

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def key_pem(self) -> bytes:
        return private_pem(self.key)


def private_pem(k: PrivateKey) -> bytes:
    """A key file's contents: unencrypted PKCS#8 PEM."""
    return k.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _build(
    subject: x509.Name,
    public_key: PrivateKey,
    issuer: Issued | None,
    *,
    ca: bool,
    path_length: int | None,
    sans: Sequence[str],
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    key_usage: str | None,
    serial: int | None,
) -> x509.Certificate:
    signer = issuer.key if issuer is not None else public_key
    issuer_name = issuer.cert.subject if issuer is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key.public_key())
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key.public_key()), critical=False
        )
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    usage = key_usage if key_usage is not None else ("ca" if ca else "sign")
    if usage != "none":
        flags = dict.fromkeys(
            ("digital_signature content_commitment key_encipherment data_encipherment "
             "key_agreement key_cert_sign crl_sign encipher_only decipher_only").split(),
            False,
        )  # fmt: skip
        if usage == "ca":
            flags.update(key_cert_sign=True, crl_sign=True, digital_signature=True)
        elif usage == "sign":
            flags.update(digital_signature=True)
        elif usage == "encipher":  # a wrong key usage for IKE signatures
            flags.update(key_encipherment=True)
        builder = builder.add_extension(x509.KeyUsage(**flags), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_san(sans)), critical=False)
    return builder.sign(signer, hashes.SHA256())


def make_ca(
    subject: str = "C=CH, O=ikepriv test, CN=Test Root CA",
    key_kind: str = "rsa2048",
    *,
    slot: int = 0,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> Issued:
    k = key(key_kind, slot)
    cert = _build(name(subject), k, None, ca=True, path_length=None, sans=(),
                  not_before=not_before or NOW - DAY, not_after=not_after or NOW + 3650 * DAY,
                  key_usage="ca", serial=None)  # fmt: skip
    return Issued(cert, k, None)


def make_intermediate(
    issuer: Issued,
    subject: str = "C=CH, O=ikepriv test, CN=Test Intermediate CA",
    key_kind: str = "rsa2048",
    *,
    slot: int = 1,
) -> Issued:
    k = key(key_kind, slot)
    cert = _build(name(subject), k, issuer, ca=True, path_length=0, sans=(),
                  not_before=NOW - DAY, not_after=NOW + 1825 * DAY, key_usage="ca",
                  serial=None)  # fmt: skip
    return Issued(cert, k, issuer)


def make_end_entity(
    issuer: Issued,
    subject: str,
    sans: Sequence[str] = (),
    key_kind: str = "rsa2048",
    *,
    slot: int = 2,
    fresh_key: bool = False,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
    key_usage: str = "sign",
    serial: int | None = None,
) -> Issued:
    """key_usage: "sign" (digitalSignature), "encipher" (keyEncipherment only: wrong for
    IKE), "none" (no extension)."""
    k = new_key(key_kind) if fresh_key else key(key_kind, slot)
    cert = _build(name(subject), k, issuer, ca=False, path_length=None, sans=sans,
                  not_before=not_before or NOW - DAY, not_after=not_after or NOW + 365 * DAY,
                  key_usage=key_usage, serial=serial)  # fmt: skip
    return Issued(cert, k, issuer)


def make_crl(
    issuer: Issued,
    revoked: Sequence[Issued] = (),
    *,
    last_update: datetime.datetime | None = None,
    next_update: datetime.datetime | None = None,
) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.cert.subject)
        .last_update(last_update or NOW - DAY)
        .next_update(next_update or NOW + 7 * DAY)
    )
    for r in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(r.cert.serial_number)
            .revocation_date(NOW - DAY)
            .build()
        )
    return builder.sign(issuer.key, hashes.SHA256())


def write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write a credential file with an explicit mode (keys: 0o600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def chain_pem(entity: Issued, *intermediates: Issued) -> bytes:
    """Our certificate file: the end entity first, then intermediates."""
    return entity.pem + b"".join(i.pem for i in intermediates)


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


@dataclass
class CredentialFiles:
    """The files of one signature definition, written with the modes ikedb accepts."""

    cert: Path
    key: Path
    ca: Path
    crl: Path | None = None

    def toml(self) -> str:
        """The definition keys that name these files."""
        crl = f'crl = ["{self.crl}"]\n' if self.crl is not None else ""
        return f'cert = "{self.cert}"\nkey = "{self.key}"\nca = ["{self.ca}"]\n' + crl


def write_credentials(
    directory: Path,
    entity: Issued,
    ca: Issued,
    *intermediates: Issued,
    crl: x509.CertificateRevocationList | None = None,
    der: bool = False,
) -> CredentialFiles:
    """Our chain (end entity first), our key (0600), the trust anchor and a CRL, as files."""
    if der:
        chain = entity.der
        key_bytes = entity.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    else:
        chain, key_bytes = chain_pem(entity, *intermediates), entity.key_pem()
    return CredentialFiles(
        cert=write(directory / "cert.pem", chain),
        key=write(directory / "key.pem", key_bytes, 0o600),
        ca=write(directory / "ca.pem", ca.pem),
        crl=None if crl is None else write(directory / "crl.pem", crl_pem(crl)),
    )


def id_der(text: str) -> bytes:
    """The DER of a configured DN identity as ikepriv (and strongSwan and libreswan) send it:
    PrintableString where the value allows, unlike a certificate made by `cryptography`
    (UTF8String). Written independently of ikepriv's encoder."""
    from cryptography.x509.name import _ASN1Type

    return x509.Name(
        [x509.NameAttribute(a.oid, a.value, _type=_ASN1Type.PrintableString) for a in name(text)]
    ).public_bytes()
