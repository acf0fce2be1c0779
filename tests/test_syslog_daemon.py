"""ikeprivd without --log-stderr logs to syslog (/dev/log, facility daemon, tag ikeprivd).

A real syslog daemon (busybox syslogd, writing to a file) listens on /dev/log inside a
private mount namespace: /dev there is a fresh tmpfs holding only the device nodes a
daemon needs (bound from the real /dev) and syslogd's socket, so the host's /dev is never
touched. ikeprivd runs in that mount namespace and in a network namespace of its own; a
second ikeprivd with another pre-shared key is its peer. The operator's view is checked:
the failed negotiation is one syslog line at daemon.err, tagged ikeprivd[PID], naming the
tunnel-manager number and the definition.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_daemon_support import (
    GW_A,
    GW_B,
    PYTHON,
    ROOT,
    SITE,
    WAIT,
    Daemon,
    Topology,
    wait_for,
    write_db,
)

from ikepriv.ipc import messages as m
from ikepriv.ipc.control import connect, control_call, merge

pytestmark = pytest.mark.root

BUSYBOX = "/bin/busybox"
DEVICES = ("null", "zero", "full", "random", "urandom")

# Runs under `unshare --mount --propagation private`: $1 work dir, $2 netns, then the
# daemon's command line. Ends by exec'ing the daemon, so its pid is the script's pid.
NAMESPACE_SCRIPT = r"""
set -eu
work=$1; ns=$2; shift 2
mkdir -p "$work/realdev"
mount --bind /dev "$work/realdev"
mount -t tmpfs -o mode=0755,size=1m ikepriv-test-dev /dev
for dev in DEVICES; do
    : > "/dev/$dev"
    mount --bind "$work/realdev/$dev" "/dev/$dev"
done
ln -s /proc/self/fd /dev/fd
umount "$work/realdev"
BUSYBOX syslogd -n -O "$work/syslog.txt" &
echo $! > "$work/syslogd.pid"
tries=0
while [ ! -S /dev/log ]; do
    tries=$((tries + 1))
    [ "$tries" -lt 600 ] || { echo "syslogd did not create /dev/log" >&2; exit 1; }
    sleep 0.05
done
exec ip netns exec "$ns" "$@"
""".replace("DEVICES", " ".join(DEVICES)).replace("BUSYBOX", BUSYBOX)


@dataclass
class SyslogDaemon:
    """ikeprivd logging to a private syslogd; `syslog()` is what syslogd wrote."""

    proc: subprocess.Popen[bytes]
    work: Path
    control_path: str

    def syslog(self) -> str:
        path = self.work / "syslog.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    def stderr(self) -> str:
        return (self.work / "stderr.txt").read_text(errors="replace")

    def call(self, request: m.ActivateRequest) -> tuple[m.ErrorCode, list[str]]:
        with connect(self.control_path, timeout=WAIT) as sock:
            code, lines, _ = merge(control_call(sock, request))
        return code, lines

    def syslogd_pid(self) -> int | None:
        path = self.work / "syslogd.pid"
        return int(path.read_text()) if path.exists() else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)
        pid = self.syslogd_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def start_with_syslog(netns: str, tmp: Path) -> SyslogDaemon:
    """ikeprivd (without --log-stderr) in `netns`, with a private syslogd on /dev/log."""
    work = tmp / "syslog-ns"
    work.mkdir()
    db = tmp / "a.db"
    write_db(db)
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    control = str(tmp / "a.ctl")
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT,
           "ikepriv-syslog-test", str(work), netns,
           PYTHON, "-m", "ikepriv.cli.ikeprivd", "--db", str(db), "--control", control,
           "--chroot", str(empty)]  # fmt: skip
    with open(work / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # noqa: S603
                                stderr=stderr, cwd=ROOT)  # fmt: skip
    daemon = SyslogDaemon(proc, work, control)

    def control_up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}:\n{daemon.stderr()}")
        try:
            connect(control, timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_for("the control socket", control_up)
    except BaseException:
        daemon.stop()
        raise
    return daemon


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology.create() as t:
        yield t


def test_negotiation_error_goes_to_syslog_with_tunnel_number(
    topo: Topology, tmp_path: Path
) -> None:
    assert os.path.exists(BUSYBOX), "busybox-static provides the syslog daemon"
    host_dev_log = os.path.lexists("/dev/log")
    peer_db = tmp_path / "b.db"
    write_db(peer_db, SITE.replace("a long random shared secret for the tests",
                                   "a different secret on the peer"), swap=True)  # fmt: skip
    peer = Daemon.start(topo.b, tmp_path, db=peer_db, name="b")
    daemon = start_with_syslog(topo.a, tmp_path)
    try:
        wait_for("ikeprivd's start line in syslog",
                 lambda: "ikeprivd started" in daemon.syslog())  # fmt: skip
        code, lines = daemon.call(m.ActivateRequest(m.Phase.PHASE1, (m.NumRange(1, 1),), (),
                                                    None, None, None, False))  # fmt: skip
        assert code is m.ErrorCode.OK, lines
        failure = re.compile(
            r"daemon\.err ikeprivd\[(\d+)\]: child(?: \d+)?: "  # the shard with several children
            r"phase 1 tunnel (\d+) \(to-siteB\) with "
            + re.escape(GW_B)
            + r" failed: peer sent AUTHENTICATION_FAILED$",
            re.MULTILINE,
        )
        found = wait_for("the failed negotiation in syslog",
                         lambda: failure.search(daemon.syslog()))  # fmt: skip
        assert isinstance(found, re.Match)
        assert int(found.group(1)) == daemon.proc.pid  # the parent's tag, not the child's
        assert int(found.group(2)) >= 1
        # the peer saw the key mismatch too, and says so in its own log
        peer.wait_log(r"phase 1 tunnel \d+ \(to-siteB\): message from " + re.escape(GW_A)
                      + r" does not decrypt \(pre-shared key mismatch\?\)")  # fmt: skip
        # informational lines carry the daemon facility at their own level; nothing of
        # this went to stderr (syslog was there)
        assert re.search(r"daemon\.info ikeprivd\[\d+\]: ikeprivd started", daemon.syslog())
        assert "no /dev/log" not in daemon.stderr()
    finally:
        daemon.stop()
        peer.stop()
    assert os.path.lexists("/dev/log") == host_dev_log  # the host's /dev was not touched
