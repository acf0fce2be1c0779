"""X.509 for signature authentication: a definition's credentials, a peer's chain, its ID.

One job, in three parts, all on bytes the sandbox already holds:

* `load_credentials`: the files the parent read for a definition (ConfigCredential blobs,
  PEM or DER, parsed only here, in the sandbox) -> our chain as DER for CERT payloads, the
  trust anchors (and their subject DERs for CR payloads), the CRLs, and a path validator
  bound to those anchors. A file that does not parse makes the definition unusable
  (CredentialError; the engine logs it and leaves the other definitions working).
* `validate_peer`: the peer's CERT payloads (hostile bytes: at most MAX_PEER_CERTS of at
  most MAX_PEER_CERT_BYTES each, X.509 signature encoding only) -> the validated chain,
  or the reason it is refused, in words an operator reads in syslog. Path building and
  checking is cryptography's (`x509.verification`, the WebPKI rules for CAs; for the end
  entity the WebPKI defaults without the EKU and SAN requirements, which are TLS rules,
  and with keyUsage, when present, required to allow digitalSignature). Revocation is
  ours, because the library has none: every non-anchor certificate of the built chain is
  looked up in a CRL of its issuer whose signature verifies with the issuer's key.
* `id_in_certificate`: whether the peer's phase 1 ID is one its certificate names
  (DN = subject, FQDN/USER_FQDN/address = a subjectAltName).

Time comes from the caller (the core's injected wall clock), so a run stays deterministic.
Nothing here recurses on input; every loop is bounded by the caps above or by the
definition's own file counts (ipc MAX_CREDENTIALS).
"""

from __future__ import annotations

import datetime
import ipaddress
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from ikepriv.child_negotiator.core.config_snapshot import Credentials
from ikepriv.child_negotiator.core.identities import phase1_id_matches
from ikepriv.ipc.messages import MAX_DN_TEXT, Identity
from ikepriv.isakmp import CertPayload, IdPayload, Payload
from ikepriv.isakmp.constants import IdType
from ikepriv.isakmp.dn import parse_dn

MAX_PEER_CERTS: Final = 8  # CERT payloads we look at in one message (more: refused)
MAX_PEER_CERT_BYTES: Final = 16 * 1024  # one certificate, DER
MAX_CHAIN_DEPTH: Final = 8  # intermediates the path builder may use
X509_SIGNATURE: Final = 4  # RFC 2408 3.9 certificate encoding "X.509 Certificate - Signature"
MAX_OWN_CERTS: Final = 8  # our chain file: end entity and intermediates
_PEM_MARK: Final = b"-----BEGIN"

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

# What cryptography raises for bytes that are no usable certificate or CRL is an open set:
# ValueError for malformed DER/PEM, InvalidVersion (no ValueError) for an unknown X.509
# version, TypeError from inside the verifier for a name attribute of an impossible type,
# UnsupportedAlgorithm for keys it does not know (fuzz/fuzz_certificates.py found the first
# three within minutes). Hostile input must end in a refusal, never in an exception that
# reaches the engine, so every library call on it catches all of Exception (never
# BaseException: KeyboardInterrupt, SystemExit and MemoryError still end the process).
PARSE_ERRORS: Final = (Exception,)


class CredentialError(ValueError):
    """A definition's certificate, CA or CRL file that cannot be used (the text says why)."""


# ------------------------------------------------------------------------------ ours


@dataclass(frozen=True, slots=True)
class ParsedCredentials:
    """What the core needs of one signature definition's files."""

    chain_der: tuple[bytes, ...]  # ours, end entity first: the CERT payloads we send
    chain_issuers: frozenset[bytes]  # issuer DNs (DER) of our chain: a CR naming one asks
    anchors: tuple[x509.Certificate, ...]
    anchor_dns: tuple[bytes, ...]  # subject DER of each anchor: the CR payloads we send
    crls: tuple[x509.CertificateRevocationList, ...]
    verifier_store: Store


