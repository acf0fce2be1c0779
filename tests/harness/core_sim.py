"""In-process simulation of two negotiation cores talking over a lossy network.

Each side is a real Negotiator plus a stand-in parent that answers the core's requests
the way the real parent would, with real crypto: SkeyidRequest with
ikepriv.crypto.oakley.skeyid_psk over the test's pre-shared key (chosen by definition
number or, for a Main Mode responder, by peer address), SpiRequest with fresh SPIs, and
Phase2Install/Phase2Remove with OK, keeping a model of the kernel the way the real
parent's installer.py writes it (policies written once per phase 2 and reqid, removed with
the last SA of their reqid unless kept; recording each SA and policy add and delete). The
network delivers datagrams after a latency and can lose, duplicate and reorder them, all
from one seed, so a failing run can be replayed exactly.

    sim = Simulation(initiator_config, responder_config, psk=b"...", seed=1)
    sim.initiate(phase=2, number=1)
    sim.run()
    sim.assert_keys_match()
"""

from __future__ import annotations

import heapq
import ipaddress
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.signer import sign_request
from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.hooks import Hooks
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.crypto.ciphers import pad_plaintext
from ikepriv.crypto.oakley import skeyid_psk
from ikepriv.ipc.messages import (
    PARENT_NONCE_BYTES,
    AeadKey,
    AuthKey,
    CryptKey,
    DatagramIn,
    DatagramOut,
    DpdSettings,
    Endpoint,
    ErrorCode,
    Identity,
    IkeProposal,
    InitiateCommand,
    Lifetimes,
    Log,
    NatTEncap,
    NonceReply,
    NonceRequest,
    Phase,
    Phase1Def,
    Phase2Commit,
    Phase2Def,
    Phase2Install,
    Phase2Proposal,
    Phase2Remove,
    PolicyDirection,
    ResultReply,
    SaDirection,
    SelectorSide,
    SendCert,
    SignatureReply,
    SignatureRequest,
    SkeyidReply,
    SkeyidRequest,
    SpiReply,
    SpiRequest,
    StateReport,
    TrafficSelector,
)
from ikepriv.ipc.schema import Message
from ikepriv.isakmp import (
    IdPayload,
    Payload,
    build_encrypted_message,
    decode_message,
    decode_payload_chain,
    encode_message,
    encode_payload_chain,
)
from ikepriv.isakmp.constants import (
    NATT_KEEPALIVE,
    NATT_PORT,
    AuthAlgorithm,
    AuthMethod,
    EncapsulationMode,
    EspTransformId,
    ExchangeType,
    GroupId,
    IdType,
    IkeEncryption,
    IkeHash,
    NotifyType,
    ProtocolId,
)
from ikepriv.parent_kernel.signer import SigningKey

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LEFT = ipaddress.ip_address("192.0.2.1")  # initiator gateway
RIGHT = ipaddress.ip_address("192.0.2.2")  # responder gateway
LEFT_NET = ipaddress.ip_network("198.51.100.0/25")
RIGHT_NET = ipaddress.ip_network("198.51.100.128/25")
PSK = b"correct horse battery staple"
NAT_PUBLIC = ipaddress.ip_address("203.0.113.7")  # the initiator's NAT, seen from outside


# ---------------------------------------------------------------------------- definitions


def ike_proposal(
    encryption: IkeEncryption = IkeEncryption.AES_CBC,
    key_bits: int = 128,
    hash_alg: IkeHash = IkeHash.SHA2_256,
    group: GroupId = GroupId.MODP_1024,
    lifetime: int = 28800,
) -> IkeProposal:
    return IkeProposal(encryption, key_bits, hash_alg, group, lifetime)


def esp_proposal(
    transform: EspTransformId = EspTransformId.AES_CBC,
    key_bits: int = 128,
    auth: AuthAlgorithm | None = AuthAlgorithm.HMAC_SHA2_256,
    pfs: GroupId | None = None,
    lifetime: int = 3600,
    kilobytes: int = 0,
) -> Phase2Proposal:
    return Phase2Proposal(ProtocolId.IPSEC_ESP, transform, key_bits, auth, pfs, lifetime, kilobytes)


def address_identity(addr: IPAddress) -> Identity:
    kind = IdType.IPV4_ADDR if addr.version == 4 else IdType.IPV6_ADDR
    return Identity(kind, addr.packed)


