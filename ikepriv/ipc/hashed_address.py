"""IP addresses whose hash is computed once, for the addresses made from the wire.

The parent looks every datagram's (local, remote) pair up in several tables (egress, peer
table, admission, vetting, the UDP text memo): about 150 address hashes per Main Mode. The
standard library hashes an address anew at every lookup (`hash(hex(int(addr)))`, about
0.45 us here, 8 % of the parent's time per Main Mode). The addresses the IPC codec decodes
and the UDP receive path parses are these subclasses instead: equal to the plain classes,
with the same hash, so they mix with the addresses of definitions in the same tables and
sets, and print and compare as before. Nothing else about an address changes.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Final


class HashedIPv4Address(IPv4Address):
    __slots__ = ("_hash",)

    def __init__(self, address: object) -> None:
        super().__init__(address)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"IPv4Address('{self}')"


class HashedIPv6Address(IPv6Address):
    __slots__ = ("_hash",)

    def __init__(self, address: object) -> None:
        super().__init__(address)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"IPv6Address('{self}')"


IPV4_TYPES: Final = frozenset({IPv4Address, HashedIPv4Address})
IPV6_TYPES: Final = frozenset({IPv6Address, HashedIPv6Address})


def hashed_address(value: str | bytes | int) -> HashedIPv4Address | HashedIPv6Address:
    """`ipaddress.ip_address`, as one of the classes above (ValueError as it raises)."""
    plain = ip_address(value)
    if plain.version == 4:
        return HashedIPv4Address(int(plain))
    return HashedIPv6Address(str(plain))  # keeps a scope id, which the callers then refuse
