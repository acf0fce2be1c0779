"""Real strongSwan 5.9.8 captures (tests/data/*.pcap): decode, re-encode, decrypt and decode.

Expected values were read off a tshark dissection of the same captures. The encrypted
messages are decrypted here with the keys strongSwan logged (tests/data/*.keys) and plain
AES-CBC from `cryptography`, so decode_payload_chain meets real plaintext with real padding.
"""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

import dpkt
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ikepriv.isakmp import (
    HashPayload,
    IdPayload,
    IsakmpError,
    KePayload,
    Message,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    SAPayload,
    VendorIdPayload,
    decode_header,
    decode_message,
    decode_payload_chain,
    encode_message,
    encode_payload_chain,
    ike_attributes_to_dict,
    ike_lifetimes,
    ipsec_attributes_to_dict,
    ipsec_lifetimes,
    isakmp_from_udp,
)
from ikepriv.isakmp.constants import (
    NATT_PORT,
    NON_ESP_MARKER,
    AuthAlgorithm,
    AuthMethod,
    EncapsulationMode,
    EspTransformId,
    ExchangeType,
    GroupId,
    HeaderFlag,
    IdType,
    IkeAttr,
    IkeEncryption,
    IkeHash,
    IkeTransformId,
    IpsecAttr,
    LifeType,
    NotifyType,
    PayloadType,
    ProtocolId,
)

DATA = Path(__file__).resolve().parent / "data"

VID_XAUTH = bytes.fromhex("09002689dfd6b712")
VID_DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")
VID_CISCO_FRAG = bytes.fromhex("4048b7d56ebce88525e7de7f00d6c2d380000000")
VID_RFC3947 = bytes.fromhex("4a131c81070358455c5728f20e95452f")
VID_NATT_DRAFT_02N = bytes.fromhex("90cb80913ebb696e086381b5ec427b1f")

MM_ICOOKIE = bytes.fromhex("7d206acae8f86092")
MM_RCOOKIE = bytes.fromhex("1628f85793ce9831")
MM_KA = bytes.fromhex("a2b5e6549ad51656b93617f1353220d9")
MM_IV = bytes.fromhex("4c4d751c2c16a5cb2549917cc6c92698")
MM_QM_MSGID = 0x230CD28A
AM_ICOOKIE = bytes.fromhex("650f101ad7a9e255")
AM_RCOOKIE = bytes.fromhex("4269e8d435650794")
AM_KA = bytes.fromhex("2faee27f80cdc708f64ed931a569dd57")
AM_IV = bytes.fromhex("4914eebe5b2cadcaf11b75b6ebd9f5aa")


def udp_payloads(name: str) -> list[tuple[int, bytes]]:
    """(destination port, ISAKMP message) of every UDP datagram in a capture."""
    out = []
    with open(DATA / name, "rb") as handle:
        for _ts, frame in dpkt.pcap.Reader(handle):
            udp = dpkt.ethernet.Ethernet(frame).data.data
            payload = bytes(udp.data)
            if udp.dport == NATT_PORT:
                assert payload[:4] == NON_ESP_MARKER
            message = isakmp_from_udp(udp.dport, payload)
            assert message is not None
            out.append((udp.dport, message))
    return out


def decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


@pytest.fixture(scope="module")
def mm() -> list[tuple[int, bytes]]:
    return udp_payloads("mm_qm_psk.pcap")


@pytest.fixture(scope="module")
def am() -> list[tuple[int, bytes]]:
    return udp_payloads("am_qm_psk.pcap")


def test_main_mode_capture_shape(mm: list[tuple[int, bytes]]) -> None:
    assert [port for port, _ in mm] == [500] * 4 + [4500] * 5
    assert [len(data) for _, data in mm] == [180, 160, 396, 396, 108, 92, 444, 444, 76]


@pytest.mark.parametrize("name", ["mm_qm_psk.pcap", "am_qm_psk.pcap"])
def test_every_message_decodes_and_reencodes_identically(name: str) -> None:
    for _port, data in udp_payloads(name):
        message = decode_message(data)
        assert encode_message(message) == data
        assert decode_header(data) == message.header


