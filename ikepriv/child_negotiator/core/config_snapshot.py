"""The configuration the core negotiates with: phase 1 and phase 2 definitions, no secrets.

The parent sends a snapshot as ConfigBegin, ConfigPhase1..., ConfigPhase2..., ConfigEnd; the
builder checks generations and counts so a lost or stray message cannot leave the core with
half a configuration. Exchanges already running keep the definition objects they started
with; only new exchanges see a new snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ikepriv.ipc.messages import (
    ConfigBegin,
    ConfigCredential,
    ConfigEnd,
    ConfigPhase1,
    ConfigPhase2,
    CredentialKind,
    Phase1Def,
    Phase2Def,
)

# phase 1 number -> kind -> the files of that kind, in index order (raw, unparsed: the
# child parses them, core/certificates.py)
CredentialBlobs = Mapping[int, Mapping[CredentialKind, tuple[bytes, ...]]]


class SnapshotError(Exception):
    """A configuration sequence that does not add up (wrong generation, count, order)."""


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    generation: int = 0
    phase1: Mapping[int, Phase1Def] = field(default_factory=lambda: MappingProxyType({}))
    phase2: Mapping[int, Phase2Def] = field(default_factory=lambda: MappingProxyType({}))
    credentials: CredentialBlobs = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(
        cls,
        phase1: Iterable[Phase1Def],
        phase2: Iterable[Phase2Def],
        generation: int = 0,
        credentials: Iterable[ConfigCredential] = (),
    ) -> ConfigSnapshot:
        p1 = {d.number: d for d in phase1}
        p2 = {d.number: d for d in phase2}
        for d in p2.values():
            if d.phase1_number not in p1:
                raise SnapshotError(f"phase 2 {d.number} names missing phase 1 {d.phase1_number}")
        return cls(generation, MappingProxyType(p1), MappingProxyType(p2), _blobs(credentials, p1))

    def phase2_of(self, phase1_number: int) -> tuple[Phase2Def, ...]:
        """Phase 2 definitions under one phase 1, in number order."""
        return tuple(d for _, d in sorted(self.phase2.items()) if d.phase1_number == phase1_number)


def _blobs(items: Iterable[ConfigCredential], phase1: Mapping[int, Phase1Def]) -> CredentialBlobs:
    """Credential files per definition and kind, in index order; each (definition, kind,
    index) once, and only for a definition of the snapshot."""
    found: dict[int, dict[CredentialKind, dict[int, bytes]]] = {}
    for c in items:
        if c.phase1_number not in phase1:
            raise SnapshotError(f"credential for missing phase 1 {c.phase1_number}")
        files = found.setdefault(c.phase1_number, {}).setdefault(c.kind, {})
        if c.index in files:
            raise SnapshotError(f"phase 1 {c.phase1_number}: {c.kind.name} {c.index} repeats")
        files[c.index] = c.blob
    return MappingProxyType(
        {
            number: MappingProxyType(
                {kind: tuple(files[i] for i in sorted(files)) for kind, files in kinds.items()}
            )
            for number, kinds in found.items()
        }
    )


class SnapshotBuilder:
    """Collects one ConfigBegin..ConfigEnd sequence."""

    __slots__ = ("_credentials", "_generation", "_phase1", "_phase2")

    def __init__(self, begin: ConfigBegin) -> None:
        self._generation = begin.generation
        self._phase1: list[Phase1Def] = []
        self._phase2: list[Phase2Def] = []
        self._credentials: list[ConfigCredential] = []

    def add(self, message: ConfigPhase1 | ConfigPhase2 | ConfigCredential) -> None:
        if message.generation != self._generation:
            raise SnapshotError(f"generation {message.generation} inside {self._generation}")
        if isinstance(message, ConfigPhase1):
            self._phase1.append(message.definition)
        elif isinstance(message, ConfigPhase2):
            self._phase2.append(message.definition)
        else:
            self._credentials.append(message)

    def finish(self, end: ConfigEnd) -> ConfigSnapshot:
        if end.generation != self._generation:
            raise SnapshotError(f"end of generation {end.generation} inside {self._generation}")
        if (end.phase1_count, end.phase2_count) != (len(self._phase1), len(self._phase2)):
            raise SnapshotError("definition counts do not match ConfigEnd")
        if end.credential_count != len(self._credentials):
            raise SnapshotError("credential count does not match ConfigEnd")
        if len({d.number for d in self._phase1}) != len(self._phase1):
            raise SnapshotError("phase 1 numbers repeat")
        if len({d.number for d in self._phase2}) != len(self._phase2):
            raise SnapshotError("phase 2 numbers repeat")
        return ConfigSnapshot.of(self._phase1, self._phase2, self._generation, self._credentials)
