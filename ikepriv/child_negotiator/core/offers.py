"""Proposal building and selection for phase 1 (ISAKMP) and phase 2 (ESP/AH).

Both sides reduce a transform to a choice value holding every attribute that matters, then
compare values, never bytes or partial fields:

* responder: the first offered transform whose suite (algorithms, key size, group, auth
  method, mode) equals one in the definition wins; its lifetime may be longer than ours,
  which is then shortened (phase 2: and told with RESPONDER-LIFETIME);
* initiator: the reply must carry exactly one proposal with exactly one transform, and its
  choice (lifetimes included) must equal one we offered.

Unknown attributes, custom groups, a PRF attribute or anything else we cannot honour make a
transform unacceptable rather than an error: selection never raises on peer input.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ikepriv.crypto import dh
from ikepriv.crypto.ciphers import IKE_CIPHERS
from ikepriv.crypto.crypto_errors import CryptoError
from ikepriv.crypto.keymat import ESP_CIPHERS, KeymatLayout, ah_layout, esp_layout
from ikepriv.crypto.prf import HASHES
from ikepriv.ipc.messages import Phase1Def, Phase2Def, Phase2Proposal
from ikepriv.isakmp import (
    IsakmpError,
    Proposal,
    SAPayload,
    Transform,
    ike_attributes,
    ike_attributes_to_dict,
    ike_lifetimes,
    ipsec_attributes,
    ipsec_attributes_to_dict,
    ipsec_lifetimes,
)
from ikepriv.isakmp.constants import (
    AhTransformId,
    AuthAlgorithm,
    AuthMethod,
    EncapsulationMode,
    EspTransformId,
    GroupId,
    IkeAttr,
    IkeEncryption,
    IkeHash,
    IkeTransformId,
    IpsecAttr,
    LifeType,
    ProtocolId,
)

DEFAULT_LIFETIME = 28800  # RFC 2407 4.5: seconds when no lifetime is proposed

_IKE_KNOWN = frozenset(
    {
        IkeAttr.ENCRYPTION_ALGORITHM,
        IkeAttr.HASH_ALGORITHM,
        IkeAttr.AUTHENTICATION_METHOD,
        IkeAttr.GROUP_DESCRIPTION,
        IkeAttr.KEY_LENGTH,
    }
)
_IPSEC_KNOWN = frozenset(
    {
        IpsecAttr.GROUP_DESCRIPTION,
        IpsecAttr.ENCAPSULATION_MODE,
        IpsecAttr.AUTHENTICATION_ALGORITHM,
        IpsecAttr.KEY_LENGTH,
    }
)

# Wire encapsulation modes and the kernel mode each stands for (RFC 3947 adds UDP forms).
BASE_MODE: Mapping[int, EncapsulationMode] = {
    EncapsulationMode.TUNNEL: EncapsulationMode.TUNNEL,
    EncapsulationMode.TRANSPORT: EncapsulationMode.TRANSPORT,
    EncapsulationMode.UDP_ENCAPSULATED_TUNNEL: EncapsulationMode.TUNNEL,
    EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT: EncapsulationMode.TRANSPORT,
    EncapsulationMode.UDP_ENCAPSULATED_TUNNEL_DRAFT: EncapsulationMode.TUNNEL,
    EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT_DRAFT: EncapsulationMode.TRANSPORT,
}


def _lifetime_pairs(seconds: int, kilobytes: int) -> list[tuple[int, int]]:
    pairs = [(int(LifeType.SECONDS), seconds)] if seconds else []
    if kilobytes:
        pairs.append((int(LifeType.KILOBYTES), kilobytes))
    return pairs


def _lifetimes_of(pairs: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
    """(seconds, kilobytes) from lifetime pairs; None for an unknown life type."""
    seconds = kilobytes = 0
    for kind, value in pairs:
        if kind == LifeType.SECONDS:
            seconds = value
        elif kind == LifeType.KILOBYTES:
            kilobytes = value
        else:
            return None
    return (seconds or DEFAULT_LIFETIME, kilobytes)


# ------------------------------------------------------------------------------ phase 1


@dataclass(frozen=True, slots=True)
class IkeChoice:
    encryption: IkeEncryption
    key_bits: int  # normalised: the real key size
    hash: IkeHash
    group: GroupId
    auth: AuthMethod
    lifetime_seconds: int
    lifetime_kilobytes: int = 0

    @property
    def suite(self) -> tuple[int, int, int, int, int]:
        return (self.encryption, self.key_bits, self.hash, self.group, self.auth)

    def describe(self, lifetime: int | None = None) -> str:
        """`lifetime`: the one in force (ike_lifetime), if not the proposal's."""
        seconds = self.lifetime_seconds if lifetime is None else lifetime
        return (
            f"{self.encryption.name}-{self.key_bits} {self.hash.name} "
            f"{self.group.name} {self.auth.name} {seconds}s"
        )


