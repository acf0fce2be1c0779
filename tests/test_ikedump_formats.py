"""ikedump on rewritten captures: other link types and file formats, IPv6, NAT-T framing
details, retransmissions and several ISAKMP SAs in one file."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import dpkt
import pytest
from capture_data import PSK, frames, read_keys

from ikepriv.cli.ikedump import main

ETH_IP_UDP = 14 + 20 + 8
LINKTYPE_RAW, LINKTYPE_SLL, LINKTYPE_SLL2, LINKTYPE_NULL = 101, 113, 276, 0


def write_pcap(path: Path, packets: list[bytes], linktype: int = 1) -> Path:
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle, snaplen=65535, linktype=linktype)
        for i, pkt in enumerate(packets):
            writer.writepkt(pkt, ts=1_700_000_000 + i)
    return path


def ipv6_udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    import ipaddress

    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    header = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
    return header + ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed + udp


def json_run(
    capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, list[dict[str, Any]], str]:
    rc = main([*args, "--json"])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines()], err


def key_table(tmp_path: Path, *names: str) -> str:
    path = tmp_path / "table"
    path.write_text(
        "".join(f"{read_keys(n)['icookie']},{read_keys(n)['encryption_key_Ka']}\n" for n in names)
    )
    return str(path)


@pytest.mark.parametrize(
    ("linktype", "rewrite"),
    [
        (LINKTYPE_RAW, lambda f: f[14:]),
        (LINKTYPE_SLL, lambda f: struct.pack("!HHH8sH", 0, 1, 6, f[6:12], 0x0800) + f[14:]),
        (
            LINKTYPE_SLL2,
            lambda f: struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, f[6:12]) + f[14:],
        ),
        (LINKTYPE_NULL, lambda f: struct.pack("<I", 2) + f[14:]),
    ],
    ids=["raw", "sll", "sll2", "null"],
)
def test_link_types(
    linktype: int, rewrite: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert callable(rewrite)
    pcap = write_pcap(tmp_path / "x.pcap", [rewrite(f) for f in frames("mm_qm_psk")], linktype)
    rc, objs, err = json_run(capsys, str(pcap), "--keys", key_table(tmp_path, "mm_qm_psk"))
    assert rc == 0, err
    assert len(objs) == 9 and all(o["decrypted"] for o in objs if o["encrypted"])


def test_pcapng(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.pcapng"
    with path.open("wb") as handle:
        writer = dpkt.pcapng.Writer(handle, snaplen=65535, linktype=1)
        for i, pkt in enumerate(frames("am_qm_psk")):
            writer.writepkt(pkt, ts=1_700_000_000 + i)
    rc, objs, err = json_run(capsys, str(path), "--keys", key_table(tmp_path, "am_qm_psk"))
    assert rc == 0, err
    assert [o["exchange"] for o in objs] == ["AGGRESSIVE"] * 3 + ["QUICK_MODE"] * 3


def test_ipv6_and_vlan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same IKE payloads carried over IPv6, behind an 802.1Q tag."""
    packets = []
    for frame in frames("mm_qm_psk"):
        sport, dport = struct.unpack_from("!HH", frame, 34)
        forward = frame[26:30] == bytes([192, 0, 2, 1])
        src, dst = ("2001:db8::1", "2001:db8::2") if forward else ("2001:db8::2", "2001:db8::1")
        vlan = struct.pack("!HH", 0x8100, 42)
        eth = frame[:12] + vlan + struct.pack("!H", 0x86DD)
        packets.append(eth + ipv6_udp(src, dst, sport, dport, frame[ETH_IP_UDP:]))
    pcap = write_pcap(tmp_path / "v6.pcap", packets)
    rc, objs, err = json_run(capsys, str(pcap), "--keys", key_table(tmp_path, "mm_qm_psk"))
    assert rc == 0, err
    assert objs[0]["src"] == "2001:db8::1" and objs[1]["src"] == "2001:db8::2"
    assert all(o["decrypted"] for o in objs if o["encrypted"])
    main([str(pcap)])
    assert "[2001:db8::1]:500 -> [2001:db8::2]:500" in capsys.readouterr().out


