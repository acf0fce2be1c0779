"""Signature authentication (RSA 3, ECDSA 9/10/11) between two in-process cores.

Both modes, both roles, every method, with certificates made by tests/pki.py at test time
and an intermediate CA. The stand-in parents sign like the real one (harness/signer.py:
HASH_I/HASH_R computed from the request's parts and the configured ID). Negative cases
check what an operator sees: the phase 1 fails on the side that checks, with a log line
naming the tunnel and the reason, and the peer is told.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import pki
import pytest
from cryptography import x509
from harness.core_sim import (
    LEFT,
    LEFT_NET,
    RIGHT,
    RIGHT_NET,
    Simulation,
    ike_proposal,
    phase1_def,
    phase2_def,
    selector,
)
from harness.signer import signing_key

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot, Credentials
from ikepriv.crypto import signatures
from ikepriv.ipc.messages import (
    ConfigBegin,
    ConfigCredential,
    ConfigEnd,
    ConfigPhase1,
    CredentialKind,
    Fragmentation,
    Identity,
    SendCert,
    TunnelState,
)
from ikepriv.isakmp import CertPayload, CertRequestPayload, decode_message
from ikepriv.isakmp.constants import AuthMethod, ExchangeType, IdType, IkeHash, NotifyType
from ikepriv.parent_kernel.signer import SigningKey

MM, AM = ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE
MODES = {"main": MM, "aggressive": AM}
WALL = pki.NOW.timestamp()  # the cores' wall clock: certificates are valid around it

ROOT = pki.make_ca()
INTER = pki.make_intermediate(ROOT)
OTHER_ROOT = pki.make_ca("C=CH, O=elsewhere, CN=Other Root CA", slot=5)


def dn(issued: pki.Issued) -> Identity:
    return Identity(IdType.DER_ASN1_DN, issued.cert.subject.public_bytes())


def fqdn(name: str) -> Identity:
    return Identity(IdType.FQDN, name.encode())


@dataclass
class End:
    """One gateway's signature set-up."""

    entity: pki.Issued
    intermediates: tuple[pki.Issued, ...] = (INTER,)
    anchors: tuple[pki.Issued, ...] = (ROOT,)
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    send_cert: SendCert = SendCert.IF_ASKED
    local_id: Identity | None = None  # default: the certificate's DN
    method: AuthMethod | None = None  # default: the one the key serves
    sign_id: Identity | None = None  # the ID its parent signs over (default: local_id)
    sign_key: signatures.PrivateKey | None = None

    def ident(self) -> Identity:
        return self.local_id or dn(self.entity)

    def auth(self) -> AuthMethod:
        return self.method or signatures.method_for_key(self.entity.key)

    def credentials(self, number: int) -> list[ConfigCredential]:
        own = pki.chain_pem(self.entity, *self.intermediates)
        out = [ConfigCredential(0, number, CredentialKind.OWN_CERT, 0, own)]
        # anchors alternate PEM and DER: the child reads both
        out += [
            ConfigCredential(0, number, CredentialKind.TRUST_ANCHOR, i, a.der if i % 2 else a.pem)
            for i, a in enumerate(self.anchors)
        ]
        out += [
            ConfigCredential(0, number, CredentialKind.CRL, i, pki.crl_pem(c))
            for i, c in enumerate(self.crls)
        ]
        return out

    def files(self) -> Credentials:
        """The snapshot's form of the same files (as the builder keeps them)."""
        items = self.credentials(1)
        return Credentials(
            *(tuple(c.blob for c in items if c.kind is kind) for kind in CredentialKind)
        )

    def signer(self) -> SigningKey:
        """Its parent's signing key (parent_kernel/signer.py), over `sign_id` if given."""
        key = self.sign_key or self.entity.key
        return signing_key(self.auth(), key, self.sign_id or self.ident())


def _entity(cn: str, kind: str, *, sans: Sequence[str] = (), **kw: object) -> pki.Issued:
    return pki.make_end_entity(INTER, f"C=CH, O=ikepriv test, CN={cn}", sans, kind, **kw)  # type: ignore[arg-type]


