"""Issue 8, point 7: a restarted child resumes the previous child's tunnels from the parent's
records (ResumeCommand): it negotiates the phase 2 afresh and keeps the reqid the kernel
policies carry, so the parent writes no policy again and the new SAs join the old ones."""

from __future__ import annotations

import random
from collections.abc import Iterable

from harness.core_sim import Side, Simulation, esp_proposal, mirrored

from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.ipc.messages import DatagramOut, Phase2Install, ResumeCommand, ResumedPair, SaDirection
from ikepriv.ipc.schema import Message
from ikepriv.isakmp.constants import NotifyType


def test_resume_negotiates_afresh_with_the_recorded_reqid() -> None:
    init, resp = mirrored(esp=[esp_proposal()])
    before = Simulation(init, resp, seed=5)
    before.initiate()
    before.run(duration=60)
    (first,) = before.initiator.parent.installs
    # a new child (fresh cores) is told what the previous one had installed
    after = Simulation(init, resp, seed=6)
    reqid = first.reqid ^ 0x5A5A5A5A or 1
    resume = ResumeCommand(first.phase2_number, reqid, first.selector, first.local,
                           first.remote, first.tunnel_id)  # fmt: skip
    after.command("initiator", resume)
    after.run(duration=60)
    after.assert_keys_match(expected_pairs=2)
    (again,) = after.initiator.parent.installs
    assert again.reqid == reqid
    assert again.selector == first.selector
    assert [(p.direction, p.selector) for p in again.policies] == [
        (p.direction, p.selector) for p in first.policies
    ]


def test_resume_of_an_unknown_definition_is_logged_and_ignored() -> None:
    init, resp = mirrored(esp=[esp_proposal()])
    sim = Simulation(init, resp, seed=7)
    before = Simulation(init, resp, seed=5)
    before.initiate()
    before.run(duration=60)
    (first,) = before.initiator.parent.installs
    sim.command(
        "initiator",
        ResumeCommand(99, 7, first.selector, first.local, first.remote, first.tunnel_id),
    )
    sim.run(duration=10)
    assert not sim.initiator.parent.installs
    assert "resume: no phase 2 definition 99" in sim.initiator.log_text()


def test_a_resumed_phase1_sends_no_initial_contact_so_the_peer_keeps_its_sas() -> None:
    """RFC 2407 4.6.3.3: INITIAL-CONTACT is for the first contact. A restarted child that
    resumes a tunnel is no first contact: the kernel still sends and receives on the previous
    child's SAs, so the peer must not drop its side of them before the new ones exist."""
    init, resp = mirrored(esp=[esp_proposal()])
    sim = Simulation(init, resp, seed=5)
    sim.initiate()
    sim.run(duration=60)
    # the first phase 1 with this peer is a first contact
    assert NotifyType.INITIAL_CONTACT in sim.responder.notifies_received
    (first,) = sim.initiator.parent.installs
    peer_sas = sim.responder.parent.installed_spis()
    assert len(peer_sas) == 2
    # the child is killed: a new core, the same parent (its records, the same kernel)
    sim.responder.notifies_received.clear()
    sim.initiator.core = Negotiator(init, sim.now, random.Random(11).randbytes)  # noqa: S311
    sim.command("initiator", ResumeCommand(first.phase2_number, first.reqid, first.selector,
                                           first.local, first.remote, first.tunnel_id))  # fmt: skip
    sim.run(duration=60)
    assert NotifyType.INITIAL_CONTACT not in sim.responder.notifies_received
    assert len(sim.established_isakmp("initiator")) == 1
    # make before break on the peer too: its old SAs stay beside the new ones
    assert peer_sas < sim.responder.parent.installed_spis()
    assert len(sim.responder.parent.installed_spis()) == 4
    assert not sim.responder.parent.sa_deletes
    (_, again) = sim.initiator.parent.installs
    assert again.reqid == first.reqid
    # the new tunnel gets a number of its own: the old SAs, still in the kernel, keep theirs
    assert again.tunnel_id > first.tunnel_id


def test_a_fresh_child_without_resume_still_makes_first_contact() -> None:
    """Control: a new child that only activates (nothing on record) sends INITIAL-CONTACT."""
    init, resp = mirrored(esp=[esp_proposal()])
    sim = Simulation(init, resp, seed=5)
    sim.initiate()
    sim.run(duration=60)
    sim.responder.notifies_received.clear()
    sim.initiator.core = Negotiator(init, sim.now, random.Random(11).randbytes)  # noqa: S311
    sim.initiate()
    sim.run(duration=60)
    assert NotifyType.INITIAL_CONTACT in sim.responder.notifies_received


