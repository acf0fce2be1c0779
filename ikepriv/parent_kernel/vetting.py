"""The parent's vetting of child requests (docs/architecture.md, "What the parent vets").

Pure: every method takes a decoded, well-formed request and the parent's records (database
view, what is installed, which peers talked to us, which tunnels were activated) and returns
either a `Refusal` (error code + reason for the log and the reply) or a plan: the exact
kernel object to install or delete. The daemon carries out plans; nothing here touches the
kernel, so every rule is unit-tested without root.

The reference point is always the database definition, never the child's word:
- endpoints are the phase 1's gateway addresses (or the `ike ipaddr=` override given at
  activation; for a "%any" definition, an address that sent us IKE datagrams), and NAT-T
  ports are ports the parent itself saw on UDP 4500 from that peer at that local address;
- selectors are equal to or inside the phase 2 selectors, oriented by direction;
- algorithms and key lengths are those of one configured proposal, keys exactly as long as
  the algorithm needs; lifetimes no longer than configured;
- an inbound SA fills an SPI the parent allocated for that same phase 2; removes name only
  recorded entries; per-phase-2 and global counts are bounded;
- a phase 2 is vetted as a whole (Phase2Install): both SAs and the policies, each by the
  rules above and against each other (one algorithm, the SAs' selector in every policy,
  templates that are the install's own); the first refusal refuses all of it. An SA always
  carries the negotiated selector, never the kernel's wildcard;
- counters (Stats) carry only names the negotiator core keeps, each once, and per-definition
  tallies only for definitions the parent holds (or held before its last reload), each once;
- with several negotiator children (shards.py), every request names the child that sent it
  (`child`): a peer address must be of that child's shard (SPIs, installs, SKEYID, nonces,
  signatures, datagrams), tunnel numbers and reqids of its class (process_contract.Partition),
  and what it fills, replaces or removes must be recorded as its own; its SAs, SPIs and
  policies are bounded by its share of the totals, its nonces and SKEYID/signature buckets
  are its own. So a compromised child gains nothing over the others' peers or tunnels.
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
import ipaddress
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Final

from ikepriv.config.model import Phase1Definition, Phase2Definition
from ikepriv.crypto.crypto_errors import CryptoError
from ikepriv.crypto.groups import GROUPS
from ikepriv.crypto.keymat import ESP_CIPHERS, INTEGRITY, esp_key_bits
from ikepriv.crypto.oakley import skeyid_psk
from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode, PolicyDirection, SaDirection
from ikepriv.isakmp.constants import (
    IKE_PORT,
    NATT_KEEPALIVE,
    NATT_PORT,
    NON_ESP_MARKER,
    SIGNATURE_METHODS,
    AuthMethod,
    EncapsulationMode,
    ExchangeType,
    IpProtocol,
    ProtocolId,
)
from ikepriv.parent_kernel import installed as inst
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.egress import Egress
from ikepriv.parent_kernel.installed import Installed, PendingHalf, PolicyEntry, SaEntry
from ikepriv.parent_kernel.kernel.specs import (
    Aead,
    Encap,
    Encryption,
    Integrity,
    Lifetime,
    PolicySpec,
    SaSpec,
    SelectorSpec,
    Template,
)
from ikepriv.parent_kernel.kernel.xfrm_messages import Direction, XfrmMode
from ikepriv.parent_kernel.nonces import NonceTable, fresh_nonce
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.shards import Sharding
from ikepriv.process_contract import COUNTER_NAMES

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_DATAGRAM_OUT: Final = 65507 - len(NON_ESP_MARKER)  # largest UDP payload over IPv4
MIN_ISAKMP: Final = 28  # an ISAKMP header; shorter is never an IKE message
# SKEYID is computed only for a definition whose peer sent us a datagram this recently (the
# MM4/AM1/AM2 that made the child ask arrived a moment ago). It is no oracle whatever the
# rate: our own nonce is always the parent's (nonces.py), so every answer is bound to one
# exchange. The bucket per definition keeps one busy definition (a %any gateway under a
# flood of first messages) from starving the others; the root CPU a compromised child can
# spend on HMACs in all is bounded by its secret budget (child_budget.py, back-pressure).
# It is above what one peer with many connections asks of strongSwan here (100-200 Main
# Modes/s, issue 11): a refusal ends that peer's exchange (it is told, with a notify).
# Policies the child installs rank below this XFRM priority (lower number wins), so an
# operator's own policies with smaller numbers (a bypass, a block) always take precedence.
MIN_POLICY_PRIORITY: Final = 512
SKEYID_WINDOW: Final = 120.0
# three quarters of the child's secret budget (1024/s, burst 2048): one definition never
# takes it all, and it stays above what one child can negotiate (about 1 ms of its CPU per
# Main Mode: one peer with many connections reached 616 Main Modes/s here)
SKEYID_BURST: Final = 1536
SKEYID_RATE: Final = 768.0  # per second and definition
# Signatures: the same live-peer window; a smaller bucket, because an RSA-2048 signature
# costs the root parent about 0.4 ms (an HMAC is microseconds): 64 at once covers a burst of
# simultaneous handshakes of one definition (a %any gateway after a restart), 32 a second
# (about 1.3 % of a core) a busy road-warrior definition; the child's secret budget bounds
# the total.
SIGNATURE_BURST: Final = 64
SIGNATURE_RATE: Final = 32.0  # per second

XFRM_PROTO: Final[dict[ProtocolId, IpProtocol]] = {
    ProtocolId.IPSEC_ESP: IpProtocol.ESP,
    ProtocolId.IPSEC_AH: IpProtocol.AH,
}
IPC_PROTO: Final[dict[int, ProtocolId]] = {int(v): k for k, v in XFRM_PROTO.items()}
XFRM_MODE: Final[dict[EncapsulationMode, XfrmMode]] = {
    EncapsulationMode.TUNNEL: XfrmMode.TUNNEL,
    EncapsulationMode.TRANSPORT: XfrmMode.TRANSPORT,
}


@dataclass(frozen=True)
class Refusal:
    code: ErrorCode
    reason: str
    tunnel: int | None = None  # definition number, for the log line


@dataclass(frozen=True)
class Activation:
    """`ike cmd=activate` of a phase 1 (directly or through one of its phase 2s)."""

    phase1_number: int
    local: IPAddress | None = None
    remote: IPAddress | None = None


class ActivationTable(dict[int, Activation]):
    """The activations by phase 1 number, with a generation that every change bumps: the
    Vetter's address index (built from the definitions and the activations) is rebuilt
    when, and only when, one of them changed, instead of both being scanned per datagram."""

    generation: int = 0

    def _bump(self) -> None:
        self.generation += 1

    def __setitem__(self, key: int, value: Activation) -> None:
        super().__setitem__(key, value)
        self._bump()

    def __delitem__(self, key: int) -> None:
        super().__delitem__(key)
        self._bump()

    def pop(self, key: int, *default: Activation | None) -> Activation | None:  # type: ignore[override]
        self._bump()
        return super().pop(key, *default)

    def popitem(self) -> tuple[int, Activation]:
        self._bump()
        return super().popitem()

    def clear(self) -> None:
        super().clear()
        self._bump()

    def setdefault(self, key: int, default: Activation) -> Activation:
        self._bump()
        return super().setdefault(key, default)

    def update(self, other: Mapping[int, Activation]) -> None:  # type: ignore[override]
        super().update(other)
        self._bump()


@dataclass(frozen=True, slots=True)
class _AddressIndex:
    """The definitions' addresses, indexed: what `Vetter` asks per datagram and per SKEYID
    request (is this one of our addresses, which definitions name this peer) becomes a
    dictionary lookup, so that work does not grow with the number of definitions. Holds
    exactly what Vetter.local_addresses and Vetter._remotes give for every definition;
    definitions that accept any peer (remote %any) name no peer here, as there."""

    locals: frozenset[IPAddress]
    by_remote: dict[IPAddress, tuple[int, ...]]  # ascending definition numbers

    @staticmethod
    def build(view: DbView, activations: Mapping[int, Activation]) -> _AddressIndex:
        locals_: set[IPAddress] = set()
        by_remote: dict[IPAddress, list[int]] = {}
        for number, p1 in sorted(view.phase1.items()):
            act = activations.get(number)
            locals_.add(p1.local_addr)
            remotes = {p1.remote_addr} if p1.remote_addr is not None else set()
            if act is not None:
                if act.local is not None:
                    locals_.add(act.local)
                if act.remote is not None:
                    remotes.add(act.remote)
            for remote in remotes:
                by_remote.setdefault(remote, []).append(number)
        return _AddressIndex(frozenset(locals_),
                             {k: tuple(v) for k, v in by_remote.items()})  # fmt: skip


@dataclass(frozen=True)
class SpiPlan:
    phase1_number: int
    phase2_number: int
    src: IPAddress
    dst: IPAddress
    proto: ProtocolId
    owner: int = 0


@dataclass(frozen=True)
class SaRequest:
    """One SA of a Phase2Install as the kernel will see it: the install's shared fields,
    oriented for one direction (inbound: src remote, dst local, selector and NAT-T ports
    turned around)."""

    direction: SaDirection
    src: IPAddress
    dst: IPAddress
    proto: ProtocolId
    spi: int
    mode: EncapsulationMode
    encryption: m.CryptKey | None
    integrity: m.AuthKey | None
    aead: m.AeadKey | None
    lifetimes: m.Lifetimes
    encap: m.NatTEncap | None
    selector: m.TrafficSelector
    reqid: int


def turned(ts: m.TrafficSelector) -> m.TrafficSelector:
    return m.TrafficSelector(ts.dst, ts.src)


def sa_requests(req: m.Phase2Install) -> tuple[SaRequest, SaRequest]:
    """The install's (inbound, outbound) SAs."""
    back = None if req.encap is None else m.NatTEncap(req.encap.dport, req.encap.sport)

    def one(direction: SaDirection, keys: m.Phase2Sa) -> SaRequest:
        inbound = direction is SaDirection.IN
        return SaRequest(
            direction=direction,
            src=req.remote if inbound else req.local,
            dst=req.local if inbound else req.remote,
            proto=req.proto,
            spi=keys.spi,
            mode=req.mode,
            encryption=keys.encryption,
            integrity=keys.integrity,
            aead=keys.aead,
            lifetimes=keys.lifetimes,
            encap=back if inbound else req.encap,
            selector=turned(req.selector) if inbound else req.selector,
            reqid=req.reqid,
        )

    return one(SaDirection.IN, req.inbound), one(SaDirection.OUT, req.outbound)


