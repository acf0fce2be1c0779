"""Atheris harness for decrypt-and-verify: the code ikedump runs on every encrypted message
(ikepriv.dump.decrypt through ikepriv.dump.session), keyed with the real Main Mode capture.

Input: one selector byte, then an ISAKMP message. Bits 1-7 of the selector pick a context:
the capture fed up to frame 4 (next: MM5, HASH_I), 6 (next: QM1 or an Informational) or 7
(next: QM2, with PFS and IPsec key derivation); then two signature contexts made at
start-up from in-process negotiations with the test PKI (make_corpus.signature_contexts:
next MM5 with CERT and SIG_I, or AM2 in the clear with CERT and SIG_R; certificate,
signature, ID and chain checks), whose seeds main() adds to the corpus directory, since
certificates made per process cannot be committed. Bit 0 set: the body is plaintext, which the
harness encrypts under the context's key and IV first, so mutations reach the payload chain
and the HASH checks instead of dying in the padding. The message then goes through

* SaCrypto.open and the verify_* function for its exchange, which may raise only the
  documented IsakmpError, CryptoError and VerificationError;
* Dumper.feed on a copy of the context, which may raise nothing at all.

    .venv/bin/python fuzz/make_corpus.py
    .venv/bin/python fuzz/fuzz_decrypt.py -max_total_time=20 fuzz/corpus/decrypt
"""

from __future__ import annotations

import dataclasses
import struct
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from ikepriv.crypto.crypto_errors import CryptoError
    from ikepriv.dump.decrypt import (
        SaCrypto,
        VerificationError,
        verify_informational,
        verify_qm_hash1,
        verify_qm_hash2,
    )
    from ikepriv.dump.session import Dumper
    from ikepriv.dump.signed import MAX_TEXT, SignatureReport
    from ikepriv.isakmp import IsakmpError, decode_message
    from ikepriv.isakmp.constants import HEADER_LENGTH, ExchangeType, HeaderFlag

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_corpus import Context, decrypt_contexts, signature_contexts, signature_seeds

PSK_CONTEXTS: list[Context] = decrypt_contexts()
SIGNATURE_CONTEXTS: list[Context] = signature_contexts()
CONTEXTS: list[Context] = PSK_CONTEXTS + SIGNATURE_CONTEXTS
PLAINTEXT = 0x01
MAX_BODY = 16384


def _crypto(dumper: Dumper, icookie: bytes) -> SaCrypto | None:
    crypto = dumper.sa_crypto(icookie)
    return crypto if crypto is not None and crypto.keys is not None else None


def _encrypt(ctx: Context, message: bytes) -> bytes | None:
    """Encrypt the body of a plaintext-form message as the context's peer would have."""
    if len(message) < HEADER_LENGTH or len(message) > MAX_BODY:
        return None
    header, body = bytearray(message[:HEADER_LENGTH]), message[HEADER_LENGTH:]
    crypto = _crypto(ctx.dumper, bytes(header[:8]))
    if crypto is None:  # a context before the SA is keyed (Aggressive Mode's AM2)
        return None
    block = crypto.cipher.block_size
    body += bytes(-len(body) % block) or (b"" if body else bytes(block))
    mid = struct.unpack_from("!I", header, 20)[0]
    ciphertext = crypto.cipher.encrypt(crypto.ivs.iv_for(mid), body)
    header[19] |= HeaderFlag.ENCRYPTION
    struct.pack_into("!I", header, 24, HEADER_LENGTH + len(ciphertext))
    return bytes(header) + ciphertext


def _low_level(ctx: Context, data: bytes) -> None:
    """decrypt + verify; only the documented exceptions may leave."""
    try:
        message = decode_message(data)
        if not message.encrypted:
            return
        dumper = ctx.fresh()
        crypto = dumper.sa_crypto(message.header.icookie)
        if crypto is None or crypto.keys is None:
            return
        decrypted = crypto.open(message.header, message.ciphertext)
        mid, exchange = message.header.message_id, message.header.exchange_type
        if exchange == ExchangeType.QUICK_MODE:
            if ctx.after_frame == 7:
                ni_b = bytes(32)  # wrong on purpose: the check must fail cleanly
                verify_qm_hash2(crypto.keys, mid, ni_b, decrypted)
            else:
                verify_qm_hash1(crypto.keys, mid, decrypted)
        elif exchange == ExchangeType.INFORMATIONAL:
            verify_informational(crypto.keys, mid, decrypted)
        crypto.accept(message.header, message.ciphertext)
        decrypted.after_first_payload()
    except (IsakmpError, CryptoError, VerificationError):
        pass


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    ctx = CONTEXTS[(data[0] >> 1) % len(CONTEXTS)]
    message = data[1:]
    if data[0] & PLAINTEXT:
        encrypted = _encrypt(ctx, message) if message[:8] == ctx.template.message[:8] else None
        if encrypted is None:
            return
        message = encrypted
    _low_level(ctx, message)
    record = ctx.fresh().feed(dataclasses.replace(ctx.template, message=message))
    for problem in record.problems:
        str(problem)  # every problem renders
    if record.signature is not None:
        _check_report(record.signature)


def _check_report(report: SignatureReport) -> None:
    """Every SIG outcome is one of the four checks, with a bounded one-line text."""
    for outcome in report.outcomes:
        assert outcome.check in ("certificate", "signature", "ID", "chain"), outcome
        assert "\n" not in outcome.text and len(outcome.text) <= MAX_TEXT, outcome


def main() -> None:
    corpus = [Path(a) for a in sys.argv[1:] if not a.startswith("-") and Path(a).is_dir()]
    for directory in corpus[:1]:
        for name, seed in signature_seeds(SIGNATURE_CONTEXTS, len(PSK_CONTEXTS)).items():
            (directory / name).write_bytes(seed)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