def test_mm1_sa_and_vendor_ids(mm: list[tuple[int, bytes]]) -> None:
    message = decode_message(mm[0][1])
    header = message.header
    assert (header.icookie, header.rcookie) == (MM_ICOOKIE, bytes(8))
    assert header.exchange_type is ExchangeType.IDENTITY_PROTECTION
    assert header.flags == HeaderFlag.NONE and header.message_id == 0 and header.length == 180
    assert header.next_payload == PayloadType.SA
    sa, *vids = message.payloads
    assert isinstance(sa, SAPayload)
    assert (sa.doi, sa.situation) == (1, 1)
    (proposal,) = sa.proposals
    assert (proposal.number, proposal.protocol_id, proposal.spi) == (1, ProtocolId.ISAKMP, b"")
    (transform,) = proposal.transforms
    assert (transform.number, transform.transform_id) == (1, IkeTransformId.KEY_IKE)
    assert all(attr.tv for attr in transform.attributes)
    assert ike_attributes_to_dict(transform.attributes) == {
        IkeAttr.ENCRYPTION_ALGORITHM: IkeEncryption.AES_CBC,
        IkeAttr.KEY_LENGTH: 128,
        IkeAttr.HASH_ALGORITHM: IkeHash.SHA2_256,
        IkeAttr.GROUP_DESCRIPTION: GroupId.MODP_2048,
        IkeAttr.AUTHENTICATION_METHOD: AuthMethod.PRE_SHARED_KEY,
    }
    assert ike_lifetimes(transform.attributes) == ((LifeType.SECONDS, 15840),)
    assert vids == [
        VendorIdPayload(VID_XAUTH),
        VendorIdPayload(VID_DPD),
        VendorIdPayload(VID_CISCO_FRAG),
        VendorIdPayload(VID_RFC3947),
        VendorIdPayload(VID_NATT_DRAFT_02N),
    ]


def test_mm2_responder_cookie(mm: list[tuple[int, bytes]]) -> None:
    message = decode_message(mm[1][1])
    assert message.header.rcookie == MM_RCOOKIE
    assert isinstance(message.payloads[0], SAPayload)
    assert len(message.payloads) == 5


def test_mm3_ke_nonce_natd(mm: list[tuple[int, bytes]]) -> None:
    ke, nonce, natd1, natd2 = decode_message(mm[2][1]).payloads
    assert isinstance(ke, KePayload) and len(ke.data) == 256
    assert ke.data.startswith(bytes.fromhex("03755256e7350bce2a76cbb47b90fc0d"))
    assert nonce == NoncePayload(
        bytes.fromhex("ff20aaaf81017bde0caf05b5713b6516b1e623ee3242ab6ae20d5ceb5de6015d")
    )
    assert natd1 == NatDPayload(
        bytes.fromhex("bb127494dc7c90af02effb4d1fc2d2673c5e337cad508dc4d6eddc2bb7dc6e62")
    )
    assert natd2 == NatDPayload(
        bytes.fromhex("195611cb66bbed9a541517c213675144c70f14de8d0c82378d237775e83c4feb")
    )
    assert natd1.payload_type == PayloadType.NAT_D


def test_encrypted_messages_keep_ciphertext(mm: list[tuple[int, bytes]]) -> None:
    for _port, data in mm[4:]:
        message = decode_message(data)
        assert message.encrypted and message.payloads == ()
        assert message.ciphertext == data[28:]
    assert decode_message(mm[4][1]).header.next_payload == PayloadType.ID
    qm1 = decode_message(mm[6][1]).header
    assert qm1.exchange_type is ExchangeType.QUICK_MODE and qm1.message_id == MM_QM_MSGID
    assert qm1.next_payload == PayloadType.HASH


def _plaintexts(messages: list[Message], key: bytes, iv: bytes) -> list[bytes]:
    """Decrypt MM5, MM6 (CBC chained from the phase 1 IV) and QM1-3 (RFC 2409 App. B IV)."""
    mm5, mm6, qm1, qm2, qm3 = messages
    out = [decrypt(key, iv, mm5.ciphertext)]
    out.append(decrypt(key, mm5.ciphertext[-16:], mm6.ciphertext))
    msgid = qm1.header.message_id.to_bytes(4, "big")
    qm_iv = hashlib.sha256(mm6.ciphertext[-16:] + msgid).digest()[:16]
    out.append(decrypt(key, qm_iv, qm1.ciphertext))
    out.append(decrypt(key, qm1.ciphertext[-16:], qm2.ciphertext))
    out.append(decrypt(key, qm2.ciphertext[-16:], qm3.ciphertext))
    return out


