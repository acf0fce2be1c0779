"""Issue 8, point 7: a restarted child resumes the previous child's tunnels from the parent's
records (ResumeCommand): it negotiates the phase 2 afresh and keeps the reqid the kernel
policies carry, so the parent writes no policy again and the new SAs join the old ones."""

from __future__ import annotations

from harness.core_sim import Simulation, esp_proposal, mirrored

from ikepriv.ipc.messages import ResumeCommand


def test_resume_negotiates_afresh_with_the_recorded_reqid() -> None:
    init, resp = mirrored(esp=[esp_proposal()])
    before = Simulation(init, resp, seed=5)
    before.initiate()
    before.run(duration=60)
    (first,) = before.initiator.parent.installs
    # a new child (fresh cores) is told what the previous one had installed
    after = Simulation(init, resp, seed=6)
    reqid = first.reqid ^ 0x5A5A5A5A or 1
    after.command("initiator", ResumeCommand(first.phase2_number, reqid, first.selector,
                                             first.local, first.remote))  # fmt: skip
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
    sim.command("initiator", ResumeCommand(99, 7, first.selector, first.local, first.remote))
    sim.run(duration=10)
    assert not sim.initiator.parent.installs
    assert "resume: no phase 2 definition 99" in sim.initiator.log_text()
