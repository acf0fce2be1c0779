"""Tunnel definitions: the typed model, proposal syntax, and the TOML file format.

The names below are loaded from their modules on first use (PEP 562 `__getattr__`), not
when the package is: importing one module of the package runs this file first, and `ike`
needs only `ikepriv.config.identity`, not the loader with its TOML parser and certificate
handling (about 70 ms of every `ike` start). Type checkers read the imports below."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ikepriv.config.errors import ConfigError, DefinitionError, Problem
    from ikepriv.config.loader import load_bytes, load_definitions, load_file
    from ikepriv.config.model import (
        Definitions,
        DpdAction,
        Identity,
        Phase1Definition,
        Phase2Definition,
        check_binding,
    )
    from ikepriv.config.proposals import (
        AhProposal,
        EspProposal,
        IkeProposal,
        ProposalError,
        parse_ah_proposals,
        parse_esp_proposals,
        parse_ike_proposals,
    )
    from ikepriv.config.writer import dump_definitions

_EXPORTS: dict[str, tuple[str, ...]] = {
    "errors": ("ConfigError", "DefinitionError", "Problem"),
    "loader": ("load_bytes", "load_definitions", "load_file"),
    "model": (
        "Definitions",
        "DpdAction",
        "Identity",
        "Phase1Definition",
        "Phase2Definition",
        "check_binding",
    ),
    "proposals": (
        "AhProposal",
        "EspProposal",
        "IkeProposal",
        "ProposalError",
        "parse_ah_proposals",
        "parse_esp_proposals",
        "parse_ike_proposals",
    ),
    "writer": ("dump_definitions",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "AhProposal",
    "ConfigError",
    "DefinitionError",
    "Definitions",
    "DpdAction",
    "EspProposal",
    "Identity",
    "IkeProposal",
    "Phase1Definition",
    "Phase2Definition",
    "Problem",
    "ProposalError",
    "check_binding",
    "dump_definitions",
    "load_bytes",
    "load_definitions",
    "load_file",
    "parse_ah_proposals",
    "parse_esp_proposals",
    "parse_ike_proposals",
]


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next use is an ordinary global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
