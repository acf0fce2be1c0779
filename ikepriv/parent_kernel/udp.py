"""The IKE sockets: UDP 500 and 4500, IPv4 and IPv6, bound to the wildcard address.

- Packet info (IP_PKTINFO / IPV6_RECVPKTINFO) on every socket: each received datagram says
  which local address it came to, and replies are sent from that address (a gateway with
  several addresses must answer from the one the peer talked to).
- 4500 carries UDP_ENCAP_ESPINUDP, so the kernel takes ESP-in-UDP for itself and hands us
  only IKE, which carries the 4-byte non-ESP marker (RFC 3948): stripped on the way in,
  prepended on the way out. A lone 0xFF byte is a NAT keepalive and is dropped.
- Each socket has a per-socket bypass policy for both directions (IP_XFRM_POLICY /
  IPV6_XFRM_POLICY), so IKE itself is never caught by the IPsec policies we install.
The parent does not look inside the datagrams beyond their length.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Final

import trio

from ikepriv.ipc.hashed_address import hashed_address
from ikepriv.isakmp.natt_framing import (
    Udp4500Kind,
    add_non_esp_marker,
    classify_4500,
    is_natt_keepalive,
    strip_non_esp_marker,
)
from ikepriv.parent_kernel.kernel.xfrm_messages import (
    UDP_ENCAP_ESPINUDP,
    Direction,
    PolicyAction,
    UserpolicyInfo,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

IKE_PORT: Final = 500
NATT_PORT: Final = 4500
MAX_UDP: Final = 65535
ADDRESS_MEMO: Final = 4096  # addresses whose conversions are remembered (peers repeat)

# linux/in.h, linux/in6.h, linux/udp.h: not all of these are in Python's socket module
IP_PKTINFO: Final = 8
IP_XFRM_POLICY: Final = 17
IPV6_XFRM_POLICY: Final = 35
SOL_UDP: Final = 17
UDP_ENCAP: Final = 100

_IN_PKTINFO: Final = struct.Struct("=i4s4s")  # ifindex, spec_dst, addr
_IN6_PKTINFO: Final = struct.Struct("=16si")  # addr, ifindex
# plain ints, not socket's IntFlag members (`int & IntFlag` builds an enum member per call)
_TRUNCATED: Final = int(socket.MSG_TRUNC | socket.MSG_CTRUNC)
_DONTWAIT: Final = int(socket.MSG_DONTWAIT)
_ANC_SPACE: Final = socket.CMSG_SPACE(max(_IN_PKTINFO.size, _IN6_PKTINFO.size))


def bypass_policy(family: int, direction: Direction) -> bytes:
    """A socket policy that lets this socket's traffic pass IPsec unchanged: a struct
    xfrm_userpolicy_info with only the selector's family, the direction and ALLOW set."""
    return UserpolicyInfo.pack(
        {"sel": {"family": family}, "dir": int(direction), "action": int(PolicyAction.ALLOW)}
    )


@dataclass(frozen=True)
class Received:
    local: IPAddress
    local_port: int
    remote: IPAddress
    remote_port: int
    natt: bool
    data: bytes


class Drop(Enum):
    """Why a datagram never reached the child; the value is the counter it is counted in."""

    TRUNCATED = "udp_dropped_truncated"  # longer than any IKE message, or empty
    KEEPALIVE = "udp_keepalives"  # NAT-T keepalive: expected, not an error
    NO_MARKER = "udp_dropped_no_marker"  # on 4500 without the non-ESP marker
    NOT_FOR_US = "udp_dropped_not_unicast"  # to a broadcast/multicast address, no pktinfo
    BAD_SOURCE = "udp_dropped_bad_source"  # link-local, scoped, port 0, ourselves


@dataclass
class IkeSocket:
    sock: trio.socket.SocketType
    family: int
    port: int
    raw: socket.socket | None = None  # the same socket, for receive_nowait (non-blocking)

    @property
    def natt(self) -> bool:
        return self.port == NATT_PORT


