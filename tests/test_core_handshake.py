"""Main Mode (PSK) + Quick Mode between two in-process cores: both end with the same keys.

The matrix runs mostly on MODP-1024 (fast); every listed group (2, 14, 19, 31) appears at
least once, for phase 1 and for PFS.
"""

from __future__ import annotations

import itertools

import pytest
from harness.core_sim import Simulation, esp_proposal, ike_proposal, mirrored

from ikepriv.ipc.messages import PolicyDirection, SaDirection, TunnelState
from ikepriv.isakmp.constants import (
    AuthAlgorithm,
    EncapsulationMode,
    EspTransformId,
    GroupId,
    IkeEncryption,
    IkeHash,
)

CIPHERS = {
    "aes128": (IkeEncryption.AES_CBC, 128, EspTransformId.AES_CBC, 128),
    "aes256": (IkeEncryption.AES_CBC, 256, EspTransformId.AES_CBC, 256),
    "3des": (IkeEncryption.TRIPLE_DES_CBC, 0, EspTransformId.TRIPLE_DES, 0),
}
MODES = {"tunnel": EncapsulationMode.TUNNEL, "transport": EncapsulationMode.TRANSPORT}

_SMALL = [
    (GroupId.MODP_1024, cipher, pfs, mode)
    for cipher, pfs, mode in itertools.product(CIPHERS, (False, True), MODES)
]
_LARGE = [
    (GroupId.MODP_2048, "aes256", True, "tunnel"),
    (GroupId.ECP_256, "aes128", True, "transport"),
    (GroupId.CURVE25519, "3des", False, "tunnel"),
    (GroupId.CURVE25519, "aes256", True, "transport"),
]


def _run(group: GroupId, cipher: str, pfs: bool, mode: str, seed: int = 7) -> Simulation:
    enc, bits, esp, esp_bits = CIPHERS[cipher]
    init, resp = mirrored(
        [ike_proposal(enc, bits, IkeHash.SHA2_256, group)],
        [esp_proposal(esp, esp_bits, AuthAlgorithm.HMAC_SHA, group if pfs else None)],
        MODES[mode],
    )
    sim = Simulation(init, resp, seed=seed)
    sim.initiate(phase=2, number=1)
    sim.run()
    return sim


@pytest.mark.parametrize(("group", "cipher", "pfs", "mode"), _SMALL + _LARGE)
def test_main_and_quick_mode_agree_on_keys(
    group: GroupId, cipher: str, pfs: bool, mode: str
) -> None:
    sim = _run(group, cipher, pfs, mode)
    pairs = sim.assert_keys_match(expected_pairs=2)
    for out, _ in pairs:
        assert out.mode is MODES[mode]
        assert out.encryption is not None and out.integrity is not None
        want_bits = CIPHERS[cipher][3] or 192
        assert len(out.encryption.key) * 8 == want_bits
        assert out.integrity.algorithm is AuthAlgorithm.HMAC_SHA and len(out.integrity.key) == 20
    for name in ("initiator", "responder"):
        side = sim.sides[name]
        assert len(sim.established_isakmp(name)) == 1
        assert len(sim.established_children(name)) == 1
        directions = sorted(p.direction for p in side.parent.policy_adds)
        expected = [PolicyDirection.IN, PolicyDirection.OUT]
        if mode == "tunnel":
            expected.append(PolicyDirection.FWD)
        assert directions == sorted(expected)
        states = {(r.phase, r.state) for r in side.parent.reports}
        assert len(states) == 2 and all(s is TunnelState.ESTABLISHED for _, s in states)


@pytest.mark.parametrize(
    ("transform", "bits", "auth"),
    [
        (EspTransformId.AES_CBC, 128, AuthAlgorithm.HMAC_SHA),
        (EspTransformId.AES_CBC, 256, AuthAlgorithm.HMAC_SHA2_256),
        (EspTransformId.AES_CBC, 128, AuthAlgorithm.HMAC_SHA2_384),
        (EspTransformId.AES_CBC, 256, AuthAlgorithm.HMAC_SHA2_512),
        (EspTransformId.TRIPLE_DES, 0, AuthAlgorithm.HMAC_SHA2_256),
        (EspTransformId.AES_GCM_16, 128, None),
        (EspTransformId.AES_GCM_16, 256, None),
    ],
)
def test_esp_algorithms(transform: EspTransformId, bits: int, auth: AuthAlgorithm | None) -> None:
    init, resp = mirrored([ike_proposal()], [esp_proposal(transform, bits, auth)])
    sim = Simulation(init, resp, seed=11)
    sim.initiate()
    sim.run()
    for out, _ in sim.assert_keys_match(expected_pairs=2):
        if auth is None:
            assert out.aead is not None and out.encryption is None and out.integrity is None
            assert len(out.aead.key) * 8 == bits and len(out.aead.salt) == 4
            assert out.aead.icv_bits == 128
        else:
            assert out.integrity is not None and out.integrity.algorithm is auth


