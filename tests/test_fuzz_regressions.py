"""Regression cases for the atheris harnesses in fuzz/ (fuzz_isakmp.py, fuzz_decrypt.py,
fuzz_fragments.py, fuzz_certificates.py).

Every committed seed, and every input a fuzzing run once flagged, goes through the harness's
own TestOneInput here, so the invariants the fuzzers check (only IsakmpError from the codec,
byte-exact re-encoding; only the documented errors from decrypt-and-verify, nothing at all
from ikedump's session) are checked on every test run, without atheris driving.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUZZ = ROOT / "fuzz"

# Inputs worth keeping beyond the seeds: (harness, hex, why).
CASES: list[tuple[str, str, str]] = [
    # a plaintext Main Mode message padded with one zero byte to a 4-byte boundary (as
    # libreswan pads): it decodes, and re-encodes without the zero (found by fuzz_isakmp)
    (
        "isakmp",
        "7d206acae8f860f61628f85793ce98310510020000002c00000000680800000c01000000c0000201"
        "0b000024614117fd90595bccbed0925e10c487c6cd3ff1fcf1198098e155dd71f52b275d0000001b"
        "000000000000000040206acae8f860921628f85793ce9800",
        "zero-padded plaintext",
    ),
    # the shortest message: header only, E flag clear, no payloads
    ("isakmp", "0102030405060708" + "00" * 8 + "00100200" + "00000000" + "0000001c", "empty"),
    # header claiming more bytes than the datagram holds
    ("isakmp", "0102030405060708" + "00" * 8 + "01100200" + "00000000" + "0000ffff", "length"),
    # an encrypted body that is not whole blocks
    ("isakmp", "0102030405060708" + "00" * 8 + "08100501" + "00000001" + "00000021" + "00" * 5,
     "blocks"),
    # decrypt harness, plaintext mode, context 0 (next: MM5), body empty
    ("decrypt", "01" + "7d206acae8f86092" + "1628f85793ce9831" + "05100201" + "00000000"
     + "0000001c", "empty plaintext"),
    # plaintext mode, context 1 (next: QM1): HASH payload only, wrong hash
    ("decrypt", "03" + "7d206acae8f86092" + "1628f85793ce9831" + "08102001" + "00000007"
     + "00000040" + "00000024" + "11" * 32, "bad HASH(1)"),
    # plaintext mode, context 2 (next: QM2): a chain whose first payload is not HASH
    ("decrypt", "05" + "7d206acae8f86092" + "1628f85793ce9831" + "0a102001" + "230cd28a"
     + "0000002c" + "0000000c" + "22" * 8, "QM2 without HASH"),
    # ciphertext mode with a foreign initiator cookie: no keys for that SA
    ("decrypt", "00" + "0807060504030201" + "1628f85793ce9831" + "08100501" + "00000009"
     + "0000002c" + "33" * 16, "unknown SA"),
]  # fmt: skip


def _harness(name: str) -> Callable[[bytes], None]:
    sys.path.insert(0, str(FUZZ))
    try:
        module = importlib.import_module(f"fuzz_{name}")
    finally:
        sys.path.remove(str(FUZZ))
    test_one_input: Callable[[bytes], None] = module.TestOneInput
    return test_one_input


@pytest.fixture(scope="module")
def harnesses() -> dict[str, Callable[[bytes], None]]:
    pytest.importorskip("atheris")
    names = ("isakmp", "decrypt", "fragments", "certificates")
    return {name: _harness(name) for name in names}


def _seeds(name: str) -> list[Path]:
    return sorted((FUZZ / "corpus" / name).glob("*"))


def test_seed_corpora_are_committed() -> None:
    assert len(_seeds("isakmp")) >= 20
    assert len(_seeds("decrypt")) >= 6
    assert len(_seeds("fragments")) >= 5
    # the seeds, and the crashes of the first runs (an X.509 version cryptography raises
    # InvalidVersion for, not ValueError; lazily parsed names; TypeError from the verifier)
    assert len(_seeds("certificates")) >= 9


@pytest.mark.parametrize("name", ["isakmp", "decrypt", "fragments", "certificates"])
def test_every_seed_keeps_the_harness_invariants(
    name: str, harnesses: dict[str, Callable[[bytes], None]]
) -> None:
    for seed in _seeds(name):
        harnesses[name](seed.read_bytes())


@pytest.mark.parametrize(("name", "data", "why"), CASES, ids=[c[2] for c in CASES])
def test_regression_case(
    name: str, data: str, why: str, harnesses: dict[str, Callable[[bytes], None]]
) -> None:
    harnesses[name](bytes.fromhex(data))


def test_decrypt_seeds_reach_verification(harnesses: dict[str, Callable[[bytes], None]]) -> None:
    """The plaintext-mode seeds are the real messages: fed through ikedump's session they
    verify, so the harness really exercises the checks (not just the padding)."""
    import dataclasses

    import fuzz_decrypt

    for seed in _seeds("decrypt"):
        data = seed.read_bytes()
        if not data[0] & fuzz_decrypt.PLAINTEXT:
            continue
        ctx = fuzz_decrypt.CONTEXTS[(data[0] >> 1) % len(fuzz_decrypt.CONTEXTS)]
        message = fuzz_decrypt._encrypt(ctx, data[1:])
        assert message is not None
        record = ctx.fresh().feed(dataclasses.replace(ctx.template, message=message))
        assert not record.problems, record.problems
        assert record.decrypted and record.checks
