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
from typing import Any, Generic, TypeVar

from ikepriv.config.credentials import CredentialError, check_phase1, key_method
from ikepriv.config.errors import ConfigError, DefinitionError, Problem
from ikepriv.config.identity import Identity, identity_for_address, parse_identity
from ikepriv.config.locate import SourceMap
from ikepriv.config.model import (
    BOUNDS,
    MAX_CREDENTIAL_FILES,
    MAX_PSK_BYTES,
    NAME_PATTERN,
    PORT_PROTOCOLS,
    Definitions,
    DpdAction,
    Fragmentation,
    IPAddress,
    IPNetwork,
    Phase1Definition,
    Phase2Definition,
    SendCert,
    check_binding,
)
from ikepriv.config.proposals import (
    AhProposal,
    EspProposal,
    IkeProposal,
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
ANY_PEER = "%any"

PHASE1_MODES: dict[str, ExchangeType] = {
    "main": ExchangeType.IDENTITY_PROTECTION,
    "aggressive": ExchangeType.AGGRESSIVE,
}
ENCAP_MODES: dict[str, EncapsulationMode] = {
    "tunnel": EncapsulationMode.TUNNEL,
    "transport": EncapsulationMode.TRANSPORT,
}
# "ecdsa-sig" becomes 9, 10 or 11 by the curve of the definition's key (RFC 4754)
AUTH_NAMES: tuple[str, ...] = ("psk", "rsa-sig", "ecdsa-sig")
SEND_CERT: dict[str, SendCert] = {s.value: s for s in SendCert}
FRAGMENTATION: dict[str, Fragmentation] = {f.value: f for f in Fragmentation}
PROTOCOLS: dict[str, IpProtocol] = {
    "any": IpProtocol.ANY,
    "icmp": IpProtocol.ICMP,
    "tcp": IpProtocol.TCP,
    "udp": IpProtocol.UDP,
    "icmpv6": IpProtocol.ICMPV6,
}
DPD_ACTIONS: dict[str, DpdAction] = {a.value: a for a in DpdAction}

_SWAP = {
    "local_addr": "remote_addr",
    "remote_addr": "local_addr",
    "local_id": "remote_id",
    "remote_id": "local_id",
    "local_subnet": "remote_subnet",
    "remote_subnet": "local_subnet",
    "local_subnets": "remote_subnets",
    "remote_subnets": "local_subnets",
    "local_port": "remote_port",
    "remote_port": "local_port",
}
# model field -> the key that sets it in the file, where they differ
_FILE_KEY = {
    "esp_proposals": "proposals",
    "extra_local_subnets": "local_subnets",
    "extra_remote_subnets": "remote_subnets",
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
    "cert",
    "key",
    "ca",
    "crl",
    "send_cert",
    "fragmentation",
    "fragment_size",
    "proposals",
    "lifetime",
    "rekey_margin",
    "keying_tries",
    "dpd_delay",
    "dpd_timeout",
    "dpd_action",
    "nat_traversal",
    "autostart",
    "encap",
    "rekey",
)
PHASE2_KEYS = (
    "name",
    "phase1",
    "local_subnet",
    "remote_subnet",
    "local_subnets",
    "remote_subnets",
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
    "rekey",
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

    @classmethod
    def of(cls, exc: DefinitionError) -> _Bad:
        """A model refusal, named by the file key that set the field."""
        field = None if exc.field is None else _FILE_KEY.get(exc.field, exc.field)
        return cls(field, exc.message)


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


def _text(value: object) -> str:
    return _expect(value, str, "a string")


def _int_in(value: object, low: int, high: int, zero_ok: bool = False) -> int:
    number = _expect(value, int, "an integer")
    if not (low <= number <= high or (zero_ok and number == 0)):
        off = "0 or " if zero_ok else ""
        raise ValueError(f"{number} is out of range ({off}{low}..{high})")
    return number


def _bounded(key: str, zero_ok: bool = False) -> Callable[[object], int]:
    return lambda value: _int_in(value, *BOUNDS[key], zero_ok=zero_ok)


def _choice(table: Mapping[str, _T]) -> Callable[[object], _T]:
    def convert(value: object) -> _T:
        text = _text(value)
        if text not in table:
            raise ValueError(f"{text!r} is not one of: {', '.join(table)}")
        return table[text]

    return convert


def _name(value: object) -> str:
    text = _text(value)
    if not NAME_PATTERN.match(text):
        raise ValueError(f"{text!r} is not a valid name (1-64 of A-Z a-z 0-9 . _ -)")
    return text


def _address(value: object) -> IPAddress:
    text = _text(value)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"{text} cannot be a gateway address (unspecified or multicast)")
    return addr


def _network(value: object) -> IPNetwork:
    text = _text(value)
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise ValueError(f"{text!r} has host bits set (write the network address)") from None
        raise ValueError(f"{text!r} is not a subnet (write e.g. 198.51.100.0/24)") from None


def _identity(value: object) -> Identity:
    return parse_identity(_text(value))


def _string_list(value: object) -> list[str]:
    items = _expect(value, list, "an array of strings")
    if not items:
        raise ValueError("must not be empty")
    return [_expect(item, str, "an array of strings") for item in items]


def _psk_bounded(key: bytes) -> bytes:
    if not key:
        raise ValueError("must not be empty")
    if len(key) > MAX_PSK_BYTES:
        raise ValueError(f"longer than {MAX_PSK_BYTES} bytes")
    return key


def _psk(value: object) -> bytes:
    return _psk_bounded(_text(value).encode())


def _psk_hex(value: object) -> bytes:
    text = _text(value)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError("is not hexadecimal (an even number of 0-9 a-f digits)") from None
    return _psk_bounded(key)


def _protocol(value: object) -> int:
    if type(value) is int:
        return _int_in(value, *BOUNDS["protocol"])
    if type(value) is str:
        return int(_choice(PROTOCOLS)(value))
    raise ValueError(f"must be one of {', '.join(PROTOCOLS)} or a number, not {_type_name(value)}")


def _boolean(value: object) -> bool:
    return _expect(value, bool, "true or false")


def _auth_name(value: object) -> str:
    text = _text(value)
    if text not in AUTH_NAMES:
        raise ValueError(f"{text!r} is not one of: {', '.join(AUTH_NAMES)}")
    return text


def _path_list(value: object) -> tuple[str, ...]:
    items = _expect(value, list, "an array of file paths")
    if len(items) > MAX_CREDENTIAL_FILES:
        raise ValueError(f"at most {MAX_CREDENTIAL_FILES} files")
    return tuple(_expect(item, str, "an array of file paths") for item in items)


def _ike_proposals(value: object) -> tuple[IkeProposal, ...]:
    return parse_ike_proposals(_string_list(value))


def _networks(value: object) -> tuple[IPNetwork, ...]:
    return tuple(_network(item) for item in _string_list(value))


def _side_subnets(t: _Table, side: str) -> tuple[_Got[IPNetwork], tuple[IPNetwork, ...]]:
    """`<side>_subnet = "net"` or `<side>_subnets = ["net", ...]` (one of them): the first
    subnet and the others."""
    one, many = f"{side}_subnet", f"{side}_subnets"
    if not t.has(many):
        return t.get(one, _network), ()
    if t.has(one):
        t.problems.append(_Bad(many, f"give either {one} or {many}, not both"))
        return _Got(()), ()
    got = t.get(many, _networks)
    if not got._box:  # the conversion failed (recorded)
        return _Got(()), ()
    nets = got.value
    return _Got((nets[0],)), tuple(nets[1:])


def _esp_proposals(value: object) -> tuple[EspProposal, ...]:
    return parse_esp_proposals(_string_list(value))


def _ah_proposals(value: object) -> tuple[AhProposal, ...]:
    return parse_ah_proposals(_string_list(value))


# --- one table ----------------------------------------------------------------------------


class _Got(Generic[_T]):
    """One converted field; its value may be read once the table has no problems."""

    __slots__ = ("_box",)

    def __init__(self, box: tuple[_T] | tuple[()]) -> None:
        self._box = box

    @property
    def value(self) -> _T:
        if not self._box:
            raise AssertionError("read a field whose conversion failed")
        return self._box[0]


class _Table:
    """The raw values of one [[phaseN]] table, converted field by field.

    `get` records a problem instead of raising, so that every field problem of a table is
    reported; `check` then raises if there were any.
    """

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
    ) -> _Got[_T | _D]:
        """Converted value of `key`; a missing key without a default is a problem."""
        if key not in self.raw:
            if isinstance(default, _Required):
                self.problems.append(_Bad(key, "missing (required)"))
                return _Got(())
            return _Got((default,))
        try:
            return _Got((convert(self.raw[key]),))
        except ValueError as exc:  # ProposalError is a ValueError
            self.problems.append(_Bad(key, str(exc)))
            return _Got(())

    def check(self) -> None:
        """Raise if any field had a problem (they are recorded already)."""
        if self.problems:
            raise _Bad(None, "")


