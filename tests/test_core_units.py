"""Building blocks of the core on their own: cookies, bounds, back-off, proposals, IDs,
configuration snapshots, and the behaviours the matrix does not reach."""

from __future__ import annotations

import ipaddress
import random

import pytest
from harness.core_sim import (
    LEFT,
    RIGHT,
    Simulation,
    datagram,
    esp_proposal,
    forge_informational,
    ike_proposal,
    mirrored,
    phase1_def,
    phase2_def,
    reseal,
    selector,
)

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.cookies import ZERO_COOKIE, CookieJar
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.half_open import HalfOpenTable, NotifyLimiter
from ikepriv.child_negotiator.core.identities import (
    IdForm,
    id_selector,
    phase1_id_matches,
    selector_id,
    selector_inside,
)
from ikepriv.child_negotiator.core.offers import (
    check_ike_reply,
    check_ipsec_reply,
    ike_choices,
    ike_sa_payload,
    ipsec_choices,
    ipsec_sa_payload,
    select_ike,
    select_ipsec,
)
from ikepriv.child_negotiator.core.retransmit import (
    SEEN_MAX,
    Backoff,
    Flight,
    Seen,
    TimerResult,
    datagram_digest,
)
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc.messages import (
    ConfigBegin,
    ConfigEnd,
    ConfigPhase1,
    ConfigPhase2,
    Identity,
    InitiateCommand,
    ListCommand,
    Phase,
    RemoveCommand,
    StateReport,
    StateReportEnd,
)
from ikepriv.isakmp import (
    IdPayload,
    NotifyPayload,
    Proposal,
    SAPayload,
    decode_message,
)
from ikepriv.isakmp.constants import (
    AuthAlgorithm,
    EncapsulationMode,
    EspTransformId,
    ExchangeType,
    GroupId,
    HeaderFlag,
    IdType,
    IkeEncryption,
    NotifyType,
    ProtocolId,
)


def _rand(seed: int = 0) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible on purpose


# ---------------------------------------------------------------------------- cookies


def test_responder_cookie_depends_on_secret_peer_and_icookie() -> None:
    jar, other = CookieJar(_rand(1).randbytes), CookieJar(_rand(2).randbytes)
    icookie = bytes(range(1, 9))
    c = jar.responder(LEFT, 500, icookie)
    assert c == jar.responder(LEFT, 500, icookie) and c != ZERO_COOKIE and len(c) == 8
    assert c != jar.responder(RIGHT, 500, icookie)
    assert c != jar.responder(LEFT, 4500, icookie)
    assert c != jar.responder(LEFT, 500, bytes(range(2, 10)))
    assert c != other.responder(LEFT, 500, icookie)


def test_duplicate_first_message_gets_the_same_answer() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=3)
    sim.initiate(phase=1)
    sim.run()
    mm1 = sim.responder.received[0]
    sent_before = len(sim.responder.sent)
    sim.command("responder", mm1)
    sim.run()
    # a late MM1 for an established SA is late: dropped and counted, no second SA
    assert len(sim.responder.core.sas.by_tunnel) == 1
    assert len(sim.responder.sent) == sent_before
    assert sim.responder.core.counters.dropped_replay == 1


# ---------------------------------------------------------------------------- bounds


def test_half_open_table_bounds_count_per_peer_and_age() -> None:
    table = HalfOpenTable(max_count=3, max_per_peer=2, max_age=10.0)
    table.add("a", LEFT, 0.0)
    table.add("b", LEFT, 1.0)
    assert not table.admit(LEFT) and table.admit(RIGHT)
    table.add("c", RIGHT, 2.0)
    assert not table.admit(RIGHT)  # total bound
    assert table.expired(10.5) == ["a"] and table.next_deadline() == 10.0
    table.remove("a")
    assert table.admit(LEFT) and len(table) == 2


def test_half_open_flood_evicts_the_oldest_and_expires_silently() -> None:
    """Unproven responder state past the per-source bound pushes out that source's oldest
    (never refuses the newest), and ages out without a log line."""
    init, resp = mirrored()
    settings = Settings(unproven_max_per_source=4, half_open_max_age=20.0)
    sim = Simulation(init, resp, seed=4, responder_settings=settings, loss=0.0)
    core = sim.responder.core
    # six initiators (six cookies) from the same peer, each only sending MM1
    for i in range(6):
        icore = Negotiator(init, sim.now, _rand(100 + i).randbytes)
        icore.handle(InitiateCommand(Phase.PHASE1, 1, None, None), sim.now)
        mm1 = icore.sas.by_tunnel[1].flight.datagrams[0].data
        sim.command("responder", datagram(LEFT, RIGHT, mm1))
    sim.run(duration=1.0)
    assert len(core.sas.by_tunnel) == 4 and core.counters.half_open_evicted == 2
    assert sorted(core.sas.by_tunnel) == [3, 4, 5, 6] and core.counters.dropped_half_open == 0
    logs = len(sim.responder.log_text())
    sim.run(duration=100.0)
    assert not core.sas.by_tunnel and core.counters.half_open_expired == 4
    assert len(sim.responder.log_text()) == logs


