"""Rekeying: starting replacements, and deciding which SA replaces which.

Phase 2: a new Quick Mode under the live ISAKMP SA, with the selectors of the SA it
replaces. The new SAs go to the kernel first; the old pair is deleted only once every
kernel request of the new one succeeded, after `rekey_overlap` seconds (packets already in
flight still find their SA). Phase 1: a new Main Mode to the same peer; the IPsec SAs stay
in the kernel and are re-parented to the new ISAKMP SA (later Deletes and rekeys use it),
and the old ISAKMP SA is deleted after the overlap.

Which SA replaces which, the same rule for both phases, applied on each side when an SA of
a tunnel (same definitions, peer and, for phase 2, negotiated selectors) is complete:

* an SA that was complete before the new one's exchange started (here, on this side) is
  simply older: it is replaced. The side that initiated the old SA's exchange deletes it
  (with a Delete); the other side waits for that Delete, or for the old SA's end. (Not "the
  side that initiated the new one": after a collision each side may have seen the other's
  new SA first, and each would wait for the other);
* otherwise the two exchanges ran at the same time: both peers rekeyed at once (a
  collision) and there are two new SAs. Both work (each was fully negotiated); the one
  whose nonces rank lower (the smaller nonce of its exchange first, then the larger,
  compared as bytes: the same on both peers) is redundant, and the side that initiated it
  deletes it after the overlap. strongSwan uses the same lowest-nonce rule for IKEv2.

Both peers classify a pair the same way because neither starts a rekey while it knows of
an exchange for the same tunnel (in either role): a collision needs both peers to start
before either hears of the other, so on both sides each exchange began before the other
one was complete.

A replaced SA is never rekeyed. If its successor fails (the kernel refused it, the peer
deleted it), the replaced SA gets its own rekey back.
"""

from __future__ import annotations

from ikepriv.child_negotiator.core import informational_send, install
from ikepriv.child_negotiator.core.context import Core
from ikepriv.child_negotiator.core.datagram import IPAddress
from ikepriv.child_negotiator.core.exchanges import quick_mode
from ikepriv.child_negotiator.core.offers import IpsecChoice
from ikepriv.child_negotiator.core.sa_table import ChildSa, IsakmpSa
from ikepriv.child_negotiator.core.states import ChildState, QmState
from ikepriv.ipc.messages import (
    Endpoint,
    LogLevel,
    Phase,
    Phase1Def,
    Phase2Def,
    ResumedPair,
    Role,
    SelectorSide,
    TrafficSelector,
)
from ikepriv.isakmp.constants import IKE_PORT, EncapsulationMode, ProtocolId

REKEY_BUSY_RETRY = 1.0
"""Seconds before a phase 2 rekey that found OWN_IN_FLIGHT of our Quick Modes running tries
again (they take milliseconds to a few seconds)."""


def may_initiate(definition: Phase1Def | None) -> bool:
    """Whether this side may start a rekey: not for a definition that accepts any peer."""
    return definition is not None and definition.remote_addr is not None


def _rank(ni: bytes, nr: bytes) -> bytes:
    return min(ni, nr) + max(ni, nr)


# ------------------------------------------------------------------------------ phase 1


def rekey_isakmp(core: Core, sa: IsakmpSa) -> None:
    """Start a new Main Mode to the peer of `sa` (unless one is already under way)."""
    definition = core.config.phase1.get(sa.definition.number)
    if not may_initiate(definition) or sa.retired_by or not (definition and definition.rekey):
        sa.rekey_at = 0.0
        return
    assert definition is not None
    sa.rekey_started = core.now
    core.touch(sa)
    if core.negotiating(definition.number, sa.remote.addr):
        return  # a new phase 1 with this peer is already being negotiated (by either side)
    core.log(
        LogLevel.INFO, f"phase 1 {definition.name} with {sa.remote.addr}: rekeying (soft lifetime)"
    )
    if core.start_phase1(definition, sa.local.addr, sa.remote.addr, via=sa) is not None:
        core.counters.phase1_rekeys += 1
        core.tally.rekey(Phase.PHASE1, definition.number)


