"""The negotiator child: `python -m ikepriv.child_negotiator.process.main --fd N`.

Started by the parent with the IPC socketpair as descriptor N (see supervisor.py). Order
matters (sandbox.py): import everything, prepare() the sandbox, start trio, wrap the
socket, enter() the sandbox, and only then read the first message. From there on the
loop is thin: each parent message goes to the sans-I/O Negotiator, each action it returns
goes back to the parent, and the Negotiator's next deadline bounds the wait.

The core answers Hello with Ready and builds its configuration from the ConfigBegin..End
sequence itself. A message the child cannot decode ends the child (the parent restarts
it): the parent is trusted, so garbage means a bug, and starting clean is the safe answer.
"""

from __future__ import annotations

import argparse
import math
import secrets
import socket
import sys
import time

import trio

from ikepriv import process_contract
from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.settings import Settings
from ikepriv.child_negotiator.process import sandbox, warmup
from ikepriv.ipc.framing import receive_ready, send_ready
from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.messages import Shutdown
from ikepriv.ipc.schema import Direction, encode

EXIT_IPC_ERROR = 65  # EX_DATAERR
RECEIVE_BATCH = 64  # parent messages handled per wake-up before the timers get a turn


def _deadline_to_trio(deadline: float | None) -> float:
    """The core works on time.monotonic(); trio's clock has another origin."""
    if deadline is None:
        return math.inf
    return trio.current_time() + max(0.0, deadline - time.monotonic())


async def serve(sock: socket.socket, core: Negotiator) -> None:
    """Feed the core every message the parent queued, one wake-up for all (at most
    RECEIVE_BATCH), and send its answers at once, each after the message that caused it.
    Plain non-blocking calls on the socket (framing.receive_ready, send_ready): trio's
    socket wrappers yield to the scheduler after every call, which was a sixth of this
    loop's time; trio is only asked to wait, for the socket or the core's next deadline."""
    deadline = core.next_deadline()
    while True:
        if deadline is None:
            await trio.lowlevel.wait_readable(sock)
        else:
            with trio.move_on_at(_deadline_to_trio(deadline)):
                await trio.lowlevel.wait_readable(sock)
        for message in receive_ready(sock, Direction.PARENT_TO_CHILD, RECEIVE_BATCH):
            if message is None:
                return  # the parent closed the channel
            now = time.monotonic()
            for action in core.handle(message, now):
                await send_ready(sock, encode(action))
            if isinstance(message, Shutdown):
                return
        now = time.monotonic()
        deadline = core.next_deadline()
        if deadline is not None and deadline <= now:
            for action in core.handle_timers(now):
                await send_ready(sock, encode(action))
            deadline = core.next_deadline()


async def _main(prepared: sandbox.Prepared, keylog: bool) -> None:
    # non-blocking (serve never waits in a system call, only in trio's epoll): an fcntl the
    # filter would still allow, but it belongs with the set-up, before the sandbox
    sock = socket.socket(fileno=prepared.config.ipc_fd)
    sock.setblocking(False)
    try:
        sandbox.enter(prepared)
    except sandbox.SandboxError as exc:
        sandbox.fail_closed(exc)
    now = time.monotonic()
    core = Negotiator(
        None,
        now,
        secrets.token_bytes,
        settings=Settings(keylog=keylog),
        wall_clock_offset=time.time() - now,
        wall_clock=time.time,  # certificate validity: the real date, not the monotonic one
    )
    await serve(sock, core)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ikepriv-child", description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="IPC socket descriptor")
    parser.add_argument("--chroot", default=process_contract.DEFAULT_CHROOT_DIR)
    parser.add_argument("--user", action="append", help="unprivileged user (repeatable)")
    parser.add_argument("--keylog", action="store_true", help="send phase 1 keys for --keylog")
    args = parser.parse_args(argv)
    config = sandbox.SandboxConfig(
        ipc_fd=args.fd,
        chroot_dir=args.chroot,
        users=tuple(args.user) if args.user else process_contract.DEFAULT_USERS,
    )
    warmup.warm_up()  # lazy imports must happen now, not under the filter
    warmup.warm_up_certificates()  # the same for X.509 and signature verification
    try:
        prepared = sandbox.prepare(config)
    except sandbox.SandboxError as exc:
        sandbox.fail_closed(exc)
    try:
        trio.run(_main, prepared, args.keylog)
    except OSError as exc:  # the channel broke: the parent is gone or restarting us
        print(f"ikepriv-child: {exc}", file=sys.stderr)
        return 1
    except IpcError as exc:
        print(f"ikepriv-child: undecodable message from the parent: {exc}", file=sys.stderr)
        return EXIT_IPC_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
