"""XFRM message layouts against the C compiler, codec round trips, validation, decoding.

No root needed.  The layout tests compile a small C program against linux/xfrm.h that
fills each structure with distinct values and prints its bytes; our pyroute2 classes
must produce exactly those bytes and decode them back.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import shutil
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ikepriv.isakmp.constants import IpProtocol
from ikepriv.parent_kernel import udp
from ikepriv.parent_kernel.kernel import client as x
from ikepriv.parent_kernel.kernel import events, specs
from ikepriv.parent_kernel.kernel import xfrm_messages as xm

C_SOURCE = r"""
#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <arpa/inet.h>
#include <linux/xfrm.h>

static void dump(const char *name, const void *p, size_t n, int last) {
    const unsigned char *b = p;
    printf("\"%s\": {\"size\": %zu, \"hex\": \"", name, n);
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\"}%s\n", last ? "" : ",");
}

static void fill_sel(struct xfrm_selector *s) {
    inet_pton(AF_INET, "203.0.113.0", &s->daddr);
    inet_pton(AF_INET, "198.51.100.0", &s->saddr);
    s->dport = htons(443); s->dport_mask = 0xffff;
    s->sport = htons(1024); s->sport_mask = 0xffff;
    s->family = AF_INET; s->prefixlen_d = 24; s->prefixlen_s = 25; s->proto = 6;
    s->ifindex = 7; s->user = 9;
}

static void fill_lft(struct xfrm_lifetime_cfg *l) {
    l->soft_byte_limit = 1; l->hard_byte_limit = 2; l->soft_packet_limit = 3;
    l->hard_packet_limit = 4; l->soft_add_expires_seconds = 5;
    l->hard_add_expires_seconds = 6; l->soft_use_expires_seconds = 7;
    l->hard_use_expires_seconds = 8;
}

static void fill_sa(struct xfrm_usersa_info *u) {
    fill_sel(&u->sel);
    inet_pton(AF_INET, "192.0.2.2", &u->id.daddr);
    u->id.spi = htonl(0xc0ffee01); u->id.proto = 50;
    inet_pton(AF_INET, "192.0.2.1", &u->saddr);
    fill_lft(&u->lft);
    u->curlft.bytes = 11; u->curlft.packets = 12; u->curlft.add_time = 13; u->curlft.use_time = 14;
    u->stats.replay_window = 21; u->stats.replay = 22; u->stats.integrity_failed = 23;
    u->seq = 31; u->reqid = 32; u->family = AF_INET; u->mode = 1; u->replay_window = 33;
    u->flags = 34;
}

static void fill_pol(struct xfrm_userpolicy_info *p) {
    fill_sel(&p->sel); fill_lft(&p->lft);
    p->curlft.bytes = 41; p->curlft.packets = 42; p->curlft.add_time = 43; p->curlft.use_time = 44;
    p->priority = 45; p->index = 46; p->dir = 2; p->action = 1; p->flags = 3; p->share = 1;
}

static void fill_tmpl(struct xfrm_user_tmpl *t) {
    inet_pton(AF_INET6, "2001:db8::2", &t->id.daddr);
    t->id.spi = htonl(0x1234); t->id.proto = 51; t->family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", &t->saddr);
    t->reqid = 0x01020304; t->mode = 1; t->share = 2; t->optional = 1;
    t->aalgos = 0xa1; t->ealgos = 0xe1; t->calgos = 0xc1;
}

