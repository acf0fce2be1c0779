"""Several subnets per side in one phase 2 definition (local_subnets/remote_subnets),
without a kernel: the file keys and their refusals, the database round trip, one Quick Mode
and one SA pair per (local, remote) pair between two negotiators, and the parent's vetting
of each pair (never a selector spanning two pairs)."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest
from harness.core_sim import (
    LEFT,
    RIGHT,
    Simulation,
    address_identity,
    esp_proposal,
    phase1_def,
    selector,
)
from test_vetting_rules import (
    IN_SPI,
    A,
    B,
    accepted,
    install,
    keys,
    numbered,
    policies,
    record,
    refusal,
    ts,
)

from ikepriv.child_negotiator.core.config_snapshot import ConfigSnapshot
from ikepriv.child_negotiator.core.states import QmState
from ikepriv.config import load_definitions
from ikepriv.config.store import TunnelDB
from ikepriv.config.writer import dump_definitions
from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode, Phase2Def
from ikepriv.isakmp.constants import EncapsulationMode
from ikepriv.parent_kernel.installed import Installed, SaEntry
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.vetting import Refusal, Vetter

LOCALS = ["198.51.100.0/26", "198.51.100.64/26"]
REMOTES = ["203.0.113.0/26", "203.0.113.64/26"]


def _file(local: str, remote: str, extra: str = "") -> str:
    return f"""
[[phase1]]
name = "p1"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
psk = "secret one"
proposals = ["aes128-sha256-modp2048"]

