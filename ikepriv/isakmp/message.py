"""Payload chains and whole messages (RFC 2408 3.1-3.2).

A chain is walked with the generic payload header only, so an unknown payload type does not
stop it (it becomes an UnknownPayload); PROPOSAL and TRANSFORM are only valid inside an SA and
are rejected at top level. In an encrypted message the body is ciphertext: decode_message
returns it untouched and the negotiator calls decode_payload_chain on the plaintext, where
cipher padding after the last payload is allowed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ikepriv.isakmp.constants import (
    HEADER_LENGTH,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
)
from ikepriv.isakmp.fragment import FragmentPayload, decode_fragment
from ikepriv.isakmp.header import (
    OFFSET_NEXT_PAYLOAD,
    Header,
    check_header,
    decode_header,
    encode_header,
)
from ikepriv.isakmp.id_payload import IdPayload, NatOaPayload, decode_id, decode_nat_oa
from ikepriv.isakmp.isakmp_error import NO_OFFSET, fail, malformed
from ikepriv.isakmp.limits import (
    DEFAULT_MAX_MESSAGE_SIZE,
    MAX_MESSAGE_SIZE,
    MAX_PADDING,
    MAX_PAYLOADS,
)
from ikepriv.isakmp.modecfg import AttributePayload, decode_attribute_payload
from ikepriv.isakmp.notify import DeletePayload, NotifyPayload, decode_delete, decode_notify
from ikepriv.isakmp.payloads import (
    CertPayload,
    CertRequestPayload,
    HashPayload,
    KePayload,
    NatDPayload,
    NoncePayload,
    SigPayload,
    UnknownPayload,
    VendorIdPayload,
    decode_cert,
    decode_cr,
    decode_hash,
    decode_ke,
    decode_nat_d,
    decode_nonce,
    decode_sig,
    decode_vendor_id,
)
from ikepriv.isakmp.sa import SAPayload, decode_sa

Payload = (
    SAPayload
    | KePayload
    | IdPayload
    | CertPayload
    | CertRequestPayload
    | HashPayload
    | SigPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorIdPayload
    | AttributePayload
    | NatDPayload
    | NatOaPayload
    | FragmentPayload
    | UnknownPayload
)

Decoder = Callable[[int, memoryview, int, int, int], Payload]

# Top-level payload type -> body decoder. Types not listed decode to UnknownPayload.
DECODERS: dict[int, Decoder] = {
    PayloadType.SA: decode_sa,
    PayloadType.KE: decode_ke,
    PayloadType.ID: decode_id,
    PayloadType.CERT: decode_cert,
    PayloadType.CR: decode_cr,
    PayloadType.HASH: decode_hash,
    PayloadType.SIG: decode_sig,
    PayloadType.NONCE: decode_nonce,
    PayloadType.NOTIFY: decode_notify,
    PayloadType.DELETE: decode_delete,
    PayloadType.VENDOR_ID: decode_vendor_id,
    PayloadType.ATTRIBUTE: decode_attribute_payload,
    PayloadType.NAT_D: decode_nat_d,
    PayloadType.NAT_OA: decode_nat_oa,
    PayloadType.NAT_D_DRAFT: decode_nat_d,
    PayloadType.NAT_OA_DRAFT: decode_nat_oa,
    PayloadType.FRAGMENT: decode_fragment,
}
# Valid only nested in an SA payload (RFC 2408 3.5, 3.6).
NESTED_ONLY = frozenset({PayloadType.PROPOSAL, PayloadType.TRANSFORM})

_GENERIC = struct.Struct("!BBH")
_GENERIC_LENGTH = 4
_CIPHER_BLOCK = 8  # every IKEv1 cipher is a block cipher with 8- or 16-byte blocks


_ALIGN = 4


def _decode_chain(
    buf: memoryview,
    pos: int,
    end: int,
    base: int,
    first: int,
    type_offset: int,
    *,
    allow_padding: bool,
    max_padding: int,
    align_padding: bool = False,
) -> tuple[Payload, ...]:
    out: list[Payload] = []
    ptype = first
    while ptype != PayloadType.NONE:
        if ptype in NESTED_ONLY:
            fail(NotifyType.INVALID_PAYLOAD_TYPE, type_offset, f"payload type {ptype} at top level")
        if len(out) >= MAX_PAYLOADS:
            malformed(base + pos, f"more than {MAX_PAYLOADS} payloads")
        if end - pos < _GENERIC_LENGTH:
            malformed(base + pos, f"chain announces payload {ptype} but the message ends")
        nxt, reserved, length = _GENERIC.unpack_from(buf, pos)
        if reserved:
            malformed(base + pos + 1, "generic header RESERVED is not zero")
        if length < _GENERIC_LENGTH or length > end - pos:
            malformed(base + pos + 2, f"payload length {length} does not fit")
        decoder = DECODERS.get(ptype)
        body_end = pos + length
        if decoder is None:
            out.append(UnknownPayload(ptype, bytes(buf[pos + _GENERIC_LENGTH : body_end])))
        else:
            out.append(decoder(ptype, buf, pos + _GENERIC_LENGTH, body_end, base))
        type_offset = base + pos
        ptype = nxt
        pos = body_end
    left = end - pos
    if left and align_padding and left < _ALIGN and end % _ALIGN == 0 and not any(buf[pos:end]):
        return tuple(out)  # zeros up to a 4-byte boundary (libreswan pads plaintext so)
    if left and not allow_padding:
        fail(
            NotifyType.UNEQUAL_PAYLOAD_LENGTHS,
            base + pos,
            f"{left} bytes after the last payload",
        )
    if left > max_padding:
        malformed(base + pos, f"{left} padding bytes exceed {max_padding}")
    return tuple(out)


def decode_payload_chain(
    first_payload: int,
    body: bytes | memoryview,
    base_offset: int = HEADER_LENGTH,
    *,
    allow_padding: bool,
    max_padding: int = MAX_PADDING,
) -> tuple[Payload, ...]:
    """Decode a payload chain that fills `body` (decrypted plaintext, typically).

    `first_payload` is the header's next-payload field; `base_offset` is where `body` starts in
    the message (28 after the header), used for error offsets. With `allow_padding`, up to
    `max_padding` bytes after the last payload are accepted and ignored (cipher padding).
    """
    view = memoryview(body)
    return _decode_chain(
        view,
        0,
        len(view),
        base_offset,
        first_payload,
        # The field naming the first payload: the header's, when the body follows it.
        OFFSET_NEXT_PAYLOAD if base_offset == HEADER_LENGTH else base_offset,
        allow_padding=allow_padding,
        max_padding=max_padding,
    )


def check_payload(payload: Payload) -> None:
    """Refuse payloads whose type the chain decoder would not give back the same way."""
    if isinstance(payload, UnknownPayload) and (
        payload.type in DECODERS or payload.type in NESTED_ONLY or not 1 <= payload.type <= 0xFF
    ):
        malformed(NO_OFFSET, f"UnknownPayload with type {payload.type}")


def encode_payload_chain(payloads: Iterable[Payload]) -> bytes:
    """The chain with every generic header (next payload, length) computed."""
    items = tuple(payloads)
    if len(items) > MAX_PAYLOADS:
        malformed(NO_OFFSET, f"{len(items)} payloads")
    parts: list[bytes] = []
    for index, payload in enumerate(items):
        check_payload(payload)
        body = payload.encode_body()
        length = _GENERIC_LENGTH + len(body)
        if length > MAX_MESSAGE_SIZE:
            malformed(NO_OFFSET, f"payload of {length} bytes")
        nxt = items[index + 1].payload_type if index + 1 < len(items) else PayloadType.NONE
        parts.append(_GENERIC.pack(nxt, 0, length))
        parts.append(body)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Message:
    """A whole message: payloads when plaintext, `ciphertext` when the E flag is set."""

    header: Header
    payloads: tuple[Payload, ...] = ()
    ciphertext: bytes = b""

    @property
    def encrypted(self) -> bool:
        return self.header.encrypted


def _check_ciphertext(size: int, offset: int) -> None:
    if size == 0 or size % _CIPHER_BLOCK:
        malformed(offset, f"encrypted body of {size} bytes is not a whole number of blocks")


def decode_message(
    data: bytes | memoryview, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE
) -> Message:
    """Decode one ISAKMP message (without the non-ESP marker); the only exception is
    IsakmpError. Plaintext payload chains must end at the end of the message, or be followed
    by 1-3 zero bytes that pad the message to a multiple of 4 bytes (libreswan 4.10 pads its
    unencrypted messages so, e.g. an Aggressive Mode answer with certificates)."""
    header = decode_header(data, max_size=max_size)
    view = memoryview(data)
    if header.encrypted:
        _check_ciphertext(len(view) - HEADER_LENGTH, HEADER_LENGTH)
        return Message(header, (), bytes(view[HEADER_LENGTH:]))
    payloads = _decode_chain(
        view,
        HEADER_LENGTH,
        len(view),
        0,
        header.next_payload,
        OFFSET_NEXT_PAYLOAD,
        allow_padding=False,
        max_padding=0,
        align_padding=True,
    )
    return Message(header, payloads)


def encode_message(message: Message) -> bytes:
    """Encode a message. The header's length, and for plaintext its next-payload field, are
    computed here from the content; the values in message.header are not used."""
    header = message.header
    if header.encrypted:
        if message.payloads:
            malformed(NO_OFFSET, "an encrypted message carries ciphertext, not payloads")
        _check_ciphertext(len(message.ciphertext), NO_OFFSET)
        body = message.ciphertext
        next_payload = header.next_payload
    else:
        if message.ciphertext:
            malformed(NO_OFFSET, "ciphertext in a message without the encryption flag")
        body = encode_payload_chain(message.payloads)
        next_payload = message.payloads[0].payload_type if message.payloads else 0
    length = HEADER_LENGTH + len(body)
    if length > MAX_MESSAGE_SIZE:
        malformed(NO_OFFSET, f"message of {length} bytes")
    fixed = Header(
        header.icookie,
        header.rcookie,
        next_payload,
        header.exchange_type,
        header.flags,
        header.message_id,
        length,
    )
    return encode_header(fixed) + body


def build_message(
    icookie: bytes,
    rcookie: bytes,
    exchange_type: ExchangeType,
    message_id: int,
    payloads: Iterable[Payload],
    *,
    flags: HeaderFlag = HeaderFlag.NONE,
) -> Message:
    """A plaintext Message whose header fields (next payload, length) match its payloads,
    so that decode_message(encode_message(m)) == m."""
    items = tuple(payloads)
    if flags & HeaderFlag.ENCRYPTION:
        malformed(NO_OFFSET, "use build_encrypted_message for encrypted messages")
    length = HEADER_LENGTH + len(encode_payload_chain(items))
    header = Header(
        icookie,
        rcookie,
        items[0].payload_type if items else PayloadType.NONE,
        exchange_type,
        flags,
        message_id,
        length,
    )
    check_header(header)
    return Message(header, items)


def build_encrypted_message(
    icookie: bytes,
    rcookie: bytes,
    exchange_type: ExchangeType,
    message_id: int,
    first_payload: int,
    ciphertext: bytes,
    *,
    flags: HeaderFlag = HeaderFlag.ENCRYPTION,
) -> Message:
    """An encrypted Message: `first_payload` is the type of the first encrypted payload."""
    header = Header(
        icookie,
        rcookie,
        first_payload,
        exchange_type,
        flags | HeaderFlag.ENCRYPTION,
        message_id,
        HEADER_LENGTH + len(ciphertext),
    )
    check_header(header)
    _check_ciphertext(len(ciphertext), NO_OFFSET)
    return Message(header, (), bytes(ciphertext))
