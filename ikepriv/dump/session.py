"""Following IKEv1 exchanges through a capture: which ISAKMP SA a message belongs to, what
it carries, and (with keys) decryption and every authentication check.

`Dumper.feed(datagram)` returns a `Record` per ISAKMP message and never raises for any
input bytes: every fault becomes a `CaptureProblem` (frame, optional offset, reason) on the record.
Roles inside an exchange follow the order of distinct messages (the first SA payload of a
phase 1 is the initiator's, the first KE/nonce the initiator's, and so on; Quick Mode
message 1, 2, 3 in order of appearance), so no guess about addresses is needed. A datagram
identical to one already seen for the same SA is a retransmission: it is shown, but kept
out of the IV chain and the checks.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TypeVar

from ikepriv.crypto.ciphers import IkeCipher, key_length_bytes
from ikepriv.crypto.crypto_errors import CryptoError
from ikepriv.crypto.groups import GROUPS, EcpGroup
from ikepriv.crypto.keymat import KeymatLayout, ah_layout, derive_sa_keys, esp_layout
from ikepriv.crypto.oakley import (
    IvChain,
    Phase1Keys,
    derive_phase1_keys,
    fixed_length_secret,
    skeyid_psk,
    skeyid_signature,
)
from ikepriv.crypto.prf import digests_equal, nat_d_hash
from ikepriv.crypto.protected import Decrypted, payload_offsets
from ikepriv.crypto.signatures import auth_prf
from ikepriv.dump.capture import Datagram, IPAddress
from ikepriv.dump.decrypt import (
    Phase1Inputs,
    SaCrypto,
    VerificationError,
    phase1_auth_hash,
    phase1_hash,
    verify_hash_i,
    verify_hash_r,
    verify_informational,
    verify_qm_hash1,
    verify_qm_hash2,
    verify_qm_hash3,
)
from ikepriv.dump.keys import KeyMaterial
from ikepriv.dump.signed import SignatureReport, Signed, Trust, check_signed
from ikepriv.isakmp.attributes import ike_attributes_to_dict, ipsec_attributes_to_dict
from ikepriv.isakmp.constants import (
    HEADER_LENGTH,
    SIGNATURE_METHODS,
    AuthMethod,
    ExchangeType,
    GroupId,
    IkeAttr,
    IkeEncryption,
    IkeHash,
    IpsecAttr,
    ProtocolId,
)
from ikepriv.isakmp.header import Header
from ikepriv.isakmp.id_payload import IdPayload
from ikepriv.isakmp.isakmp_error import IsakmpError
from ikepriv.isakmp.message import Message, Payload, decode_message
from ikepriv.isakmp.names import number_name
from ikepriv.isakmp.payloads import (
    HashPayload,
    KePayload,
    NatDPayload,
    NoncePayload,
    SigPayload,
    UnknownPayload,
)
from ikepriv.isakmp.sa import Proposal, SAPayload

_T = TypeVar("_T")
_P = TypeVar("_P", bound=Payload)

MAX_SAS = 1024  # ISAKMP SAs tracked at once (oldest dropped): bounds memory on huge captures
MAX_SEEN = 256  # distinct messages remembered per SA for retransmission detection
MAX_PHASE2 = 256  # phase 2 exchanges remembered per SA (oldest dropped)
IKEV2_MAJOR = 2
_PHASE1 = frozenset({ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE})
_HASHED_INFO = frozenset({ExchangeType.INFORMATIONAL, ExchangeType.TRANSACTION})
_PSK_METHODS = frozenset(
    {AuthMethod.PRE_SHARED_KEY, AuthMethod.XAUTH_INIT_PRE_SHARED, AuthMethod.XAUTH_RESP_PRE_SHARED}
)
_LAYOUTS = {ProtocolId.IPSEC_ESP: "ESP", ProtocolId.IPSEC_AH: "AH"}
PRIVATE_PAYLOAD_TYPES = range(128, 256)  # RFC 2408 3.1: private use


@dataclass(frozen=True, slots=True)
class CaptureProblem:
    """Why a message failed to parse, decrypt or verify. `offset` counts from the first
    byte of the ISAKMP header (decrypted bodies keep their place: the header is 28 bytes)."""

    frame: int
    reason: str
    offset: int | None = None

    def __str__(self) -> str:
        where = (
            f"frame {self.frame}"
            if self.offset is None
            else (f"frame {self.frame} offset {self.offset}")
        )
        return f"{where}: {self.reason}"


@dataclass(frozen=True, slots=True)
class SaKeyLine:
    """Keys of one IPsec SA derived from a Quick Mode, for printing."""

    protocol: str
    spi: bytes
    src: IPAddress
    dst: IPAddress
    cipher: str | None
    enc_key: bytes
    integrity: str | None
    integ_key: bytes


@dataclass(slots=True)
class Record:
    datagram: Datagram
    header: Header | None = None
    payloads: tuple[Payload, ...] = ()
    ciphertext_length: int = 0  # nonzero: the message was encrypted
    decrypted: bool = False
    padding: int = 0
    retransmission_of: int | None = None
    ikev2: bool = False
    checks: list[str] = field(default_factory=list)
    phase1_keys: dict[str, bytes] = field(default_factory=dict)
    sa_keys: list[SaKeyLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[CaptureProblem] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)  # of each payload, from the header
    signature: SignatureReport | None = None  # the checks of its SIG payload

    def fail(self, reason: str, offset: int | None = None) -> None:
        self.problems.append(CaptureProblem(self.datagram.frame, reason, offset))

    def show(self, payloads: tuple[Payload, ...], body: bytes) -> None:
        """Take the payloads decoded from `body` (what follows the 28-byte header, in the
        clear or decrypted) and where each one starts, for problem offsets."""
        self.payloads = payloads
        self.offsets = payload_offsets(body, len(payloads), HEADER_LENGTH)


def isakmp_reason(exc: IsakmpError) -> str:
    """The notify name as operators read it (PAYLOAD-MALFORMED) and the reason."""
    return f"{exc.notify.name.replace('_', '-')}: {exc.reason}"


@dataclass(slots=True)
class _Phase2:
    """One Quick Mode (or other phase 2) exchange, by message ID."""

    initiator: IPAddress
    responder: IPAddress
    count: int = 0
    ni_b: bytes | None = None
    nr_b: bytes | None = None
    sa_i: SAPayload | None = None
    sa_r: SAPayload | None = None
    pfs: list[int] = field(default_factory=list)  # KE payload lengths seen


@dataclass(slots=True)
class _IkeSa:
    icookie: bytes
    rcookie: bytes
    seen: OrderedDict[bytes, Record] = field(default_factory=OrderedDict)
    sa_i: SAPayload | None = None
    sa_r: SAPayload | None = None
    g_xi: bytes | None = None
    g_xr: bytes | None = None
    ni_b: bytes | None = None
    nr_b: bytes | None = None
    idii: IdPayload | None = None
    idir: IdPayload | None = None
    method: int | None = None  # the chosen authentication method
    encrypted_phase1: int = 0
    crypto: SaCrypto | None = None
    inputs: Phase1Inputs | None = None
    setup_problem: str | None = None
    phase2: dict[int, _Phase2] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.icookie.hex()


def check_payload_types(record: Record) -> None:
    """The codec carries payloads of unknown type so the chain can be shown; a type that
    RFC 2408 leaves reserved is still an error (INVALID-PAYLOAD-TYPE, 5.1), while a
    private-use type (128-255) is a vendor's business and only noted."""
    for payload, offset in zip(record.payloads, record.offsets, strict=True):
        if not isinstance(payload, UnknownPayload):
            continue
        if payload.type in PRIVATE_PAYLOAD_TYPES:
            record.notes.append(f"private-use payload type {payload.type} at offset {offset}")
        else:
            record.fail(
                f"INVALID-PAYLOAD-TYPE: payload type {payload.type} is not defined for IKEv1",
                offset,
            )


