"""Notification (RFC 2408 3.14) and Delete (3.15) payloads.

Notify types stay ints (the registry has private ranges); the decoder checks the data of the
status types whose data has a defined shape: DPD R-U-THERE/R-U-THERE-ACK (RFC 3706: a 4-byte
sequence number), REPLAY-STATUS (RFC 2407 4.6.3.2: 4 bytes) and RESPONDER-LIFETIME (RFC 2407
4.6.3.1: SA attributes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from ikepriv.isakmp.attributes import (
    Attribute,
    decode_attributes,
    ike_lifetimes,
    ipsec_lifetimes,
)
from ikepriv.isakmp.constants import DOI, NotifyType, PayloadType, ProtocolId
from ikepriv.isakmp.isakmp_error import NO_OFFSET, IsakmpError, fail, malformed
from ikepriv.isakmp.limits import (
    MAX_ATTRIBUTE_LENGTH,
    MAX_ATTRIBUTES,
    MAX_DELETE_SPIS,
    MAX_SPI_SIZE,
)
from ikepriv.isakmp.payloads import PayloadBase

_NOTIFY = struct.Struct("!IBBH")
_DELETE = struct.Struct("!IBBH")
_SEQ = struct.Struct("!I")
_DOIS = frozenset({DOI.ISAKMP, DOI.IPSEC})  # RFC 2408 3.14: 0 is allowed for ISAKMP notifies
_PROTOCOLS = frozenset(int(p) for p in ProtocolId)

# Notify data with a fixed size: type -> size.
_FIXED_DATA: dict[int, int] = {
    NotifyType.R_U_THERE: 4,
    NotifyType.R_U_THERE_ACK: 4,
    NotifyType.REPLAY_STATUS: 4,
}


def _check_notify_data(notify_type: int, buf: memoryview, pos: int, end: int, base: int) -> None:
    size = _FIXED_DATA.get(notify_type)
    if size is not None and end - pos != size:
        malformed(base + pos, f"notify {notify_type} data of {end - pos} bytes, want {size}")
    if notify_type == NotifyType.RESPONDER_LIFETIME:
        decode_attributes(
            buf, pos, end, base, max_count=MAX_ATTRIBUTES, max_length=MAX_ATTRIBUTE_LENGTH
        )


def _sequence(data: bytes) -> int:
    if len(data) != _SEQ.size:
        malformed(NO_OFFSET, f"notify data of {len(data)} bytes, want {_SEQ.size}")
    return int(_SEQ.unpack(data)[0])


@dataclass(frozen=True, slots=True)
class NotifyPayload(PayloadBase):
    TYPE: ClassVar[int] = PayloadType.NOTIFY
    doi: int
    protocol_id: int
    spi: bytes
    notify_type: int
    data: bytes = b""

    def encode_body(self) -> bytes:
        if self.doi not in _DOIS:
            fail(NotifyType.DOI_NOT_SUPPORTED, NO_OFFSET, f"DOI {self.doi}")
        if not 0 <= self.protocol_id <= 0xFF or not 0 <= self.notify_type <= 0xFFFF:
            malformed(NO_OFFSET, "protocol or notify type out of range")
        if len(self.spi) > MAX_SPI_SIZE:
            malformed(NO_OFFSET, f"{len(self.spi)}-byte SPI")
        try:
            _check_notify_data(self.notify_type, memoryview(self.data), 0, len(self.data), 0)
        except IsakmpError as exc:
            raise IsakmpError(exc.notify, NO_OFFSET, exc.reason) from None
        head = _NOTIFY.pack(self.doi, self.protocol_id, len(self.spi), self.notify_type)
        return head + self.spi + self.data

    # --- constructors and typed views for the status types a gateway sends ---

    @classmethod
    def isakmp(cls, notify_type: int, cookies: bytes, data: bytes = b"") -> NotifyPayload:
        """A notify about the ISAKMP SA named by icookie|rcookie (16 bytes)."""
        return cls(DOI.IPSEC, ProtocolId.ISAKMP, bytes(cookies), int(notify_type), data)

    @classmethod
    def initial_contact(cls, cookies: bytes) -> NotifyPayload:
        return cls.isakmp(NotifyType.INITIAL_CONTACT, cookies)

    @classmethod
    def dpd(cls, cookies: bytes, sequence: int, *, ack: bool = False) -> NotifyPayload:
        kind = NotifyType.R_U_THERE_ACK if ack else NotifyType.R_U_THERE
        return cls.isakmp(kind, cookies, _SEQ.pack(sequence))

    @property
    def dpd_sequence(self) -> int | None:
        """The RFC 3706 sequence number of R-U-THERE(-ACK), else None."""
        if self.notify_type in (NotifyType.R_U_THERE, NotifyType.R_U_THERE_ACK):
            return _sequence(self.data)
        return None

    @property
    def replay_status(self) -> bool | None:
        """REPLAY-STATUS: whether the responder enabled replay detection, else None."""
        if self.notify_type == NotifyType.REPLAY_STATUS:
            return bool(_sequence(self.data))
        return None

    @property
    def responder_lifetime(self) -> tuple[Attribute, ...] | None:
        """RESPONDER-LIFETIME: the SA attributes it carries, else None."""
        if self.notify_type != NotifyType.RESPONDER_LIFETIME:
            return None
        view = memoryview(self.data)
        return decode_attributes(
            view, 0, len(view), 0, max_count=MAX_ATTRIBUTES, max_length=MAX_ATTRIBUTE_LENGTH
        )

    @property
    def responder_lifetimes(self) -> tuple[tuple[int, int], ...] | None:
        """RESPONDER-LIFETIME as (LifeType, duration) pairs, by the notify's protocol."""
        attrs = self.responder_lifetime
        if attrs is None:
            return None
        if self.protocol_id == ProtocolId.ISAKMP:
            return ike_lifetimes(attrs)
        return ipsec_lifetimes(attrs)


