"""Aggressive Mode (RFC 2409 5) with pre-shared keys, both roles.

    Initiator                               Responder
    AM1  SA, KE, Ni, IDii, VID...     ->
                                            (SkeyidRequest for the definition IDii names)
                                      <-    AM2  SA, KE, Nr, IDir, VID... [, NAT-D], HASH_R
    (SkeyidRequest by definition)
    AM3* HASH_I [, NAT-D] [, N(INITIAL-CONTACT)] ->

The KE travels in the first message, so the group cannot be negotiated: an initiator
refuses a definition whose proposals name more than one group, and a responder refuses an
offer that does. The responder picks the definition (and so the pre-shared key) by the
initiator's ID: a definition naming that ID (for this peer address, else for any address)
beats one that accepts any ID. AM3 is sent encrypted (as strongSwan and libreswan do) and
accepted either way (RFC 2409 allows it in the clear).

The responder answers AM1 only once SKEYID is back from the parent (HASH_R needs it); a
repeated AM1 meanwhile is dropped, afterwards answered with the same AM2. AM3 is never
resent on a timer: a lost AM3 shows as a repeated AM2, answered from memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ikepriv.child_negotiator import informational
from ikepriv.child_negotiator.cookies import ZERO_COOKIE
from ikepriv.child_negotiator.identities import phase1_id, phase1_id_matches
from ikepriv.child_negotiator.phase1_main import _has_other_sa, install_keys
from ikepriv.child_negotiator.proposals import (
    check_ike_reply,
    ike_choices,
    ike_lifetime,
    ike_sa_payload,
    parse_ike_transform,
    select_ike,
)
from ikepriv.child_negotiator.retransmit import Seen
from ikepriv.child_negotiator.sa_table import IsakmpSa, P1State
from ikepriv.child_negotiator.wire import OpenError, open_message, seal
from ikepriv.crypto import dh
from ikepriv.crypto.errors import CryptoError
from ikepriv.crypto.oakley import hash_i, hash_r
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
    Proposal,
    SAPayload,
    VendorIdPayload,
    build_message,
    encode_message,
)
from ikepriv.isakmp.constants import IKE_PORT, AuthMethod, ExchangeType, NotifyType

if TYPE_CHECKING:
    from ikepriv.child_negotiator.engine import Inbound, IPAddress, Negotiator

AM = ExchangeType.AGGRESSIVE
EXTENSION = "aggressive"
Then = Callable[["Negotiator", IsakmpSa], None]  # what runs once SKEYID is installed


@dataclass(slots=True)
class AmState:
    """What Aggressive Mode keeps between messages, in IsakmpSa.extensions."""

    my_id: IdPayload
    peer_id: IdPayload | None = None  # IDii / IDir: unauthenticated until the HASH checks
    peer_hash: bytes = b""  # initiator: HASH_R of AM2, checked once SKEYID is back
    reply_proposal: Proposal | None = None  # responder: the offered proposal, one transform


def _state(sa: IsakmpSa) -> AmState:
    st = sa.extensions.get(EXTENSION)
    assert isinstance(st, AmState)
    return st


def _plain(sa: IsakmpSa, payloads: list[Payload]) -> bytes:
    return encode_message(build_message(sa.icookie, sa.rcookie, AM, 0, payloads))


def _vids(core: Negotiator, sa: IsakmpSa) -> list[Payload]:
    return [VendorIdPayload(v) for v in core.hooks.vendor_ids(sa)]


def _single(payloads: tuple[Payload, ...], kind: type) -> Payload | None:
    found = [p for p in payloads if isinstance(p, kind)]
    return found[0] if len(found) == 1 else None


def _ask_skeyid(core: Negotiator, sa: IsakmpSa, then: Then) -> None:
    """SKEYID for the SA's definition (both roles: the responder knows it from IDii)."""
    assert sa.choice is not None
    number, prf, ni, nr = sa.definition.number, sa.choice.hash, sa.ni, sa.nr
    core.request(
        lambda rid: SkeyidRequest(rid, number, None, prf, ni, nr),
        SkeyidReply,
        lambda reply: _on_skeyid(core, sa, reply, then),
    )


def _on_skeyid(core: Negotiator, sa: IsakmpSa, reply: SkeyidReply, then: Then) -> None:
    waiting = P1State.I_AM_SKEYID_WAIT if sa.role is Role.INITIATOR else P1State.R_AM_SKEYID_WAIT
    if sa.state is not waiting or sa.keys is not None:
        core.counters.dropped_stale_reply += 1
        return
    if reply.error is not ErrorCode.OK:
        core.counters.parent_errors += 1
        core.fail_isakmp(sa, f"parent refused SKEYID ({reply.error.name})")
        return
    install_keys(core, sa, reply.skeyid)
    then(core, sa)


