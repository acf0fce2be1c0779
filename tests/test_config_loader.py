"""Definitions files: every field checked, every problem located, nothing half-read."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikepriv.config import (
    ConfigError,
    Definitions,
    DpdAction,
    Identity,
    Phase1Definition,
    dump_definitions,
    load_bytes,
    load_definitions,
)
from ikepriv.isakmp.constants import (
    AuthMethod,
    EncapsulationMode,
    ExchangeType,
    GroupId,
    IdType,
    IpProtocol,
)

GOOD = """\
[[phase1]]
name = "to-siteB"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
local_id = "192.0.2.1"          # address, FQDN, user@FQDN or DN; type inferred
remote_id = "192.0.2.2"
mode = "main"                   # main | aggressive
auth = "psk"
psk = "correct horse battery staple"
proposals = ["aes128-sha256-modp2048", "aes256-sha1-modp1024"]
lifetime = 28800
autostart = false

[[phase2]]
name = "lanA-lanB"
phase1 = "to-siteB"
local_subnet = "198.51.100.0/24"
remote_subnet = "203.0.113.0/24"
protocol = "any"                # any | tcp | udp | icmp | number; ports optional
proposals = ["aes128-sha256-modp2048", "aes256gcm16"]   # ESP; a DH group means PFS
mode = "tunnel"                 # tunnel | transport
lifetime = 3600
"""


def line_of(text: str, prefix: str, occurrence: int = 0) -> int:
    hits = [n for n, line in enumerate(text.splitlines(), 1) if line.startswith(prefix)]
    return hits[occurrence]


def replace(text: str, key: str, new_line: str, occurrence: int = 0) -> str:
    lines = text.splitlines()
    n = line_of(text, f"{key} =", occurrence) - 1
    lines[n] = new_line
    return "\n".join(lines) + "\n"


def problems(text: str, **kwargs: object) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(ConfigError) as info:
        load_definitions(text, "t.toml", **kwargs)  # type: ignore[arg-type]
    return [(p.line, p.field, p.message) for p in info.value.problems]


def test_documented_example_loads_with_typed_values() -> None:
    defs = load_definitions(GOOD)
    (p1,) = defs.phase1
    (p2,) = defs.phase2
    assert p1.local_addr == ipaddress.ip_address("192.0.2.1")
    assert p1.remote_id == Identity(IdType.IPV4_ADDR, "192.0.2.2")
    assert p1.mode is ExchangeType.IDENTITY_PROTECTION
    assert p1.auth is AuthMethod.PRE_SHARED_KEY
    assert p1.psk == b"correct horse battery staple"
    assert [p.keyword for p in p1.proposals] == ["aes128-sha256-modp2048", "aes256-sha1-modp1024"]
    assert (p1.dpd_delay, p1.dpd_timeout, p1.dpd_action) == (30, 150, DpdAction.CLEAR)
    assert p1.nat_traversal and p1.rekey_margin == 540 and p1.number is None
    assert p2.phase1 == "to-siteB"
    assert p2.remote_subnet == ipaddress.ip_network("203.0.113.0/24")
    assert p2.protocol == IpProtocol.ANY and p2.mode is EncapsulationMode.TUNNEL
    assert p2.pfs_group is GroupId.MODP_2048
    assert (p2.lifetime, p2.lifetime_kb) == (3600, 0)


def test_psk_never_in_repr() -> None:
    (p1,) = load_definitions(GOOD).phase1
    assert "horse" not in repr(p1)


# (key, replacement line, field the problem names, words in the message)
BAD_FIELDS = [
    ("name", 'name = "to siteB"', "name", "not a valid name"),
    ("name", 'name = "' + "x" * 65 + '"', "name", "not a valid name"),
    ("local_addr", 'local_addr = "192.0.2.999"', "local_addr", "not an IP address"),
    ("local_addr", 'local_addr = "%any"', "local_addr", "cannot be %any"),
    ("local_addr", 'local_addr = "0.0.0.0"', "local_addr", "unspecified or multicast"),
    ("remote_addr", 'remote_addr = "2001:db8::2"', "remote_addr", "same IP version"),
    ("remote_addr", 'remote_addr = "192.0.2.1"', "remote_addr", "equals local_addr"),
    ("remote_addr", "remote_addr = 3", "remote_addr", "must be a string, not an integer"),
    ("local_id", 'local_id = "bad host name"', "local_id", "not a valid DNS name"),
    ("remote_id", 'remote_id = "C=CH, garbage"', "remote_id", "not a distinguished name"),
    ("mode", 'mode = "mian"', "mode", "not one of: main, aggressive"),
    ("auth", 'auth = "rsasig"', "auth", "not one of: psk, rsa-sig, ecdsa-sig"),
    ("auth", 'auth = "xauth"', "auth", "not one of: psk"),
    ("psk", 'psk = ""', "psk", "must not be empty"),
    ("psk", 'psk = "' + "k" * 257 + '"', "psk", "longer than 256 bytes"),
    ("psk", 'psk_hex = "abc"', "psk_hex", "not hexadecimal"),
    ("proposals", 'proposals = ["aes128-sha256"]', "proposals", "no DH group"),
    ("proposals", "proposals = []", "proposals", "must not be empty"),
    ("proposals", 'proposals = "aes128-sha256-modp2048"', "proposals", "must be an array"),
    ("lifetime", "lifetime = 59", "lifetime", "out of range (60..86400)"),
    ("lifetime", "lifetime = 86401", "lifetime", "out of range"),
    ("lifetime", 'lifetime = "8h"', "lifetime", "must be an integer"),
    ("autostart", 'autostart = "no"', "autostart", "must be true or false"),
    ("autostart", "autostart = 0", "autostart", "must be true or false"),
    ("autostart", "autostrat = false", "autostrat", "unknown key"),
]


@pytest.mark.parametrize(("key", "new", "field", "words"), BAD_FIELDS)
def test_bad_phase1_field_names_line_and_field(key: str, new: str, field: str, words: str) -> None:
    text = replace(GOOD, key, new)
    got = problems(text)
    assert (line_of(GOOD, f"{key} ="), field) in [(line, f) for line, f, _ in got]
    assert any(words in message for _, _, message in got), got


BAD_PHASE2_FIELDS = [
    ("name", 'name = ""', "name", "not a valid name"),
    ("local_subnet", 'local_subnet = "198.51.100.1/24"', "local_subnet", "host bits set"),
    ("local_subnet", 'local_subnet = "lan"', "local_subnet", "not a subnet"),
    ("remote_subnet", 'remote_subnet = "2001:db8::/64"', "remote_subnet", "same IP version"),
    ("protocol", 'protocol = "gre"', "protocol", "not one of"),
    ("protocol", "protocol = 256", "protocol", "out of range (0..255)"),
    ("protocol", 'protocol = "any"\nlocal_port = 80', "local_port", 'need protocol = "tcp"'),
    ("proposals", 'proposals = ["aes128gcm16-sha256"]', "proposals", "carries its own"),
    ("proposals", 'proposals = ["aes128-sha1-modp2048", "aes256-sha256-modp1024"]', "proposals",
     "different DH groups"),
    ("proposals", 'proposals = ["aes128-sha1"]\nah_proposals = ["sha256"]', "proposals",
     "either proposals (ESP)"),
    ("mode", 'mode = "tunnle"', "mode", "not one of: tunnel, transport"),
    ("mode", 'mode = "transport"', "local_subnet", "single address"),
    ("lifetime", "lifetime = 100000", "lifetime", "out of range"),
    ("lifetime", "lifetime = 3600\nrekey_margin = 3600", "rekey_margin", "at most half"),
    ("lifetime", "lifetime = 3600\nlifetime_kb = 10", "lifetime_kb", "0 or 1024"),
    ("phase1", 'phase1 = "to-siteC"', "phase1", "no phase 1 named 'to-siteC'"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "new", "field", "words"), BAD_PHASE2_FIELDS)
def test_bad_phase2_field_names_line_and_field(key: str, new: str, field: str, words: str) -> None:
    text = replace(GOOD, key, new, occurrence=1 if key in ("name", "proposals", "mode",
                                                          "lifetime") else 0)  # fmt: skip
    got = problems(text)
    expected_line = line_of(text, f"{field} =", 1 if field in ("name", "proposals") else 0)
    if field == "lifetime" or (field == "mode" and key == "mode"):
        expected_line = line_of(text, f"{field} =", 1)
    assert (expected_line, field) in [(line, f) for line, f, _ in got], got
    assert any(words in message for _, _, message in got), got


def test_every_problem_of_a_file_is_reported_in_line_order() -> None:
    text = replace(replace(GOOD, "mode", 'mode = "x"'), "lifetime", "lifetime = 1")
    got = problems(text)
    assert [(line, f) for line, f, _ in got] == [
        (line_of(GOOD, "mode ="), "mode"),
        (line_of(GOOD, "lifetime ="), "lifetime"),
    ]
    with pytest.raises(ConfigError) as info:
        load_definitions(text, "t.toml")
    first = info.value.lines()[0]
    assert first.startswith(f"t.toml:{line_of(GOOD, 'mode =')}: phase1 'to-siteB': ")


def test_missing_required_field_points_at_table_header() -> None:
    text = GOOD.replace('local_addr = "192.0.2.1"\n', "")
    assert (1, "local_addr", "missing (required)") in problems(text)


def test_missing_psk_reported() -> None:
    text = GOOD.replace('psk = "correct horse battery staple"\n', "")
    assert any("needs a key" in m for _, _, m in problems(text))


def test_psk_and_psk_hex_together_refused() -> None:
    text = GOOD.replace("psk = ", 'psk_hex = "00ff"\npsk = ')
    assert any(f == "psk_hex" and "not both" in m for _, f, m in problems(text))


def test_one_bad_table_refuses_the_whole_file() -> None:
    second = (
        GOOD.split("[[phase2]]")[0]
        .replace("to-siteB", "to-siteC")
        .replace('"192.0.2.2"', '"192.0.2.3"')
        .replace("lifetime = 28800", "lifetime = 5")
    )
    with pytest.raises(ConfigError):
        load_definitions(GOOD + "\n" + second)


def test_toml_syntax_error_has_line() -> None:
    text = GOOD.replace('mode = "tunnel"', 'mode = "tunnel')
    ((line, field, message),) = problems(text)
    assert line == line_of(GOOD, 'mode = "tunnel"') and field is None
    assert message.startswith("TOML syntax")


def test_unknown_top_level_key_and_single_table() -> None:
    got = problems("verbose = true\n" + GOOD)
    assert (1, "verbose") in [(line, f) for line, f, _ in got]
    got = problems(GOOD.replace("[[phase1]]", "[phase1]"))
    assert any("[[phase1]]" in m for _, _, m in got)


def test_empty_file_and_non_utf8() -> None:
    assert any("no [[phase1]]" in m for _, _, m in problems(""))
    with pytest.raises(ConfigError, match="not valid UTF-8"):
        load_bytes(GOOD.encode() + b"\n# \xff\n", "t.toml")


def test_duplicate_name_refused() -> None:
    p1 = GOOD.split("[[phase2]]")[0]
    got = problems(p1 + p1)
    assert (line_of(p1 + p1, "name =", 1), "name") in [(line, f) for line, f, _ in got]


def test_phase1_from_database_satisfies_phase2() -> None:
    (stored,) = load_definitions(GOOD).phase1
    only_p2 = "[[phase2]]" + GOOD.split("[[phase2]]")[1]
    defs = load_definitions(only_p2, known_phase1={"to-siteB": stored}.get)
    assert [d.name for d in defs.phase2] == ["lanA-lanB"] and defs.phase1 == ()
    assert any("no phase 1 named" in m for _, _, m in problems(only_p2))


ANY_PEER = """\
[[phase1]]
name = "roadwarriors"
local_addr = "2001:db8::1"
remote_addr = "%any"
remote_id = "@peer.example.org"
mode = "aggressive"
psk_hex = "00ff10"
proposals = ["aes256-sha256-ecp256"]
"""


def test_any_peer_definition() -> None:
    (p1,) = load_definitions(ANY_PEER).phase1
    assert p1.accepts_any_peer and p1.remote_addr is None
    assert p1.remote_id == Identity(IdType.FQDN, "peer.example.org")
    assert p1.local_id == Identity(IdType.IPV6_ADDR, "2001:db8::1")
    assert p1.psk == b"\x00\xff\x10"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (('mode = "aggressive"', 'mode = "main"'), "remote_addr", "needs mode = \"aggressive\""),
        (('remote_id = "@peer.example.org"\n', ""), "remote_id", "required with remote_addr"),
        (('mode = "aggressive"', 'mode = "aggressive"\nautostart = true'), "autostart", "%any"),
        (('mode = "aggressive"', 'mode = "aggressive"\ndpd_action = "restart"'), "dpd_action",
         "impossible"),
    ],
)  # fmt: skip
def test_any_peer_restrictions(change: tuple[str, str], field: str, words: str) -> None:
    got = problems(ANY_PEER.replace(*change))
    assert any(f == field and words in m for _, f, m in got), got


def test_dpd_timeout_must_exceed_delay() -> None:
    text = GOOD.replace("autostart = false", "autostart = false\ndpd_delay = 60\ndpd_timeout = 60")
    assert any(f == "dpd_timeout" for _, f, _ in problems(text))
    off = GOOD.replace("autostart = false", "autostart = false\ndpd_delay = 0\ndpd_timeout = 10")
    assert load_definitions(off).phase1[0].dpd_delay == 0


GW2 = """\
[[phase1]]
name = "gw2"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.9"
local_id = "C=CH, O=Example, CN=gw1"
remote_id = "ops@example.org"
psk = "tab\\there"
proposals = ["aes128-aes256-sha256-sha1-modp2048", "3des-md5-modp1024"]
lifetime = 3600
rekey_margin = 60
keying_tries = 0
dpd_delay = 10
dpd_timeout = 40
dpd_action = "hold"
nat_traversal = false
autostart = true

