"""The real sandbox, entered by a real child process started the way the parent starts
the negotiator: fork+exec with a SOCK_SEQPACKET socketpair as the only extra fd.

Each forbidden action is tried twice: with the full sandbox (seccomp kills the process
with SIGSYS before the kernel even looks at the request), and with every layer but
seccomp, to show which layer underneath would have stopped it and with what errno.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import select
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from ikepriv.ext._dh import lib as dh_lib

from ikepriv.child_negotiator.process import landlock
from ikepriv.child_negotiator.process.sandbox import EXIT_SANDBOX_FAILED

pytestmark = pytest.mark.root

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(ROOT / ".venv" / "bin" / "python")
PROBE = str(Path(__file__).parent / "programs" / "sandbox_probe.py")
SIGSYS_RC = -signal.SIGSYS
SECRET = "ikepriv-test-secret-6d1f"  # noqa: S105 -- a marker, not a credential
WAIT = 60  # seconds: only to turn a hang into a failure, never a speed check


@dataclass
class Probe:
    proc: subprocess.Popen[bytes]
    sock: socket.socket

    def finish(self) -> tuple[int, str, str]:
        self.sock.close()
        out, err = self.proc.communicate(timeout=WAIT)
        return self.proc.returncode, out.decode(), err.decode()


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    path = tmp_path / "empty"
    path.mkdir()
    path.chmod(0o755)
    return path


def spawn(
    action: str,
    chroot: Path,
    *extra: str,
    prefix: tuple[str, ...] = (),
    extra_fds: tuple[int, ...] = (),
) -> Probe:
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cmd = [*prefix, PYTHON, PROBE, action, "--ipc-fd", str(child_end.fileno()),
           "--chroot", str(chroot), *extra]  # fmt: skip
    proc = subprocess.Popen(  # noqa: S603 -- fixed argv, our own interpreter
        cmd,
        pass_fds=(child_end.fileno(), *extra_fds),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "IKEPRIV_PSK": SECRET},
    )
    child_end.close()
    parent_end.settimeout(WAIT)
    return Probe(proc, parent_end)


def expected_transform(data: bytes) -> bytes:
    """Computed here independently of the probe's code."""
    key = bytes(range(32))
    pad = 16 - len(data) % 16
    enc = Cipher(algorithms.AES(key), modes.CBC(bytes(16))).encryptor()
    ct = enc.update(data + bytes([pad]) * pad) + enc.finalize()
    mac = hmac.new(key, data, hashlib.sha256).digest()
    return mac + ct + int(dh_lib.ikepriv_dh_version()).to_bytes(4, "big")


def proc_status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


@pytest.fixture
def echo_probe(empty_dir: Path) -> Iterator[tuple[Probe, dict[str, object]]]:
    probe = spawn("echo", empty_dir)
    try:
        report = json.loads(probe.sock.recv(65536))
        yield probe, report
    finally:
        if probe.proc.poll() is None:
            probe.proc.kill()
        probe.sock.close()
        probe.proc.communicate(timeout=WAIT)


def test_sandboxed_child_credentials_and_filters(
    echo_probe: tuple[Probe, dict[str, object]],
) -> None:
    probe, _ = echo_probe
    status = proc_status(probe.proc.pid)
    assert all(uid != "0" for uid in status["Uid"].split())
    assert all(gid != "0" for gid in status["Gid"].split())
    assert status["Groups"].strip() == ""
    for capset in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[capset], 16) == 0, capset
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"
    assert status["Threads"].strip() == "1"
    # Not dumpable: the kernel makes the /proc/PID files of such a process root's.
    assert os.stat(f"/proc/{probe.proc.pid}/environ").st_uid == 0


INTERMEDIATE = """
import subprocess, sys
fd = int(sys.argv[2])
proc = subprocess.Popen(
    [sys.executable, sys.argv[3], "echo",
     "--ipc-fd", str(fd), "--chroot", sys.argv[1]],
    pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL)
print(proc.pid, flush=True)
sys.stdin.read()
"""


def test_child_dies_with_its_parent(empty_dir: Path) -> None:
    """PR_SET_PDEATHSIG: a child whose parent is gone must not linger, even though its
    IPC peer (held here, not by the dead parent) is still open."""
    peer, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    peer.settimeout(WAIT)
    parent = subprocess.Popen(  # noqa: S603 -- fixed argv, our own interpreter
        [PYTHON, "-c", INTERMEDIATE, str(empty_dir), str(child_end.fileno()), PROBE],
        pass_fds=(child_end.fileno(),), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        cwd=ROOT,
    )  # fmt: skip
    child_end.close()
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    pidfd = os.pidfd_open(child_pid)
    try:
        assert peer.recv(65536)  # the report: the child is sandboxed and waiting
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        assert poller.poll(0) == []  # alive while its parent lives
        parent.kill()
        parent.communicate(timeout=WAIT)
        assert poller.poll(WAIT * 1000) != []  # readable pidfd: the child has exited
        assert peer.recv(65536) == b""
    finally:
        os.close(pidfd)
        peer.close()