# ---------------------------------------------------------------------------- initiator


def initiate(
    core: Negotiator, d: Phase1Def, local: IPAddress, remote: IPAddress
) -> IsakmpSa | None:
    offered = ike_choices(d)
    if not offered:
        core.log(LogLevel.ERR, f"phase 1 {d.name}: no proposal this implementation can offer")
        return None
    groups = {c.group for c in offered}
    if len(groups) != 1:
        core.log(
            LogLevel.ERR,
            f"phase 1 {d.name}: Aggressive Mode cannot negotiate the DH group, "
            f"but the proposals name {len(groups)} groups",
        )
        return None
    sa = IsakmpSa(
        tunnel_id=core.new_tunnel_id(),
        definition=d,
        role=Role.INITIATOR,
        exchange=AM,
        local=Endpoint(local, IKE_PORT),
        remote=Endpoint(remote, IKE_PORT),
        natt=False,
        icookie=core.cookies.initiator(),
        rcookie=ZERO_COOKIE,
        state=P1State.I_AM1_SENT,
        created=core.now,
    )
    sa.offered = offered
    sa_payload = ike_sa_payload(offered)
    sa.sa_i_body = sa_payload.encode_body()
    key = dh.generate(offered[0].group, core.random)
    sa.dh = key
    sa.g_xi = key.public
    sa.ni = core.nonce()
    my_id = phase1_id(d.local_id)
    sa.extensions[EXTENSION] = AmState(my_id)
    core.add_isakmp(sa)
    core.log(LogLevel.INFO, f"phase 1 {d.name}: initiating Aggressive Mode to {remote}")
    out: list[Payload] = [sa_payload, KePayload(sa.g_xi), NoncePayload(sa.ni), my_id]
    core.transmit(sa, sa.flight, (_plain(sa, [*out, *_vids(core, sa)]),), retransmit=True)
    return sa


def _on_am2(core: Negotiator, sa: IsakmpSa, inb: Inbound) -> None:
    payloads = inb.message.payloads
    sa_reply = _single(payloads, SAPayload)
    ke, nonce = _single(payloads, KePayload), _single(payloads, NoncePayload)
    idp, hp = _single(payloads, IdPayload), _single(payloads, HashPayload)
    if inb.message.encrypted or sa_reply is None or ke is None or nonce is None:
        core.counters.dropped_unexpected += 1
        return
    if idp is None or hp is None:
        core.counters.dropped_unexpected += 1
        return
    assert isinstance(sa_reply, SAPayload) and isinstance(ke, KePayload)
    assert isinstance(nonce, NoncePayload) and isinstance(idp, IdPayload)
    assert isinstance(hp, HashPayload) and sa.dh is not None
    rcookie = inb.message.header.rcookie
    choice = check_ike_reply(sa.offered, sa_reply)
    if choice is None:
        core.counters.dropped_policy += 1
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, rcookie, NotifyType.NO_PROPOSAL_CHOSEN
        )
        core.fail_isakmp(sa, "responder chose a proposal we did not offer")
        return
    try:
        g_xy = sa.dh.shared(ke.data)
    except CryptoError:
        core.counters.dropped_malformed += 1
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, rcookie, NotifyType.INVALID_KEY_INFORMATION
        )
        return
    core.sas.bind_rcookie(sa, rcookie)
    sa.choice = choice
    sa.peer_vendor_ids = frozenset(p.data for p in payloads if isinstance(p, VendorIdPayload))
    sa.g_xr, sa.nr, sa.g_xy = ke.data, nonce.data, g_xy
    sa.dh.wipe()
    sa.dh = None
    st = _state(sa)
    st.peer_id, st.peer_hash = idp, hp.data
    sa.flight.accepted(inb.digest)  # AM2 arrived: AM1 needs no more resending
    core.hooks.on_ke_payloads(sa, payloads, inb)
    sa.state = P1State.I_AM_SKEYID_WAIT
    _ask_skeyid(core, sa, _finish_initiator)


