"""XFRM netlink message layouts (linux/xfrm.h) as pyroute2 nlmsg and nla classes.

pyroute2 0.9 ships no XFRM classes, so the kernel structures are written out here.
pyroute2 packs one field at a time, so C padding is never implicit: every hole the
compiler leaves (after `__u8 proto` in `xfrm_id`, before `ifindex` in the selector,
the tail of `xfrm_usersa_info` that 64-bit alignment adds) is an explicit `x` field.
The layouts are those of x86_64 and aarch64 (8-byte aligned __u64); the sizes are
asserted against a C compiler's `sizeof` in tests/test_xfrm_messages.py.

Addresses stay raw 16-byte `xfrm_address_t` values here; which family they belong to is
known only to the caller (xfrm.py), which converts them.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any, ClassVar

from pyroute2.netlink import NETLINK_XFRM, nla, nlmsg

__all__ = [
    "NETLINK_XFRM",
    "XFRM_INF",
    "CStruct",
    "Direction",
    "EncapTmpl",
    "LifetimeCfg",
    "LifetimeCur",
    "MsgType",
    "NlGroup",
    "PolicyAction",
    "UserTmpl",
    "UserpolicyInfo",
    "UsersaInfo",
    "XfrmId",
    "XfrmMode",
    "XfrmSelector",
    "XfrmStats",
    "xfrm_user_acquire",
    "xfrm_user_expire",
    "xfrm_user_polexpire",
    "xfrm_userpolicy_id",
    "xfrm_userpolicy_info",
    "xfrm_usersa_flush",
    "xfrm_usersa_id",
    "xfrm_usersa_info",
    "xfrm_userspi_info",
]

XFRM_INF = (1 << 64) - 1  # "no limit" in xfrm_lifetime_cfg
UDP_ENCAP_ESPINUDP = 2  # linux/udp.h: RFC 3948 UDP encapsulation (non-ESP marker on IKE)
ADDRESS_LEN = 16  # xfrm_address_t
ALGO_NAME_LEN = 64  # xfrm_algo.alg_name
XFRM_MAX_DEPTH = 6  # templates per policy (include/net/xfrm.h)


class MsgType(IntEnum):
    """Netlink message types of NETLINK_XFRM (enum in linux/xfrm.h)."""

    NEWSA = 0x10
    DELSA = 0x11
    GETSA = 0x12
    NEWPOLICY = 0x13
    DELPOLICY = 0x14
    GETPOLICY = 0x15
    ALLOCSPI = 0x16
    ACQUIRE = 0x17
    EXPIRE = 0x18
    UPDPOLICY = 0x19
    UPDSA = 0x1A
    POLEXPIRE = 0x1B
    FLUSHSA = 0x1C
    FLUSHPOLICY = 0x1D


class NlGroup(IntEnum):
    """Multicast groups (enum xfrm_nlgroups); numbers for NETLINK_ADD_MEMBERSHIP."""

    ACQUIRE = 1
    EXPIRE = 2
    SA = 3
    POLICY = 4


class XfrmMode(IntEnum):
    """XFRM_MODE_*: the kernel's numbering, not the IPsec DOI's EncapsulationMode."""

    TRANSPORT = 0
    TUNNEL = 1


class Direction(IntEnum):
    """XFRM_POLICY_IN/OUT/FWD."""

    IN = 0
    OUT = 1
    FWD = 2


class PolicyAction(IntEnum):
    """XFRM_POLICY_ALLOW/BLOCK."""

    ALLOW = 0
    BLOCK = 1


class Attr(IntEnum):
    """XFRMA_* attribute types (enum xfrm_attr_type_t)."""

    ALG_AUTH = 1
    ALG_CRYPT = 2
    ALG_COMP = 3
    ENCAP = 4
    TMPL = 5
    SA = 6
    POLICY = 7
    SEC_CTX = 8
    LTIME_VAL = 9
    REPLAY_VAL = 10
    REPLAY_THRESH = 11
    ETIMER_THRESH = 12
    SRCADDR = 13
    COADDR = 14
    LASTUSED = 15
    POLICY_TYPE = 16
    MIGRATE = 17
    ALG_AEAD = 18
    KMADDRESS = 19
    ALG_AUTH_TRUNC = 20
    MARK = 21
    TFCPAD = 22
    REPLAY_ESN_VAL = 23
    SA_EXTRA_FLAGS = 24
    PROTO = 25
    ADDRESS_FILTER = 26
    PAD = 27
    OFFLOAD_DEV = 28
    SET_MARK = 29
    SET_MARK_MASK = 30
    IF_ID = 31


XFRM_STATE_AF_UNSPEC = 32  # xfrm_usersa_info.flags: keep an unset selector family unset
XFRM_STATE_ALIGN4 = 64  # AH: pad the ICV to 32 bits (RFC 4302 for IPv4), not 64
XFRM_STATE_ESN = 128
XFRMA_REPLAY_ESN_MAX = 4096  # bytes of bitmap the kernel accepts


# --------------------------------------------------------------------------
# Nested C structures as pyroute2 field types.
#
# pyroute2 accepts, in `fields`, a class with decode_from(data, offset) ->
# (value, offset) and encode_into(data, offset, value) -> offset (see
# pyroute2.plan9).  CStruct builds such classes from a layout: a tuple of
# (name, format) where format is a struct code or another CStruct; names that
# start with "_" are padding and never appear in the decoded dict.

Layout = tuple[tuple[str, "str | type[CStruct]"], ...]


def _fmt_size(fmt: str) -> int:
    return struct.calcsize("=" + fmt.lstrip("<>=!"))


def _pack_fmt(fmt: str) -> str:
    """Standard sizes, no implicit alignment; '>' (network order) kept where asked."""
    return fmt if fmt[0] in "<>=!" else "=" + fmt


def _zero(fmt: str | type[CStruct]) -> Any:
    if not isinstance(fmt, str):
        return {}
    if fmt.endswith("s"):
        return b""
    return 0


def layout_size(layout: Layout) -> int:
    total = 0
    for _, fmt in layout:
        total += _fmt_size(fmt) if isinstance(fmt, str) else fmt.size
    return total


def layout_defaults(layout: Layout) -> dict[str, Any]:
    """Zero values for every field, so pyroute2's encoder never packs a bare 0 into '16s'."""
    return {name: _zero(fmt) for name, fmt in layout if not name.startswith("_")}


