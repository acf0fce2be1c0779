"""Tunnel definitions as frozen values: what the database stores and the daemon consumes.

A definition is only ever built by the loader (from a TOML file) or by the database (from
rows the loader validated), so its fields are already typed and checked. `number` is the
stable database number (None until stored); the AIX-like `numlist` of `ike` refers to it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

from ikepriv.config.proposals import AhProposal, EspProposal, IkeProposal
from ikepriv.isakmp.constants import (
    AuthMethod,
    EncapsulationMode,
    ExchangeType,
    GroupId,
    IdType,
    IpProtocol,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

__all__ = [
    "Definitions",
    "DpdAction",
    "IPAddress",
    "IPNetwork",
    "Identity",
    "Phase1Definition",
    "Phase2Definition",
]


class DpdAction(StrEnum):
    """What to do with a phase 1 (and its phase 2s) whose peer stopped answering DPD."""

    RESTART = "restart"  # delete and negotiate again at once
    HOLD = "hold"  # delete; renegotiate when traffic needs the tunnel (kernel ACQUIRE)
    CLEAR = "clear"  # delete and stay down


@dataclass(frozen=True)
class Identity:
    """An ISAKMP identity: its ID payload type and its text form.

    Addresses are kept in canonical text form; FQDN and USER_FQDN as written (without the
    leading '@' strongSwan uses to force FQDN); a DN as written ("C=CH, O=Example, CN=gw").
    """

    type: IdType
    value: str

    def __str__(self) -> str:
        if self.type is IdType.FQDN and _looks_like_address(self.value):
            return "@" + self.value
        return self.value


def _looks_like_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Phase1Definition:
    """An ISAKMP SA (phase 1) definition.

    `remote_addr` None means "%any": a responder-only definition that accepts any peer
    address (allowed only with Aggressive Mode, where the PSK is chosen by the peer's ID).
    `psk` is the pre-shared key; repr hides it so it never lands in a log line.
    """

    name: str
    local_addr: IPAddress
    remote_addr: IPAddress | None
    local_id: Identity
    remote_id: Identity
    mode: ExchangeType  # IDENTITY_PROTECTION (Main Mode) or AGGRESSIVE
    auth: AuthMethod
    psk: bytes | None = field(repr=False)
    key_ref: str | None
    proposals: tuple[IkeProposal, ...]
    lifetime: int  # seconds
    rekey_margin: int  # seconds before expiry to start rekeying
    keying_tries: int  # attempts before giving up (0 = forever)
    dpd_delay: int  # seconds between R-U-THERE probes when idle; 0 = DPD off
    dpd_timeout: int  # seconds without an answer before the peer is declared dead
    dpd_action: DpdAction
    nat_traversal: bool
    autostart: bool
    number: int | None = None

    @property
    def accepts_any_peer(self) -> bool:
        return self.remote_addr is None


@dataclass(frozen=True)
class Phase2Definition:
    """An IPsec SA (phase 2) definition, bound to a phase 1 by name.

    Selectors: subnets (host bits zero), protocol (0 = any) and ports (0 = any; only with
    TCP or UDP). Exactly one of `esp_proposals` / `ah_proposals` is non-empty.
    """

    name: str
    phase1: str
    local_subnet: IPNetwork
    remote_subnet: IPNetwork
    protocol: int
    local_port: int
    remote_port: int
    esp_proposals: tuple[EspProposal, ...]
    ah_proposals: tuple[AhProposal, ...]
    mode: EncapsulationMode  # TUNNEL or TRANSPORT
    lifetime: int  # seconds
    lifetime_kb: int  # kilobytes; 0 = no volume limit
    rekey_margin: int
    autostart: bool
    number: int | None = None

    @property
    def pfs_group(self) -> GroupId | None:
        """The DH group for Quick Mode PFS, or None.

        A Quick Mode exchange carries one KE payload, so every proposal that names a group
        names the same one (the loader checks this) and the group applies to the exchange.
        """
        groups = [p.group for p in self.esp_proposals] + [p.group for p in self.ah_proposals]
        return next((g for g in groups if g is not None), None)

    @property
    def protocol_name(self) -> str:
        try:
            return IpProtocol(self.protocol).name.lower()
        except ValueError:
            return str(self.protocol)


@dataclass(frozen=True)
class Definitions:
    """A set of definitions read from one file: written to the database as one unit."""

    phase1: tuple[Phase1Definition, ...] = ()
    phase2: tuple[Phase2Definition, ...] = ()
