"""The message catalogue: every message between parent and child, and between CLI and parent.

This file is the contract between the daemon's parts. Each message names its direction in
its type number (high byte = `Direction`) and says who vets what. Structs hold only shape
rules (which optional parts go together, exact lengths); policy ("is this SA allowed for
this tunnel") is the parent's vetting, done on the decoded, already well-formed message.

Long-term secrets never appear here in the parent -> child direction: the child asks for
SKEYID (and, later, signatures) and receives only the derived value.

Do not add `from __future__ import annotations` to this module: the schema engine reads the
annotation objects themselves and never evaluates strings.
"""

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated

from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.schema import (
    Addr,
    Bytes,
    Charset,
    Direction,
    EnumOf,
    Fixed,
    IPAddress,
    IPNetwork,
    ListOf,
    Message,
    Nested,
    Net,
    Opt,
    Str,
    Struct,
    UInt,
    inconsistent,
    message,
    struct,
)
from ikepriv.isakmp.constants import (
    AhTransformId,
    AuthAlgorithm,
    AuthMethod,
    EncapsulationMode,
    EspTransformId,
    ExchangeType,
    GroupId,
    IdType,
    IkeEncryption,
    IkeHash,
    ProtocolId,
)

PROTOCOL_VERSION = 8
"""Bumped on any change to the catalogue; Hello/Ready and ControlHello carry it.
2: DpdSettings.action; Stats, StatsRequest and Response.counters (still 2: nothing with
version 2 was deployed before them).
3: Phase2Install and Phase2Remove (one request per phase 2) replace SaAdd, SaDelete,
PolicyAdd and PolicyDelete.
4: our phase 1 nonce comes from the parent (NonceRequest/NonceReply, SkeyidRequest.nonce_id,
SkeyidReply.nonce): SKEYID is never computed over an input the child fully chooses.
5: Stats.definitions and Response.definitions (DefinitionCounts: rekeys and DPD failures
per tunnel definition).
7: certificate authentication and IKE fragmentation: Phase1Def.send_cert, .fragmentation,
.fragment_size, ConfigCredential (the raw bytes of our
certificate chain, trust anchors and CRLs, parsed only by the child), ConfigEnd.credential_count,
SignatureRequest/SignatureReply (the parent computes HASH_I/HASH_R itself over our configured
identity and signs it), TunnelRow.peer_cert_subject/peer_cert_issuer; PeerFlooded (the
parent asks the child to initiate towards a peer whose first messages it had to drop).
Still 7 (nothing with 7 was deployed before it): paged listings, ListCommand.after/.rows/
.counters and LIST_PAGE (a listing of any number of tunnels, in pages the parent asks for
one at a time); Hello.shard/.shards (several negotiator children, each numbering its tunnels
and reqids in its own residue class).
8: Phase2Install.inbound_first and Phase2Commit: a Quick Mode responder installs its inbound
SA before it sends QM2 and commits the outbound half, which the parent vetted with it, at QM3."""

# Bounds (one place, so the vetting code and the tests can refer to them).
MAX_SHARDS = 64  # negotiator children of one daemon
MAX_DATAGRAM = 65535
MAX_KEY = 64
MIN_NONCE, MAX_NONCE = 8, 256
# Phase 1 nonces that go into prf(PSK, Ni_b | Nr_b). RFC 2409 allows 8 bytes; we refuse
# fewer than 16 (strongSwan and libreswan send 32), and ours, made by the parent, have 32.
MIN_PHASE1_NONCE = 16
PARENT_NONCE_BYTES = 32
MAX_PROPOSALS = 16
MAX_EXTRA_SUBNETS = 7  # per side of a phase 2 definition (8 subnets, config.model)
MAX_ROWS = 4096
# StateReports in one page of a listing (ListCommand): the parent asks for the next page
# when this one has arrived, never further ahead, so it holds at most two pages per
# listing, whatever the number of tunnels (see ListCommand)
LIST_PAGE = 512
MAX_TEXT = 255
MAX_LOG_TEXT = 1024
MAX_ID_DATA = 1024
MAX_SIGNATURE = 1024  # RSA-8192
MAX_CREDENTIAL = 60000  # one certificate/CA/CRL file as read from disk (PEM or DER)
MAX_CREDENTIALS = 16  # per kind per definition: chain certificates, trust anchors, CRLs
MAX_DH_PUBLIC = 1024  # g^x of MODP-8192
MAX_SA_BODY = 8192  # SAi_b, the initiator's SA payload body, as hashed
MAX_DN_TEXT = 1024  # a certificate subject or issuer in RFC 4514 form, for listings
MAX_LIST_ITEMS = 256
MIN_SKEYID = 16  # HMAC-MD5 output; shorter cannot be a real prf output
MIN_INBOUND_SPI = 256  # RFC 4303: SPIs 1..255 are reserved
MAX_COUNTERS = 64  # counters in one Stats (the core keeps fewer: see test_stats_*)
MAX_RESPONSE_COUNTERS = 2 * MAX_COUNTERS  # the child's and the parent's own
MAX_COUNTER_NAME = 48
# per-definition tallies in one Stats/Response: definitions with a rekey or DPD failure
# (the core drops the rest beyond this; 1024 entries of 22 bytes fit any message)
MAX_DEFINITION_COUNTS = 1024


def _check_version(version: int) -> None:
    if version != PROTOCOL_VERSION:
        raise IpcError(Reason.VERSION_MISMATCH, f"peer {version}, us {PROTOCOL_VERSION}")


def check_version(version: int) -> None:
    """Refuse a Hello/Ready/ControlHello from a peer of another catalogue version."""
    _check_version(version)


# ---------------------------------------------------------------------------------------
# Local enumerations (IANA numbers come from ikepriv.isakmp.constants, never from here)
# ---------------------------------------------------------------------------------------


class Phase(IntEnum):
    """Which tunnels a command or row is about; "1+" is phase 1 listed with its phase 2."""

    ALL = 0
    PHASE1 = 1
    PHASE2 = 2
    PHASE1_PLUS = 3


class Role(IntEnum):
    INITIATOR = 1
    RESPONDER = 2


class TunnelState(IntEnum):
    DEFINED = 0  # in the database, not active
    NEGOTIATING = 1
    ESTABLISHED = 2
    REKEYING = 3
    EXPIRED = 4
    DELETING = 5
    FAILED = 6
    UNMANAGED = 7  # in the kernel by the parent's records; no negotiation accounts for it


class SaDirection(IntEnum):
    IN = 1
    OUT = 2


class PolicyDirection(IntEnum):
    """Numbered like the kernel's XFRM_POLICY_IN/OUT/FWD."""

    IN = 0
    OUT = 1
    FWD = 2