def _first(payloads: tuple[Payload, ...], kind: type[_P]) -> _P | None:
    return next((p for p in payloads if isinstance(p, kind)), None)


def _fill(slots: tuple[_T | None, _T | None], value: _T | None) -> tuple[_T | None, _T | None]:
    """Phase 1 sends each of these payloads once per side, initiator first: a value
    fills the first empty slot of the pair, and is dropped once both are known."""
    first, second = slots
    if value is None:
        return slots
    if first is None:
        return value, second
    if second is None:
        return first, value
    return slots


def _shared_secret_length(group: int | None, ke_length: int) -> int:
    """Bytes of g^xy: the prime's size for MODP, one coordinate for ECP (RFC 5903)."""
    try:
        spec = GROUPS.get(GroupId(group)) if group is not None else None
    except ValueError:
        spec = None
    if isinstance(spec, EcpGroup):
        return spec.coordinate_length
    return ke_length


def _int_attr(attrs: dict[int, int | bytes], key: int) -> int | None:
    value = attrs.get(key)
    return value if isinstance(value, int) else None


def offered_proposal(offered: tuple[Proposal, ...], chosen: Proposal) -> Proposal | None:
    """The initiator's proposal that the responder's choice answers.

    RFC 2408 4.2 wants the proposal number echoed, but real responders renumber: libreswan
    numbers its Quick Mode proposals from 0 and strongSwan answers with its own #1. So the
    number decides when it names a proposal of the same protocol; otherwise the one offered
    proposal of that protocol carrying the chosen transform ID does (ambiguity: None)."""
    same = [p for p in offered if p.protocol_id == chosen.protocol_id]
    exact = next((p for p in same if p.number == chosen.number), None)
    if exact is not None or not chosen.transforms:
        return exact
    wanted = chosen.transforms[0].transform_id
    fits = [p for p in same if any(t.transform_id == wanted for t in p.transforms)]
    return fits[0] if len(fits) == 1 else None


