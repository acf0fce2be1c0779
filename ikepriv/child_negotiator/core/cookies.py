"""ISAKMP cookies (RFC 2408 2.5.3).

The responder cookie is a keyed function of the peer's address, port and cookie, so a
repeated first message gets the same cookie (and finds the exchange it belongs to) without
a lookup table, and nobody without the secret can predict it. The secret is drawn from the
core's injected random source, so a seeded run is reproducible.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Callable

COOKIE_LENGTH = 8
ZERO_COOKIE = bytes(COOKIE_LENGTH)
SECRET_LENGTH = 32

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class CookieJar:
    __slots__ = ("_random", "_secret")

    def __init__(self, random: Callable[[int], bytes]) -> None:
        self._random = random
        self._secret = _draw(random, SECRET_LENGTH)

    def responder(self, peer: IPAddress, port: int, icookie: bytes) -> bytes:
        """prf(secret, peer address | port | CKY-I), cut to 8 bytes (never all zero)."""
        data = peer.packed + struct.pack("!H", port) + icookie
        cookie = hmac.new(self._secret, data, hashlib.sha256).digest()[:COOKIE_LENGTH]
        return cookie if cookie != ZERO_COOKIE else b"\x00" * 7 + b"\x01"

    def initiator(self) -> bytes:
        """A fresh random initiator cookie (never all zero)."""
        for _ in range(8):
            cookie = _draw(self._random, COOKIE_LENGTH)
            if cookie != ZERO_COOKIE:
                return cookie
        raise ValueError("random source keeps returning zero cookies")


def _draw(random: Callable[[int], bytes], n: int) -> bytes:
    data = random(n)
    if len(data) != n:
        raise ValueError(f"random source returned {len(data)} bytes for {n}")
    return bytes(data)