[[phase2]]
name = "p2"
phase1 = "p1"
{local}
{remote}
protocol = "tcp"
remote_port = 443
proposals = ["aes128-sha256"]
{extra}
"""


MULTI = _file(f"local_subnets = {LOCALS}".replace("'", '"'),
              f"remote_subnets = {REMOTES}".replace("'", '"'))  # fmt: skip


def test_file_database_and_writer_keep_every_subnet(tmp_path: Path) -> None:
    (p2,) = load_definitions(MULTI).phase2
    assert [str(n) for n in p2.local_subnets] == LOCALS
    assert [str(n) for n in p2.remote_subnets] == REMOTES
    assert len(p2.subnet_pairs) == 4
    assert load_definitions(dump_definitions(load_definitions(MULTI))).phase2 == (p2,)
    with TunnelDB(tmp_path / "t.db") as db:
        db.put(load_definitions(MULTI))
        (stored,) = db.phase2_definitions()
    assert dataclasses.replace(stored, number=None) == p2
    # a single subnet is still written as local_subnet
    assert "local_subnet =" in dump_definitions(load_definitions(_file(
        'local_subnet = "198.51.100.0/24"', 'remote_subnet = "203.0.113.0/24"')))  # fmt: skip


@pytest.mark.parametrize(
    ("local", "remote", "key", "why"),
    [
        ('local_subnet = "198.51.100.0/24"\nlocal_subnets = ["198.51.100.0/25"]',
         'remote_subnet = "203.0.113.0/24"', "local_subnets", "not both"),
        ('local_subnets = ["198.51.100.0/25", "2001:db8::/64"]',
         'remote_subnet = "203.0.113.0/24"', "local_subnets", "IP version"),
        ('local_subnet = "198.51.100.0/24"',
         'remote_subnets = ["203.0.113.0/25", "203.0.113.0/25"]', "remote_subnets", "twice"),
        ('local_subnet = "198.51.100.0/24"', "remote_subnets = []", "remote_subnets", "empty"),
        ('local_subnet = "198.51.100.0/24"', 'remote_subnets = ["203.0.113.1/24"]',
         "remote_subnets", "host bits"),
        ('local_subnets = ' + str([f"198.51.100.{i * 16}/28" for i in range(9)]),
         'remote_subnet = "203.0.113.0/24"', "local_subnets", "at most 8"),
    ],
)  # fmt: skip
def test_bad_subnet_lists_are_refused_naming_the_key(local: str, remote: str, key: str,
                                                     why: str) -> None:  # fmt: skip
    with pytest.raises(ValueError, match=why) as info:
        load_definitions(_file(local.replace("'", '"'), remote))
    assert key in str(info.value)


def _snapshot(gw: object, peer: object, local: list[str], remote: list[str],
              responder: bool) -> ConfigSnapshot:  # fmt: skip
    nets_l = [ipaddress.ip_network(n) for n in local]
    nets_r = [ipaddress.ip_network(n) for n in remote]
    p1 = phase1_def(1, gw, peer, remote_id=address_identity(LEFT)) if responder else (
        phase1_def(1, gw, peer))  # fmt: skip
    p2 = Phase2Def(1, 1, "multi", selector(nets_l[0]), selector(nets_r[0]),
                   (esp_proposal(),), EncapsulationMode.TUNNEL,
                   extra_local=tuple(nets_l[1:]), extra_remote=tuple(nets_r[1:]))  # fmt: skip
    return ConfigSnapshot.of([p1], [p2])


def test_one_quick_mode_and_sa_pair_per_subnet_pair() -> None:
    init = _snapshot(LEFT, RIGHT, LOCALS, REMOTES, False)
    resp = _snapshot(RIGHT, LEFT, REMOTES, LOCALS, True)
    sim = Simulation(init, resp, seed=17)
    sim.initiate()
    sim.run()
    sim.assert_keys_match(expected_pairs=8)
    children = sim.established_children("initiator")
    got = {(str(c.selector_out.src.network), str(c.selector_out.dst.network)) for c in children}
    assert got == {(lo, re) for lo in LOCALS for re in REMOTES}
    assert len({c.tunnel_id for c in children}) == 4  # each pair its own tunnel (and SPIs)
    assert len(sim.established_children("responder")) == 4
    # activating again starts nothing new: every pair is up
    sim.initiate()
    sim.run()
    assert len(sim.established_children("initiator")) == 4


def test_responder_refuses_a_pair_outside_its_lists() -> None:
    init = _snapshot(LEFT, RIGHT, ["198.51.100.128/26"], REMOTES[:1], False)
    resp = _snapshot(RIGHT, LEFT, REMOTES, LOCALS, True)
    sim = Simulation(init, resp, seed=18)
    sim.initiate()
    sim.run()
    assert sim.established_children("responder") == []


@pytest.fixture
def vetter() -> Vetter:
    peers = PeerTable()
    peers.record(A, B, 500, natt=False, now=0.0)
    v = Vetter(numbered(MULTI), Installed(), peers, {})
    v.installed.add_sa(SaEntry((A, IN_SPI, m.ProtocolId.IPSEC_ESP), 1, 1, B, larval=True))
    return v


@pytest.mark.parametrize(("lo", "re"), [(lo, re) for lo in LOCALS for re in REMOTES])
def test_vetting_accepts_each_pair(vetter: Vetter, lo: str, re: str) -> None:
    accepted(vetter.phase2_install(install(selector=ts(lo, re))))


@pytest.mark.parametrize(
    ("lo", "re"),
    [("198.51.100.0/25", "203.0.113.0/26"),  # spans both local subnets
     ("198.51.100.0/26", "203.0.113.0/25"),  # spans both remote subnets
     ("198.51.100.128/26", "203.0.113.0/26")],  # in neither local subnet
)  # fmt: skip
def test_vetting_refuses_what_no_single_pair_holds(vetter: Vetter, lo: str, re: str) -> None:
    sel = ts(lo, re)
    refusal(vetter.phase2_install(install(selector=sel, policies=policies(sel))),
            ErrorCode.NOT_PERMITTED, "wider")  # fmt: skip


def test_every_pair_installs_and_rekeys_under_one_definition() -> None:
    """Found in the real kernel (four pairs vs strongSwan and libreswan): the parent's per
    phase 2 bounds (8 policies, 32 SAs, 16 unused SPIs) were those of one selector pair, so
    the third pair's install was refused ("too many policies", three per pair) and it never
    came up. The bounds now count per pair: every pair of the largest definition (16 pairs)
    installs, and each can rekey (old and new SA pairs side by side)."""
    locals_ = [f"198.51.100.{i * 16}/28" for i in range(8)]
    remotes = ["203.0.113.0/26", "203.0.113.64/26"]
    text = _file(f"local_subnets = {locals_}".replace("'", '"'),
                 f"remote_subnets = {remotes}".replace("'", '"'))  # fmt: skip
    peers = PeerTable()
    peers.record(A, B, 500, natt=False, now=0.0)
    v = Vetter(numbered(text), Installed(), peers, {})
    pairs = [(lo, re) for lo in locals_ for re in remotes]
    assert len(pairs) == 16
    for generation in range(2):  # the first SAs of every pair, then a rekey of each
        for i, (lo, re) in enumerate(pairs):
            spi_in, spi_out = 0x1000 + 100 * generation + i, 0x5000 + 100 * generation + i
            plan = v.spi(m.SpiRequest(1, 1, m.ProtocolId.IPSEC_ESP, B, A))
            assert not isinstance(plan, Refusal), (generation, lo, re, plan)
            v.installed.add_sa(SaEntry((A, spi_in, m.ProtocolId.IPSEC_ESP), 1, 1, B,
                                       larval=True))  # fmt: skip
            sel = ts(lo, re)
            record(v, accepted(v.phase2_install(install(
                selector=sel, reqid=100 + i, inbound=keys(spi_in), outbound=keys(spi_out),
                tunnel_id=1 + i))))  # fmt: skip
    assert v.installed.policy_count(1) == 3 * 16
    assert v.installed.sa_count(1) == 4 * 16


def test_pairs_start_two_quick_modes_at_a_time() -> None:
    """Found in the real kernel: ikepriv started the four pairs' Quick Modes at once and
    strongSwan, which keeps IV state for only three IKEv1 exchanges per IKE_SA
    (charon.max_ikev1_exchanges), could decrypt none of their third messages: no pair came
    up on its side. Now at most two of ours run at a time, the next starting as one ends,
    and every pair still comes up from one activation."""
    init = _snapshot(LEFT, RIGHT, LOCALS, REMOTES, False)
    resp = _snapshot(RIGHT, LEFT, REMOTES, LOCALS, True)
    sim = Simulation(init, resp, seed=19)
    in_flight: list[int] = []

    def sample(side: str, data: bytes) -> None:
        isakmp = sim.established_isakmp("initiator")
        in_flight.append(sum(1 for sa in isakmp for qe in sa.exchanges.values()
                             if qe.state is not QmState.DONE))  # fmt: skip
        return None

    sim.tamper = sample
    sim.initiate()
    sim.run()
    assert max(in_flight) == 2
    got = {(str(c.selector_out.src.network), str(c.selector_out.dst.network))
           for c in sim.established_children("initiator")}  # fmt: skip
    assert got == {(lo, re) for lo in LOCALS for re in REMOTES}
    assert len(sim.established_children("responder")) == 4


def test_rekeys_of_many_pairs_also_run_two_at_a_time() -> None:
    """The limit of two of our Quick Modes per definition held for first initiations only:
    when every pair's SA reached its soft limit at once (kernel byte limits, or SAs set up
    together), all rekeys started at once and strongSwan could decrypt none of their third
    messages. Now a rekey that finds two of ours running waits for a slot, and every pair
    is still rekeyed."""
    from ikepriv.ipc.messages import KernelExpire
    from ikepriv.isakmp.constants import ProtocolId

    init = _snapshot(LEFT, RIGHT, LOCALS, REMOTES, False)
    resp = _snapshot(RIGHT, LEFT, REMOTES, LOCALS, True)
    sim = Simulation(init, resp, seed=23)
    sim.initiate()
    sim.run(duration=30)
    first = sim.established_children("initiator")
    assert len(first) == 4
    in_flight: list[int] = []

    def sample(side: str, data: bytes) -> None:
        isakmp = sim.established_isakmp("initiator")
        in_flight.append(sum(1 for sa in isakmp for qe in sa.exchanges.values()
                             if qe.role is m.Role.INITIATOR
                             and qe.state is not QmState.DONE))  # fmt: skip
        return None

    sim.tamper = sample
    for child in first:  # every pair's outbound SA reaches its soft byte limit together
        sim.command("initiator", KernelExpire(child.spi_out, ProtocolId.IPSEC_ESP,
                                              child.remote.addr, False))  # fmt: skip
    sim.advance(20)
    assert max(in_flight) == 2
    assert sim.initiator.core.counters.phase2_rekeys == 4
    new = {c.spi_in for c in sim.established_children("initiator")} - {c.spi_in for c in first}
    assert len(new) == 4
