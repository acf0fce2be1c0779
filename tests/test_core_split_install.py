"""The Quick Mode responder's install in two steps (core/install.py, exchanges/quick_mode.py).

The responder asks for its inbound SA (Phase2Install with inbound_first) before QM2 leaves,
so the initiator, which sends on its new outbound SA as soon as it has QM2, never reaches a
larval SPI; the outbound half follows with Phase2Commit at QM3. An exchange that ends without
QM3 removes the half. Driven with two real cores and the stand-in parent (tests/harness)."""

from __future__ import annotations

from harness.core_sim import Simulation, esp_proposal, mirrored

from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.ipc.messages import (
    DatagramOut,
    KernelExpire,
    Phase2Commit,
    Phase2Install,
    SaDirection,
)
from ikepriv.ipc.schema import Message
from ikepriv.isakmp import decode_message
from ikepriv.isakmp.constants import ExchangeType, HeaderFlag

QM = ExchangeType.QUICK_MODE


def _index(trail: list[Message], kind: type) -> int:
    return next(i for i, msg in enumerate(trail) if isinstance(msg, kind))


def _cut_after(sim: Simulation, side: str, delivered: int) -> None:
    """From the `delivered`+1-th datagram on, `side` receives only garbage."""
    count = 0

    def tamper(name: str, data: bytes) -> bytes | None:
        nonlocal count
        if name != side:
            return None
        count += 1
        return b"\x00" if count > delivered else None

    sim.tamper = tamper


def test_responder_installs_inbound_before_qm2_and_commits_at_qm3() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=31)
    sim.initiate()
    sim.run(duration=60)
    sim.assert_keys_match(expected_pairs=2)
    r, i = sim.responder, sim.initiator
    (half,) = r.parent.installs
    assert half.inbound_first
    (whole,) = i.parent.installs
    assert not whole.inbound_first  # the initiator installs both SAs at QM2, before QM3
    # the request for the inbound half leaves right before QM2, the commit after QM3
    at = _index(r.trail, Phase2Install)
    qm2 = r.trail[at + 1]
    assert isinstance(qm2, DatagramOut)
    assert decode_message(qm2.data).header.exchange_type == QM
    assert _index(r.trail, Phase2Commit) > at + 1
    (commit,) = r.parent.commits
    assert (commit.tunnel_id, commit.spi_in, commit.phase2_number) == (
        half.tunnel_id,
        half.inbound.spi,
        half.phase2_number,
    )
    assert not r.parent.pending and not r.parent.removes
    assert {(SaDirection.IN, half.inbound.spi), (SaDirection.OUT, half.outbound.spi)} == (
        r.parent.installed_spis()
    )
    (child,) = sim.established_children("responder")
    assert child.reqid == half.reqid


def test_inbound_half_is_written_before_the_initiator_gets_qm2() -> None:
    """What the stand-in kernel holds when QM2 reaches the initiator: the responder's
    inbound SA, not its outbound SA (that waits for QM3)."""
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=32)
    seen: list[set[tuple[SaDirection, int]]] = []

    def watch(name: str, data: bytes) -> bytes | None:
        if name == "initiator" and decode_message(data).header.exchange_type == QM:
            seen.append(sim.responder.parent.installed_spis())
        return None

    sim.tamper = watch
    sim.initiate()
    sim.run(duration=60)
    (half,) = sim.responder.parent.installs
    assert seen and seen[0] == {(SaDirection.IN, half.inbound.spi)}


def test_qm3_never_arriving_removes_the_half_install() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=33)
    _cut_after(sim, "responder", 4)  # MM1, MM3, MM5, QM1: QM3 (and its repeats) is lost
    sim.initiate()
    sim.run(duration=200)
    r = sim.responder
    (half,) = r.parent.installs
    assert half.inbound_first
    assert not r.parent.commits
    (remove,) = r.parent.removes
    assert (remove.tunnel_id, remove.spi_in, remove.spi_out, remove.reqid) == (
        half.tunnel_id,
        half.inbound.spi,
        half.outbound.spi,
        half.reqid,
    )
    assert not remove.keep_policies
    assert not r.parent.pending and not r.parent.installed_spis()
    assert not r.parent.policies  # no SA of the reqid left: its policies went with the half
    assert not sim.established_children("responder")
    assert not r.core.policy_sets  # a new exchange gets a new reqid


def test_a_refused_inbound_half_fails_the_exchange_and_tells_the_peer() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=34)
    sim.responder.parent.refuse.add(Phase2Install)
    sim.initiate()
    sim.run(duration=60)
    r = sim.responder
    assert not r.parent.commits and not r.parent.removes  # nothing was written
    assert not sim.established_children("responder")
    assert not sim.established_children("initiator")  # our Delete took its new SA away
    assert r.core.counters.phase2_failed == 1
    assert "the parent refused the install" in r.log_text()


