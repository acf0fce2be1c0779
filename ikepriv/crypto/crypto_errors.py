"""Exceptions raised by ikepriv.crypto.

One small hierarchy so the negotiator can tell "the peer chose something we cannot do"
(answer NO_PROPOSAL_CHOSEN / ATTRIBUTES_NOT_SUPPORTED) from "the input has the wrong shape"
(a bug, or a hostile peer: answer PAYLOAD_MALFORMED or drop).
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class for every error from ikepriv.crypto."""


class UnsupportedAlgorithm(CryptoError):
    """The algorithm number is known to IANA but this implementation does not offer it."""


class InvalidKeyLength(CryptoError):
    """A Key Length attribute or a key does not fit the algorithm."""


class InvalidInput(CryptoError):
    """A length, an IV, a message ID or an SPI has the wrong size or range."""
