"""The one exception the ISAKMP codec raises.

A responder that rejects a message may answer with an RFC 2408 Notify; the decoder therefore
says, for every rejection, which notify type fits and where in the message the fault is, so
the negotiator can answer (or stay silent) without re-parsing, and ikedump can point at the
byte. Rules used throughout the codec:

* a length that does not fit its container, a truncated structure, a nonzero RESERVED field
  or a count above a bound: PAYLOAD_MALFORMED;
* the header length differs from the datagram length, or bytes are left after the payload
  chain: UNEQUAL_PAYLOAD_LENGTHS;
* a structurally wrong SA (wrong inner next-payload, transform count mismatch, no proposal
  or no transform, a basic attribute sent as variable): BAD_PROPOSAL_SYNTAX;
* the header checks map to INVALID_COOKIE, INVALID_MAJOR_VERSION, INVALID_MINOR_VERSION,
  INVALID_EXCHANGE_TYPE and INVALID_FLAGS; SA and ID checks to DOI_NOT_SUPPORTED,
  SITUATION_NOT_SUPPORTED, INVALID_PROTOCOL_ID, INVALID_SPI and INVALID_ID_INFORMATION.

Offsets count from the first byte of the ISAKMP header (after any non-ESP marker), or from
the `base_offset` a caller passes for a decrypted body. Errors raised while building or
encoding objects (not tied to received bytes) carry offset -1. The class derives from
ValueError so that callers treating bad input generically still catch it.
"""

from __future__ import annotations

from typing import NoReturn

from ikepriv.isakmp.constants import NotifyType

NO_OFFSET = -1


class IsakmpError(ValueError):
    """A message (or an object to encode) that is not valid ISAKMP."""

    __slots__ = ("notify", "offset", "reason")

    def __init__(self, notify: NotifyType, offset: int, reason: str) -> None:
        super().__init__(notify, offset, reason)
        self.notify = notify
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        where = "" if self.offset < 0 else f" at offset {self.offset}"
        return f"{self.notify.name}{where}: {self.reason}"


def fail(notify: NotifyType, offset: int, reason: str) -> NoReturn:
    """Raise IsakmpError; a function so decoders read as straight-line checks."""
    raise IsakmpError(notify, offset, reason)


def malformed(offset: int, reason: str) -> NoReturn:
    raise IsakmpError(NotifyType.PAYLOAD_MALFORMED, offset, reason)