int main(void) {
    struct xfrm_usersa_info sa; memset(&sa, 0, sizeof sa); fill_sa(&sa);
    struct xfrm_userpolicy_info pol; memset(&pol, 0, sizeof pol); fill_pol(&pol);
    struct xfrm_user_tmpl tmpl; memset(&tmpl, 0, sizeof tmpl); fill_tmpl(&tmpl);
    struct xfrm_userspi_info spi; memset(&spi, 0, sizeof spi); fill_sa(&spi.info);
    spi.min = 0x100; spi.max = 0x200;
    struct xfrm_usersa_id id; memset(&id, 0, sizeof id);
    inet_pton(AF_INET, "192.0.2.2", &id.daddr); id.spi = htonl(0xabcdef01);
    id.family = AF_INET; id.proto = 51;
    struct xfrm_userpolicy_id pid; memset(&pid, 0, sizeof pid); fill_sel(&pid.sel);
    pid.index = 77; pid.dir = 1;
    struct xfrm_user_acquire acq; memset(&acq, 0, sizeof acq);
    inet_pton(AF_INET, "192.0.2.2", &acq.id.daddr); acq.id.proto = 50;
    inet_pton(AF_INET, "192.0.2.1", &acq.saddr); fill_sel(&acq.sel); fill_pol(&acq.policy);
    acq.aalgos = 1; acq.ealgos = 2; acq.calgos = 3; acq.seq = 0x55667788;
    struct xfrm_user_expire exp; memset(&exp, 0, sizeof exp); fill_sa(&exp.state); exp.hard = 1;
    struct xfrm_user_polexpire pexp; memset(&pexp, 0, sizeof pexp); fill_pol(&pexp.pol);
    pexp.hard = 1;
    /* the per-socket IKE bypass policy (IP_XFRM_POLICY / IPV6_XFRM_POLICY), as iproute2's
       and strongSwan's socket policies are built */
    struct xfrm_userpolicy_info byp4; memset(&byp4, 0, sizeof byp4);
    byp4.sel.family = AF_INET; byp4.dir = XFRM_POLICY_IN; byp4.action = XFRM_POLICY_ALLOW;
    struct xfrm_userpolicy_info byp6; memset(&byp6, 0, sizeof byp6);
    byp6.sel.family = AF_INET6; byp6.dir = XFRM_POLICY_OUT; byp6.action = XFRM_POLICY_ALLOW;
    struct xfrm_encap_tmpl enc; memset(&enc, 0, sizeof enc);
    enc.encap_type = 2; enc.encap_sport = htons(4500); enc.encap_dport = htons(4501);
    inet_pton(AF_INET, "198.51.100.9", &enc.encap_oa);
    printf("{\n");
    dump("xfrm_usersa_info", &sa, sizeof sa, 0);
    dump("xfrm_userpolicy_info", &pol, sizeof pol, 0);
    dump("xfrm_user_tmpl", &tmpl, sizeof tmpl, 0);
    dump("xfrm_userspi_info", &spi, sizeof spi, 0);
    dump("xfrm_usersa_id", &id, sizeof id, 0);
    dump("xfrm_userpolicy_id", &pid, sizeof pid, 0);
    dump("xfrm_user_acquire", &acq, sizeof acq, 0);
    dump("xfrm_user_expire", &exp, sizeof exp, 0);
    dump("xfrm_user_polexpire", &pexp, sizeof pexp, 0);
    dump("xfrm_encap_tmpl", &enc, sizeof enc, 0);
    dump("bypass_v4_in", &byp4, sizeof byp4, 0);
    dump("bypass_v6_out", &byp6, sizeof byp6, 0);
    printf("\"xfrm_selector\": {\"size\": %zu}, \"xfrm_id\": {\"size\": %zu},\n",
           sizeof(struct xfrm_selector), sizeof(struct xfrm_id));
    printf("\"xfrm_lifetime_cfg\": {\"size\": %zu}, \"xfrm_lifetime_cur\": {\"size\": %zu}\n",
           sizeof(struct xfrm_lifetime_cfg), sizeof(struct xfrm_lifetime_cur));
    printf("}\n");
    return 0;
}
"""


def ip4(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, text)


def ip6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


SEL = {
    "daddr": ip4("203.0.113.0"),
    "saddr": ip4("198.51.100.0"),
    "dport": 443,
    "dport_mask": 0xFFFF,
    "sport": 1024,
    "sport_mask": 0xFFFF,
    "family": socket.AF_INET,
    "prefixlen_d": 24,
    "prefixlen_s": 25,
    "proto": 6,
    "ifindex": 7,
    "user": 9,
}
LFT = {
    "soft_byte_limit": 1,
    "hard_byte_limit": 2,
    "soft_packet_limit": 3,
    "hard_packet_limit": 4,
    "soft_add_expires_seconds": 5,
    "hard_add_expires_seconds": 6,
    "soft_use_expires_seconds": 7,
    "hard_use_expires_seconds": 8,
}
SA = {
    "sel": SEL,
    "id": {"daddr": ip4("192.0.2.2"), "spi": 0xC0FFEE01, "proto": 50},
    "saddr": ip4("192.0.2.1"),
    "lft": LFT,
    "curlft": {"bytes": 11, "packets": 12, "add_time": 13, "use_time": 14},
    "stats": {"replay_window": 21, "replay": 22, "integrity_failed": 23},
    "seq": 31,
    "reqid": 32,
    "family": socket.AF_INET,
    "mode": 1,
    "replay_window": 33,
    "flags": 34,
}
POL = {
    "sel": SEL,
    "lft": LFT,
    "curlft": {"bytes": 41, "packets": 42, "add_time": 43, "use_time": 44},
    "priority": 45,
    "index": 46,
    "dir": 2,
    "action": 1,
    "flags": 3,
    "share": 1,
}
TMPL = {
    "id": {"daddr": ip6("2001:db8::2"), "spi": 0x1234, "proto": 51},
    "family": socket.AF_INET6,
    "saddr": ip6("2001:db8::1"),
    "reqid": 0x01020304,
    "mode": 1,
    "share": 2,
    "optional": 1,
    "aalgos": 0xA1,
    "ealgos": 0xE1,
    "calgos": 0xC1,
}
# message class -> field values matching the C program
MESSAGES: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "xfrm_usersa_info": (xm.xfrm_usersa_info, SA),
    "xfrm_userpolicy_info": (xm.xfrm_userpolicy_info, POL),
    "xfrm_userspi_info": (xm.xfrm_userspi_info, {"info": SA, "min": 0x100, "max": 0x200}),
    "xfrm_usersa_id": (
        xm.xfrm_usersa_id,
        {"daddr": ip4("192.0.2.2"), "spi": 0xABCDEF01, "family": socket.AF_INET, "proto": 51},
    ),
    "xfrm_userpolicy_id": (xm.xfrm_userpolicy_id, {"sel": SEL, "index": 77, "dir": 1}),
    "xfrm_user_acquire": (
        xm.xfrm_user_acquire,
        {
            "id": {"daddr": ip4("192.0.2.2"), "spi": 0, "proto": 50},
            "saddr": ip4("192.0.2.1"),
            "sel": SEL,
            "policy": POL,
            "aalgos": 1,
            "ealgos": 2,
            "calgos": 3,
            "seq": 0x55667788,
        },
    ),
    "xfrm_user_expire": (xm.xfrm_user_expire, {"state": SA, "hard": 1}),
    "xfrm_user_polexpire": (xm.xfrm_user_polexpire, {"pol": POL, "hard": 1}),
}
STRUCTS: dict[str, tuple[type[xm.CStruct], dict[str, Any]]] = {
    "xfrm_user_tmpl": (xm.UserTmpl, TMPL),
    "xfrm_encap_tmpl": (
        xm.EncapTmpl,
        {
            "encap_type": 2,
            "encap_sport": 4500,
            "encap_dport": 4501,
            "encap_oa": ip4("198.51.100.9"),
        },
    ),
}


def pad16(value: Any) -> Any:
    """Expected decoded form: addresses come back as full 16-byte xfrm_address_t."""
    if isinstance(value, dict):
        return {k: pad16(v) for k, v in value.items()}
    if isinstance(value, bytes) and len(value) in (4, 16):
        return value.ljust(16, b"\0")
    return value


@pytest.fixture(scope="module")
def c_layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    if shutil.which("gcc") is None or not Path("/usr/include/linux/xfrm.h").exists():
        pytest.skip("needs gcc and linux/xfrm.h (apt-get install gcc linux-libc-dev)")
    work = tmp_path_factory.mktemp("xfrm_c")
    src = work / "layouts.c"
    src.write_text(C_SOURCE)
    exe = work / "layouts"
    subprocess.run(["gcc", "-Wall", "-o", str(exe), str(src)], check=True)  # noqa: S603, S607
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout  # noqa: S603
    data: dict[str, dict[str, Any]] = json.loads(out)
    return data


def test_sizes_equal_c_sizeof(c_layouts: dict[str, dict[str, Any]]) -> None:
    assert c_layouts["xfrm_usersa_info"]["size"] == 224
    assert c_layouts["xfrm_userpolicy_info"]["size"] == 168
    assert c_layouts["xfrm_user_tmpl"]["size"] == 64
    for name, (cls, _) in MESSAGES.items():
        assert xm.body_size(cls) == c_layouts[name]["size"], name
    for name, (struct_cls, _) in STRUCTS.items():
        assert struct_cls.size == c_layouts[name]["size"], name
    assert xm.XfrmSelector.size == c_layouts["xfrm_selector"]["size"]
    assert xm.XfrmId.size == c_layouts["xfrm_id"]["size"]
    assert xm.LifetimeCfg.size == c_layouts["xfrm_lifetime_cfg"]["size"]
    assert xm.LifetimeCur.size == c_layouts["xfrm_lifetime_cur"]["size"]


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_message_bytes_equal_c(name: str, c_layouts: dict[str, dict[str, Any]]) -> None:
    cls, values = MESSAGES[name]
    expected = bytes.fromhex(c_layouts[name]["hex"])
    msg = cls()
    for key, value in values.items():
        msg[key] = value
    msg["header"]["type"] = 0x10
    msg.encode()
    body = bytes(msg.data[16:])
    assert body[: len(expected)] == expected
    assert len(body) == (len(expected) + 3) & ~3

    decoded = cls(bytes(msg.data))
    decoded.decode()
    for key, value in values.items():
        assert decoded[key] == pad16(value), key


@pytest.mark.parametrize("name", sorted(STRUCTS))
def test_struct_bytes_equal_c(name: str, c_layouts: dict[str, dict[str, Any]]) -> None:
    cls, values = STRUCTS[name]
    expected = bytes.fromhex(c_layouts[name]["hex"])
    assert cls.pack(values) == expected
    decoded, end = cls.decode_from(expected, 0)
    assert end == len(expected)
    assert decoded == pad16(values)


@pytest.mark.parametrize(
    ("name", "family", "direction"),
    [
        ("bypass_v4_in", socket.AF_INET, xm.Direction.IN),
        ("bypass_v6_out", socket.AF_INET6, xm.Direction.OUT),
    ],
)
def test_socket_bypass_policy_bytes_equal_c(
    name: str, family: int, direction: xm.Direction, c_layouts: dict[str, dict[str, Any]]
) -> None:
    assert udp.bypass_policy(family, direction) == bytes.fromhex(c_layouts[name]["hex"])


def test_algorithm_attributes_round_trip() -> None:
    msg = xm.xfrm_usersa_info()
    msg["family"] = socket.AF_INET
    msg["attrs"] = [
        ("XFRMA_ALG_CRYPT", {"name": "cbc(aes)", "key": b"\x01" * 16}),
        ("XFRMA_ALG_AUTH_TRUNC", {"name": "hmac(sha256)", "key": b"\x02" * 32, "trunc_bits": 128}),
        ("XFRMA_ALG_AEAD", {"name": "rfc4106(gcm(aes))", "key": b"\x03" * 20, "icv_bits": 128}),
        ("XFRMA_ENCAP", {"encap_type": 2, "encap_sport": 4500, "encap_dport": 4500}),
        ("XFRMA_TMPL", [TMPL, TMPL]),
        ("XFRMA_REPLAY_ESN_VAL", {"bmp_len": 2, "replay_window": 64}),
        ("XFRMA_SA_EXTRA_FLAGS", 1),
    ]
    msg["header"]["type"] = xm.MsgType.NEWSA
    msg.encode()
    raw = bytes(msg.data)
    # the cipher attribute right after the 224-byte body: len, type, name[64], key_len, key
    alen, atype = struct.unpack_from("=HH", raw, 16 + 224)
    assert (alen, atype) == (4 + 64 + 4 + 16, xm.Attr.ALG_CRYPT)
    assert raw[16 + 224 + 4 : 16 + 224 + 12] == b"cbc(aes)"
    assert struct.unpack_from("=I", raw, 16 + 224 + 68)[0] == 128

    decoded = xm.xfrm_usersa_info(raw)
    decoded.decode()
    attrs = {name: value for name, value in decoded["attrs"]}
    assert attrs["XFRMA_ALG_CRYPT"] == {"name": "cbc(aes)", "key_bits": 128, "key": b"\x01" * 16}
    assert attrs["XFRMA_ALG_AUTH_TRUNC"]["trunc_bits"] == 128
    assert attrs["XFRMA_ALG_AUTH_TRUNC"]["key"] == b"\x02" * 32
    assert attrs["XFRMA_ALG_AEAD"]["icv_bits"] == 128
    assert attrs["XFRMA_ENCAP"]["encap_dport"] == 4500
    assert attrs["XFRMA_TMPL"] == [pad16(TMPL), pad16(TMPL)]
    assert attrs["XFRMA_REPLAY_ESN_VAL"]["bmp_len"] == 2
    assert attrs["XFRMA_SA_EXTRA_FLAGS"] == 1
    # ESN replay attribute: 24-byte head plus bmp_len words
    esn_len = 24 + 2 * 4
    assert esn_len + 4 in {
        struct.unpack_from("=H", raw, off)[0]
        for off in range(16 + 224, len(raw) - 4, 4)
        if struct.unpack_from("=H", raw, off + 2)[0] == xm.Attr.REPLAY_ESN_VAL
    }


def test_template_array_refuses_too_many() -> None:
    msg = xm.xfrm_userpolicy_info()
    msg["attrs"] = [("XFRMA_TMPL", [TMPL] * 7)]
    with pytest.raises(ValueError, match="too many templates"):
        msg.encode()


# --------------------------------------------------------------------------
# dataclass validation

A1 = ipaddress.ip_address("192.0.2.1")
A2 = ipaddress.ip_address("192.0.2.2")
AES = specs.Encryption("cbc(aes)", b"k" * 16)
SHA256 = specs.Integrity("hmac(sha256)", b"a" * 32, 128)
GCM = specs.Aead("rfc4106(gcm(aes))", b"g" * 20, 128)


def sa(**kw: Any) -> specs.SaSpec:
    base: dict[str, Any] = {
        "src": A1,
        "dst": A2,
        "proto": IpProtocol.ESP,
        "spi": 0x1000,
        "mode": xm.XfrmMode.TUNNEL,
        "reqid": 1,
        "encryption": AES,
        "integrity": SHA256,
    }
    base.update(kw)
    return specs.SaSpec(**base)


def test_valid_specs_construct() -> None:
    sa()
    sa(encryption=None, integrity=None, aead=GCM)
    sa(proto=IpProtocol.AH, encryption=None)
    sa(encap=specs.Encap(4500, 4500))
    sa(
        encryption=specs.Encryption("cbc(aes)", b"k" * 32),
        integrity=specs.Integrity("hmac(sha1)", b"s" * 20, 96),
    )


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"encryption": specs.Encryption("cbc(aes)", b"k" * 15)}, "wrong key length"),
        ({"encryption": specs.Encryption("cbc(des3_ede)", b"k" * 16)}, "wrong key length"),
        ({"encryption": specs.Encryption("ecb(aes)", b"k" * 16)}, "unsupported cipher"),
        ({"integrity": specs.Integrity("hmac(sha256)", b"a" * 32, 96)}, "wrong key or ICV"),
        ({"integrity": specs.Integrity("hmac(sha1)", b"a" * 32, 96)}, "wrong key or ICV"),
        (
            {"encryption": None, "integrity": None, "aead": specs.Aead(GCM.name, b"g" * 16, 128)},
            "wrong key or ICV length for rfc4106",
        ),
        (
            {"encryption": None, "integrity": None, "aead": specs.Aead(GCM.name, b"g" * 20, 32)},
            "wrong key or ICV length for rfc4106",
        ),
        ({"aead": GCM}, "excludes"),
        ({"encryption": None}, "ESP needs"),
        ({"integrity": None}, "needs an integrity algorithm"),
        ({"proto": IpProtocol.AH}, "AH takes only"),
        ({"proto": IpProtocol.UDP}, "ESP or AH"),
        ({"spi": 0xFF}, "SPI"),
        ({"spi": 1 << 32}, "SPI"),
        ({"dst": ipaddress.ip_address("2001:db8::2")}, "families differ"),
        ({"mode": xm.XfrmMode.TRANSPORT}, "transport mode needs a selector"),
        ({"replay_window": -1}, "replay"),
    ],
)
def test_invalid_sa_specs_rejected(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sa(**kw)


def test_keys_never_in_repr() -> None:
    text = repr(sa()) + repr(sa(encryption=None, integrity=None, aead=GCM))
    for secret in (b"k" * 16, b"a" * 32, b"g" * 20):
        assert repr(secret) not in text
        assert secret.hex() not in text


def test_policy_validation() -> None:
    sel = specs.SelectorSpec(
        ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("203.0.113.0/24")
    )
    with pytest.raises(ValueError, match="both endpoints"):
        specs.PolicySpec(sel, xm.Direction.OUT, templates=(specs.Template(reqid=1),))
    with pytest.raises(ValueError, match="block"):
        specs.PolicySpec(
            sel,
            xm.Direction.OUT,
            action=xm.PolicyAction.BLOCK,
            templates=(specs.Template(src=A1, dst=A2),),
        )
    with pytest.raises(ValueError, match="families differ"):
        specs.SelectorSpec(
            ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_network("2001:db8::/64")
        )
    specs.PolicySpec(sel, xm.Direction.OUT, templates=(specs.Template(mode=xm.XfrmMode.TRANSPORT),))


# --------------------------------------------------------------------------
# decoding of kernel answers and events (bytes built with the same classes)


def test_error_message_with_extended_ack() -> None:
    text = b"Requested type not found\0"
    tlv = struct.pack("=HH", 4 + len(text), 1) + text
    tlv += bytes((-len(tlv)) % 4)
    echoed = struct.pack("=IHHII", 240, 0x10, 5, 9, 0)
    body = struct.pack("=i", -errno.EPROTONOSUPPORT) + echoed + tlv
    flags = 0x100 | 0x200  # capped, ack TLVs
    msg = struct.pack("=IHHII", 16 + len(body), 2, flags, 9, 0) + body
    code, detail = x.error_of(msg, flags)
    assert code == errno.EPROTONOSUPPORT
    assert detail == "Requested type not found"
    err = specs.XfrmError(code, "add_sa", detail)
    assert err.errno == errno.EPROTONOSUPPORT
    assert "add_sa" in str(err) and "EPROTONOSUPPORT" in str(err)
    assert "Requested type not found" in str(err)


def test_truncated_netlink_message_is_an_error() -> None:
    data = struct.pack("=IHHII", 64, 0x10, 0, 1, 0) + bytes(8)
    with pytest.raises(specs.XfrmError) as info:
        list(x.split_messages(data))
    assert info.value.errno == errno.EBADMSG


def test_acquire_event_decodes() -> None:
    values = dict(MESSAGES["xfrm_user_acquire"][1])
    msg = xm.xfrm_user_acquire()
    for key, value in values.items():
        msg[key] = value
    tmpl = dict(TMPL)
    tmpl.update(
        id={"daddr": ip4("192.0.2.2"), "spi": 0, "proto": 50},
        saddr=ip4("192.0.2.1"),
        family=socket.AF_INET,
        reqid=42,
    )
    msg["attrs"] = [("XFRMA_TMPL", [tmpl])]
    msg["header"]["type"] = xm.MsgType.ACQUIRE
    msg.encode()
    decoded = x.decode_netlink(xm.xfrm_user_acquire, bytes(msg.data), "test")
    event = events.acquire_event(decoded)
    assert event is not None
    assert event.selector == specs.SelectorSpec(
        ipaddress.ip_network("198.51.100.0/25"),
        ipaddress.ip_network("203.0.113.0/24"),
        proto=6,
        sport=1024,
        dport=443,
    )
    assert (event.src, event.dst, event.proto) == (A1, A2, 50)
    assert event.seq == 0x55667788
    assert event.policy_index == 46 and event.policy_direction == xm.Direction.FWD
    assert event.templates[0].reqid == 42
    assert event.templates[0].dst == A2


def test_expire_event_decodes() -> None:
    msg = xm.xfrm_user_expire()
    msg["state"] = SA
    msg["hard"] = 1
    msg["header"]["type"] = xm.MsgType.EXPIRE
    msg.encode()
    event = events.expire_event(x.decode_netlink(xm.xfrm_user_expire, bytes(msg.data), "test"))
    assert event == specs.Expire(
        src=A1, dst=A2, proto=50, spi=0xC0FFEE01, reqid=32, hard=True, bytes=11, packets=12
    )


def test_sa_record_drops_keys() -> None:
    msg = xm.xfrm_usersa_info()
    for key, value in SA.items():
        msg[key] = value
    msg["attrs"] = [
        ("XFRMA_ALG_CRYPT", {"name": "cbc(aes)", "key": b"\x01" * 16}),
        ("XFRMA_ALG_AUTH_TRUNC", {"name": "hmac(sha256)", "key": b"\x02" * 32, "trunc_bits": 128}),
    ]
    msg["header"]["type"] = xm.MsgType.NEWSA
    msg.encode()
    record = x.sa_record(x.decode_netlink(xm.xfrm_usersa_info, bytes(msg.data), "test"))
    assert (record.encryption, record.integrity, record.aead) == ("cbc(aes)", "hmac(sha256)", None)
    assert (record.bytes, record.packets, record.spi, record.reqid) == (11, 12, 0xC0FFEE01, 32)
    assert not record.larval
    assert "\\x01" * 4 not in repr(record) and "\\x02" * 4 not in repr(record)


def test_sa_counters_read_the_fixed_part_only() -> None:
    """What `ike cmd=list verbose` reads of each SA: the same SPI and counters as the full
    record, and a message too short for its fixed part is an error."""
    msg = xm.xfrm_usersa_info()
    for key, value in SA.items():
        msg[key] = value
    msg["attrs"] = [("XFRMA_ALG_CRYPT", {"name": "cbc(aes)", "key": b"\x01" * 16})]
    msg["header"]["type"] = xm.MsgType.NEWSA
    msg.encode()
    raw = bytes(msg.data)
    record = x.sa_record(x.decode_netlink(xm.xfrm_usersa_info, raw, "test"))
    assert x.sa_counters(raw) == (record.spi, record.bytes, record.packets) == (0xC0FFEE01, 11, 12)
    with pytest.raises(specs.XfrmError, match="short SA message"):
        x.sa_counters(raw[: 16 + xm.UsersaInfo.size - 1])


def test_malformed_attribute_is_an_error() -> None:
    msg = xm.xfrm_usersa_info()
    for key, value in SA.items():
        msg[key] = value
    msg["header"]["type"] = xm.MsgType.NEWSA
    msg.encode()
    # append a truncated XFRMA_ALG_CRYPT (8 bytes: too short for name + key length)
    bad = bytearray(msg.data) + struct.pack("=HH", 8, xm.Attr.ALG_CRYPT) + b"cbc("
    struct.pack_into("=I", bad, 0, len(bad))
    decoded = x.decode_netlink(xm.xfrm_usersa_info, bytes(bad), "test")
    with pytest.raises(ValueError, match="malformed attribute"):
        x.sa_record(decoded)
