"""Main Mode (identity protection, RFC 2409 5) with pre-shared keys, both roles.

    Initiator                          Responder
    MM1  SA, VID...              ->   (and a NonceRequest: Ni is the parent's)
                                 <-    MM2  SA (one transform, echoed), VID...
    MM3  KE, Ni [, hooks]        ->
                                       (SkeyidRequest by peer address; Nr comes with it)
                                 <-    MM4  KE, Nr [, hooks]
    (SkeyidRequest by definition, naming Ni)
    MM5* IDii, HASH_I [, N(INITIAL-CONTACT)] ->
                                 <-    MM6* IDir, HASH_R

The pre-shared key never enters the core: SKEYID comes from the parent, and our own nonce
too, so the prf input is never the child's alone (parent_kernel/nonces.py). An initiator
that gets MM2 before its nonce holds it until the nonce arrives; a responder sends MM4 once
SKEYID and Nr are back (so it has the keys before any MM5 can come). Until MM3 echoes our
cookie, nothing shows that MM1 came from its source address: the responder's state is
cheap and evictable (engine.add_isakmp), and MM2 is sent once per MM1 received, a few
times at most, never on a timer. MM4 is resent on a timer; MM6 only when MM5 comes again.
What Aggressive Mode does the same way lives in phase1.py.
"""

from __future__ import annotations

from ikepriv.child_negotiator.core.context import Core
from ikepriv.child_negotiator.core.datagram import Inbound
from ikepriv.child_negotiator.core.exchanges import phase1
from ikepriv.child_negotiator.core.exchanges.phase1 import notify, plain, single
from ikepriv.child_negotiator.core.identities import phase1_id, phase1_id_matches
from ikepriv.child_negotiator.core.offers import select_ike
from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.child_negotiator.core.states import P1State, transition
from ikepriv.child_negotiator.core.wire import OpenError, open_message, seal
from ikepriv.crypto import dh
from ikepriv.crypto.prf import digests_equal
from ikepriv.ipc.messages import Endpoint, LogLevel, Phase1Def
from ikepriv.isakmp import (
    HashPayload,
    IdPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SAPayload,
    VendorIdPayload,
)
from ikepriv.isakmp.constants import ExchangeType, NotifyType

MM = ExchangeType.IDENTITY_PROTECTION


def _ke_and_nonce(inb: Inbound) -> tuple[KePayload, NoncePayload] | None:
    """KE and nonce of an unencrypted MM3/MM4, one of each."""
    payloads = inb.message.payloads
    ke, nonce = single(payloads, KePayload), single(payloads, NoncePayload)
    if inb.message.encrypted or not isinstance(ke, KePayload):
        return None
    return (ke, nonce) if isinstance(nonce, NoncePayload) else None


# ---------------------------------------------------------------------------- initiator


def initiate(
    core: Core, d: Phase1Def, local: Endpoint, remote: Endpoint, natt: bool
) -> IsakmpSa | None:
    made = phase1.new_initiator(core, d, MM, P1State.I_SA_SENT, local, remote, natt)
    if made is None:
        return None
    sa, sa_payload = made
    core.add_isakmp(sa)
    core.log(LogLevel.INFO, f"phase 1 {d.name}: initiating Main Mode to {remote.addr}")
    out = [sa_payload, *phase1.our_vendor_ids(core, sa)]
    core.transmit(sa, sa.flight, (plain(sa, out),), retransmit=True)
    phase1.ask_nonce(core, sa, _on_held_mm2)  # Ni, the parent's, is needed for MM3
    return sa


def _on_held_mm2(core: Core, sa: IsakmpSa) -> None:
    """Our nonce is here: an MM2 that came before it is handled now."""
    if sa.held is not None and sa.state is P1State.I_SA_SENT:
        _, held = sa.held
        sa.held = None
        _on_mm2(core, sa, held)  # type: ignore[arg-type]


