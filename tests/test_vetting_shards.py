"""The vetting with two negotiator children: what one child may do to the other's objects.

Pure (no root): a Vetter with `Sharding(2)` and the parent's records. Two road warriors of
the same "%any" definition (phase 2 "any2") land on different children: X (192.0.2.60) on
child 0, Y (192.0.2.63) on child 1. The host kernel cannot hold SAs (no ESP or AH), so what
tests/test_attack_shards.py cannot show with a real daemon (installed SAs and policies of
one child, which the other tries to replace or remove) is shown here on the records, with
the same rules the installer applies. With one child the same sequence is accepted: the
refusals come from the ownership, not from anything else in the requests.
"""

from __future__ import annotations

import ipaddress

import pytest
from test_vetting_rules import AH, DEFS, A, ah_install, numbered, refusal

from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.parent_kernel import installed as inst
from ikepriv.parent_kernel.installed import Installed, SaEntry
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.shards import Sharding
from ikepriv.parent_kernel.vetting import Phase2Plan, Phase2Removal, SpiPlan, Vetter
from ikepriv.process_contract import Partition

X = ipaddress.ip_address("192.0.2.60")  # child 0
Y = ipaddress.ip_address("192.0.2.63")  # child 1
X_SPI, Y_SPI = 0x6001, 0x7001


def two_children(count: int) -> Vetter:
    """Both road warriors talked to us just now; each child allocated an inbound SPI."""
    sharding = Sharding(count)
    peers = PeerTable()
    vetter = Vetter(numbered(DEFS), Installed(), peers, {}, sharding=sharding)
    for peer, spi in ((X, X_SPI), (Y, Y_SPI)):
        child = sharding.of_address(peer)
        peers.record(A, peer, 500, natt=False, now=0.0, shard=child)
        vetter.installed.add_sa(SaEntry((A, spi, AH), 2, 2, peer, larval=True, owner=child))
    return vetter


def record(vetter: Vetter, plan: Phase2Plan) -> None:
    """What the installer records once the kernel took a plan."""
    for pol in plan.policies:
        vetter.installed.add_policy(pol.entry)
    vetter.installed.add_sa(plan.outbound.entry)
    vetter.installed.add_sa(plan.inbound.entry)


def test_the_road_warriors_land_on_different_children() -> None:
    assert (Sharding(2).of_address(X), Sharding(2).of_address(Y)) == (0, 1)


def test_partition_of_numbers() -> None:
    assert [Partition(1, 3).owns(n) for n in range(1, 7)] == [False, True, False] * 2
    assert Partition(1, 3).after(2) == 5 and Partition(1, 3).at_or_after(3) == 5
    assert Partition(0, 1).after(0xFFFFFFFF) == 1  # one child: every number, wrapping
    assert Partition(2, 3).owns(0xFFFFFFFF)  # the top is (0xFFFFFFFF - 1) % 3 == 2's
    assert Partition(0, 3).at_or_after(0xFFFFFFFF) == 1  # past the top: its first


def test_a_child_cannot_replace_fill_or_remove_the_others_objects() -> None:
    vetter = two_children(2)
    mine = vetter.phase2_install(ah_install(X, X_SPI, tunnel_id=1, reqid=1), 0.0, 0)
    assert isinstance(mine, Phase2Plan), mine
    assert {p.entry.owner for p in mine.policies} == {0} and mine.inbound.entry.owner == 0
    record(vetter, mine)
    # child 1 negotiates the same definition with Y, same selectors: the policies are X's
    theirs = ah_install(Y, Y_SPI, tunnel_id=2, reqid=2)
    refusal(vetter.phase2_install(theirs, 0.0, 1), ErrorCode.NOT_PERMITTED,
            "policy belongs to negotiator child 1/2")  # fmt: skip
    # nor may it fill child 0's SPI (even naming X as its peer is refused first)
    refusal(vetter.phase2_install(ah_install(Y, X_SPI, tunnel_id=2, reqid=2), 0.0, 1),
            ErrorCode.NOT_PERMITTED, "was not allocated")  # fmt: skip
    refusal(vetter.phase2_install(ah_install(X, X_SPI, tunnel_id=2, reqid=2), 0.0, 1),
            ErrorCode.NOT_PERMITTED, "served by negotiator child 1/2")  # fmt: skip
    # nor remove child 0's SAs, or its own larval SPI named as child 0's
    remove = m.Phase2Remove(1, 2, 1, A, X, AH, X_SPI, 0x6000, 1, False)
    refusal(vetter.phase2_remove(remove, 1), ErrorCode.NOT_PERMITTED, "not ours")
    assert isinstance(vetter.phase2_remove(remove, 0), Phase2Removal)  # the owner may
    # numbers of the other's class are refused even for its own peer
    refusal(vetter.phase2_install(ah_install(Y, Y_SPI, tunnel_id=3, reqid=2), 0.0, 1),
            ErrorCode.NOT_PERMITTED, "tunnel 3 belongs to negotiator child 1/2")  # fmt: skip


def test_with_one_child_the_same_requests_pass() -> None:
    """The control: one child may rebind the policy set of its own definition (a second
    road warrior with the same selectors replaces the first's policies, as before)."""
    vetter = two_children(1)
    first = vetter.phase2_install(ah_install(X, X_SPI, tunnel_id=1, reqid=1), 0.0, 0)
    assert isinstance(first, Phase2Plan)
    record(vetter, first)
    second = vetter.phase2_install(ah_install(Y, Y_SPI, tunnel_id=2, reqid=1), 0.0, 0)
    assert isinstance(second, Phase2Plan), second
    assert all(p.replaces is not None for p in second.policies)


@pytest.mark.parametrize("child", [0, 1])
def test_a_childs_share_of_the_unused_spis(child: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each child may hold at most its share (half, with two) of the unused SPIs."""
    monkeypatch.setattr(inst, "MAX_LARVAL_TOTAL", 4)
    vetter = two_children(2)
    peer = X if child == 0 else Y
    spi = 0x9000
    vetter.installed.add_sa(SaEntry((A, spi, AH), 2, 2, peer, larval=True, owner=child))
    got = vetter.spi(m.SpiRequest(1, 2, AH, peer, A), child)
    refusal(got, ErrorCode.LIMIT_REACHED, "for this child")
    other = vetter.spi(m.SpiRequest(2, 2, AH, Y if child == 0 else X, A), 1 - child)
    assert isinstance(other, SpiPlan) and other.owner == 1 - child  # its share is untouched