@dataclass(frozen=True)
class SaPlan:
    spec: SaSpec
    entry: SaEntry
    request: SaRequest
    update: bool  # fill an allocated (larval) SPI instead of adding a new SA


@dataclass(frozen=True)
class PolicyPlan:
    spec: PolicySpec
    entry: PolicyEntry
    replaces: PolicyEntry | None  # this phase 2's own policy with the same selector/direction

    @property
    def unchanged(self) -> bool:
        """Already in the kernel exactly so (a rekey under the same policies)."""
        return self.replaces is not None and self.replaces.spec == self.spec


@dataclass(frozen=True)
class Phase2Plan:
    """A vetted Phase2Install: what to write (in, fwd policies, the inbound SA that fills
    the larval SPI, the outbound SA, the out policy: the order is installer.py's)."""

    phase2_number: int
    tunnel_id: int
    policies: tuple[PolicyPlan, ...]
    outbound: SaPlan
    inbound: SaPlan


@dataclass(frozen=True)
class Phase2Removal:
    """A vetted Phase2Remove: recorded SAs to delete, then (unless keep_policies) the
    policies of (phase2_number, reqid) that no recorded SA uses any more."""

    phase2_number: int
    sas: tuple[SaEntry, ...]
    reqid: int
    keep_policies: bool
    pending: tuple[int, int] | None = None  # a half install's pending outbound part to forget


@dataclass
class TokenBucket:
    """`burst` requests at once, refilled at `rate` per second (monotonic clock)."""

    burst: float
    rate: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(frozen=True)
class _Tunnel:
    p1_number: int
    p1: Phase1Definition
    p2_number: int
    p2: Phase2Definition


def _inside(sel: m.SelectorSide, net: ipaddress.IPv4Network | ipaddress.IPv6Network,
            protocol: int, port: int) -> bool:  # fmt: skip
    """`sel` equal to or narrower than (net, protocol, port); 0 in the definition = any."""
    if sel.network.version != net.version or not sel.network.subnet_of(net):  # type: ignore[arg-type]
        return False
    if protocol and sel.protocol != protocol:
        return False
    return not (port and sel.port != port)


def _bound(per_pair: int, p2: Phase2Definition) -> int:
    """A per phase 2 bound of installed.py, for a definition with several subnets per side:
    each (local, remote) pair is a tunnel of its own (SAs, SPIs, policies), so the bound is
    per pair (the totals stay as they are)."""
    return per_pair * len(p2.subnet_pairs)


def selector_inside(ts: m.TrafficSelector, p2: Phase2Definition, outbound: bool) -> bool:
    """`ts` inside one (local, remote) subnet pair of the definition, oriented by direction:
    with several subnets per side, never a selector spanning two pairs."""
    for local_net, remote_net in p2.subnet_pairs:
        local = (local_net, p2.protocol, p2.local_port)
        remote = (remote_net, p2.protocol, p2.remote_port)
        src, dst = (local, remote) if outbound else (remote, local)
        if _inside(ts.src, *src) and _inside(ts.dst, *dst):
            return True
    return False


@dataclass(slots=True)
class _Shared:
    """What the policies of one install have in common, made once: the in and fwd policies
    have one selector (and one template), so their records share one object of each. The
    parent keeps 3 policies per tunnel (issue 11: 30,000 at 10,000 tunnels)."""

    selectors: dict[m.TrafficSelector, tuple[m.TrafficSelector, SelectorSpec]] = field(
        default_factory=dict
    )
    templates: dict[bool, tuple[Template]] = field(default_factory=dict)


def _with_definition_networks(ts: m.TrafficSelector, p2: Phase2Definition) -> m.TrafficSelector:
    """`ts` with each network that equals one of the definition's subnets replaced by the
    definition's own object: a decoded network (with the addresses ipaddress caches on it
    once asked) costs about 0.4 kB, and the records keep one per policy side. Equal values,
    so nothing but memory changes."""
    nets = (*p2.local_subnets, *p2.remote_subnets)
    sides = []
    for side in (ts.src, ts.dst):
        same = next((n for n in nets if n == side.network and n is not side.network), None)
        sides.append(side if same is None else dataclasses.replace(side, network=same))
    if sides[0] is ts.src and sides[1] is ts.dst:
        return ts
    return m.TrafficSelector(sides[0], sides[1])


