"""XFRM value types and their structural validation: what the parent asks the kernel for.

Frozen dataclasses with plain values (addresses, ints, algorithm names), built by the
parent's vetting from a child request and consumed by the client (client.py), which turns
them into netlink messages. `validate_sa` / `validate_policy` check structure only (key
lengths for the algorithm, SPI ranges, selector families); which algorithms a tunnel allows
is the vetting's business. Key material goes into the kernel and is never returned.
"""

from __future__ import annotations

import errno as errno_mod
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from typing import Final

from ikepriv.crypto.keymat import ESP_CIPHERS, INTEGRITY
from ikepriv.isakmp.constants import IpProtocol
from ikepriv.parent_kernel.kernel import xfrm_messages as xm
from ikepriv.parent_kernel.kernel.xfrm_messages import (
    XFRM_INF,
    Direction,
    PolicyAction,
    XfrmMode,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

AF_FOR_VERSION: Final = {4: socket.AF_INET, 6: socket.AF_INET6}
ALL_ALGOS: Final = 0xFFFFFFFF  # template aalgos/ealgos/calgos: any algorithm
IPSEC_PROTOCOLS: Final = frozenset({IpProtocol.ESP, IpProtocol.AH})
MIN_SPI: Final = 0x100  # RFC 4303 2.1: 1..255 are reserved
REPLAY_BITMAP_MAX: Final = 32  # the legacy replay state's bitmap; larger needs REPLAY_ESN_VAL


# --------------------------------------------------------------------------
# Errors

_HINTS: Final[dict[int, str]] = {
    errno_mod.EPROTONOSUPPORT: "the kernel has no support for this IPsec protocol "
    "(esp4/esp6/ah4/ah6 not built or not loaded)",
    errno_mod.ENOSYS: "the kernel does not know this algorithm",
    errno_mod.EEXIST: "an entry with this identity already exists",
    errno_mod.ESRCH: "no such SA",
    errno_mod.ENOENT: "no such entry",
    errno_mod.EPERM: "needs CAP_NET_ADMIN in this network namespace",
    errno_mod.EINVAL: "the kernel rejected the request as malformed",
}


class XfrmError(OSError):
    """A kernel refusal or an I/O failure of one XFRM operation."""

    def __init__(self, err: int, operation: str, detail: str = "") -> None:
        self.operation = operation
        self.detail = detail
        name = errno_mod.errorcode.get(err, str(err))
        text = f"{operation}: {os.strerror(err)} ({name})"
        hints = [h for h in (detail, _HINTS.get(err, "")) if h]
        if hints:
            text += ": " + "; ".join(hints)
        super().__init__(err, text)

    def __str__(self) -> str:
        return str(self.strerror)


# --------------------------------------------------------------------------
# Specs and records


@dataclass(frozen=True, slots=True)
class SelectorSpec:
    """Traffic selector of an SA or policy: subnets, upper-layer protocol and ports (0 = any).
    The client packs it into the C struct kernel.xfrm_messages.XfrmSelector."""

    src: IPNetwork
    dst: IPNetwork
    proto: int = 0
    sport: int = 0
    dport: int = 0

    def __post_init__(self) -> None:
        if self.src.version != self.dst.version:
            raise ValueError("selector: src and dst families differ")
        if not 0 <= self.proto <= 255:
            raise ValueError("selector: protocol out of range")
        for port in (self.sport, self.dport):
            if not 0 <= port <= 0xFFFF:
                raise ValueError("selector: port out of range")

    @property
    def family(self) -> int:
        return AF_FOR_VERSION[self.src.version]


@dataclass(frozen=True, slots=True)
class Encryption:
    """Cipher for ESP, by kernel name (e.g. 'cbc(aes)')."""

    name: str
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Integrity:
    """Integrity algorithm, by kernel name, and its ICV truncation in bits."""

    name: str
    key: bytes = field(repr=False)
    trunc_bits: int


@dataclass(frozen=True, slots=True)
class Aead:
    """Combined-mode cipher; key includes the salt (RFC 4106: 4 bytes)."""

    name: str
    key: bytes = field(repr=False)
    icv_bits: int


@dataclass(frozen=True, slots=True)
class Encap:
    """UDP encapsulation of ESP (RFC 3948), for NAT traversal."""

    sport: int
    dport: int
    type: int = xm.UDP_ENCAP_ESPINUDP
    original_address: IPAddress | None = None

    def __post_init__(self) -> None:
        for port in (self.sport, self.dport):
            if not 1 <= port <= 0xFFFF:
                raise ValueError("encap: port out of range")


@dataclass(frozen=True, slots=True)
class Lifetime:
    """SA limits; None means no limit.  Seconds count from SA installation."""

    soft_bytes: int | None = None
    hard_bytes: int | None = None
    soft_packets: int | None = None
    hard_packets: int | None = None
    soft_seconds: int | None = None
    hard_seconds: int | None = None

    def __post_init__(self) -> None:
        for value in (
            self.soft_bytes,
            self.hard_bytes,
            self.soft_packets,
            self.hard_packets,
            self.soft_seconds,
            self.hard_seconds,
        ):
            if value is not None and not 0 < value < XFRM_INF:
                raise ValueError("lifetime: limits must be positive")


@dataclass(frozen=True, slots=True)
class SaSpec:
    """One SA to install.  Validated structurally on construction."""

    src: IPAddress
    dst: IPAddress
    proto: IpProtocol
    spi: int
    mode: XfrmMode
    reqid: int
    encryption: Encryption | None = None
    integrity: Integrity | None = None
    aead: Aead | None = None
    encap: Encap | None = None
    lifetime: Lifetime = field(default_factory=Lifetime)
    replay_window: int = 32
    selector: SelectorSpec | None = None

    def __post_init__(self) -> None:
        validate_sa(self)

    @property
    def family(self) -> int:
        return AF_FOR_VERSION[self.dst.version]


@dataclass(frozen=True, slots=True)
class Template:
    """One transform a policy demands: tunnel endpoints for tunnel mode."""

    proto: IpProtocol = IpProtocol.ESP
    mode: XfrmMode = XfrmMode.TUNNEL
    reqid: int = 0
    src: IPAddress | None = None
    dst: IPAddress | None = None
    spi: int = 0
    optional: bool = False


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """One SPD entry."""

    selector: SelectorSpec
    direction: Direction
    action: PolicyAction = PolicyAction.ALLOW
    priority: int = 0
    templates: tuple[Template, ...] = ()

    def __post_init__(self) -> None:
        validate_policy(self)


@dataclass(frozen=True, slots=True)
class SaRecord:
    """An SA as the kernel reports it, without keys."""

    src: IPAddress
    dst: IPAddress
    proto: int
    spi: int
    mode: int
    reqid: int
    selector: SelectorSpec | None
    encryption: str | None
    integrity: str | None
    aead: str | None
    encap: Encap | None
    replay_window: int
    bytes: int
    packets: int
    add_time: int
    use_time: int
    replay_errors: int
    integrity_failures: int

    @property
    def larval(self) -> bool:
        """No algorithms yet: an SPI from ALLOCSPI (or a kernel ACQUIRE placeholder)."""
        return self.encryption is None and self.integrity is None and self.aead is None


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """A policy as the kernel reports it."""

    selector: SelectorSpec
    direction: Direction
    action: PolicyAction
    priority: int
    index: int
    templates: tuple[Template, ...]
    add_time: int
    use_time: int


@dataclass(frozen=True, slots=True)
class Acquire:
    """The kernel wants an SA: traffic matched `selector` under policy `policy_index`."""

    selector: SelectorSpec
    src: IPAddress
    dst: IPAddress
    proto: int
    seq: int
    policy_index: int
    policy_direction: Direction
    templates: tuple[Template, ...]


@dataclass(frozen=True, slots=True)
class Expire:
    """An SA reached its soft (rekey now) or hard (gone) limit."""

    src: IPAddress
    dst: IPAddress
    proto: int
    spi: int
    reqid: int
    hard: bool
    bytes: int
    packets: int


@dataclass(frozen=True, slots=True)
class PolicyExpire:
    """A policy reached its lifetime."""

    selector: SelectorSpec
    direction: Direction
    index: int
    hard: bool


@dataclass(frozen=True, slots=True)
class EventsLost:
    """The event socket overflowed (ENOBUFS): events were dropped, resynchronise."""


Event = Acquire | Expire | PolicyExpire | EventsLost


# --------------------------------------------------------------------------
# Structural validation.  Names and key sizes come from the project's one IPsec algorithm
# table (ikepriv.crypto.keymat); which algorithms a tunnel allows is vetted by the parent.


KeySizes = frozenset[int]
AeadSizes = tuple[frozenset[int], frozenset[int]]


def _cipher_tables() -> tuple[dict[str, KeySizes], dict[str, AeadSizes]]:
    plain: dict[str, set[int]] = {}
    aead: dict[str, tuple[set[int], set[int]]] = {}
    for spec in ESP_CIPHERS.values():
        key_bytes = {bits // 8 + spec.salt_bytes for bits in spec.key_bits}
        if spec.icv_bits is None:
            plain.setdefault(spec.xfrm_name, set()).update(key_bytes)
        else:
            keys, icvs = aead.setdefault(spec.xfrm_name, (set(), set()))
            keys.update(key_bytes)
            icvs.add(spec.icv_bits)
    return (
        {name: frozenset(sizes) for name, sizes in plain.items()},
        {name: (frozenset(k), frozenset(i)) for name, (k, i) in aead.items()},
    )


# cipher name -> key bytes; AEAD name -> (key bytes including salt, ICV bits)
ENCRYPTION_KEY_BYTES, AEAD_PARAMS = _cipher_tables()
# integrity name -> (key bytes, ICV truncation bits)
INTEGRITY_PARAMS: Final[dict[str, tuple[int, int]]] = {
    spec.xfrm_name: (spec.key_bytes, spec.truncation_bits) for spec in INTEGRITY.values()
}


def validate_sa(spec: SaSpec) -> None:
    """Reject what the kernel would reject, and what would be silently wrong."""
    if spec.src.version != spec.dst.version:
        raise ValueError("sa: src and dst families differ")
    if spec.proto not in IPSEC_PROTOCOLS:
        raise ValueError("sa: protocol must be ESP or AH")
    if not MIN_SPI <= spec.spi <= 0xFFFFFFFF:
        raise ValueError("sa: SPI out of range")
    if not 0 <= spec.reqid <= 0xFFFFFFFF:
        raise ValueError("sa: reqid out of range")
    if not 0 <= spec.replay_window <= xm.XFRMA_REPLAY_ESN_MAX * 8:
        raise ValueError("sa: replay window out of range")
    if spec.proto == IpProtocol.AH:
        if spec.encryption or spec.aead or spec.encap:
            raise ValueError("sa: AH takes only an integrity algorithm")
        if spec.integrity is None:
            raise ValueError("sa: AH needs an integrity algorithm")
    elif spec.aead is not None:
        if spec.encryption or spec.integrity:
            raise ValueError("sa: an AEAD cipher excludes separate encryption/integrity")
    elif spec.encryption is None:
        raise ValueError("sa: ESP needs an encryption or AEAD algorithm")
    elif spec.integrity is None:
        # confidentiality without integrity is open to active attacks (as keymat refuses it)
        raise ValueError("sa: ESP with a non-AEAD cipher needs an integrity algorithm")
    if spec.encryption is not None:
        sizes = ENCRYPTION_KEY_BYTES.get(spec.encryption.name)
        if sizes is None:
            raise ValueError(f"sa: unsupported cipher {spec.encryption.name!r}")
        if len(spec.encryption.key) not in sizes:
            raise ValueError(f"sa: wrong key length for {spec.encryption.name}")
    if spec.integrity is not None:
        params = INTEGRITY_PARAMS.get(spec.integrity.name)
        if params is None:
            raise ValueError(f"sa: unsupported integrity {spec.integrity.name!r}")
        if (len(spec.integrity.key), spec.integrity.trunc_bits) != params:
            raise ValueError(f"sa: wrong key or ICV length for {spec.integrity.name}")
    if spec.aead is not None:
        aead = AEAD_PARAMS.get(spec.aead.name)
        if aead is None:
            raise ValueError(f"sa: unsupported AEAD {spec.aead.name!r}")
        if len(spec.aead.key) not in aead[0] or spec.aead.icv_bits not in aead[1]:
            raise ValueError(f"sa: wrong key or ICV length for {spec.aead.name}")
    if (
        spec.selector is not None
        and spec.selector.src.version != spec.dst.version
        and spec.mode != XfrmMode.TUNNEL
    ):
        # tunnel mode carries either family inside (6-in-4, 4-in-6); transport mode cannot
        raise ValueError("sa: transport mode selector family differs from the SA's")
    if spec.mode == XfrmMode.TRANSPORT and spec.selector is None:
        raise ValueError("sa: transport mode needs a selector")


def validate_policy(spec: PolicySpec) -> None:
    if not 0 <= spec.priority <= 0xFFFFFFFF:
        raise ValueError("policy: priority out of range")
    if len(spec.templates) > xm.XFRM_MAX_DEPTH:
        raise ValueError("policy: too many templates")
    if spec.action == PolicyAction.BLOCK and spec.templates:
        raise ValueError("policy: a block policy takes no templates")
    for tmpl in spec.templates:
        if tmpl.proto not in IPSEC_PROTOCOLS:
            raise ValueError("policy: template protocol must be ESP or AH")
        if not 0 <= tmpl.reqid <= 0xFFFFFFFF:
            raise ValueError("policy: template reqid out of range")
        if tmpl.mode == XfrmMode.TUNNEL:
            if tmpl.src is None or tmpl.dst is None:
                raise ValueError("policy: a tunnel template needs both endpoints")
            if tmpl.src.version != tmpl.dst.version:
                raise ValueError("policy: tunnel endpoints' families differ")
