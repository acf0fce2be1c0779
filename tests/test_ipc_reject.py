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


# SaDelete: type, request id, spi, proto, dst (family, address)
SA_DELETE = h("0231 00000001 00001234 03 04 c0000201")
# DatagramOut: type, local (addr, port), remote (addr, port), natt, data (u16 length)
DATAGRAM_OUT = h("0210 04 c0000201 01f4 04 c0000202 01f4 00 0003 616263")
# PolicyDelete: type, request id, src (net, proto, port), dst (net, proto, port), direction
POLICY_DELETE = h("0233 00000009 04 c0000200 18 00 0000 04 cb007100 18 06 01bb 02")
# Log: type, level, text (u16 length)
LOG = h("0250 03 0002 6869")


def test_hand_written_messages_are_valid() -> None:
    assert decode(SA_DELETE, C2P) == m.SaDelete(1, 0x1234, ProtocolId.IPSEC_ESP, V4)
    assert decode(DATAGRAM_OUT, C2P) == m.DatagramOut(
        m.Endpoint(V4, 500), m.Endpoint(ip_address("192.0.2.2"), 500), False, b"abc"
    )
    selector = m.TrafficSelector(
        m.SelectorSide(ip_network("192.0.2.0/24"), 0, 0),
        m.SelectorSide(ip_network("203.0.113.0/24"), 6, 443),
    )
    assert decode(POLICY_DELETE, C2P) == m.PolicyDelete(9, selector, m.PolicyDirection.FWD)
    assert decode(LOG, C2P) == m.Log(m.LogLevel.ERR, "hi")


def test_empty_and_short_messages_are_truncated() -> None:
    rejects(b"", Reason.TRUNCATED)
    rejects(b"\x02", Reason.TRUNCATED)


def test_unknown_types() -> None:
    rejects(h("0000"), Reason.UNKNOWN_TYPE)
    rejects(h("02ff"), Reason.UNKNOWN_TYPE)
    rejects(h("ffff") + SA_DELETE[2:], Reason.UNKNOWN_TYPE)


def test_message_for_another_direction() -> None:
    rejects(h("0141 00001234 03 04 c0000201 01"), Reason.WRONG_DIRECTION)  # KernelExpire


@pytest.mark.parametrize("good", [SA_DELETE, DATAGRAM_OUT, POLICY_DELETE, LOG])
def test_every_truncation_and_any_trailing_byte(good: bytes) -> None:
    for cut in range(len(good)):
        rejects(good[:cut], Reason.TRUNCATED)
    rejects(good + b"\x00", Reason.TRAILING_BYTES)
    rejects(good + good, Reason.TRAILING_BYTES)


def test_oversize_is_refused_before_decoding() -> None:
    rejects(DATAGRAM_OUT + bytes(MAX_MESSAGE_SIZE), Reason.TOO_LARGE)


def test_enum_out_of_range() -> None:
    rejects(h("0231 00000001 00001234 01 04 c0000201"), Reason.BAD_ENUM)  # ISAKMP is no SA
    rejects(h("0231 00000001 00001234 ff 04 c0000201"), Reason.BAD_ENUM)
    rejects(h("0250 00 0002 6869"), Reason.BAD_ENUM)  # the child may not log EMERG
    rejects(h("0250 08 0002 6869"), Reason.BAD_ENUM)


def test_bool_other_than_0_or_1() -> None:
    rejects(h("0210 04 c0000201 01f4 04 c0000202 01f4 02 0003 616263"), Reason.BAD_BOOL)
    rejects(h("0210 04 c0000201 01f4 04 c0000202 01f4 ff 0003 616263"), Reason.BAD_BOOL)


def test_address_family_and_length() -> None:
    rejects(h("0231 00000001 00001234 03 05 c0000201"), Reason.BAD_FAMILY)
    rejects(h("0231 00000001 00001234 03 00 c0000201"), Reason.BAD_FAMILY)
    rejects(h("0231 00000001 00001234 03 06 c0000201"), Reason.TRUNCATED)  # v6 needs 16
    v6_bytes = V6.packed.hex()
    rejects(h("0231 00000001 00001234 03 04" + v6_bytes), Reason.TRAILING_BYTES)
    assert decode(h("0231 00000001 00001234 03 06" + v6_bytes), C2P) == m.SaDelete(
        1, 0x1234, ProtocolId.IPSEC_ESP, V6
    )


def test_prefix_length_and_host_bits() -> None:
    rejects(h("0233 00000009 04 c0000200 21 00 0000 04 cb007100 18 06 01bb 02"), Reason.BAD_PREFIX)
    rejects(h("0233 00000009 04 c0000200 ff 00 0000 04 cb007100 18 06 01bb 02"), Reason.BAD_PREFIX)
    rejects(h("0233 00000009 04 c0000201 18 00 0000 04 cb007100 18 06 01bb 02"), Reason.HOST_BITS)
    # 192.0.2.0/22: the 2 in the third octet is a host bit
    rejects(h("0233 00000009 04 c0000200 16 00 0000 04 cb007100 18 06 01bb 02"), Reason.HOST_BITS)
    net6 = ip_network("2001:db8::").network_address.packed.hex()
    v6_sel = f"06 {net6} 81 00 0000 06 {net6} 20 00 0000 00"
    rejects(h("0233 00000009" + v6_sel), Reason.BAD_PREFIX)
    assert decode(h("0233 00000009" + v6_sel.replace(" 81 ", " 80 ", 1)), C2P)