def xfrm_selector(ts: m.TrafficSelector) -> SelectorSpec | Refusal:
    if ts.src.protocol != ts.dst.protocol:
        return Refusal(ErrorCode.INVALID_REQUEST, "selector sides name different protocols")
    return SelectorSpec(ts.src.network, ts.dst.network, ts.src.protocol, ts.src.port, ts.dst.port)


KnownDefinitions = tuple[Collection[int], Collection[int]]
"""Phase 1 and phase 2 definition numbers a Stats may name."""


def stats_problem(msg: m.Stats, known: KnownDefinitions = ((), ())) -> str | None:
    """Why these counters cannot come from a correct child, or None. The codec already
    bounded the lists, kept the names to identifiers and DPD failures to phase 1; here the
    names must be the core's and the definitions `known` ones, each once."""
    seen: set[str] = set()
    for counter in msg.counters:
        if counter.name not in COUNTER_NAMES:
            return f"unknown counter {counter.name!r}"
        if counter.name in seen:
            return f"counter {counter.name!r} twice"
        seen.add(counter.name)
    tallied: set[tuple[m.Phase, int]] = set()
    for entry in msg.definitions:
        key = (entry.phase, entry.number)
        if entry.number not in known[0 if entry.phase is m.Phase.PHASE1 else 1]:
            return f"counts for unknown phase {int(entry.phase)} definition {entry.number}"
        if key in tallied:
            return f"counts for phase {int(entry.phase)} definition {entry.number} twice"
        tallied.add(key)
    return None


_Algorithms = tuple[Encryption | None, Integrity | None, Aead | None, str]


def _integrity(key: m.AuthKey) -> Integrity | Refusal:
    spec = INTEGRITY.get(key.algorithm)
    if spec is None:
        return Refusal(ErrorCode.BAD_ALGORITHM, f"integrity {key.algorithm.name} unsupported")
    if len(key.key) != spec.key_bytes:
        return Refusal(
            ErrorCode.BAD_LENGTH,
            f"{key.algorithm.name} key of {len(key.key)} bytes, needs {spec.key_bytes}",
        )
    return Integrity(spec.xfrm_name, key.key, spec.truncation_bits)


def _configured_bits(transform: int, key_length: int | None) -> int | None:
    try:
        return esp_key_bits(transform, key_length)
    except CryptoError:
        return None


def _esp_algorithms(p2: Phase2Definition, req: SaRequest) -> _Algorithms | Refusal:
    if not p2.esp_proposals:
        return Refusal(ErrorCode.BAD_ALGORITHM, "ESP is not configured for this phase 2")
    if req.aead is not None:
        aead = req.aead
        bits = 8 * len(aead.key)
        if not any(
            p.transform == aead.transform and _configured_bits(p.transform, p.key_length) == bits
            for p in p2.esp_proposals
        ):
            return Refusal(
                ErrorCode.BAD_ALGORITHM, f"{aead.transform.name} with {bits} bits not configured"
            )
        spec = ESP_CIPHERS[aead.transform]
        if spec.icv_bits is None or len(aead.salt) != spec.salt_bytes:
            return Refusal(ErrorCode.BAD_LENGTH, f"{aead.transform.name} salt length")
        desc = f"{aead.transform.name}-{bits}"
        return None, None, Aead(spec.xfrm_name, aead.key + aead.salt, spec.icv_bits), desc
    enc, auth = req.encryption, req.integrity
    if enc is None or auth is None:
        return Refusal(ErrorCode.BAD_ALGORITHM, "ESP without integrity is not allowed")
    cipher = ESP_CIPHERS.get(enc.transform)
    if cipher is None or cipher.is_aead:
        return Refusal(ErrorCode.BAD_ALGORITHM, f"{enc.transform.name} unsupported")
    if len(enc.key) <= cipher.salt_bytes:
        return Refusal(ErrorCode.BAD_LENGTH, f"{enc.transform.name} key too short")
    bits = 8 * (len(enc.key) - cipher.salt_bytes)  # AES-CTR: key | 4-byte nonce
    if not any(
        p.transform == enc.transform
        and p.integrity == auth.algorithm
        and _configured_bits(p.transform, p.key_length) == bits
        for p in p2.esp_proposals
    ):
        return Refusal(
            ErrorCode.BAD_ALGORITHM,
            f"{enc.transform.name}-{bits} with {auth.algorithm.name} not configured",
        )
    integ = _integrity(auth)
    if isinstance(integ, Refusal):
        return integ
    desc = f"{enc.transform.name}-{bits}/{auth.algorithm.name}"
    return Encryption(cipher.xfrm_name, enc.key), integ, None, desc


def _ah_algorithms(p2: Phase2Definition, req: SaRequest) -> _Algorithms | Refusal:
    auth = req.integrity
    if not p2.ah_proposals or auth is None:
        return Refusal(ErrorCode.BAD_ALGORITHM, "AH is not configured for this phase 2")
    if all(p.integrity != auth.algorithm for p in p2.ah_proposals):
        return Refusal(ErrorCode.BAD_ALGORITHM, f"AH {auth.algorithm.name} not configured")
    integ = _integrity(auth)
    if isinstance(integ, Refusal):
        return integ
    return None, integ, None, f"AH/{auth.algorithm.name}"


def _lifetimes(p2: Phase2Definition, lt: m.Lifetimes) -> Lifetime | Refusal:
    if not 0 < lt.hard_seconds <= p2.lifetime:
        return Refusal(
            ErrorCode.NOT_PERMITTED,
            f"hard lifetime {lt.hard_seconds} s outside 1..{p2.lifetime} s",
        )
    if lt.soft_seconds > lt.hard_seconds:
        return Refusal(ErrorCode.INVALID_REQUEST, "soft lifetime after hard lifetime")
    if p2.lifetime_kb and not 0 < lt.hard_kilobytes <= p2.lifetime_kb:
        return Refusal(
            ErrorCode.NOT_PERMITTED,
            f"hard volume {lt.hard_kilobytes} KiB outside 1..{p2.lifetime_kb} KiB",
        )
    if lt.hard_kilobytes and lt.soft_kilobytes > lt.hard_kilobytes:
        return Refusal(ErrorCode.INVALID_REQUEST, "soft volume above hard volume")
    limit = (1 << 64) // 1024 - 1
    if lt.hard_kilobytes > limit or lt.soft_kilobytes > limit:
        return Refusal(ErrorCode.INVALID_REQUEST, "volume limit out of range")
    return Lifetime(
        soft_bytes=lt.soft_kilobytes * 1024 or None,
        hard_bytes=lt.hard_kilobytes * 1024 or None,
        soft_seconds=lt.soft_seconds or None,
        hard_seconds=lt.hard_seconds,
    )


_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")


@functools.lru_cache(maxsize=4096)
def _no_peer(addr: IPAddress) -> bool:
    """Loopback, unspecified, multicast or broadcast: never a remote end. Memoised (asked
    for every datagram the child sends; ipaddress's properties are slow, the peers few)."""
    return bool(addr.is_loopback or addr.is_unspecified or addr.is_multicast
                or addr == _BROADCAST)  # fmt: skip


