"""Quick Mode (RFC 2409 5.5), both roles, several at once under one ISAKMP SA.

    Initiator                                 Responder
    (SpiRequest)
    HASH(1), SA, Ni [, KE] [, IDci, IDcr]  ->
                                              (SpiRequest)
                                              (Phase2Install, inbound half)
                                         <-   HASH(2), SA, Nr [, KE] [, IDci, IDcr]
                                                       [, N(RESPONDER-LIFETIME)]
    Phase2Install, then HASH(3)            ->
                                              Phase2Commit (outbound half)

Each side has its inbound SA in the kernel before the message after which the other side
may send on it: the responder before QM2 (the initiator installs both SAs at QM2 and sends
at once), the initiator before QM3. The parent carries out the child's messages in order,
so a datagram sent after an install request leaves once the install is done.

The responder accepts selectors equal to or inside a phase 2 definition of the ISAKMP SA's
phase 1, and installs exactly the (narrower) selectors offered. A lifetime above ours is
accepted, shortened and announced with RESPONDER-LIFETIME; the initiator honours a shorter
one and ignores a longer one. A commit bit is accepted: the responder confirms with
CONNECTED once it has installed the SAs (after its Phase2Commit). A responder exchange that
ends without QM3 (timeout, error, the parent refusing the inbound half) removes the half.
"""

from __future__ import annotations

from collections.abc import Callable

from ikepriv.child_negotiator.core import install
from ikepriv.child_negotiator.core.context import Core
from ikepriv.child_negotiator.core.datagram import Inbound
from ikepriv.child_negotiator.core.identities import (
    IdForm,
    host_selector,
    id_selector,
    selector_id,
    selector_inside,
    shared_side,
)
from ikepriv.child_negotiator.core.informational_send import send_notify
from ikepriv.child_negotiator.core.offers import (
    Selected,
    check_ipsec_reply,
    ipsec_choices,
    ipsec_sa_payload,
    select_ipsec,
)
from ikepriv.child_negotiator.core.retransmit import Seen
from ikepriv.child_negotiator.core.sa_table import IsakmpSa, QuickExchange
from ikepriv.child_negotiator.core.states import QmState, transition
from ikepriv.child_negotiator.core.wire import (
    OpenError,
    after_first,
    leading_hash,
    open_message,
    seal,
    seal_hashed,
)
from ikepriv.crypto import dh
from ikepriv.crypto.crypto_errors import CryptoError
from ikepriv.crypto.oakley import quick_mode_hash1, quick_mode_hash2, quick_mode_hash3
from ikepriv.crypto.prf import digests_equal
from ikepriv.ipc.messages import (
    ErrorCode,
    LogLevel,
    Phase2Def,
    Role,
    SelectorSide,
    SpiReply,
    SpiRequest,
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
    ipsec_attributes,
)
from ikepriv.isakmp.attributes import encode_attributes
from ikepriv.isakmp.constants import (
    DOI,
    ExchangeType,
    HeaderFlag,
    IkeHash,
    LifeType,
    NotifyType,
    ProtocolId,
)

QM = ExchangeType.QUICK_MODE
MIN_SPI = 256


def _spi_bytes(spi: int) -> bytes:
    return spi.to_bytes(4, "big")


def _prf_keys(sa: IsakmpSa) -> tuple[IkeHash, bytes]:
    assert sa.choice is not None and sa.keys is not None
    return sa.choice.hash, bytes(sa.keys.skeyid_a)


# ------------------------------------------------------------------------------ initiator