class ErrorCode(IntEnum):
    """Outcome of a request, on both channels (0 = success)."""

    OK = 0
    NO_SUCH_TUNNEL = 1
    TUNNEL_INACTIVE = 2
    NOT_PERMITTED = 3  # vetting refused: outside the tunnel's definition
    BAD_ALGORITHM = 4
    BAD_LENGTH = 5
    NO_SECRET = 6
    LIMIT_REACHED = 7
    KERNEL_ERROR = 8
    UNSUPPORTED = 9
    VERSION_MISMATCH = 10
    INVALID_REQUEST = 11
    DB_ERROR = 12
    BUSY = 13
    INTERNAL = 14
    PARTIAL = 15  # some items of a numlist failed; the lines say which


class LogLevel(IntEnum):
    """syslog priorities."""

    EMERG = 0
    ALERT = 1
    CRIT = 2
    ERR = 3
    WARNING = 4
    NOTICE = 5
    INFO = 6
    DEBUG = 7


# ---------------------------------------------------------------------------------------
# Field aliases
# ---------------------------------------------------------------------------------------

RequestId = Annotated[int, UInt(4)]
DefNumber = Annotated[int, UInt(4, lo=1)]  # tunnel definition number in the database
TunnelId = Annotated[int, UInt(4, lo=1)]  # tunnel-manager number of an active tunnel
Version = Annotated[int, UInt(2)]
Generation = Annotated[int, UInt(4)]
Count = Annotated[int, UInt(4)]
Port = Annotated[int, UInt(2)]
IpProto = Annotated[int, UInt(1)]  # IP protocol number of a selector, 0 = any
Spi = Annotated[int, UInt(4)]
Seconds = Annotated[int, UInt(4)]
Kilobytes = Annotated[int, UInt(8)]
Counter = Annotated[int, UInt(8)]
KeyBits = Annotated[int, UInt(2, hi=512)]  # 0 = the algorithm's only/default length
Priority = Annotated[int, UInt(4)]
ReqId = Annotated[int, UInt(4)]
IpAddr = Annotated[IPAddress, Addr()]
OptAddr = Annotated[IPAddress | None, Opt(Addr())]
IpNet = Annotated[IPNetwork, Net()]
Name = Annotated[str, Str(MAX_TEXT, min_len=1, charset=Charset.NAME)]
Text = Annotated[str, Str(MAX_TEXT)]
Datagram = Annotated[bytes, Bytes(1, MAX_DATAGRAM)]
Nonce = Annotated[bytes, Bytes(MIN_NONCE, MAX_NONCE)]
PeerNonce = Annotated[bytes, Bytes(MIN_PHASE1_NONCE, MAX_NONCE)]
Error = Annotated[ErrorCode, EnumOf(ErrorCode)]
IpsecProto = Annotated[ProtocolId, EnumOf(ProtocolId, (ProtocolId.IPSEC_ESP, ProtocolId.IPSEC_AH))]
Mode = Annotated[
    EncapsulationMode,
    EnumOf(EncapsulationMode, (EncapsulationMode.TUNNEL, EncapsulationMode.TRANSPORT)),
]
Phase12 = Annotated[Phase, EnumOf(Phase, (Phase.PHASE1, Phase.PHASE2))]
OptRole = Annotated[Role | None, Opt(EnumOf(Role))]


def _same_family(what: str, *items: IPAddress | IPNetwork) -> None:
    if len({item.version for item in items}) > 1:
        raise inconsistent(f"{what}: mixed IPv4 and IPv6")


def _result_shape(error: ErrorCode, value_present: bool, what: str) -> None:
    """Replies carry a value exactly when they carry no error."""
    if (error is ErrorCode.OK) != value_present:
        raise inconsistent(f"{what} present only with error OK (error {error.name})")


# ---------------------------------------------------------------------------------------
# Shared structs
# ---------------------------------------------------------------------------------------


@struct
@dataclass(frozen=True, slots=True)
class Endpoint(Struct):
    addr: IpAddr
    port: Port


_ID_DATA_LENGTH = {
    IdType.IPV4_ADDR: 4,
    IdType.IPV6_ADDR: 16,
    IdType.IPV4_ADDR_SUBNET: 8,
    IdType.IPV6_ADDR_SUBNET: 32,
    IdType.IPV4_ADDR_RANGE: 8,
    IdType.IPV6_ADDR_RANGE: 32,
}


@struct
@dataclass(frozen=True, slots=True)
class Identity(Struct):
    """An ISAKMP identity as on the wire (RFC 2407 4.6.2): type and raw data."""

    id_type: Annotated[IdType, EnumOf(IdType)]
    data: Annotated[bytes, Bytes(1, MAX_ID_DATA)]

    def check(self) -> None:
        want = _ID_DATA_LENGTH.get(self.id_type)
        if want is not None and len(self.data) != want:
            raise inconsistent(f"{self.id_type.name} needs {want} bytes, got {len(self.data)}")


@struct
@dataclass(frozen=True, slots=True)
class SelectorSide(Struct):
    """One side of a traffic selector: network, IP protocol (0 any), port (0 any)."""

    network: IpNet
    protocol: IpProto
    port: Port


@struct
@dataclass(frozen=True, slots=True)
class TrafficSelector(Struct):
    src: SelectorSide
    dst: SelectorSide

    def check(self) -> None:
        _same_family("selector", self.src.network, self.dst.network)


@struct
@dataclass(frozen=True, slots=True)
class IkeProposal(Struct):
    """One phase 1 transform the tunnel accepts or offers."""

    encryption: Annotated[IkeEncryption, EnumOf(IkeEncryption)]
    key_bits: KeyBits
    hash: Annotated[IkeHash, EnumOf(IkeHash)]
    group: Annotated[GroupId, EnumOf(GroupId)]
    lifetime_seconds: Seconds


class DpdAction(IntEnum):
    """What the child does with a phase 1 whose peer stopped answering DPD (its SAs are
    removed in every case): HOLD keeps the kernel policies so traffic triggers an ACQUIRE
    and a new negotiation; RESTART also negotiates again at once."""

    CLEAR = 0
    HOLD = 1
    RESTART = 2


class SendCert(IntEnum):
    """When we send our certificate chain in CERT payloads (strongSwan's send_cert)."""

    NEVER = 0
    IF_ASKED = 1  # only after the peer sent a CR (strongSwan's default)
    ALWAYS = 2


class Fragmentation(IntEnum):
    """IKE fragmentation (the Cisco/Microsoft IKEv1 scheme; strongSwan's `fragmentation`)."""

    NO = 0  # neither announce nor accept fragments
    ACCEPT = 1  # announce the vendor ID and reassemble; never send fragments
    YES = 2  # as ACCEPT, and fragment our messages over fragment_size once the peer announced it
    FORCE = 3  # as YES, and fragment our first messages before knowing the peer supports it


class CredentialKind(IntEnum):
    """What a ConfigCredential carries; each is the file as read from disk."""

    OWN_CERT = 1  # our certificate file: end entity first, then intermediates (PEM or DER)
    TRUST_ANCHOR = 2  # one CA file of the definition's `ca` list
    CRL = 3  # one CRL file of the definition's `crl` list


