"""Hash functions and the IKEv1 pseudo-random function.

IKEv1 (RFC 2409 section 4) defines no PRF transforms of its own in practice: the PRF attribute
is reserved, so every implementation uses the HMAC version of the negotiated hash algorithm.
That is why the table is keyed by :class:`~ikepriv.isakmp.constants.IkeHash`.

Public API
----------
``HASHES: Mapping[IkeHash, HashSpec]``
    The hash algorithms this implementation offers (MD5, SHA-1, SHA2-256/384/512).
``hash_spec(alg) -> HashSpec``
    Table lookup that raises :class:`UnsupportedAlgorithm` (e.g. for TIGER).
``prf(alg, key, data) -> bytes``
    HMAC-<hash>(key, data).
``digest(alg, data) -> bytes``
    The plain hash, for the phase 1 IV and NAT-D.
``nat_d_hash(alg, cky_i, cky_r, address, port) -> bytes``
    RFC 3947 NAT-D: HASH(CKY-I | CKY-R | IP | Port).
``digests_equal(a, b) -> bool``
    Constant-time comparison; every received HASH/NAT-D check goes through it.

Everything here is pure: no I/O, no randomness, no module state besides the constant table.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ikepriv.crypto.crypto_errors import InvalidInput, UnsupportedAlgorithm
from ikepriv.isakmp.constants import IkeHash

COOKIE_LENGTH = 8


@dataclass(frozen=True, slots=True)
class HashSpec:
    """What the rest of the code needs to know about one negotiated hash."""

    hash_id: IkeHash
    hashlib_name: str
    digest_size: int  # bytes; also the PRF output length


HASHES: Mapping[IkeHash, HashSpec] = MappingProxyType(
    {
        IkeHash.MD5: HashSpec(IkeHash.MD5, "md5", 16),
        IkeHash.SHA: HashSpec(IkeHash.SHA, "sha1", 20),
        IkeHash.SHA2_256: HashSpec(IkeHash.SHA2_256, "sha256", 32),
        IkeHash.SHA2_384: HashSpec(IkeHash.SHA2_384, "sha384", 48),
        IkeHash.SHA2_512: HashSpec(IkeHash.SHA2_512, "sha512", 64),
    }
)


def hash_spec(alg: IkeHash | int) -> HashSpec:
    """Look up a hash; a number we do not implement is an :class:`UnsupportedAlgorithm`."""
    try:
        return HASHES[IkeHash(alg)]
    except (KeyError, ValueError):
        raise UnsupportedAlgorithm(f"IKE hash algorithm {int(alg)} is not supported") from None


def prf(alg: IkeHash | int, key: bytes | bytearray, data: bytes | bytearray) -> bytes:
    """HMAC with the negotiated hash: the IKEv1 prf(key, msg)."""
    name = hash_spec(alg).hashlib_name
    return hmac.new(key, data, name).digest()


def digest(alg: IkeHash | int, data: bytes | bytearray) -> bytes:
    """The negotiated hash itself (not keyed)."""
    return hashlib.new(hash_spec(alg).hashlib_name, data).digest()


def nat_d_hash(
    alg: IkeHash | int,
    cky_i: bytes,
    cky_r: bytes,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | bytes,
    port: int,
) -> bytes:
    """RFC 3947 section 3.2: HASH(CKY-I | CKY-R | IP | Port), port in network byte order.

    ``address`` may be an ipaddress object or its packed form (4 or 16 bytes).
    """
    _check_cookie("CKY-I", cky_i)
    _check_cookie("CKY-R", cky_r)
    if isinstance(address, bytes):
        if len(address) not in (4, 16):
            raise InvalidInput(f"packed address must be 4 or 16 bytes, got {len(address)}")
        packed = address
    else:
        packed = address.packed
    if not 0 <= port <= 0xFFFF:
        raise InvalidInput(f"port {port} out of range")
    return digest(alg, cky_i + cky_r + packed + struct.pack("!H", port))


def digests_equal(expected: bytes | bytearray, received: bytes | bytearray) -> bool:
    """Constant-time equality for MACs and hashes (different lengths compare unequal)."""
    return hmac.compare_digest(bytes(expected), bytes(received))


def _check_cookie(name: str, cookie: bytes) -> None:
    if len(cookie) != COOKIE_LENGTH:
        raise InvalidInput(f"{name} must be {COOKIE_LENGTH} bytes, got {len(cookie)}")
