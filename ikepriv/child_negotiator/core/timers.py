"""The core's clock: when each SA next needs it, what runs when that time comes, and the
lifetime events that set those times (an SA established or installed, the phase 1 volume
limit, the kernel's EXPIRE).

The arithmetic (soft lifetimes, kernel limits, the deadline heap) is lifetimes.py; this
module sits above the modules it calls when a deadline comes (resends and expiry of the
exchanges, DPD, rekey, install), and the engine calls it.

A tunnel whose phase 1 definition accepts any peer (%any) never starts a rekey: that side
cannot reach the peer on its own, so the peer rekeys (see rekey.py for the rules).
"""

from __future__ import annotations

from ikepriv.child_negotiator.core import dpd, install, rekey
from ikepriv.child_negotiator.core.context import Core
from ikepriv.child_negotiator.core.exchanges import quick_mode
from ikepriv.child_negotiator.core.informational_send import send_delete_isakmp
from ikepriv.child_negotiator.core.lifetimes import (
    CHILD,
    ISAKMP,
    PHASE1_SOFT_VOLUME,
    RESTART,
    Key,
    soft_time,
)
from ikepriv.child_negotiator.core.sa_table import ChildSa, IsakmpSa, QuickExchange
from ikepriv.child_negotiator.core.states import ChildState
from ikepriv.ipc.messages import KernelExpire, LogLevel

# ------------------------------------------------------------------------------ deadlines


def exists(core: Core, key: Key) -> bool:
    kind, number = key
    if kind == RESTART:
        return number in core.restarts
    return number in (core.sas.by_tunnel if kind == ISAKMP else core.sas.children)


def deadline_of(core: Core, key: Key) -> float | None:
    kind, number = key
    if kind == RESTART:
        return dpd.restart_deadline(core, number)
    if kind == ISAKMP:
        sa = core.sas.by_tunnel.get(number)
        return isakmp_deadline(core, sa) if sa is not None else None
    child = core.sas.children.get(number)
    return child_deadline(core, child) if child is not None else None


def isakmp_deadline(core: Core, sa: IsakmpSa) -> float | None:
    times: list[float] = []
    if sa.flight.deadline is not None:
        times.append(sa.flight.deadline)
    qm_age = core.settings.quick_mode_max_age
    for qe in sa.exchanges.values():
        if qe.flight.deadline is not None:
            times.append(qe.flight.deadline)
        times.append(qe.created + qm_age)
    hook_time = core.hooks.timer_deadline(sa)
    if hook_time is not None:
        times.append(hook_time)
    if sa.established:
        if sa.lifetime:
            times.append(sa.established_at + sa.lifetime)
        if sa.retire_at:
            times.append(sa.retire_at)
        elif sa.rekey_at and not sa.retired_by:
            times.append(
                sa.rekey_started + core.settings.rekey_retry if sa.rekey_started else sa.rekey_at
            )
        probe = dpd.deadline(sa)
        if probe is not None:
            times.append(probe)
    return min(times) if times else None


def child_deadline(core: Core, child: ChildSa) -> float | None:
    if child.state is ChildState.DELETED:
        return None
    times: list[float] = []
    if child.lifetime_seconds:
        times.append(child.created + child.lifetime_seconds + core.settings.hard_expiry_grace)
    if child.delete_at:
        times.append(child.delete_at)
    if child.rekey_at and not child.superseded_by:
        times.append(
            child.rekey_started + core.settings.rekey_retry
            if child.rekey_started
            else child.rekey_at
        )
    return min(times) if times else None


# ------------------------------------------------------------------------------ dispatch


def run_due(core: Core, key: Key) -> None:
    """The deadline of `key` has come: the timers of its SA (or its DPD restart)."""
    kind, number = key
    if kind == ISAKMP:
        sa = core.sas.by_tunnel.get(number)
        if sa is not None:
            isakmp_timers(core, sa)
    elif kind == CHILD:
        child = core.sas.children.get(number)
        if child is not None:
            child_timers(core, child)
    else:
        dpd.restart_timer(core, number)


# ------------------------------------------------------------------------------ phase 1


def on_isakmp_established(core: Core, sa: IsakmpSa) -> None:
    """Soft lifetime, replacement of older SAs with this peer, DPD."""
    if sa.lifetime and rekey.may_initiate(sa.definition):
        sa.rekey_at = soft_time(core, sa.established_at, sa.lifetime, sa.definition.rekey_margin)
    rekey.supersede_isakmp(core, sa)
    dpd.start(core, sa)
    core.touch(sa)


def isakmp_timers(core: Core, sa: IsakmpSa) -> None:
    """Resends (and giving up), hard expiry, the Quick Modes under `sa`, the hooks'
    periodic work (NAT keepalives), then DPD, retirement and rekey."""
    now = core.now
    unproven = sa.tunnel_id in core.unproven
    if core.flight_timer(sa.flight):
        if unproven:  # a first message nobody answered: no log line per forged one
            core.drop_isakmp(sa)
            return
        core.fail_isakmp(sa, "peer stopped answering")
        return
    if unproven and sa.flight.sent_count >= 2:
        sa.flight.stop_timer()  # a reply to an unproven peer is resent once at most
    if sa.established and sa.lifetime and now >= sa.established_at + sa.lifetime:
        core.log(LogLevel.INFO, f"phase 1 {sa.definition.name} with {sa.remote.addr} expired")
        send_delete_isakmp(core, sa)
        core.drop_isakmp(sa)
        return
    quick_mode.timers(core, sa)
    for message in core.hooks.on_timer(sa, now):
        core.emit(message)
    _established_timers(core, sa)


