"""`ikedb`: put, get and delete tunnel definitions, with AIX-like flags.

    ikedb -p FILE [-F] [-s]               put the definitions of a TOML file ('-': stdin)
    ikedb -g [-t phase1|phase2] [-n NAME] print definitions as TOML
    ikedb -d -t phase1|phase2 -n NAME     delete (a phase 1 takes its phase 2s along)
    ikedb --schema                        the file's fields, defaults, ranges and algorithm
                                          keywords as JSON (for user interfaces)
    -g --json          JSON instead of TOML, pre-shared keys left out ("psk_stored")
    -g --no-keys       TOML with the pre-shared keys left out (an export without secrets)
    -p --keep-keys     a PSK phase 1 without psk/psk_hex keeps the stored key of its name
    --db PATH                             database (default: $IKEPRIV_DB, else
                                          /var/lib/ikepriv/tunnels.db)

`-p` also checks the files of signature definitions (cert, key, ca, crl: they exist, are
regular, small, safely owned and moded, parse, and the key matches the certificate), so what
is stored is what the daemon can load (config/credentials.py).

User interfaces (deploy/cockpit) never need the keys back: they read with --json, write
with --keep-keys, so a key is entered, never shown.

Every mistake is one line on stderr and a non-zero exit: 1 for a refused request, 2 for a
command line that does not parse.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import NoReturn

from ikepriv.config.definition_schema import definition_schema
from ikepriv.config.errors import ConfigError
from ikepriv.config.loader import load_bytes
from ikepriv.config.model import Definitions, Phase1Definition
from ikepriv.config.store import DEFAULT_DB_PATH, TunnelDB, TunnelDBError
from ikepriv.config.writer import dump_definitions, phase1_table, phase2_table
from ikepriv.ipc.control import connect, control_call, control_path
from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.messages import DbChanged

PROG = "ikedb"
EXIT_REFUSED = 1
EXIT_USAGE = 2
MAX_INPUT_BYTES = 1 << 20
_TYPES = {"phase1": "phase1", "1": "phase1", "phase2": "phase2", "2": "phase2"}


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line, not usage plus a message."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser() -> _Parser:
    p = _Parser(prog=PROG, description="Put, get and delete IKE tunnel definitions.")
    action = p.add_mutually_exclusive_group()
    action.add_argument("-p", metavar="FILE", dest="put", help="put definitions from FILE")
    action.add_argument("-g", action="store_true", dest="get", help="get definitions as TOML")
    action.add_argument("-d", action="store_true", dest="delete", help="delete a definition")
    action.add_argument(
        "--schema", action="store_true", help="print the fields, ranges and keywords as JSON"
    )
    p.add_argument("-F", action="store_true", dest="force", help="with -p: overwrite")
    p.add_argument("-s", action="store_true", dest="swap", help="with -p: swap local/remote")
    p.add_argument("-t", dest="type", metavar="TYPE", help="phase1 or phase2")
    p.add_argument("-n", dest="name", metavar="NAME", help="definition name")
    p.add_argument("--json", action="store_true", help="with -g: JSON, keys left out")
    p.add_argument("--no-keys", action="store_true", help="with -g: leave the keys out")
    p.add_argument(
        "--keep-keys",
        action="store_true",
        help="with -p: a PSK phase 1 without a key keeps its own",
    )
    p.add_argument("--db", metavar="PATH", help="database file")
    return p


def _fail(message: str, code: int = EXIT_REFUSED) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


def _check_usage(args: argparse.Namespace) -> None:
    if not (args.put or args.get or args.delete or args.schema):
        raise _UsageError("give one of -p FILE, -g, -d or --schema (see ikedb -h)")
    if not args.get and (args.json or args.no_keys):
        raise _UsageError("--json and --no-keys go with -g")
    if args.put is None and args.keep_keys:
        raise _UsageError("--keep-keys goes with -p")
    if args.type is not None:
        if args.type not in _TYPES:
            raise _UsageError(f"-t {args.type}: expected phase1 or phase2")
        args.type = _TYPES[args.type]
    if args.put is not None and (args.type or args.name):
        raise _UsageError("-t and -n go with -g and -d, not with -p")
    if args.put is None and (args.force or args.swap):
        raise _UsageError("-F and -s go with -p")
    if args.delete and not (args.type and args.name):
        raise _UsageError("-d needs -t phase1|phase2 and -n NAME")
    if args.get and args.name and not args.type:
        raise _UsageError("-n needs -t phase1|phase2")


def _read_input(source: str) -> tuple[bytes, str]:
    if source == "-":
        return sys.stdin.buffer.read(MAX_INPUT_BYTES + 1), "<stdin>"
    with open(source, "rb") as f:
        return f.read(MAX_INPUT_BYTES + 1), source


def _notify_daemon() -> None:
    """Tell a running daemon (at $IKEPRIV_CONTROL) to reload now, so an `ike cmd=activate`
    right after `ikedb -p` finds the new definitions; without a daemon there is nothing to do
    (it reads the database when it starts, and polls it while it runs)."""
    try:
        with connect(control_path(), timeout=5.0) as sock:
            control_call(sock, DbChanged())
    except (OSError, IpcError):
        pass


def _put(db_path: str, args: argparse.Namespace) -> int:
    data, display = _read_input(args.put)
    existing: TunnelDB | None = None
    if os.path.lexists(db_path):  # validate against stored phase 1s; create nothing yet
        existing = TunnelDB(db_path, create=False)

    def known(name: str) -> Phase1Definition | None:
        return existing.phase1(name) if existing is not None else None

    try:
        defs = load_bytes(
            data,
            display,
            swap=args.swap,
            known_phase1=known,
            check_files=True,
            keep_keys=args.keep_keys,
        )
    finally:
        if existing is not None:
            existing.close()
    with TunnelDB(db_path) as db:
        stored = db.put(defs, force=args.force)
    for d1 in stored.phase1:
        print(f"phase1 '{d1.name}' stored as number {d1.number}")
    for d2 in stored.phase2:
        print(f"phase2 '{d2.name}' stored as number {d2.number}")
    _notify_daemon()
    return 0


def _get(db_path: str, args: argparse.Namespace) -> int:
    with TunnelDB(db_path, create=False, readonly=True) as db:
        if args.name is not None:
            found = db.phase1(args.name) if args.type == "phase1" else db.phase2(args.name)
            if found is None:
                return _fail(f"no {args.type} definition named '{args.name}'")
            defs = (
                Definitions(phase1=(found,))
                if isinstance(found, Phase1Definition)
                else Definitions(phase2=(found,))
            )
        else:
            defs = Definitions(
                db.phase1_definitions() if args.type in (None, "phase1") else (),
                db.phase2_definitions() if args.type in (None, "phase2") else (),
            )
    if args.json:
        sys.stdout.write(_json(defs))
    else:
        sys.stdout.write(dump_definitions(defs, without_keys=args.no_keys))
    return 0


def _json(defs: Definitions) -> str:
    """The tables `-g` prints, with their numbers, as one JSON document; the pre-shared
    key is never in it, only whether one is stored."""
    return (
        json.dumps(
            {
                "phase1": [
                    {
                        "number": d.number,
                        **phase1_table(d, without_keys=True),
                        "psk_stored": d.psk is not None,
                    }
                    for d in defs.phase1
                ],
                "phase2": [{"number": d.number, **phase2_table(d)} for d in defs.phase2],
            },
            indent=1,
        )
        + "\n"
    )


def _delete(db_path: str, args: argparse.Namespace) -> int:
    with TunnelDB(db_path, create=False) as db:
        if args.type == "phase1":
            count = db.delete_phase1(args.name)
            print(f"deleted phase1 '{args.name}' and {count} phase2 definition(s)")
        else:
            db.delete_phase2(args.name)
            print(f"deleted phase2 '{args.name}'")
    _notify_daemon()
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        _check_usage(args)
    except _UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if args.schema:  # no database, no secret: any user may ask
        sys.stdout.write(json.dumps(definition_schema(), indent=1) + "\n")
        return 0
    if os.geteuid() != 0:
        return _fail("must be run as root (the database holds pre-shared keys)")
    db_path = args.db or os.environ.get("IKEPRIV_DB") or DEFAULT_DB_PATH
    try:
        if args.put is not None:
            return _put(db_path, args)
        if args.get:
            return _get(db_path, args)
        return _delete(db_path, args)
    except ConfigError as exc:
        for line in exc.lines():
            print(f"{PROG}: {line}", file=sys.stderr)
        return EXIT_REFUSED
    except TunnelDBError as exc:
        return _fail(str(exc))
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the promise is one line, never a traceback
        return _fail(f"internal error: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