def _ike_key_bits(encryption: int, bits: int | None) -> int | None:
    try:
        spec = IKE_CIPHERS.get(IkeEncryption(encryption))
    except ValueError:
        return None
    if spec is None:
        return None
    if bits is None or bits == 0:
        return spec.fixed_key_bits
    return bits if bits in spec.key_bits else None


def ike_choices(definition: Phase1Def) -> tuple[IkeChoice, ...]:
    """What a definition offers (initiator) or accepts (responder), in its order."""
    out = []
    for p in definition.proposals:
        bits = _ike_key_bits(p.encryption, p.key_bits)
        if bits is None or p.hash not in HASHES:
            continue
        try:
            dh.group(p.group)
        except CryptoError:
            continue
        out.append(
            IkeChoice(
                p.encryption,
                bits,
                p.hash,
                p.group,
                definition.auth_method,
                p.lifetime_seconds or DEFAULT_LIFETIME,
            )
        )
    return tuple(out)


def ike_transform(number: int, choice: IkeChoice) -> Transform:
    values: dict[int, int | bytes] = {IkeAttr.ENCRYPTION_ALGORITHM: int(choice.encryption)}
    if IKE_CIPHERS[choice.encryption].fixed_key_bits is None:
        values[IkeAttr.KEY_LENGTH] = choice.key_bits
    values[IkeAttr.HASH_ALGORITHM] = int(choice.hash)
    values[IkeAttr.AUTHENTICATION_METHOD] = int(choice.auth)
    values[IkeAttr.GROUP_DESCRIPTION] = int(choice.group)
    attrs = ike_attributes(
        values, _lifetime_pairs(choice.lifetime_seconds, choice.lifetime_kilobytes)
    )
    return Transform(number, IkeTransformId.KEY_IKE, attrs)


def ike_sa_payload(choices: Iterable[IkeChoice]) -> SAPayload:
    """One ISAKMP proposal with one transform per choice (how every IKEv1 daemon offers)."""
    transforms = tuple(ike_transform(i, c) for i, c in enumerate(choices, start=1))
    return SAPayload.ipsec([Proposal(1, ProtocolId.ISAKMP, b"", transforms)])


def parse_ike_transform(transform: Transform) -> IkeChoice | None:
    """The choice a phase 1 transform makes, or None when we cannot honour it."""
    if transform.transform_id != IkeTransformId.KEY_IKE:
        return None
    try:
        values = ike_attributes_to_dict(transform.attributes)
        life = _lifetimes_of(ike_lifetimes(transform.attributes))
    except IsakmpError:
        return None
    if life is None or any(k not in _IKE_KNOWN for k in values):
        return None
    if any(not isinstance(v, int) for v in values.values()):
        return None
    ints: dict[int, int] = {k: v for k, v in values.items() if isinstance(v, int)}
    try:
        enc = IkeEncryption(ints[IkeAttr.ENCRYPTION_ALGORITHM])
        hash_alg = IkeHash(ints[IkeAttr.HASH_ALGORITHM])
        auth = AuthMethod(ints[IkeAttr.AUTHENTICATION_METHOD])
        group = GroupId(ints[IkeAttr.GROUP_DESCRIPTION])
    except (KeyError, ValueError):
        return None
    bits = _ike_key_bits(enc, ints.get(IkeAttr.KEY_LENGTH))
    if bits is None or hash_alg not in HASHES:
        return None
    try:
        dh.group(group)
    except CryptoError:
        return None
    return IkeChoice(enc, bits, hash_alg, group, auth, life[0], life[1])


def select_ike(definition: Phase1Def, offer: SAPayload) -> tuple[Proposal, IkeChoice] | None:
    """Responder: the first offered transform the definition allows, echoed alone in its
    proposal, and its choice (lifetime as offered)."""
    allowed = {c.suite for c in ike_choices(definition)}
    for proposal in offer.proposals:
        if proposal.protocol_id != ProtocolId.ISAKMP:
            continue
        for transform in proposal.transforms:
            choice = parse_ike_transform(transform)
            if choice is not None and choice.suite in allowed:
                return Proposal(
                    proposal.number, proposal.protocol_id, proposal.spi, (transform,)
                ), choice
    return None


def check_ike_reply(offered: tuple[IkeChoice, ...], reply: SAPayload) -> IkeChoice | None:
    """Initiator: the responder's choice, only if it is exactly one we offered."""
    if len(reply.proposals) != 1:
        return None
    proposal = reply.proposals[0]
    if proposal.protocol_id != ProtocolId.ISAKMP or len(proposal.transforms) != 1:
        return None
    choice = parse_ike_transform(proposal.transforms[0])
    return choice if choice is not None and choice in offered else None


