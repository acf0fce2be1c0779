"""Tunnel definitions: the typed model, proposal syntax, and the TOML file format."""

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