class Vetter:
    """Vets child requests against the current database view and the parent's records."""

    def __init__(
        self,
        view: DbView,
        installed: Installed,
        peers: PeerTable,
        activations: Mapping[int, Activation],
        egress: Egress | None = None,
        sharding: Sharding | None = None,
    ) -> None:
        self.view = view
        self.sharding = sharding if sharding is not None else Sharding()
        self.egress = egress if egress is not None else Egress()
        self.installed = installed
        self.peers = peers
        self.activations = activations
        # per (child, definition): one child cannot drain another's
        self._skeyid_buckets: dict[tuple[int, int], TokenBucket] = {}
        self._signature_buckets: dict[tuple[int, int], TokenBucket] = {}
        self.nonces = NonceTable()  # the first child's; each child has its own
        self._nonces: dict[int, NonceTable] = {0: self.nonces}
        self._index_key: tuple[DbView, int] | None = None
        self._index = _AddressIndex(frozenset(), {})
        self.index_builds = 0  # how often the address index was built (tests count it)

    def _addresses(self) -> _AddressIndex:
        """The address index of the current view and activations. Rebuilt after a reload
        or a change of the activations (an ActivationTable says when); with any other
        mapping of activations (unit tests) it cannot tell, and rebuilds every time."""
        generation = getattr(self.activations, "generation", None)
        key = None if generation is None else (self.view, generation)
        if key is None or self._index_key is None or self._index_key[0] is not self.view \
                or self._index_key[1] != generation:  # fmt: skip
            self._index = _AddressIndex.build(self.view, self.activations)
            self._index_key = key
            self.index_builds += 1
        return self._index

    def _nonce_table(self, child: int) -> NonceTable:
        return self._nonces.setdefault(child, NonceTable())

    def _foreign(self, child: int, peer: IPAddress, tunnel: int | None) -> Refusal | None:
        """A refusal if `peer` is not of `child`'s shard (never with one child)."""
        if self.sharding.serves(child, peer):
            return None
        serving = self.sharding.label(self.sharding.of_address(peer))
        return Refusal(ErrorCode.NOT_PERMITTED, f"peer {peer} is served by {serving}", tunnel)

    def _not_in_class(self, child: int, what: str, number: int, tunnel: int) -> Refusal | None:
        """A refusal if tunnel number or reqid `number` is outside `child`'s class."""
        if self.sharding.count == 1 or not number or self.sharding.partition(child).owns(number):
            return None  # 0: refused by its own rule
        owner = self.sharding.label(self.sharding.of_number(number))
        return Refusal(ErrorCode.NOT_PERMITTED, f"{what} {number} belongs to {owner}", tunnel)

    def _naming(self, remote: IPAddress) -> tuple[int, ...]:
        """Definitions (ascending) whose configured or activated peer is `remote`."""
        return self._addresses().by_remote.get(remote, ())

    # -- lookups ---------------------------------------------------------------------------

    def _tunnel(self, phase2_number: int) -> _Tunnel | Refusal:
        p2 = self.view.phase2.get(phase2_number)
        owner = self.view.phase2_parent.get(phase2_number)
        p1 = None if owner is None else self.view.phase1.get(owner)
        if p2 is None or owner is None or p1 is None:
            return Refusal(ErrorCode.NO_SUCH_TUNNEL, f"no phase 2 definition {phase2_number}",
                           phase2_number)  # fmt: skip
        return _Tunnel(owner, p1, phase2_number, p2)

    def local_addresses(self, p1_number: int, p1: Phase1Definition) -> set[IPAddress]:
        out: set[IPAddress] = {p1.local_addr}
        act = self.activations.get(p1_number)
        if act is not None and act.local is not None:
            out.add(act.local)
        return out

    def is_ours(self, addr: IPAddress) -> bool:
        """One of our own addresses (or no unicast peer at all): never a remote end.

        Without this, a datagram a local user sends to ourselves would make our own address a
        "%any" peer, and an "outbound" SA to it an inbound SA with an SPI the child chose.
        """
        if _no_peer(addr):
            return True
        if self.peers.is_local(addr):
            return True
        return addr in self._addresses().locals

    def remote_ok(
        self, p1_number: int, p1: Phase1Definition, local: IPAddress, remote: IPAddress
    ) -> bool:
        if self.is_ours(remote):
            return False
        if p1.remote_addr is not None and remote == p1.remote_addr:
            return True
        act = self.activations.get(p1_number)
        if act is not None and act.remote == remote:
            return True
        return p1.remote_addr is None and self._talked(local, remote)

    def _talked(self, local: IPAddress, remote: IPAddress) -> bool:
        """`remote` talked to `local`: lately (the peer table, bounded, which a flood of
        spoofed sources churns), or in an exchange it proved it receives at that address
        and still uses (egress: kept for a phase 1 lifetime; spoofing proves nothing)."""
        return self.peers.seen(local, remote) or self.egress.proven(local, remote, time.monotonic())

    def _gateways(self, t: _Tunnel, local: IPAddress, remote: IPAddress) -> Refusal | None:
        if local not in self.local_addresses(t.p1_number, t.p1):
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"local address {local} is not the gateway of phase 1 {t.p1_number}",
                           t.p2_number)  # fmt: skip
        if not self.remote_ok(t.p1_number, t.p1, local, remote):
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"peer address {remote} is not the gateway of phase 1 {t.p1_number}",
                           t.p2_number)  # fmt: skip
        if not self._active(t, local, remote):
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"phase 1 {t.p1_number} is not active and {remote} never talked to us",
                           t.p2_number)  # fmt: skip
        return None

    def _active(self, t: _Tunnel, local: IPAddress, remote: IPAddress) -> bool:
        """Activated (`ike cmd=activate`, autostart), or the peer talked to us (we respond),
        or this phase 1 already has SAs with that peer (a rekey, even if a flood of spoofed
        datagrams pushed the peer out of the bounded peer table)."""
        if t.p1_number in self.activations or self._talked(local, remote):
            return True
        return any(remote in (e.src, e.dst) for e in self.installed.sas_of_phase1(t.p1_number))

    @staticmethod
    def _offers(p2: Phase2Definition, proto: ProtocolId) -> bool:
        return bool(p2.esp_proposals if proto is ProtocolId.IPSEC_ESP else p2.ah_proposals)

    def _reqid(self, t: _Tunnel, reqid: int) -> Refusal | None:
        if reqid == 0:
            return Refusal(ErrorCode.INVALID_REQUEST, "reqid 0", t.p2_number)
        owner = self.installed.reqid_owner(reqid)
        if owner is not None and owner != t.p2_number:
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"reqid {reqid} belongs to phase 2 {owner}", t.p2_number)  # fmt: skip
        return None

    # -- SPI allocation --------------------------------------------------------------------

    def spi(self, req: m.SpiRequest, child: int = 0) -> SpiPlan | Refusal:
        t = self._tunnel(req.phase2_number)
        if isinstance(t, Refusal):
            return t
        bad = self._gateways(t, local=req.dst, remote=req.src) or self._foreign(
            child, req.src, t.p2_number
        )
        if bad is not None:
            return bad
        if not self._offers(t.p2, req.proto):
            return Refusal(ErrorCode.BAD_ALGORITHM, f"{req.proto.name} not configured",
                           t.p2_number)  # fmt: skip
        if self.installed.sa_count(t.p2_number, larval=True) >= _bound(
            inst.MAX_LARVAL_PER_PHASE2, t.p2
        ):
            return Refusal(ErrorCode.LIMIT_REACHED, "too many unused SPIs", t.p2_number)
        if self.installed.sa_count(t.p2_number) >= _bound(inst.MAX_SAS_PER_PHASE2, t.p2):
            return Refusal(ErrorCode.LIMIT_REACHED, "too many SAs", t.p2_number)
        if self.installed.sa_count(larval=True) >= inst.MAX_LARVAL_TOTAL:
            return Refusal(ErrorCode.LIMIT_REACHED, "too many unused SPIs in total", t.p2_number)
        if self.installed.owned_sas(child, larval=True) >= self.sharding.share(
            inst.MAX_LARVAL_TOTAL
        ):
            return Refusal(ErrorCode.LIMIT_REACHED, "too many unused SPIs for this child",
                           t.p2_number)  # fmt: skip
        return SpiPlan(t.p1_number, t.p2_number, req.src, req.dst, req.proto, child)

    # -- phase 2 install -------------------------------------------------------------------

    def _encap(
        self, t: _Tunnel, req: SaRequest, local: IPAddress, remote: IPAddress
    ) -> Encap | Refusal | None:
        if req.encap is None:
            if t.p1.encap:
                return Refusal(ErrorCode.NOT_PERMITTED, "encap = true needs ESP-in-UDP SAs",
                               t.p2_number)  # fmt: skip
            return None
        if not t.p1.nat_traversal:
            return Refusal(ErrorCode.NOT_PERMITTED, "NAT traversal is off for this phase 1",
                           t.p2_number)  # fmt: skip
        outbound = req.direction is SaDirection.OUT
        local_port, remote_port = (
            (req.encap.sport, req.encap.dport) if outbound else (req.encap.dport, req.encap.sport)
        )
        if local_port != NATT_PORT:
            return Refusal(ErrorCode.NOT_PERMITTED, f"local encapsulation port {local_port}",
                           t.p2_number)  # fmt: skip
        if not self.egress.natt_port_ok(local, remote, remote_port, time.monotonic()):
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"peer port {remote_port} never seen from {remote} on {NATT_PORT} in a "
                           "proven exchange lately", t.p2_number)  # fmt: skip
        return Encap(req.encap.sport, req.encap.dport)

    def _sa(
        self, t: _Tunnel, req: SaRequest, tunnel_id: int, now: float, child: int = 0
    ) -> SaPlan | Refusal:
        """One SA of an install: algorithms, key lengths, lifetimes, NAT-T ports, selector,
        SPI (inbound: allocated for this phase 2; outbound: new). The install's gateways,
        mode and reqid are vetted once for both (`phase2_install`)."""
        outbound = req.direction is SaDirection.OUT
        local, remote = (req.src, req.dst) if outbound else (req.dst, req.src)
        algs = (_esp_algorithms if req.proto is ProtocolId.IPSEC_ESP else _ah_algorithms)(t.p2, req)
        if isinstance(algs, Refusal):
            return Refusal(algs.code, algs.reason, t.p2_number)
        lifetime = _lifetimes(t.p2, req.lifetimes)
        if isinstance(lifetime, Refusal):
            return Refusal(lifetime.code, lifetime.reason, t.p2_number)
        encap = self._encap(t, req, local, remote)
        if isinstance(encap, Refusal):
            return encap
        if not selector_inside(req.selector, t.p2, outbound):
            return Refusal(ErrorCode.NOT_PERMITTED, "SA selector wider than the definition",
                           t.p2_number)  # fmt: skip
        selector = xfrm_selector(req.selector)
        if isinstance(selector, Refusal):
            return Refusal(selector.code, selector.reason, t.p2_number)
        key: inst.SaKey = (req.dst, req.spi, req.proto)
        existing = self.installed.sas.get(key)
        if outbound:
            if existing is not None or self.installed.pending_outbound(key):
                return Refusal(ErrorCode.NOT_PERMITTED, f"SA spi {req.spi:#x} already exists",
                               t.p2_number)  # fmt: skip
            # a pending half (Phase2Install.inbound_first) counts as the SA it will write
            rec = self.installed
            if rec.sa_count(t.p2_number) + rec.pending_count(t.p2_number) >= _bound(
                inst.MAX_SAS_PER_PHASE2, t.p2
            ):
                return Refusal(ErrorCode.LIMIT_REACHED, "too many SAs", t.p2_number)
            if rec.sa_count() + rec.pending_count() >= inst.MAX_SAS_TOTAL:
                return Refusal(ErrorCode.LIMIT_REACHED, "too many SAs in total", t.p2_number)
            # an install adds two (this one and the inbound one, which leaves the larval count)
            if rec.owned_sas(child, larval=False) + rec.pending_count(owner=child) + 2 > (
                self.sharding.share(inst.MAX_SAS_TOTAL)
            ):
                return Refusal(ErrorCode.LIMIT_REACHED, "too many SAs for this child",
                               t.p2_number)  # fmt: skip
        elif (
            existing is None
            or not existing.larval
            or existing.phase2_number != t.p2_number
            or existing.src != req.src
            or existing.owner != child
        ):
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"inbound spi {req.spi:#x} was not allocated for this phase 2",
                           t.p2_number)  # fmt: skip
        enc, integ, aead, desc = algs
        try:
            spec = SaSpec(
                src=req.src, dst=req.dst, proto=XFRM_PROTO[req.proto], spi=req.spi,
                mode=XFRM_MODE[req.mode], reqid=req.reqid, encryption=enc, integrity=integ,
                aead=aead, encap=encap, lifetime=lifetime, selector=selector,
            )  # fmt: skip
        except ValueError as exc:
            return Refusal(ErrorCode.INVALID_REQUEST, str(exc), t.p2_number)
        entry = SaEntry(
            key=key, phase1_number=t.p1_number, phase2_number=t.p2_number, src=req.src,
            larval=False, tunnel_id=tunnel_id, direction=req.direction, reqid=req.reqid,
            algorithms=desc, expires_at=now + req.lifetimes.hard_seconds, owner=child,
        )  # fmt: skip
        return SaPlan(spec, entry, req, update=not outbound)

    def _policy(
        self, t: _Tunnel, req: m.Phase2Install, pol: m.Phase2Policy, shared: _Shared,
        child: int = 0,
    ) -> PolicyPlan | Refusal:  # fmt: skip
        """One policy of an install: priority, selector (inside the definition, equal to the
        SAs'), and that its selector is not another phase 2's policy. Its template is the
        install's own. What the records keep of it is shared (see _Shared); a policy this
        phase 2 already has exactly so (a rekey) stays the recorded one."""
        outbound = pol.direction is PolicyDirection.OUT
        if pol.priority < MIN_POLICY_PRIORITY:
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"policy priority {pol.priority} above the operator's "
                           f"(below {MIN_POLICY_PRIORITY})", t.p2_number)  # fmt: skip
        if not selector_inside(pol.selector, t.p2, outbound):
            return Refusal(ErrorCode.NOT_PERMITTED, "policy selector wider than the definition",
                           t.p2_number)  # fmt: skip
        if pol.selector != (req.selector if outbound else turned(req.selector)):
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"{pol.direction.name.lower()} policy selector is not the SAs'",
                           t.p2_number)  # fmt: skip
        got = shared.selectors.get(pol.selector)
        if got is None:
            ts = _with_definition_networks(pol.selector, t.p2)
            sel = xfrm_selector(ts)
            if isinstance(sel, Refusal):
                return Refusal(sel.code, sel.reason, t.p2_number)
            got = shared.selectors[pol.selector] = (ts, sel)
        ts, sel = got
        key: inst.PolicyKey = (ts, pol.direction)
        existing = self.installed.policies.get(key)
        if existing is not None and existing.phase2_number != t.p2_number:
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"policy belongs to phase 2 {existing.phase2_number}",
                           t.p2_number)  # fmt: skip
        if existing is not None and existing.owner != child:
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"policy belongs to {self.sharding.label(existing.owner)}",
                           t.p2_number)  # fmt: skip
        src, dst = (req.local, req.remote) if outbound else (req.remote, req.local)
        tunnel_mode = req.mode is EncapsulationMode.TUNNEL
        templates = shared.templates.get(outbound)
        if templates is None:
            templates = shared.templates[outbound] = (Template(
                proto=XFRM_PROTO[req.proto], mode=XFRM_MODE[req.mode], reqid=req.reqid,
                src=src if tunnel_mode else None, dst=dst if tunnel_mode else None,
            ),)  # fmt: skip
        try:
            spec = PolicySpec(sel, Direction(int(pol.direction)), priority=pol.priority,
                              templates=templates)  # fmt: skip
        except ValueError as exc:
            return Refusal(ErrorCode.INVALID_REQUEST, str(exc), t.p2_number)
        if existing is not None and existing.spec == spec and existing.reqid == req.reqid:
            return PolicyPlan(existing.spec, existing, existing)  # unchanged: keep the record
        return PolicyPlan(spec, PolicyEntry(key, t.p2_number, spec, req.reqid, child), existing)

    def phase2_install(
        self, req: m.Phase2Install, now: float = 0.0, child: int = 0
    ) -> Phase2Plan | Refusal:
        """Vet a whole phase 2: every part, and the parts against each other. The first
        refusal refuses the install."""
        t = self._tunnel(req.phase2_number)
        if isinstance(t, Refusal):
            return t
        bad = (
            self._not_in_class(child, "tunnel", req.tunnel_id, t.p2_number)
            or self._not_in_class(child, "reqid", req.reqid, t.p2_number)
            or self._foreign(child, req.remote, t.p2_number)
        )
        if bad is not None:
            return bad
        if req.phase1_number != t.p1_number:
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"phase 2 {t.p2_number} belongs to phase 1 {t.p1_number}, "
                           f"not {req.phase1_number}", t.p2_number)  # fmt: skip
        bad = self._gateways(t, req.local, req.remote)
        if bad is not None:
            return bad
        if req.mode != t.p2.mode:
            return Refusal(ErrorCode.NOT_PERMITTED, f"{req.mode.name} mode not configured",
                           t.p2_number)  # fmt: skip
        if not self._offers(t.p2, req.proto):
            return Refusal(ErrorCode.BAD_ALGORITHM, f"{req.proto.name} not configured",
                           t.p2_number)  # fmt: skip
        bad = self._reqid(t, req.reqid)
        if bad is not None:
            return bad
        inbound_req, outbound_req = sa_requests(req)
        outbound = self._sa(t, outbound_req, req.tunnel_id, now, child)
        if isinstance(outbound, Refusal):
            return outbound
        inbound = self._sa(t, inbound_req, req.tunnel_id, now, child)
        if isinstance(inbound, Refusal):
            return inbound
        if inbound.entry.algorithms != outbound.entry.algorithms:
            return Refusal(ErrorCode.BAD_ALGORITHM,
                           f"inbound {inbound.entry.algorithms}, outbound "
                           f"{outbound.entry.algorithms}", t.p2_number)  # fmt: skip
        policies: list[PolicyPlan] = []
        shared = _Shared()
        for pol in req.policies:
            plan = self._policy(t, req, pol, shared, child)
            if isinstance(plan, Refusal):
                return plan
            policies.append(plan)
        rec = self.installed  # a pending half counts as the out policy it may add
        new = sum(1 for p in policies if p.replaces is None)
        if rec.policy_count(t.p2_number) + rec.pending_count(t.p2_number) + new > _bound(
            inst.MAX_POLICIES_PER_PHASE2, t.p2
        ):
            return Refusal(ErrorCode.LIMIT_REACHED, "too many policies", t.p2_number)
        if rec.policy_count() + rec.pending_count() + new > inst.MAX_POLICIES_TOTAL:
            return Refusal(ErrorCode.LIMIT_REACHED, "too many policies in total", t.p2_number)
        if rec.owned_policies(child) + rec.pending_count(owner=child) + new > (
            self.sharding.share(inst.MAX_POLICIES_TOTAL)
        ):
            return Refusal(ErrorCode.LIMIT_REACHED, "too many policies for this child",
                           t.p2_number)  # fmt: skip
        if req.inbound_first:
            bad = self._pending_room(t, req, child)
            if bad is not None:
                return bad
        return Phase2Plan(t.p2_number, req.tunnel_id, tuple(policies), outbound, inbound)

    def _pending_room(self, t: _Tunnel, req: m.Phase2Install, child: int) -> Refusal | None:
        """An inbound_first install leaves a pending half: one per tunnel, bounded per
        child and in total."""
        rec = self.installed
        if (child, req.tunnel_id) in rec.pending:
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"tunnel {req.tunnel_id} has a half install already",
                           t.p2_number)  # fmt: skip
        if rec.pending_count() >= inst.MAX_PENDING_TOTAL:
            return Refusal(ErrorCode.LIMIT_REACHED, "too many half installs in total",
                           t.p2_number)  # fmt: skip
        if rec.pending_count(owner=child) >= self.sharding.share(inst.MAX_PENDING_TOTAL):
            return Refusal(ErrorCode.LIMIT_REACHED, "too many half installs for this child",
                           t.p2_number)  # fmt: skip
        return None

    # -- phase 2 commit --------------------------------------------------------------------

    def phase2_commit(
        self, req: m.Phase2Commit, child: int = 0
    ) -> PendingHalf[Phase2Plan] | Refusal:
        """The pending half a Phase2Commit names: this child's, for this tunnel, with the
        phase 2, gateways, protocol and inbound SPI it was vetted with. What is written is
        that half as vetted; the commit itself names nothing new."""
        half = self.installed.pending.get((child, req.tunnel_id))
        if half is None:
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"no half install of tunnel {req.tunnel_id} to commit",
                           req.phase2_number)  # fmt: skip
        inbound = half.plan.inbound.entry
        if (half.plan.phase2_number, inbound.dst, inbound.src, inbound.proto, inbound.spi) != (
            req.phase2_number,
            req.local,
            req.remote,
            req.proto,
            req.spi_in,
        ):
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"tunnel {req.tunnel_id}: the commit names another install",
                           req.phase2_number)  # fmt: skip
        return half

    def out_policy(self, half: PendingHalf[Phase2Plan]) -> PolicyPlan | Refusal | None:
        """A pending half's out policy against the records of now (written, replacing this
        phase 2's own, or already there as it is), None if the install has none."""
        plan = next((p for p in half.plan.policies
                     if p.spec.direction is Direction.OUT), None)  # fmt: skip
        if plan is None:
            return None
        existing = self.installed.policies.get(plan.entry.key)
        if existing is not None and (existing.phase2_number != plan.entry.phase2_number
                                     or existing.owner != half.owner):  # fmt: skip
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"out policy now belongs to phase 2 {existing.phase2_number}",
                           plan.entry.phase2_number)  # fmt: skip
        return PolicyPlan(plan.spec, plan.entry, existing)

    # -- phase 2 remove --------------------------------------------------------------------

    def phase2_remove(self, req: m.Phase2Remove, child: int = 0) -> Phase2Removal | Refusal:
        """The recorded SAs a Phase2Remove names. Each must be this phase 2's, this
        tunnel's and this child's, or already removed by the parent (expiry, `ike
        cmd=remove`); an inbound SPI still larval (the install never happened) goes alone; a
        half install (inbound_first, never committed) has its inbound SA recorded and its
        outbound SA pending: the removal takes the one and forgets the other."""
        p2 = req.phase2_number
        inbound_key: inst.SaKey = (req.local, req.spi_in, req.proto)
        larval = self.installed.sas.get(inbound_key)
        if larval is not None and larval.larval:
            if larval.phase2_number != p2 or larval.src != req.remote or larval.owner != child:
                reason = f"spi {req.spi_in:#x} was not allocated for phase 2 {p2}"
                return Refusal(ErrorCode.NOT_PERMITTED, reason, p2)
            return Phase2Removal(p2, (larval,), req.reqid, keep_policies=True)
        found: list[SaEntry] = []
        outbound_key: inst.SaKey = (req.remote, req.spi_out, req.proto)
        half = self.installed.pending.get((child, req.tunnel_id))
        if half is not None and (half.inbound, half.outbound) != (inbound_key, outbound_key):
            half = None
        for key, direction in ((inbound_key, SaDirection.IN), (outbound_key, SaDirection.OUT)):
            entry = self.installed.sas.get(key)
            if entry is None and self.installed.recently_removed_sa(key):
                continue
            if entry is None and half is not None and key == half.outbound:
                continue  # a half install: its outbound SA was never written
            if (
                entry is None
                or entry.larval
                or entry.phase2_number != p2
                or entry.tunnel_id != req.tunnel_id
                or entry.direction is not direction
                or entry.reqid != req.reqid
                or entry.owner != child
            ):
                return Refusal(ErrorCode.NOT_PERMITTED,
                               f"SA spi {key[1]:#x} to {key[0]} not ours for phase 2 {p2} "
                               f"tunnel {req.tunnel_id}", p2)  # fmt: skip
            found.append(entry)
        pending = half.key if half is not None else None
        return Phase2Removal(p2, tuple(found), req.reqid, req.keep_policies, pending)

    # -- SKEYID ----------------------------------------------------------------------------

    def _remotes(self, number: int, p1: Phase1Definition) -> set[IPAddress]:
        act = self.activations.get(number)
        out = {p1.remote_addr} if p1.remote_addr is not None else set()
        return out | ({act.remote} if act is not None and act.remote is not None else set())

    def _talking(self, number: int, p1: Phase1Definition, since: float, child: int = 0) -> bool:
        """A peer this definition accepts, of `child`'s shard, sent a datagram to its
        local address lately."""
        locals_ = self.local_addresses(number, p1)
        if p1.remote_addr is None and self.activations.get(number) is None:
            shard = None if self.sharding.count == 1 else child
            return any(self.peers.any_seen_since(local, since, shard) for local in locals_)
        return any(self.peers.seen_since(local, remote, since)
                   for local in locals_ for remote in self._remotes(number, p1)
                   if self.sharding.serves(child, remote))  # fmt: skip

    def _psk_candidates(
        self, req: m.SkeyidRequest, now: float, child: int = 0
    ) -> list[tuple[int, Phase1Definition]]:
        since = now - SKEYID_WINDOW
        if req.phase1_number is not None:
            p1 = self.view.phase1.get(req.phase1_number)
            if p1 is None or not self._talking(req.phase1_number, p1, since, child):
                return []
            return [(req.phase1_number, p1)]
        peer = req.peer
        if peer is None or not self.sharding.serves(child, peer):  # None: SkeyidRequest.check
            return []
        phase1 = self.view.phase1
        found = [
            (number, phase1[number])
            for number in self._naming(peer)
            if phase1[number].mode is ExchangeType.IDENTITY_PROTECTION
        ]
        # a Main Mode responder answers a peer that talked to us (just now): only definitions
        # whose local address that peer actually reached are candidates
        return [
            (number, p1)
            for number, p1 in found
            if any(
                self.peers.seen_since(local, peer, since)
                for local in self.local_addresses(number, p1)
            )
        ]

    def nonce(self, req: m.NonceRequest, now: float, child: int = 0) -> tuple[int, bytes] | Refusal:
        """An initiator's Ni, made here and kept (in `child`'s own table) for the one
        SkeyidRequest that names it."""
        p1 = self.view.phase1.get(req.phase1_number)
        if p1 is None:
            return Refusal(ErrorCode.NO_SUCH_TUNNEL,
                           f"no phase 1 definition {req.phase1_number}",
                           req.phase1_number)  # fmt: skip
        if self.sharding.count > 1 and not any(
            self.sharding.serves(child, r) for r in self._remotes(req.phase1_number, p1)
        ):
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"phase 1 {req.phase1_number} names no peer of this child",
                           req.phase1_number)  # fmt: skip
        # signature initiators ask too (docs/certificates.md): our Ni stays the parent's
        # whatever the method, so no phase 1 we start has a nonce of the child's alone
        psk_ok = p1.auth is AuthMethod.PRE_SHARED_KEY and bool(p1.psk)
        if not psk_ok and p1.auth not in SIGNATURE_METHODS:
            return Refusal(ErrorCode.NO_SECRET,
                           f"phase 1 {req.phase1_number} has no pre-shared key",
                           req.phase1_number)  # fmt: skip
        return self._nonce_table(child).issue(req.phase1_number, now)

    def skeyid(
        self, req: m.SkeyidRequest, now: float, child: int = 0
    ) -> tuple[bytes, bytes] | Refusal:
        """prf(PSK, Ni_b | Nr_b) for one definition, and the Nr made for a responder (else
        b""); the PSK never leaves this process. Our own nonce is always the parent's (see
        nonces.py): the child chooses only the peer's.

        `now` is the monotonic clock of the peer table.
        """
        ours = b""
        if req.nonce_id:
            issued = self._nonce_table(child).take(req.nonce_id, now)  # used up even if refused
            if issued is None or issued.phase1_number != req.phase1_number:
                return Refusal(ErrorCode.NOT_PERMITTED,
                               f"nonce {req.nonce_id:#x} unknown, used, expired or not made "
                               f"for phase 1 {req.phase1_number}",
                               req.phase1_number)  # fmt: skip
            ni, nr = issued.nonce, req.peer_nonce
        else:
            ours = fresh_nonce()
            ni, nr = req.peer_nonce, ours
        found = self._psk_candidates(req, now, child)
        what = f"phase 1 {req.phase1_number}" if req.peer is None else f"peer {req.peer}"
        if not found:
            return Refusal(ErrorCode.NO_SUCH_TUNNEL,
                           f"no definition for {what} with a peer talking to us",
                           req.phase1_number)  # fmt: skip
        psks = [p1.psk for _, p1 in found if p1.auth is AuthMethod.PRE_SHARED_KEY and p1.psk]
        number = found[0][0]
        if len(psks) != len(found):
            return Refusal(ErrorCode.NO_SECRET, f"{what} has no pre-shared key", number)
        if any(not hmac.compare_digest(psks[0], other) for other in psks[1:]):
            reason = f"{what} matches definitions with different keys"
            return Refusal(ErrorCode.NOT_PERMITTED, reason, number)
        if all(req.prf not in {p.hash for p in d.proposals} for _, d in found):
            return Refusal(ErrorCode.BAD_ALGORITHM, f"prf {req.prf.name} not configured for {what}",
                           number)  # fmt: skip
        bucket = self._skeyid_buckets.setdefault(
            (child, number), TokenBucket(SKEYID_BURST, SKEYID_RATE)
        )
        if not bucket.take(now):
            return Refusal(ErrorCode.LIMIT_REACHED, f"too many SKEYID requests for {what}", number)
        try:
            return skeyid_psk(req.prf, psks[0], ni, nr), ours
        except CryptoError as exc:
            return Refusal(ErrorCode.INVALID_REQUEST, str(exc), number)

    # -- signatures ------------------------------------------------------------------------

    def signature(self, req: m.SignatureRequest, now: float, child: int = 0) -> bytes | Refusal:
        """Our signature over the HASH_I/HASH_R computed here (signer.py), for one
        signature definition in a live exchange with its peer; the key never leaves this
        process and the signed value always ends in our configured identity.

        `now` is the monotonic clock of the peer table.
        """
        number = req.phase1_number
        p1 = self.view.phase1.get(number)
        if p1 is None:
            return Refusal(ErrorCode.NO_SUCH_TUNNEL, f"no phase 1 definition {number}", number)
        if p1.auth not in SIGNATURE_METHODS:
            return Refusal(ErrorCode.NO_SECRET,
                           f"phase 1 {number} does not use signature authentication",
                           number)  # fmt: skip
        signer = self.view.signers.get(number)
        if signer is None:  # DbView.build leaves out a definition whose key does not load
            return Refusal(ErrorCode.NO_SECRET, f"phase 1 {number} has no usable key", number)
        accepts = p1.remote_addr is None or req.peer in self._remotes(number, p1)
        if self.is_ours(req.peer) or not accepts or not self.sharding.serves(child, req.peer):
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"{req.peer} is not the peer of phase 1 {number}", number)  # fmt: skip
        since = now - SKEYID_WINDOW
        if not any(self.peers.seen_since(local, req.peer, since)
                   for local in self.local_addresses(number, p1)):  # fmt: skip
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"{req.peer} has not talked to phase 1 {number} lately",
                           number)  # fmt: skip
        hashes = [p for p in p1.proposals if p.hash == req.prf]
        if not hashes:
            return Refusal(ErrorCode.BAD_ALGORITHM,
                           f"prf {req.prf.name} not configured for phase 1 {number}",
                           number)  # fmt: skip
        if not any(GROUPS[p.group].length == len(req.g_xi) == len(req.g_xr) for p in hashes):
            return Refusal(ErrorCode.BAD_LENGTH,
                           f"public values of {len(req.g_xi)} and {len(req.g_xr)} bytes fit "
                           f"no group configured with prf {req.prf.name} for phase 1 {number}",
                           number)  # fmt: skip
        bucket = self._signature_buckets.setdefault(
            (child, number), TokenBucket(SIGNATURE_BURST, SIGNATURE_RATE)
        )
        if not bucket.take(now):
            return Refusal(ErrorCode.LIMIT_REACHED,
                           f"too many signature requests for phase 1 {number}",
                           number)  # fmt: skip
        try:
            return signer.sign(req)
        except (CryptoError, ValueError) as exc:  # KeyMismatch is a ValueError
            return Refusal(ErrorCode.INVALID_REQUEST, str(exc), number)

    # -- datagrams -------------------------------------------------------------------------

    def known_remote(self, local: IPAddress, remote: IPAddress) -> bool:
        """A definition (for this local address), activation or earlier datagram names this peer."""
        if self.is_ours(remote):
            return False
        if self._talked(local, remote):
            return True
        return self._names(local, remote)

    def _names(self, local: IPAddress, remote: IPAddress) -> bool:
        phase1 = self.view.phase1
        return any(local in self.local_addresses(number, phase1[number])
                   for number in self._naming(remote))  # fmt: skip

    def names_peer(self, local: IPAddress, remote: IPAddress) -> bool:
        """A definition or activation names `remote` as the peer of `local`."""
        return not self.is_ours(remote) and self._names(local, remote)

    def known_local(self, local: IPAddress) -> bool:
        if self.peers.is_local(local):
            return True
        return local in self._addresses().locals

    def _port_ok(self, msg: m.DatagramOut) -> bool:
        """The IKE port itself, or a source port the parent saw this peer use: the child
        cannot aim datagrams at other services of a peer (or of a host that once wrote)."""
        local, remote = msg.local.addr, msg.remote.addr
        if msg.natt:
            return (msg.remote.port == NATT_PORT
                    or msg.remote.port in self.peers.natt_ports(local, remote)
                    or self.egress.natt_port_ok(local, remote, msg.remote.port,
                                                time.monotonic()))  # fmt: skip
        return msg.remote.port == IKE_PORT or msg.remote.port in self.peers.ports(local, remote)

    def datagram(
        self, msg: m.DatagramOut, bound_ports: frozenset[int], child: int = 0
    ) -> Refusal | None:
        if msg.local.port not in bound_ports:
            return Refusal(ErrorCode.NOT_PERMITTED, f"source port {msg.local.port} is not ours")
        if msg.natt != (msg.local.port == NATT_PORT):
            return Refusal(ErrorCode.INVALID_REQUEST, "natt flag does not match the port")
        keepalive = msg.natt and msg.data == NATT_KEEPALIVE
        if not keepalive and not MIN_ISAKMP <= len(msg.data) <= MAX_DATAGRAM_OUT:
            return Refusal(ErrorCode.BAD_LENGTH, f"datagram of {len(msg.data)} bytes")
        if not self.known_local(msg.local.addr):
            return Refusal(ErrorCode.NOT_PERMITTED, f"source {msg.local.addr} is not ours")
        if not self.known_remote(msg.local.addr, msg.remote.addr):
            return Refusal(ErrorCode.NOT_PERMITTED, f"destination {msg.remote.addr} is no peer")
        foreign = self._foreign(child, msg.remote.addr, None)
        if foreign is not None:
            return foreign
        if not self._port_ok(msg):
            return Refusal(ErrorCode.NOT_PERMITTED,
                           f"destination port {msg.remote.port} of {msg.remote.addr} is no "
                           "IKE port and was never seen from that peer")  # fmt: skip
        return None