def ike_lifetime(definition: Phase1Def, choice: IkeChoice) -> int:
    """The lifetime we run an ISAKMP SA with: never longer than our definition allows."""
    ours = [p.lifetime_seconds for p in definition.proposals if p.lifetime_seconds]
    limit = max(ours) if ours else DEFAULT_LIFETIME
    return min(choice.lifetime_seconds, limit)


# ------------------------------------------------------------------------------ phase 2


@dataclass(frozen=True, slots=True)
class IpsecChoice:
    protocol: ProtocolId
    transform_id: int
    key_bits: int  # normalised (0 for AH)
    auth: AuthAlgorithm | None
    mode: int  # on the wire (EncapsulationMode number)
    group: GroupId | None
    lifetime_seconds: int
    lifetime_kilobytes: int = 0

    @property
    def suite(self) -> tuple[object, ...]:
        return (self.protocol, self.transform_id, self.key_bits, self.auth, self.mode, self.group)

    @property
    def base_mode(self) -> EncapsulationMode:
        return BASE_MODE[self.mode]

    def layout(self) -> KeymatLayout:
        if self.protocol == ProtocolId.IPSEC_AH:
            assert self.auth is not None
            return ah_layout(self.transform_id, self.auth)
        spec = ESP_CIPHERS[EspTransformId(self.transform_id)]
        bits = None if spec.default_key_bits is not None else self.key_bits
        return esp_layout(self.transform_id, bits, self.auth)

    def describe(self) -> str:
        auth = self.auth.name if self.auth is not None else "AEAD"
        pfs = f" PFS {self.group.name}" if self.group is not None else ""
        table = EspTransformId if self.protocol == ProtocolId.IPSEC_ESP else AhTransformId
        try:
            name = table(self.transform_id).name
        except ValueError:
            name = str(self.transform_id)
        proto = "ESP" if self.protocol == ProtocolId.IPSEC_ESP else "AH"
        return (
            f"{proto} {name}-{self.key_bits} {auth} "
            f"{BASE_MODE[self.mode].name}{pfs} {self.lifetime_seconds}s"
        )


def _esp_key_bits(transform_id: int, bits: int | None) -> int | None:
    try:
        spec = ESP_CIPHERS.get(EspTransformId(transform_id))
    except ValueError:
        return None
    if spec is None:
        return None
    if not bits:
        return spec.default_key_bits
    return bits if bits in spec.key_bits else None


def ipsec_choice_of(proposal: Phase2Proposal, mode: int) -> IpsecChoice | None:
    """A definition's proposal as a choice (None when we cannot key it)."""
    bits = 0
    if proposal.protocol == ProtocolId.IPSEC_ESP:
        found = _esp_key_bits(proposal.transform_id, proposal.key_bits)
        if found is None:
            return None
        bits = found
    choice = IpsecChoice(
        proposal.protocol,
        proposal.transform_id,
        bits,
        proposal.auth_alg,
        mode,
        proposal.pfs_group,
        proposal.lifetime_seconds or DEFAULT_LIFETIME,
        proposal.lifetime_kilobytes,
    )
    try:
        choice.layout()
        if choice.group is not None:
            dh.group(choice.group)
    except (CryptoError, KeyError, AssertionError):
        return None
    return choice


def ipsec_choices(definition: Phase2Def, mode: int) -> tuple[IpsecChoice, ...]:
    out = (ipsec_choice_of(p, mode) for p in definition.proposals)
    return tuple(c for c in out if c is not None)


def ipsec_transform(number: int, choice: IpsecChoice) -> Transform:
    values: dict[int, int | bytes] = {}
    if choice.group is not None:
        values[IpsecAttr.GROUP_DESCRIPTION] = int(choice.group)
    values[IpsecAttr.ENCAPSULATION_MODE] = int(choice.mode)
    if choice.auth is not None:
        values[IpsecAttr.AUTHENTICATION_ALGORITHM] = int(choice.auth)
    if choice.protocol == ProtocolId.IPSEC_ESP:
        spec = ESP_CIPHERS[EspTransformId(choice.transform_id)]
        if spec.default_key_bits is None:
            values[IpsecAttr.KEY_LENGTH] = choice.key_bits
    lifetimes = _lifetime_pairs(choice.lifetime_seconds, choice.lifetime_kilobytes)
    return Transform(number, choice.transform_id, ipsec_attributes(values, lifetimes))


