"""The sandbox the negotiator child enters before it reads its first message.

Two phases, because trio creates descriptors (its epoll instance and wake-up
socketpair) when ``trio.run`` starts, and the seccomp filter forbids creating any:

1. :func:`prepare` -- before ``trio.run``, with the filesystem still visible: checks that
   the parent passed nothing but stdio and the IPC socket, scrubs the environment,
   resolves the unprivileged user, checks the chroot directory.
2. :func:`enter` -- first thing in the trio main task: the ordered, irreversible steps
   in :data:`STEPS`.  Any descriptor that appeared between the two phases was created
   by trio in this process and is kept.

Use in the child (see ``sandbox_probe`` for a complete one)::

    config = SandboxConfig(ipc_fd=fd)
    try:
        prepared = prepare(config)          # before trio.run
    except SandboxError as exc:
        fail_closed(exc)
    trio.run(main, prepared)

    async def main(prepared):
        sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))  # before enter
        try:
            report = enter(prepared)
        except SandboxError as exc:
            fail_closed(exc)
        ...                                 # first recv only now

Fail closed: a mandatory step that fails raises :class:`SandboxError`; the caller then
calls :func:`fail_closed`, which writes one line to stderr and ``_exit``\\ s with
:data:`EXIT_SANDBOX_FAILED` -- no payload, no atexit handlers, no trio clean-up.  Only
Landlock is optional (it depends on the kernel) and the report says whether it ran.

After :func:`enter` the process can make only the system calls in
:mod:`.seccomp_policy`; anything else (an ``import`` not done beforehand, opening a
file) kills it with SIGSYS.  So the child must import, and warm up, everything first.
:func:`enter` also makes traceback printing safe (no source lines, which would need
``open``) so that an unexpected exception is still reported instead of ending in SIGSYS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import linecache
import os
import pwd
import resource
import signal
import stat
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final, NoReturn

import prctl

from ikepriv.child_negotiator.process import landlock, seccomp_policy
from ikepriv.process_contract import (
    DEFAULT_CHROOT_DIR,
    DEFAULT_USERS,
    ChrootDirError,
    check_chroot_dir,
)

EXIT_SANDBOX_FAILED: Final = 71  # EX_OSERR

_CLONE_NEWNET: Final = 0x40000000
_PR_CAPBSET_DROP: Final = 24
_PR_CAPBSET_READ: Final = 23
_PR_CAP_AMBIENT: Final = 47
_PR_CAP_AMBIENT_IS_SET: Final = 1
_PR_CAP_AMBIENT_CLEAR_ALL: Final = 4
_STDIO: Final = frozenset({0, 1, 2})

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.unshare.argtypes = (ctypes.c_int,)
_libc.unshare.restype = ctypes.c_int
_libc.prctl.argtypes = (
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
)
_libc.prctl.restype = ctypes.c_int


class SandboxError(RuntimeError):
    """A mandatory sandbox step failed; the child must exit without running anything."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"sandbox step {step!r} failed: {detail}")
        self.step = step
        self.detail = detail


@dataclass(frozen=True)
class SandboxConfig:
    """What the parent decides about the child's sandbox.

    ``users`` are tried in order (the dedicated system user first, then ``nobody``);
    ``group`` None means the chosen user's primary group.  ``address_space_headroom``
    is added to the current virtual size to form RLIMIT_AS (None: no AS limit).
    """

    ipc_fd: int
    chroot_dir: str = DEFAULT_CHROOT_DIR
    users: tuple[str, ...] = DEFAULT_USERS
    group: str | None = None
    nofile_slack: int = 4
    address_space_headroom: int | None = 1 << 30
    env_keep: frozenset[str] = frozenset()
    require_landlock: bool = False


@dataclass(frozen=True)
class Prepared:
    """Result of :func:`prepare`: everything :func:`enter` needs that involves files."""

    config: SandboxConfig
    uid: int
    gid: int
    user: str
    ppid: int
    inherited_fds: frozenset[int]
    cap_last_cap: int


@dataclass
class SandboxReport:
    """What :func:`enter` applied, for the parent's log (JSON-friendly via as_dict)."""

    applied: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"applied": list(self.applied), "skipped": dict(self.skipped),
                "details": dict(self.details)}  # fmt: skip


