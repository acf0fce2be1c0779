"""Sealing and opening messages under an ISAKMP SA, and the byte spans hashes cover.

The codec gives payload objects; the phase 2 hashes cover payloads exactly as on the wire,
so the spans are taken from the decrypted plaintext itself (walking the generic headers the
codec already validated) instead of re-encoding anything. Opening and the spans are
ikepriv.crypto.protected, which ikedump uses too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.crypto.ciphers import pad_plaintext
from ikepriv.crypto.crypto_errors import CryptoError
from ikepriv.crypto.protected import after_first as after_first
from ikepriv.crypto.protected import leading_hash as leading_hash
from ikepriv.crypto.protected import open_body
from ikepriv.isakmp import (
    HashPayload,
    IsakmpError,
    Message,
    Payload,
    build_encrypted_message,
    encode_message,
    encode_payload_chain,
)
from ikepriv.isakmp.constants import ExchangeType, HeaderFlag

_GENERIC = struct.Struct("!BBH")


class OpenError(Exception):
    """The message does not decrypt to a valid chain (wrong keys, or forged)."""


def seal(
    sa: IsakmpSa,
    exchange: ExchangeType,
    mid: int,
    payloads: Sequence[Payload],
    flags: HeaderFlag = HeaderFlag.NONE,
) -> bytes:
    """Encrypt a chain under the SA and advance its IV chain (the message will be sent)."""
    return _seal_plain(
        sa, exchange, mid, payloads[0].payload_type, encode_payload_chain(payloads), flags
    )


def seal_hashed(
    sa: IsakmpSa,
    exchange: ExchangeType,
    mid: int,
    rest: Sequence[Payload],
    hash_of: Callable[[bytes], bytes],
    flags: HeaderFlag = HeaderFlag.NONE,
) -> bytes:
    """HASH(1)/HASH(2)-style message: HASH first, computed over the encoded rest."""
    rest_bytes = encode_payload_chain(rest)
    digest = hash_of(rest_bytes)
    nxt = rest[0].payload_type if rest else 0
    plaintext = _GENERIC.pack(nxt, 0, 4 + len(digest)) + digest + rest_bytes
    return _seal_plain(sa, exchange, mid, HashPayload.TYPE, plaintext, flags)


def _seal_plain(
    sa: IsakmpSa, exchange: ExchangeType, mid: int, first: int, plaintext: bytes, flags: HeaderFlag
) -> bytes:
    assert sa.cipher is not None and sa.iv is not None
    iv = sa.iv.iv_for(mid)
    ciphertext = sa.cipher.encrypt(iv, pad_plaintext(plaintext, sa.cipher.block_size))
    sa.iv.advance(mid, ciphertext)
    message = build_encrypted_message(
        sa.icookie,
        sa.rcookie,
        exchange,
        mid,
        first,
        ciphertext,
        flags=flags | HeaderFlag.ENCRYPTION,
    )
    return encode_message(message)


def open_message(sa: IsakmpSa, message: Message) -> tuple[bytes, tuple[Payload, ...]]:
    """Decrypt and decode, without touching the IV chain (the caller advances it once the
    message is verified). Raises OpenError for anything a forgery could cause."""
    if sa.cipher is None or sa.iv is None:
        raise OpenError("no keys yet")
    try:
        opened = open_body(sa.cipher, sa.iv, message.header, message.ciphertext)
    except (CryptoError, IsakmpError) as exc:
        raise OpenError(str(exc)) from None
    return opened.plaintext, opened.payloads