class CStruct:
    """A fixed-size C struct, usable as a pyroute2 field type (subclass per layout)."""

    layout: ClassVar[Layout] = ()
    size: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.size = layout_size(cls.layout)

    @classmethod
    def decode_from(cls, data: bytes | bytearray, offset: int) -> tuple[dict[str, Any], int]:
        if offset + cls.size > len(data):
            raise struct.error(f"{cls.__name__}: need {cls.size} bytes at {offset}")
        out: dict[str, Any] = {}
        for name, fmt in cls.layout:
            if isinstance(fmt, str):
                size = _fmt_size(fmt)
                if not name.startswith("_"):
                    (out[name],) = struct.unpack_from(_pack_fmt(fmt), data, offset)
                offset += size
            else:
                out[name], offset = fmt.decode_from(data, offset)
        return out, offset

    @classmethod
    def encode_into(cls, data: bytearray, offset: int, value: Any) -> int:
        if not isinstance(value, dict):
            value = {}
        unknown = set(value) - {n for n, _ in cls.layout}
        if unknown:
            raise KeyError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        data.extend(bytes(cls.size))
        for name, fmt in cls.layout:
            if isinstance(fmt, str):
                if not name.startswith("_"):
                    v = value.get(name, _zero(fmt))
                    struct.pack_into(_pack_fmt(fmt), data, offset, v)
                offset += _fmt_size(fmt)
            else:
                # nested: encode into a scratch buffer, then copy over the zeros
                scratch = bytearray()
                fmt.encode_into(scratch, 0, value.get(name, {}))
                data[offset : offset + fmt.size] = scratch
                offset += fmt.size
        return offset

    @classmethod
    def pack(cls, value: dict[str, Any]) -> bytes:
        buf = bytearray()
        cls.encode_into(buf, 0, value)
        return bytes(buf)


ADDR = "16s"


