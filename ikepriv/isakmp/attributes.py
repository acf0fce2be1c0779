"""Data attributes (RFC 2408 3.3): TV and TLV, in transforms, notifies and Mode Config.

An Attribute keeps exactly what is on the wire: a TV attribute holds an int (0..65535), a TLV
attribute holds its value bytes (so a 4-byte and an 8-byte Life Duration stay distinct). The
typed views at the bottom turn a tuple of attributes into dicts and lifetime pairs for the
negotiator; they do not change what the codec decodes or encodes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ikepriv.isakmp.constants import IkeAttr, IpsecAttr, NotifyType
from ikepriv.isakmp.isakmp_error import NO_OFFSET, fail, malformed

_ATTR = struct.Struct("!HH")
_AF_TV = 0x8000
MAX_ATTRIBUTE_TYPE = 0x7FFF

# Classes RFC 2409 Appendix A and RFC 2407 4.5 mark "B" (basic): they must be sent as TV.
# "V" classes may be TV when the value fits (peers send Life Duration that way).
IKE_BASIC: frozenset[int] = frozenset(
    {
        IkeAttr.ENCRYPTION_ALGORITHM,
        IkeAttr.HASH_ALGORITHM,
        IkeAttr.AUTHENTICATION_METHOD,
        IkeAttr.GROUP_DESCRIPTION,
        IkeAttr.GROUP_TYPE,
        IkeAttr.LIFE_TYPE,
        IkeAttr.PRF,
        IkeAttr.KEY_LENGTH,
        IkeAttr.FIELD_SIZE,
    }
)
IPSEC_BASIC: frozenset[int] = frozenset(
    {
        IpsecAttr.SA_LIFE_TYPE,
        IpsecAttr.GROUP_DESCRIPTION,
        IpsecAttr.ENCAPSULATION_MODE,
        IpsecAttr.AUTHENTICATION_ALGORITHM,
        IpsecAttr.KEY_LENGTH,
        IpsecAttr.KEY_ROUNDS,
        IpsecAttr.COMPRESS_DICTIONARY_SIZE,
        IpsecAttr.ECN_TUNNEL,
        IpsecAttr.EXTENDED_SEQUENCE_NUMBER,
    }
)


@dataclass(frozen=True, slots=True)
class Attribute:
    """One data attribute: `value` is an int for TV, bytes for TLV."""

    type: int
    value: int | bytes

    @property
    def tv(self) -> bool:
        return isinstance(self.value, int)

    @classmethod
    def basic(cls, attr_type: int, value: int) -> Attribute:
        return cls(int(attr_type), int(value))

    @classmethod
    def variable(cls, attr_type: int, value: bytes) -> Attribute:
        return cls(int(attr_type), bytes(value))

    @classmethod
    def integer(cls, attr_type: int, value: int) -> Attribute:
        """TV when the value fits 16 bits, else the shortest of a 4- or 8-byte TLV."""
        if value < 0 or value >= 1 << 64:
            raise ValueError(f"attribute value {value} out of range")
        if value <= 0xFFFF:
            return cls(int(attr_type), value)
        size = 4 if value <= 0xFFFFFFFF else 8
        return cls(int(attr_type), value.to_bytes(size, "big"))

    def as_int(self) -> int:
        """The numeric value: TV as is, TLV of 1..8 bytes big-endian."""
        if isinstance(self.value, int):
            return self.value
        if not 1 <= len(self.value) <= 8:
            fail(
                NotifyType.BAD_PROPOSAL_SYNTAX,
                NO_OFFSET,
                f"attribute {self.type}: {len(self.value)}-byte value is not an integer",
            )
        return int.from_bytes(self.value, "big")


def decode_attributes(
    buf: memoryview,
    pos: int,
    end: int,
    base: int,
    *,
    max_count: int,
    max_length: int,
    basic: frozenset[int] = frozenset(),
) -> tuple[Attribute, ...]:
    """Attributes filling buf[pos:end] exactly; `basic` classes must be TV."""
    out: list[Attribute] = []
    while pos < end:
        if len(out) >= max_count:
            malformed(base + pos, f"more than {max_count} attributes")
        if end - pos < 4:
            malformed(base + pos, "truncated attribute header")
        word, value = _ATTR.unpack_from(buf, pos)
        attr_type = word & MAX_ATTRIBUTE_TYPE
        if word & _AF_TV:
            out.append(Attribute(attr_type, value))
            pos += 4
            continue
        if attr_type in basic:
            fail(
                NotifyType.BAD_PROPOSAL_SYNTAX,
                base + pos,
                f"basic attribute {attr_type} sent in TLV form",
            )
        if value > max_length:
            malformed(base + pos + 2, f"attribute length {value} exceeds {max_length}")
        if value > end - pos - 4:
            malformed(base + pos + 2, f"attribute length {value} overruns its container")
        out.append(Attribute(attr_type, bytes(buf[pos + 4 : pos + 4 + value])))
        pos += 4 + value
    return tuple(out)


def check_attributes(
    attributes: tuple[Attribute, ...],
    *,
    max_count: int,
    max_length: int,
    basic: frozenset[int] = frozenset(),
) -> None:
    """Refuse to encode what decode_attributes would reject."""
    if len(attributes) > max_count:
        malformed(NO_OFFSET, f"more than {max_count} attributes")
    for attr in attributes:
        if not 0 <= attr.type <= MAX_ATTRIBUTE_TYPE:
            malformed(NO_OFFSET, f"attribute type {attr.type} out of range")
        if isinstance(attr.value, int):
            if not 0 <= attr.value <= 0xFFFF:
                malformed(NO_OFFSET, f"TV attribute value {attr.value} out of range")
        elif attr.type in basic:
            fail(NotifyType.BAD_PROPOSAL_SYNTAX, NO_OFFSET, f"basic attribute {attr.type} as TLV")
        elif len(attr.value) > max_length:
            malformed(NO_OFFSET, f"attribute value of {len(attr.value)} bytes")


def encode_attributes(attributes: Iterable[Attribute]) -> bytes:
    parts: list[bytes] = []
    for attr in attributes:
        if isinstance(attr.value, int):
            parts.append(_ATTR.pack(attr.type | _AF_TV, attr.value))
        else:
            parts.append(_ATTR.pack(attr.type, len(attr.value)))
            parts.append(attr.value)
    return b"".join(parts)


# --- typed views -------------------------------------------------------------------------

# Variable classes that carry a number rather than an opaque byte string.
_IKE_INTEGER_VARIABLE = frozenset({IkeAttr.LIFE_DURATION})
_IPSEC_INTEGER_VARIABLE = frozenset({IpsecAttr.SA_LIFE_DURATION})


def _to_dict(
    attributes: Iterable[Attribute],
    enum: type[IkeAttr] | type[IpsecAttr],
    integer: frozenset[int],
    skip: frozenset[int],
) -> dict[int, int | bytes]:
    out: dict[int, int | bytes] = {}
    known = frozenset(int(member) for member in enum)
    for attr in attributes:
        if attr.type in skip:
            continue
        key: int = enum(attr.type) if attr.type in known else attr.type
        if key in out:
            fail(NotifyType.BAD_PROPOSAL_SYNTAX, NO_OFFSET, f"attribute {key} repeated")
        out[key] = attr.as_int() if attr.tv or attr.type in integer else attr.value
    return out


def _lifetimes(
    attributes: Iterable[Attribute], life_type: int, life_duration: int
) -> tuple[tuple[int, int], ...]:
    """(life type, duration) pairs; RFC 2409 App. A: a duration follows its type."""
    pairs: list[tuple[int, int]] = []
    pending: int | None = None
    for attr in attributes:
        if attr.type == life_type:
            if pending is not None:
                fail(NotifyType.BAD_PROPOSAL_SYNTAX, NO_OFFSET, "life type without duration")
            pending = attr.as_int()
            if any(kind == pending for kind, _ in pairs):
                fail(NotifyType.BAD_PROPOSAL_SYNTAX, NO_OFFSET, f"life type {pending} repeated")
        elif attr.type == life_duration:
            if pending is None:
                fail(NotifyType.BAD_PROPOSAL_SYNTAX, NO_OFFSET, "life duration without type")
            pairs.append((pending, attr.as_int()))
            pending = None
    if pending is not None:
        fail(NotifyType.BAD_PROPOSAL_SYNTAX, NO_OFFSET, "life type without duration")
    return tuple(pairs)


_IKE_LIFE = frozenset({IkeAttr.LIFE_TYPE, IkeAttr.LIFE_DURATION})
_IPSEC_LIFE = frozenset({IpsecAttr.SA_LIFE_TYPE, IpsecAttr.SA_LIFE_DURATION})


def ike_attributes_to_dict(attributes: Iterable[Attribute]) -> dict[int, int | bytes]:
    """Phase 1 attributes by class (IkeAttr keys where known), lifetimes excluded.

    Basic values and integers become ints; GROUP_PRIME and the other opaque variable classes
    stay bytes. A repeated class raises IsakmpError(BAD_PROPOSAL_SYNTAX).
    """
    return _to_dict(attributes, IkeAttr, _IKE_INTEGER_VARIABLE, _IKE_LIFE)


def ipsec_attributes_to_dict(attributes: Iterable[Attribute]) -> dict[int, int | bytes]:
    """Phase 2 attributes by class (IpsecAttr keys where known), lifetimes excluded."""
    return _to_dict(attributes, IpsecAttr, _IPSEC_INTEGER_VARIABLE, _IPSEC_LIFE)


def ike_lifetimes(attributes: Iterable[Attribute]) -> tuple[tuple[int, int], ...]:
    """Phase 1 (LifeType, duration) pairs in wire order."""
    return _lifetimes(attributes, IkeAttr.LIFE_TYPE, IkeAttr.LIFE_DURATION)


def ipsec_lifetimes(attributes: Iterable[Attribute]) -> tuple[tuple[int, int], ...]:
    """Phase 2 (LifeType, duration) pairs in wire order."""
    return _lifetimes(attributes, IpsecAttr.SA_LIFE_TYPE, IpsecAttr.SA_LIFE_DURATION)


def build_attributes(
    values: Mapping[int, int | bytes],
    lifetimes: Iterable[tuple[int, int]] = (),
    *,
    life_type: int,
    life_duration: int,
) -> tuple[Attribute, ...]:
    """Attributes from a dict plus lifetime pairs: ints as Attribute.integer, bytes as TLV."""
    out = [
        Attribute.integer(k, v) if isinstance(v, int) else Attribute.variable(k, v)
        for k, v in values.items()
    ]
    for kind, duration in lifetimes:
        out.append(Attribute.basic(life_type, kind))
        out.append(Attribute.integer(life_duration, duration))
    return tuple(out)


def ike_attributes(
    values: Mapping[int, int | bytes], lifetimes: Iterable[tuple[int, int]] = ()
) -> tuple[Attribute, ...]:
    return build_attributes(
        values, lifetimes, life_type=IkeAttr.LIFE_TYPE, life_duration=IkeAttr.LIFE_DURATION
    )


def ipsec_attributes(
    values: Mapping[int, int | bytes], lifetimes: Iterable[tuple[int, int]] = ()
) -> tuple[Attribute, ...]:
    return build_attributes(
        values,
        lifetimes,
        life_type=IpsecAttr.SA_LIFE_TYPE,
        life_duration=IpsecAttr.SA_LIFE_DURATION,
    )
