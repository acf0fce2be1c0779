"""Aggressive Mode negotiations that must fail, each with no SA and the notify that says why."""

from __future__ import annotations

import random

from harness.core_sim import (
    LEFT,
    RIGHT,
    Simulation,
    datagram,
    find_payload,
    ike_proposal,
    mirrored,
    phase1_def,
    phase2_def,
    reseal,
    selector,
)

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.identities import phase1_id
from ikepriv.child_negotiator.core.offers import ike_choices, ike_sa_payload
from ikepriv.crypto import dh
from ikepriv.crypto.oakley import phase1_iv
from ikepriv.ipc.messages import DatagramOut, Identity
from ikepriv.isakmp import (
    HashPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    build_message,
    decode_message,
    encode_message,
)
from ikepriv.isakmp.constants import ExchangeType, GroupId, IdType, IkeEncryption, NotifyType

AM = ExchangeType.AGGRESSIVE


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
    init, resp = mirrored(phase1_mode=AM)
    sim = Simulation(init, resp, seed=1, responder_psk=b"another secret")
    sim.initiate()
    _settle(sim)
    _no_sa(sim)
    # the initiator finds out first (HASH_R) and tells the responder
    assert NotifyType.AUTHENTICATION_FAILED in sim.responder.notifies_received
    assert sim.initiator.core.counters.dropped_auth == 1
    assert sim.initiator.core.counters.phase1_failed == 1
    assert sim.responder.core.counters.phase1_failed == 1
    assert "HASH_R does not verify" in sim.initiator.log_text()


def test_unknown_identity() -> None:
    init = ConfigSnapshot.of(
        [phase1_def(1, LEFT, RIGHT, local_id=Identity(IdType.FQDN, b"stranger"), mode=AM)],
        [phase2_def(1, 1, selector(f"{LEFT}/32"), selector(f"{RIGHT}/32"))],
    )
    _, resp = mirrored(phase1_mode=AM)
    sim = Simulation(init, resp, seed=2)
    sim.initiate()
    _settle(sim)
    _no_sa(sim)
    assert NotifyType.INVALID_ID_INFORMATION in sim.initiator.notifies_received
    assert not sim.responder.parent.skeyid_requests  # no key is even looked at
    assert "unknown identity" in sim.responder.log_text()


def test_initiator_refuses_proposals_with_different_groups() -> None:
    init, resp = mirrored(
        [ike_proposal(group=GroupId.MODP_2048), ike_proposal(group=GroupId.MODP_1024)],
        phase1_mode=AM,
    )
    sim = Simulation(init, resp, seed=3)
    sim.initiate()
    _settle(sim)
    assert not sim.initiator.sent
    assert "cannot negotiate the DH group" in sim.initiator.log_text()


def _am1(groups: list[GroupId], rng: random.Random) -> tuple[bytes, bytes]:
    """An AM1 offering one transform per group, KE for the first; (datagram, icookie)."""
    d = phase1_def(1, LEFT, RIGHT, [ike_proposal(group=g) for g in groups], mode=AM)
    key = dh.generate(groups[0], rng.randbytes)
    icookie = rng.randbytes(8)
    payloads: list[Payload] = [
        ike_sa_payload(ike_choices(d)),
        KePayload(key.public),
        NoncePayload(rng.randbytes(32)),
        phase1_id(d.local_id),
    ]
    return encode_message(build_message(icookie, bytes(8), AM, 0, payloads)), icookie


def _notifies(out: list[object]) -> list[int]:
    found = []
    for msg in out:
        if isinstance(msg, DatagramOut):
            for p in decode_message(msg.data).payloads:
                if isinstance(p, NotifyPayload):
                    found.append(p.notify_type)
    return found


def test_responder_refuses_an_offer_mixing_groups() -> None:
    _, resp = mirrored(
        [ike_proposal(group=GroupId.MODP_1024), ike_proposal(group=GroupId.MODP_2048)],
        phase1_mode=AM,
    )
    rng = random.Random(4)  # noqa: S311 - seeded on purpose
    core = Negotiator(resp, 0.0, rng.randbytes)
    data, _ = _am1([GroupId.MODP_1024, GroupId.MODP_2048], rng)
    out = core.handle(datagram(LEFT, RIGHT, data), 1.0)
    assert _notifies(out) == [NotifyType.NO_PROPOSAL_CHOSEN]
    assert not core.sas.by_tunnel and core.counters.dropped_policy == 1
    # the same offer with one group is answered (by asking the parent for SKEYID)
    data, _ = _am1([GroupId.MODP_1024], rng)
    out = core.handle(datagram(LEFT, RIGHT, data), 2.0)
    assert [type(m).__name__ for m in out] == ["SkeyidRequest"]


