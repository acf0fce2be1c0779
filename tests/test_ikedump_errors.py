"""ikedump failures: one line on stderr naming the frame (and the offset where there is
one), the documented exit status, and never a traceback."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest
from capture_data import DATA, PSK, frames, read_keys, secrets_file

from ikepriv.cli.ikedump import main

IKEDUMP = Path(sys.executable).with_name("ikedump")
ETH_IP_UDP = 14 + 20 + 8


def write_pcap(path: Path, packets: list[bytes]) -> Path:
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle, snaplen=65535, linktype=1)
        for i, pkt in enumerate(packets):
            writer.writepkt(pkt, ts=1_700_000_000 + i)
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own installed script
        [str(IKEDUMP), *args], capture_output=True, text=True, check=False, timeout=120
    )


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_corrupted_payload_header_names_frame_and_offset(tmp_path: Path) -> None:
    f = frames("mm_qm_psk")
    bad = bytearray(f[0])
    bad[ETH_IP_UDP + 29] = 1  # RESERVED of the SA payload's generic header
    pcap = write_pcap(tmp_path / "bad.pcap", [bytes(bad), *f[1:]])
    result = run(str(pcap))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("ikedump: frame 1 offset 29: PAYLOAD-MALFORMED: ")
    assert "RESERVED" in line
    # the other frames are still decoded and shown
    assert "frame 9 " in result.stdout and "PROBLEM frame 1 offset 29" in result.stdout


def test_truncated_frame_names_the_offset_where_it_ends(tmp_path: Path) -> None:
    f = frames("mm_qm_psk")
    pcap = write_pcap(tmp_path / "cut.pcap", [*f[:2], f[2][:-10], *f[3:]])
    result = run(str(pcap))
    assert result.returncode == 1
    assert one_line(result.stderr) == (
        "ikedump: frame 3 offset 386: truncated by the capture: 386 of 396 bytes of the "
        "ISAKMP message"
    )


def test_truncated_frame_without_keys_is_the_only_problem(tmp_path: Path) -> None:
    f = frames("am_qm_psk")
    pcap = write_pcap(tmp_path / "cut.pcap", [*f[:5], f[5][:-1]])
    result = run(str(pcap))
    assert result.returncode == 1
    assert one_line(result.stderr).startswith("ikedump: frame 6 offset 75: truncated")


def test_corrupted_ciphertext_fails_with_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = frames("mm_qm_psk")
    bad = bytearray(f[6])  # QM1
    bad[ETH_IP_UDP + 4 + 28 + 100] ^= 0x01  # inside the ciphertext (after marker and header)
    pcap = write_pcap(tmp_path / "flip.pcap", [*f[:6], bytes(bad), *f[7:]])
    dh = read_keys("mm_qm_psk")["shared_Diffie_Hellman_secret"]
    assert main([str(pcap), *secrets_file(["--psk", PSK, "--dh-secret", dh])]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ikedump: frame 7")
    assert "HASH(1)" in err or "offset" in err


def test_garbage_file_exit_3_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture file at all\n" * 10)
    result = run(str(garbage))
    assert result.returncode == 3
    assert one_line(result.stderr).startswith("ikedump: not a pcap or pcapng file")
    assert result.stdout == ""


def test_missing_and_empty_files_exit_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "absent.pcap")]) == 3
    assert "No such file" in capsys.readouterr().err
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    assert main([str(empty)]) == 3
    assert capsys.readouterr().err.startswith("ikedump: not a pcap")


def test_file_cut_inside_a_record_header_exit_3(tmp_path: Path) -> None:
    data = (DATA / "mm_qm_psk.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    # pcap global header 24 bytes, record header 16: cut the second record's header
    first_len = struct.unpack_from("<I", data, 24 + 8)[0]
    cut.write_bytes(data[: 24 + 16 + first_len + 7])
    result = run(str(cut))
    assert result.returncode == 3
    assert one_line(result.stderr).startswith("ikedump: capture file damaged after frame 1")
    assert "frame 1 " in result.stdout


def test_unsupported_link_type_exit_3(tmp_path: Path) -> None:
    path = tmp_path / "wifi.pcap"
    with path.open("wb") as handle:
        dpkt.pcap.Writer(handle, linktype=127).writepkt(b"\x00" * 40, ts=0)
    result = run(str(path))
    assert result.returncode == 3
    assert one_line(result.stderr) == "ikedump: link type 127 is not supported"


def test_ip_fragment_is_reported_not_skipped(tmp_path: Path) -> None:
    f = frames("am_qm_psk")
    frag = bytearray(f[0])
    struct.pack_into("!H", frag, 14 + 6, 0x2000)  # more fragments
    pcap = write_pcap(tmp_path / "frag.pcap", [bytes(frag), *f[1:]])
    result = run(str(pcap))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert line.startswith("ikedump: frame 1: IPv4 fragment of a UDP datagram 192.0.2.1")
    assert "not supported" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--psk", "x"], "--psk needs --dh-secret"),
        (["--psk", "x", "--dh-secret", "zz"], "--dh-secret: not hex"),
        (["--psk", "x", "--dh-secret", "0102", "--keys", "t"], "exclude each other"),
        (["--psk", "x", "--psk-hex", "01"], "not allowed with argument"),
        (["--qm-dh-secret", "01"], "--qm-dh-secret needs --dh-secret"),
        (["--dh-secret", "0102", "--keys", "t"], "--keys and --dh-secret exclude each other"),
        (["--psk", "x", "--dh-secret", "0102=01"], "selector must be 8 bytes"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_usage_errors_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(DATA / "mm_qm_psk.pcap"), *args]) == 2
    lines = capsys.readouterr().err.splitlines()
    err = "\n".join(line for line in lines if "warning: secrets on the command line" not in line)
    assert one_line(err).startswith("ikedump: ") and message in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("7d206acae8f86092\n", "want icookie_hex,Ka_hex"),
        ("7d206acae8f860,a2b5e6549ad51656b93617f1353220d9\n", "icookie must be 8 bytes"),
        ("7d206acae8f86092,nothex\n", "not hex"),
        ("# only a comment\n\n", "no keys"),
    ],
)
def test_bad_key_file_exit_2(
    content: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "table"
    table.write_text(content)
    assert main([str(DATA / "mm_qm_psk.pcap"), "--keys", str(table)]) == 2
    assert message in one_line(capsys.readouterr().err)


def test_wrong_ka_fails_with_offset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "table"
    table.write_text(f"{read_keys('mm_qm_psk')['icookie']},{'11' * 16}\n")
    assert main([str(DATA / "mm_qm_psk.pcap"), "--keys", str(table)]) == 1
    err = one_line(capsys.readouterr().err)
    assert err.startswith("ikedump: frame 5 offset ")
    assert "wrong key?" in err


def test_ka_of_the_wrong_size_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "table"
    table.write_text(f"{read_keys('mm_qm_psk')['icookie']},{'11' * 10}\n")
    assert main([str(DATA / "mm_qm_psk.pcap"), "--keys", str(table)]) == 1
    assert "AES-CBC key of 10 bytes" in capsys.readouterr().err


def test_ikev2_on_port_500_is_counted_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = frames("mm_qm_psk")
    v2 = bytearray(f[0])
    v2[ETH_IP_UDP + 17] = 0x20  # version 2.0
    pcap = write_pcap(tmp_path / "v2.pcap", [bytes(v2), *f[1:4]])
    assert main([str(pcap)]) == 0
    assert "1 IKEv2 messages" in capsys.readouterr().out


def test_a_dh_secret_alone_does_not_key_a_pre_shared_key_sa(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A DH secret alone keys signature SAs; for a PSK SA ikedump says the PSK is missing."""
    dh = read_keys("mm_qm_psk")["shared_Diffie_Hellman_secret"]
    assert main([str(DATA / "mm_qm_psk.pcap"), *secrets_file(["--dh-secret", dh])]) == 1
    err = capsys.readouterr().err
    assert one_line(err) == (
        "ikedump: frame 5: not decrypted: authentication method PRE_SHARED_KEY: "
        "no pre-shared key given (psk) (+4 more)"
    )
