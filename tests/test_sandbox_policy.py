"""The seccomp allowlist table and the Landlock layer, checked without starting the child
(no root needed): the rules the table promises, and what the built filter really says."""

from __future__ import annotations

import errno
import fcntl
import json
import mmap
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from ikepriv.child_negotiator.process import landlock, seccomp_policy
from ikepriv.child_negotiator.process.seccomp_policy import ALLOWLIST, FORBIDDEN, Op

ROOT = Path(__file__).resolve().parent.parent


def test_allowlist_contains_no_forbidden_syscall() -> None:
    assert not FORBIDDEN & ALLOWLIST.keys()


def test_build_refuses_a_forbidden_syscall_added_to_the_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(seccomp_policy._RULES, "openat", seccomp_policy.UNCONDITIONAL)
    with pytest.raises(seccomp_policy.PolicyError, match="openat"):
        seccomp_policy.build_filter()


def test_build_refuses_an_unknown_syscall_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(seccomp_policy._RULES, "no_such_syscall", seccomp_policy.UNCONDITIONAL)
    with pytest.raises(seccomp_policy.PolicyError, match="no_such_syscall"):
        seccomp_policy.build_filter()


@pytest.mark.parametrize("name", ["mmap", "mprotect"])
def test_memory_mapping_never_allows_prot_exec(name: str) -> None:
    for conj in ALLOWLIST[name]:
        assert any(
            c.index == 2 and c.op is Op.MASKED_EQ and c.mask & mmap.PROT_EXEC and c.value == 0
            for c in conj
        ), conj


def test_fcntl_cannot_duplicate_descriptors() -> None:
    dup_cmds = {fcntl.F_DUPFD, fcntl.F_DUPFD_CLOEXEC}
    for conj in ALLOWLIST["fcntl"]:
        cmds = [c.value for c in conj if c.index == 1 and c.op is Op.EQ]
        assert cmds and not set(cmds) & dup_cmds, conj


def test_newfstatat_is_answered_with_an_errno_never_allowed() -> None:
    assert "newfstatat" not in ALLOWLIST
    assert seccomp_policy.ERRNO_RULES["newfstatat"] == errno.EPERM
    assert "fstat" in ALLOWLIST and not {"stat", "lstat", "statx"} & ALLOWLIST.keys()
    with tempfile.TemporaryFile("w+") as f:
        seccomp_policy.build_filter().export_pfc(f)
        f.seek(0)
        pfc = f.read()
    block = pfc.split("newfstatat", 1)[1].split("# filter for syscall", 1)[0]
    assert f"action ERRNO({errno.EPERM});" in block, block


def test_futex_only_wait_and_wake() -> None:
    allowed = set()
    for conj in ALLOWLIST["futex"]:
        (cond,) = conj
        assert cond.index == 1 and cond.op is Op.MASKED_EQ
        assert cond.mask == 0xFFFFFFFF & ~(128 | 256)  # only the private and clock flags free
        allowed.add(cond.value)
    assert allowed == {0, 1, 9, 10}  # WAIT, WAKE, WAIT_BITSET, WAKE_BITSET
    pi_and_requeue = {3, 4, 5, 6, 7, 8, 11, 12, 13}  # REQUEUE..CMP_REQUEUE_PI, LOCK_PI2
    assert not allowed & pi_and_requeue


def test_built_filter_kills_by_default_and_on_other_architectures() -> None:
    with tempfile.TemporaryFile("w+") as f:
        seccomp_policy.build_filter().export_pfc(f)
        f.seek(0)
        pfc = f.read()
    lines = [line.strip() for line in pfc.splitlines()]
    assert lines.count("# default action") == 1
    assert lines[lines.index("# default action") + 1] == "action KILL_PROCESS;"
    assert lines[lines.index("# invalid architecture action") + 1] == "action KILL_PROCESS;"
    assert "openat" not in pfc and '"socket"' not in pfc and "execve" not in pfc
    assert sum(1 for line in lines if line.startswith("# filter for arch")) == 1


LANDLOCK_SCRIPT = """
import json, os, prctl
from ikepriv.child_negotiator.process import landlock
prctl.set_no_new_privs(1)
result = landlock.restrict_self_to_nothing()
out = {"applied": result.applied, "abi": result.abi}
for path in ("/etc/hostname", "/"):
    try:
        os.close(os.open(path, os.O_RDONLY))
        out[path] = "ok"
    except OSError as exc:
        out[path] = exc.strerror
print(json.dumps(out))
"""


def test_landlock_empty_ruleset_denies_all_file_access() -> None:
    abi = landlock.abi_version()
    if abi is None:
        pytest.skip("kernel has no Landlock")
    proc = subprocess.run(  # noqa: S603 -- our own interpreter, fixed script
        [sys.executable, "-c", LANDLOCK_SCRIPT],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    out = json.loads(proc.stdout)
    assert out == {"applied": True, "abi": abi,
                   "/etc/hostname": "Permission denied", "/": "Permission denied"}  # fmt: skip