def test_responder_refuses_a_key_exchange_of_the_wrong_group() -> None:
    _, resp = mirrored([ike_proposal(group=GroupId.MODP_2048)], phase1_mode=AM)
    rng = random.Random(5)  # noqa: S311 - seeded on purpose
    core = Negotiator(resp, 0.0, rng.randbytes)
    data, _ = _am1([GroupId.MODP_2048], rng)
    message = decode_message(data)
    payloads = list(message.payloads)
    i = find_payload(payloads, KePayload)
    payloads[i] = KePayload(dh.generate(GroupId.MODP_1024, rng.randbytes).public)
    h = message.header
    bad = encode_message(build_message(h.icookie, h.rcookie, AM, 0, payloads))
    out = core.handle(datagram(LEFT, RIGHT, bad), 1.0)
    assert _notifies(out) == [NotifyType.INVALID_KEY_INFORMATION]
    assert not core.sas.by_tunnel


def test_no_common_proposal() -> None:
    init, resp = mirrored(
        [ike_proposal(IkeEncryption.AES_CBC, 256)],
        responder_ike=[ike_proposal(IkeEncryption.AES_CBC, 128)],
        phase1_mode=AM,
    )
    sim = Simulation(init, resp, seed=2)
    sim.initiate()
    _settle(sim)
    _no_sa(sim)
    assert NotifyType.NO_PROPOSAL_CHOSEN in sim.initiator.notifies_received


def _alter_hash(payloads: list[Payload]) -> list[Payload]:
    i = find_payload(payloads, HashPayload)
    data = bytearray(payloads[i].data)  # type: ignore[attr-defined]
    data[-1] ^= 0x80
    payloads[i] = HashPayload(bytes(data))
    return payloads


def test_altered_hash_r() -> None:
    init, resp = mirrored(phase1_mode=AM)
    sim = Simulation(init, resp, seed=6)

    def tamper(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        h = message.header
        if side == "initiator" and h.exchange_type == AM and not message.encrypted:
            payloads = _alter_hash(list(message.payloads))
            return encode_message(build_message(h.icookie, h.rcookie, AM, 0, payloads))
        return None

    sim.tamper = tamper
    sim.initiate()
    _settle(sim)
    _no_sa(sim)
    assert sim.initiator.core.counters.dropped_auth >= 1
    assert NotifyType.AUTHENTICATION_FAILED in sim.responder.notifies_received
    assert not sim.initiator.parent.sa_adds and not sim.responder.parent.sa_adds


def test_altered_hash_i() -> None:
    init, resp = mirrored(phase1_mode=AM)
    sim = Simulation(init, resp, seed=7)

    def tamper(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if side == "responder" and message.header.exchange_type == AM and message.encrypted:
            return reseal(sim.responder.core, data, _alter_hash)
        return None

    sim.tamper = tamper
    sim.initiate()
    sim.run(duration=3600)
    _no_sa(sim)
    assert sim.responder.core.counters.dropped_auth >= 1
    assert not sim.responder.core.sas.by_tunnel  # never established, then expired
    assert NotifyType.AUTHENTICATION_FAILED in sim.initiator.notifies_received
    assert "HASH_I from" in sim.responder.log_text()


def test_am3_in_the_clear_is_accepted() -> None:
    """RFC 2409 allows AM3 unencrypted; the IV chain then starts Quick Mode unchanged."""
    init, resp = mirrored(phase1_mode=AM)
    sim = Simulation(init, resp, seed=8)
    starts: list[bytes] = []  # hash(g^xi | g^xr): the public values go once established

    def decrypt_am3(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        h = message.header
        if side == "responder" and h.exchange_type == AM and message.encrypted:
            core = sim.responder.core
            sa = core.sas.by_cookies[h.icookie + h.rcookie]
            assert sa.choice is not None and sa.iv is not None
            starts.append(phase1_iv(sa.choice.hash, sa.g_xi, sa.g_xr, sa.iv.block_size))
            plain = sa.cipher.decrypt(sa.iv.iv_for(0), message.ciphertext)  # type: ignore[union-attr]
            from ikepriv.isakmp import decode_payload_chain

            payloads = decode_payload_chain(h.next_payload, plain, allow_padding=True)
            return encode_message(build_message(h.icookie, h.rcookie, AM, 0, list(payloads)))
        return None

    sim.tamper = decrypt_am3
    sim.initiate(phase=1)
    sim.run(duration=60)
    assert sim.established_isakmp("responder")
    (r_sa,) = sim.established_isakmp("responder")
    # nothing was decrypted in phase 1: the chain is still at hash(g^xi | g^xr)
    assert r_sa.iv.phase1_last_block == starts[0]
