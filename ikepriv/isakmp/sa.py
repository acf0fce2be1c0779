"""SA, Proposal and Transform payloads (RFC 2408 3.4-3.6, IPsec DOI RFC 2407 4.6.1).

The SA body nests proposals, which nest transforms, which carry attributes. Decoding is a
fixed-depth pair of loops, never recursion, and each level must fill its container exactly.
Only the IPsec DOI with SIT_IDENTITY_ONLY is accepted: SIT_SECRECY and SIT_INTEGRITY would
add labeled-domain fields no IKEv1 gateway uses.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

from ikepriv.isakmp.attributes import (
    IKE_BASIC,
    IPSEC_BASIC,
    Attribute,
    check_attributes,
    decode_attributes,
    encode_attributes,
)
from ikepriv.isakmp.constants import DOI, NotifyType, PayloadType, ProtocolId, Situation
from ikepriv.isakmp.isakmp_error import NO_OFFSET, fail, malformed
from ikepriv.isakmp.limits import (
    MAX_ATTRIBUTE_LENGTH,
    MAX_ATTRIBUTES,
    MAX_PROPOSALS,
    MAX_TRANSFORMS,
)
from ikepriv.isakmp.payloads import PayloadBase

_SA = struct.Struct("!II")
_PROPOSAL = struct.Struct("!BBHBBBB")
_TRANSFORM = struct.Struct("!BBHBBH")
_PROPOSAL_HEADER = 8
_TRANSFORM_HEADER = 8

# SPI sizes per protocol: RFC 2408 2.4 (ISAKMP: none or both cookies), RFC 2407 4.5 (AH,
# ESP: 4), RFC 3173 4.1 (IPCOMP: 2-byte CPI, optionally sent in 4 bytes).
SPI_SIZES: dict[int, frozenset[int]] = {
    ProtocolId.ISAKMP: frozenset({0, 16}),
    ProtocolId.IPSEC_AH: frozenset({4}),
    ProtocolId.IPSEC_ESP: frozenset({4}),
    ProtocolId.IPCOMP: frozenset({2, 4}),
}
# Which attribute classes must be TV, by the protocol the transform belongs to.
BASIC_ATTRIBUTES: dict[int, frozenset[int]] = {
    ProtocolId.ISAKMP: IKE_BASIC,
    ProtocolId.IPSEC_AH: IPSEC_BASIC,
    ProtocolId.IPSEC_ESP: IPSEC_BASIC,
    ProtocolId.IPCOMP: IPSEC_BASIC,
}


@dataclass(frozen=True, slots=True)
class Transform:
    """One transform: `transform_id` is an int in the namespace of the proposal's protocol."""

    number: int
    transform_id: int
    attributes: tuple[Attribute, ...] = ()


@dataclass(frozen=True, slots=True)
class Proposal:
    """Proposals with equal numbers form one AND-ed protection suite (RFC 2408 4.2)."""

    number: int
    protocol_id: ProtocolId
    spi: bytes
    transforms: tuple[Transform, ...]


@dataclass(frozen=True, slots=True)
class SAPayload(PayloadBase):
    """Security Association payload of the IPsec DOI."""

    TYPE: ClassVar[int] = PayloadType.SA
    doi: int
    situation: int
    proposals: tuple[Proposal, ...]

    @classmethod
    def ipsec(cls, proposals: Iterable[Proposal]) -> SAPayload:
        """The only kind accepted: DOI IPsec, SIT_IDENTITY_ONLY."""
        return cls(DOI.IPSEC, Situation.IDENTITY_ONLY, tuple(proposals))

    def encode_body(self) -> bytes:
        check_sa(self)
        parts = [_SA.pack(self.doi, self.situation)]
        last_p = len(self.proposals) - 1
        for i, prop in enumerate(self.proposals):
            tparts: list[bytes] = []
            last_t = len(prop.transforms) - 1
            for j, tr in enumerate(prop.transforms):
                attrs = encode_attributes(tr.attributes)
                tparts.append(
                    _TRANSFORM.pack(
                        PayloadType.TRANSFORM if j < last_t else PayloadType.NONE,
                        0,
                        _TRANSFORM_HEADER + len(attrs),
                        tr.number,
                        tr.transform_id,
                        0,
                    )
                )
                tparts.append(attrs)
            body = prop.spi + b"".join(tparts)
            parts.append(
                _PROPOSAL.pack(
                    PayloadType.PROPOSAL if i < last_p else PayloadType.NONE,
                    0,
                    _PROPOSAL_HEADER + len(body),
                    prop.number,
                    prop.protocol_id,
                    len(prop.spi),
                    len(prop.transforms),
                )
            )
            parts.append(body)
        return b"".join(parts)


