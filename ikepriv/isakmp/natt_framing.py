"""UDP port 4500 framing (RFC 3948 2.2-2.3, RFC 3947 4).

On port 4500 one socket carries three things: a NAT-keepalive (the single byte 0xFF), ESP
(the first four bytes are a nonzero SPI) and IKE behind a four-byte zero non-ESP marker. The
parent and the child both use these helpers, so the rule is written once.
"""

from __future__ import annotations

from enum import Enum

from ikepriv.isakmp.constants import NATT_KEEPALIVE, NATT_PORT, NON_ESP_MARKER


class Udp4500Kind(Enum):
    KEEPALIVE = "keepalive"
    ESP = "esp"
    IKE = "ike"
    INVALID = "invalid"  # too short to be anything: drop


_MARKER_LENGTH = len(NON_ESP_MARKER)
_MIN_ESP = 8  # SPI and sequence number


def classify_4500(datagram: bytes | memoryview) -> Udp4500Kind:
    """What a UDP 4500 payload is; never raises."""
    if is_natt_keepalive(datagram):
        return Udp4500Kind.KEEPALIVE
    if len(datagram) < _MARKER_LENGTH:
        return Udp4500Kind.INVALID
    if bytes(datagram[:_MARKER_LENGTH]) == NON_ESP_MARKER:
        return Udp4500Kind.IKE
    return Udp4500Kind.ESP if len(datagram) >= _MIN_ESP else Udp4500Kind.INVALID


def strip_non_esp_marker(datagram: bytes | memoryview) -> bytes | None:
    """The ISAKMP message inside a UDP 4500 payload, or None if it is not IKE."""
    if classify_4500(datagram) is not Udp4500Kind.IKE:
        return None
    return bytes(datagram[_MARKER_LENGTH:])


def add_non_esp_marker(message: bytes) -> bytes:
    """The UDP 4500 payload carrying an ISAKMP message."""
    return NON_ESP_MARKER + message


def is_natt_keepalive(datagram: bytes | memoryview) -> bool:
    return len(datagram) == len(NATT_KEEPALIVE) and datagram[0] == NATT_KEEPALIVE[0]


def isakmp_from_udp(port: int, datagram: bytes | memoryview) -> bytes | None:
    """The ISAKMP message in a UDP payload received on `port` (500 or 4500), else None."""
    if port == NATT_PORT:
        return strip_non_esp_marker(datagram)
    return bytes(datagram)
