"""Starting, watching and restarting the negotiator child.

The child is started by fork+exec with the socketpair as its only inherited descriptor
besides stdio (stdin and stdout /dev/null, stderr a pipe whose lines go to the log: never
a regular file, which the sandbox refuses). It must answer Hello with Ready before
anything else; after that the daemon's `on_ready` sends the configuration.

A child that exits, stops answering the handshake or breaks the protocol (`violation()`)
is killed and started again after a back-off (a child that closed its end is given
EXIT_GRACE to exit by itself, so the log says how it ended, not that we killed it; only a
real violation is logged as one): 0.1 s at first, doubling up to 10 s, back to
the start once a child has run for a minute. SAs in the kernel are untouched by all this.

The daemon runs one Supervisor per negotiator child (shards.py): each has its own
socketpair, process (sandbox and seccomp filter of its own), queue and back-off, so one
child's crash, violation or lag touches only its own shard. Hello tells the child which
one it is (`shard` of `shards`), which fixes the tunnel numbers and reqids it may use.

Sending never blocks the parent: a message goes straight to the socket (non-blocking) when
nothing waits before it, else through a queue to a sender task, bounded in messages (QUEUE)
and in bytes (QUEUE_BYTES, counted as encoded); a child that does not read
loses messages (logged, rate-limited), the parent keeps serving the peers. The one exception
is a configuration snapshot (`send_snapshot`), which must arrive whole: with certificate
files it can be larger than the queue, so it waits for the sender, for a bounded time.
"""

from __future__ import annotations

import array
import fcntl
import logging
import os
import signal
import socket
import subprocess
import termios
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import trio

from ikepriv.ipc import messages as m
from ikepriv.ipc.framing import (
    receive_ready,
    recv_message_trio,
    send_message_trio,
    send_nowait,
    send_ready,
    socketpair,
)
from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.schema import Direction, Message, encode
from ikepriv.parent_kernel.ratelimit import RateLimit

log = logging.getLogger("ikepriv.parent")

BACKOFF_FIRST: Final = 0.1
BACKOFF_MAX: Final = 10.0
STABLE_AFTER: Final = 60.0
READY_TIMEOUT: Final = 60.0
EXIT_GRACE: Final = 1.0
QUEUE: Final = 1024
QUEUE_BYTES: Final = 1 << 20  # encoded bytes waiting for the child, at most
# Answers to the child's own requests and the kernel's SA expiries may use as much again:
# a dropped answer fails an exchange the child already paid for (it waits for it, then
# gives up), a dropped expiry leaves an SA to die without a successor. Both are bounded
# without this limit (answers by the requests the parent read under the child's budgets,
# expiries by the SAs it installed); datagrams from peers are what a lagging child loses.
MUST_DELIVER: Final = frozenset({m.SkeyidReply, m.SignatureReply, m.NonceReply, m.SpiReply,
                                 m.ResultReply, m.KernelExpire})  # fmt: skip
# what the kernel charges a socket for one queued message of a few hundred bytes (skb
# truesize; an MM1 of 300-600 bytes: 1280): converts SIOCOUTQ bytes to messages
MESSAGE_TRUESIZE: Final = 1280
RECEIVE_BATCH: Final = 64  # child messages handled per wake-up before others get a turn
SNAPSHOT_TIMEOUT: Final = 30.0  # a child that reads nothing for this long gets no snapshot
MAX_STDERR_LINE: Final = 1024
MAX_STDERR_LINES: Final = 200  # per child: a crash traceback fits, a flood does not
CHILD_ENV: Final = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}

CommandFactory = Callable[[int], Sequence[str]]
MessageHandler = Callable[[Message], Awaitable[None]]