def test_notify_limiter_one_per_period_bounded_memory() -> None:
    lim = NotifyLimiter(period=10.0, max_peers=2)
    assert lim.allow("a", 0.0) and not lim.allow("a", 5.0) and lim.allow("a", 10.0)
    lim.allow("b", 11.0)
    lim.allow("c", 12.0)  # evicts "a"
    assert lim.allow("a", 12.5)


# ---------------------------------------------------------------------------- retransmit


def test_backoff_schedule_and_give_up() -> None:
    backoff = Backoff(base=1.0, factor=2.0, max_interval=3.0, tries=2)
    flight = Flight()
    flight.sent((), 0.0, backoff)
    assert flight.deadline == 1.0
    assert flight.on_timer(0.5, backoff) is TimerResult.NOTHING
    assert flight.on_timer(1.0, backoff) is TimerResult.RESEND and flight.deadline == 3.0
    assert flight.on_timer(3.0, backoff) is TimerResult.RESEND and flight.deadline == 6.0
    assert flight.on_timer(6.0, backoff) is TimerResult.GIVE_UP and flight.deadline is None


def test_seen_messages() -> None:
    x, y = datagram_digest(b"x"), datagram_digest(b"y")
    flight = Flight()
    assert flight.classify(x) is Seen.NEW
    flight.accepted(x)
    flight.accepted(y)
    assert flight.classify(y) is Seen.LAST and flight.classify(x) is Seen.OLD


def test_seen_messages_keep_the_newest_few_only() -> None:
    """An exchange remembers SEEN_MAX accepted messages: the oldest beyond them is new
    again (as before), the others are still recognised, whatever their digests share."""
    digests = [datagram_digest(bytes([i])) for i in range(SEEN_MAX + 3)]
    flight = Flight()
    for d in digests:
        flight.accepted(d)
    kept = digests[-SEEN_MAX:]
    assert flight.classify(kept[-1]) is Seen.LAST
    assert all(flight.classify(d) is Seen.OLD for d in kept[:-1])
    assert all(flight.classify(d) is Seen.NEW for d in digests[:-SEEN_MAX])
    # a digest made of the tail of one and the head of the next is not one of them
    straddling = kept[0][8:] + kept[1][:8]
    assert flight.classify(straddling) is Seen.NEW
    with pytest.raises(ValueError):
        flight.accepted(b"short")


# ---------------------------------------------------------------------------- proposals


def test_initiator_accepts_only_exactly_an_offered_transform() -> None:
    d = phase1_def(1, LEFT, RIGHT, [ike_proposal(lifetime=3600)])
    offered = ike_choices(d)
    offer = ike_sa_payload(offered)
    assert check_ike_reply(offered, offer) == offered[0]
    other = ike_sa_payload(ike_choices(phase1_def(1, LEFT, RIGHT, [ike_proposal(lifetime=7200)])))
    assert check_ike_reply(offered, other) is None  # lifetime differs
    two = SAPayload.ipsec([offer.proposals[0], offer.proposals[0]])
    assert check_ike_reply(offered, two) is None


def test_responder_never_picks_unimplemented_or_custom_groups() -> None:
    d = phase1_def(1, RIGHT, LEFT, [ike_proposal(group=GroupId.MODP_2048)])
    offer = ike_sa_payload(
        ike_choices(phase1_def(1, LEFT, RIGHT, [ike_proposal(group=GroupId.MODP_1024)]))
    )
    assert select_ike(d, offer) is None
    ok = ike_sa_payload(ike_choices(d))
    picked = select_ike(d, ok)
    assert picked is not None and picked[1].group is GroupId.MODP_2048


