"""The fixed 28-byte ISAKMP header (RFC 2408 3.1)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ikepriv.isakmp.constants import (
    HEADER_LENGTH,
    ISAKMP_VERSION,
    ExchangeType,
    HeaderFlag,
    NotifyType,
)
from ikepriv.isakmp.isakmp_error import NO_OFFSET, fail, malformed
from ikepriv.isakmp.limits import DEFAULT_MAX_MESSAGE_SIZE, MAX_MESSAGE_SIZE

_HEADER = struct.Struct("!8s8sBBBBII")
_ZERO_COOKIE = bytes(8)
_KNOWN_FLAGS = int(HeaderFlag.ENCRYPTION | HeaderFlag.COMMIT | HeaderFlag.AUTHENTICATION_ONLY)
_EXCHANGES = frozenset(int(e) for e in ExchangeType if e is not ExchangeType.NONE)

# Field offsets, for error reports.
OFFSET_NEXT_PAYLOAD = 16
OFFSET_VERSION = 17
OFFSET_EXCHANGE = 18
OFFSET_FLAGS = 19
OFFSET_LENGTH = 24


@dataclass(frozen=True, slots=True)
class Header:
    """A decoded header. Version is not stored: anything but 1.0 is rejected.

    `next_payload` stays an int: in an encrypted message it names the first payload of the
    ciphertext, which may be any (even unknown) type.
    """

    icookie: bytes
    rcookie: bytes
    next_payload: int
    exchange_type: ExchangeType
    flags: HeaderFlag
    message_id: int
    length: int

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & HeaderFlag.ENCRYPTION)

    @property
    def cookies(self) -> bytes:
        """icookie | rcookie: the ISAKMP SA SPI of notify/delete payloads (RFC 2408 2.4)."""
        return self.icookie + self.rcookie


def decode_header(data: bytes | memoryview, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Header:
    """Decode and validate the header of a whole ISAKMP message.

    `data` is the complete message (a UDP 500 payload, or a UDP 4500 payload after the non-ESP
    marker): the header's length field must equal len(data).
    """
    size = len(data)
    if size > min(max_size, MAX_MESSAGE_SIZE):
        malformed(min(max_size, MAX_MESSAGE_SIZE), f"message of {size} bytes exceeds the cap")
    if size < HEADER_LENGTH:
        malformed(size, f"message of {size} bytes is shorter than the ISAKMP header")
    icookie, rcookie, next_payload, version, exchange, flags, message_id, length = (
        _HEADER.unpack_from(data, 0)
    )
    if icookie == _ZERO_COOKIE:
        fail(NotifyType.INVALID_COOKIE, 0, "initiator cookie is zero")
    if version >> 4 != ISAKMP_VERSION >> 4:
        fail(NotifyType.INVALID_MAJOR_VERSION, OFFSET_VERSION, f"major version {version >> 4}")
    if version & 0x0F != ISAKMP_VERSION & 0x0F:
        fail(NotifyType.INVALID_MINOR_VERSION, OFFSET_VERSION, f"minor version {version & 0xF}")
    if exchange not in _EXCHANGES:
        fail(NotifyType.INVALID_EXCHANGE_TYPE, OFFSET_EXCHANGE, f"exchange type {exchange}")
    if flags & ~_KNOWN_FLAGS:
        fail(NotifyType.INVALID_FLAGS, OFFSET_FLAGS, f"undefined flag bits 0x{flags:02x}")
    if length != size:
        fail(
            NotifyType.UNEQUAL_PAYLOAD_LENGTHS,
            OFFSET_LENGTH,
            f"header length {length} but the message has {size} bytes",
        )
    return Header(
        icookie=icookie,
        rcookie=rcookie,
        next_payload=next_payload,
        exchange_type=ExchangeType(exchange),
        flags=HeaderFlag(flags),
        message_id=message_id,
        length=length,
    )


def encode_header(header: Header) -> bytes:
    """The 28 header bytes exactly as the Header says (length and next payload included)."""
    check_header(header)
    return _HEADER.pack(
        header.icookie,
        header.rcookie,
        header.next_payload,
        ISAKMP_VERSION,
        header.exchange_type,
        header.flags,
        header.message_id,
        header.length,
    )


def check_header(header: Header) -> None:
    """Refuse to encode a header that decode_header would reject (apart from the length)."""
    if len(header.icookie) != 8 or len(header.rcookie) != 8:
        malformed(NO_OFFSET, "cookies must be 8 bytes")
    if header.icookie == _ZERO_COOKIE:
        fail(NotifyType.INVALID_COOKIE, NO_OFFSET, "initiator cookie is zero")
    if int(header.exchange_type) not in _EXCHANGES:
        fail(NotifyType.INVALID_EXCHANGE_TYPE, NO_OFFSET, f"exchange {header.exchange_type}")
    if int(header.flags) & ~_KNOWN_FLAGS:
        fail(NotifyType.INVALID_FLAGS, NO_OFFSET, "undefined flag bits")
    if not 0 <= header.next_payload <= 0xFF:
        malformed(NO_OFFSET, "next payload out of range")
    if not 0 <= header.message_id <= 0xFFFFFFFF:
        malformed(NO_OFFSET, "message ID out of range")
    if not HEADER_LENGTH <= header.length <= MAX_MESSAGE_SIZE:
        malformed(NO_OFFSET, f"length {header.length} out of range")
