"""Tunnel definitions as frozen values: what the database stores and the daemon consumes.

Every rule a definition obeys lives here, in the constructors: a `Phase1Definition` or
`Phase2Definition` that exists is valid, whether the loader built it from a TOML file or the
store decoded it from a database row (which root may have edited by hand). A broken rule
raises `DefinitionError` naming the field. Rules between a phase 2 and its phase 1 are
`check_binding`. `number` is the stable database number (None until stored); the AIX-like
`numlist` of `ike` refers to it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Final

from ikepriv.config.errors import DefinitionError
from ikepriv.config.identity import Identity
from ikepriv.config.proposals import MAX_PROPOSALS, AhProposal, EspProposal, IkeProposal
from ikepriv.ipc.messages import MAX_CREDENTIAL, MAX_CREDENTIALS
from ikepriv.isakmp.constants import (
    SIGNATURE_METHODS,
    AuthMethod,
    EncapsulationMode,
    ExchangeType,
    GroupId,
    IpProtocol,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "BOUNDS",
    "MAX_CREDENTIAL_BYTES",
    "MAX_CREDENTIAL_FILES",
    "MAX_PATH",
    "MAX_PSK_BYTES",
    "NAME_PATTERN",
    "PORT_PROTOCOLS",
    "DefinitionError",
    "Definitions",
    "DpdAction",
    "Fragmentation",
    "IPAddress",
    "IPNetwork",
    "Identity",
    "Phase1Definition",
    "Phase2Definition",
    "SendCert",
    "check_binding",
]

NAME_PATTERN: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_PSK_BYTES: Final = 256
PORT_PROTOCOLS: Final = frozenset({IpProtocol.TCP, IpProtocol.UDP})
PHASE1_MODES: Final = frozenset({ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE})
AUTH_METHODS: Final = frozenset({AuthMethod.PRE_SHARED_KEY} | set(SIGNATURE_METHODS))
# Credential files (cert, key, ca, crl): each is read whole, by ikedb and by the parent, and
# the cert/ca/crl bytes travel to the child in one ConfigCredential each, so the IPC bounds
# are the definition's bounds.
MAX_CREDENTIAL_BYTES: Final = MAX_CREDENTIAL
MAX_CREDENTIAL_FILES: Final = MAX_CREDENTIALS  # per list (ca, crl)
MAX_PATH: Final = 4096  # PATH_MAX

# Inclusive (low, high) bounds; for kilobytes and DPD delay 0 also means "off".
BOUNDS: Final[dict[str, tuple[int, int]]] = {
    "phase1.lifetime": (60, 86400),
    "phase2.lifetime": (60, 86400),
    "phase2.lifetime_kb": (1024, 2**32 - 1),
    "dpd_delay": (5, 3600),
    "dpd_timeout": (10, 86400),
    "keying_tries": (0, 1000),
    "rekey_margin": (0, 86400),
    "fragment_size": (576, 65535),
    "port": (0, 65535),
    "protocol": (0, 255),
}


class SendCert(StrEnum):
    """When we send our certificate chain (strongSwan's `send_cert` names)."""

    ALWAYS = "always"
    IF_ASKED = "ifasked"  # only after the peer sent a certificate request
    NEVER = "never"


class Fragmentation(StrEnum):
    """IKE fragmentation (strongSwan's `fragmentation` names; see ipc Fragmentation)."""

    YES = "yes"
    ACCEPT = "accept"
    FORCE = "force"
    NO = "no"


class DpdAction(StrEnum):
    """What to do with a phase 1 (and its phase 2s) whose peer stopped answering DPD."""

    RESTART = "restart"  # delete and negotiate again at once
    HOLD = "hold"  # delete; renegotiate when traffic needs the tunnel (kernel ACQUIRE)
    CLEAR = "clear"  # delete and stay down


# --- field checks: each raises DefinitionError naming the field ----------------------------


def _int(name: str, value: object, bounds: str, zero_ok: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool):  # a bool is not an integer here
        raise DefinitionError(name, "must be an integer")
    low, high = BOUNDS[bounds]
    if not (low <= value <= high or (zero_ok and value == 0)):
        off = "0 or " if zero_ok else ""
        raise DefinitionError(name, f"{value} is out of range ({off}{low}..{high})")
    return value


def _bool(name: str, value: object) -> None:
    if type(value) is not bool:
        raise DefinitionError(name, "must be true or false")


def _name(name: str, value: object) -> None:
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise DefinitionError(name, f"{value!r} is not a valid name (1-64 of A-Z a-z 0-9 . _ -)")


def _member(name: str, value: object, allowed: Iterable[Enum]) -> None:
    if not any(value is member for member in allowed):  # enum members are singletons
        choices = ", ".join(sorted(str(a.name).lower() for a in allowed))
        raise DefinitionError(name, f"{value!r} is not one of: {choices}")


def _address(name: str, value: object) -> IPAddress:
    if not isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise DefinitionError(name, "must be an IP address")
    if value.is_unspecified or value.is_multicast:
        raise DefinitionError(
            name, f"{value} cannot be a gateway address (unspecified or multicast)"
        )
    return value


def _network(name: str, value: object) -> IPNetwork:
    if not isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        raise DefinitionError(name, "must be a subnet")
    return value


MAX_SUBNETS = 8  # per side
MAX_SUBNET_PAIRS = 16  # per phase 2 definition: one Quick Mode and SA pair each


def _subnet_list(name: str, first: IPNetwork, value: object) -> None:
    """The subnets after the first on one side: same IP version, no repeats, bounded."""
    if not isinstance(value, tuple):
        raise DefinitionError(name, "must be a tuple of subnets")
    if len(value) >= MAX_SUBNETS:
        raise DefinitionError(name, f"at most {MAX_SUBNETS} subnets per side")
    seen = {first}
    for net in value:
        _network(name, net)
        if net.version != first.version:
            raise DefinitionError(name, f"{net} is not the same IP version as {first}")
        if net in seen:
            raise DefinitionError(name, f"{net} appears twice")
        seen.add(net)


def _path(name: str, value: object) -> str:
    """A credential file name: absolute, because ikedb and the daemon run in different
    working directories, and free of NUL (which no file name holds)."""
    if not isinstance(value, str):
        raise DefinitionError(name, "must be a file path")
    if not value.startswith("/"):
        raise DefinitionError(name, f"{value!r} is not an absolute path")
    if "\0" in value or len(value.encode("utf-8", "surrogateescape")) > MAX_PATH:
        raise DefinitionError(name, "is not a valid file path")
    return value


def _paths(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, tuple):
        raise DefinitionError(name, "must be a tuple of file paths")
    if len(value) > MAX_CREDENTIAL_FILES:
        raise DefinitionError(name, f"at most {MAX_CREDENTIAL_FILES} files")
    for item in value:
        _path(name, item)
    if len(set(value)) != len(value):
        raise DefinitionError(name, "names a file twice")
    return value


def _identity(name: str, value: object) -> None:
    if not isinstance(value, Identity):
        raise DefinitionError(name, "must be an identity")


def _proposals(name: str, value: object, kind: type[object], what: str, empty_ok: bool) -> None:
    if not isinstance(value, tuple) or not all(isinstance(p, kind) for p in value):
        raise DefinitionError(name, f"must be a tuple of {kind.__name__}")
    if not value and not empty_ok:
        raise DefinitionError(name, f"no {what} proposals given")
    if len(value) > MAX_PROPOSALS:
        raise DefinitionError(
            name, f"{what} proposals expand to {len(value)} transforms; at most {MAX_PROPOSALS}"
        )
    if len(set(value)) != len(value):
        raise DefinitionError(name, f"{what} proposals repeat a transform")


# The negotiator deletes an SA it replaced `rekey_overlap` (10 s) after the successor is in
# the kernel, and starts a rekey again if it produced nothing within `rekey_retry` (20 s):
# both must fit between the start of the rekey and the old SA's hard expiry.
MIN_REKEY_MARGIN: Final = 30


def _margin(value: object, lifetime: int) -> None:
    margin = _int("rekey_margin", value, "rekey_margin")
    if margin < MIN_REKEY_MARGIN:
        raise DefinitionError(
            "rekey_margin",
            f"{margin} is too short: at least {MIN_REKEY_MARGIN} s (a retry of the rekey and "
            "the overlap of old and new SA must fit before the old SA expires)",
        )
    if 2 * margin > lifetime:
        raise DefinitionError(
            "rekey_margin",
            f"{margin} must be at most half of lifetime ({lifetime}), else the SA is "
            "replaced as soon as it is set up",
        )


def _checked(checks: Callable[[], None]) -> None:
    """Run `checks`; a stray TypeError or ValueError still names no field but is refused."""
    try:
        checks()
    except DefinitionError:
        raise
    except (TypeError, ValueError) as exc:
        raise DefinitionError(None, str(exc)) from None


# --- the definitions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase1Definition:
    """An ISAKMP SA (phase 1) definition.

    `remote_addr` None means "%any": a responder-only definition that accepts any peer
    address (with a PSK only in Aggressive Mode, where the PSK is chosen by the peer's ID;
    with signatures in either mode, since the peer proves its ID with its certificate).
    `psk` is the pre-shared key; repr hides it so it never lands in a log line.

    Signature authentication (`auth` one of SIGNATURE_METHODS: the exact method, ECDSA by
    our key's curve) names files, never their contents: `cert` (our end entity, then its
    intermediates), `key` (our private key, read only by the root parent), `ca` (trust
    anchors, at least one) and `crl`. The files are checked when `ikedb -p` stores the
    definition and read again whenever the daemon loads it.
    """

    name: str
    local_addr: IPAddress
    remote_addr: IPAddress | None
    local_id: Identity
    remote_id: Identity
    mode: ExchangeType  # IDENTITY_PROTECTION (Main Mode) or AGGRESSIVE
    auth: AuthMethod
    psk: bytes | None = field(repr=False)
    proposals: tuple[IkeProposal, ...]
    lifetime: int  # seconds
    rekey_margin: int  # seconds before expiry to start rekeying
    keying_tries: int  # attempts before giving up (0 = forever)
    dpd_delay: int  # seconds between R-U-THERE probes when idle; 0 = DPD off
    dpd_timeout: int  # seconds without an answer before the peer is declared dead
    dpd_action: DpdAction
    nat_traversal: bool
    autostart: bool
    number: int | None = None
    encap: bool = False  # force UDP encapsulation: fake NAT-D so both sides float to 4500
    rekey: bool = True  # False: never rekey from our side; the SA lives to its hard lifetime
    cert: str | None = None  # signatures: our certificate file (end entity first)
    key: str | None = None  # signatures: our private key file (root only)
    ca: tuple[str, ...] = ()  # signatures: trust anchor files (at least one)
    crl: tuple[str, ...] = ()  # signatures: CRL files
    send_cert: SendCert = SendCert.IF_ASKED
    fragmentation: Fragmentation = Fragmentation.YES
    fragment_size: int = 1280  # largest IKE datagram sent whole once fragmentation is agreed

    def __post_init__(self) -> None:
        _checked(self._check)

    @property
    def uses_signatures(self) -> bool:
        return self.auth in SIGNATURE_METHODS

    def _check(self) -> None:
        """The loader's rules, in the order it reports them."""
        _name("name", self.name)
        local = _address("local_addr", self.local_addr)
        remote = None if self.remote_addr is None else _address("remote_addr", self.remote_addr)
        _identity("local_id", self.local_id)
        _identity("remote_id", self.remote_id)
        _member("mode", self.mode, PHASE1_MODES)
        _member("auth", self.auth, AUTH_METHODS)
        if self.psk is not None:
            if not isinstance(self.psk, bytes):
                raise DefinitionError("psk", "must be bytes")
            if not self.psk:
                raise DefinitionError("psk", "must not be empty")
            if len(self.psk) > MAX_PSK_BYTES:
                raise DefinitionError("psk", f"longer than {MAX_PSK_BYTES} bytes")
        cert = None if self.cert is None else _path("cert", self.cert)
        key = None if self.key is None else _path("key", self.key)
        ca = _paths("ca", self.ca)
        crl = _paths("crl", self.crl)
        _member("send_cert", self.send_cert, tuple(SendCert))
        _member("fragmentation", self.fragmentation, tuple(Fragmentation))
        _int("fragment_size", self.fragment_size, "fragment_size")
        _proposals("proposals", self.proposals, IkeProposal, "IKE", empty_ok=False)
        lifetime = _int("lifetime", self.lifetime, "phase1.lifetime")
        _int("keying_tries", self.keying_tries, "keying_tries")
        dpd_delay = _int("dpd_delay", self.dpd_delay, "dpd_delay", zero_ok=True)
        dpd_timeout = _int("dpd_timeout", self.dpd_timeout, "dpd_timeout")
        _member("dpd_action", self.dpd_action, tuple(DpdAction))
        _bool("nat_traversal", self.nat_traversal)
        _bool("autostart", self.autostart)
        _bool("encap", self.encap)
        _bool("rekey", self.rekey)
        if self.number is not None and (type(self.number) is not int or self.number < 1):
            raise DefinitionError("number", f"{self.number!r} is not a definition number")
        # rules between fields
        _margin(self.rekey_margin, lifetime)
        if self.encap and not self.nat_traversal:
            raise DefinitionError("encap", "needs nat_traversal = true (it fakes a NAT)")
        if remote is not None and remote.version != local.version:
            raise DefinitionError(
                "remote_addr", "local_addr and remote_addr must be the same IP version"
            )
        if remote is not None and remote == local:
            raise DefinitionError("remote_addr", "equals local_addr")
        if self.uses_signatures:
            self._check_signature_fields(cert, key, ca)
        else:
            if self.psk is None:
                raise DefinitionError("psk", 'missing: auth = "psk" needs a key')
            for what, value in (("cert", cert), ("key", key), ("ca", ca), ("crl", crl)):
                if value:
                    raise DefinitionError(what, 'is only for signature authentication, not "psk"')
        if dpd_delay and dpd_timeout <= dpd_delay:
            raise DefinitionError(
                "dpd_timeout", f"{dpd_timeout} must be greater than dpd_delay ({dpd_delay})"
            )
        if remote is None:
            self._check_any_peer()

    def _check_signature_fields(
        self, cert: str | None, key: str | None, ca: tuple[str, ...]
    ) -> None:
        """Signatures need our certificate, our key and someone to trust; never a PSK (a
        definition with both would leave the operator unsure which one authenticates)."""
        if self.psk is not None:
            raise DefinitionError("psk", "must be absent with signature authentication")
        if cert is None:
            raise DefinitionError("cert", "missing: signature authentication needs our certificate")
        if key is None:
            raise DefinitionError("key", "missing: signature authentication needs our private key")
        if not ca:
            raise DefinitionError("ca", "missing: signature authentication needs at least one CA")

    def _check_any_peer(self) -> None:
        """%any: responder-only; with a PSK, Aggressive Mode (the PSK chosen by the peer's ID).

        In Main Mode the responder must pick the PSK before it sees the (encrypted) peer ID,
        so it can only go by the peer's address; with %any that would hand one key to
        everyone. A signature definition has no such shared secret: the peer proves its ID
        with a certificate from our CAs, so Main Mode is fine.
        """
        if self.mode is not ExchangeType.AGGRESSIVE and not self.uses_signatures:
            raise DefinitionError(
                "remote_addr",
                '%any with a PSK needs mode = "aggressive" (Main Mode PSK is chosen by the '
                "peer address)",
            )
        if self.autostart:
            raise DefinitionError(
                "autostart", "cannot be true with remote_addr = %any (no peer to contact)"
            )
        if self.dpd_action is DpdAction.RESTART:
            raise DefinitionError("dpd_action", "restart is impossible with remote_addr = %any")

    @property
    def accepts_any_peer(self) -> bool:
        return self.remote_addr is None


@dataclass(frozen=True)
class Phase2Definition:
    """An IPsec SA (phase 2) definition, bound to a phase 1 by name.

    Selectors: subnets (host bits zero), protocol (0 = any) and ports (0 = any; only with
    TCP or UDP). Exactly one of `esp_proposals` / `ah_proposals` is non-empty.
    """

    name: str
    phase1: str
    local_subnet: IPNetwork
    remote_subnet: IPNetwork
    protocol: int
    local_port: int
    remote_port: int
    esp_proposals: tuple[EspProposal, ...]
    ah_proposals: tuple[AhProposal, ...]
    mode: EncapsulationMode  # TUNNEL or TRANSPORT
    lifetime: int  # seconds
    lifetime_kb: int  # kilobytes; 0 = no volume limit
    rekey_margin: int
    autostart: bool
    number: int | None = None
    rekey: bool = True  # False: never rekey from our side; the SA lives to its hard lifetime
    # several subnets per side (the file's local_subnets/remote_subnets lists): the subnets
    # after the first; each (local, remote) pair gets its own Quick Mode, SAs and policies
    extra_local_subnets: tuple[IPNetwork, ...] = ()
    extra_remote_subnets: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        _checked(self._check)

    def _check(self) -> None:
        """The loader's rules, in the order it reports them."""
        _name("name", self.name)
        _name("phase1", self.phase1)
        local = _network("local_subnet", self.local_subnet)
        remote = _network("remote_subnet", self.remote_subnet)
        for key, first, extra in (
            ("extra_local_subnets", local, self.extra_local_subnets),
            ("extra_remote_subnets", remote, self.extra_remote_subnets),
        ):
            _subnet_list(key, first, extra)
        if len(self.local_subnets) * len(self.remote_subnets) > MAX_SUBNET_PAIRS:
            raise DefinitionError(
                "extra_remote_subnets", f"more than {MAX_SUBNET_PAIRS} subnet pairs"
            )
        protocol = _int("protocol", self.protocol, "protocol")
        _int("local_port", self.local_port, "port")
        _int("remote_port", self.remote_port, "port")
        _proposals("esp_proposals", self.esp_proposals, EspProposal, "ESP", empty_ok=True)
        _proposals("ah_proposals", self.ah_proposals, AhProposal, "AH", empty_ok=True)
        _member("mode", self.mode, tuple(EncapsulationMode))
        lifetime = _int("lifetime", self.lifetime, "phase2.lifetime")
        _int("lifetime_kb", self.lifetime_kb, "phase2.lifetime_kb", zero_ok=True)
        _bool("autostart", self.autostart)
        _bool("rekey", self.rekey)
        if self.number is not None and (type(self.number) is not int or self.number < 1):
            raise DefinitionError("number", f"{self.number!r} is not a definition number")
        # rules between fields
        if local.version != remote.version:
            raise DefinitionError(
                "remote_subnet", "local_subnet and remote_subnet must be the same IP version"
            )
        if protocol not in PORT_PROTOCOLS:
            for key, port in (("local_port", self.local_port), ("remote_port", self.remote_port)):
                if port:
                    raise DefinitionError(key, 'ports need protocol = "tcp" or "udp"')
        if bool(self.esp_proposals) == bool(self.ah_proposals):
            raise DefinitionError(
                "esp_proposals",
                "give either proposals (ESP) or ah_proposals (AH), not both: AH+ESP "
                "bundles are deprecated (RFC 8221 section 4) and neither strongSwan nor "
                "libreswan negotiates them",
            )
        groups = {p.group for p in self.esp_proposals} | {p.group for p in self.ah_proposals}
        groups.discard(None)
        if len(groups) > 1:
            raise DefinitionError(
                "ah_proposals" if self.ah_proposals else "esp_proposals",
                "proposals name different DH groups; Quick Mode carries one KE payload, "
                "so PFS uses one group for all proposals",
            )
        _margin(self.rekey_margin, lifetime)

    @property
    def local_subnets(self) -> tuple[IPNetwork, ...]:
        return (self.local_subnet, *self.extra_local_subnets)

    @property
    def remote_subnets(self) -> tuple[IPNetwork, ...]:
        return (self.remote_subnet, *self.extra_remote_subnets)

    @property
    def subnet_pairs(self) -> tuple[tuple[IPNetwork, IPNetwork], ...]:
        """Every (local, remote) pair, one Quick Mode each (libreswan's leftsubnets=)."""
        return tuple((lo, re) for lo in self.local_subnets for re in self.remote_subnets)

    @property
    def pfs_group(self) -> GroupId | None:
        """The DH group for Quick Mode PFS, or None.

        A Quick Mode exchange carries one KE payload, so every proposal that names a group
        names the same one (the constructor checks this) and the group applies to the
        exchange.
        """
        groups = [p.group for p in self.esp_proposals] + [p.group for p in self.ah_proposals]
        return next((g for g in groups if g is not None), None)

    @property
    def protocol_name(self) -> str:
        try:
            return IpProtocol(self.protocol).name.lower()
        except ValueError:
            return str(self.protocol)


def check_binding(p2: Phase2Definition, p1: Phase1Definition) -> None:
    """The rules between a phase 2 and the phase 1 it belongs to; DefinitionError if broken."""
    if p2.phase1 != p1.name:
        raise DefinitionError("phase1", f"names phase 1 '{p2.phase1}', not '{p1.name}'")
    if p2.mode is EncapsulationMode.TRANSPORT:
        for key, subnet, addr in (
            ("local_subnet", p2.local_subnet, p1.local_addr),
            ("remote_subnet", p2.remote_subnet, p1.remote_addr),
        ):
            if subnet.num_addresses != 1:
                raise DefinitionError(
                    key,
                    "transport mode protects the gateways themselves: "
                    "give a single address (/32 or /128)",
                )
            if addr is not None and subnet.network_address != addr:
                raise DefinitionError(key, f"transport mode needs the phase 1 address {addr}")
    if p2.autostart and p1.remote_addr is None:
        raise DefinitionError(
            "autostart", f"phase1 '{p1.name}' has remote_addr = %any: it cannot initiate"
        )


@dataclass(frozen=True)
class Definitions:
    """A set of definitions read from one file: written to the database as one unit."""

    phase1: tuple[Phase1Definition, ...] = ()
    phase2: tuple[Phase2Definition, ...] = ()
