"""Turning a finished Quick Mode into one kernel request, and removing IPsec SAs again.

Each phase 2 is one Phase2Install: two SAs (inbound with our SPI, outbound with the
peer's) keyed from KEYMAT, and policies: out and in, plus fwd in tunnel mode. The parent
vets all of it or nothing. The Quick Mode initiator sends it at QM2, before QM3, and the
parent writes all of it. The responder sends it before QM2 with inbound_first: the parent
writes the in and fwd policies and the inbound SA then (the initiator sends on its new
outbound SA as soon as it has QM2; before, those packets met a larval SPI here and were
dropped), and the outbound SA and out policy, vetted with them, when the responder sends
Phase2Commit at QM3. An exchange that ends without QM3 removes the half with a
Phase2Remove. Either way an SA is established or failed, never left half installed.

Policies belong to a policy set (phase 2 definition + the selectors actually negotiated),
not to one SA: a second SA with the same selectors (a rekey, or the
peer starting one too) gets the set's reqid and so the same policies (the parent writes
them only once), and the parent removes them with the last SA of that reqid. Narrower
selectors negotiated under the same definition get a set (and reqid) of their own, so the
kernel never mixes their SAs. Removing an SA is one Phase2Remove.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ikepriv.child_negotiator.core import informational_send, lifetimes
from ikepriv.child_negotiator.core.context import Core
from ikepriv.child_negotiator.core.datagram import IPAddress
from ikepriv.child_negotiator.core.sa_table import ChildSa, IsakmpSa, PolicySet, QuickExchange
from ikepriv.child_negotiator.core.states import ChildState, transition
from ikepriv.crypto.keymat import SaKeys, derive_sa_keys
from ikepriv.ipc.messages import (
    AeadKey,
    AuthKey,
    CryptKey,
    ErrorCode,
    LogLevel,
    Phase,
    Phase2Commit,
    Phase2Install,
    Phase2Policy,
    Phase2Remove,
    Phase2Sa,
    PolicyDirection,
    ResultReply,
    SelectorSide,
    StateReport,
    TrafficSelector,
    TunnelState,
)
from ikepriv.isakmp.constants import EncapsulationMode, EspTransformId, ProtocolId

PRIORITY_BASE = 2000


def priority(selector: TrafficSelector) -> int:
    """More specific selectors get a lower number (XFRM: lower wins)."""

    def score(s: SelectorSide) -> int:
        return s.network.prefixlen * 4 + (2 if s.protocol else 0) + (1 if s.port else 0)

    return PRIORITY_BASE - score(selector.src) - score(selector.dst)


def _key_fields(
    keys: SaKeys, transform_id: int, protocol: ProtocolId
) -> tuple[CryptKey | None, AuthKey | None, AeadKey | None]:
    layout = keys.layout
    if protocol == ProtocolId.IPSEC_AH:
        assert layout.integrity is not None
        return None, AuthKey(layout.integrity.auth_id, bytes(keys.integ_key)), None
    assert layout.cipher is not None
    if layout.cipher.is_aead:
        salt = layout.cipher.salt_bytes
        enc = bytes(keys.enc_key)
        return None, None, AeadKey(EspTransformId(transform_id), enc[:-salt], enc[-salt:])
    assert layout.integrity is not None
    return (
        CryptKey(EspTransformId(transform_id), bytes(keys.enc_key)),
        AuthKey(layout.integrity.auth_id, bytes(keys.integ_key)),
        None,
    )


def _reqid(core: Core, qe: QuickExchange) -> int:
    """The reqid of the exchange's policy set (made now if the set is new)."""
    key = (qe.definition.number, TrafficSelector(qe.local_sel, qe.remote_sel))
    policy_set = core.policy_sets.get(key)
    if policy_set is None:
        policy_set = core.policy_sets.add(key, PolicySet(core.new_reqid()))
    return policy_set.reqid