def _method(auth: str, key_file: str | None) -> AuthMethod:
    """The exact AuthMethod of `auth`: ECDSA's depends on our key's curve, so the key file
    is read here (refused like `ikedb -p` refuses it; a missing `key` the model reports)."""
    if auth == "psk":
        return AuthMethod.PRE_SHARED_KEY
    if auth == "rsa-sig" or key_file is None or not key_file.startswith("/"):
        return AuthMethod.RSA_SIGNATURES
    try:
        method = key_method(key_file)
    except CredentialError as exc:
        raise _Bad("key", exc.message) from None
    if method is AuthMethod.RSA_SIGNATURES:
        raise _Bad("key", f'{key_file}: an RSA key; auth = "ecdsa-sig" needs an EC key')
    return method


def _phase1(t: _Table, stored_key: Callable[[str], bytes | None]) -> Phase1Definition:
    if t.raw.get("local_addr") == ANY_PEER:
        t.problems.append(
            _Bad("local_addr", "cannot be %any (the local gateway address is needed)")
        )
        local_addr: _Got[IPAddress] = _Got(())
    else:
        local_addr = t.get("local_addr", _address)
    if t.raw.get("remote_addr") == ANY_PEER:
        remote_addr: _Got[IPAddress | None] = _Got((None,))
    else:
        remote_addr = t.get("remote_addr", _address)
    name = t.get("name", _name)
    local_id = t.get("local_id", _identity, None)
    remote_id = t.get("remote_id", _identity, None)
    mode = t.get("mode", _choice(PHASE1_MODES), ExchangeType.IDENTITY_PROTECTION)
    auth = t.get("auth", _auth_name, "psk")
    psk = t.get("psk", _psk, None)
    psk_hex = t.get("psk_hex", _psk_hex, None)
    cert = t.get("cert", _text, None)
    key_file = t.get("key", _text, None)
    ca = t.get("ca", _path_list, ())
    crl = t.get("crl", _path_list, ())
    send_cert = t.get("send_cert", _choice(SEND_CERT), SendCert.IF_ASKED)
    fragmentation = t.get("fragmentation", _choice(FRAGMENTATION), Fragmentation.YES)
    fragment_size = t.get("fragment_size", _bounded("fragment_size"), 1280)
    proposals = t.get("proposals", _ike_proposals)
    lifetime = t.get("lifetime", _bounded("phase1.lifetime"), 28800)
    rekey_margin = t.get("rekey_margin", _bounded("rekey_margin"), None)
    keying_tries = t.get("keying_tries", _bounded("keying_tries"), 3)
    dpd_delay = t.get("dpd_delay", _bounded("dpd_delay", zero_ok=True), 30)
    dpd_timeout = t.get("dpd_timeout", _bounded("dpd_timeout"), 150)
    dpd_action = t.get("dpd_action", _choice(DPD_ACTIONS), DpdAction.CLEAR)
    nat_traversal = t.get("nat_traversal", _boolean, True)
    autostart = t.get("autostart", _boolean, False)
    encap = t.get("encap", _boolean, False)
    rekey = t.get("rekey", _boolean, True)
    t.check()

    # what only the file can get wrong: two ways to give the key, or none; defaults
    if t.has("psk") and t.has("psk_hex"):
        raise _Bad("psk_hex", "give either psk or psk_hex, not both")
    key = psk.value if psk.value is not None else psk_hex.value
    if key is None and auth.value == "psk":
        key = stored_key(name.value)
    if key is None and auth.value == "psk":
        raise _Bad("psk", "missing (or give 'psk_hex'): auth = \"psk\" needs a key")
    if key is not None and auth.value != "psk":
        field = "psk" if t.has("psk") else "psk_hex"
        raise _Bad(field, f"must be absent with auth = {auth.value!r}")
    method = _method(auth.value, key_file.value)
    local, remote = local_addr.value, remote_addr.value
    peer_id = remote_id.value
    if peer_id is None:
        if remote is None:
            if mode.value is ExchangeType.AGGRESSIVE or method is not AuthMethod.PRE_SHARED_KEY:
                raise _Bad(
                    "remote_id",
                    "required with remote_addr = %any (it chooses the definition, and the "
                    "peer's certificate must match it)",
                )
            peer_id = identity_for_address(local)  # the model refuses %any in Main Mode
        else:
            peer_id = identity_for_address(remote)
    margin = rekey_margin.value
    try:
        return Phase1Definition(
            name=name.value,
            local_addr=local,
            remote_addr=remote,
            local_id=identity_for_address(local) if local_id.value is None else local_id.value,
            remote_id=peer_id,
            mode=mode.value,
            auth=method,
            psk=key,
            cert=cert.value,
            key=key_file.value,
            ca=ca.value,
            crl=crl.value,
            send_cert=send_cert.value,
            fragmentation=fragmentation.value,
            fragment_size=fragment_size.value,
            proposals=proposals.value,
            lifetime=lifetime.value,
            rekey_margin=default_rekey_margin(lifetime.value) if margin is None else margin,
            keying_tries=keying_tries.value,
            dpd_delay=dpd_delay.value,
            dpd_timeout=dpd_timeout.value,
            dpd_action=dpd_action.value,
            nat_traversal=nat_traversal.value,
            autostart=autostart.value,
            encap=encap.value,
            rekey=rekey.value,
        )
    except DefinitionError as exc:
        raise _Bad.of(exc) from None


