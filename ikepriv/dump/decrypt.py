"""Decrypting and authenticating IKEv1 messages of one ISAKMP SA, as ikedump does.

The decryption itself is the negotiator's (ikepriv.crypto.protected); this module adds the
SA's state as ikedump follows it and the HASH checks, each failing with a reason ikedump can
print, kept free of capture and printing concerns. `SaCrypto.open` decrypts without changing
any state; the caller calls `SaCrypto.accept` once it takes the message (RFC 2409 Appendix
B: each message's last ciphertext block is the next IV of its exchange, so a forged or
corrupt message must leave the chain alone, and a retransmitted duplicate must not be fed in
twice).

Errors: `open` raises IsakmpError (the plaintext is not a valid payload chain, or the
ciphertext has the wrong shape) or CryptoError (a length the cipher or IV chain refuses);
the `verify_*` functions raise VerificationError. Nothing else for any input bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from ikepriv.crypto.ciphers import IkeCipher
from ikepriv.crypto.crypto_errors import InvalidInput
from ikepriv.crypto.oakley import (
    IvChain,
    Phase1Keys,
    hash_i,
    hash_r,
    informational_hash,
    quick_mode_hash1,
    quick_mode_hash2,
    quick_mode_hash3,
)
from ikepriv.crypto.prf import digests_equal
from ikepriv.crypto.protected import Decrypted, open_body
from ikepriv.crypto.protected import leading_hash as _leading_hash
from ikepriv.isakmp.constants import IkeHash
from ikepriv.isakmp.header import Header
from ikepriv.isakmp.message import Payload
from ikepriv.isakmp.payloads import HashPayload

__all__ = [
    "Decrypted",
    "Phase1Inputs",
    "SaCrypto",
    "VerificationError",
    "leading_hash",
    "phase1_auth_hash",
    "phase1_hash",
    "verify_hash_i",
    "verify_hash_r",
    "verify_informational",
    "verify_qm_hash1",
    "verify_qm_hash2",
    "verify_qm_hash3",
]


class VerificationError(Exception):
    """An authentication value is missing or does not verify; `check` names it (HASH_I,
    HASH(1), ...) and str() is the one-line reason ikedump prints."""

    def __init__(self, check: str, reason: str) -> None:
        super().__init__(f"{check} {reason}")
        self.check = check
        self.reason = reason


class SaCrypto:
    """The encryption state of one ISAKMP SA: its cipher (keyed with Ka) and IV chain, plus
    the phase 1 keys when they are known (they are not with a Wireshark-style Ka table)."""

    __slots__ = ("cipher", "ivs", "keys")

    def __init__(self, cipher: IkeCipher, ivs: IvChain, keys: Phase1Keys | None = None) -> None:
        if cipher.block_size != ivs.block_size:
            raise InvalidInput("cipher and IV chain disagree on the block size")
        self.cipher = cipher
        self.ivs = ivs
        self.keys = keys

    def open(self, header: Header, ciphertext: bytes) -> Decrypted:
        """Decrypt the body of an encrypted message and decode its payload chain; the IV
        chain is not touched."""
        return open_body(self.cipher, self.ivs, header, ciphertext)

    def accept(self, header: Header, ciphertext: bytes) -> None:
        """Take the message into the IV chain of its exchange."""
        self.ivs.advance(header.message_id, ciphertext)


# --- authentication ----------------------------------------------------------------------


def _compare(check: str, expected: bytes, received: bytes) -> None:
    if not digests_equal(expected, received):
        raise VerificationError(check, "mismatch")


def leading_hash(check: str, payloads: tuple[Payload, ...]) -> bytes:
    """The HASH payload that must open a phase 2 message (RFC 2409 5.5, 5.7)."""
    data = _leading_hash(payloads)
    if data is None:
        raise VerificationError(check, "missing: the first payload is not HASH")
    return data


def phase1_hash(payloads: tuple[Payload, ...], check: str) -> bytes:
    """The HASH_I/HASH_R payload of a phase 1 message (anywhere in the chain)."""
    hashes = [p.data for p in payloads if isinstance(p, HashPayload)]
    if len(hashes) != 1:
        raise VerificationError(check, f"missing: {len(hashes)} HASH payloads")
    return hashes[0]


@dataclass(frozen=True, slots=True)
class Phase1Inputs:
    """What HASH_I and HASH_R cover besides SKEYID and the IDs."""

    hash_alg: IkeHash
    g_xi: bytes
    g_xr: bytes
    cky_i: bytes
    cky_r: bytes
    sai_b: bytes


def phase1_auth_hash(
    keys: Phase1Keys, inputs: Phase1Inputs, id_b: bytes, *, responder: bool, prf: IkeHash
) -> bytes:
    """HASH_R (`responder`) or HASH_I over one side's ID body, with `prf`: the negotiated
    hash, or an ECDSA method's own (signatures.auth_prf): what a SIG payload signs."""
    p = inputs
    compute = hash_r if responder else hash_i
    return compute(prf, keys.skeyid, p.g_xi, p.g_xr, p.cky_i, p.cky_r, p.sai_b, id_b)


def verify_hash_i(keys: Phase1Keys, inputs: Phase1Inputs, idii_b: bytes, received: bytes) -> None:
    expected = phase1_auth_hash(keys, inputs, idii_b, responder=False, prf=inputs.hash_alg)
    _compare("HASH_I", expected, received)


def verify_hash_r(keys: Phase1Keys, inputs: Phase1Inputs, idir_b: bytes, received: bytes) -> None:
    expected = phase1_auth_hash(keys, inputs, idir_b, responder=True, prf=inputs.hash_alg)
    _compare("HASH_R", expected, received)


def verify_qm_hash1(keys: Phase1Keys, message_id: int, decrypted: Decrypted) -> None:
    received = leading_hash("HASH(1)", decrypted.payloads)
    rest = decrypted.after_first_payload()
    _compare("HASH(1)", quick_mode_hash1(keys.hash_alg, keys.skeyid_a, message_id, rest), received)


def verify_qm_hash2(keys: Phase1Keys, message_id: int, ni_b: bytes, decrypted: Decrypted) -> None:
    received = leading_hash("HASH(2)", decrypted.payloads)
    rest = decrypted.after_first_payload()
    expected = quick_mode_hash2(keys.hash_alg, keys.skeyid_a, message_id, ni_b, rest)
    _compare("HASH(2)", expected, received)


def verify_qm_hash3(
    keys: Phase1Keys, message_id: int, ni_b: bytes, nr_b: bytes, decrypted: Decrypted
) -> None:
    received = leading_hash("HASH(3)", decrypted.payloads)
    if len(decrypted.payloads) != 1:
        raise VerificationError("HASH(3)", "message carries payloads besides the hash")
    expected = quick_mode_hash3(keys.hash_alg, keys.skeyid_a, message_id, ni_b, nr_b)
    _compare("HASH(3)", expected, received)


def verify_informational(keys: Phase1Keys, message_id: int, decrypted: Decrypted) -> None:
    """HASH(1) of an Informational (or Transaction) exchange: prf(SKEYID_a, M-ID | rest)."""
    received = leading_hash("HASH(1)", decrypted.payloads)
    rest = decrypted.after_first_payload()
    expected = informational_hash(keys.hash_alg, keys.skeyid_a, message_id, rest)
    _compare("HASH(1)", expected, received)