def test_retransmissions_do_not_break_the_iv_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MM5, QM1 and QM2 retransmitted (identical datagrams) before the answers arrive."""
    f = frames("mm_qm_psk")
    order = [f[0], f[1], f[1], f[2], f[3], f[4], f[4], f[5], f[6], f[6], f[7], f[7], f[8]]
    pcap = write_pcap(tmp_path / "rtx.pcap", order)
    name = "mm_qm_psk"
    rc, objs, err = json_run(
        capsys,
        str(pcap),
        "--psk",
        PSK,
        "--dh-secret",
        read_keys(name)["shared_Diffie_Hellman_secret"],
    )
    assert rc == 0, err
    assert [o["retransmission_of"] for o in objs] == [
        None, None, 2, None, None, None, 6, None, None, 9, None, 11, None
    ]  # fmt: skip
    checks = [c for o in objs for c in o["checks"]]
    assert checks == ["HASH_I ok", "HASH_R ok", "HASH(1) ok", "HASH(2) ok", "HASH(3) ok"]
    # a retransmission is shown with the payloads of its original
    assert objs[6]["payloads"] == objs[5]["payloads"] and objs[6]["decrypted"]


def test_nat_t_keepalives_and_esp_are_counted_not_decoded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = frames("mm_qm_psk")
    template = f[4]  # a UDP 4500 frame
    head = bytearray(template[:ETH_IP_UDP])

    def udp4500(payload: bytes) -> bytes:
        h = bytearray(head)
        struct.pack_into("!H", h, 16, 20 + 8 + len(payload))  # IP total length
        struct.pack_into("!H", h, 24, 0)  # IP checksum: not checked by ikedump
        struct.pack_into("!H", h, 38, 8 + len(payload))  # UDP length
        return bytes(h) + payload

    esp = udp4500(bytes.fromhex("c1a2b3c4") + bytes(4) + bytes(32))
    keepalive = udp4500(b"\xff")
    pcap = write_pcap(tmp_path / "natt.pcap", [*f[:5], keepalive, esp, *f[5:], esp])
    assert main([str(pcap)]) == 0
    out = capsys.readouterr().out
    assert "9 IKEv1 messages" in out
    assert "1 NAT-T keepalive" in out and "2 ESP-in-UDP" in out
    rc, objs, _ = json_run(capsys, str(pcap))
    assert rc == 0 and len(objs) == 9


def test_two_isakmp_sas_interleaved(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mm, am = frames("mm_qm_psk"), frames("am_qm_psk")
    order = [*mm[:4], *am[:2], mm[4], am[2], *mm[5:7], *am[3:5], *mm[7:], am[5]]
    pcap = write_pcap(tmp_path / "two.pcap", order)
    table = key_table(tmp_path, "mm_qm_psk", "am_qm_psk")
    rc, objs, err = json_run(capsys, str(pcap), "--keys", table)
    assert rc == 0, err
    assert all(o["decrypted"] for o in objs if o["encrypted"]) and len(objs) == 15
    # PSK mode: secrets named by initiator cookie, given in the "wrong" order
    mmk, amk = read_keys("mm_qm_psk"), read_keys("am_qm_psk")
    rc, objs, err = json_run(
        capsys, str(pcap), "--psk", PSK,
        "--dh-secret", f"{amk['icookie']}={amk['shared_Diffie_Hellman_secret']}",
        "--dh-secret", f"{mmk['icookie']}={mmk['shared_Diffie_Hellman_secret']}",
    )  # fmt: skip
    assert rc == 0, err
    assert sum(len(o["checks"]) for o in objs) == 10
    # only one SA's key: the other SA's encrypted messages are a failure, named
    rc, objs, err = json_run(capsys, str(pcap), "--keys", key_table(tmp_path, "am_qm_psk"))
    assert rc == 1
    assert err.startswith("ikedump: frame 7: not decrypted: no key for ISAKMP SA " + mmk["icookie"])


def test_frame_counting_and_other_traffic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Frame numbers count every frame (as Wireshark does), IKE or not."""
    f = frames("am_qm_psk")
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    pcap = write_pcap(tmp_path / "mixed.pcap", [arp, *f[:2], arp, *f[2:]])
    rc, objs, _ = json_run(capsys, str(pcap))
    assert rc == 0
    assert [o["frame"] for o in objs] == [2, 3, 5, 6, 7, 8]