class XfrmSelector(CStruct):
    """struct xfrm_selector (56 bytes)."""

    layout: ClassVar[Layout] = (
        ("daddr", ADDR),
        ("saddr", ADDR),
        ("dport", ">H"),
        ("dport_mask", ">H"),
        ("sport", ">H"),
        ("sport_mask", ">H"),
        ("family", "H"),
        ("prefixlen_d", "B"),
        ("prefixlen_s", "B"),
        ("proto", "B"),
        ("_pad", "3x"),
        ("ifindex", "i"),
        ("user", "I"),
    )


class XfrmId(CStruct):
    """struct xfrm_id (24 bytes)."""

    layout: ClassVar[Layout] = (("daddr", ADDR), ("spi", ">I"), ("proto", "B"), ("_pad", "3x"))


class LifetimeCfg(CStruct):
    """struct xfrm_lifetime_cfg (64 bytes)."""

    layout: ClassVar[Layout] = (
        ("soft_byte_limit", "Q"),
        ("hard_byte_limit", "Q"),
        ("soft_packet_limit", "Q"),
        ("hard_packet_limit", "Q"),
        ("soft_add_expires_seconds", "Q"),
        ("hard_add_expires_seconds", "Q"),
        ("soft_use_expires_seconds", "Q"),
        ("hard_use_expires_seconds", "Q"),
    )


class LifetimeCur(CStruct):
    """struct xfrm_lifetime_cur (32 bytes): the SA's traffic counters."""

    layout: ClassVar[Layout] = (
        ("bytes", "Q"),
        ("packets", "Q"),
        ("add_time", "Q"),
        ("use_time", "Q"),
    )


class XfrmStats(CStruct):
    """struct xfrm_stats (12 bytes)."""

    layout: ClassVar[Layout] = (("replay_window", "I"), ("replay", "I"), ("integrity_failed", "I"))


USERSA_INFO_LAYOUT: Layout = (
    ("sel", XfrmSelector),
    ("id", XfrmId),
    ("saddr", ADDR),
    ("lft", LifetimeCfg),
    ("curlft", LifetimeCur),
    ("stats", XfrmStats),
    ("seq", "I"),
    ("reqid", "I"),
    ("family", "H"),
    ("mode", "B"),
    ("replay_window", "B"),
    ("flags", "B"),
    ("_pad", "7x"),
)


class UsersaInfo(CStruct):
    """struct xfrm_usersa_info (224 bytes on 64-bit)."""

    layout: ClassVar[Layout] = USERSA_INFO_LAYOUT


USERPOLICY_INFO_LAYOUT: Layout = (
    ("sel", XfrmSelector),
    ("lft", LifetimeCfg),
    ("curlft", LifetimeCur),
    ("priority", "I"),
    ("index", "I"),
    ("dir", "B"),
    ("action", "B"),
    ("flags", "B"),
    ("share", "B"),
    ("_pad", "4x"),  # tail padding: the struct holds __u64s, so sizeof rounds to 8
)


class UserpolicyInfo(CStruct):
    """struct xfrm_userpolicy_info (168 bytes on 64-bit)."""

    layout: ClassVar[Layout] = USERPOLICY_INFO_LAYOUT


class UserTmpl(CStruct):
    """struct xfrm_user_tmpl (64 bytes); XFRMA_TMPL carries an array of them."""

    layout: ClassVar[Layout] = (
        ("id", XfrmId),
        ("family", "H"),
        ("_pad0", "2x"),
        ("saddr", ADDR),
        ("reqid", "I"),
        ("mode", "B"),
        ("share", "B"),
        ("optional", "B"),
        ("_pad1", "x"),
        ("aalgos", "I"),
        ("ealgos", "I"),
        ("calgos", "I"),
    )


class EncapTmpl(CStruct):
    """struct xfrm_encap_tmpl (24 bytes)."""

    layout: ClassVar[Layout] = (
        ("encap_type", "H"),
        ("encap_sport", ">H"),
        ("encap_dport", ">H"),
        ("_pad", "2x"),
        ("encap_oa", ADDR),
    )


# --------------------------------------------------------------------------
# Attributes


