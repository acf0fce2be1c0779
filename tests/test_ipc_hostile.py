"""Whatever bytes a hostile child sends, the decoder answers IpcError or a faithful message.

The invariant, for every input and every direction: decode raises IpcError (and nothing
else), or returns a message that encodes back to exactly the input. The same invariant is
what fuzz/fuzz_ipc.py checks under atheris.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ipc_strategies import MESSAGE_TYPES, any_message

from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.schema import Direction, Message, decode, encode


def decoded_faithfully(data: bytes) -> int:
    """Apply the invariant on every channel; return how many channels accepted."""
    accepted = 0
    for direction in Direction:
        try:
            msg = decode(data, direction)
        except IpcError:
            continue
        assert msg.DIRECTION is direction
        assert encode(msg) == data
        accepted += 1
    assert accepted <= 1
    return accepted


@given(st.binary(max_size=1024))
def test_random_bytes(data: bytes) -> None:
    decoded_faithfully(data)


TYPE_PREFIXES = [cls.TYPE.to_bytes(2, "big") for cls in MESSAGE_TYPES]


@settings(max_examples=500)
@given(st.sampled_from(TYPE_PREFIXES), st.binary(max_size=1024))
def test_random_bodies_behind_every_known_type(prefix: bytes, body: bytes) -> None:
    decoded_faithfully(prefix + body)


MUTATION = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "set"]),
    st.integers(0, 10_000),
    st.integers(0, 255),
)


def mutate(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for op, where, byte in edits:
        pos = where % (len(buf) + 1)
        if op == "insert":
            buf.insert(pos, byte)
        elif buf and pos < len(buf):
            if op == "delete":
                del buf[pos]
            elif op == "flip":
                buf[pos] ^= 1 << (byte % 8)
            else:
                buf[pos] = byte
    return bytes(buf)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(any_message(), st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_valid_messages(msg: Message, edits: list[tuple[str, int, int]]) -> None:
    decoded_faithfully(mutate(encode(msg), edits))


@given(any_message(), st.integers(0, 1 << 16))
def test_every_valid_message_truncated_or_extended(msg: Message, cut: int) -> None:
    wire = encode(msg)
    assert decoded_faithfully(wire) == 1
    assert decoded_faithfully(wire[: cut % len(wire)]) == 0
    assert decoded_faithfully(wire + bytes([cut & 0xFF])) == 0