@struct
@dataclass(frozen=True, slots=True)
class DpdSettings(Struct):
    """Dead peer detection (RFC 3706); delay 0 with enabled False means off."""

    enabled: bool
    delay_seconds: Annotated[int, UInt(2)]
    timeout_seconds: Annotated[int, UInt(2)]
    action: Annotated[DpdAction, EnumOf(DpdAction)] = DpdAction.CLEAR


@struct
@dataclass(frozen=True, slots=True)
class Phase1Def(Struct):
    """A phase 1 tunnel definition as the child needs it: everything but the secret."""

    number: DefNumber
    name: Name
    local_addr: IpAddr
    remote_addr: OptAddr  # None: any peer (responder only)
    local_id: Identity
    remote_id: Annotated[Identity | None, Opt(Nested(Identity))]  # None: any identity
    mode: Annotated[
        ExchangeType,
        EnumOf(ExchangeType, (ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE)),
    ]
    auth_method: Annotated[AuthMethod, EnumOf(AuthMethod)]
    proposals: Annotated[
        tuple[IkeProposal, ...], ListOf(Nested(IkeProposal), MAX_PROPOSALS, min_count=1)
    ]
    dpd: DpdSettings
    nat_t: bool
    encap: bool = False  # force UDP encapsulation (fake NAT-D)
    rekey: bool = True  # False: this side never starts a phase 1 rekey
    # seconds before expiry to start rekeying (the definition's rekey_margin); 0: the
    # negotiator's default
    rekey_margin: Seconds = 0
    send_cert: Annotated[SendCert, EnumOf(SendCert)] = SendCert.IF_ASKED  # signatures only
    fragmentation: Annotated[Fragmentation, EnumOf(Fragmentation)] = Fragmentation.YES
    # largest IKE datagram we send unfragmented once fragmentation is agreed (576..65535)
    fragment_size: Annotated[int, UInt(2, lo=576)] = 1280

    def check(self) -> None:
        if self.remote_addr is not None:
            _same_family("phase 1 addresses", self.local_addr, self.remote_addr)


_TRANSFORM_ENUM: dict[ProtocolId, type[IntEnum]] = {
    ProtocolId.IPSEC_ESP: EspTransformId,
    ProtocolId.IPSEC_AH: AhTransformId,
}


@struct
@dataclass(frozen=True, slots=True)
class Phase2Proposal(Struct):
    """One ESP or AH transform; transform_id is an EspTransformId or AhTransformId number."""

    protocol: IpsecProto
    transform_id: Annotated[int, UInt(1)]
    key_bits: KeyBits
    auth_alg: Annotated[AuthAlgorithm | None, Opt(EnumOf(AuthAlgorithm))]
    pfs_group: Annotated[GroupId | None, Opt(EnumOf(GroupId))]  # None: no PFS
    lifetime_seconds: Seconds
    lifetime_kilobytes: Annotated[int, UInt(4)]  # 0: no volume limit

    def check(self) -> None:
        table = _TRANSFORM_ENUM[self.protocol]
        if self.transform_id not in table._value2member_map_:
            raise inconsistent(f"{self.transform_id} is not a {table.__name__}")
        if self.protocol is ProtocolId.IPSEC_AH and self.auth_alg is None:
            raise inconsistent("AH needs an authentication algorithm")


@struct
@dataclass(frozen=True, slots=True)
class Phase2Def(Struct):
    number: DefNumber
    phase1_number: DefNumber
    name: Name
    local: SelectorSide
    remote: SelectorSide
    proposals: Annotated[
        tuple[Phase2Proposal, ...], ListOf(Nested(Phase2Proposal), MAX_PROPOSALS, min_count=1)
    ]
    mode: Mode
    rekey: bool = True  # False: this side never starts a phase 2 rekey
    rekey_margin: Seconds = 0  # as in Phase1Def
    # several subnets per side: the subnets after `local`/`remote`'s (same protocol and
    # ports); one Quick Mode per (local, remote) pair
    extra_local: Annotated[tuple[IPNetwork, ...], ListOf(Net(), MAX_EXTRA_SUBNETS)] = ()
    extra_remote: Annotated[tuple[IPNetwork, ...], ListOf(Net(), MAX_EXTRA_SUBNETS)] = ()

    def check(self) -> None:
        _same_family("phase 2 selectors", self.local.network, self.remote.network,
                     *self.extra_local, *self.extra_remote)  # fmt: skip

    @property
    def pairs(self) -> tuple[tuple[SelectorSide, SelectorSide], ...]:
        """Every (local, remote) selector pair of the definition, in order."""
        locals_ = (self.local, *(SelectorSide(n, self.local.protocol, self.local.port)
                                 for n in self.extra_local))  # fmt: skip
        remotes = (self.remote, *(SelectorSide(n, self.remote.protocol, self.remote.port)
                                  for n in self.extra_remote))  # fmt: skip
        return tuple((lo, re) for lo in locals_ for re in remotes)


_AEAD_SALT = {
    EspTransformId.AES_GCM_8: 4,
    EspTransformId.AES_GCM_12: 4,
    EspTransformId.AES_GCM_16: 4,
    EspTransformId.NULL_AUTH_AES_GMAC: 4,
    EspTransformId.AES_CCM_8: 3,
    EspTransformId.AES_CCM_12: 3,
    EspTransformId.AES_CCM_16: 3,
}
_AEAD_ICV_BITS = {
    EspTransformId.AES_GCM_8: 64,
    EspTransformId.AES_GCM_12: 96,
    EspTransformId.AES_GCM_16: 128,
    EspTransformId.NULL_AUTH_AES_GMAC: 128,
    EspTransformId.AES_CCM_8: 64,
    EspTransformId.AES_CCM_12: 96,
    EspTransformId.AES_CCM_16: 128,
}
_PLAIN_CIPHERS = tuple(t for t in EspTransformId if t not in _AEAD_SALT)


@struct
@dataclass(frozen=True, slots=True)
class CryptKey(Struct):
    """Non-AEAD ESP cipher: the key as XFRM takes it (AES-CTR: key | 4-byte nonce)."""

    transform: Annotated[EspTransformId, EnumOf(EspTransformId, _PLAIN_CIPHERS)]
    key: Annotated[bytes, Bytes(0, MAX_KEY)]


@struct
@dataclass(frozen=True, slots=True)
class AuthKey(Struct):
    algorithm: Annotated[AuthAlgorithm, EnumOf(AuthAlgorithm)]
    key: Annotated[bytes, Bytes(1, MAX_KEY)]


