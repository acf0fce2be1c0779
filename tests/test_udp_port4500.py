"""The parent's UDP 4500 socket drops what is not IKE and strips the non-ESP marker, with the
rule of ikepriv.isakmp.natt_framing. Loopback only (127.0.0.1 <- 127.0.0.2), no root."""

from __future__ import annotations

import ipaddress
import socket

import trio

from ikepriv.parent_kernel import udp

IKE = bytes(8) + bytes(8) + b"\x01\x10\x02\x00" + bytes(4) + (28).to_bytes(4, "big")


async def _receive_each(datagrams: list[bytes]) -> list[udp.Received | udp.Drop]:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, udp.IP_PKTINFO, 1)
    await sock.bind(("127.0.0.1", 0))
    ike = udp.IkeSocket(sock, socket.AF_INET, udp.NATT_PORT)  # port 4500 rules, any port
    peer = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await peer.bind(("127.0.0.2", 0))
    out: list[udp.Received | udp.Drop] = []
    with sock, peer:
        for data in datagrams:
            await peer.sendto(data, sock.getsockname())
            out.append(await udp.receive(ike))
        await udp.send(
            ike,
            ipaddress.IPv4Address("127.0.0.1"),
            ipaddress.IPv4Address("127.0.0.2"),
            peer.getsockname()[1],
            IKE,
        )
        await udp.send(
            ike,
            ipaddress.IPv4Address("127.0.0.1"),
            ipaddress.IPv4Address("127.0.0.2"),
            peer.getsockname()[1],
            b"\xff",
        )
        sent = [await peer.recv(100), await peer.recv(100)]
    assert sent == [bytes(4) + IKE, b"\xff"]  # marker on IKE, none on a keepalive
    return out


def test_port_4500_receive_and_send() -> None:
    got = trio.run(
        _receive_each,
        [
            b"\xff",  # NAT-T keepalive
            b"\x00\x00\x10\x01" + bytes(60),  # ESP (SPI 0x1001)
            b"\x00\x00\x00",  # too short for anything
            bytes(4),  # the marker and nothing behind it
            bytes(4) + IKE,
        ],
    )
    assert got[:4] == [udp.Drop.KEEPALIVE, udp.Drop.NO_MARKER, udp.Drop.NO_MARKER,
                       udp.Drop.TRUNCATED]  # fmt: skip
    last = got[4]
    assert isinstance(last, udp.Received)
    assert (last.data, last.natt, last.local_port) == (IKE, True, udp.NATT_PORT)
    assert last.remote == ipaddress.IPv4Address("127.0.0.2")
