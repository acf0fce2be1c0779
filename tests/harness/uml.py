"""Run commands and Python functions inside User Mode Linux (tests/realkernel/run-in-kernel.sh).

The host kernel has no ESP, so every test that needs real ESP SAs runs its body in the UML
guest. A boot costs about 3.5 s, so a test module should do all its guest work in one boot:
`run_function` calls one function in the guest and hands its JSON-able return value back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
RUN_IN_KERNEL = TESTS / "realkernel" / "run-in-kernel.sh"
RESULT_MARK = "@@UML-RESULT@@ "
# The kernel is killed by run-in-kernel.sh at its own timeout; ours is a backstop on top.
_BACKSTOP_S = 30.0


class UmlError(RuntimeError):
    """The guest did not run the command (boot failure, timeout, no result line)."""


@dataclass(frozen=True)
class UmlResult:
    rc: int
    stdout: str
    stderr: str

    def check(self) -> UmlResult:
        if self.rc != 0:
            raise UmlError(
                f"guest command failed with rc {self.rc}\n--- stdout\n{self.stdout}"
                f"\n--- stderr\n{self.stderr}"
            )
        return self


def missing_prerequisites() -> list[str]:
    """What this machine lacks to boot UML (empty list: ready). Used for skip reasons."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    if not (Path("/usr/bin/linux.uml").exists() or shutil.which("apt-get")):
        missing.append("user-mode-linux (apt package) or apt-get to fetch it")
    for tool in ("ip", "timeout"):
        if shutil.which(tool) is None:
            missing.append(tool)
    return missing


def _pump(src: IO[bytes], sink: list[bytes], echo: IO[str] | None) -> None:
    for line in iter(src.readline, b""):
        sink.append(line)
        if echo is not None:
            echo.write(line.decode(errors="replace"))
            echo.flush()
    src.close()


def run(
    argv: Sequence[str],
    *,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    cwd: Path = REPO,
    stream: bool = False,
    mem: str = "512M",
    rw_dirs: Sequence[Path] = (),
) -> UmlResult:
    """Boot UML, run `argv` inside as root (cwd `cwd`), return its rc/stdout/stderr.

    `env` adds variables to the guest environment. With `stream`, the guest's output is echoed
    to our stderr while it runs (pytest -s shows progress). The repo is mounted read-write,
    and so is every existing directory in `rw_dirs` (everything else is read-only).
    rc 124: timeout, 125: the guest reported no status.
    """
    extra = dict(env or {})
    host_env = {**os.environ, **extra}
    passenv = " ".join(sorted({*extra, *host_env.get("RK_PASSENV", "").split()}))
    host_env.update(
        RK_TIMEOUT=str(int(timeout)), RK_MEM=mem, RK_PASSENV=passenv, PYTHONUNBUFFERED="1"
    )
    if rw_dirs:
        host_env["RK_RW"] = " ".join([str(REPO), *(str(Path(d).resolve()) for d in rw_dirs)])
    proc = subprocess.Popen(  # noqa: S603 -- our own programs
        [str(RUN_IN_KERNEL), *argv],
        cwd=cwd,
        env=host_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out: list[bytes] = []
    err: list[bytes] = []
    echo = sys.stderr if stream else None
    pumps = [
        threading.Thread(target=_pump, args=(proc.stdout, out, echo), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, err, echo), daemon=True),
    ]
    for t in pumps:
        t.start()
    try:
        rc = proc.wait(timeout=timeout + _BACKSTOP_S)
    except subprocess.TimeoutExpired:
        # the script's own group (session) only: run-in-kernel.sh, timeout(1) forwards to UML
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            rc = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    for t in pumps:
        t.join(timeout=10)
    return UmlResult(
        rc, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")
    )


def python_argv(*args: str) -> list[str]:
    """argv running this interpreter (the repo venv) with `args`; it runs under hostfs too."""
    return [sys.executable, *args]


_CALL_STUB = """
import json, sys, importlib
sys.path.insert(0, {tests!r})
mod = importlib.import_module({module!r})
value = getattr(mod, {func!r})(*json.loads({args!r}))
sys.stdout.flush()
print({mark!r} + json.dumps(value), flush=True)
"""


def run_function(
    module: str,
    func: str,
    *args: Any,
    timeout: float = 300,
    env: dict[str, str] | None = None,
    stream: bool = False,
    rw_dirs: Sequence[Path] = (),
) -> tuple[Any, UmlResult]:
    """Call `module.func(*args)` in the guest (module importable from tests/, e.g.
    "harness.netns" or "test_realkernel_esp"); return its JSON-decoded value and the run.

    Raises UmlError when the guest produced no result line (exception, timeout, boot failure).
    """
    code = _CALL_STUB.format(
        tests=str(TESTS), module=module, func=func, args=json.dumps(list(args)), mark=RESULT_MARK
    )
    res = run(python_argv("-c", code), timeout=timeout, env=env, stream=stream, rw_dirs=rw_dirs)
    return parse_result(res), res


def parse_result(res: UmlResult) -> Any:
    """The value printed after RESULT_MARK on the guest's stdout (last one wins)."""
    for line in reversed(res.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise UmlError(
        f"no result from guest (rc {res.rc})\n--- stdout\n{res.stdout[-6000:]}"
        f"\n--- stderr\n{res.stderr[-6000:]}"
    )


def in_guest() -> bool:
    """True inside the UML guest booted by run-in-kernel.sh."""
    return Path("/run/rk/ctl").is_dir()