def _on_mm2(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    payloads = inb.message.payloads
    sa_reply = single(payloads, SAPayload)
    if inb.message.encrypted or not isinstance(sa_reply, SAPayload):
        core.counters.dropped_unexpected += 1
        return
    if not sa.ni:  # the parent's nonce is not back yet: keep one MM2 for then
        if sa.held is not None:
            core.counters.dropped_replay += 1
            return
        sa.held = (inb.digest, inb)
        return
    choice = phase1.accept_reply(core, sa, sa_reply, inb.message.header.rcookie)
    if choice is None:
        return
    core.sas.bind_rcookie(sa, inb.message.header.rcookie)
    sa.choice = choice
    sa.peer_vendor_ids = phase1.peer_vendor_ids(payloads)
    sa.dh = dh.generate(choice.group, core.random)
    sa.g_xi = sa.dh.public
    transition(sa, P1State.I_KE_SENT)
    sa.flight.accepted(inb.digest)
    out: list[Payload] = [KePayload(sa.g_xi), NoncePayload(sa.ni), *core.hooks.ke_payloads(sa)]
    core.transmit(sa, sa.flight, (plain(sa, out),), retransmit=True)


def _on_mm4(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    payloads = inb.message.payloads
    found = _ke_and_nonce(inb)
    if found is None:
        core.counters.dropped_unexpected += 1
        return
    ke, nonce = found
    if not phase1.peer_nonce_ok(core, nonce):
        return
    if not phase1.initiator_dh(core, sa, ke, nonce):
        notify(core, sa, NotifyType.INVALID_KEY_INFORMATION)
        return
    core.hooks.on_ke_payloads(sa, payloads, inb)
    sa.flight.accepted(inb.digest)  # MM4 arrived: MM3 needs no more resending
    transition(sa, P1State.I_SKEYID_WAIT)
    phase1.ask_skeyid(core, sa, P1State.I_SKEYID_WAIT, _send_mm5)


def _send_mm5(core: Core, sa: IsakmpSa) -> None:
    idp = phase1_id(sa.definition.local_id)
    payloads: list[Payload] = [idp, HashPayload(phase1.initiator_hash(sa, idp.body))]
    if not phase1.has_other_sa(core, sa):
        payloads.append(NotifyPayload.initial_contact(sa.cookies))
    transition(sa, P1State.I_AUTH_SENT)
    core.transmit(sa, sa.flight, (seal(sa, MM, 0, payloads),), retransmit=True)


def _on_mm6(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    if not inb.message.encrypted:
        core.counters.dropped_unexpected += 1
        return
    try:
        _, payloads = open_message(sa, inb.message)
    except OpenError:
        core.counters.dropped_auth += 1
        return
    idp, hp = single(payloads, IdPayload), single(payloads, HashPayload)
    if not isinstance(idp, IdPayload) or not isinstance(hp, HashPayload):
        core.counters.dropped_malformed += 1
        return
    assert sa.iv is not None
    if not digests_equal(phase1.responder_hash(sa, idp.body), hp.data):
        core.counters.dropped_auth += 1
        notify(core, sa, NotifyType.AUTHENTICATION_FAILED)
        core.fail_isakmp(sa, "HASH_R does not verify")
        return
    sa.iv.advance(0, inb.message.ciphertext)
    sa.flight.accepted(inb.digest)  # MM6 ends the exchange: a repeat gets no answer
    core.hooks.on_authenticated(sa, inb)
    if not phase1_id_matches(sa.definition.remote_id, idp):
        phase1.refuse_identity(core, sa, "responder")
        return
    phase1.established(core, sa, idp)


# ---------------------------------------------------------------------------- responder


def on_first_message(core: Core, inb: Inbound) -> None:
    rcookie = phase1.responder_cookie(core, inb, on_message)
    if rcookie is None:
        return
    header = inb.message.header
    payloads = inb.message.payloads
    offer = single(payloads, SAPayload)
    if not isinstance(offer, SAPayload) or any(
        not isinstance(p, SAPayload | VendorIdPayload) for p in payloads
    ):
        core.counters.dropped_unexpected += 1
        return

    def refuse(notify_type: NotifyType) -> None:
        core.notify_clear(inb.local, inb.remote, inb.natt, header.icookie, rcookie, notify_type)

    d = core.responder_definition(MM, inb.local.addr, inb.remote.addr)
    if d is None:
        core.counters.dropped_policy += 1
        refuse(NotifyType.NO_PROPOSAL_CHOSEN)
        return
    selected = select_ike(d, offer)
    if selected is None:
        core.counters.dropped_policy += 1
        core.log_unproven(
            "no acceptable proposal",
            LogLevel.NOTICE,
            f"phase 1 {d.name}: no acceptable proposal from {inb.remote.addr}",
        )
        refuse(NotifyType.NO_PROPOSAL_CHOSEN)
        return
    proposal, choice = selected
    sa = phase1.new_responder(core, inb, d, P1State.R_SA_SENT, rcookie, choice, offer)
    core.add_isakmp(sa)
    sa.flight.accepted(inb.digest)
    reply: list[Payload] = [SAPayload.ipsec([proposal]), *phase1.our_vendor_ids(core, sa)]
    # Nobody has proven the MM1 came from its source: MM2 goes out once, and again only
    # when MM1 does (a few times, engine.may_answer_repeat), never on a timer.
    core.transmit(sa, sa.flight, (plain(sa, reply),), retransmit=False)


def _on_mm3(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    payloads = inb.message.payloads
    found = _ke_and_nonce(inb)
    if found is None:
        core.counters.dropped_unexpected += 1
        return
    ke, nonce = found
    if not phase1.peer_nonce_ok(core, nonce):
        return
    if not core.prove(sa):  # MM3 echoes our cookie: the peer receives at its address
        return
    assert sa.choice is not None
    ours = phase1.responder_dh(core, sa.choice.group, ke)
    if ours is None:
        notify(core, sa, NotifyType.INVALID_KEY_INFORMATION)
        return
    phase1.take_initiator_values(core, sa, ke, nonce, ours)
    core.hooks.on_ke_payloads(sa, payloads, inb)
    sa.flight.accepted(inb.digest)
    transition(sa, P1State.R_SKEYID_WAIT)
    # MM4 carries our Nr, which the parent makes along with SKEYID
    phase1.ask_skeyid(core, sa, P1State.R_SKEYID_WAIT, _send_mm4)


def _send_mm4(core: Core, sa: IsakmpSa) -> None:
    transition(sa, P1State.R_KE_SENT)
    out: list[Payload] = [KePayload(sa.g_xr), NoncePayload(sa.nr), *core.hooks.ke_payloads(sa)]
    core.transmit(sa, sa.flight, (plain(sa, out),), retransmit=True)


def _on_held_mm5(core: Core, sa: IsakmpSa) -> None:
    """SKEYID is here: an MM5 that came before it is handled now."""
    if sa.held is not None:
        _, held = sa.held
        sa.held = None
        _on_mm5(core, sa, held)  # type: ignore[arg-type]


def _on_mm5_or_hold(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
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


def _on_mm5(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    try:
        _, payloads = open_message(sa, inb.message)
    except OpenError:
        # Garbage after decryption: almost always a pre-shared key mismatch. Said once per
        # ISAKMP SA (a retransmission does not repeat it), and the parent rate-limits lines.
        core.counters.dropped_auth += 1
        if not sa.mismatch_logged:
            sa.mismatch_logged = True
            core.log(LogLevel.WARNING, f"phase 1 tunnel {sa.tunnel_id} ({sa.definition.name}): "
                     f"message from {sa.remote.addr} does not decrypt "
                     "(pre-shared key mismatch?)")  # fmt: skip
        notify(core, sa, NotifyType.AUTHENTICATION_FAILED)
        return
    idp, hp = single(payloads, IdPayload), single(payloads, HashPayload)
    if not isinstance(idp, IdPayload) or not isinstance(hp, HashPayload):
        core.counters.dropped_malformed += 1
        notify(core, sa, NotifyType.PAYLOAD_MALFORMED)
        return
    assert sa.iv is not None
    if not phase1.check_initiator_hash(core, sa, idp.body, hp.data):
        return
    sa.iv.advance(0, inb.message.ciphertext)
    sa.flight.accepted(inb.digest)
    core.hooks.on_authenticated(sa, inb)  # MM5 is where a NAT-T peer moves to port 4500
    if not phase1_id_matches(sa.definition.remote_id, idp):
        phase1.refuse_identity(core, sa, "initiator")
        return
    my_id = phase1_id(sa.definition.local_id)
    mm6: list[Payload] = [my_id, HashPayload(phase1.responder_hash(sa, my_id.body))]
    core.transmit(sa, sa.flight, (seal(sa, MM, 0, mm6),), retransmit=False)
    phase1.established(core, sa, idp, payloads)


# ---------------------------------------------------------------------------- dispatch

_STATES = {
    P1State.I_SA_SENT: _on_mm2,
    P1State.I_KE_SENT: _on_mm4,
    P1State.I_AUTH_SENT: _on_mm6,
    P1State.R_SA_SENT: _on_mm3,
    P1State.R_KE_SENT: _on_mm5_or_hold,
}


def on_message(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    """A Main Mode message for an existing ISAKMP SA."""
    phase1.dispatch(core, sa, inb, _STATES)