class ChildProcess:
    """The child, forked from the main thread.

    Not trio.lowlevel.open_process: that forks from a worker thread, and the child's
    parent-death signal (PR_SET_PDEATHSIG) fires when the *thread* that forked it exits,
    which trio's thread cache does after 10 idle seconds. Fork+exec here is quick; the
    exit is awaited through a pidfd, so nothing else blocks.
    """

    def __init__(self, argv: list[str], fd: int) -> None:
        self._popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            argv,
            pass_fds=(fd,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd="/",
            env=dict(CHILD_ENV),
        )
        self.pid = self._popen.pid
        self._pidfd = os.pidfd_open(self.pid)
        assert self._popen.stderr is not None
        self.stderr: trio.lowlevel.FdStream | None = trio.lowlevel.FdStream(
            os.dup(self._popen.stderr.fileno())
        )
        self._popen.stderr.close()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        while self._popen.poll() is None:
            await trio.lowlevel.wait_readable(self._pidfd)
        code = self._popen.returncode
        assert code is not None
        return code

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()

    def close(self) -> None:
        if self._pidfd >= 0:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1


class ProtocolViolation(Exception):
    """The child sent something impossible: it is killed and restarted."""


class Supervisor:
    def __init__(
        self,
        command: CommandFactory,
        on_message: MessageHandler,
        on_ready: Callable[[], Awaitable[None]],
        on_down: Callable[[], None],
        shard: int = 0,
        shards: int = 1,
    ) -> None:
        self.shard, self.shards = shard, shards
        self.label = "negotiator child" if shards == 1 else f"negotiator child {shard + 1}/{shards}"
        self._command = command
        self._on_message = on_message
        self._on_ready = on_ready
        self._on_down = on_down
        # messages for the child and their encodings, in order; None while no child runs
        self._queue: deque[tuple[Message, bytes]] | None = None
        self._raw: socket.socket | None = None  # the running child's channel
        self.queue_limit = QUEUE
        self._queued_bytes = 0
        self._wake_sender = trio.lowlevel.ParkingLot()
        self._sender_idle = False  # the sender waits in _wake_sender for a message
        self._cancel: trio.CancelScope | None = None
        self._violation: str | None = None
        self._lost: str | None = None  # why we stopped talking to it, short of a violation
        self.pid: int | None = None
        self.ready = False
        self.restarts = 0
        self.stopping = False
        self._dropped = RateLimit("messages dropped for a lagging child")
        self._progress = trio.Event()  # set (and replaced) whenever the sender took a message
        self._snapshot = trio.Lock()  # one snapshot at a time: interleaved, both would fail

    # -- used by the daemon --------------------------------------------------------------

    def send(self, msg: Message) -> bool:
        """Queue a message for the running child; False if there is none or it lags."""
        queue = self._queue
        if queue is None or not self.ready:
            return False
        try:
            data = encode(msg)
        except IpcError:
            return False
        reserve = 2 if type(msg) in MUST_DELIVER else 1
        if (len(queue) >= reserve * self.queue_limit
                or self._queued_bytes + len(data) > reserve * QUEUE_BYTES):  # fmt: skip
            if self._dropped.allow(trio.current_time()):
                log.warning("%s is not reading: %s dropped", self.label, type(msg).__name__)
            return False
        return self._put(queue, msg, data)

    def _put(self, queue: deque[tuple[Message, bytes]], msg: Message, data: bytes) -> bool:
        """Hand `data` to the socket now if nothing is waiting before it (no task switch,
        the common case), else queue it for the sender. False if the channel broke."""
        raw = self._raw
        if not queue and raw is not None:
            try:
                if send_nowait(raw, data):
                    return True
            except OSError as exc:
                log.warning("cannot send %s to the child: %s", type(msg).__name__, exc)
                self._channel_lost(f"channel to the child broken: {exc}")
                return False
        queue.append((msg, data))
        self._queued_bytes += len(data)
        if self._sender_idle:
            self._sender_idle = False
            self._wake_sender.unpark()
        return True

    async def send_snapshot(self, messages: Sequence[Message]) -> bool:
        """Queue a configuration snapshot whole, waiting for room instead of dropping.

        A snapshot with certificate files can exceed QUEUE_BYTES (each ConfigCredential
        carries up to 60000 bytes), and a snapshot missing a message is refused by the child
        as a whole. So this waits for the sender's progress, at most SNAPSHOT_TIMEOUT in all;
        False (logged) if the child went away or did not read in that time.
        """
        async with self._snapshot:
            return await self._send_whole(messages)

    async def _send_whole(self, messages: Sequence[Message]) -> bool:
        with trio.move_on_after(SNAPSHOT_TIMEOUT):
            for msg in messages:
                data = encode(msg)
                while True:
                    progress = self._progress
                    queue = self._queue
                    if queue is None or not self.ready:
                        return False
                    if (len(queue) < self.queue_limit
                            and self._queued_bytes + len(data) <= QUEUE_BYTES):  # fmt: skip
                        if not self._put(queue, msg, data):
                            return False
                        break
                    await progress.wait()
            return True
        log.warning("%s is not reading: configuration snapshot not sent whole", self.label)
        return False

    def _progressed(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    def backlog(self) -> int:
        """Messages waiting for the child: queued here, and (estimated from the bytes the
        kernel holds for it, SIOCOUTQ) sent but not yet read by the child. The sender hands
        the socket everything it can, so without the second part the child's real queue
        would be the socket's buffer (hundreds of messages), not the daemon's bound."""
        queue, raw = self._queue, self._raw
        if queue is None or raw is None:
            return 0
        unread = array.array("i", [0])
        try:
            fcntl.ioctl(raw.fileno(), termios.TIOCOUTQ, unread, True)
        except OSError:
            return len(queue)
        return len(queue) + -(-unread[0] // MESSAGE_TRUESIZE)

    def _channel_lost(self, reason: str) -> None:
        """Stop using a child whose channel failed (it usually exited): not a violation."""
        if self._lost is None:
            self._lost = reason
        if self._cancel is not None:
            self._cancel.cancel()

    def violation(self, reason: str) -> None:
        """Kill the current child for breaking the protocol; it will be restarted."""
        if self._violation is None:
            self._violation = reason
        if self._cancel is not None:
            self._cancel.cancel()

    async def stop(self, grace: float) -> None:
        """Ask the child to shut down (Shutdown), wait up to `grace`, then kill it."""
        self.stopping = True
        if self.send(m.Shutdown()):
            with trio.move_on_after(grace):
                while self.pid is not None:
                    await trio.sleep(0.05)
        if self._cancel is not None:
            self._cancel.cancel()

    # -- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self.stopping:
            started = trio.current_time()
            try:
                await self._run_one()
            except OSError as exc:
                log.error("cannot start the %s: %s", self.label, exc)
            if self.stopping:
                return
            if trio.current_time() - started >= STABLE_AFTER:
                backoff = BACKOFF_FIRST
            log.info("restarting the %s in %.1f s", self.label, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            self.restarts += 1

    async def _run_one(self) -> None:
        parent_end, child_end = socketpair()
        fd = child_end.fileno()
        try:
            process = ChildProcess(list(self._command(fd)), fd)
        except BaseException:
            parent_end.close()
            child_end.close()
            raise
        child_end.close()
        sock = trio.socket.from_stdlib_socket(parent_end)
        self.pid = process.pid
        self._violation = None
        self._lost = None
        log.info("%s started, pid %d", self.label, process.pid)
        queue: deque[tuple[Message, bytes]] = deque()
        self._queued_bytes = 0
        self._sender_idle = False
        try:
            with trio.CancelScope() as scope:
                self._cancel = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._stderr, process)
                    nursery.start_soon(self._sender, parent_end, queue)
                    nursery.start_soon(self._watch_exit, process, scope)
                    await self._receive(sock, parent_end, queue)
                    scope.cancel()
        finally:
            self._cancel = None
            self.ready = False
            self._queue, self._raw = None, None
            self._progressed()  # a snapshot waiting for room learns the child is gone
            with trio.CancelScope(shield=True):
                if self._violation is None and not self.stopping:
                    with trio.move_on_after(EXIT_GRACE):
                        await process.wait()
                await self._reap(process)
            sock.close()
            self.pid = None
            self._on_down()
        if self._violation is not None:
            log.error("%s pid %d killed: protocol violation: %s", self.label, process.pid,
                      self._violation)  # fmt: skip
        elif not self.stopping:
            lost = f" ({self._lost})" if self._lost else ""
            log.error("%s pid %d %s%s", self.label, process.pid,
                      _exit_text(process.returncode), lost)  # fmt: skip

    async def _receive(
        self,
        sock: trio.socket.SocketType,
        raw: socket.socket,
        queue: deque[tuple[Message, bytes]],
    ) -> None:
        try:
            with trio.fail_after(READY_TIMEOUT):
                await send_message_trio(sock, m.Hello(m.PROTOCOL_VERSION, self.shard,
                                                      self.shards))  # fmt: skip
                first = await recv_message_trio(sock, Direction.CHILD_TO_PARENT)
            if first is None:
                return
            if not isinstance(first, m.Ready):
                raise ProtocolViolation(f"{type(first).__name__} before Ready")
            m.check_version(first.version)
        except trio.TooSlowError:
            self.violation("no Ready from the child")
            return
        except (IpcError, ProtocolViolation) as exc:
            self.violation(str(exc))
            return
        except OSError:
            return  # the child is gone (connection reset): the exit status says why
        self._queue, self._raw = queue, raw
        self.ready = True
        await self._on_ready()
        on_message = self._on_message
        while True:
            try:
                # every message the child queued, one wake-up for all (at most RECEIVE_BATCH
                # before the others get a turn); each is handled before the next is read, so
                # a handler that waits (budget, kernel) still holds the child back
                await trio.lowlevel.wait_readable(raw)
                for msg in receive_ready(raw, Direction.CHILD_TO_PARENT, RECEIVE_BATCH):
                    if msg is None:
                        return
                    if isinstance(msg, m.Ready):
                        raise ProtocolViolation("second Ready")
                    await on_message(msg)
            except (IpcError, ProtocolViolation) as exc:
                self.violation(str(exc))
                return
            except OSError:
                return
            except Exception as exc:  # a parent bug reached by the child's input
                log.exception("internal error handling a child message")
                self.violation(f"internal error: {type(exc).__name__}")
                return

    async def _sender(self, raw: socket.socket, queue: deque[tuple[Message, bytes]]) -> None:
        """Feed the child what `send` could not hand the socket at once (it was full), in
        order, waiting for room; if that fails, restart it rather than
        leave a child that still runs but never hears from us again (nothing would notice
        otherwise)."""
        while True:
            while queue:
                msg, data = queue[0]
                try:
                    await send_ready(raw, data)
                except (OSError, IpcError) as exc:
                    log.warning("cannot send %s to the child: %s", type(msg).__name__, exc)
                    self._channel_lost(f"channel to the child broken: {exc}")
                    return
                queue.popleft()
                self._queued_bytes -= len(data)
            self._progressed()
            self._sender_idle = True
            await self._wake_sender.park()

    @staticmethod
    async def _watch_exit(process: ChildProcess, scope: trio.CancelScope) -> None:
        await process.wait()
        scope.cancel()

    @staticmethod
    async def _stderr(process: ChildProcess) -> None:
        stream = process.stderr
        if stream is None:
            return
        buffered = b""
        lines = 0
        while True:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            buffered += chunk
            while b"\n" in buffered or len(buffered) > MAX_STDERR_LINE:
                line, sep, rest = buffered.partition(b"\n")
                if not sep:
                    line, rest = buffered[:MAX_STDERR_LINE], buffered[MAX_STDERR_LINE:]
                buffered = rest
                lines += 1
                if lines <= MAX_STDERR_LINES:
                    text = line[:MAX_STDERR_LINE].decode("utf-8", "replace")
                    log.warning("child: %s", "".join(c if c.isprintable() else "?" for c in text))

    @staticmethod
    async def _reap(process: ChildProcess) -> None:
        if process.returncode is None:
            process.kill()
        await process.wait()
        process.close()
        if process.stderr is not None:
            await process.stderr.aclose()


def _exit_text(code: int | None) -> str:
    """How a child ended, for 'negotiator child pid N ...'."""
    if code is None:
        return "ended with an unknown status"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