def phase1_def(
    number: int,
    local: IPAddress,
    remote: IPAddress | None,
    proposals: Sequence[IkeProposal] = (),
    *,
    local_id: Identity | None = None,
    remote_id: Identity | None = None,
    any_remote_id: bool = False,
    name: str | None = None,
    mode: ExchangeType = ExchangeType.IDENTITY_PROTECTION,
    nat_t: bool = False,
    dpd: DpdSettings | None = None,
    auth_method: AuthMethod = AuthMethod.PRE_SHARED_KEY,
    send_cert: SendCert = SendCert.IF_ASKED,
) -> Phase1Def:
    if remote_id is None and not any_remote_id and remote is not None:
        remote_id = address_identity(remote)
    return Phase1Def(
        number=number,
        name=name or f"p1-{number}",
        local_addr=local,
        remote_addr=remote,
        local_id=local_id or address_identity(local),
        remote_id=remote_id,
        mode=mode,
        auth_method=auth_method,
        proposals=tuple(proposals) or (ike_proposal(),),
        dpd=dpd or DpdSettings(False, 0, 0),
        nat_t=nat_t,
        send_cert=send_cert,
    )


def selector(
    net: str | ipaddress.IPv4Network | ipaddress.IPv6Network, proto: int = 0, port: int = 0
) -> SelectorSide:
    return SelectorSide(ipaddress.ip_network(net), proto, port)


def phase2_def(
    number: int,
    phase1_number: int,
    local: SelectorSide,
    remote: SelectorSide,
    proposals: Sequence[Phase2Proposal] = (),
    mode: EncapsulationMode = EncapsulationMode.TUNNEL,
    name: str | None = None,
) -> Phase2Def:
    return Phase2Def(
        number=number,
        phase1_number=phase1_number,
        name=name or f"p2-{number}",
        local=local,
        remote=remote,
        proposals=tuple(proposals) or (esp_proposal(),),
        mode=mode,
    )


def mirrored(
    ike: Sequence[IkeProposal] = (),
    esp: Sequence[Phase2Proposal] = (),
    mode: EncapsulationMode = EncapsulationMode.TUNNEL,
    *,
    responder_ike: Sequence[IkeProposal] | None = None,
    responder_esp: Sequence[Phase2Proposal] | None = None,
    left_sel: SelectorSide | None = None,
    right_sel: SelectorSide | None = None,
    responder_left_sel: SelectorSide | None = None,
    responder_right_sel: SelectorSide | None = None,
    phase1_mode: ExchangeType = ExchangeType.IDENTITY_PROTECTION,
    nat_t: bool = False,
    responder_peer: IPAddress | None = LEFT,
    dpd: DpdSettings | None = None,
    responder_dpd: DpdSettings | None = None,
) -> tuple[ConfigSnapshot, ConfigSnapshot]:
    """A tunnel definition on the initiator (LEFT) and its mirror on the responder (RIGHT).

    Transport mode defaults to host selectors of the gateways, tunnel mode to the LANs.
    `responder_peer` is the address the responder expects the initiator at (NAT_PUBLIC
    behind the simulated NAT, None for any); the expected ID stays LEFT's. `dpd` applies to
    both sides unless `responder_dpd` is given."""
    host = mode is EncapsulationMode.TRANSPORT
    lsel = left_sel or (selector(f"{LEFT}/32") if host else selector(LEFT_NET))
    rsel = right_sel or (selector(f"{RIGHT}/32") if host else selector(RIGHT_NET))
    init = ConfigSnapshot.of(
        [phase1_def(1, LEFT, RIGHT, ike, mode=phase1_mode, nat_t=nat_t, dpd=dpd)],
        [phase2_def(1, 1, lsel, rsel, esp, mode)],
    )
    resp = ConfigSnapshot.of(
        [
            phase1_def(
                1,
                RIGHT,
                responder_peer,
                ike if responder_ike is None else responder_ike,
                remote_id=address_identity(LEFT),
                mode=phase1_mode,
                nat_t=nat_t,
                dpd=responder_dpd or dpd,
            )
        ],
        [
            phase2_def(
                1,
                1,
                responder_right_sel or rsel,
                responder_left_sel or lsel,
                esp if responder_esp is None else responder_esp,
                mode,
            )
        ],
    )
    return init, resp


# ---------------------------------------------------------------------------- parent


