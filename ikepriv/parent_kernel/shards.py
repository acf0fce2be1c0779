"""Which negotiator child serves which peer: the daemon's shards.

ikeprivd runs several sandboxed negotiator children (`--children N`, by default one per
CPU up to DEFAULT_MAX_CHILDREN) so that negotiation uses every core. Every exchange of one
peer must meet the same child (it holds that peer's ISAKMP SAs), so the parent routes by
the peer's IP address alone (`Sharding.of_address`): a NAT-T port change does not move a
peer, and the function is fixed for the daemon's life (a keyless hash of the address
bytes, modulo the number of children). Keyless on purpose: the operator (and a test) can
tell which child serves a peer, and a key would not help against a network attacker, who
can send from addresses of every shard anyway (admission bounds each shard's queue as it
bounds the one child's).

Tunnel numbers and reqids are partitioned the same way by the child that allocates them
(process_contract.Partition, told in Hello): number n belongs to child (n - 1) % N, so
`remove numlist=` reaches the right child without asking any, and the vetting refuses a
number outside the asking child's class. With one child all of this is the identity: the
address is not even hashed.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from typing import Final

from ikepriv.ipc.messages import MAX_SHARDS
from ikepriv.process_contract import Partition, partition_owner

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_MAX_CHILDREN: Final = 8  # the default stops here; --children may go to MAX_SHARDS
ADDRESS_CACHE: Final = 4096  # peer addresses whose shard is remembered (a dict lookup)


def default_children() -> int:
    """One child per CPU this process may run on, at most DEFAULT_MAX_CHILDREN."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, DEFAULT_MAX_CHILDREN))


def check_children(count: int) -> int:
    """`count` if it is a usable number of children; ValueError otherwise."""
    if not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"children must be 1..{MAX_SHARDS}, not {count}")
    return count


@functools.lru_cache(maxsize=ADDRESS_CACHE)
def _address_hash(addr: IPAddress) -> int:
    return int.from_bytes(hashlib.blake2b(addr.packed, digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class Sharding:
    """The daemon's `count` children and the rules that route to them."""

    count: int = 1

    def of_address(self, addr: IPAddress) -> int:
        """The child that serves peer `addr` (the same for the daemon's whole life)."""
        return 0 if self.count == 1 else _address_hash(addr) % self.count

    def serves(self, child: int, addr: IPAddress) -> bool:
        return self.of_address(addr) == child

    def of_number(self, number: int) -> int:
        """The child whose class holds tunnel number (or reqid) `number`."""
        return partition_owner(number, self.count)

    def partition(self, child: int) -> Partition:
        return Partition(child, self.count)

    def share(self, total: int) -> int:
        """One child's share of a global bound (rounded up): what it may hold at most, so
        that no child can exhaust the others' room."""
        return -(-total // self.count)

    def label(self, child: int) -> str:
        """How the log names a child: as before with one, numbered from 1 with several."""
        return (
            "negotiator child" if self.count == 1 else f"negotiator child {child + 1}/{self.count}"
        )
