"""Key material given to ikedump on the command line, and Wireshark's IKEv1 key table.

Wireshark's "IKEv1 Decryption Table" (uat:ikev1_decryption_table) has one entry per ISAKMP
SA: the initiator cookie and the encryption key Ka, both hex. The file form accepted here is
one `icookie_hex,Ka_hex` per line; blank lines and lines starting with '#' are ignored, and
fields may be quoted as Wireshark writes them in its `ikev1_decryption_table` file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COOKIE_LENGTH = 8
MAX_KEY_FILE_BYTES = 1 << 20
MAX_SECRET_BYTES = 1024  # an 8192-bit MODP shared secret


class KeyInputError(ValueError):
    """A key argument or key file line that does not parse (a usage error)."""


def parse_hex(text: str, what: str, *, max_bytes: int = MAX_SECRET_BYTES) -> bytes:
    """Hex with optional 0x prefix, ':' separators and whitespace."""
    cleaned = "".join(text.split()).replace(":", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    try:
        value = bytes.fromhex(cleaned)
    except ValueError:
        raise KeyInputError(f"{what}: not hex") from None
    if not 1 <= len(value) <= max_bytes:
        raise KeyInputError(f"{what}: {len(value)} bytes (allowed 1..{max_bytes})")
    return value


def parse_selected(text: str, what: str, selector_bytes: int) -> tuple[bytes | None, bytes]:
    """`[SELECTOR=]HEX`: the optional selector (an icookie, or a message ID as 4 bytes)
    names which SA or exchange the secret belongs to."""
    selector, sep, value = text.rpartition("=")
    if not sep:
        return None, parse_hex(text, what)
    sel = parse_hex(selector, f"{what} selector", max_bytes=selector_bytes)
    if len(sel) != selector_bytes:
        raise KeyInputError(f"{what}: selector must be {selector_bytes} bytes of hex")
    return sel, parse_hex(value, what)


def parse_key_table(text: str) -> dict[bytes, bytes]:
    """icookie -> Ka from a Wireshark-style table."""
    table: dict[bytes, bytes] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip().strip('"') for f in line.split(",")]
        if len(fields) != 2:
            raise KeyInputError(f"key file line {number}: want icookie_hex,Ka_hex")
        icookie = parse_hex(fields[0], f"key file line {number} icookie", max_bytes=8)
        if len(icookie) != COOKIE_LENGTH:
            raise KeyInputError(f"key file line {number}: icookie must be 8 bytes")
        key = parse_hex(fields[1], f"key file line {number} Ka", max_bytes=64)
        if icookie in table and table[icookie] != key:
            raise KeyInputError(f"key file line {number}: second key for {icookie.hex()}")
        table[icookie] = key
    return table


@dataclass(slots=True)
class KeyMaterial:
    """Everything ikedump was told. Secrets without a selector are handed out in the order
    the SAs (or PFS Quick Modes) appear in the capture."""

    psk: bytes | None = None
    dh_secrets: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    qm_dh_secrets: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    ka_table: dict[bytes, bytes] = field(default_factory=dict)
    _dh_used: set[int] = field(default_factory=set)
    _qm_used: set[int] = field(default_factory=set)

    @property
    def any(self) -> bool:
        """Whether any secret was given (a DH secret alone serves signature SAs)."""
        return self.psk is not None or bool(self.ka_table) or bool(self.dh_secrets)

    def dh_secret_for(self, icookie: bytes) -> bytes | None:
        return _take(self.dh_secrets, self._dh_used, icookie)

    def qm_dh_secret_for(self, message_id: int) -> bytes | None:
        return _take(self.qm_dh_secrets, self._qm_used, message_id.to_bytes(4, "big"))


def _take(
    entries: list[tuple[bytes | None, bytes]], used: set[int], selector: bytes
) -> bytes | None:
    for index, (sel, value) in enumerate(entries):
        if sel == selector and index not in used:
            used.add(index)
            return value
    for index, (sel, value) in enumerate(entries):
        if sel is None and index not in used:
            used.add(index)
            return value
    return None
