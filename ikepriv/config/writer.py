"""Definitions back to the TOML format the loader reads (what `ikedb -g` prints).

Every key is written explicitly, proposals in their canonical expanded spelling, so that
reading the output gives definitions equal to the ones written. Database numbers are not
keys of the format (the database assigns them); they appear as comments for the operator.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import tomli_w

from ikepriv.config.loader import ANY_PEER, ENCAP_MODES, PHASE1_MODES, PROTOCOLS
from ikepriv.config.model import Definitions, IPNetwork, Phase1Definition, Phase2Definition
from ikepriv.isakmp.constants import SIGNATURE_METHODS, AuthMethod, IpProtocol

__all__ = ["KEY_FIELDS", "dump_definitions", "phase1_table", "phase2_table"]

KEY_FIELDS = ("psk", "psk_hex")  # what `without_keys` leaves out

_MODE_NAME = {v: k for k, v in PHASE1_MODES.items()}
_ENCAP_NAME = {v: k for k, v in ENCAP_MODES.items()}
_PROTOCOL_NAME = {int(v): k for k, v in PROTOCOLS.items()}
# the loader picks the ECDSA method again from the key's curve when the output is read back
_AUTH_NAME = {AuthMethod.PRE_SHARED_KEY: "psk", AuthMethod.RSA_SIGNATURES: "rsa-sig"} | {
    m: "ecdsa-sig" for m in SIGNATURE_METHODS if m is not AuthMethod.RSA_SIGNATURES
}
_PORT_PROTOCOLS = frozenset({int(IpProtocol.TCP), int(IpProtocol.UDP)})


def _psk_fields(psk: bytes | None) -> dict[str, str]:
    """Readable keys as `psk`, anything else (binary, control characters) as `psk_hex`."""
    if psk is None:
        return {}
    try:
        text = psk.decode("utf-8")
    except UnicodeDecodeError:
        return {"psk_hex": psk.hex()}
    return {"psk": text} if text.isprintable() else {"psk_hex": psk.hex()}


def _signature_fields(d: Phase1Definition) -> dict[str, Any]:
    """The credential files (a PSK definition has none: the model refuses them there)."""
    if not d.uses_signatures:
        return {}
    return {"cert": d.cert, "key": d.key, "ca": list(d.ca), "crl": list(d.crl)}


def phase1_table(d: Phase1Definition, *, without_keys: bool = False) -> dict[str, Any]:
    """The phase 1 as the file writes it; `without_keys` leaves the pre-shared key out
    (for exports and user interfaces: `ikedb -p --keep-keys` reads such a table back)."""
    table = {
        "name": d.name,
        "local_addr": str(d.local_addr),
        "remote_addr": ANY_PEER if d.remote_addr is None else str(d.remote_addr),
        "local_id": str(d.local_id),
        "remote_id": str(d.remote_id),
        "mode": _MODE_NAME[d.mode],
        "auth": _AUTH_NAME[d.auth],
        **_psk_fields(d.psk),
        **_signature_fields(d),
        "proposals": [p.keyword for p in d.proposals],
        "lifetime": d.lifetime,
        "rekey_margin": d.rekey_margin,
        "keying_tries": d.keying_tries,
        "dpd_delay": d.dpd_delay,
        "dpd_timeout": d.dpd_timeout,
        "dpd_action": d.dpd_action.value,
        "nat_traversal": d.nat_traversal,
        "autostart": d.autostart,
        "encap": d.encap,
        "rekey": d.rekey,
        "send_cert": d.send_cert.value,
        "fragmentation": d.fragmentation.value,
        "fragment_size": d.fragment_size,
    }
    if without_keys:
        for key in KEY_FIELDS:
            table.pop(key, None)
    return table


def _subnets(side: str, nets: tuple[IPNetwork, ...]) -> dict[str, Any]:
    if len(nets) == 1:
        return {f"{side}_subnet": str(nets[0])}
    return {f"{side}_subnets": [str(n) for n in nets]}


def phase2_table(d: Phase2Definition) -> dict[str, Any]:
    table: dict[str, Any] = {
        "name": d.name,
        "phase1": d.phase1,
        **_subnets("local", d.local_subnets),
        **_subnets("remote", d.remote_subnets),
        "protocol": _PROTOCOL_NAME.get(d.protocol, d.protocol),
    }
    if d.protocol in _PORT_PROTOCOLS:
        table["local_port"] = d.local_port
        table["remote_port"] = d.remote_port
    if d.esp_proposals:
        table["proposals"] = [p.keyword for p in d.esp_proposals]
    if d.ah_proposals:
        table["ah_proposals"] = [p.keyword for p in d.ah_proposals]
    table |= {
        "mode": _ENCAP_NAME[d.mode],
        "lifetime": d.lifetime,
        "lifetime_kb": d.lifetime_kb,
        "rekey_margin": d.rekey_margin,
        "autostart": d.autostart,
        "rekey": d.rekey,
    }
    return table


def _section(kind: str, number: int | None, table: dict[str, Any], note: str = "") -> str:
    head = f"# {kind} definition number {number}\n" if number is not None else ""
    return head + note + tomli_w.dumps({kind: [table]})


_KEY_NOTE = "# pre-shared key left out: ikedb -p --keep-keys keeps the stored one\n"


def dump_definitions(
    defs: Definitions | None = None,
    *,
    phase1: Iterable[Phase1Definition] = (),
    phase2: Iterable[Phase2Definition] = (),
    without_keys: bool = False,
) -> str:
    """TOML text for the given definitions, phase 1 tables first (`without_keys`: no
    pre-shared keys, a comment where one was)."""
    p1 = [*(defs.phase1 if defs else ()), *phase1]
    p2 = [*(defs.phase2 if defs else ()), *phase2]
    sections = [
        _section(
            "phase1",
            d.number,
            phase1_table(d, without_keys=without_keys),
            _KEY_NOTE if without_keys and d.psk is not None else "",
        )
        for d in p1
    ]
    sections += [_section("phase2", d.number, phase2_table(d)) for d in p2]
    return "\n".join(sections)