def test_inbound_of_one_side_is_outbound_of_the_other() -> None:
    sim = _run(GroupId.MODP_1024, "aes128", True, "tunnel")
    i_in = {a.spi for a in sim.initiator.parent.sa_adds if a.direction is SaDirection.IN}
    r_out = {a.spi for a in sim.responder.parent.sa_adds if a.direction is SaDirection.OUT}
    assert i_in == r_out and len(i_in) == 1
    # each side's inbound SPI is one its own parent allocated
    assert i_in <= sim.initiator.parent.allocated


def test_responder_picks_first_offered_proposal_it_allows() -> None:
    offered = [
        ike_proposal(IkeEncryption.AES_CBC, 256, IkeHash.SHA2_512, GroupId.MODP_1024),
        ike_proposal(IkeEncryption.AES_CBC, 128, IkeHash.SHA, GroupId.MODP_1024),
        ike_proposal(IkeEncryption.AES_CBC, 128, IkeHash.SHA2_256, GroupId.MODP_1024),
    ]
    allowed = [offered[2], offered[1]]
    init, resp = mirrored(offered, responder_ike=allowed)
    sim = Simulation(init, resp, seed=5)
    sim.initiate(phase=1)
    sim.run()
    (sa,) = sim.established_isakmp("initiator")
    assert sa.choice.hash is IkeHash.SHA and sa.choice.key_bits == 128
    (sa_r,) = sim.established_isakmp("responder")
    assert sa_r.choice == sa.choice


def test_skeyid_comes_from_the_parent_by_definition_and_by_peer_address() -> None:
    sim = _run(GroupId.MODP_1024, "aes128", False, "tunnel")
    (ireq,) = sim.initiator.parent.skeyid_requests
    (rreq,) = sim.responder.parent.skeyid_requests
    assert ireq.phase1_number == 1 and ireq.peer is None
    assert rreq.phase1_number is None and rreq.peer == sim.initiator.address
    assert ireq.prf is IkeHash.SHA2_256 and rreq.prf is IkeHash.SHA2_256
    # our own nonce is always the parent's: the initiator names the Ni its parent made, the
    # responder's parent makes Nr; each side names only the other's nonce
    assert ireq.nonce_id != 0 and rreq.nonce_id == 0
    assert rreq.peer_nonce == sim.initiator.parent.issued_nonces[0]
    assert ireq.peer_nonce == sim.responder.parent.issued_nonces[0]


def test_same_seed_same_run() -> None:
    a = _run(GroupId.MODP_1024, "aes128", True, "tunnel", seed=99)
    b = _run(GroupId.MODP_1024, "aes128", True, "tunnel", seed=99)
    assert [d.data for d in a.initiator.sent] == [d.data for d in b.initiator.sent]
    assert [d.data for d in a.responder.sent] == [d.data for d in b.responder.sent]


def test_responder_lifetime_is_sent_and_honoured() -> None:
    init, resp = mirrored(
        esp=[esp_proposal(lifetime=7200)], responder_esp=[esp_proposal(lifetime=1800)]
    )
    sim = Simulation(init, resp, seed=4)
    sim.initiate()
    sim.run()
    sim.assert_keys_match(expected_pairs=2)
    for side in sim.sides.values():
        for add in side.parent.sa_adds:
            assert add.lifetimes.hard_seconds == 1800
            assert 0 < add.lifetimes.soft_seconds < 1800
    from ikepriv.isakmp.constants import NotifyType

    assert NotifyType.RESPONDER_LIFETIME in sim.initiator.notifies_received


def test_shorter_initiator_lifetime_needs_no_responder_lifetime() -> None:
    init, resp = mirrored(
        esp=[esp_proposal(lifetime=600)], responder_esp=[esp_proposal(lifetime=3600)]
    )
    sim = Simulation(init, resp, seed=4)
    sim.initiate()
    sim.run()
    for side in sim.sides.values():
        assert {a.lifetimes.hard_seconds for a in side.parent.sa_adds} == {600}
    assert not sim.initiator.notifies_received
