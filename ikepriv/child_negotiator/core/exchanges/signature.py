"""What signature authentication (RFC 2409 5.1, methods 3, 9, 10, 11) changes in phase 1,
for Main Mode and Aggressive Mode alike.

* SKEYID = prf(Ni_b | Nr_b, g^xy) holds no long-term secret, so the child computes it
  (`local_skeyid`); a responder makes its own nonce from the core's randomness (an
  initiator keeps the parent's Ni, which it already has).
* We ask for CERT payloads with one CR per trust anchor of the definition (`cert_requests`)
  and send ours (`own_certs`) when the definition says ALWAYS, or IF_ASKED and the peer
  sent a CR that is empty or names an issuer of our chain (`note_requests`).
* SIG replaces HASH. Ours comes from the parent (`ask_signature`, SignatureRequest: it
  computes HASH_I/HASH_R itself over our configured ID and signs that). The peer's is
  checked here (`authenticate_peer`): its chain against the definition's trust anchors at
  the wall-clock time, its ID against its certificate and the definition's remote_id, its
  signature over HASH_I/HASH_R with the negotiated method and the certificate's key.
  Any refusal is counted, logged with the tunnel name and the reason, told to the peer
  with the notify a pre-shared key failure gets, and ends the exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from ikepriv.child_negotiator.core import certificates
from ikepriv.child_negotiator.core.certificates import (
    X509_SIGNATURE,
    ParsedCredentials,
    PeerCertificate,
    Refused,
)
from ikepriv.child_negotiator.core.context import Core
from ikepriv.child_negotiator.core.datagram import IPAddress
from ikepriv.child_negotiator.core.exchanges import phase1
from ikepriv.child_negotiator.core.informational_send import send_notify
from ikepriv.child_negotiator.core.offers import ike_choices, parse_ike_transform
from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.child_negotiator.core.states import P1State
from ikepriv.crypto import signatures
from ikepriv.crypto.oakley import skeyid_signature
from ikepriv.ipc.messages import (
    ErrorCode,
    LogLevel,
    Phase1Def,
    Role,
    SendCert,
    SignatureReply,
    SignatureRequest,
)
from ikepriv.isakmp import (
    CertPayload,
    CertRequestPayload,
    IdPayload,
    Payload,
    SAPayload,
    SigPayload,
)
from ikepriv.isakmp.constants import SIGNATURE_METHODS, AuthMethod, ExchangeType, NotifyType

EXTENSION: Final = "signature"
RESPONDER_NONCE_BYTES: Final = 32  # our Nr when signatures authenticate (no parent nonce)
MAX_PEER_REQUESTS: Final = 16  # CR payloads looked at in one message
# CR payloads we send in one message: a Main Mode responder asks for the CAs of every
# definition MM5 may settle on, which must not grow MM4 without bound
MAX_OUR_REQUESTS: Final = 32

Signed = Callable[[Core, IsakmpSa, bytes], None]  # runs with our signature


@dataclass(slots=True)
class SigState:
    """What signature authentication keeps between messages, in IsakmpSa.extensions."""

    # the authorities of the peer's CR payloads (b"": any CA), kept raw: a Main Mode
    # responder only knows at MM5 which definition, and so which chain, answers them
    peer_authorities: tuple[bytes, ...] = ()
    waiting: bool = False  # our signature is asked of the parent


def uses_signatures(d: Phase1Def) -> bool:
    """Whether the definition authenticates with signatures (else: a pre-shared key)."""
    return d.auth_method in SIGNATURE_METHODS


def state(sa: IsakmpSa) -> SigState:
    """The SA's signature state, made on first use."""
    st = sa.extensions.get(EXTENSION)
    if not isinstance(st, SigState):
        st = SigState()
        sa.extensions[EXTENSION] = st
    return st


def waiting(sa: IsakmpSa) -> bool:
    """Whether our signature is asked of the parent (a pre-shared key SA never is; this
    leaves its extensions untouched)."""
    st = sa.extensions.get(EXTENSION)
    return isinstance(st, SigState) and st.waiting


def credentials(core: Core, d: Phase1Def) -> ParsedCredentials | None:
    """The definition's parsed files; None when they did not load (logged then)."""
    return core.credentials.get(d.number)


# ------------------------------------------------------------------------------ payloads