def test_the_initiator_installs_its_sas_before_quick_mode_3_leaves() -> None:
    """The responder may send on its new SA as soon as QM3 arrives (libreswan does, within
    a millisecond): the parent carries out the child's messages in order, so the
    Phase2Install must come before the datagram with QM3, or that first ESP packet meets no
    inbound SA and is lost (seen in UML: one ping of 527 after a resume with libreswan)."""
    init, resp = mirrored(esp=[esp_proposal()])
    sim = Simulation(init, resp, seed=5)
    batches: list[list[Message]] = []
    dispatch = sim._dispatch

    def record(side: Side, actions: Iterable[Message]) -> None:
        actions = list(actions)
        if side.name == "initiator":
            batches.append(actions)
        dispatch(side, actions)

    sim._dispatch = record  # type: ignore[method-assign]
    sim.initiate()
    sim.run(duration=60)
    (batch,) = [b for b in batches if any(isinstance(a, Phase2Install) for a in b)]
    kinds = [type(a) for a in batch]
    assert DatagramOut in kinds  # QM3 goes out in the same step
    assert kinds.index(Phase2Install) < kinds.index(DatagramOut)


def test_the_resumed_child_retires_the_old_pair_after_the_overlap() -> None:
    """The parent's records name the previous child's SA pair (ResumeCommand.old): once the
    new phase 2 is in, the new child retires that pair as after a rekey: after the overlap a
    Delete for the old inbound SPI to the peer, and a Phase2Remove of exactly the old SAs,
    which leaves the policies to the new SAs of the same reqid. Otherwise a peer that never
    rekeys itself (libreswan as initiator) keeps the old SAs until its own lifetime ends."""
    init, resp = mirrored(esp=[esp_proposal()])
    sim = Simulation(init, resp, seed=5)
    sim.initiate()
    sim.run(duration=60)
    (first,) = sim.initiator.parent.installs
    peer_old = sim.responder.parent.installed_spis()
    old = ResumedPair(first.tunnel_id, first.proto, first.inbound.spi, first.outbound.spi)
    sim.initiator.parent.reports.clear()
    sim.initiator.core = Negotiator(init, sim.now, random.Random(11).randbytes)  # noqa: S311
    sim.command("initiator", ResumeCommand(first.phase2_number, first.reqid, first.selector,
                                           first.local, first.remote, first.tunnel_id,
                                           (old,)))  # fmt: skip
    sim.run(duration=5)  # the new pair is in; the old one still takes packets in flight
    (_, again) = sim.initiator.parent.installs
    assert len(sim.responder.parent.installed_spis()) == 4
    assert not sim.initiator.parent.removes
    sim.run(duration=60)
    (remove,) = sim.initiator.parent.removes
    assert (remove.phase2_number, remove.tunnel_id, remove.reqid) == (
        first.phase2_number, first.tunnel_id, first.reqid)  # fmt: skip
    assert (remove.spi_in, remove.spi_out, remove.proto) == (
        first.inbound.spi, first.outbound.spi, first.proto)  # fmt: skip
    assert not remove.keep_policies  # the parent keeps them anyway: the new SAs use them
    assert sim.initiator.parent.installed_spis() == {
        (SaDirection.IN, again.inbound.spi), (SaDirection.OUT, again.outbound.spi)}  # fmt: skip
    assert not sim.initiator.parent.policy_deletes
    # the peer got the Delete (over the new ISAKMP SA) and dropped its side of the old pair
    assert sim.responder.core.counters.deletes_received >= 1
    assert not peer_old & sim.responder.parent.installed_spis()
    assert len(sim.responder.parent.installed_spis()) == 2
    assert not sim.responder.parent.policy_deletes
    # the old pair was never this child's tunnel: not listed by it, not reported gone
    assert all(r.tunnel_id != first.tunnel_id for r in sim.initiator.parent.reports)
    assert len(sim.established_isakmp("initiator")) == 1


def test_a_resume_without_recorded_pairs_deletes_nothing() -> None:
    """Control: without `old` (nothing complete on record) the old SAs are left to their
    lifetime, as before."""
    init, resp = mirrored(esp=[esp_proposal()])
    sim = Simulation(init, resp, seed=5)
    sim.initiate()
    sim.run(duration=60)
    (first,) = sim.initiator.parent.installs
    sim.initiator.core = Negotiator(init, sim.now, random.Random(11).randbytes)  # noqa: S311
    sim.command("initiator", ResumeCommand(first.phase2_number, first.reqid, first.selector,
                                           first.local, first.remote, first.tunnel_id))  # fmt: skip
    sim.run(duration=120)
    assert not sim.initiator.parent.removes
    assert len(sim.responder.parent.installed_spis()) == 4