def initiate(
    core: Core,
    definition: Phase2Def,
    sa: IsakmpSa,
    selectors: tuple[SelectorSide, SelectorSide] | None = None,
) -> QuickExchange | None:
    """Start a Quick Mode for `definition`; a rekey passes the (local, remote) selectors of
    the SA it replaces, which may be narrower than the definition's."""
    if active_count(sa) >= core.settings.quick_mode_max_parallel:
        core.log(LogLevel.WARNING, f"phase 2 {definition.name}: too many Quick Modes in progress")
        return None
    mode = core.hooks.encap_modes(sa, definition.mode)[0]
    choices = ipsec_choices(definition, mode)
    if not choices:
        core.log(
            LogLevel.ERR, f"phase 2 {definition.name}: no proposal this implementation can offer"
        )
        return None
    # One KE per exchange and one SPI per protocol: offer what fits the first proposal.
    first = choices[0]
    choices = tuple(c for c in choices if c.group == first.group and c.protocol == first.protocol)
    form = IdForm.RANGE if core.settings.qm_id_ranges else IdForm.AUTO
    local_sel, remote_sel = selectors or (definition.local, definition.remote)
    qe = QuickExchange(
        mid=core.new_message_id(sa),
        role=Role.INITIATOR,
        isakmp=sa,
        definition=definition,
        tunnel_id=core.new_tunnel_id(),
        state=QmState.I_SPI_WAIT,
        created=core.now,
        local_sel=local_sel,
        remote_sel=remote_sel,
        id_ci=selector_id(local_sel, form),
        id_cr=selector_id(remote_sel, form),
    )
    qe.offered = choices
    qe.protocol = first.protocol
    sa.exchanges[qe.mid] = qe
    core.request(
        lambda rid: SpiRequest(
            rid, definition.number, first.protocol, sa.remote.addr, sa.local.addr
        ),
        SpiReply,
        lambda reply: _initiator_spi(core, qe, reply),
    )
    return qe


def _initiator_spi(core: Core, qe: QuickExchange, reply: SpiReply) -> None:
    sa = qe.isakmp
    if qe.state is not QmState.I_SPI_WAIT or sa.exchanges.get(qe.mid) is not qe:
        core.counters.dropped_stale_reply += 1
        return
    if reply.error is not ErrorCode.OK:
        core.counters.parent_errors += 1
        abort(core, qe, f"parent refused an SPI ({reply.error.name})")
        return
    qe.spi_in = reply.spi
    qe.ni = core.nonce()
    offer = ipsec_sa_payload(qe.offered, {qe.protocol: _spi_bytes(qe.spi_in)})
    rest: list[Payload] = [offer, NoncePayload(qe.ni)]
    group = qe.offered[0].group
    if group is not None:
        qe.dh = dh.generate(group, core.random)
        rest.append(KePayload(qe.dh.public))
    assert qe.id_ci is not None and qe.id_cr is not None
    rest += [qe.id_ci, qe.id_cr, *core.hooks.qm_payloads(sa, qe)]
    alg, skeyid_a = _prf_keys(sa)
    mid = qe.mid
    data = seal_hashed(sa, QM, mid, rest, lambda b: quick_mode_hash1(alg, skeyid_a, mid, b))
    transition(qe, QmState.I_SENT)
    core.transmit(sa, qe.flight, (data,), retransmit=True)


