"""Main Mode (identity protection, RFC 2409 5) with pre-shared keys, both roles.

    Initiator                          Responder
    MM1  SA, VID...              ->
                                 <-    MM2  SA (one transform, echoed), VID...
    MM3  KE, Ni [, hooks]        ->
                                 <-    MM4  KE, Nr [, hooks]      (SkeyidRequest by peer address)
    (SkeyidRequest by definition)
    MM5* IDii, HASH_I [, N(INITIAL-CONTACT)] ->
                                 <-    MM6* IDir, HASH_R

The pre-shared key never enters the core: SKEYID comes from the parent. A responder that
gets MM5 before SKEYID holds it and continues when the reply arrives. The responder
resends MM2/MM4 on a timer; MM6 is resent only when MM5 comes again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ikepriv.child_negotiator import informational
from ikepriv.child_negotiator.cookies import ZERO_COOKIE
from ikepriv.child_negotiator.identities import phase1_id, phase1_id_matches
from ikepriv.child_negotiator.proposals import (
    check_ike_reply,
    ike_choices,
    ike_lifetime,
    ike_sa_payload,
    select_ike,
)
from ikepriv.child_negotiator.retransmit import Seen
from ikepriv.child_negotiator.sa_table import IsakmpSa, P1State
from ikepriv.child_negotiator.wire import OpenError, open_message, seal
from ikepriv.crypto import dh
from ikepriv.crypto.ciphers import IkeCipher, key_length_bytes
from ikepriv.crypto.errors import CryptoError
from ikepriv.crypto.oakley import IvChain, derive_phase1_keys, hash_i, hash_r
from ikepriv.crypto.prf import digests_equal
from ikepriv.ipc.messages import (
    Endpoint,
    ErrorCode,
    LogLevel,
    Phase1Def,
    Role,
    SkeyidReply,
    SkeyidRequest,
)
from ikepriv.isakmp import (
    HashPayload,
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
from ikepriv.isakmp.constants import IKE_PORT, ExchangeType, NotifyType

if TYPE_CHECKING:
    from ikepriv.child_negotiator.engine import Inbound, IPAddress, Negotiator

MM = ExchangeType.IDENTITY_PROTECTION


def _plain(sa: IsakmpSa, payloads: list[Payload]) -> bytes:
    return encode_message(build_message(sa.icookie, sa.rcookie, MM, 0, payloads))


def _vids(core: Negotiator, sa: IsakmpSa) -> list[Payload]:
    return [VendorIdPayload(v) for v in core.hooks.vendor_ids(sa)]


def _peer_vids(payloads: tuple[Payload, ...]) -> frozenset[bytes]:
    return frozenset(p.data for p in payloads if isinstance(p, VendorIdPayload))


def _only(payloads: tuple[Payload, ...], kind: type) -> list[Payload]:
    return [p for p in payloads if isinstance(p, kind)]


def _single(payloads: tuple[Payload, ...], kind: type) -> Payload | None:
    found = _only(payloads, kind)
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------------------- initiator


def initiate(
    core: Negotiator, d: Phase1Def, local: IPAddress, remote: IPAddress
) -> IsakmpSa | None:
    offered = ike_choices(d)
    if not offered:
        core.log(LogLevel.ERR, f"phase 1 {d.name}: no proposal this implementation can offer")
        return None
    sa = IsakmpSa(
        tunnel_id=core.new_tunnel_id(),
        definition=d,
        role=Role.INITIATOR,
        exchange=MM,
        local=Endpoint(local, IKE_PORT),
        remote=Endpoint(remote, IKE_PORT),
        natt=False,
        icookie=core.cookies.initiator(),
        rcookie=ZERO_COOKIE,
        state=P1State.I_SA_SENT,
        created=core.now,
    )
    sa.offered = offered
    sa_payload = ike_sa_payload(offered)
    sa.sa_i_body = sa_payload.encode_body()
    core.add_isakmp(sa)
    core.log(LogLevel.INFO, f"phase 1 {d.name}: initiating Main Mode to {remote}")
    core.transmit(sa, sa.flight, (_plain(sa, [sa_payload, *_vids(core, sa)]),), retransmit=True)
    return sa


def _on_mm2(core: Negotiator, sa: IsakmpSa, inb: Inbound) -> None:
    payloads = inb.message.payloads
    sa_reply = _single(payloads, SAPayload)
    if inb.message.encrypted or sa_reply is None:
        core.counters.dropped_unexpected += 1
        return
    assert isinstance(sa_reply, SAPayload)
    choice = check_ike_reply(sa.offered, sa_reply)
    if choice is None:
        core.counters.dropped_policy += 1
        core.notify_clear(
            sa.local,
            sa.remote,
            sa.natt,
            sa.icookie,
            inb.message.header.rcookie,
            NotifyType.NO_PROPOSAL_CHOSEN,
        )
        core.fail_isakmp(sa, "responder chose a proposal we did not offer")
        return
    core.sas.bind_rcookie(sa, inb.message.header.rcookie)
    sa.choice = choice
    sa.peer_vendor_ids = _peer_vids(payloads)
    sa.dh = dh.generate(choice.group, core.random)
    sa.g_xi = sa.dh.public
    sa.ni = core.nonce()
    sa.state = P1State.I_KE_SENT
    sa.flight.accepted(inb.digest)
    out: list[Payload] = [KePayload(sa.g_xi), NoncePayload(sa.ni), *core.hooks.ke_payloads(sa)]
    core.transmit(sa, sa.flight, (_plain(sa, out),), retransmit=True)


def _on_mm4(core: Negotiator, sa: IsakmpSa, inb: Inbound) -> None:
    payloads = inb.message.payloads
    ke, nonce = _single(payloads, KePayload), _single(payloads, NoncePayload)
    if inb.message.encrypted or ke is None or nonce is None:
        core.counters.dropped_unexpected += 1
        return
    assert isinstance(ke, KePayload) and isinstance(nonce, NoncePayload) and sa.dh is not None
    try:
        g_xy = sa.dh.shared(ke.data)
    except CryptoError:
        core.counters.dropped_malformed += 1
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, sa.rcookie, NotifyType.INVALID_KEY_INFORMATION
        )
        return
    sa.g_xr, sa.nr, sa.g_xy = ke.data, nonce.data, g_xy
    sa.dh.wipe()
    sa.dh = None
    core.hooks.on_ke_payloads(sa, payloads, inb)
    sa.flight.accepted(inb.digest)  # MM4 arrived: MM3 needs no more resending
    sa.state = P1State.I_SKEYID_WAIT
    _ask_skeyid(core, sa)


def _ask_skeyid(core: Negotiator, sa: IsakmpSa) -> None:
    assert sa.choice is not None
    by_def = sa.role is Role.INITIATOR
    core.request(
        lambda rid: SkeyidRequest(
            rid,
            sa.definition.number if by_def else None,
            None if by_def else sa.remote.addr,
            sa.choice.hash,  # type: ignore[union-attr]
            sa.ni,
            sa.nr,
        ),
        SkeyidReply,
        lambda reply: _on_skeyid(core, sa, reply),
    )


def _on_skeyid(core: Negotiator, sa: IsakmpSa, reply: SkeyidReply) -> None:
    if sa.state is P1State.DEAD or sa.keys is not None:
        core.counters.dropped_stale_reply += 1
        return
    if reply.error is not ErrorCode.OK:
        core.counters.parent_errors += 1
        core.fail_isakmp(sa, f"parent refused SKEYID ({reply.error.name})")
        return
    install_keys(core, sa, reply.skeyid)
    if sa.role is Role.INITIATOR:
        _send_mm5(core, sa)
    elif sa.held is not None:
        _, held = sa.held
        sa.held = None
        _on_mm5(core, sa, held)  # type: ignore[arg-type]


def install_keys(core: Negotiator, sa: IsakmpSa, skeyid: bytes) -> None:
    """SKEYID_d/a/e, the cipher and the phase 1 IV chain; forgets g^xy (Main and Aggressive)."""
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


def _send_mm5(core: Negotiator, sa: IsakmpSa) -> None:
    assert sa.keys is not None and sa.choice is not None
    idp = phase1_id(sa.definition.local_id)
    h = hash_i(
        sa.choice.hash,
        sa.keys.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.icookie,
        sa.rcookie,
        sa.sa_i_body,
        idp.body,
    )
    payloads: list[Payload] = [idp, HashPayload(h)]
    if not _has_other_sa(core, sa):
        payloads.append(NotifyPayload.initial_contact(sa.cookies))
    sa.state = P1State.I_AUTH_SENT
    core.transmit(sa, sa.flight, (seal(sa, MM, 0, payloads),), retransmit=True)


def _has_other_sa(core: Negotiator, sa: IsakmpSa) -> bool:
    """Whether we hold state with this peer, so INITIAL-CONTACT (which makes the peer drop
    all of its own) would be wrong: an ISAKMP SA, or IPsec SAs that a new phase 1 is being
    negotiated for (a phase 2 rekey after phase 1 ended)."""
    peer = sa.remote.addr
    return any(
        o is not sa and o.established and o.remote.addr == peer for o in core.sas.by_tunnel.values()
    ) or any(c.remote.addr == peer for c in core.sas.children.values())


def _on_mm6(core: Negotiator, sa: IsakmpSa, inb: Inbound) -> None:
    if not inb.message.encrypted:
        core.counters.dropped_unexpected += 1
        return
    try:
        _, payloads = open_message(sa, inb.message)
    except OpenError:
        core.counters.dropped_auth += 1
        return
    idp, hp = _single(payloads, IdPayload), _single(payloads, HashPayload)
    if idp is None or hp is None:
        core.counters.dropped_malformed += 1
        return
    assert isinstance(idp, IdPayload) and isinstance(hp, HashPayload)
    assert sa.keys is not None and sa.choice is not None and sa.iv is not None
    expected = hash_r(
        sa.choice.hash,
        sa.keys.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.icookie,
        sa.rcookie,
        sa.sa_i_body,
        idp.body,
    )
    if not digests_equal(expected, hp.data):
        core.counters.dropped_auth += 1
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, sa.rcookie, NotifyType.AUTHENTICATION_FAILED
        )
        core.fail_isakmp(sa, "HASH_R does not verify")
        return
    sa.iv.advance(0, inb.message.ciphertext)
    sa.flight.accepted(inb.digest)  # MM6 ends the exchange: a repeat gets no answer
    core.hooks.on_authenticated(sa, inb)
    if not phase1_id_matches(sa.definition.remote_id, idp):
        core.counters.dropped_policy += 1
        informational.send_notify(core, sa, NotifyType.INVALID_ID_INFORMATION)
        core.fail_isakmp(sa, "responder identity is not the one defined")
        return
    sa.peer_id = idp
    sa.lifetime = ike_lifetime(sa.definition, sa.choice)
    core.isakmp_established(sa)


# ---------------------------------------------------------------------------- responder


def on_first_message(core: Negotiator, inb: Inbound) -> None:
    header = inb.message.header
    rcookie = core.cookies.responder(inb.remote.addr, inb.remote.port, header.icookie)
    existing = core.sas.by_cookies.get(header.icookie + rcookie)
    if existing is not None:
        if core.hooks_accept_peer(existing, inb):
            on_message(core, existing, inb)
        else:
            core.counters.dropped_unknown_sa += 1
        return
    payloads = inb.message.payloads
    offer = _single(payloads, SAPayload)
    if offer is None or any(not isinstance(p, SAPayload | VendorIdPayload) for p in payloads):
        core.counters.dropped_unexpected += 1
        return
    assert isinstance(offer, SAPayload)
    d = core.responder_definition(MM, inb.local.addr, inb.remote.addr)
    if d is None:
        core.counters.dropped_policy += 1
        core.notify_clear(
            inb.local, inb.remote, inb.natt, header.icookie, rcookie, NotifyType.NO_PROPOSAL_CHOSEN
        )
        return
    if not core.half_open.admit(inb.remote.addr):
        core.counters.dropped_half_open += 1
        return
    selected = select_ike(d, offer)
    if selected is None:
        core.counters.dropped_policy += 1
        core.log(
            LogLevel.NOTICE, f"phase 1 {d.name}: no acceptable proposal from {inb.remote.addr}"
        )
        core.notify_clear(
            inb.local, inb.remote, inb.natt, header.icookie, rcookie, NotifyType.NO_PROPOSAL_CHOSEN
        )
        return
    proposal, choice = selected
    sa = IsakmpSa(
        tunnel_id=core.new_tunnel_id(),
        definition=d,
        role=Role.RESPONDER,
        exchange=MM,
        local=inb.local,
        remote=inb.remote,
        natt=inb.natt,
        icookie=header.icookie,
        rcookie=rcookie,
        state=P1State.R_SA_SENT,
        created=core.now,
    )
    sa.choice = choice
    sa.sa_i_body = offer.encode_body()  # the codec re-encodes accepted input byte for byte
    sa.peer_vendor_ids = _peer_vids(payloads)
    core.add_isakmp(sa)
    sa.flight.accepted(inb.digest)
    reply: list[Payload] = [SAPayload.ipsec([proposal]), *_vids(core, sa)]
    core.transmit(sa, sa.flight, (_plain(sa, reply),), retransmit=True)


def _on_mm3(core: Negotiator, sa: IsakmpSa, inb: Inbound) -> None:
    payloads = inb.message.payloads
    ke, nonce = _single(payloads, KePayload), _single(payloads, NoncePayload)
    if inb.message.encrypted or ke is None or nonce is None:
        core.counters.dropped_unexpected += 1
        return
    assert isinstance(ke, KePayload) and isinstance(nonce, NoncePayload) and sa.choice is not None
    try:
        dh.validate_public(sa.choice.group, ke.data)
        key = dh.generate(sa.choice.group, core.random)
        g_xy = key.shared(ke.data)
    except CryptoError:
        core.counters.dropped_malformed += 1
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, sa.rcookie, NotifyType.INVALID_KEY_INFORMATION
        )
        return
    sa.dh = key
    sa.g_xi, sa.ni, sa.g_xy = ke.data, nonce.data, g_xy
    sa.g_xr = key.public
    sa.nr = core.nonce()
    core.hooks.on_ke_payloads(sa, payloads, inb)
    sa.flight.accepted(inb.digest)
    sa.state = P1State.R_KE_SENT
    out: list[Payload] = [KePayload(sa.g_xr), NoncePayload(sa.nr), *core.hooks.ke_payloads(sa)]
    core.transmit(sa, sa.flight, (_plain(sa, out),), retransmit=True)
    key.wipe()
    sa.dh = None
    _ask_skeyid(core, sa)


def _on_mm5_or_hold(core: Negotiator, sa: IsakmpSa, inb: Inbound) -> None:
    if not inb.message.encrypted:
        core.counters.dropped_unexpected += 1
        return
    if sa.keys is None:
        if sa.held is not None:
            core.counters.dropped_replay += 1  # one held message is enough
            return
        sa.held = (inb.digest, inb)
        return
    _on_mm5(core, sa, inb)


def _on_mm5(core: Negotiator, sa: IsakmpSa, inb: Inbound) -> None:
    try:
        _, payloads = open_message(sa, inb.message)
    except OpenError:
        # Garbage after decryption: almost always a pre-shared key mismatch.
        core.counters.dropped_auth += 1
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, sa.rcookie, NotifyType.AUTHENTICATION_FAILED
        )
        return
    idp, hp = _single(payloads, IdPayload), _single(payloads, HashPayload)
    if idp is None or hp is None:
        core.counters.dropped_malformed += 1
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, sa.rcookie, NotifyType.PAYLOAD_MALFORMED
        )
        return
    assert isinstance(idp, IdPayload) and isinstance(hp, HashPayload)
    assert sa.keys is not None and sa.choice is not None and sa.iv is not None
    expected = hash_i(
        sa.choice.hash,
        sa.keys.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.icookie,
        sa.rcookie,
        sa.sa_i_body,
        idp.body,
    )
    if not digests_equal(expected, hp.data):
        core.counters.dropped_auth += 1
        core.log(
            LogLevel.WARNING,
            f"phase 1 {sa.definition.name}: HASH_I from {sa.remote.addr} does not verify",
        )
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, sa.rcookie, NotifyType.AUTHENTICATION_FAILED
        )
        return
    sa.iv.advance(0, inb.message.ciphertext)
    sa.flight.accepted(inb.digest)
    core.hooks.on_authenticated(sa, inb)  # MM5 is where a NAT-T peer moves to port 4500
    if not phase1_id_matches(sa.definition.remote_id, idp):
        core.counters.dropped_policy += 1
        informational.send_notify(core, sa, NotifyType.INVALID_ID_INFORMATION)
        core.fail_isakmp(sa, "initiator identity is not the one defined")
        return
    sa.peer_id = idp
    sa.lifetime = ike_lifetime(sa.definition, sa.choice)
    my_id = phase1_id(sa.definition.local_id)
    h = hash_r(
        sa.choice.hash,
        sa.keys.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.icookie,
        sa.rcookie,
        sa.sa_i_body,
        my_id.body,
    )
    core.transmit(sa, sa.flight, (seal(sa, MM, 0, [my_id, HashPayload(h)]),), retransmit=False)
    initial_contact = any(
        isinstance(p, NotifyPayload) and p.notify_type == NotifyType.INITIAL_CONTACT
        for p in payloads
    )
    core.isakmp_established(sa)
    if initial_contact:
        informational.initial_contact(core, sa)


# ---------------------------------------------------------------------------- dispatch

_STATES = {
    P1State.I_SA_SENT: _on_mm2,
    P1State.I_KE_SENT: _on_mm4,
    P1State.I_AUTH_SENT: _on_mm6,
    P1State.R_SA_SENT: _on_mm3,
    P1State.R_KE_SENT: _on_mm5_or_hold,
}


def on_message(core: Negotiator, sa: IsakmpSa, inb: Inbound) -> None:
    """A Main Mode message for an existing ISAKMP SA."""
    if inb.message.header.message_id != 0 or sa.exchange is not MM:
        core.counters.dropped_unexpected += 1
        return
    seen = sa.flight.classify(inb.digest)
    if seen is Seen.LAST:
        core.answer_duplicate(sa.flight)
        return
    if seen is Seen.OLD or (sa.held is not None and sa.held[0] == inb.digest):
        core.counters.dropped_replay += 1
        return
    handler = _STATES.get(sa.state)
    if handler is None:
        core.counters.dropped_replay += 1  # late message for a finished (or dead) exchange
        return
    try:
        handler(core, sa, inb)
    except IsakmpError:
        core.counters.dropped_malformed += 1
