"""Negotiations that must fail: each ends with no SA and the notification that says why."""

from __future__ import annotations

from dataclasses import replace

import pytest
from harness.core_sim import (
    LEFT,
    RIGHT,
    Simulation,
    address_identity,
    datagram,
    esp_proposal,
    find_payload,
    forge_informational,
    ike_proposal,
    mirrored,
    reseal,
    selector,
)

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.crypto.oakley import quick_mode_hash2
from ikepriv.ipc.messages import Identity, Phase, RemoveCommand, SkeyidRequest
from ikepriv.isakmp import (
    DeletePayload,
    HashPayload,
    NotifyPayload,
    Proposal,
    SAPayload,
    Transform,
    build_message,
    decode_message,
    encode_message,
    encode_payload_chain,
)
from ikepriv.isakmp.constants import (
    AuthAlgorithm,
    EspTransformId,
    ExchangeType,
    GroupId,
    IdType,
    IkeEncryption,
    IkeHash,
    IpsecAttr,
    NotifyType,
    ProtocolId,
)


def _no_sa(sim: Simulation) -> None:
    for name in ("initiator", "responder"):
        side = sim.sides[name]
        assert side.parent.installed_spis() == set(), name
        assert not sim.established_children(name), name


def _settle(sim: Simulation) -> None:
    sim.run(duration=3600)
    for name in ("initiator", "responder"):
        assert not sim.sides[name].core.sas.by_tunnel, f"{name} still holds an ISAKMP SA"


def test_wrong_psk() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=1, responder_psk=b"another secret")
    sim.initiate()
    _settle(sim)
    _no_sa(sim)
    assert NotifyType.AUTHENTICATION_FAILED in sim.initiator.notifies_received
    assert sim.responder.core.counters.dropped_auth >= 1
    assert sim.initiator.core.counters.phase1_failed == 1
    assert "AUTHENTICATION_FAILED" in sim.initiator.log_text()


@pytest.mark.parametrize(
    "phase1_mode", [ExchangeType.IDENTITY_PROTECTION, ExchangeType.AGGRESSIVE], ids=["MM", "AM"]
)
@pytest.mark.parametrize("refusing", ["initiator", "responder"])
def test_parent_refusing_skeyid_tells_the_peer_at_once(
    phase1_mode: ExchangeType, refusing: str
) -> None:
    """A refusal by our parent (say, its SKEYID rate limit) is never left to the peer's
    time-out: the peer gets an error notify and gives up before its first retransmission."""
    init, resp = mirrored(phase1_mode=phase1_mode)
    sim = Simulation(init, resp, seed=3)
    sim.sides[refusing].parent.refuse.add(SkeyidRequest)
    sim.initiate(phase=1)
    sim.run(duration=1.0)
    other = "responder" if refusing == "initiator" else "initiator"
    assert NotifyType.INVALID_KEY_INFORMATION in sim.sides[other].notifies_received
    assert sim.sides[refusing].core.counters.phase1_failed == 1
    assert "parent refused SKEYID" in sim.sides[refusing].log_text()
    if other == "initiator":  # a responder that has not answered yet keeps no state
        assert sim.initiator.core.counters.phase1_failed == 1
    assert not sim.established_isakmp("initiator") and not sim.established_isakmp("responder")


def test_no_common_phase1_proposal() -> None:
    init, resp = mirrored(
        [ike_proposal(IkeEncryption.AES_CBC, 256)],
        responder_ike=[ike_proposal(IkeEncryption.AES_CBC, 128)],
    )
    sim = Simulation(init, resp, seed=2)
    sim.initiate()
    _settle(sim)
    _no_sa(sim)
    assert NotifyType.NO_PROPOSAL_CHOSEN in sim.initiator.notifies_received
    assert sim.responder.core.counters.dropped_policy >= 1


def test_no_common_phase2_proposal() -> None:
    init, resp = mirrored(
        esp=[esp_proposal(auth=AuthAlgorithm.HMAC_SHA2_512)],
        responder_esp=[esp_proposal(auth=AuthAlgorithm.HMAC_SHA)],
    )
    sim = Simulation(init, resp, seed=3)
    sim.initiate()
    sim.run(duration=3600)
    _no_sa(sim)
    assert NotifyType.NO_PROPOSAL_CHOSEN in sim.initiator.notifies_received
    assert sim.initiator.core.counters.phase2_failed == 1
    assert len(sim.established_isakmp("initiator")) == 1  # phase 1 itself is fine


