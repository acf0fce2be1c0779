"""Extension points the exchange modules call, so NAT-T (and later DPD) plug in without
editing the exchanges. The default hooks do nothing beyond plain IKEv1.

A NAT-T implementation subclasses Hooks and is passed to Negotiator(hooks=...):
``ke_payloads`` adds NAT-D to MM3/MM4, ``on_ke_payloads`` sees the peer's, ``encap_modes``
switches Quick Mode to the UDP-encapsulated modes and ``sa_encap`` fills SaAdd.encap.
Per-SA state goes in IsakmpSa.extensions.
"""

from __future__ import annotations

from collections.abc import Sequence

from ikepriv.child_negotiator import vendor_ids
from ikepriv.child_negotiator.sa_table import IsakmpSa
from ikepriv.ipc.messages import NatTEncap
from ikepriv.isakmp import Payload
from ikepriv.isakmp.constants import EncapsulationMode


class Hooks:
    def vendor_ids(self, sa: IsakmpSa) -> tuple[bytes, ...]:
        """Vendor IDs of our first phase 1 message."""
        return vendor_ids.SENT

    def ke_payloads(self, sa: IsakmpSa) -> Sequence[Payload]:
        """Extra payloads after KE and nonce (MM3, MM4): NAT-D goes here."""
        return ()

    def on_ke_payloads(self, sa: IsakmpSa, payloads: Sequence[Payload]) -> None:
        """The peer's MM3/MM4 payloads, after they were accepted."""

    def encap_modes(self, sa: IsakmpSa, mode: EncapsulationMode) -> tuple[int, ...]:
        """Wire encapsulation modes for a kernel mode; the first is what we offer."""
        return (int(mode),)

    def sa_encap(self, sa: IsakmpSa) -> NatTEncap | None:
        return None
