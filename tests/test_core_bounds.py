"""Every table whose size a peer (or a silent parent) could drive stays bounded: requests
awaiting the parent, finished message IDs, Quick Modes per ISAKMP SA, outstanding DPD
probes, NAT-D hashes looked at. (Half-open exchanges and the notify limiter: test_core_units.)
"""

from __future__ import annotations

import random

from harness.core_sim import (
    LEFT,
    RIGHT,
    Simulation,
    datagram,
    esp_proposal,
    forge_informational,
    mirrored,
    phase1_def,
)

from ikepriv.child_negotiator.core import dpd, natt
from ikepriv.child_negotiator.core.datagram import Inbound
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.exchanges import quick_mode
from ikepriv.child_negotiator.core.offers import ike_choices
from ikepriv.child_negotiator.core.retransmit import datagram_digest
from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.child_negotiator.core.states import P1State, QmState
from ikepriv.crypto.prf import nat_d_hash
from ikepriv.ipc.messages import (
    PARENT_NONCE_BYTES,
    DpdSettings,
    Endpoint,
    ErrorCode,
    InitiateCommand,
    NonceReply,
    NonceRequest,
    Phase,
    Role,
    SkeyidReply,
    SkeyidRequest,
)
from ikepriv.isakmp import (
    NatDPayload,
    NotifyPayload,
    Payload,
    build_message,
    decode_message,
    encode_message,
)
from ikepriv.isakmp.constants import ExchangeType, NotifyType


def _rand(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible on purpose


def test_requests_the_parent_never_answers_are_bounded() -> None:
    _, resp = mirrored(phase1_mode=ExchangeType.AGGRESSIVE)
    init, _ = mirrored(phase1_mode=ExchangeType.AGGRESSIVE)
    budget = (16.0, 1.0)  # ten AM1 from one address fit its work budget
    settings = Settings(max_pending_requests=4, am_budget_source=budget, am_budget_prefix=budget)
    core = Negotiator(resp, 0.0, _rand(1).randbytes, settings=settings)
    requests: list[SkeyidRequest] = []
    for i in range(10):  # ten AM1s, each needing SKEYID; the parent stays silent
        icore = Negotiator(init, 0.0, _rand(100 + i).randbytes)
        (ask,) = icore.handle(InitiateCommand(Phase.PHASE1, 1, None, None), 0.0)[-1:]
        assert isinstance(ask, NonceRequest)  # AM1 waits for the parent's Ni
        icore.handle(NonceReply(ask.request_id, ErrorCode.OK, 1, bytes(range(32))), 0.0)
        am1 = icore.sas.by_tunnel[1].flight.datagrams[0].data
        out = core.handle(datagram(LEFT, RIGHT, am1), 1.0)
        requests += [m for m in out if isinstance(m, SkeyidRequest)]
    assert len(requests) == 10
    assert core.counters.requests_abandoned == 6
    # a late answer to a forgotten request is stale; one to a kept request is used
    first, last = requests[0], requests[-1]
    nr = b"\x02" * PARENT_NONCE_BYTES  # a responder's Nr comes with SKEYID
    core.handle(SkeyidReply(first.request_id, ErrorCode.OK, b"\x01" * 32, nr), 2.0)
    assert core.counters.dropped_stale_reply == 1
    core.handle(SkeyidReply(last.request_id, ErrorCode.OK, b"\x01" * 32, nr), 2.0)
    assert core.counters.dropped_stale_reply == 1
    assert any(sa.state is P1State.R_AM2_SENT for sa in core.sas.by_tunnel.values())


def _established() -> Simulation:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=90)
    sim.initiate()
    sim.run(duration=5)
    sim.assert_keys_match(expected_pairs=2)
    return sim


def test_finished_message_ids_are_bounded() -> None:
    sim = _established()
    core = sim.initiator.core
    (sa,) = sim.established_isakmp("initiator")
    keep = core.settings.finished_message_ids
    sent: list[bytes] = []
    for _ in range(3 * keep):
        notify = NotifyPayload.isakmp(NotifyType.CONNECTED, sa.cookies)
        data = forge_informational(sim.responder.core, [notify])
        sent.append(data)
        core.handle(datagram(RIGHT, LEFT, data), sim.now)
    assert len(sa.finished_mids) == keep
    replays = core.counters.dropped_replay
    core.handle(datagram(RIGHT, LEFT, sent[-1]), sim.now)  # a recent one is remembered
    assert core.counters.dropped_replay == replays + 1


