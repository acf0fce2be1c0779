"""A machine-readable description of the definitions file (`ikedb --schema`).

User interfaces (the Cockpit page in deploy/cockpit) build their forms from it instead of
retyping fields, defaults, ranges and algorithm names. Everything here is read from the
places that enforce it: the keys and choice tables of the loader, the ranges of the model
(BOUNDS), the proposal keyword tables, and, for defaults and which keys are required, the
loader itself run on a minimal file (so a default changed in the loader changes here too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tomli_w

from ikepriv.config import loader
from ikepriv.config.errors import ConfigError
from ikepriv.config.model import BOUNDS, MAX_PSK_BYTES, MIN_REKEY_MARGIN, NAME_PATTERN
from ikepriv.config.proposals import MAX_PROPOSALS, keyword_catalogue
from ikepriv.config.writer import phase1_table, phase2_table

__all__ = ["definition_schema"]

# The smallest definitions the loader accepts; the rest of their keys take the defaults.
_MINIMAL: dict[str, dict[str, Any]] = {
    "phase1": {
        "name": "a",
        "local_addr": "192.0.2.1",
        "remote_addr": "192.0.2.2",
        "psk": "k",
        "proposals": ["aes128-sha256-modp2048"],
    },
    "phase2": {
        "name": "b",
        "phase1": "a",
        "local_subnet": "198.51.100.0/24",
        "remote_subnet": "203.0.113.0/24",
        "proposals": ["aes128-sha256"],
    },
}

# The value kind of each key, as a form edits it (the loader's converters are functions).
_KINDS: dict[str, str] = {
    "name": "name",
    "phase1": "name",
    "local_addr": "address",
    "remote_addr": "address",
    "local_id": "identity",
    "remote_id": "identity",
    "psk": "secret",
    "psk_hex": "secret",
    "cert": "path",
    "key": "path",
    "ca": "paths",
    "crl": "paths",
    "local_subnet": "subnet",
    "remote_subnet": "subnet",
    "local_subnets": "subnets",
    "remote_subnets": "subnets",
    "protocol": "choice",
    "nat_traversal": "boolean",
    "autostart": "boolean",
    "encap": "boolean",
    "rekey": "boolean",
}
_PROPOSAL_KINDS = {("phase1", "proposals"): "ike", ("phase2", "proposals"): "esp",
                   ("phase2", "ah_proposals"): "ah"}  # fmt: skip
# key -> BOUNDS entry, and whether 0 is allowed besides the range ("off")
_RANGES: dict[tuple[str, str], tuple[str, bool]] = {
    ("phase1", "lifetime"): ("phase1.lifetime", False),
    ("phase2", "lifetime"): ("phase2.lifetime", False),
    ("phase2", "lifetime_kb"): ("phase2.lifetime_kb", True),
    ("phase1", "dpd_delay"): ("dpd_delay", True),
    ("phase1", "dpd_timeout"): ("dpd_timeout", False),
    ("phase1", "keying_tries"): ("keying_tries", False),
    ("phase1", "rekey_margin"): ("rekey_margin", False),
    ("phase2", "rekey_margin"): ("rekey_margin", False),
    ("phase1", "fragment_size"): ("fragment_size", False),
    ("phase2", "local_port"): ("port", False),
    ("phase2", "remote_port"): ("port", False),
}
_CHOICES: dict[tuple[str, str], Mapping[str, object]] = {
    ("phase1", "mode"): loader.PHASE1_MODES,
    ("phase1", "auth"): dict.fromkeys(loader.AUTH_NAMES),
    ("phase1", "send_cert"): loader.SEND_CERT,
    ("phase1", "fragmentation"): loader.FRAGMENTATION,
    ("phase1", "dpd_action"): loader.DPD_ACTIONS,
    ("phase2", "protocol"): loader.PROTOCOLS,
    ("phase2", "mode"): loader.ENCAP_MODES,
}
# defaults that follow from other fields (the writer shows the computed value)
_DERIVED: dict[str, str] = {
    "local_id": "local_addr",
    "remote_id": "remote_addr",
    "rekey_margin": "min(540, lifetime/2)",
}


def _defaults(kind: str) -> dict[str, Any]:
    """What the writer prints for the minimal definition; for phase 2 also with TCP, which
    makes it print the ports (the protocol's own default comes from the plain one)."""
    if kind == "phase1":
        doc = {"phase1": [_MINIMAL["phase1"]]}
        return phase1_table(loader.load_definitions(tomli_w.dumps(doc)).phase1[0])
    out: dict[str, Any] = {}
    for extra in ({"protocol": "tcp"}, {}):
        doc = {"phase1": [_MINIMAL["phase1"]], "phase2": [_MINIMAL["phase2"] | extra]}
        out |= phase2_table(loader.load_definitions(tomli_w.dumps(doc)).phase2[0])
    return out


def _required(kind: str) -> set[str]:
    """The minimal keys whose absence the loader reports as 'missing (required)'."""
    out = set()
    for key in _MINIMAL[kind]:
        table = {k: v for k, v in _MINIMAL[kind].items() if k != key}
        doc = {kind: [table]} if kind == "phase1" else {"phase1": [_MINIMAL["phase1"]],
                                                        "phase2": [table]}  # fmt: skip
        try:
            loader.load_definitions(tomli_w.dumps(doc))
        except ConfigError as exc:
            if any(p.field == key and "required" in p.message for p in exc.problems):
                out.add(key)
    return out


def _field(kind: str, key: str, defaults: Mapping[str, Any], required: set[str]) -> dict[str, Any]:
    field: dict[str, Any] = {"key": key, "kind": _KINDS.get(key, "string")}
    if key in required:
        field["required"] = True
    elif key in _DERIVED:
        field["default_from"] = _DERIVED[key]
    elif key in defaults and key not in _MINIMAL[kind]:
        field["default"] = defaults[key]
    if (kind, key) in _RANGES:
        bound, zero_ok = _RANGES[(kind, key)]
        field["kind"] = "integer"
        field["min"], field["max"] = BOUNDS[bound]
        if zero_ok:
            field["zero_ok"] = True
    if key == "rekey_margin":  # the model's floor, and at most half the lifetime
        field["min"] = MIN_REKEY_MARGIN
    if (kind, key) in _CHOICES:
        field["kind"] = "choice"
        field["choices"] = list(_CHOICES[(kind, key)])
    if (kind, key) in _PROPOSAL_KINDS:
        field["kind"] = "proposals"
        field["proposal_kind"] = _PROPOSAL_KINDS[(kind, key)]
    if field["kind"] == "secret":
        field["max_bytes"] = MAX_PSK_BYTES
    return field


def definition_schema() -> dict[str, Any]:
    """Fields of [[phase1]] and [[phase2]] in file order, the name pattern, and the
    proposal keywords by kind (canonical spellings)."""
    fields = {}
    for kind, keys in (("phase1", loader.PHASE1_KEYS), ("phase2", loader.PHASE2_KEYS)):
        defaults, required = _defaults(kind), _required(kind)
        fields[kind] = [_field(kind, key, defaults, required) for key in keys]
    return {
        "fields": fields,
        "name_pattern": NAME_PATTERN.pattern,
        "max_proposals": MAX_PROPOSALS,
        "keywords": keyword_catalogue(),
        "any_peer": loader.ANY_PEER,
    }