@dataclass(frozen=True)
class SaAdd:
    """One SA as a Phase2Install put it into the (modelled) kernel."""

    phase2_number: int
    tunnel_id: int
    direction: SaDirection
    src: IPAddress
    dst: IPAddress
    proto: ProtocolId
    spi: int
    mode: EncapsulationMode
    encryption: CryptKey | None
    integrity: AuthKey | None
    aead: AeadKey | None
    lifetimes: Lifetimes
    encap: NatTEncap | None
    selector: TrafficSelector
    reqid: int


@dataclass(frozen=True)
class SaDelete:
    spi: int
    proto: ProtocolId
    dst: IPAddress


@dataclass(frozen=True)
class PolicyAdd:
    phase2_number: int
    selector: TrafficSelector
    direction: PolicyDirection
    reqid: int
    priority: int


@dataclass(frozen=True)
class PolicyDelete:
    selector: TrafficSelector
    direction: PolicyDirection


def sa_adds_of(msg: Phase2Install) -> tuple[SaAdd, SaAdd]:
    """The install's (inbound, outbound) SAs, oriented as the parent orients them."""
    back = None if msg.encap is None else NatTEncap(msg.encap.dport, msg.encap.sport)
    turned = TrafficSelector(msg.selector.dst, msg.selector.src)
    common = (msg.proto,)
    inbound = SaAdd(msg.phase2_number, msg.tunnel_id, SaDirection.IN, msg.remote, msg.local,
                    *common, msg.inbound.spi, msg.mode, msg.inbound.encryption,
                    msg.inbound.integrity, msg.inbound.aead, msg.inbound.lifetimes, back, turned,
                    msg.reqid)  # fmt: skip
    outbound = SaAdd(msg.phase2_number, msg.tunnel_id, SaDirection.OUT, msg.local, msg.remote,
                     *common, msg.outbound.spi, msg.mode, msg.outbound.encryption,
                     msg.outbound.integrity, msg.outbound.aead, msg.outbound.lifetimes, msg.encap,
                     msg.selector, msg.reqid)  # fmt: skip
    return inbound, outbound