def make_sim(
    left: End,
    right: End,
    mode: ExchangeType = MM,
    *,
    hash_alg: IkeHash = IkeHash.SHA2_256,
    responder_remote_id: Identity | str | None = "left",
    initiator_remote_id: Identity | str | None = "right",
    responder_any: bool = False,
    with_phase2: bool = False,
    extra_responder: Sequence[tuple[int, End, Identity | None]] = (),
    fragmentation: Fragmentation | None = None,
    **sim_kw: Any,
) -> Simulation:
    """LEFT initiates to RIGHT; each side's definition 1 uses its End. `extra_responder`
    adds more responder definitions (number, End, remote ID) for %any."""
    prop = [ike_proposal(hash_alg=hash_alg)]
    rid_i = dn(right.entity) if initiator_remote_id == "right" else initiator_remote_id
    rid_r = dn(left.entity) if responder_remote_id == "left" else responder_remote_id
    assert not isinstance(rid_i, str) and not isinstance(rid_r, str)
    p1_i = phase1_def(1, LEFT, RIGHT, prop, local_id=left.ident(), remote_id=rid_i,
                      any_remote_id=rid_i is None, mode=mode, auth_method=left.auth(),
                      send_cert=left.send_cert)  # fmt: skip
    p1_r = phase1_def(1, RIGHT, None if responder_any else LEFT, prop, local_id=right.ident(),
                      remote_id=rid_r, any_remote_id=rid_r is None, mode=mode,
                      auth_method=right.auth(), send_cert=right.send_cert)  # fmt: skip
    if fragmentation is not None:
        p1_i, p1_r = (replace(d, fragmentation=fragmentation) for d in (p1_i, p1_r))
    p2_i = [phase2_def(1, 1, selector(LEFT_NET), selector(RIGHT_NET))] if with_phase2 else []
    p2_r = [phase2_def(1, 1, selector(RIGHT_NET), selector(LEFT_NET))] if with_phase2 else []
    r_defs, r_files = [p1_r], {1: right.files()}
    for number, end, remote_id in extra_responder:
        r_defs.append(phase1_def(number, RIGHT, None, prop, local_id=end.ident(),
                                 remote_id=remote_id, any_remote_id=remote_id is None, mode=mode,
                                 auth_method=end.auth(), send_cert=end.send_cert))  # fmt: skip
        r_files[number] = end.files()
    init = ConfigSnapshot.of([p1_i], p2_i, credentials={1: left.files()})
    resp = ConfigSnapshot.of(r_defs, p2_r, credentials=r_files)
    sim = Simulation(init, resp, wall_clock=lambda: WALL, **{"seed": 3, **sim_kw})
    sim.initiator.parent.signers[1] = left.signer()
    sim.responder.parent.signers[1] = right.signer()
    for number, end, _ in extra_responder:
        sim.responder.parent.signers[number] = end.signer()
    return sim


def run_phase1(sim: Simulation) -> Simulation:
    sim.initiate(phase=1, number=1)
    sim.run(duration=120)
    return sim


def established(sim: Simulation, side: str) -> bool:
    return len(sim.established_isakmp(side)) == 1


def cert_payloads_sent(sim: Simulation, side: str) -> list[CertPayload]:
    """CERT payloads in the plain messages a side sent, and in its encrypted ones as the
    peer decrypted them (read back from the peer core's log of accepted payloads is not
    kept, so this looks at Aggressive Mode's plain AM2 only)."""
    found: list[CertPayload] = []
    for out in sim.sides[side].sent:
        message = decode_message(out.data)
        if not message.encrypted:
            found += [p for p in message.payloads if isinstance(p, CertPayload)]
    return found


def cert_requests_sent(sim: Simulation, side: str) -> list[CertRequestPayload]:
    found: list[CertRequestPayload] = []
    for out in sim.sides[side].sent:
        message = decode_message(out.data)
        if not message.encrypted:
            found += [p for p in message.payloads if isinstance(p, CertRequestPayload)]
    return found


# ---------------------------------------------------------------------------- positive

