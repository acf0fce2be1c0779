"""Phase 1 (ISAKMP SA) block ciphers in CBC mode.

IKEv1 encrypts each message body with the negotiated cipher in CBC mode, with no padding
scheme of its own: the sender pads the plaintext to the block size and the receiver walks the
payload chain, which carries its own lengths, so trailing pad bytes are simply ignored.
RFC 2409 allows the last pad byte to hold the pad length, but receivers must not rely on it.

Public API
----------
``IKE_CIPHERS: Mapping[IkeEncryption, CipherSpec]``
    AES-CBC (128/192/256, Key Length attribute required) and 3DES-CBC (fixed 192 bits).
``cipher_spec(alg) -> CipherSpec``
    Lookup raising :class:`UnsupportedAlgorithm`.
``key_length_bytes(alg, key_length_attr) -> int``
    Validates the phase 1 Key Length attribute (bits, or None when absent) and returns the
    key size in bytes.
``IkeCipher(alg, key)``
    ``.encrypt(iv, plaintext)``, ``.decrypt(iv, ciphertext)`` (no padding), ``.block_size``,
    ``.wipe()``.
``pad_plaintext(data, block_size) -> bytes``
    Zero-pads to a whole number of blocks.
``last_block(ciphertext, block_size) -> bytes``
    The CBC output block that chains into the next message's IV.

Key material: the key is held in a private ``bytearray`` that :meth:`IkeCipher.wipe` zeroes.
Python cannot guarantee that no other copy exists (the caller's bytes, OpenSSL's own key
schedule, which OpenSSL clears when the context is freed); wipe() only shortens the lifetime
of the copy this object owns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import BlockCipherAlgorithm, Cipher, algorithms, modes

from ikepriv.crypto.crypto_errors import InvalidInput, InvalidKeyLength, UnsupportedAlgorithm
from ikepriv.isakmp.constants import IkeEncryption

# Largest ISAKMP message we ever encrypt or decrypt (the header length field is 32 bits,
# but UDP bounds any real message far below this).
MAX_MESSAGE_LENGTH = 65536


@dataclass(frozen=True, slots=True)
class CipherSpec:
    """One phase 1 encryption algorithm.

    ``key_bits``: the key sizes the Key Length attribute may name. ``fixed_key_bits``: set for
    fixed-size ciphers, which must be negotiated without a Key Length attribute (RFC 2409
    Appendix A); None when the attribute is required.
    """

    cipher_id: IkeEncryption
    name: str
    block_size: int  # bytes; also the IV size
    key_bits: frozenset[int]
    fixed_key_bits: int | None
    factory: Callable[[bytes | bytearray], BlockCipherAlgorithm]


def _triple_des(key: bytes | bytearray) -> BlockCipherAlgorithm:
    # The annotation says bytes, but the class checks for any bytes-like object; passing the
    # bytearray avoids an immutable copy of the key that wipe() could not reach.
    return TripleDES(cast(bytes, key))


IKE_CIPHERS: Mapping[IkeEncryption, CipherSpec] = MappingProxyType(
    {
        IkeEncryption.AES_CBC: CipherSpec(
            IkeEncryption.AES_CBC, "AES-CBC", 16, frozenset({128, 192, 256}), None, algorithms.AES
        ),
        IkeEncryption.TRIPLE_DES_CBC: CipherSpec(
            IkeEncryption.TRIPLE_DES_CBC, "3DES-CBC", 8, frozenset({192}), 192, _triple_des
        ),
    }
)


def cipher_spec(alg: IkeEncryption | int) -> CipherSpec:
    """Look up a phase 1 cipher; unknown or unimplemented numbers raise UnsupportedAlgorithm."""
    try:
        return IKE_CIPHERS[IkeEncryption(alg)]
    except (KeyError, ValueError):
        raise UnsupportedAlgorithm(f"IKE encryption algorithm {int(alg)} is not offered") from None


def key_length_bytes(alg: IkeEncryption | int, key_length_attr: int | None) -> int:
    """Key size in bytes for a phase 1 proposal, from its Key Length attribute (in bits).

    AES needs the attribute (RFC 3602 section 5.3 asks for it to be sent; guessing a default
    would let the two peers disagree silently). A fixed-size cipher takes no attribute; a value
    equal to its fixed size is tolerated, anything else is refused.
    """
    spec = cipher_spec(alg)
    if key_length_attr is None:
        if spec.fixed_key_bits is None:
            raise InvalidKeyLength(f"{spec.name} needs a Key Length attribute")
        return spec.fixed_key_bits // 8
    if key_length_attr not in spec.key_bits:
        raise InvalidKeyLength(f"{spec.name} does not take a {key_length_attr}-bit key")
    return key_length_attr // 8


class IkeCipher:
    """A keyed phase 1 cipher. CBC, no padding; the caller supplies every IV.

    The object holds no chaining state: IV bookkeeping lives in
    :class:`ikepriv.crypto.oakley.IvChain`, so a message that fails to decrypt or to verify
    does not disturb anything.
    """

    __slots__ = ("_key", "spec")

    def __init__(self, alg: IkeEncryption | int, key: bytes | bytearray) -> None:
        self.spec = cipher_spec(alg)
        if len(key) * 8 not in self.spec.key_bits:
            raise InvalidKeyLength(f"{self.spec.name} key of {len(key)} bytes")
        self._key = bytearray(key)

    @property
    def block_size(self) -> int:
        return self.spec.block_size

    def encrypt(self, iv: bytes, plaintext: bytes) -> bytes:
        """CBC-encrypt ``plaintext``, which must already be a whole number of blocks."""
        self._check(iv, plaintext)
        enc = self._cipher(iv).encryptor()
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, iv: bytes, ciphertext: bytes) -> bytes:
        """CBC-decrypt. The result still carries the sender's padding."""
        self._check(iv, ciphertext)
        dec = self._cipher(iv).decryptor()
        return dec.update(ciphertext) + dec.finalize()

    def wipe(self) -> None:
        """Zero this object's copy of the key; the cipher is unusable afterwards."""
        for i in range(len(self._key)):
            self._key[i] = 0
        self._key = bytearray()

    def _cipher(self, iv: bytes) -> Cipher[modes.CBC]:
        if not self._key:
            raise InvalidInput("cipher key has been wiped")
        return Cipher(self.spec.factory(self._key), modes.CBC(iv))

    def _check(self, iv: bytes, data: bytes) -> None:
        bs = self.spec.block_size
        if len(iv) != bs:
            raise InvalidInput(f"IV must be {bs} bytes, got {len(iv)}")
        if len(data) % bs or not data or len(data) > MAX_MESSAGE_LENGTH:
            raise InvalidInput(f"{len(data)} bytes is not a whole number of {bs}-byte blocks")


def pad_plaintext(data: bytes, block_size: int) -> bytes:
    """Append zero bytes up to the next block boundary (nothing when already aligned).

    Zero padding is what strongSwan and libreswan send; receivers ignore the pad because the
    payload chain carries explicit lengths.
    """
    if block_size <= 0:
        raise InvalidInput("block size must be positive")
    return data + bytes(-len(data) % block_size)


def last_block(ciphertext: bytes, block_size: int) -> bytes:
    """The final CBC output block of a message, which chains into the next IV."""
    if len(ciphertext) < block_size or len(ciphertext) % block_size:
        raise InvalidInput("ciphertext is not a whole number of blocks")
    return ciphertext[-block_size:]
