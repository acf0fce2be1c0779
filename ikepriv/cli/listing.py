"""What `ike cmd=list` prints: TunnelRow values as tables, a phase 1+ tree, or JSON.

The daemon sends rows, never preformatted text, so that the same answer can be shown to a
person (aligned columns, AIX-like headings "Phase", "Tun Id", "State") or to a script
(`json`: one object per row, keys named as the TunnelRow fields). Columns are a table of
(heading, cell function, when shown), so the views differ by data, not by code paths.

Reading of the row fields:
- `number` is the database definition number; `tunnel_id` the tunnel-manager number of an
  active tunnel (None for a definition listed with `db`).
- `phase1_number` of a phase 2 row names its phase 1 the way that phase 1 row is named
  itself: by tunnel-manager number for active tunnels, by definition number for `db` rows.
  The 1+ tree hangs each phase 2 under the phase 1 row with that number; a phase 2 whose
  phase 1 is not in the answer is listed after the tree.
- Kernel counters (SPIs, bytes, packets) exist only for phase 2; `verbose` shows them.
- `local_selector`/`remote_selector` of a phase 2 row: the subnets (with protocol and port
  when narrowed) the tunnel carries, from the parent's own record of the policies it
  installed; one row per (local, remote) pair of a definition with several subnets per
  side; a definition (`db`) lists all its subnets comma-separated. `verbose` shows them.
- `peer_cert_subject`/`peer_cert_issuer` of an established phase 1 with signature
  authentication: the peer's validated end-entity certificate (RFC 4514), as the negotiator
  saw it. `verbose` shows them ("-" for pre-shared keys and phase 2 rows).
- Event counters (CounterValue: datagrams dropped as malformed, retransmissions, refused
  requests, ...) are daemon-wide, not per row: `verbose` adds the ones that are not zero
  after the tables, `stats` prints them all, `stats json` as one JSON object name -> value
  (plus "definitions": the negotiator's rekeys and DPD failures per definition).

Everything printed comes from fields the control codec has already checked (names in the
NAME charset, text printable, identities rendered from validated bytes or as hex), so a
row cannot smuggle terminal escapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ikepriv.ipc.messages import (
    CounterValue,
    DefinitionCounts,
    Identity,
    ListRequest,
    Phase,
    Role,
    TunnelRow,
)
from ikepriv.ipc.schema import IPAddress
from ikepriv.isakmp.constants import IdType
from ikepriv.isakmp.dn import parse_dn
from ikepriv.isakmp.id_payload import IdPayload
from ikepriv.isakmp.isakmp_error import IsakmpError

__all__ = [
    "format_counters",
    "format_dn",
    "format_duration",
    "format_identity",
    "render",
    "render_counters_json",
    "render_json",
    "render_table",
    "render_tree",
    "row_to_json",
]

MAX_CELL = 48
"""Table cells longer than this are cut with '...' (json keeps everything)."""

_ROLE_LETTER: dict[Role, str] = {Role.INITIATOR: "i", Role.RESPONDER: "r"}
_HEX_PREFIX: dict[IdType, str] = {
    IdType.DER_ASN1_DN: "dn:",
    IdType.DER_ASN1_GN: "gn:",
    IdType.KEY_ID: "keyid:",
    IdType.LIST: "list:",
}
_TREE_CHILD = " `- "


# --- DER distinguished names -----------------------------------------------------------
# A DN identity arrives as DER (RFC 2407 4.6.2.9). Operators wrote it as text in the
# definition file ("C=CH, O=Example, CN=gw": RDNs in DER order, as strongSwan and AIX show
# them, not RFC 4514's reversed order), so it is shown as that text again. The reader
# below knows exactly the three fixed levels of a Name (SEQUENCE OF SET OF SEQUENCE {OID,
# string}); no recursion, every length checked; anything else is shown as hex.


def format_dn(der: bytes) -> str | None:
    """The text of a DER Name as ikedb takes it (RDNs in DER order, each escaped as RFC 4514
    says, joined by ", "), None when the bytes are not a Name of strings."""
    name = parse_dn(der)
    if name is None:
        return None
    text = ", ".join(rdn.rfc4514_string() for rdn in name.rdns)
    return text if text and text.isprintable() else None


def format_identity(identity: Identity | None) -> str:
    """Address, subnet, range a-b, name, DN text; other DER and key IDs as prefixed hex."""
    if identity is None:
        return "-"
    try:
        value = IdPayload(identity.id_type, 0, 0, identity.data).value
    except IsakmpError:
        return f"{identity.id_type.name.lower()}:{identity.data.hex()}"
    if isinstance(value, tuple):
        return f"{value[0]}-{value[1]}"
    if isinstance(value, bytes):
        if identity.id_type is IdType.DER_ASN1_DN:
            text = format_dn(value)
            if text:
                return text
        return _HEX_PREFIX.get(identity.id_type, "hex:") + value.hex()
    return str(value)


def format_duration(seconds: int) -> str:
    """45s, 12m05s, 3h04m05s, 2d03h04m: short, and sortable by eye."""
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h{minutes:02d}m"


# ---------------------------------------------------------------------------------------
# Columns
# ---------------------------------------------------------------------------------------


class _Texts:
    """The text of each identity and address, made once per listing: thousands of rows
    name the same few gateway addresses and peer identities, and an identity's text
    (parsed from its payload bytes) or an IPv6 address's costs several µs to make."""

    __slots__ = ("_addresses", "_identities")

    def __init__(self) -> None:
        self._identities: dict[Identity, str] = {}
        self._addresses: dict[IPAddress, str] = {}

    def identity(self, identity: Identity | None) -> str:
        if identity is None:
            return "-"
        text = self._identities.get(identity)
        if text is None:
            text = self._identities[identity] = format_identity(identity)
        return text

    def address(self, address: IPAddress) -> str:
        text = self._addresses.get(address)
        if text is None:
            text = self._addresses[address] = str(address)
        return text


