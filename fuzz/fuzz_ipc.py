"""Atheris harness for the IPC decoder, the parent's first contact with a hostile child.

Invariant checked on every input and every channel direction: decode raises IpcError and
nothing else, or returns a message that encodes back to exactly the input bytes (one
encoding per value, nothing ignored). Any other exception or a mismatch is a finding.

    .venv/bin/python fuzz/make_ipc_corpus.py            # (re)build the seed corpus
    .venv/bin/python fuzz/fuzz_ipc.py -max_total_time=20 fuzz/corpus/ipc

libFuzzer adds what it finds to the first corpus directory; fuzz/run.sh works on a copy.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from ikepriv.ipc import Direction, IpcError, decode, encode

DIRECTIONS = tuple(Direction)


def TestOneInput(data: bytes) -> None:
    accepted = 0
    for direction in DIRECTIONS:
        try:
            msg = decode(data, direction)
        except IpcError:
            continue
        accepted += 1
        again = encode(msg)
        if again != data:
            raise AssertionError(f"{type(msg).__name__} re-encodes differently: {again.hex()}")
    if accepted > 1:
        raise AssertionError("one message decoded on two channels")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