def test_a_refused_commit_ends_the_sa_with_a_delete() -> None:
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=35)
    sim.responder.parent.refuse.add(Phase2Commit)
    sim.initiate()
    sim.run(duration=60)
    assert sim.responder.parent.commits
    assert not sim.established_children("responder")
    assert not sim.established_children("initiator")


def test_commit_bit_connected_follows_the_commit() -> None:
    """With the commit bit the responder confirms with CONNECTED once its SAs are in: after
    its Phase2Commit (the parent carries out the child's messages in order)."""
    init, resp = mirrored()
    sim = Simulation(init, resp, seed=36)

    def set_commit(side: str, data: bytes) -> bytes | None:
        message = decode_message(data)
        if side != "responder" or message.header.exchange_type != QM:
            return None
        if message.header.flags & HeaderFlag.COMMIT:
            return None
        return data[:19] + bytes([data[19] | HeaderFlag.COMMIT]) + data[20:]

    sim.tamper = set_commit
    sim.initiate()
    sim.run(duration=60)
    sim.assert_keys_match(expected_pairs=2)
    trail = sim.responder.trail
    at = _index(trail, Phase2Commit)
    after = [m for m in trail[at + 1 :] if isinstance(m, DatagramOut)]
    assert after  # CONNECTED, an informational
    assert decode_message(after[0].data).header.exchange_type == ExchangeType.INFORMATIONAL


def test_a_rekey_with_us_as_responder_splits_the_install_too() -> None:
    """A peer's rekey is a Quick Mode like any other: its responder installs in two steps,
    and the old pair goes once the new one is in."""
    init, resp = mirrored(esp=[esp_proposal(lifetime=600)])
    early, late = (Settings(rekey_margin=10_000, rekey_margin_fraction=f) for f in (0.3, 0.05))
    sim = Simulation(init, resp, seed=37, settings=early, responder_settings=late)
    sim.initiate()
    sim.run(duration=60)
    while not sim.initiator.core.counters.phase2_rekeys:
        sim.advance(1)
    sim.run(duration=Settings().rekey_overlap + 5)
    r = sim.responder
    first, second = r.parent.installs
    assert first.inbound_first and second.inbound_first
    assert [c.spi_in for c in r.parent.commits] == [first.inbound.spi, second.inbound.spi]
    assert second.reqid == first.reqid  # the same policies carry the new pair
    assert not r.parent.pending
    assert r.parent.installed_spis() == {
        (SaDirection.IN, second.inbound.spi),
        (SaDirection.OUT, second.outbound.spi),
    }
    (child,) = sim.established_children("responder")
    assert child.spi_in == second.inbound.spi


def test_an_sa_gone_during_a_half_install_keeps_the_reqid_for_the_half() -> None:
    """The old pair goes (here: its hard lifetime in the kernel) while the peer's rekey is
    half installed, QM3 still to come. The half holds the policy set's reqid in the kernel,
    so the set must stay: a later exchange that got a new reqid would point the policies
    at it while the committed pair still carries the old one (its traffic then fails the
    kernel's template check), and that exchange's failure would take the policies away."""
    init, resp = mirrored(esp=[esp_proposal(lifetime=600)])
    early, late = (Settings(rekey_margin=10_000, rekey_margin_fraction=f) for f in (0.3, 0.05))
    sim = Simulation(init, resp, seed=38, settings=early, responder_settings=late)
    sim.initiate()
    sim.run(duration=60)
    r = sim.responder
    (old,) = sim.established_children("responder")
    seen = 0

    def lose_qm3(name: str, data: bytes) -> bytes | None:
        nonlocal seen
        if name == "responder":
            seen += 1
        return b"\x00" if name == "responder" and seen == 2 else None  # rekey QM1, QM3

    sim.tamper = lose_qm3
    while not any(qe.half_installed for sa in r.core.sas.isakmp_sas()
                  for qe in sa.exchanges.values()):  # fmt: skip
        sim.advance(1)
    sim.command("responder", KernelExpire(old.spi_in, old.protocol, old.local.addr, True))
    sim.run(duration=60)  # QM2 repeated, QM3 again: committed
    (new,) = sim.established_children("responder")
    assert new.reqid == old.reqid
    assert not r.parent.policy_deletes
    sim.run(duration=600)  # the next rekey, over the same policies
    (latest,) = sim.established_children("responder")
    assert latest.tunnel_id != new.tunnel_id
    assert {i.reqid for i in r.parent.installs} == {old.reqid}
    assert not r.parent.policy_deletes
    assert len(r.parent.policies) == 3