def supersede_isakmp(core: Core, new: IsakmpSa) -> None:
    """`new` is established: retire the older (or redundant) SAs with the same peer (those
    of its definition and peer address only: the table's index, not a pass over all)."""
    for other in core.sas.with_peer(new.definition.number, new.remote.addr):
        if other is new or not other.established or other.retired_by:
            continue
        if other.established_at < new.created:
            _retire(core, other, new, we_delete=other.role is Role.INITIATOR)
            continue
        if _rank(other.ni, other.nr) < _rank(new.ni, new.nr):
            loser, winner = other, new
        else:
            loser, winner = new, other
        if other.role is new.role:
            # Both started by the same side at once; as we never start a second phase 1
            # with a peer while one runs, in practice the peer opened them (several
            # connections, parallel initiations). Not a collision; the same rule keeps one
            # for our own use, the other lives on until the peer deletes it or it expires.
            core.counters.phase1_parallel += 1
        else:
            core.counters.rekey_collisions += 1
            core.log(
                LogLevel.NOTICE,
                f"phase 1 {new.definition.name} with {new.remote.addr}: both sides rekeyed, "
                f"keeping ISAKMP SA {winner.tunnel_id}",
            )
        _retire(core, loser, winner, we_delete=loser.role is Role.INITIATOR)
        if loser is new:
            return


def _retire(core: Core, old: IsakmpSa, new: IsakmpSa, *, we_delete: bool) -> None:
    old.retired_by = new.tunnel_id
    old.rekey_at = 0.0
    old.retire_at = core.now + core.settings.rekey_overlap if we_delete else 0.0
    # Only `old`'s peer can be concerned: IPsec SAs are negotiated under an ISAKMP SA with
    # their own peer, and an ISAKMP SA only ever retires one of its definition and peer.
    for child in core.sas.children.of_phase1(old.definition.number, old.remote.addr):
        if child.isakmp_tunnel_id == old.tunnel_id:
            child.isakmp_tunnel_id = new.tunnel_id
    for sa in core.sas.with_peer(old.definition.number, old.remote.addr):
        if sa.retired_by == old.tunnel_id:  # SAs it had replaced now point at the survivor
            sa.retired_by = new.tunnel_id
    core.touch(old)
    core.log(
        LogLevel.INFO,
        f"phase 1 {old.definition.name} with {old.remote.addr}: ISAKMP SA {old.tunnel_id} "
        f"replaced by {new.tunnel_id}",
    )


def finish_retirement(core: Core, sa: IsakmpSa) -> None:
    """The overlap is over: delete the replaced ISAKMP SA (later if an exchange still runs)."""
    if quick_mode.active_count(sa):
        sa.retire_at = core.now + core.settings.rekey_overlap
        core.touch(sa)
        return
    informational_send.send_delete_isakmp(core, sa)
    core.drop_isakmp(sa)
    core.emit(core.report_isakmp(sa, 0))


# ------------------------------------------------------------------------------ phase 2


def _same_tunnel(a: ChildSa, b: ChildSa) -> bool:
    return (
        a.phase1_number == b.phase1_number
        and a.remote.addr == b.remote.addr
        and a.definition.number == b.definition.number
        and a.selector_out == b.selector_out
    )


