"""Behaviour of the crypto building blocks: rejects, bounds, IV bookkeeping, key tables."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ikepriv.crypto import ciphers, oakley
from ikepriv.crypto.crypto_errors import InvalidInput, InvalidKeyLength, UnsupportedAlgorithm
from ikepriv.crypto.keymat import (
    AH_TRANSFORMS,
    ESP_CIPHERS,
    INTEGRITY,
    ah_layout,
    derive_sa_keys,
    esp_layout,
    keymat,
)
from ikepriv.crypto.prf import HASHES, digest, digests_equal, hash_spec, nat_d_hash, prf
from ikepriv.isakmp.constants import (
    AhTransformId,
    AuthAlgorithm,
    EspTransformId,
    IkeEncryption,
    IkeHash,
    ProtocolId,
)

CKY_I, CKY_R = bytes(range(8)), bytes(range(8, 16))
NI, NR = b"\x11" * 16, b"\x22" * 16

# ------------------------------------------------------------------ prf / hashes


def test_prf_table_is_rfc2104_hmac() -> None:
    # RFC 4231 test case 2 (HMAC-SHA-256, key "Jefe")
    out = prf(IkeHash.SHA2_256, b"Jefe", b"what do ya want for nothing?")
    assert out.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    for alg, spec in HASHES.items():
        assert len(prf(alg, b"k", b"m")) == spec.digest_size
        assert digest(alg, b"abc") == hashlib.new(spec.hashlib_name, b"abc").digest()


def test_unimplemented_hash_is_refused() -> None:
    with pytest.raises(UnsupportedAlgorithm):
        hash_spec(IkeHash.TIGER)
    with pytest.raises(UnsupportedAlgorithm):
        prf(99, b"k", b"m")


def test_digests_equal() -> None:
    assert digests_equal(b"abc", bytearray(b"abc"))
    assert not digests_equal(b"abc", b"abd")
    assert not digests_equal(b"abc", b"ab")


def test_nat_d_rejects_bad_inputs() -> None:
    with pytest.raises(InvalidInput):
        nat_d_hash(IkeHash.SHA, b"short", CKY_R, b"\x00" * 4, 500)
    with pytest.raises(InvalidInput):
        nat_d_hash(IkeHash.SHA, CKY_I, CKY_R, b"\x00" * 5, 500)
    with pytest.raises(InvalidInput):
        nat_d_hash(IkeHash.SHA, CKY_I, CKY_R, b"\x00" * 16, 65536)
    v6 = nat_d_hash(IkeHash.SHA, CKY_I, CKY_R, b"\x20\x01\x0d\xb8" + bytes(12), 4500)
    assert v6 == digest(IkeHash.SHA, CKY_I + CKY_R + b"\x20\x01\x0d\xb8" + bytes(12) + b"\x11\x94")


# ------------------------------------------------------------------ phase 1 ciphers


def test_key_length_rules() -> None:
    assert ciphers.key_length_bytes(IkeEncryption.AES_CBC, 256) == 32
    assert ciphers.key_length_bytes(IkeEncryption.TRIPLE_DES_CBC, None) == 24
    assert ciphers.key_length_bytes(IkeEncryption.TRIPLE_DES_CBC, 192) == 24
    with pytest.raises(InvalidKeyLength):
        ciphers.key_length_bytes(IkeEncryption.AES_CBC, None)
    with pytest.raises(InvalidKeyLength):
        ciphers.key_length_bytes(IkeEncryption.AES_CBC, 512)
    with pytest.raises(InvalidKeyLength):
        ciphers.key_length_bytes(IkeEncryption.TRIPLE_DES_CBC, 128)
    with pytest.raises(UnsupportedAlgorithm):
        ciphers.key_length_bytes(IkeEncryption.DES_CBC, None)
    with pytest.raises(UnsupportedAlgorithm):
        ciphers.cipher_spec(200)


def test_cipher_rejects_bad_shapes() -> None:
    with pytest.raises(InvalidKeyLength):
        ciphers.IkeCipher(IkeEncryption.AES_CBC, bytes(15))
    with pytest.raises(InvalidKeyLength):
        ciphers.IkeCipher(IkeEncryption.TRIPLE_DES_CBC, bytes(16))
    c = ciphers.IkeCipher(IkeEncryption.AES_CBC, bytes(16))
    with pytest.raises(InvalidInput):
        c.encrypt(bytes(8), bytes(16))  # IV of the wrong size
    with pytest.raises(InvalidInput):
        c.decrypt(bytes(16), bytes(17))  # not whole blocks
    with pytest.raises(InvalidInput):
        c.decrypt(bytes(16), b"")


def test_wipe_makes_cipher_unusable() -> None:
    c = ciphers.IkeCipher(IkeEncryption.TRIPLE_DES_CBC, bytes(range(24)))
    ct = c.encrypt(bytes(8), bytes(16))
    c.wipe()
    with pytest.raises(InvalidInput):
        c.decrypt(bytes(8), ct)


@given(
    alg_key=st.sampled_from(
        [
            (IkeEncryption.AES_CBC, 16),
            (IkeEncryption.AES_CBC, 24),
            (IkeEncryption.AES_CBC, 32),
            (IkeEncryption.TRIPLE_DES_CBC, 24),
        ]
    ),
    data=st.data(),
)
def test_cipher_round_trip(alg_key: tuple[IkeEncryption, int], data: st.DataObject) -> None:
    alg, key_len = alg_key
    key = data.draw(st.binary(min_size=key_len, max_size=key_len))
    c = ciphers.IkeCipher(alg, key)
    iv = data.draw(st.binary(min_size=c.block_size, max_size=c.block_size))
    message = data.draw(st.binary(max_size=200))
    padded = ciphers.pad_plaintext(message, c.block_size)
    assert len(padded) % c.block_size == 0 and len(padded) - len(message) < c.block_size
    assert padded[len(message) :] == bytes(len(padded) - len(message))
    if not padded:
        return
    ct = c.encrypt(iv, padded)
    assert len(ct) == len(padded)
    assert c.decrypt(iv, ct) == padded
    assert ciphers.last_block(ct, c.block_size) == ct[-c.block_size :]


def test_pad_plaintext_aligned_is_unchanged() -> None:
    assert ciphers.pad_plaintext(bytes(32), 16) == bytes(32)
    assert ciphers.pad_plaintext(b"x", 8) == b"x" + bytes(7)


# ------------------------------------------------------------------ phase 1 keys


def test_fixed_length_secret_keeps_leading_zeros() -> None:
    short = b"\x01\x02"
    assert oakley.fixed_length_secret(short, 4) == b"\x00\x00\x01\x02"
    with pytest.raises(InvalidInput):
        oakley.fixed_length_secret(bytes(5), 4)
    # The leading zero changes every key: dropping it would break interoperability.
    skeyid = bytes(20)
    with_zero = oakley.derive_phase1_keys(IkeHash.SHA, skeyid, b"\x00\x01\x02", CKY_I, CKY_R, 16)
    without = oakley.derive_phase1_keys(IkeHash.SHA, skeyid, b"\x01\x02", CKY_I, CKY_R, 16)
    assert with_zero.skeyid_d != without.skeyid_d


def test_phase1_keys_wipe_and_repr() -> None:
    keys = oakley.derive_phase1_keys(IkeHash.SHA2_256, bytes(32), b"\x05" * 256, CKY_I, CKY_R, 32)
    assert keys.skeyid_e.hex() not in repr(keys) and keys.enc_key.hex() not in repr(keys)
    assert bytes(keys.enc_key) == bytes(keys.skeyid_e)  # 32 <= 32: truncation, no expansion
    keys.wipe()
    for buf in (keys.skeyid, keys.skeyid_d, keys.skeyid_a, keys.skeyid_e, keys.enc_key):
        assert buf == bytearray(len(buf)) and len(buf) > 0


def test_phase1_inputs_are_bounded() -> None:
    with pytest.raises(InvalidInput):
        oakley.skeyid_psk(IkeHash.SHA, b"psk", b"\x01" * 7, NR)  # nonce below 8 bytes
    with pytest.raises(InvalidInput):
        oakley.skeyid_psk(IkeHash.SHA, b"psk", NI, b"\x01" * 257)
    with pytest.raises(InvalidInput):
        oakley.skeyid_psk(IkeHash.SHA, b"", NI, NR)
    with pytest.raises(InvalidInput):
        oakley.derive_phase1_keys(IkeHash.SHA, bytes(20), bytes(32), CKY_I[:7], CKY_R, 16)
    with pytest.raises(InvalidInput):
        oakley.derive_phase1_keys(IkeHash.SHA, bytes(20), b"", CKY_I, CKY_R, 16)
    with pytest.raises(InvalidInput):
        oakley.expand_encryption_key(IkeHash.SHA, bytes(20), 0)
    with pytest.raises(InvalidInput):
        oakley.encode_message_id(1 << 32)


def test_hash_r_swaps_the_initiator_and_responder_fields() -> None:
    gxi, gxr, sa, idb = b"\x01" * 128, b"\x02" * 128, b"sa-body", b"id-body"
    args = (IkeHash.SHA, b"k" * 20, gxi, gxr, CKY_I, CKY_R, sa, idb)
    assert oakley.hash_r(*args) == prf(IkeHash.SHA, b"k" * 20, gxr + gxi + CKY_R + CKY_I + sa + idb)
    assert oakley.hash_i(*args) == prf(IkeHash.SHA, b"k" * 20, gxi + gxr + CKY_I + CKY_R + sa + idb)


# ------------------------------------------------------------------ IV chain


def make_chain(max_exchanges: int = 8) -> oakley.IvChain:
    return oakley.IvChain.from_public_values(
        IkeHash.SHA, 8, b"\x01" * 128, b"\x02" * 128, max_exchanges
    )


def test_iv_for_has_no_side_effect() -> None:
    chain = make_chain()
    first = chain.iv_for(0)
    assert first == digest(IkeHash.SHA, b"\x01" * 128 + b"\x02" * 128)[:8]
    qm = chain.iv_for(77)
    assert chain.iv_for(77) == qm and chain.iv_for(0) == first
    assert chain.active_exchanges() == ()  # reading did not create state


def test_exchanges_chain_independently() -> None:
    chain = make_chain()
    p1_end = chain.iv_for(0)
    chain.advance(5, b"A" * 8 + b"B" * 8)
    assert chain.iv_for(5) == b"B" * 8
    assert chain.iv_for(0) == p1_end  # phase 1 untouched
    # a second exchange starts from the phase 1 block, not from exchange 5
    assert chain.iv_for(6) == oakley.phase2_iv(IkeHash.SHA, p1_end, 6, 8)
    chain.advance(0, b"C" * 8)
    # a new exchange now derives from the new phase 1 end; exchange 5 keeps its own chain
    assert chain.iv_for(7) == oakley.phase2_iv(IkeHash.SHA, b"C" * 8, 7, 8)
    assert chain.iv_for(5) == b"B" * 8
    chain.forget(5)
    assert chain.iv_for(5) == oakley.phase2_iv(IkeHash.SHA, b"C" * 8, 5, 8)


def test_phase2_state_is_bounded() -> None:
    chain = make_chain(max_exchanges=3)
    for mid in range(1, 6):
        chain.advance(mid, bytes([mid]) * 8)
    assert chain.active_exchanges() == (3, 4, 5)
    chain.advance(3, b"\x09" * 8)  # most recently used moves to the end
    chain.advance(6, b"\x06" * 8)
    assert chain.active_exchanges() == (5, 3, 6)


def test_iv_chain_rejects_bad_inputs() -> None:
    chain = make_chain()
    with pytest.raises(InvalidInput):
        chain.advance(1, bytes(12))
    with pytest.raises(InvalidInput):
        chain.advance(1, b"")
    with pytest.raises(InvalidInput):
        chain.iv_for(-1)
    with pytest.raises(InvalidInput):
        oakley.IvChain(IkeHash.MD5, 16, bytes(8))
    with pytest.raises(InvalidInput):
        oakley.IvChain(IkeHash.MD5, 32, bytes(32))  # MD5 output cannot fill a 32-byte block


@given(messages=st.lists(st.tuples(st.sampled_from([0, 1, 2]), st.binary(max_size=64)), max_size=8))
def test_two_peers_stay_in_step(messages: list[tuple[int, bytes]]) -> None:
    """Sender and receiver chains, each advanced after its own side of every message, decrypt
    an interleaving of phase 1 and two phase 2 exchanges."""
    cipher = ciphers.IkeCipher(IkeEncryption.AES_CBC, bytes(range(16)))
    sender = oakley.IvChain(IkeHash.SHA2_256, 16, bytes(16))
    receiver = oakley.IvChain(IkeHash.SHA2_256, 16, bytes(16))
    for mid, payload in messages:
        pt = ciphers.pad_plaintext(payload + b"\x01", 16)
        ct = cipher.encrypt(sender.iv_for(mid), pt)
        sender.advance(mid, ct)
        assert cipher.decrypt(receiver.iv_for(mid), ct) == pt
        receiver.advance(mid, ct)


# ------------------------------------------------------------------ phase 2 hashes


def test_quick_mode_hash_inputs() -> None:
    k = b"a" * 32
    mid = 0x01020304
    alg = IkeHash.SHA2_256
    assert oakley.quick_mode_hash1(alg, k, mid, b"rest") == prf(alg, k, b"\x01\x02\x03\x04rest")
    assert oakley.quick_mode_hash2(alg, k, mid, NI, b"rest") == prf(
        alg, k, b"\x01\x02\x03\x04" + NI + b"rest"
    )
    assert oakley.quick_mode_hash3(alg, k, mid, NI, NR) == prf(
        alg, k, b"\x00\x01\x02\x03\x04" + NI + NR
    )
    assert oakley.informational_hash(alg, k, mid, b"N") == prf(alg, k, b"\x01\x02\x03\x04N")


# ------------------------------------------------------------------ phase 2 table and KEYMAT


def test_integrity_table_matches_hash_sizes() -> None:
    sizes = {
        AuthAlgorithm.HMAC_MD5: ("md5", 96),
        AuthAlgorithm.HMAC_SHA: ("sha1", 96),
        AuthAlgorithm.HMAC_SHA2_256: ("sha256", 128),
        AuthAlgorithm.HMAC_SHA2_384: ("sha384", 192),
        AuthAlgorithm.HMAC_SHA2_512: ("sha512", 256),
    }
    assert set(INTEGRITY) == set(sizes)
    for auth, (name, trunc) in sizes.items():
        spec = INTEGRITY[auth]
        assert spec.key_bytes == hashlib.new(name).digest_size
        assert spec.xfrm_name == f"hmac({name})"
        assert spec.truncation_bits == trunc
    for transform, auth in AH_TRANSFORMS.items():
        assert ah_layout(transform, auth).integ_key_bytes == INTEGRITY[auth].key_bytes


def test_esp_layouts() -> None:
    gcm = esp_layout(EspTransformId.AES_GCM_16, 256, None)
    assert gcm.cipher is not None
    assert (gcm.enc_key_bytes, gcm.integ_key_bytes) == (36, 0)  # key | 4-byte salt
    assert (gcm.cipher.xfrm_name, gcm.cipher.icv_bits) == ("rfc4106(gcm(aes))", 128)
    assert ESP_CIPHERS[EspTransformId.AES_GCM_8].icv_bits == 64
    assert ESP_CIPHERS[EspTransformId.AES_GCM_12].icv_bits == 96
    tdes = esp_layout(EspTransformId.TRIPLE_DES, None, AuthAlgorithm.HMAC_SHA)
    assert tdes.cipher is not None and tdes.cipher.xfrm_name == "cbc(des3_ede)"
    assert (tdes.enc_key_bytes, tdes.integ_key_bytes, tdes.total) == (24, 20, 44)
    cbc = esp_layout(EspTransformId.AES_CBC, 192, AuthAlgorithm.HMAC_SHA2_512)
    assert (cbc.enc_key_bytes, cbc.integ_key_bytes) == (24, 64)
    assert cbc.protocol == ProtocolId.IPSEC_ESP


@pytest.mark.parametrize(
    ("transform", "bits", "auth", "error"),
    [
        (EspTransformId.AES_CBC, None, AuthAlgorithm.HMAC_SHA, InvalidKeyLength),
        (EspTransformId.AES_CBC, 64, AuthAlgorithm.HMAC_SHA, InvalidKeyLength),
        (EspTransformId.AES_CBC, 128, None, UnsupportedAlgorithm),
        (EspTransformId.AES_GCM_16, 128, AuthAlgorithm.HMAC_SHA, UnsupportedAlgorithm),
        (EspTransformId.TRIPLE_DES, 128, AuthAlgorithm.HMAC_SHA, InvalidKeyLength),
        (EspTransformId.DES, None, AuthAlgorithm.HMAC_SHA, UnsupportedAlgorithm),
        (EspTransformId.NULL, None, AuthAlgorithm.HMAC_SHA, UnsupportedAlgorithm),
        (EspTransformId.AES_CBC, 128, AuthAlgorithm.DES_MAC, UnsupportedAlgorithm),
        (250, 128, AuthAlgorithm.HMAC_SHA, UnsupportedAlgorithm),
    ],
)
def test_esp_layout_refusals(
    transform: int, bits: int | None, auth: AuthAlgorithm | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        esp_layout(transform, bits, auth)


def test_ah_layout_refuses_mismatched_attribute() -> None:
    layout = ah_layout(AhTransformId.SHA2_256, AuthAlgorithm.HMAC_SHA2_256)
    assert layout.protocol == ProtocolId.IPSEC_AH and layout.enc_key_bytes == 0
    with pytest.raises(UnsupportedAlgorithm):
        ah_layout(AhTransformId.SHA2_256, AuthAlgorithm.HMAC_SHA)
    with pytest.raises(UnsupportedAlgorithm):
        ah_layout(AhTransformId.DES, AuthAlgorithm.DES_MAC)


@given(length=st.integers(min_value=1, max_value=200))
def test_keymat_length_and_prefix(length: int) -> None:
    spi = b"\x00\x00\x10\x01"
    full = keymat(IkeHash.SHA, b"d" * 20, ProtocolId.IPSEC_ESP, spi, NI, NR, 200)
    part = keymat(IkeHash.SHA, b"d" * 20, ProtocolId.IPSEC_ESP, spi, NI, NR, length)
    assert len(part) == length and full[:length] == part


def test_keymat_binds_spi_protocol_and_pfs() -> None:
    base = (IkeHash.SHA2_256, b"d" * 32)
    esp = keymat(*base, ProtocolId.IPSEC_ESP, b"\x00\x00\x00\x01", NI, NR, 48)
    assert esp != keymat(*base, ProtocolId.IPSEC_ESP, b"\x00\x00\x00\x02", NI, NR, 48)
    assert esp != keymat(*base, ProtocolId.IPSEC_AH, b"\x00\x00\x00\x01", NI, NR, 48)
    assert esp != keymat(*base, ProtocolId.IPSEC_ESP, b"\x00\x00\x00\x01", NI, NR, 48, b"\x07")
    assert esp[:32] == prf(*base, b"\x03\x00\x00\x00\x01" + NI + NR)
    with pytest.raises(InvalidInput):
        keymat(*base, ProtocolId.IPSEC_ESP, b"\x00\x01", NI, NR, 48)
    with pytest.raises(InvalidInput):
        keymat(*base, ProtocolId.IPSEC_ESP, b"\x00\x00\x00\x01", NI, NR, 0)


def test_sa_keys_split_encryption_first() -> None:
    layout = esp_layout(EspTransformId.AES_CBC, 128, AuthAlgorithm.HMAC_SHA)
    spi = b"\xc0\x00\x02\x01"
    keys = derive_sa_keys(IkeHash.SHA, b"d" * 20, layout, spi, NI, NR)
    material = keymat(IkeHash.SHA, b"d" * 20, ProtocolId.IPSEC_ESP, spi, NI, NR, 36)
    assert keys.enc_key == material[:16] and keys.integ_key == material[16:]
    assert keys.enc_key.hex() not in repr(keys)
