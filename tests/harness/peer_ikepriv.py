"""ikepriv as an interop peer: one `ikeprivd` per instance, driven with `ikedb` and `ike`.

The same driver serves ikepriv <-> ikepriv, ikepriv <-> strongSwan and ikepriv <-> libreswan:
the PeerSpec becomes one phase 1 and one phase 2 definition (TOML, loaded with `ikedb -p`),
the daemon runs in the spec's gateway namespace (it binds UDP 500/4500 there itself) with its
database, control socket, chroot directory, log and optional key log in the instance dir.

`initiate()` is `ike cmd=activate`, then a poll of the listing until both phases of this side
say 'established'. The listing poll talks to the control socket in-process with the very code
`ike cmd=list json` runs (ikepriv.cli: parse_args, control_call, row_to_json): an `ike` exec
costs about 0.5 s under UML, which would swamp the handshake times being measured. Commands
whose effect a test asserts (activate, remove, the final listing) go through the real `ike`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from .peers import Peer, PeerError, PeerSpec, register

BIN = Path(sys.executable).parent
PHASE1_NAME = "gw"
PHASE2_NAME = "lan"
START_TIMEOUT = 60.0


def tool(name: str) -> list[str]:
    """The installed console script next to this interpreter, else `python -m`."""
    exe = BIN / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", f"ikepriv.cli.{name}"]


@dataclass(frozen=True)
class Phase2Def:
    """One extra phase 2 definition under the instance's phase 1 (selectors from this side)."""

    name: str
    local_subnet: str
    remote_subnet: str
    esp: str
    autostart: bool = False
    protocol: str = "any"


@dataclass
class IkeprivOptions:
    """What a PeerSpec does not say: set on `peer.options` before start()."""

    keylog: bool = False
    autostart: bool = False
    extra_phase2: list[Phase2Def] = field(default_factory=list)
    only_extra_phase2: bool = False  # drop the spec's own phase 2 definition
    user: str | None = None  # ikeprivd --user (default: the daemon's choice)
    phase1_extra: dict[str, Any] = field(default_factory=dict)  # more keys of the phase 1
    phase2_extra: dict[str, Any] = field(default_factory=dict)  # ... of the spec's phase 2
    phase2_lifetime: int | None = None  # seconds, for the spec's phase 2 (default: 3600)


def credentials(spec: PeerSpec) -> dict[str, Any]:
    """auth and its keys: the PSK, or the certificate files of spec.pki (rsa-sig or
    ecdsa-sig by the key's type)."""
    if spec.auth == "psk":
        return {"auth": "psk", "psk": spec.psk}
    pki = Path(spec.pki)
    out: dict[str, Any] = {
        "auth": "rsa-sig" if b"RSA" in (pki / "kind").read_bytes() else "ecdsa-sig",
        "cert": str(pki / "cert.pem"),
        "key": str(pki / "key.pem"),
        "ca": [str(pki / "ca.pem")],
        "send_cert": "always",
    }
    if (pki / "crl.pem").exists():
        out["crl"] = [str(pki / "crl.pem")]
    return out


def definitions(spec: PeerSpec, opts: IkeprivOptions) -> dict[str, Any]:
    """The TOML document (as a dict) for this side of `spec`."""
    p1: dict[str, Any] = {
        "name": PHASE1_NAME,
        "local_addr": spec.local,
        "remote_addr": spec.remote,
        "local_id": spec.my_id,
        "remote_id": spec.peer_id,
        "mode": spec.exchange,
        **credentials(spec),
        "proposals": [spec.ike],
        "autostart": opts.autostart,
        **opts.phase1_extra,
    }
    for key, value in (
        ("lifetime", spec.ike_lifetime),
        ("rekey_margin", spec.ike_margin),
        ("fragmentation", spec.fragmentation),
        ("fragment_size", spec.fragment_size),
    ):
        if value:
            p1[key] = value
    p2s: list[dict[str, Any]] = []
    if not opts.only_extra_phase2:
        p2 = {
            "name": PHASE2_NAME,
            "phase1": PHASE1_NAME,
            **(
                {"local_subnets": list(spec.local_subnets)}
                if spec.local_subnets
                else {"local_subnet": spec.local_ts}
            ),
            **(
                {"remote_subnets": list(spec.remote_subnets)}
                if spec.remote_subnets
                else {"remote_subnet": spec.remote_ts}
            ),
            "ah_proposals" if spec.ah else "proposals": [spec.esp],
            "autostart": opts.autostart,
        }
        for key, value in (("lifetime", spec.child_lifetime), ("rekey_margin", spec.child_margin)):
            if value:
                p2[key] = value
        if opts.phase2_lifetime is not None:
            p2["lifetime"] = opts.phase2_lifetime
        p2.update(opts.phase2_extra)
        p2s.append(p2)
    for d in opts.extra_phase2:
        p2s.append(
            {
                "name": d.name,
                "phase1": PHASE1_NAME,
                "local_subnet": d.local_subnet,
                "remote_subnet": d.remote_subnet,
                "protocol": d.protocol,
                "proposals": [d.esp],
                "autostart": d.autostart,
            }
        )
    return {"phase1": [p1], "phase2": p2s}


