"""A phase 2 rekey, the Delete of the SA it replaced and a kernel EXPIRE cost the core the
same next to thousands of IPsec SAs with the same peer as next to a few (issue 11, goal 4:
spread-out rekeys of 10,000 phase 2 SAs). A hub whose tunnels all go to one peer, or a
spoke with thousands of tunnels to its hub (bench/core_initiator.py), holds every SA "with
that peer": a pass over them per rekey made rekeying them all quadratic (bench/core_rekey.py:
49 ms per rekey with 4,000 tunnels, 1.9 ms once indexed by tunnel). Counted, never timed:
the held SAs count the distinct records whose fields anything reads, and one tunnel is
rekeyed, its old SA deleted, and its new SA expired by the kernel, next to 10 and 3000."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from harness.core_sim import Simulation, esp_proposal, mirrored

from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.sa_table import ChildSa
from ikepriv.child_negotiator.core.states import ChildState
from ikepriv.ipc.messages import KernelExpire, Phase, StateReport, TunnelState

LIFETIME = 300  # phase 2 seconds: the rekey comes 150-240 s in


class CountedChild(ChildSa):
    """An IPsec SA that notes when any of its fields is read."""

    __slots__ = ()
    read: ClassVar[set[int]] = set()

    def __getattribute__(self, name: str) -> Any:
        CountedChild.read.add(id(self))
        return super().__getattribute__(name)


def hold_children(core: Negotiator, count: int, template: ChildSa) -> None:
    """`count` established IPsec SAs like `template` (same peer and addresses), each a
    tunnel of its own (phase 1 and phase 2 definition numbers from 10,000, its own SPIs),
    without timers: nothing but a pass over the table can reach them."""
    fields = {f.name: getattr(template, f.name) for f in dataclasses.fields(ChildSa)}
    for i in range(count):
        number = 10_000 + i
        child = CountedChild(**fields | {
            "tunnel_id": core.new_tunnel_id(), "phase1_number": number,
            "definition": dataclasses.replace(template.definition, number=number,
                                              phase1_number=number, name=f"held{i}"),
            "spi_in": 0x7E000000 + i, "spi_out": 0x7F000000 + i,
            "lifetime_seconds": 0, "rekey_at": 0.0, "state": ChildState.ESTABLISHED,
        })  # fmt: skip
        core.sas.children[child.tunnel_id] = child


def live(sim: Simulation, side: str) -> list[ChildSa]:
    """The real tunnel's established SAs (type() reads no field of a held one)."""
    children = sim.sides[side].core.sas.children.values()
    return [c for c in children if type(c) is ChildSa and c.state is ChildState.ESTABLISHED]


def records_read_by_a_rekey(held: int) -> tuple[int, int]:
    """Held SAs read (both cores) during a rekey of the one real tunnel, the Delete of its
    old SA and a hard EXPIRE of the new one; and the rekeys started."""
    esp = [esp_proposal(lifetime=LIFETIME)]
    sim = Simulation(*mirrored(esp=esp), seed=21, latency=0.002)
    sim.initiate(phase=2)
    sim.run(duration=30.0)
    for side in ("initiator", "responder"):
        (real,) = live(sim, side)
        hold_children(sim.sides[side].core, held, real)
        sim.sides[side].core.next_deadline()  # the deadlines as a waiting loop sees them
    (first,) = live(sim, "initiator")
    CountedChild.read.clear()
    sim.advance(LIFETIME - 30)  # the rekey, the overlap, the Delete of the old SA
    rekeys = sum(s.core.counters.phase2_rekeys for s in sim.sides.values())
    (new,) = live(sim, "initiator")
    assert new is not first and first.tunnel_id not in sim.initiator.core.sas.children
    assert len(live(sim, "responder")) == 1  # the old SA is gone on both sides
    core = sim.initiator.core
    out = core.handle(KernelExpire(new.spi_out, new.protocol, new.remote.addr, True), sim.now)
    gone = [a for a in out if isinstance(a, StateReport) and a.phase is Phase.PHASE2]
    assert [(r.tunnel_id, r.state) for r in gone] == [(new.tunnel_id, TunnelState.DELETING)]
    assert new.tunnel_id not in core.sas.children
    assert len(core.sas.children) == len(sim.responder.core.sas.children) - 1 == held
    return len(CountedChild.read), rekeys


def test_a_rekey_next_to_many_sas_with_the_peer_reads_none_of_them() -> None:
    few, rekeys_few = records_read_by_a_rekey(10)
    many, rekeys_many = records_read_by_a_rekey(3000)
    assert few == many == 0, (few, many)
    assert rekeys_few == rekeys_many == 1