def test_pfs_mismatch_is_no_proposal() -> None:
    init, resp = mirrored(
        esp=[esp_proposal(pfs=GroupId.MODP_1024)], responder_esp=[esp_proposal(pfs=None)]
    )
    sim = Simulation(init, resp, seed=3)
    sim.initiate()
    sim.run(duration=3600)
    _no_sa(sim)
    assert NotifyType.NO_PROPOSAL_CHOSEN in sim.initiator.notifies_received


def _alter_hash(payloads: list) -> list:  # type: ignore[type-arg]
    i = find_payload(payloads, HashPayload)
    data = bytearray(payloads[i].data)
    data[0] ^= 0x01
    payloads[i] = HashPayload(bytes(data))
    return payloads


def test_altered_main_mode_hash() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=4)

    def tamper(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if side == "responder" and message.encrypted and message.header.exchange_type == 2:
            return reseal(sim.responder.core, data, _alter_hash)
        return None

    sim.tamper = tamper
    sim.initiate()
    _settle(sim)
    _no_sa(sim)
    assert NotifyType.AUTHENTICATION_FAILED in sim.initiator.notifies_received
    assert sim.responder.core.counters.dropped_auth >= 1


def test_altered_quick_mode_hash() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=5)

    def tamper(side: str, data: bytes) -> bytes | None:
        if side == "responder" and decode_message(data).header.exchange_type == 32:
            return reseal(sim.responder.core, data, _alter_hash)
        return None

    sim.tamper = tamper
    sim.initiate()
    sim.run(duration=3600)
    _no_sa(sim)
    assert NotifyType.INVALID_HASH_INFORMATION in sim.initiator.notifies_received
    assert sim.responder.core.counters.dropped_auth >= 1
    assert sim.initiator.core.counters.phase2_failed == 1  # gave up resending QM1
    assert sim.initiator.core.counters.retransmits >= 3


def test_phase2_selectors_outside_the_definition() -> None:
    # the initiator asks for the whole /24 behind the responder, which allows only a /25
    init, resp = mirrored(
        right_sel=selector("198.51.100.0/24"),
        responder_right_sel=selector("198.51.100.128/25"),
    )
    sim = Simulation(init, resp, seed=6)
    sim.initiate()
    sim.run(duration=3600)
    _no_sa(sim)
    assert NotifyType.INVALID_ID_INFORMATION in sim.initiator.notifies_received
    assert sim.responder.core.counters.dropped_policy >= 1


def test_phase2_port_wider_than_the_definition() -> None:
    init, resp = mirrored(
        right_sel=selector("198.51.100.128/25", 6, 0),
        responder_right_sel=selector("198.51.100.128/25", 6, 443),
    )
    sim = Simulation(init, resp, seed=6)
    sim.initiate()
    sim.run(duration=3600)
    _no_sa(sim)
    assert NotifyType.INVALID_ID_INFORMATION in sim.initiator.notifies_received


def test_phase1_identity_not_the_defined_one() -> None:
    init, resp = mirrored()
    p1 = resp.phase1[1]
    other = Identity(IdType.FQDN, b"someone-else.example")
    resp = ConfigSnapshot.of([replace(p1, remote_id=other)], resp.phase2.values())
    sim = Simulation(init, resp, seed=7)
    sim.initiate()
    _settle(sim)
    _no_sa(sim)
    assert NotifyType.INVALID_ID_INFORMATION in sim.initiator.notifies_received


