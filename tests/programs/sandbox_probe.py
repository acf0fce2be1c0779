"""Test program: enter the child's sandbox the way the child does, then do one thing.

    python tests/programs/sandbox_probe.py ACTION [--ipc-fd N]
        [--chroot DIR] [--user NAME] [--without-seccomp]

Started by the tests exactly as the parent starts the child (fork+exec, the socketpair
as the only extra descriptor).  After the sandbox it prints ``REPORT <json>`` on
stdout, then:

* ``echo``: sends the report over the socketpair and, in a trio loop, answers every
  message with :func:`transform` of it (HMAC-SHA256, AES-CBC, the cffi extension),
  until the peer closes.
* a forbidden action (see :data:`ACTIONS`): prints ``ATTEMPT <action>``, tries it, and
  if still alive prints ``RESULT <json>`` with the errno it got (or none); with
  ``--then-echo`` it then goes on as ``echo`` (the child survives a refused call).

``--without-seccomp`` applies every step but the seccomp filter, so the tests can show
what the layers underneath stop by themselves.  It exists only in this probe.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import gc
import hashlib
import hmac
import json
import mmap
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Final

import trio
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from ikepriv.ext._dh import lib as dh_lib

from ikepriv import process_contract
from ikepriv.child_negotiator.process import sandbox

PROBE_KEY: Final = bytes(range(32))
PROBE_IV: Final = bytes(16)
MAX_MESSAGE: Final = 65536
_BIG_ALLOCATION: Final = 8 << 20
_PTRACE_ATTACH: Final = 16
_TEST_NET_ADDR: Final = ("192.0.2.1", 500)
_X32_SYSCALL_BIT: Final = 0x40000000
_NR_GETPID: Final = 39
_NR_FUTEX: Final = 202  # x86_64
_FUTEX_LOCK_PI_PRIVATE: Final = 6 | 128

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
_libc.ptrace.restype = ctypes.c_long
_libc.syscall.restype = ctypes.c_long


def transform(data: bytes) -> bytes:
    """HMAC-SHA256(data) | AES-256-CBC(pad(data)) | DH extension version (4 bytes)."""
    mac = hmac.new(PROBE_KEY, data, hashlib.sha256).digest()
    pad = 16 - len(data) % 16
    enc = Cipher(algorithms.AES(PROBE_KEY), modes.CBC(PROBE_IV)).encryptor()
    ct = enc.update(data + bytes([pad]) * pad) + enc.finalize()
    return mac + ct + int(dh_lib.ikepriv_dh_version()).to_bytes(4, "big")


def _open_file() -> object:
    return os.open("/etc/passwd", os.O_RDONLY)


def _open_root_dir() -> object:
    return os.open("/", os.O_RDONLY | os.O_DIRECTORY)


def _udp_send() -> object:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return s.sendto(b"x", _TEST_NET_ADDR)


def _exec() -> object:
    os.execv("/bin/true", ["true"])  # noqa: S606 -- the probe exists to try this


def _ptrace_parent() -> object:
    if _libc.ptrace(_PTRACE_ATTACH, os.getppid(), None, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return "attached"


def _mmap_exec() -> object:
    m = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_EXEC)
    m.close()
    return "mapped"


def _fork() -> object:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return "forked"


def _thread() -> object:
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
    return "started"


def _setuid_root() -> object:
    os.setuid(0)
    return "uid 0"


def _kill_parent() -> object:
    os.kill(os.getppid(), 0)
    return "signalled"


def _x32_syscall() -> object:
    """getpid through the x32 ABI (syscall number with bit 30 set): another ABI."""
    ret = _libc.syscall(ctypes.c_long(_X32_SYSCALL_BIT | _NR_GETPID))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _futex_pi() -> object:
    """FUTEX_LOCK_PI on a word of our own: a priority-inheritance futex, which nothing in
    the child uses (without the filter it takes the free lock and returns 0)."""
    word = ctypes.c_uint32(0)
    ret = _libc.syscall(ctypes.c_long(_NR_FUTEX), ctypes.byref(word),
                        ctypes.c_int(_FUTEX_LOCK_PI_PRIVATE), 0, None)  # fmt: skip
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def _stat_path() -> object:
    """A path lookup (newfstatat(AT_FDCWD, "/", ..., 0)): the filter answers EPERM."""
    return os.stat("/").st_ino


# i386 getpid through int 0x80: mov eax, 20; int 0x80; ret.
_I386_GETPID_CODE: Final = bytes.fromhex("b814000000cd80c3")
_i386_stub: list[Callable[[], int]] = []
_keep_alive: list[object] = []


def _prepare_i386_stub() -> None:
    """Before the filter (which forbids executable mappings): place the stub in memory."""
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_I386_GETPID_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    stub = ctypes.CFUNCTYPE(ctypes.c_int)(address)
    _i386_stub.append(stub)
    _keep_alive.append(page)


def _i386_syscall() -> object:
    """getpid through the i386 compat entry: a syscall of another architecture."""
    return _i386_stub[0]()


def _raise() -> object:
    """An ordinary bug after sandboxing: must still print a traceback, not die by SIGSYS."""
    raise ValueError("probe: deliberate failure after sandboxing")


# Set-up some actions need while the process may still do everything.
PREPARE: Final[dict[str, Callable[[], None]]] = {"i386_syscall": _prepare_i386_stub}

ACTIONS: Final[dict[str, Callable[[], object]]] = {
    "open": _open_file,
    "open_root_dir": _open_root_dir,
    "socket": _udp_send,
    "exec": _exec,
    "ptrace": _ptrace_parent,
    "mmap_exec": _mmap_exec,
    "fork": _fork,
    "thread": _thread,
    "setuid_root": _setuid_root,
    "kill_parent": _kill_parent,
    "x32_syscall": _x32_syscall,
    "i386_syscall": _i386_syscall,
    "raise": _raise,
    "futex_pi": _futex_pi,
    "stat_path": _stat_path,
}


def _print(tag: str, payload: object) -> None:
    sys.stdout.write(f"{tag} {json.dumps(payload)}\n")
    sys.stdout.flush()


def _attempt(action: str) -> None:
    _print("ATTEMPT", action)
    try:
        result: dict[str, object] = {"ok": repr(ACTIONS[action]())}
    except OSError as exc:
        result = {"errno": errno.errorcode.get(exc.errno or 0, str(exc.errno))}
    except RuntimeError as exc:  # threading reports EAGAIN this way
        result = {"error": str(exc)}
    _print("RESULT", result)


async def _exercise_runtime() -> None:
    """What the real child's loop does besides I/O: timeouts, big buffers, collection."""
    with trio.move_on_after(0.001):
        await trio.sleep_forever()
    big = bytearray(_BIG_ALLOCATION)  # beyond malloc's mmap threshold: mmap + munmap
    big[-1] = 1
    del big
    gc.collect()


