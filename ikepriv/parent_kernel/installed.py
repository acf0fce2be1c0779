"""What the parent put into the kernel, for which tunnel: the only things it will delete.

The parent never flushes: on `remove`, on shutdown and on a child's Phase2Remove it
removes exactly the entries recorded here (installer.py is the only writer, of the kernel
and of these records). Inbound SPIs it allocated are recorded as larval SAs, so a child
can only fill an SPI the parent handed out for that same phase 2, and a reqid is bound to
the one phase 2 that first used it, so a child cannot attach one tunnel's traffic to
another tunnel's SAs.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, TypeVar

from ikepriv.ipc.messages import PolicyDirection, SaDirection, TrafficSelector
from ikepriv.isakmp.constants import ProtocolId
from ikepriv.parent_kernel.kernel.specs import PolicySpec

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Bounds: a phase 2 has at most a few SAs at a time (in + out, AH + ESP, old + new during a
# rekey); anything above these numbers is a child gone wrong, not a busy gateway. The per
# phase 2 bounds count per (local, remote) subnet pair of the definition (vetting._bound).
MAX_SAS_PER_PHASE2: Final = 32
MAX_LARVAL_PER_PHASE2: Final = 16
MAX_POLICIES_PER_PHASE2: Final = 8
MAX_SAS_TOTAL: Final = 8192
MAX_LARVAL_TOTAL: Final = 1024
MAX_POLICIES_TOTAL: Final = 2048
RECENTLY_REMOVED: Final = 1024

SaKey = tuple[IPAddress, int, ProtocolId]  # destination, SPI, protocol: the kernel's SA id
PolicyKey = tuple[TrafficSelector, PolicyDirection]


@dataclass
class SaEntry:
    key: SaKey
    phase1_number: int
    phase2_number: int
    src: IPAddress
    larval: bool
    tunnel_id: int | None = None
    direction: SaDirection = SaDirection.IN
    reqid: int = 0
    algorithms: str = ""
    expires_at: float = 0.0

    @property
    def dst(self) -> IPAddress:
        return self.key[0]

    @property
    def spi(self) -> int:
        return self.key[1]

    @property
    def proto(self) -> ProtocolId:
        return self.key[2]


@dataclass
class PolicyEntry:
    key: PolicyKey
    phase2_number: int
    spec: PolicySpec
    reqid: int


@dataclass
class Installed:
    sas: dict[SaKey, SaEntry] = field(default_factory=dict)
    policies: dict[PolicyKey, PolicyEntry] = field(default_factory=dict)
    _removed_sas: OrderedDict[SaKey, None] = field(default_factory=OrderedDict)
    _removed_policies: OrderedDict[PolicyKey, None] = field(default_factory=OrderedDict)

    # -- counts --------------------------------------------------------------------------

    def sa_count(self, phase2: int | None = None, *, larval: bool | None = None) -> int:
        return sum(
            1
            for e in self.sas.values()
            if (phase2 is None or e.phase2_number == phase2)
            and (larval is None or e.larval == larval)
        )

    def policy_count(self, phase2: int | None = None) -> int:
        return sum(1 for e in self.policies.values() if phase2 is None or e.phase2_number == phase2)

    # -- reqids --------------------------------------------------------------------------

    def reqid_owner(self, reqid: int) -> int | None:
        """The phase 2 a reqid is bound to (while it has an SA or policy), or None."""
        for sa in self.sas.values():
            if sa.reqid == reqid and not sa.larval:
                return sa.phase2_number
        for pol in self.policies.values():
            if pol.reqid == reqid:
                return pol.phase2_number
        return None

    # -- changes -------------------------------------------------------------------------

    def add_sa(self, entry: SaEntry) -> None:
        self.sas[entry.key] = entry
        self._removed_sas.pop(entry.key, None)

    def add_policy(self, entry: PolicyEntry) -> None:
        self.policies[entry.key] = entry
        self._removed_policies.pop(entry.key, None)

    def forget_sa(self, key: SaKey) -> SaEntry | None:
        entry = self.sas.pop(key, None)
        if entry is not None:
            _remember(self._removed_sas, key)
        return entry

    def forget_policy(self, key: PolicyKey) -> PolicyEntry | None:
        entry = self.policies.pop(key, None)
        if entry is not None:
            _remember(self._removed_policies, key)
        return entry

    def recently_removed_sa(self, key: SaKey) -> bool:
        """Removed by the parent itself (remove, hard expiry): a late child delete is fine."""
        return key in self._removed_sas

    def recently_removed_policy(self, key: PolicyKey) -> bool:
        return key in self._removed_policies

    # -- queries -------------------------------------------------------------------------

    def sas_of_tunnel(self, tunnel_id: int) -> list[SaEntry]:
        return [e for e in self.sas.values() if e.tunnel_id == tunnel_id and not e.larval]

    def sas_of_phase2(self, phase2: int) -> list[SaEntry]:
        return [e for e in self.sas.values() if e.phase2_number == phase2]

    def policies_of_phase2(self, phase2: int) -> list[PolicyEntry]:
        return [e for e in self.policies.values() if e.phase2_number == phase2]

    def unused_policies(self, phase2: int, reqid: int) -> list[PolicyEntry]:
        """The policies of (phase2, reqid) when no live SA of that phase 2 uses the reqid."""
        if any(e.phase2_number == phase2 and e.reqid == reqid and not e.larval
               for e in self.sas.values()):  # fmt: skip
            return []
        return [e for e in self.policies.values()
                if e.phase2_number == phase2 and e.reqid == reqid]  # fmt: skip

    def larval(self) -> list[SaEntry]:
        return [e for e in self.sas.values() if e.larval]

    def phase2_for_reqid(self, reqid: int) -> int | None:
        return self.reqid_owner(reqid) if reqid else None


_K = TypeVar("_K")


def _remember(table: OrderedDict[_K, None], key: _K) -> None:
    table[key] = None
    while len(table) > RECENTLY_REMOVED:
        table.popitem(last=False)