def _on_qm2(core: Core, qe: QuickExchange, inb: Inbound) -> None:
    sa = qe.isakmp
    alg, skeyid_a = _prf_keys(sa)
    payloads = _open_hashed(
        core, sa, inb, lambda rest: quick_mode_hash2(alg, skeyid_a, qe.mid, qe.ni, rest)
    )
    if payloads is None:
        return
    assert sa.iv is not None
    sa.iv.advance(qe.mid, inb.message.ciphertext)
    qe.flight.accepted(inb.digest)
    core.hooks.on_authenticated(sa, inb)
    body = payloads[1:]
    reply_sa = _single(body, SAPayload)
    nonce = _single(body, NoncePayload)
    ke = _single(body, KePayload)
    ids = [p for p in body if isinstance(p, IdPayload)]
    if not isinstance(reply_sa, SAPayload) or not isinstance(nonce, NoncePayload):
        _fail(core, qe, NotifyType.PAYLOAD_MALFORMED, "QM2 lacks SA or nonce")
        return
    checked = check_ipsec_reply(qe.offered, reply_sa)
    if checked is None:
        _fail(
            core, qe, NotifyType.NO_PROPOSAL_CHOSEN, "responder chose a proposal we did not offer"
        )
        return
    proposal, choice = checked
    spi_out = int.from_bytes(proposal.spi, "big")
    if spi_out < MIN_SPI:
        _fail(core, qe, NotifyType.INVALID_SPI, f"responder SPI {spi_out} is reserved")
        return
    if ids and (len(ids) != 2 or ids[0] != qe.id_ci or ids[1] != qe.id_cr):
        _fail(core, qe, NotifyType.INVALID_ID_INFORMATION, "responder changed the selectors")
        return
    g_qm_xy = None
    if choice.group is not None:
        if not isinstance(ke, KePayload) or qe.dh is None:
            _fail(core, qe, NotifyType.INVALID_KEY_INFORMATION, "PFS without a KE payload")
            return
        try:
            g_qm_xy = qe.dh.shared(ke.data)
        except CryptoError:
            _fail(core, qe, NotifyType.INVALID_KEY_INFORMATION, "bad PFS public value")
            return
    elif ke is not None:
        _fail(core, qe, NotifyType.INVALID_PAYLOAD_TYPE, "KE without PFS")
        return
    qe.choice = choice
    qe.spi_out = spi_out
    qe.nr = nonce.data
    qe.lifetime_seconds, qe.lifetime_kilobytes = choice.lifetime_seconds, choice.lifetime_kilobytes
    for p in body:
        if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.RESPONDER_LIFETIME:
            _honour_responder_lifetime(qe, p)
    h3 = quick_mode_hash3(alg, skeyid_a, qe.mid, qe.ni, qe.nr)
    qm3 = seal(sa, QM, qe.mid, [HashPayload(h3)])
    # Our SAs first: the parent carries out the child's messages in order, so QM3 leaves
    # once the kernel holds our inbound SA. The responder may send on its new outbound SA
    # as soon as QM3 arrives; before, its first packets met no SA here and were dropped.
    child = install.install_child(core, qe, g_qm_xy)
    core.transmit(sa, qe.flight, (qm3,), retransmit=False)
    _done(core, qe)
    core.child_installed(child, qe)
    core.quick_mode_finished(qe)


def _honour_responder_lifetime(qe: QuickExchange, notify: NotifyPayload) -> None:
    if notify.protocol_id != qe.protocol or notify.spi not in (
        _spi_bytes(qe.spi_in),
        _spi_bytes(qe.spi_out),
    ):
        return
    try:
        pairs = notify.responder_lifetimes or ()
    except IsakmpError:
        return
    for kind, value in pairs:
        if kind == LifeType.SECONDS and 0 < value < qe.lifetime_seconds:
            qe.lifetime_seconds = value
        elif (
            kind == LifeType.KILOBYTES
            and value
            and (not qe.lifetime_kilobytes or value < qe.lifetime_kilobytes)
        ):
            qe.lifetime_kilobytes = value


# ------------------------------------------------------------------------------ responder


