"""One shared object per equal value among the parts of definitions that repeat.

A gateway with thousands of phase 2 definitions repeats the same few subnets (its own LAN on
every one), ports and proposal lists: parsed or decoded one by one, each definition carries
its own copies, about 1.2 kB of ipaddress and proposal objects per definition in every
process that holds the definitions (the parent and each negotiator child: 12 MB per process
at 10,000 definitions). The values are immutable and compared by value, so sharing one
instance changes nothing but the memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import TypeVar, cast

from ikepriv.ipc.messages import Phase2Def

_H = TypeVar("_H", bound=Hashable)


class Interner:
    """Hands out the first instance seen of each equal value; lives as long as one load
    (a snapshot or a database read), so it never outgrows the definitions themselves. With
    a `limit` it may live longer (the negotiator's, for values of established SAs): once it
    holds `limit` values, others are handed back as they are, unshared."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int | None = None) -> None:
        self._seen: dict[Hashable, Hashable] = {}
        self._limit = limit

    def one(self, value: _H) -> _H:
        seen = self._seen
        if self._limit is not None and len(seen) >= self._limit:
            return cast(_H, seen.get(value, value))
        return cast(_H, seen.setdefault(value, value))

    def __len__(self) -> int:
        return len(self._seen)

    def phase2(self, d: Phase2Def) -> Phase2Def:
        """`d` with its selectors and proposals shared with equal ones seen before."""
        return dataclasses.replace(
            d,
            local=self.one(d.local),
            remote=self.one(d.remote),
            proposals=self.one(d.proposals),
            extra_local=self.one(d.extra_local),
            extra_remote=self.one(d.extra_remote),
        )