@dataclass
class _State:
    """Mutable facts gathered while the steps run."""

    prepared: Prepared
    report: SandboxReport
    fds: frozenset[int] = frozenset()
    vm_size: int = 0


# ---------------------------------------------------------------- phase 1: prepare


def _open_fds() -> frozenset[int]:
    """Descriptors open in this process (the listing's own directory fd excluded)."""
    listed = [int(name) for name in os.listdir("/proc/self/fd")]
    live = set()
    for fd in listed:
        try:
            os.fstat(fd)
        except OSError:
            continue  # the directory descriptor listdir used, already closed
        live.add(fd)
    return frozenset(live)


def _check_inherited_fds(config: SandboxConfig) -> frozenset[int]:
    fds = _open_fds()
    unexpected = fds - _STDIO - {config.ipc_fd}
    if unexpected:
        raise SandboxError("fds", f"unexpected inherited descriptors {sorted(unexpected)}")
    if config.ipc_fd not in fds:
        raise SandboxError("fds", f"IPC descriptor {config.ipc_fd} is not open")
    if not stat.S_ISSOCK(os.fstat(config.ipc_fd).st_mode):
        raise SandboxError("fds", f"IPC descriptor {config.ipc_fd} is not a socket")
    for fd in sorted(fds & {1, 2}):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            raise SandboxError(
                "fds",
                f"fd {fd} is a regular file; RLIMIT_FSIZE 0 would kill the child on "
                "write -- give it a pipe, a socket or /dev/null",
            )
    return fds


