"""Strict rejects: each malformed message gives one IpcError with the reason a parent logs.

Malformed bytes come two ways: written out by hand (the wire format, byte by byte), and from
a "hostile sender" that changes a field behind the constructor's back and then uses the
normal writer, which does not re-validate, just as a compromised child could.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Any

import pytest

from ikepriv.ipc import messages as m
from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.schema import MAX_MESSAGE_SIZE, Direction, Message, decode, encode
from ikepriv.isakmp.constants import (
    AuthAlgorithm,
    AuthMethod,
    EncapsulationMode,
    EspTransformId,
    ExchangeType,
    GroupId,
    IdType,
    IkeEncryption,
    IkeHash,
    ProtocolId,
)

C2P = Direction.CHILD_TO_PARENT
V4 = ip_address("192.0.2.1")
V4_PEER = ip_address("198.51.100.7")
V6 = ip_address("2001:db8::1")


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def rejects(data: bytes, reason: Reason, direction: Direction = C2P) -> IpcError:
    with pytest.raises(IpcError) as info:
        decode(data, direction)
    assert info.value.reason is reason, str(info.value)
    return info.value


def refused(reason: Reason, build: Any, *args: Any, **kwargs: Any) -> IpcError:
    with pytest.raises(IpcError) as info:
        build(*args, **kwargs)
    assert info.value.reason is reason, str(info.value)
    return info.value


def tampered(msg: Message, path: str, value: object) -> bytes:
    """Encode `msg` with the field at dotted `path` replaced, skipping all validation."""
    *parents, last = path.split(".")
    target: Any = msg
    for name in parents:
        target = getattr(target, name)
    object.__setattr__(target, last, value)
    return encode(msg)


P2C = Direction.PARENT_TO_CHILD
# Phase2Remove: type, request id, phase2, tunnel id, local, remote (family, address), proto,
# spi_in, spi_out, reqid, keep_policies
PHASE2_REMOVE = h("0231 00000001 00000002 00000003 04 c0000201 04 c6336407 03 00001234 00005678"
                  "00000005 00")  # fmt: skip
# KernelExpire (to the child): type, spi, proto, dst (family, address), hard
KERNEL_EXPIRE = "0141 00001234 03 {}"
# DatagramOut: type, local (addr, port), remote (addr, port), natt, data (u16 length)
DATAGRAM_OUT = h("0210 04 c0000201 01f4 04 c0000202 01f4 00 0003 616263")
# KernelAcquire (to the child): type, reqid, phase2 absent, selector: src (net, proto,
# port), dst (net, proto, port); then src and dst addresses
ACQUIRE = "0140 00000009 00 {} 04 c0000201 04 c0000202"
SELECTOR = "04 c0000200 18 00 0000 04 cb007100 18 06 01bb"
# Log: type, level, text (u16 length)
LOG = h("0250 03 0002 6869")


def expire(addr: str) -> bytes:
    return h(KERNEL_EXPIRE.format(addr) + "00")


def acquire(selector: str) -> bytes:
    return h(ACQUIRE.format(selector))


def test_hand_written_messages_are_valid() -> None:
    assert decode(PHASE2_REMOVE, C2P) == m.Phase2Remove(
        1, 2, 3, V4, V4_PEER, ProtocolId.IPSEC_ESP, 0x1234, 0x5678, 5, False
    )
    assert decode(DATAGRAM_OUT, C2P) == m.DatagramOut(
        m.Endpoint(V4, 500), m.Endpoint(ip_address("192.0.2.2"), 500), False, b"abc"
    )
    selector = m.TrafficSelector(
        m.SelectorSide(ip_network("192.0.2.0/24"), 0, 0),
        m.SelectorSide(ip_network("203.0.113.0/24"), 6, 443),
    )
    assert decode(acquire(SELECTOR), P2C) == m.KernelAcquire(
        9, None, selector, V4, ip_address("192.0.2.2")
    )
    assert decode(LOG, C2P) == m.Log(m.LogLevel.ERR, "hi")


def test_empty_and_short_messages_are_truncated() -> None:
    rejects(b"", Reason.TRUNCATED)
    rejects(b"\x02", Reason.TRUNCATED)


def test_unknown_types() -> None:
    rejects(h("0000"), Reason.UNKNOWN_TYPE)
    rejects(h("02ff"), Reason.UNKNOWN_TYPE)
    rejects(h("ffff") + PHASE2_REMOVE[2:], Reason.UNKNOWN_TYPE)
    # the type numbers of version 2's SaAdd, SaDelete, PolicyAdd, PolicyDelete: 0x0230 and
    # 0x0231 are Phase2Install and Phase2Remove now, 0x0232 and 0x0233 are free
    rejects(h("0232") + PHASE2_REMOVE[2:], Reason.UNKNOWN_TYPE)
    rejects(h("0233") + PHASE2_REMOVE[2:], Reason.UNKNOWN_TYPE)


def test_message_for_another_direction() -> None:
    rejects(h("0141 00001234 03 04 c0000201 01"), Reason.WRONG_DIRECTION)  # KernelExpire


@pytest.mark.parametrize("good", [PHASE2_REMOVE, DATAGRAM_OUT, LOG, "install"])
def test_every_truncation_and_any_trailing_byte(good: bytes | str) -> None:
    if good == "install":
        good = encode(_install())
    assert isinstance(good, bytes)
    for cut in range(len(good)):
        rejects(good[:cut], Reason.TRUNCATED)
    rejects(good + b"\x00", Reason.TRAILING_BYTES)
    rejects(good + good, Reason.TRAILING_BYTES)


def test_oversize_is_refused_before_decoding() -> None:
    rejects(DATAGRAM_OUT + bytes(MAX_MESSAGE_SIZE), Reason.TOO_LARGE)


def test_enum_out_of_range() -> None:
    isakmp = PHASE2_REMOVE.replace(h("03 00001234"), h("01 00001234"))  # ISAKMP is no SA
    rejects(isakmp, Reason.BAD_ENUM)
    rejects(PHASE2_REMOVE.replace(h("03 00001234"), h("ff 00001234")), Reason.BAD_ENUM)
    rejects(h(KERNEL_EXPIRE.replace(" 03 ", " 01 ").format("04 c0000201") + "00"), Reason.BAD_ENUM,
            P2C)  # fmt: skip
    rejects(h("0250 00 0002 6869"), Reason.BAD_ENUM)  # the child may not log EMERG
    rejects(h("0250 08 0002 6869"), Reason.BAD_ENUM)


def test_bool_other_than_0_or_1() -> None:
    rejects(h("0210 04 c0000201 01f4 04 c0000202 01f4 02 0003 616263"), Reason.BAD_BOOL)
    rejects(h("0210 04 c0000201 01f4 04 c0000202 01f4 ff 0003 616263"), Reason.BAD_BOOL)


def test_address_family_and_length() -> None:
    rejects(expire("05 c0000201"), Reason.BAD_FAMILY, P2C)
    rejects(expire("00 c0000201"), Reason.BAD_FAMILY, P2C)
    rejects(expire("06 c0000201"), Reason.TRUNCATED, P2C)  # v6 needs 16
    v6_bytes = V6.packed.hex()
    rejects(expire("04" + v6_bytes), Reason.TRAILING_BYTES, P2C)
    assert decode(expire("06" + v6_bytes), P2C) == m.KernelExpire(
        0x1234, ProtocolId.IPSEC_ESP, V6, False
    )
    # the child's side: a Phase2Remove whose remote address is of another family
    v6_remote = PHASE2_REMOVE.replace(bytes.fromhex("04c6336407"), bytes.fromhex("06") + V6.packed)
    rejects(v6_remote, Reason.INCONSISTENT)


def test_prefix_length_and_host_bits() -> None:
    rejects(acquire(SELECTOR.replace(" 18 00", " 21 00")), Reason.BAD_PREFIX, P2C)
    rejects(acquire(SELECTOR.replace(" 18 00", " ff 00")), Reason.BAD_PREFIX, P2C)
    rejects(acquire(SELECTOR.replace("c0000200", "c0000201")), Reason.HOST_BITS, P2C)
    # 192.0.2.0/22: the 2 in the third octet is a host bit
    rejects(acquire(SELECTOR.replace(" 18 00", " 16 00")), Reason.HOST_BITS, P2C)
    net6 = ip_network("2001:db8::").network_address.packed.hex()
    v6_sel = f"06 {net6} 81 00 0000 06 {net6} 20 00 0000"
    rejects(acquire(v6_sel), Reason.BAD_PREFIX, P2C)
    assert decode(acquire(v6_sel.replace(" 81 ", " 80 ", 1)), P2C)


def test_mixed_families_in_one_selector() -> None:
    mixed = f"04 c0000200 18 00 0000 06 {V6.packed.hex()} 80 00 0000"
    err = rejects(acquire(mixed), Reason.INCONSISTENT, P2C)
    assert "selector" in str(err)


def test_invalid_utf8_and_charset() -> None:
    rejects(h("0250 03 0001 ff"), Reason.BAD_UTF8)
    rejects(h("0250 03 0002 c0af"), Reason.BAD_UTF8)  # overlong '/'
    rejects(h("0250 03 0003 eda080"), Reason.BAD_UTF8)  # UTF-16 surrogate
    rejects(h("0250 03 0002 e282"), Reason.BAD_UTF8)  # cut multi-byte sequence
    rejects(h("0250 03 0003 610a62"), Reason.BAD_CHARSET)  # forged second syslog line
    rejects(h("0250 03 0004 1b5b306d"), Reason.BAD_CHARSET)  # terminal escape
    rejects(h("0250 03 0000"), Reason.BAD_LENGTH)
    rejects(h("0250 03 0401") + b"a" * 1025, Reason.BAD_LENGTH)
    assert decode(h("0250 03 0005") + "é€".encode(), C2P) == m.Log(m.LogLevel.ERR, "é€")


def test_list_count_is_checked_before_any_item_is_read() -> None:
    # ListRequest: phase, numlist count (u16, max 256) and nothing else
    rejects(h("0311 01 0101"), Reason.TOO_MANY, Direction.CLI_TO_DAEMON)
    rejects(h("0311 01 ffff"), Reason.TOO_MANY, Direction.CLI_TO_DAEMON)
    rejects(h("0311 01 0001 00000005 00000003 00 00 00 00"), Reason.INCONSISTENT,
            Direction.CLI_TO_DAEMON)  # fmt: skip
    good = h("0311 01 0001 00000003 00000005 00 00 00 00")
    assert decode(good, Direction.CLI_TO_DAEMON) == m.ListRequest(
        m.Phase.PHASE1, (m.NumRange(3, 5),), False, None, False, False
    )


def test_presence_byte_other_than_0_or_1() -> None:
    # SkeyidRequest: request id, phase1_number present=2
    rejects(h("0220 00000001 02 00000001 00 02 00000000 0010") + b"n" * 16, Reason.BAD_PRESENCE)


def test_nonce_bounds() -> None:
    """The one nonce a child may name in a SkeyidRequest (the peer's) has 16..256 bytes:
    RFC 2409 allows 8, but a short input is what a chosen-input attack needs."""
    head = h("0220 00000001 01 00000001 00 02 00000000")
    rejects(head + h("0008") + b"n" * 8, Reason.BAD_LENGTH)
    rejects(head + h("000f") + b"n" * 15, Reason.BAD_LENGTH)
    rejects(head + h("0101") + b"n" * 257, Reason.BAD_LENGTH)
    rejects(head + h("ffff"), Reason.BAD_LENGTH)  # refused before reading 65535 bytes
    ok = head + h("0010") + b"n" * 16
    assert decode(ok, C2P) == m.SkeyidRequest(1, 1, None, IkeHash.SHA, 0, b"n" * 16)
    ok = head + h("0100") + b"n" * 256
    assert decode(ok, C2P) == m.SkeyidRequest(1, 1, None, IkeHash.SHA, 0, b"n" * 256)


SEL = m.TrafficSelector(
    m.SelectorSide(ip_network("198.51.100.0/24"), 0, 0),
    m.SelectorSide(ip_network("203.0.113.0/24"), 0, 0),
)
BACK = m.TrafficSelector(SEL.dst, SEL.src)


def _keys(spi: int) -> m.Phase2Sa:
    return m.Phase2Sa(spi, m.CryptKey(EspTransformId.AES_CBC, b"k" * 16),
                      m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, b"a" * 32), None,
                      m.Lifetimes(3000, 3600, 0, 0))  # fmt: skip


def _policies(*directions: m.PolicyDirection) -> tuple[m.Phase2Policy, ...]:
    return tuple(m.Phase2Policy(d, SEL if d is m.PolicyDirection.OUT else BACK, 1000)
                 for d in directions)  # fmt: skip


TUNNEL_POLICIES = _policies(m.PolicyDirection.OUT, m.PolicyDirection.IN, m.PolicyDirection.FWD)


def _install(**changes: Any) -> m.Phase2Install:
    fields: dict[str, Any] = dict(
        request_id=1, phase1_number=1, phase2_number=2, tunnel_id=3, local=V4, remote=V4_PEER,
        proto=ProtocolId.IPSEC_ESP, mode=EncapsulationMode.TUNNEL, reqid=5,
        inbound=_keys(0x1234), outbound=_keys(0x5678), encap=None, selector=SEL,
        policies=TUNNEL_POLICIES,
    )  # fmt: skip
    fields.update(changes)
    return m.Phase2Install(**fields)


def test_hostile_sender_key_too_long() -> None:
    err = rejects(tampered(_install(), "outbound.integrity.key", b"a" * 65), Reason.BAD_LENGTH)
    assert str(err).startswith("Phase2Install.outbound.integrity.key:")
    rejects(tampered(_install(), "inbound.encryption.key", b"k" * 65), Reason.BAD_LENGTH)


def test_hostile_sender_breaks_the_rules() -> None:
    rejects(tampered(_install(), "inbound.spi", 255), Reason.INT_RANGE)  # reserved SPI
    rejects(tampered(_install(), "outbound.spi", 0), Reason.INT_RANGE)
    rejects(tampered(_install(), "phase2_number", 0), Reason.INT_RANGE)
    rejects(tampered(_install(), "mode", EncapsulationMode.UDP_ENCAPSULATED_TUNNEL),
            Reason.BAD_ENUM)  # fmt: skip
    rejects(tampered(_install(), "outbound.encryption.transform", EspTransformId.AES_GCM_16),
            Reason.BAD_ENUM)  # fmt: skip
    rejects(tampered(_install(), "outbound.aead",
                     m.AeadKey(EspTransformId.AES_GCM_16, b"k" * 16, b"salt")),
            Reason.INCONSISTENT)  # fmt: skip
    rejects(tampered(_install(), "remote", V6), Reason.INCONSISTENT)
    rejects(tampered(m.Log(m.LogLevel.INFO, "x"), "text", "a\nb"), Reason.BAD_CHARSET)
    request = m.SkeyidRequest(1, 1, None, IkeHash.SHA, 0, b"n" * 16)
    rejects(tampered(request, "peer", V4_PEER), Reason.INCONSISTENT)
    rejects(tampered(request, "peer_nonce", b"n" * 300), Reason.BAD_LENGTH)
    rejects(tampered(request, "peer_nonce", b"n" * 8), Reason.BAD_LENGTH)
    by_peer = m.SkeyidRequest(1, None, V4_PEER, IkeHash.SHA, 0, b"n" * 16)
    rejects(tampered(by_peer, "nonce_id", 5), Reason.INCONSISTENT)


def test_hostile_install_policies() -> None:
    """The policy list is bounded (2..3), each direction once, fwd exactly in tunnel mode."""
    out, in_, fwd = m.PolicyDirection.OUT, m.PolicyDirection.IN, m.PolicyDirection.FWD
    rejects(tampered(_install(), "policies", _policies(out)), Reason.TOO_MANY)
    rejects(tampered(_install(), "policies", _policies(out, in_, fwd, fwd)), Reason.TOO_MANY)
    rejects(tampered(_install(), "policies", _policies(out, in_, in_)), Reason.INCONSISTENT)
    rejects(tampered(_install(), "policies", _policies(out, in_)), Reason.INCONSISTENT)
    transport = _install(mode=EncapsulationMode.TRANSPORT, policies=_policies(out, in_))
    assert decode(encode(transport), C2P) == transport
    rejects(tampered(transport, "policies", TUNNEL_POLICIES), Reason.INCONSISTENT)
    bad = m.Phase2Policy(out, SEL, 1000)
    object.__setattr__(bad, "direction", 3)
    rejects(tampered(_install(), "policies", (bad, *TUNNEL_POLICIES[1:])), Reason.BAD_ENUM)
    # inner traffic of another family than the gateways is the definition's business (IPv4
    # subnets over IPv6 gateways); one selector mixing both is never well-formed
    inner6 = m.TrafficSelector(m.SelectorSide(ip_network("2001:db8::/64"), 0, 0),
                               m.SelectorSide(ip_network("2001:db8:1::/64"), 0, 0))  # fmt: skip
    assert decode(encode(_install(selector=inner6)), C2P).selector == inner6  # type: ignore[attr-defined]
    mixed = m.TrafficSelector(SEL.src, SEL.dst)
    object.__setattr__(mixed, "dst", inner6.dst)
    rejects(tampered(_install(), "selector", mixed), Reason.INCONSISTENT)


def test_hostile_install_shapes() -> None:
    """ESP: encryption or aead; AH: integrity only, never UDP-encapsulated; per SA."""
    sha = m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, b"a" * 32)
    lt = m.Lifetimes(3000, 3600, 0, 0)
    ah = m.Phase2Sa(0x1234, None, sha, None, lt)
    good_ah = _install(proto=ProtocolId.IPSEC_AH, inbound=ah, outbound=ah)
    assert decode(encode(good_ah), C2P) == good_ah
    rejects(tampered(good_ah, "encap", m.NatTEncap(4500, 4500)), Reason.INCONSISTENT)
    rejects(tampered(good_ah, "outbound", _keys(0x1234)), Reason.INCONSISTENT)
    rejects(tampered(_install(), "inbound", ah), Reason.INCONSISTENT)
    gcm = m.AeadKey(EspTransformId.AES_GCM_16, b"k" * 16, b"salt")
    rejects(tampered(_install(), "inbound.aead", gcm), Reason.INCONSISTENT)  # and encryption


def _phase1(**changes: Any) -> m.Phase1Def:
    proposal = m.IkeProposal(IkeEncryption.AES_CBC, 128, IkeHash.SHA, GroupId.MODP_2048, 28800)
    fields: dict[str, Any] = dict(
        number=4, name="east", local_addr=V4, remote_addr=V4_PEER,
        local_id=m.Identity(IdType.FQDN, b"east.example"), remote_id=None,
        mode=ExchangeType.AGGRESSIVE, auth_method=AuthMethod.PRE_SHARED_KEY,
        proposals=(proposal,), dpd=m.DpdSettings(False, 0, 0), nat_t=False,
    )  # fmt: skip
    fields.update(changes)
    return m.Phase1Def(**fields)


def test_proposal_list_bounds_on_both_sides() -> None:
    msg = m.ConfigPhase1(1, _phase1())
    proposal = msg.definition.proposals[0]
    decode(encode(msg), Direction.PARENT_TO_CHILD)
    err = rejects(tampered(msg, "definition.proposals", (proposal,) * 17), Reason.TOO_MANY,
                  Direction.PARENT_TO_CHILD)  # fmt: skip
    assert "definition.proposals" in str(err)
    rejects(tampered(m.ConfigPhase1(1, _phase1()), "definition.proposals", ()), Reason.TOO_MANY,
            Direction.PARENT_TO_CHILD)  # fmt: skip
    refused(Reason.TOO_MANY, _phase1, proposals=(proposal,) * 17)
    refused(Reason.TOO_MANY, _phase1, proposals=())


def test_names_are_restricted() -> None:
    refused(Reason.BAD_CHARSET, _phase1, name="east west")
    refused(Reason.BAD_CHARSET, _phase1, name="east;rm")
    refused(Reason.BAD_CHARSET, _phase1, name="øst")
    refused(Reason.BAD_LENGTH, _phase1, name="")
    refused(Reason.BAD_LENGTH, _phase1, name="e" * 256)
    refused(Reason.BAD_ENUM, _phase1, mode=ExchangeType.QUICK_MODE)
    msg = m.ConfigPhase1(1, _phase1())
    rejects(tampered(msg, "definition.name", "a b"), Reason.BAD_CHARSET, Direction.PARENT_TO_CHILD)


def test_identity_lengths_follow_the_type() -> None:
    refused(Reason.INCONSISTENT, m.Identity, IdType.IPV4_ADDR, b"\x01\x02\x03")
    refused(Reason.INCONSISTENT, m.Identity, IdType.IPV6_ADDR_SUBNET, bytes(16))
    refused(Reason.BAD_LENGTH, m.Identity, IdType.FQDN, b"")
    assert m.Identity(IdType.IPV4_ADDR_SUBNET, bytes(8)).data == bytes(8)


def test_constructor_refuses_wrong_python_types() -> None:
    refused(Reason.BAD_TYPE, m.Endpoint, "192.0.2.1", 500)
    refused(Reason.BAD_TYPE, m.Endpoint, V4, True)
    refused(Reason.INT_RANGE, m.Endpoint, V4, 65536)
    refused(Reason.INT_RANGE, m.Endpoint, V4, -1)
    refused(Reason.BAD_TYPE, m.KernelExpire, 0x1234, 3, V4, True)  # plain int, not ProtocolId
    refused(Reason.BAD_TYPE, m.KernelExpire, 0x1234, ProtocolId.IPSEC_ESP, V4, 1)
    refused(Reason.BAD_TYPE, m.Log, m.LogLevel.INFO, b"bytes")
    refused(Reason.BAD_TYPE, m.Phase2Remove, 1, 2, 3, V6, IPv6Address("fe80::1%2"),
            ProtocolId.IPSEC_ESP, 0x1234, 0x5678, 5, False)  # fmt: skip
    refused(Reason.BAD_UTF8, m.ResultReply, 1, m.ErrorCode.INTERNAL, "\ud800")
    refused(Reason.BAD_TYPE, m.DatagramOut, m.Endpoint(V4, 1), m.Endpoint(V4, 2), False, "abc")
    refused(Reason.BAD_TYPE, m.Phase2Def, 1, 1, "x",
            m.SelectorSide(ip_network("192.0.2.0/24"), 0, 0),
            m.Endpoint(V4, 1), (), EncapsulationMode.TUNNEL)  # fmt: skip


def test_reply_shapes() -> None:
    refused(Reason.INCONSISTENT, m.SkeyidReply, 1, m.ErrorCode.OK, b"", b"")
    refused(Reason.INCONSISTENT, m.SkeyidReply, 1, m.ErrorCode.OK, b"s" * 15, b"")
    refused(Reason.INCONSISTENT, m.SkeyidReply, 1, m.ErrorCode.NO_SECRET, b"s" * 20, b"")
    refused(Reason.INCONSISTENT, m.SkeyidReply, 1, m.ErrorCode.OK, b"s" * 20, b"n" * 16)
    refused(Reason.INCONSISTENT, m.SkeyidReply, 1, m.ErrorCode.NO_SECRET, b"", b"n" * 32)
    refused(Reason.INCONSISTENT, m.NonceReply, 1, m.ErrorCode.OK, 0, b"n" * 32)
    refused(Reason.INCONSISTENT, m.NonceReply, 1, m.ErrorCode.OK, 5, b"n" * 31)
    refused(Reason.INCONSISTENT, m.NonceReply, 1, m.ErrorCode.NO_SECRET, 5, b"")
    refused(Reason.INCONSISTENT, m.SpiReply, 1, m.ErrorCode.OK, 0)
    refused(Reason.INCONSISTENT, m.SpiReply, 1, m.ErrorCode.OK, 255)
    refused(Reason.INCONSISTENT, m.SpiReply, 1, m.ErrorCode.KERNEL_ERROR, 0x1000)
    refused(Reason.INCONSISTENT, m.ActivateRequest, m.Phase.ALL, (), (), None, V4, None, False)
    refused(Reason.INCONSISTENT, m.ListRequest, m.Phase.ALL, (), True, m.Role.INITIATOR, False,
            False)  # fmt: skip
    refused(Reason.INCONSISTENT, m.Phase2Proposal, ProtocolId.IPSEC_AH, 3, 0, None, None, 0, 0)
    refused(Reason.INCONSISTENT, m.Phase2Proposal, ProtocolId.IPSEC_ESP, 99, 0, None, None, 0, 0)
    refused(Reason.INCONSISTENT, m.AeadKey, EspTransformId.AES_CCM_16, b"k" * 16, b"salt")


def test_decode_wants_bytes() -> None:
    with pytest.raises(IpcError) as info:
        decode(bytearray(PHASE2_REMOVE), C2P)  # type: ignore[arg-type]
    assert info.value.reason is Reason.BAD_TYPE


def test_unregistered_message_class_is_not_encoded() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Stray(Message):
        """Never registered."""

    with pytest.raises(IpcError) as info:
        encode(Stray())
    assert info.value.reason is Reason.UNKNOWN_TYPE
