"""Bounded logging of what the child or the network can cause at will.

Every log line a hostile child (Log messages, refused requests, unsolicited reports) or a
peer flooding UDP (messages dropped for a lagging child) can trigger goes through a
`RateLimit`, so neither can fill syslog or the disk; what was held back is counted and
summed up in one line when the next period starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("ikepriv.parent")

LOG_BURST: Final = 100
LOG_PERIOD: Final = 10.0


@dataclass
class RateLimit:
    """At most `burst` log lines per `period`; the rest are counted and summarised."""

    what: str = "refusals"
    burst: int = LOG_BURST
    period: float = LOG_PERIOD
    _start: float = 0.0
    _count: int = 0
    _suppressed: int = 0

    def allow(self, now: float) -> bool:
        if now - self._start >= self.period:
            if self._suppressed:
                log.warning("%d more %s not logged", self._suppressed, self.what)
            self._start, self._count, self._suppressed = now, 0, 0
        self._count += 1
        if self._count > self.burst:
            self._suppressed += 1
            return False
        return True