def test_responder_phase1_choice_not_offered() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=8)

    def tamper(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if side != "initiator" or message.encrypted or message.header.exchange_type != 2:
            return None
        payloads = list(message.payloads)
        if not isinstance(payloads[0], SAPayload):
            return None
        prop = payloads[0].proposals[0]
        tr = prop.transforms[0]
        attrs = tuple(
            type(a)(a.type, 256) if a.type == 14 else a for a in tr.attributes
        )  # key length 128 -> 256: a transform nobody offered
        payloads[0] = SAPayload.ipsec(
            [
                Proposal(
                    prop.number,
                    prop.protocol_id,
                    prop.spi,
                    (Transform(tr.number, tr.transform_id, attrs),),
                )
            ]
        )
        h = message.header
        return encode_message(build_message(h.icookie, h.rcookie, h.exchange_type, 0, payloads))

    sim.tamper = tamper
    sim.initiate()
    _settle(sim)
    _no_sa(sim)
    assert NotifyType.NO_PROPOSAL_CHOSEN in sim.responder.notifies_received
    assert "did not offer" in sim.initiator.log_text()


def test_responder_phase2_choice_not_offered() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=9)
    icore = sim.initiator.core

    def edit_qm2(payloads: list) -> list:  # type: ignore[type-arg]
        sa_i = find_payload(payloads, SAPayload)
        prop = payloads[sa_i].proposals[0]
        tr = prop.transforms[0]
        attrs = tuple(
            type(a)(a.type, int(AuthAlgorithm.HMAC_SHA2_512))
            if a.type == IpsecAttr.AUTHENTICATION_ALGORITHM
            else a
            for a in tr.attributes
        )
        payloads[sa_i] = SAPayload.ipsec(
            [
                Proposal(
                    prop.number,
                    prop.protocol_id,
                    prop.spi,
                    (Transform(tr.number, tr.transform_id, attrs),),
                )
            ]
        )
        (sa,) = sim.established_isakmp("initiator")
        (qe,) = sa.exchanges.values()
        rest = encode_payload_chain(payloads[1:])
        payloads[0] = HashPayload(
            quick_mode_hash2(sa.choice.hash, sa.keys.skeyid_a, qe.mid, qe.ni, rest)
        )
        return payloads

    def tamper(side: str, data: bytes) -> bytes | None:
        if side == "initiator" and decode_message(data).header.exchange_type == 32:
            return reseal(icore, data, edit_qm2)
        return None

    sim.tamper = tamper
    sim.initiate()
    sim.run(duration=3600)
    _no_sa(sim)
    assert NotifyType.NO_PROPOSAL_CHOSEN in sim.responder.notifies_received
    assert sim.initiator.core.counters.phase2_failed == 1


def _established() -> Simulation:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=10)
    sim.initiate()
    sim.run()
    sim.assert_keys_match(expected_pairs=2)
    return sim


def test_unencrypted_informational_after_phase1_changes_nothing() -> None:
    sim = _established()
    (sa,) = sim.established_isakmp("responder")
    for payload in (DeletePayload.isakmp(sa.cookies), NotifyPayload.initial_contact(sa.cookies)):
        data = encode_message(
            build_message(sa.icookie, sa.rcookie, ExchangeType.INFORMATIONAL, 0, [payload])
        )
        sim.command("responder", datagram(LEFT, RIGHT, data))
    sim.run()
    assert sim.responder.core.counters.dropped_clear_informational == 2
    assert len(sim.established_isakmp("responder")) == 1
    assert len(sim.established_children("responder")) == 1
    assert not sim.responder.parent.sa_deletes


def test_delete_for_an_sa_the_peer_does_not_own() -> None:
    sim = _established()
    (child,) = sim.established_children("responder")
    # the responder's own inbound SPI, and an SPI nobody has: neither is the peer's to delete
    spis = (child.spi_in.to_bytes(4, "big"), b"\x00\x01\x02\x03")
    data = forge_informational(
        sim.initiator.core, [DeletePayload.ipsec(ProtocolId.IPSEC_ESP, spis)]
    )
    sim.command("responder", datagram(LEFT, RIGHT, data))
    sim.run()
    assert sim.responder.core.counters.deletes_unknown == 2
    assert len(sim.established_children("responder")) == 1
    assert not sim.responder.parent.sa_deletes