def rekey_child(core: Core, child: ChildSa, reason: str) -> None:
    """Start a Quick Mode that replaces `child` (a phase 1 first when none is left)."""
    if child.state is not ChildState.ESTABLISHED or child.superseded_by or child.rekey_started:
        return
    p1 = core.config.phase1.get(child.phase1_number)
    p2 = core.config.phase2.get(child.definition.number)
    if (
        not may_initiate(p1)
        or p2 is None
        or p2.phase1_number != child.phase1_number
        or not p2.rekey
    ):
        child.rekey_at = 0.0  # the peer rekeys (or the definition is gone, or says rekey=false)
        return
    assert p1 is not None
    child.rekey_started = core.now
    core.touch_child(child)
    sa = core.sas.carrier(child)
    if sa is None:
        if not core.negotiating(p1.number, child.remote.addr):
            core.log(LogLevel.INFO, f"phase 2 {p2.name}: rekey needs a new phase 1 ({reason})")
            if core.start_phase1(p1, child.local.addr, child.remote.addr) is not None:
                core.counters.phase1_rekeys += 1
                core.tally.rekey(Phase.PHASE1, p1.number)
        return  # the retry after rekey_retry finds the new ISAKMP SA
    selectors = (child.selector_out.src, child.selector_out.dst)
    if _exchange_running(core, child, selectors):
        return  # already under way (ours, or the peer's: it rekeys first)
    if quick_mode.own_in_flight(sa, p2.number) >= quick_mode.OWN_IN_FLIGHT:
        # many subnet pairs come due together: wait for a slot instead of flooding the
        # peer's IV state (quick_mode.OWN_IN_FLIGHT); child_timers retries soon
        child.rekey_started = 0.0
        child.rekey_at = core.now + REKEY_BUSY_RETRY
        core.touch_child(child)
        return
    core.log(
        LogLevel.INFO,
        f"phase 2 {p2.name} with {child.remote.addr}: rekeying SA {child.spi_in:08x} ({reason})",
    )
    if quick_mode.initiate(core, p2, sa, selectors=selectors) is not None:
        core.counters.phase2_rekeys += 1
        core.tally.rekey(Phase.PHASE2, p2.number)


def _exchange_running(
    core: Core, child: ChildSa, selectors: tuple[SelectorSide, SelectorSide]
) -> bool:
    """Whether a Quick Mode for the same tunnel runs, under any ISAKMP SA with the peer."""
    for sa in core.sas.with_peer(child.phase1_number, child.remote.addr):
        for qe in sa.exchanges.values():
            if qe.state is not QmState.DONE and (qe.local_sel, qe.remote_sel) == selectors:
                return True
    return False


def supersede_child(core: Core, new: ChildSa) -> None:
    """`new` went to the kernel: mark the SAs of the same tunnel it replaces."""
    for other in core.sas.children.of_tunnel(new.definition.number, new.remote.addr):
        if (
            other is new
            or other.state is ChildState.DELETED
            or other.superseded_by
            or not _same_tunnel(other, new)
        ):
            continue
        if other.created < new.exchange_started:
            _supersede(core, other, new, we_delete=other.role is Role.INITIATOR)
            continue
        loser, winner = (other, new) if other.rank < new.rank else (new, other)
        core.counters.rekey_collisions += 1
        core.log(
            LogLevel.NOTICE,
            f"phase 2 {new.definition.name} with {new.remote.addr}: both sides rekeyed, "
            f"keeping SA {winner.spi_in:08x}",
        )
        _supersede(core, loser, winner, we_delete=loser.role is Role.INITIATOR)
        if loser is new:
            return