def check_sa(sa: SAPayload) -> None:
    """Refuse to encode an SA that decode_sa would reject."""
    if sa.doi != DOI.IPSEC:
        fail(NotifyType.DOI_NOT_SUPPORTED, NO_OFFSET, f"DOI {sa.doi}")
    if sa.situation != Situation.IDENTITY_ONLY:
        fail(NotifyType.SITUATION_NOT_SUPPORTED, NO_OFFSET, f"situation {sa.situation:#x}")
    if not 1 <= len(sa.proposals) <= MAX_PROPOSALS:
        fail(NotifyType.BAD_PROPOSAL_SYNTAX, NO_OFFSET, f"{len(sa.proposals)} proposals")
    for prop in sa.proposals:
        if not 0 <= prop.number <= 0xFF:
            malformed(NO_OFFSET, f"proposal number {prop.number}")
        if prop.protocol_id not in SPI_SIZES:
            fail(NotifyType.INVALID_PROTOCOL_ID, NO_OFFSET, f"protocol {prop.protocol_id}")
        if len(prop.spi) not in SPI_SIZES[prop.protocol_id]:
            fail(NotifyType.INVALID_SPI, NO_OFFSET, f"{len(prop.spi)}-byte SPI")
        if not 1 <= len(prop.transforms) <= MAX_TRANSFORMS:
            fail(NotifyType.BAD_PROPOSAL_SYNTAX, NO_OFFSET, f"{len(prop.transforms)} transforms")
        for tr in prop.transforms:
            if not (0 <= tr.number <= 0xFF and 0 <= tr.transform_id <= 0xFF):
                malformed(NO_OFFSET, "transform number or ID out of range")
            check_attributes(
                tr.attributes,
                max_count=MAX_ATTRIBUTES,
                max_length=MAX_ATTRIBUTE_LENGTH,
                basic=BASIC_ATTRIBUTES[prop.protocol_id],
            )


def decode_sa(ptype: int, buf: memoryview, pos: int, end: int, base: int) -> SAPayload:
    if end - pos < _SA.size:
        malformed(base + pos, "SA payload shorter than DOI and situation")
    doi, situation = _SA.unpack_from(buf, pos)
    if doi != DOI.IPSEC:
        fail(NotifyType.DOI_NOT_SUPPORTED, base + pos, f"DOI {doi}")
    if situation != Situation.IDENTITY_ONLY:
        fail(NotifyType.SITUATION_NOT_SUPPORTED, base + pos + 4, f"situation {situation:#x}")
    pos += _SA.size
    if pos == end:
        fail(NotifyType.BAD_PROPOSAL_SYNTAX, base + pos, "SA without proposals")
    proposals: list[Proposal] = []
    more = True
    while more:
        if len(proposals) >= MAX_PROPOSALS:
            malformed(base + pos, f"more than {MAX_PROPOSALS} proposals")
        if end - pos < _PROPOSAL_HEADER:
            malformed(base + pos, "truncated proposal header")
        nxt, reserved, plen, number, proto, spi_size, count = _PROPOSAL.unpack_from(buf, pos)
        if nxt not in (PayloadType.NONE, PayloadType.PROPOSAL):
            fail(NotifyType.BAD_PROPOSAL_SYNTAX, base + pos, f"next payload {nxt} in SA")
        if reserved:
            malformed(base + pos + 1, "proposal RESERVED is not zero")
        if plen < _PROPOSAL_HEADER or plen > end - pos:
            malformed(base + pos + 2, f"proposal length {plen} does not fit")
        if proto not in SPI_SIZES:
            fail(NotifyType.INVALID_PROTOCOL_ID, base + pos + 5, f"protocol {proto}")
        if spi_size not in SPI_SIZES[proto]:
            fail(NotifyType.INVALID_SPI, base + pos + 6, f"SPI size {spi_size} for {proto}")
        if not 1 <= count <= MAX_TRANSFORMS:
            fail(NotifyType.BAD_PROPOSAL_SYNTAX, base + pos + 7, f"{count} transforms")
        pend = pos + plen
        tpos = pos + _PROPOSAL_HEADER + spi_size
        if tpos > pend:
            malformed(base + pos + 2, "proposal shorter than its SPI")
        spi = bytes(buf[tpos - spi_size : tpos])
        basic = BASIC_ATTRIBUTES[proto]
        transforms: list[Transform] = []
        for index in range(count):
            if pend - tpos < _TRANSFORM_HEADER:
                malformed(base + tpos, "truncated transform header")
            tnxt, tres, tlen, tnum, tid, tres2 = _TRANSFORM.unpack_from(buf, tpos)
            expected = PayloadType.TRANSFORM if index < count - 1 else PayloadType.NONE
            if tnxt != expected:
                fail(
                    NotifyType.BAD_PROPOSAL_SYNTAX,
                    base + tpos,
                    f"transform {index + 1} of {count} has next payload {tnxt}",
                )
            if tres:
                malformed(base + tpos + 1, "transform RESERVED is not zero")
            if tres2:
                malformed(base + tpos + 6, "transform RESERVED2 is not zero")
            if tlen < _TRANSFORM_HEADER or tlen > pend - tpos:
                malformed(base + tpos + 2, f"transform length {tlen} does not fit")
            attrs = decode_attributes(
                buf,
                tpos + _TRANSFORM_HEADER,
                tpos + tlen,
                base,
                max_count=MAX_ATTRIBUTES,
                max_length=MAX_ATTRIBUTE_LENGTH,
                basic=basic,
            )
            transforms.append(Transform(tnum, tid, attrs))
            tpos += tlen
        if tpos != pend:
            malformed(base + tpos, "bytes after the last transform of a proposal")
        proposals.append(Proposal(number, ProtocolId(proto), spi, tuple(transforms)))
        pos = pend
        more = nxt == PayloadType.PROPOSAL
    if pos != end:
        malformed(base + pos, "bytes after the last proposal of an SA")
    return SAPayload(doi, situation, tuple(proposals))