[[phase2]]
name = "web"
phase1 = "gw2"
local_subnet = "192.0.2.1/32"
remote_subnet = "192.0.2.9"
protocol = "tcp"
local_port = 443
remote_port = 0
ah_proposals = ["sha256-sha512-ecp256"]
mode = "transport"
lifetime = 600
lifetime_kb = 100000
autostart = true
"""

RICH = (
    ANY_PEER
    + "\n"
    + GW2
    + """
[[phase2]]
name = "v6"
phase1 = "roadwarriors"
local_subnet = "2001:db8:1::/48"
remote_subnet = "2001:db8:2::/48"
protocol = 47
proposals = ["aes256gcm16-aes128gcm12-esn-noesn"]
"""
)


def test_written_toml_reads_back_identically() -> None:
    defs = load_definitions(RICH)
    text = dump_definitions(defs)
    assert load_definitions(text) == defs
    assert 'psk_hex = "00ff10"' in text  # binary key
    assert 'psk_hex = "' + b"tab\there".hex() + '"' in text  # control character
    assert 'remote_addr = "%any"' in text and 'remote_id = "peer.example.org"' in text


def test_numbers_appear_as_comments_only() -> None:
    (p1,) = load_definitions(GOOD).phase1
    text = dump_definitions(phase1=[dataclasses.replace(p1, number=7)])
    assert text.startswith("# phase1 definition number 7\n[[phase1]]")
    assert load_definitions(text).phase1 == (p1,)


def test_swap_reads_a_peers_file() -> None:
    mine = load_definitions(GW2, swap=True)
    gw2 = next(d for d in mine.phase1 if d.name == "gw2")
    assert str(gw2.local_addr) == "192.0.2.9" and str(gw2.remote_addr) == "192.0.2.1"
    assert gw2.local_id == Identity(IdType.USER_FQDN, "ops@example.org")
    assert gw2.remote_id.type is IdType.DER_ASN1_DN
    (web,) = mine.phase2
    assert (str(web.local_subnet), str(web.remote_subnet)) == ("192.0.2.9/32", "192.0.2.1/32")
    assert (web.local_port, web.remote_port) == (0, 443)


def test_swap_twice_is_identity() -> None:
    defs = load_definitions(GOOD)
    swapped = load_definitions(dump_definitions(load_definitions(GOOD, swap=True)), swap=True)
    assert swapped == defs


def test_swap_problems_name_the_key_as_written() -> None:
    got = problems(ANY_PEER, swap=True)
    assert any(f == "remote_addr" and "read as local_addr" in m for _, f, m in got), got
    assert (line_of(ANY_PEER, "remote_addr ="), "remote_addr") in [(li, f) for li, f, _ in got]


def test_definitions_are_frozen() -> None:
    (p1,) = load_definitions(GOOD).phase1
    with pytest.raises(AttributeError):
        p1.name = "other"  # type: ignore[misc]
    assert isinstance(p1, Phase1Definition) and isinstance(load_definitions(GOOD), Definitions)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_files_give_definitions_or_a_config_error(data: st.DataObject) -> None:
    """Whatever an operator types, the answer is definitions or located problems."""
    lines = RICH.splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    junk = data.draw(st.text(alphabet="abc%@\"=[]{}.,:-_ 0123456789\\'#\t", max_size=30))
    lines[index] = lines[index][: data.draw(st.integers(0, len(lines[index])))] + junk
    try:
        load_definitions("\n".join(lines))
    except ConfigError as exc:
        assert exc.problems and all(p.message for p in exc.problems)