def test_decrypted_main_and_quick_mode(mm: list[tuple[int, bytes]]) -> None:
    messages = [decode_message(data) for _port, data in mm[4:]]
    plaintexts = _plaintexts(messages, MM_KA, MM_IV)
    chains = [
        decode_payload_chain(m.header.next_payload, p, allow_padding=True)
        for m, p in zip(messages, plaintexts, strict=True)
    ]
    id_i, hash_i, contact = chains[0]
    assert id_i == IdPayload(IdType.IPV4_ADDR, 0, 0, bytes([192, 0, 2, 1]))
    assert id_i.value == ipaddress.IPv4Address("192.0.2.1")
    assert hash_i == HashPayload(
        bytes.fromhex("614117fd90595bccbed0925e10c487c6cd3ff1fcf1198098e155dd71f52b275d")
    )
    assert contact == NotifyPayload(
        1, ProtocolId.ISAKMP, MM_ICOOKIE + MM_RCOOKIE, NotifyType.INITIAL_CONTACT, b""
    )
    id_r, hash_r = chains[1]
    assert id_r.value == ipaddress.IPv4Address("192.0.2.2")  # type: ignore[union-attr]
    assert hash_r == HashPayload(
        bytes.fromhex("0e24a521e12a67fce0902d922da0ba28d2435fdf827421c5349affe5cf90b104")
    )

    qm_hash, sa, nonce, ke, idci, idcr = chains[2]
    assert qm_hash == HashPayload(
        bytes.fromhex("4baef1c292ea654786563149f1102ac8a8a7a8f34ffe846e707dda3643e8eafb")
    )
    assert isinstance(sa, SAPayload)
    (proposal,) = sa.proposals
    assert proposal.protocol_id is ProtocolId.IPSEC_ESP
    assert proposal.spi == bytes.fromhex("4f4b389a")
    (transform,) = proposal.transforms
    assert transform.transform_id == EspTransformId.AES_CBC
    assert ipsec_attributes_to_dict(transform.attributes) == {
        IpsecAttr.KEY_LENGTH: 128,
        IpsecAttr.AUTHENTICATION_ALGORITHM: AuthAlgorithm.HMAC_SHA2_256,
        IpsecAttr.GROUP_DESCRIPTION: GroupId.MODP_2048,
        IpsecAttr.ENCAPSULATION_MODE: EncapsulationMode.UDP_ENCAPSULATED_TUNNEL,
    }
    assert ipsec_lifetimes(transform.attributes) == ((LifeType.SECONDS, 3960),)
    assert nonce == NoncePayload(
        bytes.fromhex("9f6f4863e4752d472f8fa1f73e29dd97c431b9c71241318145c0446642d6843f")
    )
    assert isinstance(ke, KePayload) and len(ke.data) == 256
    assert idci == IdPayload.address("198.51.100.1")
    assert idcr == IdPayload.address("203.0.113.1")

    qm2_sa = chains[3][1]
    assert isinstance(qm2_sa, SAPayload)
    assert qm2_sa.proposals[0].spi == bytes.fromhex("1ad706e6")
    assert chains[4] == (
        HashPayload(
            bytes.fromhex("8acf1bff2cc4c6cf7e124ba7ded432727438456c7c80ceeb264cba1e980b423e")
        ),
    )

    # Padding: strongSwan pads with zeros (4, 16, ..., 12 bytes here); the chain re-encodes
    # to the plaintext minus exactly that padding, and strict mode refuses the padding.
    for chain, plaintext, pad in zip(chains, plaintexts, (4, 16, 4, 4, 12), strict=True):
        encoded = encode_payload_chain(chain)
        assert plaintext == encoded + bytes(pad)
    with pytest.raises(IsakmpError) as info:
        decode_payload_chain(messages[0].header.next_payload, plaintexts[0], allow_padding=False)
    assert info.value.notify == NotifyType.UNEQUAL_PAYLOAD_LENGTHS
    assert info.value.offset == 28 + 76


def test_aggressive_mode(am: list[tuple[int, bytes]]) -> None:
    am1 = decode_message(am[0][1])
    assert am1.header.icookie == AM_ICOOKIE
    assert am1.header.exchange_type is ExchangeType.AGGRESSIVE
    assert [p.payload_type for p in am1.payloads] == [1, 4, 10, 5, 13, 13, 13, 13, 13]
    assert am1.payloads[3] == IdPayload.address("192.0.2.1")
    am2 = decode_message(am[1][1])
    assert am2.header.rcookie == AM_RCOOKIE
    assert am2.payloads[3] == IdPayload.address("192.0.2.2")
    assert am2.payloads[-1] == HashPayload(
        bytes.fromhex("fe8ec3d789b6b7622217f75a47c82c634a11cf0cd09b4873f4711c0b79652957")
    )
    am3 = decode_message(am[2][1])
    assert am3.encrypted and am3.header.exchange_type is ExchangeType.AGGRESSIVE
    plaintext = decrypt(AM_KA, AM_IV, am3.ciphertext)
    chain = decode_payload_chain(am3.header.next_payload, plaintext, allow_padding=True)
    assert chain[0] == HashPayload(
        bytes.fromhex("db5ab6442782c9be7566ab8a4ef1959a0f195bdbe0ec4109ebba79847de7b5d2")
    )
    assert [type(p) for p in chain[1:]] == [NatDPayload, NatDPayload]
