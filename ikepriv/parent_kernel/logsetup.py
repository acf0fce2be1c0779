"""Where the daemon's log lines go: syslog (daemon facility) or, for tests, stderr.

Negotiation errors and tunnel events go to syslog, as on AIX; every line about a tunnel
names its number. Text from the child is logged only after the IPC codec checked it is
printable (no forged line breaks), and marked as the child's ("[child] ...").

Every line goes through `LineRateLimit`: at most LINE_BURST lines of one call site (one
line of the source) per LINE_PERIOD seconds; what was held back is summed up in one line
per call site once its period is over. So no input, from the network or from the child,
can flood syslog with any line, including lines nobody thought of as reachable.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

LOGGER: Final = "ikepriv"
SYSLOG_SOCKET: Final = "/dev/log"
LINE_BURST: Final = 50
LINE_PERIOD: Final = 10.0
MAX_SITES: Final = 4096


@dataclass
class _Site:
    start: float
    fmt: str
    level: int
    lines: int = 0
    suppressed: int = 0


class LineRateLimit(logging.Filter):
    """At most `burst` records per call site and `period`; a summary for the rest."""

    def __init__(
        self,
        burst: int = LINE_BURST,
        period: float = LINE_PERIOD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst, self.period, self._clock = burst, period, clock
        self._sites: dict[tuple[str, int], _Site] = {}
        self._summarising = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self._summarising:
            return True
        now = self._clock()
        self._summaries(now, record.name)
        key = (record.pathname, record.lineno)
        site = self._sites.get(key)
        if site is None:
            if len(self._sites) >= MAX_SITES:
                self._sites.clear()
            site = self._sites[key] = _Site(now, str(record.msg), record.levelno)
        site.lines += 1
        if site.lines <= self.burst:
            return True
        site.suppressed += 1
        return False

    def _summaries(self, now: float, name: str) -> None:
        """Close the periods that ended: a summary line for each that suppressed lines."""
        for key, site in list(self._sites.items()):
            if now - site.start < self.period:
                continue
            del self._sites[key]
            if site.suppressed:
                self._summarising = True
                try:
                    logging.getLogger(name).log(
                        max(site.level, logging.WARNING),
                        "%d more lines like %r not logged in %.0f s",
                        site.suppressed, site.fmt, self.period,
                    )  # fmt: skip
                finally:
                    self._summarising = False


def setup(to_stderr: bool, debug: bool = False) -> logging.Logger:
    root = logging.getLogger(LOGGER)
    root.handlers.clear()
    root.propagate = False
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    handler: logging.Handler
    if not to_stderr and os.path.exists(SYSLOG_SOCKET):
        handler = logging.handlers.SysLogHandler(
            address=SYSLOG_SOCKET, facility=logging.handlers.SysLogHandler.LOG_DAEMON
        )
        handler.setFormatter(logging.Formatter("ikeprivd[%(process)d]: %(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s ikeprivd[%(process)d] %(levelname)s: %(message)s")
        )
    handler.addFilter(LineRateLimit())
    root.addHandler(handler)
    if not to_stderr and not isinstance(handler, logging.handlers.SysLogHandler):
        root.warning("no %s: logging to stderr", SYSLOG_SOCKET)
    return root
