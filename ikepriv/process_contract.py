"""What the root parent and the sandboxed child must agree on besides the IPC schema.

Both processes import this module and nothing of each other: the parent never loads the
child's sandbox code (libc through ctypes, prctl, seccomp, Landlock), and the parent's
vetting never imports a dataclass internal to the negotiation core. Three things live here:

* where and as whom the child runs: the chroot directory (checked by both: the parent
  creates it, the child refuses anything but an empty root-owned directory) and the
  candidate user names;
* the module the parent executes as the child;
* how the children of one daemon share the tunnel-number and reqid space (`Partition`:
  child k of N uses the numbers n with n % N == (k + 1) % N; the child numbers its
  tunnels so, the parent refuses any other);
* the counters the core keeps (and its per-definition tally of rekeys and DPD failures,
  DefinitionTally). Their field names are the names `ike cmd=list stats` shows
  (the Stats message carries them; the parent accepts exactly these names), so renaming one
  changes what operators and scripts read. Every path that drops a datagram or a reply
  increments exactly one drop counter, so a hostile input always leaves a trace even when
  the core stays silent on the wire.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields
from typing import Final

from ikepriv.ipc.messages import (
    MAX_DEFINITION_COUNTS,
    CounterValue,
    DefinitionCounts,
    Phase,
    Stats,
)

COUNTER_MAX: Final = (1 << 64) - 1
NUMBER_TOP: Final = 0xFFFFFFFF  # tunnel numbers and reqids are 32 bits, 0 unused


@dataclass(frozen=True, slots=True)
class Partition:
    """The residue class of tunnel numbers and reqids of negotiator child `shard` of
    `shards` (Hello.shard/.shards): unique across the children with no coordination, and
    with one child (shards 1) every number, as before there were several."""

    shard: int = 0
    shards: int = 1

    def owns(self, number: int) -> bool:
        return 0 < number <= NUMBER_TOP and (number - 1) % self.shards == self.shard

    def first(self) -> int:
        return self.shard + 1

    def at_or_after(self, number: int) -> int:
        """The smallest number of the class at or after `number` (wrapping past the top
        to the first)."""
        if number < 1:
            return self.first()
        found = number + (self.shard - (number - 1)) % self.shards
        return found if found <= NUMBER_TOP else self.first()

    def after(self, number: int) -> int:
        """The next number of the class after `number` (wrapping)."""
        return self.at_or_after(number + 1)


def partition_owner(number: int, shards: int) -> int:
    """The child whose class holds `number` (a tunnel number the operator gave)."""
    return (number - 1) % shards


DEFAULT_CHROOT_DIR: Final = "/var/empty/ikepriv"
DEFAULT_USERS: Final = ("ikepriv", "nobody")  # the first that exists runs the child
CHILD_MODULE: Final = "ikepriv.child_negotiator.process.main"


class ChrootDirError(ValueError):
    """The child's root directory is not an empty, root-owned, unwritable directory."""


def check_chroot_dir(path: str) -> None:
    """The one rule for the child's root: a directory owned by root, not writable by group
    or others, and empty (so nothing inside the sandbox can be read or replaced)."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        raise ChrootDirError(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISDIR(st.st_mode):
        raise ChrootDirError(f"{path} is not a directory")
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise ChrootDirError(f"{path} must be owned by root and not group/other-writable")
    if os.listdir(path):
        raise ChrootDirError(f"{path} is not empty")


def ensure_empty_root_dir(path: str = DEFAULT_CHROOT_DIR) -> None:
    """For the parent: create ``path`` (root, 0755) if missing; it must end up empty."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    os.chown(path, 0, 0)
    os.chmod(path, 0o755)  # noqa: S103 -- a directory everybody may traverse, none write
    check_chroot_dir(path)


