"""The one exception the IPC layer raises, whatever the bytes or values.

The parent reads messages from a child it does not trust. Every way a message can be wrong
maps to one `IpcError` with a machine-readable `Reason`, so the caller has exactly one
thing to catch and can log why it killed the child without parsing text.
"""

from __future__ import annotations

from enum import Enum


class Reason(Enum):
    """Why a message (or a value about to be sent) was refused."""

    TOO_LARGE = "message larger than the transport maximum"
    TRUNCATED = "message ends before a field is complete"
    TRAILING_BYTES = "bytes left after the last field"
    UNKNOWN_TYPE = "unknown message type"
    WRONG_DIRECTION = "message type not allowed in this direction"
    INT_RANGE = "integer outside its bounds"
    BAD_BOOL = "boolean byte other than 0 or 1"
    BAD_ENUM = "value not in the allowed enumeration"
    BAD_LENGTH = "length outside its bounds"
    BAD_UTF8 = "text is not valid UTF-8"
    BAD_CHARSET = "text has a character outside its charset"
    BAD_FAMILY = "unknown address family"
    BAD_PREFIX = "prefix length too long for the address family"
    HOST_BITS = "network has host bits set"
    BAD_PRESENCE = "presence byte other than 0 or 1"
    TOO_MANY = "list count outside its bounds"
    BAD_TYPE = "Python value of the wrong type"
    INCONSISTENT = "fields contradict each other"
    VERSION_MISMATCH = "peer speaks another protocol version"
    ANCILLARY = "datagram carried ancillary data or was truncated by the kernel"


class IpcError(Exception):
    """A message was rejected; `reason` says why, `path` says where (field names)."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail
        self.path: list[str] = []

    def at(self, name: str) -> IpcError:
        """Prefix the field path while the error travels up through nested structs."""
        self.path.insert(0, name)
        return self

    def __str__(self) -> str:
        where = ".".join(self.path)
        text = self.reason.value
        if where:
            text = f"{where}: {text}"
        if self.detail:
            text = f"{text} ({self.detail})"
        return text