def _new_child(core: Core, qe: QuickExchange, reqid: int) -> ChildSa:
    """The IPsec SA record of a finished Quick Mode, in INSTALLING until the parent answers."""
    sa = qe.isakmp
    assert qe.choice is not None
    child = ChildSa(
        tunnel_id=qe.tunnel_id,
        definition=qe.definition,
        phase1_number=sa.definition.number,
        isakmp_tunnel_id=sa.tunnel_id,
        negotiated_on=sa.tunnel_id,
        role=qe.role,
        protocol=qe.choice.protocol,
        spi_in=qe.spi_in,
        spi_out=qe.spi_out,
        local=sa.local,
        remote=sa.remote,
        selector_out=TrafficSelector(qe.local_sel, qe.remote_sel),
        choice=core.shared.one(qe.choice),  # one object for the tunnels alike
        lifetime_seconds=qe.lifetime_seconds,
        reqid=reqid,
        state=ChildState.INSTALLING,
        created=core.now,
    )
    core.sas.children[child.tunnel_id] = child
    return child


def _install_request(
    core: Core, qe: QuickExchange, reqid: int, g_qm_xy: bytes | None, *, inbound_first: bool
) -> partial[Phase2Install]:
    """The whole install of an exchange, keyed from KEYMAT (all but its request id)."""
    sa = qe.isakmp
    choice = qe.choice
    assert choice is not None and sa.keys is not None and sa.choice is not None
    mode = choice.base_mode
    selector_out = TrafficSelector(qe.local_sel, qe.remote_sel)
    layout = choice.layout()
    sa_keys: list[Phase2Sa] = []
    for spi in (qe.spi_in, qe.spi_out):
        keys = derive_sa_keys(
            sa.choice.hash, sa.keys.skeyid_d, layout, spi.to_bytes(4, "big"), qe.ni, qe.nr, g_qm_xy
        )
        enc, integ, aead = _key_fields(keys, choice.transform_id, choice.protocol)
        keys.wipe()
        limits = lifetimes.kernel_lifetimes(
            core, qe.lifetime_seconds, qe.lifetime_kilobytes, qe.definition.rekey_margin
        )
        sa_keys.append(Phase2Sa(spi, enc, integ, aead, limits))
    return partial(
        Phase2Install,
        phase1_number=sa.definition.number,
        phase2_number=qe.definition.number,
        tunnel_id=qe.tunnel_id,
        local=sa.local.addr,
        remote=sa.remote.addr,
        proto=choice.protocol,
        mode=mode,
        reqid=reqid,
        inbound=sa_keys[0],
        outbound=sa_keys[1],
        # UDP ports as on our outbound packets; the parent turns them around for inbound
        encap=core.hooks.sa_encap(sa),
        selector=selector_out,
        policies=_policies(selector_out, mode),
        inbound_first=inbound_first,
    )


def install_child(core: Core, qe: QuickExchange, g_qm_xy: bytes | None) -> ChildSa:
    """The Quick Mode initiator, at QM2: the whole install, before QM3 leaves."""
    reqid = _reqid(core, qe)
    child = _new_child(core, qe, reqid)
    make = _install_request(core, qe, reqid, g_qm_xy, inbound_first=False)
    core.request(make, ResultReply, lambda reply: _on_installed(core, child, reply))
    return child


def install_inbound(
    core: Core,
    qe: QuickExchange,
    g_qm_xy: bytes | None,
    on_refused: Callable[[Core, QuickExchange], None],
) -> None:
    """The Quick Mode responder, before QM2 leaves: the whole install for the parent to
    vet, of which it writes the inbound half now (the initiator may send on its new
    outbound SA as soon as it has QM2). `commit_child` asks for the rest at QM3;
    `remove_half` takes the half away if QM3 never comes; `on_refused` ends the exchange
    if the parent refuses it before QM3 came."""
    qe.reqid = _reqid(core, qe)
    qe.half_installed = True
    make = _install_request(core, qe, qe.reqid, g_qm_xy, inbound_first=True)
    core.request(
        make, ResultReply, lambda reply: _on_inbound_installed(core, qe, reply, on_refused)
    )


