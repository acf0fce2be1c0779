"""Aggressive Mode (PSK) + Quick Mode between two in-process cores, with and without a NAT
in front of the initiator: both end with the same keys for the same SPIs.

The matrix is complete over groups 2, 14, 19, 31, three ciphers, PFS on/off, tunnel and
transport mode and NAT on/off; with the NAT, every SA is UDP-encapsulated on port 4500.
"""

from __future__ import annotations

import itertools

import pytest
from harness.core_sim import (
    LEFT,
    NAT_PUBLIC,
    RIGHT,
    NatBox,
    Simulation,
    address_identity,
    esp_proposal,
    ike_proposal,
    mirrored,
    phase1_def,
    phase2_def,
    selector,
)

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.ipc.messages import Identity, NatTEncap, SaDirection, TunnelState
from ikepriv.isakmp import HashPayload, IdPayload, KePayload, decode_message
from ikepriv.isakmp.constants import (
    NATT_PORT,
    AuthAlgorithm,
    EncapsulationMode,
    EspTransformId,
    ExchangeType,
    GroupId,
    IdType,
    IkeEncryption,
    IkeHash,
)

AM = ExchangeType.AGGRESSIVE
CIPHERS = {
    "aes128": (IkeEncryption.AES_CBC, 128, EspTransformId.AES_CBC, 128),
    "aes256": (IkeEncryption.AES_CBC, 256, EspTransformId.AES_CBC, 256),
    "3des": (IkeEncryption.TRIPLE_DES_CBC, 0, EspTransformId.TRIPLE_DES, 0),
}
MODES = {"tunnel": EncapsulationMode.TUNNEL, "transport": EncapsulationMode.TRANSPORT}
GROUPS = (GroupId.MODP_1024, GroupId.MODP_2048, GroupId.ECP_256, GroupId.CURVE25519)
UDP_MODES = {
    EncapsulationMode.TUNNEL: EncapsulationMode.UDP_ENCAPSULATED_TUNNEL,
    EncapsulationMode.TRANSPORT: EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT,
}


def run_am(
    group: GroupId, cipher: str, pfs: bool, mode: str, nat: bool, seed: int = 5
) -> Simulation:
    enc, bits, esp, esp_bits = CIPHERS[cipher]
    init, resp = mirrored(
        [ike_proposal(enc, bits, IkeHash.SHA2_256, group)],
        [esp_proposal(esp, esp_bits, AuthAlgorithm.HMAC_SHA, group if pfs else None)],
        MODES[mode],
        phase1_mode=AM,
        nat_t=True,
        responder_peer=NAT_PUBLIC if nat else LEFT,
    )
    sim = Simulation(init, resp, seed=seed, nat=NatBox() if nat else None)
    sim.initiate(phase=2, number=1)
    sim.run(duration=120)
    return sim


@pytest.mark.parametrize(
    ("group", "cipher", "pfs", "mode", "nat"),
    list(itertools.product(GROUPS, CIPHERS, (False, True), MODES, (False, True))),
)
def test_aggressive_and_quick_mode_agree_on_keys(
    group: GroupId, cipher: str, pfs: bool, mode: str, nat: bool
) -> None:
    sim = run_am(group, cipher, pfs, mode, nat)
    pairs = sim.assert_keys_match(expected_pairs=2)
    for out, twin in pairs:
        assert out.mode is MODES[mode]
        assert out.encryption is not None and out.integrity is not None
        assert len(out.encryption.key) * 8 == (CIPHERS[cipher][3] or 192)
        if nat:
            assert out.encap == NatTEncap(NATT_PORT, NATT_PORT) == twin.encap
        else:
            assert out.encap is None and twin.encap is None
    for name in ("initiator", "responder"):
        (sa,) = sim.established_isakmp(name)
        assert sa.exchange is AM and sa.choice.group is group
        (child,) = sim.established_children(name)
        want = UDP_MODES[MODES[mode]] if nat else MODES[mode]
        assert child.choice.mode == want
        assert (child.choice.group is not None) is pfs
        states = {(r.phase, r.state) for r in sim.sides[name].parent.reports}
        assert len(states) == 2 and all(s is TunnelState.ESTABLISHED for _, s in states)
    # behind the NAT the initiator speaks from 4500 after AM2, the responder sees NAT_PUBLIC
    (r_sa,) = sim.established_isakmp("responder")
    (i_sa,) = sim.established_isakmp("initiator")
    if nat:
        assert r_sa.remote.addr == NAT_PUBLIC and r_sa.natt and i_sa.natt
        assert sim.keepalives and all(k.local == i_sa.local for k in sim.keepalives)
    else:
        assert r_sa.remote.addr == LEFT and not r_sa.natt and not i_sa.natt
        assert not sim.keepalives


def _exchange_types(sim: Simulation, side: str) -> list[int]:
    return [decode_message(d.data).header.exchange_type for d in sim.sides[side].sent]


