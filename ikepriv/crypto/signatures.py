"""Phase 1 signatures (RFC 2409 5.1, RFC 4754): what is signed and how, one table per method.

IKEv1 signs HASH_I/HASH_R, the prf output itself. RSA (method 3) uses PKCS#1 v1.5 type 1
padding *without* a DigestInfo (what strongSwan calls SIGN_RSA_EMSA_PKCS1_NULL and libreswan
and racoon do too). ECDSA (methods 9-11, RFC 4754) computes HASH_I/HASH_R with the HMAC of
the method's SHA-2 (keyed with SKEYID as usual) whatever prf the proposal negotiated
(`auth_prf`), signs that value as the digest (no second hash) and sends r | s, each as long
as the curve's order, not DER: strongSwan's keymat_v1 (prf_auth) and SIGN_ECDSA_WITH_NULL,
checked against charon 5.9 in tests/test_e2e_signatures_host.py.

The same functions serve the parent (signing: it holds the private keys) and the child
(verifying the peer's signature with the public key from its certificate), so both agree on
the encoding by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    NoDigestInfo,
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from ikepriv.crypto.prf import digests_equal
from ikepriv.isakmp.constants import AuthMethod, IkeHash

MIN_RSA_BITS: Final = 2048
"""RSA keys below this are refused (ours by ikedb and the parent, the peer's by the child)."""

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class _Ecdsa:
    curve: type[ec.EllipticCurve]
    hash: type[hashes.HashAlgorithm]
    digest: int  # bytes of HASH_I/HASH_R, which are signed as that hash's digest
    prf: IkeHash  # HASH_I/HASH_R are HMAC of this hash, keyed with SKEYID
    size: int  # bytes of r and of s


_ECDSA: Final[dict[AuthMethod, _Ecdsa]] = {
    AuthMethod.ECDSA_SHA256_P256: _Ecdsa(ec.SECP256R1, hashes.SHA256, 32, IkeHash.SHA2_256, 32),
    AuthMethod.ECDSA_SHA384_P384: _Ecdsa(ec.SECP384R1, hashes.SHA384, 48, IkeHash.SHA2_384, 48),
    AuthMethod.ECDSA_SHA512_P521: _Ecdsa(ec.SECP521R1, hashes.SHA512, 64, IkeHash.SHA2_512, 66),
}


def auth_prf(method: AuthMethod, negotiated: IkeHash) -> IkeHash:
    """The prf HASH_I/HASH_R are computed with: the ECDSA method's own SHA-2 (RFC 4754, as
    strongSwan does it), else the negotiated one (pre-shared keys, RSA). Child and parent
    both call this, so the value checked and the value signed agree by construction."""
    spec = _ECDSA.get(method)
    return spec.prf if spec is not None else negotiated


class KeyMismatch(ValueError):
    """The key cannot serve the method (wrong type, wrong curve, RSA too short)."""


def key_problem(method: AuthMethod, key: PrivateKey | PublicKey) -> str | None:
    """Why `key` cannot sign or verify for `method`, or None when it can."""
    if method is AuthMethod.RSA_SIGNATURES:
        if not isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
            return "rsa-sig needs an RSA key"
        if key.key_size < MIN_RSA_BITS:
            return f"RSA key of {key.key_size} bits (at least {MIN_RSA_BITS} are needed)"
        return None
    spec = _ECDSA.get(method)
    if spec is None:
        return f"{method.name} is not a signature method"
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return "ecdsa-sig needs an EC key"
    if not isinstance(key.curve, spec.curve):
        return f"{key.curve.name} key, {method.name} needs {spec.curve.name}"
    return None


def method_for_key(key: PrivateKey | PublicKey) -> AuthMethod:
    """The one signature method a key can serve (RSA: 3; EC: by its curve)."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        method = AuthMethod.RSA_SIGNATURES
    else:
        found = [m for m, spec in _ECDSA.items() if isinstance(key.curve, spec.curve)]
        if not found:
            raise KeyMismatch(f"{key.curve.name} is not one of P-256, P-384, P-521")
        method = found[0]
    problem = key_problem(method, key)
    if problem is not None:
        raise KeyMismatch(problem)
    return method


def sign(
    method: AuthMethod, key: PrivateKey, auth_hash: bytes, *, deterministic: bool = False
) -> bytes:
    """Our SIG payload data over HASH_I/HASH_R. `deterministic`: ECDSA with RFC 6979
    nonces (the same signature for the same input; replayable fuzzing and tests need it,
    RSA PKCS#1 v1.5 is deterministic anyway)."""
    problem = key_problem(method, key)
    if problem is not None:
        raise KeyMismatch(problem)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(auth_hash, padding.PKCS1v15(), NoDigestInfo())
    spec = _ECDSA[method]
    if len(auth_hash) != spec.digest:
        raise KeyMismatch(f"{method.name} signs a {spec.digest}-byte HASH")
    algorithm = ec.ECDSA(Prehashed(spec.hash()), deterministic_signing=deterministic)
    r, s = decode_dss_signature(key.sign(auth_hash, algorithm))
    return r.to_bytes(spec.size, "big") + s.to_bytes(spec.size, "big")


def verify(method: AuthMethod, key: PublicKey, auth_hash: bytes, signature: bytes) -> bool:
    """Whether the peer's SIG payload data is its signature over HASH_I/HASH_R."""
    if key_problem(method, key) is not None:
        return False
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if len(signature) != (key.key_size + 7) // 8:
                return False
            # recover, then compare in constant time: verify() takes no NoDigestInfo
            recovered = key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
            return digests_equal(auth_hash, recovered)
        spec = _ECDSA[method]
        if len(signature) != 2 * spec.size or len(auth_hash) != spec.digest:
            return False
        r = int.from_bytes(signature[: spec.size], "big")
        s = int.from_bytes(signature[spec.size :], "big")
        key.verify(encode_dss_signature(r, s), auth_hash, ec.ECDSA(Prehashed(spec.hash())))
        return True
    except InvalidSignature:
        return False