def _finish_initiator(core: Negotiator, sa: IsakmpSa) -> None:
    """SKEYID is here: check HASH_R and the responder's ID, then send AM3 and be done."""
    st = _state(sa)
    assert sa.keys is not None and sa.choice is not None and st.peer_id is not None
    expected = hash_r(
        sa.choice.hash,
        sa.keys.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.icookie,
        sa.rcookie,
        sa.sa_i_body,
        st.peer_id.body,
    )
    if not digests_equal(expected, st.peer_hash):
        core.counters.dropped_auth += 1
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, sa.rcookie, NotifyType.AUTHENTICATION_FAILED
        )
        core.fail_isakmp(sa, "HASH_R does not verify (pre-shared key mismatch?)")
        return
    if not phase1_id_matches(sa.definition.remote_id, st.peer_id):
        core.counters.dropped_policy += 1
        informational.send_notify(core, sa, NotifyType.INVALID_ID_INFORMATION)
        core.fail_isakmp(sa, "responder identity is not the one defined")
        return
    h = hash_i(
        sa.choice.hash,
        sa.keys.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.icookie,
        sa.rcookie,
        sa.sa_i_body,
        st.my_id.body,
    )
    out: list[Payload] = [HashPayload(h), *core.hooks.ke_payloads(sa)]
    if not _has_other_sa(core, sa):  # the same rule as Main Mode
        out.append(NotifyPayload.initial_contact(sa.cookies))
    core.transmit(sa, sa.flight, (seal(sa, AM, 0, out),), retransmit=False)
    sa.peer_id = st.peer_id
    sa.lifetime = ike_lifetime(sa.definition, sa.choice)
    core.isakmp_established(sa)


# ---------------------------------------------------------------------------- responder


def responder_definition(
    core: Negotiator, local: IPAddress, peer: IPAddress, idii: IdPayload
) -> Phase1Def | None:
    """The Aggressive Mode PSK definition for this initiator: one naming its ID beats one
    accepting any ID; then an exact peer address beats a wildcard one; then the lowest
    number."""
    best: tuple[tuple[bool, bool, int], Phase1Def] | None = None
    for number, d in core.config.phase1.items():
        if d.mode != AM or d.auth_method != AuthMethod.PRE_SHARED_KEY or d.local_addr != local:
            continue
        if d.remote_addr is None:
            if d.local_addr.version != peer.version:
                continue
        elif d.remote_addr != peer:
            continue
        if not phase1_id_matches(d.remote_id, idii):
            continue
        rank = (d.remote_id is None, d.remote_addr is None, number)
        if best is None or rank < best[0]:
            best = (rank, d)
    return best[1] if best is not None else None


def _mixed_groups(offer: SAPayload) -> bool:
    groups = set()
    for proposal in offer.proposals:
        for transform in proposal.transforms:
            choice = parse_ike_transform(transform)
            if choice is not None:
                groups.add(choice.group)
    return len(groups) > 1


_AM1_KINDS = (SAPayload, KePayload, NoncePayload, IdPayload, VendorIdPayload)


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
    offer, ke = _single(payloads, SAPayload), _single(payloads, KePayload)
    nonce, idp = _single(payloads, NoncePayload), _single(payloads, IdPayload)
    if (
        offer is None
        or ke is None
        or nonce is None
        or idp is None
        or any(not isinstance(p, _AM1_KINDS) for p in payloads)
    ):
        core.counters.dropped_unexpected += 1
        return
    assert isinstance(offer, SAPayload) and isinstance(ke, KePayload)
    assert isinstance(nonce, NoncePayload) and isinstance(idp, IdPayload)

    def refuse(notify: NotifyType) -> None:
        core.notify_clear(inb.local, inb.remote, inb.natt, header.icookie, rcookie, notify)

    d = responder_definition(core, inb.local.addr, inb.remote.addr, idp)
    if d is None:
        core.counters.dropped_policy += 1
        core.log(LogLevel.NOTICE, f"Aggressive Mode from {inb.remote.addr}: unknown identity")
        refuse(NotifyType.INVALID_ID_INFORMATION)
        return
    if not core.half_open.admit(inb.remote.addr):
        core.counters.dropped_half_open += 1
        return
    selected = select_ike(d, offer)
    if selected is None or _mixed_groups(offer):
        core.counters.dropped_policy += 1
        core.log(
            LogLevel.NOTICE, f"phase 1 {d.name}: no acceptable proposal from {inb.remote.addr}"
        )
        refuse(NotifyType.NO_PROPOSAL_CHOSEN)
        return
    proposal, choice = selected
    try:
        dh.validate_public(choice.group, ke.data)
        key = dh.generate(choice.group, core.random)
        g_xy = key.shared(ke.data)
    except CryptoError:
        core.counters.dropped_malformed += 1
        refuse(NotifyType.INVALID_KEY_INFORMATION)
        return
    sa = IsakmpSa(
        tunnel_id=core.new_tunnel_id(),
        definition=d,
        role=Role.RESPONDER,
        exchange=AM,
        local=inb.local,
        remote=inb.remote,
        natt=inb.natt,
        icookie=header.icookie,
        rcookie=rcookie,
        state=P1State.R_AM_SKEYID_WAIT,
        created=core.now,
    )
    sa.choice = choice
    sa.sa_i_body = offer.encode_body()  # the codec re-encodes accepted input byte for byte
    sa.peer_vendor_ids = frozenset(p.data for p in payloads if isinstance(p, VendorIdPayload))
    sa.g_xi, sa.ni, sa.g_xy = ke.data, nonce.data, g_xy
    sa.g_xr = key.public
    key.wipe()
    sa.nr = core.nonce()
    sa.extensions[EXTENSION] = AmState(phase1_id(d.local_id), idp, reply_proposal=proposal)
    core.add_isakmp(sa)
    sa.flight.accepted(inb.digest)
    _ask_skeyid(core, sa, _send_am2)