@struct
@dataclass(frozen=True, slots=True)
class AeadKey(Struct):
    """AEAD cipher; salt length (GCM 4, CCM 3) and ICV length follow from the transform."""

    transform: Annotated[EspTransformId, EnumOf(EspTransformId, tuple(_AEAD_SALT))]
    key: Annotated[bytes, Bytes(16, 32)]
    salt: Annotated[bytes, Bytes(3, 4)]

    def check(self) -> None:
        want = _AEAD_SALT[self.transform]
        if len(self.salt) != want:
            raise inconsistent(f"{self.transform.name} needs a {want}-byte salt")

    @property
    def icv_bits(self) -> int:
        return _AEAD_ICV_BITS[self.transform]


@struct
@dataclass(frozen=True, slots=True)
class Lifetimes(Struct):
    """Kernel SA limits; 0 means no limit. The parent checks them against the definition."""

    soft_seconds: Seconds
    hard_seconds: Seconds
    soft_kilobytes: Kilobytes
    hard_kilobytes: Kilobytes


@struct
@dataclass(frozen=True, slots=True)
class NatTEncap(Struct):
    """UDP encapsulation of ESP (RFC 3948) with these ports."""

    sport: Port
    dport: Port


@struct
@dataclass(frozen=True, slots=True)
class Phase2Sa(Struct):
    """One SA of a Phase2Install: its SPI, keys (which of them are present follows the
    install's protocol: see Phase2Install) and kernel lifetimes (soft limits are drawn for
    each SA, so the two rarely expire together)."""

    spi: Annotated[int, UInt(4, lo=MIN_INBOUND_SPI)]
    encryption: Annotated[CryptKey | None, Opt(Nested(CryptKey))]
    integrity: Annotated[AuthKey | None, Opt(Nested(AuthKey))]
    aead: Annotated[AeadKey | None, Opt(Nested(AeadKey))]
    lifetimes: Lifetimes

    def check_shape(self, proto: ProtocolId, what: str) -> None:
        if proto is ProtocolId.IPSEC_AH:
            if self.integrity is None or self.encryption is not None or self.aead is not None:
                raise inconsistent(f"{what}: AH carries integrity only")
            return
        if (self.encryption is None) == (self.aead is None):
            raise inconsistent(f"{what}: ESP needs exactly one of encryption and aead")
        if self.aead is not None and self.integrity is not None:
            raise inconsistent(f"{what}: AEAD needs no separate integrity")


@struct
@dataclass(frozen=True, slots=True)
class Phase2Policy(Struct):
    """One kernel policy of a Phase2Install. Its template is not sent: it is the install's
    (SA endpoints for this direction, protocol, mode, reqid), so it cannot differ."""

    direction: Annotated[PolicyDirection, EnumOf(PolicyDirection)]
    selector: TrafficSelector
    priority: Priority


MAX_PHASE2_POLICIES = 3  # out, in, fwd


@struct
@dataclass(frozen=True, slots=True)
class CounterValue(Struct):
    """One event counter of `ike cmd=list stats`: how often something happened (a datagram
    dropped as malformed, a retransmission, a refused request) since the process that keeps
    it started. Names are identifiers (NAME charset, no spaces), so they print as one word
    and are JSON keys as they are; which names exist is the parent's vetting (an allowlist)."""

    name: Annotated[str, Str(MAX_COUNTER_NAME, min_len=1, charset=Charset.NAME)]
    value: Counter


@struct
@dataclass(frozen=True, slots=True)
class DefinitionCounts(Struct):
    """Events of one tunnel definition since the negotiator started (or the definition
    appeared): rekeys we started for it (phase 1: replacement Main/Aggressive Modes;
    phase 2: replacement Quick Modes) and, for a phase 1 definition, peers declared dead
    by DPD. Which numbers may appear is the parent's vetting (its definitions, each once)."""

    phase: Phase12
    number: DefNumber
    rekeys: Counter
    dpd_failures: Counter  # DPD is phase 1's: 0 for a phase 2 definition

    def check(self) -> None:
        if self.phase is Phase.PHASE2 and self.dpd_failures:
            raise inconsistent("DPD failures belong to phase 1 definitions")


DefinitionCountList = Annotated[
    tuple[DefinitionCounts, ...], ListOf(Nested(DefinitionCounts), MAX_DEFINITION_COUNTS)
]


@struct
@dataclass(frozen=True, slots=True)
class NumRange(Struct):
    """Inclusive range of tunnel numbers, from a numlist such as 1-4,7."""

    first: Annotated[int, UInt(4, lo=1)]
    last: Annotated[int, UInt(4, lo=1)]

    def check(self) -> None:
        if self.first > self.last:
            raise inconsistent(f"range {self.first}-{self.last} is backwards")


NumList = Annotated[tuple[NumRange, ...], ListOf(Nested(NumRange), MAX_LIST_ITEMS)]


@struct
@dataclass(frozen=True, slots=True)
class TunnelRow(Struct):
    """One line of `ike cmd=list`: a database definition (tunnel_id None) or an active tunnel."""

    number: DefNumber
    tunnel_id: Annotated[int | None, Opt(UInt(4, lo=1))]
    phase: Phase12
    name: Name
    role: OptRole
    state: Annotated[TunnelState, EnumOf(TunnelState)]
    local_addr: OptAddr
    remote_addr: OptAddr
    local_id: Annotated[Identity | None, Opt(Nested(Identity))]
    remote_id: Annotated[Identity | None, Opt(Nested(Identity))]
    algorithms: Text
    remaining_seconds: Seconds
    spi_in: Spi
    spi_out: Spi
    bytes: Counter
    packets: Counter
    phase1_number: Annotated[int | None, Opt(UInt(4, lo=1))]  # for phase 2 rows and 1+ view
    # phase 2: what the tunnel carries, from this side (local = source of outbound
    # traffic): "198.51.100.0/28" or "198.51.100.0/28[tcp/80]"; a definition lists all
    # its subnets comma-separated; "" unknown or phase 1
    local_selector: Text = ""
    remote_selector: Text = ""
    # phase 1 with signature authentication: the peer's end-entity certificate (RFC 4514)
    peer_cert_subject: Annotated[str, Str(MAX_DN_TEXT)] = ""
    peer_cert_issuer: Annotated[str, Str(MAX_DN_TEXT)] = ""


# ---------------------------------------------------------------------------------------
# Parent -> child (0x01xx). The child trusts the parent; it still decodes strictly.
# ---------------------------------------------------------------------------------------

_P2C = Direction.PARENT_TO_CHILD


@message(0x0101, _P2C)
@dataclass(frozen=True, slots=True)
class Hello(Message):
    """First message on a fresh child: the catalogue version, and which of the parent's
    `shards` negotiator children this one is (0-based `shard`). The child answers Ready.

    The child's tunnel numbers and reqids are the numbers n with n % shards == shard + 1
    (mod shards): unique across the children without any coordination, and the parent
    refuses one outside the child's class (vetting), so a child cannot name another's."""

    version: Version
    shard: Annotated[int, UInt(1, hi=MAX_SHARDS - 1)] = 0
    shards: Annotated[int, UInt(1, lo=1, hi=MAX_SHARDS)] = 1

    def check(self) -> None:
        if self.shard >= self.shards:
            raise inconsistent(f"shard {self.shard} of {self.shards}")