@register
class Ikepriv(Peer):
    """ikeprivd in `spec.netns`; all state in `self.dir`."""

    impl = "ikepriv"

    def __init__(self, spec: PeerSpec, state_root: Path) -> None:
        super().__init__(spec, state_root)
        self.options = IkeprivOptions()
        self.activate_exec_s: float | None = None  # how long the last `ike cmd=activate` ran

    # paths ----------------------------------------------------------------------------------
    @property
    def db(self) -> Path:
        return self.dir / "db" / "tunnels.db"

    @property
    def control(self) -> Path:
        return self.dir / "run" / "control.sock"

    @property
    def keylog(self) -> Path:
        return self.dir / "keylog.txt"

    @property
    def daemon_log(self) -> Path:
        return self.dir / "ikeprivd.log"

    @property
    def env(self) -> dict[str, str]:
        return {"IKEPRIV_DB": str(self.db), "IKEPRIV_CONTROL": str(self.control)}

    # life cycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._fresh_dir("run", "empty")
        (self.dir / "run").chmod(0o700)
        self.put_definitions(definitions(self.spec, self.options))
        argv = [
            *tool("ikeprivd"),
            "--db",
            str(self.db),
            "--control",
            str(self.control),
            "--chroot",
            str(self.dir / "empty"),
            "--log-stderr",
        ]
        if self.options.user:
            argv += ["--user", self.options.user]
        if self.options.keylog:
            argv += ["--keylog", str(self.keylog)]
        if self.spec.debug:
            argv.append("--debug")
        notify_path = self.dir / "run" / "notify.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as notify:
            notify_path.unlink(missing_ok=True)
            notify.bind(str(notify_path))
            self._spawn(
                argv,
                env={**self.env, "NOTIFY_SOCKET": str(notify_path)},
                out_name=self.daemon_log.name,
            )
            self._wait_ready(notify, START_TIMEOUT)
        notify_path.unlink(missing_ok=True)

    def _wait_ready(self, notify: socket.socket, timeout: float) -> None:
        """Ready = the daemon's READY=1 (sd_notify), which it sends once its first child has
        its configuration: from then on a peer's first datagram is answered."""
        deadline = time.monotonic() + timeout
        notify.settimeout(0.2)
        while True:
            try:
                if b"READY=1" in notify.recv(4096).split(b"\n"):
                    return
            except TimeoutError:
                pass
            if not self.alive():
                raise PeerError(f"ikeprivd {self.spec.name} exited early\n" + self.log_tail())
            if time.monotonic() > deadline:
                raise PeerError(
                    f"ikeprivd {self.spec.name}: not ready after {timeout}s\n" + self.log_tail()
                )

    def stop(self) -> None:
        """TERM by PID (the daemon removes its SAs and policies), KILL after a grace period."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with open(self.daemon_log, "a") as f:
                    f.write("[harness] no exit 10 s after SIGTERM: SIGKILL\n")
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    # definitions ----------------------------------------------------------------------------
    def put_definitions(self, doc: dict[str, Any], *, force: bool = False) -> None:
        path = self.dir / "definitions.toml"
        path.write_text(tomli_w.dumps(doc))
        path.chmod(0o600)
        r = self.ikedb("-p", str(path), *(["-F"] if force else []))
        if r.returncode != 0:
            raise PeerError(f"ikedb -p failed (rc {r.returncode}): {r.stderr.strip()}")

    def ikedb(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._cli("ikedb", ["--db", str(self.db), *args])

    # ike ------------------------------------------------------------------------------------
    def ike(self, *words: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The real `ike` command against this daemon; every call is logged in ike.out."""
        return self._cli("ike", list(words), timeout=timeout)

    def _cli(
        self, name: str, args: Sequence[str], timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = [*tool(name), *args]
        r = subprocess.run(  # noqa: S603 -- our own programs
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
        )
        with open(self.dir / f"{name}.out", "a") as f:
            f.write(f"$ {name} {' '.join(args)}  -> rc {r.returncode}\n{r.stdout}{r.stderr}")
        return r

    def try_list(self, *words: str) -> list[dict[str, Any]] | None:
        """`ike cmd=list json [words]` run in-process (same client code); None if the daemon
        does not answer or refuses."""
        from ikepriv.cli.ike_args import parse_args
        from ikepriv.cli.listing import row_to_json
        from ikepriv.ipc.control import connect, control_call, merge
        from ikepriv.ipc.messages import ErrorCode

        request = parse_args(["cmd=list", "json", *words])
        try:
            with connect(str(self.control), timeout=5) as sock:
                status, _lines, rows = merge(control_call(sock, request))
        except (OSError, ValueError):
            return None
        if status is not ErrorCode.OK:
            return None
        return [row_to_json(r) for r in rows]

    def rows(self, *words: str) -> list[dict[str, Any]]:
        return self.try_list(*words) or []

    def list_json(self, *words: str) -> tuple[int, list[dict[str, Any]], str]:
        """The real `ike cmd=list json`: (rc, rows, stderr)."""
        import json

        r = self.ike("cmd=list", "json", *words)
        try:
            rows = json.loads(r.stdout) if r.returncode == 0 else []
        except ValueError:
            return 1, [], f"not JSON: {r.stdout[:200]!r} {r.stderr}"
        return r.returncode, rows, r.stderr

    def phase_states(self) -> dict[int, list[str]]:
        """phase -> states of its rows, from the daemon's listing."""
        out: dict[int, list[str]] = {1: [], 2: []}
        for row in self.rows():
            out.setdefault(int(row["phase"]), []).append(str(row["state"]))
        return out

    def initiate(self, timeout: float = 30) -> bool:
        t = time.monotonic()
        r = self.ike("cmd=activate")
        self.activate_exec_s = time.monotonic() - t
        (self.dir / "initiate.out").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            return False
        return self.wait_established(timeout)

    def initiate_phase1(self, timeout: float = 30) -> bool:
        r = self.ike("cmd=activate", "phase=1")
        (self.dir / "initiate.out").write_text(r.stdout + r.stderr)
        if r.returncode != 0:
            return False
        return self.wait_for(self.ike_established, timeout)

    def wait_for(self, cond: Any, timeout: float, step: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline or not self.alive():
                return False
            time.sleep(step)
        return True

    def wait_established(self, timeout: float, phase2: int = 1) -> bool:
        return self.wait_for(lambda: self.established(phase2), timeout)

    def established(self, phase2: int = 1) -> bool:
        """An established phase 1 and at least `phase2` established phase 2 tunnels."""
        s = self.phase_states()
        return "established" in s[1] and s[2].count("established") >= phase2

    def ike_established(self) -> bool:
        return "established" in self.phase_states()[1]

    # the sandboxed child --------------------------------------------------------------------
    def child_pids(self) -> list[int]:
        """PIDs of the daemon's children (the negotiator), from /proc."""
        if self.proc is None:
            return []
        pids: list[int] = []
        try:
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                text = (task / "children").read_text()
                pids += [int(p) for p in text.split()]
        except OSError:
            return pids
        return pids

    def child_sandboxed(self) -> bool:
        """A child of the daemon runs under its seccomp filter (/proc: Seccomp 2)."""
        for pid in self.child_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if any(line.split() == ["Seccomp:", "2"] for line in status.splitlines()):
                return True
        return False

    def logs(self) -> list[Path]:
        names = (
            self.daemon_log.name,
            "ikedb.out",
            "ike.out",
            "initiate.out",
            "definitions.toml",
            self.keylog.name,
            self.keylog.name + ".esp_sa",
        )
        return [self.dir / n for n in names if (self.dir / n).exists()]
