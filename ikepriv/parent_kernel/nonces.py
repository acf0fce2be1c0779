"""Our phase 1 nonces, made by the parent: what keeps SKEYID from being a PSK oracle.

SKEYID = prf(PSK, Ni_b | Nr_b). If the child chose both nonces, the parent would compute a
keyed function of the pre-shared key over any input a compromised child likes, for example
prf(PSK, "Key Pad for IKEv2"), the IKEv2 PSK authenticator key (RFC 7296 2.15). So our own
nonce is the parent's: 32 bytes from the kernel's CSPRNG at a fixed place of the prf input
(first for an initiator, last for a responder), and the child only ever chooses the peer's
nonce. A responder's Nr is made on the spot for its SkeyidRequest; an initiator's Ni must go
on the wire before Nr is known, so the parent keeps it here until the one SkeyidRequest that
names it: single use, bound to the definition it was made for, expiring, and the table
bounded (the oldest goes first). Each negotiator child has a table of its own (vetting.py),
so one child can neither name nor crowd out another's nonces. Nothing here parses ISAKMP.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from ikepriv.ipc.messages import PARENT_NONCE_BYTES

MAX_NONCES: Final = 1024  # initiator nonces waiting for their SkeyidRequest
NONCE_LIFETIME: Final = 120.0  # seconds from NonceRequest to SkeyidRequest, at most


@dataclass(frozen=True, slots=True)
class IssuedNonce:
    phase1_number: int
    nonce: bytes
    expires: float


def fresh_nonce() -> bytes:
    return secrets.token_bytes(PARENT_NONCE_BYTES)


class NonceTable:
    def __init__(self, capacity: int = MAX_NONCES, lifetime: float = NONCE_LIFETIME) -> None:
        self._issued: OrderedDict[int, IssuedNonce] = OrderedDict()
        self._capacity = capacity
        self._lifetime = lifetime

    def __len__(self) -> int:
        return len(self._issued)

    def issue(self, phase1_number: int, now: float) -> tuple[int, bytes]:
        """A fresh Ni for an initiator of this definition and the id it is kept under."""
        self._expire(now)
        while len(self._issued) >= self._capacity:
            self._issued.popitem(last=False)
        while True:  # random ids: a child cannot name a nonce it was not given
            nonce_id = secrets.randbits(32)
            if nonce_id and nonce_id not in self._issued:
                break
        nonce = fresh_nonce()
        self._issued[nonce_id] = IssuedNonce(phase1_number, nonce, now + self._lifetime)
        return nonce_id, nonce

    def take(self, nonce_id: int, now: float) -> IssuedNonce | None:
        """The nonce issued under this id, removed (single use); None when unknown, used
        or expired."""
        self._expire(now)
        return self._issued.pop(nonce_id, None)

    def _expire(self, now: float) -> None:
        while self._issued:
            oldest = next(iter(self._issued.values()))
            if oldest.expires > now:
                return
            self._issued.popitem(last=False)