def certificates_in(blob: bytes, what: str) -> list[x509.Certificate]:
    """Every certificate of a PEM file (in order), or the one of a DER file."""
    try:
        if _PEM_MARK in blob:
            return list(x509.load_pem_x509_certificates(blob))
        return [x509.load_der_x509_certificate(blob)]
    except PARSE_ERRORS as exc:
        raise CredentialError(f"{what}: not a PEM or DER certificate ({exc})") from None


def _crl(blob: bytes, what: str) -> x509.CertificateRevocationList:
    try:
        if _PEM_MARK in blob:
            return x509.load_pem_x509_crl(blob)
        return x509.load_der_x509_crl(blob)
    except PARSE_ERRORS as exc:
        raise CredentialError(f"{what}: not a PEM or DER CRL ({exc})") from None


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def load_credentials(files: Credentials) -> ParsedCredentials:
    """Parse one definition's files (the snapshot keeps them raw, each kind in `index`
    order). Raises CredentialError when a file does not parse, our chain is empty or too
    long, or no CA is given."""
    own: list[x509.Certificate] = []
    for i, blob in enumerate(files.own_cert):
        own += certificates_in(blob, f"certificate file {i + 1}")
    if not own:
        raise CredentialError("no certificate of our own")
    if len(own) > MAX_OWN_CERTS:
        raise CredentialError(f"our chain has {len(own)} certificates (at most {MAX_OWN_CERTS})")
    trust = load_trust(files.trust_anchors, files.crls)
    try:
        return replace(
            trust,
            chain_der=tuple(_der(c) for c in own),
            chain_issuers=frozenset(c.issuer.public_bytes() for c in own),
        )
    except PARSE_ERRORS as exc:
        raise CredentialError(f"a certificate or CRL does not parse ({exc})") from None


def load_trust(anchor_files: Sequence[bytes], crl_files: Sequence[bytes]) -> ParsedCredentials:
    """Trust anchors and CRLs alone: all `validate_peer` needs to judge a chain (the
    definition's `ca` and `crl` files, or ikedump's --ca), with no chain of our own.
    Raises CredentialError when a file does not parse or no CA is given."""
    anchors: list[x509.Certificate] = []
    for i, blob in enumerate(anchor_files):
        anchors += certificates_in(blob, f"CA file {i + 1}")
    if not anchors:
        raise CredentialError("no trust anchor (ca)")
    crls = tuple(_crl(blob, f"CRL file {i + 1}") for i, blob in enumerate(crl_files))
    try:
        # names and dates parse lazily: read every one used later now, so a bad file
        # fails here, once, and not during a negotiation
        for crl in crls:
            _ = (crl.issuer, crl.next_update_utc, len(crl))
        return ParsedCredentials(
            chain_der=(),
            chain_issuers=frozenset(),
            anchors=tuple(anchors),
            anchor_dns=tuple(dict.fromkeys(a.subject.public_bytes() for a in anchors)),
            crls=crls,
            verifier_store=Store(anchors),
        )
    except PARSE_ERRORS as exc:
        raise CredentialError(f"a certificate or CRL does not parse ({exc})") from None


def own_certificate(creds: ParsedCredentials) -> x509.Certificate:
    """Our end-entity certificate (the first of our chain)."""
    return x509.load_der_x509_certificate(creds.chain_der[0])


def asked_for_ours(creds: ParsedCredentials, authorities: Iterable[bytes]) -> bool:
    """Whether CR payloads ask for our chain: an empty CR asks for any, else one naming an
    issuer of our chain (strongSwan and libreswan name the CA they trust)."""
    return any(not a or a in creds.chain_issuers for a in authorities)


# ------------------------------------------------------------------------------ the peer's


def _key_usage_allows_signing(
    policy: object, cert: x509.Certificate, ext: x509.KeyUsage | None
) -> None:
    """keyUsage, when present, must allow digitalSignature (IKE signs with the key)."""
    if ext is not None and not ext.digital_signature:
        raise ValueError("keyUsage does not allow digitalSignature")


