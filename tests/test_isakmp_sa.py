"""SA / Proposal / Transform payloads and data attributes: exact decoding, typed views,
strict rejects with their notify type and offset."""

from __future__ import annotations

import struct

import pytest

from ikepriv.isakmp import (
    Attribute,
    IsakmpError,
    Proposal,
    SAPayload,
    Transform,
    decode_message,
    encode_message,
    encode_payload_chain,
    ike_attributes,
    ike_attributes_to_dict,
    ike_lifetimes,
    ipsec_attributes,
    ipsec_attributes_to_dict,
    ipsec_lifetimes,
)
from ikepriv.isakmp.constants import (
    EncapsulationMode,
    EspTransformId,
    GroupId,
    IkeAttr,
    IkeEncryption,
    IpsecAttr,
    LifeType,
    NotifyType,
    PayloadType,
    ProtocolId,
)

N = NotifyType
ICOOKIE = bytes.fromhex("a1a2a3a4a5a6a7a8")
SA_BODY = 32  # offset of the SA body in a message that starts with it
PROPOSAL_AT = SA_BODY + 8
TRANSFORM_AT = PROPOSAL_AT + 8  # with SPI size 0


def tv(attr_type: int, value: int) -> bytes:
    return struct.pack("!HH", 0x8000 | attr_type, value)


def tlv(attr_type: int, value: bytes) -> bytes:
    return struct.pack("!HH", attr_type, len(value)) + value


def transform(
    attrs: bytes, *, nxt: int = 0, number: int = 1, tid: int = 1, res: int = 0, res2: int = 0
) -> bytes:
    return struct.pack("!BBHBBH", nxt, res, 8 + len(attrs), number, tid, res2) + attrs


def proposal(
    transforms: bytes,
    count: int,
    *,
    nxt: int = 0,
    number: int = 1,
    protocol: int = ProtocolId.ISAKMP,
    spi: bytes = b"",
    res: int = 0,
    length: int | None = None,
) -> bytes:
    size = 8 + len(spi) + len(transforms) if length is None else length
    head = struct.pack("!BBHBBBB", nxt, res, size, number, protocol, len(spi), count)
    return head + spi + transforms


def sa_message(proposals: bytes, *, doi: int = 1, situation: int = 1) -> bytes:
    body = struct.pack("!II", doi, situation) + proposals
    payload = struct.pack("!BBH", 0, 0, 4 + len(body)) + body
    return (
        struct.pack("!8s8sBBBBII", ICOOKIE, bytes(8), 1, 0x10, 2, 0, 0, 28 + len(payload)) + payload
    )


def rejects(data: bytes, notify: NotifyType, offset: int) -> None:
    with pytest.raises(IsakmpError) as info:
        decode_message(data)
    assert (info.value.notify, info.value.offset) == (notify, offset), info.value


IKE_ATTRS = (
    tv(IkeAttr.ENCRYPTION_ALGORITHM, IkeEncryption.AES_CBC)
    + tv(IkeAttr.KEY_LENGTH, 256)
    + tv(IkeAttr.LIFE_TYPE, LifeType.SECONDS)
    + tlv(IkeAttr.LIFE_DURATION, (86400).to_bytes(4, "big"))
    + tv(IkeAttr.LIFE_TYPE, LifeType.KILOBYTES)
    + tlv(IkeAttr.LIFE_DURATION, (1 << 40).to_bytes(8, "big"))
)


def good_sa() -> bytes:
    return sa_message(
        proposal(transform(IKE_ATTRS, nxt=3) + transform(tv(1, 5), number=2), 2, nxt=2)
        + proposal(
            transform(
                tv(IpsecAttr.ENCAPSULATION_MODE, 1)
                + tlv(IpsecAttr.SA_LIFE_DURATION, b"\0\0\x0e\x10")
            ),
            1,
            number=2,
            protocol=ProtocolId.IPSEC_ESP,
            spi=b"\x11\x22\x33\x44",
        )
    )


