"""deploy/install.sh for real: into a scratch root (--root), and under a real systemd.

- `--root DIR`: the whole install below a temporary directory (venv, links, unit, sysusers,
  tmpfiles, man pages, the Cockpit page, the ikepriv user in DIR/etc/passwd), run twice
  (idempotent), then --uninstall keeps the database and --uninstall --purge removes it. The
  host is not touched.
- tests/deploy/nspawn-systemd.sh: systemd 252 as PID 1 of a systemd-nspawn container whose root
  is a throwaway overlay of this machine's "/": install.sh, then start, reload, stop, start,
  kill -9 of the parent (systemd restarts it), a phase 1 tunnel up through the service each
  time, `man ike`, uninstall and purge. About a minute.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install.sh"

pytestmark = pytest.mark.root


def _sh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        ["bash", *args],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


def test_install_into_a_scratch_root(tmp_path: Path) -> None:
    if shutil.which("systemd-sysusers") is None:
        pytest.skip("systemd-sysusers missing")
    root = tmp_path / "root"
    for _ in range(2):  # the second run is an upgrade over the first
        done = _sh(str(INSTALL), "--root", str(root))
        assert done.returncode == 0, done.stderr[-3000:]
    for prog in ("ikeprivd", "ike", "ikedb", "ikedump"):
        link = root / "usr/local/sbin" / prog
        assert link.is_symlink() and str(link.readlink()) == f"/opt/ikepriv/bin/{prog}"
        assert (root / "opt/ikepriv/bin" / prog).exists()
    for page in ("man8/ike.8.gz", "man8/ikedb.8.gz", "man8/ikeprivd.8.gz", "man8/ikedump.8.gz",
                 "man5/ikepriv.toml.5.gz"):  # fmt: skip
        assert (root / "usr/local/share/man" / page).stat().st_size > 200
    unit = root / "etc/systemd/system/ikeprivd.service"
    assert unit.read_text() == (ROOT / "deploy/ikeprivd.service").read_text()
    assert (root / "etc/systemd/system/multi-user.target.wants/ikeprivd.service").is_symlink()
    assert "ikepriv:" in (root / "etc/passwd").read_text()
    assert oct((root / "var/lib/ikepriv").stat().st_mode & 0o777) == "0o700"
    out = subprocess.run(  # noqa: S603 -- the installed interpreter works from its venv
        [str(root / "opt/ikepriv/bin/ike"), "help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and "stats [json | prom]" in out.stdout
    cockpit = root / "usr/local/share/cockpit/ikepriv"
    for name in ("manifest.json", "index.html", "ikepriv.js", "ikepriv.css"):
        installed = cockpit / name
        assert installed.read_bytes() == (ROOT / "deploy/cockpit/ikepriv" / name).read_bytes()
        assert installed.stat().st_mode & 0o777 == 0o644
    assert json.loads((cockpit / "manifest.json").read_text())["menu"]["index"]["label"] == (
        "IKE tunnels"
    )
    (root / "var/lib/ikepriv/tunnels.db").write_bytes(b"")
    done = _sh(str(INSTALL), "--root", str(root), "--uninstall")
    assert done.returncode == 0, done.stderr
    assert not (root / "opt/ikepriv").exists() and not unit.exists()
    assert not (root / "usr/local/sbin/ike").exists()
    assert not cockpit.exists()
    assert (root / "var/lib/ikepriv/tunnels.db").exists()  # the keys stay
    done = _sh(str(INSTALL), "--root", str(root), "--uninstall", "--purge")
    assert done.returncode == 0, done.stderr
    assert not (root / "var/lib/ikepriv").exists()
    assert "ikepriv:" not in (root / "etc/passwd").read_text()


def test_unit_lifecycle_under_real_systemd() -> None:
    if shutil.which("systemd-nspawn") is None:
        pytest.skip("systemd-nspawn missing (package systemd-container)")
    done = _sh(str(ROOT / "tests/deploy/nspawn-systemd.sh"))
    assert done.returncode == 0 and "ALL OK" in done.stdout, (
        done.stdout[-6000:],
        done.stderr[-2000:],
    )


def test_unit_exposure_score() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze missing")
    out = subprocess.run(  # noqa: S603
        ["systemd-analyze", "security", "--offline=true", str(ROOT / "deploy/ikeprivd.service")],  # noqa: S607
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    score = float(
        out.stdout.rsplit("Overall exposure level for ikeprivd.service:", 1)[1].split()[0]
    )
    assert score <= 3.5, out.stdout[-500:]
