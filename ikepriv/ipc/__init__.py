"""IPC between the daemon's parts: parent <-> child, and CLI <-> parent.

- `ikepriv.ipc.schema`: the schema engine (field kinds, structs, encode/decode).
- `ikepriv.ipc.messages`: the catalogue, i.e. every message and who vets what.
- `ikepriv.ipc.framing`: one message per SEQPACKET datagram, blocking or trio.
- `ikepriv.ipc.control`: the CLI session and response splitting.

Importing the package loads the catalogue, so `decode` always knows every message type.
"""

from ikepriv.ipc import messages
from ikepriv.ipc.ipc_error import IpcError, Reason
from ikepriv.ipc.messages import PROTOCOL_VERSION, check_version
from ikepriv.ipc.schema import (
    MAX_MESSAGE_SIZE,
    Direction,
    Message,
    decode,
    decode_any,
    encode,
    registry,
)

__all__ = [
    "MAX_MESSAGE_SIZE",
    "PROTOCOL_VERSION",
    "Direction",
    "IpcError",
    "Message",
    "Reason",
    "check_version",
    "decode",
    "decode_any",
    "encode",
    "messages",
    "registry",
]
