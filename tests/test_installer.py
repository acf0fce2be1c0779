"""installer.py, the one write path, against a kernel stand-in that can fail any write.

Each test drives Installer as the parent does (trio, the state's lock, kernel calls in a
worker thread) and compares the stand-in kernel before and after: an install is all or
nothing (a failure at any of its writes leaves the kernel as it was and the records
unchanged), a refusal of any part writes nothing, a remove deletes exactly the recorded
objects of its phase 2, and shutdown removes exactly what was recorded. The same with the
real kernel (no ESP here: the outbound SA write fails): test_vetting_hostile_child.py.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import trio
from test_vetting_rules import DEFS, IN_SPI, OUT_TS, A, B, install, keys, numbered, policies

from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.isakmp.constants import ProtocolId
from ikepriv.parent_kernel.child_budget import Kind, cost
from ikepriv.parent_kernel.installed import SaEntry
from ikepriv.parent_kernel.installer import Installer
from ikepriv.parent_kernel.kernel.client import PolicyId, SaId
from ikepriv.parent_kernel.kernel.specs import PolicySpec, SaSpec, XfrmError
from ikepriv.parent_kernel.requests import ChildRequests
from ikepriv.parent_kernel.state import ParentState
from ikepriv.parent_kernel.vetting import Activation

ESP = ProtocolId.IPSEC_ESP
_T = TypeVar("_T")


@dataclass
class FakeKernel:
    """SAs by (dst, spi, proto number) and policies by (selector, direction); `fail` makes
    the n-th call (1-based) of an operation raise, `undo_fails` every delete/update after
    the first failure."""

    sas: dict[tuple[object, int, int], str] = field(default_factory=dict)
    policies: dict[tuple[object, object], PolicySpec] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    undo_fails: bool = False
    failed: bool = False

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.failed and self.undo_fails:
            raise XfrmError(errno.EIO, name)
        n = self.fail.get(name)
        if n is not None:
            self.fail[name] = n - 1
            if n == 1:
                self.failed = True
                raise XfrmError(errno.EPROTONOSUPPORT, name)

    def add_sa(self, spec: SaSpec) -> None:
        self._call("add_sa")
        key = (spec.dst, spec.spi, int(spec.proto))
        if key in self.sas:
            raise XfrmError(errno.EEXIST, "add_sa")
        self.sas[key] = "sa"

    def update_sa(self, spec: SaSpec) -> None:
        self._call("update_sa")
        key = (spec.dst, spec.spi, int(spec.proto))
        if key not in self.sas:
            raise XfrmError(errno.ESRCH, "update_sa")
        self.sas[key] = "sa"

    def delete_sa(self, dst: object, spi: int, proto: int) -> None:
        self._call("delete_sa")
        if self.sas.pop((dst, spi, int(proto)), None) is None:
            raise XfrmError(errno.ESRCH, "delete_sa")

    def alloc_spi(
        self, src: object, dst: object, proto: int, reqid: int, mode: object, lo: int, hi: int
    ) -> int:
        self._call("alloc_spi")
        key = (dst, lo, int(proto))
        if lo != hi or key in self.sas:
            raise XfrmError(errno.EEXIST, "alloc_spi")
        self.sas[key] = "larval"
        return lo

    def add_policy(self, spec: PolicySpec) -> None:
        self._call(f"add_policy {spec.direction.name.lower()}")
        key = (spec.selector, spec.direction)
        if key in self.policies:
            raise XfrmError(errno.EEXIST, "add_policy")
        self.policies[key] = spec

    def update_policy(self, spec: PolicySpec) -> None:
        self._call(f"update_policy {spec.direction.name.lower()}")
        self.policies[(spec.selector, spec.direction)] = spec

    def delete_policy(self, selector: object, direction: object) -> None:
        self._call("delete_policy")
        if self.policies.pop((selector, direction), None) is None:
            raise XfrmError(errno.ENOENT, "delete_policy")

    def delete_all(self, objects: list[SaId | PolicyId]) -> list[XfrmError | None]:
        """As XfrmKernel.delete_all: each delete tried, one outcome each."""
        outcomes: list[XfrmError | None] = []
        for obj in objects:
            try:
                if isinstance(obj, SaId):
                    self.delete_sa(*obj)
                else:
                    self.delete_policy(*obj)
                outcomes.append(None)
            except XfrmError as exc:
                outcomes.append(exc)
        return outcomes

    def snapshot(self) -> tuple[dict[Any, Any], dict[Any, Any]]:
        return dict(self.sas), dict(self.policies)


def parent(kernel: FakeKernel) -> ParentState:
    state = ParentState(kernel, numbered(DEFS))  # type: ignore[arg-type]
    state.activations[1] = Activation(1)
    state.peers.record(A, B, 500, natt=False, now=0.0)
    return state


def larval(state: ParentState, kernel: FakeKernel, spi: int = IN_SPI) -> None:
    """What allocate_spi leaves: a larval SA in the kernel and on record."""
    kernel.sas[(A, spi, 50)] = "larval"
    state.installed.add_sa(SaEntry((A, spi, ESP), 1, 1, B, larval=True))


def run(fn: Callable[[], Awaitable[_T]]) -> _T:
    return trio.run(fn)


WRITES = ["add_policy in", "add_policy fwd", "update_sa", "add_sa", "add_policy out"]
UNDO_CALLS = {"update_sa": 2}  # delete the filled SA, reserve its SPI again (larval)


def test_a_good_install_writes_in_order_and_records_everything() -> None:
    kernel = FakeKernel()
    state = parent(kernel)
    larval(state, kernel)
    reply = run(lambda: Installer(state).install_phase2(install()))
    assert reply == m.ResultReply(1, ErrorCode.OK, "")
    # the larval SPI filled before the outbound SA (the peer may send on it already); the
    # out policy after its SA
    assert kernel.calls == WRITES
    assert set(kernel.sas.values()) == {"sa"} and len(kernel.sas) == 2
    assert len(kernel.policies) == 3
    assert {e.key for e in state.installed.sas.values() if not e.larval} == {
        (A, IN_SPI, ESP), (B, 0x5000, ESP)}  # fmt: skip
    assert len(state.installed.policies) == 3


@pytest.mark.parametrize("step", range(len(WRITES)))
def test_a_kernel_failure_at_any_write_leaves_the_kernel_as_before(step: int) -> None:
    kernel = FakeKernel(fail={WRITES[step]: 1})
    state = parent(kernel)
    larval(state, kernel)
    before, recorded = kernel.snapshot(), dict(state.installed.sas)
    reply = run(lambda: Installer(state).install_phase2(install()))
    assert reply.error is ErrorCode.KERNEL_ERROR and WRITES[step].split()[0] in reply.reason
    assert kernel.snapshot() == before
    assert state.installed.sas == recorded and not state.installed.policies
    undone = kernel.calls[step + 1 :]
    assert len(undone) == sum(UNDO_CALLS.get(w, 1) for w in WRITES[:step])  # each write undone


def test_an_undo_the_kernel_refuses_is_kept_on_record_for_shutdown() -> None:
    kernel = FakeKernel(fail={"add_policy out": 1}, undo_fails=True)
    state = parent(kernel)
    larval(state, kernel)
    reply = run(lambda: Installer(state).install_phase2(install()))
    assert reply.error is ErrorCode.KERNEL_ERROR
    # still in the kernel: the in and fwd policies, the filled inbound SA and the outbound
    # SA, all on record (the inbound one as installed, no longer larval)
    assert len(kernel.policies) == 2 and len(state.installed.policies) == 2
    assert set(kernel.sas.values()) == {"sa"}
    assert (B, 0x5000, ESP) in state.installed.sas
    assert not state.installed.sas[(A, IN_SPI, ESP)].larval
    kernel.undo_fails = False
    run(Installer(state).remove_everything)
    assert kernel.snapshot() == ({}, {}) and not state.installed.sas


def test_an_inbound_spi_that_cannot_be_reserved_again_is_forgotten() -> None:
    """The outbound SA fails, the filled inbound SA is deleted, and the kernel refuses to
    reserve its SPI again: neither kernel nor records hold that SPI any more."""
    kernel = FakeKernel(fail={"add_sa": 1, "alloc_spi": 1})
    state = parent(kernel)
    larval(state, kernel)
    reply = run(lambda: Installer(state).install_phase2(install()))
    assert reply.error is ErrorCode.KERNEL_ERROR and "out SA" in reply.reason
    assert kernel.snapshot() == ({}, {})
    assert not state.installed.sas and not state.installed.policies


def test_a_refused_part_writes_nothing() -> None:
    kernel = FakeKernel()
    state = parent(kernel)
    larval(state, kernel)
    before = kernel.snapshot()
    for bad in (install(policies=policies(OUT_TS, priority=1)),
                install(inb={"lifetimes": m.Lifetimes(0, 7200, 0, 0)}),
                install(inbound=keys(0x999))):  # fmt: skip
        reply = run(lambda bad=bad: Installer(state).install_phase2(bad))  # type: ignore[misc]
        assert reply.error is not ErrorCode.OK
    assert kernel.calls == [] and kernel.snapshot() == before
    assert state.counters.refused_requests == 3


def test_a_rekey_writes_only_its_sas_and_a_remove_takes_exactly_its_objects() -> None:
    kernel = FakeKernel()
    state = parent(kernel)
    installer = Installer(state)
    larval(state, kernel)
    assert run(lambda: installer.install_phase2(install())).error is ErrorCode.OK
    larval(state, kernel, 0x888)
    kernel.calls.clear()
    rekey = install(tunnel_id=2, inbound=keys(0x888), outbound=keys(0x5001))
    assert run(lambda: installer.install_phase2(rekey)).error is ErrorCode.OK
    assert kernel.calls == ["update_sa", "add_sa"]  # the policies are there already
    # an object of the operator's, with the same reqid: never touched
    kernel.sas[(B, 0x4242, 50)] = "operator's"
    # removing the old pair keeps the policies (the new pair uses them)
    old = m.Phase2Remove(5, 1, 1, A, B, ESP, IN_SPI, 0x5000, 9, False)
    assert run(lambda: installer.remove_phase2(old)).error is ErrorCode.OK
    assert set(kernel.sas) == {(A, 0x888, 50), (B, 0x5001, 50), (B, 0x4242, 50)}
    assert len(kernel.policies) == 3
    # the old pair again: already gone, nothing to do; another tunnel's SPIs: refused
    assert run(lambda: installer.remove_phase2(old)).error is ErrorCode.OK
    foreign = m.Phase2Remove(6, 1, 1, A, B, ESP, 0x888, 0x5001, 9, False)
    assert run(lambda: installer.remove_phase2(foreign)).error is ErrorCode.NOT_PERMITTED
    operator = m.Phase2Remove(7, 1, 2, A, B, ESP, 0x888, 0x4242, 9, False)
    assert run(lambda: installer.remove_phase2(operator)).error is ErrorCode.NOT_PERMITTED
    # the last pair of the reqid takes the policies with it
    new = m.Phase2Remove(8, 1, 2, A, B, ESP, 0x888, 0x5001, 9, False)
    assert run(lambda: installer.remove_phase2(new)).error is ErrorCode.OK
    assert kernel.snapshot() == ({(B, 0x4242, 50): "operator's"}, {})
    assert not state.installed.sas and not state.installed.policies


def test_dpd_hold_keeps_the_policies_and_remove_tunnels_takes_them() -> None:
    kernel = FakeKernel()
    state = parent(kernel)
    installer = Installer(state)
    larval(state, kernel)
    assert run(lambda: installer.install_phase2(install())).error is ErrorCode.OK
    hold = m.Phase2Remove(5, 1, 1, A, B, ESP, IN_SPI, 0x5000, 9, True)
    assert run(lambda: installer.remove_phase2(hold)).error is ErrorCode.OK
    assert kernel.sas == {} and len(kernel.policies) == 3
    run(lambda: installer.remove_tunnels({1}, {1}))  # `ike cmd=remove` of the phase 2
    assert kernel.snapshot() == ({}, {}) and not state.installed.policies


def test_hard_expiry_forgets_without_writing() -> None:
    kernel = FakeKernel()
    state = parent(kernel)
    installer = Installer(state)
    larval(state, kernel)
    assert run(lambda: installer.install_phase2(install())).error is ErrorCode.OK
    kernel.calls.clear()
    entry = installer.expired((B, 0x5000, ESP))
    assert entry is not None and entry.spi == 0x5000 and kernel.calls == []
    assert installer.expired((B, 0x5000, ESP)) is None
    assert (B, 0x5000, ESP) not in state.installed.sas


def test_the_kernel_budget_charges_what_a_request_really_wrote() -> None:
    """Each kernel request is charged the most it can write before it runs; one carried out
    gets back what it did not write. A rekey (policies in place) and the removal of the
    pair it replaced cost their SAs only, so a child rekeying thousands of phase 2 is not
    paced as if it wrote every policy again; a failed install keeps its whole charge."""
    kernel = FakeKernel()
    state = parent(kernel)
    replies: list[m.Message] = []
    requests = ChildRequests(state, lambda msg: replies.append(msg) or True, [])
    bucket = requests.budget.buckets[Kind.KERNEL]
    bucket.refill(time.monotonic())  # full
    bucket.rate = 1e-9  # no refill during the test: what each request spent stays visible

    def spent(msg: m.Message) -> float:
        before = bucket.tokens
        run(lambda: requests.handle(msg))
        reply = replies.pop()
        assert isinstance(reply, m.ResultReply), reply
        return round(before - bucket.tokens, 6)

    larval(state, kernel)
    first = install()
    assert cost(first) == (Kind.KERNEL, 10.0)
    assert spent(first) == 5.0  # 3 policies and 2 SAs written, no undo
    larval(state, kernel, 0x888)
    assert spent(install(request_id=2, tunnel_id=2, inbound=keys(0x888),
                         outbound=keys(0x5001))) == 2.0  # fmt: skip
    old = m.Phase2Remove(5, 1, 1, A, B, ESP, IN_SPI, 0x5000, 9, False)
    assert spent(old) == 2.0  # the policies stay for the new pair
    assert spent(old) == 1.0  # already gone: nothing written, its vetting still costs one
    larval(state, kernel, 0x777)  # a rekey as Quick Mode responder: two steps
    half = install(request_id=4, tunnel_id=4, inbound=keys(0x777), outbound=keys(0x5003),
                   inbound_first=True)  # fmt: skip
    assert spent(half) == 1.0  # the inbound SA
    assert spent(m.Phase2Commit(6, 1, 4, A, B, ESP, 0x777)) == 1.0  # the outbound SA
    kernel.fail["add_sa"] = 1  # the kernel refuses the next outbound SA
    larval(state, kernel, 0x999)
    failed = install(request_id=3, tunnel_id=3, inbound=keys(0x999), outbound=keys(0x5002))
    assert spent(failed) == 10.0