def test_sa_decodes_exactly_and_reencodes() -> None:
    data = good_sa()
    (sa,) = decode_message(data).payloads
    assert isinstance(sa, SAPayload)
    assert sa == SAPayload.ipsec(
        [
            Proposal(
                1,
                ProtocolId.ISAKMP,
                b"",
                (
                    Transform(
                        1,
                        1,
                        (
                            Attribute(1, 7),
                            Attribute(14, 256),
                            Attribute(11, 1),
                            Attribute(12, (86400).to_bytes(4, "big")),
                            Attribute(11, 2),
                            Attribute(12, (1 << 40).to_bytes(8, "big")),
                        ),
                    ),
                    Transform(2, 1, (Attribute(1, 5),)),
                ),
            ),
            Proposal(
                2,
                ProtocolId.IPSEC_ESP,
                b"\x11\x22\x33\x44",
                (Transform(1, 1, (Attribute(4, 1), Attribute(2, b"\0\0\x0e\x10"))),),
            ),
        ]
    )
    assert encode_message(decode_message(data)) == data
    attrs = sa.proposals[0].transforms[0].attributes
    assert ike_attributes_to_dict(attrs) == {
        IkeAttr.ENCRYPTION_ALGORITHM: IkeEncryption.AES_CBC,
        IkeAttr.KEY_LENGTH: 256,
    }
    assert ike_lifetimes(attrs) == ((LifeType.SECONDS, 86400), (LifeType.KILOBYTES, 1 << 40))
    assert [a.tv for a in attrs] == [True, True, True, False, True, False]


def test_attribute_builders_pick_tv_or_tlv() -> None:
    assert Attribute.integer(12, 3600) == Attribute(12, 3600)
    assert Attribute.integer(12, 86400) == Attribute(12, b"\x00\x01\x51\x80")
    assert Attribute.integer(12, 1 << 33) == Attribute(12, (1 << 33).to_bytes(8, "big"))
    attrs = ipsec_attributes(
        {IpsecAttr.ENCAPSULATION_MODE: EncapsulationMode.TUNNEL, IpsecAttr.KEY_LENGTH: 128},
        [(LifeType.SECONDS, 100000)],
    )
    assert ipsec_attributes_to_dict(attrs) == {
        IpsecAttr.ENCAPSULATION_MODE: EncapsulationMode.TUNNEL,
        IpsecAttr.KEY_LENGTH: 128,
    }
    assert ipsec_lifetimes(attrs) == ((LifeType.SECONDS, 100000),)
    prime = bytes(range(1, 97))
    ike = ike_attributes({IkeAttr.GROUP_PRIME: prime, 30000: 5})
    assert ike_attributes_to_dict(ike) == {IkeAttr.GROUP_PRIME: prime, 30000: 5}


@pytest.mark.parametrize(
    "attrs",
    [
        (Attribute(1, 7), Attribute(1, 5)),  # repeated class
        (Attribute(12, 100),),  # duration without a type
        (Attribute(11, 1),),  # type without a duration
        (Attribute(11, 1), Attribute(12, 5), Attribute(11, 1), Attribute(12, 6)),
        (Attribute(11, 1), Attribute(12, b"")),  # not an integer
        (Attribute(11, 1), Attribute(12, bytes(9))),
    ],
)
def test_typed_views_reject_inconsistent_attributes(attrs: tuple[Attribute, ...]) -> None:
    with pytest.raises(IsakmpError) as info:
        ike_attributes_to_dict(attrs)
        ike_lifetimes(attrs)
    assert info.value.notify is N.BAD_PROPOSAL_SYNTAX and info.value.offset == -1


ONE = transform(tv(1, 7))


