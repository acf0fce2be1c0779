"""Test launcher: a real ikeprivd whose negotiator is a command the test chooses.

    python tests/programs/ikeprivd_standin.py --child-cmd 'CMD {fd} ...' [ikeprivd options]

The production entry point (`ikeprivd`, ikepriv/cli/ikeprivd.py) has no such option: a
root daemon that runs any command line, unsandboxed, as its child is a test hook, so it
lives here and reaches the daemon through the Python API (parent_kernel/daemon.py
`Options.child_cmd`; "{fd}" becomes the IPC descriptor). Everything else is ikeprivd's own
command line and start-up, unchanged, except that it runs one child unless --children is
given: the test plays that child (with --children N it gets N connections, each told its
shard in Hello).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ikepriv.cli import ikeprivd
from ikepriv.parent_kernel import logsetup


def main(argv: list[str] | None = None) -> int:
    ours = argparse.ArgumentParser(prog="ikeprivd_standin", add_help=False)
    ours.add_argument("--child-cmd", required=True, help="the stand-in negotiator")
    mine, rest = ours.parse_known_args(argv)
    if not any(arg.startswith("--children") for arg in rest):
        rest = [*rest, "--children", "1"]
    args = ikeprivd._parser().parse_args(rest)
    log = logsetup.setup(args.log_stderr, args.debug)
    options = dataclasses.replace(ikeprivd.options_from(args), child_cmd=mine.child_cmd)
    return ikeprivd.run_daemon(options, log)


if __name__ == "__main__":
    sys.exit(main())