def _on_qm1(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    mid = inb.message.header.message_id
    if active_count(sa) >= core.settings.quick_mode_max_parallel:
        core.counters.dropped_half_open += 1
        return
    _prune_done(core, sa)
    alg, skeyid_a = _prf_keys(sa)
    payloads = _open_hashed(core, sa, inb, lambda rest: quick_mode_hash1(alg, skeyid_a, mid, rest))
    if payloads is None:
        return
    core.hooks.on_authenticated(sa, inb)
    body = payloads[1:]
    offer, nonce, ke = (
        _single(body, SAPayload),
        _single(body, NoncePayload),
        _single(body, KePayload),
    )
    ids = [p for p in body if isinstance(p, IdPayload)]
    if (
        not isinstance(offer, SAPayload)
        or not isinstance(nonce, NoncePayload)
        or len(ids) not in (0, 2)
    ):
        core.counters.dropped_malformed += 1
        send_notify(core, sa, NotifyType.PAYLOAD_MALFORMED)
        return
    if ids:
        remote_sel, local_sel = id_selector(ids[0]), id_selector(ids[1])
    else:
        remote_sel, local_sel = host_selector(sa.remote.addr), host_selector(sa.local.addr)
    if remote_sel is None or local_sel is None:
        core.counters.dropped_policy += 1
        send_notify(core, sa, NotifyType.INVALID_ID_INFORMATION)
        return
    candidates = [
        d
        for d in core.config.phase2_of(sa.definition.number)
        if any(
            selector_inside(local_sel, lo) and selector_inside(remote_sel, re) for lo, re in d.pairs
        )
    ]
    if not candidates:
        core.counters.dropped_policy += 1
        core.log(
            LogLevel.NOTICE, f"Quick Mode from {sa.remote.addr}: selectors outside every definition"
        )
        send_notify(core, sa, NotifyType.INVALID_ID_INFORMATION)
        return
    selected: Selected | None = None
    definition = candidates[0]
    for d in candidates:
        selected = select_ipsec(d, offer, frozenset(core.hooks.encap_modes(sa, d.mode)))
        if selected is not None:
            definition = d
            break
    peer_spi = int.from_bytes(selected.proposal.spi, "big") if selected is not None else 0
    group = selected.choice.group if selected is not None else None
    if selected is None or peer_spi < MIN_SPI or (group is None) != (ke is None):
        core.counters.dropped_policy += 1
        core.log(LogLevel.NOTICE, f"Quick Mode from {sa.remote.addr}: no acceptable proposal")
        send_notify(core, sa, NotifyType.NO_PROPOSAL_CHOSEN)
        return
    if group is not None:
        assert isinstance(ke, KePayload)
        try:
            dh.validate_public(group, ke.data)
        except CryptoError:
            core.counters.dropped_malformed += 1
            send_notify(core, sa, NotifyType.INVALID_KEY_INFORMATION)
            return
    assert sa.iv is not None
    sa.iv.advance(mid, inb.message.ciphertext)
    pairs = definition.pairs
    local_sel = shared_side(local_sel, (lo for lo, _ in pairs))
    remote_sel = shared_side(remote_sel, (re for _, re in pairs))
    qe = QuickExchange(
        mid=mid,
        role=Role.RESPONDER,
        isakmp=sa,
        definition=definition,
        tunnel_id=core.new_tunnel_id(),
        state=QmState.R_SPI_WAIT,
        created=core.now,
        local_sel=local_sel,
        remote_sel=remote_sel,
        id_ci=ids[0] if ids else None,
        id_cr=ids[1] if ids else None,
    )
    qe.choice = selected.choice
    qe.reply_proposal = selected.proposal
    qe.protocol = selected.choice.protocol
    qe.spi_out = peer_spi
    qe.ni = nonce.data
    qe.peer_ke = ke.data if isinstance(ke, KePayload) else b""
    qe.lifetime_seconds, qe.lifetime_kilobytes = (
        selected.lifetime_seconds,
        selected.lifetime_kilobytes,
    )
    qe.responder_lifetime = selected.shortened
    qe.commit = bool(inb.message.header.flags & HeaderFlag.COMMIT)
    qe.flight.accepted(inb.digest)
    sa.exchanges[mid] = qe
    core.request(
        lambda rid: SpiRequest(rid, definition.number, qe.protocol, sa.remote.addr, sa.local.addr),
        SpiReply,
        lambda reply: _responder_spi(core, qe, reply),
    )


def _responder_spi(core: Core, qe: QuickExchange, reply: SpiReply) -> None:
    sa = qe.isakmp
    if qe.state is not QmState.R_SPI_WAIT or sa.exchanges.get(qe.mid) is not qe:
        core.counters.dropped_stale_reply += 1
        return
    if reply.error is not ErrorCode.OK:
        core.counters.parent_errors += 1
        send_notify(core, sa, NotifyType.NO_PROPOSAL_CHOSEN)
        abort(core, qe, f"parent refused an SPI ({reply.error.name})")
        return
    qe.spi_in = reply.spi
    qe.nr = core.nonce()
    proposal = qe.reply_proposal
    assert proposal is not None and qe.choice is not None
    echoed = Proposal(
        proposal.number, proposal.protocol_id, _spi_bytes(qe.spi_in), proposal.transforms
    )
    rest: list[Payload] = [SAPayload.ipsec([echoed]), NoncePayload(qe.nr)]
    g_qm_xy = None
    if qe.choice.group is not None:
        qe.dh = dh.generate(qe.choice.group, core.random)
        try:
            g_qm_xy = qe.dh.shared(qe.peer_ke)
        except CryptoError:
            _fail(core, qe, NotifyType.INVALID_KEY_INFORMATION, "bad PFS public value")
            return
        rest.append(KePayload(qe.dh.public))
    if qe.id_ci is not None and qe.id_cr is not None:
        rest += [qe.id_ci, qe.id_cr]
    rest += core.hooks.qm_payloads(sa, qe)
    if qe.responder_lifetime:
        pairs = [(int(LifeType.SECONDS), qe.lifetime_seconds)]
        if qe.lifetime_kilobytes:
            pairs.append((int(LifeType.KILOBYTES), qe.lifetime_kilobytes))
        data = encode_attributes(ipsec_attributes({}, pairs))
        rest.append(
            NotifyPayload(
                DOI.IPSEC, qe.protocol, _spi_bytes(qe.spi_in), NotifyType.RESPONDER_LIFETIME, data
            )
        )
    alg, skeyid_a = _prf_keys(sa)
    mid, ni = qe.mid, qe.ni
    data_out = seal_hashed(sa, QM, mid, rest, lambda b: quick_mode_hash2(alg, skeyid_a, mid, ni, b))
    transition(qe, QmState.R_SENT)
    # Our inbound SA before QM2 (see the module docstring): the keys are known now.
    install.install_inbound(core, qe, g_qm_xy, _inbound_refused)
    qe.wipe()  # g^xy went into the keys: QM3 needs no DH
    core.transmit(sa, qe.flight, (data_out,), retransmit=True)


def _inbound_refused(core: Core, qe: QuickExchange) -> None:
    """The parent refused our inbound half before QM3 came: the exchange failed."""
    if qe.state is QmState.R_SENT and qe.isakmp.exchanges.get(qe.mid) is qe:
        abort(core, qe, "the parent refused the install")


def _on_qm3(core: Core, qe: QuickExchange, inb: Inbound) -> None:
    sa = qe.isakmp
    alg, skeyid_a = _prf_keys(sa)
    h3 = quick_mode_hash3(alg, skeyid_a, qe.mid, qe.ni, qe.nr)
    if _open_hashed(core, sa, inb, lambda _rest: h3) is None:
        return
    qe.flight.accepted(inb.digest)  # QM3 ends the exchange: a repeat gets no answer
    core.hooks.on_authenticated(sa, inb)
    _done(core, qe)
    core.child_installed(install.commit_child(core, qe), qe)
    core.quick_mode_finished(qe)
    if qe.commit:
        send_notify(core, sa, NotifyType.CONNECTED, qe.protocol, _spi_bytes(qe.spi_in))


# ------------------------------------------------------------------------------ common


def _single(payloads: tuple[Payload, ...], kind: type) -> Payload | None:
    found = [p for p in payloads if isinstance(p, kind)]
    return found[0] if len(found) == 1 else None


def _open_hashed(
    core: Core, sa: IsakmpSa, inb: Inbound, expected: Callable[[bytes], bytes]
) -> tuple[Payload, ...] | None:
    """Decrypt a Quick Mode message and check its leading HASH against `expected(rest)`,
    rest being the payloads after the HASH as on the wire. None when either fails: counted,
    and a bad HASH answered with a rate-limited notify. Nothing changes before this."""
    try:
        plaintext, payloads = open_message(sa, inb.message)
    except OpenError:
        core.counters.dropped_auth += 1
        return None
    received = leading_hash(payloads)
    rest = after_first(plaintext, len(payloads)) if received is not None else b""
    if received is None or not digests_equal(expected(rest), received):
        core.counters.dropped_auth += 1
        _notify_limited(core, sa, NotifyType.INVALID_HASH_INFORMATION)
        return None
    return payloads


def _notify_limited(core: Core, sa: IsakmpSa, notify_type: NotifyType) -> None:
    """Encrypted notify answering a message that failed its check: rate limited per peer."""
    if core.notify_limit.allow(("hash", sa.remote.addr), core.now):
        send_notify(core, sa, notify_type)
    else:
        core.counters.notifies_suppressed += 1


def _fail(core: Core, qe: QuickExchange, notify_type: NotifyType, reason: str) -> None:
    core.counters.dropped_policy += 1
    spi = _spi_bytes(qe.spi_in) if qe.spi_in else None
    send_notify(core, qe.isakmp, notify_type, qe.protocol if spi else ProtocolId.ISAKMP, spi)
    abort(core, qe, reason)


def _done(core: Core, qe: QuickExchange) -> None:
    """Finished: the record stays (to answer a repeated message) until it ages out."""
    transition(qe, QmState.DONE)
    qe.wipe()
    qe.isakmp.finish_mid(qe.mid, core.settings.finished_message_ids)
    if qe.isakmp.iv is not None:
        qe.isakmp.iv.forget(qe.mid)


def active_count(sa: IsakmpSa) -> int:
    return sum(1 for qe in sa.exchanges.values() if qe.state is not QmState.DONE)


OWN_IN_FLIGHT = 2
"""Our own Quick Modes at a time for one phase 2 definition under one ISAKMP SA, first
initiations and rekeys alike. strongSwan keeps IV state for only 3 IKEv1 exchanges per
IKE_SA (charon.max_ikev1_exchanges) and drops the oldest: four Quick Modes at once and it
can decrypt none of their third messages."""


def own_in_flight(sa: IsakmpSa, number: int) -> int:
    """Our running Quick Modes for phase 2 definition `number` under `sa`."""
    return sum(
        1
        for qe in sa.exchanges.values()
        if qe.definition.number == number
        and qe.role is Role.INITIATOR
        and qe.state is not QmState.DONE
    )


def _prune_done(core: Core, sa: IsakmpSa) -> None:
    """Keep the finished records bounded even when a peer finishes exchanges quickly."""
    limit = 4 * core.settings.quick_mode_max_parallel
    if len(sa.exchanges) < limit:
        return
    for mid, qe in list(sa.exchanges.items()):
        if len(sa.exchanges) < limit:
            break
        if qe.state is QmState.DONE:
            sa.drop_exchange(mid)


def abort(core: Core, qe: QuickExchange, reason: str) -> None:
    sa = qe.isakmp
    core.counters.phase2_failed += 1
    core.log(LogLevel.ERR, f"phase 2 tunnel {qe.tunnel_id} ({qe.definition.name}) with "
             f"{sa.remote.addr} failed: {reason}")  # fmt: skip
    qe.wipe()
    install.remove_half(core, qe)  # a responder's inbound half, if QM3 never came
    if qe.state is not QmState.DONE:  # an error notify may name a finished exchange's SPI
        transition(qe, QmState.DONE)
    qe.flight.stop_timer()
    qe.flight.datagrams = ()
    sa.finish_mid(qe.mid, core.settings.finished_message_ids)
    sa.drop_exchange(qe.mid)
    if sa.iv is not None:
        sa.iv.forget(qe.mid)
    core.quick_mode_finished(qe)


_STATES = {
    QmState.I_SENT: _on_qm2,
    QmState.R_SENT: _on_qm3,
}


def on_message(core: Core, sa: IsakmpSa, inb: Inbound) -> None:
    message = inb.message
    mid = message.header.message_id
    if not sa.established or not message.encrypted or mid == 0:
        core.counters.dropped_unexpected += 1
        return
    qe = sa.exchanges.get(mid)
    if qe is None:
        if mid in sa.finished_mids:
            core.counters.dropped_replay += 1
            return
        _on_qm1(core, sa, inb)
        return
    seen = qe.flight.classify(inb.digest)
    if seen is Seen.LAST:
        core.answer_duplicate(qe.flight)
        return
    if seen is Seen.OLD:
        core.counters.dropped_replay += 1
        return
    handler = _STATES.get(qe.state)
    if handler is None:
        core.counters.dropped_replay += 1
        return
    handler(core, qe, inb)


def timers(core: Core, sa: IsakmpSa) -> None:
    """Resends, give-ups and the end of finished exchanges' duplicate window."""
    max_age = core.settings.quick_mode_max_age
    for qe in list(sa.exchanges.values()):
        if core.flight_timer(qe.flight):
            abort(core, qe, "peer stopped answering")
            continue
        if core.now >= qe.created + max_age:
            if qe.state is not QmState.DONE:
                abort(core, qe, "exchange too old")
                continue
            sa.drop_exchange(qe.mid)
            if sa.iv is not None:
                sa.iv.forget(qe.mid)