@dataclass
class StandInParent:
    """Answers the core's requests like the real parent (minus the kernel, which it models)."""

    psk_by_phase1: dict[int, bytes]
    psk_by_peer: dict[IPAddress, bytes]
    rng: random.Random
    installs: list[Phase2Install] = field(default_factory=list)
    removes: list[Phase2Remove] = field(default_factory=list)
    sa_adds: list[SaAdd] = field(default_factory=list)
    sa_deletes: list[SaDelete] = field(default_factory=list)
    policy_adds: list[PolicyAdd] = field(default_factory=list)
    policy_deletes: list[PolicyDelete] = field(default_factory=list)
    reports: list[StateReport] = field(default_factory=list)
    logs: list[Log] = field(default_factory=list)
    skeyid_requests: list[SkeyidRequest] = field(default_factory=list)
    nonces: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # id: (phase 1, Ni)
    issued_nonces: list[bytes] = field(default_factory=list)  # every Ni and Nr it made
    allocated: set[int] = field(default_factory=set)
    refuse: set[type] = field(default_factory=set)
    signers: dict[int, SigningKey] = field(default_factory=dict)  # phase 1 number -> key
    signature_requests: list[SignatureRequest] = field(default_factory=list)
    # what reached the modelled kernel, in order (SaAdd, SaDelete, PolicyAdd, PolicyDelete)
    kernel_log: list[Any] = field(default_factory=list)
    live: dict[tuple[SaDirection, int], SaAdd] = field(default_factory=dict)
    policies: dict[tuple[TrafficSelector, PolicyDirection], PolicyAdd] = field(default_factory=dict)
    # outbound halves of inbound_first installs, by tunnel id, until Phase2Commit
    pending: dict[int, tuple[Phase2Install, list[Any]]] = field(default_factory=dict)
    commits: list[Phase2Commit] = field(default_factory=list)
    # indexes of the modelled kernel, so that a remove costs the same next to 10,000 SAs
    # as next to one (bench/core_initiator.py uses this parent for thousands of tunnels):
    # every SA ever added, the live SAs and the policies of each (phase 2, reqid)
    _ever: set[tuple[SaDirection, int]] = field(default_factory=set)
    _live_of: dict[tuple[int, int], int] = field(default_factory=dict)
    _policies_of: dict[tuple[int, int], dict[tuple[TrafficSelector, PolicyDirection], None]] = (
        field(default_factory=dict)
    )  # in the order added, as a dict keeps them

    def answer(self, msg: Message) -> Message | None:
        if isinstance(msg, NonceRequest):
            if NonceRequest in self.refuse or msg.phase1_number not in self.psk_by_phase1:
                return NonceReply(msg.request_id, ErrorCode.NO_SECRET, 0, b"")
            nonce_id = len(self.issued_nonces) + 1  # never reused
            nonce = self.rng.randbytes(PARENT_NONCE_BYTES)
            self.nonces[nonce_id] = (msg.phase1_number, nonce)
            self.issued_nonces.append(nonce)
            return NonceReply(msg.request_id, ErrorCode.OK, nonce_id, nonce)
        if isinstance(msg, SkeyidRequest):
            self.skeyid_requests.append(msg)
            if msg.phase1_number is not None:
                psk = self.psk_by_phase1.get(msg.phase1_number)
            else:
                assert msg.peer is not None
                psk = self.psk_by_peer.get(msg.peer)
            issued = self.nonces.pop(msg.nonce_id, None) if msg.nonce_id else None
            if psk is None or SkeyidRequest in self.refuse:
                return SkeyidReply(msg.request_id, ErrorCode.NO_SECRET, b"", b"")
            if msg.nonce_id:  # initiator: Ni is the parent's, made for this definition
                if issued is None or issued[0] != msg.phase1_number:
                    return SkeyidReply(msg.request_id, ErrorCode.NOT_PERMITTED, b"", b"")
                skeyid = skeyid_psk(msg.prf, psk, issued[1], msg.peer_nonce)
                return SkeyidReply(msg.request_id, ErrorCode.OK, skeyid, b"")
            nr = self.rng.randbytes(PARENT_NONCE_BYTES)  # responder: Nr is the parent's
            self.issued_nonces.append(nr)
            skeyid = skeyid_psk(msg.prf, psk, msg.peer_nonce, nr)
            return SkeyidReply(msg.request_id, ErrorCode.OK, skeyid, nr)
        if isinstance(msg, SignatureRequest):
            self.signature_requests.append(msg)
            signer = self.signers.get(msg.phase1_number)
            if signer is None or SignatureRequest in self.refuse:
                return SignatureReply(msg.request_id, ErrorCode.NOT_PERMITTED, b"")
            return SignatureReply(msg.request_id, ErrorCode.OK, sign_request(msg, signer))
        if isinstance(msg, SpiRequest):
            while True:
                spi = self.rng.randrange(256, 1 << 32)
                if spi not in self.allocated:
                    self.allocated.add(spi)
                    return SpiReply(msg.request_id, ErrorCode.OK, spi)
        if isinstance(msg, Phase2Install):
            self.installs.append(msg)
            if Phase2Install in self.refuse:
                return ResultReply(msg.request_id, ErrorCode.NOT_PERMITTED, "refused by test")
            self._install(msg)
            return ResultReply(msg.request_id, ErrorCode.OK, "")
        if isinstance(msg, Phase2Commit):
            self.commits.append(msg)
            held = self.pending.get(msg.tunnel_id)
            if Phase2Commit in self.refuse or held is None or held[0].inbound.spi != msg.spi_in:
                return ResultReply(msg.request_id, ErrorCode.NOT_PERMITTED, "no pending install")
            del self.pending[msg.tunnel_id]
            self._write(held[1])
            return ResultReply(msg.request_id, ErrorCode.OK, "")
        if isinstance(msg, Phase2Remove):
            self.removes.append(msg)
            if Phase2Remove in self.refuse:
                return ResultReply(msg.request_id, ErrorCode.NOT_PERMITTED, "refused by test")
            return ResultReply(msg.request_id, self._remove(msg), "")
        if isinstance(msg, StateReport):
            self.reports.append(msg)
        elif isinstance(msg, Log):
            self.logs.append(msg)
        return None

    def _install(self, msg: Phase2Install) -> None:
        inbound, outbound = sa_adds_of(msg)
        wanted = [PolicyAdd(msg.phase2_number, p.selector, p.direction, msg.reqid, p.priority)
                  for p in msg.policies]  # fmt: skip
        new = [p for p in wanted if self.policies.get((p.selector, p.direction)) != p]
        out = [p for p in new if p.direction is PolicyDirection.OUT]
        catching = [p for p in new if p.direction is not PolicyDirection.OUT]
        if msg.inbound_first:  # the outbound half waits for Phase2Commit
            self._write([*catching, inbound])
            self.pending[msg.tunnel_id] = (msg, [outbound, *out])
            return
        self._write([*catching, inbound, outbound, *out])  # the installer's order

    def _write(self, items: list[Any]) -> None:
        for item in items:
            self.kernel_log.append(item)
            if isinstance(item, SaAdd):
                self.sa_adds.append(item)
                key = (item.direction, item.spi)
                self._ever.add(key)
                self._forget_live(key)
                self.live[key] = item
                of = (item.phase2_number, item.reqid)
                self._live_of[of] = self._live_of.get(of, 0) + 1
            else:
                self.policy_adds.append(item)
                where = (item.selector, item.direction)
                old = self.policies.get(where)
                if old is not None:
                    self._policies_of[(old.phase2_number, old.reqid)].pop(where, None)
                self.policies[where] = item
                self._policies_of.setdefault((item.phase2_number, item.reqid), {})[where] = None

    def _forget_live(self, key: tuple[SaDirection, int]) -> SaAdd | None:
        """Take SA `key` out of the live ones (None: it was not live)."""
        entry = self.live.pop(key, None)
        if entry is not None:
            of = (entry.phase2_number, entry.reqid)
            left = self._live_of[of] - 1
            if left:
                self._live_of[of] = left
            else:
                del self._live_of[of]
        return entry

    def _remove(self, msg: Phase2Remove) -> ErrorCode:
        named = [(SaDirection.IN, msg.spi_in), (SaDirection.OUT, msg.spi_out)]
        held = self.pending.pop(msg.tunnel_id, None)
        half = held is not None and held[0].inbound.spi == msg.spi_in  # a half install

        def ever(key: tuple[SaDirection, int]) -> bool:
            return key in self._ever or (half and key == (SaDirection.OUT, msg.spi_out))

        if not any(ever(key) for key in named) and msg.spi_in in self.allocated:
            return ErrorCode.OK  # an allocated SPI whose install never happened
        for key in named:
            entry = self._forget_live(key)
            if entry is not None:
                item = SaDelete(entry.spi, entry.proto, entry.dst)
                self.sa_deletes.append(item)
                self.kernel_log.append(item)
            elif not ever(key):
                return ErrorCode.NOT_PERMITTED
        of = (msg.phase2_number, msg.reqid)
        if msg.keep_policies or of in self._live_of:
            return ErrorCode.OK
        for key in self._policies_of.pop(of, {}):
            del self.policies[key]
            gone = PolicyDelete(*key)
            self.policy_deletes.append(gone)
            self.kernel_log.append(gone)
        return ErrorCode.OK

    def forget_records(self) -> None:
        """Empty the lists that record what was asked and answered (for a long run: a
        bench initiator holding thousands of tunnels for an hour). The modelled kernel
        (live SAs, policies) and what answers depend on stay."""
        for records in (self.installs, self.removes, self.sa_adds, self.sa_deletes,
                        self.policy_adds, self.policy_deletes, self.reports, self.logs,
                        self.skeyid_requests, self.signature_requests, self.kernel_log,
                        self.commits):  # fmt: skip
            records.clear()

    def installed_spis(self) -> set[tuple[SaDirection, int]]:
        """SAs added and not deleted since, as (direction, spi)."""
        return set(self.live)


