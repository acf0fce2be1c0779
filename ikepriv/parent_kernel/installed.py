"""What the parent put into the kernel, for which tunnel: the only things it will delete.

The parent never flushes: on `remove`, on shutdown and on a child's Phase2Remove it
removes exactly the entries recorded here (installer.py is the only writer, of the kernel
and of these records). Inbound SPIs it allocated are recorded as larval SAs, so a child
can only fill an SPI the parent handed out for that same phase 2, and a reqid is bound to
the one phase 2 that first used it, so a child cannot attach one tunnel's traffic to
another tunnel's SAs. Every entry carries its `owner`, the negotiator child that asked for
it (daemon shards, 0 with one child): a child may fill, replace or remove only its own, and
counts per owner bound what one child may hold of the totals.

The tables keep their entries grouped (by phase 2, phase 1, tunnel, reqid; larval SAs
apart) as they change, so the questions the vetting asks per request (how many SAs has this
phase 2, which phase 2 owns this reqid) and the installer asks per removal are answered
from one group, not by a pass over every SA of every tunnel.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

from ikepriv.ipc.messages import PolicyDirection, SaDirection, TrafficSelector
from ikepriv.isakmp.constants import ProtocolId
from ikepriv.parent_kernel.kernel.specs import PolicySpec

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Bounds: a phase 2 has at most a few SAs at a time (in + out, AH + ESP, old + new during a
# rekey); anything above these numbers is a child gone wrong, not a busy gateway. The per
# phase 2 bounds count per (local, remote) subnet pair of the definition (vetting._bound).
# The totals let one daemon hold 10,000 tunnels (issue 11: 20,000 SAs and 30,000 policies,
# plus SAs in overlap during rekeys); 2048 policies used to stop it at 682 tunnels. Records
# are grouped tables (O(1) per change), about 1 kB each in the parent, and the state file
# (journal.py) stays under its MAX_FILE at these totals.
MAX_SAS_PER_PHASE2: Final = 32
MAX_LARVAL_PER_PHASE2: Final = 16
MAX_POLICIES_PER_PHASE2: Final = 8
MAX_SAS_TOTAL: Final = 32768
MAX_LARVAL_TOTAL: Final = 1024
MAX_POLICIES_TOTAL: Final = 32768
RECENTLY_REMOVED: Final = 1024
# vetted outbound halves waiting for their Phase2Commit (a Quick Mode round trip each)
MAX_PENDING_TOTAL: Final = 1024

SaKey = tuple[IPAddress, int, ProtocolId]  # destination, SPI, protocol: the kernel's SA id
PolicyKey = tuple[TrafficSelector, PolicyDirection]


@dataclass(slots=True)  # one per kernel SA: 20,000 at 10,000 tunnels
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
    owner: int = 0  # the negotiator child (shard) it was installed for

    @property
    def dst(self) -> IPAddress:
        return self.key[0]

    @property
    def spi(self) -> int:
        return self.key[1]

    @property
    def proto(self) -> ProtocolId:
        return self.key[2]


@dataclass(slots=True)
class PolicyEntry:
    key: PolicyKey
    phase2_number: int
    spec: PolicySpec
    reqid: int
    owner: int = 0


_P = TypeVar("_P")


@dataclass(frozen=True, slots=True)
class PendingHalf(Generic[_P]):
    """The outbound half of an install sent with inbound_first (installer.py): the whole
    install was vetted, its in/fwd policies and inbound SA are in the kernel and recorded;
    its outbound SA and out policy wait here for the child's Phase2Commit. Counted as one
    SA and one policy of its phase 2 and child against the caps while it waits. `plan` is
    the vetted install (vetting.Phase2Plan; the records only need the keys beside it)."""

    owner: int
    tunnel_id: int
    phase2_number: int
    inbound: SaKey
    outbound: SaKey
    plan: _P
    larval: SaEntry  # the larval record its inbound SA filled: an undo puts it back

    @property
    def key(self) -> tuple[int, int]:
        return (self.owner, self.tunnel_id)


_GK = TypeVar("_GK", bound=Hashable)
_GE = TypeVar("_GE")


class Grouped(dict[_GK, _GE], Generic[_GK, _GE]):
    """A dict that keeps its entries grouped by a few functions of them as they are set
    and removed (a function returning None leaves the entry out of that grouping). The
    entries are never changed in place (a changed record is set anew under its key), so
    the groups stay exact; every way of changing the dict goes through here."""

    __slots__ = ("_by", "_of")

    def __init__(self, **of: Callable[[_GE], Hashable | None]) -> None:
        super().__init__()
        self._of = of
        self._by: dict[str, dict[Hashable, dict[_GK, _GE]]] = {name: {} for name in of}

    def group(self, name: str, value: Hashable) -> Mapping[_GK, _GE]:
        """The entries whose `name` function gives `value`, in the order they joined the
        group (live: do not change the table while iterating over it)."""
        group = self._by[name].get(value)
        return group if group is not None else {}

    def _unindex(self, key: _GK) -> None:
        entry = dict.__getitem__(self, key)
        for name, of in self._of.items():
            value = of(entry)
            group = self._by[name].get(value) if value is not None else None
            if group is not None:
                group.pop(key, None)
                if not group:
                    del self._by[name][value]

    def __setitem__(self, key: _GK, entry: _GE) -> None:
        old = dict.get(self, key)
        super().__setitem__(key, entry)
        for name, of in self._of.items():
            value = of(entry)
            before = None if old is None else of(old)
            if before is not None and before != value:
                group = self._by[name][before]
                del group[key]
                if not group:
                    del self._by[name][before]
            if value is not None:  # in place when it stays in its group
                self._by[name].setdefault(value, {})[key] = entry

    def __delitem__(self, key: _GK) -> None:
        self._unindex(key)
        super().__delitem__(key)

    def pop(self, key: _GK, default: _GE | None = None) -> _GE | None:  # type: ignore[override]
        if key not in self:
            return default
        self._unindex(key)
        return super().pop(key)

    def popitem(self) -> tuple[_GK, _GE]:
        key, entry = next(reversed(self.items()))
        del self[key]
        return key, entry

    def clear(self) -> None:
        super().clear()
        for groups in self._by.values():
            groups.clear()

    def setdefault(self, key: _GK, default: _GE) -> _GE:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, other: Mapping[_GK, _GE]) -> None:  # type: ignore[override]
        for key, entry in other.items():
            self[key] = entry


def _sa_table() -> Grouped[SaKey, SaEntry]:
    return Grouped(
        phase2=lambda e: e.phase2_number,
        phase1=lambda e: None if e.larval else e.phase1_number,
        tunnel=lambda e: None if e.larval or e.tunnel_id is None else e.tunnel_id,
        reqid=lambda e: None if e.larval else e.reqid,
        larval=lambda e: True if e.larval else None,
        owner=lambda e: (e.owner, e.larval),
    )


def _policy_table() -> Grouped[PolicyKey, PolicyEntry]:
    return Grouped(phase2=lambda e: e.phase2_number, reqid=lambda e: e.reqid,
                   owner=lambda e: e.owner)  # fmt: skip


@dataclass
class Installed:
    sas: Grouped[SaKey, SaEntry] = field(default_factory=_sa_table)
    policies: Grouped[PolicyKey, PolicyEntry] = field(default_factory=_policy_table)
    _removed_sas: OrderedDict[SaKey, None] = field(default_factory=OrderedDict)
    _removed_policies: OrderedDict[PolicyKey, None] = field(default_factory=OrderedDict)
    # (owner, tunnel id) -> the outbound half of an inbound_first install, until committed
    pending: dict[tuple[int, int], PendingHalf[Any]] = field(default_factory=dict)
    _pending_by_inbound: dict[SaKey, tuple[int, int]] = field(default_factory=dict)
    _pending_outbound: set[SaKey] = field(default_factory=set)
    _pending_counts: dict[tuple[str, int], int] = field(default_factory=dict)

    # -- pending halves ------------------------------------------------------------------

    def add_pending(self, half: PendingHalf[Any]) -> None:
        self.pending[half.key] = half
        self._pending_by_inbound[half.inbound] = half.key
        self._pending_outbound.add(half.outbound)
        for group in (("phase2", half.phase2_number), ("owner", half.owner)):
            self._pending_counts[group] = self._pending_counts.get(group, 0) + 1

    def drop_pending(self, key: tuple[int, int]) -> PendingHalf[Any] | None:
        half = self.pending.pop(key, None)
        if half is None:
            return None
        del self._pending_by_inbound[half.inbound]
        self._pending_outbound.discard(half.outbound)
        for group in (("phase2", half.phase2_number), ("owner", half.owner)):
            left = self._pending_counts[group] - 1
            if left:
                self._pending_counts[group] = left
            else:
                del self._pending_counts[group]
        return half

    def pending_count(self, phase2: int | None = None, *, owner: int | None = None) -> int:
        """Pending halves (each one outbound SA and one out policy still to write)."""
        if phase2 is not None:
            return self._pending_counts.get(("phase2", phase2), 0)
        if owner is not None:
            return self._pending_counts.get(("owner", owner), 0)
        return len(self.pending)

    def pending_outbound(self, key: SaKey) -> bool:
        """An outbound SA some pending half will write."""
        return key in self._pending_outbound

    def pending_of_owner(self, owner: int) -> list[PendingHalf[Any]]:
        return [h for h in self.pending.values() if h.owner == owner]

    # -- counts --------------------------------------------------------------------------

    def sa_count(self, phase2: int | None = None, *, larval: bool | None = None) -> int:
        if phase2 is not None:  # one phase 2's few SAs (bounded per phase 2)
            return sum(1 for e in self.sas.group("phase2", phase2).values()
                       if larval is None or e.larval == larval)  # fmt: skip
        larvae = len(self.sas.group("larval", True))
        return len(self.sas) if larval is None else larvae if larval else len(self.sas) - larvae

    def policy_count(self, phase2: int | None = None) -> int:
        if phase2 is None:
            return len(self.policies)
        return len(self.policies.group("phase2", phase2))

    def owned_sas(self, owner: int, *, larval: bool) -> int:
        """SAs (larval or installed) recorded for one negotiator child."""
        return len(self.sas.group("owner", (owner, larval)))

    def owned_policies(self, owner: int) -> int:
        return len(self.policies.group("owner", owner))

    def sas_of_owner(self, owner: int) -> list[SaEntry]:
        """One negotiator child's installed (not larval) SAs."""
        return list(self.sas.group("owner", (owner, False)).values())

    # -- reqids --------------------------------------------------------------------------

    def reqid_owner(self, reqid: int) -> int | None:
        """The phase 2 a reqid is bound to (while it has an SA or policy), or None."""
        for sa in self.sas.group("reqid", reqid).values():
            return sa.phase2_number
        for pol in self.policies.group("reqid", reqid).values():
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
        """Forget an SA (and the pending outbound half of the install it is the inbound SA
        of: whatever removed the SA, expiry or `remove`, ended that install)."""
        entry = self.sas.pop(key, None)
        if entry is not None:
            _remember(self._removed_sas, key)
        half = self._pending_by_inbound.get(key)
        if half is not None:
            self.drop_pending(half)
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
        return list(self.sas.group("tunnel", tunnel_id).values())

    def sas_of_phase2(self, phase2: int) -> list[SaEntry]:
        return list(self.sas.group("phase2", phase2).values())

    def sas_of_phase1(self, phase1: int) -> list[SaEntry]:
        """The installed (not larval) SAs of a phase 1 definition's tunnels."""
        return list(self.sas.group("phase1", phase1).values())

    def policies_of_phase2(self, phase2: int) -> list[PolicyEntry]:
        return list(self.policies.group("phase2", phase2).values())

    def unused_policies(self, phase2: int, reqid: int) -> list[PolicyEntry]:
        """The policies of (phase2, reqid) when no live SA of that phase 2 uses the reqid."""
        if any(e.reqid == reqid and not e.larval
               for e in self.sas.group("phase2", phase2).values()):  # fmt: skip
            return []
        return [e for e in self.policies.group("phase2", phase2).values()
                if e.reqid == reqid]  # fmt: skip

    def larval(self) -> list[SaEntry]:
        return list(self.sas.group("larval", True).values())

    def phase2_for_reqid(self, reqid: int) -> int | None:
        return self.reqid_owner(reqid) if reqid else None


_K = TypeVar("_K")


def _remember(table: OrderedDict[_K, None], key: _K) -> None:
    table[key] = None
    while len(table) > RECENTLY_REMOVED:
        table.popitem(last=False)