KEYS = {
    "rsa2048": ("rsa2048", "rsa2048", AuthMethod.RSA_SIGNATURES),
    "rsa4096": ("rsa4096", "rsa2048", AuthMethod.RSA_SIGNATURES),
    "p256": ("p256", "p256", AuthMethod.ECDSA_SHA256_P256),
    "p384": ("p384", "p384", AuthMethod.ECDSA_SHA384_P384),
    "p521": ("p521", "p521", AuthMethod.ECDSA_SHA512_P521),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("keys", KEYS)
def test_signatures_establish_phase1_and_2_with_an_intermediate(mode: str, keys: str) -> None:
    left_kind, right_kind, method = KEYS[keys]
    left = End(_entity("left", left_kind, slot=10))
    right = End(_entity("right", right_kind, slot=11))
    sim = make_sim(left, right, MODES[mode], with_phase2=True)
    sim.initiate(phase=2, number=1)
    sim.run(duration=120)
    sim.assert_keys_match(expected_pairs=2)
    for side, peer in (("initiator", right), ("responder", left)):
        (sa,) = sim.established_isakmp(side)
        assert sa.choice.auth is method
        # `ike cmd=list verbose` shows the peer's certificate: the report carries it
        reports = [
            r
            for r in sim.sides[side].parent.reports
            if r.tunnel_id == sa.tunnel_id and r.state is TunnelState.ESTABLISHED
        ]
        assert reports and reports[0].peer_cert_subject == peer.entity.cert.subject.rfc4514_string()
        assert reports[0].peer_cert_issuer == INTER.cert.subject.rfc4514_string()
        # our signatures came from the parent, one per phase 1, for our definition
        (req,) = sim.sides[side].parent.signature_requests
        assert req.phase1_number == 1 and req.initiator == (side == "initiator")
    # SKEYID is the child's own with signatures: the parents computed none
    assert not sim.initiator.parent.skeyid_requests and not sim.responder.parent.skeyid_requests


@pytest.mark.parametrize("mode", MODES)
def test_fqdn_and_address_ids_match_subject_alt_names(mode: str) -> None:
    left = End(_entity("left-san", "p256", slot=10, sans=("left.example.org",)),
               local_id=fqdn("left.example.org"))  # fmt: skip
    right = End(_entity("right-san", "p256", slot=11, sans=(str(RIGHT),)),
                local_id=Identity(IdType.IPV4_ADDR, RIGHT.packed))  # fmt: skip
    sim = make_sim(
        left, right, MODES[mode], responder_remote_id=fqdn("left.example.org"),
        initiator_remote_id=None,
    )  # fmt: skip
    run_phase1(sim)
    assert established(sim, "initiator") and established(sim, "responder")


def test_main_mode_responder_picks_the_definition_by_the_initiators_id() -> None:
    """%any with two definitions: the one naming the initiator's DN answers, with its own
    certificate (the initiator checks it against the DN it expects)."""
    alice = End(_entity("alice", "p256", slot=12))
    bob = End(_entity("bob", "p256", slot=13))
    gw_for_alice = End(_entity("gw-a", "p256", slot=14))
    gw_for_bob = End(_entity("gw-b", "p256", slot=15))
    sim = make_sim(bob, gw_for_alice, MM, responder_remote_id=dn(alice.entity), responder_any=True,
                   initiator_remote_id=dn(gw_for_bob.entity),
                   extra_responder=[(2, gw_for_bob, dn(bob.entity))])  # fmt: skip
    run_phase1(sim)
    assert established(sim, "initiator")
    (sa,) = sim.established_isakmp("responder")
    assert sa.definition.number == 2
    (req,) = sim.responder.parent.signature_requests
    assert req.phase1_number == 2


# ---------------------------------------------------------------------------- send_cert


@pytest.mark.parametrize("mode", MODES)
def test_cr_names_our_trust_anchors(mode: str) -> None:
    left = End(_entity("left", "p256", slot=10), anchors=(ROOT, OTHER_ROOT))
    right = End(_entity("right", "p256", slot=11))
    sim = run_phase1(make_sim(left, right, MODES[mode]))
    authorities = [p.authority for p in cert_requests_sent(sim, "initiator")]
    assert authorities == [ROOT.cert.subject.public_bytes(), OTHER_ROOT.cert.subject.public_bytes()]
    assert established(sim, "initiator")


def test_aggressive_responder_sends_its_chain_when_asked() -> None:
    left = End(_entity("left", "p256", slot=10))
    right = End(_entity("right", "p256", slot=11), send_cert=SendCert.IF_ASKED)
    # whole messages, so the CERT payloads can be read off the wire here
    sim = run_phase1(make_sim(left, right, AM, fragmentation=Fragmentation.NO))
    ders = [p.data for p in cert_payloads_sent(sim, "responder")]
    assert ders == [right.entity.der, INTER.der]  # end entity, then the intermediate
    assert established(sim, "initiator")


def _fail_reason(sim: Simulation, side: str) -> str:
    text = sim.sides[side].log_text()
    lines = [line for line in text.splitlines() if "not authenticated" in line]
    assert lines, f"no authentication failure logged by the {side}:\n{text}"
    return lines[0]


@pytest.mark.parametrize("mode", MODES)
def test_send_cert_never_leaves_the_peer_without_a_certificate(mode: str) -> None:
    left = End(_entity("left", "p256", slot=10))
    right = End(_entity("right", "p256", slot=11), send_cert=SendCert.NEVER)
    sim = run_phase1(make_sim(left, right, MODES[mode]))
    assert not established(sim, "initiator")
    line = _fail_reason(sim, "initiator")
    assert "p1-1" in line and "no certificate from the peer" in line


@pytest.mark.parametrize("mode", MODES)
def test_if_asked_is_silent_when_the_cr_names_another_ca(mode: str) -> None:
    left = End(_entity("left", "p256", slot=10), anchors=(OTHER_ROOT,))
    right = End(_entity("right", "p256", slot=11), send_cert=SendCert.IF_ASKED)
    sim = run_phase1(make_sim(left, right, MODES[mode]))
    assert "no certificate from the peer" in _fail_reason(sim, "initiator")


@pytest.mark.parametrize("mode", MODES)
def test_send_cert_always_sends_even_unasked(mode: str) -> None:
    left = End(_entity("left", "p256", slot=10), anchors=(OTHER_ROOT,))
    right = End(_entity("right", "p256", slot=11), send_cert=SendCert.ALWAYS)
    sim = run_phase1(make_sim(left, right, MODES[mode]))
    # the chain arrived, and is judged: its CA is not one the initiator trusts
    assert "unknown CA" in _fail_reason(sim, "initiator")


# ---------------------------------------------------------------------------- negative

LATER = pki.NOW + 10 * pki.DAY
EARLIER = pki.NOW - 10 * pki.DAY


def _bad(case: str) -> tuple[End, str]:
    """A peer set-up that must be refused, and the words of the refusal."""
    kind = "p256"
    if case == "expired":
        ee = _entity("old", kind, slot=20, not_before=EARLIER - pki.DAY, not_after=EARLIER)
        return End(ee), "certificate expired"
    if case == "not-yet-valid":
        ee = _entity("early", kind, slot=20, not_before=LATER, not_after=LATER + pki.DAY)
        return End(ee), "certificate not yet valid"
    if case == "wrong-ca":
        stranger_ca = pki.make_intermediate(OTHER_ROOT, "C=CH, O=elsewhere, CN=Other Int", slot=6)
        ee = pki.make_end_entity(stranger_ca, "C=CH, O=elsewhere, CN=intruder", (), kind, slot=20)
        return End(ee, intermediates=(stranger_ca,), send_cert=SendCert.ALWAYS), "unknown CA"
    if case == "key-usage":
        ee = _entity("encipher", kind, slot=20, key_usage="encipher")
        return End(ee), "digitalSignature"
    if case == "id-not-in-cert":
        ee = _entity("nosan", kind, slot=20, sans=("other.example.org",))
        return End(ee, local_id=fqdn("claimed.example.org")), "peer ID is not in its certificate"
    if case == "wrong-hash":
        ee = _entity("liar", kind, slot=20)
        # the parent signs over another ID than the one the core sends: another HASH
        return End(ee, sign_id=fqdn("elsewhere.example.org")), "bad signature"
    if case == "method-mismatch":
        # definition and key say RSA, the certificate it sends holds a P-256 key
        ee = _entity("mismatch", kind, slot=20)
        rsa = pki.key("rsa2048", 21)
        return (
            End(ee, method=AuthMethod.RSA_SIGNATURES, sign_key=rsa),
            "certificate key does not fit RSA_SIGNATURES",
        )
    raise AssertionError(case)


NEGATIVE = ["expired", "not-yet-valid", "wrong-ca", "key-usage", "id-not-in-cert", "wrong-hash",
            "method-mismatch"]  # fmt: skip


def _good(method: AuthMethod | None, slot: int) -> End:
    kind = "rsa2048" if method is AuthMethod.RSA_SIGNATURES else "p256"
    return End(_entity(f"good{slot}", kind, slot=slot), method=method)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", NEGATIVE)
def test_initiator_refuses_a_bad_responder(mode: str, case: str) -> None:
    bad, words = _bad(case)
    good = _good(bad.method, 10)
    sim = run_phase1(make_sim(good, bad, MODES[mode], initiator_remote_id=None))
    assert not established(sim, "initiator")
    line = _fail_reason(sim, "initiator")
    assert "p1-1" in line and words in line, line
    assert sim.initiator.core.counters.dropped_auth >= 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", NEGATIVE)
def test_responder_refuses_a_bad_initiator(mode: str, case: str) -> None:
    bad, words = _bad(case)
    good = _good(bad.method, 11)
    sim = run_phase1(make_sim(bad, good, MODES[mode], responder_remote_id=None))
    assert not established(sim, "responder")
    if mode == "main":  # an Aggressive Mode initiator is done once it sent AM3
        assert not established(sim, "initiator")
    line = _fail_reason(sim, "responder")
    assert "p1-1" in line and words in line, line
    # the initiator is told, as for a pre-shared key failure
    told = {NotifyType.AUTHENTICATION_FAILED, NotifyType.INVALID_ID_INFORMATION}
    assert told & set(sim.initiator.notifies_received)


@pytest.mark.parametrize("mode", MODES)
def test_revoked_certificate_is_refused(mode: str) -> None:
    right = End(_entity("revoked", "p256", slot=22))
    left = End(_entity("left", "p256", slot=10), crls=(pki.make_crl(INTER, [right.entity]),))
    sim = run_phase1(make_sim(left, right, MODES[mode]))
    assert "certificate revoked" in _fail_reason(sim, "initiator")


def test_stale_crl_still_revokes_and_warns_for_the_rest() -> None:
    right = End(_entity("revoked", "p256", slot=22))
    stale = dict(last_update=EARLIER - pki.DAY, next_update=EARLIER)
    left = End(_entity("left", "p256", slot=10),
               crls=(pki.make_crl(INTER, [right.entity], **stale),))  # fmt: skip
    sim = run_phase1(make_sim(left, right))
    assert "certificate revoked" in _fail_reason(sim, "initiator")
    # a stale CRL that does not list the peer: accepted, with a warning each time
    other = End(_entity("other", "p256", slot=23))
    left2 = replace(left, crls=(pki.make_crl(INTER, [other.entity], **stale),))
    sim = run_phase1(make_sim(left2, right))
    assert established(sim, "initiator")
    assert "is stale" in sim.initiator.log_text()


def test_crl_with_a_forged_signature_is_ignored() -> None:
    right = End(_entity("victim", "p256", slot=22))
    forger = pki.Issued(INTER.cert, pki.key("rsa2048", 30))  # INTER's name, another key
    left = End(_entity("left", "p256", slot=10), crls=(pki.make_crl(forger, [right.entity]),))
    sim = run_phase1(make_sim(left, right))
    assert established(sim, "initiator")


def test_unparsable_credentials_disable_only_that_definition() -> None:
    """Definition 1's certificate file is garbage: it is refused with a log line, and
    definition 2 (same peer, Main Mode, good files) answers instead."""
    left = End(_entity("left", "p256", slot=10))
    right = End(_entity("right", "p256", slot=11))
    sim = make_sim(left, right, extra_responder=[(2, right, dn(left.entity))])
    resp = sim.responder.core
    snap = resp.config
    garbage = ConfigCredential(7, 1, CredentialKind.OWN_CERT, 0, b"not a certificate")
    files = {1: [garbage, *right.credentials(1)[1:]], 2: right.credentials(2)}
    resp.handle(ConfigBegin(7), sim.now)
    count = 0
    for number, d in sorted(snap.phase1.items()):  # each definition, then its files
        resp.handle(ConfigPhase1(7, d), sim.now)
        for c in files[number]:
            resp.handle(replace(c, generation=7), sim.now)
            count += 1
    out = resp.handle(ConfigEnd(7, len(snap.phase1), 0, count), sim.now)
    assert any("p1-1: unusable, certificate file 1" in getattr(m, "text", "") for m in out)
    assert sorted(resp.credentials) == [2]
    run_phase1(sim)
    assert established(sim, "initiator")
    (sa,) = sim.established_isakmp("responder")
    assert sa.definition.number == 2


def test_an_initiator_with_unusable_files_does_not_start() -> None:
    left = End(_entity("left", "p256", slot=10), anchors=())
    right = End(_entity("right", "p256", slot=11))
    sim = run_phase1(make_sim(left, right))
    assert not sim.initiator.sent
    assert "p1-1: unusable, no trust anchor" in sim.initiator.log_text()


def test_the_wall_clock_decides_validity() -> None:
    """The same certificates, a wall clock a year later: expired."""
    left = End(_entity("left", "p256", slot=10))
    right = End(_entity("right", "p256", slot=11))
    sim = make_sim(left, right)
    later = WALL + 400 * 86400
    sim.initiator.core._wall_clock = lambda: later
    run_phase1(sim)
    assert "certificate expired" in _fail_reason(sim, "initiator")


@pytest.mark.parametrize("hash_alg", [IkeHash.SHA, IkeHash.SHA2_384, IkeHash.SHA2_512])
def test_rsa_main_mode_with_other_prfs(hash_alg: IkeHash) -> None:
    left = End(_entity("left", "rsa2048", slot=10))
    right = End(_entity("right", "rsa2048", slot=11))
    sim = run_phase1(make_sim(left, right, hash_alg=hash_alg))
    assert established(sim, "initiator") and established(sim, "responder")


def test_a_certificate_of_an_unknown_x509_version_is_refused_not_raised() -> None:
    """cryptography raises InvalidVersion (no ValueError) for it: found by fuzzing."""
    from ikepriv.child_negotiator.core import certificates

    creds = certificates.load_credentials(Credentials((INTER.pem,), (ROOT.pem,)))
    good = _entity("version", "p256", slot=10).der
    bad = good.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x26", 1)
    assert bad != good
    found = certificates.validate_peer(creds, [bad], WALL)
    assert isinstance(found, certificates.Refused) and "does not parse" in found.reason
    with pytest.raises(certificates.CredentialError):
        certificates.load_credentials(Credentials((bad,), (ROOT.pem,)))


@pytest.mark.parametrize("keys", ["rsa2048", "p384"])
def test_after_the_warm_up_a_signature_negotiation_imports_nothing(keys: str) -> None:
    """Under the seccomp filter an import is fatal (it opens files): once the child's
    imports and warm-ups ran, X.509 validation and RSA/ECDSA verification load nothing
    more (today the module imports alone suffice; warm_up_certificates is the insurance
    for a library version that defers an import to the first call)."""
    import sys

    from ikepriv.child_negotiator.process import warmup

    warmup.warm_up()
    assert warmup.warm_up_certificates()
    left_kind, right_kind, _ = KEYS[keys]
    sim = make_sim(
        End(_entity("left", left_kind, slot=10)), End(_entity("right", right_kind, slot=11))
    )
    before = set(sys.modules)
    run_phase1(sim)
    assert established(sim, "initiator") and established(sim, "responder")
    assert set(sys.modules) - before == set()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_signatures_survive_loss_duplicates_and_reordering(mode: str, seed: int) -> None:
    """Repeated messages while a signature is on its way from the parent are dropped, not
    answered with the previous flight; lost ones are resent: both sides end up with one
    ISAKMP SA and the same IPsec keys."""
    left = End(_entity("left", "p256", slot=10))
    right = End(_entity("right", "p256", slot=11))
    sim = make_sim(left, right, MODES[mode], with_phase2=True, seed=seed, loss=0.15,
                   duplicate=0.3, reorder=0.3, parent_delay=0.05)  # fmt: skip
    sim.initiate(phase=2, number=1)
    sim.run(duration=300)
    assert established(sim, "initiator") and established(sim, "responder")
    sim.assert_keys_match(expected_pairs=2)


def test_main_mode_responder_with_psk_and_signature_definitions_answers_by_the_offer() -> None:
    """A PSK definition for the peer's exact address and a signature one for %any: an
    offer of RSA signatures is answered by the signature definition."""
    left = End(_entity("left", "rsa2048", slot=10))
    right = End(_entity("right", "rsa2048", slot=11))
    sim = make_sim(left, right, responder_any=True)
    resp = sim.responder.core
    psk_def = phase1_def(2, RIGHT, LEFT, [ike_proposal()])
    resp.config = ConfigSnapshot.of(
        [*resp.config.phase1.values(), psk_def], [], credentials={1: right.files()}
    )
    run_phase1(sim)
    assert established(sim, "initiator")
    (sa,) = sim.established_isakmp("responder")
    assert sa.definition.number == 1 and sa.choice.auth is AuthMethod.RSA_SIGNATURES


def test_main_mode_responder_asks_for_the_cas_of_every_definition_mm5_may_pick() -> None:
    """MM4 comes before the initiator's ID: its CRs name the CAs of all the signature
    definitions for this address, so the initiator sends a chain whichever one applies."""
    left = End(_entity("left", "p256", slot=10))
    right = End(_entity("right", "p256", slot=11))
    other = End(_entity("right-2", "p256", slot=14), anchors=(OTHER_ROOT,))
    stranger = fqdn("someone.example.org")
    sim = make_sim(left, right, responder_any=True, extra_responder=[(2, other, stranger)])
    run_phase1(sim)
    assert established(sim, "initiator") and established(sim, "responder")
    authorities = {p.authority for p in cert_requests_sent(sim, "responder")}
    assert authorities == {ROOT.cert.subject.public_bytes(), OTHER_ROOT.cert.subject.public_bytes()}


def test_an_end_entity_without_key_usage_is_accepted() -> None:
    """keyUsage is checked only when present (RFC 4945 5.1.3.2 leaves it optional)."""
    left = End(_entity("left", "p256", slot=10))
    right = End(_entity("no-ku", "p256", slot=11, key_usage="none"))
    sim = run_phase1(make_sim(left, right))
    assert established(sim, "initiator") and established(sim, "responder")


@pytest.mark.parametrize("mode", MODES)
def test_a_peer_rsa_key_below_2048_bits_is_refused(mode: str) -> None:
    left = End(_entity("left", "rsa2048", slot=10))
    right = End(
        _entity("short", "rsa1024", slot=11),
        method=AuthMethod.RSA_SIGNATURES,
        sign_key=pki.key("rsa2048", 11),  # its parent signs with a long key: the 1024-bit
    )  # certificate alone must be what the initiator refuses
    sim = run_phase1(make_sim(left, right, MODES[mode], initiator_remote_id=None))
    assert not established(sim, "initiator")
    line = _fail_reason(sim, "initiator")
    assert "p1-1" in line and ("1024" in line or "key" in line.lower()), line


@pytest.mark.parametrize(
    ("kind", "digest"), [("p256", "sha256"), ("p384", "sha384"), ("p521", "sha512")]
)
def test_ecdsa_hash_uses_the_methods_own_sha2_whatever_prf_was_negotiated(
    kind: str, digest: str
) -> None:
    """RFC 4754 as strongSwan implements it (checked against charon in
    test_e2e_signatures_host.py): HASH_I = HMAC-<method's SHA-2>(SKEYID, ...) even when the
    proposal negotiated SHA-1, and the signature is over that value as the digest. Checked
    here independently of ikepriv's helpers, with hmac and cryptography's Prehashed."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

    left = End(_entity("left", kind, slot=10))
    right = End(_entity("right", kind, slot=11))
    sim = run_phase1(make_sim(left, right, hash_alg=IkeHash.SHA))
    assert established(sim, "initiator") and established(sim, "responder")
    (req,) = sim.initiator.parent.signature_requests
    assert req.prf is IkeHash.SHA  # the negotiated prf, as the parent is told
    id_body = bytes([IdType.DER_ASN1_DN, 0, 0, 0]) + left.entity.cert.subject.public_bytes()
    data = req.g_xi + req.g_xr + req.icookie + req.rcookie + req.sa_i_body + id_body
    expected = hmac.new(req.skeyid, data, digest).digest()
    signature = sign_over(left, req)
    size = len(signature) // 2
    r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
    algorithm = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
    public = left.entity.cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(encode_dss_signature(r, s), expected, ec.ECDSA(Prehashed(algorithm[digest]())))
    assert hashlib.new(digest).digest_size == len(expected)


def sign_over(end: End, req: object) -> bytes:
    """What the parent answered this request with (the same key, the same computation)."""
    from harness.signer import sign_request

    return sign_request(req, end.signer())  # type: ignore[arg-type]
