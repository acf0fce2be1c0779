"""Atheris harness for the strict ISAKMP codec: the first code to touch a peer's bytes.

Invariants, on every input: decode_message raises IsakmpError and nothing else, or returns
a message that encode_message turns back into exactly the input; the same for the body as a
decrypted payload chain (decode_payload_chain with cipher padding allowed: the accepted
payloads re-encode to the input's prefix and the rest is at most the padding allowance).

    .venv/bin/python fuzz/make_corpus.py      # (re)build the seed corpus
    .venv/bin/python fuzz/fuzz_isakmp.py -max_total_time=20 fuzz/corpus/isakmp
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from ikepriv.isakmp import (
        IsakmpError,
        decode_message,
        decode_payload_chain,
        encode_message,
        encode_payload_chain,
    )
    from ikepriv.isakmp.constants import HEADER_LENGTH
    from ikepriv.isakmp.limits import MAX_PADDING


def _aligned_plaintext(data: bytes, again: bytes) -> bool:
    """The one accepted difference: a plaintext message padded with 1-3 zero bytes to a
    4-byte boundary (libreswan does), which decodes to the same payloads and re-encodes
    without the zeros (and with the header's length field counting it so)."""
    pad = len(data) - len(again)
    return (
        1 <= pad < 4
        and len(data) % 4 == 0
        and not any(data[-pad:])
        and data[:24] == again[:24]
        and data[28:-pad] == again[28:]
        and int.from_bytes(again[24:28], "big") == len(again)
    )


def TestOneInput(data: bytes) -> None:
    try:
        message = decode_message(data)
    except IsakmpError:
        pass
    else:
        again = encode_message(message)
        if again != data and not _aligned_plaintext(data, again):
            raise AssertionError(f"message re-encodes differently: {again.hex()}")
    if len(data) < HEADER_LENGTH + 1:
        return
    # The body as if it were decrypted plaintext: first payload type from the header byte.
    first, body = data[16], data[HEADER_LENGTH:]
    try:
        payloads = decode_payload_chain(first, body, allow_padding=True)
    except IsakmpError:
        return
    chain = encode_payload_chain(payloads)
    if not body.startswith(chain) or len(body) - len(chain) > MAX_PADDING:
        raise AssertionError(f"chain re-encodes differently: {chain.hex()}")
    if (payloads[0].payload_type if payloads else 0) != first:
        raise AssertionError("first payload type changed")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
