"""The XFRM requests the parent sends, packed whole by precompiled struct.Struct packers.

pyroute2's classes (xfrm_messages.py) encode a message one field at a time through dicts
and nested encoders: about 30 encoder calls and 1,000 Python-level operations per SA or
policy, the larger part of the parent's CPU per phase 2 install. The few requests the
parent sends (ALLOCSPI, NEWSA/UPDSA, DELSA, NEWPOLICY/UPDPOLICY, DELPOLICY, and the
GETSA/GETPOLICY requests of its dumps) are packed here instead, each fixed part by one
`pack_into` into one bytearray, which the client sends and then zeroes (it holds keys).

The layouts are those of the pyroute2 classes, which stay the reference (and decode
every answer, dump and event): tests/test_xfrm_pack.py asserts, for many varied specs,
that every message packed here equals pyroute2's encoding of the same message byte for
byte. Fields that are big-endian in the kernel (ports, SPIs) are packed as native
integers after htons/htonl, so that one format string can hold a whole structure.

Each function returns the whole netlink message with its header's length, type and flags
set; the client writes the sequence number (`set_sequence`) when it sends.
"""

from __future__ import annotations

import struct
from socket import htonl, htons
from typing import Final

from ikepriv.isakmp.constants import IpProtocol
from ikepriv.parent_kernel.kernel.specs import (
    AF_FOR_VERSION,
    ALL_ALGOS,
    REPLAY_BITMAP_MAX,
    IPAddress,
    Lifetime,
    PolicySpec,
    SaSpec,
    SelectorSpec,
    Template,
)
from ikepriv.parent_kernel.kernel.xfrm_messages import (
    ALGO_NAME_LEN,
    XFRM_INF,
    XFRM_MAX_DEPTH,
    XFRM_STATE_AF_UNSPEC,
    XFRM_STATE_ALIGN4,
    Attr,
    Direction,
    MsgType,
    XfrmMode,
)

# struct fragments ("=": standard sizes, no implicit alignment; padding written out as in
# the pyroute2 layouts)
_HDR: Final = "IHHII"  # nlmsghdr: length, type, flags, seq, pid
_SEL: Final = "16s16sHHHHHBBB3xiI"  # xfrm_selector (56)
_ID: Final = "16sIB3x"  # xfrm_id (24)
_LFT: Final = "8Q"  # xfrm_lifetime_cfg (64)
_CUR: Final = "4Q"  # xfrm_lifetime_cur (32)
_SA_TAIL: Final = "3I" + "II" + "HBBB7x"  # stats; seq, reqid; family, mode, replay, flags

SA_INFO: Final = struct.Struct("=" + _HDR + _SEL + _ID + "16s" + _LFT + _CUR + _SA_TAIL)
SPI_INFO: Final = struct.Struct("=" + _HDR + _SEL + _ID + "16s" + _LFT + _CUR + _SA_TAIL + "II")
SA_ID: Final = struct.Struct("=" + _HDR + "16sIHBx")
POLICY_INFO: Final = struct.Struct("=" + _HDR + _SEL + _LFT + _CUR + "IIBBBB4x")
POLICY_ID: Final = struct.Struct("=" + _HDR + _SEL + "IB3x")
_NLA: Final = struct.Struct("=HH")
_ALGO: Final = struct.Struct("=HH64sI")  # xfrm_algo: name, key bits; the key follows
_ALGO_EXTRA: Final = struct.Struct("=HH64sII")  # xfrm_algo_auth / _aead: + trunc/icv bits
_ENCAP: Final = struct.Struct("=HHHHH2x16s")  # xfrm_encap_tmpl
_REPLAY_ESN: Final = struct.Struct("=HH6I")  # xfrm_replay_state_esn; the bitmap follows
_TMPL: Final = struct.Struct("=" + _ID + "H2x16sIBBBxIII")  # xfrm_user_tmpl (64)
_SEQ: Final = struct.Struct("=I")
_SEQ_AT: Final = 8

NLM_F_REQUEST: Final = 0x1
NLM_F_ACK: Final = 0x4
NLM_F_DUMP: Final = 0x300
WRITE: Final = NLM_F_REQUEST | NLM_F_ACK

