"""`ikeprivd`: the ikepriv keying daemon (the privileged parent).

    ikeprivd [--db PATH] [--control PATH] [--chroot DIR] [--user NAME]... [--keylog FILE]
             [--children N] [--foreground] [--log-stderr] [--debug]

One daemon per network namespace: give each its own --control socket (and usually its
own --db); `ike` and `ikedb` find the socket through $IKEPRIV_CONTROL. The daemon always
runs in the foreground (systemd Type=notify: it sends READY=1 over $NOTIFY_SOCKET);
--foreground is accepted for clarity. Exit status: 0 after a clean shutdown, 1 when it
cannot start (the reason is logged), 2 for a command line that does not parse. Without a
database at --db it creates an empty one (0600, in a 0700 directory) and waits: `ikedb -p`
then loads definitions and the daemon reloads them (it also reloads on SIGHUP).

--children N: how many sandboxed negotiator processes share the peers (by peer address;
default one per CPU, at most 8; 1 is the single negotiator of earlier versions).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import trio

from ikepriv.config.store import DEFAULT_DB_PATH, TunnelDB, TunnelDBError
from ikepriv.ipc.control import CONTROL_PATH_ENV, DEFAULT_CONTROL_PATH
from ikepriv.parent_kernel import logsetup
from ikepriv.parent_kernel.daemon import Daemon, Options
from ikepriv.parent_kernel.kernel.specs import XfrmError
from ikepriv.parent_kernel.shards import check_children, default_children
from ikepriv.process_contract import DEFAULT_CHROOT_DIR, DEFAULT_USERS

DB_ENV = "IKEPRIV_DB"


def _parser() -> argparse.ArgumentParser:
    # no abbreviations: an option is named in full or refused (`--child` is no --children)
    p = argparse.ArgumentParser(
        prog="ikeprivd", description="ikepriv IKEv1 keying daemon", allow_abbrev=False
    )
    p.add_argument(
        "--db",
        default=os.environ.get(DB_ENV, DEFAULT_DB_PATH),
        help=f"tunnel definition database (default ${DB_ENV} or {DEFAULT_DB_PATH})",
    )
    p.add_argument(
        "--control",
        default=os.environ.get(CONTROL_PATH_ENV, DEFAULT_CONTROL_PATH),
        help=f"control socket (default ${CONTROL_PATH_ENV} or {DEFAULT_CONTROL_PATH})",
    )
    p.add_argument(
        "--chroot", default=DEFAULT_CHROOT_DIR, help="empty directory the negotiator is locked into"
    )
    p.add_argument(
        "--user",
        action="append",
        help="unprivileged user for the negotiator (repeatable, first that exists)",
    )
    p.add_argument(
        "--keylog",
        metavar="FILE",
        help="DEBUG ONLY: write IKE and ESP keys for Wireshark to FILE(.esp_sa)",
    )
    p.add_argument(
        "--children",
        type=_children,
        default=default_children(),
        metavar="N",
        help="negotiator processes, peers shared among them by address (default one per "
        "CPU, at most 8)",
    )
    p.add_argument("--foreground", action="store_true", help="run in the foreground (always)")
    p.add_argument("--log-stderr", action="store_true", help="log to stderr instead of syslog")
    p.add_argument("--debug", action="store_true", help="log debug messages too")
    return p  # fmt: skip


def _children(text: str) -> int:
    try:
        return check_children(int(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def options_from(args: argparse.Namespace) -> Options:
    """The daemon's options from a parsed command line. The negotiator is always the
    sandboxed child module: no option names another program for root to run unsandboxed
    (tests stand in for the child through the Python API: tests/programs/ikeprivd_standin.py)."""
    return Options(
        db=args.db,
        control=args.control,
        chroot=args.chroot,
        users=tuple(args.user) if args.user else DEFAULT_USERS,
        keylog=args.keylog,
        children=args.children,
    )


def run_daemon(options: Options, log: logging.Logger) -> int:
    """Create the database if missing, start the daemon and run it until it stops."""
    if os.geteuid() != 0:
        print("ikeprivd: must run as root", file=sys.stderr)
        return 1
    try:
        if not os.path.lexists(options.db):  # a fresh install: start empty, wait for `ikedb -p`
            TunnelDB(options.db, create=True).close()  # 0600, its directory made 0700
            log.info("created an empty tunnel database %s", options.db)
        daemon = Daemon(options)
    except (OSError, TunnelDBError, XfrmError) as exc:
        log.error("cannot start: %s", exc)
        print(f"ikeprivd: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        trio.run(daemon.run)
    except KeyboardInterrupt:
        pass
    logging.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    log = logsetup.setup(args.log_stderr, args.debug)
    return run_daemon(options_from(args), log)


if __name__ == "__main__":
    sys.exit(main())