@pytest.mark.parametrize(
    ("data", "notify", "offset"),
    [
        (sa_message(proposal(ONE, 1), doi=0), N.DOI_NOT_SUPPORTED, SA_BODY),
        (sa_message(proposal(ONE, 1), doi=2), N.DOI_NOT_SUPPORTED, SA_BODY),
        (sa_message(proposal(ONE, 1), situation=0), N.SITUATION_NOT_SUPPORTED, SA_BODY + 4),
        (sa_message(proposal(ONE, 1), situation=3), N.SITUATION_NOT_SUPPORTED, SA_BODY + 4),
        (sa_message(proposal(ONE, 1), situation=5), N.SITUATION_NOT_SUPPORTED, SA_BODY + 4),
        (sa_message(proposal(ONE, 1), situation=9), N.SITUATION_NOT_SUPPORTED, SA_BODY + 4),
        (sa_message(b""), N.BAD_PROPOSAL_SYNTAX, PROPOSAL_AT),
        (sa_message(proposal(ONE, 1, nxt=3)), N.BAD_PROPOSAL_SYNTAX, PROPOSAL_AT),
        (sa_message(proposal(ONE, 1, nxt=2)), N.PAYLOAD_MALFORMED, TRANSFORM_AT + 12),
        (sa_message(proposal(ONE, 1, res=1)), N.PAYLOAD_MALFORMED, PROPOSAL_AT + 1),
        (sa_message(proposal(ONE, 1, length=7)), N.PAYLOAD_MALFORMED, PROPOSAL_AT + 2),
        (sa_message(proposal(ONE, 1, length=21)), N.PAYLOAD_MALFORMED, PROPOSAL_AT + 2),
        (sa_message(proposal(ONE, 1, length=16) + bytes(4)), N.PAYLOAD_MALFORMED, TRANSFORM_AT + 2),
        (sa_message(proposal(ONE, 1) + bytes(4)), N.PAYLOAD_MALFORMED, TRANSFORM_AT + 12),
        (sa_message(proposal(ONE, 1, protocol=0)), N.INVALID_PROTOCOL_ID, PROPOSAL_AT + 5),
        (sa_message(proposal(ONE, 1, protocol=9)), N.INVALID_PROTOCOL_ID, PROPOSAL_AT + 5),
        (sa_message(proposal(ONE, 1, spi=bytes(4))), N.INVALID_SPI, PROPOSAL_AT + 6),
        (sa_message(proposal(ONE, 1, protocol=3)), N.INVALID_SPI, PROPOSAL_AT + 6),
        (sa_message(proposal(ONE, 1, protocol=2, spi=bytes(16))), N.INVALID_SPI, PROPOSAL_AT + 6),
        (sa_message(proposal(b"", 0)), N.BAD_PROPOSAL_SYNTAX, PROPOSAL_AT + 7),
        (sa_message(proposal(ONE, 33)), N.BAD_PROPOSAL_SYNTAX, PROPOSAL_AT + 7),
        (sa_message(proposal(ONE, 2)), N.BAD_PROPOSAL_SYNTAX, TRANSFORM_AT),
        (sa_message(proposal(ONE + ONE, 1)), N.PAYLOAD_MALFORMED, TRANSFORM_AT + 12),
        (sa_message(proposal(transform(b"", nxt=3) + ONE, 1)), N.BAD_PROPOSAL_SYNTAX, TRANSFORM_AT),
        (sa_message(proposal(transform(b"", nxt=2), 1)), N.BAD_PROPOSAL_SYNTAX, TRANSFORM_AT),
        (sa_message(proposal(transform(b"", res=1), 1)), N.PAYLOAD_MALFORMED, TRANSFORM_AT + 1),
        (sa_message(proposal(transform(b"", res2=1), 1)), N.PAYLOAD_MALFORMED, TRANSFORM_AT + 6),
        (sa_message(proposal(bytes(7), 1)), N.PAYLOAD_MALFORMED, TRANSFORM_AT),
        # attributes: truncated header, TLV overrun, basic class in TLV form, over-long value
        (sa_message(proposal(transform(b"\x80\x01"), 1)), N.PAYLOAD_MALFORMED, TRANSFORM_AT + 8),
        (
            sa_message(proposal(transform(tlv(12, bytes(4))[:-1]), 1)),
            N.PAYLOAD_MALFORMED,
            TRANSFORM_AT + 10,
        ),
        (
            sa_message(proposal(transform(tlv(IkeAttr.ENCRYPTION_ALGORITHM, b"\0\x07")), 1)),
            N.BAD_PROPOSAL_SYNTAX,
            TRANSFORM_AT + 8,
        ),
        (
            sa_message(proposal(transform(tlv(IkeAttr.GROUP_PRIME, bytes(1025))), 1)),
            N.PAYLOAD_MALFORMED,
            TRANSFORM_AT + 10,
        ),
        (
            sa_message(proposal(transform(tv(1, 7) * 33), 1)),
            N.PAYLOAD_MALFORMED,
            TRANSFORM_AT + 8 + 32 * 4,
        ),
    ],
)
def test_sa_rejects(data: bytes, notify: NotifyType, offset: int) -> None:
    rejects(data, notify, offset)


