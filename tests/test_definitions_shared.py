"""Thousands of phase 2 definitions repeat a few subnets and proposal lists: the parent's
view and the child's snapshot keep one object per equal value (memory: 1.5 kB per definition
in each process before, 0.3 kB after, measured for bench/tunnels.py), and nothing else changes:
the definitions compare equal to what the database holds and what was sent."""

from __future__ import annotations

from ikepriv.child_negotiator.core.config_snapshot import SnapshotBuilder
from ikepriv.config import load_definitions
from ikepriv.ipc import messages as m
from ikepriv.ipc.schema import Direction, decode, encode
from ikepriv.parent_kernel.definitions import DbView

PEERS, PER_PEER = 3, 4


def _toml() -> str:
    out = []
    for j in range(PEERS):
        out.append(
            f'[[phase1]]\nname = "peer{j}"\nlocal_addr = "192.0.2.2"\n'
            f'remote_addr = "192.0.2.{j + 10}"\npsk = "k"\nproposals = ["aes128-sha256-modp2048"]\n'
        )
        for k in range(PER_PEER):
            out.append(
                f'[[phase2]]\nname = "peer{j}-{k}"\nphase1 = "peer{j}"\n'
                f'local_subnet = "203.0.113.{k + 1}/32"\nremote_subnet = "198.51.100.{j + 1}/32"\n'
                'proposals = ["aes128-sha256"]\n'
            )
    return "\n".join(out)


def _view() -> DbView:
    defs = load_definitions(_toml())
    numbered1 = [d.__class__(**{**d.__dict__, "number": i + 1}) for i, d in enumerate(defs.phase1)]
    numbered2 = [d.__class__(**{**d.__dict__, "number": i + 1}) for i, d in enumerate(defs.phase2)]
    return DbView.build(1, numbered1, numbered2)


def test_the_parent_view_shares_equal_subnets_and_proposals() -> None:
    defs = load_definitions(_toml())
    view = _view()
    assert len(view.phase2) == PEERS * PER_PEER
    for number, d in view.phase2.items():  # the same values as loaded
        assert d == defs.phase2[number - 1].__class__(**{**defs.phase2[number - 1].__dict__,
                                                         "number": number})  # fmt: skip
    remotes = {id(d.remote_subnet) for d in view.phase2.values()}
    locals_ = {id(d.local_subnet) for d in view.phase2.values()}
    assert len(remotes) == PEERS and len(locals_) == PER_PEER
    assert len({id(d.esp_proposals) for d in view.phase2.values()}) == 1
    assert len({id(d.proposals[0]) for d in view.ipc_phase2}) == 1
    assert len({id(d.local) for d in view.ipc_phase2}) == PER_PEER


def test_the_child_snapshot_shares_them_and_equals_what_was_sent() -> None:
    view = _view()
    sent = view.config_messages()
    received = [decode(encode(msg), Direction.PARENT_TO_CHILD) for msg in sent]
    begin, *body, end = received
    assert isinstance(begin, m.ConfigBegin) and isinstance(end, m.ConfigEnd)
    builder = SnapshotBuilder(begin)
    for msg in body:
        assert isinstance(msg, m.ConfigPhase1 | m.ConfigPhase2 | m.ConfigCredential)
        builder.add(msg)
    snapshot = builder.finish(end)
    assert sorted(snapshot.phase2.values(), key=lambda d: d.number) == list(view.ipc_phase2)
    assert len({id(d.local) for d in snapshot.phase2.values()}) == PER_PEER
    assert len({id(d.remote) for d in snapshot.phase2.values()}) == PEERS
    assert len({id(d.proposals[0]) for d in snapshot.phase2.values()}) == 1
