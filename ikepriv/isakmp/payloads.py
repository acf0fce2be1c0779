"""The payloads whose body is (almost) one opaque field, and the common payload base.

Every payload class is a frozen dataclass with a `payload_type` and an `encode_body()`; every
module that defines payloads also exports a decoder per type with the signature
`decode(payload_type, buf, pos, end, base) -> payload`, where buf[pos:end] is the body (after
the 4-byte generic header) and `base` is added to positions in error offsets.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from ikepriv.isakmp.constants import PayloadType
from ikepriv.isakmp.isakmp_error import NO_OFFSET, malformed
from ikepriv.isakmp.limits import NONCE_MAX, NONCE_MIN


class PayloadBase:
    """Common interface; subclasses set TYPE (or override payload_type)."""

    __slots__ = ()
    TYPE: ClassVar[int] = PayloadType.NONE

    @property
    def payload_type(self) -> int:
        return self.TYPE

    def encode_body(self) -> bytes:
        raise NotImplementedError


def _opaque(pos: int, end: int, base: int, what: str, low: int = 1, high: int = 0xFFFF) -> None:
    size = end - pos
    if not low <= size <= high:
        malformed(base + pos, f"{what} of {size} bytes (allowed {low}..{high})")


def _check_opaque(data: bytes, what: str, low: int = 1, high: int = 0xFFFF) -> None:
    if not low <= len(data) <= high:
        malformed(NO_OFFSET, f"{what} of {len(data)} bytes (allowed {low}..{high})")


@dataclass(frozen=True, slots=True)
class KePayload(PayloadBase):
    """Key Exchange (RFC 2408 3.7): the DH public value."""

    TYPE: ClassVar[int] = PayloadType.KE
    data: bytes

    def encode_body(self) -> bytes:
        _check_opaque(self.data, "KE data")
        return self.data


@dataclass(frozen=True, slots=True)
class HashPayload(PayloadBase):
    """HASH (RFC 2408 3.11)."""

    TYPE: ClassVar[int] = PayloadType.HASH
    data: bytes

    def encode_body(self) -> bytes:
        _check_opaque(self.data, "hash data")
        return self.data


@dataclass(frozen=True, slots=True)
class SigPayload(PayloadBase):
    """Signature (RFC 2408 3.12)."""

    TYPE: ClassVar[int] = PayloadType.SIG
    data: bytes

    def encode_body(self) -> bytes:
        _check_opaque(self.data, "signature data")
        return self.data


@dataclass(frozen=True, slots=True)
class NoncePayload(PayloadBase):
    """Nonce (RFC 2408 3.13); RFC 2409 5 bounds it to 8..256 bytes."""

    TYPE: ClassVar[int] = PayloadType.NONCE
    data: bytes

    def encode_body(self) -> bytes:
        _check_opaque(self.data, "nonce", NONCE_MIN, NONCE_MAX)
        return self.data


@dataclass(frozen=True, slots=True)
class VendorIdPayload(PayloadBase):
    """Vendor ID (RFC 2408 3.16)."""

    TYPE: ClassVar[int] = PayloadType.VENDOR_ID
    data: bytes

    def encode_body(self) -> bytes:
        _check_opaque(self.data, "vendor ID")
        return self.data


@dataclass(frozen=True, slots=True)
class NatDPayload(PayloadBase):
    """NAT-D (RFC 3947: type 20; draft-ietf-ipsec-nat-t-ike-02/03: type 130)."""

    data: bytes
    draft: bool = False

    @property
    def payload_type(self) -> int:
        return PayloadType.NAT_D_DRAFT if self.draft else PayloadType.NAT_D

    def encode_body(self) -> bytes:
        _check_opaque(self.data, "NAT-D hash")
        return self.data


_CERT = struct.Struct("!B")


@dataclass(frozen=True, slots=True)
class CertPayload(PayloadBase):
    """Certificate (RFC 2408 3.9); `encoding` is a CertEncoding number, kept as int."""

    TYPE: ClassVar[int] = PayloadType.CERT
    encoding: int
    data: bytes

    def encode_body(self) -> bytes:
        _check_encoding(self.encoding)
        return _CERT.pack(self.encoding) + self.data


@dataclass(frozen=True, slots=True)
class CertRequestPayload(PayloadBase):
    """Certificate Request (RFC 2408 3.10); an empty authority means "any CA"."""

    TYPE: ClassVar[int] = PayloadType.CR
    encoding: int
    authority: bytes

    def encode_body(self) -> bytes:
        _check_encoding(self.encoding)
        return _CERT.pack(self.encoding) + self.authority


def _check_encoding(encoding: int) -> None:
    if not 0 <= encoding <= 0xFF:
        malformed(NO_OFFSET, f"certificate encoding {encoding} out of range")


@dataclass(frozen=True, slots=True)
class UnknownPayload(PayloadBase):
    """A payload type the codec does not know (reserved or private use), body kept raw.

    RFC 2408 5.1 makes the negotiator answer INVALID_PAYLOAD_TYPE; the codec only carries it
    so the chain can continue and ikedump can show it.
    """

    type: int
    body: bytes

    @property
    def payload_type(self) -> int:
        return self.type

    def encode_body(self) -> bytes:
        return self.body


# --- decoders ----------------------------------------------------------------------------


def decode_ke(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> KePayload:
    _opaque(pos, end, base, "KE data")
    return KePayload(bytes(buf[pos:end]))


def decode_hash(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> HashPayload:
    _opaque(pos, end, base, "hash data")
    return HashPayload(bytes(buf[pos:end]))


def decode_sig(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> SigPayload:
    _opaque(pos, end, base, "signature data")
    return SigPayload(bytes(buf[pos:end]))


def decode_nonce(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> NoncePayload:
    _opaque(pos, end, base, "nonce", NONCE_MIN, NONCE_MAX)
    return NoncePayload(bytes(buf[pos:end]))


def decode_vendor_id(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> VendorIdPayload:
    _opaque(pos, end, base, "vendor ID")
    return VendorIdPayload(bytes(buf[pos:end]))


def decode_nat_d(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> NatDPayload:
    _opaque(pos, end, base, "NAT-D hash")
    return NatDPayload(bytes(buf[pos:end]), draft=ptype == PayloadType.NAT_D_DRAFT)


def decode_cert(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> CertPayload:
    if end - pos < 1:
        malformed(base + pos, "certificate payload without encoding")
    return CertPayload(buf[pos], bytes(buf[pos + 1 : end]))


def decode_cr(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> CertRequestPayload:
    if end - pos < 1:
        malformed(base + pos, "certificate request without encoding")
    return CertRequestPayload(buf[pos], bytes(buf[pos + 1 : end]))