def test_sandboxed_child_has_its_own_network_namespace_and_root(
    echo_probe: tuple[Probe, dict[str, object]], empty_dir: Path
) -> None:
    probe, _ = echo_probe
    pid = probe.proc.pid
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert os.readlink(f"/proc/{pid}/root") == str(empty_dir)
    assert os.readlink(f"/proc/{pid}/cwd") == str(empty_dir)


def test_sandboxed_child_rlimits_and_environment(
    echo_probe: tuple[Probe, dict[str, object]],
) -> None:
    probe, _ = echo_probe
    limits = Path(f"/proc/{probe.proc.pid}/limits").read_text().splitlines()
    by_name = {line[:26].strip(): line[26:].split() for line in limits[1:]}
    assert by_name["Max processes"][:2] == ["0", "0"]
    assert by_name["Max file size"][:2] == ["0", "0"]
    assert by_name["Max core file size"][:2] == ["0", "0"]
    assert int(by_name["Max open files"][0]) < 32
    assert by_name["Max address space"][0] != "unlimited"
    # The environment block the kernel copied at exec has been wiped.
    assert SECRET.encode() not in Path(f"/proc/{probe.proc.pid}/environ").read_bytes()


def test_report_over_ipc_names_every_layer(
    echo_probe: tuple[Probe, dict[str, object]],
) -> None:
    _, report = echo_probe
    applied = report["applied"]
    assert isinstance(applied, list)
    mandatory = ["netns", "chroot", "bounding_set", "ids", "capabilities", "no_new_privs",
                 "not_dumpable", "pdeathsig", "rlimits", "seccomp"]  # fmt: skip
    assert [s for s in applied if s in mandatory] == mandatory
    skipped = report["skipped"]
    assert isinstance(skipped, dict)
    if landlock.abi_version() is None:
        assert "landlock" in skipped
    else:
        assert "landlock" in applied and "landlock" not in skipped


def test_round_trip_in_trio_loop_after_sandboxing(
    echo_probe: tuple[Probe, dict[str, object]],
) -> None:
    probe, _ = echo_probe
    for message in (b"ping", b"\x00" * 1000, os.urandom(4000)):
        probe.sock.send(message)
        assert probe.sock.recv(65536) == expected_transform(message)
    rc, out, err = probe.finish()
    assert rc == 0, err
    assert out.startswith("REPORT ")


# action -> (errno or outcome from the layers under seccomp, the layer that gives it)
UNDER_SECCOMP: dict[str, tuple[dict[str, str], str]] = {
    "open": ({"errno": "ENOENT"}, "chroot: /etc/passwd does not exist there"),
    "socket": ({"errno": "ENETUNREACH"}, "empty network namespace"),
    "exec": ({"errno": "ENOENT"}, "chroot: no /bin/true"),
    "ptrace": ({"errno": "EPERM"}, "no capabilities, other uid, Landlock domain"),
    "mmap_exec": ({"ok": "'mapped'"}, "nothing but seccomp stops it"),
    "fork": ({"errno": "EAGAIN"}, "RLIMIT_NPROC 0"),
    "thread": ({"error": "can't start new thread"}, "RLIMIT_NPROC 0"),
    "setuid_root": ({"errno": "EPERM"}, "no CAP_SETUID"),
    "kill_parent": ({"errno": "EPERM"}, "other uid (and Landlock signal scope)"),
    "futex_pi": ({"ok": "0"}, "nothing but seccomp stops a PI futex"),
}
# Syscalls through another ABI (x32: number with bit 30 set; i386: int 0x80): whether
# the kernel offers them varies, the filter kills them regardless
# (SCMP_FLTATR_ACT_BADARCH, and libseccomp's x32-bit check in the native branch).
KILLED_BY_SECCOMP = sorted([*UNDER_SECCOMP, "x32_syscall", "i386_syscall"])


@pytest.mark.parametrize("action", KILLED_BY_SECCOMP)
def test_forbidden_action_is_killed_by_seccomp(action: str, empty_dir: Path) -> None:
    rc, out, err = spawn(action, empty_dir).finish()
    assert f'ATTEMPT "{action}"' in out, err  # the sandbox was entered first
    assert "RESULT" not in out
    assert rc == SIGSYS_RC, (rc, err)


