"""Diffie-Hellman for IKEv1 key exchange: MODP, NIST ECP and Curve25519 groups.

The negotiation core is deterministic under test, so randomness is injected:
`generate(group_id, random_bytes)` draws every private bit from the caller's
`random_bytes(n) -> bytes`.  Public values and shared secrets use the IKEv1 wire
format: fixed length, big-endian, leading zeros kept (MODP: the prime's size;
ECP: x | y without the 0x04 byte for public values, x for g^xy; X25519: the
32-byte RFC 7748 strings).

MODP arithmetic runs in the C extension ikepriv.ext._dh (constant time, the
private exponent kept in a C buffer that `wipe()` clears).  The extension has
three paths, picked at run time from the CPU: "ifma" (AVX-512 IFMA, groups of
1536 bits and more), else "openssl" (shared secret through libcrypto's
BN_mod_exp_mont_consttime); "gmp" (GMP's mpn_sec_powm) is kept as an
independent cross-check.  Key generation uses a fixed-base comb in every path
(IFMA arithmetic in "ifma", portable arithmetic otherwise).  Tests and the
bench force a path with `set_modp_impl()` or the environment variable
IKEPRIV_DH_IMPL=auto|gmp|openssl|ifma (read once, at import).  ECP and X25519 run
in OpenSSL through `cryptography`; those key objects cannot be wiped from
Python, so `wipe()` only drops our reference.

Every peer value goes through `validate_public()` before use; all failures
raise DHError.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm as _CryptographyUnsupported
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ikepriv.crypto.crypto_errors import CryptoError, UnsupportedAlgorithm
from ikepriv.crypto.groups import GROUPS, DHGroup, EcpGroup, ModpGroup, X25519Group
from ikepriv.ext._dh import ffi as _ffi
from ikepriv.ext._dh import lib as _lib
from ikepriv.isakmp.constants import GroupId

RandomBytes = Callable[[int], bytes]
"""Returns exactly n random bytes (os.urandom in production, a seeded source in tests)."""

_MAX_DRAWS = 64
"""Rejection sampling bound; failing this often means a broken random source."""


class DHError(CryptoError):
    """A public value failed validation, or a key cannot be used (wiped, bad random)."""


class DHPrivateKey(Protocol):
    """One side of one exchange."""

    @property
    def group_id(self) -> GroupId: ...

    @property
    def public(self) -> bytes:
        """Our public value in wire format (KE payload data)."""
        ...

    def shared(self, peer_public: bytes) -> bytes:
        """g^xy in wire format; validates peer_public first."""
        ...

    def wipe(self) -> None:
        """Forget the private value; later `shared()` calls raise DHError."""
        ...


def group(group_id: int) -> DHGroup:
    """The parameters of a supported group, or UnsupportedAlgorithm."""
    try:
        return GROUPS[GroupId(group_id)]
    except (ValueError, KeyError):
        raise UnsupportedAlgorithm(f"Diffie-Hellman group {group_id} is not supported") from None


def public_length(group_id: int) -> int:
    """Exact length of a KE payload's data for this group."""
    return group(group_id).length


def _draw(random_bytes: RandomBytes, n: int) -> bytes:
    data = random_bytes(n)
    if not isinstance(data, bytes | bytearray) or len(data) != n:
        raise DHError(f"random source returned a bad value for {n} bytes")
    return bytes(data)


# ---- MODP (C extension) ----------------------------------------------------

_C_ERRORS = {
    _lib.IKEPRIV_DH_EINVAL: "length or argument does not fit the group",
    _lib.IKEPRIV_DH_EPEER: "peer public value out of range (must be 1 < y < p-1)",
    _lib.IKEPRIV_DH_ENOMEM: "out of memory",
}

MODP_IMPL_ENV = "IKEPRIV_DH_IMPL"
_IMPL_CODES: dict[str, int] = {"auto": 0, "gmp": 1, "openssl": 3, "ifma": 2}
_IMPL_NAMES: dict[int, str] = {code: name for name, code in _IMPL_CODES.items()}


def modp_impls() -> tuple[str, ...]:
    """The MODP paths this CPU can run, for `set_modp_impl()` (never "auto")."""
    return tuple(
        name
        for name, code in _IMPL_CODES.items()
        if name != "auto" and _lib.ikepriv_dh_impl_available(code)
    )


def set_modp_impl(name: str) -> None:
    """Force one MODP path for every group, or go back to "auto" (CPUID decides).

    For tests and benchmarks: all paths give identical results, so forcing
    one lets a machine with IFMA check the paths other CPUs would run.
    "ifma" still leaves groups under 1536 bits on "openssl" (see `modp_impl`).
    """
    code = _IMPL_CODES.get(name)
    if code is None:
        raise DHError(f"unknown MODP path {name!r} (one of {', '.join(_IMPL_CODES)})")
    if not _lib.ikepriv_dh_impl_available(code):
        raise DHError(f"MODP path {name!r} needs AVX-512 IFMA, which this CPU lacks")
    _lib.ikepriv_dh_set_impl(code)


