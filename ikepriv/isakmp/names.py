"""Human-readable names for numbers that may be outside the enums.

The codec stores plain ints wherever the IANA registry is open-ended (payload types, notify
types, transform IDs, attribute classes and values), so that unknown and private-use values
round-trip. These helpers turn them into names for logs and ikedump.
"""

from __future__ import annotations

from enum import IntEnum

from ikepriv.isakmp.constants import (
    AhTransformId,
    AuthAlgorithm,
    AuthMethod,
    EncapsulationMode,
    EspTransformId,
    GroupId,
    GroupType,
    IkeAttr,
    IkeEncryption,
    IkeHash,
    IkeTransformId,
    IpsecAttr,
    LifeType,
    NotifyType,
    PayloadType,
    ProtocolId,
)

# Private-use ranges (RFC 2408 3.1, 3.14.1; RFC 2407 4.6.3) so an unknown number says whether
# it is unassigned or vendor space.
_PRIVATE: dict[type[IntEnum], tuple[tuple[int, int], ...]] = {
    PayloadType: ((128, 255),),
    NotifyType: ((8192, 16383), (32768, 40959)),
}

TRANSFORM_ID_ENUM: dict[int, type[IntEnum]] = {
    ProtocolId.ISAKMP: IkeTransformId,
    ProtocolId.IPSEC_AH: AhTransformId,
    ProtocolId.IPSEC_ESP: EspTransformId,
}

ATTRIBUTE_ENUM: dict[int, type[IntEnum]] = {
    ProtocolId.ISAKMP: IkeAttr,
    ProtocolId.IPSEC_AH: IpsecAttr,
    ProtocolId.IPSEC_ESP: IpsecAttr,
    ProtocolId.IPCOMP: IpsecAttr,
}

# Attribute class -> enum of its values, per attribute family.
IKE_VALUE_ENUM: dict[int, type[IntEnum]] = {
    IkeAttr.ENCRYPTION_ALGORITHM: IkeEncryption,
    IkeAttr.HASH_ALGORITHM: IkeHash,
    IkeAttr.AUTHENTICATION_METHOD: AuthMethod,
    IkeAttr.GROUP_DESCRIPTION: GroupId,
    IkeAttr.GROUP_TYPE: GroupType,
    IkeAttr.LIFE_TYPE: LifeType,
}
IPSEC_VALUE_ENUM: dict[int, type[IntEnum]] = {
    IpsecAttr.SA_LIFE_TYPE: LifeType,
    IpsecAttr.GROUP_DESCRIPTION: GroupId,
    IpsecAttr.ENCAPSULATION_MODE: EncapsulationMode,
    IpsecAttr.AUTHENTICATION_ALGORITHM: AuthAlgorithm,
}


def number_name(enum: type[IntEnum], value: int) -> str:
    """Name of `value` in `enum`, else PRIVATE_<n> or UNKNOWN_<n>."""
    try:
        return enum(value).name
    except ValueError:
        pass
    for low, high in _PRIVATE.get(enum, ()):
        if low <= value <= high:
            return f"PRIVATE_{value}"
    return f"UNKNOWN_{value}"


def payload_type_name(value: int) -> str:
    return number_name(PayloadType, value)


def notify_type_name(value: int) -> str:
    return number_name(NotifyType, value)


def transform_id_name(protocol_id: int, transform_id: int) -> str:
    enum = TRANSFORM_ID_ENUM.get(protocol_id)
    return number_name(enum, transform_id) if enum else f"UNKNOWN_{transform_id}"


def attribute_name(protocol_id: int, attr_type: int) -> str:
    enum = ATTRIBUTE_ENUM.get(protocol_id)
    return number_name(enum, attr_type) if enum else f"UNKNOWN_{attr_type}"


def attribute_value_name(protocol_id: int, attr_type: int, value: int) -> str | None:
    """Name of a basic attribute value when its class has an enum (None: plain number)."""
    table = IKE_VALUE_ENUM if protocol_id == ProtocolId.ISAKMP else IPSEC_VALUE_ENUM
    enum = table.get(attr_type)
    return number_name(enum, value) if enum else None
