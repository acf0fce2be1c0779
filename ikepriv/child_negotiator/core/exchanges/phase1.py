"""What Main Mode and Aggressive Mode share: building the ISAKMP SA record of either role,
checking the responder's SA choice, the Diffie-Hellman step of either role, the SKEYID
round trip to the parent and the keys derived from it, HASH_I/HASH_R over the SA's own
values, the end of a successful exchange, and the dispatch of a phase 1 message.

The two modules differ in which message carries what; everything here is the same logic
in both, so a fix lands in one place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ikepriv.child_negotiator.core import fragments
from ikepriv.child_negotiator.core.context import Core
from ikepriv.child_negotiator.core.cookies import ZERO_COOKIE
from ikepriv.child_negotiator.core.datagram import Inbound
from ikepriv.child_negotiator.core.exchanges import informational
from ikepriv.child_negotiator.core.informational_send import send_notify
from ikepriv.child_negotiator.core.offers import (
    IkeChoice,
    check_ike_reply,
    ike_choices,
    ike_lifetime,
    ike_sa_payload,
)
from ikepriv.child_negotiator.core.retransmit import Seen
from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.child_negotiator.core.states import P1State
from ikepriv.crypto import dh
from ikepriv.crypto.ciphers import IkeCipher, key_length_bytes
from ikepriv.crypto.crypto_errors import CryptoError
from ikepriv.crypto.oakley import IvChain, derive_phase1_keys, hash_i, hash_r
from ikepriv.crypto.prf import digests_equal
from ikepriv.crypto.signatures import auth_prf
from ikepriv.ipc.messages import (
    MIN_PHASE1_NONCE,
    PARENT_NONCE_BYTES,
    Endpoint,
    ErrorCode,
    LogLevel,
    NonceReply,
    NonceRequest,
    Phase1Def,
    Role,
    SkeyidReply,
    SkeyidRequest,
)
from ikepriv.isakmp import (
    IdPayload,
    IsakmpError,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SAPayload,
    VendorIdPayload,
    build_message,
    encode_message,
)
from ikepriv.isakmp.constants import ExchangeType, GroupId, NotifyType

Then = Callable[[Core, IsakmpSa], None]  # what runs once SKEYID is installed
Handler = Callable[[Core, IsakmpSa, Inbound], None]


# ------------------------------------------------------------------------------ payloads


def single(payloads: tuple[Payload, ...], kind: type) -> Payload | None:
    """The one payload of a kind; None when absent or repeated (a repeat is refused)."""
    found = [p for p in payloads if isinstance(p, kind)]
    return found[0] if len(found) == 1 else None


def plain(sa: IsakmpSa, payloads: list[Payload]) -> bytes:
    """An unencrypted phase 1 message of the SA's exchange."""
    return encode_message(build_message(sa.icookie, sa.rcookie, sa.exchange, 0, payloads))


def our_vendor_ids(core: Core, sa: IsakmpSa) -> list[Payload]:
    vids = (*core.hooks.vendor_ids(sa), *fragments.vendor_ids_to_send(sa))
    return [VendorIdPayload(v) for v in vids]


def peer_vendor_ids(payloads: tuple[Payload, ...]) -> frozenset[bytes]:
    return frozenset(p.data for p in payloads if isinstance(p, VendorIdPayload))


def has_initial_contact(payloads: tuple[Payload, ...]) -> bool:
    return any(
        isinstance(p, NotifyPayload) and p.notify_type == NotifyType.INITIAL_CONTACT
        for p in payloads
    )


# ------------------------------------------------------------------------------ records


def new_initiator(
    core: Core,
    d: Phase1Def,
    exchange: ExchangeType,
    state: P1State,
    local: Endpoint,
    remote: Endpoint,
    natt: bool,
) -> tuple[IsakmpSa, SAPayload] | None:
    """The record of a phase 1 we start, and the SA payload offering the definition's
    proposals; None (logged) when nothing in the definition can be offered. Not in the
    tables yet: the caller adds it once it is sure to send."""
    offered = ike_choices(d)
    if not offered:
        core.log(LogLevel.ERR, f"phase 1 {d.name}: no proposal this implementation can offer")
        return None
    sa = IsakmpSa(
        tunnel_id=core.new_tunnel_id(),
        definition=d,
        role=Role.INITIATOR,
        exchange=exchange,
        local=local,
        remote=remote,
        natt=natt,
        icookie=core.cookies.initiator(),
        rcookie=ZERO_COOKIE,
        state=state,
        created=core.now,
    )
    sa.offered = offered
    payload = ike_sa_payload(offered)
    sa.sa_i_body = payload.encode_body()
    return sa, payload