def _send_am2(core: Negotiator, sa: IsakmpSa) -> None:
    st = _state(sa)
    assert sa.keys is not None and sa.choice is not None and st.reply_proposal is not None
    h = hash_r(
        sa.choice.hash,
        sa.keys.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.icookie,
        sa.rcookie,
        sa.sa_i_body,
        st.my_id.body,
    )
    out: list[Payload] = [
        SAPayload.ipsec([st.reply_proposal]),
        KePayload(sa.g_xr),
        NoncePayload(sa.nr),
        st.my_id,
        *_vids(core, sa),
        *core.hooks.ke_payloads(sa),
        HashPayload(h),
    ]
    sa.state = P1State.R_AM2_SENT
    core.transmit(sa, sa.flight, (_plain(sa, out),), retransmit=True)


def _on_am3(core: Negotiator, sa: IsakmpSa, inb: Inbound) -> None:
    st = _state(sa)
    assert sa.keys is not None and sa.choice is not None and sa.iv is not None
    assert st.peer_id is not None
    payloads: tuple[Payload, ...]
    if inb.message.encrypted:
        try:
            _, payloads = open_message(sa, inb.message)
        except OpenError:
            core.counters.dropped_auth += 1
            core.notify_clear(
                sa.local,
                sa.remote,
                sa.natt,
                sa.icookie,
                sa.rcookie,
                NotifyType.AUTHENTICATION_FAILED,
            )
            return
    else:
        payloads = inb.message.payloads
    hp = _single(payloads, HashPayload)
    if hp is None:
        core.counters.dropped_malformed += 1
        return
    assert isinstance(hp, HashPayload)
    expected = hash_i(
        sa.choice.hash,
        sa.keys.skeyid,
        sa.g_xi,
        sa.g_xr,
        sa.icookie,
        sa.rcookie,
        sa.sa_i_body,
        st.peer_id.body,
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
    if inb.message.encrypted:
        sa.iv.advance(0, inb.message.ciphertext)
    sa.flight.accepted(inb.digest)
    core.hooks.on_ke_payloads(sa, payloads, inb)
    core.hooks.on_authenticated(sa, inb)  # AM3 is where a NAT-T peer moves to port 4500
    sa.peer_id = st.peer_id
    sa.lifetime = ike_lifetime(sa.definition, sa.choice)
    initial_contact = any(
        isinstance(p, NotifyPayload) and p.notify_type == NotifyType.INITIAL_CONTACT
        for p in payloads
    )
    core.isakmp_established(sa)
    if initial_contact:
        informational.initial_contact(core, sa)


# ---------------------------------------------------------------------------- dispatch

_STATES = {
    P1State.I_AM1_SENT: _on_am2,
    P1State.R_AM2_SENT: _on_am3,
}


def on_message(core: Negotiator, sa: IsakmpSa, inb: Inbound) -> None:
    """An Aggressive Mode message for an existing ISAKMP SA."""
    if inb.message.header.message_id != 0 or sa.exchange is not AM:
        core.counters.dropped_unexpected += 1
        return
    seen = sa.flight.classify(inb.digest)
    if seen is Seen.LAST:
        core.answer_duplicate(sa.flight)
        return
    if seen is Seen.OLD:
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