class _fixed_nla(nla):  # type: ignore[misc]
    """An NLA whose payload is one CStruct; decodes to the struct's dict."""

    struct_type: ClassVar[type[CStruct]] = CStruct

    def setvalue(self, value: Any) -> None:
        self.value = value

    def ft_encode(self, offset: int) -> tuple[int, int]:
        offset = self.struct_type.encode_into(self.data, offset, self.value)
        return offset, 0

    def ft_decode(self, offset: int) -> None:
        end = self.offset + self.length
        if end - offset < self.struct_type.size:
            raise struct.error(f"{type(self).__name__}: short attribute")
        self.value, _ = self.struct_type.decode_from(self.data, offset)
        del self["attrs"]


class _algo_nla(nla):  # type: ignore[misc]
    """xfrm_algo / xfrm_algo_auth / xfrm_algo_aead: fixed head, then the key to the end.

    The value is a dict {name, key_bits, key, [extra_field]}.  Keys pass through here
    but no decoded record in xfrm.py keeps them.
    """

    extra_field: ClassVar[str | None] = None

    def setvalue(self, value: Any) -> None:
        self.value = value

    def _head(self) -> str:
        return "=64sI" + ("I" if self.extra_field else "")

    def ft_encode(self, offset: int) -> tuple[int, int]:
        v = self.value
        name = v["name"].encode("ascii")
        if len(name) >= ALGO_NAME_LEN:
            raise ValueError("algorithm name too long")
        key = bytes(v["key"])
        head = self._head()
        args = [name, v.get("key_bits", len(key) * 8)]
        if self.extra_field:
            args.append(v[self.extra_field])
        blob = struct.pack(head, *args) + key
        pad = (-len(blob)) % 4
        self.data.extend(blob + bytes(pad))
        return offset + len(blob) + pad, pad

    def ft_decode(self, offset: int) -> None:
        head = self._head()
        hsize = struct.calcsize(head)
        end = self.offset + self.length
        if end - offset < hsize:
            raise struct.error(f"{type(self).__name__}: short attribute")
        fields = struct.unpack_from(head, self.data, offset)
        value: dict[str, Any] = {
            "name": fields[0].split(b"\0", 1)[0].decode("ascii", "replace"),
            "key_bits": fields[1],
        }
        if self.extra_field:
            value[self.extra_field] = fields[2]
        value["key"] = bytes(self.data[offset + hsize : end])
        self.value = value
        del self["attrs"]


class _tmpl_array_nla(nla):  # type: ignore[misc]
    """XFRMA_TMPL: a bare array of xfrm_user_tmpl (not nested NLAs)."""

    max_templates: ClassVar[int] = XFRM_MAX_DEPTH

    def setvalue(self, value: Any) -> None:
        self.value = list(value)

    def ft_encode(self, offset: int) -> tuple[int, int]:
        if len(self.value) > self.max_templates:
            raise ValueError("too many templates")
        for tmpl in self.value:
            offset = UserTmpl.encode_into(self.data, offset, tmpl)
        return offset, 0

    def ft_decode(self, offset: int) -> None:
        end = self.offset + self.length
        out: list[dict[str, Any]] = []
        while offset + UserTmpl.size <= end and len(out) < self.max_templates:
            tmpl, offset = UserTmpl.decode_from(self.data, offset)
            out.append(tmpl)
        self.value = out
        del self["attrs"]


class _replay_esn_nla(nla):  # type: ignore[misc]
    """struct xfrm_replay_state_esn, followed by bmp_len 32-bit words."""

    head: ClassVar[str] = "=IIIIII"

    def setvalue(self, value: Any) -> None:
        self.value = value

    def ft_encode(self, offset: int) -> tuple[int, int]:
        v = self.value
        bmp = list(v.get("bmp", ()))
        bmp_len = v["bmp_len"]
        bmp = (bmp + [0] * bmp_len)[:bmp_len]
        blob = struct.pack(
            self.head,
            bmp_len,
            v.get("oseq", 0),
            v.get("seq", 0),
            v.get("oseq_hi", 0),
            v.get("seq_hi", 0),
            v["replay_window"],
        ) + struct.pack(f"={bmp_len}I", *bmp)
        self.data.extend(blob)
        return offset + len(blob), 0

    def ft_decode(self, offset: int) -> None:
        end = self.offset + self.length
        hsize = struct.calcsize(self.head)
        if end - offset < hsize:
            raise struct.error("replay_esn: short attribute")
        names = ("bmp_len", "oseq", "seq", "oseq_hi", "seq_hi", "replay_window")
        value = dict(zip(names, struct.unpack_from(self.head, self.data, offset), strict=True))
        self.value = value
        del self["attrs"]