@message(0x0102, _P2C)
@dataclass(frozen=True, slots=True)
class ConfigBegin(Message):
    """Starts a full configuration snapshot; it replaces the previous one at ConfigEnd."""

    generation: Generation


@message(0x0103, _P2C)
@dataclass(frozen=True, slots=True)
class ConfigPhase1(Message):
    """One phase 1 definition of the snapshot (no PSK, no private key)."""

    generation: Generation
    definition: Phase1Def


@message(0x0104, _P2C)
@dataclass(frozen=True, slots=True)
class ConfigPhase2(Message):
    """One phase 2 definition of the snapshot; its phase 1 came earlier in the snapshot."""

    generation: Generation
    definition: Phase2Def


@message(0x0106, _P2C)
@dataclass(frozen=True, slots=True)
class ConfigCredential(Message):
    """One certificate, CA or CRL file of a signature definition, as the parent read it.

    The parent does not parse it (certificates are the child's job, in the sandbox); it only
    reads root-owned files the operator named. Comes after the definition's ConfigPhase1;
    `index` orders the files of one kind (the chain file first).
    """

    generation: Generation
    phase1_number: DefNumber
    kind: Annotated[CredentialKind, EnumOf(CredentialKind)]
    index: Annotated[int, UInt(1, hi=MAX_CREDENTIALS - 1)]
    blob: Annotated[bytes, Bytes(1, MAX_CREDENTIAL)]


@message(0x0105, _P2C)
@dataclass(frozen=True, slots=True)
class ConfigEnd(Message):
    """Ends the snapshot; the counts let the child notice a lost or extra message."""

    generation: Generation
    phase1_count: Count
    phase2_count: Count
    credential_count: Count = 0


@message(0x0110, _P2C)
@dataclass(frozen=True, slots=True)
class DatagramIn(Message):
    """A UDP datagram for the child; natt: it came on 4500 and the non-ESP marker is gone."""

    local: Endpoint
    remote: Endpoint
    natt: bool
    data: Datagram

    def check(self) -> None:
        _same_family("endpoints", self.local.addr, self.remote.addr)


@message(0x0120, _P2C)
@dataclass(frozen=True, slots=True)
class InitiateCommand(Message):
    """Start phase 1 or 2 of definition `number`; the overrides come from `ike ipaddr=`."""

    phase: Phase12
    number: DefNumber
    local_override: OptAddr
    remote_override: OptAddr

    def check(self) -> None:
        given = [a for a in (self.local_override, self.remote_override) if a is not None]
        _same_family("override", *given)


@message(0x0121, _P2C)
@dataclass(frozen=True, slots=True)
class RemoveCommand(Message):
    """Delete active tunnel `tunnel_id` (sending Delete to the peer); phase 1 takes its 2s."""

    phase: Phase12
    tunnel_id: TunnelId


MAX_RESUMED_PAIRS = 8  # a phase 2 mid-rekey has two; more are left to their lifetime


@struct
@dataclass(frozen=True, slots=True)
class ResumedPair(Struct):
    """The SA pair of a phase 2 that a previous child installed, as the parent recorded
    it: tunnel number, protocol, inbound SPI (to local) and outbound SPI (to remote)."""

    tunnel_id: TunnelId
    proto: IpsecProto
    spi_in: Annotated[int, UInt(4, lo=MIN_INBOUND_SPI)]
    spi_out: Annotated[int, UInt(4, lo=MIN_INBOUND_SPI)]


@message(0x0128, _P2C)
@dataclass(frozen=True, slots=True)
class ResumeCommand(Message):
    """After a child restart: phase 2 `number` has SAs in the kernel from the previous child
    (the parent's records), with policies for `selector` (local -> remote) bound to `reqid`.
    Negotiate it afresh between these gateways and reuse `reqid`, so the policies stay as
    they are and the new SAs join the old ones (make before break; no secret crosses).
    `last_tunnel_id`: the highest tunnel number on record; the new child numbers its own
    tunnels above it, so the old SAs (listed as unmanaged until retired) keep a
    number that no new tunnel shares. `old`: that phase 2's SA pairs with this reqid from the
    parent's records (complete pairs only); once the new phase 2 is established, the child
    retires them as after a rekey (after the overlap: a Delete for its inbound SPI to the
    peer, and a Phase2Remove, which the parent vets against the same records)."""

    number: DefNumber
    reqid: ReqId
    selector: TrafficSelector
    local: IpAddr
    remote: IpAddr
    last_tunnel_id: TunnelId
    old: Annotated[tuple[ResumedPair, ...], ListOf(Nested(ResumedPair), MAX_RESUMED_PAIRS)] = ()

    def check(self) -> None:
        _same_family("gateways", self.local, self.remote)


@message(0x0122, _P2C)
@dataclass(frozen=True, slots=True)
class ListCommand(Message):
    """Ask for one page of StateReports and, with `counters`, one Stats (the core's
    counters), closed by StateReportEnd with the same request_id.

    A page holds the tunnels of `phase` (phase 1 and phase 2 share one tunnel-id space)
    whose tunnel id is above `after`, in ascending tunnel-id order, at most LIST_PAGE of
    them; a full page means there may be more, and the parent asks again with `after` set
    to the last id it got. Paging, rather than one answer of any length, is what bounds the
    parent's memory per listing: it asks for the next page when this one has arrived
    (the child makes it while the parent passes this one on to the CLI), so it holds two
    pages at most. `rows=False` asks for the counters alone (`ike cmd=list
    stats` needs no tunnel). The parent treats a report out of order, of another phase,
    beyond LIST_PAGE or asked for with rows=False as a protocol violation."""

    request_id: RequestId
    phase: Annotated[Phase, EnumOf(Phase)]
    after: Annotated[int, UInt(4)] = 0
    rows: bool = True
    counters: bool = True


@message(0x0130, _P2C)
@dataclass(frozen=True, slots=True)
class SkeyidReply(Message):
    """prf(PSK, Ni_b | Nr_b) for a SkeyidRequest, or why the parent refused it. For a
    responder's request (nonce_id 0) `nonce` is the Nr the parent made for it, which the
    child must send as its own; empty otherwise."""

    request_id: RequestId
    error: Error
    skeyid: Annotated[bytes, Bytes(0, MAX_KEY)]
    nonce: Annotated[bytes, Bytes(0, PARENT_NONCE_BYTES)]

    def check(self) -> None:
        _result_shape(self.error, bool(self.skeyid), "skeyid")
        if self.skeyid and len(self.skeyid) < MIN_SKEYID:
            raise inconsistent(f"skeyid of {len(self.skeyid)} bytes")
        if self.nonce and len(self.nonce) != PARENT_NONCE_BYTES:
            raise inconsistent(f"nonce of {len(self.nonce)} bytes")
        if self.nonce and self.error is not ErrorCode.OK:
            raise inconsistent("nonce present only with error OK")


