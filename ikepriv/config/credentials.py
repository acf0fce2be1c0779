"""The credential files a signature definition names: read safely, checked, parsed by root.

One module for the three readers, so they refuse the same files with the same words:
- `ikedb -p` checks everything (`check_phase1`): the files exist, are regular, small, have
  safe modes, parse, the key matches the certificate and serves the stored method;
- the daemon's parent reads the cert/ca/crl bytes (`read_credential`) to hand them to the
  child unparsed (certificates are untrusted input, parsed only in the sandbox), and loads
  the private key (`load_private_key`), which never leaves it;
- the loader picks the ECDSA method by the key's curve (`load_private_key` + `method_for_key`).

Safe modes: a private key is like the database (owned by root, no group or other bits); a
certificate, CA or CRL is public but must not be writable by group or others, or anyone
could make us trust a CA of theirs. Files are opened with O_NOFOLLOW|O_NONBLOCK and checked
with fstat on the open descriptor, so a symlink swap or a FIFO cannot get past the checks.
"""

from __future__ import annotations

import os
import stat
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ikepriv.config.model import MAX_CREDENTIAL_BYTES, Phase1Definition
from ikepriv.crypto.signatures import KeyMismatch, PrivateKey, key_problem, method_for_key
from ikepriv.isakmp.constants import AuthMethod

__all__ = [
    "CredentialError",
    "check_phase1",
    "load_private_key",
    "read_credential",
]

_SECRET_BITS: Final = 0o077  # a private key: nothing for group or others
_WRITE_BITS: Final = 0o022  # a public file: nobody but its owner may change it
_PEM_MARK: Final = b"-----BEGIN "


class CredentialError(ValueError):
    """A credential file cannot be used; `field` names the definition field (cert, key, ca,
    crl) that points at it, so ikedb can report FILE:LINE and the daemon a log line."""

    def __init__(self, field: str, path: str, message: str) -> None:
        self.field = field
        self.path = path
        self.message = f"{path}: {message}"
        super().__init__(f"field '{field}': {self.message}")


def _read(field: str, path: str, *, secret: bool) -> bytearray:
    """The bytes of a regular file with safe modes, at most MAX_CREDENTIAL_BYTES."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        reason = "is a symbolic link" if os.path.islink(path) else (exc.strerror or str(exc))
        raise CredentialError(field, path, reason) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CredentialError(field, path, "not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if secret:
            if st.st_uid != 0 and os.geteuid() == 0:
                raise CredentialError(
                    field, path, f"owned by uid {st.st_uid}, not root; chown root {path}"
                )
            if mode & _SECRET_BITS:
                raise CredentialError(
                    field, path, f"group or others have access (mode {mode:04o}); it is a "
                    f"private key: chmod 600 {path}",
                )  # fmt: skip
        elif mode & _WRITE_BITS:
            raise CredentialError(
                field, path, f"writable by group or others (mode {mode:04o}): chmod go-w {path}"
            )
        if st.st_size > MAX_CREDENTIAL_BYTES:
            raise CredentialError(field, path, f"larger than {MAX_CREDENTIAL_BYTES} bytes")
        data = bytearray()
        while len(data) <= MAX_CREDENTIAL_BYTES:
            chunk = os.read(fd, MAX_CREDENTIAL_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise CredentialError(field, path, exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CREDENTIAL_BYTES:  # grew after fstat
        _wipe(data)
        raise CredentialError(field, path, f"larger than {MAX_CREDENTIAL_BYTES} bytes")
    if not data:
        raise CredentialError(field, path, "is empty")
    return data


def _wipe(buf: bytearray) -> None:
    """Overwrite key bytes we own; copies inside `cryptography` are beyond our reach."""
    buf[:] = bytes(len(buf))


def read_credential(field: str, path: str) -> bytes:
    """A certificate, CA or CRL file as raw bytes, for the child (the parent does not parse
    it). Safe-mode and size checks as for ikedb; CredentialError otherwise."""
    return bytes(_read(field, path, secret=False))


def load_private_key(path: str, field: str = "key") -> PrivateKey:
    """Our private key: a root-only regular file, PEM (PKCS#8 or traditional) or DER,
    unencrypted, RSA or EC. The file's bytes are wiped after parsing."""
    data = _read(field, path, secret=True)
    try:
        raw = bytes(data)  # the library wants bytes; this copy is short-lived
        try:
            if _PEM_MARK in raw:
                key = serialization.load_pem_private_key(raw, password=None)
            else:
                key = serialization.load_der_private_key(raw, password=None)
        except TypeError:
            raise CredentialError(field, path, "is encrypted; give an unencrypted key") from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise CredentialError(field, path, f"is not a private key ({exc})") from None
        del raw
    finally:
        _wipe(data)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CredentialError(field, path, "is neither an RSA nor an EC key")
    return key


def key_method(path: str, field: str = "key") -> AuthMethod:
    """The one signature method our key can serve (ECDSA: by its curve)."""
    try:
        return method_for_key(load_private_key(path, field))
    except KeyMismatch as exc:
        raise CredentialError(field, path, str(exc)) from None


def _certificates(field: str, path: str, data: bytes) -> list[x509.Certificate]:
    try:
        if _PEM_MARK in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CredentialError(field, path, f"is not a certificate (PEM or DER): {exc}") from None
    if not certs:
        raise CredentialError(field, path, "holds no certificate")
    return certs


def _crl(field: str, path: str, data: bytes) -> None:
    try:
        if _PEM_MARK in data:
            x509.load_pem_x509_crl(data)
        else:
            x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise CredentialError(field, path, f"is not a CRL (PEM or DER): {exc}") from None


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    """SubjectPublicKeyInfo DER: the one comparable form of any public key."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_phase1(d: Phase1Definition) -> list[CredentialError]:
    """Every problem of a signature definition's files (empty for a PSK definition): what
    `ikedb -p` reports, so a definition it stores loads in the daemon too."""
    if not d.uses_signatures or d.cert is None or d.key is None:
        return []
    problems: list[CredentialError] = []
    key: PrivateKey | None = None
    try:
        key = load_private_key(d.key)
        problem = key_problem(d.auth, key)
        if problem is not None:
            raise CredentialError("key", d.key, f"{problem} (auth is {d.auth.name})")
    except CredentialError as exc:
        problems.append(exc)
    try:
        chain = _certificates("cert", d.cert, read_credential("cert", d.cert))
        if key is not None and _spki(chain[0].public_key()) != _spki(key.public_key()):
            raise CredentialError(
                "cert", d.cert, f"its (first) certificate does not match the key {d.key}"
            )
    except CredentialError as exc:
        problems.append(exc)
    for path in d.ca:
        try:
            _certificates("ca", path, read_credential("ca", path))
        except CredentialError as exc:
            problems.append(exc)
    for path in d.crl:
        try:
            _crl("crl", path, read_credential("crl", path))
        except CredentialError as exc:
            problems.append(exc)
    return problems