def _scrub_environment(keep: frozenset[str]) -> None:
    """Drop every variable not in ``keep`` and zero the original environment block.

    unsetenv() only moves pointers: the strings the kernel copied onto the stack at exec
    stay readable (and show in /proc/PID/environ).  Kept variables are re-set first, so
    they live in heap copies and the block can be wiped whole.
    """
    kept = {name: os.environ[name] for name in keep if name in os.environ}
    for name in list(os.environ):
        del os.environ[name]
    for name, value in kept.items():
        os.environ[name] = value
    with open("/proc/self/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 50 and 51 of proc(5) (env_start, env_end); the split starts at field 3.
    env_start, env_end = int(fields[50 - 3]), int(fields[51 - 3])
    if not 0 < env_start <= env_end:
        raise SandboxError("environment", "cannot locate the environment block")
    ctypes.memset(env_start, 0, env_end - env_start)


def _resolve_ids(config: SandboxConfig) -> tuple[str, int, int]:
    for name in config.users:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        gid = entry.pw_gid if config.group is None else grp.getgrnam(config.group).gr_gid
        if entry.pw_uid == 0 or gid == 0:
            raise SandboxError("ids", f"user {name!r} maps to uid/gid 0")
        return name, entry.pw_uid, gid
    raise SandboxError("ids", f"none of the users {list(config.users)} exists")


def _check_chroot_dir(path: str) -> None:
    try:
        check_chroot_dir(path)
    except ChrootDirError as exc:
        raise SandboxError("chroot", str(exc)) from exc


def _read_int(path: str) -> int:
    with open(path, encoding="ascii") as f:
        return int(f.read().strip())


def prepare(config: SandboxConfig) -> Prepared:
    """Phase 1 (call before ``trio.run``): checks and look-ups that still need files.

    Raises SandboxError (naming the check) for any failure.
    """
    step = "fds"
    try:
        fds = _check_inherited_fds(config)
        step = "environment"
        _scrub_environment(config.env_keep)
        step = "chroot"
        _check_chroot_dir(config.chroot_dir)
        step = "ids"
        user, uid, gid = _resolve_ids(config)
        step = "capabilities"
        cap_last_cap = _read_int("/proc/sys/kernel/cap_last_cap")
    except SandboxError:
        raise
    except Exception as exc:
        raise SandboxError(step, f"{type(exc).__name__}: {exc}") from exc
    return Prepared(
        config=config,
        uid=uid,
        gid=gid,
        user=user,
        ppid=os.getppid(),
        inherited_fds=fds,
        cap_last_cap=cap_last_cap,
    )


# ---------------------------------------------------------------- phase 2: the steps


def _errno_detail(what: str) -> str:
    err = ctypes.get_errno()
    return f"{what}: {os.strerror(err)} (errno {err})"


def _step_inspect(st: _State) -> str:
    """Single-threaded (seccomp TSYNC and setresuid semantics rely on it), same parent,
    and the descriptor and memory figures the rlimits are computed from."""
    threads = os.listdir("/proc/self/task")
    if len(threads) != 1:
        raise SandboxError("inspect", f"{len(threads)} threads; the child must have one")
    if os.getppid() != st.prepared.ppid:
        raise SandboxError("inspect", "parent changed since prepare()")
    st.fds = _open_fds()
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmSize:"):
                st.vm_size = int(line.split()[1]) * 1024
    return f"fds={sorted(st.fds)} trio_fds={sorted(st.fds - st.prepared.inherited_fds)}"


def _step_netns(st: _State) -> str:
    if _libc.unshare(_CLONE_NEWNET) != 0:
        raise SandboxError("netns", _errno_detail("unshare(CLONE_NEWNET)"))
    return "new empty network namespace"


def _step_chroot(st: _State) -> str:
    path = st.prepared.config.chroot_dir
    os.chroot(path)
    os.chdir("/")
    if os.listdir("/"):
        raise SandboxError("chroot", f"{path} is not empty")
    return path


def _step_bounding_set(st: _State) -> str:
    """Needs CAP_SETPCAP, so it runs while we are still root."""
    for cap in range(st.prepared.cap_last_cap + 1):
        if _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise SandboxError("bounding_set", _errno_detail(f"PR_CAPBSET_DROP {cap}"))
    return f"dropped caps 0..{st.prepared.cap_last_cap}"


def _step_ids(st: _State) -> str:
    uid, gid = st.prepared.uid, st.prepared.gid
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise SandboxError("ids", "setresuid/setresgid did not take effect")
    if os.getgroups():
        raise SandboxError("ids", "supplementary groups remain")
    return f"user={st.prepared.user} uid={uid} gid={gid}"


def _step_capabilities(st: _State) -> str:
    prctl.cap_inheritable.limit()
    prctl.cap_effective.limit()
    prctl.cap_permitted.limit()
    if _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
        raise SandboxError("capabilities", _errno_detail("PR_CAP_AMBIENT_CLEAR_ALL"))
    for cap in range(st.prepared.cap_last_cap + 1):
        if _libc.prctl(_PR_CAPBSET_READ, cap, 0, 0, 0) != 0:
            raise SandboxError("capabilities", f"cap {cap} still in the bounding set")
        if _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_IS_SET, cap, 0, 0) != 0:
            raise SandboxError("capabilities", f"cap {cap} still ambient")
    for capset in (prctl.cap_effective, prctl.cap_permitted, prctl.cap_inheritable):
        held = [c for c in prctl.ALL_CAPS if c in _held(capset)]
        if held:
            raise SandboxError("capabilities", f"capabilities remain: {held}")
    return "effective, permitted, inheritable, ambient and bounding sets empty"


def _held(capset: prctl.Capset) -> set[int]:
    return {cap for cap, name in zip(prctl.ALL_CAPS, prctl.ALL_CAP_NAMES, strict=True)
            if getattr(capset, name)}  # fmt: skip


def _step_no_new_privs(st: _State) -> str:
    prctl.set_no_new_privs(1)
    if prctl.get_no_new_privs() != 1:
        raise SandboxError("no_new_privs", "PR_SET_NO_NEW_PRIVS did not stick")
    return "set"


def _step_not_dumpable(st: _State) -> str:
    prctl.set_dumpable(False)
    if prctl.get_dumpable():
        raise SandboxError("not_dumpable", "PR_SET_DUMPABLE 0 did not stick")
    return "set"


def _step_pdeathsig(st: _State) -> str:
    """After the id change: the kernel clears the parent-death signal on it."""
    prctl.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != st.prepared.ppid:
        raise SandboxError("pdeathsig", "parent died before PR_SET_PDEATHSIG")
    return "SIGKILL"


