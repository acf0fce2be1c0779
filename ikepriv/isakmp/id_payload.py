"""Identification (RFC 2408 3.8, IPsec DOI RFC 2407 4.6.2) and NAT-OA (RFC 3947 5.2).

The decoder checks the data of every IPsec DOI ID type (address sizes, contiguous subnet
masks, ordered ranges, ASCII names) so that later code can convert without surprises; the
IdPayload keeps the raw bytes for hashing (HASH_I/HASH_R cover the ID body as sent).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from ikepriv.isakmp.constants import IdType, NotifyType, PayloadType
from ikepriv.isakmp.isakmp_error import NO_OFFSET, fail, malformed
from ikepriv.isakmp.limits import MAX_NAME_LENGTH
from ikepriv.isakmp.payloads import PayloadBase

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IdValue = IPAddress | IPNetwork | tuple[IPAddress, IPAddress] | str | bytes

_ID = struct.Struct("!BBH")
_NAT_OA = struct.Struct("!BBH")


def _prefix_of(mask: bytes) -> int | None:
    """Prefix length of a contiguous netmask, None when the mask has holes."""
    value = int.from_bytes(mask, "big")
    bits = len(mask) * 8
    inverted = value ^ ((1 << bits) - 1)
    if inverted & (inverted + 1):
        return None
    return bits - inverted.bit_length()


def _address(size: int) -> Callable[[bytes], str | None]:
    def check(data: bytes) -> str | None:
        return None if len(data) == size else f"address of {len(data)} bytes, want {size}"

    return check


def _subnet(size: int) -> Callable[[bytes], str | None]:
    def check(data: bytes) -> str | None:
        if len(data) != 2 * size:
            return f"subnet of {len(data)} bytes, want {2 * size}"
        if _prefix_of(data[size:]) is None:
            return "subnet mask is not contiguous"
        return None

    return check


def _range(size: int) -> Callable[[bytes], str | None]:
    def check(data: bytes) -> str | None:
        if len(data) != 2 * size:
            return f"range of {len(data)} bytes, want {2 * size}"
        if data[:size] > data[size:]:
            return "range start is above range end"
        return None

    return check


def _name(data: bytes) -> str | None:
    if not 1 <= len(data) <= MAX_NAME_LENGTH:
        return f"name of {len(data)} bytes"
    if any(not 0x21 <= c <= 0x7E for c in data):
        return "name is not printable ASCII"
    return None


def _nonempty(data: bytes) -> str | None:
    return None if data else "empty identification data"


# Every IPsec DOI ID type and the check its data must pass.
ID_CHECKS: dict[int, Callable[[bytes], str | None]] = {
    IdType.IPV4_ADDR: _address(4),
    IdType.FQDN: _name,
    IdType.USER_FQDN: _name,
    IdType.IPV4_ADDR_SUBNET: _subnet(4),
    IdType.IPV6_ADDR: _address(16),
    IdType.IPV6_ADDR_SUBNET: _subnet(16),
    IdType.IPV4_ADDR_RANGE: _range(4),
    IdType.IPV6_ADDR_RANGE: _range(16),
    IdType.DER_ASN1_DN: _nonempty,
    IdType.DER_ASN1_GN: _nonempty,
    IdType.KEY_ID: _nonempty,
    IdType.LIST: _nonempty,  # RFC 3554: nested ID payloads, kept raw (never parsed here)
}


def _check_id(id_type: int, protocol: int, port: int, data: bytes, offset: int) -> None:
    check = ID_CHECKS.get(id_type)
    if check is None:
        fail(NotifyType.INVALID_ID_INFORMATION, offset, f"ID type {id_type}")
    problem = check(data)
    if problem is not None:
        fail(NotifyType.INVALID_ID_INFORMATION, offset + 4 if offset >= 0 else offset, problem)
    if not (0 <= protocol <= 0xFF and 0 <= port <= 0xFFFF):
        malformed(NO_OFFSET, "protocol or port out of range")


def _ip(data: bytes) -> IPAddress:
    return ipaddress.IPv4Address(data) if len(data) == 4 else ipaddress.IPv6Address(data)


@dataclass(frozen=True, slots=True)
class IdPayload(PayloadBase):
    """ID payload of the IPsec DOI: type, IP protocol, port and the raw identification data."""

    TYPE: ClassVar[int] = PayloadType.ID
    id_type: IdType
    protocol: int
    port: int
    data: bytes

    def encode_body(self) -> bytes:
        _check_id(self.id_type, self.protocol, self.port, self.data, NO_OFFSET)
        return _ID.pack(self.id_type, self.protocol, self.port) + self.data

    @property
    def body(self) -> bytes:
        """The payload body as hashed in HASH_I/HASH_R (RFC 2409 5: "IDii_b")."""
        return self.encode_body()

    @property
    def value(self) -> IdValue:
        """Typed view: address, network, (start, end) range, name, or raw DER/key bytes."""
        _check_id(self.id_type, self.protocol, self.port, self.data, NO_OFFSET)
        size = 4 if self.id_type in _V4 else 16
        if self.id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
            return _ip(self.data)
        if self.id_type in (IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR_SUBNET):
            prefix = _prefix_of(self.data[size:])
            network = ipaddress.ip_network((_ip(self.data[:size]), prefix or 0), strict=False)
            return network
        if self.id_type in (IdType.IPV4_ADDR_RANGE, IdType.IPV6_ADDR_RANGE):
            return (_ip(self.data[:size]), _ip(self.data[size:]))
        if self.id_type in (IdType.FQDN, IdType.USER_FQDN):
            return self.data.decode("ascii")
        return self.data

    # --- constructors, one per ID type (they validate like the decoder) ---

    @classmethod
    def _make(cls, id_type: IdType, data: bytes, protocol: int, port: int) -> IdPayload:
        _check_id(id_type, protocol, port, data, NO_OFFSET)
        return cls(id_type, protocol, port, data)

    @classmethod
    def phase1(cls, id_type: IdType, data: bytes) -> IdPayload:
        """Our own phase 1 ID as we send it (protocol 0, port 0). The one encoder of our
        IDii_b/IDir_b: the child sends it, and the parent signs HASH_I/HASH_R over its
        `body`, so the two cannot disagree on the bytes (issue 10)."""
        return cls(id_type, 0, 0, data)

    @classmethod
    def address(cls, addr: IPAddress | str, protocol: int = 0, port: int = 0) -> IdPayload:
        ip = ipaddress.ip_address(addr)
        kind = IdType.IPV4_ADDR if ip.version == 4 else IdType.IPV6_ADDR
        return cls._make(kind, ip.packed, protocol, port)

    @classmethod
    def subnet(cls, net: IPNetwork | str, protocol: int = 0, port: int = 0) -> IdPayload:
        network = ipaddress.ip_network(net, strict=False)
        kind = IdType.IPV4_ADDR_SUBNET if network.version == 4 else IdType.IPV6_ADDR_SUBNET
        data = network.network_address.packed + network.netmask.packed
        return cls._make(kind, data, protocol, port)

    @classmethod
    def address_range(
        cls, start: IPAddress | str, end: IPAddress | str, protocol: int = 0, port: int = 0
    ) -> IdPayload:
        first, last = ipaddress.ip_address(start), ipaddress.ip_address(end)
        if first.version != last.version:
            fail(NotifyType.INVALID_ID_INFORMATION, NO_OFFSET, "range mixes IPv4 and IPv6")
        kind = IdType.IPV4_ADDR_RANGE if first.version == 4 else IdType.IPV6_ADDR_RANGE
        return cls._make(kind, first.packed + last.packed, protocol, port)

    @classmethod
    def fqdn(cls, name: str, protocol: int = 0, port: int = 0) -> IdPayload:
        return cls._make(IdType.FQDN, _ascii(name), protocol, port)

    @classmethod
    def user_fqdn(cls, name: str, protocol: int = 0, port: int = 0) -> IdPayload:
        return cls._make(IdType.USER_FQDN, _ascii(name), protocol, port)

    @classmethod
    def der_asn1_dn(cls, der: bytes, protocol: int = 0, port: int = 0) -> IdPayload:
        return cls._make(IdType.DER_ASN1_DN, bytes(der), protocol, port)

    @classmethod
    def der_asn1_gn(cls, der: bytes, protocol: int = 0, port: int = 0) -> IdPayload:
        return cls._make(IdType.DER_ASN1_GN, bytes(der), protocol, port)

    @classmethod
    def key_id(cls, key: bytes, protocol: int = 0, port: int = 0) -> IdPayload:
        return cls._make(IdType.KEY_ID, bytes(key), protocol, port)


_V4 = frozenset({IdType.IPV4_ADDR, IdType.IPV4_ADDR_SUBNET, IdType.IPV4_ADDR_RANGE})


def _ascii(name: str) -> bytes:
    try:
        return name.encode("ascii")
    except UnicodeEncodeError:
        fail(NotifyType.INVALID_ID_INFORMATION, NO_OFFSET, "name is not ASCII")


def decode_id(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> IdPayload:
    if end - pos < _ID.size:
        malformed(base + pos, "ID payload shorter than its type fields")
    id_type, protocol, port = _ID.unpack_from(buf, pos)
    data = bytes(buf[pos + _ID.size : end])
    _check_id(id_type, protocol, port, data, base + pos)
    return IdPayload(IdType(id_type), protocol, port, data)


_NAT_OA_SIZES = {IdType.IPV4_ADDR: 4, IdType.IPV6_ADDR: 16}


@dataclass(frozen=True, slots=True)
class NatOaPayload(PayloadBase):
    """NAT-OA (RFC 3947: type 21; draft: 131). The ID type follows from the address family;
    the three RESERVED bytes are zero on the wire (nonzero is rejected)."""

    address: IPAddress
    draft: bool = False

    @property
    def payload_type(self) -> int:
        return PayloadType.NAT_OA_DRAFT if self.draft else PayloadType.NAT_OA

    @property
    def id_type(self) -> IdType:
        return IdType.IPV4_ADDR if self.address.version == 4 else IdType.IPV6_ADDR

    def encode_body(self) -> bytes:
        return _NAT_OA.pack(self.id_type, 0, 0) + self.address.packed


def decode_nat_oa(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> NatOaPayload:
    if end - pos < _NAT_OA.size:
        malformed(base + pos, "NAT-OA payload shorter than its type fields")
    id_type, reserved1, reserved2 = _NAT_OA.unpack_from(buf, pos)
    size = _NAT_OA_SIZES.get(id_type)
    if size is None:
        fail(NotifyType.INVALID_ID_INFORMATION, base + pos, f"NAT-OA ID type {id_type}")
    if reserved1 or reserved2:
        malformed(base + pos + (1 if reserved1 else 2), "NAT-OA RESERVED is not zero")
    if end - pos - _NAT_OA.size != size:
        fail(NotifyType.INVALID_ID_INFORMATION, base + pos + 4, "NAT-OA address size")
    address = _ip(bytes(buf[pos + _NAT_OA.size : end]))
    return NatOaPayload(address, draft=ptype == PayloadType.NAT_OA_DRAFT)