# ---------------------------------------------------------------------------- simulation


@dataclass
class Side:
    name: str
    address: IPAddress
    core: Negotiator
    parent: StandInParent
    sent: list[DatagramOut] = field(default_factory=list)
    received: list[DatagramIn] = field(default_factory=list)
    trail: list[Message] = field(default_factory=list)  # every output of the core, in order
    cpu_seconds: float = 0.0
    handle_calls: int = 0

    notifies_received: list[int] = field(default_factory=list)

    def log_text(self) -> str:
        return "\n".join(log.text for log in self.parent.logs)


def peek_notifies(core: Negotiator, data: bytes) -> list[int]:
    """Notify types in a datagram about to reach `core`: plain ones as they are, encrypted
    ones decrypted with the receiver's own keys and IV state (which reading leaves as is)."""
    from ikepriv.isakmp import NotifyPayload

    try:
        message = decode_message(data)
        payloads: Sequence[Payload] = message.payloads
        if message.encrypted:
            header = message.header
            sa = core.sas.by_cookies.get(header.icookie + header.rcookie)
            if sa is None or sa.cipher is None or sa.iv is None:
                return []
            plain = sa.cipher.decrypt(sa.iv.iv_for(header.message_id), message.ciphertext)
            payloads = decode_payload_chain(header.next_payload, plain, allow_padding=True)
    except Exception:
        return []
    return [p.notify_type for p in payloads if isinstance(p, NotifyPayload)]