class _xfrm_nlas:
    """Attribute classes, mixed into every XFRM message so nla_map can name them."""

    __slots__ = ()

    class xfrm_algo(_algo_nla):
        __slots__ = ()

    class xfrm_algo_auth(_algo_nla):
        __slots__ = ()
        extra_field: ClassVar[str | None] = "trunc_bits"

    class xfrm_algo_aead(_algo_nla):
        __slots__ = ()
        extra_field: ClassVar[str | None] = "icv_bits"

    class xfrm_encap_tmpl(_fixed_nla):
        __slots__ = ()
        struct_type: ClassVar[type[CStruct]] = EncapTmpl

    class xfrm_user_tmpls(_tmpl_array_nla):
        __slots__ = ()

    class xfrm_address(_fixed_nla):
        __slots__ = ()

        class _Addr(CStruct):
            layout: ClassVar[Layout] = (("addr", ADDR),)

        struct_type: ClassVar[type[CStruct]] = _Addr

    class xfrm_lifetime_cur(_fixed_nla):
        __slots__ = ()
        struct_type: ClassVar[type[CStruct]] = LifetimeCur

    class xfrm_replay_state(_fixed_nla):
        __slots__ = ()

        class _Replay(CStruct):
            layout: ClassVar[Layout] = (("oseq", "I"), ("seq", "I"), ("bitmap", "I"))

        struct_type: ClassVar[type[CStruct]] = _Replay

    class xfrm_replay_state_esn(_replay_esn_nla):
        __slots__ = ()

    class xfrm_mark(_fixed_nla):
        __slots__ = ()

        class _Mark(CStruct):
            layout: ClassVar[Layout] = (("v", "I"), ("m", "I"))

        struct_type: ClassVar[type[CStruct]] = _Mark

    class xfrm_userpolicy_type(_fixed_nla):
        __slots__ = ()

        class _PolType(CStruct):
            layout: ClassVar[Layout] = (
                ("type", "B"),
                ("_pad0", "x"),
                ("reserved1", "H"),
                ("reserved2", "B"),
                ("_pad1", "x"),
            )

        struct_type: ClassVar[type[CStruct]] = _PolType


XFRMA_NLA_MAP = (
    (0, "XFRMA_UNSPEC", "none"),
    (Attr.ALG_AUTH, "XFRMA_ALG_AUTH", "xfrm_algo"),
    (Attr.ALG_CRYPT, "XFRMA_ALG_CRYPT", "xfrm_algo"),
    (Attr.ALG_COMP, "XFRMA_ALG_COMP", "xfrm_algo"),
    (Attr.ENCAP, "XFRMA_ENCAP", "xfrm_encap_tmpl"),
    (Attr.TMPL, "XFRMA_TMPL", "xfrm_user_tmpls"),
    (Attr.LTIME_VAL, "XFRMA_LTIME_VAL", "xfrm_lifetime_cur"),
    (Attr.REPLAY_VAL, "XFRMA_REPLAY_VAL", "xfrm_replay_state"),
    (Attr.REPLAY_THRESH, "XFRMA_REPLAY_THRESH", "uint32"),
    (Attr.ETIMER_THRESH, "XFRMA_ETIMER_THRESH", "uint32"),
    (Attr.SRCADDR, "XFRMA_SRCADDR", "xfrm_address"),
    (Attr.COADDR, "XFRMA_COADDR", "xfrm_address"),
    (Attr.LASTUSED, "XFRMA_LASTUSED", "uint64"),
    (Attr.POLICY_TYPE, "XFRMA_POLICY_TYPE", "xfrm_userpolicy_type"),
    (Attr.ALG_AEAD, "XFRMA_ALG_AEAD", "xfrm_algo_aead"),
    (Attr.ALG_AUTH_TRUNC, "XFRMA_ALG_AUTH_TRUNC", "xfrm_algo_auth"),
    (Attr.MARK, "XFRMA_MARK", "xfrm_mark"),
    (Attr.TFCPAD, "XFRMA_TFCPAD", "uint32"),
    (Attr.REPLAY_ESN_VAL, "XFRMA_REPLAY_ESN_VAL", "xfrm_replay_state_esn"),
    (Attr.SA_EXTRA_FLAGS, "XFRMA_SA_EXTRA_FLAGS", "uint32"),
    (Attr.PROTO, "XFRMA_PROTO", "uint8"),
    (Attr.SET_MARK, "XFRMA_SET_MARK", "uint32"),
    (Attr.SET_MARK_MASK, "XFRMA_SET_MARK_MASK", "uint32"),
    (Attr.IF_ID, "XFRMA_IF_ID", "uint32"),
)