def _established_timers(core: Core, sa: IsakmpSa) -> None:
    """DPD, retirement and rekey of an established SA."""
    if not sa.established:
        return
    now = core.now
    if sa.retire_at:
        if now >= sa.retire_at:
            rekey.finish_retirement(core, sa)
        return
    if sa.retired_by:
        return
    dpd.timers(core, sa)
    if not sa.established or not sa.rekey_at:
        return
    if sa.rekey_started and now >= sa.rekey_started + core.settings.rekey_retry:
        sa.rekey_started = 0.0
    if not sa.rekey_started and now >= sa.rekey_at:
        rekey.rekey_isakmp(core, sa)


def count_octets(core: Core, sa: IsakmpSa, size: int) -> None:
    """An accepted datagram of `size` bytes arrived on `sa`: the phase 1 volume limit."""
    sa.octets += size
    choice = sa.choice
    if not sa.established or choice is None or not choice.lifetime_kilobytes:
        return
    limit = choice.lifetime_kilobytes * 1024
    if sa.octets >= limit:
        core.log(
            LogLevel.INFO,
            f"phase 1 {sa.definition.name} with {sa.remote.addr}: kilobyte lifetime reached",
        )
        send_delete_isakmp(core, sa)
        core.drop_isakmp(sa)
    elif (
        sa.octets >= limit * PHASE1_SOFT_VOLUME
        and not sa.rekey_started
        and not sa.retired_by
        and sa.rekey_at
    ):
        rekey.rekey_isakmp(core, sa)


# ------------------------------------------------------------------------------ phase 2


def on_child_installed(core: Core, child: ChildSa, qe: QuickExchange) -> None:
    """A Quick Mode's SAs went to the kernel: lifetimes, and what the new SA replaces."""
    child.lifetime_kilobytes = qe.lifetime_kilobytes
    child.exchange_started = qe.created
    child.rank = min(qe.ni, qe.nr) + max(qe.ni, qe.nr)
    if child.lifetime_seconds and rekey.may_initiate(core.config.phase1.get(child.phase1_number)):
        child.rekey_at = soft_time(
            core, child.created, child.lifetime_seconds, child.definition.rekey_margin
        )
    sa = qe.isakmp
    if sa.retired_by and sa.retired_by in core.sas.by_tunnel:
        child.isakmp_tunnel_id = sa.retired_by
    rekey.supersede_child(core, child)
    core.touch_child(child)


def child_timers(core: Core, child: ChildSa) -> None:
    if child.state is ChildState.DELETED:
        return
    now = core.now
    s = core.settings
    if (
        child.lifetime_seconds
        and now >= child.created + child.lifetime_seconds + s.hard_expiry_grace
    ):
        expire_child(core, child, "lifetime ended")
        return
    if child.delete_at and now >= child.delete_at:
        rekey.finish_supersede(core, child)
        return
    if not child.rekey_at or child.superseded_by:
        return
    if child.rekey_started and now >= child.rekey_started + s.rekey_retry:
        child.rekey_started = 0.0
    if not child.rekey_started and now >= child.rekey_at:
        rekey.rekey_child(core, child, "soft lifetime")


def expire_child(core: Core, child: ChildSa, reason: str) -> None:
    """The SA reached its hard limit (the kernel removes it on its own): forget it, tell the
    peer and the parent, and remove what is left (its twin, the policies if unused)."""
    core.log(
        LogLevel.INFO,
        f"phase 2 {child.definition.name} with {child.remote.addr} "
        f"(in {child.spi_in:08x}): {reason}",
    )
    install.remove_child(core, child, send_delete=True, kernel=True)
    if not child.resumed:  # a previous child's SA: never reported by this one
        core.emit(install.report_child(core, child, 0))


def on_kernel_expire(core: Core, msg: KernelExpire) -> None:
    child = _child_of_kernel_sa(core, msg)
    if child is None:
        core.log(LogLevel.DEBUG, f"kernel expire for unknown SA {msg.spi:08x} to {msg.dst}")
        return
    if msg.hard:
        expire_child(core, child, "hard limit reached in the kernel")
    else:
        rekey.rekey_child(core, child, "soft limit reached in the kernel")
    core.touch_child(child)


def _child_of_kernel_sa(core: Core, msg: KernelExpire) -> ChildSa | None:
    # by SPI (inbound or outbound, told apart by the destination): no pass over every
    # IPsec SA, nor over those with the peer, per kernel event
    for child in core.sas.children.with_spi(msg.spi):
        if child.protocol != msg.proto or child.state is ChildState.DELETED:
            continue
        if (msg.spi == child.spi_in and msg.dst == child.local.addr) or (
            msg.spi == child.spi_out and msg.dst == child.remote.addr
        ):
            return child
    return None