def modp_impl(group_id: int) -> str:
    """The path a MODP group's exchanges use now ("gmp", "openssl" or "ifma")."""
    grp = group(group_id)
    if not isinstance(grp, ModpGroup):
        raise UnsupportedAlgorithm(f"group {group_id} is not a MODP group")
    return _IMPL_NAMES[int(_lib.ikepriv_modp_impl(_modp_context(grp)))]


_contexts: dict[GroupId, Any] = {}
_contexts_lock = threading.Lock()


def _modp_context(grp: ModpGroup) -> Any:
    """The C group context (comb tables built on first use, then shared)."""
    with _contexts_lock:
        ctx = _contexts.get(grp.group_id)
        if ctx is None:
            out = _ffi.new("ikepriv_modp **")
            p = grp.prime.to_bytes(grp.length, "big")
            _check(_lib.ikepriv_modp_new(p, len(p), grp.exponent_bits, out))
            ctx = _ffi.gc(out[0], _lib.ikepriv_modp_free)
            _contexts[grp.group_id] = ctx
        return ctx


def _check(rc: int) -> None:
    if rc != _lib.IKEPRIV_DH_OK:
        raise DHError(_C_ERRORS.get(rc, f"MODP error {rc}"))


def _validate_modp(grp: ModpGroup, peer: bytes) -> None:
    if len(peer) != grp.length:
        raise DHError(
            f"MODP-{grp.prime.bit_length()} public value is {len(peer)} bytes, "
            f"expected {grp.length}"
        )
    y = int.from_bytes(peer, "big")
    if not 1 < y < grp.prime - 1:
        raise DHError("peer public value out of range (must be 1 < y < p-1)")


class _ModpKey:
    __slots__ = ("_ctx", "_group", "_public", "_x")

    def __init__(self, grp: ModpGroup, random_bytes: RandomBytes) -> None:
        self._group = grp
        self._ctx = _modp_context(grp)
        xlen = int(_lib.ikepriv_modp_exp_len(self._ctx))
        self._x: Any = _ffi.new("uint8_t[]", xlen)
        pub = _ffi.new("uint8_t[]", grp.length)
        for _ in range(_MAX_DRAWS):
            _ffi.memmove(self._x, _draw(random_bytes, xlen), xlen)
            rc = _lib.ikepriv_modp_keygen(self._ctx, self._x, xlen, pub, grp.length)
            if rc != _lib.IKEPRIV_DH_EWEAK:
                _check(rc)
                break
        else:
            self.wipe()
            raise DHError("random source keeps returning a private exponent below 2")
        self._public = bytes(_ffi.buffer(pub))

    @property
    def group_id(self) -> GroupId:
        return self._group.group_id

    @property
    def public(self) -> bytes:
        return self._public

    def shared(self, peer_public: bytes) -> bytes:
        if self._x is None:
            raise DHError("private key was wiped")
        n = self._group.length
        out = _ffi.new("uint8_t[]", n)
        # The C side checks length and range itself (1 < y < p-1) before any
        # arithmetic; the Python check only runs to word the error.
        rc = _lib.ikepriv_modp_shared(
            self._ctx, self._x, len(self._x), peer_public, len(peer_public), out, n
        )
        if rc != _lib.IKEPRIV_DH_OK:
            _validate_modp(self._group, peer_public)
            _check(rc)
        result = bytes(_ffi.buffer(out))
        _lib.ikepriv_wipe(out, n)
        return result

    def wipe(self) -> None:
        if self._x is not None:
            _lib.ikepriv_wipe(self._x, len(self._x))
            self._x = None

    def __del__(self) -> None:
        self.wipe()


if os.environ.get(MODP_IMPL_ENV):
    set_modp_impl(os.environ[MODP_IMPL_ENV])


# ---- keys held by the cryptography library ---------------------------------

_G = TypeVar("_G", EcpGroup, X25519Group)
_K = TypeVar("_K", ec.EllipticCurvePrivateKey, x25519.X25519PrivateKey)


class _LibraryKey(Generic[_G, _K]):
    """A private key the cryptography library holds: wiping can only drop our
    reference to it, after which `shared` refuses."""

    __slots__ = ("_group", "_key", "_public")

    def __init__(self, grp: _G, key: _K, public: bytes) -> None:
        self._group: _G = grp
        self._key: _K | None = key
        self._public = public

    @property
    def group_id(self) -> GroupId:
        return self._group.group_id

    @property
    def public(self) -> bytes:
        return self._public

    def shared(self, peer_public: bytes) -> bytes:
        if self._key is None:
            raise DHError("private key was wiped")
        return self._exchange(self._key, peer_public)

    def _exchange(self, key: _K, peer_public: bytes) -> bytes:
        raise NotImplementedError

    def wipe(self) -> None:
        self._key = None


# ---- ECP (cryptography) ----------------------------------------------------

_RFC5903_PREFIX_NOTE = "IKEv1 ECP KE data is x | y without the 0x04 byte (RFC 5903 errata)"


