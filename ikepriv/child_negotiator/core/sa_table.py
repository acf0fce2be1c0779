"""The core's tables: ISAKMP SAs (phase 1), Quick Mode exchanges, and IPsec SAs (phase 2).

Records are plain mutable objects owned by the tables; exchange modules move their state
along the tables of states.py (through states.transition), the engine adds and removes
them. Lookups are by dictionary only (cookies, tunnel id, message id), so the cost per
datagram does not grow with the number of tunnels; and so is every question about one
peer (the ISAKMP SAs of a definition with a peer, the IPsec SAs of a tunnel or of a
phase 1 definition with a peer), so that establishing, rekeying or deleting a tunnel does
not cost a pass over all of them, nor over all those with the same peer. The indexes key on
what never changes in a record once it is in a table: a definition number, the peer's
address (a NAT-T float changes ports, never the address) and the SPIs.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from ikepriv.child_negotiator.core.datagram import IPAddress
from ikepriv.child_negotiator.core.dpd_state import DpdState
from ikepriv.child_negotiator.core.offers import IkeChoice, IpsecChoice
from ikepriv.child_negotiator.core.retransmit import Flight
from ikepriv.child_negotiator.core.states import ChildState, P1State, QmState
from ikepriv.crypto.ciphers import IkeCipher
from ikepriv.crypto.dh import DHPrivateKey
from ikepriv.crypto.oakley import IvChain, Phase1Keys
from ikepriv.ipc.messages import (
    Endpoint,
    Phase1Def,
    Phase2Def,
    Role,
    SelectorSide,
    TrafficSelector,
)
from ikepriv.isakmp import IdPayload, Proposal
from ikepriv.isakmp.constants import ExchangeType, ProtocolId


@dataclass(eq=False, slots=True)
class IsakmpSa:
    tunnel_id: int
    definition: Phase1Def
    role: Role
    exchange: ExchangeType
    local: Endpoint
    remote: Endpoint
    natt: bool
    icookie: bytes
    rcookie: bytes
    state: P1State
    created: float
    flight: Flight = field(default_factory=Flight)
    # negotiation state (cleared when established)
    offered: tuple[IkeChoice, ...] = ()
    sa_i_body: bytes = b""  # SAi_b, as the initiator sent it
    choice: IkeChoice | None = None
    dh: DHPrivateKey | None = None
    g_xi: bytes = b""
    g_xr: bytes = b""
    ni: bytes = b""
    nr: bytes = b""
    nonce_id: int = 0  # initiator: the parent's id for our Ni (NonceReply), for SKEYID
    g_xy: bytes = b""
    skeyid: bytes = b""
    held: tuple[bytes, object] | None = None  # (digest, datagram context) awaiting SKEYID
    mismatch_logged: bool = False  # "does not decrypt" said once for this SA
    peer_vendor_ids: frozenset[bytes] = frozenset()
    # keys
    keys: Phase1Keys | None = None
    cipher: IkeCipher | None = None
    iv: IvChain | None = None
    # result
    peer_id: IdPayload | None = None
    peer_cert_subject: str = ""  # signature authentication: the peer's certificate
    peer_cert_issuer: str = ""
    lifetime: int = 0
    established_at: float = 0.0
    exchanges: dict[int, QuickExchange] = field(default_factory=dict)
    # message IDs of finished exchanges, oldest first: 4 bytes each (an OrderedDict of 64
    # cost 5 kB per ISAKMP SA); a membership test passes over at most
    # Settings.finished_message_ids of them, in C
    finished_mids: array[int] = field(default_factory=lambda: array("I"))
    # NAT-T and other extensions keep their per-SA state here.
    extensions: dict[str, object] = field(default_factory=dict)
    # timers.py / rekey.py / dpd.py
    rekey_at: float = 0.0  # soft lifetime: start a new phase 1 then (0: we never rekey it)
    rekey_started: float = 0.0  # when our replacement phase 1 started (0: none running)
    retired_by: int = 0  # tunnel id of the newer ISAKMP SA that replaced this one
    retire_at: float = 0.0  # when we delete it, once retired (0: the peer or expiry does)
    octets: int = 0  # ISAKMP bytes received on it (phase 1 kilobyte lifetime)
    dpd: DpdState | None = None

    @property
    def cookies(self) -> bytes:
        return self.icookie + self.rcookie

    @property
    def established(self) -> bool:
        return self.state is P1State.ESTABLISHED

    def finish_mid(self, mid: int, keep: int) -> None:
        mids = self.finished_mids
        if mid in mids:
            return
        mids.append(mid)
        if len(mids) > keep:
            del mids[: len(mids) - keep]

    def drop_exchange(self, mid: int) -> QuickExchange | None:
        """Forget the Quick Mode `mid`; the table is made anew once empty (a dict keeps
        the room its largest size needed: 0.2 kB per ISAKMP SA, mostly idle)."""
        qe = self.exchanges.pop(mid, None)
        if not self.exchanges:
            self.exchanges = {}
        return qe

    def clear_negotiation(self) -> None:
        """Drop what only the handshake needed (DH private value, shared secret; the public
        values, SAi_b and our offer, which only its hashes use: about 0.8 kB per SA held
        with MODP-2048). The nonces stay: a late NonceReply is told apart by them."""
        if self.dh is not None:
            self.dh.wipe()
        self.dh = None
        self.g_xy = b""
        self.skeyid = b""
        self.held = None
        self.g_xi = self.g_xr = self.sa_i_body = b""
        self.offered = ()

    def wipe(self) -> None:
        self.clear_negotiation()
        if self.keys is not None:
            self.keys.wipe()
        if self.cipher is not None:
            self.cipher.wipe()
        self.keys = None
        self.cipher = None


@dataclass(eq=False, slots=True)
class QuickExchange:
    mid: int
    role: Role
    isakmp: IsakmpSa
    definition: Phase2Def
    tunnel_id: int
    state: QmState
    created: float
    local_sel: SelectorSide
    remote_sel: SelectorSide
    id_ci: IdPayload | None
    id_cr: IdPayload | None
    flight: Flight = field(default_factory=Flight)
    offered: tuple[IpsecChoice, ...] = ()
    choice: IpsecChoice | None = None
    reply_proposal: Proposal | None = None  # responder: the offered proposal, chosen transform
    lifetime_seconds: int = 0
    lifetime_kilobytes: int = 0
    responder_lifetime: bool = False
    protocol: ProtocolId = ProtocolId.IPSEC_ESP
    spi_in: int = 0
    spi_out: int = 0
    ni: bytes = b""
    nr: bytes = b""
    dh: DHPrivateKey | None = None
    peer_ke: bytes = b""
    commit: bool = False
    # responder: the install whose inbound half went to the parent before QM2 (install.py)
    reqid: int = 0
    half_installed: bool = False  # until committed at QM3, or removed

    def wipe(self) -> None:
        if self.dh is not None:
            self.dh.wipe()
        self.dh = None


@dataclass(eq=False, slots=True)
class ChildSa:
    tunnel_id: int
    definition: Phase2Def
    phase1_number: int
    isakmp_tunnel_id: int
    role: Role
    protocol: ProtocolId
    spi_in: int
    spi_out: int
    local: Endpoint
    remote: Endpoint
    selector_out: TrafficSelector  # local -> remote
    choice: IpsecChoice
    lifetime_seconds: int
    reqid: int
    state: ChildState
    created: float
    # lifetimes.py / rekey.py
    lifetime_kilobytes: int = 0
    rekey_at: float = 0.0  # soft lifetime: start a replacement then (0: we never rekey it)
    rekey_started: float = 0.0  # when our replacement Quick Mode started (0: none running)
    exchange_started: float = 0.0  # when the Quick Mode that made it began
    rank: bytes = b""  # both Quick Mode nonces, smaller first: equal on both peers
    superseded_by: int = 0  # tunnel id of the newer SA that replaces it
    delete_at: float = 0.0  # superseded: when we delete it (0: the peer or expiry does)
    # a previous child's SA pair from the parent's records (ResumeCommand): no keys, not
    # listed; it waits for its replacement and is then retired like any replaced SA
    resumed: bool = False
    # the ISAKMP SA its Quick Mode ran on (isakmp_tunnel_id follows replacements; this one
    # does not): a peer with parallel ISAKMP SAs knows the selectors only on that one
    negotiated_on: int = 0


@dataclass(eq=False, slots=True)
class PolicySet:
    """Kernel policies for one definition and one pair of negotiated selectors: the SAs
    negotiated for them share its reqid (the parent installs and removes the policies).
    `resumed_from`: the remote gateway of the SAs a previous child installed for them
    (ResumeCommand): the kernel holds state with that peer although no table here shows it."""

    reqid: int
    resumed_from: IPAddress | None = None


def _count_down(counts: dict[IPAddress, int], key: IPAddress) -> None:
    """One fewer under `key`; a count that reaches zero goes (the dict holds only live keys)."""
    left = counts[key] - 1
    if left:
        counts[key] = left
    else:
        del counts[key]


class PolicySets(dict[tuple[int, TrafficSelector], PolicySet]):
    """The policy sets by (phase 2 definition, selectors), and how many resumed sets name
    each peer: whether a peer has one is asked when a phase 1 with it is established
    (INITIAL-CONTACT), which must not pass over every set. Sets are added with `add` and
    taken away with `drop` only, so the count stays exact."""

    __slots__ = ("_resumed",)

    def __init__(self) -> None:
        super().__init__()
        self._resumed: dict[IPAddress, int] = {}

    def add(self, key: tuple[int, TrafficSelector], policy_set: PolicySet) -> PolicySet:
        """The set under `key`: the one there, else `policy_set`, now there."""
        held = self.get(key)
        if held is not None:
            return held
        self[key] = policy_set
        peer = policy_set.resumed_from
        if peer is not None:
            self._resumed[peer] = self._resumed.get(peer, 0) + 1
        return policy_set

    def drop(self, key: tuple[int, TrafficSelector]) -> None:
        policy_set = self.pop(key, None)
        peer = None if policy_set is None else policy_set.resumed_from
        if peer is not None:
            _count_down(self._resumed, peer)

    def resumed_with(self, peer: IPAddress) -> bool:
        """Whether a set resumed from a previous child's SAs names this peer."""
        return peer in self._resumed


