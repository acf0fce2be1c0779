"""Landlock through raw system calls: forbid every filesystem (and TCP, signal and
abstract-socket) access the running kernel knows how to forbid.

Why raw syscalls: there is no Landlock binding in the standard library, and the
ruleset we want is the simplest one there is -- *handle* every access right and add
no rule, so nothing is granted.  The child has no business touching the filesystem
after start-up; chroot to an empty directory already hides it, Landlock makes the
denial independent of the directory really being empty and of uid checks.

Landlock is optional: it depends on the kernel (config and ``lsm=`` boot list).  When
it is missing the caller gets a :class:`LandlockResult` saying why it was skipped; any
other failure raises, because a half-applied layer must not be reported as applied.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from dataclasses import dataclass
from typing import Final

# System call numbers: Landlock came after the syscall-table unification, so the
# numbers are the same on every architecture Linux supports except alpha.
_SYS_LANDLOCK_CREATE_RULESET: Final = 444
_SYS_LANDLOCK_RESTRICT_SELF: Final = 446

_LANDLOCK_CREATE_RULESET_VERSION: Final = 1 << 0

# Filesystem access rights, by the ABI version that introduced them.
_FS_RIGHTS_BY_ABI: Final[dict[int, int]] = {
    1: (1 << 13) - 1,  # EXECUTE .. MAKE_SYM: the thirteen original rights
    2: 1 << 13,  # REFER
    3: 1 << 14,  # TRUNCATE
    5: 1 << 15,  # IOCTL_DEV
}
# Network rights (ABI 4): BIND_TCP, CONNECT_TCP.
_NET_RIGHTS_BY_ABI: Final[dict[int, int]] = {4: (1 << 0) | (1 << 1)}
# IPC scopes (ABI 6): ABSTRACT_UNIX_SOCKET, SIGNAL.
_SCOPES_BY_ABI: Final[dict[int, int]] = {6: (1 << 0) | (1 << 1)}

# The errors that mean "this kernel has no usable Landlock", with the reason we report.
_UNAVAILABLE: Final[dict[int, str]] = {
    errno.ENOSYS: "kernel built without Landlock (ENOSYS)",
    errno.EOPNOTSUPP: "Landlock not enabled at boot (EOPNOTSUPP)",
}


class _RulesetAttr(ctypes.Structure):
    """struct landlock_ruleset_attr; older kernels take a prefix of it (size says which)."""

    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


# Size of the attribute prefix each ABI understands: passing a larger struct to an older
# kernel fails with E2BIG, so we pass only the fields the kernel knows.
_ATTR_SIZE_BY_FIELDS: Final[dict[int, int]] = {1: 8, 2: 16, 3: 24}


@dataclass(frozen=True)
class LandlockResult:
    """What Landlock did: ``abi`` is None when the kernel has none (``reason`` says why)."""

    applied: bool
    abi: int | None
    handled_fs: int = 0
    handled_net: int = 0
    scoped: int = 0
    reason: str = ""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


_LIBC: Final = _libc()
_syscall = _LIBC.syscall
_syscall.restype = ctypes.c_long


def _rights_up_to(table: dict[int, int], abi: int) -> int:
    mask = 0
    for since, bits in table.items():
        if abi >= since:
            mask |= bits
    return mask


def abi_version() -> int | None:
    """Landlock ABI version of the running kernel, or None if it has no usable Landlock."""
    return _query_abi()[0]


def _query_abi() -> tuple[int | None, str]:
    """(ABI version, "") or (None, why unavailable); OSError for any other failure."""
    ret = _syscall(
        ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
        ctypes.c_void_p(None),
        ctypes.c_size_t(0),
        ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
    )
    if ret < 0:
        err = ctypes.get_errno()
        if err in _UNAVAILABLE:
            return None, _UNAVAILABLE[err]
        raise OSError(err, f"landlock_create_ruleset(VERSION): {os.strerror(err)}")
    return int(ret), ""


def restrict_self_to_nothing() -> LandlockResult:
    """Handle every right this kernel's Landlock knows, grant none, and enforce it.

    Needs PR_SET_NO_NEW_PRIVS (or CAP_SYS_ADMIN) beforehand.  The ruleset descriptor is
    closed before returning, so the caller's descriptor count is unchanged.
    """
    abi, reason = _query_abi()
    if abi is None:
        return LandlockResult(applied=False, abi=None, reason=reason)
    attr = _RulesetAttr(
        handled_access_fs=_rights_up_to(_FS_RIGHTS_BY_ABI, abi),
        handled_access_net=_rights_up_to(_NET_RIGHTS_BY_ABI, abi),
        scoped=_rights_up_to(_SCOPES_BY_ABI, abi),
    )
    fields = 3 if attr.scoped else 2 if attr.handled_access_net else 1
    size = _ATTR_SIZE_BY_FIELDS[fields]
    fd = _syscall(
        ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET),
        ctypes.byref(attr),
        ctypes.c_size_t(size),
        ctypes.c_uint32(0),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    try:
        ret = _syscall(
            ctypes.c_long(_SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)
        )
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
    finally:
        os.close(fd)
    return LandlockResult(
        applied=True,
        abi=abi,
        handled_fs=attr.handled_access_fs,
        handled_net=attr.handled_access_net,
        scoped=attr.scoped,
    )
