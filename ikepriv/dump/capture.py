"""Reading UDP 500/4500 datagrams out of pcap and pcapng files.

dpkt reads the file containers (pcap in either byte order and resolution, pcapng); the link,
IP and UDP headers are walked here with explicit bounds, because a capture is as hostile as
the network it was taken on and ikedump must say *where* a frame is cut short rather than
let a parser library guess. Supported link types: Ethernet (with 802.1Q/802.1ad tags),
Linux cooked capture v1 and v2, raw IP, BSD loopback. IPv4 and IPv6 (extension headers
walked). IP fragments are not reassembled: they are reported as unsupported, so a message
that was fragmented on the wire is never silently missing.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO

import dpkt

from ikepriv.isakmp.constants import IKE_PORT, NATT_PORT, NON_ESP_MARKER
from ikepriv.isakmp.natt_framing import Udp4500Kind, classify_4500

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
_VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100})
_MAX_VLAN_TAGS = 4
IPPROTO_UDP = 17
_IPV6_EXTENSIONS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
IPV6_FRAGMENT = 44
_MAX_IPV6_EXTENSIONS = 8
_UDP = struct.Struct("!HHHH")
_IKE_PORTS = frozenset({IKE_PORT, NATT_PORT})


class CaptureError(Exception):
    """The file is not a capture we can read (bad magic, cut record header, ...)."""


class FrameError(Exception):
    """One frame is unusable; `offset` counts from the start of the frame (-1: unknown)."""

    def __init__(self, reason: str, offset: int = -1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class Skip(Enum):
    """Frames that are not IKE, counted for the summary."""

    NOT_UDP_IKE = "other traffic"
    ESP_IN_UDP = "ESP-in-UDP"
    KEEPALIVE = "NAT-T keepalive"


@dataclass(frozen=True, slots=True)
class Datagram:
    """One ISAKMP message as captured. `message` starts at the ISAKMP header (the non-ESP
    marker removed); `message_offset` is where that is in the frame, for error reports;
    `truncated_from` is the UDP payload length the headers announced when the capture holds
    fewer bytes (snap length or a cut file), else None."""

    frame: int
    time: float
    src: IPAddress
    sport: int
    dst: IPAddress
    dport: int
    message: bytes
    message_offset: int
    truncated_from: int | None = None


# --- link layers: (frame) -> (ethertype, offset of the network header) ------------------


def _ethernet(frame: bytes) -> tuple[int, int]:
    if len(frame) < 14:
        raise FrameError("Ethernet header cut short", len(frame))
    pos, ethertype = 14, struct.unpack_from("!H", frame, 12)[0]
    for _ in range(_MAX_VLAN_TAGS):
        if ethertype not in _VLAN_TAGS:
            break
        if len(frame) < pos + 4:
            raise FrameError("VLAN tag cut short", len(frame))
        ethertype = struct.unpack_from("!H", frame, pos + 2)[0]
        pos += 4
    return ethertype, pos


def _sll(frame: bytes) -> tuple[int, int]:
    if len(frame) < 16:
        raise FrameError("Linux cooked header cut short", len(frame))
    return struct.unpack_from("!H", frame, 14)[0], 16


def _sll2(frame: bytes) -> tuple[int, int]:
    if len(frame) < 20:
        raise FrameError("Linux cooked v2 header cut short", len(frame))
    return struct.unpack_from("!H", frame, 0)[0], 20


def _raw(frame: bytes) -> tuple[int, int]:
    if not frame:
        raise FrameError("empty frame", 0)
    return {4: ETHERTYPE_IPV4, 6: ETHERTYPE_IPV6}.get(frame[0] >> 4, 0), 0


def _ipv4_only(frame: bytes) -> tuple[int, int]:
    return ETHERTYPE_IPV4, 0


def _ipv6_only(frame: bytes) -> tuple[int, int]:
    return ETHERTYPE_IPV6, 0


def _loopback(frame: bytes) -> tuple[int, int]:
    # BSD loopback: a 4-byte address family in the capturing host's byte order.
    if len(frame) < 4:
        raise FrameError("loopback header cut short", len(frame))
    family = min(struct.unpack_from("<I", frame)[0], struct.unpack_from(">I", frame)[0])
    return _LOOPBACK_FAMILIES.get(family, 0), 4


# AF_INET everywhere; AF_INET6 on Linux (10), NetBSD/OpenBSD (24), FreeBSD (28), macOS (30).
_LOOPBACK_FAMILIES = {
    2: ETHERTYPE_IPV4,
    10: ETHERTYPE_IPV6,
    24: ETHERTYPE_IPV6,
    28: ETHERTYPE_IPV6,
    30: ETHERTYPE_IPV6,
}


# LINKTYPE_* numbers (tcpdump.org/linktypes.html) -> link header walker.
LINK_TYPES = {
    0: _loopback,  # NULL
    1: _ethernet,
    12: _raw,  # DLT_RAW on some BSDs
    14: _raw,  # DLT_RAW on others
    101: _raw,  # LINKTYPE_RAW
    108: _loopback,  # LOOP
    113: _sll,
    228: _ipv4_only,
    229: _ipv6_only,
    276: _sll2,
}


# --- network and transport ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Udp:
    src: IPAddress
    dst: IPAddress
    sport: int
    dport: int
    payload_offset: int
    payload: bytes
    announced: int  # UDP payload length according to the headers


def _ipv4(frame: bytes, pos: int) -> tuple[IPAddress, IPAddress, int, int, int] | None:
    """(src, dst, protocol, payload offset, payload end); None for non-first fragments of
    other protocols. Raises FrameError for fragments of UDP and for cut headers."""
    if len(frame) - pos < 20:
        raise FrameError("IPv4 header cut short", len(frame))
    ver_ihl, _tos, total, _ident, frag, _ttl, proto = struct.unpack_from("!BBHHHBB", frame, pos)
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < 20 or total < ihl:
        raise FrameError("bad IPv4 header", pos)
    if len(frame) - pos < ihl:
        raise FrameError("IPv4 options cut short", len(frame))
    src = ipaddress.IPv4Address(frame[pos + 12 : pos + 16])
    dst = ipaddress.IPv4Address(frame[pos + 16 : pos + 20])
    if frag & 0x3FFF:  # more-fragments flag or a fragment offset
        if proto != IPPROTO_UDP:
            return None
        raise FrameError(
            f"IPv4 fragment of a UDP datagram {src} -> {dst} (reassembly is not supported)", pos
        )
    return src, dst, proto, pos + ihl, pos + total


def _ipv6(frame: bytes, pos: int) -> tuple[IPAddress, IPAddress, int, int, int] | None:
    if len(frame) - pos < 40:
        raise FrameError("IPv6 header cut short", len(frame))
    payload_length, nxt = struct.unpack_from("!HB", frame, pos + 4)
    src = ipaddress.IPv6Address(frame[pos + 8 : pos + 24])
    dst = ipaddress.IPv6Address(frame[pos + 24 : pos + 40])
    end = pos + 40 + payload_length
    here = pos + 40
    for _ in range(_MAX_IPV6_EXTENSIONS):
        if nxt == IPV6_FRAGMENT:
            raise FrameError(f"IPv6 fragment {src} -> {dst} (reassembly is not supported)", here)
        if nxt not in _IPV6_EXTENSIONS:
            break
        if len(frame) - here < 2:
            raise FrameError("IPv6 extension header cut short", len(frame))
        nxt, hlen = frame[here], (frame[here + 1] + 1) * 8
        here += hlen
    return src, dst, nxt, here, end


_NETWORK = {ETHERTYPE_IPV4: _ipv4, ETHERTYPE_IPV6: _ipv6}


def _udp(frame: bytes, linktype: int) -> _Udp | None:
    link = LINK_TYPES.get(linktype)
    if link is None:
        raise CaptureError(f"link type {linktype} is not supported")
    ethertype, pos = link(frame)
    network = _NETWORK.get(ethertype)
    if network is None:
        return None
    ip = network(frame, pos)
    if ip is None:
        return None
    src, dst, proto, pos, ip_end = ip
    if proto != IPPROTO_UDP:
        return None
    if len(frame) - pos < _UDP.size:
        if pos <= len(frame) and ip_end - pos >= _UDP.size:
            raise FrameError("UDP header cut short by the capture", len(frame))
        return None
    sport, dport, ulen, _sum = _UDP.unpack_from(frame, pos)
    if sport not in _IKE_PORTS and dport not in _IKE_PORTS:
        return None
    if ulen < _UDP.size or pos + ulen > ip_end:
        raise FrameError(f"UDP length {ulen} does not fit the IP packet", pos + 4)
    start = pos + _UDP.size
    payload = frame[start : pos + ulen]
    return _Udp(src, dst, sport, dport, start, payload, ulen - _UDP.size)


def classify(frame_number: int, time: float, frame: bytes, linktype: int) -> Datagram | Skip:
    """The ISAKMP message in one frame, or why the frame is not one. Raises FrameError when
    the frame is IKE traffic we cannot use."""
    udp = _udp(frame, linktype)
    if udp is None:
        return Skip.NOT_UDP_IKE
    payload, offset, announced = udp.payload, udp.payload_offset, udp.announced
    if NATT_PORT in (udp.sport, udp.dport):
        kind = classify_4500(payload)
        if kind is Udp4500Kind.KEEPALIVE:
            return Skip.KEEPALIVE
        if kind is Udp4500Kind.ESP:
            return Skip.ESP_IN_UDP
        if kind is Udp4500Kind.INVALID:
            raise FrameError(f"{len(payload)}-byte UDP 4500 payload is neither IKE nor ESP", offset)
        payload, offset = payload[len(NON_ESP_MARKER) :], offset + len(NON_ESP_MARKER)
        announced -= len(NON_ESP_MARKER)
    return Datagram(
        frame_number,
        time,
        udp.src,
        udp.sport,
        udp.dst,
        udp.dport,
        bytes(payload),
        offset,
        announced if announced != len(payload) else None,
    )


@dataclass(frozen=True, slots=True)
class Frame:
    number: int
    time: float
    data: bytes


def open_capture(handle: BinaryIO) -> tuple[int, Iterator[Frame]]:
    """(link type, frames) of a pcap or pcapng file; CaptureError if it is neither."""
    try:
        reader = dpkt.pcap.UniversalReader(handle)
        linktype = int(reader.datalink())
    except (ValueError, dpkt.dpkt.Error, struct.error, EOFError) as exc:
        raise CaptureError(f"not a pcap or pcapng file ({exc})") from None
    if linktype not in LINK_TYPES:
        raise CaptureError(f"link type {linktype} is not supported")

    def frames() -> Iterator[Frame]:
        number = 0
        iterator = iter(reader)
        while True:
            try:
                item = next(iterator)
            except StopIteration:
                return
            except (ValueError, dpkt.dpkt.Error, struct.error) as exc:
                raise CaptureError(f"capture file damaged after frame {number} ({exc})") from None
            number += 1
            ts, data = item
            yield Frame(number, float(ts), bytes(data))

    return linktype, frames()