@message(0x0131, _P2C)
@dataclass(frozen=True, slots=True)
class SignatureReply(Message):
    """The signature over the HASH_I/HASH_R the parent computed for a SignatureRequest (RSA:
    PKCS#1 v1.5 without DigestInfo; ECDSA: r | s, RFC 4754), or why it refused."""

    request_id: RequestId
    error: Error
    signature: Annotated[bytes, Bytes(0, MAX_SIGNATURE)]

    def check(self) -> None:
        _result_shape(self.error, bool(self.signature), "signature")


@message(0x0134, _P2C)
@dataclass(frozen=True, slots=True)
class NonceReply(Message):
    """A phase 1 initiator's Ni, made by the parent for a NonceRequest, and the id under which
    the parent keeps it for the one SkeyidRequest that may use it."""

    request_id: RequestId
    error: Error
    nonce_id: Annotated[int, UInt(4)]
    nonce: Annotated[bytes, Bytes(0, PARENT_NONCE_BYTES)]

    def check(self) -> None:
        _result_shape(self.error, bool(self.nonce), "nonce")
        if self.nonce and len(self.nonce) != PARENT_NONCE_BYTES:
            raise inconsistent(f"nonce of {len(self.nonce)} bytes")
        if (self.error is ErrorCode.OK) != (self.nonce_id != 0):
            raise inconsistent("nonce_id present only with error OK")


@message(0x0132, _P2C)
@dataclass(frozen=True, slots=True)
class SpiReply(Message):
    """An inbound SPI the kernel allocated for the tunnel, or an error (spi 0)."""

    request_id: RequestId
    error: Error
    spi: Spi

    def check(self) -> None:
        _result_shape(self.error, self.spi != 0, "spi")
        if self.spi and self.spi < MIN_INBOUND_SPI:
            raise inconsistent(f"reserved spi {self.spi}")


@message(0x0133, _P2C)
@dataclass(frozen=True, slots=True)
class ResultReply(Message):
    """Answer to Phase2Install, Phase2Commit and Phase2Remove: OK, or error and reason."""

    request_id: RequestId
    error: Error
    reason: Text


@message(0x0140, _P2C)
@dataclass(frozen=True, slots=True)
class KernelAcquire(Message):
    """The kernel wants an SA for this traffic (XFRM_MSG_ACQUIRE), mapped to a phase 2."""

    reqid: ReqId
    phase2_number: Annotated[int | None, Opt(UInt(4, lo=1))]  # None: no definition matched
    selector: TrafficSelector
    src: IpAddr
    dst: IpAddr

    def check(self) -> None:
        _same_family("acquire", self.src, self.dst)


@message(0x0141, _P2C)
@dataclass(frozen=True, slots=True)
class KernelExpire(Message):
    """An SA reached a lifetime (XFRM_MSG_EXPIRE): soft means rekey, hard means gone."""

    spi: Spi
    proto: IpsecProto
    dst: IpAddr
    hard: bool


@message(0x0142, _P2C)
@dataclass(frozen=True, slots=True)
class PeerFlooded(Message):
    """First messages from this configured peer's address overflow the parent's queue (a
    flood of forgeries carrying its address, which nothing in IKEv1 tells apart from its
    own first message). The child initiates phase 1 towards it for the definitions that
    may, unless one is established or negotiating: our own exchanges are answered as live
    traffic, never queued behind forgeries. The parent sends it at most once per
    PEER_FLOODED_INTERVAL per peer."""

    peer: IpAddr


@message(0x01F0, _P2C)
@dataclass(frozen=True, slots=True)
class Shutdown(Message):
    """Send Deletes for what can be deleted, then exit."""


# ---------------------------------------------------------------------------------------
# Child -> parent (0x02xx). Hostile until vetted: the parent decodes strictly, then checks
# each request against the database (see docs/architecture.md, "What the parent vets").
# ---------------------------------------------------------------------------------------

_C2P = Direction.CHILD_TO_PARENT


@message(0x0201, _C2P)
@dataclass(frozen=True, slots=True)
class Ready(Message):
    """The child is sandboxed and speaks this version. Parent: version must match."""

    version: Version


@message(0x0210, _C2P)
@dataclass(frozen=True, slots=True)
class DatagramOut(Message):
    """Send a datagram. Parent vets: local is one of its sockets; natt adds the marker."""

    local: Endpoint
    remote: Endpoint
    natt: bool
    data: Datagram

    def check(self) -> None:
        _same_family("endpoints", self.local.addr, self.remote.addr)


@message(0x0220, _C2P)
@dataclass(frozen=True, slots=True)
class SkeyidRequest(Message):
    """Ask for SKEYID = prf(PSK, Ni_b | Nr_b), where our own nonce is the parent's.

    Exactly one of phase1_number (initiator, aggressive responder) or peer (Main Mode
    responder, which knows only the address before the ID arrives encrypted). An initiator
    names the NonceReply whose Ni it sent (nonce_id; single use, same definition) and gives
    Nr; a responder gives Ni with nonce_id 0, and the parent makes Nr and returns it in the
    SkeyidReply. So the prf input always holds 32 fresh random bytes of the parent's at a
    fixed place, and the child chooses at most the other nonce (16..256 bytes). Parent vets:
    the tunnel exists and is active or matches, uses a PSK, and prf is its proposal's hash.
    """

    request_id: RequestId
    phase1_number: Annotated[int | None, Opt(UInt(4, lo=1))]
    peer: OptAddr
    prf: Annotated[IkeHash, EnumOf(IkeHash)]
    nonce_id: Annotated[int, UInt(4)]  # 0: responder, the parent makes Nr
    peer_nonce: PeerNonce

    def check(self) -> None:
        if (self.phase1_number is None) == (self.peer is None):
            raise inconsistent("exactly one of phase1_number and peer")
        if self.nonce_id and self.phase1_number is None:
            raise inconsistent("an initiator's nonce_id goes with phase1_number")


@message(0x0221, _C2P)
@dataclass(frozen=True, slots=True)
class SignatureRequest(Message):
    """Ask for our signature in a phase 1 with signature authentication.

    Not an oracle: the parent computes the hash itself, initiator
    HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b), responder
    HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b), with ID_b the
    definition's configured local identity (never the child's), and signs that. Parent vets:
    the definition exists and uses a signature method, `peer` is its peer (or it is %any) and
    has sent us a datagram recently, prf is one of its proposals' hashes, the public values
    have the length of one of its groups, and the definition's signature rate bucket has room.
    """

    request_id: RequestId
    phase1_number: DefNumber
    peer: IpAddr
    prf: Annotated[IkeHash, EnumOf(IkeHash)]
    initiator: bool  # True: HASH_I (we initiated this phase 1); False: HASH_R
    skeyid: Annotated[bytes, Bytes(MIN_SKEYID, MAX_KEY)]
    g_xi: Annotated[bytes, Bytes(1, MAX_DH_PUBLIC)]
    g_xr: Annotated[bytes, Bytes(1, MAX_DH_PUBLIC)]
    icookie: Annotated[bytes, Fixed(8)]
    rcookie: Annotated[bytes, Fixed(8)]
    sa_i_body: Annotated[bytes, Bytes(1, MAX_SA_BODY)]