Tamper = Callable[[str, bytes], bytes | None]
"""(receiving side name, datagram) -> replacement datagram, or None to keep it."""


@dataclass
class NatBox:
    """A NAPT router in front of the initiator: its source address becomes `public`, and
    each inside port gets an outside one (the same when `preserve_ports` and still free,
    as Linux masquerading does, else a fresh one). Only mapped ports come back in."""

    inside: IPAddress = LEFT
    public: IPAddress = NAT_PUBLIC
    preserve_ports: bool = True
    next_port: int = 31000
    out_ports: dict[int, int] = field(default_factory=dict)
    in_ports: dict[int, int] = field(default_factory=dict)

    def outbound(self, source: Endpoint) -> Endpoint:
        port = self.out_ports.get(source.port)
        if port is None:
            if self.preserve_ports and source.port not in self.in_ports:
                port = source.port
            else:
                port = self.next_port
                self.next_port += 1
            self.out_ports[source.port] = port
            self.in_ports[port] = source.port
        return Endpoint(self.public, port)

    def inbound(self, destination: Endpoint) -> Endpoint | None:
        inner = self.in_ports.get(destination.port)
        return None if inner is None else Endpoint(self.inside, inner)

    def rebind(self) -> None:
        """The NAT forgot its mappings (reboot, idle timeout): new outside ports from now."""
        self.out_ports.clear()
        self.in_ports.clear()
        self.preserve_ports = False