# The end entity: WebPKI defaults (basicConstraints, validity, algorithms...) but IKE needs
# no EKU (RFC 4945 5.1.3.12: none required) and may name itself by DN alone (no SAN).
_EE_POLICY: Final = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _key_usage_allows_signing)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
)
_CA_POLICY: Final = ExtensionPolicy.webpki_defaults_ca()


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """A validated peer chain: the end entity first, the trust anchor last."""

    chain: tuple[x509.Certificate, ...]
    warnings: tuple[str, ...]  # stale CRLs that did not list the chain

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def subject(self) -> str:
        return display(self.leaf.subject)

    @property
    def issuer(self) -> str:
        return display(self.leaf.issuer)

    def public_key(self) -> PublicKey | None:
        """The end entity's key, if it is a kind IKE signs with."""
        try:
            key = self.leaf.public_key()
        except PARSE_ERRORS:
            return None
        return key if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) else None


def display(dn: x509.Name) -> str:
    """A DN for listings and logs: RFC 4514, control characters as '?', at most
    MAX_DN_TEXT bytes of UTF-8 (a certificate is the peer's text: bounded, printable)."""
    text = "".join(c if c.isprintable() else "?" for c in dn.rfc4514_string())
    raw = text.encode("utf-8")[:MAX_DN_TEXT]
    return raw.decode("utf-8", errors="ignore")


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a peer chain is not accepted (for syslog, with the tunnel name)."""

    reason: str


def peer_cert_payloads(payloads: Iterable[Payload]) -> tuple[list[bytes], int] | None:
    """The X.509 certificates among a message's CERT payloads, in order, and how many CERT
    payloads of other encodings were ignored; None when there are too many or one is too
    large (the message is refused whatever it says)."""
    certs: list[bytes] = []
    ignored = 0
    count = 0
    for p in payloads:
        if not isinstance(p, CertPayload):
            continue
        count += 1
        if count > MAX_PEER_CERTS or len(p.data) > MAX_PEER_CERT_BYTES:
            return None
        if p.encoding == X509_SIGNATURE and p.data:
            certs.append(p.data)
        else:
            ignored += 1
    return certs, ignored


def _verifier(creds: ParsedCredentials, when: datetime.datetime) -> ClientVerifier:
    return (
        PolicyBuilder()
        .store(creds.verifier_store)
        .time(when)
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )


# What the library's messages mean to an operator, first match wins.
_REASONS: Final = (
    ("expired", "certificate expired"),
    ("not yet valid", "certificate not yet valid"),
    ("candidates exhausted", "no path to a trusted CA (unknown CA)"),
    ("digitalSignature", "keyUsage does not allow digitalSignature"),
)


def _reason(error: str) -> str:
    low = error.lower()
    for needle, reason in _REASONS:
        if needle.lower() in low:
            return f"{reason}: {error}"
    return f"certificate refused: {error}"


def _validity_reason(leaf: x509.Certificate, when: datetime.datetime) -> str | None:
    """The library says 'candidates exhausted' for a leaf outside its validity; the
    operator wants to read 'expired'."""
    if when > leaf.not_valid_after_utc:
        return f"certificate expired (not after {leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z)"
    if when < leaf.not_valid_before_utc:
        return (
            f"certificate not yet valid (not before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z)"
        )
    return None


def validate_peer(
    creds: ParsedCredentials, chain_der: Sequence[bytes], wall_time: float
) -> PeerCertificate | Refused:
    """Validate the peer's chain (end entity first, then whatever intermediates it sent)
    against the definition's trust anchors at `wall_time` (unix seconds), then revocation."""
    if not chain_der:
        return Refused("no certificate from the peer")
    if len(chain_der) > MAX_PEER_CERTS:
        return Refused(f"{len(chain_der)} certificates (at most {MAX_PEER_CERTS})")
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain_der]
    except PARSE_ERRORS as exc:
        return Refused(f"certificate does not parse ({exc})")
    when = datetime.datetime.fromtimestamp(int(wall_time), datetime.UTC)
    leaf = certs[0]
    try:
        verified = _verifier(creds, when).verify(leaf, certs[1:])
    except VerificationError as exc:
        early = _validity_reason(leaf, when)
        return Refused(early if early is not None else _reason(str(exc)))
    except PARSE_ERRORS as exc:  # an extension or key the library could not read
        return Refused(f"certificate does not parse ({exc})")
    chain = tuple(verified.chain)
    found = _revocation(creds, chain, when)
    if isinstance(found, Refused):
        return found
    return PeerCertificate(chain, found)


