"""Aggressive Mode (RFC 2409 5) with pre-shared keys or signatures, both roles.

    Initiator                               Responder
    (NonceRequest: Ni is the parent's)
    AM1  SA, KE, Ni, IDii, VID...     ->
                                            (SkeyidRequest for the definition IDii names;
                                             the parent makes Nr along with SKEYID)
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
repeated AM1 meanwhile is dropped, afterwards answered with the same AM2 (a few times at
most; AM2 is resent on the timer once only: AM1 proves nothing about its source). The DH and
SKEYID work an AM1 costs before any proof is rationed per source, prefix and definition
(Settings.am_budget_*). AM3 is never
resent on a timer: a lost AM3 shows as a repeated AM2, answered from memory. What Main
Mode does the same way lives in phase1.py.

With signatures (exchanges/signature.py): AM1 and AM2 add a CR per trust anchor, SKEYID is
computed here (the responder's Nr is its own), AM2 and AM3 carry [CERT...] and SIG instead
of HASH, and our SIG comes from the parent (SignatureRequest): the responder's before AM2
(within the same per-source and per-definition ration as the PSK SKEYID request), the
initiator's once AM2 authenticated the responder. The responder picks the definition by
IDii among those whose method the offer names.
"""

from __future__ import annotations

from dataclasses import dataclass

from ikepriv.child_negotiator.core.certificates import identity_matches
from ikepriv.child_negotiator.core.context import Core
from ikepriv.child_negotiator.core.datagram import Inbound, IPAddress
from ikepriv.child_negotiator.core.exchanges import phase1, signature
from ikepriv.child_negotiator.core.exchanges.phase1 import notify, plain, single
from ikepriv.child_negotiator.core.identities import phase1_id, phase1_id_matches
from ikepriv.child_negotiator.core.offers import parse_ike_transform, select_ike
from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.child_negotiator.core.states import P1State, transition
from ikepriv.child_negotiator.core.wire import OpenError, open_message, seal
from ikepriv.crypto import dh
from ikepriv.crypto.prf import digests_equal
from ikepriv.ipc.messages import Endpoint, LogLevel, Phase1Def
from ikepriv.isakmp import (
    CertRequestPayload,
    HashPayload,
    IdPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SAPayload,
    SigPayload,
    VendorIdPayload,
)
from ikepriv.isakmp.constants import SIGNATURE_METHODS, AuthMethod, ExchangeType, NotifyType

AM = ExchangeType.AGGRESSIVE
EXTENSION = "aggressive"


@dataclass(slots=True)
class AmState:
    """What Aggressive Mode keeps between messages, in IsakmpSa.extensions."""

    my_id: IdPayload
    peer_id: IdPayload | None = None  # IDii / IDir: unauthenticated until the HASH checks
    peer_hash: bytes = b""  # initiator: HASH_R of AM2, checked once SKEYID is back
    reply_proposal: Proposal | None = None  # responder: the offered proposal, one transform
    am1_sa: SAPayload | None = None  # initiator: our offer, until the parent's Ni is here
    peer_payloads: tuple[Payload, ...] = ()  # signatures: AM2 (CERT, SIG), checked later


def _state(sa: IsakmpSa) -> AmState:
    st = sa.extensions.get(EXTENSION)
    assert isinstance(st, AmState)
    return st


# ---------------------------------------------------------------------------- initiator


def initiate(
    core: Core, d: Phase1Def, local: Endpoint, remote: Endpoint, natt: bool
) -> IsakmpSa | None:
    made = phase1.new_initiator(core, d, AM, P1State.I_AM_NONCE_WAIT, local, remote, natt)
    if made is None:
        return None
    sa, sa_payload = made
    groups = {c.group for c in sa.offered}
    if len(groups) != 1:
        core.log(
            LogLevel.ERR,
            f"phase 1 {d.name}: Aggressive Mode cannot negotiate the DH group, "
            f"but the proposals name {len(groups)} groups",
        )
        return None
    key = dh.generate(sa.offered[0].group, core.random)
    sa.dh = key
    sa.g_xi = key.public
    my_id = phase1_id(d.local_id)
    sa.extensions[EXTENSION] = AmState(my_id, am1_sa=sa_payload)
    core.add_isakmp(sa)
    core.log(LogLevel.INFO, f"phase 1 {d.name}: initiating Aggressive Mode to {remote.addr}")
    phase1.ask_nonce(core, sa, _send_am1)  # AM1 carries Ni, which the parent makes
    return sa


