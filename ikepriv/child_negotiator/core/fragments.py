"""IKE fragmentation (the Cisco/Microsoft IKEv1 scheme): what we announce, when we cut our
own messages, and the bounded reassembly of the peer's.

Why: certificate chains make Main Mode 5/6 and Aggressive Mode messages larger than a path
MTU, and many middleboxes drop IP fragments; IKE-level fragments are ordinary datagrams.

* **Announcing.** The FRAGMENTATION vendor ID (md5("FRAGMENTATION") and the capability
  bytes 0x80000000, as strongSwan sends it) goes into our first phase 1 message, and into
  the responder's answer only when the initiator sent it too (strongSwan's rule), unless
  the definition says `fragmentation = no`.
* **Sending** (`outbound`). With `yes`, once the peer announced it, and with `force` even
  before, every phase 1 datagram (Main or Aggressive Mode, already encrypted where it is)
  whose IP packet would exceed the definition's `fragment_size` is cut into slices, each
  a complete datagram within that size (IP and UDP headers and, on port 4500, the non-ESP
  marker accounted for). The fragments replace the message in the flight, so every
  retransmission resends all of them, byte for byte. Quick Mode and informational messages
  are small and are sent whole, as by strongSwan in practice.
* **Receiving** (`Reassembly`). Only for an exchange we hold (its cookies) from its peer's
  address, or for a first message (responder cookie zero) from a source that a definition
  accepting fragments names. Strictly bounded: one fragment ID at a time per exchange (a
  new ID discards the old one, as in strongSwan), numbers 1..`fragment_max_count`,
  `fragment_max_message` bytes, duplicates ignored, a second or inconsistent LAST discards
  the message, and a message not complete `fragment_timeout` seconds after its first
  fragment is abandoned (the injected clock; no fragment extends it). First-message
  buffers are few, few per source, the oldest evicted; all buffers share a byte budget in
  which first-message buffers are evicted first, so a forger (who cannot guess our
  cookies) only ever competes with other first messages. The reassembled bytes then take
  the normal path (engine._on_datagram), exactly like a message that came whole.

Everything here is iteration over bounded tables; nothing recurses on input, and a
reassembled message that is itself a fragment is refused by the caller.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field

from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc.messages import Fragmentation, Role
from ikepriv.isakmp import vendor_ids
from ikepriv.isakmp.constants import HEADER_LENGTH, ExchangeType
from ikepriv.isakmp.fragment import (
    FRAGMENT_HEADER,
    FragmentPayload,
    encode_fragment_datagram,
)
from ikepriv.isakmp.header import OFFSET_EXCHANGE
from ikepriv.process_contract import Counters

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PHASE1_EXCHANGES = frozenset({ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE})
IPV4_HEADER = 20  # no options: what we send
IPV6_HEADER = 40  # no extension headers
UDP_HEADER = 8
NON_ESP_MARKER = 4
_NEXT_ID = "fragment_id"  # IsakmpSa.extensions key: the last fragment ID we used


# ------------------------------------------------------------------------------ policy


def peer_announced(sa: IsakmpSa) -> bool:
    """The peer sent the FRAGMENTATION vendor ID (with the phase 1 capability, or bare)."""
    return any(vendor_ids.announces_fragmentation(v) for v in sa.peer_vendor_ids)


def vendor_ids_to_send(sa: IsakmpSa) -> tuple[bytes, ...]:
    """Our FRAGMENTATION vendor ID for this SA's next phase 1 message, or nothing."""
    if sa.definition.fragmentation is Fragmentation.NO:
        return ()
    if sa.role is Role.RESPONDER and not peer_announced(sa):
        return ()  # strongSwan answers with it only when the initiator sent it
    return (vendor_ids.FRAGMENTATION_VID,)


def accepts(fragmentation: Fragmentation) -> bool:
    """Whether a definition reassembles fragments at all."""
    return fragmentation is not Fragmentation.NO


