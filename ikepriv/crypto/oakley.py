"""IKEv1 phase 1 and phase 2 key derivation, authentication hashes and the IV chain (RFC 2409).

All functions take raw bytes (payload *bodies*, i.e. without the 4-byte generic payload header)
so they do not depend on the ISAKMP codec. Notation as in RFC 2409: ``Ni_b``/``Nr_b`` are nonce
payload bodies, ``g_xy`` is the Diffie-Hellman shared secret encoded big-endian in exactly as
many bytes as the group's prime (leading zero bytes kept; see :func:`fixed_length_secret`),
``g_xi``/``g_xr`` are the public values as carried in the KE payloads, and ``prf`` is HMAC with
the negotiated hash.

Public API
----------
Phase 1 keys
    ``skeyid_psk(alg, psk, ni_b, nr_b) -> bytes``  prf(pre-shared-key, Ni_b | Nr_b)
    ``skeyid_signature(alg, ni_b, nr_b, g_xy) -> bytes``  prf(Ni_b | Nr_b, g^xy)
    ``derive_phase1_keys(alg, skeyid, g_xy, cky_i, cky_r, enc_key_length) -> Phase1Keys``
        SKEYID_d/_a/_e and the cipher key Ka; ``Phase1Keys.wipe()`` zeroes them.
    ``expand_encryption_key(alg, skeyid_e, length) -> bytearray``  RFC 2409 Appendix B.
Authentication hashes
    ``hash_i(...)``, ``hash_r(...)``: HASH_I / HASH_R of Main and Aggressive Mode.
    ``quick_mode_hash1/2/3(...)``, ``informational_hash(...)``: the phase 2 HASH payloads.
IVs
    ``phase1_iv(alg, g_xi, g_xr, block_size)``: hash(g^xi | g^xr) truncated.
    ``phase2_iv(alg, last_phase1_block, message_id, block_size)``: hash(block | M-ID) truncated.
    ``IvChain``: the CBC IV state of one ISAKMP SA (phase 1 chain plus one chain per
    message ID), advanced explicitly by the caller once a message has been accepted or sent.
Helpers
    ``fixed_length_secret(secret, size)``, ``encode_message_id(mid)``.

Constant-time comparison of received hashes: :func:`ikepriv.crypto.prf.digests_equal`.

Pure: no I/O, no randomness, no module state; IVs, nonces and secrets come from the caller.
Key material is returned as ``bytearray`` where an object keeps it (``Phase1Keys``) so that it
can be wiped; Python may still hold transient immutable copies (HMAC internals, slices), which
no library code can clear. wipe() shortens the lifetime of secrets, it cannot promise erasure.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ikepriv.crypto.crypto_errors import InvalidInput
from ikepriv.crypto.prf import COOKIE_LENGTH, digest, hash_spec, prf
from ikepriv.isakmp.constants import IkeHash

NONCE_MIN = 8  # RFC 2409 section 5: nonce payload data is 8..256 bytes
NONCE_MAX = 256
DH_SECRET_MAX = 1024  # 8192-bit MODP group
MESSAGE_ID_MAX = 0xFFFFFFFF
KEY_MAX = 1024  # longest key we ever expand to (far above any real transform)

Bytes = bytes | bytearray


# --------------------------------------------------------------------------- helpers


def encode_message_id(message_id: int) -> bytes:
    """The 4-byte network-order M-ID as it appears in the ISAKMP header."""
    if not 0 <= message_id <= MESSAGE_ID_MAX:
        raise InvalidInput(f"message ID {message_id} out of range")
    return struct.pack("!I", message_id)


def fixed_length_secret(secret: Bytes, size: int) -> bytes:
    """Left-pad a DH shared secret with zero bytes to the group's size.

    RFC 2409 uses g^xy as a fixed-length string; an integer-to-bytes conversion that drops
    leading zeros breaks about one exchange in 256 against other implementations.
    """
    if len(secret) > size:
        raise InvalidInput(f"shared secret of {len(secret)} bytes exceeds group size {size}")
    return bytes(size - len(secret)) + bytes(secret)


def _check_len(name: str, value: Bytes, low: int, high: int) -> None:
    if not low <= len(value) <= high:
        raise InvalidInput(f"{name}: {len(value)} bytes, expected {low}..{high}")


def _check_nonces(ni_b: Bytes, nr_b: Bytes) -> None:
    _check_len("Ni_b", ni_b, NONCE_MIN, NONCE_MAX)
    _check_len("Nr_b", nr_b, NONCE_MIN, NONCE_MAX)


def _check_cookies(cky_i: Bytes, cky_r: Bytes) -> None:
    _check_len("CKY-I", cky_i, COOKIE_LENGTH, COOKIE_LENGTH)
    _check_len("CKY-R", cky_r, COOKIE_LENGTH, COOKIE_LENGTH)


def _check_secret(name: str, value: Bytes) -> None:
    _check_len(name, value, 1, DH_SECRET_MAX)


def _wipe(buf: bytearray) -> None:
    for i in range(len(buf)):
        buf[i] = 0


# --------------------------------------------------------------------------- SKEYID


def skeyid_psk(alg: IkeHash | int, psk: Bytes, ni_b: Bytes, nr_b: Bytes) -> bytes:
    """SKEYID for pre-shared key authentication: prf(pre-shared-key, Ni_b | Nr_b).

    Runs in the privileged parent: the pre-shared key never reaches the negotiator.
    """
    _check_nonces(ni_b, nr_b)
    if not psk:
        raise InvalidInput("empty pre-shared key")
    return prf(alg, psk, bytes(ni_b) + bytes(nr_b))


def skeyid_signature(alg: IkeHash | int, ni_b: Bytes, nr_b: Bytes, g_xy: Bytes) -> bytes:
    """SKEYID for signature authentication: prf(Ni_b | Nr_b, g^xy)."""
    _check_nonces(ni_b, nr_b)
    _check_secret("g^xy", g_xy)
    return prf(alg, bytes(ni_b) + bytes(nr_b), g_xy)


@dataclass(slots=True, eq=False)
class Phase1Keys:
    """The keys of one ISAKMP SA. ``enc_key`` is Ka, already sized for the cipher."""

    hash_alg: IkeHash
    skeyid: bytearray
    skeyid_d: bytearray
    skeyid_a: bytearray
    skeyid_e: bytearray
    enc_key: bytearray

    def wipe(self) -> None:
        """Zero every key this object holds."""
        for buf in (self.skeyid, self.skeyid_d, self.skeyid_a, self.skeyid_e, self.enc_key):
            _wipe(buf)

    def shed_phase1_keys(self) -> None:
        """Zero and let go of what only the phase 1 exchange needs: SKEYID (its HASH_I and
        HASH_R) and SKEYID_e and Ka (the IkeCipher keeps its own copy of Ka). An ISAKMP SA
        keeps SKEYID_d (Quick Mode keys) and SKEYID_a (hashes) for the hours it lives."""
        for buf in (self.skeyid, self.skeyid_e, self.enc_key):
            _wipe(buf)
        self.skeyid, self.skeyid_e, self.enc_key = bytearray(), bytearray(), bytearray()

    def __repr__(self) -> str:  # never print key material by accident
        return f"Phase1Keys(hash_alg={self.hash_alg.name}, enc_key_length={len(self.enc_key)})"


def derive_phase1_keys(
    alg: IkeHash | int,
    skeyid: Bytes,
    g_xy: Bytes,
    cky_i: Bytes,
    cky_r: Bytes,
    enc_key_length: int,
) -> Phase1Keys:
    """SKEYID_d, SKEYID_a, SKEYID_e (RFC 2409 section 5) and the cipher key Ka (Appendix B).

    SKEYID_d = prf(SKEYID, g^xy | CKY-I | CKY-R | 0)
    SKEYID_a = prf(SKEYID, SKEYID_d | g^xy | CKY-I | CKY-R | 1)
    SKEYID_e = prf(SKEYID, SKEYID_a | g^xy | CKY-I | CKY-R | 2)
    """
    hash_id = hash_spec(alg).hash_id
    _check_secret("g^xy", g_xy)
    _check_cookies(cky_i, cky_r)
    _check_len("SKEYID", skeyid, 1, KEY_MAX)
    tail = bytes(g_xy) + bytes(cky_i) + bytes(cky_r)
    d = prf(hash_id, skeyid, tail + b"\x00")
    a = prf(hash_id, skeyid, d + tail + b"\x01")
    e = prf(hash_id, skeyid, a + tail + b"\x02")
    return Phase1Keys(
        hash_alg=hash_id,
        skeyid=bytearray(skeyid),
        skeyid_d=bytearray(d),
        skeyid_a=bytearray(a),
        skeyid_e=bytearray(e),
        enc_key=expand_encryption_key(hash_id, e, enc_key_length),
    )


def expand_encryption_key(alg: IkeHash | int, skeyid_e: Bytes, length: int) -> bytearray:
    """RFC 2409 Appendix B: Ka from SKEYID_e.

    When the cipher needs no more bytes than SKEYID_e has, Ka is its first ``length`` bytes.
    Otherwise Ka = K1 | K2 | ... truncated, with K1 = prf(SKEYID_e, 0) (one zero octet) and
    Kn = prf(SKEYID_e, Kn-1).
    """
    if not 1 <= length <= KEY_MAX:
        raise InvalidInput(f"key length {length} out of range")
    if length <= len(skeyid_e):
        return bytearray(skeyid_e[:length])
    out = bytearray()
    block = prf(alg, skeyid_e, b"\x00")
    out += block
    while len(out) < length:
        block = prf(alg, skeyid_e, block)
        out += block
    del out[length:]
    return out


# --------------------------------------------------------------------------- HASH_I / HASH_R


def hash_i(
    alg: IkeHash | int,
    skeyid: Bytes,
    g_xi: Bytes,
    g_xr: Bytes,
    cky_i: Bytes,
    cky_r: Bytes,
    sai_b: Bytes,
    idii_b: Bytes,
) -> bytes:
    """HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b).

    ``sai_b`` is the body of the initiator's SA payload (DOI, situation, proposals), ``idii_b``
    the body of the initiator's ID payload; both without generic payload header. For
    signature authentication this is the value that gets signed.
    """
    _check_cookies(cky_i, cky_r)
    return prf(alg, skeyid, b"".join(map(bytes, (g_xi, g_xr, cky_i, cky_r, sai_b, idii_b))))


def hash_r(
    alg: IkeHash | int,
    skeyid: Bytes,
    g_xi: Bytes,
    g_xr: Bytes,
    cky_i: Bytes,
    cky_r: Bytes,
    sai_b: Bytes,
    idir_b: Bytes,
) -> bytes:
    """HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b).

    Arguments are in the same order as for :func:`hash_i` (initiator's value first); the
    swap is done here. SAi_b is still the *initiator's* SA payload body.
    """
    _check_cookies(cky_i, cky_r)
    return prf(alg, skeyid, b"".join(map(bytes, (g_xr, g_xi, cky_r, cky_i, sai_b, idir_b))))


# --------------------------------------------------------------------------- phase 2 hashes


def quick_mode_hash1(alg: IkeHash | int, skeyid_a: Bytes, message_id: int, rest: Bytes) -> bytes:
    """HASH(1) = prf(SKEYID_a, M-ID | <every payload after HASH(1), with headers>)."""
    return prf(alg, skeyid_a, encode_message_id(message_id) + bytes(rest))


def quick_mode_hash2(
    alg: IkeHash | int, skeyid_a: Bytes, message_id: int, ni_b: Bytes, rest: Bytes
) -> bytes:
    """HASH(2) = prf(SKEYID_a, M-ID | Ni_b | <every payload after HASH(2)>).

    ``ni_b`` is the body of the initiator's phase 2 nonce payload (from message 1).
    """
    _check_len("Ni_b", ni_b, NONCE_MIN, NONCE_MAX)
    return prf(alg, skeyid_a, encode_message_id(message_id) + bytes(ni_b) + bytes(rest))


def quick_mode_hash3(
    alg: IkeHash | int, skeyid_a: Bytes, message_id: int, ni_b: Bytes, nr_b: Bytes
) -> bytes:
    """HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)."""
    _check_nonces(ni_b, nr_b)
    data = b"\x00" + encode_message_id(message_id) + bytes(ni_b) + bytes(nr_b)
    return prf(alg, skeyid_a, data)


def informational_hash(
    alg: IkeHash | int, skeyid_a: Bytes, message_id: int, payloads: Bytes
) -> bytes:
    """HASH(1) of an Informational exchange: prf(SKEYID_a, M-ID | N/D).

    ``payloads`` is every payload after the HASH payload, generic headers included, exactly
    as on the wire (the same rule as Quick Mode HASH(1)).
    """
    return prf(alg, skeyid_a, encode_message_id(message_id) + bytes(payloads))


# --------------------------------------------------------------------------- IVs


def phase1_iv(alg: IkeHash | int, g_xi: Bytes, g_xr: Bytes, block_size: int) -> bytes:
    """The IV of the first encrypted phase 1 message: hash(g^xi | g^xr), truncated."""
    return _truncate_iv(digest(alg, bytes(g_xi) + bytes(g_xr)), block_size)


def phase2_iv(
    alg: IkeHash | int, last_phase1_block: Bytes, message_id: int, block_size: int
) -> bytes:
    """The first IV of a Quick Mode or Informational exchange: hash(block | M-ID), truncated.

    ``last_phase1_block`` is the last CBC output block of phase 1 (RFC 2409 Appendix B): the
    final ciphertext block of the last encrypted phase 1 message, MM6 in Main Mode and AM3 in
    Aggressive Mode (or the initial IV itself if no phase 1 message was encrypted).
    """
    if len(last_phase1_block) != block_size:
        raise InvalidInput("last phase 1 block has the wrong size")
    return _truncate_iv(
        digest(alg, bytes(last_phase1_block) + encode_message_id(message_id)), block_size
    )


def _truncate_iv(value: bytes, block_size: int) -> bytes:
    if not 1 <= block_size <= len(value):
        raise InvalidInput(f"block size {block_size} larger than the hash output")
    return value[:block_size]


class IvChain:
    """The CBC IV state of one ISAKMP SA.

    Two kinds of chains share the SA: phase 1 (message ID 0), which starts at
    :func:`phase1_iv`, and one per phase 2 exchange (Quick Mode, Informational), which starts
    at :func:`phase2_iv` of the phase 1 chain's last block and the exchange's message ID.
    Within a chain the IV of each message is the last ciphertext block of the previous one.

    Use: ``iv = chain.iv_for(mid)`` to encrypt or decrypt; after a message has been *sent*,
    or *received and verified*, call ``chain.advance(mid, ciphertext)``. :meth:`iv_for`
    never changes state, so a forged or corrupt message leaves the chain untouched, and an
    attacker cannot grow the table without valid keys. A retransmission is the same
    datagram sent again: do not re-encrypt it, and do not advance for a received duplicate.

    At most ``max_exchanges`` phase 2 chains are kept (least recently used is dropped first);
    a dropped exchange cannot continue, which bounds memory against a flood of valid but
    abandoned exchanges. strongSwan keeps three. An ISAKMP SA lives for hours with no
    phase 2 exchange running most of the time, so the table of chains exists only while
    one does (an empty OrderedDict kept 0.4 kB per SA).
    """

    __slots__ = ("_alg", "_block_size", "_max", "_phase1", "_phase2")

    def __init__(
        self, alg: IkeHash | int, block_size: int, initial_iv: Bytes, max_exchanges: int = 8
    ) -> None:
        self._alg = hash_spec(alg).hash_id
        if len(initial_iv) != block_size:
            raise InvalidInput("initial IV must be one block")
        _truncate_iv(bytes(hash_spec(alg).digest_size), block_size)  # block fits the hash
        if max_exchanges < 1:
            raise InvalidInput("max_exchanges must be positive")
        self._block_size = block_size
        self._max = max_exchanges
        self._phase1 = bytes(initial_iv)
        self._phase2: dict[int, bytes] | None = None  # oldest first; None: no exchange

    @classmethod
    def from_public_values(
        cls, alg: IkeHash | int, block_size: int, g_xi: Bytes, g_xr: Bytes, max_exchanges: int = 8
    ) -> IvChain:
        """The chain of a new ISAKMP SA, starting at hash(g^xi | g^xr)."""
        return cls(alg, block_size, phase1_iv(alg, g_xi, g_xr, block_size), max_exchanges)

    @property
    def block_size(self) -> int:
        return self._block_size

    @property
    def phase1_last_block(self) -> bytes:
        """The current end of the phase 1 chain (the initial IV until a message is sent)."""
        return self._phase1

    def iv_for(self, message_id: int) -> bytes:
        """IV for the next message of exchange ``message_id`` (0 = phase 1). No side effect."""
        encode_message_id(message_id)  # range check
        if message_id == 0:
            return self._phase1
        current = self._phase2.get(message_id) if self._phase2 is not None else None
        if current is not None:
            return current
        return phase2_iv(self._alg, self._phase1, message_id, self._block_size)

    def advance(self, message_id: int, ciphertext: Bytes) -> None:
        """Record that ``ciphertext`` (the encrypted body, after the ISAKMP header) was sent or
        accepted in exchange ``message_id``; its last block becomes that chain's next IV."""
        encode_message_id(message_id)
        bs = self._block_size
        if not ciphertext or len(ciphertext) % bs:
            raise InvalidInput("ciphertext is not a whole number of blocks")
        block = bytes(ciphertext[-bs:])
        if message_id == 0:
            self._phase1 = block
            return
        chains = self._phase2
        if chains is None:
            chains = self._phase2 = {}
        chains.pop(message_id, None)  # re-inserted: the most recently used is last
        chains[message_id] = block
        while len(chains) > self._max:
            del chains[next(iter(chains))]

    def forget(self, message_id: int) -> None:
        """Drop the chain of a finished or abandoned phase 2 exchange."""
        chains = self._phase2
        if chains is not None:
            chains.pop(message_id, None)
            if not chains:
                self._phase2 = None

    def active_exchanges(self) -> tuple[int, ...]:
        """Message IDs with a phase 2 chain in progress, oldest first."""
        return tuple(self._phase2 or ())