def _send_am1(core: Core, sa: IsakmpSa) -> None:
    st = _state(sa)
    assert st.am1_sa is not None
    out: list[Payload] = [st.am1_sa, KePayload(sa.g_xi), NoncePayload(sa.ni), st.my_id]
    if signature.uses_signatures(sa.definition):
        out += signature.cert_requests(core, (sa.definition,))
    out += phase1.our_vendor_ids(core, sa)
    st.am1_sa = None
    transition(sa, P1State.I_AM1_SENT)
    core.transmit(sa, sa.flight, (plain(sa, out),), retransmit=True)


def _on_am2(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    payloads = inb.message.payloads
    sa_reply = single(payloads, SAPayload)
    ke, nonce = single(payloads, KePayload), single(payloads, NoncePayload)
    idp, hp = single(payloads, IdPayload), single(payloads, HashPayload)
    signed = signature.uses_signatures(sa.definition)
    auth = single(payloads, SigPayload if signed else HashPayload)
    if (
        inb.message.encrypted
        or not isinstance(sa_reply, SAPayload)
        or not isinstance(ke, KePayload)
        or not isinstance(nonce, NoncePayload)
        or not isinstance(idp, IdPayload)
        or auth is None
    ):
        core.counters.dropped_unexpected += 1
        return
    rcookie = inb.message.header.rcookie
    if not phase1.peer_nonce_ok(core, nonce):
        return
    choice = phase1.accept_reply(core, sa, sa_reply, rcookie)
    if choice is None:
        return
    if not phase1.initiator_dh(core, sa, ke, nonce):
        core.notify_clear(
            sa.local, sa.remote, sa.natt, sa.icookie, rcookie, NotifyType.INVALID_KEY_INFORMATION
        )
        return
    core.sas.bind_rcookie(sa, rcookie)
    sa.choice = choice
    sa.peer_vendor_ids = phase1.peer_vendor_ids(payloads)
    st = _state(sa)
    st.peer_id = idp
    sa.flight.accepted(inb.digest)  # AM2 arrived: AM1 needs no more resending
    core.hooks.on_ke_payloads(sa, payloads, inb)
    transition(sa, P1State.I_AM_SKEYID_WAIT)
    if signed:
        st.peer_payloads = payloads
        signature.note_requests(sa, payloads)
        signature.local_skeyid(core, sa)
        _check_responder_signed(core, sa)
        return
    assert isinstance(hp, HashPayload)
    st.peer_hash = hp.data
    phase1.ask_skeyid(core, sa, P1State.I_AM_SKEYID_WAIT, _finish_initiator)


def _check_responder_signed(core: Core, sa: IsakmpSa) -> None:
    """AM2 with signatures: authenticate the responder, then ask for our signature."""
    st = _state(sa)
    assert st.peer_id is not None
    auth_hash = phase1.responder_hash(sa, st.peer_id.body)
    if not signature.authenticate_peer(core, sa, st.peer_id, st.peer_payloads, auth_hash):
        return
    st.peer_payloads = ()
    signature.ask_signature(core, sa, P1State.I_AM_SKEYID_WAIT, _send_am3_signed)


def _send_am3_signed(core: Core, sa: IsakmpSa, sig: bytes) -> None:
    st = _state(sa)
    assert st.peer_id is not None
    out: list[Payload] = [*signature.own_certs(core, sa), SigPayload(sig)]
    out += core.hooks.ke_payloads(sa)
    if not phase1.has_other_sa(core, sa):  # the same rule as Main Mode
        out.append(NotifyPayload.initial_contact(sa.cookies))
    core.transmit(sa, sa.flight, (seal(sa, AM, 0, out),), retransmit=False)
    phase1.established(core, sa, st.peer_id)


def _finish_initiator(core: Core, sa: IsakmpSa) -> None:
    """SKEYID is here: check HASH_R and the responder's ID, then send AM3 and be done."""
    st = _state(sa)
    assert st.peer_id is not None
    if not digests_equal(phase1.responder_hash(sa, st.peer_id.body), st.peer_hash):
        core.counters.dropped_auth += 1
        notify(core, sa, NotifyType.AUTHENTICATION_FAILED)
        core.fail_isakmp(sa, "HASH_R does not verify (pre-shared key mismatch?)")
        return
    if not phase1_id_matches(sa.definition.remote_id, st.peer_id):
        phase1.refuse_identity(core, sa, "responder")
        return
    h = phase1.initiator_hash(sa, st.my_id.body)
    out: list[Payload] = [HashPayload(h), *core.hooks.ke_payloads(sa)]
    if not phase1.has_other_sa(core, sa):  # the same rule as Main Mode
        out.append(NotifyPayload.initial_contact(sa.cookies))
    core.transmit(sa, sa.flight, (seal(sa, AM, 0, out),), retransmit=False)
    phase1.established(core, sa, st.peer_id)


# ---------------------------------------------------------------------------- responder


def responder_definition(
    core: Core,
    local: IPAddress,
    peer: IPAddress,
    idii: IdPayload,
    methods: frozenset[AuthMethod] = frozenset(),
) -> Phase1Def | None:
    """The Aggressive Mode definition for this initiator: a PSK one, or a signature one
    whose method the offer names (`methods`) and whose files loaded; one naming its ID
    beats one accepting any ID; then an exact peer address beats a wildcard one; then the
    lowest number."""
    best: tuple[tuple[bool, bool, int], Phase1Def] | None = None
    exact, wild = core.config.for_peer(AM, local, peer)  # indexed: no pass over all
    for d in (*exact, *wild):
        if not _may_answer(core, d, methods):
            continue
        # a signature definition compares a DN as a Name (the peer's encoding may differ)
        matches = identity_matches if d.auth_method in SIGNATURE_METHODS else phase1_id_matches
        if not matches(d.remote_id, idii):
            continue
        rank = (d.remote_id is None, d.remote_addr is None, d.number)
        if best is None or rank < best[0]:
            best = (rank, d)
    return best[1] if best is not None else None


def _may_answer(core: Core, d: Phase1Def, methods: frozenset[AuthMethod]) -> bool:
    if d.auth_method == AuthMethod.PRE_SHARED_KEY:
        return True
    return d.auth_method in methods and d.number in core.credentials


def _mixed_groups(offer: SAPayload) -> bool:
    groups = set()
    for proposal in offer.proposals:
        for transform in proposal.transforms:
            choice = parse_ike_transform(transform)
            if choice is not None:
                groups.add(choice.group)
    return len(groups) > 1


_AM1_KINDS = (SAPayload, KePayload, NoncePayload, IdPayload, VendorIdPayload)
_AM1_SIGNED_KINDS = (*_AM1_KINDS, CertRequestPayload)  # an offer of signature methods


def on_first_message(core: Core, inb: Inbound) -> None:
    rcookie = phase1.responder_cookie(core, inb, on_message)
    if rcookie is None:
        return
    header = inb.message.header
    payloads = inb.message.payloads
    offer, ke = single(payloads, SAPayload), single(payloads, KePayload)
    nonce, idp = single(payloads, NoncePayload), single(payloads, IdPayload)
    methods = signature.offered_methods(offer) if isinstance(offer, SAPayload) else frozenset()
    kinds = _AM1_SIGNED_KINDS if methods & SIGNATURE_METHODS else _AM1_KINDS
    if (
        not isinstance(offer, SAPayload)
        or not isinstance(ke, KePayload)
        or not isinstance(nonce, NoncePayload)
        or not isinstance(idp, IdPayload)
        or any(not isinstance(p, kinds) for p in payloads)
    ):
        core.counters.dropped_unexpected += 1
        return

    if not phase1.peer_nonce_ok(core, nonce):
        return

    def refuse(notify_type: NotifyType) -> None:
        core.notify_clear(inb.local, inb.remote, inb.natt, header.icookie, rcookie, notify_type)

    d = responder_definition(core, inb.local.addr, inb.remote.addr, idp, methods)
    if d is None:
        core.counters.dropped_policy += 1
        core.log_unproven(
            "AM unknown identity",
            LogLevel.NOTICE,
            f"Aggressive Mode from {inb.remote.addr}: unknown identity",
        )
        refuse(NotifyType.INVALID_ID_INFORMATION)
        return
    selected = select_ike(d, offer)
    if selected is None or _mixed_groups(offer):
        core.counters.dropped_policy += 1
        core.log_unproven(
            "no acceptable proposal",
            LogLevel.NOTICE,
            f"phase 1 {d.name}: no acceptable proposal from {inb.remote.addr}",
        )
        refuse(NotifyType.NO_PROPOSAL_CHOSEN)
        return
    proposal, choice = selected
    # DH and an SKEYID request before the peer proved anything: bounded per source, prefix
    # and definition, so forged AM1 cannot eat the CPU or the parent's SKEYID bucket
    if not core.responder_work.take(inb.remote.addr, d.number, core.now):
        core.counters.dropped_work_budget += 1
        return
    ours = phase1.responder_dh(core, choice.group, ke)
    if ours is None:
        refuse(NotifyType.INVALID_KEY_INFORMATION)
        return
    sa = phase1.new_responder(core, inb, d, P1State.R_AM_SKEYID_WAIT, rcookie, choice, offer)
    phase1.take_initiator_values(core, sa, ke, nonce, ours)
    sa.extensions[EXTENSION] = AmState(phase1_id(d.local_id), idp, reply_proposal=proposal)
    core.add_isakmp(sa)
    sa.flight.accepted(inb.digest)
    if signature.uses_signatures(d):
        signature.note_requests(sa, payloads)
        sa.nr = signature.responder_nonce(core)
        signature.local_skeyid(core, sa)
        signature.ask_signature(core, sa, P1State.R_AM_SKEYID_WAIT, _send_am2_signed)
        return
    phase1.ask_skeyid(core, sa, P1State.R_AM_SKEYID_WAIT, _send_am2)


def _send_am2(core: Core, sa: IsakmpSa) -> None:
    st = _state(sa)
    assert st.reply_proposal is not None
    out: list[Payload] = [
        SAPayload.ipsec([st.reply_proposal]),
        KePayload(sa.g_xr),
        NoncePayload(sa.nr),
        st.my_id,
        *phase1.our_vendor_ids(core, sa),
        *core.hooks.ke_payloads(sa),
        HashPayload(phase1.responder_hash(sa, st.my_id.body)),
    ]
    transition(sa, P1State.R_AM2_SENT)
    # the AM1 is unproven: AM2 is resent once on the timer (a lost AM3 shows only so) and
    # answers a repeated AM1 a few times at most (engine.may_answer_repeat)
    core.transmit(sa, sa.flight, (plain(sa, out),), retransmit=True)


def _send_am2_signed(core: Core, sa: IsakmpSa, sig: bytes) -> None:
    st = _state(sa)
    assert st.reply_proposal is not None
    out: list[Payload] = [
        SAPayload.ipsec([st.reply_proposal]),
        KePayload(sa.g_xr),
        NoncePayload(sa.nr),
        st.my_id,
        *signature.own_certs(core, sa),
        *signature.cert_requests(core, (sa.definition,)),
        *phase1.our_vendor_ids(core, sa),
        *core.hooks.ke_payloads(sa),
        SigPayload(sig),
    ]
    transition(sa, P1State.R_AM2_SENT)
    # as _send_am2: resent once on the timer, answers a repeated AM1 a few times at most
    core.transmit(sa, sa.flight, (plain(sa, out),), retransmit=True)


def _on_am3(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    st = _state(sa)
    assert sa.iv is not None and st.peer_id is not None
    payloads: tuple[Payload, ...]
    if inb.message.encrypted:
        try:
            _, payloads = open_message(sa, inb.message)
        except OpenError:
            core.counters.dropped_auth += 1
            notify(core, sa, NotifyType.AUTHENTICATION_FAILED)
            return
    else:
        payloads = inb.message.payloads
    if signature.uses_signatures(sa.definition):
        _on_am3_signed(core, sa, inb, payloads)
        return
    hp = single(payloads, HashPayload)
    if not isinstance(hp, HashPayload):
        core.counters.dropped_malformed += 1
        return
    if not phase1.check_initiator_hash(core, sa, st.peer_id.body, hp.data):
        return
    if inb.message.encrypted:
        sa.iv.advance(0, inb.message.ciphertext)
    sa.flight.accepted(inb.digest)
    core.hooks.on_ke_payloads(sa, payloads, inb)
    core.hooks.on_authenticated(sa, inb)  # AM3 is where a NAT-T peer moves to port 4500
    phase1.established(core, sa, st.peer_id, payloads)


def _on_am3_signed(core: Core, sa: IsakmpSa, inb: Inbound, payloads: tuple[Payload, ...]) -> None:
    st = _state(sa)
    assert sa.iv is not None and st.peer_id is not None
    if inb.message.encrypted:
        sa.iv.advance(0, inb.message.ciphertext)  # it decrypted: a refusal notify follows it
    auth_hash = phase1.initiator_hash(sa, st.peer_id.body)
    if not signature.authenticate_peer(core, sa, st.peer_id, payloads, auth_hash):
        return
    sa.flight.accepted(inb.digest)
    core.hooks.on_ke_payloads(sa, payloads, inb)
    core.hooks.on_authenticated(sa, inb)  # AM3 is where a NAT-T peer moves to port 4500
    phase1.established(core, sa, st.peer_id, payloads)


# ---------------------------------------------------------------------------- dispatch

_STATES = {
    P1State.I_AM1_SENT: _on_am2,
    P1State.R_AM2_SENT: _on_am3,
}


def on_message(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    """An Aggressive Mode message for an existing ISAKMP SA."""
    phase1.dispatch(core, sa, inb, _STATES)
