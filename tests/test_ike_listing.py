"""What `ike cmd=list` shows for given TunnelRow values: tables, the 1+ tree, verbose, json."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_ipc_strategies import struct_strategy

from ikepriv.cli.listing import (
    MAX_CELL,
    format_counters,
    format_dn,
    format_duration,
    format_identity,
    render,
    render_counters_json,
    render_json,
    render_table,
    render_tree,
)
from ikepriv.config.model import Identity as ConfigIdentity
from ikepriv.ipc.messages import (
    CounterValue,
    Identity,
    ListRequest,
    Phase,
    Role,
    TunnelRow,
    TunnelState,
)
from ikepriv.isakmp.constants import IdType
from ikepriv.parent_kernel.definitions import identity_to_ipc

A = ipaddress.ip_address
V4 = Identity(IdType.IPV4_ADDR, bytes([192, 0, 2, 1]))
FQDN = Identity(IdType.FQDN, b"gw-b.example.org")
SUBNET = Identity(IdType.IPV4_ADDR_SUBNET, bytes([198, 51, 100, 0, 255, 255, 255, 0]))
RANGE = Identity(IdType.IPV4_ADDR_RANGE, bytes([203, 0, 113, 1, 203, 0, 113, 9]))


def row(number: int, tunnel_id: int | None, phase: Phase, name: str, **kw: Any) -> TunnelRow:
    fields: dict[str, Any] = dict(
        number=number,
        tunnel_id=tunnel_id,
        phase=phase,
        name=name,
        role=Role.INITIATOR,
        state=TunnelState.ESTABLISHED,
        local_addr=A("192.0.2.1"),
        remote_addr=A("192.0.2.2"),
        local_id=V4,
        remote_id=FQDN,
        algorithms="aes128-sha256-modp2048",
        remaining_seconds=28000,
        spi_in=0,
        spi_out=0,
        bytes=0,
        packets=0,
        phase1_number=None,
    )
    return TunnelRow(**(fields | kw))


P1 = row(1, 11, Phase.PHASE1, "to-siteB")
P1_OTHER = row(
    2,
    12,
    Phase.PHASE1,
    "to-siteC",
    role=Role.RESPONDER,
    state=TunnelState.NEGOTIATING,
    remote_addr=A("198.51.100.9"),
    remaining_seconds=0,
)
P2 = row(
    1,
    21,
    Phase.PHASE2,
    "lanA-lanB",
    phase1_number=11,
    local_id=SUBNET,
    remote_id=RANGE,
    algorithms="esp-aes128-sha1",
    remaining_seconds=59,
    spi_in=0xC0FFEE01,
    spi_out=0x1234,
    bytes=123456,
    packets=789,
)
P2_SECOND = row(3, 22, Phase.PHASE2, "lanA-lanD", phase1_number=11, remaining_seconds=3700)
P2_ORPHAN = row(2, 23, Phase.PHASE2, "lanA-lanC", phase1_number=99, role=Role.RESPONDER)
ACTIVE = [P2, P1, P2_ORPHAN, P1_OTHER, P2_SECOND]  # the daemon's order, phases mixed


def table_of(lines: list[str]) -> list[dict[str, str]]:
    """Parse an aligned table back: headings from the first line, cells split at 2+ spaces
    (the tree's indent is put back onto the first cell)."""
    headings = re.split(r" {2,}", lines[0])
    out = []
    for line in lines[1:]:
        indent = re.match(r"^( `- )?", line)
        assert indent is not None
        cells = re.split(r" {2,}", line[indent.end() :])
        assert len(cells) == len(headings), (headings, cells)
        cells[0] = indent.group(0) + cells[0]
        out.append(dict(zip(headings, cells, strict=True)))
    return out


def sections(text: str) -> dict[str, list[str]]:
    """Title line -> table lines, for text made of blank-line separated blocks."""
    blocks = text.rstrip("\n").split("\n\n")
    return {block.splitlines()[0]: block.splitlines()[1:] for block in blocks}


def test_table_has_a_section_per_phase_with_every_field() -> None:
    text = render_table(ACTIVE)
    parts = sections(text)
    assert list(parts) == ["Phase 1 tunnels (2):", "Phase 2 tunnels (3):"]
    phase1 = table_of(parts["Phase 1 tunnels (2):"])
    assert phase1 == [
        {"Phase": "1", "Tun Id": "11", "Def": "1", "Name": "to-siteB", "Role": "i",
         "State": "established", "Local": "192.0.2.1", "Remote": "192.0.2.2",
         "Local Id": "192.0.2.1", "Remote Id": "gw-b.example.org",
         "Algorithms": "aes128-sha256-modp2048", "Remaining": "7h46m40s"},
        {"Phase": "1", "Tun Id": "12", "Def": "2", "Name": "to-siteC", "Role": "r",
         "State": "negotiating", "Local": "192.0.2.1", "Remote": "198.51.100.9",
         "Local Id": "192.0.2.1", "Remote Id": "gw-b.example.org",
         "Algorithms": "aes128-sha256-modp2048", "Remaining": "-"},
    ]  # fmt: skip
    phase2 = table_of(parts["Phase 2 tunnels (3):"])
    assert [r["Tun Id"] for r in phase2] == ["21", "23", "22"]  # daemon order kept
    assert phase2[0] == {
        "Phase": "2", "Tun Id": "21", "Def": "1", "P1": "11", "Name": "lanA-lanB", "Role": "i",
        "State": "established", "Local": "192.0.2.1", "Remote": "192.0.2.2",
        "Local Id": "198.51.100.0/24", "Remote Id": "203.0.113.1-203.0.113.9",
        "Algorithms": "esp-aes128-sha1", "Remaining": "59s",
    }  # fmt: skip
    assert "SPI in" not in text and "0xc0ffee01" not in text  # only with verbose


def test_verbose_adds_kernel_counters_for_phase_2() -> None:
    parts = sections(render_table(ACTIVE, verbose=True))
    phase1 = table_of(parts["Phase 1 tunnels (2):"])
    assert {(r["SPI in"], r["SPI out"], r["Bytes"], r["Packets"]) for r in phase1} == {
        ("-", "-", "-", "-")
    }
    phase2 = table_of(parts["Phase 2 tunnels (3):"])
    assert (phase2[0]["SPI in"], phase2[0]["SPI out"]) == ("0xc0ffee01", "0x00001234")
    assert (phase2[0]["Bytes"], phase2[0]["Packets"]) == ("123456", "789")
    assert (phase2[2]["SPI in"], phase2[2]["Bytes"]) == ("-", "0")


def test_tree_hangs_phase_2_under_its_phase_1() -> None:
    text = render_tree(ACTIVE)
    lines = text.splitlines()
    assert lines[0] == "Phase 1 tunnels and their phase 2 (2 + 3):"
    rows = table_of(lines[1:])
    assert [(r["Phase"], r["Tun Id"]) for r in rows] == [
        ("1", "11"), (" `- 2", "21"), (" `- 2", "22"), ("1", "12"), ("2", "23"),
    ]  # fmt: skip
    assert rows[-1]["P1"] == "99"  # its phase 1 is not in the answer: it says which one


def test_tree_without_orphans_has_no_phase1_column() -> None:
    rows = table_of(render_tree([P1, P2]).splitlines()[1:])
    assert "P1" not in rows[0]
    assert [r["Phase"] for r in rows] == ["1", " `- 2"]


def test_db_view_lists_definitions() -> None:
    d1 = row(
        1,
        None,
        Phase.PHASE1,
        "to-siteB",
        role=None,
        state=TunnelState.DEFINED,
        remote_addr=None,
        remote_id=None,
        remaining_seconds=0,
    )
    d2 = row(
        4,
        None,
        Phase.PHASE2,
        "lanA-lanB",
        role=None,
        state=TunnelState.DEFINED,
        local_id=SUBNET,
        phase1_number=1,
        remaining_seconds=0,
    )
    other = row(2, None, Phase.PHASE2, "lanX", role=None, state=TunnelState.DEFINED,
                phase1_number=7)  # fmt: skip
    parts = sections(render_table([d1, d2], db=True))
    assert list(parts) == ["Phase 1 definitions (1):", "Phase 2 definitions (1):"]
    (first,) = table_of(parts["Phase 1 definitions (1):"])
    assert first == {
        "Phase": "1", "Def": "1", "Name": "to-siteB", "State": "defined", "Local": "192.0.2.1",
        "Remote": "any", "Local Id": "192.0.2.1", "Remote Id": "-",
        "Algorithms": "aes128-sha256-modp2048",
    }  # fmt: skip
    tree = render_tree([d1, other, d2], db=True).splitlines()
    assert tree[0] == "Phase 1 definitions and their phase 2 (1 + 2):"
    assert [(r["Phase"], r["Def"]) for r in table_of(tree[1:])] == [
        ("1", "1"), (" `- 2", "4"), ("2", "2"),
    ]  # fmt: skip


def test_nothing_to_show() -> None:
    assert render_table([]) == "No active tunnels.\n"
    assert render_tree([], db=True) == "No tunnel definitions.\n"
    assert render_json([]) == "[]\n"


def test_json_is_a_list_of_row_objects() -> None:
    v6 = row(5, 30, Phase.PHASE1, "v6", role=None, state=TunnelState.FAILED,
             local_addr=A("2001:db8::1"), remote_addr=A("2001:db8::2"), local_id=None,
             remote_id=Identity(IdType.USER_FQDN, b"ops@example.org"))  # fmt: skip
    text = render_json([P1, P2, v6])
    data = json.loads(text)
    assert isinstance(data, list) and len(data) == 3
    # one row per line: `ike cmd=list json | grep to-siteB` finds the row
    lines = text.splitlines()
    assert len(lines) == 3 and [json.loads(line.strip("[], ")) for line in lines] == data
    assert data[0] == {
        "number": 1, "tunnel_id": 11, "phase": 1, "name": "to-siteB", "role": "i",
        "state": "established", "local_addr": "192.0.2.1", "remote_addr": "192.0.2.2",
        "local_id": {"type": "ipv4_addr", "value": "192.0.2.1"},
        "remote_id": {"type": "fqdn", "value": "gw-b.example.org"},
        "algorithms": "aes128-sha256-modp2048", "remaining_seconds": 28000, "spi_in": 0,
        "spi_out": 0, "bytes": 0, "packets": 0, "phase1_number": None,
        "local_selector": None, "remote_selector": None,
        "peer_cert_subject": None, "peer_cert_issuer": None,
    }  # fmt: skip
    assert (data[1]["spi_in"], data[1]["bytes"], data[1]["phase1_number"]) == (
        0xC0FFEE01,
        123456,
        11,
    )
    assert data[1]["local_id"] == {"type": "ipv4_addr_subnet", "value": "198.51.100.0/24"}
    assert (data[2]["role"], data[2]["state"], data[2]["local_id"]) == (None, "failed", None)
    assert data[2]["remote_addr"] == "2001:db8::2"


def test_render_follows_the_request() -> None:
    def request(**kw: Any) -> ListRequest:
        base: dict[str, Any] = dict(
            phase=Phase.ALL, numlist=(), db=False, role=None, verbose=False, json=False
        )
        return ListRequest(**(base | kw))

    rows = [P1, P2]
    assert render(rows, request()) == render_table(rows)
    assert render(rows, request(verbose=True)) == render_table(rows, verbose=True)
    assert render(rows, request(phase=Phase.PHASE1_PLUS)) == render_tree(rows)
    assert render(rows, request(db=True)) == render_table(rows, db=True)
    assert render(rows, request(json=True, phase=Phase.PHASE1_PLUS)) == render_json(rows)


def test_identities_of_every_type() -> None:
    cases = {
        Identity(IdType.IPV6_ADDR, bytes.fromhex("20010db8" + "00" * 11 + "01")): "2001:db8::1",
        Identity(IdType.IPV6_ADDR_SUBNET, bytes.fromhex("20010db8" + "00" * 12 + "ff" * 8
                                                        + "00" * 8)): "2001:db8::/64",
        Identity(IdType.USER_FQDN, b"ops@example.org"): "ops@example.org",
        Identity(IdType.DER_ASN1_DN, bytes.fromhex("3000")): "dn:3000",
        Identity(IdType.KEY_ID, b"\x01\xff"): "keyid:01ff",
        # bytes the ISAKMP checks refuse are shown as hex, never printed raw
        Identity(IdType.FQDN, b"bad\x1b[2Jname"): "fqdn:6261641b5b324a6e616d65",
        Identity(IdType.IPV4_ADDR_SUBNET, bytes([192, 0, 2, 0, 255, 0, 255, 0])):
            "ipv4_addr_subnet:c0000200ff00ff00",
    }  # fmt: skip
    for identity, text in cases.items():
        assert format_identity(identity) == text
    assert format_identity(None) == "-"


def test_durations() -> None:
    cases = {0: "0s", 59: "59s", 60: "1m00s", 3599: "59m59s", 3600: "1h00m00s",
             86399: "23h59m59s", 86400: "1d00h00m", 200000: "2d07h33m"}  # fmt: skip
    assert {s: format_duration(s) for s in cases} == cases


def test_long_cells_are_cut() -> None:
    long_alg = "x" * 200
    lines = render_table([row(1, 1, Phase.PHASE1, "n", algorithms=long_alg)]).splitlines()
    cell = table_of(lines[1:])[0]["Algorithms"]
    assert len(cell) == MAX_CELL and cell.endswith("...")
    assert (
        json.loads(render_json([row(1, 1, Phase.PHASE1, "n", algorithms=long_alg)]))[0][
            "algorithms"
        ]
        == long_alg
    )


@given(st.lists(st.one_of(struct_strategy(TunnelRow, 4), struct_strategy(TunnelRow, 6)),
                max_size=8))  # fmt: skip
def test_any_rows_render_in_every_view(rows: list[TunnelRow]) -> None:
    for db in (False, True):
        for verbose in (False, True):
            for text in (render_table(rows, db=db, verbose=verbose),
                         render_tree(rows, db=db, verbose=verbose)):  # fmt: skip
                assert text.endswith("\n")
                assert all(line.isprintable() for line in text.splitlines())
    data = json.loads(render_json(rows))
    assert [(d["number"], d["name"], d["phase"]) for d in data] == [
        (r.number, r.name, r.phase.value) for r in rows
    ]


@pytest.mark.parametrize(
    "text",
    [
        "C=CH, O=Example, CN=gw",
        "C=CH, O=Example\\,Inc., OU=VPN+CN=gw-b.example.org",
        "DC=org, DC=example, CN=J\u00fcrg",
    ],
)
def test_dn_identity_shows_as_the_operator_wrote_it(text: str) -> None:
    identity = identity_to_ipc(ConfigIdentity(IdType.DER_ASN1_DN, text))  # the daemon's DER
    assert format_identity(identity) == text


@pytest.mark.parametrize(
    "der",
    [
        "",  # nothing
        "3000",  # an empty Name: nothing to show as text
        "30",  # truncated header
        "3005310330",  # truncated inside
        "300431023000",  # attribute without OID
        "300b3109300706035504061300",  # PrintableString of length 0 for C: refused by x509
        "300d310b300906035504030402414243",  # OCTET STRING value, not a string type
        "300e310c300a06035504030c036162",  # string length beyond the end
        "3084000000003000",  # 4-byte length form
        "300c310a300806035504031f0141",  # high tag number
        "300b3109300706035504030c011b",  # control character in the value
        "300b3109300706035504030c01ff",  # invalid UTF-8
        "3081" + "ff",  # long form length beyond the data
    ],
)
def test_dn_that_is_not_a_name_shows_as_hex(der: str) -> None:
    data = bytes.fromhex(der)
    assert format_dn(data) is None
    if data:
        assert format_identity(Identity(IdType.DER_ASN1_DN, data)) == "dn:" + der


@given(st.binary(max_size=200))
def test_dn_reader_never_raises(data: bytes) -> None:
    text = format_dn(data)
    assert text is None or (text and text.isprintable())


COUNTERS = (
    CounterValue("datagrams_in", 12),
    CounterValue("dropped_malformed", 3),
    CounterValue("retransmits", 0),
    CounterValue("udp_dropped_truncated", (1 << 64) - 1),
)


def test_counters_aligned_in_the_daemons_order() -> None:
    assert format_counters(COUNTERS).splitlines() == [
        "Counters:",
        "  datagrams_in           12",
        "  dropped_malformed      3",
        "  retransmits            0",
        f"  udp_dropped_truncated  {(1 << 64) - 1}",
    ]


def test_verbose_counters_leave_out_what_never_happened() -> None:
    text = format_counters(COUNTERS, nonzero_only=True)
    assert text.splitlines()[0] == "Counters (not zero):"
    assert "retransmits" not in text and "dropped_malformed      3" in text
    quiet = (CounterValue("retransmits", 0),)
    assert format_counters(quiet, nonzero_only=True) == "Counters (not zero): none\n"
    assert format_counters(()) == "No counters.\n"


def test_counters_as_one_json_object() -> None:
    data = json.loads(render_counters_json(COUNTERS))
    assert list(data) == [c.name for c in COUNTERS]
    assert data["dropped_malformed"] == 3 and data["udp_dropped_truncated"] == (1 << 64) - 1
    assert json.loads(render_counters_json(())) == {}


def test_each_subnet_pair_shows_its_selectors_in_verbose_and_json() -> None:
    """A definition with two subnets per side is four phase 2 tunnels: the operator tells
    them apart by their selectors (verbose and json), next to their own SPIs."""
    pairs = [(lo, re) for lo in ("198.51.100.0/28", "198.51.100.16/28[tcp/80]")
             for re in ("203.0.113.0/28", "203.0.113.16/28")]  # fmt: skip
    rows = [P1] + [
        row(1, 21 + i, Phase.PHASE2, "lan", phase1_number=11, spi_in=0x100 + i,
            spi_out=0x200 + i, local_selector=lo, remote_selector=re)
        for i, (lo, re) in enumerate(pairs)
    ]  # fmt: skip
    phase2 = table_of(sections(render_table(rows, verbose=True))["Phase 2 tunnels (4):"])
    assert [(r["Local Sel"], r["Remote Sel"], r["SPI out"]) for r in phase2] == [
        (lo, re, f"0x{0x200 + i:08x}") for i, (lo, re) in enumerate(pairs)
    ]
    phase1 = table_of(sections(render_table(rows, verbose=True))["Phase 1 tunnels (1):"])
    assert (phase1[0]["Local Sel"], phase1[0]["Remote Sel"]) == ("-", "-")
    assert "Local Sel" not in render_table(rows)  # only with verbose
    tree = render_tree(rows, verbose=True)
    assert all(lo in tree and re in tree for lo, re in pairs)
    data = json.loads(render_json(rows))
    assert [(d["local_selector"], d["remote_selector"]) for d in data] == [(None, None), *pairs]


def test_verbose_shows_the_peer_certificate_of_a_signature_phase_1() -> None:
    signed = row(2, 12, Phase.PHASE1, "to-siteC", peer_cert_subject="CN=gw-c,O=Example,C=CH",
                 peer_cert_issuer="CN=Example CA,O=Example,C=CH")  # fmt: skip
    verbose = render_table([P1, signed], verbose=True)
    line = next(text for text in verbose.splitlines() if "to-siteC" in text)
    assert "CN=gw-c,O=Example,C=CH" in line and "CN=Example CA,O=Example,C=CH" in line
    assert "Peer Cert" in verbose and "Peer Issuer" in verbose
    psk_line = next(text for text in verbose.splitlines() if "to-siteB" in text)
    assert psk_line.split()[-2:] == ["-", "-"]
    assert "Peer Cert" not in render_table([P1, signed])  # only with verbose


def test_json_rows_carry_every_tunnel_row_field() -> None:
    """`json` promises every TunnelRow field (the peer certificate ones included)."""
    import dataclasses
    import json

    from ikepriv.cli.listing import render_json

    signed = row(2, 12, Phase.PHASE1, "to-siteC", peer_cert_subject="CN=gw-c,O=Example,C=CH",
                 peer_cert_issuer="CN=Example CA,O=Example,C=CH")  # fmt: skip
    (obj,) = json.loads(render_json([signed]))
    assert set(obj) == {f.name for f in dataclasses.fields(TunnelRow)}
    assert obj["peer_cert_subject"] == "CN=gw-c,O=Example,C=CH"
    assert obj["peer_cert_issuer"] == "CN=Example CA,O=Example,C=CH"