def adopt_resumed(
    core: Core,
    definition: Phase2Def,
    pair: ResumedPair,
    *,
    reqid: int,
    selector: TrafficSelector,
    local: IPAddress,
    remote: IPAddress,
) -> None:
    """A previous child's SA pair of `definition`, as the parent recorded it
    (ResumeCommand): kept as an SA that was complete before any exchange of this child, so
    the first SA of the same tunnel established here replaces it (supersede_child) and it is
    retired exactly like a rekeyed SA (finish_supersede: a Delete for its inbound SPI, a
    Phase2Remove that leaves the policies to the new SAs of the same reqid). This side
    always deletes it: the peer does not know the previous child is gone. Not rekeyed, not
    listed (the parent lists it as unmanaged until then); no key crosses."""
    if pair.tunnel_id in core.sas.children:
        return
    choice = IpsecChoice(
        ProtocolId(pair.proto), 0, 0, None, EncapsulationMode.TUNNEL.value, None, 0
    )
    old = ChildSa(
        tunnel_id=pair.tunnel_id,
        definition=definition,
        phase1_number=definition.phase1_number,
        isakmp_tunnel_id=0,
        role=Role.INITIATOR,
        protocol=ProtocolId(pair.proto),
        spi_in=pair.spi_in,
        spi_out=pair.spi_out,
        local=Endpoint(local, IKE_PORT),
        remote=Endpoint(remote, IKE_PORT),
        selector_out=selector,
        choice=choice,
        lifetime_seconds=0,
        reqid=reqid,
        state=ChildState.ESTABLISHED,
        created=core.now - 1.0,  # before every exchange of this child
        resumed=True,
    )
    core.sas.children[old.tunnel_id] = old


def _supersede(core: Core, old: ChildSa, new: ChildSa, *, we_delete: bool) -> None:
    we_delete = we_delete or old.resumed
    old.superseded_by = new.tunnel_id
    old.delete_at = core.now + core.settings.rekey_overlap if we_delete else 0.0
    core.touch_child(old)


def _live_successor(core: Core, old: ChildSa) -> ChildSa | None:
    """An SA of the same tunnel that can take over from `old`: not deleted, not itself on
    its way out; an established one first."""
    found = [
        c
        for c in core.sas.children.of_tunnel(old.definition.number, old.remote.addr)
        if c is not old
        and c.state is not ChildState.DELETED
        and not c.superseded_by
        and _same_tunnel(c, old)
    ]
    found.sort(key=lambda c: c.state is not ChildState.ESTABLISHED)
    return found[0] if found else None


def on_child_removed(core: Core, gone: ChildSa) -> None:
    """`gone` left (the kernel refused it, the peer deleted it, it expired): each SA it was
    to replace goes to another live successor, or is back in service at once instead of at
    its scheduled deletion (or never, when the peer was to delete it). If our own rekey had
    produced `gone`, it is tried again after `rekey_retry`."""
    # only an SA of the same tunnel is ever superseded by `gone` (supersede_child)
    for old in core.sas.children.of_tunnel(gone.definition.number, gone.remote.addr):
        if old.superseded_by != gone.tunnel_id or old.state is ChildState.DELETED:
            continue
        successor = _live_successor(core, old)
        if successor is not None:
            old.superseded_by = successor.tunnel_id
            continue
        core.log(
            LogLevel.NOTICE,
            f"phase 2 {old.definition.name} with {old.remote.addr}: replacement failed, "
            f"keeping SA {old.spi_in:08x}",
        )
        old.superseded_by = 0
        old.delete_at = 0.0
        if old.rekey_at and old.rekey_started:  # ours: retry once rekey_retry is over
            old.rekey_started = core.now
            old.rekey_at = min(old.rekey_at, core.now)
        core.touch_child(old)


def finish_supersede(core: Core, child: ChildSa) -> None:
    """The overlap is over: delete the replaced SA once a successor is in the kernel; if
    every successor failed, the SA is in service again and rekeys on its own."""
    successor = _live_successor(core, child)
    if successor is not None and successor.state is ChildState.ESTABLISHED:
        core.log(
            LogLevel.INFO,
            f"phase 2 {child.definition.name} with {child.remote.addr}: deleting replaced SA "
            f"{child.spi_in:08x}",
        )
        install.remove_child(core, child, send_delete=True, kernel=True)
        if not child.resumed:  # the parent never had it from this child
            core.emit(install.report_child(core, child, 0))
        return
    if successor is not None:  # still being installed
        child.delete_at = core.now + core.settings.rekey_overlap
    else:
        child.superseded_by = 0
        child.delete_at = 0.0
        child.rekey_started = 0.0
    core.touch_child(child)
