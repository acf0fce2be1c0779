"""ikedump on the real strongSwan captures: every message decoded, decrypted and verified,
and the keys it prints equal the ones charon logged (tests/data/*.keys)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from capture_data import DATA, PSK, QM_GXY, read_keys, secrets_file

from ikepriv.cli.ikedump import main

IKEDUMP = Path(sys.executable).with_name("ikedump")
EXCHANGES = {
    "mm_qm_psk": ["IDENTITY_PROTECTION"] * 6 + ["QUICK_MODE"] * 3,
    "am_qm_psk": ["AGGRESSIVE"] * 3 + ["QUICK_MODE"] * 3,
}
CHECKS = {
    "mm_qm_psk": [[], [], [], [], ["HASH_I ok"], ["HASH_R ok"]],
    "am_qm_psk": [[], ["HASH_R ok"], ["HASH_I ok"]],
}
QM_CHECKS = [["HASH(1) ok"], ["HASH(2) ok"], ["HASH(3) ok"]]
CAPTURES = sorted(EXCHANGES)


def psk_args(name: str, *, qm: bool = True) -> list[str]:
    args = ["--psk", PSK, "--dh-secret", read_keys(name)["shared_Diffie_Hellman_secret"]]
    return secrets_file([*args, "--qm-dh-secret", QM_GXY[name]] if qm else args)


def key_table(tmp_path: Path, *names: str) -> Path:
    lines = ["# Wireshark IKEv1 decryption table", ""]
    for name in names:
        keys = read_keys(name)
        lines.append(f'"{keys["icookie"]}","{keys["encryption_key_Ka"]}"')
    path = tmp_path / "ikev1_decryption_table"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_json(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, Any]], str]:
    rc = main([*args, "--json"])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("name", CAPTURES)
def test_psk_decrypts_verifies_and_derives_charons_keys(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, objs, err = run_json(capsys, str(DATA / f"{name}.pcap"), *psk_args(name))
    assert rc == 0, err
    assert err == ""
    assert [o["exchange"] for o in objs] == EXCHANGES[name]
    assert [o["checks"] for o in objs] == CHECKS[name] + QM_CHECKS
    assert all(o["decrypted"] for o in objs if o["encrypted"])
    assert all(not o["problems"] for o in objs)
    keys = read_keys(name)
    phase1 = next(o["phase1_keys"] for o in objs if o["phase1_keys"])
    assert phase1 == {
        "SKEYID": keys["SKEYID"],
        "SKEYID_d": keys["SKEYID_d"],
        "SKEYID_a": keys["SKEYID_a"],
        "SKEYID_e": keys["SKEYID_e"],
        "Ka": keys["encryption_key_Ka"],
        "IV": keys["initial_IV"],
    }
    ipsec = [k for o in objs for k in o["ipsec_keys"]]
    initiator, responder = keys["initiator"].split()[0], keys["responder"].split()[0]
    by_direction = {(k["src"], k["dst"]): k for k in ipsec}
    assert len(ipsec) == 2
    out_sa = by_direction[(initiator, responder)]
    in_sa = by_direction[(responder, initiator)]
    assert (out_sa["enc_key"], out_sa["integ_key"]) == (
        keys["encryption_initiator_key"],
        keys["integrity_initiator_key"],
    )
    assert (in_sa["enc_key"], in_sa["integ_key"]) == (
        keys["encryption_responder_key"],
        keys["integrity_responder_key"],
    )
    assert out_sa["cipher"] == "cbc(aes)" and out_sa["integrity"] == "hmac(sha256)"
    # the SPI keying each direction is the one its receiver chose (QM2's for I -> R)
    qm1, qm2 = (o for o in objs if o["exchange"] == "QUICK_MODE" and o["payloads"][1:2])
    spi = {o["frame"]: o["payloads"][1]["proposals"][0]["spi"] for o in (qm1, qm2)}
    assert out_sa["spi"] == spi[qm2["frame"]] and in_sa["spi"] == spi[qm1["frame"]]


@pytest.mark.parametrize("name", CAPTURES)
def test_text_output_has_key_lines_and_verdicts(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(DATA / f"{name}.pcap"), *psk_args(name)]) == 0
    out = capsys.readouterr().out
    keys = read_keys(name)
    assert f"key SKEYID_d {keys['SKEYID_d']}" in out
    assert f"key Ka {keys['encryption_key_Ka']}" in out
    assert f"enc cbc(aes) {keys['encryption_initiator_key']}" in out
    assert f"integ hmac(sha256) {keys['integrity_responder_key']}" in out
    for verdict in ("HASH_I ok", "HASH_R ok", "HASH(1) ok", "HASH(2) ok", "HASH(3) ok"):
        assert f"check {verdict}" in out
    assert "PROBLEM" not in out
    assert out.rstrip().endswith("; ok")


@pytest.mark.parametrize("name", CAPTURES)
def test_without_qm_secret_phase2_verifies_and_says_why_no_esp_keys(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, objs, _ = run_json(capsys, str(DATA / f"{name}.pcap"), *psk_args(name, qm=False))
    assert rc == 0
    assert not any(o["ipsec_keys"] for o in objs)
    notes = [n for o in objs for n in o["notes"]]
    assert any("PFS" in n and "--qm-dh-secret" in n for n in notes)


@pytest.mark.parametrize("name", CAPTURES)
def test_wireshark_key_table_decrypts_every_message(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = key_table(tmp_path, name)
    rc, objs, err = run_json(capsys, str(DATA / f"{name}.pcap"), "--keys", str(table))
    assert rc == 0, err
    assert [o["exchange"] for o in objs] == EXCHANGES[name]
    encrypted = [o for o in objs if o["encrypted"]]
    assert encrypted and all(o["decrypted"] and o["payloads"] for o in encrypted)
    assert [o["payloads"][0]["type"] for o in encrypted[-3:]] == ["HASH"] * 3
    phase1 = next(o["phase1_keys"] for o in objs if o["phase1_keys"])
    assert phase1 == {
        "Ka": read_keys(name)["encryption_key_Ka"],
        "IV": read_keys(name)["initial_IV"],
    }
    assert all(not o["checks"] for o in objs)  # Ka alone cannot verify a HASH


def test_decodes_every_field_without_keys(capsys: pytest.CaptureFixture[str]) -> None:
    rc, objs, _ = run_json(capsys, str(DATA / "mm_qm_psk.pcap"))
    assert rc == 0
    mm1 = objs[0]
    assert (mm1["src"], mm1["sport"], mm1["dst"], mm1["dport"]) == (
        "192.0.2.1",
        500,
        "192.0.2.2",
        500,
    )
    assert mm1["icookie"] == read_keys("mm_qm_psk")["icookie"]
    assert mm1["rcookie"] == "0" * 16 and mm1["message_id"] == "00000000"
    sa = mm1["payloads"][0]
    transform = sa["proposals"][0]["transforms"][0]
    named = {a["type"]: a.get("name", a.get("value")) for a in transform["attributes"]}
    assert named["ENCRYPTION_ALGORITHM"] == "AES_CBC" and named["KEY_LENGTH"] == 128
    assert named["HASH_ALGORITHM"] == "SHA2_256" and named["GROUP_DESCRIPTION"] == "MODP_2048"
    assert named["AUTHENTICATION_METHOD"] == "PRE_SHARED_KEY"
    vids = [p["name"] for p in mm1["payloads"] if p["type"] == "VENDOR_ID"]
    assert vids == [
        "XAUTH",
        "DPD (RFC 3706)",
        "FRAGMENTATION",
        "RFC 3947 NAT-T",
        "draft-ietf-ipsec-nat-t-ike-02\\n",
    ]
    mm3 = objs[2]
    assert [p["type"] for p in mm3["payloads"]] == ["KE", "NONCE", "NAT_D", "NAT_D"]
    assert mm3["payloads"][0]["length"] == 256
    assert objs[4]["flags"] == ["ENCRYPTION"] and not objs[4]["decrypted"]
    assert objs[4]["sport"] == 4500  # found behind the non-ESP marker


def test_typed_ids_and_notify_after_decryption(capsys: pytest.CaptureFixture[str]) -> None:
    rc, objs, _ = run_json(capsys, str(DATA / "mm_qm_psk.pcap"), *psk_args("mm_qm_psk"))
    assert rc == 0
    mm5 = objs[4]["payloads"]
    assert mm5[0] == {
        "type": "ID", "id_type": "IPV4_ADDR", "protocol": 0, "port": 0, "value": "192.0.2.1"
    }  # fmt: skip
    notify = next(p for p in mm5 if p["type"] == "NOTIFY")
    assert notify["notify_type"] == "INITIAL_CONTACT" and notify["protocol"] == "ISAKMP"
    qm1 = objs[6]["payloads"]
    assert [p["value"] for p in qm1 if p["type"] == "ID"] == ["198.51.100.1", "203.0.113.1"]
    esp = qm1[1]["proposals"][0]
    assert esp["protocol"] == "IPSEC_ESP" and esp["transforms"][0]["id"] == "AES_CBC"


def test_installed_script_json_and_wrong_psk() -> None:
    name = "mm_qm_psk"
    ok = subprocess.run(  # noqa: S603 - our own installed script
        [str(IKEDUMP), str(DATA / f"{name}.pcap"), "--json", *psk_args(name)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert len([json.loads(line) for line in ok.stdout.splitlines()]) == 9
    bad = subprocess.run(  # noqa: S603
        [str(IKEDUMP), str(DATA / f"{name}.pcap"), *secrets_file(["--psk", "not-the-psk",
         "--dh-secret", read_keys(name)["shared_Diffie_Hellman_secret"]])],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 1
    lines = bad.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ikedump: frame 5: HASH_I")
    assert "Traceback" not in bad.stderr


def test_wrong_psk_aggressive_mode_fails_on_hash_r(capsys: pytest.CaptureFixture[str]) -> None:
    name = "am_qm_psk"
    rc = main([str(DATA / f"{name}.pcap"), *secrets_file(["--psk-hex", "00112233",
               "--dh-secret", read_keys(name)["shared_Diffie_Hellman_secret"]])])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("ikedump: frame 2: HASH_R mismatch")


def test_psk_hex_equals_psk_text(capsys: pytest.CaptureFixture[str]) -> None:
    name = "am_qm_psk"
    dh = read_keys(name)["shared_Diffie_Hellman_secret"]
    rc = main([str(DATA / f"{name}.pcap"), "--psk-hex", PSK.encode().hex(), "--dh-secret", dh])
    assert rc == 0, capsys.readouterr().err


def test_wrong_dh_secret_is_a_hash_failure(capsys: pytest.CaptureFixture[str]) -> None:
    name = "mm_qm_psk"
    rc = main([str(DATA / f"{name}.pcap"), "--psk", PSK, "--dh-secret", "01" * 256])
    assert rc == 1
    assert "HASH_I" in capsys.readouterr().err


def test_nat_d_payloads_are_matched_to_the_datagram(capsys: pytest.CaptureFixture[str]) -> None:
    """charon ran with forced encapsulation: its source NAT-D is bogus on purpose, so the
    first (destination) NAT-D matches and the second matches nothing; a note, not a fault."""
    rc, objs, _ = run_json(capsys, str(DATA / "mm_qm_psk.pcap"))
    assert rc == 0
    assert objs[2]["notes"] == [
        "NAT-D 1 matches the destination 192.0.2.2:500",
        "NAT-D 2 matches no address of this datagram",
    ]
    assert "NAT-D 1 matches the destination 192.0.2.1:500" in objs[3]["notes"]