@dataclass(slots=True)
class Counters:
    datagrams_in: int = 0
    dropped_malformed: int = 0  # codec rejected the bytes (or the decrypted chain)
    dropped_replay: int = 0  # a message already seen, or late for a finished step
    dropped_unexpected: int = 0  # well-formed but not what the exchange's state waits for
    dropped_unknown_sa: int = 0  # cookies or message ID of no exchange we hold
    dropped_half_open: int = 0  # phase 1 table full
    dropped_auth: int = 0  # HASH or decryption check failed
    dropped_policy: int = 0  # proposal, ID or selector outside the definition
    dropped_clear_informational: int = 0  # unencrypted informational after phase 1
    dropped_stale_reply: int = 0  # parent reply for a request nobody waits for
    duplicates_answered: int = 0  # a repeated message answered with our last reply
    retransmits: int = 0  # timer-driven resends
    exchanges_timed_out: int = 0
    half_open_expired: int = 0
    half_open_evicted: int = 0  # unproven responder exchange pushed out by a newer one
    dropped_work_budget: int = 0  # first message needing work before proof, over budget
    notifies_sent: int = 0
    notifies_suppressed: int = 0  # rate limit on unencrypted notifies
    deletes_received: int = 0
    deletes_unknown: int = 0  # Delete naming an SA the peer does not own (or gone)
    phase1_established: int = 0
    phase1_failed: int = 0
    phase2_established: int = 0
    phase2_failed: int = 0
    parent_errors: int = 0  # requests the parent refused
    requests_abandoned: int = 0  # parent requests forgotten unanswered (table bound)
    # dead peer detection (dpd.py)
    dpd_probes_sent: int = 0  # R-U-THERE we sent
    dpd_acks_received: int = 0  # R-U-THERE-ACK matching an outstanding probe
    dpd_acks_sent: int = 0  # answers to the peer's R-U-THERE
    dpd_dead_peers: int = 0  # peers declared dead
    dpd_restarts: int = 0  # phase 1 attempts made to restart after a dead peer
    # rekeying (rekey.py)
    phase1_rekeys: int = 0  # replacement phase 1 exchanges we started
    phase2_rekeys: int = 0  # replacement Quick Modes we started
    rekey_collisions: int = 0  # both peers rekeyed at once (either phase); one SA retired
    phase1_parallel: int = 0  # the peer opened ISAKMP SAs at once (no collision); one kept for us
    log_lines_suppressed: int = 0  # lines about unauthenticated first messages left out
    flood_initiations: int = 0  # phase 1 we started because the peer's first messages drowned
    # IKE fragmentation (fragments.py)
    fragments_received: int = 0  # fragments for an exchange we hold or a first message we answer
    fragments_dropped: int = 0  # malformed, unwanted (no SA, not accepted) or over a limit
    fragments_duplicate: int = 0  # a fragment number already held
    fragments_abandoned: int = 0  # partial messages timed out or replaced by a new fragment ID
    fragments_evicted: int = 0  # partial messages pushed out by the buffer bounds
    fragments_reassembled: int = 0  # whole messages rebuilt from fragments
    fragments_sent: int = 0  # fragment datagrams we sent (first transmissions)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def stats(self, request_id: int, tally: DefinitionTally | None = None) -> Stats:
        """Every counter, in field order, for the parent (values held to 64 bits), and the
        per-definition tally."""
        return Stats(
            request_id,
            tuple(CounterValue(f.name, min(getattr(self, f.name), COUNTER_MAX))
                  for f in fields(self)),
            tally.entries() if tally is not None else (),
        )  # fmt: skip


_REKEYS, _DPD_FAILURES = 0, 1


@dataclass(slots=True)
class DefinitionTally:
    """Rekeys and DPD failures per tunnel definition, (phase, number) -> [rekeys, dpd].

    The same events as Counters.phase1_rekeys / phase2_rekeys / dpd_dead_peers, counted
    again under the definition they belong to. An entry exists only once something
    happened, only for a definition of the current configuration (`forget_except` drops
    the others at a reload), and at most MAX_DEFINITION_COUNTS of them (an event of a
    further definition is counted daemon-wide only, and in `untallied`)."""

    counts: dict[tuple[Phase, int], list[int]] = field(default_factory=dict)
    untallied: int = 0

    def rekey(self, phase: Phase, number: int) -> None:
        self._bump(phase, number, _REKEYS)

    def dpd_failure(self, phase1_number: int) -> None:
        self._bump(Phase.PHASE1, phase1_number, _DPD_FAILURES)

    def _bump(self, phase: Phase, number: int, index: int) -> None:
        entry = self.counts.get((phase, number))
        if entry is None:
            if len(self.counts) >= MAX_DEFINITION_COUNTS:
                self.untallied += 1
                return
            entry = self.counts[(phase, number)] = [0, 0]
        entry[index] = min(entry[index] + 1, COUNTER_MAX)

    def forget_except(self, phase1: Collection[int], phase2: Collection[int]) -> None:
        """Keep only the definitions of the new configuration."""
        for phase, number in list(self.counts):
            if number not in (phase1 if phase is Phase.PHASE1 else phase2):
                del self.counts[(phase, number)]

    def get(self, phase: Phase, number: int) -> tuple[int, int]:
        """(rekeys, dpd failures) of one definition."""
        entry = self.counts.get((phase, number), [0, 0])
        return entry[_REKEYS], entry[_DPD_FAILURES]

    def entries(self) -> tuple[DefinitionCounts, ...]:
        """The tally for Stats, in (phase, number) order."""
        return tuple(DefinitionCounts(phase, number, *self.counts[(phase, number)])
                     for phase, number in sorted(self.counts))  # fmt: skip


COUNTER_NAMES: Final = frozenset(f.name for f in fields(Counters))
"""The names a Stats message may carry: the parent's allowlist."""