def commit_child(core: Core, qe: QuickExchange) -> ChildSa:
    """The Quick Mode responder, at QM3: the outbound half the parent holds for it."""
    assert qe.half_installed
    qe.half_installed = False  # the child record owns the pair from now on
    child = _new_child(core, qe, qe.reqid)
    sa = qe.isakmp
    make = partial(
        Phase2Commit,
        phase2_number=qe.definition.number,
        tunnel_id=qe.tunnel_id,
        local=sa.local.addr,
        remote=sa.remote.addr,
        proto=child.protocol,
        spi_in=qe.spi_in,
    )
    core.request(make, ResultReply, lambda reply: _on_installed(core, child, reply))
    return child


def _on_inbound_installed(
    core: Core,
    qe: QuickExchange,
    reply: ResultReply,
    on_refused: Callable[[Core, QuickExchange], None],
) -> None:
    if reply.error is ErrorCode.OK:
        return
    core.counters.parent_errors += 1
    core.log(
        LogLevel.ERR,
        f"phase 2 {qe.definition.name}: install refused: {reply.error.name} {reply.reason}",
    )
    if not qe.half_installed:
        return  # QM3 came first: the commit is refused too, and its answer ends the SA
    qe.half_installed = False  # nothing of it is in the kernel
    _drop_policy_set(core, qe.definition.number, TrafficSelector(qe.local_sel, qe.remote_sel),
                     qe.isakmp.remote.addr, qe.isakmp.definition.number)  # fmt: skip
    # QM2 has left: the peer may install at once; tell it the SA is gone
    informational_send.send_delete_ipsec(core, qe.isakmp, qe.protocol, [qe.spi_in])
    on_refused(core, qe)


def remove_half(core: Core, qe: QuickExchange) -> None:
    """A responder's exchange ended without QM3 (timeout, error): remove the inbound half
    it installed (one Phase2Remove of the pair; the parent forgets the outbound half)."""
    if not qe.half_installed:
        return
    qe.half_installed = False
    sa = qe.isakmp
    selector = TrafficSelector(qe.local_sel, qe.remote_sel)
    _drop_policy_set(core, qe.definition.number, selector, sa.remote.addr, sa.definition.number)
    _request_remove(core, partial(
        Phase2Remove, phase2_number=qe.definition.number, tunnel_id=qe.tunnel_id,
        local=sa.local.addr, remote=sa.remote.addr, proto=qe.protocol, spi_in=qe.spi_in,
        spi_out=qe.spi_out, reqid=qe.reqid, keep_policies=False,
    ))  # fmt: skip


def _drop_policy_set(
    core: Core, number: int, selector: TrafficSelector, peer: IPAddress, phase1_number: int
) -> None:
    """No SA of the set left with this peer, in the kernel or on its way there: a new one
    gets a new reqid. A responder's half install counts (its inbound SA is in the kernel
    with the reqid and its pair will be committed with it): a set dropped under it would
    give the next exchange a new reqid, the policies would follow that one while the
    committed pair carries the old, and that exchange's failure would take them away."""
    if any(c.selector_out == selector for c in core.sas.children.of_tunnel(number, peer)):
        return
    for sa in core.sas.with_peer(phase1_number, peer):
        for qe in sa.exchanges.values():
            if (qe.half_installed and qe.definition.number == number
                    and TrafficSelector(qe.local_sel, qe.remote_sel) == selector):  # fmt: skip
                return
    core.policy_sets.drop((number, selector))


def _policies(out_sel: TrafficSelector, mode: EncapsulationMode) -> tuple[Phase2Policy, ...]:
    in_sel = TrafficSelector(out_sel.dst, out_sel.src)
    wanted = [(PolicyDirection.OUT, out_sel), (PolicyDirection.IN, in_sel)]
    if mode is EncapsulationMode.TUNNEL:
        wanted.append((PolicyDirection.FWD, in_sel))
    return tuple(Phase2Policy(direction, sel, priority(sel)) for direction, sel in wanted)