def test_mixed_families_in_one_selector() -> None:
    mixed = f"04 c0000200 18 00 0000 06 {V6.packed.hex()} 80 00 0000 02"
    err = rejects(h("0233 00000009" + mixed), Reason.INCONSISTENT)
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
    rejects(h("0220 00000001 02 00000001 00 02 0008") + b"n" * 8, Reason.BAD_PRESENCE)


def test_nonce_bounds() -> None:
    head = h("0220 00000001 01 00000001 00 02")
    rejects(head + h("0007") + b"n" * 7 + h("0008") + b"n" * 8, Reason.BAD_LENGTH)
    rejects(head + h("0008") + b"n" * 8 + h("0101") + b"n" * 257, Reason.BAD_LENGTH)
    rejects(head + h("ffff"), Reason.BAD_LENGTH)  # refused before reading 65535 bytes
    ok = head + h("0008") + b"n" * 8 + h("0100") + b"n" * 256
    assert decode(ok, C2P) == m.SkeyidRequest(1, 1, None, IkeHash.SHA, b"n" * 8, b"n" * 256)


def _sa_add(**changes: Any) -> m.SaAdd:
    fields: dict[str, Any] = dict(
        request_id=1, phase1_number=1, phase2_number=2, tunnel_id=3,
        direction=m.SaDirection.OUT, src=V4, dst=V4_PEER, proto=ProtocolId.IPSEC_ESP,
        spi=0x1234, mode=EncapsulationMode.TUNNEL,
        encryption=m.CryptKey(EspTransformId.AES_CBC, b"k" * 16),
        integrity=m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, b"a" * 32), aead=None,
        lifetimes=m.Lifetimes(3000, 3600, 0, 0), encap=None, selector=None, reqid=5,
    )  # fmt: skip
    fields.update(changes)
    return m.SaAdd(**fields)


def test_hostile_sender_key_too_long() -> None:
    err = rejects(tampered(_sa_add(), "integrity.key", b"a" * 65), Reason.BAD_LENGTH)
    assert str(err).startswith("SaAdd.integrity.key:")
    rejects(tampered(_sa_add(), "encryption.key", b"k" * 65), Reason.BAD_LENGTH)


def test_hostile_sender_breaks_the_rules() -> None:
    rejects(tampered(_sa_add(), "spi", 255), Reason.INT_RANGE)  # reserved SPI
    rejects(tampered(_sa_add(), "phase2_number", 0), Reason.INT_RANGE)
    rejects(tampered(_sa_add(), "direction", 3), Reason.BAD_ENUM)
    rejects(tampered(_sa_add(), "mode", EncapsulationMode.UDP_ENCAPSULATED_TUNNEL), Reason.BAD_ENUM)
    rejects(tampered(_sa_add(), "encryption.transform", EspTransformId.AES_GCM_16), Reason.BAD_ENUM)
    rejects(tampered(_sa_add(), "aead", m.AeadKey(EspTransformId.AES_GCM_16, b"k" * 16, b"salt")),
            Reason.INCONSISTENT)  # fmt: skip
    rejects(tampered(_sa_add(), "dst", V6), Reason.INCONSISTENT)
    rejects(tampered(m.Log(m.LogLevel.INFO, "x"), "text", "a\nb"), Reason.BAD_CHARSET)
    request = m.SkeyidRequest(1, 1, None, IkeHash.SHA, b"n" * 8, b"n" * 8)
    rejects(tampered(request, "peer", V4_PEER), Reason.INCONSISTENT)
    rejects(tampered(request, "ni", b"n" * 300), Reason.BAD_LENGTH)


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
    refused(Reason.BAD_TYPE, m.SaDelete, 1, 0x1234, ProtocolId.IPSEC_ESP, IPv6Address("fe80::1%2"))
    refused(Reason.BAD_UTF8, m.ResultReply, 1, m.ErrorCode.INTERNAL, "\ud800")
    refused(Reason.BAD_TYPE, m.DatagramOut, m.Endpoint(V4, 1), m.Endpoint(V4, 2), False, "abc")
    refused(Reason.BAD_TYPE, m.Phase2Def, 1, 1, "x",
            m.SelectorSide(ip_network("192.0.2.0/24"), 0, 0),
            m.Endpoint(V4, 1), (), EncapsulationMode.TUNNEL)  # fmt: skip


def test_reply_shapes() -> None:
    refused(Reason.INCONSISTENT, m.SkeyidReply, 1, m.ErrorCode.OK, b"")
    refused(Reason.INCONSISTENT, m.SkeyidReply, 1, m.ErrorCode.OK, b"s" * 15)
    refused(Reason.INCONSISTENT, m.SkeyidReply, 1, m.ErrorCode.NO_SECRET, b"s" * 20)
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
        decode(bytearray(SA_DELETE), C2P)  # type: ignore[arg-type]
    assert info.value.reason is Reason.BAD_TYPE


def test_unregistered_message_class_is_not_encoded() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Stray(Message):
        """Never registered."""

    with pytest.raises(IpcError) as info:
        encode(Stray())
    assert info.value.reason is Reason.UNKNOWN_TYPE
