"""A received datagram as every exchange module sees it, and the address type of peers.

Kept at the bottom of the core (it imports only the IPC and ISAKMP value types) so that
the hooks, the context protocol and each exchange can name it without importing the
engine that builds it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ikepriv.ipc.messages import Endpoint
from ikepriv.isakmp import Message as IsakmpMessage

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Inbound:
    """One received datagram, decoded once."""

    local: Endpoint
    remote: Endpoint
    natt: bool
    data: bytes
    digest: bytes
    message: IsakmpMessage
