"""Opening messages protected by an ISAKMP SA, and the byte spans their hashes cover.

One implementation for the negotiator (ikepriv.child_negotiator.core.wire) and for ikedump
(ikepriv.dump.decrypt). `open_body` decrypts with the IV of the message's exchange and
decodes the payload chain, without touching the IV chain: RFC 2409 Appendix B makes each
message's last ciphertext block the next IV of its exchange, so the caller advances the
chain only once it takes the message (a forged or corrupt message must leave it alone, and a
retransmitted duplicate must not be fed in twice).

The phase 2 hashes (RFC 2409 5.5, 5.7) cover payloads exactly as sent, so the spans are
taken from the decrypted plaintext itself, walking the generic payload headers the codec
already validated, instead of re-encoding anything.

Errors: `open_body` raises IsakmpError (the plaintext is not a valid payload chain) or
CryptoError (a length the cipher or IV chain refuses); nothing else for any input bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ikepriv.crypto.ciphers import IkeCipher
from ikepriv.crypto.crypto_errors import InvalidInput
from ikepriv.crypto.oakley import IvChain
from ikepriv.isakmp.constants import HEADER_LENGTH
from ikepriv.isakmp.header import Header
from ikepriv.isakmp.limits import MAX_MESSAGE_SIZE
from ikepriv.isakmp.message import Payload, decode_payload_chain
from ikepriv.isakmp.payloads import HashPayload

_LENGTH = struct.Struct("!H")  # the length field of a generic payload header, at offset 2


def _starts(body: bytes, count: int) -> Iterator[int]:
    """The start of each of the first `count` payloads, then the end of the last one."""
    pos = 0
    for _ in range(count):
        yield pos
        pos += int(_LENGTH.unpack_from(body, pos + 2)[0])
    yield pos


def chain_end(body: bytes, count: int) -> int:
    """Offset just after the `count`-th payload of a chain the codec already decoded."""
    *_, end = _starts(body, count)
    return end


def payload_offsets(body: bytes, count: int, base: int = 0) -> list[int]:
    """Where each of the first `count` payloads of a decoded chain starts, plus `base` (the
    offset of `body` in the message, to count from the ISAKMP header)."""
    return [base + pos for pos in _starts(body, count)][:count]


def after_first(body: bytes, count: int) -> bytes:
    """Every payload after the first one (the HASH) of a decoded chain of `count` payloads,
    generic headers included, no padding: what the phase 2 HASH payloads cover."""
    if count == 0:
        return b""
    first = int(_LENGTH.unpack_from(body, 2)[0])
    return body[first : chain_end(body, count)]


def leading_hash(payloads: Sequence[Payload]) -> bytes | None:
    """The data of the HASH payload that must open a phase 2 or informational message
    (RFC 2409 5.5, 5.7), None when the first payload is not a HASH."""
    if payloads and isinstance(payloads[0], HashPayload):
        return payloads[0].data
    return None


@dataclass(frozen=True, slots=True)
class Decrypted:
    """A decrypted body: `payloads` cover plaintext[:chain_length]; the rest is padding."""

    plaintext: bytes
    payloads: tuple[Payload, ...]
    chain_length: int

    @property
    def padding(self) -> bytes:
        return self.plaintext[self.chain_length :]

    def after_first_payload(self) -> bytes:
        """Every payload after the first, generic headers included, exactly as sent."""
        return after_first(self.plaintext, len(self.payloads))


def open_body(cipher: IkeCipher, ivs: IvChain, header: Header, ciphertext: bytes) -> Decrypted:
    """Decrypt the body of an encrypted message and decode its payload chain (error offsets
    count from the ISAKMP header); the IV chain is not touched."""
    if len(ciphertext) + HEADER_LENGTH > MAX_MESSAGE_SIZE:
        raise InvalidInput(f"encrypted body of {len(ciphertext)} bytes")
    plaintext = cipher.decrypt(ivs.iv_for(header.message_id), ciphertext)
    payloads = decode_payload_chain(
        header.next_payload, plaintext, HEADER_LENGTH, allow_padding=True
    )
    return Decrypted(plaintext, payloads, chain_end(plaintext, len(payloads)))
