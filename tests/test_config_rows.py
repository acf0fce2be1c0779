"""Database rows that break a definition rule, edited by hand with sqlite3.

Each rule the loader enforces is enforced by the model's constructors, which the store uses
to decode a row: a row breaking one is refused with the field that is wrong (the strict
readers `ikedb` uses raise; the daemon's `read_all`/`DbView.load` log it and leave it out),
and every other row keeps working.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import pytest

from ikepriv.config import load_definitions
from ikepriv.config.errors import DefinitionError
from ikepriv.config.identity import Identity
from ikepriv.config.model import Phase1Definition, Phase2Definition
from ikepriv.config.proposals import AhProposal, EspProposal, IkeProposal, ProposalError
from ikepriv.config.store import TunnelDB, TunnelDBError
from ikepriv.isakmp.constants import (
    AhTransformId,
    AuthAlgorithm,
    EspTransformId,
    ExchangeType,
    GroupId,
    IdType,
    IkeEncryption,
    IkeHash,
    IpProtocol,
)
from ikepriv.parent_kernel.definitions import DbView

SITE = """
[[phase1]]
name = "to-siteB"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
psk = "a long random shared secret for the tests"
proposals = ["aes128-sha256-modp2048"]

[[phase2]]
name = "lanA-lanB"
phase1 = "to-siteB"
local_subnet = "198.51.100.0/24"
remote_subnet = "203.0.113.0/24"
proposals = ["aes128-sha256", "aes256gcm16"]

[[phase1]]
name = "roadwarriors"
local_addr = "192.0.2.1"
remote_addr = "%any"
remote_id = "@peer.example.org"
mode = "aggressive"
psk = "the key of the road warriors"
proposals = ["aes256-sha1-modp2048"]

[[phase2]]
name = "rw-lan"
phase1 = "roadwarriors"
local_subnet = "198.51.100.0/25"
remote_subnet = "203.0.113.128/25"
protocol = "tcp"
local_port = 443
proposals = ["aes128-sha1"]

[[phase1]]
name = "to-siteC"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.3"
psk = "another secret for the third gateway"
proposals = ["aes256-sha1-modp2048"]