def _load_ecp(grp: EcpGroup, peer: bytes) -> ec.EllipticCurvePublicKey:
    clen = grp.coordinate_length
    if len(peer) == grp.length + 1 and peer[:1] == b"\x04":
        raise DHError(f"ECP public value has a 0x04 prefix; {_RFC5903_PREFIX_NOTE}")
    if len(peer) != grp.length:
        raise DHError(f"ECP public value is {len(peer)} bytes, expected {grp.length}")
    x = int.from_bytes(peer[:clen], "big")
    y = int.from_bytes(peer[clen:], "big")
    if x >= grp.field_prime or y >= grp.field_prime:
        raise DHError("ECP public value has a coordinate outside the field")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(grp.curve, b"\x04" + peer)
    except (ValueError, _CryptographyUnsupported):
        raise DHError("ECP public value is not a point on the curve") from None


class _EcpKey(_LibraryKey[EcpGroup, ec.EllipticCurvePrivateKey]):
    __slots__ = ()

    def __init__(self, grp: EcpGroup, random_bytes: RandomBytes) -> None:
        bits = grp.order.bit_length()
        nbytes = (bits + 7) // 8
        for _ in range(_MAX_DRAWS):
            d = int.from_bytes(_draw(random_bytes, nbytes), "big") & ((1 << bits) - 1)
            if 1 <= d < grp.order:
                break
        else:
            raise DHError("random source keeps returning values outside the curve order")
        key = ec.derive_private_key(d, grp.curve)
        del d
        point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        super().__init__(grp, key, point[1:])

    def _exchange(self, key: ec.EllipticCurvePrivateKey, peer_public: bytes) -> bytes:
        peer = _load_ecp(self._group, peer_public)
        try:
            secret = key.exchange(ec.ECDH(), peer)
        except ValueError:
            raise DHError("ECDH failed on the peer public value") from None
        if len(secret) != self._group.coordinate_length:
            raise DHError("ECDH returned a secret of unexpected length")
        return secret


# ---- Curve25519 (cryptography) ---------------------------------------------


def _load_x25519(grp: X25519Group, peer: bytes) -> x25519.X25519PublicKey:
    if len(peer) != grp.length:
        raise DHError(f"Curve25519 public value is {len(peer)} bytes, expected {grp.length}")
    return x25519.X25519PublicKey.from_public_bytes(peer)


class _X25519Key(_LibraryKey[X25519Group, x25519.X25519PrivateKey]):
    __slots__ = ()

    def __init__(self, grp: X25519Group, random_bytes: RandomBytes) -> None:
        key = x25519.X25519PrivateKey.from_private_bytes(_draw(random_bytes, 32))
        super().__init__(grp, key, key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def _exchange(self, key: x25519.X25519PrivateKey, peer_public: bytes) -> bytes:
        peer = _load_x25519(self._group, peer_public)
        try:
            secret = key.exchange(peer)
        except ValueError:
            # OpenSSL refuses an all-zero result: the peer sent a low-order point.
            raise DHError("Curve25519 shared secret is all zero (low-order peer point)") from None
        if not any(secret):  # belt and braces, should OpenSSL ever stop refusing
            raise DHError("Curve25519 shared secret is all zero (low-order peer point)")
        return secret


# ---- Dispatch --------------------------------------------------------------

_GENERATORS: dict[type, Callable[[Any, RandomBytes], DHPrivateKey]] = {
    ModpGroup: _ModpKey,
    EcpGroup: _EcpKey,
    X25519Group: _X25519Key,
}

_VALIDATORS: dict[type, Callable[[Any, bytes], object]] = {
    ModpGroup: _validate_modp,
    EcpGroup: _load_ecp,
    X25519Group: _load_x25519,
}


def prepare(group_ids: Iterable[int] | None = None) -> None:
    """Build the MODP precomputation (comb tables) now rather than on first use.

    Call before entering the sandbox: it allocates up to about a megabyte per
    group (all groups: ~130 ms, 4 MB with the IFMA tables), which is better
    done while the process may still map memory freely and before the first
    peer is waiting.
    """
    for gid in GROUPS if group_ids is None else group_ids:
        grp = group(gid)
        if isinstance(grp, ModpGroup):
            _modp_context(grp)


def generate(group_id: int, random_bytes: RandomBytes) -> DHPrivateKey:
    """A fresh private key for `group_id`, every secret bit taken from `random_bytes`."""
    grp = group(group_id)
    return _GENERATORS[type(grp)](grp, random_bytes)


def validate_public(group_id: int, peer_public: bytes) -> None:
    """Raise DHError unless `peer_public` is a valid KE value for the group.

    Lets the negotiator reject a malformed KE payload before it keeps any state.
    X25519 accepts any 32 bytes here (RFC 7748); a low-order point is caught by
    `shared()`, which refuses the all-zero result.
    """
    grp = group(group_id)
    _VALIDATORS[type(grp)](grp, peer_public)
