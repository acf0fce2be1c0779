"""NAT traversal (RFC 3947/3948) between two in-process cores, through a simulated NAPT box,
and against the wire form strongSwan sends (tests/data captures)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.core_sim import (
    LEFT,
    NAT_PUBLIC,
    RIGHT,
    NatBox,
    Simulation,
    datagram,
    esp_proposal,
    ike_proposal,
    mirrored,
    phase1_def,
    reseal,
)

from ikepriv.child_negotiator.core import natt
from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.datagram import Inbound
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.crypto.oakley import skeyid_psk
from ikepriv.dump.capture import Datagram, classify, open_capture
from ikepriv.ipc.messages import (
    DatagramIn,
    DatagramOut,
    DpdSettings,
    Endpoint,
    ErrorCode,
    NatTEncap,
    Role,
    SaDirection,
    SkeyidReply,
)
from ikepriv.isakmp import (
    HashPayload,
    NatDPayload,
    NatOaPayload,
    Payload,
    VendorIdPayload,
    build_encrypted_message,
    decode_message,
    encode_message,
)
from ikepriv.isakmp.constants import (
    NATT_KEEPALIVE,
    NATT_PORT,
    EncapsulationMode,
    ExchangeType,
    GroupId,
    IkeEncryption,
    IkeHash,
    PayloadType,
)

MM = ExchangeType.IDENTITY_PROTECTION
AM = ExchangeType.AGGRESSIVE
QM = ExchangeType.QUICK_MODE
DATA = Path(__file__).parent / "data"


def _nat_sim(
    phase1_mode: ExchangeType = MM,
    mode: EncapsulationMode = EncapsulationMode.TUNNEL,
    *,
    nat: NatBox | None = None,
    nat_t: bool = True,
    seed: int = 3,
) -> Simulation:
    init, resp = mirrored(
        esp=[esp_proposal(pfs=GroupId.MODP_1024)],
        mode=mode,
        phase1_mode=phase1_mode,
        nat_t=nat_t,
        responder_peer=NAT_PUBLIC if nat is not None else LEFT,
    )
    return Simulation(init, resp, seed=seed, nat=nat)


def _ike(sim: Simulation, side: str) -> list[DatagramOut]:
    """What a side sent, keepalives left out."""
    return [d for d in sim.sides[side].sent if d.data != NATT_KEEPALIVE]


def _phase1_plain(sim: Simulation, side: str) -> list[list[Payload]]:
    """Payloads of the unencrypted phase 1 messages one side sent, in order."""
    out = []
    for d in _ike(sim, side):
        message = decode_message(d.data)
        if message.header.exchange_type in (MM, AM) and not message.encrypted:
            out.append(list(message.payloads))
    return out


def _vids(payloads: list[Payload]) -> set[bytes]:
    return {p.data for p in payloads if isinstance(p, VendorIdPayload)}


def _natd(payloads: list[Payload]) -> list[NatDPayload]:
    return [p for p in payloads if isinstance(p, NatDPayload)]


@pytest.mark.parametrize("phase1_mode", [MM, AM])
def test_detection_vendor_ids_nat_d_and_float_to_4500(phase1_mode: ExchangeType) -> None:
    sim = _nat_sim(phase1_mode, nat=NatBox(preserve_ports=False))
    sim.initiate()
    sim.run(duration=60)
    sim.assert_keys_match(expected_pairs=2)
    i_plain, r_plain = _phase1_plain(sim, "initiator"), _phase1_plain(sim, "responder")
    assert natt.RFC3947 in _vids(i_plain[0]) and natt.RFC3947 in _vids(r_plain[0])
    if phase1_mode is MM:
        assert len(_natd(i_plain[1])) == 2 and len(_natd(r_plain[1])) == 2
    else:
        assert len(_natd(r_plain[0])) == 2  # AM2
    assert all(not p.draft for p in _natd(r_plain[-1]))
    # the initiator floats once phase 1 is encrypted; everything after goes to 4500
    sent = _ike(sim, "initiator")
    first_encrypted = next(i for i, d in enumerate(sent) if decode_message(d.data).encrypted)
    for i, d in enumerate(sent):
        floated = i >= first_encrypted
        assert (d.local.port == NATT_PORT and d.remote.port == NATT_PORT) is floated, i
        assert d.natt is floated
    # the responder answers the NAT's outside ports: 500 -> 31000, 4500 -> 31001
    r_ports = [d.remote.port for d in sim.responder.sent]
    assert set(r_ports) == {31000, 31001} and r_ports[0] == 31000
    (r_sa,) = sim.established_isakmp("responder")
    assert r_sa.remote == Endpoint(NAT_PUBLIC, 31001) and r_sa.local == Endpoint(RIGHT, 4500)
    st = natt.state_of(r_sa)
    assert st is not None and st.peer_behind_nat and not st.local_behind_nat
    (i_sa,) = sim.established_isakmp("initiator")
    st = natt.state_of(i_sa)
    assert st is not None and st.local_behind_nat and not st.peer_behind_nat
    # the inbound SA of the responder comes from the NAT's port, the outbound goes to it
    by_dir = {a.direction: a for a in sim.responder.parent.sa_adds}
    assert by_dir[SaDirection.OUT].encap == NatTEncap(4500, 31001)
    assert by_dir[SaDirection.IN].encap == NatTEncap(31001, 4500)


def test_no_nat_means_no_float_no_encapsulation_no_keepalive() -> None:
    sim = _nat_sim(nat=None)
    sim.initiate()
    sim.run(duration=200)
    sim.assert_keys_match(expected_pairs=2)
    assert len(_natd(_phase1_plain(sim, "initiator")[1])) == 2  # detection still ran
    for side in sim.sides.values():
        assert all(d.local.port == 500 and not d.natt for d in side.sent)
        assert all(a.encap is None for a in side.parent.sa_adds)
    assert not sim.keepalives
    (child,) = sim.established_children("responder")
    assert child.choice.mode == EncapsulationMode.TUNNEL


def test_nat_t_off_in_the_definition_sends_nothing_of_it() -> None:
    sim = _nat_sim(nat=NatBox(), nat_t=False)
    sim.initiate()
    sim.run(duration=200)
    sim.assert_keys_match(expected_pairs=2)
    for side in ("initiator", "responder"):
        for payloads in _phase1_plain(sim, side):
            assert not (_vids(payloads) & natt.NATT_VIDS) and not _natd(payloads)
        assert all(a.encap is None for a in sim.sides[side].parent.sa_adds)
    assert not sim.keepalives


def test_keepalives_only_from_behind_the_nat_every_20_seconds() -> None:
    sim = _nat_sim(nat=NatBox())
    sim.initiate()
    sim.run(duration=205)
    (i_sa,) = sim.established_isakmp("initiator")
    assert len(sim.keepalives) == 10
    for k in sim.keepalives:
        assert k.data == NATT_KEEPALIVE and k.natt
        assert k.local == Endpoint(LEFT, 4500) and k.remote == Endpoint(RIGHT, 4500)
    # the responder is not behind a NAT: it sends none (every keepalive is the initiator's)
    assert all(k.local.addr == LEFT for k in sim.keepalives)
    assert len(sim.initiator.sent) - len(sim.keepalives) == 5  # MM1, 3, 5, QM1, QM3
    assert i_sa.established


def _decrypted_at_responder(sim: Simulation, exchange: ExchangeType) -> list[list[Payload]]:
    """Record the decrypted payloads of `exchange` messages as the responder gets them."""
    seen: list[list[Payload]] = []

    def record(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if side == "responder" and message.header.exchange_type == exchange:

            def keep(payloads: list[Payload]) -> list[Payload]:
                seen.append(list(payloads))
                return payloads

            reseal(sim.responder.core, data, keep)
        return None

    sim.tamper = record
    return seen


def test_transport_mode_sends_nat_oa_and_udp_encapsulated_transport() -> None:
    sim = _nat_sim(mode=EncapsulationMode.TRANSPORT, nat=NatBox())
    seen = _decrypted_at_responder(sim, QM)
    sim.initiate()
    sim.run(duration=60)
    sim.assert_keys_match(expected_pairs=2)
    qm1 = seen[0]
    oa = [p for p in qm1 if isinstance(p, NatOaPayload)]
    assert [p.address for p in oa] == [LEFT, RIGHT] and not any(p.draft for p in oa)
    (child,) = sim.established_children("responder")
    assert child.choice.mode == EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT
    # the responder's QM2 names the initiator as it sees it (behind the NAT)
    qm2_oa: list[Payload] = []

    def record_qm2(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if side == "initiator" and message.header.exchange_type == QM and not qm2_oa:
            reseal(sim.initiator.core, data, lambda p: qm2_oa.extend(p) or p)  # type: ignore[func-returns-value]
        return None

    sim.tamper = record_qm2
    sim.initiate()  # a second phase 2 under the same ISAKMP SA
    sim.run(duration=60)
    oa2 = [p.address for p in qm2_oa if isinstance(p, NatOaPayload)]
    assert oa2 == [NAT_PUBLIC, RIGHT]


def test_tunnel_mode_sends_no_nat_oa() -> None:
    sim = _nat_sim(nat=NatBox())
    seen = _decrypted_at_responder(sim, QM)
    sim.initiate()
    sim.run(duration=60)
    assert seen and not any(isinstance(p, NatOaPayload) for p in seen[0])
    (child,) = sim.established_children("initiator")
    assert child.choice.mode == EncapsulationMode.UDP_ENCAPSULATED_TUNNEL


@pytest.mark.parametrize("vid", [natt.DRAFT_02, natt.DRAFT_02N, natt.DRAFT_03])
def test_responder_speaks_the_draft_to_a_draft_peer(
    vid: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An initiator that knows only a draft: payloads 130/131, modes 61443/61444."""
    monkeypatch.setattr(natt, "INITIATOR_VARIANTS", ((vid, True),))
    sim = _nat_sim(mode=EncapsulationMode.TRANSPORT, nat=NatBox())
    seen = _decrypted_at_responder(sim, QM)
    sim.initiate()
    sim.run(duration=60)
    sim.assert_keys_match(expected_pairs=2)
    r_plain = _phase1_plain(sim, "responder")
    assert _vids(r_plain[0]) & natt.NATT_VIDS == {vid}
    natd = _natd(r_plain[1])
    assert len(natd) == 2 and all(
        p.draft and p.payload_type == PayloadType.NAT_D_DRAFT for p in natd
    )
    oa = [p for p in seen[0] if isinstance(p, NatOaPayload)]
    assert len(oa) == 1 and oa[0].draft and oa[0].address == LEFT
    (child,) = sim.established_children("responder")
    assert child.choice.mode == EncapsulationMode.UDP_ENCAPSULATED_TRANSPORT_DRAFT
    assert all(a.encap == NatTEncap(4500, 4500) for a in sim.responder.parent.sa_adds)