class _Numbered(Protocol):
    @property
    def tunnel_id(self) -> int: ...


_K = TypeVar("_K")
_V = TypeVar("_V", bound=_Numbered)


class _Index(Generic[_K, _V]):
    """Records grouped by a key, each group in the order added. A group of one is the
    record itself, larger ones a dict by tunnel id: most groups hold one record (an
    inbound SPI, the SAs of a peer with one tunnel) and an empty dict per group cost 0.2 kB
    per SA held; a group of thousands (one peer's tunnels) still adds and drops in O(1)."""

    __slots__ = ("_groups",)

    def __init__(self) -> None:
        self._groups: dict[_K, _V | dict[int, _V]] = {}

    def add(self, key: _K, value: _V) -> None:
        groups = self._groups
        group = groups.get(key)
        if group is None or (not isinstance(group, dict) and group.tunnel_id == value.tunnel_id):
            groups[key] = value
        elif isinstance(group, dict):
            group[value.tunnel_id] = value
        else:
            groups[key] = {group.tunnel_id: group, value.tunnel_id: value}

    def drop(self, key: _K, tunnel_id: int) -> None:
        groups = self._groups
        group = groups.get(key)
        if group is None:
            return
        if not isinstance(group, dict):
            if group.tunnel_id == tunnel_id:
                del groups[key]
            return
        group.pop(tunnel_id, None)
        if len(group) == 1:
            groups[key] = next(iter(group.values()))
        elif not group:
            del groups[key]

    def get(self, key: _K) -> list[_V]:
        """The group of `key`, oldest first (a copy: callers may remove records)."""
        group = self._groups.get(key)
        if group is None:
            return []
        return list(group.values()) if isinstance(group, dict) else [group]

    def view(self, key: _K) -> Iterable[_V]:
        """The group of `key`, oldest first, not copied (no record may be removed while
        it is iterated)."""
        group = self._groups.get(key)
        if group is None:
            return ()
        return group.values() if isinstance(group, dict) else (group,)

    def __len__(self) -> int:
        return len(self._groups)


