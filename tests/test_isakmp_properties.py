"""Property tests: round trips of generated messages, and hostile bytes only ever raising
IsakmpError (accepted bytes always re-encode to themselves)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import dpkt
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from ikepriv.isakmp import (
    Attribute,
    AttributePayload,
    CertPayload,
    CertRequestPayload,
    DeletePayload,
    HashPayload,
    IdPayload,
    IsakmpError,
    KePayload,
    Message,
    NatDPayload,
    NatOaPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SAPayload,
    SigPayload,
    Transform,
    UnknownPayload,
    VendorIdPayload,
    build_encrypted_message,
    build_message,
    decode_message,
    decode_payload_chain,
    encode_message,
    encode_payload_chain,
    isakmp_from_udp,
)
from ikepriv.isakmp.attributes import IKE_BASIC, IPSEC_BASIC, encode_attributes
from ikepriv.isakmp.constants import ExchangeType, HeaderFlag, NotifyType, ProtocolId
from ikepriv.isakmp.fragment import FragmentPayload
from ikepriv.isakmp.sa import SPI_SIZES

DATA = Path(__file__).resolve().parent / "data"
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _captured() -> list[bytes]:
    out = []
    for name in ("mm_qm_psk.pcap", "am_qm_psk.pcap"):
        with open(DATA / name, "rb") as handle:
            for _ts, frame in dpkt.pcap.Reader(handle):
                udp = dpkt.ethernet.Ethernet(frame).data.data
                message = isakmp_from_udp(udp.dport, bytes(udp.data))
                assert message is not None
                out.append(message)
    return out


CAPTURED = _captured()

# --- strategies --------------------------------------------------------------------------


def attributes(basic: frozenset[int], max_size: int = 5) -> st.SearchStrategy[list[Attribute]]:
    tv = st.builds(Attribute, st.integers(0, 0x7FFF), st.integers(0, 0xFFFF))
    tlv = st.builds(
        Attribute,
        st.integers(0, 0x7FFF).filter(lambda t: t not in basic),
        st.binary(max_size=40),
    )
    return st.lists(st.one_of(tv, tlv), max_size=max_size)


@st.composite
def proposals(draw: st.DrawFn) -> Proposal:
    protocol = draw(st.sampled_from(list(ProtocolId)))
    spi_size = draw(st.sampled_from(sorted(SPI_SIZES[protocol])))
    basic = IKE_BASIC if protocol is ProtocolId.ISAKMP else IPSEC_BASIC
    transforms = draw(
        st.lists(
            st.builds(
                Transform,
                st.integers(0, 255),
                st.integers(0, 255),
                attributes(basic).map(tuple),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return Proposal(
        draw(st.integers(0, 255)),
        protocol,
        draw(st.binary(min_size=spi_size, max_size=spi_size)),
        tuple(transforms),
    )


sa_payloads = st.lists(proposals(), min_size=1, max_size=3).map(SAPayload.ipsec)
ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
protocol_port = st.tuples(st.integers(0, 255), st.integers(0, 0xFFFF))
names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
)


@st.composite
def id_payloads(draw: st.DrawFn) -> IdPayload:
    protocol, port = draw(protocol_port)
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return IdPayload.address(draw(st.one_of(ipv4, ipv6)), protocol, port)
    if kind == 1:
        address = draw(st.one_of(ipv4, ipv6))
        prefix = draw(st.integers(0, address.max_prefixlen))
        return IdPayload.subnet(
            ipaddress.ip_network((address, prefix), strict=False), protocol, port
        )
    if kind == 2:
        bits = draw(st.sampled_from([32, 128]))
        low, high = sorted(draw(st.lists(st.integers(0, 2**bits - 1), min_size=2, max_size=2)))
        make = ipaddress.IPv4Address if bits == 32 else ipaddress.IPv6Address
        return IdPayload.address_range(make(low), make(high), protocol, port)
    if kind == 3:
        return IdPayload.fqdn(draw(names), protocol, port)
    if kind == 4:
        return IdPayload.user_fqdn(draw(names), protocol, port)
    if kind == 5:
        return IdPayload.der_asn1_dn(draw(st.binary(min_size=1, max_size=80)), protocol, port)
    if kind == 6:
        return IdPayload.der_asn1_gn(draw(st.binary(min_size=1, max_size=80)), protocol, port)
    return IdPayload.key_id(draw(st.binary(min_size=1, max_size=40)), protocol, port)


_SHAPED = {
    NotifyType.R_U_THERE,
    NotifyType.R_U_THERE_ACK,
    NotifyType.REPLAY_STATUS,
    NotifyType.RESPONDER_LIFETIME,
}


@st.composite
def notify_payloads(draw: st.DrawFn) -> NotifyPayload:
    doi = draw(st.sampled_from([0, 1]))
    protocol = draw(st.integers(0, 255))
    spi = draw(st.binary(max_size=16))
    kind = draw(st.integers(0, 3))
    if kind == 0:
        notify_type = draw(st.integers(0, 0xFFFF).filter(lambda n: n not in _SHAPED))
        return NotifyPayload(doi, protocol, spi, notify_type, draw(st.binary(max_size=40)))
    if kind == 1:
        ack = draw(st.booleans())
        return NotifyPayload.dpd(
            draw(st.binary(min_size=16, max_size=16)), draw(st.integers(0, 2**32 - 1)), ack=ack
        )
    if kind == 2:
        data = struct.pack("!I", draw(st.integers(0, 2**32 - 1)))
        return NotifyPayload(doi, protocol, spi, NotifyType.REPLAY_STATUS, data)
    attrs = draw(attributes(frozenset()))
    return NotifyPayload(
        doi, protocol, spi, NotifyType.RESPONDER_LIFETIME, encode_attributes(attrs)
    )


@st.composite
def delete_payloads(draw: st.DrawFn) -> DeletePayload:
    size = draw(st.integers(1, 16))
    spis = draw(st.lists(st.binary(min_size=size, max_size=size), min_size=1, max_size=4))
    return DeletePayload(
        draw(st.sampled_from([0, 1])), draw(st.sampled_from(list(ProtocolId))), size, tuple(spis)
    )


opaque = st.binary(min_size=1, max_size=64)
unknown_types = st.one_of(st.integers(15, 19), st.integers(22, 129), st.integers(133, 255))

payloads: st.SearchStrategy[Payload] = st.one_of(
    sa_payloads,
    st.builds(KePayload, opaque),
    id_payloads(),
    st.builds(CertPayload, st.integers(0, 255), st.binary(max_size=64)),
    st.builds(CertRequestPayload, st.integers(0, 255), st.binary(max_size=64)),
    st.builds(HashPayload, opaque),
    st.builds(SigPayload, opaque),
    st.builds(NoncePayload, st.binary(min_size=8, max_size=256)),
    notify_payloads(),
    delete_payloads(),
    st.builds(VendorIdPayload, opaque),
    st.builds(
        AttributePayload,
        st.integers(0, 255),
        st.integers(0, 0xFFFF),
        attributes(frozenset(), max_size=8).map(tuple),
    ),
    st.builds(NatDPayload, opaque, st.booleans()),
    st.builds(NatOaPayload, st.one_of(ipv4, ipv6), st.booleans()),
    st.builds(
        FragmentPayload,
        st.integers(0, 0xFFFF),
        st.integers(1, 255),
        st.booleans(),
        st.binary(min_size=1, max_size=64),
    ),
    st.builds(UnknownPayload, unknown_types, st.binary(max_size=32)),
)

cookies = st.binary(min_size=8, max_size=8)
icookies = cookies.filter(lambda c: any(c))
exchanges = st.sampled_from([e for e in ExchangeType if e is not ExchangeType.NONE])
plain_flags = st.sampled_from(
    [
        HeaderFlag.NONE,
        HeaderFlag.COMMIT,
        HeaderFlag.AUTHENTICATION_ONLY,
        HeaderFlag.COMMIT | HeaderFlag.AUTHENTICATION_ONLY,
    ]
)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    args = (draw(icookies), draw(cookies), draw(exchanges), draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        return build_message(*args, draw(st.lists(payloads, max_size=6)), flags=draw(plain_flags))
    blocks = draw(st.integers(1, 20))
    ciphertext = draw(st.binary(min_size=8 * blocks, max_size=8 * blocks))
    return build_encrypted_message(
        *args,
        draw(st.integers(0, 255)),
        ciphertext,
        flags=draw(plain_flags) | HeaderFlag.ENCRYPTION,
    )


# --- properties --------------------------------------------------------------------------


def _accepts_and_reencodes(data: bytes) -> None:
    """The contract for hostile input: IsakmpError, or a message that re-encodes to data."""
    try:
        message = decode_message(data)
    except IsakmpError as exc:
        assert isinstance(exc.notify, NotifyType)
        assert 0 <= exc.offset <= max(len(data), 16384)
        return
    assert encode_message(message) == data


@PROPERTY
@given(messages())
def test_message_round_trip(message: Message) -> None:
    data = encode_message(message)
    assert decode_message(data) == message
    assert encode_message(decode_message(data)) == data


@PROPERTY
@given(st.lists(payloads, min_size=1, max_size=6), st.binary(max_size=255))
def test_chain_round_trip_with_padding(items: list[Payload], padding: bytes) -> None:
    body = encode_payload_chain(items)
    first = items[0].payload_type
    assert decode_payload_chain(first, body, allow_padding=False) == tuple(items)
    assert decode_payload_chain(first, body + padding, allow_padding=True) == tuple(items)


@PROPERTY
@given(st.binary(max_size=600))
@example(b"")
@example(bytes(28))
def test_random_bytes_only_raise_isakmp_error(data: bytes) -> None:
    _accepts_and_reencodes(data)


@PROPERTY
@given(
    icookies,
    st.integers(0, 255),
    exchanges,
    st.integers(0, 7),
    st.binary(max_size=400),
)
def test_random_bodies_behind_a_valid_header(
    icookie: bytes, next_payload: int, exchange: int, flags: int, body: bytes
) -> None:
    header = struct.pack(
        "!8s8sBBBBII", icookie, bytes(8), next_payload, 0x10, exchange, flags, 0, 28 + len(body)
    )
    _accepts_and_reencodes(header + body)


@PROPERTY
@given(st.integers(0, 255), st.binary(max_size=400), st.booleans())
def test_random_chains_only_raise_isakmp_error(first: int, body: bytes, padding: bool) -> None:
    try:
        chain = decode_payload_chain(first, body, allow_padding=padding)
    except IsakmpError as exc:
        assert 0 <= exc.offset <= 28 + len(body)
        return
    encoded = encode_payload_chain(chain)
    assert body.startswith(encoded)
    assert len(body) - len(encoded) <= (255 if padding else 0)
    if chain:
        assert chain[0].payload_type == first


@PROPERTY
@given(st.sampled_from(CAPTURED), st.data())
def test_mutated_captures_only_raise_isakmp_error(original: bytes, data: st.DataObject) -> None:
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        action = data.draw(st.integers(0, 3))
        if action == 0 and mutated:  # change one byte
            index = data.draw(st.integers(0, len(mutated) - 1))
            mutated[index] = data.draw(st.integers(0, 255))
        elif action == 1 and mutated:  # truncate
            del mutated[data.draw(st.integers(0, len(mutated) - 1)) :]
        elif action == 2:  # insert bytes
            index = data.draw(st.integers(0, len(mutated)))
            mutated[index:index] = data.draw(st.binary(min_size=1, max_size=8))
        else:  # fix the header length after the other mutations, to reach the payloads
            if len(mutated) >= 28:
                mutated[24:28] = len(mutated).to_bytes(4, "big")
    assume(bytes(mutated) != original)
    _accepts_and_reencodes(bytes(mutated))
