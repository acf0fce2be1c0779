"""The split install of a Quick Mode responder (Phase2Install.inbound_first, Phase2Commit)
against installer.py and the same kernel stand-in as test_installer.py.

The first request is vetted whole and writes the inbound half; the commit writes exactly the
vetted outbound half. A hostile child that commits without a half, twice, with other fields,
for another child, after a Phase2Remove, or never, changes nothing it does not own; a kernel
refusal at the commit undoes the whole install; a child that dies between the two steps has
its halves committed by the parent (settle) so the records hold whole pairs for the resume.
"""

from __future__ import annotations

import dataclasses

import pytest
from test_installer import ESP, FakeKernel, larval, parent, run
from test_vetting_rules import IN_SPI, A, B, install

from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.parent_kernel.installer import Installer

FIRST = ["add_policy in", "add_policy fwd", "update_sa"]
SECOND = ["add_sa", "add_policy out"]
OUT_KEY = (B, 0x5000, ESP)


def commit(**changes: object) -> m.Phase2Commit:
    base = m.Phase2Commit(2, 1, 1, A, B, ESP, IN_SPI)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _half(kernel: FakeKernel) -> tuple[Installer, object]:
    state = parent(kernel)
    larval(state, kernel)
    installer = Installer(state)
    reply = run(lambda: installer.install_phase2(install(inbound_first=True)))
    assert reply == m.ResultReply(1, ErrorCode.OK, "")
    return installer, state


def test_the_first_half_writes_the_inbound_side_and_the_commit_the_rest() -> None:
    kernel = FakeKernel()
    installer, _ = _half(kernel)
    state = installer.state
    assert kernel.calls == FIRST  # in, fwd, then the larval SPI filled; nothing outbound
    assert set(kernel.sas) == {(A, IN_SPI, 50)} and len(kernel.policies) == 2
    assert not state.installed.sas[(A, IN_SPI, ESP)].larval
    assert OUT_KEY not in state.installed.sas and len(state.installed.pending) == 1
    kernel.calls.clear()
    assert run(lambda: installer.commit_phase2(commit())).error is ErrorCode.OK
    assert kernel.calls == SECOND
    assert len(kernel.sas) == 2 and len(kernel.policies) == 3
    assert OUT_KEY in state.installed.sas and len(state.installed.policies) == 3
    assert not state.installed.pending


def test_hostile_commits_are_refused_and_change_nothing() -> None:
    kernel = FakeKernel()
    installer, _ = _half(kernel)
    state = installer.state
    before, calls = kernel.snapshot(), list(kernel.calls)
    for bad, owner in (
        (commit(tunnel_id=2), 0),  # no half for that tunnel
        (commit(spi_in=0x778), 0),  # another inbound SPI
        (commit(phase2_number=2), 0),  # another phase 2
        (commit(remote=A, local=B), 0),  # gateways turned around
        (commit(), 1),  # another child's install
    ):
        reply = run(lambda bad=bad, owner=owner: installer.commit_phase2(bad, owner))  # type: ignore[misc]
        assert reply.error is ErrorCode.NOT_PERMITTED, bad
    assert kernel.snapshot() == before and kernel.calls == calls
    assert len(state.installed.pending) == 1 and state.counters.refused_requests == 5
    assert run(lambda: installer.commit_phase2(commit())).error is ErrorCode.OK
    again = run(lambda: installer.commit_phase2(commit()))  # twice: nothing left to commit
    assert again.error is ErrorCode.NOT_PERMITTED and len(kernel.sas) == 2


def test_a_second_half_for_the_same_tunnel_is_refused() -> None:
    kernel = FakeKernel()
    installer, _ = _half(kernel)
    larval(installer.state, kernel, 0x888)
    dup = install(inbound_first=True, inbound=dataclasses.replace(install().inbound, spi=0x888),
                  outbound=dataclasses.replace(install().outbound, spi=0x5001))  # fmt: skip
    reply = run(lambda: installer.install_phase2(dup))
    assert reply.error is ErrorCode.NOT_PERMITTED and "half install" in reply.reason


def test_a_remove_of_the_half_takes_it_and_a_later_commit_is_refused() -> None:
    kernel = FakeKernel()
    installer, _ = _half(kernel)
    state = installer.state
    remove = m.Phase2Remove(3, 1, 1, A, B, ESP, IN_SPI, 0x5000, 9, False)
    assert run(lambda: installer.remove_phase2(remove)).error is ErrorCode.OK
    assert kernel.snapshot() == ({}, {})
    assert not state.installed.sas and not state.installed.policies
    assert not state.installed.pending
    reply = run(lambda: installer.commit_phase2(commit()))
    assert reply.error is ErrorCode.NOT_PERMITTED and kernel.snapshot() == ({}, {})


@pytest.mark.parametrize("failing", SECOND)
def test_a_kernel_refusal_at_the_commit_undoes_the_whole_install(failing: str) -> None:
    kernel = FakeKernel()
    installer, _ = _half(kernel)
    state = installer.state
    kernel.fail = {failing: 1}
    reply = run(lambda: installer.commit_phase2(commit()))
    assert reply.error is ErrorCode.KERNEL_ERROR
    # as before the install: the larval SPI, reserved again, and nothing else
    assert kernel.snapshot() == ({(A, IN_SPI, 50): "larval"}, {})
    assert [e.larval for e in state.installed.sas.values()] == [True]
    assert not state.installed.policies and not state.installed.pending


def test_expiry_of_the_inbound_sa_ends_the_half() -> None:
    kernel = FakeKernel()
    installer, _ = _half(kernel)
    installer.expired((A, IN_SPI, ESP))
    assert not installer.state.installed.pending
    assert run(lambda: installer.commit_phase2(commit())).error is ErrorCode.NOT_PERMITTED


def test_a_child_gone_between_the_steps_has_its_half_committed_for_the_resume() -> None:
    kernel = FakeKernel()
    installer, _ = _half(kernel)
    state = installer.state
    run(lambda: installer.settle(1))  # another child's halves: none
    assert len(state.installed.pending) == 1
    run(lambda: installer.settle(0))
    assert not state.installed.pending
    assert OUT_KEY in state.installed.sas and len(kernel.sas) == 2
    assert len(kernel.policies) == 3  # a whole pair with its out policy: what resume takes


def test_a_pending_half_counts_against_the_caps() -> None:
    """A half waiting for its commit holds its outbound SPI: a second install naming the
    same outbound SA is refused before either is written."""
    kernel = FakeKernel()
    installer, _ = _half(kernel)
    larval(installer.state, kernel, 0x888)
    same_out = install(tunnel_id=2, inbound=dataclasses.replace(install().inbound, spi=0x888))
    reply = run(lambda: installer.install_phase2(same_out))
    assert reply.error is ErrorCode.NOT_PERMITTED and "already exists" in reply.reason