def test_phase2_selection_refuses_bundles_and_echoes_one_transform() -> None:
    d = phase2_def(1, 1, selector("198.51.100.0/25"), selector("198.51.100.128/25"))
    choices = ipsec_choices(d, EncapsulationMode.TUNNEL)
    payload = ipsec_sa_payload(choices, {ProtocolId.IPSEC_ESP: b"\x00\x00\x10\x00"})
    picked = select_ipsec(d, payload, frozenset({EncapsulationMode.TUNNEL}))
    assert picked is not None and len(picked.proposal.transforms) == 1
    bundle = SAPayload.ipsec([payload.proposals[0], payload.proposals[0]])  # same number: AND
    assert select_ipsec(d, bundle, frozenset({EncapsulationMode.TUNNEL})) is None
    assert check_ipsec_reply(choices, payload) is not None
    transport = ipsec_choices(d, EncapsulationMode.TRANSPORT)
    assert check_ipsec_reply(transport, payload) is None  # mode matters


# ---------------------------------------------------------------------------- identities


def test_selector_inside_rules() -> None:
    outer = selector("198.51.100.0/24", 6, 0)
    assert selector_inside(selector("198.51.100.0/24", 6, 443), outer)
    assert selector_inside(selector("198.51.100.7/32", 6, 0), outer)
    assert not selector_inside(selector("198.51.100.0/23", 6, 0), outer)
    assert not selector_inside(selector("198.51.100.0/24", 0, 0), outer)
    assert not selector_inside(selector("198.51.100.0/24", 17, 0), outer)
    assert selector_inside(selector("2001:db8::/64"), selector("::/0")) is not False


def test_id_forms_round_trip_to_selectors() -> None:
    sel = selector("198.51.100.128/25", 17, 53)
    for form in IdForm:
        payload = selector_id(sel, form)
        assert id_selector(payload) == sel
    host = selector("192.0.2.9/32")
    assert selector_id(host).id_type is IdType.IPV4_ADDR
    ragged = IdPayload.address_range("198.51.100.1", "198.51.100.6")
    assert id_selector(ragged) is None  # not one prefix: refused, never widened
    assert id_selector(IdPayload.fqdn("gw.example")) is None


def test_phase1_identity_rules() -> None:
    want = Identity(IdType.FQDN, b"gw.example")
    assert phase1_id_matches(want, IdPayload.fqdn("gw.example"))
    assert phase1_id_matches(want, IdPayload.fqdn("gw.example", 17, 500))
    assert not phase1_id_matches(want, IdPayload.fqdn("gw.example", 6, 22))
    assert not phase1_id_matches(want, IdPayload.fqdn("other.example"))
    assert phase1_id_matches(None, IdPayload.address(ipaddress.ip_address("192.0.2.1")))


# ---------------------------------------------------------------------------- behaviours


def test_ranges_as_phase2_ids() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=21, settings=Settings(qm_id_ranges=True))
    sim.initiate()
    sim.run()
    sim.assert_keys_match(expected_pairs=2)


def test_commit_bit_is_accepted_and_confirmed_with_connected() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=22)
    icore = sim.initiator.core

    def set_commit(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if side != "responder" or message.header.exchange_type != ExchangeType.QUICK_MODE:
            return None
        if message.header.flags & HeaderFlag.COMMIT:
            return None
        # flags live in byte 19; the HASH(1) does not cover the header
        return data[:19] + bytes([data[19] | HeaderFlag.COMMIT]) + data[20:]

    sim.tamper = set_commit
    sim.initiate()
    sim.run()
    sim.assert_keys_match(expected_pairs=2)
    assert NotifyType.CONNECTED in sim.initiator.notifies_received
    assert icore.counters.dropped_auth == 0


def test_initial_contact_clears_the_peers_old_state() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=23)
    sim.initiate()
    sim.run()
    assert len(sim.established_children("responder")) == 1
    # the initiator "reboots": a fresh core with no state negotiates again
    fresh = Simulation(init, resp, seed=24)
    fresh.sides["responder"] = sim.responder
    fresh._by_addr[sim.responder.address] = sim.responder
    fresh.now = sim.now
    fresh.initiate()
    fresh.run()
    r = sim.responder
    assert len(sim.established_isakmp("responder")) == 1
    assert len(sim.established_children("responder")) == 1
    assert len(r.parent.sa_deletes) == 2  # the old SA pair, without any Delete from the peer


def test_list_reports_every_tunnel() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=25)
    sim.initiate()
    sim.run()
    actions = sim.responder.core.handle(ListCommand(77, Phase.ALL), sim.now)
    reports = [a for a in actions if isinstance(a, StateReport)]
    assert {r.phase for r in reports} == {Phase.PHASE1, Phase.PHASE2}
    assert all(r.request_id == 77 for r in reports)
    assert actions[-1] == StateReportEnd(77, 2)