class ChildTable(dict[int, ChildSa]):
    """IPsec SAs by tunnel id, indexed as they come and go (the callers use it as the dict it
    is: set, pop, del) by what each question about them names:

    * a tunnel (phase 2 definition and peer address): what a rekey, its supersession and
      its clean-up look at;
    * a phase 1 definition and peer address: a phase 1 rekey, removal or INITIAL-CONTACT,
      a peer's Delete (it comes on an ISAKMP SA of the definition);
    * an SPI, inbound or outbound: the kernel's EXPIRE.

    Never by peer address alone: a gateway whose tunnels all go to one peer (a hub's
    spoke, bench/core_initiator.py) would find all of them in that group, and a pass over
    it per rekey makes rekeying every tunnel quadratic. A count per peer address answers
    whether any SA is held with it."""

    __slots__ = ("_by_phase1", "_by_spi", "_by_tunnel", "_peers")

    def __init__(self) -> None:
        super().__init__()
        self._by_tunnel: _Index[tuple[int, IPAddress], ChildSa] = _Index()
        self._by_phase1: _Index[tuple[int, IPAddress], ChildSa] = _Index()
        self._by_spi: _Index[int, ChildSa] = _Index()
        self._peers: dict[IPAddress, int] = {}

    def __setitem__(self, tunnel_id: int, child: ChildSa) -> None:
        if tunnel_id in self:
            self._unindex(tunnel_id)
        super().__setitem__(tunnel_id, child)
        addr = child.remote.addr
        self._by_tunnel.add((child.definition.number, addr), child)
        self._by_phase1.add((child.phase1_number, addr), child)
        self._by_spi.add(child.spi_in, child)
        if child.spi_out != child.spi_in:
            self._by_spi.add(child.spi_out, child)
        self._peers[addr] = self._peers.get(addr, 0) + 1

    def _unindex(self, tunnel_id: int) -> None:
        child = self[tunnel_id]
        addr = child.remote.addr
        self._by_tunnel.drop((child.definition.number, addr), tunnel_id)
        self._by_phase1.drop((child.phase1_number, addr), tunnel_id)
        self._by_spi.drop(child.spi_in, tunnel_id)
        self._by_spi.drop(child.spi_out, tunnel_id)
        _count_down(self._peers, addr)

    def __delitem__(self, tunnel_id: int) -> None:
        self._unindex(tunnel_id)
        super().__delitem__(tunnel_id)

    def pop(self, tunnel_id: int, default: ChildSa | None = None) -> ChildSa | None:  # type: ignore[override]
        if tunnel_id not in self:
            return default
        self._unindex(tunnel_id)
        return super().pop(tunnel_id)

    def of_tunnel(self, phase2_number: int, addr: IPAddress) -> list[ChildSa]:
        """The IPsec SAs of phase 2 definition `phase2_number` with the peer at `addr`,
        oldest first (a snapshot: callers may remove some)."""
        return self._by_tunnel.get((phase2_number, addr))

    def of_phase1(self, phase1_number: int, addr: IPAddress) -> list[ChildSa]:
        """The IPsec SAs negotiated under phase 1 definition `phase1_number` with the peer
        at `addr` (a snapshot)."""
        return self._by_phase1.get((phase1_number, addr))

    def with_spi(self, spi: int) -> list[ChildSa]:
        """The IPsec SAs whose inbound or outbound SPI is `spi` (a snapshot)."""
        return self._by_spi.get(spi)

    def has_peer(self, addr: IPAddress) -> bool:
        return addr in self._peers


