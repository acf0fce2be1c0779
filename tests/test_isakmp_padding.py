"""Plaintext messages padded to a 4-byte boundary, as libreswan 4.10 sends them (found in
the real-kernel interop: its Aggressive Mode answer with certificates ends in three zero
bytes after the last payload, and we refused it as UNEQUAL_PAYLOAD_LENGTHS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ikepriv.isakmp import decode_message
from ikepriv.isakmp.isakmp_error import IsakmpError

AM2 = (Path(__file__).parent / "data" / "libreswan-am2-padded.bin").read_bytes()


def _with_length(message: bytes) -> bytes:
    return message[:24] + len(message).to_bytes(4, "big") + message[28:]


def test_libreswans_padded_aggressive_mode_answer_decodes() -> None:
    assert AM2.endswith(b"\x00\x00\x00") and len(AM2) % 4 == 0
    names = [type(p).__name__ for p in decode_message(AM2).payloads]
    assert names[:7] == ["SAPayload", "KePayload", "NoncePayload", "IdPayload", "CertPayload",
                         "CertRequestPayload", "SigPayload"]  # fmt: skip


@pytest.mark.parametrize(
    "tail",
    [b"\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00\x00"],  # not zeros; more than alignment
)
def test_other_trailing_bytes_are_still_refused(tail: bytes) -> None:
    with pytest.raises(IsakmpError):
        decode_message(_with_length(AM2[:-3] + tail))


def test_padding_that_does_not_reach_a_4_byte_boundary_is_refused() -> None:
    with pytest.raises(IsakmpError):
        decode_message(_with_length(AM2[:-1]))  # two zero bytes, length 1811
