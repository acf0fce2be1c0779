"""Header and message assembly: fields, strict rejects (notify type and offset), chains."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from ikepriv.isakmp import (
    Header,
    IsakmpError,
    KePayload,
    NoncePayload,
    UnknownPayload,
    VendorIdPayload,
    build_encrypted_message,
    build_message,
    decode_header,
    decode_message,
    decode_payload_chain,
    encode_header,
    encode_message,
    encode_payload_chain,
)
from ikepriv.isakmp.constants import ExchangeType, HeaderFlag, NotifyType, PayloadType

ICOOKIE = bytes.fromhex("0102030405060708")
RCOOKIE = bytes.fromhex("1112131415161718")
N = NotifyType


def header(
    next_payload: int = 0,
    *,
    body_length: int = 0,
    version: int = 0x10,
    exchange: int = 2,
    flags: int = 0,
    message_id: int = 0,
    length: int | None = None,
    icookie: bytes = ICOOKIE,
) -> bytes:
    total = 28 + body_length if length is None else length
    return struct.pack(
        "!8s8sBBBBII", icookie, RCOOKIE, next_payload, version, exchange, flags, message_id, total
    )


def chain(*payloads: tuple[int, bytes]) -> bytes:
    """Generic headers written by hand, independent of the encoder under test."""
    out = b""
    for index, (_ptype, body) in enumerate(payloads):
        nxt = payloads[index + 1][0] if index + 1 < len(payloads) else 0
        out += struct.pack("!BBH", nxt, 0, 4 + len(body)) + body
    return out


def message(*payloads: tuple[int, bytes], **kwargs: Any) -> bytes:
    body = chain(*payloads)
    first = payloads[0][0] if payloads else 0
    return header(first, body_length=len(body), **kwargs) + body


def rejects(data: bytes, notify: NotifyType, offset: int, **kwargs: int) -> IsakmpError:
    with pytest.raises(IsakmpError) as info:
        decode_message(data, **kwargs)
    assert (info.value.notify, info.value.offset) == (notify, offset), info.value
    return info.value


VID = (PayloadType.VENDOR_ID, b"vendor-id-bytes")
NONCE = (PayloadType.NONCE, bytes(range(16)))


def test_header_fields() -> None:
    data = message(VID, exchange=32, flags=0x02, message_id=0xDEADBEEF)
    h = decode_header(data)
    assert h == Header(
        ICOOKIE,
        RCOOKIE,
        PayloadType.VENDOR_ID,
        ExchangeType.QUICK_MODE,
        HeaderFlag.COMMIT,
        0xDEADBEEF,
        len(data),
    )
    assert not h.encrypted and h.cookies == ICOOKIE + RCOOKIE
    assert encode_header(h) == data[:28]


@pytest.mark.parametrize(
    ("data", "notify", "offset"),
    [
        (header()[:27], N.PAYLOAD_MALFORMED, 27),
        (b"", N.PAYLOAD_MALFORMED, 0),
        (header(icookie=bytes(8)), N.INVALID_COOKIE, 0),
        (header(version=0x20), N.INVALID_MAJOR_VERSION, 17),
        (header(version=0x11), N.INVALID_MINOR_VERSION, 17),
        (header(exchange=0), N.INVALID_EXCHANGE_TYPE, 18),
        (header(exchange=7), N.INVALID_EXCHANGE_TYPE, 18),
        (header(exchange=34), N.INVALID_EXCHANGE_TYPE, 18),
        (header(exchange=240), N.INVALID_EXCHANGE_TYPE, 18),
        (header(flags=0x08), N.INVALID_FLAGS, 19),
        (header(flags=0x80), N.INVALID_FLAGS, 19),
        (header(length=29), N.UNEQUAL_PAYLOAD_LENGTHS, 24),
        (header(length=27), N.UNEQUAL_PAYLOAD_LENGTHS, 24),
        (header() + b"\0", N.UNEQUAL_PAYLOAD_LENGTHS, 24),
    ],
)
def test_header_rejects(data: bytes, notify: NotifyType, offset: int) -> None:
    rejects(data, notify, offset)
    with pytest.raises(IsakmpError):
        decode_header(data)


def test_size_cap() -> None:
    big = message((PayloadType.VENDOR_ID, bytes(20000)))
    rejects(big, N.PAYLOAD_MALFORMED, 16384)
    assert decode_message(big, max_size=65535).payloads == (VendorIdPayload(bytes(20000)),)
    rejects(message(VID), N.PAYLOAD_MALFORMED, 40, max_size=40)


def test_empty_message_and_unknown_payloads_continue_the_chain() -> None:
    assert decode_message(header()).payloads == ()
    data = message(VID, (17, b"reserved"), (200, b""), (PayloadType.NONCE, bytes(8)))
    decoded = decode_message(data)
    assert decoded.payloads == (
        VendorIdPayload(b"vendor-id-bytes"),
        UnknownPayload(17, b"reserved"),
        UnknownPayload(200, b""),
        NoncePayload(bytes(8)),
    )
    assert encode_message(decoded) == data


def test_generic_header_rejects() -> None:
    good = message(VID, NONCE)
    second = 28 + 4 + len(VID[1])
    bad = bytearray(good)
    bad[29] = 1  # RESERVED of the first payload
    rejects(bytes(bad), N.PAYLOAD_MALFORMED, 29)
    bad = bytearray(good)
    bad[second + 1] = 0x80
    rejects(bytes(bad), N.PAYLOAD_MALFORMED, second + 1)
    for length in (0, 3):
        bad = bytearray(good)
        bad[30:32] = length.to_bytes(2, "big")
        rejects(bytes(bad), N.PAYLOAD_MALFORMED, 30)
    bad = bytearray(good)
    bad[second + 2 : second + 4] = (4 + 17).to_bytes(2, "big")  # one byte too long
    rejects(bytes(bad), N.PAYLOAD_MALFORMED, second + 2)
    bad = bytearray(good)
    bad[second + 2 : second + 4] = (4 + 15).to_bytes(2, "big")  # one byte short: trailing
    rejects(bytes(bad), N.UNEQUAL_PAYLOAD_LENGTHS, len(good) - 1)
    # The last payload says another follows, but the message ends there.
    bad = bytearray(good)
    bad[second] = PayloadType.HASH
    rejects(bytes(bad), N.PAYLOAD_MALFORMED, len(good))
    # Header names a payload but the body is empty.
    rejects(header(PayloadType.SA), N.PAYLOAD_MALFORMED, 28)


def test_proposal_and_transform_are_invalid_at_top_level() -> None:
    rejects(message((PayloadType.PROPOSAL, bytes(8))), N.INVALID_PAYLOAD_TYPE, 16)
    rejects(message(VID, (PayloadType.TRANSFORM, bytes(8))), N.INVALID_PAYLOAD_TYPE, 28)


def test_payload_count_bound() -> None:
    assert len(decode_message(message(*[VID] * 32)).payloads) == 32
    data = message(*[VID] * 33)
    rejects(data, N.PAYLOAD_MALFORMED, 28 + 32 * (4 + len(VID[1])))


def test_encrypted_message_keeps_ciphertext() -> None:
    ciphertext = bytes(range(32))
    data = header(PayloadType.HASH, body_length=32, flags=1, exchange=32, message_id=7)
    decoded = decode_message(data + ciphertext)
    assert decoded.encrypted and decoded.payloads == () and decoded.ciphertext == ciphertext
    assert decoded.header.next_payload == PayloadType.HASH
    assert encode_message(decoded) == data + ciphertext
    rejects(header(5, body_length=12, flags=1) + bytes(12), N.PAYLOAD_MALFORMED, 28)
    rejects(header(5, flags=1), N.PAYLOAD_MALFORMED, 28)
    built = build_encrypted_message(
        ICOOKIE, RCOOKIE, ExchangeType.QUICK_MODE, 7, PayloadType.HASH, ciphertext
    )
    assert built == decoded


def test_decrypted_chain_padding_and_offsets() -> None:
    body = chain(VID, NONCE)
    expected = (VendorIdPayload(VID[1]), NoncePayload(NONCE[1]))
    assert decode_payload_chain(PayloadType.VENDOR_ID, body, allow_padding=False) == expected
    padded = body + bytes(255)
    assert decode_payload_chain(PayloadType.VENDOR_ID, padded, allow_padding=True) == expected
    with pytest.raises(IsakmpError) as info:
        decode_payload_chain(PayloadType.VENDOR_ID, body + bytes(256), allow_padding=True)
    assert (info.value.notify, info.value.offset) == (N.PAYLOAD_MALFORMED, 28 + len(body))
    with pytest.raises(IsakmpError) as info:
        decode_payload_chain(PayloadType.VENDOR_ID, body + b"\0", allow_padding=False)
    assert (info.value.notify, info.value.offset) == (N.UNEQUAL_PAYLOAD_LENGTHS, 28 + len(body))
    # Offsets are relative to base_offset: a bad RESERVED in the second payload.
    bad = bytearray(body)
    bad[4 + len(VID[1]) + 1] = 1
    with pytest.raises(IsakmpError) as info:
        decode_payload_chain(PayloadType.VENDOR_ID, bytes(bad), 100, allow_padding=True)
    assert info.value.offset == 100 + 4 + len(VID[1]) + 1
    # Padding is not parsed, even when it looks like a payload; nothing after next=0 counts.
    assert decode_payload_chain(PayloadType.VENDOR_ID, body + chain(VID), allow_padding=True) == (
        expected
    )


def test_encoder_computes_next_payload_and_lengths() -> None:
    payloads = (VendorIdPayload(VID[1]), NoncePayload(NONCE[1]))
    assert encode_payload_chain(payloads) == chain(VID, NONCE)
    built = build_message(ICOOKIE, RCOOKIE, ExchangeType.IDENTITY_PROTECTION, 0, payloads)
    assert encode_message(built) == message(VID, NONCE)
    assert decode_message(encode_message(built)) == built
    # encode_message recomputes the header's length and next payload.
    stale = type(built)(
        Header(ICOOKIE, RCOOKIE, 99, ExchangeType.IDENTITY_PROTECTION, HeaderFlag.NONE, 0, 28),
        payloads,
    )
    assert encode_message(stale) == message(VID, NONCE)


def test_encoder_refuses_what_the_decoder_would_not_give_back() -> None:
    for bad in (UnknownPayload(PayloadType.NONCE, b"x" * 8), UnknownPayload(2, b"")):
        with pytest.raises(IsakmpError):
            encode_payload_chain([bad])
    with pytest.raises(IsakmpError):
        encode_payload_chain([KePayload(b"")])
    with pytest.raises(IsakmpError):
        encode_payload_chain([NoncePayload(bytes(7))])
    with pytest.raises(IsakmpError):
        build_message(bytes(8), RCOOKIE, ExchangeType.INFORMATIONAL, 0, [])
    with pytest.raises(IsakmpError):
        build_encrypted_message(ICOOKIE, RCOOKIE, ExchangeType.QUICK_MODE, 1, 8, bytes(10))
    with pytest.raises(IsakmpError):
        encode_payload_chain([VendorIdPayload(b"v")] * 33)
