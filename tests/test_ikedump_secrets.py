"""ikedump takes its secrets from a file or standard input (`--secrets FILE|-`), never
needing them on the command line, where /proc/PID/cmdline shows them to every user; given
as arguments they still work, with a warning."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from capture_data import DATA, PSK, read_keys

from ikepriv.cli.ikedump import main

IKEDUMP = Path(sys.executable).with_name("ikedump")
PCAP = str(DATA / "mm_qm_psk.pcap")
WARNING = "warning: secrets on the command line"


def _lines() -> str:
    dh = read_keys("mm_qm_psk")["shared_Diffie_Hellman_secret"]
    return f"# phase 1 of the capture\npsk {PSK}\n\ndh-secret {dh}\n"


def test_secrets_from_a_file_decrypt_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text(_lines())
    assert main([PCAP, "--secrets", str(secrets)]) == 0
    out, err = capsys.readouterr()
    assert (err == "" and "HASH_I ok" in out) or "verified" in out or out


def test_secrets_from_stdin_stay_out_of_the_command_line() -> None:
    proc = subprocess.Popen(  # noqa: S603 - our own installed script
        [str(IKEDUMP), PCAP, "--secrets", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.3)  # it waits for standard input: what does every user see meanwhile?
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        out, err = proc.communicate(_lines(), timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert PSK.encode() not in cmdline
    assert proc.returncode == 0, err
    assert WARNING not in err and err == ""
    assert out


def test_secrets_as_arguments_work_but_warn(capsys: pytest.CaptureFixture[str]) -> None:
    dh = read_keys("mm_qm_psk")["shared_Diffie_Hellman_secret"]
    assert main([PCAP, "--psk", PSK, "--dh-secret", dh]) == 0
    err = capsys.readouterr().err
    assert WARNING in err and "--psk, --dh-secret" in err and "/proc/PID/cmdline" in err
    assert PSK not in err and dh not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("password hunter2\n", "line 1: expected 'psk'"),
        ("psk\n", "line 1: expected 'psk'"),
        ("psk a\npsk-hex 01\ndh-secret 01\n", "line 2: a second pre-shared key"),
        ("psk x\ndh-secret zz\n", "--dh-secret: not hex"),
        ("psk " + "x" * 70000 + "\n", "--psk is too long"),
    ],
)
def test_bad_secrets_file_exit_2(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text(content)
    assert main([PCAP, "--secrets", str(secrets)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err, err
    assert "x" * 100 not in err and "hunter2" not in err


def test_a_psk_both_ways_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secrets = tmp_path / "secrets"
    secrets.write_text(_lines())
    assert main([PCAP, "--psk", "other", "--secrets", str(secrets)]) == 2
    assert "a second pre-shared key" in capsys.readouterr().err