def _setup(family: int, port: int, address: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            level, opt = socket.IPPROTO_IPV6, IPV6_XFRM_POLICY
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            level, opt = socket.IPPROTO_IP, IP_XFRM_POLICY
        for direction in (Direction.IN, Direction.OUT):
            sock.setsockopt(level, opt, bypass_policy(family, direction))
        if port == NATT_PORT:
            sock.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
        sock.bind((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def open_sockets(
    ports: Iterable[int] = (IKE_PORT, NATT_PORT),
    families: Iterable[int] = (socket.AF_INET, socket.AF_INET6),
) -> tuple[list[IkeSocket], list[str]]:
    """Bind every (family, port); IPv6 may be missing in a namespace (then a warning)."""
    out: list[IkeSocket] = []
    warnings: list[str] = []
    for family in families:
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"  # noqa: S104 -- IKE listens everywhere
        for port in ports:
            try:
                raw = _setup(family, port, wildcard)
            except OSError as exc:
                if family == socket.AF_INET6 and exc.errno in (
                    errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL, errno.EPROTONOSUPPORT,
                ):  # fmt: skip
                    warnings.append(f"no IPv6 on UDP {port}: {exc.strerror}")
                    continue
                for s in out:
                    s.sock.close()
                raise
            out.append(IkeSocket(trio.socket.from_stdlib_socket(raw), family, port, raw))
    return out, warnings


@functools.lru_cache(maxsize=ADDRESS_MEMO)
def _local_of(packed: bytes) -> tuple[IPAddress, bool, bool]:
    """A local address from its packet-info bytes: the address, whether it is multicast,
    whether it is link-local (ipaddress is slow at all three; a gateway has few addresses)."""
    addr = hashed_address(packed)
    return addr, addr.is_multicast, addr.is_link_local


@functools.lru_cache(maxsize=ADDRESS_MEMO)
def _remote_of(host: str) -> IPAddress | None:
    """The source address recvmsg gave as text, or None if it can be no peer: unparsable,
    link-local or scoped (no scope in the IPC addresses: link-local peers unsupported),
    unspecified or multicast (nobody to answer). Memoised: the peers are few and repeat."""
    try:
        remote = hashed_address(host)
    except ValueError:
        return None
    scoped = isinstance(remote, ipaddress.IPv6Address) and remote.scope_id is not None
    if remote.is_link_local or scoped or remote.is_unspecified or remote.is_multicast:
        return None
    return remote


@functools.lru_cache(maxsize=ADDRESS_MEMO)
def _text(addr: IPAddress) -> str:
    """The address as sendmsg wants it (str() of an ipaddress object is slow)."""
    return str(addr)


def _local_address(
    family: int, ancdata: list[tuple[int, int, bytes]]
) -> tuple[IPAddress, bool] | None:
    """The local address a datagram came to and whether it is link-local; None if it was
    sent to a broadcast or multicast address (not to us) or carries no packet info."""
    for level, kind, data in ancdata:
        if family == socket.AF_INET and (level, kind) == (socket.IPPROTO_IP, IP_PKTINFO):
            if len(data) >= _IN_PKTINFO.size:
                _, spec_dst, addr = _IN_PKTINFO.unpack_from(data)
                if spec_dst != addr:  # sent to a broadcast or multicast address, not to us
                    return None
                local, _, link_local = _local_of(addr)
                return local, link_local
        if family == socket.AF_INET6 and (level, kind) == (
            socket.IPPROTO_IPV6, socket.IPV6_PKTINFO,
        ):  # fmt: skip
            if len(data) >= _IN6_PKTINFO.size:
                addr6, _ = _IN6_PKTINFO.unpack_from(data)
                local6, multicast, link_local = _local_of(addr6)
                return None if multicast else (local6, link_local)
    return None


async def receive(s: IkeSocket) -> Received | Drop:
    """One datagram, or why it is dropped (truncated, keepalive, no marker, no pktinfo)."""
    data, ancdata, flags, addr = await s.sock.recvmsg(MAX_UDP + 1, _ANC_SPACE)
    return _received(s, data, ancdata, flags, addr)


def receive_nowait(s: IkeSocket) -> Received | Drop | None:
    """As `receive`, without waiting: None when nothing is queued (EAGAIN). Lets the daemon
    drain the socket in batches, one wake-up per burst rather than per datagram."""
    raw = s.raw
    if raw is None:
        raise ValueError("receive_nowait needs the IkeSocket's raw socket")
    try:
        data, ancdata, flags, addr = raw.recvmsg(MAX_UDP + 1, _ANC_SPACE, _DONTWAIT)
    except BlockingIOError:
        return None
    return _received(s, data, ancdata, flags, addr)


def _received(
    s: IkeSocket, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int, addr: object
) -> Received | Drop:
    if flags & _TRUNCATED or not data:
        return Drop.TRUNCATED
    found = _local_address(s.family, ancdata)
    if found is None:
        return Drop.NOT_FOR_US
    local, local_link = found
    natt = s.natt
    if natt:
        kind = classify_4500(data)
        if kind is Udp4500Kind.KEEPALIVE:
            return Drop.KEEPALIVE
        if kind is not Udp4500Kind.IKE:
            return Drop.NO_MARKER  # ESP never reaches this socket (the kernel takes it)
        data = strip_non_esp_marker(data) or b""
        if not data:
            return Drop.TRUNCATED
    host, port = addr[0], addr[1]  # type: ignore[index]
    remote = _remote_of(host)
    if remote is None or local_link:
        return Drop.BAD_SOURCE  # see _remote_of
    if port == 0 or remote == local:
        return Drop.BAD_SOURCE  # nobody to answer, or ourselves
    return Received(local, s.port, remote, int(port), natt, data)


async def send(s: IkeSocket, local: IPAddress, remote: IPAddress, port: int, data: bytes) -> None:
    """Send from `local` (pktinfo), with the non-ESP marker on 4500 (not on a keepalive).

    A plain non-blocking sendmsg on the raw socket, waiting for room only on EAGAIN: trio's
    wrapper yields to the scheduler after every send, a good part of the parent's time per
    Main Mode (docs/performance.md)."""
    if s.natt and not is_natt_keepalive(data):
        data = add_non_esp_marker(data)
    if s.family == socket.AF_INET6:
        cmsg = (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, _IN6_PKTINFO.pack(local.packed, 0))
        dest: tuple[object, ...] = (_text(remote), port, 0, 0)
    else:
        cmsg = (socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, local.packed, bytes(4)))
        dest = (_text(remote), port)
    raw = s.raw
    if raw is None:
        await s.sock.sendmsg([data], [cmsg], 0, dest)
        return
    while True:
        try:
            raw.sendmsg([data], [cmsg], _DONTWAIT, dest)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(raw)
            continue
        return