class _xfrm_msg(_xfrm_nlas, nlmsg):  # type: ignore[misc]
    """Base of every XFRM message: the shared XFRMA_* attribute map."""

    __slots__ = ()
    prefix = "XFRMA_"
    nla_map = tuple((int(k), n, c) for k, n, c in XFRMA_NLA_MAP)


class xfrm_usersa_info(_xfrm_msg):
    """NEWSA / UPDSA request; NEWSA answer to GETSA and ALLOCSPI."""

    __slots__ = ()
    fields = USERSA_INFO_LAYOUT
    defaults = layout_defaults(USERSA_INFO_LAYOUT)


class xfrm_usersa_id(_xfrm_msg):
    """DELSA / GETSA request: the SA's (daddr, spi, proto) identity."""

    __slots__ = ()
    fields = (("daddr", ADDR), ("spi", ">I"), ("family", "H"), ("proto", "B"), ("_pad", "x"))
    defaults = layout_defaults(fields)


class xfrm_userspi_info(_xfrm_msg):
    """ALLOCSPI request: a larval SA template and the SPI range."""

    __slots__ = ()
    fields = (("info", UsersaInfo), ("min", "I"), ("max", "I"))
    defaults = layout_defaults(fields)


class xfrm_userpolicy_info(_xfrm_msg):
    """NEWPOLICY / UPDPOLICY request; NEWPOLICY answer to GETPOLICY dumps."""

    __slots__ = ()
    fields = USERPOLICY_INFO_LAYOUT
    defaults = layout_defaults(USERPOLICY_INFO_LAYOUT)


class xfrm_userpolicy_id(_xfrm_msg):
    """DELPOLICY / GETPOLICY request: selector and direction (or index)."""

    __slots__ = ()
    fields = (("sel", XfrmSelector), ("index", "I"), ("dir", "B"), ("_pad", "3x"))
    defaults = layout_defaults(fields)


class xfrm_user_acquire(_xfrm_msg):
    """ACQUIRE event: traffic hit a policy whose template has no SA."""

    __slots__ = ()
    fields = (
        ("id", XfrmId),
        ("saddr", ADDR),
        ("sel", XfrmSelector),
        ("policy", UserpolicyInfo),
        ("aalgos", "I"),
        ("ealgos", "I"),
        ("calgos", "I"),
        ("seq", "I"),
    )
    defaults = layout_defaults(fields)


class xfrm_user_expire(_xfrm_msg):
    """EXPIRE event: an SA reached its soft or hard lifetime."""

    __slots__ = ()
    fields = (("state", UsersaInfo), ("hard", "B"), ("_pad", "7x"))
    defaults = layout_defaults(fields)


class xfrm_user_polexpire(_xfrm_msg):
    """POLEXPIRE event: a policy reached its lifetime."""

    __slots__ = ()
    fields = (("pol", UserpolicyInfo), ("hard", "B"), ("_pad", "7x"))
    defaults = layout_defaults(fields)


class xfrm_usersa_flush(_xfrm_msg):
    """FLUSHSA request (tests only: the daemon deletes what it recorded)."""

    __slots__ = ()
    fields = (("proto", "B"),)
    defaults = layout_defaults(fields)


class xfrm_flushpolicy(_xfrm_msg):
    """FLUSHPOLICY request: no body."""

    __slots__ = ()
    fields = ()


def body_size(msg_class: type[Any]) -> int:
    """Size of a message class's fixed body, i.e. the C struct's sizeof."""
    return layout_size(msg_class.fields)
