"""Every message survives encode/decode unchanged; the catalogue holds to its own rules."""

# No "from __future__ import annotations" here: the structs defined below need real
# annotation objects, exactly like the catalogue.

from dataclasses import dataclass, make_dataclass
from ipaddress import ip_address, ip_network
from typing import Annotated, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_ipc_strategies import MESSAGE_TYPES, struct_strategy

from ikepriv.ipc import messages as m
from ikepriv.ipc.control import merge, split_response
from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.schema import (
    MAX_MESSAGE_SIZE,
    MAX_NESTING,
    Direction,
    Message,
    SchemaError,
    Struct,
    UInt,
    decode,
    encode,
    message,
    registry,
    struct,
)
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

V4 = ip_address("192.0.2.1")
V4_PEER = ip_address("198.51.100.7")
V6 = ip_address("2001:db8::1")


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_round_trip_every_message(cls: type[Message], family: int, data: st.DataObject) -> None:
    msg = data.draw(struct_strategy(cls, family))
    wire = encode(msg)
    assert len(wire) <= MAX_MESSAGE_SIZE
    back = decode(wire, cls.DIRECTION)
    assert type(back) is cls
    assert back == msg
    assert encode(back) == wire


@pytest.mark.parametrize("cls", MESSAGE_TYPES, ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_other_directions_refuse_the_message(cls: type[Message], data: st.DataObject) -> None:
    wire = encode(data.draw(struct_strategy(cls, 4)))
    for direction in Direction:
        if direction is not cls.DIRECTION:
            with pytest.raises(IpcError) as info:
                decode(wire, direction)
            assert info.value.reason is Reason.WRONG_DIRECTION


CONTRACT = {
    Direction.PARENT_TO_CHILD: {
        "Hello", "ConfigBegin", "ConfigPhase1", "ConfigPhase2", "ConfigEnd", "DatagramIn",
        "InitiateCommand", "ResumeCommand", "RemoveCommand", "ListCommand", "SkeyidReply",
        "NonceReply", "ConfigCredential", "PeerFlooded",
        "SignatureReply",
        "SpiReply", "ResultReply", "KernelAcquire", "KernelExpire", "Shutdown",
    },
    Direction.CHILD_TO_PARENT: {
        "Ready", "DatagramOut", "SkeyidRequest", "NonceRequest", "SignatureRequest", "SpiRequest",
        "Phase2Install", "Phase2Commit", "Phase2Remove", "StateReport", "StateReportEnd", "Stats",
        "Log", "KeyLog",
    },
    Direction.CLI_TO_DAEMON: {
        "ControlHello", "ActivateRequest", "ListRequest", "RemoveRequest", "DbChanged",
        "StatsRequest",
    },
    Direction.DAEMON_TO_CLI: {"Response"},
}  # fmt: skip


def test_catalogue_is_the_contract() -> None:
    found: dict[Direction, set[str]] = {d: set() for d in Direction}
    for cls in registry().values():
        found[cls.DIRECTION].add(cls.__name__)
    assert found == CONTRACT


def test_type_number_high_byte_names_the_direction() -> None:
    for number, cls in registry().items():
        assert number == cls.TYPE
        assert number >> 8 == cls.DIRECTION


def test_every_message_says_what_it_is_for() -> None:
    """A dataclass without a docstring gets its signature as __doc__."""
    for cls in registry().values():
        assert cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}(")


def test_duplicate_type_number_is_refused() -> None:
    before = registry()
    with pytest.raises(SchemaError, match="used by Hello"):

        @message(m.Hello.TYPE, Direction.PARENT_TO_CHILD)
        @dataclass(frozen=True, slots=True)
        class Twin(Message):
            version: Annotated[int, UInt(2)]

    assert registry() == before


def test_type_number_in_another_directions_range_is_refused() -> None:
    with pytest.raises(SchemaError, match="high byte"):

        @message(0x0299, Direction.PARENT_TO_CHILD)
        @dataclass(frozen=True, slots=True)
        class Misplaced(Message):
            pass


def test_mutable_or_unannotated_structs_are_refused() -> None:
    with pytest.raises(SchemaError, match="frozen"):

        @struct
        @dataclass
        class Mutable(Struct):
            x: Annotated[int, UInt(1)]

    with pytest.raises(SchemaError, match="Annotated"):

        @struct
        @dataclass(frozen=True)
        class Bare(Struct):
            x: int

    with pytest.raises(SchemaError, match="string annotation"):

        @struct
        @dataclass(frozen=True)
        class Stringly(Struct):
            x: "Annotated[int, UInt(1)]"


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    @struct
    @dataclass(frozen=True)
    class Leaf(Struct):
        x: Annotated[int, UInt(1)]

    level: type[Struct] = Leaf
    with pytest.raises(SchemaError, match="nesting depth"):
        for _ in range(MAX_NESTING + 1):
            level = struct(
                make_dataclass("Level", [("inner", level)], bases=(Struct,), frozen=True)
            )
    assert level._DEPTH == MAX_NESTING


def test_wire_format_is_pinned() -> None:
    """Changing these bytes changes the protocol: bump PROTOCOL_VERSION with them."""
    out = m.DatagramOut(
        m.Endpoint(V4, 500), m.Endpoint(ip_address("192.0.2.2"), 500), False, b"abc"
    )
    assert encode(out).hex() == "021004c000020101f404c000020201f4000003616263"
    req = m.SkeyidRequest(7, None, V4_PEER, IkeHash.SHA2_256, 0, b"\x11" * 16)
    # type, request id, phase1_number absent, peer present, prf, nonce id (4 bytes), then
    # the peer's nonce with a 2-byte length (its bound, 256, does not fit in one byte)
    assert encode(req).hex() == (
        "0220" "00000007" "00" "01" "04c6336407" "04" "00000000" "0010" + "11" * 16
    )  # fmt: skip
    # version 2 added the DPD action byte: enabled, delay, timeout (2 bytes each), action
    dpd = bytearray()
    m.DpdSettings(True, 30, 120, m.DpdAction.RESTART)._write(dpd)
    assert dpd.hex() == "01" "001e" "0078" "02"  # fmt: skip
    # still 7: Hello ends with the child's shard and the number of shards (1 byte each)
    assert encode(m.Hello(m.PROTOCOL_VERSION)).hex() == "0101" "0008" "00" "01"  # fmt: skip
    assert encode(m.Hello(m.PROTOCOL_VERSION, 2, 3)).hex() == "0101" "0008" "02" "03"  # fmt: skip
    # counters: a 1-byte count (bound 64), then per counter a 1-byte name length (bound 48),
    # the name, a u64 value; Response carries them last, after `more`
    # version 5: then the per-definition tally, a 2-byte count (bound 1024), per entry the
    # phase, the number (4 bytes), rekeys and DPD failures (u64 each)
    stats = m.Stats(7, (m.CounterValue("dropped_malformed", 3),),
                    (m.DefinitionCounts(m.Phase.PHASE1, 2, 5, 1),))  # fmt: skip
    assert encode(stats).hex() == (
        "0242" "00000007" "01" "11" + b"dropped_malformed".hex() + "0000000000000003"
        "0001" "01" "00000002" "0000000000000005" "0000000000000001"
    )  # fmt: skip
    empty = m.Response(m.ErrorCode.OK, (), ())
    assert encode(empty).hex() == "0401" "00" "0000" "0000" "00" "00" "0000"  # fmt: skip
    assert encode(m.StatsRequest(True)).hex() == "0314" "01"  # fmt: skip
    # version 3: one install and one remove per phase 2. Phase2Remove: request id, phase 2,
    # tunnel id, local, remote, proto, spi_in, spi_out, reqid, keep_policies
    remove = m.Phase2Remove(1, 2, 3, V4, V4_PEER, ProtocolId.IPSEC_ESP, 0x1234, 0x5678, 5, True)
    assert encode(remove).hex() == (
        "0231" "00000001" "00000002" "00000003" "04c0000201" "04c6336407" "03" "00001234"
        "00005678" "00000005" "01"
    )  # fmt: skip
    # Phase2Policy: direction, selector, priority; the list has a 1-byte count (bound 3)
    sel = m.TrafficSelector(m.SelectorSide(ip_network("192.0.2.0/24"), 0, 0),
                            m.SelectorSide(ip_network("203.0.113.0/24"), 6, 443))  # fmt: skip
    policy = bytearray()
    m.Phase2Policy(m.PolicyDirection.FWD, sel, 1000)._write(policy)
    assert policy.hex() == "02" "04c000020018000000" "04cb007100180601bb" "000003e8"  # fmt: skip
    # version 6: ResumeCommand ends with the recorded SA pairs (1-byte count, bound 8; each
    # tunnel id, protocol, inbound SPI, outbound SPI)
    pair = bytearray()
    m.ResumedPair(3, ProtocolId.IPSEC_ESP, 0x1234, 0x5678)._write(pair)
    assert pair.hex() == "00000003" "03" "00001234" "00005678"  # fmt: skip
    # version 7: a credential file: generation, definition, kind, index, 2-byte length, bytes
    cred = m.ConfigCredential(1, 2, m.CredentialKind.CRL, 0, b"\x30\x00")
    assert encode(cred).hex() == "0106" "00000001" "00000002" "03" "00" "0002" "3000"  # fmt: skip
    # version 8: Phase2Install ends with inbound_first; Phase2Commit: request id, phase 2,
    # tunnel id, local, remote, proto, spi_in
    commit = m.Phase2Commit(1, 2, 3, V4, V4_PEER, ProtocolId.IPSEC_ESP, 0x1234)
    assert encode(commit).hex() == (
        "0234" "00000001" "00000002" "00000003" "04c0000201" "04c6336407" "03" "00001234"
    )  # fmt: skip
    assert m.PROTOCOL_VERSION == 8


def test_resume_command_carries_the_recorded_pairs() -> None:
    sel = m.TrafficSelector(m.SelectorSide(ip_network("192.0.2.0/24"), 0, 0),
                            m.SelectorSide(ip_network("203.0.113.0/24"), 0, 0))  # fmt: skip
    pairs = (m.ResumedPair(3, ProtocolId.IPSEC_ESP, 0xC0FFEE01, 0xC0FFEE02),
             m.ResumedPair(5, ProtocolId.IPSEC_AH, 256, 0xFFFFFFFF))  # fmt: skip
    cmd = m.ResumeCommand(2, 7, sel, V4, V4_PEER, 5, pairs)
    back = decode(encode(cmd), Direction.PARENT_TO_CHILD)
    assert back == cmd
    assert isinstance(back, m.ResumeCommand)
    assert back.old == pairs
    assert decode(encode(m.ResumeCommand(2, 7, sel, V4, V4_PEER, 5)),
                  Direction.PARENT_TO_CHILD).old == ()  # fmt: skip
    for bad in (255, 0):  # an SPI below 256 is no inbound SPI: refused on decode
        wire = bytearray(encode(m.ResumeCommand(2, 7, sel, V4, V4_PEER, 5, pairs[:1])))
        wire[-8:-4] = bad.to_bytes(4, "big")
        with pytest.raises(IpcError):
            decode(bytes(wire), Direction.PARENT_TO_CHILD)
    too_many = bytearray(encode(m.ResumeCommand(2, 7, sel, V4, V4_PEER, 5, pairs[:1] * 8)))
    count_at = len(too_many) - 8 * 13 - 1
    assert too_many[count_at] == 8
    too_many[count_at] = 9
    with pytest.raises(IpcError):
        decode(bytes(too_many) + bytes(13), Direction.PARENT_TO_CHILD)


def test_largest_ike_datagram_fits_in_one_message() -> None:
    msg = m.DatagramIn(m.Endpoint(V6, 4500), m.Endpoint(V6, 4500), True, b"\xab" * 65535)
    assert decode(encode(msg), Direction.PARENT_TO_CHILD) == msg


def _phase1(proposals: object) -> m.Phase1Def:
    proposal = m.IkeProposal(IkeEncryption.AES_CBC, 256, IkeHash.SHA2_256, GroupId.MODP_2048, 3600)
    return m.Phase1Def(
        number=1,
        name="gw-east",
        local_addr=V4,
        remote_addr=V4_PEER,
        local_id=m.Identity(IdType.IPV4_ADDR, V4.packed),
        remote_id=None,
        mode=ExchangeType.IDENTITY_PROTECTION,
        auth_method=AuthMethod.PRE_SHARED_KEY,
        proposals=proposals if proposals is not None else [proposal],  # type: ignore[arg-type]
        dpd=m.DpdSettings(True, 30, 120),
        nat_t=True,
    )


def test_lists_are_frozen_into_tuples() -> None:
    definition = _phase1(None)
    assert isinstance(definition.proposals, tuple)
    hash(m.ConfigPhase1(1, definition))  # frozen all the way down
    with pytest.raises(AttributeError):
        definition.number = 2  # type: ignore[misc]


def test_aead_icv_length_follows_the_transform() -> None:
    key = m.AeadKey(EspTransformId.AES_GCM_16, b"k" * 32, b"salt")
    assert key.icv_bits == 128
    assert m.AeadKey(EspTransformId.AES_CCM_8, b"k" * 16, b"slt").icv_bits == 64


def _row(number: int) -> m.TunnelRow:
    return m.TunnelRow(
        number=number,
        tunnel_id=number,
        phase=m.Phase.PHASE2,
        name="n" * 255,
        role=m.Role.INITIATOR,
        state=m.TunnelState.ESTABLISHED,
        local_addr=V6,
        remote_addr=V6,
        local_id=m.Identity(IdType.FQDN, b"a" * 255),
        remote_id=m.Identity(IdType.FQDN, b"b" * 255),
        algorithms="ESP AES-GCM-16 256",
        remaining_seconds=100,
        spi_in=0x1000,
        spi_out=0x2000,
        bytes=1,
        packets=1,
        phase1_number=1,
    )


def test_one_response_too_large_is_refused_and_split_response_splits() -> None:
    rows = [_row(n) for n in range(1, 301)]
    with pytest.raises(IpcError) as info:
        encode(m.Response(m.ErrorCode.OK, (), tuple(rows)))
    assert info.value.reason is Reason.TOO_LARGE
    lines = [f"line {n}" for n in range(5000)]
    parts = split_response(m.ErrorCode.PARTIAL, lines, rows)
    assert len(parts) > 2
    assert [p.more for p in parts] == [True] * (len(parts) - 1) + [False]
    for part in parts:
        assert decode(encode(part), Direction.DAEMON_TO_CLI) == part
    assert merge(parts) == (m.ErrorCode.PARTIAL, lines, rows)


def test_split_response_of_nothing_is_one_empty_response() -> None:
    assert split_response(m.ErrorCode.NO_SUCH_TUNNEL) == [
        m.Response(m.ErrorCode.NO_SUCH_TUNNEL, (), (), more=False)
    ]


def test_version_check() -> None:
    m.check_version(m.PROTOCOL_VERSION)
    with pytest.raises(IpcError) as info:
        m.check_version(m.PROTOCOL_VERSION + 1)
    assert info.value.reason is Reason.VERSION_MISMATCH


def test_phase2_install_shapes() -> None:
    out, in_, fwd = m.PolicyDirection.OUT, m.PolicyDirection.IN, m.PolicyDirection.FWD
    sel = m.TrafficSelector(m.SelectorSide(ip_network("198.51.100.0/24"), 0, 0),
                            m.SelectorSide(ip_network("203.0.113.0/24"), 0, 0))  # fmt: skip
    back = m.TrafficSelector(sel.dst, sel.src)
    pols = {d: m.Phase2Policy(d, sel if d is out else back, 1000) for d in (out, in_, fwd)}
    gcm = m.AeadKey(EspTransformId.AES_GCM_16, b"k" * 16, b"salt")
    cbc = m.CryptKey(EspTransformId.AES_CBC, b"k" * 16)
    sha = m.AuthKey(AuthAlgorithm.HMAC_SHA2_256, b"a" * 32)
    lt = m.Lifetimes(3000, 3600, 0, 0)

    def sa(spi: int, **keys: Any) -> m.Phase2Sa:
        fields: dict[str, Any] = {"encryption": None, "integrity": None, "aead": None, **keys}
        return m.Phase2Sa(spi, lifetimes=lt, **fields)

    base: dict[str, Any] = dict(
        request_id=1, phase1_number=1, phase2_number=2, tunnel_id=3, local=V4, remote=V4_PEER,
        proto=ProtocolId.IPSEC_ESP, mode=EncapsulationMode.TUNNEL, reqid=5, encap=None,
        selector=sel, policies=(pols[out], pols[in_], pols[fwd]),
    )  # fmt: skip
    esp = {"inbound": sa(0x1234, aead=gcm), "outbound": sa(0x5678, aead=gcm)}
    ah = {"proto": ProtocolId.IPSEC_AH, "inbound": sa(0x1234, integrity=sha),
          "outbound": sa(0x5678, integrity=sha)}  # fmt: skip
    good: list[dict[str, Any]] = [
        esp,
        {"inbound": sa(0x1234, encryption=cbc, integrity=sha),
         "outbound": sa(0x5678, encryption=cbc, integrity=sha)},
        {**esp, "encap": m.NatTEncap(4500, 4500)},
        ah,
        {**esp, "mode": EncapsulationMode.TRANSPORT, "policies": (pols[in_], pols[out])},
    ]  # fmt: skip
    bad: list[dict[str, Any]] = [
        {"inbound": sa(0x1234), "outbound": sa(0x5678, aead=gcm)},
        {**esp, "outbound": sa(0x5678, aead=gcm, encryption=cbc)},
        {**esp, "inbound": sa(0x1234, aead=gcm, integrity=sha)},
        {**ah, "outbound": sa(0x5678, integrity=sha, encryption=cbc)},
        {**ah, "encap": m.NatTEncap(4500, 4500)},
        {**ah, "inbound": sa(0x1234)},
        {**esp, "remote": V6},
        {**esp, "policies": (pols[out], pols[in_])},  # tunnel mode needs fwd
        {**esp, "mode": EncapsulationMode.TRANSPORT},  # transport mode has none
        {**esp, "policies": (pols[out], pols[in_], pols[in_])},
    ]  # fmt: skip
    for extra in good:
        msg = m.Phase2Install(**{**base, **extra})
        assert decode(encode(msg), Direction.CHILD_TO_PARENT) == msg
    for extra in bad:
        with pytest.raises(IpcError) as info:
            m.Phase2Install(**{**base, **extra})
        assert info.value.reason is Reason.INCONSISTENT, extra


def test_policy_selector_networks_keep_their_prefix() -> None:
    sel = m.TrafficSelector(
        m.SelectorSide(ip_network("192.0.2.0/24"), 0, 0),
        m.SelectorSide(ip_network("203.0.113.128/25"), 6, 443),
    )
    msg = m.KernelAcquire(9, None, sel, V4, ip_address("192.0.2.2"))
    assert decode(encode(msg), Direction.PARENT_TO_CHILD) == msg
