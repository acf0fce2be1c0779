"""Sending informational exchanges (RFC 2408 4.8, RFC 2409 5.7): notifies and deletes.

A service for whoever must tell the peer something: Quick Mode (errors, CONNECTED),
install (Deletes of removed IPsec SAs), DPD (R-U-THERE and its ACK), rekey and the
engine (Deletes of ISAKMP SAs). Receiving is an exchange of its own
(exchanges/informational.py), which sits above the modules that use this one.

Once keys exist every informational we send is encrypted and carries HASH(1).
"""

from __future__ import annotations

from collections.abc import Sequence

from ikepriv.child_negotiator.core.context import Core
from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.child_negotiator.core.wire import seal_hashed
from ikepriv.crypto.oakley import informational_hash
from ikepriv.ipc.messages import DatagramOut
from ikepriv.isakmp import DeletePayload, NotifyPayload, Payload
from ikepriv.isakmp.constants import DOI, ExchangeType, NotifyType, ProtocolId

INFO = ExchangeType.INFORMATIONAL


def send(core: Core, sa: IsakmpSa, payloads: Sequence[Payload]) -> bool:
    """An encrypted, hashed informational; False when the SA has no keys yet."""
    keys, iv = sa.keys, sa.iv
    if keys is None or iv is None or sa.choice is None:
        return False
    mid = core.new_message_id(sa)
    alg, skeyid_a = sa.choice.hash, keys.skeyid_a
    data = seal_hashed(
        sa, INFO, mid, payloads, lambda rest: informational_hash(alg, skeyid_a, mid, rest)
    )
    iv.forget(mid)
    sa.finish_mid(mid, core.settings.finished_message_ids)
    core.emit(DatagramOut(sa.local, sa.remote, sa.natt, data))
    return True


def send_notify(
    core: Core,
    sa: IsakmpSa,
    notify_type: NotifyType,
    protocol: ProtocolId = ProtocolId.ISAKMP,
    spi: bytes | None = None,
    data: bytes = b"",
) -> None:
    payload = NotifyPayload(
        DOI.IPSEC, protocol, sa.cookies if spi is None else spi, notify_type, data
    )
    if send(core, sa, [payload]):
        core.counters.notifies_sent += 1


def send_delete_isakmp(core: Core, sa: IsakmpSa) -> None:
    send(core, sa, [DeletePayload.isakmp(sa.cookies)])


def send_delete_ipsec(core: Core, sa: IsakmpSa, protocol: ProtocolId, spis: Sequence[int]) -> None:
    send(core, sa, [DeletePayload.ipsec(protocol, tuple(s.to_bytes(4, "big") for s in spis))])
