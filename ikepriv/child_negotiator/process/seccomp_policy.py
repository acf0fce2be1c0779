"""The negotiator child's seccomp allowlist, as data, and the code that loads it.

Default action: kill the whole process (SCMP_ACT_KILL_PROCESS, visible to the parent
as SIGSYS).  Only the native architecture is in the filter; a system call made through
another ABI (i386 ``int 0x80``, x32) hits SCMP_FLTATR_ACT_BADARCH, also kill.

How the list was found: the sandbox probe (``sandbox_probe``) was run under
``strace -f`` with every layer but seccomp applied, doing what the child does after
start-up -- a trio loop doing recv/send on the inherited SOCK_SEQPACKET socketpair,
hashlib/hmac, AES through ``cryptography``, a call into the cffi extension, then
interpreter shutdown -- and the system calls made after the sandbox was entered were
collected.  Observed: epoll_wait, epoll_ctl, recvfrom, sendto, write, close, brk,
mmap, munmap, futex (FUTEX_WAKE from OpenSSL's once-initialisers), rt_sigaction (trio
restores the SIGINT handler when the run ends), getsockname/getpeername (the repr of a
socket in an unclosed-socket warning), exit_group.  Also allowed, for runtime paths the
probe does not hit but a long-lived child will: mprotect/mremap/madvise (the allocator),
fstat/lseek/fcntl/ioctl (the io module and socket.setblocking on
descriptors we hold), epoll_pwait (newer glibc), clock_gettime (when the vDSO cannot
serve the clock), getrandom (os.urandom, OpenSSL reseeding), rt_sigprocmask,
rt_sigreturn and tgkill-to-self (signal delivery, abort()), restart_syscall, the
get*id queries, exit.  Everything else is left out on purpose: a call outside the list
kills the child, and the parent restarts it.

Design decisions:

* **No threads, no processes.**  trio runs its event loop in one thread; the child
  never uses ``trio.to_thread`` or ``threading``.  So clone, clone3, fork and vfork are
  all absent (and RLIMIT_NPROC is 0 underneath).  libseccomp's TSYNC flag is set, so
  loading fails rather than leaving any stray thread unfiltered.
* **No new descriptors.**  open/openat/openat2, socket/socketpair, accept, dup*,
  pipe*, eventfd, memfd, epoll_create*, signalfd, timerfd are absent: trio creates its
  epoll instance and wake-up socketpair at ``trio.run`` start, so the child enters the
  sandbox from inside its main task, after that.
* **No executable memory** after start-up: mmap/mprotect are allowed only when the
  PROT_EXEC bit of the ``prot`` argument is clear.
* Narrow arguments where the kernel lets us check plain integers: fcntl only with the
  flag get/set commands (never F_DUPFD), ioctl only FIONBIO/FIONREAD/FIOCLEX,
  tgkill only to our own process (so abort() still raises SIGABRT).
* **futex: only waiting and waking** (issue 8): FUTEX_WAIT, FUTEX_WAKE,
  FUTEX_WAIT_BITSET and FUTEX_WAKE_BITSET, each with or without FUTEX_PRIVATE_FLAG and
  FUTEX_CLOCK_REALTIME (glibc's timed waits). That is everything CPython, trio and
  OpenSSL use in one thread: observed after the filter is loaded, under ``strace -f``, in
  the sandbox probe (echo loop, deliberate traceback) and in every DH group with
  HMAC and AES (tests/test_core_sandboxed_dh.py's sequence): FUTEX_WAKE_PRIVATE only.
  The PI operations (FUTEX_LOCK_PI, FUTEX_UNLOCK_PI, FUTEX_TRYLOCK_PI, FUTEX_LOCK_PI2,
  FUTEX_WAIT_REQUEUE_PI, FUTEX_CMP_REQUEUE_PI), requeueing, FUTEX_WAKE_OP and FUTEX_FD --
  the kernel's most bug-prone futex code, with no use in a single-threaded child -- kill
  it like any call outside the list.
* **newfstatat answers EPERM, it is never executed** (issue 8). Seccomp cannot read the
  path string, and AT_EMPTY_PATH only matters when the path is empty, so no argument
  check can tell glibc's fstat(fd) (2.33 and later implement it as
  ``newfstatat(fd, "", AT_EMPTY_PATH)``) from a path lookup relative to a descriptor or
  to the (chroot) working directory. What runs after the filter does not call it: the
  straces above show no stat of any kind (the io module stats a file when it opens one,
  which the child never does after start-up; tracebacks print no source lines, see
  sandbox.py), and os.fstat is not on the child's path. So the filter answers every
  newfstatat with EPERM (SCMP_ACT_ERRNO) without running it: a path lookup never reaches
  the kernel's path walk, and a stray fstat() in some library becomes an OSError the
  child survives rather than a SIGSYS. The ``fstat`` system call itself stays allowed: it
  takes only a descriptor. ``stat``, ``lstat`` and ``statx`` are not in the list (kill).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import termios
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

import pyseccomp


class Op(Enum):
    """Argument comparisons we use (a subset of libseccomp's)."""

    EQ = pyseccomp.EQ
    MASKED_EQ = pyseccomp.MASKED_EQ


class Dynamic(Enum):
    """Argument values only known when the filter is built."""

    SELF_PID = "self_pid"


@dataclass(frozen=True)
class ArgCond:
    """One comparison on system call argument ``index`` (``(arg & mask) == value``
    for MASKED_EQ, ``arg == value`` for EQ)."""

    index: int
    op: Op
    value: int | Dynamic
    mask: int = 0


def _eq(index: int, value: int | Dynamic) -> tuple[ArgCond, ...]:
    return (ArgCond(index, Op.EQ, value),)


def _bit_clear(index: int, bit: int) -> tuple[ArgCond, ...]:
    return (ArgCond(index, Op.MASKED_EQ, 0, mask=bit),)


# A rule is a tuple of alternatives; each alternative is a conjunction of ArgConds.
# ``UNCONDITIONAL`` (one empty conjunction) allows every call of that syscall.
Rule = tuple[tuple[ArgCond, ...], ...]
UNCONDITIONAL: Final[Rule] = ((),)

# linux/futex.h
FUTEX_WAIT: Final = 0
FUTEX_WAKE: Final = 1
FUTEX_WAIT_BITSET: Final = 9
FUTEX_WAKE_BITSET: Final = 10
FUTEX_PRIVATE_FLAG: Final = 128
FUTEX_CLOCK_REALTIME: Final = 256
# the operation word without the two flags: every other bit must match exactly
_FUTEX_OP_MASK: Final = 0xFFFFFFFF & ~(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME)
FUTEX_ALLOWED_OPS: Final = (FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAIT_BITSET, FUTEX_WAKE_BITSET)

_RULES: dict[str, Rule] = {
    # I/O on descriptors we already hold (the socketpair, trio's epoll and wake-up
    # socketpair, stdio).
    "read": UNCONDITIONAL,
    "write": UNCONDITIONAL,
    "recvfrom": UNCONDITIONAL,
    "recvmsg": UNCONDITIONAL,
    "sendto": UNCONDITIONAL,
    "sendmsg": UNCONDITIONAL,
    "getsockname": UNCONDITIONAL,
    "getpeername": UNCONDITIONAL,
    "close": UNCONDITIONAL,
    "lseek": UNCONDITIONAL,
    "fstat": UNCONDITIONAL,  # a descriptor only; newfstatat: see ERRNO_RULES
    "fcntl": (
        _eq(1, fcntl.F_GETFD),
        _eq(1, fcntl.F_SETFD),
        _eq(1, fcntl.F_GETFL),
        _eq(1, fcntl.F_SETFL),
    ),
    "ioctl": (
        _eq(1, termios.FIONBIO),
        _eq(1, termios.FIONREAD),
        _eq(1, termios.FIOCLEX),
    ),
    # Waiting: trio's epoll loop.
    "epoll_wait": UNCONDITIONAL,
    "epoll_pwait": UNCONDITIONAL,
    "epoll_ctl": UNCONDITIONAL,
    # Memory: the allocator and CPython's arenas; never executable.
    "brk": UNCONDITIONAL,
    "mmap": (_bit_clear(2, mmap.PROT_EXEC),),
    "mprotect": (_bit_clear(2, mmap.PROT_EXEC),),
    "munmap": UNCONDITIONAL,
    "mremap": UNCONDITIONAL,
    "madvise": UNCONDITIONAL,
    # Time, randomness, scheduling.
    "clock_gettime": UNCONDITIONAL,
    "getrandom": UNCONDITIONAL,
    "futex": tuple(
        (ArgCond(1, Op.MASKED_EQ, op, mask=_FUTEX_OP_MASK),) for op in FUTEX_ALLOWED_OPS
    ),
    # Signals: handlers and masks; signals only to ourselves.
    "rt_sigaction": UNCONDITIONAL,
    "rt_sigprocmask": UNCONDITIONAL,
    "rt_sigreturn": UNCONDITIONAL,
    "tgkill": (_eq(0, Dynamic.SELF_PID),),
    "restart_syscall": UNCONDITIONAL,
    # Identity queries (harmless, used by the runtime and for logging).
    "getpid": UNCONDITIONAL,
    "gettid": UNCONDITIONAL,
    "getppid": UNCONDITIONAL,
    "getuid": UNCONDITIONAL,
    "geteuid": UNCONDITIONAL,
    "getgid": UNCONDITIONAL,
    "getegid": UNCONDITIONAL,
    # Leaving.
    "exit": UNCONDITIONAL,
    "exit_group": UNCONDITIONAL,
}

ALLOWLIST: Final[Mapping[str, Rule]] = MappingProxyType(_RULES)

# System calls answered with an error instead of running them (or killing the child):
# see "newfstatat" in the module docstring.
ERRNO_RULES: Final[Mapping[str, int]] = MappingProxyType({"newfstatat": errno.EPERM})

# System calls that must never appear in ALLOWLIST, whatever future edits do; checked
# when the filter is built (and by the tests).
FORBIDDEN: Final[frozenset[str]] = frozenset(
    {
        "open", "openat", "openat2", "creat", "open_by_handle_at", "name_to_handle_at",
        "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
        "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev",
        "fork", "vfork", "clone", "clone3",
        "mount", "umount2", "pivot_root", "chroot", "setns", "unshare",
        "kill", "tkill", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
        "dup", "dup2", "dup3", "pipe", "pipe2", "memfd_create", "eventfd2",
        "setuid", "setgid", "setresuid", "setresgid", "setgroups", "capset", "prctl",
        "seccomp", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
        "keyctl", "add_key", "request_key", "pkey_mprotect", "personality",
        "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self",
    }
)  # fmt: skip


class PolicyError(RuntimeError):
    """The table violates its own rules, or libseccomp refused part of it."""


def _check_table() -> None:
    overlap = FORBIDDEN & ALLOWLIST.keys()
    if overlap:
        raise PolicyError(f"forbidden syscalls in the allowlist: {sorted(overlap)}")
    both = ERRNO_RULES.keys() & ALLOWLIST.keys()
    if both:
        raise PolicyError(f"syscalls both allowed and answered with an errno: {sorted(both)}")


def _resolve(value: int | Dynamic, pid: int) -> int:
    return pid if isinstance(value, Dynamic) else value


def _arg(cond: ArgCond, pid: int) -> pyseccomp.Arg:
    value = _resolve(cond.value, pid)
    if cond.op is Op.MASKED_EQ:
        return pyseccomp.Arg(cond.index, pyseccomp.MASKED_EQ, cond.mask, value)
    return pyseccomp.Arg(cond.index, pyseccomp.EQ, value)


def build_filter(pid: int | None = None) -> pyseccomp.SyscallFilter:
    """The filter for this process (``pid`` defaults to ours), ready to ``load()``.

    Every syscall name must be known to libseccomp for the native arch; an unknown
    name raises PolicyError rather than being skipped silently.
    """
    _check_table()
    self_pid = os.getpid() if pid is None else pid
    filt = pyseccomp.SyscallFilter(pyseccomp.KILL_PROCESS)
    filt.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    filt.set_attr(pyseccomp.Attr.CTL_NNP, 1)
    filt.set_attr(pyseccomp.Attr.CTL_TSYNC, 1)
    native = pyseccomp.system_arch()
    for name, alternatives in ALLOWLIST.items():
        number = pyseccomp.resolve_syscall(native, name)
        if number < 0:
            raise PolicyError(f"libseccomp does not know syscall {name!r} on this arch")
        for conj in alternatives:
            try:
                filt.add_rule_exactly(pyseccomp.ALLOW, number, *(_arg(c, self_pid) for c in conj))
            except OSError as exc:
                raise PolicyError(f"rule for {name}: {exc}") from exc
    for name, code in ERRNO_RULES.items():
        number = pyseccomp.resolve_syscall(native, name)
        if number < 0:
            raise PolicyError(f"libseccomp does not know syscall {name!r} on this arch")
        filt.add_rule_exactly(pyseccomp.ERRNO(code), number)
    return filt


def load(pid: int | None = None) -> int:
    """Build and load the filter; returns the number of allowed syscalls.

    Needs PR_SET_NO_NEW_PRIVS first (or CAP_SYS_ADMIN).  Irreversible.
    """
    filt = build_filter(pid)
    try:
        filt.load()
    except OSError as exc:
        raise PolicyError(f"seccomp_load: {os.strerror(exc.errno or errno.EINVAL)}") from exc
    return len(ALLOWLIST)
