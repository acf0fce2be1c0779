"""The parent's tables after many phase 2 rekeys hold the live tunnel and nothing more.

A gateway rekeys each phase 2 every hour or so, for months: whatever the parent keeps per
SA (records, their groups, the state file's index, the recently removed keys) must go with
the SA, or the parent grows with every rekey (issue 11: 10,000 tunnels in 256 MiB). Driven
through installer.Installer as the negotiator child drives it (SpiRequest, Phase2Install,
Phase2Remove of the old pair), against the stand-in kernel of test_installer.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio
from test_installer import FakeKernel, parent
from test_vetting_rules import A, B, install, keys

from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode, PolicyDirection
from ikepriv.isakmp.constants import ProtocolId
from ikepriv.parent_kernel.installed import RECENTLY_REMOVED
from ikepriv.parent_kernel.installer import Installer
from ikepriv.parent_kernel.journal import Journal
from ikepriv.parent_kernel.state import ParentState

ESP = ProtocolId.IPSEC_ESP
REQID = 9
REKEYS = 40


@dataclass
class SpiKernel(FakeKernel):
    """The stand-in kernel, choosing inbound SPIs as the kernel's ALLOCSPI does."""

    next_spi: int = 0x1000

    def alloc_spi(self, src: object, dst: object, proto: int, reqid: int, mode: object,
                  lo: int = 0x100, hi: int = 0xFFFFFFFF) -> int:  # fmt: skip
        if lo == hi:
            return super().alloc_spi(src, dst, proto, reqid, mode, lo, hi)
        self.next_spi += 1
        self.sas[(dst, self.next_spi, int(proto))] = "larval"
        return self.next_spi


@dataclass
class Pair:
    tunnel_id: int
    spi_in: int
    spi_out: int


class Child:
    """What the negotiator child sends for phase 2 1: a set-up, rekeys, a removal."""

    def __init__(self, state: ParentState) -> None:
        self.installer = Installer(state)
        self.request = 0

    def _id(self) -> int:
        self.request += 1
        return self.request

    async def negotiate(self, tunnel_id: int) -> Pair:
        spi = await self.installer.allocate_spi(m.SpiRequest(self._id(), 1, ESP, B, A))
        assert spi.error is ErrorCode.OK, spi
        out_spi = 0x50000 + tunnel_id
        reply = await self.installer.install_phase2(install(
            request_id=self._id(), tunnel_id=tunnel_id, reqid=REQID, inbound=keys(spi.spi),
            outbound=keys(out_spi)))  # fmt: skip
        assert reply.error is ErrorCode.OK, reply
        return Pair(tunnel_id, spi.spi, out_spi)

    async def remove(self, old: Pair) -> None:
        request = m.Phase2Remove(self._id(), 1, old.tunnel_id, A, B, ESP, old.spi_in,
                                 old.spi_out, REQID, False)  # fmt: skip
        reply = await self.installer.remove_phase2(request)
        assert reply.error is ErrorCode.OK, reply


def groups(table: Any) -> dict[str, set[object]]:
    """The values each grouping of a records table holds a group for."""
    return {name: set(by) for name, by in table._by.items()}


def test_after_many_rekeys_the_tables_hold_only_the_live_pair(tmp_path: Path) -> None:
    kernel = SpiKernel()
    state = parent(kernel)
    state.journal = Journal(str(tmp_path / "state"))
    state.journal.save((), ())
    child = Child(state)
    seen: dict[str, object] = {}

    async def main() -> Pair:
        pair = await child.negotiate(1)
        seen["policies"] = dict(state.installed.policies)
        for n in range(2, REKEYS + 2):
            new = await child.negotiate(n)
            await child.remove(pair)
            pair = new
        return pair

    live = trio.run(main)
    inst = state.installed
    # the kernel and the records: one pair of SAs and its 3 policies, nothing larval
    assert len(kernel.sas) == 2 and len(kernel.policies) == 3
    assert {e.spi for e in inst.sas.values()} == {live.spi_in, live.spi_out}
    assert not any(e.larval for e in inst.sas.values()) and len(inst.policies) == 3
    # every group is one of the live pair's: none left behind by the 40 pairs removed
    assert groups(inst.sas) == {
        "phase2": {1}, "phase1": {1}, "tunnel": {live.tunnel_id}, "reqid": {REQID},
        "larval": set(), "owner": {(0, False)},
    }  # fmt: skip
    assert groups(inst.policies) == {"phase2": {1}, "reqid": {REQID}, "owner": {0}}
    assert all(len(g) == 2 for g in inst.sas._by["phase2"].values())
    # what the parent removed itself is remembered within its bound
    assert len(inst._removed_sas) == min(2 * REKEYS, RECENTLY_REMOVED)
    # the state file's index names exactly what the records hold
    journal = state.journal
    assert set(journal._sas) == {(e.dst, e.spi, 50) for e in inst.sas.values()}
    assert set(journal._policies) == {(e.spec.selector, e.spec.direction)
                                      for e in inst.policies.values()}  # fmt: skip
    # the rekeys kept the policies as recorded (no new records for equal policies) ...
    assert all(inst.policies[k] is e for k, e in seen["policies"].items())  # type: ignore[attr-defined]
    # ... whose in and fwd records share one selector, with the definition's subnets
    by_dir = {e.key[1]: e for e in inst.policies.values()}
    fwd, inbound = by_dir[PolicyDirection.FWD], by_dir[PolicyDirection.IN]
    assert fwd.key[0] is inbound.key[0] and fwd.spec.selector is inbound.spec.selector
    p2 = state.view.phase2[1]
    assert inbound.spec.selector.dst is p2.local_subnet
    assert inbound.spec.selector.src is p2.remote_subnet

    async def last() -> None:
        await child.remove(live)

    trio.run(last)
    assert kernel.snapshot() == ({}, {})
    assert not inst.sas and not inst.policies
    assert all(not g for g in groups(inst.sas).values())
    assert all(not g for g in groups(inst.policies).values())
    assert not journal._sas and not journal._policies