def _phase2(t: _Table) -> Phase2Definition:
    no_esp: tuple[EspProposal, ...] = ()
    no_ah: tuple[AhProposal, ...] = ()
    name = t.get("name", _name)
    phase1 = t.get("phase1", _name)
    local_subnet, extra_local = _side_subnets(t, "local")
    remote_subnet, extra_remote = _side_subnets(t, "remote")
    protocol = t.get("protocol", _protocol, 0)
    local_port = t.get("local_port", _bounded("port"), 0)
    remote_port = t.get("remote_port", _bounded("port"), 0)
    esp = t.get("proposals", _esp_proposals, no_esp)
    ah = t.get("ah_proposals", _ah_proposals, no_ah)
    mode = t.get("mode", _choice(ENCAP_MODES), EncapsulationMode.TUNNEL)
    lifetime = t.get("lifetime", _bounded("phase2.lifetime"), 3600)
    lifetime_kb = t.get("lifetime_kb", _bounded("phase2.lifetime_kb", zero_ok=True), 0)
    rekey_margin = t.get("rekey_margin", _bounded("rekey_margin"), None)
    autostart = t.get("autostart", _boolean, False)
    rekey = t.get("rekey", _boolean, True)
    t.check()
    margin = rekey_margin.value
    try:
        p2 = Phase2Definition(
            name=name.value,
            phase1=phase1.value,
            local_subnet=local_subnet.value,
            remote_subnet=remote_subnet.value,
            protocol=protocol.value,
            local_port=local_port.value,
            remote_port=remote_port.value,
            esp_proposals=esp.value,
            ah_proposals=ah.value,
            mode=mode.value,
            lifetime=lifetime.value,
            lifetime_kb=lifetime_kb.value,
            rekey_margin=default_rekey_margin(lifetime.value) if margin is None else margin,
            autostart=autostart.value,
            rekey=rekey.value,
            extra_local_subnets=extra_local,
            extra_remote_subnets=extra_remote,
        )
    except DefinitionError as exc:
        raise _Bad.of(exc) from None
    # the file is stricter than the model: a port key (even "= 0") needs TCP or UDP
    if p2.protocol not in PORT_PROTOCOLS:
        for key in ("local_port", "remote_port"):
            if t.has(key):
                raise _Bad(key, 'ports need protocol = "tcp" or "udp"')
    return p2


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
    if isinstance(name, str) and NAME_PATTERN.match(name):
        return f"{kind} '{name}'"
    return f"{kind} #{index + 1}"