class Dumper:
    """Feeds captured datagrams through the codec and, with keys, the decryption module."""

    def __init__(self, keys: KeyMaterial, trust: Trust | None = None) -> None:
        self.keys = keys
        self.trust = trust if trust is not None else Trust()
        # with secrets, certificates or CAs, a signature that cannot be checked is a
        # problem (what is missing is said); with nothing given, only a note
        self.verifying = keys.any or self.trust.any
        self._sas: OrderedDict[bytes, _IkeSa] = OrderedDict()

    def sa_crypto(self, icookie: bytes) -> SaCrypto | None:
        """The encryption state of the (first tracked) ISAKMP SA with this initiator cookie."""
        sa = next((s for s in self._sas.values() if s.icookie == icookie), None)
        return sa.crypto if sa is not None else None

    # --- entry point ---------------------------------------------------------------------

    def feed(self, datagram: Datagram) -> Record:
        record = Record(datagram)
        try:
            self._feed(record)
        except IsakmpError as exc:
            record.fail(isakmp_reason(exc), exc.offset if exc.offset >= 0 else None)
        except CryptoError as exc:  # a check not tied to one field
            record.fail(str(exc))
        return record

    def _feed(self, record: Record) -> None:
        data = record.datagram.message
        if record.datagram.truncated_from is not None:
            record.fail(
                f"truncated by the capture: {len(data)} of "
                f"{record.datagram.truncated_from} bytes of the ISAKMP message",
                len(data),
            )
            return
        if len(data) > 17 and data[17] >> 4 == IKEV2_MAJOR:
            record.ikev2 = True
            record.notes.append("IKEv2 message: not decoded")
            return
        try:
            message = decode_message(data)
        except IsakmpError as exc:
            record.fail(isakmp_reason(exc), exc.offset if exc.offset >= 0 else None)
            return
        record.header = message.header
        sa = self._sa_for(message.header)
        digest = hashlib.sha256(data).digest()
        original = sa.seen.get(digest)
        if original is not None:
            record.retransmission_of = original.datagram.frame
            record.payloads = original.payloads
            record.offsets = original.offsets
            record.decrypted = original.decrypted
            record.ciphertext_length = original.ciphertext_length
            record.padding = original.padding
            return
        sa.seen[digest] = record
        while len(sa.seen) > MAX_SEEN:
            sa.seen.popitem(last=False)
        if message.encrypted:
            self._encrypted(sa, record, message)
        else:
            record.show(message.payloads, data[HEADER_LENGTH:])
            check_payload_types(record)
            self._cleartext(sa, record, message.header)

    def _sa_for(self, header: Header) -> _IkeSa:
        zero = bytes(8)
        key = header.icookie + header.rcookie
        sa = self._sas.get(key)
        if sa is None and header.rcookie != zero:
            # the responder's cookie is new: the SA was tracked under icookie | 0
            sa = self._sas.pop(header.icookie + zero, None)
            if sa is not None:
                sa.rcookie = header.rcookie
                self._sas[key] = sa
        if sa is None and header.rcookie == zero:
            sa = next((s for s in self._sas.values() if s.icookie == header.icookie), None)
        if sa is None:
            sa = _IkeSa(header.icookie, header.rcookie)
            self._sas[key] = sa
            while len(self._sas) > MAX_SAS:
                self._sas.popitem(last=False)
        return sa

    # --- phase 1 in the clear ----------------------------------------------------------

    def _cleartext(self, sa: _IkeSa, record: Record, header: Header) -> None:
        if header.exchange_type not in _PHASE1 or header.message_id != 0:
            if header.exchange_type == ExchangeType.QUICK_MODE:
                record.fail("Quick Mode message sent without encryption")
            return
        self._learn_phase1(sa, record.payloads)
        if sa.crypto is None and sa.setup_problem is None:
            self._setup(sa, record, header)
        self._nat_d(sa, record, header)
        proofs = [p for p in record.payloads if isinstance(p, HashPayload | SigPayload)]
        if not proofs or header.exchange_type != ExchangeType.AGGRESSIVE:
            return
        # Aggressive Mode: HASH_R/SIG_R in message 2 (with the responder's ID), HASH_I/SIG_I
        # in message 3
        ident = _first(record.payloads, IdPayload)
        is_response = ident is not None and sa.idir is not None
        self._verify_phase1(sa, record, record.payloads, responder=is_response)

    def _learn_phase1(self, sa: _IkeSa, payloads: tuple[Payload, ...]) -> None:
        ke = _first(payloads, KePayload)
        nonce = _first(payloads, NoncePayload)
        ident = _first(payloads, IdPayload)
        sa.sa_i, sa.sa_r = _fill((sa.sa_i, sa.sa_r), _first(payloads, SAPayload))
        sa.g_xi, sa.g_xr = _fill((sa.g_xi, sa.g_xr), ke.data if ke is not None else None)
        sa.ni_b, sa.nr_b = _fill((sa.ni_b, sa.nr_b), nonce.data if nonce is not None else None)
        sa.idii, sa.idir = _fill((sa.idii, sa.idir), ident)

    def _chosen(self, sa: _IkeSa) -> dict[int, int | bytes]:
        assert sa.sa_r is not None
        return ike_attributes_to_dict(sa.sa_r.proposals[0].transforms[0].attributes)

    def _setup(self, sa: _IkeSa, record: Record, header: Header) -> None:
        """Key the SA once its public values, nonces and chosen transform are known."""
        if None in (sa.sa_i, sa.sa_r, sa.g_xi, sa.g_xr, sa.ni_b, sa.nr_b):
            return
        assert sa.sa_i is not None and sa.g_xi is not None and sa.g_xr is not None
        assert sa.ni_b is not None and sa.nr_b is not None
        attrs = self._chosen(sa)
        enc = _int_attr(attrs, IkeAttr.ENCRYPTION_ALGORITHM)
        hash_id = _int_attr(attrs, IkeAttr.HASH_ALGORITHM)
        method = _int_attr(attrs, IkeAttr.AUTHENTICATION_METHOD)
        sa.method = method
        if enc is None or hash_id is None:
            sa.setup_problem = "the chosen transform names no cipher or hash"
            return
        record.notes.append(
            f"ISAKMP SA {sa.name}: {number_name(IkeEncryption, enc)}"
            f"-{_int_attr(attrs, IkeAttr.KEY_LENGTH) or ''} {number_name(IkeHash, hash_id)}"
            f" {number_name(AuthMethod, method or 0)}"
        )
        if not self.keys.any:
            return
        try:
            keys: Phase1Keys | None = None
            skeyid = self._skeyid(sa, attrs, hash_id, method)
            if isinstance(skeyid, str):
                if sa.icookie not in self.keys.ka_table:
                    sa.setup_problem = skeyid
                    return
                ka: bytes | bytearray = self.keys.ka_table[sa.icookie]
            else:
                length = key_length_bytes(enc, _int_attr(attrs, IkeAttr.KEY_LENGTH))
                keys = derive_phase1_keys(
                    hash_id, skeyid[0], skeyid[1], sa.icookie, header.rcookie, length
                )
                ka = keys.enc_key
            cipher = IkeCipher(enc, ka)
            ivs = IvChain.from_public_values(hash_id, cipher.block_size, sa.g_xi, sa.g_xr)
        except CryptoError as exc:
            sa.setup_problem = f"ISAKMP SA {sa.name}: {exc}"
            return
        sa.crypto = SaCrypto(cipher, ivs, keys)
        sa.inputs = Phase1Inputs(
            IkeHash(hash_id), sa.g_xi, sa.g_xr, sa.icookie, header.rcookie, sa.sa_i.encode_body()
        )
        shown = record.phase1_keys
        if keys is None:
            record.notes.append("Ka only: messages are decrypted, HASH payloads not verified")
        else:
            shown.update(
                SKEYID=bytes(keys.skeyid),
                SKEYID_d=bytes(keys.skeyid_d),
                SKEYID_a=bytes(keys.skeyid_a),
                SKEYID_e=bytes(keys.skeyid_e),
            )
        shown.update(Ka=bytes(ka), IV=ivs.iv_for(0))

    def _skeyid(
        self, sa: _IkeSa, attrs: dict[int, int | bytes], hash_id: int, method: int | None
    ) -> tuple[bytes, bytes] | str:
        """(SKEYID, g^xy) from the secrets given, or what is missing: signatures need the
        DH secret alone (SKEYID = prf(Ni_b | Nr_b, g^xy)), pre-shared keys the PSK too."""
        assert sa.g_xi is not None and sa.ni_b is not None and sa.nr_b is not None
        signed = method in SIGNATURE_METHODS
        name = number_name(AuthMethod, method or 0)
        if not signed and self.keys.psk is not None and method not in _PSK_METHODS:
            return f"authentication method {name}: --psk does not apply"
        if not signed and self.keys.psk is None:
            if self.keys.dh_secrets:
                return f"authentication method {name}: no pre-shared key given (psk)"
            return f"no key for ISAKMP SA {sa.name}"
        secret = self.keys.dh_secret_for(sa.icookie)
        if secret is None:
            if signed:
                return f"no DH secret for ISAKMP SA {sa.name} (give its 'dh-secret')"
            return f"no --dh-secret left for ISAKMP SA {sa.name}"
        size = _shared_secret_length(_int_attr(attrs, IkeAttr.GROUP_DESCRIPTION), len(sa.g_xi))
        g_xy = fixed_length_secret(secret, max(size, len(secret)))
        if signed:
            return skeyid_signature(hash_id, sa.ni_b, sa.nr_b, g_xy), g_xy
        assert self.keys.psk is not None
        return skeyid_psk(hash_id, self.keys.psk, sa.ni_b, sa.nr_b), g_xy

    def _nat_d(self, sa: _IkeSa, record: Record, header: Header) -> None:
        """Say which NAT-D payload matches which address of this datagram (RFC 3947 3.2:
        the first is the destination's, the rest the sender's). A mismatch is only a note:
        it means a NAT, or a peer forcing UDP encapsulation with a bogus hash on purpose."""
        natd = [p for p in record.payloads if isinstance(p, NatDPayload)]
        if not natd or sa.sa_r is None:
            return
        hash_id = _int_attr(self._chosen(sa), IkeAttr.HASH_ALGORITHM)
        dg = record.datagram
        candidates = (("destination", dg.dst, dg.dport), ("source", dg.src, dg.sport))
        try:
            hashes = [
                (
                    what,
                    f"{addr}:{port}",
                    nat_d_hash(hash_id or 0, header.icookie, header.rcookie, addr, port),
                )
                for what, addr, port in candidates
            ]
        except CryptoError:
            return
        for index, payload in enumerate(natd, 1):
            match = next((h for h in hashes if digests_equal(h[2], payload.data)), None)
            if match is None:
                record.notes.append(f"NAT-D {index} matches no address of this datagram")
            else:
                record.notes.append(f"NAT-D {index} matches the {match[0]} {match[1]}")

    def _verify_phase1(
        self, sa: _IkeSa, record: Record, payloads: tuple[Payload, ...], *, responder: bool
    ) -> None:
        if sa.method in SIGNATURE_METHODS:
            self._verify_signature(sa, record, payloads, responder=responder)
            return
        crypto, inputs = sa.crypto, sa.inputs
        if crypto is None or inputs is None or crypto.keys is None:
            return
        check = "HASH_R" if responder else "HASH_I"
        ident = _first(payloads, IdPayload) or (sa.idir if responder else sa.idii)
        try:
            received = phase1_hash(payloads, check)
            if ident is None:
                raise VerificationError(check, "cannot be checked: no ID payload seen")
            verify = verify_hash_r if responder else verify_hash_i
            verify(crypto.keys, inputs, ident.body, received)
        except VerificationError as exc:
            record.fail(str(exc))
            return
        record.checks.append(f"{check} ok")

    def _verify_signature(
        self, sa: _IkeSa, record: Record, payloads: tuple[Payload, ...], *, responder: bool
    ) -> None:
        """SIG_I/SIG_R: certificate, signature, ID and (with --ca) chain, each reported."""
        label = "SIG_R" if responder else "SIG_I"
        ident = _first(payloads, IdPayload) or (sa.idir if responder else sa.idii)
        auth_hash, missing = None, self._missing_skeyid(sa)
        method = AuthMethod(sa.method or 0)
        keys, inputs = sa.crypto.keys if sa.crypto is not None else None, sa.inputs
        if keys is not None and inputs is not None and ident is not None:
            prf = auth_prf(method, inputs.hash_alg)
            auth_hash = phase1_auth_hash(keys, inputs, ident.body, responder=responder, prf=prf)
        when = record.datagram.time
        signed = Signed(label, method, ident, payloads, auth_hash, missing, when)
        report = check_signed(signed, self.trust)
        record.signature = report
        for outcome in report.outcomes:
            if outcome.ok:
                record.checks.append(f"{label} {outcome.check} ok")
            elif outcome.ok is None and not self.verifying:
                record.notes.append(f"{label} {outcome.text}")
            else:
                record.fail(f"{label} {outcome.text}")

    def _missing_skeyid(self, sa: _IkeSa) -> str:
        """Why HASH_I/HASH_R of a signature SA cannot be computed."""
        if sa.crypto is not None and sa.crypto.keys is None:
            return "SKEYID unknown: a key table (--keys) only decrypts; give the DH secret"
        if sa.setup_problem is not None:
            return sa.setup_problem
        if not self.keys.any:
            return f"no DH secret for ISAKMP SA {sa.name} (give its 'dh-secret')"
        return "SKEYID unknown: the phase 1 values were not all seen"

    # --- encrypted messages ------------------------------------------------------------

    def _encrypted(self, sa: _IkeSa, record: Record, message: Message) -> None:
        header = message.header
        record.ciphertext_length = len(message.ciphertext)
        crypto = sa.crypto
        if crypto is None:
            if sa.method in SIGNATURE_METHODS and header.message_id == 0 and self.verifying:
                missing = sa.setup_problem or self._missing_skeyid(sa)
                record.fail(f"cannot decrypt: {missing}: its SIG cannot be checked")
            elif self.keys.any:
                record.fail(f"not decrypted: {sa.setup_problem or 'phase 1 keys unknown'}")
            else:
                record.notes.append("encrypted (no keys given)")
            return
        try:
            decrypted = crypto.open(header, message.ciphertext)
        except IsakmpError as exc:
            offset = exc.offset if exc.offset >= 0 else None
            if crypto.keys is not None and header.message_id == 0:
                check = "HASH_I" if sa.encrypted_phase1 == 0 else "HASH_R"
                record.fail(
                    f"{check} cannot be verified: the message does not decrypt to valid "
                    f"payloads with the derived keys (wrong PSK or DH secret?): "
                    f"{isakmp_reason(exc)} at offset {offset}"
                )
            else:
                record.fail(f"{isakmp_reason(exc)} (after decryption: wrong key?)", offset)
            return
        except CryptoError as exc:  # the body does not fit the cipher (block size)
            record.fail(f"cannot decrypt: {exc}", HEADER_LENGTH)
            return
        record.show(decrypted.payloads, decrypted.plaintext)
        record.decrypted = True
        check_payload_types(record)
        record.padding = len(decrypted.padding)
        crypto.accept(header, message.ciphertext)
        try:
            self._after_decrypt(sa, record, header, decrypted)
        except VerificationError as exc:
            record.fail(str(exc))

    def _after_decrypt(
        self, sa: _IkeSa, record: Record, header: Header, decrypted: Decrypted
    ) -> None:
        crypto = sa.crypto
        assert crypto is not None
        exchange, mid = header.exchange_type, header.message_id
        if exchange in _PHASE1 and mid == 0:
            responder = exchange == ExchangeType.IDENTITY_PROTECTION and sa.encrypted_phase1 > 0
            sa.encrypted_phase1 += 1
            self._learn_phase1(sa, decrypted.payloads)
            self._nat_d(sa, record, header)
            self._verify_phase1(sa, record, decrypted.payloads, responder=responder)
            return
        if exchange == ExchangeType.QUICK_MODE:
            self._quick_mode(sa, record, header, decrypted)
            return
        if exchange in _HASHED_INFO:
            if crypto.keys is not None:
                verify_informational(crypto.keys, mid, decrypted)
                record.checks.append("HASH(1) ok")
            if exchange == ExchangeType.INFORMATIONAL:
                crypto.ivs.forget(mid)
            return
        record.notes.append(f"no check defined for {exchange.name} messages")

    def _quick_mode(self, sa: _IkeSa, record: Record, header: Header, decrypted: Decrypted) -> None:
        crypto = sa.crypto
        assert crypto is not None
        mid, dg = header.message_id, record.datagram
        state = sa.phase2.get(mid)
        if state is None:
            state = sa.phase2[mid] = _Phase2(dg.src, dg.dst)
            while len(sa.phase2) > MAX_PHASE2:
                del sa.phase2[next(iter(sa.phase2))]
        state.count += 1
        payloads = decrypted.payloads
        sa_payload = _first(payloads, SAPayload)
        nonce = _first(payloads, NoncePayload)
        ke = _first(payloads, KePayload)
        if isinstance(ke, KePayload) and state.count <= 2:
            state.pfs.append(len(ke.data))
        keys = crypto.keys
        if state.count == 1:
            state.ni_b = nonce.data if isinstance(nonce, NoncePayload) else None
            state.sa_i = sa_payload if isinstance(sa_payload, SAPayload) else None
            if keys is not None:
                verify_qm_hash1(keys, mid, decrypted)
                record.checks.append("HASH(1) ok")
        elif state.count == 2:
            state.nr_b = nonce.data if isinstance(nonce, NoncePayload) else None
            state.sa_r = sa_payload if isinstance(sa_payload, SAPayload) else None
            if keys is not None:
                if state.ni_b is None:
                    raise VerificationError("HASH(2)", "cannot be checked: no Ni from message 1")
                verify_qm_hash2(keys, mid, state.ni_b, decrypted)
                record.checks.append("HASH(2) ok")
                self._ipsec_keys(record, keys, mid, state)
            else:
                record.notes.append("IPsec keys need SKEYID_d: give --psk and --dh-secret")
        elif state.count == 3:
            if keys is not None:
                if state.ni_b is None or state.nr_b is None:
                    raise VerificationError("HASH(3)", "cannot be checked: nonces not seen")
                verify_qm_hash3(keys, mid, state.ni_b, state.nr_b, decrypted)
                record.checks.append("HASH(3) ok")
            crypto.ivs.forget(mid)
        else:
            record.notes.append(f"Quick Mode message {state.count}: no check defined")

    def _ipsec_keys(self, record: Record, keys: Phase1Keys, mid: int, state: _Phase2) -> None:
        if state.ni_b is None or state.nr_b is None or state.sa_i is None or state.sa_r is None:
            record.fail("Quick Mode without nonces or SA payloads: IPsec keys not derived")
            return
        g_qm: bytes | None = None
        if state.pfs:
            if len(state.pfs) != 2:
                record.fail("only one side of the Quick Mode sent a KE payload")
                return
            secret = self.keys.qm_dh_secret_for(mid)
            if secret is None:
                record.notes.append(
                    f"Quick Mode {mid:#010x} uses PFS: IPsec keys not derived "
                    "(give its DH secret with --qm-dh-secret)"
                )
                return
            group = self._qm_group(state.sa_r.proposals[0])
            size = _shared_secret_length(group, state.pfs[0])
            g_qm = fixed_length_secret(secret, max(size, len(secret)))
        for chosen in state.sa_r.proposals:
            self._proposal_keys(record, keys, state, chosen, g_qm)

    @staticmethod
    def _qm_group(proposal: Proposal) -> int | None:
        attrs = ipsec_attributes_to_dict(proposal.transforms[0].attributes)
        return _int_attr(attrs, IpsecAttr.GROUP_DESCRIPTION)

    def _proposal_keys(
        self,
        record: Record,
        keys: Phase1Keys,
        state: _Phase2,
        chosen: Proposal,
        g_qm: bytes | None,
    ) -> None:
        assert state.sa_i is not None and state.ni_b is not None and state.nr_b is not None
        label = _LAYOUTS.get(chosen.protocol_id)
        if label is None:
            record.notes.append(f"{chosen.protocol_id.name} proposal: no keys to derive")
            return
        offered = offered_proposal(state.sa_i.proposals, chosen)
        if offered is None:
            record.fail(f"chosen {label} proposal {chosen.number} was not offered")
            return
        if offered.number != chosen.number:
            record.notes.append(
                f"responder renumbered {label} proposal {offered.number} as {chosen.number}"
            )
        transform = chosen.transforms[0]
        attrs = ipsec_attributes_to_dict(transform.attributes)
        auth = _int_attr(attrs, IpsecAttr.AUTHENTICATION_ALGORITHM)
        try:
            layout: KeymatLayout
            if chosen.protocol_id == ProtocolId.IPSEC_ESP:
                layout = esp_layout(
                    transform.transform_id, _int_attr(attrs, IpsecAttr.KEY_LENGTH), auth
                )
            else:
                layout = ah_layout(transform.transform_id, auth or 0)
        except CryptoError as exc:
            record.notes.append(f"{label} keys not derived: {exc}")
            return
        # KEYMAT is cut per SA with the SPI its receiver chose: the responder's SPI (from
        # message 2) keys initiator -> responder traffic, the initiator's the other way.
        for spi, src, dst in (
            (chosen.spi, state.initiator, state.responder),
            (offered.spi, state.responder, state.initiator),
        ):
            sa_keys = derive_sa_keys(
                keys.hash_alg, keys.skeyid_d, layout, spi, state.ni_b, state.nr_b, g_qm
            )
            record.sa_keys.append(
                SaKeyLine(
                    label,
                    spi,
                    src,
                    dst,
                    layout.cipher.xfrm_name if layout.cipher else None,
                    bytes(sa_keys.enc_key),
                    layout.integrity.xfrm_name if layout.integrity else None,
                    bytes(sa_keys.integ_key),
                )
            )
            sa_keys.wipe()
