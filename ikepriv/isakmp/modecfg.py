"""ATTRIBUTE payload (type 14) of Mode Config / XAUTH (draft-dukes-ike-mode-cfg 3.2).

The configuration message type (ModeCfgType) and the attribute classes stay ints: vendors
(Cisco Unity, XAUTH) use private ranges. Attributes with an empty TLV value are common in
REQUEST messages and are kept as b"".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from ikepriv.isakmp.attributes import (
    Attribute,
    check_attributes,
    decode_attributes,
    encode_attributes,
)
from ikepriv.isakmp.constants import PayloadType
from ikepriv.isakmp.isakmp_error import NO_OFFSET, malformed
from ikepriv.isakmp.limits import MAX_CFG_ATTRIBUTE_LENGTH, MAX_CFG_ATTRIBUTES
from ikepriv.isakmp.payloads import PayloadBase

_CFG = struct.Struct("!BBH")


@dataclass(frozen=True, slots=True)
class AttributePayload(PayloadBase):
    TYPE: ClassVar[int] = PayloadType.ATTRIBUTE
    cfg_type: int
    identifier: int
    attributes: tuple[Attribute, ...] = ()

    def encode_body(self) -> bytes:
        if not (0 <= self.cfg_type <= 0xFF and 0 <= self.identifier <= 0xFFFF):
            malformed(NO_OFFSET, "configuration type or identifier out of range")
        check_attributes(
            self.attributes, max_count=MAX_CFG_ATTRIBUTES, max_length=MAX_CFG_ATTRIBUTE_LENGTH
        )
        return _CFG.pack(self.cfg_type, 0, self.identifier) + encode_attributes(self.attributes)


def decode_attribute_payload(
    ptype: int, buf: memoryview, pos: int, end: int, base: int
) -> AttributePayload:
    if end - pos < _CFG.size:
        malformed(base + pos, "ATTRIBUTE payload shorter than its fixed fields")
    cfg_type, reserved, identifier = _CFG.unpack_from(buf, pos)
    if reserved:
        malformed(base + pos + 1, "ATTRIBUTE RESERVED is not zero")
    attributes = decode_attributes(
        buf,
        pos + _CFG.size,
        end,
        base,
        max_count=MAX_CFG_ATTRIBUTES,
        max_length=MAX_CFG_ATTRIBUTE_LENGTH,
    )
    return AttributePayload(cfg_type, identifier, attributes)
