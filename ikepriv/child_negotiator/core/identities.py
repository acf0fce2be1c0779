"""ID payloads against definitions: phase 1 identities and phase 2 traffic selectors.

Phase 2 selectors travel as ID payloads (RFC 2407 4.6.2): a host (ID_IPV4_ADDR/IPV6_ADDR), a
subnet or an address range, each with an IP protocol and a port (0 = any). The kernel
selectors we install are prefixes, so a range is accepted only when it is exactly one prefix.
"Inside" means: address set contained, and protocol/port equal unless the outer one is any.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from enum import Enum

from ikepriv.ipc.messages import Identity, SelectorSide
from ikepriv.isakmp import IdPayload, IsakmpError
from ikepriv.isakmp.constants import IKE_PORT, IdType, IpProtocol

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# RFC 2407 4.6.2: phase 1 IDs carry protocol/port 0, or UDP and the IKE port.
_PHASE1_PROTO_PORT = frozenset({(0, 0), (int(IpProtocol.UDP), 0), (int(IpProtocol.UDP), IKE_PORT)})


class IdForm(Enum):
    """How we send a phase 2 selector: host/subnet as fits, or always as a range."""

    AUTO = "auto"
    RANGE = "range"


def phase1_id(identity: Identity) -> IdPayload:
    """Our phase 1 ID payload (the parent signs over the same IdPayload.phase1 body)."""
    return IdPayload.phase1(identity.id_type, identity.data)


def phase1_id_matches(expected: Identity | None, received: IdPayload) -> bool:
    """Whether the peer's phase 1 ID is the one the definition names (None: any)."""
    if (received.protocol, received.port) not in _PHASE1_PROTO_PORT:
        return False
    if expected is None:
        return True
    return received.id_type == expected.id_type and received.data == expected.data


def as_identity(payload: IdPayload) -> Identity | None:
    """The IPC form of a received ID, for reports (None if it does not fit)."""
    try:
        return Identity(payload.id_type, payload.data)
    except Exception:
        return None


def host_selector(address: IPAddress) -> SelectorSide:
    return SelectorSide(ipaddress.ip_network(address), 0, 0)


def selector_id(selector: SelectorSide, form: IdForm = IdForm.AUTO) -> IdPayload:
    net = selector.network
    if form is IdForm.RANGE:
        return IdPayload.address_range(
            net.network_address, net.broadcast_address, selector.protocol, selector.port
        )
    if net.prefixlen == net.max_prefixlen:
        return IdPayload.address(net.network_address, selector.protocol, selector.port)
    return IdPayload.subnet(net, selector.protocol, selector.port)


_RANGE_TYPES = frozenset({IdType.IPV4_ADDR_RANGE, IdType.IPV6_ADDR_RANGE})
_ADDR_TYPES = frozenset({IdType.IPV4_ADDR, IdType.IPV6_ADDR})
_SUBNET_TYPES = frozenset({IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR_SUBNET})


def id_selector(payload: IdPayload) -> SelectorSide | None:
    """The selector a phase 2 ID stands for, or None (names, or a range that is no prefix)."""
    try:
        value = payload.value
        if payload.id_type in _ADDR_TYPES:
            assert isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address)
            net: IPNetwork = ipaddress.ip_network(value)
        elif payload.id_type in _SUBNET_TYPES:
            if not isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
                return None
            net = value
        elif payload.id_type in _RANGE_TYPES:
            if not isinstance(value, tuple):
                return None
            first, last = value
            nets: list[IPNetwork] = list(ipaddress.summarize_address_range(first, last))
            if len(nets) != 1:
                return None
            net = nets[0]
        else:
            return None
        return SelectorSide(net, payload.protocol, payload.port)
    except (IsakmpError, ValueError, TypeError, AssertionError):
        return None


def selector_inside(inner: SelectorSide, outer: SelectorSide) -> bool:
    """Equal to or narrower than `outer`, never wider."""
    a, b = inner.network, outer.network
    if a.version != b.version or not a.subnet_of(b):  # type: ignore[arg-type]
        return False
    if outer.protocol and inner.protocol != outer.protocol:
        return False
    return not outer.port or inner.port == outer.port


def shared_side(side: SelectorSide, known: Iterable[SelectorSide]) -> SelectorSide:
    """`side`, or the equal one of `known` (a definition's own): selectors decoded from a
    peer's IDs are fresh objects (0.6 kB a side with the addresses ipaddress caches on a
    network), and an IPsec SA, its policy set and its rekeys hold them for as long as the
    tunnel lives, while most equal the definition's."""
    for k in known:
        if k == side:
            return k
    return side