def decode_notify(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> NotifyPayload:
    if end - pos < _NOTIFY.size:
        malformed(base + pos, "notify payload shorter than its fixed fields")
    doi, protocol, spi_size, notify_type = _NOTIFY.unpack_from(buf, pos)
    if doi not in _DOIS:
        fail(NotifyType.DOI_NOT_SUPPORTED, base + pos, f"DOI {doi}")
    if spi_size > MAX_SPI_SIZE:
        malformed(base + pos + 5, f"SPI size {spi_size}")
    data_pos = pos + _NOTIFY.size + spi_size
    if data_pos > end:
        malformed(base + pos + 5, f"SPI size {spi_size} overruns the payload")
    _check_notify_data(notify_type, buf, data_pos, end, base)
    spi = bytes(buf[pos + _NOTIFY.size : data_pos])
    return NotifyPayload(doi, protocol, spi, notify_type, bytes(buf[data_pos:end]))


@dataclass(frozen=True, slots=True)
class DeletePayload(PayloadBase):
    """Delete: `spi_size` is kept so the object mirrors the wire, and must match every SPI."""

    TYPE: ClassVar[int] = PayloadType.DELETE
    doi: int
    protocol_id: ProtocolId
    spi_size: int
    spis: tuple[bytes, ...]

    @classmethod
    def isakmp(cls, cookies: bytes) -> DeletePayload:
        return cls(DOI.IPSEC, ProtocolId.ISAKMP, 16, (bytes(cookies),))

    @classmethod
    def ipsec(cls, protocol_id: ProtocolId, spis: tuple[bytes, ...]) -> DeletePayload:
        return cls(DOI.IPSEC, protocol_id, 4, tuple(spis))

    def encode_body(self) -> bytes:
        if self.doi not in _DOIS:
            fail(NotifyType.DOI_NOT_SUPPORTED, NO_OFFSET, f"DOI {self.doi}")
        if int(self.protocol_id) not in _PROTOCOLS:
            fail(NotifyType.INVALID_PROTOCOL_ID, NO_OFFSET, f"protocol {self.protocol_id}")
        if not 1 <= self.spi_size <= MAX_SPI_SIZE:
            malformed(NO_OFFSET, f"SPI size {self.spi_size}")
        if not 1 <= len(self.spis) <= MAX_DELETE_SPIS:
            malformed(NO_OFFSET, f"{len(self.spis)} SPIs")
        if any(len(spi) != self.spi_size for spi in self.spis):
            malformed(NO_OFFSET, "SPI of the wrong size")
        head = _DELETE.pack(self.doi, self.protocol_id, self.spi_size, len(self.spis))
        return head + b"".join(self.spis)


def decode_delete(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> DeletePayload:
    if end - pos < _DELETE.size:
        malformed(base + pos, "delete payload shorter than its fixed fields")
    doi, protocol, spi_size, count = _DELETE.unpack_from(buf, pos)
    if doi not in _DOIS:
        fail(NotifyType.DOI_NOT_SUPPORTED, base + pos, f"DOI {doi}")
    if protocol not in _PROTOCOLS:
        fail(NotifyType.INVALID_PROTOCOL_ID, base + pos + 4, f"protocol {protocol}")
    if not 1 <= spi_size <= MAX_SPI_SIZE:
        malformed(base + pos + 5, f"SPI size {spi_size}")
    if not 1 <= count <= MAX_DELETE_SPIS:
        malformed(base + pos + 6, f"{count} SPIs")
    start = pos + _DELETE.size
    if end - start != spi_size * count:
        malformed(base + pos + 6, f"{count} SPIs of {spi_size} bytes do not fill the payload")
    spis = tuple(bytes(buf[i : i + spi_size]) for i in range(start, end, spi_size))
    return DeletePayload(doi, ProtocolId(protocol), spi_size, spis)