class Simulation:
    def __init__(
        self,
        initiator: ConfigSnapshot,
        responder: ConfigSnapshot,
        *,
        psk: bytes = PSK,
        responder_psk: bytes | None = None,
        seed: int = 1,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        latency: float = 0.01,
        parent_delay: float = 0.001,
        settings: Settings | None = None,
        responder_settings: Settings | None = None,
        hooks: Hooks | None = None,
        measure: str | None = None,
        nat: NatBox | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.rng = random.Random(seed)  # noqa: S311 - seeded on purpose: replayable runs
        self.nat = nat
        self.keepalives: list[DatagramOut] = []
        self.now = 1000.0
        self.loss, self.duplicate, self.reorder = loss, duplicate, reorder
        self.latency, self.parent_delay = latency, parent_delay
        self.tamper: Tamper | None = None
        self.dropped_on_wire = 0
        self._events: list[tuple[float, int, str, Message]] = []
        self._seq = 0
        self.measure = measure
        seeds = [self.rng.getrandbits(64) for _ in range(4)]
        self.sides: dict[str, Side] = {}
        for name, addr, config, key, peer, s, rseed, pseed in (
            ("initiator", LEFT, initiator, psk, RIGHT, settings, seeds[0], seeds[1]),
            (
                "responder",
                RIGHT,
                responder,
                psk if responder_psk is None else responder_psk,
                LEFT,
                responder_settings or settings,
                seeds[2],
                seeds[3],
            ),
        ):
            core_rng = random.Random(rseed)  # noqa: S311
            core = Negotiator(
                config, self.now, core_rng.randbytes, settings=s, hooks=hooks,
                wall_clock=wall_clock,
            )  # fmt: skip
            parent = StandInParent(
                {n: key for n in config.phase1},
                {peer: key},
                random.Random(pseed),  # noqa: S311
            )
            self.sides[name] = Side(name, addr, core, parent)
        if nat is not None:  # a Main Mode responder asks for the PSK by the address it sees
            self.responder.parent.psk_by_peer[nat.public] = self.responder.parent.psk_by_peer[LEFT]
        self._by_addr = {side.address: side for side in self.sides.values()}

    @property
    def initiator(self) -> Side:
        return self.sides["initiator"]

    @property
    def responder(self) -> Side:
        return self.sides["responder"]

    # -- driving ---------------------------------------------------------------

    def command(self, side: str, message: Message) -> None:
        self._schedule(self.now, side, message)

    def initiate(self, phase: int = 2, number: int = 1, side: str = "initiator") -> None:
        self.command(side, InitiateCommand(Phase(phase), number, None, None))

    def _schedule(self, when: float, side: str, message: Message) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, side, message))

    def _call(self, side: Side, fn: Callable[..., list[Message]], *args: Any) -> list[Message]:
        if self.measure == side.name:
            start = time.process_time()
            out = fn(*args)
            side.cpu_seconds += time.process_time() - start
        else:
            out = fn(*args)
        side.handle_calls += 1
        return out

    def run(self, duration: float = 600.0, max_events: int = 200000) -> None:
        """Run until nothing is left to do, or `duration` simulated seconds passed."""
        end = self.now + duration
        for _ in range(max_events):
            deadlines = [
                (d, s) for s in self.sides.values() if (d := s.core.next_deadline()) is not None
            ]
            next_event = self._events[0][0] if self._events else None
            next_timer = min(deadlines, key=lambda item: item[0]) if deadlines else None
            if next_event is None and next_timer is None:
                return
            if next_timer is not None and (next_event is None or next_timer[0] < next_event):
                when, side = next_timer
                if when > end:
                    return
                self.now = max(self.now, when)
                self._dispatch(side, self._call(side, side.core.handle_timers, self.now))
                continue
            assert next_event is not None
            if next_event > end:
                return
            when, _, name, message = heapq.heappop(self._events)
            self.now = max(self.now, when)
            side = self.sides[name]
            if isinstance(message, DatagramIn):
                if self.tamper is not None:
                    replaced = self.tamper(name, message.data)
                    if replaced is not None:
                        message = DatagramIn(message.local, message.remote, message.natt, replaced)
                side.received.append(message)
                side.notifies_received.extend(peek_notifies(side.core, message.data))
            self._dispatch(side, self._call(side, side.core.handle, message, self.now))
        raise AssertionError("simulation did not settle")

    def advance(self, seconds: float) -> None:
        """Run for `seconds` of simulated time and leave the clock at their end, even when
        nothing happened meanwhile (run() stops the clock at the last event)."""
        end = self.now + seconds
        self.run(duration=seconds)
        self.now = max(self.now, end)

    def _dispatch(self, side: Side, actions: Iterable[Message]) -> None:
        for action in actions:
            side.trail.append(action)
            if isinstance(action, DatagramOut):
                side.sent.append(action)
                self._send(action)
                continue
            reply = side.parent.answer(action)
            if reply is not None:
                self._schedule(self.now + self.parent_delay, side.name, reply)

    def _send(self, out: DatagramOut) -> None:
        if out.data == NATT_KEEPALIVE:
            self.keepalives.append(out)  # the receiving parent drops keepalives itself
            return
        source, destination = out.local, out.remote
        if self.nat is not None:
            if source.addr == self.nat.inside:
                source = self.nat.outbound(source)
            elif destination.addr == self.nat.public:
                inner = self.nat.inbound(destination)
                if inner is None:
                    self.dropped_on_wire += 1
                    return
                destination = inner
        target = self._by_addr.get(destination.addr)
        if target is None:
            return
        copies = 1
        if self.rng.random() < self.loss:
            copies = 0
            self.dropped_on_wire += 1
        elif self.rng.random() < self.duplicate:
            copies = 2
        for _ in range(copies):
            delay = self.latency
            if self.rng.random() < self.reorder:
                delay += self.rng.uniform(0, 5 * self.latency)
            self._schedule(
                self.now + delay,
                target.name,
                DatagramIn(destination, source, destination.port == NATT_PORT, out.data),
            )

    # -- checks ----------------------------------------------------------------

    def assert_keys_match(self, expected_pairs: int | None = None) -> list[tuple[SaAdd, SaAdd]]:
        """Every outbound SA of one side is an inbound SA of the other with the same SPI,
        addresses and keys; returns the matched (outbound, inbound) pairs."""
        pairs = []
        for a, b in (("initiator", "responder"), ("responder", "initiator")):
            inbound = {
                x.spi: x for x in self.sides[b].parent.sa_adds if x.direction is SaDirection.IN
            }
            for out in self.sides[a].parent.sa_adds:
                if out.direction is not SaDirection.OUT:
                    continue
                twin = inbound.get(out.spi)
                assert twin is not None, f"{a} outbound SPI {out.spi:08x} unknown to {b}"
                assert (self._public(out.src), self._public(out.dst)) == (
                    self._public(twin.src),
                    self._public(twin.dst),
                )
                assert self._wire_ports(a, out) == self._wire_ports(b, twin)
                assert out.encryption == twin.encryption
                assert out.integrity == twin.integrity
                assert out.aead == twin.aead
                assert out.mode == twin.mode and out.proto == twin.proto
                pairs.append((out, twin))
        if expected_pairs is not None:
            assert len(pairs) == expected_pairs, f"{len(pairs)} SA pairs, expected {expected_pairs}"
        return pairs

    def _public(self, addr: IPAddress) -> IPAddress:
        """An address as it appears between the NAT and the responder."""
        if self.nat is not None and addr == self.nat.inside:
            return self.nat.public
        return addr

    def _wire_ports(self, side: str, add: SaAdd) -> tuple[int, int] | None:
        """The UDP encapsulation ports of an SA as on the wire outside the NAT."""
        if add.encap is None:
            return None
        sport, dport = add.encap.sport, add.encap.dport
        if self.nat is not None and side == "initiator":
            if add.direction is SaDirection.OUT:
                sport = self.nat.out_ports.get(sport, sport)
            else:
                dport = self.nat.out_ports.get(dport, dport)
        return sport, dport

    def established_children(self, side: str) -> list[Any]:
        from ikepriv.child_negotiator.core.states import ChildState

        return [
            c
            for c in self.sides[side].core.sas.children.values()
            if c.state is ChildState.ESTABLISHED
        ]

    def established_isakmp(self, side: str) -> list[Any]:
        return [sa for sa in self.sides[side].core.sas.by_tunnel.values() if sa.established]