def new_responder(
    core: Core,
    inb: Inbound,
    d: Phase1Def,
    state: P1State,
    rcookie: bytes,
    choice: IkeChoice,
    offer: SAPayload,
) -> IsakmpSa:
    """The record of a phase 1 a peer started, with the transform we chose."""
    sa = IsakmpSa(
        tunnel_id=core.new_tunnel_id(),
        definition=d,
        role=Role.RESPONDER,
        exchange=inb.message.header.exchange_type,
        local=inb.local,
        remote=inb.remote,
        natt=inb.natt,
        icookie=inb.message.header.icookie,
        rcookie=rcookie,
        state=state,
        created=core.now,
    )
    sa.choice = choice
    sa.sa_i_body = offer.encode_body()  # the codec re-encodes accepted input byte for byte
    sa.peer_vendor_ids = peer_vendor_ids(inb.message.payloads)
    return sa


def responder_cookie(core: Core, inb: Inbound, on_message: Handler) -> bytes | None:
    """Our cookie for a first message; None when the message was a repeat for an exchange
    we already hold (handed to `on_message`, or dropped if from elsewhere)."""
    header = inb.message.header
    rcookie = core.cookies.responder(inb.remote.addr, inb.remote.port, header.icookie)
    existing = core.sas.by_cookies.get(header.icookie + rcookie)
    if existing is None:
        return rcookie
    if core.hooks_accept_peer(existing, inb):
        on_message(core, existing, inb)
    else:
        core.counters.dropped_unknown_sa += 1
    return None


# ------------------------------------------------------------------------------ keys


def ask_nonce(core: Core, sa: IsakmpSa, then: Then) -> None:
    """An initiator's Ni comes from the parent (which keeps it for the SKEYID request, so
    the prf input always holds its random bytes); `then` runs once it is here."""
    number = sa.definition.number
    core.request(
        lambda rid: NonceRequest(rid, number),
        NonceReply,
        lambda reply: _on_nonce(core, sa, reply, then),
    )


def _on_nonce(core: Core, sa: IsakmpSa, reply: NonceReply, then: Then) -> None:
    if sa.ni or sa.state is P1State.DEAD:
        core.counters.dropped_stale_reply += 1
        return
    if reply.error is not ErrorCode.OK:
        core.counters.parent_errors += 1
        core.fail_isakmp(sa, f"parent refused our nonce ({reply.error.name})")
        return
    sa.ni, sa.nonce_id = reply.nonce, reply.nonce_id
    then(core, sa)


def peer_nonce_ok(core: Core, nonce: NoncePayload) -> bool:
    """The peer's phase 1 nonce has at least MIN_PHASE1_NONCE bytes (RFC 2409 allows 8; the
    parent refuses shorter ones in SKEYID requests). A shorter one is counted and dropped."""
    if len(nonce.data) >= MIN_PHASE1_NONCE:
        return True
    core.counters.dropped_policy += 1
    return False


def ask_skeyid(core: Core, sa: IsakmpSa, waiting: P1State, then: Then) -> None:
    """SKEYID from the parent: by definition when we know it (initiator, or Aggressive
    Mode responder, which picked it by IDii), else by peer address (Main Mode responder,
    which has seen no ID yet). An initiator names the parent's nonce it sent as Ni; a
    responder gets its Nr from the parent with SKEYID. `then` runs if the SA still waits
    in state `waiting`."""
    assert sa.choice is not None
    by_peer = sa.role is Role.RESPONDER and sa.exchange is ExchangeType.IDENTITY_PROTECTION
    number = None if by_peer else sa.definition.number
    peer = sa.remote.addr if by_peer else None
    initiator = sa.role is Role.INITIATOR
    nonce_id = sa.nonce_id if initiator else 0
    prf, theirs = sa.choice.hash, sa.nr if initiator else sa.ni
    core.request(
        lambda rid: SkeyidRequest(rid, number, peer, prf, nonce_id, theirs),
        SkeyidReply,
        lambda reply: _on_skeyid(core, sa, reply, waiting, then),
    )