@message(0x0223, _C2P)
@dataclass(frozen=True, slots=True)
class NonceRequest(Message):
    """A phase 1 initiator asks the parent for its Ni (answered by NonceReply). Parent vets:
    the definition exists; it keeps the nonce for one SkeyidRequest, for a short time."""

    request_id: RequestId
    phase1_number: DefNumber


@message(0x0222, _C2P)
@dataclass(frozen=True, slots=True)
class SpiRequest(Message):
    """Allocate an inbound SPI. Parent vets: phase 2 exists, src/dst are its gateways."""

    request_id: RequestId
    phase2_number: DefNumber
    proto: IpsecProto
    src: IpAddr
    dst: IpAddr

    def check(self) -> None:
        _same_family("spi", self.src, self.dst)


@message(0x0230, _C2P)
@dataclass(frozen=True, slots=True)
class Phase2Install(Message):
    """Install one negotiated phase 2: both SAs and its policies, all or nothing; one
    ResultReply answers it.

    The inbound SA (src remote, dst local) fills the SPI the parent allocated for this
    phase 2 (SpiRequest); the outbound SA (src local, dst remote) carries the peer's SPI.
    Both share protocol, mode, reqid and selector (`selector` is local -> remote:
    the outbound SA's; the inbound SA gets it turned around). `encap` is the UDP
    encapsulation as on outbound packets (sport ours, dport the peer's); the inbound SA gets
    the ports turned around. Policies: out (selector as is), in, and in tunnel mode fwd
    (turned around), each once; templates follow from the install.

    Parent vets everything, as a whole: tunnel, gateways, algorithms and key lengths,
    lifetimes, NAT-T ports, that the inbound SPI is one it allocated for this phase 2,
    selectors inside the definition and equal between SAs and policies, reqid, priority,
    counts. Any refusal refuses the whole install; nothing reaches the kernel then.

    `inbound_first` (a Quick Mode responder, before it sends QM2): vetted exactly as a
    whole install, but the parent writes only the in and fwd policies and the inbound SA,
    and keeps the vetted outbound SA and out policy pending, per child and tunnel, counted
    against the child's SA and policy caps. A Phase2Commit naming the same tunnel, phase 2,
    gateways, protocol and inbound SPI (sent when QM3 arrives) writes exactly that pending
    part; a Phase2Remove of the tunnel's SA pair removes the half and forgets the pending
    part. The peer may send on its new outbound SA as soon as it has QM2 (it installs before
    it sends QM3): our inbound SA must be in the kernel by then, or those packets meet a
    larval SA and are dropped.

    Shape: ESP SAs have encryption or aead (not both) and integrity only without aead;
    AH integrity only; encap only with ESP.
    """

    request_id: RequestId
    phase1_number: DefNumber
    phase2_number: DefNumber
    tunnel_id: TunnelId
    local: IpAddr
    remote: IpAddr
    proto: IpsecProto
    mode: Mode
    reqid: ReqId
    inbound: Phase2Sa
    outbound: Phase2Sa
    encap: Annotated[NatTEncap | None, Opt(Nested(NatTEncap))]
    selector: TrafficSelector
    policies: Annotated[
        tuple[Phase2Policy, ...],
        ListOf(Nested(Phase2Policy), MAX_PHASE2_POLICIES, min_count=2),
    ]
    inbound_first: bool = False

    def check(self) -> None:
        _same_family("phase 2", self.local, self.remote)
        self.inbound.check_shape(self.proto, "inbound")
        self.outbound.check_shape(self.proto, "outbound")
        if self.proto is ProtocolId.IPSEC_AH and self.encap is not None:
            raise inconsistent("AH cannot be UDP-encapsulated")
        directions = [p.direction for p in self.policies]
        if len(set(directions)) != len(directions):
            raise inconsistent("a policy direction twice")
        want = {PolicyDirection.OUT, PolicyDirection.IN}
        if self.mode is EncapsulationMode.TUNNEL:
            want.add(PolicyDirection.FWD)
        if set(directions) != want:
            raise inconsistent(f"{self.mode.name.lower()} mode needs policies "
                               f"{sorted(d.name.lower() for d in want)}")  # fmt: skip


@message(0x0234, _C2P)
@dataclass(frozen=True, slots=True)
class Phase2Commit(Message):
    """Write the outbound half of an install sent with inbound_first (its outbound SA, then
    its out policy): what the parent vetted then, nothing the child names now. One
    ResultReply answers it; on a kernel error the parent undoes the whole install (the
    inbound SA goes back to the larval SPI it filled).

    Parent vets: a pending half install of this child for `tunnel_id`, whose phase 2,
    gateways, protocol and inbound SPI are these; the definition still there. A second
    commit, one after a Phase2Remove of the pair, or one for another child's tunnel finds
    none and is refused; nothing changes then.
    """

    request_id: RequestId
    phase2_number: DefNumber
    tunnel_id: TunnelId
    local: IpAddr
    remote: IpAddr
    proto: IpsecProto
    spi_in: Annotated[int, UInt(4, lo=MIN_INBOUND_SPI)]

    def check(self) -> None:
        _same_family("phase 2", self.local, self.remote)


@message(0x0231, _C2P)
@dataclass(frozen=True, slots=True)
class Phase2Remove(Message):
    """Remove one phase 2: the SA pair (inbound spi_in to local, outbound spi_out to
    remote) and, unless keep_policies (DPD "hold": traffic keeps triggering ACQUIRE), the
    policies of its reqid once no SA of that phase 2 uses them. One ResultReply answers it.

    Parent vets: each named SA is one it recorded for this phase 2 and tunnel (or one it
    already removed itself); it deletes only what it recorded.
    """

    request_id: RequestId
    phase2_number: DefNumber
    tunnel_id: TunnelId
    local: IpAddr
    remote: IpAddr
    proto: IpsecProto
    spi_in: Annotated[int, UInt(4, lo=MIN_INBOUND_SPI)]
    spi_out: Annotated[int, UInt(4, lo=MIN_INBOUND_SPI)]
    reqid: ReqId
    keep_policies: bool

    def check(self) -> None:
        _same_family("phase 2", self.local, self.remote)


