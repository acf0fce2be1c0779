"""Checking the SIG payloads of signature-authenticated phase 1 exchanges (RFC 2409 5.1,
methods 3, 9, 10, 11; RFC 4754) in a capture, and saying which check failed.

For each SIG (SIG_I of the initiator, SIG_R of the responder) four checks, each with its own
outcome so an operator reads exactly what is wrong:

* certificate: the signer's. A --cert certificate that names the signer's ID payload;
  else the first X.509 CERT payload of the signer's message; else the only --cert
  certificate, when exactly one was given (its ID check then says it names someone else).
* signature: the SIG verifies with that certificate's key over HASH_I/HASH_R, which needs
  SKEYID = prf(Ni_b | Nr_b, g^xy), so the DH secret (the caller says what is missing).
* ID: the signer's ID payload is one its certificate names (subject DN or subjectAltName).
* chain (only with --ca): the certificate, with the intermediates the capture and --cert
  hold, leads to a --ca anchor at the time the message was captured.

The product judges, never a second implementation: ikepriv.crypto.signatures verifies the
SIG bytes, and core/certificates (pure functions on bytes: no state machine, no I/O)
validates the chain and matches the ID, exactly as the negotiator does. Capture bytes are
hostile: CERT payloads are bounded by certificates.peer_cert_payloads, every library call on
them ends in an outcome, and texts taken from the capture are bounded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ikepriv.child_negotiator.core import certificates
from ikepriv.child_negotiator.core.certificates import (
    PARSE_ERRORS,
    CredentialError,
    ParsedCredentials,
    PeerCertificate,
    Refused,
)
from ikepriv.cli.listing import format_identity
from ikepriv.crypto import signatures
from ikepriv.dump.keys import KeyInputError
from ikepriv.ipc.messages import Identity
from ikepriv.isakmp import IdPayload, Payload, SigPayload
from ikepriv.isakmp.constants import AuthMethod

MAX_GIVEN_CERTS: Final = 64  # certificates from all --cert files together
MAX_TEXT: Final = 400  # characters of one outcome's text (names come from the capture)

CERTIFICATE, SIGNATURE, ID, CHAIN = "certificate", "signature", "ID", "chain"


class CertificateInputError(KeyInputError):
    """A --cert or --ca file that cannot be used (a usage error, like a bad key file)."""


@dataclass(frozen=True, slots=True)
class GivenCertificate:
    cert: x509.Certificate
    der: bytes
    source: str  # the file it came from


@dataclass(frozen=True, slots=True)
class Trust:
    """What the operator gave for signatures: peer certificates (--cert) and trust
    anchors (--ca, loaded by the negotiator's own loader)."""

    given: tuple[GivenCertificate, ...] = ()
    anchors: ParsedCredentials | None = None

    @property
    def any(self) -> bool:
        return bool(self.given) or self.anchors is not None


Files = Sequence[tuple[str, bytes]]  # (name, contents)


def load_trust(cert_files: Files, ca_files: Files) -> Trust:
    """(name, contents) of each --cert and --ca file, PEM (one or more certificates) or DER."""
    given: list[GivenCertificate] = []
    for name, blob in cert_files:
        try:
            found = certificates.certificates_in(blob, name)
            ders = [c.public_bytes(serialization.Encoding.DER) for c in found]
        except (CredentialError, *PARSE_ERRORS) as exc:
            raise CertificateInputError(f"--cert {_bounded(str(exc))}") from None
        if any(_names(c) is None for c in found):
            raise CertificateInputError(f"--cert {name}: a subject or issuer does not parse")
        given += [GivenCertificate(c, der, name) for c, der in zip(found, ders, strict=True)]
        if len(given) > MAX_GIVEN_CERTS:
            raise CertificateInputError(f"--cert: more than {MAX_GIVEN_CERTS} certificates")
    anchors = None
    if ca_files:
        try:
            anchors = certificates.load_trust([blob for _, blob in ca_files], ())
        except CredentialError as exc:
            # the loader numbers the files; name them instead
            text = str(exc)
            for number, (name, _) in enumerate(ca_files, 1):
                text = text.replace(f"CA file {number}:", f"{name}:")
            raise CertificateInputError(f"--ca {_bounded(text)}") from None
    return Trust(tuple(given), anchors)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One check: passed (True), failed (False) or not possible (None: `text` says what is
    missing)."""

    check: str
    ok: bool | None
    text: str


@dataclass(slots=True)
class SignatureReport:
    """The checks of one SIG payload, for the record and its JSON and text forms."""

    label: str  # SIG_I or SIG_R
    method: AuthMethod
    subject: str | None = None
    issuer: str | None = None
    source: str | None = None  # "the capture" or the --cert file
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Signed:
    """A SIG payload and what judging it needs. `auth_hash` is HASH_I/HASH_R as the signer
    must have signed it, None when SKEYID is unknown (`missing` says why)."""

    label: str
    method: AuthMethod
    ident: IdPayload | None
    payloads: tuple[Payload, ...]
    auth_hash: bytes | None
    missing: str
    when: float  # capture time of the message (unix seconds)


def _bounded(text: str) -> str:
    """One printable line of at most MAX_TEXT characters (library messages and names from
    the capture are not trusted to be either)."""
    text = "".join(c if c.isprintable() else "?" for c in text[: MAX_TEXT + 1])
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def id_text(ident: IdPayload) -> str:
    """An ID as operators write it (DN as text, names, addresses), bounded."""
    return _bounded(f"{ident.id_type.name} {format_identity(Identity(ident.id_type, ident.data))}")


@dataclass(frozen=True, slots=True)
class _Found:
    cert: PeerCertificate  # only the leaf: the chain is judged apart
    der: bytes
    source: str
    intermediates: tuple[bytes, ...]
    subject: str
    issuer: str


def _names(cert: x509.Certificate) -> tuple[str, str] | None:
    """Subject and issuer for display; None when they do not parse (the library parses
    names lazily, so a hostile certificate loads and fails only here)."""
    try:
        leaf = PeerCertificate((cert,), ())
        return leaf.subject, leaf.issuer
    except PARSE_ERRORS:
        return None


def _signer_certificate(signed: Signed, trust: Trust) -> _Found | Outcome:
    found = certificates.peer_cert_payloads(signed.payloads)
    if found is None:
        limits = f"{certificates.MAX_PEER_CERTS}, each at most {certificates.MAX_PEER_CERT_BYTES}"
        return Outcome(CERTIFICATE, False, f"too many or too large CERT payloads ({limits} bytes)")
    sent, _ = found
    others = [g.der for g in trust.given]
    choice: tuple[x509.Certificate, bytes, str] | None = None
    if signed.ident is not None:
        ident = signed.ident
        named = next(
            (g for g in trust.given if certificates.id_in_certificate(ident, g.cert)), None
        )
        if named is not None:
            choice = (named.cert, named.der, named.source)
    if choice is None and sent:
        try:
            choice = (x509.load_der_x509_certificate(sent[0]), sent[0], "the capture")
        except PARSE_ERRORS as exc:
            text = _bounded(f"the signer's CERT payload does not parse ({exc})")
            return Outcome(CERTIFICATE, False, text)
    if choice is None and len(trust.given) == 1:
        only = trust.given[0]
        choice = (only.cert, only.der, only.source)
    if choice is None:
        why = "no --cert certificate names its ID" if trust.given else "no --cert given"
        return Outcome(CERTIFICATE, False, f"no certificate for the signer (no CERT payload "
                       f"in its message, {why})")  # fmt: skip
    cert, der, source = choice
    names = _names(cert)
    if names is None:
        return Outcome(CERTIFICATE, False, f"the signer's certificate (from {source}) has a "
                       "subject or issuer that does not parse")  # fmt: skip
    pool = [d for d in (*sent, *others) if d != der]
    intermediates = tuple(dict.fromkeys(pool))[: certificates.MAX_PEER_CERTS - 1]
    return _Found(PeerCertificate((cert,), ()), der, source, intermediates, *names)


def _signature(signed: Signed, found: _Found) -> Outcome:
    sigs = [p for p in signed.payloads if isinstance(p, SigPayload)]
    if len(sigs) != 1:
        return Outcome(SIGNATURE, False, f"signature missing: {len(sigs)} SIG payloads")
    method = signed.method
    key = found.cert.public_key()
    problem = "unsupported key type" if key is None else signatures.key_problem(method, key)
    if problem is not None:
        return Outcome(SIGNATURE, False, f"certificate key does not fit {method.name}: {problem}")
    assert key is not None
    if signed.auth_hash is None:
        return Outcome(SIGNATURE, None, f"signature cannot be checked: {signed.missing}")
    if not signatures.verify(method, key, signed.auth_hash, sigs[0].data):
        return Outcome(SIGNATURE, False, "signature does not verify with the certificate's key "
                       f"({method.name}, {found.subject})")  # fmt: skip
    return Outcome(SIGNATURE, True, f"signature ok ({method.name})")


def _identity(signed: Signed, found: _Found) -> Outcome:
    if signed.ident is None:
        return Outcome(ID, None, "ID cannot be checked: the signer's ID payload was not seen")
    if certificates.id_in_certificate(signed.ident, found.cert.leaf):
        return Outcome(ID, True, "ID in certificate")
    return Outcome(ID, False, f"ID not in certificate ({id_text(signed.ident)}; certificate "
                   f"{found.subject})")  # fmt: skip


def _chain(signed: Signed, found: _Found, anchors: ParsedCredentials) -> Outcome:
    try:
        checked = certificates.validate_peer(
            anchors, (found.der, *found.intermediates), signed.when
        )
    except (OverflowError, ValueError, OSError):  # a capture time no calendar holds
        return Outcome(CHAIN, False, f"chain: capture time {signed.when} out of range")
    if isinstance(checked, Refused):
        return Outcome(CHAIN, False, _bounded(f"chain: {checked.reason}"))
    anchor = certificates.display(checked.chain[-1].subject)
    return Outcome(CHAIN, True, f"chain ok (to {anchor})")


def check_signed(signed: Signed, trust: Trust) -> SignatureReport:
    """Every check of one SIG payload, in the order: certificate, signature, ID, chain."""
    report = SignatureReport(signed.label, signed.method)
    found = _signer_certificate(signed, trust)
    if isinstance(found, Outcome):
        report.outcomes.append(Outcome(found.check, found.ok, _bounded(found.text)))
        return report
    report.subject, report.issuer, report.source = found.subject, found.issuer, found.source
    report.outcomes.append(Outcome(CERTIFICATE, True, f"certificate {found.subject}"))
    report.outcomes.append(_signature(signed, found))
    report.outcomes.append(_identity(signed, found))
    if trust.anchors is not None:
        report.outcomes.append(_chain(signed, found, trust.anchors))
    report.outcomes = [Outcome(o.check, o.ok, _bounded(o.text)) for o in report.outcomes]
    return report
