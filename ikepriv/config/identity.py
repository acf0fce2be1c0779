"""ISAKMP identities written as text, with the ID type inferred as strongSwan does.

An address is an address; text containing '=' is a distinguished name; text containing '@'
is a user FQDN (user@example.org), unless it starts with '@', which forces FQDN; anything
else must be a DNS name. Every form is bounded and checked so that the ID payload the daemon
builds from it is well formed.

`Identity` checks itself when it is built: its text form (`str`) must read back as the same
type and value, so an identity decoded from a database row is one the loader could have
produced.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from types import ModuleType

from ikepriv.isakmp.constants import IdType

__all__ = ["Identity", "identity_for_address", "parse_identity"]

MAX_ID_CHARS = 255
MAX_DN_CHARS = 1024
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")


def _x509() -> ModuleType:
    """cryptography.x509, imported on first use: it costs half a second of start-up, and
    only DN identities need it (every `ike` call would pay for it otherwise)."""
    from cryptography import x509

    return x509


@dataclass(frozen=True)
class Identity:
    """An ISAKMP identity: its ID payload type and its text form.

    Addresses are kept in canonical text form; FQDN and USER_FQDN as written (without the
    leading '@' strongSwan uses to force FQDN); a DN as written ("C=CH, O=Example, CN=gw").
    Building one that the text form cannot express raises ValueError.
    """

    type: IdType
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.type, IdType) or not isinstance(self.value, str):
            raise ValueError("an identity is an IdType and a string")
        inferred = _infer(str(self))
        if inferred != (self.type, self.value):
            raise ValueError(
                f"{self.type.name} identity {self.value!r} is not in the form the "
                f"definitions file writes (it reads back as {inferred[0].name} {inferred[1]!r})"
            )

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


def identity_for_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Identity:
    """The default identity of a gateway address."""
    kind = IdType.IPV4_ADDR if addr.version == 4 else IdType.IPV6_ADDR
    return Identity(kind, str(addr))


def _check_fqdn(text: str) -> str:
    if len(text) > 253:
        raise ValueError("DNS name longer than 253 characters")
    labels = text.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{text!r} is not a valid DNS name (letters, digits, '-', '.')")
    return text


def _infer(text: str) -> tuple[IdType, str]:
    """The ID type and value `text` stands for; ValueError names the problem."""
    if not text:
        raise ValueError("identity is empty")
    if "=" in text:
        if len(text) > MAX_DN_CHARS:
            raise ValueError(f"distinguished name longer than {MAX_DN_CHARS} characters")
        if not text.isprintable():
            raise ValueError("distinguished name contains control characters")
        try:
            _x509().Name.from_rfc4514_string(re.sub(r",\s+", ",", text))
        except ValueError:
            raise ValueError(
                f"{text!r} is not a distinguished name (write 'C=CH, O=Example, CN=gw')"
            ) from None
        return IdType.DER_ASN1_DN, text
    if len(text) > MAX_ID_CHARS:
        raise ValueError(f"identity longer than {MAX_ID_CHARS} characters")
    if text.startswith("@"):
        return IdType.FQDN, _check_fqdn(text[1:])
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return (IdType.IPV4_ADDR if addr.version == 4 else IdType.IPV6_ADDR), str(addr)
    if "@" in text:
        local, _, domain = text.rpartition("@")
        if not _LOCAL_PART.match(local):
            raise ValueError(f"{text!r}: the part before '@' is not a valid user name")
        _check_fqdn(domain)
        return IdType.USER_FQDN, text
    return IdType.FQDN, _check_fqdn(text)


def parse_identity(text: str) -> Identity:
    """Infer the ID type of `text` and validate it; ValueError names the problem."""
    return Identity(*_infer(text))
