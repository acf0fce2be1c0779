"""The DER Distinguished Name of an ID_DER_ASN1_DN payload, as an `x509.Name`.

`cryptography` has no public loader for a bare Name, and a DN identity must be compared as a
Name (attribute types and values), not as bytes: strongSwan encodes the DN it sends from its
configuration, and picks other string types (PrintableString, UTF8String) than the
certificate or our own encoder does. The decoder is small and strict: definite lengths of at
most two bytes, a fixed depth (Name > RDN set > attribute sequence > OID, string), string
types only, every length checked against its container, no recursion. `ike cmd=list` shows
DN identities with it, and the negotiator matches DN identities with it.

`cryptography.x509` is imported by the functions that build a Name, not with this module:
`ike` imports it to show identities and most listings have no DN identity (30 ms of every
`ike` start otherwise). The negotiator child loads x509 at start-up with its certificate
code (child_negotiator.core.certificates), before its sandbox, so in the child the import
below finds the loaded module and opens no file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from cryptography import x509

_DER_SEQUENCE, _DER_SET, _DER_OID = 0x30, 0x31, 0x06
_DER_STRINGS: dict[int, str] = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x16: "ascii",  # IA5String
    0x14: "latin-1",  # TeletexString, read as Latin-1 as most software does
    0x1E: "utf-16-be",  # BMPString
    0x1C: "utf-32-be",  # UniversalString
}
_MAX_OID_BYTES: Final = 32


def _der_item(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at pos, inside data[:end]."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 2 or pos + size > end:
            raise ValueError("bad length")
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _der_children(data: bytes, start: int, end: int, tag: int) -> list[tuple[int, int]]:
    """Content ranges of the items between start and end, each of which must have `tag`."""
    children = []
    while start < end:
        found, child_start, child_end = _der_item(data, start, end)
        if found != tag:
            raise ValueError("unexpected tag")
        children.append((child_start, child_end))
        start = child_end
    return children


def _der_oid(body: bytes) -> str:
    if not 1 <= len(body) <= _MAX_OID_BYTES or body[-1] & 0x80:
        raise ValueError("bad object identifier")
    arcs: list[int] = []
    value = 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(arc) for arc in [first, arcs[0] - 40 * first, *arcs[1:]])


def _der_attribute(data: bytes, start: int, end: int) -> x509.NameAttribute[str]:
    from cryptography import x509  # here, not at the top: see the module docstring

    oid_tag, oid_start, oid_end = _der_item(data, start, end)
    value_tag, value_start, value_end = _der_item(data, oid_end, end)
    if oid_tag != _DER_OID or value_end != end or value_tag not in _DER_STRINGS:
        raise ValueError("not an attribute")
    oid = x509.ObjectIdentifier(_der_oid(data[oid_start:oid_end]))
    value = data[value_start:value_end].decode(_DER_STRINGS[value_tag])
    return x509.NameAttribute(oid, value)


def parse_dn(der: bytes) -> x509.Name | None:
    """The Name the DER encodes, RDNs in DER order; None when the bytes are no Name of
    string attributes (or anything else is wrong with them)."""
    from cryptography import x509  # here, not at the top: see the module docstring

    try:
        tag, start, end = _der_item(der, 0, len(der))
        if tag != _DER_SEQUENCE or end != len(der):
            return None
        rdns = [
            x509.RelativeDistinguishedName(
                [_der_attribute(der, a, b) for a, b in _der_children(der, s, e, _DER_SEQUENCE)]
            )
            for s, e in _der_children(der, start, end, _DER_SET)
        ]
        return x509.Name(rdns)
    except (ValueError, TypeError):  # also UnicodeDecodeError, cryptography's own checks
        return None
