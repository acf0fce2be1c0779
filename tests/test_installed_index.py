"""The parent's records answer from their groups exactly what a pass over every entry
would: a seeded random history of adds, replacements and removals (larval SAs filled in,
SAs and policies forgotten, the table cleared) is checked against brute force after each
step. The groups exist so that vetting an install does not cost a pass over every SA of
every tunnel (issue 11, goal 4)."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence

from ikepriv.ipc import messages as m
from ikepriv.isakmp.constants import ProtocolId
from ikepriv.parent_kernel.installed import Installed, PolicyEntry, SaEntry

A = ipaddress.ip_address("192.0.2.1")
PEERS = [ipaddress.ip_address(f"192.0.2.{n}") for n in range(2, 6)]
ESP = ProtocolId.IPSEC_ESP


def same(got: Sequence[object], want: Sequence[object]) -> bool:
    return len(got) == len(want) and all(any(g is w for w in want) for g in got)


def check(inst: Installed) -> None:
    """Every query against brute force (as sets: a group lists its entries in the order they
    joined it, which after a move is not the table's own order)."""
    sas, pols = list(inst.sas.values()), list(inst.policies.values())
    for n2 in range(1, 5):
        assert same(inst.sas_of_phase2(n2), [e for e in sas if e.phase2_number == n2])
        assert same(inst.policies_of_phase2(n2), [p for p in pols if p.phase2_number == n2])
        for larval in (None, True, False):
            assert inst.sa_count(n2, larval=larval) == sum(
                1 for e in sas if e.phase2_number == n2 and larval in (None, e.larval)
            )
        assert inst.policy_count(n2) == sum(1 for p in pols if p.phase2_number == n2)
        for reqid in range(1, 4):
            in_use = any(e.phase2_number == n2 and e.reqid == reqid and not e.larval
                         for e in sas)  # fmt: skip
            unused = [p for p in pols if p.phase2_number == n2 and p.reqid == reqid]
            assert same(inst.unused_policies(n2, reqid), [] if in_use else unused)
    for larval in (None, True, False):
        assert inst.sa_count(larval=larval) == sum(1 for e in sas if larval in (None, e.larval))
    assert inst.policy_count() == len(pols)
    assert same(inst.larval(), [e for e in sas if e.larval])
    for tid in range(1, 8):
        assert same(
            inst.sas_of_tunnel(tid), [e for e in sas if e.tunnel_id == tid and not e.larval]
        )
    for n1 in range(1, 3):
        assert same(
            inst.sas_of_phase1(n1), [e for e in sas if e.phase1_number == n1 and not e.larval]
        )
    for reqid in range(1, 4):
        owners = {e.phase2_number for e in sas if e.reqid == reqid and not e.larval}
        owners = owners or {p.phase2_number for p in pols if p.reqid == reqid}
        assert inst.reqid_owner(reqid) in (owners or {None})


def test_the_groups_answer_as_a_pass_over_every_entry_would() -> None:
    rng = random.Random(7)  # noqa: S311 -- a replayable history, not a secret
    inst = Installed()
    for step in range(3000):
        action = rng.random()
        spi = 0x1000 + rng.randrange(40)
        key = (rng.choice(PEERS), spi, ESP)
        if action < 0.45:
            larval = rng.random() < 0.3
            inst.add_sa(SaEntry(key, rng.randrange(1, 3), rng.randrange(1, 5), A, larval,
                                None if larval else rng.randrange(1, 8),
                                rng.choice(list(m.SaDirection)),
                                0 if larval else rng.randrange(1, 4)))  # fmt: skip
        elif action < 0.65:
            inst.forget_sa(key)
        elif action < 0.85:
            sel = m.TrafficSelector(
                m.SelectorSide(
                    ipaddress.ip_network(f"198.51.100.{rng.randrange(4) * 16}/28"), 0, 0
                ),
                m.SelectorSide(ipaddress.ip_network("203.0.113.0/24"), 0, 0),
            )
            pkey = (sel, rng.choice(list(m.PolicyDirection)))
            inst.add_policy(PolicyEntry(pkey, rng.randrange(1, 5), None,  # type: ignore[arg-type]
                                        rng.randrange(1, 4)))  # fmt: skip
        elif action < 0.99:
            if inst.policies:
                inst.forget_policy(rng.choice(list(inst.policies)))
        else:
            inst.sas.clear()
            inst.policies.clear()
        if step % 7 == 0:
            check(inst)
    check(inst)