def sends(sa: IsakmpSa) -> bool:
    """Whether our phase 1 messages on `sa` are cut when too large."""
    mode = sa.definition.fragmentation
    if mode is Fragmentation.FORCE:
        return True
    return mode is Fragmentation.YES and peer_announced(sa)


def max_message(fragment_size: int, *, ipv6: bool, natt: bool) -> int:
    """The largest ISAKMP message (header included) that fits an IP packet of
    `fragment_size` bytes: IP and UDP headers, and the non-ESP marker on port 4500."""
    overhead = (IPV6_HEADER if ipv6 else IPV4_HEADER) + UDP_HEADER
    return fragment_size - overhead - (NON_ESP_MARKER if natt else 0)


def split(message: bytes, limit: int, fragment_id: int) -> tuple[bytes, ...]:
    """`message` as fragment datagrams of at most `limit` bytes each (numbers from 1, LAST
    on the final one), each with `message`'s own header but next payload 132."""
    room = limit - HEADER_LENGTH - FRAGMENT_HEADER
    if room < 1:
        raise ValueError(f"no room for fragment data in {limit} bytes")
    count = -(-len(message) // room)
    if count > 255:
        raise ValueError(f"{len(message)} bytes need {count} fragments (at most 255)")
    header = message[:HEADER_LENGTH]
    return tuple(
        encode_fragment_datagram(
            header,
            FragmentPayload(fragment_id, n + 1, n + 1 == count, message[n * room : (n + 1) * room]),
        )
        for n in range(count)
    )


def outbound(sa: IsakmpSa, datagrams: tuple[bytes, ...], counters: Counters) -> tuple[bytes, ...]:
    """The datagrams of a flight as they go on the wire: phase 1 messages too large for
    the definition's fragment_size are replaced by their fragments (see the module doc)."""
    if not sends(sa):
        return datagrams
    limit = max_message(sa.definition.fragment_size, ipv6=sa.remote.addr.version == 6, natt=sa.natt)
    out: list[bytes] = []
    for data in datagrams:
        if (
            len(data) <= limit
            or len(data) < HEADER_LENGTH
            or data[OFFSET_EXCHANGE] not in PHASE1_EXCHANGES
        ):
            out.append(data)
            continue
        last = sa.extensions.get(_NEXT_ID)
        fragment_id = last % 0xFFFF + 1 if isinstance(last, int) else 1
        try:
            pieces = split(data, limit, fragment_id)
        except ValueError:  # cannot happen for fragment_size >= 576 (the IPC minimum)
            out.append(data)
            continue
        sa.extensions[_NEXT_ID] = fragment_id
        counters.fragments_sent += len(pieces)
        out.extend(pieces)
    return tuple(out)


# ------------------------------------------------------------------------------ receiving


@dataclass(slots=True)
class _Partial:
    """The fragments of one message received so far."""

    fragment_id: int
    started: float
    cookies: bytes  # of the fragment datagrams; the reassembled header must carry them
    source: IPAddress | None  # set for first-message buffers (the per-source bound)
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0
    last: int = 0  # number of the LAST fragment, 0 until it arrived


class Reassembly:
    """The reassembly buffers of the whole negotiator (see the module docstring).

    Keys are chosen by the engine: the SA's tunnel id for an exchange we hold, (source
    address, port, initiator cookie) for a first message. Two tables in start order, so
    expiry and eviction take the oldest in O(1)."""

    __slots__ = ("_bytes", "_counters", "_first", "_known", "_settings")

    def __init__(self, settings: Settings, counters: Counters) -> None:
        self._settings = settings
        self._counters = counters
        self._known: OrderedDict[object, _Partial] = OrderedDict()
        self._first: OrderedDict[object, _Partial] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._known) + len(self._first)

    @property
    def total_bytes(self) -> int:
        """Fragment data held now, over all buffers."""
        return self._bytes

    def add(
        self,
        key: object,
        fragment: FragmentPayload,
        cookies: bytes,
        now: float,
        *,
        first_source: IPAddress | None = None,
    ) -> bytes | None:
        """Take one fragment; the whole message once its last missing piece arrived.

        `first_source` marks a first-message buffer (bounded per source and evicted first).
        Every fragment refused here is counted in `fragments_dropped`."""
        s, c = self._settings, self._counters
        self.expire(now)
        table = self._known if first_source is None else self._first
        partial = table.get(key)
        if partial is not None and (
            partial.fragment_id != fragment.fragment_id or partial.cookies != cookies
        ):
            self._discard(table, key)  # a new message: the old one is abandoned
            c.fragments_abandoned += 1
            partial = None
        if fragment.number > s.fragment_max_count:
            self._refuse(table, key)
            return None
        if partial is None:
            if first_source is not None:
                self._make_room_first(first_source)
            partial = table[key] = _Partial(fragment.fragment_id, now, cookies, first_source)
        if fragment.number in partial.parts:
            c.fragments_duplicate += 1
            return None
        if fragment.last:
            if partial.last or (partial.parts and max(partial.parts) > fragment.number):
                self._refuse(table, key)  # a second LAST, or pieces after it
                return None
            partial.last = fragment.number
        elif partial.last and fragment.number > partial.last:
            self._refuse(table, key)
            return None
        if partial.size + len(fragment.data) > s.fragment_max_message:
            self._refuse(table, key)
            return None
        partial.parts[fragment.number] = fragment.data
        partial.size += len(fragment.data)
        self._bytes += len(fragment.data)
        if partial.last and len(partial.parts) == partial.last:
            self._discard(table, key)
            c.fragments_reassembled += 1
            return b"".join(partial.parts[n] for n in range(1, partial.last + 1))
        self._keep_budget(key)
        return None

    def expire(self, now: float) -> None:
        """Abandon buffers whose first fragment is older than the timeout."""
        timeout = self._settings.fragment_timeout
        for table in (self._first, self._known):
            while table:
                key, oldest = next(iter(table.items()))
                if now - oldest.started < timeout:
                    break
                self._discard(table, key)
                self._counters.fragments_abandoned += 1

    def next_deadline(self) -> float | None:
        """When the oldest buffer times out (None: nothing buffered)."""
        starts = [next(iter(t.values())).started for t in (self._first, self._known) if t]
        return min(starts) + self._settings.fragment_timeout if starts else None

    def forget(self, key: object) -> None:
        """The exchange is gone: its partial message goes too."""
        if key in self._known:
            self._discard(self._known, key)

    # -- bounds ----------------------------------------------------------------------

    def _refuse(self, table: OrderedDict[object, _Partial], key: object) -> None:
        """An over-limit or inconsistent fragment: it and its message are dropped."""
        self._counters.fragments_dropped += 1
        if key in table:
            self._discard(table, key)

    def _discard(self, table: OrderedDict[object, _Partial], key: object) -> None:
        partial = table.pop(key)
        self._bytes -= partial.size

    def _make_room_first(self, source: IPAddress) -> None:
        """Room for one more first-message buffer from `source`: the oldest of that source
        goes when it has its share, else the oldest of all when the table is full."""
        s = self._settings
        mine = [k for k, p in self._first.items() if p.source == source]
        victim: object | None = None
        if len(mine) >= s.fragment_first_per_source:
            victim = mine[0]
        elif len(self._first) >= s.fragment_first_max:
            victim = next(iter(self._first))
        if victim is not None:
            self._discard(self._first, victim)
            self._counters.fragments_evicted += 1

    def _keep_budget(self, keep: object) -> None:
        """Over the byte budget: evict first-message buffers, oldest first, then those of
        exchanges we hold; the buffer that just grew goes last."""
        limit = self._settings.fragment_total_bytes
        for table in (self._first, self._known):
            while self._bytes > limit:
                victim = next((k for k in table if k != keep), None)
                if victim is None:
                    break
                self._discard(table, victim)
                self._counters.fragments_evicted += 1
        for table in (self._first, self._known):
            if self._bytes > limit and keep in table:
                self._discard(table, keep)
                self._counters.fragments_evicted += 1
