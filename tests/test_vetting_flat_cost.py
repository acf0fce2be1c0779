"""The parent's work per datagram and per SKEYID request does not grow with the number of
definitions (issue 11, goal 4), and the address index behind it stays exact.

Counted, never timed: the definitions are put behind a mapping that counts every pass over
it, and the same requests are vetted with 10 and with 5000 definitions (one peer address
each, as on a gateway with one definition per peer). Once the index is built (after a
reload or a change of activations) no datagram or SKEYID request walks the definitions,
and the answers are the ones the rules give.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from types import MappingProxyType
from typing import Any

import pytest
from test_vetting_rules import DEFS, A, B, numbered

from ikepriv.ipc import messages as m
from ikepriv.ipc.messages import ErrorCode
from ikepriv.isakmp.constants import IkeHash
from ikepriv.parent_kernel.definitions import DbView
from ikepriv.parent_kernel.installed import Installed
from ikepriv.parent_kernel.peers import PeerTable
from ikepriv.parent_kernel.vetting import Activation, ActivationTable, Refusal, Vetter

NOW = 5000.0
PORTS = frozenset({500, 4500})
NI = b"i" * 16
# the peers of the extra definitions: IPv6 documentation addresses (2001:db8::/32)
EXTRA = ipaddress.ip_address("2001:db8:0:b::")
LOCAL6 = ipaddress.ip_address("2001:db8:0:a::1")


class CountingDict(dict[int, Any]):
    """A dict that counts every pass over it (the lookups by key are not counted)."""

    passes = 0

    def __iter__(self) -> Any:
        CountingDict.passes += 1
        return super().__iter__()

    def items(self) -> Any:
        CountingDict.passes += 1
        return super().items()

    def values(self) -> Any:
        CountingDict.passes += 1
        return super().values()

    def keys(self) -> Any:
        CountingDict.passes += 1
        return super().keys()


def view_with(extra: int) -> DbView:
    """DEFS (192.0.2.1 <-> 192.0.2.2, and a %any) plus `extra` definitions of their own
    IPv6 peer each, behind a CountingDict."""
    base = numbered(DEFS)
    template = base.phase1[1]
    phase1 = dict(base.phase1)
    for i in range(extra):
        number = 3 + i
        phase1[number] = dataclasses.replace(
            template, number=number, name=f"peer{number}", local_addr=LOCAL6,
            remote_addr=EXTRA + number + 1,
        )  # fmt: skip
    return dataclasses.replace(base, phase1=MappingProxyType(CountingDict(phase1)))


def datagram(remote: ipaddress.IPv4Address | ipaddress.IPv6Address) -> m.DatagramOut:
    local = A if remote.version == 4 else LOCAL6
    return m.DatagramOut(m.Endpoint(local, 500), m.Endpoint(remote, 500), False, bytes(28))


def passes_for(extra: int) -> tuple[int, list[object]]:
    """Passes over the definitions while vetting a round of requests, and the answers."""
    peers = PeerTable()
    peers.record(A, B, 500, False, NOW)
    activations = ActivationTable()
    vetter = Vetter(view_with(extra), Installed(), peers, activations)
    stranger = ipaddress.ip_address("192.0.2.66")
    vetter.datagram(datagram(B), PORTS)  # the index is built once, here
    CountingDict.passes = 0
    answers: list[object] = []
    for _ in range(50):
        answers.append(vetter.datagram(datagram(B), PORTS))
        answers.append(vetter.datagram(datagram(stranger), PORTS))
        answers.append(vetter.datagram(datagram(A), PORTS))  # our own address
        answers.append(vetter.names_peer(A, B))
        answers.append(vetter.is_ours(stranger))
        skeyid = vetter.skeyid(m.SkeyidRequest(1, None, B, IkeHash.SHA2_256, 0, NI), NOW)
        answers.append(type(skeyid).__name__ if not isinstance(skeyid, Refusal)
                       else skeyid.code)  # fmt: skip
    return CountingDict.passes, answers


def test_per_datagram_work_does_not_depend_on_the_number_of_definitions() -> None:
    few, few_answers = passes_for(10)
    many, many_answers = passes_for(5000)
    assert few == many == 0  # no pass over the definitions at all, once indexed
    assert few_answers == many_answers
    # and the answers are the rules': B is a peer, the stranger and our own address not
    first = few_answers[:6]
    assert first[0] is None and first[3] is True and first[4] is False
    assert isinstance(first[1], Refusal) and "is no peer" in first[1].reason
    assert isinstance(first[2], Refusal)
    assert first[5] == "tuple"  # the SKEYID of definition 1, for its peer talking to us


def test_the_index_is_rebuilt_after_a_change_of_activations_or_view() -> None:
    peers = PeerTable()
    activations = ActivationTable()
    vetter = Vetter(view_with(100), Installed(), peers, activations)
    moved = ipaddress.ip_address("192.0.2.77")
    assert not vetter.names_peer(A, moved)
    builds = vetter.index_builds
    for _ in range(10):
        vetter.names_peer(A, moved)
    assert vetter.index_builds == builds  # nothing changed: not rebuilt
    activations[1] = Activation(1, None, moved)  # `ike cmd=activate ipaddr=...,192.0.2.77`
    assert vetter.names_peer(A, moved) and vetter.index_builds == builds + 1
    activations.pop(1)
    assert not vetter.names_peer(A, moved)
    activations.setdefault(1, Activation(1, ipaddress.ip_address("192.0.2.9"), moved))
    assert vetter.is_ours(ipaddress.ip_address("192.0.2.9"))  # an activated local address
    activations.clear()
    assert not vetter.is_ours(ipaddress.ip_address("192.0.2.9"))
    vetter.view = view_with(0)  # a reload
    assert not vetter.names_peer(LOCAL6, EXTRA + 4)


@pytest.mark.parametrize("extra", [0, 300])
def test_the_index_answers_as_the_definitions_do(extra: int) -> None:
    """Every definition's peer is known for its local address only, %any names nobody,
    and a plain dict of activations (as unit tests pass) is read afresh each time."""
    activations: dict[int, Activation] = {}
    vetter = Vetter(view_with(extra), Installed(), PeerTable(), activations)
    view = vetter.view
    for number, p1 in view.phase1.items():
        if p1.remote_addr is None:
            continue
        assert vetter.names_peer(p1.local_addr, p1.remote_addr), number
        other = LOCAL6 if p1.local_addr.version == 4 else A
        assert not vetter.names_peer(other, p1.remote_addr)
    assert vetter.known_local(A) and vetter.known_local(LOCAL6) == bool(extra)
    activations[2] = Activation(2, None, ipaddress.ip_address("192.0.2.88"))
    assert vetter.names_peer(A, ipaddress.ip_address("192.0.2.88"))
    assert vetter.datagram(datagram(ipaddress.ip_address("192.0.2.88")), PORTS) is None
    del activations[2]
    refused = vetter.datagram(datagram(ipaddress.ip_address("192.0.2.88")), PORTS)
    assert isinstance(refused, Refusal) and refused.code is ErrorCode.NOT_PERMITTED
