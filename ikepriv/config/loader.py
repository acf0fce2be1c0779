"""Read a TOML definitions file into validated definitions, or refuse it as a whole.

Every field is type- and range-checked, unknown keys are errors (a typo must not silently
become a default), and each problem names the file, line, table and field. All problems of
a file are collected and reported together; a file with any problem yields nothing.

`swap=True` reads a peer's file: local and remote addresses, IDs, subnets and ports trade
places before validation, and problems still name the keys as they are written in the file.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ikepriv.config.errors import ConfigError, Problem
from ikepriv.config.identity import identity_for_address, parse_identity
from ikepriv.config.locate import SourceMap
from ikepriv.config.model import (
    Definitions,
    DpdAction,
    Identity,
    IPAddress,
    IPNetwork,
    Phase1Definition,
    Phase2Definition,
)
from ikepriv.config.proposals import (
    ProposalError,
    parse_ah_proposals,
    parse_esp_proposals,
    parse_ike_proposals,
)
from ikepriv.isakmp.constants import AuthMethod, EncapsulationMode, ExchangeType, IpProtocol

__all__ = [
    "ANY_PEER",
    "BOUNDS",
    "ENCAP_MODES",
    "PHASE1_MODES",
    "PROTOCOLS",
    "load_definitions",
    "load_file",
]

_T = TypeVar("_T")
_D = TypeVar("_D")


class _Required:
    """Marks a key without a default."""


_REQUIRED = _Required()

MAX_FILE_BYTES = 1 << 20
MAX_TABLES = 4096
MAX_PSK_BYTES = 256
ANY_PEER = "%any"
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

PHASE1_MODES: dict[str, ExchangeType] = {
    "main": ExchangeType.IDENTITY_PROTECTION,
    "aggressive": ExchangeType.AGGRESSIVE,
}
ENCAP_MODES: dict[str, EncapsulationMode] = {
    "tunnel": EncapsulationMode.TUNNEL,
    "transport": EncapsulationMode.TRANSPORT,
}
AUTH_METHODS: dict[str, AuthMethod] = {"psk": AuthMethod.PRE_SHARED_KEY}
PROTOCOLS: dict[str, IpProtocol] = {
    "any": IpProtocol.ANY,
    "icmp": IpProtocol.ICMP,
    "tcp": IpProtocol.TCP,
    "udp": IpProtocol.UDP,
    "icmpv6": IpProtocol.ICMPV6,
}
_PORT_PROTOCOLS = frozenset({IpProtocol.TCP, IpProtocol.UDP})

# Inclusive (low, high) bounds; for kilobytes and DPD delay 0 also means "off".
BOUNDS: dict[str, tuple[int, int]] = {
    "phase1.lifetime": (60, 86400),
    "phase2.lifetime": (60, 86400),
    "phase2.lifetime_kb": (1024, 2**32 - 1),
    "dpd_delay": (5, 3600),
    "dpd_timeout": (10, 86400),
    "keying_tries": (0, 1000),
    "port": (0, 65535),
    "protocol": (0, 255),
}

_SWAP = {
    "local_addr": "remote_addr",
    "remote_addr": "local_addr",
    "local_id": "remote_id",
    "remote_id": "local_id",
    "local_subnet": "remote_subnet",
    "remote_subnet": "local_subnet",
    "local_port": "remote_port",
    "remote_port": "local_port",
}

PHASE1_KEYS = (
    "name",
    "local_addr",
    "remote_addr",
    "local_id",
    "remote_id",
    "mode",
    "auth",
    "psk",
    "psk_hex",
    "key_ref",
    "proposals",
    "lifetime",
    "rekey_margin",
    "keying_tries",
    "dpd_delay",
    "dpd_timeout",
    "dpd_action",
    "nat_traversal",
    "autostart",
)
PHASE2_KEYS = (
    "name",
    "phase1",
    "local_subnet",
    "remote_subnet",
    "protocol",
    "local_port",
    "remote_port",
    "proposals",
    "ah_proposals",
    "mode",
    "lifetime",
    "lifetime_kb",
    "rekey_margin",
    "autostart",
)


def default_rekey_margin(lifetime: int) -> int:
    """strongSwan's 9 minutes, but never more than half of a short lifetime."""
    return min(540, lifetime // 2)


class _Bad(Exception):
    """One field (or the table, if field is None) is wrong."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


# --- value converters: raw TOML value -> typed value, or ValueError with the reason -------


def _type_name(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        str: "a string",
        list: "an array",
        dict: "a table",
        float: "a float",
    }.get(type(value), type(value).__name__)


def _expect(value: object, kind: type[_T], what: str) -> _T:
    if type(value) is not kind:  # exact: a bool is not an integer here
        raise ValueError(f"must be {what}, not {_type_name(value)}")
    return value


def _int_in(value: object, low: int, high: int, zero_ok: bool = False) -> int:
    number = _expect(value, int, "an integer")
    if not (low <= number <= high or (zero_ok and number == 0)):
        off = "0 or " if zero_ok else ""
        raise ValueError(f"{number} is out of range ({off}{low}..{high})")
    return number


def _choice(value: object, table: Mapping[str, _T]) -> _T:
    text = _expect(value, str, "a string")
    if text not in table:
        raise ValueError(f"{text!r} is not one of: {', '.join(table)}")
    return table[text]


def _name(value: object) -> str:
    text = _expect(value, str, "a string")
    if not _NAME.match(text):
        raise ValueError(f"{text!r} is not a valid name (1-64 of A-Z a-z 0-9 . _ -)")
    return text


def _address(value: object) -> IPAddress:
    text = _expect(value, str, "a string")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"{text} cannot be a gateway address (unspecified or multicast)")
    return addr


def _network(value: object) -> IPNetwork:
    text = _expect(value, str, "a string")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise ValueError(f"{text!r} has host bits set (write the network address)") from None
        raise ValueError(f"{text!r} is not a subnet (write e.g. 198.51.100.0/24)") from None


def _identity(value: object) -> Identity:
    return parse_identity(_expect(value, str, "a string"))


def _string_list(value: object) -> list[str]:
    items = _expect(value, list, "an array of strings")
    if not items:
        raise ValueError("must not be empty")
    for item in items:
        _expect(item, str, "an array of strings")
    return items


def _psk_bounded(key: bytes) -> bytes:
    if not key:
        raise ValueError("must not be empty")
    if len(key) > MAX_PSK_BYTES:
        raise ValueError(f"longer than {MAX_PSK_BYTES} bytes")
    return key


def _psk(value: object) -> bytes:
    return _psk_bounded(_expect(value, str, "a string").encode())


def _psk_hex(value: object) -> bytes:
    text = _expect(value, str, "a string")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError("is not hexadecimal (an even number of 0-9 a-f digits)") from None
    return _psk_bounded(key)


def _protocol(value: object) -> int:
    if type(value) is int:
        return _int_in(value, *BOUNDS["protocol"])
    if type(value) is str:
        return int(_choice(value, PROTOCOLS))
    raise ValueError(f"must be one of {', '.join(PROTOCOLS)} or a number, not {_type_name(value)}")


# --- one table ----------------------------------------------------------------------------


class _Table:
    """The raw values of one [[phaseN]] table, converted field by field."""

    def __init__(self, raw: dict[str, Any], keys: tuple[str, ...], swap: bool) -> None:
        self.raw = {(_SWAP.get(k, k) if swap else k): v for k, v in raw.items()}
        self.problems: list[_Bad] = [
            _Bad(k, "unknown key (check the spelling; see docs/tunnel-definitions.md)")
            for k in self.raw
            if k not in keys
        ]

    def has(self, key: str) -> bool:
        return key in self.raw

    def get(
        self, key: str, convert: Callable[[object], _T], default: _D | _Required = _REQUIRED
    ) -> _T | _D:
        """Converted value of `key`; a missing key without a default is a problem."""
        if key not in self.raw:
            if isinstance(default, _Required):
                raise _Bad(key, "missing (required)")
            return default
        try:
            return convert(self.raw[key])
        except (ValueError, ProposalError) as exc:
            raise _Bad(key, str(exc)) from None

    def collect(self, **fields: Callable[[], object]) -> dict[str, object] | None:
        """Run every field getter, remembering all problems; None if any failed."""
        out: dict[str, object] = {}
        for key, getter in fields.items():
            try:
                out[key] = getter()
            except _Bad as bad:
                self.problems.append(bad)
        return None if self.problems else out


def _phase1(t: _Table) -> Phase1Definition:
    def remote_addr() -> IPAddress | None:
        if t.raw.get("remote_addr") == ANY_PEER:
            return None
        return t.get("remote_addr", _address)

    def local_addr() -> IPAddress:
        if t.raw.get("local_addr") == ANY_PEER:
            raise _Bad("local_addr", "cannot be %any (the local gateway address is needed)")
        return t.get("local_addr", _address)

    def lifetime() -> int:
        return t.get("lifetime", lambda v: _int_in(v, *BOUNDS["phase1.lifetime"]), 28800)

    def auth() -> AuthMethod:
        return t.get("auth", _auth_method, AuthMethod.PRE_SHARED_KEY)

    v = t.collect(
        name=lambda: t.get("name", _name),
        local_addr=local_addr,
        remote_addr=remote_addr,
        local_id=lambda: t.get("local_id", _identity, None),
        remote_id=lambda: t.get("remote_id", _identity, None),
        mode=lambda: t.get("mode", lambda x: _choice(x, PHASE1_MODES), PHASE1_MODES["main"]),
        auth=auth,
        psk=lambda: t.get("psk", _psk, None),
        psk_hex=lambda: t.get("psk_hex", _psk_hex, None),
        key_ref=lambda: t.get("key_ref", lambda x: _expect(x, str, "a string"), None),
        proposals=lambda: t.get("proposals", lambda x: parse_ike_proposals(_string_list(x))),
        lifetime=lifetime,
        rekey_margin=lambda: t.get("rekey_margin", lambda x: _int_in(x, 0, 86400), None),
        keying_tries=lambda: t.get(
            "keying_tries", lambda x: _int_in(x, *BOUNDS["keying_tries"]), 3
        ),
        dpd_delay=lambda: t.get(
            "dpd_delay", lambda x: _int_in(x, *BOUNDS["dpd_delay"], zero_ok=True), 30
        ),
        dpd_timeout=lambda: t.get("dpd_timeout", lambda x: _int_in(x, *BOUNDS["dpd_timeout"]), 150),
        dpd_action=lambda: t.get(
            "dpd_action", lambda x: _choice(x, {a.value: a for a in DpdAction}), DpdAction.CLEAR
        ),
        nat_traversal=lambda: t.get("nat_traversal", _boolean, True),
        autostart=lambda: t.get("autostart", _boolean, False),
    )
    if v is None:
        raise _Bad(None, "")  # field problems already recorded
    local: IPAddress = v["local_addr"]  # type: ignore[assignment]
    remote: IPAddress | None = v["remote_addr"]  # type: ignore[assignment]
    lifetime_s: int = v["lifetime"]  # type: ignore[assignment]
    margin: int | None = v["rekey_margin"]  # type: ignore[assignment]
    if margin is None:
        margin = default_rekey_margin(lifetime_s)
    elif margin >= lifetime_s:
        raise _Bad("rekey_margin", f"{margin} must be less than lifetime ({lifetime_s})")
    if remote is not None and remote.version != local.version:
        raise _Bad("remote_addr", "local_addr and remote_addr must be the same IP version")
    if remote is not None and remote == local:
        raise _Bad("remote_addr", "equals local_addr")
    psk = _pick_psk(t, v)
    if v["key_ref"] is not None:
        raise _Bad("key_ref", "is only for signature authentication, which is not supported yet")
    dpd_delay: int = v["dpd_delay"]  # type: ignore[assignment]
    dpd_timeout: int = v["dpd_timeout"]  # type: ignore[assignment]
    if dpd_delay and dpd_timeout <= dpd_delay:
        raise _Bad("dpd_timeout", f"{dpd_timeout} must be greater than dpd_delay ({dpd_delay})")
    local_id: Identity | None = v["local_id"]  # type: ignore[assignment]
    remote_id: Identity | None = v["remote_id"]  # type: ignore[assignment]
    if local_id is None:
        local_id = identity_for_address(local)
    if remote is None:
        _check_any_peer(v)
    if remote_id is None:
        assert remote is not None  # _check_any_peer requires remote_id with %any
        remote_id = identity_for_address(remote)
    return Phase1Definition(
        name=v["name"],  # type: ignore[arg-type]
        local_addr=local,
        remote_addr=remote,
        local_id=local_id,
        remote_id=remote_id,
        mode=v["mode"],  # type: ignore[arg-type]
        auth=v["auth"],  # type: ignore[arg-type]
        psk=psk,
        key_ref=None,
        proposals=v["proposals"],  # type: ignore[arg-type]
        lifetime=lifetime_s,
        rekey_margin=margin,
        keying_tries=v["keying_tries"],  # type: ignore[arg-type]
        dpd_delay=dpd_delay,
        dpd_timeout=dpd_timeout,
        dpd_action=v["dpd_action"],  # type: ignore[arg-type]
        nat_traversal=v["nat_traversal"],  # type: ignore[arg-type]
        autostart=v["autostart"],  # type: ignore[arg-type]
    )


def _boolean(value: object) -> bool:
    return _expect(value, bool, "true or false")


def _auth_method(value: object) -> AuthMethod:
    text = _expect(value, str, "a string")
    if text in ("rsasig", "ecdsa", "pubkey"):
        raise ValueError(f"{text!r}: signature authentication is not supported yet (use psk)")
    return _choice(text, AUTH_METHODS)


def _pick_psk(t: _Table, v: Mapping[str, object]) -> bytes:
    if t.has("psk") and t.has("psk_hex"):
        raise _Bad("psk_hex", "give either psk or psk_hex, not both")
    key = v["psk"] if v["psk"] is not None else v["psk_hex"]
    if key is None:
        raise _Bad(None, "missing field 'psk' (or 'psk_hex'): auth = \"psk\" needs a key")
    assert isinstance(key, bytes)
    return key


def _check_any_peer(v: Mapping[str, object]) -> None:
    """%any: responder-only, Aggressive Mode, the PSK chosen by an explicit peer ID.

    In Main Mode the responder must pick the PSK before it sees the (encrypted) peer ID, so
    it can only go by the peer's address; with %any that would hand one key to everyone.
    """
    if v["mode"] is not ExchangeType.AGGRESSIVE:
        raise _Bad(
            "remote_addr",
            '%any needs mode = "aggressive" (Main Mode PSK is chosen by the peer address)',
        )
    if v["remote_id"] is None:
        raise _Bad("remote_id", "required with remote_addr = %any (the PSK is chosen by it)")
    if v["autostart"]:
        raise _Bad("autostart", "cannot be true with remote_addr = %any (no peer to contact)")
    if v["dpd_action"] is DpdAction.RESTART:
        raise _Bad("dpd_action", "restart is impossible with remote_addr = %any")


def _phase2(t: _Table) -> Phase2Definition:
    def lifetime() -> int:
        return t.get("lifetime", lambda v: _int_in(v, *BOUNDS["phase2.lifetime"]), 3600)

    def port(key: str) -> Callable[[], int]:
        return lambda: t.get(key, lambda x: _int_in(x, *BOUNDS["port"]), 0)

    v = t.collect(
        name=lambda: t.get("name", _name),
        phase1=lambda: t.get("phase1", _name),
        local_subnet=lambda: t.get("local_subnet", _network),
        remote_subnet=lambda: t.get("remote_subnet", _network),
        protocol=lambda: t.get("protocol", _protocol, 0),
        local_port=port("local_port"),
        remote_port=port("remote_port"),
        proposals=lambda: t.get("proposals", lambda x: parse_esp_proposals(_string_list(x)), ()),
        ah_proposals=lambda: t.get(
            "ah_proposals", lambda x: parse_ah_proposals(_string_list(x)), ()
        ),
        mode=lambda: t.get("mode", lambda x: _choice(x, ENCAP_MODES), ENCAP_MODES["tunnel"]),
        lifetime=lifetime,
        lifetime_kb=lambda: t.get(
            "lifetime_kb", lambda x: _int_in(x, *BOUNDS["phase2.lifetime_kb"], zero_ok=True), 0
        ),
        rekey_margin=lambda: t.get("rekey_margin", lambda x: _int_in(x, 0, 86400), None),
        autostart=lambda: t.get("autostart", _boolean, False),
    )
    if v is None:
        raise _Bad(None, "")
    local: IPNetwork = v["local_subnet"]  # type: ignore[assignment]
    remote: IPNetwork = v["remote_subnet"]  # type: ignore[assignment]
    if local.version != remote.version:
        raise _Bad("remote_subnet", "local_subnet and remote_subnet must be the same IP version")
    protocol: int = v["protocol"]  # type: ignore[assignment]
    if protocol not in _PORT_PROTOCOLS:
        for key in ("local_port", "remote_port"):
            if t.has(key):
                raise _Bad(key, 'ports need protocol = "tcp" or "udp"')
    if t.has("proposals") == t.has("ah_proposals"):
        raise _Bad(
            "proposals",
            "give either proposals (ESP) or ah_proposals (AH); AH+ESP bundles are not supported",
        )
    esp = v["proposals"]
    ah = v["ah_proposals"]
    assert isinstance(esp, tuple) and isinstance(ah, tuple)
    groups = {p.group for p in (*esp, *ah)} - {None}
    if len(groups) > 1:
        raise _Bad(
            "ah_proposals" if ah else "proposals",
            "proposals name different DH groups; Quick Mode carries one KE payload, "
            "so PFS uses one group for all proposals",
        )
    lifetime_s: int = v["lifetime"]  # type: ignore[assignment]
    margin: int | None = v["rekey_margin"]  # type: ignore[assignment]
    if margin is None:
        margin = default_rekey_margin(lifetime_s)
    elif margin >= lifetime_s:
        raise _Bad("rekey_margin", f"{margin} must be less than lifetime ({lifetime_s})")
    return Phase2Definition(
        name=v["name"],  # type: ignore[arg-type]
        phase1=v["phase1"],  # type: ignore[arg-type]
        local_subnet=local,
        remote_subnet=remote,
        protocol=protocol,
        local_port=v["local_port"],  # type: ignore[arg-type]
        remote_port=v["remote_port"],  # type: ignore[arg-type]
        esp_proposals=esp,
        ah_proposals=ah,
        mode=v["mode"],  # type: ignore[arg-type]
        lifetime=lifetime_s,
        lifetime_kb=v["lifetime_kb"],  # type: ignore[arg-type]
        rekey_margin=margin,
        autostart=v["autostart"],  # type: ignore[arg-type]
    )


def _check_binding(p2: Phase2Definition, p1: Phase1Definition) -> None:
    """Checks of a phase 2 against the phase 1 it belongs to."""
    if p2.mode is EncapsulationMode.TRANSPORT:
        for key, subnet, addr in (
            ("local_subnet", p2.local_subnet, p1.local_addr),
            ("remote_subnet", p2.remote_subnet, p1.remote_addr),
        ):
            if subnet.num_addresses != 1:
                raise _Bad(
                    key,
                    "transport mode protects the gateways themselves: "
                    "give a single address (/32 or /128)",
                )
            if addr is not None and subnet.network_address != addr:
                raise _Bad(key, f"transport mode needs the phase 1 address {addr}")
    if p2.autostart and p1.remote_addr is None:
        raise _Bad("autostart", f"phase1 '{p1.name}' has remote_addr = %any: it cannot initiate")


# --- the whole file -----------------------------------------------------------------------


@dataclass
class _Reader:
    filename: str
    smap: SourceMap
    swap: bool
    problems: list[Problem]

    def report(self, kind: str, index: int, label: str, bad: _Bad) -> None:
        if not bad.message:
            return
        file_key = _SWAP.get(bad.field, bad.field) if (self.swap and bad.field) else bad.field
        line = (
            self.smap.key_line(kind, index, file_key)
            if file_key is not None
            else self.smap.table_line(kind, index)
        )
        message = bad.message
        if file_key != bad.field:
            message += f" (read as {bad.field} because of swap)"
        self.problems.append(Problem(line, label, file_key, message))

    def tables(self, doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
        tables = doc.get(kind, [])
        if not isinstance(tables, list) or not all(isinstance(x, dict) for x in tables):
            self.problems.append(
                Problem(
                    self.smap.headers.get(kind) or self.smap.top_level.get(kind),
                    None,
                    kind,
                    f"write each definition as an [[{kind}]] table",
                )
            )
            return []
        return tables


def _label(kind: str, index: int, raw: dict[str, Any]) -> str:
    name = raw.get("name")
    if isinstance(name, str) and _NAME.match(name):
        return f"{kind} '{name}'"
    return f"{kind} #{index + 1}"


def load_definitions(
    text: str,
    filename: str = "<input>",
    *,
    swap: bool = False,
    known_phase1: Callable[[str], Phase1Definition | None] = lambda _name: None,
) -> Definitions:
    """Validate a definitions file; raise ConfigError listing every problem.

    `known_phase1` looks up phase 1 definitions already in the database, for phase 2
    tables whose phase 1 is not in this file.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(m.group(1)) if m else None
        message = re.sub(r"\s*\(at .*\)$", "", str(exc))
        raise ConfigError(
            filename, [Problem(line, None, None, f"TOML syntax: {message}")]
        ) from None
    smap = SourceMap(text)
    reader = _Reader(filename, smap, swap, [])
    for key in doc:
        if key not in ("phase1", "phase2"):
            line = smap.top_level.get(key, smap.headers.get(key))
            reader.problems.append(
                Problem(
                    line,
                    None,
                    key,
                    "unknown table or key (expected [[phase1]] and [[phase2]] tables)",
                )
            )
    raw1 = reader.tables(doc, "phase1")
    raw2 = reader.tables(doc, "phase2")
    if not raw1 and not raw2 and not reader.problems:
        reader.problems.append(Problem(None, None, None, "no [[phase1]] or [[phase2]] tables"))
    if len(raw1) + len(raw2) > MAX_TABLES:
        raise ConfigError(filename, [Problem(None, None, None, f"more than {MAX_TABLES} tables")])

    phase1: dict[str, Phase1Definition] = {}
    for index, raw in enumerate(raw1):
        table = _Table(raw, PHASE1_KEYS, swap)
        label = _label("phase1", index, raw)
        try:
            p1 = _phase1(table)
        except _Bad as bad:
            for problem in (*table.problems, bad):
                reader.report("phase1", index, label, problem)
            continue
        if p1.name in phase1:
            reader.report("phase1", index, label, _Bad("name", "defined twice in this file"))
        phase1[p1.name] = p1

    phase2: dict[str, Phase2Definition] = {}
    for index, raw in enumerate(raw2):
        table = _Table(raw, PHASE2_KEYS, swap)
        label = _label("phase2", index, raw)
        try:
            p2 = _phase2(table)
            if p2.name in phase2:
                raise _Bad("name", "defined twice in this file")
            owner = phase1.get(p2.phase1) or known_phase1(p2.phase1)
            if owner is None:
                if _phase1_in_file_but_bad(raw1, p2.phase1):
                    continue  # that phase 1 already has its problem reported
                raise _Bad(
                    "phase1", f"no phase 1 named '{p2.phase1}' in this file or in the database"
                )
            _check_binding(p2, owner)
        except _Bad as bad:
            for problem in (*table.problems, bad):
                reader.report("phase2", index, label, problem)
            continue
        phase2[p2.name] = p2

    if reader.problems:
        in_order = sorted(reader.problems, key=lambda p: (p.line is None, p.line or 0))
        raise ConfigError(filename, in_order)
    return Definitions(tuple(phase1.values()), tuple(phase2.values()))


def _phase1_in_file_but_bad(raw1: list[dict[str, Any]], name: str) -> bool:
    return any(raw.get("name") == name for raw in raw1)


def load_file(
    path: str | Path,
    *,
    swap: bool = False,
    known_phase1: Callable[[str], Phase1Definition | None] = lambda _name: None,
    display_name: str | None = None,
) -> Definitions:
    """Read and validate a definitions file ('-' is not handled here: pass the text)."""
    name = display_name or str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            name, [Problem(None, None, None, f"cannot read: {exc.strerror}")]
        ) from None
    return load_bytes(data, name, swap=swap, known_phase1=known_phase1)


def load_bytes(
    data: bytes,
    filename: str,
    *,
    swap: bool = False,
    known_phase1: Callable[[str], Phase1Definition | None] = lambda _name: None,
) -> Definitions:
    """Bound and decode raw file contents, then validate them."""
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            filename, [Problem(None, None, None, f"larger than {MAX_FILE_BYTES} bytes")]
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(filename, [Problem(line, None, None, "not valid UTF-8")]) from None
    return load_definitions(text, filename, swap=swap, known_phase1=known_phase1)
