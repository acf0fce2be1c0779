"""The configuration the core negotiates with: phase 1 and phase 2 definitions, no secrets.

The parent sends a snapshot as ConfigBegin, ConfigPhase1..., ConfigPhase2..., ConfigEnd; the
builder checks generations and counts so a lost or stray message cannot leave the core with
half a configuration. Exchanges already running keep the definition objects they started
with; only new exchanges see a new snapshot.

A snapshot also holds its definitions indexed the ways the exchanges look them up per
datagram (a responder's definition by mode, local and peer address; the phase 2s of a
phase 1), built once per snapshot, so a first message or a Quick Mode does not cost a pass
over every definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from ikepriv.child_negotiator.core.datagram import IPAddress
from ikepriv.ipc.messages import (
    ConfigBegin,
    ConfigEnd,
    ConfigPhase1,
    ConfigPhase2,
    Phase1Def,
    Phase2Def,
)
from ikepriv.isakmp.constants import ExchangeType

PeerKey = tuple[ExchangeType, IPAddress, IPAddress]  # mode, local address, peer address
WildKey = tuple[ExchangeType, IPAddress]  # mode, local address: definitions of remote %any


_K = TypeVar("_K")


def _grouped(pairs: Iterable[tuple[_K, Phase1Def]]) -> dict[_K, tuple[Phase1Def, ...]]:
    out: dict[_K, list[Phase1Def]] = {}
    for key, d in pairs:
        out.setdefault(key, []).append(d)
    return {key: tuple(ds) for key, ds in out.items()}


class SnapshotError(Exception):
    """A configuration sequence that does not add up (wrong generation, count, order)."""


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    generation: int = 0
    phase1: Mapping[int, Phase1Def] = field(default_factory=lambda: MappingProxyType({}))
    phase2: Mapping[int, Phase2Def] = field(default_factory=lambda: MappingProxyType({}))
    # indexes (see the module docstring), each group in number order
    by_peer: Mapping[PeerKey, tuple[Phase1Def, ...]] = field(default_factory=dict)
    by_wild: Mapping[WildKey, tuple[Phase1Def, ...]] = field(default_factory=dict)
    phase2_by_phase1: Mapping[int, tuple[Phase2Def, ...]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, phase1: Iterable[Phase1Def], phase2: Iterable[Phase2Def], generation: int = 0
    ) -> ConfigSnapshot:
        p1 = {d.number: d for d in phase1}
        p2 = {d.number: d for d in phase2}
        for d in p2.values():
            if d.phase1_number not in p1:
                raise SnapshotError(f"phase 2 {d.number} names missing phase 1 {d.phase1_number}")
        ordered = [p1[n] for n in sorted(p1)]
        by_peer: dict[PeerKey, tuple[Phase1Def, ...]] = _grouped(
            ((d.mode, d.local_addr, d.remote_addr), d) for d in ordered if d.remote_addr is not None
        )
        by_wild: dict[WildKey, tuple[Phase1Def, ...]] = _grouped(
            ((d.mode, d.local_addr), d) for d in ordered if d.remote_addr is None
        )
        under: dict[int, list[Phase2Def]] = {}
        for n2 in sorted(p2):
            under.setdefault(p2[n2].phase1_number, []).append(p2[n2])
        return cls(
            generation,
            MappingProxyType(p1),
            MappingProxyType(p2),
            MappingProxyType(by_peer),
            MappingProxyType(by_wild),
            MappingProxyType({n1: tuple(ds) for n1, ds in under.items()}),
        )

    def phase2_of(self, phase1_number: int) -> tuple[Phase2Def, ...]:
        """Phase 2 definitions under one phase 1, in number order."""
        return self.phase2_by_phase1.get(phase1_number, ())

    def for_peer(
        self, mode: ExchangeType, local: IPAddress, peer: IPAddress
    ) -> tuple[tuple[Phase1Def, ...], tuple[Phase1Def, ...]]:
        """The definitions of `mode` on `local` that name `peer`, and those that accept any
        peer of its address family, each in number order."""
        exact = self.by_peer.get((mode, local, peer), ())
        wild = self.by_wild.get((mode, local), ()) if local.version == peer.version else ()
        return exact, wild


class SnapshotBuilder:
    """Collects one ConfigBegin..ConfigEnd sequence."""

    __slots__ = ("_generation", "_phase1", "_phase2")

    def __init__(self, begin: ConfigBegin) -> None:
        self._generation = begin.generation
        self._phase1: list[Phase1Def] = []
        self._phase2: list[Phase2Def] = []

    def add(self, message: ConfigPhase1 | ConfigPhase2) -> None:
        if message.generation != self._generation:
            raise SnapshotError(f"generation {message.generation} inside {self._generation}")
        if isinstance(message, ConfigPhase1):
            self._phase1.append(message.definition)
        else:
            self._phase2.append(message.definition)

    def finish(self, end: ConfigEnd) -> ConfigSnapshot:
        if end.generation != self._generation:
            raise SnapshotError(f"end of generation {end.generation} inside {self._generation}")
        if (end.phase1_count, end.phase2_count) != (len(self._phase1), len(self._phase2)):
            raise SnapshotError("definition counts do not match ConfigEnd")
        if len({d.number for d in self._phase1}) != len(self._phase1):
            raise SnapshotError("phase 1 numbers repeat")
        if len({d.number for d in self._phase2}) != len(self._phase2):
            raise SnapshotError("phase 2 numbers repeat")
        return ConfigSnapshot.of(self._phase1, self._phase2, self._generation)
