"""What the child may send to the network: the parent is no UDP cannon.

A hostile child could otherwise aim `DatagramOut` at any address that ever sent us one
(spoofed) datagram. Here every outgoing datagram must

- look like ISAKMP: at least a header, version 1.0, the header's length equal to the
  datagram's length, a non-zero initiator cookie; or be a NAT-T keepalive (0xFF on 4500);
- belong to an exchange the parent relayed: its initiator cookie (with the peer's address)
  arrived from that peer, or it is our own first message (responder cookie zero) to a peer
  a definition or activation names, or to one that proved lately that it receives at its
  address; once an exchange's responder cookie is known, every datagram carries it;
- go to a port pair the exchange used (the peer's source port towards our port), or to the
  same port number as ours (500 to 500, 4500 to 4500: floating to NAT-T);
- fit the destination's budget: every datagram received from it grants `PRE_MULT` packets
  and `PRE_MULT` times its bytes; a datagram of a *proven* exchange grants `POST_MULT`.
  An exchange is proven once the peer sent us a cookie that our side chose (the responder
  cookie of our reply, or our initiator cookie echoed): it receives at that address. A
  proven destination also has a small steady allowance (DPD, rekeys, deletes, keepalives
  when the peer is quiet); our own first messages to configured peers an allowance of their
  own. Credit is capped, so nothing is banked for long.
- one exception before proof: an Aggressive Mode first message to a local address where a
  definition authenticates Aggressive Mode with signatures grants at least `AM_SIG_FLOOR`
  (packets, bytes). Its answer (AM2) must carry our certificate chain and signature, a few
  KB, maybe as IKE fragments, which 3 x a 500-byte AM1 cannot hold. This is the
  amplification IKEv1 Aggressive Mode with certificates has by design, bounded per
  destination by PRE_CAP and, for an honest child, by its per-source Aggressive Mode work
  budget; only gateways with such a definition offer it (use Main Mode where you can).

Keepalives go only to a NAT-T port of a proven exchange. NAT-T encapsulation ports that a
Phase2Install names are vetted the same way (`natt_port_ok`): a port the peer used in a
proven exchange lately. All tables are bounded; a flood of first messages (unproven
exchanges and destinations) evicts only other unproven entries, never proven ones.

A proven exchange is, for a peer that authenticates, an ISAKMP SA: it lives for hours and
may be quiet for most of them, and our own messages on it (a Quick Mode we start for a
rekey, a Delete, DPD) need its entry. So proven exchanges are kept as long as the longest
phase 1 lifetime a definition may have, refreshed by the peer's datagrams; the table holds
far more of them than a gateway holds SAs (10,000 tunnels in bench/tunnels.py) and, when
full, lets go of the one quiet for longest; and one destination holds at most
MAX_PROVEN_PER_DEST of them, so a sender that proves exchanges from its own address
(it must receive there) evicts only its own, never another peer's SAs.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

HEADER: Final = 28
VERSION: Final = 0x10  # major 1, minor 0
ZERO_COOKIE: Final = bytes(8)
KEEPALIVE: Final = b"\xff"

PRE_MULT: Final = 3  # packets (and bytes) per packet (byte) received, before proof
POST_MULT: Final = 8  # the same, for datagrams of a proven exchange
PRE_CAP: Final = (16, 64 * 1024)  # credit cap (packets, bytes) of an unproven destination
AM_SIG_FLOOR: Final = (8, 8 * 1024)  # least credit of an AM1 towards a signature definition
AGGRESSIVE: Final = 4  # the exchange type byte of the ISAKMP header (offset 18)
POST_CAP: Final = (512, 2 * 1024 * 1024)
STEADY_RATE: Final = (1.0, 4096.0)  # per second, proven destinations
STEADY_BURST: Final = (32.0, 128.0 * 1024)
INIT_RATE: Final = (0.5, 2048.0)  # per second, our first messages to a configured peer
INIT_BURST: Final = (8.0, 32.0 * 1024)

PENDING_TTL: Final = 120.0  # an exchange nobody proved
# refreshed by every datagram of the exchange from the peer: the longest phase 1 lifetime
# (config.model BOUNDS "phase1.lifetime"), so a quiet ISAKMP SA keeps its entry
PROVEN_TTL: Final = 86400.0
MAX_PENDING: Final = 8192
MAX_PROVEN: Final = 65536
MAX_PROVEN_PER_DEST: Final = 4096
MAX_FRESH_DESTS: Final = 8192
MAX_PROVEN_DESTS: Final = 65536
MAX_FLOWS: Final = 4
MAX_NATT_PORTS: Final = 4

Dest = tuple[IPAddress, IPAddress]  # (local, remote)
ExchangeKey = tuple[IPAddress, IPAddress, bytes]  # (local, remote, initiator cookie)


def looks_like_isakmp(data: bytes) -> str | None:
    """None if `data` is shaped like one ISAKMP message, else why not."""
    if len(data) < HEADER:
        return f"{len(data)} bytes is shorter than an ISAKMP header"
    if data[17] != VERSION:
        return f"ISAKMP version 0x{data[17]:02x}"
    length = int.from_bytes(data[24:28], "big")
    if length != len(data):
        return f"header length {length} in a datagram of {len(data)} bytes"
    if data[:8] == ZERO_COOKIE:
        return "zero initiator cookie"
    return None


@dataclass(slots=True)
class _Bucket:
    packets: float
    octets: float
    stamp: float

    def refill(self, now: float, rate: tuple[float, float], burst: tuple[float, float]) -> None:
        dt = max(0.0, now - self.stamp)
        self.packets = min(burst[0], self.packets + dt * rate[0])
        self.octets = min(burst[1], self.octets + dt * rate[1])
        self.stamp = now


@dataclass(slots=True)
class _Destination:
    credit_packets: float = 0.0
    credit_octets: float = 0.0
    proven_until: float = 0.0
    steady: _Bucket | None = None
    init: _Bucket | None = None
    natt_ports: OrderedDict[int, float] = field(default_factory=OrderedDict)


@dataclass(slots=True)
class _Exchange:
    ours: bool  # we sent its first message (the initiator cookie is our child's)
    rcookie: bytes | None  # the responder cookie, once known
    last: float
    rcookie_ours: bool = False  # our reply chose it (the peer cannot know it otherwise)
    proven: bool = False
    # the port pairs it used, oldest first, at most MAX_FLOWS (a tuple: a gateway holds
    # one of these per ISAKMP SA, and an empty OrderedDict alone is 0.1 kB)
    flows: tuple[tuple[int, int], ...] = ()

    def add_flow(self, local_port: int, remote_port: int) -> None:
        flow, flows = (local_port, remote_port), self.flows
        if flows and flows[-1] == flow:
            return  # the newest already (every datagram of an exchange asks)
        self.flows = (*(f for f in flows if f != flow), flow)[-MAX_FLOWS:]


def _bounded_put(table: OrderedDict[object, object], key: object, value: object, cap: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > cap:
        table.popitem(last=False)


class _ProvenExchanges:
    """The proven exchanges, the one quiet for longest first, with each destination's in
    the same order: full, the table lets go of the quietest; a destination past its share,
    of its own quietest."""

    __slots__ = ("_all", "_of_dest")

    def __init__(self) -> None:
        self._all: OrderedDict[ExchangeKey, _Exchange] = OrderedDict()
        self._of_dest: dict[Dest, OrderedDict[ExchangeKey, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def get(self, key: ExchangeKey) -> _Exchange | None:
        return self._all.get(key)

    def put(self, key: ExchangeKey, ex: _Exchange) -> None:
        self._all[key] = ex
        self._all.move_to_end(key)
        own = self._of_dest.setdefault((key[0], key[1]), OrderedDict())
        own[key] = None
        own.move_to_end(key)
        if len(own) > MAX_PROVEN_PER_DEST:
            self.drop(next(iter(own)))
        while len(self._all) > MAX_PROVEN:
            self.drop(next(iter(self._all)))

    def touch(self, key: ExchangeKey) -> None:
        """A datagram of the exchange from the peer: it is the most recently active now."""
        self._all.move_to_end(key)
        self._of_dest[(key[0], key[1])].move_to_end(key)

    def drop(self, key: ExchangeKey) -> None:
        if self._all.pop(key, None) is None:
            return
        dest = (key[0], key[1])
        own = self._of_dest[dest]
        del own[key]
        if not own:
            del self._of_dest[dest]


class Egress:
    """The exchanges the parent relayed and the per-destination budgets (see the module)."""

    def __init__(self) -> None:
        self._pending: OrderedDict[ExchangeKey, _Exchange] = OrderedDict()
        self._proven = _ProvenExchanges()
        self._fresh_dests: OrderedDict[Dest, _Destination] = OrderedDict()
        self._proven_dests: OrderedDict[Dest, _Destination] = OrderedDict()
        # local addresses of definitions doing Aggressive Mode with signatures (AM_SIG_FLOOR)
        self.am_signature_locals: frozenset[IPAddress] = frozenset()

    # -- lookups ---------------------------------------------------------------------------

    def _exchange(self, key: ExchangeKey, now: float) -> _Exchange | None:
        ex = self._proven.get(key)
        if ex is not None:
            if ex.last + PROVEN_TTL < now:
                self._proven.drop(key)
                return None
            return ex
        ex = self._pending.get(key)
        if ex is not None and ex.last + PENDING_TTL < now:
            del self._pending[key]
            return None
        return ex

    def _dest(self, dest: Dest, create: bool) -> _Destination | None:
        found = self._proven_dests.get(dest) or self._fresh_dests.get(dest)
        if found is None and create:
            found = _Destination()
            _bounded_put(self._fresh_dests, dest, found, MAX_FRESH_DESTS)  # type: ignore[arg-type]
        return found

    def _prove(self, key: ExchangeKey, ex: _Exchange, now: float) -> None:
        ex.proven = True
        self._pending.pop(key, None)
        self._proven.put(key, ex)
        dest = (key[0], key[1])
        d = self._fresh_dests.pop(dest, None) or self._proven_dests.get(dest) or _Destination()
        _bounded_put(self._proven_dests, dest, d, MAX_PROVEN_DESTS)  # type: ignore[arg-type]
        d.proven_until = now + PROVEN_TTL

    def proven(self, local: IPAddress, remote: IPAddress, now: float) -> bool:
        d = self._proven_dests.get((local, remote))
        return d is not None and d.proven_until >= now

    def natt_port_ok(self, local: IPAddress, remote: IPAddress, port: int, now: float) -> bool:
        """`port` is a source port from which `remote` sent datagrams of a proven exchange to
        our NAT-T port lately."""
        d = self._proven_dests.get((local, remote))
        if d is None:
            return False
        seen = d.natt_ports.get(port)
        return seen is not None and seen + PROVEN_TTL >= now

    # -- what arrived ----------------------------------------------------------------------

    def received(
        self,
        local: IPAddress,
        local_port: int,
        remote: IPAddress,
        remote_port: int,
        natt: bool,
        data: bytes,
        now: float,
    ) -> None:
        """A datagram the parent relays to the child (the parent reads the cookies only)."""
        if len(data) < 16 or data[:8] == ZERO_COOKIE:
            return
        icookie, rcookie = data[:8], data[8:16]
        key = (local, remote, icookie)
        ex = self._exchange(key, now)
        if ex is None:
            ex = _Exchange(ours=False, rcookie=None if rcookie == ZERO_COOKIE else rcookie,
                           last=now)  # fmt: skip
            _bounded_put(self._pending, key, ex, MAX_PENDING)  # type: ignore[arg-type]
        elif not ex.proven and rcookie != ZERO_COOKIE:
            # the peer echoes a cookie our side chose: it receives at this address
            if (ex.ours and ex.rcookie is None) or (ex.rcookie_ours and rcookie == ex.rcookie):
                ex.rcookie = rcookie
                self._prove(key, ex, now)
        if ex.proven and rcookie not in (ex.rcookie, ZERO_COOKIE):
            ex = None  # a forged responder cookie: no credit of a proven exchange
        if ex is not None:
            ex.last = now
            ex.add_flow(local_port, remote_port)
            if ex.proven:
                self._proven.touch(key)
        proven = ex is not None and ex.proven
        d = self._dest((local, remote), create=True)
        assert d is not None
        if proven and natt:
            _bounded_put(d.natt_ports, remote_port, now, MAX_NATT_PORTS)  # type: ignore[arg-type]
        mult = POST_MULT if proven else PRE_MULT
        cap = POST_CAP if self.proven(local, remote, now) else PRE_CAP
        packets, octets = mult, mult * len(data)
        if (
            not proven
            and rcookie == ZERO_COOKIE
            and len(data) > 18
            and data[18] == AGGRESSIVE
            and local in self.am_signature_locals
        ):
            packets, octets = max(packets, AM_SIG_FLOOR[0]), max(octets, AM_SIG_FLOOR[1])
        d.credit_packets = min(cap[0], d.credit_packets + packets)
        d.credit_octets = min(cap[1], d.credit_octets + octets)

    # -- what the child wants to send ------------------------------------------------------

    def check_send(
        self,
        local: IPAddress,
        local_port: int,
        remote: IPAddress,
        remote_port: int,
        natt: bool,
        data: bytes,
        initiation_target: bool,
        now: float,
    ) -> str | None:
        """None, and the datagram is charged, if it may leave; else why not (nothing is
        charged or recorded then). `initiation_target`: a definition or activation names
        `remote` for `local`, so our own first message may go there."""
        proven_dest = self.proven(local, remote, now)
        d = self._dest((local, remote), create=False)
        if natt and data == KEEPALIVE:
            if (
                not proven_dest
                or d is None
                or not self.natt_port_ok(local, remote, remote_port, now)
            ):
                return f"keepalive to {remote} port {remote_port}: no proven NAT-T exchange"
            return self._charge(d, len(data), steady=True, init=False, now=now)
        problem = looks_like_isakmp(data)
        if problem is not None:
            return problem
        icookie, rcookie = data[:8], data[8:16]
        key = (local, remote, icookie)
        ex = self._exchange(key, now)
        if ex is None:
            if rcookie != ZERO_COOKIE:
                return f"cookies of no exchange relayed with {remote}"
            if remote_port != local_port:
                return f"a first message to port {remote_port}"
            if not (initiation_target or proven_dest):
                return f"a first message to {remote}, which no definition names"
            d = self._dest((local, remote), create=True)
            assert d is not None
            why = self._charge(d, len(data), steady=proven_dest, init=initiation_target, now=now)
            if why is None:
                ex = _Exchange(ours=True, rcookie=None, last=now)
                ex.add_flow(local_port, remote_port)
                _bounded_put(self._pending, key, ex, MAX_PENDING)  # type: ignore[arg-type]
            return why
        if ex.rcookie is None:
            if ex.ours and rcookie != ZERO_COOKIE:
                return "a responder cookie the peer never sent"
        elif rcookie != ex.rcookie and not (ex.ours and rcookie == ZERO_COOKIE):
            return "a responder cookie of another exchange"
        if (local_port, remote_port) not in ex.flows and remote_port != local_port:
            return f"port {remote_port}, which this exchange never used"
        if d is None:
            d = self._dest((local, remote), create=True)
            assert d is not None
        why = self._charge(d, len(data), steady=ex.proven, init=ex.ours and initiation_target,
                           now=now)  # fmt: skip
        if why is None:
            if ex.rcookie is None and rcookie != ZERO_COOKIE:
                ex.rcookie = rcookie  # our reply fixes the responder cookie
                ex.rcookie_ours = True
            ex.add_flow(local_port, remote_port)
        return why

    @staticmethod
    def _charge(d: _Destination, size: int, *, steady: bool, init: bool, now: float) -> str | None:
        if d.credit_packets >= 1 and d.credit_octets >= size:
            d.credit_packets -= 1
            d.credit_octets -= size
            return None
        pools: list[_Bucket] = []
        if steady:
            if d.steady is None:
                d.steady = _Bucket(STEADY_BURST[0], STEADY_BURST[1], now)
            d.steady.refill(now, STEADY_RATE, STEADY_BURST)
            pools.append(d.steady)
        if init:
            if d.init is None:
                d.init = _Bucket(INIT_BURST[0], INIT_BURST[1], now)
            d.init.refill(now, INIT_RATE, INIT_BURST)
            pools.append(d.init)
        for pool in pools:
            if pool.packets >= 1 and pool.octets >= size:
                pool.packets -= 1
                pool.octets -= size
                return None
        return "over the destination's budget"
