"""Dead peer detection (RFC 3706): R-U-THERE / R-U-THERE-ACK in encrypted informationals.

We always announce DPD (the vendor ID in our first phase 1 message) and always answer a
peer's R-U-THERE. We probe only when the definition enables DPD and the peer announced it
too.

Idle means: no authenticated IKE message from the peer on this ISAKMP SA for `delay`
seconds. The core does not see ESP traffic (only the kernel counts it, and the parent does
not forward per-packet news), so a tunnel that carries traffic but no IKE messages is probed
as well: one small exchange every `delay` seconds, which a live peer answers. While a probe
is unanswered a new one (next sequence number) goes out every min(delay, timeout / 3)
seconds; an ACK for any of them, or any other authenticated message, ends the series. No
answer for `timeout` seconds: the peer is dead. Its SAs are removed (kernel SAs, and the
policies unless the action keeps them), the parent gets a StateReport for each, and then,
by the definition's action: CLEAR stays down; HOLD keeps the policies, so the next packet
makes the kernel ask for a new negotiation (ACQUIRE); RESTART keeps them and starts a new
phase 1 at once, the phase 2s following it. A restart attempt that fails is followed by
another after a back-off, Settings.keying_tries attempts in all; then the policies stay, as
for HOLD.

Sequence numbers (RFC 3706 5.5): ours start at a random 31-bit value and count up; an ACK
must carry one of the outstanding ones. A peer's R-U-THERE must carry a number after the
last one we accepted (serial arithmetic, so the count may wrap); an older or repeated one
is dropped and counted. A DPD notify whose SPI does not name the ISAKMP SA it came on (both
cookies) is dropped as for an unknown SA.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields

from ikepriv.child_negotiator.core import install
from ikepriv.child_negotiator.core.context import Core, NotifyHandler
from ikepriv.child_negotiator.core.dpd_state import DpdState, Restart
from ikepriv.child_negotiator.core.informational_send import send
from ikepriv.child_negotiator.core.lifetimes import RESTART
from ikepriv.child_negotiator.core.sa_table import ChildSa, IsakmpSa
from ikepriv.ipc.messages import DpdAction, LogLevel
from ikepriv.isakmp import NotifyPayload, vendor_ids
from ikepriv.isakmp.constants import NotifyType, ProtocolId
from ikepriv.process_contract import Counters

MAX_OUTSTANDING = 8  # probes of one series whose ACK we still accept
SERIAL_HALF = 1 << 31
DEFAULT_TIMEOUT_FACTOR = 4  # timeout when the definition gives none


def start(core: Core, sa: IsakmpSa) -> None:
    r = core.restarts.get(sa.definition.number)
    if r is not None and r.peer == sa.remote.addr:
        cancel_restart(core, r.number)  # back (whoever initiated it)
    settings = sa.definition.dpd
    wanted = settings.enabled and settings.delay_seconds > 0
    announced = vendor_ids.DPD in sa.peer_vendor_ids
    if wanted and not announced:
        core.log(
            LogLevel.NOTICE,
            f"phase 1 {sa.definition.name}: {sa.remote.addr} did not announce DPD, not probing",
        )
    timeout = settings.timeout_seconds or DEFAULT_TIMEOUT_FACTOR * settings.delay_seconds
    sa.dpd = DpdState(
        enabled=wanted and announced,
        delay=float(settings.delay_seconds),
        timeout=float(max(timeout, settings.delay_seconds)),
        last_heard=core.now,
        next_seq=(int.from_bytes(core.random(4), "big") & (SERIAL_HALF - 1)) or 1,
    )


def _probing(sa: IsakmpSa) -> DpdState | None:
    st = sa.dpd
    if st is None or not st.enabled or not sa.established or sa.retired_by:
        return None
    return st


def deadline(sa: IsakmpSa) -> float | None:
    st = _probing(sa)
    if st is None:
        return None
    if st.series_start:
        return min(st.series_start + st.timeout, st.last_sent + st.interval)
    return st.last_heard + st.delay


def heard(core: Core, sa: IsakmpSa) -> None:
    """An authenticated message came from the peer on `sa`: it is alive."""
    for target in (sa, core.sas.by_tunnel.get(sa.retired_by) if sa.retired_by else None):
        if target is not None and target.dpd is not None:
            st = target.dpd
            st.last_heard = core.now
            st.series_start = 0.0
            st.outstanding.clear()


_REJECTIONS = tuple(
    f.name
    for f in fields(Counters)
    if f.name.startswith("dropped_") or f.name == "duplicates_answered"
)


def rejections(counters: Counters) -> int:
    """Messages refused or merely repeated so far: unchanged across a datagram's handling
    means the datagram was accepted (each drop path counts exactly one of these)."""
    return sum(getattr(counters, name) for name in _REJECTIONS)


def timers(core: Core, sa: IsakmpSa) -> None:
    st = _probing(sa)
    if st is None:
        return
    now = core.now
    if st.series_start:
        if now >= st.series_start + st.timeout:
            peer_dead(core, sa)
        elif now >= st.last_sent + st.interval:
            _probe(core, sa, st)
    elif now >= st.last_heard + st.delay:
        st.series_start = now
        _probe(core, sa, st)


def _probe(core: Core, sa: IsakmpSa, st: DpdState) -> None:
    seq = st.next_seq
    st.next_seq = (seq + 1) & 0xFFFFFFFF
    st.outstanding.append(seq)
    del st.outstanding[:-MAX_OUTSTANDING]
    st.last_sent = core.now
    if send(core, sa, [NotifyPayload.dpd(sa.cookies, seq)]):
        core.counters.notifies_sent += 1
        core.counters.dpd_probes_sent += 1


# ------------------------------------------------------------------------------ receiving


def _names_sa(sa: IsakmpSa, notify: NotifyPayload) -> bool:
    return notify.protocol_id == ProtocolId.ISAKMP and notify.spi == sa.cookies


def _after(seq: int, last: int) -> bool:
    return 0 < (seq - last) % (1 << 32) < SERIAL_HALF


def on_r_u_there(core: Core, sa: IsakmpSa, notify: NotifyPayload) -> None:
    seq = notify.dpd_sequence
    assert seq is not None
    if not _names_sa(sa, notify):
        core.counters.dropped_unknown_sa += 1
        core.log(LogLevel.NOTICE, f"R-U-THERE from {sa.remote.addr} names another SA: dropped")
        return
    st = sa.dpd
    if st is None or not sa.established:
        core.counters.dropped_unexpected += 1
        return
    if st.peer_seq is not None and not _after(seq, st.peer_seq):
        core.counters.dropped_replay += 1
        core.log(LogLevel.NOTICE, f"R-U-THERE from {sa.remote.addr} with old sequence {seq}")
        return
    st.peer_seq = seq
    if send(core, sa, [NotifyPayload.dpd(sa.cookies, seq, ack=True)]):
        core.counters.notifies_sent += 1
        core.counters.dpd_acks_sent += 1


def on_ack(core: Core, sa: IsakmpSa, notify: NotifyPayload) -> None:
    seq = notify.dpd_sequence
    assert seq is not None
    if not _names_sa(sa, notify):
        core.counters.dropped_unknown_sa += 1
        return
    st = sa.dpd
    if st is None or seq not in st.outstanding:
        core.counters.dropped_replay += 1
        core.log(LogLevel.NOTICE, f"R-U-THERE-ACK from {sa.remote.addr} for no probe ({seq})")
        return
    core.counters.dpd_acks_received += 1
    st.outstanding.clear()
    st.series_start = 0.0
    st.last_heard = core.now


# The engine adds these to the notify table it passes to exchanges/informational.py.
NOTIFY_HANDLERS: Mapping[int, NotifyHandler] = {
    NotifyType.R_U_THERE: on_r_u_there,
    NotifyType.R_U_THERE_ACK: on_ack,
}


# ------------------------------------------------------------------------------ dead peer


def peer_dead(core: Core, sa: IsakmpSa) -> None:
    definition = sa.definition
    peer = sa.remote.addr
    action = definition.dpd.action
    restart = action is DpdAction.RESTART and definition.remote_addr is not None
    keep_policies = action in (DpdAction.HOLD, DpdAction.RESTART)
    st = sa.dpd
    core.counters.dpd_dead_peers += 1
    if core.config.phase1.get(definition.number) is not None:  # not one removed since
        core.tally.dpd_failure(definition.number)
    core.log(
        LogLevel.WARNING,
        f"phase 1 {definition.name}: peer {peer} is dead (no DPD answer for "
        f"{st.timeout if st else 0:.0f}s), action {action.name.lower()}",
    )
    numbers: list[int] = []
    for child in core.sas.children.of_phase1(definition.number, peer):  # indexed
        if child.definition.number not in numbers:
            numbers.append(child.definition.number)
        _clear_child(core, child, keep_policies)
    for other in core.sas.with_peer(definition.number, peer):
        core.drop_isakmp(other)
        core.emit(core.report_isakmp(other, 0))
    if restart:
        attempt = Restart(definition.number, definition.name, sa.local.addr, peer, tuple(numbers))
        core.restarts[definition.number] = attempt
        _restart(core, attempt)


# ------------------------------------------------------------------------------ restart


def _restart(core: Core, r: Restart) -> None:
    current = core.config.phase1.get(r.number)
    if current is None:  # the definition went away meanwhile
        del core.restarts[r.number]
        return
    r.attempts += 1
    r.next_at = 0.0
    core.counters.dpd_restarts += 1
    queue = core.pending_phase2.setdefault(r.number, [])
    for number in r.phase2:
        if number in core.config.phase2 and number not in queue:
            queue.append(number)
    core.log(
        LogLevel.INFO,
        f"phase 1 {current.name}: restarting after dead peer {r.peer} "
        f"(attempt {r.attempts} of {core.settings.keying_tries})",
    )
    sa = core.start_phase1(current, r.local, r.peer)
    if sa is None:
        core.pending_phase2.pop(r.number, None)
        _restart_failed(core, r)
    else:
        r.tunnel_id = sa.tunnel_id


def _restart_failed(core: Core, r: Restart) -> None:
    r.tunnel_id = 0
    s = core.settings
    if r.attempts >= s.keying_tries:
        del core.restarts[r.number]
        core.log(
            LogLevel.WARNING,
            f"phase 1 {r.name}: no restart after dead peer {r.peer} succeeded in "
            f"{r.attempts} attempts, giving up",
        )
        return
    wait = min(s.restart_backoff * 2 ** (r.attempts - 1), s.restart_backoff_max)
    r.next_at = core.now + wait
    core.deadlines.mark((RESTART, r.number))


def restart_deadline(core: Core, number: int) -> float | None:
    r = core.restarts.get(number)
    return r.next_at if r is not None and r.next_at else None


def restart_timer(core: Core, number: int) -> None:
    r = core.restarts.get(number)
    if r is not None and r.next_at and core.now >= r.next_at:
        _restart(core, r)


def on_phase1_failed(core: Core, sa: IsakmpSa) -> None:
    """A phase 1 failed: if it was a restart attempt, the next one is scheduled."""
    r = core.restarts.get(sa.definition.number)
    if r is not None and r.tunnel_id == sa.tunnel_id:
        _restart_failed(core, r)


def cancel_restart(core: Core, number: int) -> None:
    """The operator removed the phase 1 (or it came back): no further attempt."""
    core.restarts.pop(number, None)


def _clear_child(core: Core, child: ChildSa, keep_policies: bool) -> None:
    """Remove the SA pair; the policies too unless the action wants traffic to trigger a
    new negotiation (the kernel sends ACQUIRE for a policy without SAs)."""
    install.remove_child(core, child, send_delete=False, kernel=True,
                         keep_policies=keep_policies)  # fmt: skip
    core.emit(install.report_child(core, child, 0))