def load_definitions(
    text: str,
    filename: str = "<input>",
    *,
    swap: bool = False,
    known_phase1: Callable[[str], Phase1Definition | None] = lambda _name: None,
    check_files: bool = False,
    keep_keys: bool = False,
) -> Definitions:
    """Validate a definitions file; raise ConfigError listing every problem.

    `known_phase1` looks up phase 1 definitions already in the database, for phase 2
    tables whose phase 1 is not in this file. `keep_keys` (ikedb -p --keep-keys): a PSK
    phase 1 without `psk`/`psk_hex` takes the key of the stored phase 1 of its name, so a
    form or an exported file that never carried the key can replace the definition.
    `check_files` (ikedb -p) also checks the credential files of signature definitions
    (credentials.check_phase1), so what is stored is what the daemon can load.
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

    def stored_key(name: str) -> bytes | None:
        stored = known_phase1(name) if keep_keys else None
        return stored.psk if stored is not None else None

    phase1: dict[str, Phase1Definition] = {}
    for index, raw in enumerate(raw1):
        table = _Table(raw, PHASE1_KEYS, swap)
        label = _label("phase1", index, raw)
        try:
            p1 = _phase1(table, stored_key)
        except _Bad as bad:
            for problem in (*table.problems, bad):
                reader.report("phase1", index, label, problem)
            continue
        if p1.name in phase1:
            reader.report("phase1", index, label, _Bad("name", "defined twice in this file"))
        if check_files:
            for unusable in check_phase1(p1):
                reader.report("phase1", index, label, _Bad(unusable.field, unusable.message))
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
            check_binding(p2, owner)
        except DefinitionError as exc:
            for problem in (*table.problems, _Bad.of(exc)):
                reader.report("phase2", index, label, problem)
            continue
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
    check_files: bool = False,
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
    return load_bytes(data, name, swap=swap, known_phase1=known_phase1, check_files=check_files)


def load_bytes(
    data: bytes,
    filename: str,
    *,
    swap: bool = False,
    known_phase1: Callable[[str], Phase1Definition | None] = lambda _name: None,
    check_files: bool = False,
    keep_keys: bool = False,
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
    return load_definitions(
        text,
        filename,
        swap=swap,
        known_phase1=known_phase1,
        check_files=check_files,
        keep_keys=keep_keys,
    )
