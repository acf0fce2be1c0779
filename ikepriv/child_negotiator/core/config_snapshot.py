"""The configuration the core negotiates with: phase 1 and phase 2 definitions, no secrets.

The parent sends a snapshot as ConfigBegin, ConfigPhase1 (each followed by its
ConfigCredentials, for signature definitions), ConfigPhase2..., ConfigEnd; the builder checks
generations, order and counts so a lost or stray message cannot leave the core with half a
configuration. Credentials are kept as the raw file bytes the parent read (`Credentials`):
parsing them is the certificate code's job. Exchanges already running keep the definition
objects they started with; only new exchanges see a new snapshot.

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
from ikepriv.ipc.interning import Interner
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
class Credentials:
    """The credential files of one signature definition, unparsed, each list in index order:
    our certificate file (end entity first, then intermediates), trust anchors, CRLs."""

    own_cert: tuple[bytes, ...] = ()
    trust_anchors: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    generation: int = 0
    phase1: Mapping[int, Phase1Def] = field(default_factory=lambda: MappingProxyType({}))
    phase2: Mapping[int, Phase2Def] = field(default_factory=lambda: MappingProxyType({}))
    credentials: Mapping[int, Credentials] = field(default_factory=lambda: MappingProxyType({}))
    # indexes (see the module docstring), each group in number order
    by_peer: Mapping[PeerKey, tuple[Phase1Def, ...]] = field(default_factory=dict)
    by_wild: Mapping[WildKey, tuple[Phase1Def, ...]] = field(default_factory=dict)
    phase2_by_phase1: Mapping[int, tuple[Phase2Def, ...]] = field(default_factory=dict)
    by_remote: Mapping[IPAddress, tuple[Phase1Def, ...]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        phase1: Iterable[Phase1Def],
        phase2: Iterable[Phase2Def],
        generation: int = 0,
        credentials: Mapping[int, Credentials] | None = None,
    ) -> ConfigSnapshot:
        p1 = {d.number: d for d in phase1}
        p2 = {d.number: d for d in phase2}
        for d in p2.values():
            if d.phase1_number not in p1:
                raise SnapshotError(f"phase 2 {d.number} names missing phase 1 {d.phase1_number}")
        creds = dict(credentials or {})
        for number in creds:
            if number not in p1:
                raise SnapshotError(f"credentials for missing phase 1 {number}")
        ordered = [p1[n] for n in sorted(p1)]
        by_peer: dict[PeerKey, tuple[Phase1Def, ...]] = _grouped(
            ((d.mode, d.local_addr, d.remote_addr), d) for d in ordered if d.remote_addr is not None
        )
        by_wild: dict[WildKey, tuple[Phase1Def, ...]] = _grouped(
            ((d.mode, d.local_addr), d) for d in ordered if d.remote_addr is None
        )
        by_remote: dict[IPAddress, tuple[Phase1Def, ...]] = _grouped(
            (d.remote_addr, d) for d in ordered if d.remote_addr is not None
        )
        under: dict[int, list[Phase2Def]] = {}
        for n2 in sorted(p2):
            under.setdefault(p2[n2].phase1_number, []).append(p2[n2])
        return cls(
            generation,
            MappingProxyType(p1),
            MappingProxyType(p2),
            MappingProxyType(creds),
            by_peer=MappingProxyType(by_peer),
            by_wild=MappingProxyType(by_wild),
            phase2_by_phase1=MappingProxyType({n1: tuple(ds) for n1, ds in under.items()}),
            by_remote=MappingProxyType(by_remote),
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

    __slots__ = (
        "_credential_count",
        "_credentials",
        "_generation",
        "_interner",
        "_phase1",
        "_phase2",
    )

    def __init__(self, begin: ConfigBegin) -> None:
        self._generation = begin.generation
        self._phase1: list[Phase1Def] = []
        self._phase2: list[Phase2Def] = []
        # phase 1 number -> kind -> blobs in index order
        self._credentials: dict[int, dict[CredentialKind, list[bytes]]] = {}
        self._credential_count = 0
        self._interner = Interner()  # equal selectors and proposals shared (memory)

    def add(self, message: ConfigPhase1 | ConfigPhase2 | ConfigCredential) -> None:
        if message.generation != self._generation:
            raise SnapshotError(f"generation {message.generation} inside {self._generation}")
        if isinstance(message, ConfigPhase1):
            self._phase1.append(message.definition)
        elif isinstance(message, ConfigPhase2):
            self._phase2.append(self._interner.phase2(message.definition))
        else:
            self._add_credential(message)

    def _add_credential(self, message: ConfigCredential) -> None:
        """A credential belongs to the ConfigPhase1 just before it (its definition), and
        the files of one kind come in index order; anything else is a broken sequence."""
        if not self._phase1 or self._phase1[-1].number != message.phase1_number or self._phase2:
            raise SnapshotError(
                f"credential for phase 1 {message.phase1_number} not after its definition"
            )
        kinds = self._credentials.setdefault(message.phase1_number, {})
        blobs = kinds.setdefault(message.kind, [])
        if message.index != len(blobs):
            raise SnapshotError(
                f"credential {message.kind.name} #{message.index} of phase 1 "
                f"{message.phase1_number} out of order"
            )
        if message.kind is CredentialKind.OWN_CERT and blobs:
            raise SnapshotError(f"second certificate file for phase 1 {message.phase1_number}")
        blobs.append(message.blob)
        self._credential_count += 1

    def finish(self, end: ConfigEnd) -> ConfigSnapshot:
        if end.generation != self._generation:
            raise SnapshotError(f"end of generation {end.generation} inside {self._generation}")
        if (end.phase1_count, end.phase2_count) != (len(self._phase1), len(self._phase2)):
            raise SnapshotError("definition counts do not match ConfigEnd")
        if end.credential_count != self._credential_count:
            raise SnapshotError("credential count does not match ConfigEnd")
        if len({d.number for d in self._phase1}) != len(self._phase1):
            raise SnapshotError("phase 1 numbers repeat")
        if len({d.number for d in self._phase2}) != len(self._phase2):
            raise SnapshotError("phase 2 numbers repeat")
        credentials = {
            number: Credentials(
                tuple(kinds.get(CredentialKind.OWN_CERT, ())),
                tuple(kinds.get(CredentialKind.TRUST_ANCHOR, ())),
                tuple(kinds.get(CredentialKind.CRL, ())),
            )
            for number, kinds in self._credentials.items()
        }
        return ConfigSnapshot.of(self._phase1, self._phase2, self._generation, credentials)