def cert_requests(core: Core, definitions: Iterable[Phase1Def]) -> list[Payload]:
    """One CR per trust anchor of these definitions (each CA once, at most
    MAX_OUR_REQUESTS): the CAs we accept."""
    seen: dict[bytes, None] = {}
    for d in definitions:
        creds = credentials(core, d)
        if creds is not None:
            seen.update(dict.fromkeys(creds.anchor_dns))
    return [CertRequestPayload(X509_SIGNATURE, dn) for dn in list(seen)[:MAX_OUR_REQUESTS]]


def note_requests(sa: IsakmpSa, payloads: Sequence[Payload]) -> None:
    """Keep the authorities of the peer's CR payloads (at most MAX_PEER_REQUESTS in all):
    from MM3/MM4 and AM1/AM2, and from MM5, where strongSwan as initiator sends its CR
    (after it saw ours in MM4), still in time for our MM6."""
    found = [p.authority for p in payloads if isinstance(p, CertRequestPayload)]
    if found:
        st = state(sa)
        st.peer_authorities = (*st.peer_authorities, *found)[:MAX_PEER_REQUESTS]


def _asked(creds: ParsedCredentials, st: SigState) -> bool:
    return certificates.asked_for_ours(creds, st.peer_authorities)


# send_cert: whether our chain goes out, given the definition's files and what was asked
_SEND: Final[dict[SendCert, Callable[[ParsedCredentials, SigState], bool]]] = {
    SendCert.NEVER: lambda creds, st: False,
    SendCert.IF_ASKED: _asked,
    SendCert.ALWAYS: lambda creds, st: True,
}


def own_certs(core: Core, sa: IsakmpSa) -> list[Payload]:
    """Our CERT payloads (end entity, then intermediates), if the definition sends them."""
    creds = credentials(core, sa.definition)
    if creds is None or not _SEND[sa.definition.send_cert](creds, state(sa)):
        return []
    return [CertPayload(X509_SIGNATURE, der) for der in creds.chain_der]


# ------------------------------------------------------------------------------ definitions


def offered_methods(offer: SAPayload) -> frozenset[AuthMethod]:
    """The authentication methods of the transforms an initiator offers that we can read."""
    return frozenset(
        choice.auth
        for proposal in offer.proposals
        for transform in proposal.transforms
        if (choice := parse_ike_transform(transform)) is not None
    )


def responder_candidates(
    core: Core, exchange: ExchangeType, local: IPAddress, peer: IPAddress, offer: SAPayload
) -> tuple[Phase1Def, ...]:
    """The definitions that may answer a first message, best first: those whose method
    the offer names, else (as before signatures existed) the best by address alone."""
    every = core.responder_definitions(exchange, local, peer)
    methods = offered_methods(offer)
    return tuple(d for d in every if d.auth_method in methods) or every[:1]


def definition_for_id(core: Core, sa: IsakmpSa, peer_id: IdPayload) -> Phase1Def | None:
    """A Main Mode responder's definition, once MM5 named the peer: among those for this
    address with the negotiated method and transform, one naming this ID beats one
    accepting any ID; then the address order (exact before wildcard), then the number."""
    assert sa.choice is not None
    suite = sa.choice.suite
    best: tuple[tuple[bool, int], Phase1Def] | None = None
    every = core.responder_definitions(sa.exchange, sa.local.addr, sa.remote.addr)
    for position, d in enumerate(every):
        if d.auth_method != sa.choice.auth or not certificates.identity_matches(
            d.remote_id, peer_id
        ):
            continue
        if all(c.suite != suite for c in ike_choices(d)):
            continue
        rank = (d.remote_id is None, position)
        if best is None or rank < best[0]:
            best = (rank, d)
    return best[1] if best is not None else None


# ------------------------------------------------------------------------------ keys


def responder_nonce(core: Core) -> bytes:
    """A responder's Nr: no parent nonce is needed, SKEYID holds no long-term secret."""
    nonce = core.random(RESPONDER_NONCE_BYTES)
    if len(nonce) != RESPONDER_NONCE_BYTES:
        raise ValueError("random source returned a short nonce")
    return bytes(nonce)


def local_skeyid(core: Core, sa: IsakmpSa) -> None:
    """SKEYID = prf(Ni_b | Nr_b, g^xy), then the phase 1 keys (g^xy is wiped)."""
    assert sa.choice is not None
    skeyid = skeyid_signature(sa.choice.hash, sa.ni, sa.nr, sa.g_xy)
    phase1.install_keys(core, sa, skeyid)