@pytest.mark.parametrize("action", sorted(UNDER_SECCOMP))
def test_layers_under_seccomp_stop_action(action: str, empty_dir: Path) -> None:
    rc, out, err = spawn(action, empty_dir, "--without-seccomp").finish()
    assert rc == 0, err
    result = json.loads(out.split("RESULT ", 1)[1])
    assert result == UNDER_SECCOMP[action][0], UNDER_SECCOMP[action][1]


def test_path_lookup_is_answered_eperm_and_the_child_keeps_working(empty_dir: Path) -> None:
    """newfstatat is never run (seccomp_policy: it cannot tell fstat from a path lookup):
    os.stat gets EPERM instead of a SIGSYS, and the child goes on with its work."""
    probe = spawn("stat_path", empty_dir, "--then-echo")
    json.loads(probe.sock.recv(65536))  # the report: sandbox entered
    for message in (b"after the refused stat", bytes(range(256)) * 8):
        probe.sock.send(message)
        assert probe.sock.recv(65536) == expected_transform(message)
    rc, out, err = probe.finish()
    assert rc == 0, err
    assert json.loads(out.split("RESULT ", 1)[1].splitlines()[0]) == {"errno": "EPERM"}
    # without the filter the lookup works (a chroot and Landlock do not stop a stat)
    rc, out, err = spawn("stat_path", empty_dir, "--without-seccomp").finish()
    assert rc == 0, err
    assert "ok" in json.loads(out.split("RESULT ", 1)[1])


def test_only_seccomp_stops_i386_syscalls(empty_dir: Path) -> None:
    """Without the filter, getpid through int 0x80 works wherever the kernel has IA-32
    emulation: seccomp is the layer that closes the compat entry."""
    probe = spawn("i386_syscall", empty_dir, "--without-seccomp")
    rc, out, err = probe.finish()
    if rc == -signal.SIGSEGV:
        pytest.skip("kernel without IA-32 emulation")
    assert rc == 0, err
    assert json.loads(out.split("RESULT ", 1)[1]) == {"ok": str(probe.proc.pid)}


def test_landlock_denies_reading_the_chroot_root(empty_dir: Path) -> None:
    """The chroot root is 0755, so DAC would let uid nobody list it: only Landlock says no."""
    rc, out, err = spawn("open_root_dir", empty_dir, "--without-seccomp").finish()
    assert rc == 0, err
    result = json.loads(out.split("RESULT ", 1)[1])
    if landlock.abi_version() is None:
        assert "ok" in result
    else:
        assert result == {"errno": "EACCES"}


def test_exception_after_sandboxing_prints_traceback(empty_dir: Path) -> None:
    rc, out, err = spawn("raise", empty_dir).finish()
    assert rc == 1
    assert 'ATTEMPT "raise"' in out
    assert "ValueError: probe: deliberate failure after sandboxing" in err
    assert "Traceback" in err


def _assert_failed_closed(probe: Probe, step: str) -> str:
    payload_seen = probe.sock.recv(65536)
    rc, out, err = probe.finish()
    assert rc == EXIT_SANDBOX_FAILED
    assert f"sandbox step '{step}' failed" in err
    assert "REPORT" not in out and "ATTEMPT" not in out
    assert payload_seen == b""  # EOF: the child sent nothing
    return err


def test_without_privileges_unshare_fails_closed(empty_dir: Path) -> None:
    setpriv = "/usr/bin/setpriv"
    if not os.path.exists(setpriv):
        pytest.skip("setpriv (util-linux) not installed")
    # uid 0 but no capabilities at all: the first privileged step must refuse to go on.
    probe = spawn("echo", empty_dir, prefix=(setpriv, "--bounding-set=-all",
                                             "--inh-caps=-all", "--"))  # fmt: skip
    err = _assert_failed_closed(probe, "netns")
    assert "unshare(CLONE_NEWNET)" in err and "Operation not permitted" in err


def test_non_empty_chroot_dir_fails_closed(empty_dir: Path) -> None:
    (empty_dir / "leftover").write_text("x")
    err = _assert_failed_closed(spawn("echo", empty_dir), "chroot")
    assert "not empty" in err


def test_missing_user_fails_closed(empty_dir: Path) -> None:
    probe = spawn("echo", empty_dir, "--user", "ikepriv-no-such-user")
    err = _assert_failed_closed(probe, "ids")
    assert "ikepriv-no-such-user" in err


def test_extra_inherited_descriptor_fails_closed(empty_dir: Path) -> None:
    r, w = os.pipe()
    try:
        probe = spawn("echo", empty_dir, extra_fds=(r,))
        err = _assert_failed_closed(probe, "fds")
        assert f"unexpected inherited descriptors [{r}]" in err
    finally:
        os.close(r)
        os.close(w)