[[phase2]]
name = "lanA-lanC"
phase1 = "to-siteC"
local_subnet = "198.51.100.128/25"
remote_subnet = "203.0.113.0/25"
ah_proposals = ["sha256"]
"""
# phase 1: 1 to-siteB, 2 roadwarriors (%any), 3 to-siteC; phase 2: 1, 2, 3 under them
P1 = "UPDATE phase1 SET {} WHERE number = 1"
ANY = "UPDATE phase1 SET {} WHERE number = 2"
P2 = "UPDATE phase2 SET {} WHERE number = 1"
TCP = "UPDATE phase2 SET {} WHERE number = 2"
AH = "UPDATE phase2 SET {} WHERE number = 3"

# (sql, table, row number, field named); a bad phase 1 takes its phase 2 along
PHASE1_ROWS = [
    (P1.format("name = 'to siteB'"), "name"),
    (P1.format("name = ''"), "name"),
    (P1.format("name = X'41'"), "name"),  # a BLOB, not text
    (P1.format("local_addr = '192.0.2.999'"), "local_addr"),
    (P1.format("local_addr = '224.0.0.1'"), "local_addr"),
    (P1.format("local_addr = '0.0.0.0'"), "local_addr"),
    (P1.format("remote_addr = 'peer'"), "remote_addr"),
    (P1.format("remote_addr = '2001:db8::2'"), "remote_addr"),
    (P1.format("remote_addr = '192.0.2.1'"), "remote_addr"),
    (P1.format("remote_addr = NULL"), "remote_addr"),  # %any in Main Mode
    (P1.format("local_id_type = 99"), "local_id"),
    (P1.format("local_id_type = 3"), "local_id"),  # USER_FQDN type, address value
    (P1.format("local_id = 'bad host name', local_id_type = 2"), "local_id"),
    (P1.format("remote_id = 'peer.example.org'"), "remote_id"),  # IPv4 type
    (P1.format("remote_id = '2001:DB8::2', remote_id_type = 5"), "remote_id"),  # not canonical
    (P1.format("remote_id = 'C=CH, garbage', remote_id_type = 9"), "remote_id"),
    (P1.format("mode = 5"), "mode"),  # Informational is no phase 1 mode
    (P1.format("mode = 99"), "mode"),
    (P1.format("auth = 3"), "psk"),  # RSA signatures with a PSK
    (P1.format("auth = 4"), "auth"),  # RSA encryption: not a method we speak
    (P1.format("auth = 3, psk = NULL"), "cert"),  # signatures without our certificate
    (P1.format("auth = 3, psk = NULL, cert = '/c.pem'"), "key"),
    (P1.format("auth = 3, psk = NULL, cert = '/c.pem', key = '/k.pem'"), "ca"),
    (
        P1.format("auth = 9, psk = NULL, cert = 'c.pem', key = '/k.pem', ca = '[\"/ca\"]'"),
        "cert",
    ),  # a relative path
    (P1.format("auth = 3, psk = NULL, cert = '/c', key = '/k', ca = '/ca'"), "ca"),  # no JSON
    (P1.format("ca = '[\"/ca.pem\"]'"), "ca"),  # a CA for a PSK definition
    (P1.format("psk = NULL"), "psk"),
    (P1.format("psk = X''"), "psk"),
    (P1.format("psk = randomblob(257)"), "psk"),
    (P1.format("psk = 'text, not a blob'"), "psk"),
    (P1.format("cert = '/etc/ikepriv/gw.pem'"), "cert"),  # a certificate with a PSK
    (P1.format("send_cert = 'sometimes'"), "send_cert"),
    (P1.format("fragmentation = 'maybe'"), "fragmentation"),
    (P1.format("fragment_size = 575"), "fragment_size"),
    (P1.format("fragment_size = 65536"), "fragment_size"),
    (P1.format("proposals = 'aes128-rot13-modp2048'"), "proposals"),
    (P1.format("proposals = ''"), "proposals"),
    (P1.format("proposals = 'aes128-gcm16-modp2048'"), "proposals"),
    (P1.format("lifetime = 59"), "lifetime"),
    (P1.format("lifetime = 100000000"), "lifetime"),
    (P1.format("lifetime = -5"), "lifetime"),
    (P1.format("lifetime = '8h'"), "lifetime"),
    (P1.format("lifetime = 3600.5"), "lifetime"),
    (P1.format("rekey_margin = 28800"), "rekey_margin"),
    (P1.format("rekey_margin = -1"), "rekey_margin"),
    (P1.format("keying_tries = 1001"), "keying_tries"),
    (P1.format("dpd_delay = 3"), "dpd_delay"),
    (P1.format("dpd_timeout = 5"), "dpd_timeout"),
    (P1.format("dpd_timeout = 30"), "dpd_timeout"),  # not greater than dpd_delay (30)
    (P1.format("dpd_action = 'explode'"), "dpd_action"),
    (P1.format("nat_traversal = 2"), "nat_traversal"),
    (P1.format("autostart = 'yes'"), "autostart"),
    (P1.format("encap = 2"), "encap"),
    (P1.format("rekey = 'no'"), "rekey"),
    (P1.format("encap = 1, nat_traversal = 0"), "encap"),
    (ANY.format("mode = 2"), "remote_addr"),  # %any with a PSK needs Aggressive Mode
    (ANY.format("autostart = 1"), "autostart"),
    (ANY.format("dpd_action = 'restart'"), "dpd_action"),
]
PHASE2_ROWS = [
    (P2.format("name = 'lan a'"), 1, "name"),
    (P2.format("rekey = 2"), 1, "rekey"),
    (P2.format("local_subnet = '198.51.100.7/24'"), 1, "local_subnet"),
    (P2.format("local_subnet = 'lan'"), 1, "local_subnet"),
    (P2.format("remote_subnet = '2001:db8::/64'"), 1, "remote_subnet"),
    (P2.format("protocol = 256"), 1, "protocol"),
    (P2.format("protocol = -1"), 1, "protocol"),
    (P2.format("protocol = 1, remote_port = 443"), 1, "remote_port"),
    (TCP.format("local_port = 65536"), 2, "local_port"),
    (TCP.format("protocol = 47"), 2, "local_port"),  # the port stays, TCP goes
    (P2.format("esp_proposals = 'aes128gcm16-sha256'"), 1, "esp_proposals"),
    (P2.format("esp_proposals = ''"), 1, "esp_proposals"),
    (P2.format("ah_proposals = 'sha256'"), 1, "esp_proposals"),  # AH+ESP bundle
    (P2.format("esp_proposals = 'aes128-sha1-modp2048,aes256-sha256-modp1024'"), 1,
     "esp_proposals"),
    (AH.format("ah_proposals = 'aes128'"), 3, "ah_proposals"),
    (AH.format("ah_proposals = 'sha1-modp2048,sha256-modp1024'"), 3, "ah_proposals"),
    (P2.format("mode = 9"), 1, "mode"),
    (P2.format("lifetime = 0"), 1, "lifetime"),
    (P2.format("lifetime = 100000000"), 1, "lifetime"),
    (P2.format("lifetime_kb = 10"), 1, "lifetime_kb"),
    (P2.format("rekey_margin = 3600"), 1, "rekey_margin"),
    (P2.format("autostart = 2"), 1, "autostart"),
]  # fmt: skip
# rules between a phase 2 and its phase 1: the rows decode, the view refuses the pair
BINDING_ROWS = [
    (P2.format("mode = 2"), 1, "local_subnet"),  # transport mode with /24 selectors
    (P2.format("mode = 2, local_subnet = '192.0.2.1/32', remote_subnet = '192.0.2.9/32'"), 1,
     "remote_subnet"),  # transport mode, not the peer's address
    (TCP.format("autostart = 1"), 2, "autostart"),  # under a %any phase 1
]  # fmt: skip

P2_UNDER = {1: 1, 2: 2, 3: 3}


def edited(tmp_path: Path, sql: str) -> Path:
    path = tmp_path / "t.db"
    with TunnelDB(path) as db:
        db.put(load_definitions(SITE))
    with sqlite3.connect(path) as raw:
        raw.execute(sql)
    raw.close()
    return path


def view_of(path: Path) -> DbView:
    with TunnelDB(path, create=False, readonly=True) as db:
        return DbView.load(db)


def test_the_untouched_database_loads_completely(tmp_path: Path) -> None:
    view = view_of(edited(tmp_path, "UPDATE phase1 SET keying_tries = 5"))
    assert sorted(view.phase1) == [1, 2, 3] and sorted(view.phase2) == [1, 2, 3]
    assert len(view.ipc_phase1) == 3 and len(view.ipc_phase2) == 3


@pytest.mark.parametrize(("sql", "field"), PHASE1_ROWS)
def test_bad_phase1_row_refused_naming_the_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sql: str, field: str
) -> None:
    number = 2 if sql.endswith("number = 2") else 1
    path = edited(tmp_path, sql)
    view = view_of(path)
    others = sorted({1, 2, 3} - {number})
    assert sorted(view.phase1) == others
    assert sorted(view.phase2) == others  # its phase 2 goes with it, the others stay
    assert sorted(d.number for d in view.ipc_phase1) == others  # the child never sees it
    assert f"bad phase1 row number {number}" in caplog.text
    assert f"field '{field}'" in caplog.text, caplog.text
    with TunnelDB(path, create=False, readonly=True) as db:
        with pytest.raises(TunnelDBError, match=f"bad phase1 row number {number}.*'{field}'"):
            db.phase1_definitions()
        assert db.phase1("to-siteC") is not None  # the strict readers still read good rows


@pytest.mark.parametrize(("sql", "number", "field"), PHASE2_ROWS)
def test_bad_phase2_row_refused_naming_the_field(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sql: str, number: int, field: str
) -> None:
    path = edited(tmp_path, sql)
    view = view_of(path)
    assert sorted(view.phase1) == [1, 2, 3]
    assert sorted(view.phase2) == sorted({1, 2, 3} - {number})
    assert sorted(d.number for d in view.ipc_phase2) == sorted({1, 2, 3} - {number})
    assert f"bad phase2 row number {number}" in caplog.text
    assert f"field '{field}'" in caplog.text, caplog.text
    with TunnelDB(path, create=False, readonly=True) as db:
        with pytest.raises(TunnelDBError, match=f"bad phase2 row number {number}.*'{field}'"):
            db.phase2_definitions()


@pytest.mark.parametrize(("sql", "number", "field"), BINDING_ROWS)
def test_phase2_row_that_does_not_fit_its_phase1_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, sql: str, number: int, field: str
) -> None:
    view = view_of(edited(tmp_path, sql))
    assert sorted(view.phase1) == [1, 2, 3]
    assert sorted(view.phase2) == sorted({1, 2, 3} - {number})
    assert f"phase 2 definition {number}" in caplog.text
    assert f"field '{field}'" in caplog.text, caplog.text


def test_valid_hand_edits_keep_working(tmp_path: Path) -> None:
    """Within the rules, an edited row is as good as one ikedb wrote."""
    sql = (
        "UPDATE phase2 SET mode = 2, local_subnet = '192.0.2.1/32', "
        "remote_subnet = '192.0.2.2/32', lifetime = 600, rekey_margin = 60 WHERE number = 1"
    )
    view = view_of(edited(tmp_path, sql))
    assert sorted(view.phase2) == [1, 2, 3]
    assert view.phase2[1].lifetime == 600 and str(view.phase2[1].remote_subnet) == "192.0.2.2/32"


# --- the constructors themselves --------------------------------------------------------------


def _good() -> tuple[Phase1Definition, Phase2Definition]:
    defs = load_definitions(SITE)
    return defs.phase1[0], defs.phase2[0]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"proposals": ()}, "proposals"),
        ({"name": None}, "name"),
        ({"lifetime": True}, "lifetime"),  # a bool is not an integer
        ({"nat_traversal": 1}, "nat_traversal"),
        ({"encap": 1}, "encap"),
        ({"encap": True, "nat_traversal": False}, "encap"),
        ({"rekey": "no"}, "rekey"),
        ({"mode": ExchangeType.INFORMATIONAL}, "mode"),
        ({"mode": 2}, "mode"),  # the number is not the enum member
        ({"dpd_action": "clear"}, "dpd_action"),
        ({"local_addr": "192.0.2.1"}, "local_addr"),
        ({"local_id": "192.0.2.1"}, "local_id"),
        ({"number": 0}, "number"),
    ],
)
def test_phase1_constructor_refuses_naming_the_field(change: dict[str, object], field: str) -> None:
    p1, _ = _good()
    with pytest.raises(DefinitionError) as info:
        dataclasses.replace(p1, **change)  # type: ignore[arg-type]
    assert info.value.field == field


def test_phase1_repeated_proposals_refused() -> None:
    p1, _ = _good()
    with pytest.raises(DefinitionError, match="repeat") as info:
        dataclasses.replace(p1, proposals=p1.proposals * 2)
    assert info.value.field == "proposals"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"protocol": IpProtocol.TCP, "local_port": -1}, "local_port"),
        ({"local_subnet": "198.51.100.0/24"}, "local_subnet"),
        ({"esp_proposals": ()}, "esp_proposals"),
        ({"esp_proposals": None}, "esp_proposals"),
        ({"lifetime_kb": 1}, "lifetime_kb"),
        ({"phase1": "a b"}, "phase1"),
        ({"rekey": 0}, "rekey"),
    ],
)
def test_phase2_constructor_refuses_naming_the_field(change: dict[str, object], field: str) -> None:
    _, p2 = _good()
    with pytest.raises(DefinitionError) as info:
        dataclasses.replace(p2, **change)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (IdType.IPV4_ADDR, "peer.example.org"),
        (IdType.IPV6_ADDR, "2001:DB8::1"),  # not the canonical text
        (IdType.FQDN, "bad name"),
        (IdType.FQDN, "CN=x"),  # reads back as a DN
        (IdType.USER_FQDN, "no-at-sign.example.org"),
        (IdType.DER_ASN1_DN, "C=CH, garbage"),
        (IdType.KEY_ID, "abc"),  # not a type the definitions file can name
    ],
)
def test_identity_refuses_what_its_text_cannot_express(kind: IdType, value: str) -> None:
    with pytest.raises(ValueError):
        Identity(kind, value)


def test_proposal_constructors_refuse_impossible_transforms() -> None:
    with pytest.raises(ProposalError):
        IkeProposal(IkeEncryption.AES_CBC, 100, IkeHash.SHA, GroupId.MODP_2048)
    with pytest.raises(ProposalError):
        EspProposal(EspTransformId.AES_GCM_16, 128, AuthAlgorithm.HMAC_SHA, None)
    with pytest.raises(ProposalError):
        EspProposal(EspTransformId.AES_CBC, 128, None, None)
    with pytest.raises(ProposalError):
        AhProposal(AhTransformId.MD5, AuthAlgorithm.HMAC_SHA, None)