@message(0x0240, _C2P)
@dataclass(frozen=True, slots=True)
class StateReport(Message):
    """One negotiated tunnel, answering ListCommand; the parent adds kernel counters."""

    request_id: RequestId
    phase: Phase12
    number: DefNumber
    tunnel_id: TunnelId
    phase1_tunnel_id: Annotated[int | None, Opt(UInt(4, lo=1))]  # phase 2: its phase 1
    role: Annotated[Role, EnumOf(Role)]
    state: Annotated[TunnelState, EnumOf(TunnelState)]
    local: Endpoint
    remote: Endpoint
    local_id: Annotated[Identity | None, Opt(Nested(Identity))]
    remote_id: Annotated[Identity | None, Opt(Nested(Identity))]
    algorithms: Text
    expires_at: Annotated[int, UInt(8)]  # unix time, 0 unknown
    spi_in: Spi  # 0 for phase 1
    spi_out: Spi
    # phase 1 with signature authentication: the peer's validated end-entity certificate
    # (RFC 4514), for TunnelRow.peer_cert_subject / peer_cert_issuer
    peer_cert_subject: Annotated[str, Str(MAX_DN_TEXT)] = ""
    peer_cert_issuer: Annotated[str, Str(MAX_DN_TEXT)] = ""


@message(0x0241, _C2P)
@dataclass(frozen=True, slots=True)
class StateReportEnd(Message):
    """Closes the answer to ListCommand; count lets the parent notice a lost report."""

    request_id: RequestId
    count: Count


@message(0x0242, _C2P)
@dataclass(frozen=True, slots=True)
class Stats(Message):
    """The negotiator's counters, in answer to ListCommand: after its StateReports, before
    the StateReportEnd that closes the answer (so one closing message is all the parent
    waits for). At most one per ListCommand.

    Parent vets: each name is one of the counters the core keeps
    (ikepriv.process_contract), none twice; each definitions entry names a definition the
    parent holds (or held before its last reload), none twice; anything else is a
    protocol violation. Values are the child's word; they are shown, never acted on."""

    request_id: RequestId
    counters: Annotated[tuple[CounterValue, ...], ListOf(Nested(CounterValue), MAX_COUNTERS)]
    definitions: DefinitionCountList = ()


@message(0x0250, _C2P)
@dataclass(frozen=True, slots=True)
class Log(Message):
    """A line for syslog. Printable text only (no forged line breaks); no emergencies."""

    level: Annotated[
        LogLevel,
        EnumOf(
            LogLevel,
            (LogLevel.ERR, LogLevel.WARNING, LogLevel.NOTICE, LogLevel.INFO, LogLevel.DEBUG),
        ),
    ]
    text: Annotated[str, Str(MAX_LOG_TEXT, min_len=1)]


@message(0x0251, _C2P)
@dataclass(frozen=True, slots=True)
class KeyLog(Message):
    """Phase 1 decryption key for Wireshark's IKEv1 table (initiator cookie, Ka).

    Debugging only: the parent writes it to the --keylog file when it runs with that option
    and otherwise refuses it (logged). Keys of the negotiation, never long-term secrets.
    """

    icookie: Annotated[bytes, Fixed(8)]
    key: Annotated[bytes, Bytes(1, MAX_KEY)]


# ---------------------------------------------------------------------------------------
# CLI -> parent (0x03xx): from uid 0 only (SO_PEERCRED), still decoded strictly.
# A session is ControlHello, Response, then one request and its Response(s).
# ---------------------------------------------------------------------------------------

_CLI = Direction.CLI_TO_DAEMON


@message(0x0301, _CLI)
@dataclass(frozen=True, slots=True)
class ControlHello(Message):
    """First message of a CLI session: the catalogue version. Answered by a Response."""

    version: Version


@message(0x0310, _CLI)
@dataclass(frozen=True, slots=True)
class ActivateRequest(Message):
    """`ike cmd=activate`; empty numlist and namelist mean every definition."""

    phase: Annotated[Phase, EnumOf(Phase, (Phase.ALL, Phase.PHASE1, Phase.PHASE2))]
    numlist: NumList
    namelist: Annotated[tuple[str, ...], ListOf(Str(MAX_TEXT, 1, Charset.NAME), MAX_LIST_ITEMS)]
    remid: Annotated[str | None, Opt(Str(MAX_TEXT, min_len=1))]
    src: OptAddr
    dst: OptAddr
    autostart: bool

    def check(self) -> None:
        if (self.src is None) != (self.dst is None):
            raise inconsistent("ipaddr needs both source and destination")
        if self.src is not None and self.dst is not None:
            _same_family("ipaddr", self.src, self.dst)


@message(0x0311, _CLI)
@dataclass(frozen=True, slots=True)
class ListRequest(Message):
    """`ike cmd=list`; db lists definitions, role filters active tunnels."""

    phase: Annotated[Phase, EnumOf(Phase)]
    numlist: NumList
    db: bool
    role: OptRole
    verbose: bool
    json: bool

    def check(self) -> None:
        if self.db and self.role is not None:
            raise inconsistent("db and role exclude each other")


@message(0x0312, _CLI)
@dataclass(frozen=True, slots=True)
class RemoveRequest(Message):
    """`ike cmd=remove`; db removes definitions instead of active tunnels."""

    phase: Annotated[Phase, EnumOf(Phase, (Phase.ALL, Phase.PHASE1, Phase.PHASE2))]
    numlist: NumList
    db: bool


@message(0x0313, _CLI)
@dataclass(frozen=True, slots=True)
class DbChanged(Message):
    """From ikedb: definitions changed; reload them and send the child a new snapshot."""


@message(0x0314, _CLI)
@dataclass(frozen=True, slots=True)
class StatsRequest(Message):
    """`ike cmd=list stats`: every counter of the negotiator and of the parent, answered
    in Response.counters; json only changes how `ike` prints them."""

    json: bool


# ---------------------------------------------------------------------------------------
# Parent -> CLI (0x04xx)
# ---------------------------------------------------------------------------------------


@message(0x0401, Direction.DAEMON_TO_CLI)
@dataclass(frozen=True, slots=True)
class Response(Message):
    """Status plus text lines and/or rows; more=True: further Responses follow
    (see ikepriv.ipc.control.split_response). counters: the daemon's event counters, for
    StatsRequest and a verbose ListRequest (the daemon sends them in a Response of their
    own, the last one); definitions: the negotiator's per-definition tallies, in that same
    last Response."""

    status: Error
    lines: Annotated[tuple[str, ...], ListOf(Str(MAX_TEXT), MAX_ROWS)]
    rows: Annotated[tuple[TunnelRow, ...], ListOf(Nested(TunnelRow), MAX_ROWS)]
    more: bool = False
    counters: Annotated[
        tuple[CounterValue, ...], ListOf(Nested(CounterValue), MAX_RESPONSE_COUNTERS)
    ] = ()
    definitions: DefinitionCountList = ()