class SaTable:
    __slots__ = (
        "_by_addr",
        "_by_definition",
        "_by_peer",
        "by_cookies",
        "by_tunnel",
        "children",
        "initiating",
    )

    def __init__(self) -> None:
        self.by_cookies: dict[bytes, IsakmpSa] = {}
        self.initiating: dict[bytes, IsakmpSa] = {}  # our icookie -> SA waiting for CKY-R
        self.by_tunnel: dict[int, IsakmpSa] = {}
        self.children = ChildTable()
        self._by_definition: _Index[int, IsakmpSa] = _Index()
        self._by_peer: _Index[tuple[int, IPAddress], IsakmpSa] = _Index()
        self._by_addr: _Index[IPAddress, IsakmpSa] = _Index()

    def add(self, sa: IsakmpSa) -> None:
        self.by_tunnel[sa.tunnel_id] = sa
        if any(sa.rcookie):
            self.by_cookies[sa.cookies] = sa
        else:
            self.initiating[sa.icookie] = sa
        self._by_definition.add(sa.definition.number, sa)
        self._by_peer.add((sa.definition.number, sa.remote.addr), sa)
        self._by_addr.add(sa.remote.addr, sa)

    def bind_rcookie(self, sa: IsakmpSa, rcookie: bytes) -> None:
        self.initiating.pop(sa.icookie, None)
        sa.rcookie = rcookie
        self.by_cookies[sa.cookies] = sa

    def remove(self, sa: IsakmpSa) -> None:
        if self.by_tunnel.pop(sa.tunnel_id, None) is sa:
            self._by_definition.drop(sa.definition.number, sa.tunnel_id)
            self._by_peer.drop((sa.definition.number, sa.remote.addr), sa.tunnel_id)
            self._by_addr.drop(sa.remote.addr, sa.tunnel_id)
        if self.by_cookies.get(sa.cookies) is sa:
            del self.by_cookies[sa.cookies]
        if self.initiating.get(sa.icookie) is sa:
            del self.initiating[sa.icookie]

    def isakmp_sas(self) -> Iterator[IsakmpSa]:
        return iter(list(self.by_tunnel.values()))

    def with_peer(self, phase1_number: int, addr: IPAddress) -> list[IsakmpSa]:
        """The ISAKMP SAs of definition `phase1_number` with the peer at `addr`, oldest
        first (a snapshot: callers may remove some)."""
        return self._by_peer.get((phase1_number, addr))

    def at(self, addr: IPAddress) -> list[IsakmpSa]:
        """The ISAKMP SAs with the peer at `addr`, of any definition."""
        return self._by_addr.get(addr)

    def of_definition(self, phase1_number: int) -> Iterable[IsakmpSa]:
        return self._by_definition.view(phase1_number)

    def carrier(self, child: ChildSa) -> IsakmpSa | None:
        """The ISAKMP SA a rekey or a Delete of `child` goes over: the one its Quick Mode
        ran on while that is established and not being deleted by us, else the
        definition's newest with the peer. A peer with several connections to us opens an
        ISAKMP SA for each (we keep one for our own use and retire the others, which the
        peer keeps: rekey.supersede_isakmp), each with its own phase 2; it knows the
        selectors, and the SPIs, only on the SA of the connection they belong to. After
        a real phase 1 rekey the peer deletes the old SA and the newest is used; after
        ours, we delete the old one (retire_at) and use the newest at once."""
        own = self.by_tunnel.get(child.negotiated_on)
        if own is not None and own.established and not own.retire_at:
            return own
        return self.established_for(child.phase1_number, child.remote.addr)

    def established_for(self, phase1_number: int, peer: IPAddress | None = None) -> IsakmpSa | None:
        """The ISAKMP SA new exchanges of a definition (with `peer`, when given) use: the
        newest established one (either role); one replaced by a rekey only when nothing
        else is left."""
        best: IsakmpSa | None = None
        group = (
            self.of_definition(phase1_number)
            if peer is None
            else self.with_peer(phase1_number, peer)
        )
        for sa in group:
            if not sa.established:
                continue
            if best is None or (not sa.retired_by, sa.established_at) >= (
                not best.retired_by,
                best.established_at,
            ):
                best = sa
        return best
