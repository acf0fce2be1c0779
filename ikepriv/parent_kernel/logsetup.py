"""Where the daemon's log lines go: syslog (daemon facility) or, for tests, stderr.

Negotiation errors and tunnel events go to syslog, as on AIX; every line about a tunnel
names its number. Text from the child is logged only after the IPC codec checked it is
printable (no forged line breaks).
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Final

LOGGER: Final = "ikepriv"
SYSLOG_SOCKET: Final = "/dev/log"


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
    root.addHandler(handler)
    if not to_stderr and not isinstance(handler, logging.handlers.SysLogHandler):
        root.warning("no %s: logging to stderr", SYSLOG_SOCKET)
    return root
