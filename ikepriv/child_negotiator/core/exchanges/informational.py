"""Receiving informational exchanges (RFC 2408 4.8, RFC 2409 5.7): notifies and deletes.

Sending is a service of its own (informational_send.py), used by the modules below this
one. One we receive must be encrypted and hashed with a fresh message ID, or it changes
nothing. An unencrypted notify may still end a phase 1 that is being negotiated (a responder's
NO_PROPOSAL_CHOSEN carries our random cookie, which an off-path attacker cannot know), but
after phase 1 exists it is only counted.

Notify types dispatch through a table the engine builds and passes in: this module's own
NOTIFY_HANDLERS plus DPD's (R-U-THERE), so DPD plugs in without this module knowing it.

A Delete removes exactly the SAs it names that the sending peer owns: ISAKMP SAs by
cookies, IPsec SAs by the SPI the peer receives on (our outbound SPI).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ikepriv.child_negotiator.core import install
from ikepriv.child_negotiator.core.context import Core, NotifyHandler
from ikepriv.child_negotiator.core.datagram import Inbound
from ikepriv.child_negotiator.core.exchanges import quick_mode
from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.child_negotiator.core.wire import OpenError, after_first, leading_hash, open_message
from ikepriv.crypto.oakley import informational_hash
from ikepriv.crypto.prf import digests_equal
from ikepriv.ipc.messages import LogLevel
from ikepriv.isakmp import DeletePayload, NotifyPayload, Payload
from ikepriv.isakmp.constants import NotifyType, ProtocolId

ERROR_TYPES_END = 16384  # RFC 2408 3.14.1: 1..16383 are errors, the rest status


def on_message(
    core: Core, sa: IsakmpSa, inb: Inbound, notify_handlers: Mapping[int, NotifyHandler]
) -> None:
    """An informational for `sa`; authenticated notifies go to `notify_handlers` by type."""
    message = inb.message
    if not message.encrypted:
        if sa.established:
            core.counters.dropped_clear_informational += 1
            core.log(LogLevel.NOTICE, f"unencrypted informational from {sa.remote.addr} ignored")
            return
        _clear_during_negotiation(core, sa, message.payloads)
        return
    mid = message.header.message_id
    if sa.keys is None or sa.choice is None or mid == 0:
        core.counters.dropped_unexpected += 1
        return
    if mid in sa.finished_mids or mid in sa.exchanges:
        core.counters.dropped_replay += 1
        return
    try:
        plaintext, payloads = open_message(sa, message)
    except OpenError:
        core.counters.dropped_auth += 1
        return
    received = leading_hash(payloads)
    expected = informational_hash(
        sa.choice.hash, sa.keys.skeyid_a, mid, after_first(plaintext, len(payloads))
    )
    if received is None or not digests_equal(expected, received):
        core.counters.dropped_auth += 1
        return
    sa.finish_mid(mid, core.settings.finished_message_ids)
    core.hooks.on_authenticated(sa, inb)  # DPD and deletes follow a NAT rebinding too
    doomed: list[IsakmpSa] = []
    for payload in payloads[1:]:
        if isinstance(payload, NotifyPayload):
            _on_notify(core, sa, payload, notify_handlers)
        elif isinstance(payload, DeletePayload):
            doomed.extend(_on_delete(core, sa, payload))
    for target in doomed:
        core.log(LogLevel.INFO, f"phase 1 {target.definition.name} deleted by {target.remote.addr}")
        core.drop_isakmp(target)


def _clear_during_negotiation(core: Core, sa: IsakmpSa, payloads: Sequence[Payload]) -> None:
    for payload in payloads:
        if isinstance(payload, NotifyPayload) and 0 < payload.notify_type < ERROR_TYPES_END:
            name = _notify_name(payload.notify_type)
            core.fail_isakmp(sa, f"peer sent {name}")
            return
    core.counters.dropped_unexpected += 1


def _notify_name(notify_type: int) -> str:
    try:
        return NotifyType(notify_type).name
    except ValueError:
        return f"notify {notify_type}"


def _on_notify(
    core: Core, sa: IsakmpSa, notify: NotifyPayload, handlers: Mapping[int, NotifyHandler]
) -> None:
    handler = handlers.get(notify.notify_type)
    if handler is not None:
        handler(core, sa, notify)
        return
    if notify.notify_type < ERROR_TYPES_END:
        _on_error_notify(core, sa, notify)
    else:
        core.log(LogLevel.DEBUG, f"{_notify_name(notify.notify_type)} from {sa.remote.addr}")


def _on_error_notify(core: Core, sa: IsakmpSa, notify: NotifyPayload) -> None:
    name = _notify_name(notify.notify_type)
    core.log(LogLevel.WARNING, f"{name} from {sa.remote.addr} ({sa.definition.name})")
    if notify.protocol_id in (ProtocolId.IPSEC_ESP, ProtocolId.IPSEC_AH) and len(notify.spi) == 4:
        spi = int.from_bytes(notify.spi, "big")
        for qe in list(sa.exchanges.values()):
            if spi and spi in (qe.spi_in, qe.spi_out):
                quick_mode.abort(core, qe, f"peer sent {name}")
        return
    if not sa.established:
        core.fail_isakmp(sa, f"peer sent {name}")


def _on_initial_contact(core: Core, sa: IsakmpSa, notify: NotifyPayload) -> None:
    initial_contact(core, sa)


def _on_connected(core: Core, sa: IsakmpSa, notify: NotifyPayload) -> None:
    core.log(LogLevel.DEBUG, f"CONNECTED from {sa.remote.addr}")


# This module's own notify handlers; the engine adds DPD's to build the table it passes in.
NOTIFY_HANDLERS: Mapping[int, NotifyHandler] = {
    NotifyType.INITIAL_CONTACT: _on_initial_contact,
    NotifyType.CONNECTED: _on_connected,
}


def initial_contact(core: Core, sa: IsakmpSa) -> None:
    """The peer has no state from before: drop, without Deletes, the SAs with it that were
    complete before this exchange began. Exchanges still running and SAs completed since
    are not "from before": a peer with several connections opens ISAKMP SAs in parallel,
    each of which may carry the notify (each was its first contact when it started)."""
    for other in core.sas.with_peer(sa.definition.number, sa.remote.addr):  # indexed
        if other is not sa and other.established and other.established_at < sa.created:
            core.log(LogLevel.INFO, f"INITIAL-CONTACT: phase 1 {other.tunnel_id} forgotten")
            core.drop_isakmp(other)
    for child in core.sas.children.of_phase1(sa.definition.number, sa.remote.addr):
        # older SAs were re-parented to `sa` if it replaced their ISAKMP SA: by time, not owner
        if child.created < sa.created:
            install.remove_child(core, child, send_delete=False, kernel=True)


def _on_delete(core: Core, sa: IsakmpSa, delete: DeletePayload) -> list[IsakmpSa]:
    core.counters.deletes_received += 1
    doomed: list[IsakmpSa] = []
    if delete.protocol_id == ProtocolId.ISAKMP:
        for spi in delete.spis:
            target = core.sas.by_cookies.get(spi)
            if (
                target is None
                or target.remote.addr != sa.remote.addr
                or target.definition.number != sa.definition.number
                or target in doomed
            ):
                core.counters.deletes_unknown += 1
                continue
            doomed.append(target)
        return doomed
    for raw in delete.spis:
        number = int.from_bytes(raw, "big") if len(raw) == 4 else -1
        child = install.find_owned(core, sa, delete.protocol_id, number)
        if child is None:
            core.counters.deletes_unknown += 1
            core.log(LogLevel.NOTICE, f"{sa.remote.addr} asked to remove an SA it does not own")
            continue
        core.log(LogLevel.INFO, f"phase 2 {child.definition.name} deleted by {sa.remote.addr}")
        install.remove_child(core, child, send_delete=False, kernel=True)
    return doomed