def test_configuration_arrives_as_ipc_messages() -> None:
    init, _ = mirrored()
    core = Negotiator(None, 0.0, _rand(5).randbytes)
    p1, p2 = init.phase1[1], init.phase2[1]
    for msg in (ConfigBegin(3), ConfigPhase1(3, p1), ConfigPhase2(3, p2), ConfigEnd(3, 1, 1)):
        core.handle(msg, 0.0)
    assert core.config.generation == 3 and core.config.phase2_of(1) == (p2,)
    # a snapshot whose counts do not add up is refused; the old one stays
    for msg in (ConfigBegin(4), ConfigPhase1(4, p1), ConfigEnd(4, 2, 0)):
        core.handle(msg, 0.0)
    assert core.config.generation == 3


def test_informational_with_bad_hash_changes_nothing() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=26)
    sim.initiate()
    sim.run()
    (sa,) = sim.established_isakmp("responder")
    data = forge_informational(
        sim.initiator.core, [NotifyPayload.isakmp(NotifyType.INVALID_SPI, sa.cookies)]
    )

    def break_hash(payloads: list) -> list:  # type: ignore[type-arg]
        from ikepriv.isakmp import HashPayload

        payloads[0] = HashPayload(bytes(len(payloads[0].data)))
        return payloads

    bad = reseal(sim.responder.core, data, break_hash)
    assert bad is not None
    sim.command("responder", datagram(LEFT, RIGHT, bad))
    sim.run()
    assert sim.responder.core.counters.dropped_auth == 1
    assert len(sim.established_isakmp("responder")) == 1


def test_gcm_and_pfs_with_every_listed_group_for_qm() -> None:
    for group in (GroupId.MODP_2048, GroupId.ECP_256, GroupId.CURVE25519):
        init, resp = mirrored(esp=[esp_proposal(EspTransformId.AES_GCM_16, 256, None, pfs=group)])
        sim = Simulation(init, resp, seed=int(group))
        sim.initiate()
        sim.run()
        sim.assert_keys_match(expected_pairs=2)


def test_snapshot_refuses_orphan_phase2() -> None:
    from ikepriv.child_negotiator.core.config_snapshot import SnapshotError

    with pytest.raises(SnapshotError):
        ConfigSnapshot.of(
            [], [phase2_def(1, 9, selector("198.51.100.0/25"), selector("198.51.100.128/25"))]
        )
    _ = (AuthAlgorithm, IkeEncryption, Proposal)


def test_a_responder_for_any_peer_tells_the_right_peer_of_a_removal() -> None:
    """Two peers under one definition accepting any peer: removing the first peer's
    phase 2 sends its Delete over the first peer's ISAKMP SA, though the second one's is
    newer."""
    from harness.core_sim import PSK, Side, StandInParent

    third = ipaddress.ip_address("192.0.2.3")
    nets = {LEFT: "198.51.100.0/26", third: "198.51.100.64/26"}
    resp = ConfigSnapshot.of(
        [phase1_def(1, RIGHT, None, any_remote_id=True)],
        [phase2_def(1, 1, selector("198.51.100.128/25"), selector("198.51.100.0/25"))],
    )
    init = ConfigSnapshot.of(
        [phase1_def(1, LEFT, RIGHT)],
        [phase2_def(1, 1, selector(nets[LEFT]), selector("198.51.100.128/25"))],
    )
    sim = Simulation(init, resp, seed=93)
    sim.responder.parent.psk_by_peer[third] = PSK
    other = ConfigSnapshot.of(
        [phase1_def(1, third, RIGHT)],
        [phase2_def(1, 1, selector(nets[third]), selector("198.51.100.128/25"))],
    )
    core = Negotiator(other, sim.now, _rand(7).randbytes)
    side = Side("third", third, core, StandInParent({1: PSK}, {RIGHT: PSK}, _rand(8)))
    sim.sides["third"] = side
    sim._by_addr[third] = side
    sim.initiate()
    sim.run(duration=5)
    sim.initiate(side="third")
    sim.run(duration=5)
    rcore = sim.responder.core
    first = next(c for c in rcore.sas.children.values() if c.remote.addr == LEFT)
    assert len(rcore.sas.children) == 2 and len(sim.established_isakmp("responder")) == 2
    sim.command("responder", RemoveCommand(Phase.PHASE2, first.tunnel_id))
    sim.run(duration=5)
    assert not sim.established_children("initiator")  # the first peer got the Delete
    assert len(sim.established_children("third")) == 1
