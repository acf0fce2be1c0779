"""Turning a finished Quick Mode into kernel requests, and removing IPsec SAs again.

Each phase 2 gets two SAs (inbound with our SPI, outbound with the peer's) keyed from
KEYMAT, and policies: out and in, plus fwd in tunnel mode. Policies belong to a policy
set (phase 2 definition + the selectors actually negotiated), not to one SA: a second SA
with the same selectors (a rekey, or the peer starting one too) reuses them through the
set's reqid, and they are removed with the last SA of the set. Narrower selectors
negotiated under the same definition get a set (and reqid) of their own, so the kernel
never mixes their SAs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ikepriv.child_negotiator.core import informational_send, lifetimes
from ikepriv.child_negotiator.core.context import Core
from ikepriv.child_negotiator.core.sa_table import ChildSa, IsakmpSa, PolicySet, QuickExchange
from ikepriv.child_negotiator.core.states import ChildState, transition
from ikepriv.crypto.keymat import SaKeys, derive_sa_keys
from ikepriv.ipc.messages import (
    AeadKey,
    AuthKey,
    CryptKey,
    LogLevel,
    NatTEncap,
    Phase,
    PolicyAdd,
    PolicyDelete,
    PolicyDirection,
    PolicyTemplate,
    ResultReply,
    SaAdd,
    SaDelete,
    SaDirection,
    SelectorSide,
    StateReport,
    TrafficSelector,
    TunnelState,
)
from ikepriv.ipc.schema import Message
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


def install_child(core: Core, qe: QuickExchange, g_qm_xy: bytes | None) -> ChildSa:
    sa = qe.isakmp
    choice = qe.choice
    assert choice is not None and sa.keys is not None and sa.choice is not None
    mode = choice.base_mode
    selector_out = TrafficSelector(qe.local_sel, qe.remote_sel)
    child = ChildSa(
        tunnel_id=qe.tunnel_id,
        definition=qe.definition,
        phase1_number=sa.definition.number,
        isakmp_tunnel_id=sa.tunnel_id,
        role=qe.role,
        protocol=choice.protocol,
        spi_in=qe.spi_in,
        spi_out=qe.spi_out,
        local=sa.local,
        remote=sa.remote,
        selector_out=selector_out,
        choice=choice,
        lifetime_seconds=qe.lifetime_seconds,
        reqid=0,
        state=ChildState.INSTALLING,
        created=core.now,
    )
    core.sas.children[child.tunnel_id] = child
    key = (qe.definition.number, selector_out)
    policy_set = core.policy_sets.get(key)
    new_set = policy_set is None
    if policy_set is None:
        policy_set = PolicySet(core.new_reqid())
        core.policy_sets[key] = policy_set
    child.reqid = policy_set.reqid
    layout = choice.layout()
    encap = core.hooks.sa_encap(sa)
    for direction, spi in ((SaDirection.IN, qe.spi_in), (SaDirection.OUT, qe.spi_out)):
        keys = derive_sa_keys(
            sa.choice.hash, sa.keys.skeyid_d, layout, spi.to_bytes(4, "big"), qe.ni, qe.nr, g_qm_xy
        )
        enc, integ, aead = _key_fields(keys, choice.transform_id, choice.protocol)
        keys.wipe()
        inbound = direction is SaDirection.IN
        src, dst = (sa.remote.addr, sa.local.addr) if inbound else (sa.local.addr, sa.remote.addr)
        # UDP ports as on the packets of this SA: inbound ones come from the peer's port.
        sa_encap = NatTEncap(encap.dport, encap.sport) if inbound and encap else encap
        selector = TrafficSelector(qe.remote_sel, qe.local_sel) if inbound else selector_out
        make = partial(
            SaAdd,
            phase1_number=sa.definition.number,
            phase2_number=qe.definition.number,
            tunnel_id=child.tunnel_id,
            direction=direction,
            src=src,
            dst=dst,
            proto=choice.protocol,
            spi=spi,
            mode=mode,
            encryption=enc,
            integrity=integ,
            aead=aead,
            lifetimes=lifetimes.kernel_lifetimes(core, qe.lifetime_seconds, qe.lifetime_kilobytes),
            encap=sa_encap,
            selector=selector,
            reqid=child.reqid,
        )
        _kernel_request(core, child, make, installs_spi=spi)
    if new_set:
        _add_policies(core, child, policy_set, mode)
    return child


def _add_policies(
    core: Core, child: ChildSa, policy_set: PolicySet, mode: EncapsulationMode
) -> None:
    out_sel = child.selector_out
    in_sel = TrafficSelector(out_sel.dst, out_sel.src)
    local, remote = child.local.addr, child.remote.addr
    wanted = [
        (out_sel, PolicyDirection.OUT, local, remote),
        (in_sel, PolicyDirection.IN, remote, local),
    ]
    if mode is EncapsulationMode.TUNNEL:
        wanted.append((in_sel, PolicyDirection.FWD, remote, local))
    for selector, direction, src, dst in wanted:
        template = PolicyTemplate(src, dst, child.protocol, mode, child.reqid)
        policy_set.policies.append((selector, direction))
        make = partial(
            PolicyAdd,
            phase2_number=child.definition.number,
            selector=selector,
            direction=direction,
            template=template,
            priority=priority(selector),
        )
        _kernel_request(core, child, make)


def _kernel_request(
    core: Core,
    child: ChildSa,
    make: Callable[[int], Message],
    installs_spi: int | None = None,
) -> None:
    child.waiting += 1
    core.request(make, ResultReply, lambda reply: _on_result(core, child, reply, installs_spi))


def _on_result(core: Core, child: ChildSa, reply: ResultReply, installs_spi: int | None) -> None:
    child.waiting -= 1
    if reply.error.value == 0 and installs_spi is not None:
        child.installed_spis.add(installs_spi)
        if child.state is ChildState.DELETED:  # removed while the add was on its way
            dst = child.local.addr if installs_spi == child.spi_in else child.remote.addr
            core.request(
                partial(SaDelete, spi=installs_spi, proto=child.protocol, dst=dst),
                ResultReply,
                lambda r: _on_delete_result(core, r),
            )
    if reply.error.value != 0:
        core.counters.parent_errors += 1
        child.failed = True
        core.log(
            LogLevel.ERR,
            f"phase 2 {child.definition.name}: kernel request refused: "
            f"{reply.error.name} {reply.reason}",
        )
    if child.waiting or child.state is not ChildState.INSTALLING:
        return
    if child.failed:
        core.counters.phase2_failed += 1
        remove_child(core, child, send_delete=True, kernel=True)
        return
    transition(child, ChildState.ESTABLISHED)
    core.counters.phase2_established += 1
    core.log(
        LogLevel.INFO,
        f"phase 2 {child.definition.name} established with {child.remote.addr} "
        f"(in {child.spi_in:08x}, out {child.spi_out:08x}, {child.choice.describe()})",
    )
    core.emit(report_child(core, child, 0))


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
    for child in core.sas.children.values():
        if (
            child.spi_out == spi_out
            and child.protocol == protocol
            and child.remote.addr == sa.remote.addr
            and child.phase1_number == sa.definition.number
            and child.state is not ChildState.DELETED
        ):
            return child
    return None


def remove_child(core: Core, child: ChildSa, *, send_delete: bool, kernel: bool) -> None:
    """Forget an IPsec SA; with `send_delete`, tell the peer; with `kernel`, ask the parent
    to remove the SAs (and the policies when no other SA of the definition is left)."""
    if child.state is ChildState.DELETED:
        return
    transition(child, ChildState.DELETED)
    core.sas.children.pop(child.tunnel_id, None)
    core.child_removed(child)
    if send_delete:
        sa = core.sas.established_for(child.phase1_number, child.remote.addr)
        if sa is not None:
            informational_send.send_delete_ipsec(core, sa, child.protocol, [child.spi_in])
    if not kernel:
        return
    for spi, dst in ((child.spi_in, child.local.addr), (child.spi_out, child.remote.addr)):
        if spi not in child.installed_spis:
            continue
        core.request(
            partial(SaDelete, spi=spi, proto=child.protocol, dst=dst),
            ResultReply,
            lambda reply: _on_delete_result(core, reply),
        )
    key = (child.definition.number, child.selector_out)
    policy_set = core.policy_sets.get(key)
    if policy_set is None or any(
        (c.definition.number, c.selector_out) == key for c in core.sas.children.values()
    ):
        return  # another SA still uses these policies
    del core.policy_sets[key]
    for selector, direction in policy_set.policies:
        core.request(
            partial(PolicyDelete, selector=selector, direction=direction),
            ResultReply,
            lambda reply: _on_delete_result(core, reply),
        )


def _on_delete_result(core: Core, reply: ResultReply) -> None:
    if reply.error.value != 0:
        core.counters.parent_errors += 1
        core.log(LogLevel.WARNING, f"kernel delete refused: {reply.error.name} {reply.reason}")
