"""ID, NAT-OA, Notify, Delete, Mode Config and the opaque payloads: decoding from hand-made
bytes, typed views and constructors, and strict rejects with notify type and offset."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

import pytest

from ikepriv.isakmp import (
    Attribute,
    AttributePayload,
    CertPayload,
    CertRequestPayload,
    DeletePayload,
    HashPayload,
    IdPayload,
    IsakmpError,
    KePayload,
    NatDPayload,
    NatOaPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SigPayload,
    VendorIdPayload,
    attribute_name,
    attribute_value_name,
    decode_message,
    encode_message,
    encode_payload_chain,
    notify_type_name,
    payload_type_name,
    transform_id_name,
)
from ikepriv.isakmp.constants import (
    CertEncoding,
    IdType,
    IkeAttr,
    IpsecAttr,
    LifeType,
    ModeCfgType,
    NotifyType,
    PayloadType,
    ProtocolId,
)

N = NotifyType
ICOOKIE = bytes.fromhex("0a0b0c0d0e0f1011")
RCOOKIE = bytes.fromhex("2122232425262728")
BODY = 32  # offset of the body of a message's only payload


def single(ptype: int, body: bytes) -> bytes:
    payload = struct.pack("!BBH", 0, 0, 4 + len(body)) + body
    head = struct.pack("!8s8sBBBBII", ICOOKIE, RCOOKIE, ptype, 0x10, 5, 0, 0, 28 + len(payload))
    return head + payload


def decodes(ptype: int, body: bytes) -> Payload:
    data = single(ptype, body)
    (payload,) = decode_message(data).payloads
    assert encode_message(decode_message(data)) == data
    assert encode_payload_chain([payload])[4:] == body
    return payload


def rejects(ptype: int, body: bytes, notify: NotifyType, offset: int) -> None:
    with pytest.raises(IsakmpError) as info:
        decode_message(single(ptype, body))
    assert (info.value.notify, info.value.offset) == (notify, offset), info.value


def id_body(id_type: int, data: bytes, protocol: int = 0, port: int = 0) -> bytes:
    return struct.pack("!BBH", id_type, protocol, port) + data


V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address
A6 = V6("2001:db8::1").packed
B6 = V6("2001:db8::ff").packed


@pytest.mark.parametrize(
    ("id_type", "data", "value"),
    [
        (IdType.IPV4_ADDR, bytes([192, 0, 2, 1]), V4("192.0.2.1")),
        (IdType.IPV6_ADDR, A6, V6("2001:db8::1")),
        (
            IdType.IPV4_ADDR_SUBNET,
            bytes([198, 51, 100, 0, 255, 255, 255, 0]),
            ipaddress.ip_network("198.51.100.0/24"),
        ),
        (IdType.IPV4_ADDR_SUBNET, bytes(8), ipaddress.ip_network("0.0.0.0/0")),
        (
            IdType.IPV6_ADDR_SUBNET,
            A6 + ipaddress.ip_network("::/64").netmask.packed,
            ipaddress.ip_network("2001:db8::/64"),
        ),
        (
            IdType.IPV4_ADDR_RANGE,
            bytes([203, 0, 113, 1, 203, 0, 113, 9]),
            (V4("203.0.113.1"), V4("203.0.113.9")),
        ),
        (IdType.IPV6_ADDR_RANGE, A6 + B6, (V6("2001:db8::1"), V6("2001:db8::ff"))),
        (IdType.FQDN, b"gw.example.org", "gw.example.org"),
        (IdType.USER_FQDN, b"ops@example.org", "ops@example.org"),
        (IdType.DER_ASN1_DN, b"\x30\x00", b"\x30\x00"),
        (IdType.DER_ASN1_GN, b"\x82\x03abc", b"\x82\x03abc"),
        (IdType.KEY_ID, b"\x01\x02", b"\x01\x02"),
    ],
)
def test_every_id_type(id_type: IdType, data: bytes, value: object) -> None:
    payload = decodes(PayloadType.ID, id_body(id_type, data, 17, 500))
    assert payload == IdPayload(id_type, 17, 500, data)
    assert isinstance(payload, IdPayload) and payload.value == value
    assert payload.body == id_body(id_type, data, 17, 500)


def test_id_constructors() -> None:
    assert IdPayload.address("192.0.2.7", 17, 500) == IdPayload(
        IdType.IPV4_ADDR, 17, 500, bytes([192, 0, 2, 7])
    )
    assert IdPayload.address("2001:db8::1").id_type is IdType.IPV6_ADDR
    assert IdPayload.subnet("198.51.100.0/24").data == bytes([198, 51, 100, 0, 255, 255, 255, 0])
    assert IdPayload.subnet("2001:db8::/48").id_type is IdType.IPV6_ADDR_SUBNET
    assert IdPayload.address_range("203.0.113.1", "203.0.113.2").id_type is IdType.IPV4_ADDR_RANGE
    assert IdPayload.fqdn("gw.example.org").data == b"gw.example.org"
    assert IdPayload.user_fqdn("a@example.org").id_type is IdType.USER_FQDN
    assert IdPayload.der_asn1_dn(b"\x30\x00").id_type is IdType.DER_ASN1_DN
    assert IdPayload.key_id(b"k").value == b"k"
    bad_calls: list[Callable[[], object]] = [
        lambda: IdPayload.fqdn("gw.exämple.org"),
        lambda: IdPayload.fqdn("has space"),
        lambda: IdPayload.fqdn(""),
        lambda: IdPayload.address_range("203.0.113.9", "203.0.113.1"),
        lambda: IdPayload.address_range("203.0.113.1", "2001:db8::1"),
        lambda: IdPayload.key_id(b""),
    ]
    for bad in bad_calls:
        with pytest.raises(IsakmpError) as info:
            bad()
        assert info.value.notify is N.INVALID_ID_INFORMATION


@pytest.mark.parametrize(
    ("body", "offset"),
    [
        (id_body(0, b"x"), BODY),
        (id_body(13, b"x"), BODY),
        (id_body(IdType.IPV4_ADDR, bytes(5)), BODY + 4),
        (id_body(IdType.IPV4_ADDR, bytes(3)), BODY + 4),
        (id_body(IdType.IPV6_ADDR, bytes(4)), BODY + 4),
        (id_body(IdType.IPV4_ADDR_SUBNET, bytes([192, 0, 2, 0, 255, 0, 255, 0])), BODY + 4),
        (id_body(IdType.IPV4_ADDR_SUBNET, bytes(4)), BODY + 4),
        (id_body(IdType.IPV6_ADDR_SUBNET, A6 + A6), BODY + 4),
        (id_body(IdType.IPV4_ADDR_RANGE, bytes([192, 0, 2, 9, 192, 0, 2, 1])), BODY + 4),
        (id_body(IdType.IPV6_ADDR_RANGE, B6 + A6), BODY + 4),
        (id_body(IdType.FQDN, b""), BODY + 4),
        (id_body(IdType.FQDN, b"a b"), BODY + 4),
        (id_body(IdType.FQDN, b"gw\x00"), BODY + 4),
        (id_body(IdType.USER_FQDN, "ä@x".encode()), BODY + 4),
        (id_body(IdType.FQDN, b"a" * 256), BODY + 4),
        (id_body(IdType.DER_ASN1_DN, b""), BODY + 4),
        (id_body(IdType.KEY_ID, b""), BODY + 4),
    ],
)
def test_id_rejects(body: bytes, offset: int) -> None:
    rejects(PayloadType.ID, body, N.INVALID_ID_INFORMATION, offset)


def test_id_too_short() -> None:
    rejects(PayloadType.ID, b"\x01\x00\x00", N.PAYLOAD_MALFORMED, BODY)


def test_nat_d_and_nat_oa_in_both_numberings() -> None:
    digest = bytes(range(20))
    assert decodes(PayloadType.NAT_D, digest) == NatDPayload(digest)
    assert decodes(PayloadType.NAT_D_DRAFT, digest) == NatDPayload(digest, draft=True)
    assert NatDPayload(digest, draft=True).payload_type == 130
    v4 = struct.pack("!BBH", 1, 0, 0) + bytes([192, 0, 2, 5])
    oa = decodes(PayloadType.NAT_OA, v4)
    assert oa == NatOaPayload(V4("192.0.2.5"))
    assert isinstance(oa, NatOaPayload) and oa.id_type is IdType.IPV4_ADDR
    v6 = struct.pack("!BBH", 5, 0, 0) + A6
    assert decodes(PayloadType.NAT_OA_DRAFT, v6) == NatOaPayload(V6("2001:db8::1"), draft=True)
    rejects(
        PayloadType.NAT_OA, struct.pack("!BBH", 2, 0, 0) + b"abcd", N.INVALID_ID_INFORMATION, BODY
    )
    rejects(
        PayloadType.NAT_OA, struct.pack("!BBH", 1, 1, 0) + bytes(4), N.PAYLOAD_MALFORMED, BODY + 1
    )
    rejects(
        PayloadType.NAT_OA, struct.pack("!BBH", 1, 0, 1) + bytes(4), N.PAYLOAD_MALFORMED, BODY + 2
    )
    rejects(
        PayloadType.NAT_OA,
        struct.pack("!BBH", 1, 0, 0) + bytes(16),
        N.INVALID_ID_INFORMATION,
        BODY + 4,
    )
    rejects(PayloadType.NAT_OA, b"\x01\x00", N.PAYLOAD_MALFORMED, BODY)
    rejects(PayloadType.NAT_D, b"", N.PAYLOAD_MALFORMED, BODY)


def notify_body(doi: int, protocol: int, spi: bytes, ntype: int, data: bytes = b"") -> bytes:
    return struct.pack("!IBBH", doi, protocol, len(spi), ntype) + spi + data


COOKIES = ICOOKIE + RCOOKIE


def test_notify_status_types() -> None:
    contact = decodes(PayloadType.NOTIFY, notify_body(1, 1, COOKIES, N.INITIAL_CONTACT))
    assert contact == NotifyPayload.initial_contact(COOKIES)
    there = decodes(PayloadType.NOTIFY, notify_body(1, 1, COOKIES, N.R_U_THERE, b"\0\0\x30\x39"))
    assert there == NotifyPayload.dpd(COOKIES, 12345)
    assert isinstance(there, NotifyPayload) and there.dpd_sequence == 12345
    ack = NotifyPayload.dpd(COOKIES, 0xFFFFFFFF, ack=True)
    assert ack.notify_type == N.R_U_THERE_ACK and ack.dpd_sequence == 0xFFFFFFFF
    assert isinstance(contact, NotifyPayload) and contact.dpd_sequence is None
    replay = decodes(
        PayloadType.NOTIFY, notify_body(1, 3, b"\1\2\3\4", N.REPLAY_STATUS, b"\0\0\0\1")
    )
    assert isinstance(replay, NotifyPayload) and replay.replay_status is True
    lifetime_data = (
        struct.pack("!HH", 0x8000 | IpsecAttr.SA_LIFE_TYPE, LifeType.SECONDS)
        + struct.pack("!HH", IpsecAttr.SA_LIFE_DURATION, 4)
        + (28800).to_bytes(4, "big")
    )
    lifetime = decodes(
        PayloadType.NOTIFY, notify_body(1, 3, b"\1\2\3\4", N.RESPONDER_LIFETIME, lifetime_data)
    )
    assert isinstance(lifetime, NotifyPayload)
    assert lifetime.responder_lifetime == (
        Attribute(1, 1),
        Attribute(2, (28800).to_bytes(4, "big")),
    )
    assert lifetime.responder_lifetimes == ((LifeType.SECONDS, 28800),)
    # Error notifies and private types keep their number and data.
    error = decodes(PayloadType.NOTIFY, notify_body(0, 0, b"", N.NO_PROPOSAL_CHOSEN, b"sa"))
    assert error == NotifyPayload(0, 0, b"", N.NO_PROPOSAL_CHOSEN, b"sa")
    private = decodes(PayloadType.NOTIFY, notify_body(1, 1, b"", 40000, b"\xff"))
    assert isinstance(private, NotifyPayload) and private.notify_type == 40000


@pytest.mark.parametrize(
    ("body", "notify", "offset"),
    [
        (notify_body(2, 1, b"", N.INITIAL_CONTACT), N.DOI_NOT_SUPPORTED, BODY),
        (b"\0\0\0\1\1\0\0", N.PAYLOAD_MALFORMED, BODY),
        (notify_body(1, 1, bytes(17), 1), N.PAYLOAD_MALFORMED, BODY + 5),
        (notify_body(1, 1, bytes(16), 1)[:-1], N.PAYLOAD_MALFORMED, BODY + 5),
        (notify_body(1, 1, COOKIES, N.R_U_THERE, b"\0\0\1"), N.PAYLOAD_MALFORMED, BODY + 24),
        (notify_body(1, 1, COOKIES, N.R_U_THERE_ACK, bytes(5)), N.PAYLOAD_MALFORMED, BODY + 24),
        (notify_body(1, 3, bytes(4), N.REPLAY_STATUS, b""), N.PAYLOAD_MALFORMED, BODY + 12),
        (
            notify_body(1, 3, bytes(4), N.RESPONDER_LIFETIME, b"\x00\x02\x00\x08\0\0"),
            N.PAYLOAD_MALFORMED,
            BODY + 14,
        ),
    ],
)
def test_notify_rejects(body: bytes, notify: NotifyType, offset: int) -> None:
    rejects(PayloadType.NOTIFY, body, notify, offset)


def delete_body(protocol: int, spi_size: int, count: int, spis: bytes, doi: int = 1) -> bytes:
    return struct.pack("!IBBH", doi, protocol, spi_size, count) + spis


def test_delete() -> None:
    assert decodes(PayloadType.DELETE, delete_body(1, 16, 1, COOKIES)) == DeletePayload.isakmp(
        COOKIES
    )
    esp = decodes(PayloadType.DELETE, delete_body(3, 4, 2, b"\1\2\3\4\5\6\7\x08"))
    assert esp == DeletePayload.ipsec(ProtocolId.IPSEC_ESP, (b"\1\2\3\4", b"\5\6\7\x08"))
    rejects(PayloadType.DELETE, delete_body(3, 4, 2, bytes(4)), N.PAYLOAD_MALFORMED, BODY + 6)
    rejects(PayloadType.DELETE, delete_body(3, 4, 1, bytes(5)), N.PAYLOAD_MALFORMED, BODY + 6)
    rejects(PayloadType.DELETE, delete_body(3, 4, 0, b""), N.PAYLOAD_MALFORMED, BODY + 6)
    rejects(PayloadType.DELETE, delete_body(3, 0, 1, b""), N.PAYLOAD_MALFORMED, BODY + 5)
    rejects(PayloadType.DELETE, delete_body(3, 17, 1, bytes(17)), N.PAYLOAD_MALFORMED, BODY + 5)
    rejects(PayloadType.DELETE, delete_body(9, 4, 1, bytes(4)), N.INVALID_PROTOCOL_ID, BODY + 4)
    rejects(PayloadType.DELETE, delete_body(3, 4, 1, bytes(4), doi=5), N.DOI_NOT_SUPPORTED, BODY)
    rejects(PayloadType.DELETE, b"\0\0\0\1\3\4\0", N.PAYLOAD_MALFORMED, BODY)
    with pytest.raises(IsakmpError):
        encode_payload_chain([DeletePayload(1, ProtocolId.IPSEC_ESP, 4, (b"\1\2\3",))])


def test_mode_config_attribute_payload() -> None:
    body = (
        struct.pack("!BBH", ModeCfgType.REQUEST, 0, 0x1234)
        + struct.pack("!HH", 1, 0)  # INTERNAL_IP4_ADDRESS, empty: "please assign"
        + struct.pack("!HH", 0x8000 | 16520, 0)  # XAUTH_TYPE as TV
        + struct.pack("!HH", 28672, 3)
        + b"abc"  # a Cisco Unity banner-like TLV
    )
    payload = decodes(PayloadType.ATTRIBUTE, body)
    assert payload == AttributePayload(
        ModeCfgType.REQUEST,
        0x1234,
        (Attribute(1, b""), Attribute(16520, 0), Attribute(28672, b"abc")),
    )
    rejects(PayloadType.ATTRIBUTE, b"\x01\x01\x00\x00", N.PAYLOAD_MALFORMED, BODY + 1)
    rejects(PayloadType.ATTRIBUTE, b"\x01\x00\x00", N.PAYLOAD_MALFORMED, BODY)
    rejects(
        PayloadType.ATTRIBUTE, b"\x01\x00\x00\x00\x00\x01\x00\x05ab", N.PAYLOAD_MALFORMED, BODY + 6
    )
    many = b"\x02\x00\x00\x01" + struct.pack("!HH", 0x8001, 1) * 65
    rejects(PayloadType.ATTRIBUTE, many, N.PAYLOAD_MALFORMED, BODY + 4 + 64 * 4)


def test_opaque_payloads() -> None:
    assert decodes(PayloadType.KE, b"\x05" * 256) == KePayload(b"\x05" * 256)
    assert decodes(PayloadType.HASH, b"h" * 32) == HashPayload(b"h" * 32)
    assert decodes(PayloadType.SIG, b"s" * 64) == SigPayload(b"s" * 64)
    assert decodes(PayloadType.VENDOR_ID, b"v" * 16) == VendorIdPayload(b"v" * 16)
    assert decodes(PayloadType.NONCE, b"n" * 8) == NoncePayload(b"n" * 8)
    assert decodes(PayloadType.NONCE, b"n" * 256) == NoncePayload(b"n" * 256)
    assert decodes(PayloadType.CERT, b"\x04der") == CertPayload(CertEncoding.X509_SIGNATURE, b"der")
    assert decodes(PayloadType.CR, b"\x04") == CertRequestPayload(CertEncoding.X509_SIGNATURE, b"")
    rejects(PayloadType.NONCE, b"n" * 7, N.PAYLOAD_MALFORMED, BODY)
    rejects(PayloadType.NONCE, b"n" * 257, N.PAYLOAD_MALFORMED, BODY)
    for ptype in (
        PayloadType.KE,
        PayloadType.HASH,
        PayloadType.SIG,
        PayloadType.VENDOR_ID,
        PayloadType.CERT,
        PayloadType.CR,
    ):
        rejects(ptype, b"", N.PAYLOAD_MALFORMED, BODY)


def test_names() -> None:
    assert payload_type_name(20) == "NAT_D"
    assert payload_type_name(200) == "PRIVATE_200"
    assert payload_type_name(17) == "UNKNOWN_17"
    assert notify_type_name(24578) == "INITIAL_CONTACT"
    assert notify_type_name(40000) == "PRIVATE_40000"
    assert transform_id_name(ProtocolId.IPSEC_ESP, 12) == "AES_CBC"
    assert transform_id_name(ProtocolId.IPCOMP, 2) == "UNKNOWN_2"
    assert attribute_name(ProtocolId.ISAKMP, IkeAttr.LIFE_DURATION) == "LIFE_DURATION"
    assert attribute_name(ProtocolId.IPSEC_ESP, 4) == "ENCAPSULATION_MODE"
    assert attribute_value_name(ProtocolId.ISAKMP, IkeAttr.GROUP_DESCRIPTION, 14) == "MODP_2048"
    assert attribute_value_name(ProtocolId.IPSEC_ESP, IpsecAttr.ENCAPSULATION_MODE, 3) == (
        "UDP_ENCAPSULATED_TUNNEL"
    )
    assert attribute_value_name(ProtocolId.ISAKMP, IkeAttr.KEY_LENGTH, 128) is None