def ask_signature(core: Core, sa: IsakmpSa, waiting: P1State, then: Signed) -> None:
    """Our SIG data from the parent; `then` runs with it if the SA still waits in
    `waiting`. The parent computes the hash from these parts and our configured ID."""
    assert sa.keys is not None and sa.choice is not None
    st = state(sa)
    st.waiting = True
    d, keys, prf = sa.definition, sa.keys, sa.choice.hash
    initiator, skeyid = sa.role is Role.INITIATOR, bytes(keys.skeyid)
    core.request(
        lambda rid: SignatureRequest(
            rid,
            d.number,
            sa.remote.addr,
            prf,
            initiator,
            skeyid,
            sa.g_xi,
            sa.g_xr,
            sa.icookie,
            sa.rcookie,
            sa.sa_i_body,
        ),
        SignatureReply,
        lambda reply: _on_signature(core, sa, reply, waiting, then),
    )


def _on_signature(
    core: Core, sa: IsakmpSa, reply: SignatureReply, waiting: P1State, then: Signed
) -> None:
    st = state(sa)
    if sa.state is not waiting or not st.waiting:
        core.counters.dropped_stale_reply += 1
        return
    st.waiting = False
    if reply.error is not ErrorCode.OK:
        phase1.parent_refused(core, sa, "our signature", reply.error)
        return
    then(core, sa, reply.signature)


# ------------------------------------------------------------------------------ the peer


def authenticate_peer(
    core: Core,
    sa: IsakmpSa,
    peer_id: IdPayload,
    payloads: Sequence[Payload],
    auth_hash: bytes,
) -> bool:
    """Whether the peer is who its certificate says and the definition wants, and signed
    `auth_hash` (HASH_I of an initiator, HASH_R of a responder). On success its
    certificate is recorded on the SA; on failure the SA is failed (counted, logged,
    notified)."""
    sig = phase1.single(tuple(payloads), SigPayload)
    if not isinstance(sig, SigPayload):
        core.counters.dropped_malformed += 1
        refuse(core, sa, "no (or more than one) SIG payload")
        return False
    creds = credentials(core, sa.definition)
    if creds is None:
        refuse(core, sa, "the definition's certificate files are not usable")
        return False
    found = certificates.peer_cert_payloads(payloads)
    if found is None:
        refuse(core, sa, f"more than {certificates.MAX_PEER_CERTS} CERT payloads or one too large")
        return False
    chain, ignored = found
    if ignored:
        core.counters.dropped_unexpected += ignored  # CERT encodings we do not use
    checked = certificates.validate_peer(creds, chain, core.wall_time())
    if isinstance(checked, Refused):
        refuse(core, sa, checked.reason)
        return False
    for warning in checked.warnings:
        core.log(LogLevel.WARNING, f"phase 1 {sa.definition.name}: {warning}")
    if not certificates.id_in_certificate(peer_id, checked.leaf):
        refuse(
            core,
            sa,
            f"peer ID is not in its certificate ({checked.subject})",
            NotifyType.INVALID_ID_INFORMATION,
        )
        return False
    if not certificates.identity_matches(sa.definition.remote_id, peer_id):
        refuse(core, sa, "peer ID is not the one defined", NotifyType.INVALID_ID_INFORMATION)
        return False
    if not _signature_ok(core, sa, checked, auth_hash, sig.data):
        return False
    sa.peer_cert_subject, sa.peer_cert_issuer = checked.subject, checked.issuer
    return True


def _signature_ok(
    core: Core, sa: IsakmpSa, cert: PeerCertificate, auth_hash: bytes, signature: bytes
) -> bool:
    assert sa.choice is not None
    method = sa.choice.auth  # the negotiated method: it must fit the certificate's key
    key = cert.public_key()
    problem = "unsupported key type" if key is None else signatures.key_problem(method, key)
    if problem is not None:
        refuse(core, sa, f"certificate key does not fit {method.name}: {problem}")
        return False
    assert key is not None
    if not signatures.verify(method, key, auth_hash, signature):
        refuse(core, sa, f"bad signature ({method.name}, {cert.subject})")
        return False
    return True


def refuse(
    core: Core,
    sa: IsakmpSa,
    reason: str,
    notify_type: NotifyType = NotifyType.AUTHENTICATION_FAILED,
) -> None:
    """Authentication failed: counted, told to the peer (protected, as for a pre-shared
    key identity refusal), logged with the tunnel name and reason, exchange ended."""
    core.counters.dropped_auth += 1
    send_notify(core, sa, notify_type)
    core.fail_isakmp(sa, f"peer {sa.remote.addr} not authenticated: {reason}")