def test_esp_basic_attribute_in_tlv_form_is_bad_syntax() -> None:
    encap = tlv(IpsecAttr.ENCAPSULATION_MODE, b"\0\x01")
    data = sa_message(proposal(transform(encap), 1, protocol=3, spi=bytes(4)))
    rejects(data, N.BAD_PROPOSAL_SYNTAX, TRANSFORM_AT + 4 + 8)


def test_bounds_on_proposals_and_transforms() -> None:
    sixteen = b"".join(proposal(ONE, 1, nxt=2 if i < 15 else 0, number=i) for i in range(16))
    (sa,) = decode_message(sa_message(sixteen)).payloads
    assert isinstance(sa, SAPayload) and len(sa.proposals) == 16
    seventeen = b"".join(proposal(ONE, 1, nxt=2 if i < 16 else 0) for i in range(17))
    rejects(sa_message(seventeen), N.PAYLOAD_MALFORMED, PROPOSAL_AT + 16 * 20)
    many = b"".join(transform(tv(1, 7), nxt=3 if i < 31 else 0) for i in range(32))
    (sa,) = decode_message(sa_message(proposal(many, 32))).payloads
    assert isinstance(sa, SAPayload) and len(sa.proposals[0].transforms) == 32


def test_quick_mode_sa_with_ah_esp_and_ipcomp() -> None:
    suite = SAPayload.ipsec(
        [
            Proposal(1, ProtocolId.IPSEC_AH, b"\0\0\0\x01", (Transform(1, 5, ()),)),
            Proposal(
                1,
                ProtocolId.IPSEC_ESP,
                b"\0\0\0\x02",
                (
                    Transform(
                        1,
                        EspTransformId.AES_GCM_16,
                        ipsec_attributes(
                            {
                                IpsecAttr.KEY_LENGTH: 256,
                                IpsecAttr.GROUP_DESCRIPTION: GroupId.ECP_256,
                            }
                        ),
                    ),
                ),
            ),
            Proposal(1, ProtocolId.IPCOMP, b"\x12\x34", (Transform(1, 2, ()),)),
        ]
    )
    chain = encode_payload_chain([suite])
    assert chain[:4] == struct.pack("!BBH", 0, 0, len(chain))
    assert chain[4:12] == struct.pack("!II", 1, 1)
    message_bytes = sa_message(chain[12:])
    assert decode_message(message_bytes).payloads == (suite,)


@pytest.mark.parametrize(
    "sa",
    [
        SAPayload(0, 1, (Proposal(1, ProtocolId.ISAKMP, b"", (Transform(1, 1),)),)),
        SAPayload(1, 2, (Proposal(1, ProtocolId.ISAKMP, b"", (Transform(1, 1),)),)),
        SAPayload.ipsec([]),
        SAPayload.ipsec([Proposal(1, ProtocolId.ISAKMP, b"", ())]),
        SAPayload.ipsec([Proposal(1, ProtocolId.IPSEC_ESP, b"", (Transform(1, 12),))]),
        SAPayload.ipsec(
            [Proposal(1, ProtocolId.ISAKMP, b"", (Transform(1, 1, (Attribute(1, b"x"),)),))]
        ),
        SAPayload.ipsec(
            [Proposal(1, ProtocolId.ISAKMP, b"", (Transform(1, 1, (Attribute(1, 70000),)),))]
        ),
        SAPayload.ipsec([Proposal(256, ProtocolId.ISAKMP, b"", (Transform(1, 1),))]),
    ],
)
def test_encoder_refuses_invalid_sa(sa: SAPayload) -> None:
    with pytest.raises(IsakmpError) as info:
        encode_payload_chain([sa])
    assert info.value.offset == -1


def test_payload_type_constant() -> None:
    assert SAPayload.ipsec([]).payload_type == PayloadType.SA
