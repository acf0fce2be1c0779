"""Peers the parent itself saw: the source of every IKE datagram, per local address.

The child may only point SAs, encapsulation ports and outgoing datagrams at addresses the
definitions name or that actually talked to us. For a "%any" definition and for NAT-T
ports there is no configured value, so the parent's own observation is the reference: a
child cannot make one up. Bounded (least recently seen dropped first). With several
negotiator children the time of the last arrival per local address is also kept per shard
(`any_seen_since(local, since, shard)`): a child may claim a live "%any" exchange only when
a peer of its own shard talked lately.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, TypeVar

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_PEERS: Final = 4096
MAX_PORTS_PER_PEER: Final = 8
MAX_LOCAL_ADDRS: Final = 256


@dataclass
class _Seen:
    ports: OrderedDict[int, None] = field(default_factory=OrderedDict)
    natt_ports: OrderedDict[int, None] = field(default_factory=OrderedDict)
    last: float = 0.0


def _add_port(table: OrderedDict[int, None], port: int) -> None:
    table[port] = None
    table.move_to_end(port)
    while len(table) > MAX_PORTS_PER_PEER:
        table.popitem(last=False)


_K = TypeVar("_K")


def _touch(table: OrderedDict[_K, float], key: _K, now: float) -> None:
    """Record `now` as the last arrival under `key`, newest last, bounded."""
    table[key] = now
    table.move_to_end(key)
    while len(table) > MAX_LOCAL_ADDRS:
        table.popitem(last=False)


class PeerTable:
    def __init__(self) -> None:
        self._peers: OrderedDict[tuple[IPAddress, IPAddress], _Seen] = OrderedDict()
        # local address -> when a datagram last arrived there (what any_seen_since asks)
        self._locals: OrderedDict[IPAddress, float] = OrderedDict()
        self._shard_locals: OrderedDict[tuple[IPAddress, int], float] = OrderedDict()

    def record(
        self, local: IPAddress, remote: IPAddress, remote_port: int, natt: bool, now: float,
        shard: int = 0,
    ) -> None:  # fmt: skip
        key = (local, remote)
        seen = self._peers.get(key)
        if seen is None:
            seen = self._peers[key] = _Seen()
        self._peers.move_to_end(key)
        _add_port(seen.natt_ports if natt else seen.ports, remote_port)
        seen.last = now
        while len(self._peers) > MAX_PEERS:
            self._peers.popitem(last=False)
        _touch(self._locals, local, now)
        _touch(self._shard_locals, (local, shard), now)

    def seen(self, local: IPAddress, remote: IPAddress) -> bool:
        return (local, remote) in self._peers

    def seen_since(self, local: IPAddress, remote: IPAddress, since: float) -> bool:
        """This peer sent a datagram to `local` at or after `since` (monotonic seconds)."""
        seen = self._peers.get((local, remote))
        return seen is not None and seen.last >= since

    def any_seen_since(self, local: IPAddress, since: float, shard: int | None = None) -> bool:
        """Some peer (of `shard`, if given) sent a datagram to `local` at or after `since`:
        one lookup (the time of the last arrival per local address), not a walk through
        the recent peers."""
        last = self._locals.get(local) if shard is None else self._shard_locals.get((local, shard))
        return last is not None and last >= since

    def ports(self, local: IPAddress, remote: IPAddress) -> frozenset[int]:
        """Source ports this peer used towards `local` on UDP 500."""
        seen = self._peers.get((local, remote))
        return frozenset(seen.ports) if seen else frozenset()

    def natt_ports(self, local: IPAddress, remote: IPAddress) -> frozenset[int]:
        seen = self._peers.get((local, remote))
        return frozenset(seen.natt_ports) if seen else frozenset()

    def is_local(self, local: IPAddress) -> bool:
        """A datagram arrived at this address (so it is one of ours)."""
        return local in self._locals