async def _echo(sock: trio.socket.SocketType, report: dict[str, object]) -> None:
    await sock.send(json.dumps(report).encode())
    while True:
        data = await sock.recv(MAX_MESSAGE)
        if not data:
            return
        await _exercise_runtime()
        await sock.send(transform(data))


async def _main(
    prepared: sandbox.Prepared, action: str, with_seccomp: bool, then_echo: bool = False
) -> None:
    # Wrapping the inherited socket makes it non-blocking: do it before the filter.
    sock = trio.socket.from_stdlib_socket(socket.socket(fileno=prepared.config.ipc_fd))
    steps = sandbox.STEPS if with_seccomp else tuple(s for s in sandbox.STEPS
                                                       if s[0] != "seccomp")  # fmt: skip
    if action in PREPARE:
        PREPARE[action]()
    try:
        report = sandbox.enter(prepared, steps).as_dict()
    except sandbox.SandboxError as exc:
        sandbox.fail_closed(exc)
    _print("REPORT", report)
    if action == "echo":
        await _echo(sock, report)
    else:
        _attempt(action)
        if then_echo:  # survived it: go on working like the child
            await _echo(sock, report)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sandbox_probe")
    parser.add_argument("action", choices=["echo", *ACTIONS])
    parser.add_argument("--ipc-fd", type=int, default=3)
    parser.add_argument("--chroot", default=process_contract.DEFAULT_CHROOT_DIR)
    parser.add_argument("--user", action="append")
    parser.add_argument("--without-seccomp", action="store_true")
    parser.add_argument("--then-echo", action="store_true", help="after ACTION, run echo")
    args = parser.parse_args(argv)
    config = sandbox.SandboxConfig(
        ipc_fd=args.ipc_fd,
        chroot_dir=args.chroot,
        users=tuple(args.user) if args.user else process_contract.DEFAULT_USERS,
    )
    try:
        prepared = sandbox.prepare(config)
    except sandbox.SandboxError as exc:
        sandbox.fail_closed(exc)
    trio.run(_main, prepared, args.action, not args.without_seccomp, args.then_echo)


if __name__ == "__main__":
    main()