def _revocation(
    creds: ParsedCredentials, chain: Sequence[x509.Certificate], when: datetime.datetime
) -> Refused | tuple[str, ...]:
    """Each certificate below the anchor against the CRLs of its issuer (whose signature
    verifies with the issuer's key). Listed: refused. A stale CRL (nextUpdate passed)
    still revokes what it lists; one that does not list the certificate lets it pass with
    a warning (strongSwan's strictcrlpolicy=no). No CRL for an issuer: accepted."""
    warnings: list[str] = []
    for cert, issuer in itertools.pairwise(chain):
        for crl in creds.crls:
            if crl.issuer != cert.issuer or not _crl_signed_by(crl, issuer):
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                return Refused(
                    f"certificate revoked ({display(cert.subject)}, serial {cert.serial_number:x})"
                )
            next_update = crl.next_update_utc
            if next_update is not None and next_update < when:
                warnings.append(
                    f"CRL of {display(crl.issuer)} is stale (next update "
                    f"{next_update:%Y-%m-%d %H:%M:%S}Z); {display(cert.subject)} "
                    "accepted as not listed"
                )
    return tuple(warnings)


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        return False
    try:
        return crl.is_signature_valid(key)
    except PARSE_ERRORS:
        return False


# ------------------------------------------------------------------------------ identities


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, *PARSE_ERRORS):
        return None


_Matcher = Callable[[x509.Certificate, bytes], bool]


def _dn_in(cert: x509.Certificate, data: bytes) -> bool:
    # as Names (types and values), not bytes: strongSwan sends the DN of its configuration,
    # with other string types than the certificate's
    name = parse_dn(data)
    return name is not None and name == cert.subject


def _text_in(kind: type[x509.DNSName] | type[x509.RFC822Name]) -> _Matcher:
    def match(cert: x509.Certificate, data: bytes) -> bool:
        san = _san(cert)
        if san is None:
            return False
        try:
            wanted = data.decode("ascii").lower()
        except UnicodeDecodeError:
            return False
        return any(name.lower() == wanted for name in san.get_values_for_type(kind))

    return match


def _address_in(cert: x509.Certificate, data: bytes) -> bool:
    san = _san(cert)
    if san is None or len(data) not in (4, 16):
        return False
    wanted = ipaddress.ip_address(data)
    return any(a == wanted for a in san.get_values_for_type(x509.IPAddress))


_ID_MATCHERS: Final[Mapping[IdType, _Matcher]] = {
    IdType.DER_ASN1_DN: _dn_in,
    IdType.FQDN: _text_in(x509.DNSName),
    IdType.USER_FQDN: _text_in(x509.RFC822Name),
    IdType.IPV4_ADDR: _address_in,
    IdType.IPV6_ADDR: _address_in,
}


def id_in_certificate(idp: IdPayload, cert: x509.Certificate) -> bool:
    """Whether the peer's phase 1 ID is one its certificate names."""
    matcher = _ID_MATCHERS.get(idp.id_type)
    try:
        return matcher is not None and matcher(cert, idp.data)
    except PARSE_ERRORS:  # a subject or SAN the library cannot read names nobody
        return False


def identity_matches(expected: Identity | None, received: IdPayload) -> bool:
    """The definition's remote_id against the peer's ID, as phase1_id_matches does, but a
    DN compared as a Name: the peer's encoding of the same DN may differ from ours."""
    if (
        expected is None
        or expected.id_type is not IdType.DER_ASN1_DN
        or received.id_type is not IdType.DER_ASN1_DN
    ):
        return phase1_id_matches(expected, received)
    if not phase1_id_matches(None, received):  # protocol/port as RFC 2407 wants
        return False
    ours, theirs = parse_dn(expected.data), parse_dn(received.data)
    return ours is not None and ours == theirs


def identity_of(cert: x509.Certificate) -> Identity:
    """The ID_DER_ASN1_DN identity a certificate's subject makes (for tests and tools)."""
    return Identity(IdType.DER_ASN1_DN, cert.subject.public_bytes())