def test_three_messages_and_am3_encrypted() -> None:
    sim = run_am(GroupId.MODP_1024, "aes128", False, "tunnel", False)
    i_sent = [decode_message(d.data) for d in sim.initiator.sent if d.data[18] == AM]
    r_sent = [decode_message(d.data) for d in sim.responder.sent if d.data[18] == AM]
    assert len(i_sent) == 2 and len(r_sent) == 1
    am1, am3 = i_sent
    am2 = r_sent[0]
    assert not am1.encrypted and not am2.encrypted and am3.encrypted
    kinds1 = {type(p) for p in am1.payloads}
    assert {KePayload, IdPayload} <= kinds1 and HashPayload not in kinds1
    assert {KePayload, IdPayload, HashPayload} <= {type(p) for p in am2.payloads}


def test_skeyid_is_asked_for_the_definition_the_initiator_id_names() -> None:
    """Two definitions for any address with different IDs and keys: IDii picks one."""
    road = Identity(IdType.FQDN, b"road.example")
    other = Identity(IdType.FQDN, b"other.example")
    init = ConfigSnapshot.of(
        [phase1_def(1, LEFT, RIGHT, local_id=road, mode=AM)],
        [phase2_def(1, 1, selector(f"{LEFT}/32"), selector(f"{RIGHT}/32"))],
    )
    resp = ConfigSnapshot.of(
        [
            phase1_def(1, RIGHT, None, remote_id=other, mode=AM),
            phase1_def(2, RIGHT, None, remote_id=road, mode=AM),
            phase1_def(3, RIGHT, LEFT, mode=AM),  # exact address, but LEFT's address ID
        ],
        [phase2_def(1, 2, selector(f"{RIGHT}/32"), selector(f"{LEFT}/32"))],
    )
    sim = Simulation(init, resp, seed=9)
    sim.responder.parent.psk_by_phase1[1] = b"not this one"
    sim.responder.parent.psk_by_phase1[3] = b"nor this one"
    sim.initiate()
    sim.run(duration=120)
    sim.assert_keys_match(expected_pairs=2)
    (req,) = sim.responder.parent.skeyid_requests
    assert req.phase1_number == 2 and req.peer is None
    (sa,) = sim.established_isakmp("responder")
    assert sa.definition.number == 2 and sa.peer_id.data == b"road.example"


def test_exact_id_beats_any_id_and_exact_address_beats_any_address() -> None:
    init, _ = mirrored(phase1_mode=AM)
    lid = address_identity(LEFT)
    resp = ConfigSnapshot.of(
        [
            phase1_def(1, RIGHT, LEFT, any_remote_id=True, mode=AM),
            phase1_def(2, RIGHT, None, remote_id=lid, mode=AM),
            phase1_def(3, RIGHT, LEFT, remote_id=lid, mode=AM),
        ],
        [phase2_def(1, 3, selector("198.51.100.128/25"), selector("198.51.100.0/25"))],
    )
    sim = Simulation(init, resp, seed=2)
    sim.initiate()
    sim.run(duration=120)
    sim.assert_keys_match(expected_pairs=2)
    assert [r.phase1_number for r in sim.responder.parent.skeyid_requests] == [3]


def test_main_mode_definition_does_not_answer_aggressive_mode() -> None:
    init, _ = mirrored(phase1_mode=AM)
    _, resp = mirrored()  # Main Mode on the responder
    sim = Simulation(init, resp, seed=2)
    sim.initiate()
    sim.run(duration=600)
    assert not sim.established_isakmp("initiator") and not sim.responder.parent.skeyid_requests


def test_lossy_network_still_agrees() -> None:
    init, resp = mirrored(
        esp=[esp_proposal(pfs=GroupId.MODP_1024)], phase1_mode=AM, nat_t=True,
        responder_peer=NAT_PUBLIC,
    )  # fmt: skip
    for seed in range(4):
        sim = Simulation(init, resp, seed=seed, loss=0.2, duplicate=0.2, reorder=0.3, nat=NatBox())
        sim.initiate()
        sim.run(duration=300)
        sim.assert_keys_match(expected_pairs=2)
        for side in sim.sides.values():
            assert len(side.parent.sa_adds) == 2
            assert len(side.parent.skeyid_requests) == 1


def test_lost_am3_is_answered_when_am2_comes_again() -> None:
    init, resp = mirrored(phase1_mode=AM)
    sim = Simulation(init, resp, seed=6)
    dropped = {"am3": 0}

    def drop_first_am3(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if side == "responder" and message.header.exchange_type == AM and message.encrypted:
            if dropped["am3"] == 0:
                dropped["am3"] += 1
                return b"\x00"
        return None

    sim.tamper = drop_first_am3
    sim.initiate(phase=1)
    sim.run(duration=120)
    assert dropped["am3"] == 1
    assert sim.established_isakmp("responder") and sim.established_isakmp("initiator")
    assert sim.initiator.core.counters.duplicates_answered >= 1
    assert sim.responder.core.counters.retransmits >= 1


def test_inbound_spis_are_the_ones_allocated() -> None:
    sim = run_am(GroupId.MODP_1024, "aes128", True, "tunnel", True)
    for name in ("initiator", "responder"):
        parent = sim.sides[name].parent
        inbound = {a.spi for a in parent.sa_adds if a.direction is SaDirection.IN}
        assert inbound and inbound <= parent.allocated