def _on_skeyid(core: Core, sa: IsakmpSa, reply: SkeyidReply, waiting: P1State, then: Then) -> None:
    if sa.state is not waiting or sa.keys is not None:
        core.counters.dropped_stale_reply += 1
        return
    if reply.error is not ErrorCode.OK:
        parent_refused(core, sa, "SKEYID", reply.error)
        return
    want = 0 if sa.role is Role.INITIATOR else PARENT_NONCE_BYTES
    if len(reply.nonce) != want:
        core.counters.parent_errors += 1
        core.fail_isakmp(sa, f"SKEYID reply with a nonce of {len(reply.nonce)} bytes")
        return
    if want:
        sa.nr = reply.nonce
    install_keys(core, sa, reply.skeyid)
    then(core, sa)


def install_keys(core: Core, sa: IsakmpSa, skeyid: bytes) -> None:
    """SKEYID_d/a/e, the cipher and the phase 1 IV chain; forgets g^xy."""
    choice = sa.choice
    assert choice is not None
    keys = derive_phase1_keys(
        choice.hash,
        skeyid,
        sa.g_xy,
        sa.icookie,
        sa.rcookie,
        key_length_bytes(choice.encryption, choice.key_bits),
    )
    sa.keys = keys
    sa.cipher = IkeCipher(choice.encryption, keys.enc_key)
    sa.iv = IvChain.from_public_values(
        choice.hash,
        sa.cipher.block_size,
        sa.g_xi,
        sa.g_xr,
        max_exchanges=core.settings.quick_mode_max_parallel + 4,
    )
    sa.g_xy = b""


def initiator_hash(sa: IsakmpSa, id_body: bytes) -> bytes:
    """HASH_I over the SA's values and the initiator's ID body (with the prf the method
    wants: the negotiated one, or an ECDSA method's own, signatures.auth_prf)."""
    assert sa.keys is not None and sa.choice is not None
    k = sa.keys
    return hash_i(
        auth_prf(sa.choice.auth, sa.choice.hash),
        k.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.icookie,
        sa.rcookie,
        sa.sa_i_body,
        id_body,
    )


def responder_hash(sa: IsakmpSa, id_body: bytes) -> bytes:
    """HASH_R over the SA's values and the responder's ID body (prf as initiator_hash)."""
    assert sa.keys is not None and sa.choice is not None
    k = sa.keys
    return hash_r(
        auth_prf(sa.choice.auth, sa.choice.hash),
        k.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.icookie,
        sa.rcookie,
        sa.sa_i_body,
        id_body,
    )


def check_initiator_hash(core: Core, sa: IsakmpSa, id_body: bytes, received: bytes) -> bool:
    """Whether the initiator's HASH_I verifies; a responder that says no counts, logs and
    tells the peer."""
    if digests_equal(initiator_hash(sa, id_body), received):
        return True
    core.counters.dropped_auth += 1
    core.log(
        LogLevel.WARNING,
        f"phase 1 {sa.definition.name}: HASH_I from {sa.remote.addr} does not verify",
    )
    notify(core, sa, NotifyType.AUTHENTICATION_FAILED)
    return False


# ------------------------------------------------------------------------------ SA and KE


def accept_reply(core: Core, sa: IsakmpSa, sa_reply: SAPayload, rcookie: bytes) -> IkeChoice | None:
    """The transform the responder chose; None if it is not one we offered (counted,
    told to the responder, and the SA failed)."""
    choice = check_ike_reply(sa.offered, sa_reply)
    if choice is None:
        core.counters.dropped_policy += 1
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, rcookie, NotifyType.NO_PROPOSAL_CHOSEN
        )
        core.fail_isakmp(sa, "responder chose a proposal we did not offer")
    return choice


def initiator_dh(core: Core, sa: IsakmpSa, ke: KePayload, nonce: NoncePayload) -> bool:
    """Take the responder's KE and nonce: g^xy from our key, which is then wiped. False
    (counted as malformed, our key kept) if the KE is not a valid public value."""
    assert sa.dh is not None
    try:
        g_xy = sa.dh.shared(ke.data)
    except CryptoError:
        core.counters.dropped_malformed += 1
        return False
    sa.g_xr, sa.nr, sa.g_xy = ke.data, nonce.data, g_xy
    sa.dh.wipe()
    sa.dh = None
    return True


def responder_dh(core: Core, group: GroupId, ke: KePayload) -> tuple[bytes, bytes] | None:
    """Our public value and g^xy for the initiator's KE, from a private key used once and
    wiped; None (counted as malformed) if the KE is not a valid public value."""
    try:
        dh.validate_public(group, ke.data)
        key = dh.generate(group, core.random)
        g_xy = key.shared(ke.data)
    except CryptoError:
        core.counters.dropped_malformed += 1
        return None
    g_xr = key.public
    key.wipe()
    return g_xr, g_xy


