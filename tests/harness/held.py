"""Many established ISAKMP SAs in one core, without negotiating each: for tests and benches
that need a core holding thousands of tunnels (listing, and the cost of one more handshake
next to them).

Each held SA is a copy of one SA the core really negotiated, with its own tunnel id,
cookies and peer address (IPv6 documentation addresses, 2001:db8:0:b::/64, towards
2001:db8:0:a::1: they never leave the process) and its deadlines in the core's timer
index, so the tables and timers hold what a gateway with that many peers would. The copies
share the template's keys (nothing here sends on them).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from array import array

from ikepriv.child_negotiator.core.engine import Negotiator
from ikepriv.child_negotiator.core.retransmit import Flight
from ikepriv.child_negotiator.core.sa_table import IsakmpSa
from ikepriv.ipc.messages import Endpoint

HELD_LOCAL = ipaddress.IPv6Address("2001:db8:0:a::1")
HELD_PEERS = ipaddress.IPv6Address("2001:db8:0:b::")


def hold(core: Negotiator, count: int, template: IsakmpSa) -> list[IsakmpSa]:
    """Add `count` established copies of `template` to `core` (see the module docstring)."""
    out = []
    for i in range(count):
        tunnel_id = core.new_tunnel_id()
        cookie = tunnel_id.to_bytes(8, "big")
        sa = dataclasses.replace(
            template,
            tunnel_id=tunnel_id,
            icookie=b"\xc0" + cookie[1:],
            rcookie=b"\xd0" + cookie[1:],
            local=Endpoint(HELD_LOCAL, 500),
            remote=Endpoint(HELD_PEERS + i + 1, 500),
            flight=Flight(),
            exchanges={},
            finished_mids=array("I"),
            extensions={},
        )
        core.sas.add(sa)
        core.touch(sa)
        out.append(sa)
    return out
