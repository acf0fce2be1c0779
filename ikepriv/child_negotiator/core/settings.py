"""Tunables of the negotiation core, with the defaults used by the daemon.

Kept apart from the configuration snapshot: these bound resources and timing, they are not
per-tunnel policy. Tests shrink them; fuzzers keep them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Settings:
    # Retransmission: first resend after `retransmit_base` seconds, then multiplied by
    # `retransmit_factor`; after `retransmit_tries` resends the exchange fails.
    retransmit_base: float = 2.0
    retransmit_factor: float = 2.0
    retransmit_max_interval: float = 30.0
    retransmit_tries: int = 5
    # Half-open phase 1 exchanges (both roles): at most this many at once, none older.
    half_open_max: int = 256
    half_open_max_per_peer: int = 16
    half_open_max_age: float = 60.0
    # Responder exchanges started by a first message (MM1, AM1) whose peer has not yet
    # echoed our cookie: always admitted, evicting the oldest of the same source, else of
    # the same prefix (/24, /64), else of all (half_open.UnprovenTable). Such a peer gets
    # our reply once, and again only when it repeats its first message, at most
    # `unproven_repeats` times (no timer: a forged source gets no amplification).
    unproven_max: int = 4096
    unproven_max_per_source: int = 1024
    unproven_max_per_prefix: int = 2048
    unproven_repeats: int = 2
    # Aggressive Mode responder work (DH, SKEYID request) before any proof, as token
    # buckets (burst, per second) per source, per prefix and per definition; the
    # definition's rate stays well under the parent's SKEYID bucket (vetting.SKEYID_*), so
    # forged AM1 never use up what our own initiations and rekeys need from it.
    am_budget_source: tuple[float, float] = (4.0, 1.0)
    am_budget_prefix: tuple[float, float] = (8.0, 2.0)
    am_budget_definition: tuple[float, float] = (16.0, 6.0)
    am_budget_keys: int = 4096
    # Quick Mode: parallel exchanges per ISAKMP SA; an exchange older than this is dropped.
    quick_mode_max_parallel: int = 8
    quick_mode_max_age: float = 60.0
    # At most one unencrypted notify per peer address per period (answers to garbage).
    notify_period: float = 10.0
    notify_peers_tracked: int = 1024
    # Remembered finished message IDs per ISAKMP SA (late duplicates are recognised).
    finished_message_ids: int = 64
    # Requests to the parent awaiting their reply. The parent answers each one; the bound
    # only caps memory if it ever does not (the oldest is forgotten, and counted).
    max_pending_requests: int = 4096
    nonce_bytes: int = 32
    # Send each phase 1 key to the parent for its --keylog file (debugging; off by default).
    keylog: bool = False
    # Send phase 2 selectors as address ranges instead of host/subnet IDs (interop knob).
    qm_id_ranges: bool = False
    # Soft volume limit the kernel gets for an IPsec SA: hard * (1 - m), with m drawn per SA
    # from the injected random, uniformly in this range. Both peers' kernels count the same
    # bytes, so a fixed share would make both ask for a rekey at once (a collision). The
    # kernel's soft limit in seconds is drawn per SA too, after the core's own rekey time
    # (lifetimes.kernel_lifetimes).
    kernel_soft_volume_margin: tuple[float, float] = (0.05, 0.15)
    # Rekeying (lifetimes.py): a replacement starts at lifetime - margin - random(0, fuzz *
    # margin), the margin being the definition's rekey_margin (these two give the default
    # when a definition has none: at most `rekey_margin_fraction` of the lifetime), never
    # below rekey_overlap + rekey_retry, so two peers rarely start at once, the kernel's soft
    # expiry comes after ours and the old SA outlives the overlap.
    rekey_margin: float = 540.0
    rekey_margin_fraction: float = 0.1
    rekey_fuzz: float = 1.0
    # An SA replaced by a rekey is deleted this long after its successor is installed.
    rekey_overlap: float = 10.0
    # A rekey that has not produced a successor by then is started again.
    rekey_retry: float = 20.0
    # Our own clean-up of an expired IPsec SA runs this long after the kernel's hard expiry.
    hard_expiry_grace: float = 5.0
    # Restart after a dead peer (DPD action restart; dpd.py): phase 1 attempts in all, the
    # first included (Phase1Def carries no keying tries of its own, so this applies to every
    # definition). Between two attempts, `restart_backoff` seconds, doubled after each one,
    # at most `restart_backoff_max`. Each attempt itself retransmits as any exchange does.
    keying_tries: int = 3
    restart_backoff: float = 30.0
    restart_backoff_max: float = 300.0
    # IKE fragmentation (fragments.py): reassembly of one message takes at most
    # `fragment_max_count` fragments and `fragment_max_message` bytes, and is abandoned
    # `fragment_timeout` seconds after its first fragment (a slow drip keeps nothing alive).
    # First messages (responder cookie zero, no SA yet) reassemble in at most
    # `fragment_first_max` buffers, `fragment_first_per_source` per source address, the
    # oldest evicted; all buffers together hold at most `fragment_total_bytes`, first-message
    # buffers evicted before those of exchanges we hold.
    fragment_max_count: int = 32
    fragment_max_message: int = 16384
    fragment_timeout: float = 30.0
    fragment_first_max: int = 64
    fragment_first_per_source: int = 2
    fragment_total_bytes: int = 2 * 1024 * 1024