# ---------------------------------------------------------------------------- tampering


def reseal(
    core: Negotiator, data: bytes, edit: Callable[[list[Payload]], list[Payload]]
) -> bytes | None:
    """Decrypt a datagram addressed to `core` with that core's own keys and IV state, let
    `edit` change the payloads, and encrypt it again the same way: the result decrypts
    cleanly at `core`, so only the edit (a wrong HASH, a wider ID) is what it must catch.
    None when `core` has no keys for the datagram."""
    message = decode_message(data)
    header = message.header
    sa = core.sas.by_cookies.get(header.icookie + header.rcookie)
    if sa is None or sa.cipher is None or sa.iv is None or not message.encrypted:
        return None
    iv = sa.iv.iv_for(header.message_id)
    plaintext = sa.cipher.decrypt(iv, message.ciphertext)
    payloads = list(decode_payload_chain(header.next_payload, plaintext, allow_padding=True))
    payloads = edit(payloads)
    body = pad_plaintext(encode_payload_chain(payloads), sa.cipher.block_size)
    ciphertext = sa.cipher.encrypt(iv, body)
    return encode_message(
        build_encrypted_message(
            header.icookie,
            header.rcookie,
            header.exchange_type,
            header.message_id,
            payloads[0].payload_type,
            ciphertext,
            flags=header.flags,
        )
    )


def forge_informational(core: Negotiator, payloads: Sequence[Payload]) -> bytes:
    """An encrypted, hashed informational as `core`'s peer side would build it, without
    `core` sending it: for a test that plays a peer holding valid keys but bad intent."""
    from ikepriv.child_negotiator.core.wire import seal_hashed
    from ikepriv.crypto.oakley import informational_hash

    sa = next(sa for sa in core.sas.by_tunnel.values() if sa.established)
    assert sa.keys is not None and sa.choice is not None
    mid = core.new_message_id(sa)
    alg, key = sa.choice.hash, sa.keys.skeyid_a
    return seal_hashed(
        sa,
        ExchangeType.INFORMATIONAL,
        mid,
        payloads,
        lambda rest: informational_hash(alg, key, mid, rest),
    )


def datagram(src: IPAddress, dst: IPAddress, data: bytes) -> DatagramIn:
    """`data` from src:500 arriving at dst:500."""
    from ikepriv.ipc.messages import Endpoint

    return DatagramIn(Endpoint(dst, 500), Endpoint(src, 500), False, data)


def find_payload(payloads: Sequence[Payload], kind: type) -> int:
    for i, p in enumerate(payloads):
        if isinstance(p, kind):
            return i
    raise LookupError(kind.__name__)


__all__ = [
    "LEFT",
    "LEFT_NET",
    "NAT_PUBLIC",
    "PSK",
    "RIGHT",
    "RIGHT_NET",
    "IdPayload",
    "NatBox",
    "NotifyType",
    "Simulation",
    "StandInParent",
    "address_identity",
    "esp_proposal",
    "find_payload",
    "ike_proposal",
    "mirrored",
    "phase1_def",
    "phase2_def",
    "reseal",
    "selector",
]