def _step_rlimits(st: _State) -> str:
    nofile = max(st.fds) + 1 + st.prepared.config.nofile_slack
    limits = {
        resource.RLIMIT_NPROC: 0,
        resource.RLIMIT_FSIZE: 0,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_NOFILE: nofile,
    }
    headroom = st.prepared.config.address_space_headroom
    if headroom is not None:
        limits[resource.RLIMIT_AS] = st.vm_size + headroom
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))
    return f"NPROC=0 FSIZE=0 CORE=0 NOFILE={nofile} AS={limits.get(resource.RLIMIT_AS)}"


def _step_landlock(st: _State) -> str:
    try:
        result = landlock.restrict_self_to_nothing()
    except OSError as exc:
        if st.prepared.config.require_landlock:
            raise SandboxError("landlock", str(exc)) from exc
        raise
    if not result.applied:
        if st.prepared.config.require_landlock:
            raise SandboxError("landlock", result.reason)
        st.report.skipped["landlock"] = result.reason
        return ""
    return (f"abi={result.abi} fs={result.handled_fs:#x} net={result.handled_net:#x} "
            f"scoped={result.scoped:#x}")  # fmt: skip


def _step_safe_tracebacks(st: _State) -> str:
    """No source lines from now on: reading them would need open() (SIGSYS)."""
    linecache.clearcache()
    linecache.updatecache = _no_source
    sys.excepthook = _excepthook
    return "source lines disabled"


def _no_source(filename: str, module_globals: object = None) -> list[str]:
    return []


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    traceback.print_exception(exc_type, exc, tb)


def _step_seccomp(st: _State) -> str:
    count = seccomp_policy.load()
    return f"allowlist of {count} syscalls, default KILL_PROCESS, other arches KILL_PROCESS"


Step = Callable[[_State], str]

# (name, function, mandatory).  The order matters: unshare and chroot need
# CAP_SYS_ADMIN/CAP_SYS_CHROOT, the bounding set needs CAP_SETPCAP, so they come before
# the id change; pdeathsig after it (the kernel clears it on credential changes);
# Landlock needs no_new_privs; seccomp last, because the steps before it make system
# calls the allowlist refuses.
STEPS: Final[tuple[tuple[str, Step, bool], ...]] = (
    ("inspect", _step_inspect, True),
    ("netns", _step_netns, True),
    ("chroot", _step_chroot, True),
    ("bounding_set", _step_bounding_set, True),
    ("ids", _step_ids, True),
    ("capabilities", _step_capabilities, True),
    ("no_new_privs", _step_no_new_privs, True),
    ("not_dumpable", _step_not_dumpable, True),
    ("pdeathsig", _step_pdeathsig, True),
    ("rlimits", _step_rlimits, True),
    ("landlock", _step_landlock, False),
    ("safe_tracebacks", _step_safe_tracebacks, True),
    ("seccomp", _step_seccomp, True),
)


def enter(prepared: Prepared, steps: Sequence[tuple[str, Step, bool]] = STEPS) -> SandboxReport:
    """Phase 2 (first thing in the trio main task): apply ``steps`` in order.

    Raises SandboxError if any mandatory step fails; the process is then in an
    undefined, partly sandboxed state and must go through :func:`fail_closed`.
    ``steps`` exists for the probe's layer tests; the child always uses STEPS.
    """
    st = _State(prepared=prepared, report=SandboxReport())
    for name, func, mandatory in steps:
        try:
            detail = func(st)
        except SandboxError:
            raise
        except Exception as exc:
            if mandatory:
                raise SandboxError(name, f"{type(exc).__name__}: {exc}") from exc
            st.report.skipped[name] = f"{type(exc).__name__}: {exc}"
            continue
        if name not in st.report.skipped:
            st.report.applied.append(name)
            st.report.details[name] = detail
    return st.report


def fail_closed(exc: BaseException) -> NoReturn:
    """Report on stderr and leave at once: nothing after a failed sandbox may run."""
    try:
        os.write(2, f"ikepriv-child: {exc}; exiting\n".encode(errors="replace"))
    finally:
        os._exit(EXIT_SANDBOX_FAILED)