def test_remove_then_duplicate_delete() -> None:
    sim = _established()
    (ichild,) = sim.established_children("initiator")
    sim.command("initiator", RemoveCommand(Phase.PHASE2, ichild.tunnel_id))
    sim.run()
    # both sides removed exactly that SA pair and its policies
    for name in ("initiator", "responder"):
        side = sim.sides[name]
        assert side.parent.installed_spis() == set()
        assert len(side.parent.sa_deletes) == 2 and len(side.parent.policy_deletes) == 3
    assert sim.responder.core.counters.deletes_received == 1
    # the same Delete again (a new message, valid hash): nothing left to remove
    again = forge_informational(
        sim.initiator.core,
        [DeletePayload.ipsec(ProtocolId.IPSEC_ESP, (ichild.spi_in.to_bytes(4, "big"),))],
    )
    sim.command("responder", datagram(LEFT, RIGHT, again))
    sim.run()
    assert sim.responder.core.counters.deletes_unknown == 1
    assert len(sim.responder.parent.sa_deletes) == 2
    assert len(sim.established_isakmp("responder")) == 1


def test_message_for_a_deleted_isakmp_sa() -> None:
    sim = _established()
    (sa,) = sim.established_isakmp("initiator")
    old_qm = next(d for d in sim.responder.received if d.data[18] == ExchangeType.QUICK_MODE)
    sim.command("initiator", RemoveCommand(Phase.PHASE1, sa.tunnel_id))
    sim.run()
    assert not sim.responder.core.sas.by_tunnel and not sim.initiator.core.sas.by_tunnel
    _no_sa(sim)  # phase 1 removal takes its phase 2s along
    before = sim.responder.core.counters.dropped_unknown_sa
    sim.command("responder", old_qm)
    sim.run()
    assert sim.responder.core.counters.dropped_unknown_sa == before + 1
    assert not sim.responder.parent.sa_adds[2:]


def test_replayed_informational_is_dropped() -> None:
    sim = _established()
    data = forge_informational(sim.initiator.core, [NotifyPayload.initial_contact(bytes(16))])
    sim.command("responder", datagram(LEFT, RIGHT, data))
    sim.command("responder", datagram(LEFT, RIGHT, data))
    sim.run()
    assert sim.responder.core.counters.dropped_replay == 1


def test_hostile_bytes_never_raise() -> None:
    import random

    sim = _established()
    rng = random.Random(0)  # noqa: S311 - reproducible mutations  # noqa: S311 - reproducible mutations
    template = sim.responder.received
    for i in range(400):
        base = bytearray(template[i % len(template)].data)
        for _ in range(rng.randint(1, 4)):
            base[rng.randrange(len(base))] = rng.randrange(256)
        if i % 7 == 0:
            base = base[: rng.randrange(len(base))]
        sim.command("responder", datagram(LEFT, RIGHT, bytes(base) or b"\x00"))
    sim.run()
    c = sim.responder.core.counters
    dropped = (
        c.dropped_malformed
        + c.dropped_replay
        + c.dropped_unexpected
        + c.dropped_unknown_sa
        + c.dropped_auth
        + c.dropped_policy
        + c.dropped_clear_informational
        + c.duplicates_answered
    )
    # a few mutants are new, valid first messages (another initiator cookie): not drops
    assert dropped >= 380
    assert len(sim.established_children("responder")) == 1
    _ = (RIGHT, address_identity, EspTransformId, IkeHash)


def test_kernel_refusing_the_sas_ends_the_phase2_without_deleting_what_was_never_added() -> None:
    """The responder's parent refuses its install (all or nothing: nothing is in the
    kernel): it tells the peer (Delete), the peer removes its pair, and the responder asks
    the parent to remove nothing (a remove of what was never installed would only be
    refused again as "not ours" and clutter the log)."""
    from ikepriv.ipc.messages import Phase2Install

    init, resp = mirrored()
    sim = Simulation(init, resp, seed=11)
    sim.responder.parent.refuse = {Phase2Install}
    sim.initiate()
    sim.run()
    assert sim.responder.core.counters.phase2_failed >= 1
    assert sim.responder.parent.installs, "the responder asked to install its SAs"
    assert sim.responder.parent.sa_adds == [] and sim.responder.parent.removes == []
    assert sim.initiator.parent.installed_spis() == set()  # the peer took its pair down
    for name in ("initiator", "responder"):
        assert not sim.established_children(name), name
