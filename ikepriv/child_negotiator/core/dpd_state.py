"""What dead peer detection keeps between events: the probe state of one ISAKMP SA and
a phase 1 being restarted after its peer died. Records only; dpd.py holds the logic.

Apart from dpd.py so that the SA records (sa_table.IsakmpSa.dpd) and the engine's table
of restarts can name these types without importing the DPD logic, which sits above them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ikepriv.child_negotiator.core.datagram import IPAddress


@dataclass(slots=True)
class DpdState:
    enabled: bool  # we probe (definition wants it and the peer announced DPD)
    delay: float
    timeout: float
    last_heard: float
    next_seq: int
    outstanding: list[int] = field(default_factory=list)
    series_start: float = 0.0  # first unanswered probe (0: none)
    last_sent: float = 0.0
    peer_seq: int | None = None  # last R-U-THERE accepted from the peer

    @property
    def interval(self) -> float:
        return max(1.0, min(self.delay, self.timeout / 3))


@dataclass(slots=True)
class Restart:
    """A phase 1 being brought back after its peer died (action RESTART), one per phase 1
    definition (so the table is as small as the configuration)."""

    number: int
    name: str
    local: IPAddress
    peer: IPAddress
    phase2: tuple[int, ...]  # the phase 2 definitions that were up, to start again
    attempts: int = 0
    tunnel_id: int = 0  # the ISAKMP SA of the running attempt (0: none)
    next_at: float = 0.0  # when the next attempt starts (0: one is running)
