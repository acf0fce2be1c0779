"""The IKEv1 fragment payload (type 132) and the datagrams that carry one.

IKEv1 fragmentation is no RFC: Cisco and Microsoft defined it, and strongSwan
(`fragmentation = yes`), libreswan (`ike-frag`) and racoon implement it the same way. A
message too large for the path is cut, as it would go on the wire (encrypted or not), into
slices; each slice travels in a datagram of its own: the original ISAKMP header (cookies,
exchange type) with next payload 132, followed by exactly one fragment payload::

    ! Next Payload  !   RESERVED    !         Payload Length        !
    !          Fragment ID          !  Fragment Num !     Flags     !
    ~                         Fragment Data                         ~

Fragment numbers start at 1; flag LAST (0x01) marks the final slice. The fragment payload
itself is never encrypted (racoon sets the E flag on the header all the same, which is why
`decode_fragment_datagram` ignores it). Reassembly is the negotiator's
(child_negotiator/core/fragments.py); this module only parses and builds, strictly.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from ikepriv.isakmp.constants import HEADER_LENGTH, PayloadType
from ikepriv.isakmp.header import OFFSET_NEXT_PAYLOAD, Header, decode_header
from ikepriv.isakmp.isakmp_error import NO_OFFSET, malformed
from ikepriv.isakmp.limits import DEFAULT_MAX_MESSAGE_SIZE, MAX_FRAGMENT_NUMBER
from ikepriv.isakmp.payloads import PayloadBase

LAST_FRAGMENT = 0x01  # the only flag defined
_FIXED = struct.Struct("!HBB")  # fragment ID, number, flags
_GENERIC = struct.Struct("!BBH")
FRAGMENT_HEADER = _GENERIC.size + _FIXED.size  # 8: generic header and the fixed fields


@dataclass(frozen=True, slots=True)
class FragmentPayload(PayloadBase):
    """One slice of a message: `number` counts from 1, `last` marks the final one."""

    TYPE: ClassVar[int] = PayloadType.FRAGMENT
    fragment_id: int
    number: int
    last: bool
    data: bytes

    def encode_body(self) -> bytes:
        _check(self.fragment_id, self.number, len(self.data), NO_OFFSET)
        flags = LAST_FRAGMENT if self.last else 0
        return _FIXED.pack(self.fragment_id, self.number, flags) + self.data


def _check(fragment_id: int, number: int, size: int, offset: int) -> None:
    if not 0 <= fragment_id <= 0xFFFF:
        malformed(offset, f"fragment ID {fragment_id} out of range")
    # strongSwan refuses number 0 too (fragment_payload.c verify()).
    if not 1 <= number <= MAX_FRAGMENT_NUMBER:
        malformed(offset, f"fragment number {number} (allowed 1..{MAX_FRAGMENT_NUMBER})")
    if size < 1:
        malformed(offset, "fragment without data")


def decode_fragment(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> FragmentPayload:
    """The body of a fragment payload (the chain decoder's signature; see payloads.py)."""
    if end - pos < _FIXED.size:
        malformed(base + pos, f"fragment payload body of {end - pos} bytes")
    fragment_id, number, flags = _FIXED.unpack_from(buf, pos)
    if flags & ~LAST_FRAGMENT:
        malformed(base + pos + 3, f"undefined fragment flags 0x{flags:02x}")
    _check(fragment_id, number, end - pos - _FIXED.size, base + pos)
    return FragmentPayload(
        fragment_id, number, bool(flags & LAST_FRAGMENT), bytes(buf[pos + _FIXED.size : end])
    )


def is_fragment_datagram(data: bytes | memoryview) -> bool:
    """Cheap test before any decoding: does the header name a fragment payload first?"""
    return len(data) >= HEADER_LENGTH and data[OFFSET_NEXT_PAYLOAD] == PayloadType.FRAGMENT


def decode_fragment_datagram(
    data: bytes | memoryview, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> tuple[Header, FragmentPayload]:
    """A datagram that carries one fragment: the header and the fragment, nothing else.

    The header is checked as for any message (version, cookies, exchange type, flags,
    length); its E flag is ignored (racoon sets it, the fragment is plaintext all the same).
    The single fragment payload must fill the datagram exactly. Raises IsakmpError.
    """
    header = decode_header(data, max_size=max_size)
    if header.next_payload != PayloadType.FRAGMENT:
        malformed(OFFSET_NEXT_PAYLOAD, f"first payload {header.next_payload} is no fragment")
    view = memoryview(data)
    if len(view) - HEADER_LENGTH < FRAGMENT_HEADER:
        malformed(HEADER_LENGTH, "datagram too short for a fragment payload")
    nxt, reserved, length = _GENERIC.unpack_from(view, HEADER_LENGTH)
    if nxt != PayloadType.NONE:
        malformed(HEADER_LENGTH, f"payload {nxt} after a fragment payload")
    if reserved:
        malformed(HEADER_LENGTH + 1, "generic header RESERVED is not zero")
    if length != len(view) - HEADER_LENGTH:
        malformed(HEADER_LENGTH + 2, f"fragment payload length {length} does not fill the message")
    body = HEADER_LENGTH + _GENERIC.size
    return header, decode_fragment(PayloadType.FRAGMENT, view, body, len(view), 0)


def encode_fragment_datagram(header: bytes, payload: FragmentPayload) -> bytes:
    """A fragment datagram from the first 28 bytes of the message it is cut from: the same
    cookies, version, exchange type and message ID; next payload 132, no flags (the fragment
    is plaintext; strongSwan sends none either) and the new length."""
    if len(header) < HEADER_LENGTH:
        malformed(NO_OFFSET, "fragment needs the 28-byte header of its message")
    body = payload.encode_body()
    length = HEADER_LENGTH + _GENERIC.size + len(body)
    return b"".join(
        (
            header[:OFFSET_NEXT_PAYLOAD],
            bytes((PayloadType.FRAGMENT, header[OFFSET_NEXT_PAYLOAD + 1], header[18], 0)),
            header[20:24],
            length.to_bytes(4, "big"),
            _GENERIC.pack(PayloadType.NONE, 0, _GENERIC.size + len(body)),
            body,
        )
    )