@dataclass(frozen=True)
class _View:
    db: bool
    verbose: bool
    with_phase1_column: bool
    texts: _Texts = field(default_factory=_Texts, compare=False)


def _addr(row: TunnelRow, remote: bool, view: _View) -> str:
    addr = row.remote_addr if remote else row.local_addr
    if addr is None:
        return "any" if view.db else "-"
    return view.texts.address(addr)


def _spi(value: int) -> str:
    return f"0x{value:08x}" if value else "-"


def _phase2_only(row: TunnelRow, text: str) -> str:
    return text if row.phase is Phase.PHASE2 else "-"


def _remaining(row: TunnelRow) -> str:
    return format_duration(row.remaining_seconds) if row.remaining_seconds else "-"


Cell = Callable[[TunnelRow, _View], str]
When = Callable[[_View], bool]


def _always(view: _View) -> bool:
    return True


def _active(view: _View) -> bool:
    return not view.db


def _verbose(view: _View) -> bool:
    return view.verbose


def _counters(view: _View) -> bool:
    return view.verbose and not view.db


@dataclass(frozen=True)
class _Column:
    heading: str
    cell: Cell
    when: When = _always


_COLUMNS: tuple[_Column, ...] = (
    _Column("Phase", lambda row, view: str(row.phase.value)),
    _Column("Tun Id", lambda row, view: str(row.tunnel_id or "-"), _active),
    _Column("Def", lambda row, view: str(row.number)),
    _Column(
        "P1",
        lambda row, view: str(row.phase1_number or "-"),
        lambda view: view.with_phase1_column,
    ),
    _Column("Name", lambda row, view: row.name),
    _Column("Role", lambda row, view: _ROLE_LETTER[row.role] if row.role else "-", _active),
    _Column("State", lambda row, view: row.state.name.lower()),
    _Column("Local", lambda row, view: _addr(row, False, view)),
    _Column("Remote", lambda row, view: _addr(row, True, view)),
    _Column("Local Id", lambda row, view: view.texts.identity(row.local_id)),
    _Column("Remote Id", lambda row, view: view.texts.identity(row.remote_id)),
    _Column("Local Sel", lambda row, view: row.local_selector or "-", _verbose),
    _Column("Remote Sel", lambda row, view: row.remote_selector or "-", _verbose),
    _Column("Algorithms", lambda row, view: row.algorithms or "-"),
    _Column("Remaining", lambda row, view: _remaining(row), _active),
    _Column("SPI in", lambda row, view: _spi(row.spi_in), _counters),
    _Column("SPI out", lambda row, view: _spi(row.spi_out), _counters),
    _Column("Bytes", lambda row, view: _phase2_only(row, str(row.bytes)), _counters),
    _Column("Packets", lambda row, view: _phase2_only(row, str(row.packets)), _counters),
    _Column("Peer Cert", lambda row, view: row.peer_cert_subject or "-", _counters),
    _Column("Peer Issuer", lambda row, view: row.peer_cert_issuer or "-", _counters),
)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def _format_table(
    rows: Sequence[TunnelRow], view: _View, indent: Sequence[str] | None = None
) -> list[str]:
    """Aligned lines, heading first; indent[i] is put before row i's first cell."""
    columns = [column for column in _COLUMNS if column.when(view)]
    cells_of = [column.cell for column in columns]
    table = [[column.heading for column in columns]]
    for index, row in enumerate(rows):
        cells = [cell(row, view) for cell in cells_of]
        cells = [text if len(text) <= MAX_CELL else _cut(text) for text in cells]
        if indent is not None:
            cells[0] = indent[index] + cells[0]
        table.append(cells)
    widths = [max(map(len, column)) for column in zip(*table, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]


# ---------------------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------------------

_SECTION_TITLE: dict[tuple[Phase, bool], str] = {
    (Phase.PHASE1, False): "Phase 1 tunnels",
    (Phase.PHASE2, False): "Phase 2 tunnels",
    (Phase.PHASE1, True): "Phase 1 definitions",
    (Phase.PHASE2, True): "Phase 2 definitions",
}
_NOTHING: dict[bool, str] = {False: "No active tunnels.", True: "No tunnel definitions."}


def render_table(rows: Sequence[TunnelRow], *, db: bool = False, verbose: bool = False) -> str:
    """A titled table per phase (phase 1 first), in the daemon's order within a phase."""
    if not rows:
        return _NOTHING[db] + "\n"
    blocks: list[str] = []
    for phase in (Phase.PHASE1, Phase.PHASE2):
        section = [row for row in rows if row.phase is phase]
        if not section:
            continue
        view = _View(db, verbose, with_phase1_column=phase is Phase.PHASE2)
        lines = [f"{_SECTION_TITLE[phase, db]} ({len(section)}):"]
        lines += _format_table(section, view)
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _own_number(row: TunnelRow, db: bool) -> int | None:
    return row.number if db else row.tunnel_id


def render_tree(rows: Sequence[TunnelRow], *, db: bool = False, verbose: bool = False) -> str:
    """`phase=1+`: each phase 1 row followed by its phase 2 rows, indented."""
    if not rows:
        return _NOTHING[db] + "\n"
    phase1 = [row for row in rows if row.phase is Phase.PHASE1]
    children: dict[int, list[TunnelRow]] = {}
    orphans: list[TunnelRow] = []
    known = {_own_number(row, db) for row in phase1}
    for row in rows:
        if row.phase is not Phase.PHASE2:
            continue
        if row.phase1_number is not None and row.phase1_number in known:
            children.setdefault(row.phase1_number, []).append(row)
        else:
            orphans.append(row)
    ordered: list[TunnelRow] = []
    indent: list[str] = []
    for parent in phase1:
        ordered.append(parent)
        indent.append("")
        own = _own_number(parent, db)
        for child in children.pop(own, []) if own is not None else []:
            ordered.append(child)
            indent.append(_TREE_CHILD)
    ordered += orphans
    indent += [""] * len(orphans)
    title = "Phase 1 definitions" if db else "Phase 1 tunnels"
    lines = [f"{title} and their phase 2 ({len(phase1)} + {len(ordered) - len(phase1)}):"]
    lines += _format_table(ordered, _View(db, verbose, with_phase1_column=bool(orphans)), indent)
    return "\n".join(lines) + "\n"


def _identity_json(identity: Identity | None, texts: _Texts) -> dict[str, str] | None:
    if identity is None:
        return None
    return {"type": identity.id_type.name.lower(), "value": texts.identity(identity)}


def _address_json(address: IPAddress | None, texts: _Texts) -> str | None:
    return None if address is None else texts.address(address)


def row_to_json(row: TunnelRow, texts: _Texts | None = None) -> dict[str, object]:
    """Every TunnelRow field; enums as lower-case words, addresses as text, role i|r.
    `texts`: the listing's texts of identities and addresses, made once each."""
    texts = _Texts() if texts is None else texts
    return {
        "number": row.number,
        "tunnel_id": row.tunnel_id,
        "phase": row.phase.value,
        "name": row.name,
        "role": _ROLE_LETTER[row.role] if row.role is not None else None,
        "state": row.state.name.lower(),
        "local_addr": _address_json(row.local_addr, texts),
        "remote_addr": _address_json(row.remote_addr, texts),
        "local_id": _identity_json(row.local_id, texts),
        "remote_id": _identity_json(row.remote_id, texts),
        "algorithms": row.algorithms,
        "remaining_seconds": row.remaining_seconds,
        "spi_in": row.spi_in,
        "spi_out": row.spi_out,
        "bytes": row.bytes,
        "packets": row.packets,
        "phase1_number": row.phase1_number,
        "local_selector": row.local_selector or None,
        "remote_selector": row.remote_selector or None,
        "peer_cert_subject": row.peer_cert_subject or None,
        "peer_cert_issuer": row.peer_cert_issuer or None,
    }


def render_json(rows: Sequence[TunnelRow]) -> str:
    """A JSON list of row objects (see row_to_json), one document, newline-terminated, one
    row per line (greppable, and written by json's C encoder: `indent` makes json use its
    pure-Python one, 0.17 s of the 0.26 s `ike` spent on 10,000 rows)."""
    texts = _Texts()
    if not rows:
        return "[]\n"
    lines = ",\n ".join(json.dumps(row_to_json(row, texts)) for row in rows)
    return "[" + lines + "]\n"


def render(rows: Sequence[TunnelRow], request: ListRequest) -> str:
    """The text `ike cmd=list` prints for these rows, as the request asked for it."""
    if request.json:
        return render_json(rows)
    if request.phase is Phase.PHASE1_PLUS:
        return render_tree(rows, db=request.db, verbose=request.verbose)
    return render_table(rows, db=request.db, verbose=request.verbose)


def format_counters(counters: Sequence[CounterValue], *, nonzero_only: bool = False) -> str:
    """A titled list of `name  value` lines, names aligned, in the daemon's order (the
    negotiator's counters, then the parent's); with nonzero_only, only what happened."""
    shown = [c for c in counters if c.value or not nonzero_only]
    title = "Counters (not zero):" if nonzero_only else "Counters:"
    if not shown:
        return f"{title} none\n" if nonzero_only else "No counters.\n"
    width = max(len(c.name) for c in shown)
    return "\n".join([title, *(f"  {c.name.ljust(width)}  {c.value}" for c in shown)]) + "\n"


def render_counters_json(
    counters: Sequence[CounterValue], definitions: Sequence[DefinitionCounts] | None = None
) -> str:
    """One JSON object, counter name -> value, in the daemon's order; with definitions (as
    `stats json` prints), also the key "definitions": a list of {"phase", "number",
    "rekeys", "dpd_failures"} objects, the definitions that had any (no counter has that
    name)."""
    data: dict[str, object] = {c.name: c.value for c in counters}
    if definitions is not None:
        data["definitions"] = [
            {"phase": int(d.phase), "number": d.number, "rekeys": d.rekeys,
             "dpd_failures": d.dpd_failures}
            for d in definitions
        ]  # fmt: skip
    return json.dumps(data, indent=2) + "\n"
