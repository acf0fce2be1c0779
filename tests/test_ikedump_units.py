"""ikedump building blocks: the Vendor ID table, key input parsing, and the decryption
module's behaviour on its own (state untouched by a bad message)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikepriv.child_negotiator.core.hooks import SENT_VENDOR_IDS
from ikepriv.crypto.ciphers import IkeCipher
from ikepriv.crypto.oakley import IvChain
from ikepriv.dump.capture import LINK_TYPES, Datagram, FrameError, Skip, classify
from ikepriv.dump.decrypt import SaCrypto, VerificationError, verify_informational
from ikepriv.dump.keys import KeyInputError, KeyMaterial, parse_key_table, parse_selected
from ikepriv.isakmp import (
    HashPayload,
    IsakmpError,
    NotifyPayload,
    build_encrypted_message,
    encode_payload_chain,
)
from ikepriv.isakmp.constants import ExchangeType, IkeEncryption, IkeHash, PayloadType
from ikepriv.isakmp.header import Header
from ikepriv.isakmp.vendor_ids import vendor_id_name


def md5(text: bytes) -> bytes:
    return hashlib.md5(text, usedforsecurity=False).digest()


@pytest.mark.parametrize(
    ("vid", "name"),
    [
        (md5(b"RFC 3947"), "RFC 3947 NAT-T"),
        (md5(b"draft-ietf-ipsec-nat-t-ike-02\n"), "draft-ietf-ipsec-nat-t-ike-02\\n"),
        (md5(b"draft-ietf-ipsec-nat-t-ike-03"), "draft-ietf-ipsec-nat-t-ike-03"),
        (md5(b"strongSwan"), "strongSwan"),
        (md5(b"draft-ietf-ipsra-isakmp-xauth-06.txt")[:8], "XAUTH"),
        (md5(b"CISCO-UNITY")[:14] + b"\x01\x00", "Cisco Unity"),
        (md5(b"FRAGMENTATION"), "FRAGMENTATION"),
        (md5(b"FRAGMENTATION") + b"\x80\x00\x00\x00", "FRAGMENTATION"),
        (bytes.fromhex("afcad71368a1f1c96b8696fc77570100"), "DPD (RFC 3706)"),
    ],
)
def test_vendor_ids_are_the_digests_of_their_names(vid: bytes, name: str) -> None:
    assert vendor_id_name(vid) == name


def test_unknown_and_near_vendor_ids() -> None:
    assert vendor_id_name(bytes(16)) is None
    assert vendor_id_name(md5(b"RFC 3947")[:15]) is None  # exact entries match whole
    assert vendor_id_name(md5(b"strongSwan") + b"\x00") is None


def test_key_table_forms() -> None:
    table = parse_key_table(
        '# comment\n\n"7d206acae8f86092","a2b5e6549ad51656b93617f1353220d9"\n'
        " 650F101AD7A9E255 , 2faee27f80cdc708f64ed931a569dd57 \n"
    )
    assert table == {
        bytes.fromhex("7d206acae8f86092"): bytes.fromhex("a2b5e6549ad51656b93617f1353220d9"),
        bytes.fromhex("650f101ad7a9e255"): bytes.fromhex("2faee27f80cdc708f64ed931a569dd57"),
    }
    with pytest.raises(KeyInputError, match="second key"):
        parse_key_table("0102030405060708,00\n0102030405060708,01\n")


def test_selected_secrets_are_handed_out_by_selector_then_in_order() -> None:
    keys = KeyMaterial()
    keys.dh_secrets = [
        parse_selected("aa", "x", 8),
        parse_selected("0102030405060708=bb", "x", 8),
        parse_selected("0x cc:dd", "x", 8),
    ]
    assert keys.dh_secret_for(bytes.fromhex("0102030405060708")) == b"\xbb"
    assert keys.dh_secret_for(bytes(8)) == b"\xaa"
    assert keys.dh_secret_for(bytes(8)) == b"\xcc\xdd"
    assert keys.dh_secret_for(bytes(8)) is None
    keys.qm_dh_secrets = [parse_selected("9d35f1a0=ee", "x", 4)]
    assert keys.qm_dh_secret_for(0x230CD28A) is None
    assert keys.qm_dh_secret_for(0x9D35F1A0) == b"\xee"


ICOOKIE, RCOOKIE = bytes.fromhex("0102030405060708"), bytes.fromhex("1112131415161718")


def _crypto() -> SaCrypto:
    cipher = IkeCipher(IkeEncryption.AES_CBC, bytes(range(16)))
    return SaCrypto(cipher, IvChain(IkeHash.SHA2_256, 16, bytes(16)))


def _informational(crypto: SaCrypto, mid: int, plaintext: bytes) -> tuple[Header, bytes]:
    iv = crypto.ivs.iv_for(mid)
    padded = plaintext + bytes(-len(plaintext) % 16)
    ciphertext = crypto.cipher.encrypt(iv, padded)
    message = build_encrypted_message(
        ICOOKIE, RCOOKIE, ExchangeType.INFORMATIONAL, mid, PayloadType.HASH, ciphertext
    )
    return message.header, ciphertext


def test_open_leaves_the_iv_chain_alone_and_accept_advances_it() -> None:
    crypto = _crypto()
    notify = NotifyPayload.dpd(ICOOKIE + RCOOKIE, 7)
    chain = encode_payload_chain([HashPayload(bytes(32)), notify])
    header, ciphertext = _informational(crypto, 5, chain)
    before = crypto.ivs.iv_for(5)
    opened = crypto.open(header, ciphertext)
    assert opened.payloads[1] == notify
    assert opened.after_first_payload() == chain[36:]
    assert crypto.ivs.iv_for(5) == before
    crypto.accept(header, ciphertext)
    assert crypto.ivs.iv_for(5) == ciphertext[-16:]


def test_garbage_plaintext_is_an_isakmp_error_with_offset_in_message_terms() -> None:
    crypto = _crypto()
    header, ciphertext = _informational(crypto, 9, b"\x0b\x01" + bytes(30))  # RESERVED set
    with pytest.raises(IsakmpError) as info:
        crypto.open(header, ciphertext)
    assert info.value.offset == 28 + 1


def test_informational_hash_without_keys_material_mismatch_is_named() -> None:
    from ikepriv.crypto.oakley import Phase1Keys, informational_hash

    keys = Phase1Keys(
        IkeHash.SHA2_256, bytearray(32), bytearray(32), bytearray(b"a" * 32), bytearray(32),
        bytearray(16),
    )  # fmt: skip
    crypto = _crypto()
    notify = encode_payload_chain([NotifyPayload.dpd(ICOOKIE + RCOOKIE, 1)])
    good = informational_hash(IkeHash.SHA2_256, b"a" * 32, 3, notify)
    for hash_value, ok in ((good, True), (bytes(32), False)):
        chain = encode_payload_chain(
            [HashPayload(hash_value), NotifyPayload.dpd(ICOOKIE + RCOOKIE, 1)]
        )
        header, ciphertext = _informational(crypto, 3, chain)
        opened = crypto.open(header, ciphertext)
        if ok:
            verify_informational(keys, 3, opened)
        else:
            with pytest.raises(VerificationError, match="HASH\\(1\\) mismatch"):
                verify_informational(keys, 3, opened)


# --- hostile frames ----------------------------------------------------------------------


_UDP_500 = bytes.fromhex("01f401f4")


@settings(max_examples=400, deadline=None)
@given(
    linktype=st.sampled_from(sorted(LINK_TYPES)),
    frame=st.one_of(
        st.binary(max_size=120),
        # steer towards IPv4/IPv6 UDP 500/4500 headers with random lengths
        st.builds(
            lambda ver, rest, ports, tail: bytes([ver]) + rest + ports + tail,
            st.sampled_from([0x45, 0x46, 0x60]),
            st.binary(min_size=19, max_size=39),
            st.sampled_from([_UDP_500, bytes.fromhex("11941194")]),
            st.binary(max_size=80),
        ),
    ),
)
def test_classify_never_fails_other_than_frame_error(linktype: int, frame: bytes) -> None:
    try:
        result = classify(1, 0.0, frame, linktype)
    except FrameError as exc:
        assert exc.reason
        assert -1 <= exc.offset <= len(frame) + 65535
        return
    assert isinstance(result, Skip | Datagram)
    if isinstance(result, Datagram):
        assert 0 <= result.message_offset <= len(frame)
        assert frame[result.message_offset :].startswith(result.message)


def test_the_vendor_ids_we_send_are_in_the_shared_table() -> None:
    names = {vendor_id_name(vid) for vid in SENT_VENDOR_IDS}
    assert names == {"DPD (RFC 3706)", "RFC 3947 NAT-T"}
