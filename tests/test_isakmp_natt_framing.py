"""UDP 4500 framing: keepalive, ESP and IKE behind the non-ESP marker."""

from __future__ import annotations

from ikepriv.isakmp import (
    Udp4500Kind,
    add_non_esp_marker,
    classify_4500,
    decode_message,
    is_natt_keepalive,
    isakmp_from_udp,
    strip_non_esp_marker,
)

IKE = bytes.fromhex("0102030405060708") + bytes(8) + bytes([0, 0x10, 5, 0]) + bytes(4)
IKE += (28).to_bytes(4, "big")


def test_classify() -> None:
    assert classify_4500(b"\xff") is Udp4500Kind.KEEPALIVE
    assert is_natt_keepalive(b"\xff") and not is_natt_keepalive(b"\xff\xff")
    assert classify_4500(b"\x00\x00\x00\x00" + IKE) is Udp4500Kind.IKE
    assert classify_4500(b"\x00\x00\x10\x01" + bytes(60)) is Udp4500Kind.ESP
    assert classify_4500(b"") is Udp4500Kind.INVALID
    assert classify_4500(b"\x00") is Udp4500Kind.INVALID
    assert classify_4500(b"\x00\x00\x00") is Udp4500Kind.INVALID
    assert classify_4500(b"\xff\xff\xff\xff") is Udp4500Kind.INVALID  # too short for ESP
    assert classify_4500(memoryview(b"\xff")) is Udp4500Kind.KEEPALIVE


def test_strip_and_add_marker() -> None:
    framed = add_non_esp_marker(IKE)
    assert framed[:4] == bytes(4)
    assert strip_non_esp_marker(framed) == IKE
    assert decode_message(strip_non_esp_marker(framed) or b"").header.length == 28
    assert strip_non_esp_marker(b"\xff") is None
    assert strip_non_esp_marker(b"\x00\x00\x10\x01" + bytes(60)) is None
    assert isakmp_from_udp(4500, framed) == IKE
    assert isakmp_from_udp(500, IKE) == IKE
    assert isakmp_from_udp(4500, b"\xff") is None