def _on_installed(core: Core, child: ChildSa, reply: ResultReply) -> None:
    if reply.error is not ErrorCode.OK:
        core.counters.parent_errors += 1
        core.log(
            LogLevel.ERR,
            f"phase 2 {child.definition.name}: install refused: {reply.error.name} {reply.reason}",
        )
        if child.state is ChildState.INSTALLING:
            core.counters.phase2_failed += 1
            remove_child(core, child, send_delete=True, kernel=False)  # nothing was installed
        return
    if child.state is not ChildState.INSTALLING:
        return  # removed meanwhile: its Phase2Remove reaches the parent after this install
    transition(child, ChildState.ESTABLISHED)
    core.counters.phase2_established += 1
    core.emit(report_child(core, child, 0))  # the parent logs the line from it


def report_child(core: Core, child: ChildSa, request_id: int) -> StateReport:
    state = {
        ChildState.INSTALLING: TunnelState.NEGOTIATING,
        ChildState.ESTABLISHED: TunnelState.ESTABLISHED,
        ChildState.DELETED: TunnelState.DELETING,
    }[child.state]
    return StateReport(
        request_id=request_id,
        phase=Phase.PHASE2,
        number=child.definition.number,
        tunnel_id=child.tunnel_id,
        phase1_tunnel_id=child.isakmp_tunnel_id,
        role=child.role,
        state=state,
        local=child.local,
        remote=child.remote,
        local_id=None,
        remote_id=None,
        algorithms=child.choice.describe(),
        expires_at=core.wall(child.created + child.lifetime_seconds - core.now),
        spi_in=child.spi_in,
        spi_out=child.spi_out,
    )


def find_owned(core: Core, sa: IsakmpSa, protocol: ProtocolId, spi_out: int) -> ChildSa | None:
    """The live IPsec SA a peer may delete: its inbound SPI (our outbound), negotiated with
    this peer address under this phase 1 definition."""
    for child in core.sas.children.with_spi(spi_out):
        if (
            child.spi_out == spi_out
            and child.remote.addr == sa.remote.addr
            and child.protocol == protocol
            and child.phase1_number == sa.definition.number
            and child.state is not ChildState.DELETED
        ):
            return child
    return None


def remove_child(
    core: Core,
    child: ChildSa,
    *,
    send_delete: bool,
    kernel: bool,
    keep_policies: bool = False,
) -> None:
    """Forget an IPsec SA; with `send_delete`, tell the peer; with `kernel`, ask the parent
    to remove the SA pair (one Phase2Remove; the parent removes the policies with the last
    SA of their reqid, unless `keep_policies`: DPD "hold" keeps them to catch traffic)."""
    if child.state is ChildState.DELETED:
        return
    transition(child, ChildState.DELETED)
    core.sas.children.pop(child.tunnel_id, None)
    core.child_removed(child)
    if send_delete:
        sa = core.sas.carrier(child)  # the ISAKMP SA the peer knows its SPIs on
        if sa is not None:
            informational_send.send_delete_ipsec(core, sa, child.protocol, [child.spi_in])
    if not keep_policies:  # a policy set's SAs are with one peer: see rekey
        _drop_policy_set(core, child.definition.number, child.selector_out, child.remote.addr,
                         child.phase1_number)  # fmt: skip
    if not kernel:
        return
    _request_remove(core, partial(
        Phase2Remove, phase2_number=child.definition.number, tunnel_id=child.tunnel_id,
        local=child.local.addr, remote=child.remote.addr, proto=child.protocol,
        spi_in=child.spi_in, spi_out=child.spi_out, reqid=child.reqid,
        keep_policies=keep_policies,
    ))  # fmt: skip


def _request_remove(core: Core, make: partial[Phase2Remove]) -> None:
    """Ask the parent to remove an SA pair (whole, or the half of a split install)."""
    core.request(make, ResultReply, lambda reply: _on_delete_result(core, reply))


def _on_delete_result(core: Core, reply: ResultReply) -> None:
    if reply.error is not ErrorCode.OK:
        core.counters.parent_errors += 1
        core.log(LogLevel.WARNING, f"kernel delete refused: {reply.error.name} {reply.reason}")
