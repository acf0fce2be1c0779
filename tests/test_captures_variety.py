"""Real strongSwan 5.9.8 / libreswan 4.10 captures (tests/data/captures/, made in UML by
tests/data/captures/make_captures.py) through ikedump and the codec, plus malformed variants.

Every capture, with the PSK and the DH secrets charon logged, must parse, decrypt and verify
(ikedump exit 0); the phase 1 keys ikedump derives must equal charon's, and the ESP keys it
derives for each Quick Mode must equal the keys the UML kernel's ESP SAs used (`ip xfrm
state`), so the key derivation is checked against the kernel, not against ourselves. Every
datagram, and every decrypted body, must re-encode byte for byte. Cut, stretched, padded and
bit-flipped variants of the real messages must make ikedump exit 1 with one line naming the
frame and offset, never a traceback.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt
import pytest
from capture_data import secrets_file

from ikepriv.cli.ikedump import main
from ikepriv.dump.capture import Datagram, classify, open_capture
from ikepriv.dump.keys import KeyMaterial
from ikepriv.dump.session import Dumper, offered_proposal
from ikepriv.isakmp import decode_message, encode_message
from ikepriv.isakmp.constants import HEADER_LENGTH, NATT_PORT, NON_ESP_MARKER, ProtocolId
from ikepriv.isakmp.message import decode_payload_chain, encode_payload_chain
from ikepriv.isakmp.sa import Proposal, Transform

CAPTURES_DIR = Path(__file__).resolve().parent / "data" / "captures"
NAMES = sorted(p.stem for p in CAPTURES_DIR.glob("*.json"))
IKEDUMP = Path(sys.executable).with_name("ikedump")
ONE_LINE = re.compile(r"^ikedump: frame (\d+) offset (\d+): \S.*$")


def meta(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CAPTURES_DIR / f"{name}.json").read_text())
    return data


def pcap(name: str) -> Path:
    return CAPTURES_DIR / f"{name}.pcap"


def psk_args(name: str) -> list[str]:
    m = meta(name)
    args = ["--psk", m["psk"]]
    for sa in m["ike_sas"]:
        args += ["--dh-secret", f"{sa['icookie']}={sa['dh_secret']}"]
    for qm in m["quick_mode_pfs"]:
        args += ["--qm-dh-secret", qm["dh_secret"]]
    return secrets_file(args)


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[Any], str]:
    rc = main([*args, "--json"])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines()], err


def test_corpus_is_there() -> None:
    assert len(NAMES) >= 8
    impls = {(meta(n)["initiator"]["impl"], meta(n)["responder"]["impl"]) for n in NAMES}
    assert {("strongswan", "libreswan"), ("libreswan", "strongswan")} <= impls
    for name in NAMES:
        assert meta(name)["complete"], name
        assert pcap(name).stat().st_size < 64 * 1024


# --- ikedump with keys ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_ikedump_decrypts_and_verifies_everything(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, objs, err = run_json(capsys, str(pcap(name)), *psk_args(name))
    assert (rc, err) == (0, "")
    m = meta(name)
    assert all(not o["problems"] for o in objs)
    assert all(o["decrypted"] for o in objs if o.get("encrypted"))
    exchanges = [o["exchange"] for o in objs if o["retransmission_of"] is None]
    phase1 = "AGGRESSIVE" if m["exchange"] == "aggressive" else "IDENTITY_PROTECTION"
    assert exchanges[: 3 if phase1 == "AGGRESSIVE" else 6] == [phase1] * (
        3 if phase1 == "AGGRESSIVE" else 6
    )
    checks = [c for o in objs for c in o["checks"]]
    assert {"HASH_I ok", "HASH_R ok", "HASH(1) ok", "HASH(2) ok", "HASH(3) ok"} <= set(checks)
    # every encrypted message past phase 1 carries a verified HASH
    for o in objs:
        if o.get("encrypted") and o["message_id"] != "00000000" and o["retransmission_of"] is None:
            assert o["checks"], o
    # phase 1 keys as charon logged them
    derived = [o["phase1_keys"] for o in objs if o["phase1_keys"]]
    assert len(derived) == len(m["ike_sas"])
    for keys, sa in zip(derived, m["ike_sas"], strict=True):
        assert keys == {k: sa[k] for k in ("SKEYID", "SKEYID_d", "SKEYID_a", "SKEYID_e")} | {
            "Ka": sa["Ka"],
            "IV": sa["IV"],
        }
    # the events the capture was made for are in it
    payload_types = {p["type"] for o in objs for p in o["payloads"]}
    if "delete" in m["events"]:
        assert "DELETE" in payload_types
    if "dpd" in m["events"]:
        notifies = {p.get("notify_type") for o in objs for p in o["payloads"]}
        assert {"R_U_THERE", "R_U_THERE_ACK"} <= notifies, notifies
    if "rekey" in m["events"]:
        assert len({o["message_id"] for o in objs if o["exchange"] == "QUICK_MODE"}) >= 2


def _kernel_keys(sa: dict[str, Any]) -> tuple[str, str]:
    """(encryption key, integrity key) of one `ip xfrm state` entry; AEAD keys carry the
    4-byte salt, as KEYMAT does (RFC 4106 8.1)."""
    algs = {a["kind"]: a["key"] for a in sa["algs"]}
    if "aead" in algs:
        return algs["aead"], ""
    return algs["enc"], algs.get("auth-trunc", algs.get("auth", ""))


@pytest.mark.parametrize("name", NAMES)
def test_ikedump_esp_keys_equal_the_kernels(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, objs, err = run_json(capsys, str(pcap(name)), *psk_args(name))
    assert rc == 0, err
    derived = {k["spi"]: k for o in objs for k in o["ipsec_keys"]}
    kernel = meta(name)["kernel_esp_sas"]
    assert kernel
    for sa in kernel:
        mine = derived.get(sa["spi"])
        assert mine is not None, f"no keys derived for SPI {sa['spi']}"
        assert (mine["src"], mine["dst"]) == (sa["src"], sa["dst"])
        assert (mine["enc_key"], mine["integ_key"]) == _kernel_keys(sa)
    assert set(derived) >= {sa["spi"] for sa in kernel}


@pytest.mark.parametrize("name", NAMES)
def test_ikedump_with_wireshark_key_table(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "ikev1_decryption_table"
    table.write_text(
        "\n".join(
            f'"{a}","{b}"'
            for a, b in (line.split(",") for line in meta(name)["wireshark_ikev1_decryption_table"])
        )
        + "\n"
    )
    rc, objs, err = run_json(capsys, str(pcap(name)), "--keys", str(table))
    assert (rc, err) == (0, "")
    assert all(o["decrypted"] for o in objs if o.get("encrypted"))
    assert any(o["phase1_keys"].get("Ka") for o in objs)


def test_installed_script_on_every_capture() -> None:
    for name in NAMES:
        r = subprocess.run(  # noqa: S603 - our own installed script
            [str(IKEDUMP), str(pcap(name)), *psk_args(name)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert (r.returncode, r.stderr) == (0, ""), (name, r.stderr)
        assert r.stdout.rstrip().endswith("; ok"), name
        assert "PROBLEM" not in r.stdout


# --- the codec on every datagram and every decrypted body ---------------------------------


def datagrams(path: Path) -> Iterator[Datagram]:
    with path.open("rb") as handle:
        linktype, frames = open_capture(handle)
        for frame in frames:
            item = classify(frame.number, frame.time, frame.data, linktype)
            if isinstance(item, Datagram):
                yield item


def _keys(name: str) -> KeyMaterial:
    m = meta(name)
    keys = KeyMaterial(psk=m["psk"].encode())
    keys.dh_secrets = [
        (bytes.fromhex(s["icookie"]), bytes.fromhex(s["dh_secret"])) for s in m["ike_sas"]
    ]
    keys.qm_dh_secrets = [(None, bytes.fromhex(q["dh_secret"])) for q in m["quick_mode_pfs"]]
    return keys


@pytest.mark.parametrize("name", NAMES)
def test_every_datagram_and_plaintext_reencodes_identically(name: str) -> None:
    dumper = Dumper(_keys(name))
    seen: set[bytes] = set()
    plaintexts = 0
    for dg in datagrams(pcap(name)):
        message = decode_message(dg.message)
        assert encode_message(message) == dg.message, dg.frame
        crypto = dumper.sa_crypto(message.header.icookie)
        if message.encrypted and crypto is not None and dg.message not in seen:
            opened = crypto.open(message.header, message.ciphertext)
            body = opened.plaintext[: opened.chain_length]
            again = decode_payload_chain(message.header.next_payload, body, allow_padding=False)
            assert encode_payload_chain(again) == body, dg.frame
            assert again == opened.payloads
            plaintexts += 1
        seen.add(dg.message)
        record = dumper.feed(dg)
        assert not record.problems, record.problems
    assert plaintexts >= 5


# --- responders renumber proposals (libreswan offers #0, strongSwan answers #1) -----------


def _proposal(number: int, transform_id: int, spi: bytes = b"\x01\x02\x03\x04") -> Proposal:
    return Proposal(number, ProtocolId.IPSEC_ESP, spi, (Transform(number, transform_id, ()),))


def test_renumbered_proposal_is_matched_by_protocol_and_transform() -> None:
    offered = (_proposal(0, 12),)
    assert offered_proposal(offered, _proposal(1, 12)) is offered[0]
    two = (_proposal(1, 12), _proposal(2, 3))
    assert offered_proposal(two, _proposal(2, 3)) is two[1]  # the echoed number wins
    assert offered_proposal(two, _proposal(7, 3)) is two[1]
    assert offered_proposal(two, _proposal(7, 20)) is None  # nothing offered fits
    assert offered_proposal((_proposal(1, 12), _proposal(2, 12)), _proposal(7, 12)) is None


# --- malformed variants of real messages --------------------------------------------------


@dataclass(frozen=True)
class Variant:
    what: str
    message: bytes


def _boundaries(message: bytes) -> list[tuple[int, int]]:
    """(offset, payload type) of every payload of a cleartext message."""
    out = []
    ptype, pos = message[16], HEADER_LENGTH
    while ptype:
        out.append((pos, ptype))
        ptype = message[pos]
        pos += struct.unpack_from("!H", message, pos + 2)[0]
    return out


def _with_length(message: bytes | bytearray, length: int) -> bytes:
    return bytes(message[:24]) + struct.pack("!I", length) + bytes(message[28:])


def variants(message: bytes) -> Iterator[Variant]:
    """Malformed copies of one cleartext message."""
    bounds = _boundaries(message)
    for pos, ptype in bounds:
        cut = message[:pos]
        yield Variant(f"cut before payload {ptype} at {pos}", cut)
        yield Variant(f"cut before payload {ptype} at {pos}, length fixed", _with_length(cut, pos))
        if pos + 5 < len(message):
            inside = message[: pos + 5]
            yield Variant(f"cut inside payload {ptype}", _with_length(inside, len(inside)))
        for bad in (0, 3, 0xFFFF):
            m = bytearray(message)
            struct.pack_into("!H", m, pos + 2, bad)
            yield Variant(f"payload {ptype} length {bad}", bytes(m))
        m = bytearray(message)
        length = struct.unpack_from("!H", m, pos + 2)[0]
        struct.pack_into("!H", m, pos + 2, length + 1)
        yield Variant(f"payload {ptype} length +1", bytes(m))
        m = bytearray(message)
        m[pos + 1] = 0x01
        yield Variant(f"payload {ptype} RESERVED set", bytes(m))
        m = bytearray(message)
        m[pos] = 99  # this payload says an undefined type follows
        yield Variant(f"payload {ptype} followed by type 99", bytes(m))
    yield Variant("header length +1", _with_length(message, len(message) + 1))
    yield Variant("header length -1", _with_length(message, len(message) - 1))
    yield Variant("4 trailing bytes", message + bytes(4))
    yield Variant(
        "4 trailing bytes, length fixed", _with_length(message + bytes(4), len(message) + 4)
    )
    for bit in (0x08, 0x40, 0x80):
        m = bytearray(message)
        m[19] |= bit
        yield Variant(f"header flag bit {bit:#04x}", bytes(m))
    # a well-formed payload of an undefined type inserted after the first payload
    first_pos = bounds[0][0]
    first_len = struct.unpack_from("!H", message, first_pos + 2)[0]
    m = bytearray(message)
    unknown = bytes([m[first_pos], 0]) + struct.pack("!H", 8) + b"\xde\xad\xbe\xef"
    m[first_pos] = 99
    m = m[: first_pos + first_len] + unknown + m[first_pos + first_len :]
    yield Variant("payload of type 99 inserted", _with_length(m, len(m)))
    m = bytearray(message)
    m[16] = 99
    yield Variant("header names type 99 first", bytes(m))
    for version in (0x00, 0x30, 0xF0):  # 2.0 is IKEv2, counted and not a failure
        m = bytearray(message)
        m[17] = version
        yield Variant(f"IKE version byte {version:#04x}", bytes(m))
    m = bytearray(message)
    m[17] = 0x11
    yield Variant("IKE version 1.1", bytes(m))


def _frame_with(frame: bytes, message: bytes) -> bytes:
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    udp = ip.data
    if NATT_PORT in (udp.sport, udp.dport):
        message = NON_ESP_MARKER + message
    udp.data = message
    udp.ulen = 8 + len(message)
    udp.sum = 0
    ip.len = 20 + udp.ulen
    ip.sum = 0
    return bytes(eth)


def _raw_frames(path: Path) -> list[bytes]:
    with path.open("rb") as handle:
        return [bytes(buf) for _ts, buf in dpkt.pcap.Reader(handle)]


def _cleartext_samples() -> Iterator[tuple[str, int, bytes, bytes]]:
    """(capture, frame number, frame, ISAKMP message) of the distinct cleartext phase 1
    messages in the corpus."""
    seen: set[bytes] = set()
    for name in NAMES:
        frames = _raw_frames(pcap(name))
        for dg in datagrams(pcap(name)):
            if dg.message[19] & 1 or dg.dport != 500:
                continue
            shape = bytes(dg.message[16:19]) + bytes(p for _o, p in _boundaries(dg.message))
            if shape in seen:
                continue
            seen.add(shape)
            yield name, dg.frame, frames[dg.frame - 1], dg.message


SAMPLES = list(_cleartext_samples())


def _write_pcap(path: Path, frames: list[bytes]) -> Path:
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle, snaplen=65535, linktype=1)
        for i, frame in enumerate(frames):
            writer.writepkt(frame, ts=1_700_000_000 + i)
    return path


@pytest.mark.parametrize(
    "sample", SAMPLES, ids=[f"{name}-frame{number}" for name, number, _f, _m in SAMPLES]
)
def test_malformed_variants_fail_with_one_line_and_offset(
    sample: tuple[str, int, bytes, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _name, _number, frame, message = sample
    for variant in variants(message):
        path = _write_pcap(tmp_path / "v.pcap", [_frame_with(frame, variant.message)])
        rc = main([str(path)])
        out, err = capsys.readouterr()
        assert rc == 1, (variant.what, out)
        assert ONE_LINE.match(err.rstrip("\n")) and err.count("\n") == 1, (variant.what, err)
        assert "Traceback" not in err and "internal error" not in err, variant.what


def _encrypted_samples() -> Iterator[tuple[str, int, bytes]]:
    """(capture, frame number, ISAKMP message) of the first encrypted message of each
    exchange type in each capture."""
    for name in NAMES:
        kinds: set[int] = set()
        for dg in datagrams(pcap(name)):
            if dg.message[19] & 1 and dg.message[18] not in kinds:
                kinds.add(dg.message[18])
                yield name, dg.frame, dg.message


ENCRYPTED = list(_encrypted_samples())


def encrypted_variants(message: bytes) -> Iterator[Variant]:
    """Damage to an encrypted message that shows in the message itself (IKEv1 has no MAC
    over the ciphertext: damage confined to the padding block only shows in the next
    message of the IV chain, so it is not tried here)."""
    m = bytearray(message)
    m[HEADER_LENGTH + 2] ^= 0x01  # garbles the whole first plaintext block
    yield Variant("bit flipped in the first cipher block", bytes(m))
    yield Variant("one byte cut, length fixed", _with_length(message[:-1], len(message) - 1))
    yield Variant(
        "half an AES block cut, length fixed", _with_length(message[:-8], len(message) - 8)
    )
    m = bytearray(message)
    m[16] = 99
    yield Variant("header names type 99 first", bytes(m))


@pytest.mark.parametrize(
    "sample", ENCRYPTED, ids=[f"{name}-frame{number}" for name, number, _m in ENCRYPTED]
)
def test_damaged_encrypted_messages_fail_at_their_frame(
    sample: tuple[str, int, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, number, message = sample
    frames = _raw_frames(pcap(name))
    block = 8 if meta(name)["ike_proposal"].startswith("3des") else 16
    for variant in encrypted_variants(message):
        if variant.what.startswith("half an AES block") and block == 8:
            continue  # 8 bytes are a whole 3DES block: undetectable when it is padding
        damaged = list(frames)
        damaged[number - 1] = _frame_with(frames[number - 1], variant.message)
        path = _write_pcap(tmp_path / "v.pcap", damaged)
        rc = main([str(path), *psk_args(name)])
        err = capsys.readouterr().err
        assert rc == 1, variant.what
        assert err.count("\n") == 1 and "Traceback" not in err, (variant.what, err)
        assert err.startswith(f"ikedump: frame {number}"), (variant.what, err)
        assert re.search(r"offset \d+|HASH.{0,4} mismatch", err), (variant.what, err)


def test_reserved_payload_type_is_a_problem_and_private_use_a_note(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Regression: ikedump used to pass a payload of undefined type (exit 0)."""
    _name, _number, frame, message = SAMPLES[0]
    first_pos = _boundaries(message)[0][0]
    first_len = struct.unpack_from("!H", message, first_pos + 2)[0]
    cut = first_pos + first_len
    for ptype, rc_want in ((99, 1), (200, 0)):
        m = bytearray(message)
        extra = bytes([m[first_pos], 0]) + struct.pack("!H", 8) + b"\x01\x02\x03\x04"
        m[first_pos] = ptype
        m = m[:cut] + extra + m[cut:]
        path = _write_pcap(tmp_path / "t.pcap", [_frame_with(frame, _with_length(m, len(m)))])
        rc, objs, err = run_json(capsys, str(path))
        assert rc == rc_want, err
        if rc_want:
            assert err == (
                f"ikedump: frame 1 offset {cut}: INVALID-PAYLOAD-TYPE: "
                f"payload type {ptype} is not defined for IKEv1\n"
            )
        else:
            assert f"private-use payload type {ptype} at offset {cut}" in objs[0]["notes"]