def take_initiator_values(
    core: Core, sa: IsakmpSa, ke: KePayload, nonce: NoncePayload, ours: tuple[bytes, bytes]
) -> None:
    """A responder's record of the initiator's KE and nonce, its own public value and
    g^xy (from responder_dh). Its own nonce comes from the parent with SKEYID."""
    sa.g_xi, sa.ni = ke.data, nonce.data
    sa.g_xr, sa.g_xy = ours


# ------------------------------------------------------------------------------ outcome


def notify(core: Core, sa: IsakmpSa, notify_type: NotifyType) -> None:
    """An unencrypted notify about this exchange (rate limited by the engine)."""
    core.notify_clear(sa.local, sa.remote, sa.natt, sa.icookie, sa.rcookie, notify_type)


def parent_refused(core: Core, sa: IsakmpSa, what: str, error: ErrorCode) -> None:
    """The parent refused a service this exchange needs (SKEYID, our signature): the
    exchange fails, and the peer is told at once with one unencrypted error notify (both
    strongSwan and libreswan end a phase 1 on it) instead of retransmitting until its
    time-out. No amplification: the peer's message echoed our cookie, so it receives at its
    address; the engine's per-peer notify limit applies."""
    core.counters.parent_errors += 1
    notify(core, sa, NotifyType.INVALID_KEY_INFORMATION)
    core.fail_isakmp(sa, f"parent refused {what} ({error.name})")


def refuse_identity(core: Core, sa: IsakmpSa, whose: str) -> None:
    """The authenticated peer is not the one the definition names."""
    core.counters.dropped_policy += 1
    send_notify(core, sa, NotifyType.INVALID_ID_INFORMATION)
    core.fail_isakmp(sa, f"{whose} identity is not the one defined")


def has_other_sa(core: Core, sa: IsakmpSa) -> bool:
    """Whether we hold state with this peer, so INITIAL-CONTACT (which makes the peer drop
    all of its own) would be wrong: an ISAKMP SA, IPsec SAs that a new phase 1 is being
    negotiated for (a phase 2 rekey after phase 1 ended), or IPsec SAs of a previous child
    that this one resumes (RFC 2407 4.6.3.3: the notify is for the first contact, and the
    kernel still carries traffic on those SAs, so the peer must keep its side of them)."""
    peer = sa.remote.addr
    return (
        any(o is not sa and o.established for o in core.sas.at(peer))
        or core.sas.children.has_peer(peer)
        or core.policy_sets.resumed_with(peer)
    )


def established(
    core: Core, sa: IsakmpSa, peer_id: IdPayload, peer_payloads: tuple[Payload, ...] = ()
) -> None:
    """The exchange succeeded: record the peer, go live, and honour the peer's
    INITIAL-CONTACT (only a responder looks at it: `peer_payloads` of the last message)."""
    assert sa.choice is not None
    sa.peer_id = peer_id
    sa.lifetime = ike_lifetime(sa.definition, sa.choice)
    core.isakmp_established(sa)
    if has_initial_contact(peer_payloads):
        informational.initial_contact(core, sa)


# ------------------------------------------------------------------------------ dispatch


def dispatch(core: Core, sa: IsakmpSa, inb: Inbound, states: Mapping[P1State, Handler]) -> None:
    """A phase 1 message for an existing ISAKMP SA of the same exchange: repeats are
    answered or dropped before anything else, then the SA's state picks the handler."""
    if inb.message.header.message_id != 0 or inb.message.header.exchange_type != sa.exchange:
        core.counters.dropped_unexpected += 1
        return
    seen = sa.flight.classify(inb.digest)
    if seen is Seen.LAST:
        if core.may_answer_repeat(sa):
            core.answer_duplicate(sa.flight)
        else:
            core.counters.dropped_replay += 1
        return
    if seen is Seen.OLD or (sa.held is not None and sa.held[0] == inb.digest):
        core.counters.dropped_replay += 1
        return
    handler = states.get(sa.state)
    if handler is None:
        core.counters.dropped_replay += 1  # late message for a finished (or dead) exchange
        return
    try:
        handler(core, sa, inb)
    except IsakmpError:
        core.counters.dropped_malformed += 1