def test_quick_modes_per_isakmp_sa_are_bounded() -> None:
    init, resp = mirrored(esp=[esp_proposal()])
    small = Settings(quick_mode_max_parallel=2)
    sim = Simulation(init, resp, seed=91, responder_settings=small)
    sim.initiate()
    sim.run(duration=5)
    (r_sa,) = sim.established_isakmp("responder")
    for _ in range(5):  # five phase 2 activations at once: five QM1s in one burst
        sim.initiate(phase=2)
    sim.advance(0.015)  # the burst arrived (latency 0.01 s), no exchange finished yet
    rcore = sim.responder.core
    assert quick_mode.active_count(r_sa) == 2 and rcore.counters.dropped_half_open == 3
    sim.advance(20)
    assert rcore.counters.phase2_established == 6  # the refused ones got in on a resend
    # finished exchanges are kept (to answer repeats) within a bound, then aged out
    for _ in range(20):
        sim.initiate(phase=2)
        sim.advance(3)
        assert len(r_sa.exchanges) <= 4 * small.quick_mode_max_parallel
    sim.advance(small.quick_mode_max_age + 5)
    assert not r_sa.exchanges
    assert all(qe.state is QmState.DONE for qe in r_sa.exchanges.values())


def test_outstanding_dpd_probes_are_bounded() -> None:
    init, resp = mirrored(dpd=DpdSettings(True, 1, 60))  # a probe every second
    sim = Simulation(init, resp, seed=92)
    sim.initiate()
    sim.run(duration=5)
    (sa,) = sim.established_isakmp("initiator")
    assert sa.dpd is not None
    sim.loss = 1.0
    sim.advance(30)
    assert sim.initiator.core.counters.dpd_probes_sent >= 20
    assert len(sa.dpd.outstanding) == dpd.MAX_OUTSTANDING
    # an ACK for a probe no longer remembered is not accepted; one for a recent probe is
    core = sim.initiator.core
    oldest = min(sa.dpd.outstanding) - 1
    sim.loss = 0.0
    for seq, accepted in ((oldest, False), (max(sa.dpd.outstanding), True)):
        ack = NotifyPayload.dpd(sa.cookies, seq, ack=True)
        before = core.counters.dpd_acks_received
        core.handle(datagram(RIGHT, LEFT, forge_informational(sim.responder.core, [ack])), sim.now)
        assert (core.counters.dpd_acks_received == before + 1) is accepted
    assert not sa.dpd.outstanding


def test_nat_d_hashes_looked_at_are_bounded() -> None:
    d = phase1_def(1, RIGHT, LEFT, nat_t=True)
    core = Negotiator(None, 0.0, _rand(3).randbytes)
    local, remote = Endpoint(RIGHT, 500), Endpoint(LEFT, 500)
    sa = IsakmpSa(1, d, Role.RESPONDER, ExchangeType.IDENTITY_PROTECTION, local, remote, False,
                  b"i" * 8, b"r" * 8, P1State.R_SA_SENT, 0.0)  # fmt: skip
    sa.choice = ike_choices(d)[0]
    sa.peer_vendor_ids = frozenset({natt.RFC3947})
    mine = nat_d_hash(sa.choice.hash, sa.icookie, sa.rcookie, RIGHT, 500)
    theirs = nat_d_hash(sa.choice.hash, sa.icookie, sa.rcookie, LEFT, 500)
    other = b"\x00" * len(theirs)

    def peer_behind_nat(position: int) -> bool:
        """The peer's own hash at `position` among 16 wrong ones (after ours, first)."""
        hashes = [mine] + [other] * 16
        hashes.insert(position, theirs)
        payloads: list[Payload] = [NatDPayload(h) for h in hashes]
        data = encode_message(build_message(sa.icookie, sa.rcookie, sa.exchange, 0, payloads))
        message = decode_message(data)
        inbound = Inbound(local, remote, False, data, datagram_digest(data), message)
        core.hooks.on_ke_payloads(sa, message.payloads, inbound)
        state = natt.state_of(sa)
        assert state is not None and state.detected and not state.local_behind_nat
        return state.peer_behind_nat

    assert not peer_behind_nat(3)
    assert peer_behind_nat(natt.MAX_NAT_D + 5)  # never looked at: taken as a NAT
