"""NAT traversal for IKEv1 (RFC 3947, RFC 3948), as Hooks the exchange modules call.

Both ends announce support with a vendor ID; we send the RFC 3947 one, and as a responder
also answer peers that only know draft-ietf-ipsec-nat-t-ike-02/03 (NAT-D/NAT-OA payload
numbers 130/131, encapsulation modes 61443/61444). Support is used only when the phase 1
definition allows it (Phase1Def.nat_t).

Detection: each side sends NAT-D hashes (MM3/MM4, AM2/AM3) of the packet's destination and
source as it sees them; a receiver whose own address/port hash differs from the first one is
behind a NAT, and a peer whose hash matches none of the others is. With a NAT on either
side the initiator moves to UDP 4500 from MM5/AM3 on (the responder follows when an
authenticated message arrives there), Quick Mode offers the UDP-encapsulated modes (plus
NAT-OA in transport mode), Phase2Install carries the encapsulation ports, and a side behind a NAT
sends a keepalive every 20 s so the mapping stays open.

Security: before authentication a datagram may come from any port of the peer's address
(the NAT may have chosen a new one for 4500), but replies still go to the recorded
endpoint; the endpoint changes only after a message of that SA passed its HASH check, so an
off-path sender cannot steer the exchange elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from ikepriv.child_negotiator.core.datagram import Inbound
from ikepriv.child_negotiator.core.hooks import Hooks
from ikepriv.child_negotiator.core.sa_table import IsakmpSa, QuickExchange
from ikepriv.crypto.crypto_errors import CryptoError
from ikepriv.crypto.prf import nat_d_hash
from ikepriv.ipc.messages import DatagramOut, Endpoint, NatTEncap, Role
from ikepriv.ipc.schema import Message as IpcMessage
from ikepriv.isakmp import NatDPayload, NatOaPayload, Payload, vendor_ids
from ikepriv.isakmp.constants import NATT_KEEPALIVE, NATT_PORT, EncapsulationMode


def _md5(text: bytes) -> bytes:
    return hashlib.md5(text, usedforsecurity=False).digest()


RFC3947 = vendor_ids.NATT_RFC3947
DRAFT_02 = _md5(b"draft-ietf-ipsec-nat-t-ike-02")
DRAFT_02N = _md5(b"draft-ietf-ipsec-nat-t-ike-02\n")
DRAFT_03 = _md5(b"draft-ietf-ipsec-nat-t-ike-03")

# (vendor ID, is a draft) in order of preference: a responder answers with the first one
# the initiator sent; an initiator sends, and accepts back, only the RFC one.
VARIANTS: tuple[tuple[bytes, bool], ...] = (
    (RFC3947, False),
    (DRAFT_03, True),
    (DRAFT_02N, True),
    (DRAFT_02, True),
)
INITIATOR_VARIANTS = VARIANTS[:1]
NATT_VIDS = frozenset(v for v, _ in VARIANTS)

# (draft, kernel mode) -> the wire mode of Quick Mode under a NAT.
ENCAPSULATED: dict[tuple[bool, EncapsulationMode], EncapsulationMode] = {
    (False, EncapsulationMode.TUNNEL): EncapsulationMode.UDP_ENCAPSULATED_TUNNEL,
    (False, EncapsulationMode.TRANSPORT): EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT,
    (True, EncapsulationMode.TUNNEL): EncapsulationMode.UDP_ENCAPSULATED_TUNNEL_DRAFT,
    (True, EncapsulationMode.TRANSPORT): EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT_DRAFT,
}
_ENCAPSULATED_TRANSPORT = frozenset(
    {
        int(EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT),
        int(EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT_DRAFT),
    }
)

KEEPALIVE_INTERVAL = 20.0  # RFC 3948 4: 20 seconds is the usual default
MAX_NAT_D = 8  # hashes looked at per message (a host has few addresses)
EXTENSION = "natt"


@dataclass(slots=True)
class NatState:
    """Per ISAKMP SA, once both ends announced the same NAT-T variant."""

    vendor_id: bytes
    draft: bool
    detected: bool = False  # NAT-D of the peer seen
    local_behind_nat: bool = False
    peer_behind_nat: bool = False
    forced: bool = False  # Phase1Def.encap: we faked our NAT-D, both sides encapsulate
    next_keepalive: float | None = None

    @property
    def nat(self) -> bool:
        return self.local_behind_nat or self.peer_behind_nat or self.forced


def agreed_variant(sa: IsakmpSa) -> tuple[bytes, bool] | None:
    """The NAT-T variant both ends announced, or None (off for the definition, or unknown
    to the peer, or the peer's vendor IDs not seen yet)."""
    if not sa.definition.nat_t:
        return None
    candidates = INITIATOR_VARIANTS if sa.role is Role.INITIATOR else VARIANTS
    for vid, draft in candidates:
        if vid in sa.peer_vendor_ids:
            return vid, draft
    return None


def state_of(sa: IsakmpSa) -> NatState | None:
    found = sa.extensions.get(EXTENSION)
    if isinstance(found, NatState):
        return found
    variant = agreed_variant(sa)
    if variant is None:
        return None
    st = NatState(*variant)
    sa.extensions[EXTENSION] = st
    return st


def _hash(sa: IsakmpSa, endpoint: Endpoint) -> bytes:
    assert sa.choice is not None
    return nat_d_hash(sa.choice.hash, sa.icookie, sa.rcookie, endpoint.addr, endpoint.port)


def _float(sa: IsakmpSa, local: Endpoint, remote: Endpoint) -> None:
    sa.local, sa.remote, sa.natt = local, remote, True


class NatTHooks(Hooks):
    def __init__(self, keepalive_interval: float = KEEPALIVE_INTERVAL) -> None:
        self.keepalive_interval = keepalive_interval

    # -- phase 1 -----------------------------------------------------------------------

    def vendor_ids(self, sa: IsakmpSa) -> tuple[bytes, ...]:
        base = tuple(v for v in super().vendor_ids(sa) if v not in NATT_VIDS)
        if not sa.definition.nat_t:
            return base
        if sa.role is Role.INITIATOR:
            return (*base, *(vid for vid, _ in INITIATOR_VARIANTS))
        variant = agreed_variant(sa)
        return base if variant is None else (*base, variant[0])

    def ke_payloads(self, sa: IsakmpSa) -> Sequence[Payload]:
        st = state_of(sa)
        if st is None or sa.choice is None:
            return ()
        # First the destination as we address it, then our own source (RFC 3947 3.2).
        # encap = true: a source hash that matches no address (strongSwan's encap=yes sends
        # a random one) makes the peer see us behind a NAT, so both sides move to 4500 and
        # encapsulate ESP in UDP.
        source = _hash(sa, sa.local)
        if sa.definition.encap:
            source = bytes(b ^ 0xFF for b in source)
        return (
            NatDPayload(_hash(sa, sa.remote), draft=st.draft),
            NatDPayload(source, draft=st.draft),
        )

    def on_ke_payloads(self, sa: IsakmpSa, payloads: Sequence[Payload], inbound: Inbound) -> None:
        st = state_of(sa)
        if st is None or sa.choice is None:
            return
        hashes = [p.data for p in payloads if isinstance(p, NatDPayload)][:MAX_NAT_D]
        if len(hashes) < 2:
            return  # announced NAT-T but sent no NAT-D: assume no NAT
        try:
            mine = _hash(sa, inbound.local)
            theirs = _hash(sa, inbound.remote)
        except CryptoError:
            return
        st.detected = True
        st.local_behind_nat = not hmac.compare_digest(hashes[0], mine)
        st.peer_behind_nat = not any(hmac.compare_digest(h, theirs) for h in hashes[1:])
        st.forced = sa.definition.encap
        if st.nat and sa.role is Role.INITIATOR and not sa.natt:
            # RFC 3947 4: the initiator changes to port 4500 with its next message.
            _float(sa, Endpoint(sa.local.addr, NATT_PORT), Endpoint(sa.remote.addr, NATT_PORT))

    def accept_peer(self, sa: IsakmpSa, inbound: Inbound) -> bool:
        if super().accept_peer(sa, inbound):
            return True
        return (
            state_of(sa) is not None
            and inbound.remote.addr == sa.remote.addr
            and inbound.local.addr == sa.local.addr
        )

    def on_authenticated(self, sa: IsakmpSa, inbound: Inbound) -> None:
        if not inbound.natt or (inbound.remote == sa.remote and inbound.local == sa.local):
            return
        if state_of(sa) is None or inbound.remote.addr != sa.remote.addr:
            return
        # The peer moved to 4500, or its NAT gave it a new port: follow (authenticated).
        _float(sa, inbound.local, inbound.remote)

    # -- phase 2 -----------------------------------------------------------------------

    def _encapsulating(self, sa: IsakmpSa) -> NatState | None:
        st = state_of(sa)
        return st if st is not None and st.nat and sa.natt else None

    def encap_modes(self, sa: IsakmpSa, mode: EncapsulationMode) -> tuple[int, ...]:
        st = self._encapsulating(sa)
        if st is None:
            return super().encap_modes(sa, mode)
        return (int(ENCAPSULATED[(st.draft, mode)]),)

    def sa_encap(self, sa: IsakmpSa) -> NatTEncap | None:
        if self._encapsulating(sa) is None:
            return None
        return NatTEncap(sa.local.port, sa.remote.port)

    def qm_payloads(self, sa: IsakmpSa, qe: QuickExchange) -> Sequence[Payload]:
        st = self._encapsulating(sa)
        if st is None:
            return ()
        if qe.choice is not None:
            mode = qe.choice.mode
        elif qe.offered:
            mode = qe.offered[0].mode
        else:
            return ()
        if mode not in _ENCAPSULATED_TRANSPORT:
            return ()
        if st.draft:
            return (NatOaPayload(sa.local.addr, draft=True),)
        # RFC 3947 5.2: NAT-OAi then NAT-OAr, as this side sees them.
        if qe.role is Role.INITIATOR:
            return (NatOaPayload(sa.local.addr), NatOaPayload(sa.remote.addr))
        return (NatOaPayload(sa.remote.addr), NatOaPayload(sa.local.addr))

    # -- keepalives --------------------------------------------------------------------

    def _keepalive_due(self, sa: IsakmpSa) -> float | None:
        st = self._encapsulating(sa)
        if st is None or not st.local_behind_nat or not sa.established:
            return None
        if st.next_keepalive is None:
            st.next_keepalive = sa.established_at + self.keepalive_interval
        return st.next_keepalive

    def timer_deadline(self, sa: IsakmpSa) -> float | None:
        return self._keepalive_due(sa)

    def on_timer(self, sa: IsakmpSa, now: float) -> Sequence[IpcMessage]:
        due = self._keepalive_due(sa)
        if due is None or now < due:
            return ()
        st = state_of(sa)
        assert st is not None
        st.next_keepalive = now + self.keepalive_interval
        return (DatagramOut(sa.local, sa.remote, True, NATT_KEEPALIVE),)