def test_initiator_does_not_take_a_draft_answer_to_an_rfc_offer() -> None:
    """We offered RFC 3947 only: a responder answering with a draft VID gets no NAT-T."""
    init, resp = mirrored(nat_t=True)
    sim = Simulation(init, resp, seed=4)

    def rfc_to_draft(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        h = message.header
        if side != "initiator" or message.encrypted or h.exchange_type != MM:
            return None
        payloads = [
            VendorIdPayload(natt.DRAFT_03)
            if isinstance(p, VendorIdPayload) and p.data == natt.RFC3947
            else p
            for p in message.payloads
        ]
        from ikepriv.isakmp import build_message

        return encode_message(build_message(h.icookie, h.rcookie, MM, 0, payloads))

    sim.tamper = rfc_to_draft
    sim.initiate()
    sim.run(duration=60)
    (i_sa,) = sim.established_isakmp("initiator")
    assert natt.state_of(i_sa) is None
    assert not _natd(_phase1_plain(sim, "initiator")[1])


def test_rebinding_is_followed_only_after_authentication() -> None:
    nat = NatBox(preserve_ports=False)
    sim = _nat_sim(nat=nat)
    sim.initiate()
    sim.run(duration=60)
    (r_sa,) = sim.established_isakmp("responder")
    before = r_sa.remote
    assert before == Endpoint(NAT_PUBLIC, 31001)
    core = sim.responder.core
    # a forged datagram with the SA's cookies from another port of the NAT changes nothing
    rng = random.Random(1)  # noqa: S311 - seeded on purpose
    forged = encode_message(
        build_encrypted_message(
            r_sa.icookie, r_sa.rcookie, QM, 0x12345678, PayloadType.HASH, rng.randbytes(64)
        )
    )
    auth_drops = core.counters.dropped_auth
    out = core.handle(
        DatagramIn(r_sa.local, Endpoint(NAT_PUBLIC, 40000), True, forged), sim.now + 1
    )
    assert r_sa.remote == before and core.counters.dropped_auth == auth_drops + 1
    assert not any(getattr(m, "remote", None) == Endpoint(NAT_PUBLIC, 40000) for m in out)
    # another address entirely is not this SA's peer
    unknown = core.counters.dropped_unknown_sa
    core.handle(DatagramIn(r_sa.local, Endpoint(RIGHT, 4500), True, forged), sim.now + 1)
    assert core.counters.dropped_unknown_sa == unknown + 1
    # the NAT forgets its mapping; the next authenticated message moves the SA
    nat.rebind()
    sim.initiate()
    sim.run(duration=60)
    assert r_sa.remote.addr == NAT_PUBLIC and r_sa.remote.port not in (31001, 4500)
    new_port = r_sa.remote.port
    newest = [a for a in sim.responder.parent.sa_adds][-2:]
    assert {a.encap for a in newest} == {NatTEncap(4500, new_port), NatTEncap(new_port, 4500)}
    newest_in = {a.spi for a in newest if a.direction is SaDirection.IN}
    assert newest_in & {c.spi_in for c in sim.established_children("responder")}


# ---------------------------------------------------------------------------- captures


def _capture(name: str) -> Iterator[Datagram]:
    with (DATA / f"{name}.pcap").open("rb") as handle:
        linktype, frames = open_capture(handle)
        for frame in frames:
            item = classify(frame.number, frame.time, frame.data, linktype)
            if isinstance(item, Datagram):
                yield item


def _keys(name: str) -> dict[str, str]:
    out = {}
    for line in (DATA / f"{name}.keys").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v.split(" ")[0]
    return out


def _strongswan_peer(mode: ExchangeType) -> ConfigSnapshot:
    """Our responder, configured like the captured strongSwan responder."""
    return ConfigSnapshot.of(
        [
            phase1_def(
                1,
                RIGHT,
                LEFT,
                [
                    ike_proposal(
                        IkeEncryption.AES_CBC,
                        128,
                        IkeHash.SHA2_256,
                        GroupId.MODP_2048,
                        lifetime=15840,
                    )
                ],
                mode=mode,
                nat_t=True,
            )
        ],
        [],
    )


def test_strongswan_am1_gets_an_rfc_3947_am2_with_nat_d() -> None:
    am1 = next(_capture("am_qm_psk"))
    psk = _keys("am_qm_psk")["psk"].encode()
    core = Negotiator(_strongswan_peer(AM), 0.0, random.Random(2).randbytes)  # noqa: S311
    (req,) = core.handle(datagram(am1.src, am1.dst, am1.message), 1.0)
    assert req.phase1_number == 1  # type: ignore[attr-defined]
    nr = bytes(range(32))  # the parent's Nr, made with SKEYID for a responder
    reply = SkeyidReply(
        req.request_id,  # type: ignore[attr-defined]
        ErrorCode.OK,
        skeyid_psk(req.prf, psk, req.peer_nonce, nr),  # type: ignore[attr-defined]
        nr,
    )
    out = [m for m in core.handle(reply, 1.1) if type(m).__name__ == "DatagramOut"]
    (am2,) = out
    payloads = list(decode_message(am2.data).payloads)  # type: ignore[attr-defined]
    assert natt.RFC3947 in _vids(payloads)  # strongSwan also offered draft-02\n
    assert not _vids(payloads) & {natt.DRAFT_02N, natt.DRAFT_02, natt.DRAFT_03}
    natd = _natd(payloads)
    (sa,) = core.sas.by_tunnel.values()
    from ikepriv.crypto.prf import nat_d_hash

    assert [p.data for p in natd] == [
        nat_d_hash(IkeHash.SHA2_256, sa.icookie, sa.rcookie, am1.src, 500),
        nat_d_hash(IkeHash.SHA2_256, sa.icookie, sa.rcookie, am1.dst, 500),
    ]
    assert isinstance(payloads[-1], HashPayload)


def test_strongswan_fake_nat_d_means_nat_and_port_4500() -> None:
    """strongSwan forcing encapsulation fakes its source NAT-D: we see a NAT at the peer."""
    frames = list(_capture("mm_qm_psk"))
    keys = _keys("mm_qm_psk")
    core = Negotiator(_strongswan_peer(MM), 0.0, random.Random(3).randbytes)  # noqa: S311
    mm1 = frames[0]
    core.handle(datagram(mm1.src, mm1.dst, mm1.message), 1.0)
    (sa,) = core.sas.by_tunnel.values()
    # give the SA the captured cookies so the captured NAT-D hashes apply
    core.sas.remove(sa)
    sa.rcookie = bytes.fromhex(keys["rcookie"])
    core.sas.add(sa)
    mm3 = decode_message(frames[2].message)
    local, remote = Endpoint(mm1.dst, 500), Endpoint(mm1.src, 500)
    inbound = Inbound(local, remote, False, frames[2].message, b"", mm3)
    core.hooks.on_ke_payloads(sa, mm3.payloads, inbound)
    st = natt.state_of(sa)
    assert st is not None and st.detected and st.peer_behind_nat and not st.local_behind_nat
    assert core.hooks.encap_modes(sa, EncapsulationMode.TUNNEL) == (int(EncapsulationMode.TUNNEL),)
    sa.local, sa.remote, sa.natt = Endpoint(mm1.dst, 4500), Endpoint(mm1.src, 4500), True
    assert core.hooks.encap_modes(sa, EncapsulationMode.TUNNEL) == (
        int(EncapsulationMode.UDP_ENCAPSULATED_TUNNEL),
    )


def test_strongswan_am3_nat_d_hashes_the_4500_ports() -> None:
    """In am_qm_psk.pcap frame 3 (AM3, sent on 4500, decrypted by ikedump) strongSwan's
    first NAT-D is the destination with port 4500, as ours: a responder reading it sees
    itself un-NATed (and the faked source hash as a NAT at the peer)."""
    keys = _keys("am_qm_psk")
    am1 = next(_capture("am_qm_psk"))
    core = Negotiator(_strongswan_peer(AM), 0.0, random.Random(2).randbytes)  # noqa: S311
    core.handle(datagram(am1.src, am1.dst, am1.message), 1.0)
    (sa,) = core.sas.by_tunnel.values()
    core.sas.remove(sa)
    sa.rcookie = bytes.fromhex(keys["rcookie"])
    core.sas.add(sa)
    am3_nat_d = [
        NatDPayload(bytes.fromhex(h))
        for h in (
            "3e320511a5f917b986e7085201d649e99610dc324cc995627dba3b798785f03e",
            "5acabf45865f34028f2e94a39e4895ff94c6baf2ad05424c9e1aa64a8e7a0cb9",
        )
    ]
    inbound = Inbound(Endpoint(am1.dst, 4500), Endpoint(am1.src, 4500), True, b"", b"", None)  # type: ignore[arg-type]
    core.hooks.on_ke_payloads(sa, am3_nat_d, inbound)
    st = natt.state_of(sa)
    assert st is not None and not st.local_behind_nat and st.peer_behind_nat


def test_rebinding_is_followed_on_dpd_traffic_alone() -> None:
    """After the NAT forgets its mapping, the next authenticated R-U-THERE (no Quick Mode)
    moves the responder's SA to the new port, so its ACKs get through and the peer lives."""
    nat = NatBox(preserve_ports=False)
    init, resp = mirrored(nat_t=True, responder_peer=NAT_PUBLIC, dpd=DpdSettings(True, 30, 120))
    sim = Simulation(init, resp, seed=8, nat=nat)
    sim.initiate()
    sim.run(duration=5)
    (r_sa,) = sim.established_isakmp("responder")
    before = r_sa.remote
    nat.rebind()
    sim.advance(400)  # several probe rounds, longer than the DPD timeout
    assert r_sa.established and r_sa.remote.addr == NAT_PUBLIC
    assert r_sa.remote.port != before.port
    for name in ("initiator", "responder"):
        assert "is dead" not in sim.sides[name].log_text()
        assert len(sim.established_children(name)) == 1
    assert sim.initiator.core.counters.dpd_acks_received > 0


@pytest.mark.parametrize("rekeying", ["initiator", "responder"])
def test_rekeys_behind_the_nat_keep_port_4500_and_the_encapsulation(rekeying: str) -> None:
    """Phase 2 rekeys, a phase 1 rekey, and phase 2 rekeys under the new ISAKMP SA, with the
    initiator behind the NAT, started by either side: every new SA pair carries the UDP
    encapsulation ports (4500 on our side, the NAT's mapping of it on the peer's), and the
    exchanges stay on 4500."""
    nat = NatBox(preserve_ports=False)
    init, resp = mirrored(
        ike=[ike_proposal(lifetime=900)],
        esp=[esp_proposal(lifetime=600)],
        nat_t=True,
        responder_peer=NAT_PUBLIC,
    )
    early, late = Settings(rekey_margin_fraction=0.3), Settings(rekey_margin_fraction=0.02)
    first = rekeying == "initiator"
    sim = Simulation(
        init,
        resp,
        seed=10,
        nat=nat,
        settings=early if first else late,
        responder_settings=late if first else early,
    )
    sim.initiate()
    sim.run(duration=5)
    mapped = nat.out_ports[NATT_PORT]
    sim.advance(1300)
    counters = sim.sides[rekeying].core.counters
    assert counters.phase1_rekeys >= 1 and counters.phase2_rekeys >= 2
    # the side not behind the NAT reaches the peer through the NAT's 4500 mapping: its
    # phase 1 rekey is the one in use, and no attempt went to port 500 and got lost
    (sa,) = sim.established_isakmp(rekeying)
    assert sa.role is Role.INITIATOR
    for name in ("initiator", "responder"):
        assert "failed" not in sim.sides[name].log_text()
        assert not sim.sides[name].core.counters.exchanges_timed_out
    sim.assert_keys_match()
    for name, peer_port in (("initiator", NATT_PORT), ("responder", mapped)):
        adds = sim.sides[name].parent.sa_adds
        assert len(adds) >= 6  # three generations at least
        for add in adds:
            local_port = add.encap.sport if add.direction is SaDirection.OUT else add.encap.dport
            remote_port = add.encap.dport if add.direction is SaDirection.OUT else add.encap.sport
            assert (local_port, remote_port) == (NATT_PORT, peer_port), (name, add)
        (sa,) = sim.established_isakmp(name)
        assert sa.natt and sa.local.port == NATT_PORT and sa.remote.port == peer_port
        assert len(sim.established_children(name)) == 1
        quick = [d for d in _ike(sim, name) if decode_message(d.data).header.exchange_type == QM]
        assert quick and all(d.local.port == NATT_PORT and d.natt for d in quick)
    assert not sim.initiator.core.counters.phase2_failed