Selector = tuple[bytes, bytes, int, int, int, int, int, int, int, int, int, int]
_NO_SELECTOR: Final[Selector] = (b"", b"", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
_NO_LIMITS: Final = (XFRM_INF, XFRM_INF, XFRM_INF, XFRM_INF, 0, 0, 0, 0)
_NO_CUR_STATS: Final = (0, 0, 0, 0, 0, 0, 0)  # xfrm_lifetime_cur and xfrm_stats: zero
_NO_CUR: Final = (0, 0, 0, 0)
_ANY_PORT, _ONE_PORT = 0, htons(0xFFFF)


def set_sequence(data: bytearray, seq: int) -> None:
    """Write the netlink sequence number into a message packed here."""
    _SEQ.pack_into(data, _SEQ_AT, seq)


def selector_values(sel: SelectorSpec | None) -> Selector:
    """xfrm_selector's fields in _SEL's order (a missing selector: all zero)."""
    if sel is None:
        return _NO_SELECTOR
    src, dst = sel.src, sel.dst
    return (dst.network_address.packed, src.network_address.packed,
            htons(sel.dport), _ONE_PORT if sel.dport else _ANY_PORT,
            htons(sel.sport), _ONE_PORT if sel.sport else _ANY_PORT,
            AF_FOR_VERSION[src.version], dst.prefixlen, src.prefixlen, sel.proto,
            0, 0)  # fmt: skip


def lifetime_values(lt: Lifetime) -> tuple[int, ...]:
    """xfrm_lifetime_cfg: no limit is XFRM_INF for bytes and packets, 0 for seconds."""
    return (XFRM_INF if lt.soft_bytes is None else lt.soft_bytes,
            XFRM_INF if lt.hard_bytes is None else lt.hard_bytes,
            XFRM_INF if lt.soft_packets is None else lt.soft_packets,
            XFRM_INF if lt.hard_packets is None else lt.hard_packets,
            0 if lt.soft_seconds is None else lt.soft_seconds,  # 0: no time limit
            0 if lt.hard_seconds is None else lt.hard_seconds, 0, 0)  # fmt: skip


def sa_flags(spec: SaSpec) -> int:
    """xfrm_usersa_info.flags for `spec`, as strongSwan and libreswan set them.

    * AH over IPv4: XFRM_STATE_ALIGN4. RFC 4302 (3.3.3.2.1) pads the AH header to a multiple
      of 32 bits for IPv4 and 64 bits for IPv6; without the flag Linux pads to 64 bits for
      both, so an ICV of 16, 24 or 32 bytes (HMAC-SHA-256/384/512) gets 4 bytes the peer does
      not expect and every packet fails its check. IPv6 keeps the kernel's 64 bits.
    * tunnel mode whose selector family differs from the gateways' (6-in-4, 4-in-6):
      XFRM_STATE_AF_UNSPEC, as strongSwan sets on its tunnel-mode SAs. The kernel takes the
      inner family from our selector (which we always send); the flag keeps it from
      overwriting an unset selector family with the outer one.
    """
    flags = 0
    if spec.proto == IpProtocol.AH and spec.dst.version == 4:
        flags |= XFRM_STATE_ALIGN4
    if (
        spec.mode == XfrmMode.TUNNEL
        and spec.selector is not None
        and spec.selector.src.version != spec.dst.version
    ):
        flags |= XFRM_STATE_AF_UNSPEC
    return flags


def _algo(attr: Attr, name: str, key: bytes, extra: int | None = None) -> bytes:
    """xfrm_algo (extra None), or xfrm_algo_auth / xfrm_algo_aead with their ICV bits;
    the attribute's length leaves out its padding."""
    raw_name = name.encode("ascii")
    if len(raw_name) >= ALGO_NAME_LEN:
        raise ValueError("algorithm name too long")
    if extra is None:
        head = _ALGO.pack(_ALGO.size + len(key), attr, raw_name, len(key) * 8)
    else:
        head = _ALGO_EXTRA.pack(_ALGO_EXTRA.size + len(key), attr, raw_name, len(key) * 8, extra)
    return head + key + bytes(-len(key) % 4)


def sa_message(spec: SaSpec, msg_type: MsgType) -> bytearray:
    """NEWSA / UPDSA: xfrm_usersa_info and its attributes (algorithms with their keys,
    UDP encapsulation, the replay state of windows above 32 packets)."""
    attrs: list[bytes] = []
    if spec.encryption is not None:
        attrs.append(_algo(Attr.ALG_CRYPT, spec.encryption.name, spec.encryption.key))
    if spec.integrity is not None:
        i = spec.integrity
        attrs.append(_algo(Attr.ALG_AUTH_TRUNC, i.name, i.key, i.trunc_bits))
    if spec.aead is not None:
        attrs.append(_algo(Attr.ALG_AEAD, spec.aead.name, spec.aead.key, spec.aead.icv_bits))
    if spec.encap is not None:
        e = spec.encap
        oa = b"" if e.original_address is None else e.original_address.packed
        attrs.append(_ENCAP.pack(_ENCAP.size, Attr.ENCAP, e.type, htons(e.sport),
                                 htons(e.dport), oa))  # fmt: skip
    window = spec.replay_window
    if window > REPLAY_BITMAP_MAX:
        # windows above 32 packets need the ESN-style replay state (without ESN itself)
        words = (window + 31) // 32
        size = _REPLAY_ESN.size + 4 * words
        attrs.append(_REPLAY_ESN.pack(size, Attr.REPLAY_ESN_VAL, words, 0, 0, 0, 0, window)
                     + bytes(4 * words))  # fmt: skip
        window = 0
    tail = b"".join(attrs)
    data = bytearray(SA_INFO.size + len(tail))
    SA_INFO.pack_into(data, 0, len(data), msg_type, WRITE, 0, 0,
                      *selector_values(spec.selector),
                      spec.dst.packed, htonl(spec.spi), spec.proto, spec.src.packed,
                      *lifetime_values(spec.lifetime), *_NO_CUR_STATS,
                      0, spec.reqid, AF_FOR_VERSION[spec.dst.version], spec.mode, window,
                      sa_flags(spec))  # fmt: skip
    data[SA_INFO.size :] = tail
    return data


def spi_message(
    src: IPAddress, dst: IPAddress, proto: IpProtocol, reqid: int, mode: XfrmMode,
    spi_min: int, spi_max: int, acquire_seq: int,
) -> bytearray:  # fmt: skip
    """ALLOCSPI: a larval SA's identity and the SPI range (answered with the SA)."""
    data = bytearray(SPI_INFO.size)
    SPI_INFO.pack_into(data, 0, SPI_INFO.size, MsgType.ALLOCSPI, NLM_F_REQUEST, 0, 0,
                       *_NO_SELECTOR, dst.packed, 0, proto, src.packed, *_NO_LIMITS,
                       *_NO_CUR_STATS, acquire_seq, reqid, AF_FOR_VERSION[dst.version], mode,
                       0, 0, spi_min, spi_max)  # fmt: skip
    return data


def sa_id_message(
    dst: IPAddress | None, spi: int, proto: int, msg_type: MsgType, flags: int = WRITE
) -> bytearray:
    """DELSA / GETSA (a dump: no identity, all zero)."""
    data = bytearray(SA_ID.size)
    if dst is None:
        SA_ID.pack_into(data, 0, SA_ID.size, msg_type, flags, 0, 0, b"", 0, 0, 0)
    else:
        SA_ID.pack_into(data, 0, SA_ID.size, msg_type, flags, 0, 0, dst.packed, htonl(spi),
                        AF_FOR_VERSION[dst.version], proto)  # fmt: skip
    return data


def _template(tmpl: Template, family: int) -> bytes:
    dst, src = tmpl.dst, tmpl.src
    return _TMPL.pack(b"" if dst is None else dst.packed, htonl(tmpl.spi), tmpl.proto,
                      family if dst is None else AF_FOR_VERSION[dst.version],
                      b"" if src is None else src.packed, tmpl.reqid, tmpl.mode, 0,
                      tmpl.optional, ALL_ALGOS, ALL_ALGOS, ALL_ALGOS)  # fmt: skip


def policy_message(spec: PolicySpec, msg_type: MsgType) -> bytearray:
    """NEWPOLICY / UPDPOLICY: xfrm_userpolicy_info and its templates (XFRMA_TMPL)."""
    templates = spec.templates
    if len(templates) > XFRM_MAX_DEPTH:
        raise ValueError("too many templates")
    tail = b""
    if templates:
        family = AF_FOR_VERSION[spec.selector.src.version]
        body = b"".join([_template(t, family) for t in templates])
        tail = _NLA.pack(_NLA.size + len(body), Attr.TMPL) + body
    data = bytearray(POLICY_INFO.size + len(tail))
    POLICY_INFO.pack_into(data, 0, len(data), msg_type, WRITE, 0, 0,
                          *selector_values(spec.selector), *_NO_LIMITS, *_NO_CUR,
                          spec.priority, 0, spec.direction, spec.action, 0, 0)  # fmt: skip
    data[POLICY_INFO.size :] = tail
    return data


def policy_id_message(
    selector: SelectorSpec | None, direction: Direction, msg_type: MsgType, flags: int = WRITE
) -> bytearray:
    """DELPOLICY / GETPOLICY (a dump: no selector, all zero)."""
    data = bytearray(POLICY_ID.size)
    POLICY_ID.pack_into(data, 0, POLICY_ID.size, msg_type, flags, 0, 0,
                        *selector_values(selector), 0, direction)  # fmt: skip
    return data
