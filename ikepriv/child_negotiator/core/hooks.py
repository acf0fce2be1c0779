"""Extension points the exchange modules call, so NAT-T plugs in without editing the
exchanges. The default hooks do nothing beyond plain IKEv1. (DPD needs no hook: the engine
adds its notify handlers to the table informational.on_message dispatches through.)

NAT-T (natt.NatTHooks, the engine's default; Negotiator(hooks=Hooks()) gives plain IKEv1):
``ke_payloads`` adds NAT-D to MM3/MM4 (AM2/AM3), ``on_ke_payloads`` sees the peer's,
``encap_modes`` switches Quick Mode to the UDP-encapsulated modes, ``qm_payloads`` adds
NAT-OA, ``sa_encap`` fills Phase2Install.encap, ``accept_peer``/``on_authenticated`` let the peer
move to port 4500 (and follow a NAT rebinding once a message of any exchange, phase 1,
Quick Mode or informational, passed its HASH check), ``timer_deadline`` and
``on_timer`` send keepalives.
Per-SA state goes in IsakmpSa.extensions.
"""

from __future__ import annotations

from collections.abc import Sequence

from ikepriv.child_negotiator.core.datagram import Inbound
from ikepriv.child_negotiator.core.sa_table import IsakmpSa, QuickExchange
from ikepriv.ipc.messages import NatTEncap
from ikepriv.ipc.schema import Message as IpcMessage
from ikepriv.isakmp import Payload, vendor_ids
from ikepriv.isakmp.constants import EncapsulationMode

SENT_VENDOR_IDS: tuple[bytes, ...] = (vendor_ids.DPD, vendor_ids.NATT_RFC3947)
"""The Vendor IDs of our first phase 1 message, and the ones we act on from the peer."""


class Hooks:
    def vendor_ids(self, sa: IsakmpSa) -> tuple[bytes, ...]:
        """Vendor IDs of our first phase 1 message."""
        return SENT_VENDOR_IDS

    def ke_payloads(self, sa: IsakmpSa) -> Sequence[Payload]:
        """Extra payloads after KE and nonce (MM3, MM4): NAT-D goes here."""
        return ()

    def on_ke_payloads(self, sa: IsakmpSa, payloads: Sequence[Payload], inbound: Inbound) -> None:
        """The peer's MM3/MM4 (AM2/AM3) payloads, after they were accepted."""

    def encap_modes(self, sa: IsakmpSa, mode: EncapsulationMode) -> tuple[int, ...]:
        """Wire encapsulation modes for a kernel mode; the first is what we offer."""
        return (int(mode),)

    def sa_encap(self, sa: IsakmpSa) -> NatTEncap | None:
        return None

    def accept_peer(self, sa: IsakmpSa, inbound: Inbound) -> bool:
        """Whether a datagram for `sa` comes from where its peer is allowed to send from."""
        return inbound.remote == sa.remote and inbound.local.addr == sa.local.addr

    def on_authenticated(self, sa: IsakmpSa, inbound: Inbound) -> None:
        """A datagram for `sa` passed its HASH check: the place to follow the peer's port."""

    def qm_payloads(self, sa: IsakmpSa, qe: QuickExchange) -> Sequence[Payload]:
        """Extra payloads at the end of QM1/QM2 (NAT-OA)."""
        return ()

    def timer_deadline(self, sa: IsakmpSa) -> float | None:
        """When `on_timer` wants to run next for this SA (None: never)."""
        return None

    def on_timer(self, sa: IsakmpSa, now: float) -> Sequence[IpcMessage]:
        """Periodic work for an SA (NAT keepalives); returns messages for the parent."""
        return ()