def ipsec_sa_payload(choices: Iterable[IpsecChoice], spis: Mapping[ProtocolId, bytes]) -> SAPayload:
    """One proposal per protocol, one transform per choice, numbered in offer order."""
    proposals: list[Proposal] = []
    by_proto: dict[ProtocolId, list[Transform]] = {}
    for choice in choices:
        items = by_proto.setdefault(choice.protocol, [])
        items.append(ipsec_transform(len(items) + 1, choice))
    for number, (proto, transforms) in enumerate(by_proto.items(), start=1):
        proposals.append(Proposal(number, proto, spis[proto], tuple(transforms)))
    return SAPayload.ipsec(proposals)


def parse_ipsec_transform(protocol: ProtocolId, transform: Transform) -> IpsecChoice | None:
    if protocol not in (ProtocolId.IPSEC_ESP, ProtocolId.IPSEC_AH):
        return None
    try:
        values = ipsec_attributes_to_dict(transform.attributes)
        life = _lifetimes_of(ipsec_lifetimes(transform.attributes))
    except IsakmpError:
        return None
    if life is None or any(k not in _IPSEC_KNOWN for k in values):
        return None
    if any(not isinstance(v, int) for v in values.values()):
        return None
    ints: dict[int, int] = {k: v for k, v in values.items() if isinstance(v, int)}
    try:
        mode = ints.get(IpsecAttr.ENCAPSULATION_MODE, int(EncapsulationMode.TUNNEL))
        auth_raw = ints.get(IpsecAttr.AUTHENTICATION_ALGORITHM)
        auth = AuthAlgorithm(auth_raw) if auth_raw is not None else None
        group_raw = ints.get(IpsecAttr.GROUP_DESCRIPTION)
        group = GroupId(group_raw) if group_raw is not None else None
    except ValueError:
        return None
    if mode not in BASE_MODE:
        return None
    bits = 0
    if protocol == ProtocolId.IPSEC_ESP:
        found = _esp_key_bits(transform.transform_id, ints.get(IpsecAttr.KEY_LENGTH))
        if found is None:
            return None
        bits = found
    elif IpsecAttr.KEY_LENGTH in values:
        return None
    choice = IpsecChoice(
        protocol, transform.transform_id, bits, auth, mode, group, life[0], life[1]
    )
    try:
        choice.layout()
    except (CryptoError, KeyError, AssertionError):
        return None
    return choice


@dataclass(frozen=True, slots=True)
class Selected:
    proposal: Proposal  # echoed: the offered proposal with the chosen transform alone
    choice: IpsecChoice  # as offered (lifetimes included)
    lifetime_seconds: int  # what we run with (never above our definition)
    lifetime_kilobytes: int

    @property
    def shortened(self) -> bool:
        return (self.lifetime_seconds, self.lifetime_kilobytes) != (
            self.choice.lifetime_seconds,
            self.choice.lifetime_kilobytes,
        )


def _shorter(offered: int, ours: int) -> int:
    """A limit of 0 means none; the result is the tighter of both."""
    if not ours:
        return offered
    if not offered:
        return ours
    return min(offered, ours)


def select_ipsec(
    definition: Phase2Def, offer: SAPayload, accepted_modes: frozenset[int]
) -> Selected | None:
    """Responder: first offered transform the definition allows (single-protocol proposals
    only; AND-ed bundles are refused)."""
    ours: dict[tuple[object, ...], IpsecChoice] = {}
    for p in definition.proposals:
        for mode in accepted_modes:
            c = ipsec_choice_of(p, mode)
            if c is not None:
                ours.setdefault(c.suite, c)
    numbers = [p.number for p in offer.proposals]
    for proposal in offer.proposals:
        if numbers.count(proposal.number) != 1:
            continue
        for transform in proposal.transforms:
            choice = parse_ipsec_transform(proposal.protocol_id, transform)
            if choice is None:
                continue
            mine = ours.get(choice.suite)
            if mine is None:
                continue
            echoed = Proposal(proposal.number, proposal.protocol_id, proposal.spi, (transform,))
            return Selected(
                echoed,
                choice,
                _shorter(choice.lifetime_seconds, mine.lifetime_seconds),
                _shorter(choice.lifetime_kilobytes, mine.lifetime_kilobytes),
            )
    return None


def check_ipsec_reply(
    offered: tuple[IpsecChoice, ...], reply: SAPayload
) -> tuple[Proposal, IpsecChoice] | None:
    """Initiator: exactly one proposal with one transform, equal to one we offered."""
    if len(reply.proposals) != 1:
        return None
    proposal = reply.proposals[0]
    if len(proposal.transforms) != 1:
        return None
    choice = parse_ipsec_transform(proposal.protocol_id, proposal.transforms[0])
    if choice is None or choice not in offered:
        return None
    return proposal, choice


def with_lifetime(choice: IpsecChoice, seconds: int, kilobytes: int) -> IpsecChoice:
    return replace(choice, lifetime_seconds=seconds, lifetime_kilobytes=kilobytes)
