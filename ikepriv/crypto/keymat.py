"""Phase 2 keying material (RFC 2409 section 5.5) and the IPsec algorithm table.

This module is the single place that says how long each ESP/AH key is, in which order the
keys are cut from KEYMAT, and what Linux XFRM calls each algorithm. The negotiator, the
configuration layer and the kernel layer all read the same tables.

KEYMAT
    Without PFS: KEYMAT = prf(SKEYID_d, protocol | SPI | Ni_b | Nr_b)
    With PFS:    KEYMAT = prf(SKEYID_d, g(qm)^xy | protocol | SPI | Ni_b | Nr_b)
    Expanded as K1 | K2 | ... with Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy] | protocol | SPI |
    Ni_b | Nr_b). One KEYMAT per SA (per direction): ``SPI`` is the SPI of that SA, i.e. the
    one chosen by the peer that *receives* on it, and protocol is the ProtocolId byte. The
    encryption key comes first, then the integrity key. For AES-GCM (RFC 4106) the
    "encryption key" is key | 4-byte salt, for AES-CTR (RFC 3686) key | 4-byte nonce, which
    is also how XFRM takes them.

Public API
----------
``ESP_CIPHERS: Mapping[EspTransformId, EspCipherSpec]``
    AES-CBC, AES-CTR, 3DES-CBC, AES-GCM with 8/12/16-byte ICV: XFRM name, key sizes, salt, ICV.
``INTEGRITY: Mapping[AuthAlgorithm, IntegritySpec]``
    HMAC-MD5/SHA1/SHA2-256/384/512: key length, XFRM name, truncation bits.
``AH_TRANSFORMS: Mapping[AhTransformId, AuthAlgorithm]``
    The authentication algorithm attribute each AH transform requires.
``esp_layout(transform, key_length_attr, auth) -> KeymatLayout``
``ah_layout(transform, auth) -> KeymatLayout``
    Validate a phase 2 transform's choices and return the byte counts to cut from KEYMAT.
``keymat(alg, skeyid_d, protocol, spi, ni_b, nr_b, length, g_qm_xy=None) -> bytearray``
    Exactly ``length`` bytes of KEYMAT.
``expand_keymat(alg, key, seed, length) -> bytearray``
    The K1 | K2 | ... expansion itself.
``derive_sa_keys(alg, skeyid_d, layout, protocol, spi, ni_b, nr_b, g_qm_xy=None) -> SaKeys``
    KEYMAT split into encryption and integrity keys for one SA.

Pure: no I/O, no randomness. SaKeys hold bytearrays and offer wipe(); see ikepriv.crypto.oakley
for the limits of wiping in Python.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ikepriv.crypto.crypto_errors import InvalidInput, InvalidKeyLength, UnsupportedAlgorithm
from ikepriv.crypto.oakley import DH_SECRET_MAX, KEY_MAX, NONCE_MAX, NONCE_MIN
from ikepriv.crypto.prf import prf
from ikepriv.isakmp.constants import (
    AhTransformId,
    AuthAlgorithm,
    EspTransformId,
    IkeHash,
    ProtocolId,
)

SPI_LENGTH = 4  # ESP and AH SPIs in the IPsec DOI

Bytes = bytes | bytearray


@dataclass(frozen=True, slots=True)
class EspCipherSpec:
    """One ESP encryption transform.

    ``key_bits``: sizes the Key Length attribute may name. ``default_key_bits``: the size when
    the attribute is absent; None means the attribute is required (AES, RFC 3602 5.3 and RFC
    4106 section 8.4), and a fixed-size cipher accepts only its own size. ``salt_bytes`` are
    cut from KEYMAT right after the key and given to XFRM as part of the key.
    ``icv_bits`` is set for combined-mode (AEAD) transforms, which take no integrity algorithm.
    """

    transform_id: EspTransformId
    xfrm_name: str
    key_bits: frozenset[int]
    default_key_bits: int | None
    salt_bytes: int = 0
    icv_bits: int | None = None

    @property
    def is_aead(self) -> bool:
        return self.icv_bits is not None


@dataclass(frozen=True, slots=True)
class IntegritySpec:
    """One HMAC integrity algorithm for ESP or AH (RFC 2404, 2403, 4868)."""

    auth_id: AuthAlgorithm
    xfrm_name: str
    key_bytes: int
    truncation_bits: int


_AES_BITS = frozenset({128, 192, 256})

ESP_CIPHERS: Mapping[EspTransformId, EspCipherSpec] = MappingProxyType(
    {
        EspTransformId.AES_CBC: EspCipherSpec(EspTransformId.AES_CBC, "cbc(aes)", _AES_BITS, None),
        EspTransformId.TRIPLE_DES: EspCipherSpec(
            EspTransformId.TRIPLE_DES, "cbc(des3_ede)", frozenset({192}), 192
        ),
        # RFC 3686 section 5.1: KEYMAT gives the AES key then the 4-byte nonce (XFRM: key | nonce)
        EspTransformId.AES_CTR: EspCipherSpec(
            EspTransformId.AES_CTR, "rfc3686(ctr(aes))", _AES_BITS, None, 4
        ),
        EspTransformId.AES_GCM_8: EspCipherSpec(
            EspTransformId.AES_GCM_8, "rfc4106(gcm(aes))", _AES_BITS, None, 4, 64
        ),
        EspTransformId.AES_GCM_12: EspCipherSpec(
            EspTransformId.AES_GCM_12, "rfc4106(gcm(aes))", _AES_BITS, None, 4, 96
        ),
        EspTransformId.AES_GCM_16: EspCipherSpec(
            EspTransformId.AES_GCM_16, "rfc4106(gcm(aes))", _AES_BITS, None, 4, 128
        ),
    }
)

INTEGRITY: Mapping[AuthAlgorithm, IntegritySpec] = MappingProxyType(
    {
        AuthAlgorithm.HMAC_MD5: IntegritySpec(AuthAlgorithm.HMAC_MD5, "hmac(md5)", 16, 96),
        AuthAlgorithm.HMAC_SHA: IntegritySpec(AuthAlgorithm.HMAC_SHA, "hmac(sha1)", 20, 96),
        AuthAlgorithm.HMAC_SHA2_256: IntegritySpec(
            AuthAlgorithm.HMAC_SHA2_256, "hmac(sha256)", 32, 128
        ),
        AuthAlgorithm.HMAC_SHA2_384: IntegritySpec(
            AuthAlgorithm.HMAC_SHA2_384, "hmac(sha384)", 48, 192
        ),
        AuthAlgorithm.HMAC_SHA2_512: IntegritySpec(
            AuthAlgorithm.HMAC_SHA2_512, "hmac(sha512)", 64, 256
        ),
    }
)

# RFC 2407 section 4.4.3 / RFC 4868: an AH transform ID names the algorithm, and the
# Authentication Algorithm attribute must name the same one.
AH_TRANSFORMS: Mapping[AhTransformId, AuthAlgorithm] = MappingProxyType(
    {
        AhTransformId.MD5: AuthAlgorithm.HMAC_MD5,
        AhTransformId.SHA: AuthAlgorithm.HMAC_SHA,
        AhTransformId.SHA2_256: AuthAlgorithm.HMAC_SHA2_256,
        AhTransformId.SHA2_384: AuthAlgorithm.HMAC_SHA2_384,
        AhTransformId.SHA2_512: AuthAlgorithm.HMAC_SHA2_512,
    }
)


@dataclass(frozen=True, slots=True)
class KeymatLayout:
    """What one SA needs from KEYMAT, in order: encryption key (incl. salt), integrity key.

    ``cipher``/``integrity`` carry the XFRM names and sizes for the kernel layer.
    """

    protocol: ProtocolId
    cipher: EspCipherSpec | None
    enc_key_bytes: int  # key plus salt, as XFRM takes it
    integrity: IntegritySpec | None
    integ_key_bytes: int

    @property
    def total(self) -> int:
        return self.enc_key_bytes + self.integ_key_bytes


def esp_cipher(transform: EspTransformId | int) -> EspCipherSpec:
    try:
        return ESP_CIPHERS[EspTransformId(transform)]
    except (KeyError, ValueError):
        raise UnsupportedAlgorithm(f"ESP transform {int(transform)} is not offered") from None


def integrity(auth: AuthAlgorithm | int) -> IntegritySpec:
    try:
        return INTEGRITY[AuthAlgorithm(auth)]
    except (KeyError, ValueError):
        raise UnsupportedAlgorithm(f"authentication algorithm {int(auth)} is not offered") from None


def esp_key_bits(transform: EspTransformId | int, key_length_attr: int | None) -> int:
    """The cipher key size in bits for an ESP transform and its Key Length attribute."""
    spec = esp_cipher(transform)
    if key_length_attr is None:
        if spec.default_key_bits is None:
            raise InvalidKeyLength(f"ESP {spec.transform_id.name} needs a Key Length attribute")
        return spec.default_key_bits
    if key_length_attr not in spec.key_bits:
        raise InvalidKeyLength(f"ESP {spec.transform_id.name} does not take {key_length_attr} bits")
    return key_length_attr


def esp_layout(
    transform: EspTransformId | int,
    key_length_attr: int | None,
    auth: AuthAlgorithm | int | None,
) -> KeymatLayout:
    """Validate an ESP transform (cipher, Key Length, Authentication Algorithm attribute).

    Combined-mode ciphers must come without an authentication algorithm (RFC 4106 section 8.4);
    the others must come with one: ESP without integrity is open to active attacks, so it is
    refused here, where every layer looks.
    """
    spec = esp_cipher(transform)
    bits = esp_key_bits(transform, key_length_attr)
    enc_bytes = bits // 8 + spec.salt_bytes
    if spec.is_aead:
        if auth is not None:
            raise UnsupportedAlgorithm(f"{spec.transform_id.name} takes no integrity algorithm")
        return KeymatLayout(ProtocolId.IPSEC_ESP, spec, enc_bytes, None, 0)
    if auth is None:
        raise UnsupportedAlgorithm("ESP without an integrity algorithm is refused")
    integ = integrity(auth)
    return KeymatLayout(ProtocolId.IPSEC_ESP, spec, enc_bytes, integ, integ.key_bytes)


def ah_layout(transform: AhTransformId | int, auth: AuthAlgorithm | int) -> KeymatLayout:
    """Validate an AH transform against its (mandatory) Authentication Algorithm attribute."""
    try:
        expected = AH_TRANSFORMS[AhTransformId(transform)]
    except (KeyError, ValueError):
        raise UnsupportedAlgorithm(f"AH transform {int(transform)} is not offered") from None
    integ = integrity(auth)
    if integ.auth_id != expected:
        raise UnsupportedAlgorithm(
            f"AH transform {AhTransformId(transform).name} with {integ.auth_id.name} attribute"
        )
    return KeymatLayout(ProtocolId.IPSEC_AH, None, 0, integ, integ.key_bytes)


def keymat(
    alg: IkeHash | int,
    skeyid_d: Bytes,
    protocol: ProtocolId | int,
    spi: Bytes,
    ni_b: Bytes,
    nr_b: Bytes,
    length: int,
    g_qm_xy: Bytes | None = None,
) -> bytearray:
    """Exactly ``length`` bytes of KEYMAT for one SA (see the module docstring).

    ``g_qm_xy`` is the Quick Mode DH shared secret (fixed length) when PFS was negotiated.
    """
    if not 1 <= length <= KEY_MAX:
        raise InvalidInput(f"KEYMAT length {length} out of range")
    if len(spi) != SPI_LENGTH:
        raise InvalidInput(f"SPI must be {SPI_LENGTH} bytes, got {len(spi)}")
    if not 0 < int(protocol) <= 0xFF:
        raise InvalidInput(f"protocol {int(protocol)} out of range")
    for name, nonce in (("Ni_b", ni_b), ("Nr_b", nr_b)):
        if not NONCE_MIN <= len(nonce) <= NONCE_MAX:
            raise InvalidInput(f"{name}: {len(nonce)} bytes")
    prefix = b""
    if g_qm_xy is not None:
        if not 1 <= len(g_qm_xy) <= DH_SECRET_MAX:
            raise InvalidInput("g(qm)^xy has a bad length")
        prefix = bytes(g_qm_xy)
    seed = prefix + bytes([int(protocol)]) + bytes(spi) + bytes(ni_b) + bytes(nr_b)
    return expand_keymat(alg, skeyid_d, seed, length)


def expand_keymat(alg: IkeHash | int, key: Bytes, seed: Bytes, length: int) -> bytearray:
    """The RFC 2409 section 5.5 expansion: K1 = prf(key, seed), Kn = prf(key, Kn-1 | seed),
    output K1 | K2 | ... cut to ``length`` bytes (even when one block would do)."""
    if not 1 <= length <= KEY_MAX:
        raise InvalidInput(f"KEYMAT length {length} out of range")
    out = bytearray()
    block = prf(alg, key, seed)
    out += block
    while len(out) < length:
        block = prf(alg, key, block + bytes(seed))
        out += block
    del out[length:]
    return out


@dataclass(slots=True, eq=False)
class SaKeys:
    """Keys of one IPsec SA (one direction), ready for XFRM."""

    layout: KeymatLayout
    spi: bytes
    enc_key: bytearray  # key | salt for AEAD, key | nonce for AES-CTR; empty for AH
    integ_key: bytearray  # empty for AEAD

    def wipe(self) -> None:
        for buf in (self.enc_key, self.integ_key):
            for i in range(len(buf)):
                buf[i] = 0

    def __repr__(self) -> str:
        return (
            f"SaKeys(protocol={self.layout.protocol.name}, spi={self.spi.hex()}, "
            f"enc_key_length={len(self.enc_key)}, integ_key_length={len(self.integ_key)})"
        )


def derive_sa_keys(
    alg: IkeHash | int,
    skeyid_d: Bytes,
    layout: KeymatLayout,
    spi: Bytes,
    ni_b: Bytes,
    nr_b: Bytes,
    g_qm_xy: Bytes | None = None,
) -> SaKeys:
    """KEYMAT for the SA with ``spi``, cut into the encryption key then the integrity key."""
    material = keymat(alg, skeyid_d, layout.protocol, spi, ni_b, nr_b, layout.total, g_qm_xy)
    enc = bytearray(material[: layout.enc_key_bytes])
    integ = bytearray(material[layout.enc_key_bytes :])
    for i in range(len(material)):
        material[i] = 0
    return SaKeys(layout, bytes(spi), enc, integ)
