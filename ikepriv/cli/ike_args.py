"""The AIX `ike` grammar: words such as `cmd=list phase=1+ numlist=1-3` -> one typed request.

The words are AIX's: `KEYWORD=VALUE` or a bare flag, in any order, each at most once,
`cmd=` naming the subcommand. The result is the control message itself
(`ActivateRequest`, `ListRequest`, `StatsRequest` or `RemoveRequest` from
ikepriv.ipc.messages), so what
the operator typed and what the daemon receives cannot drift apart. Everything the daemon
would have to refuse anyway and that can be judged without it (ranges, names, addresses,
keywords that contradict each other) is refused here, with one line that says what to write.

Decisions beyond the AIX page, so that a typo never does something large:
- numlist: numbers 1..2**32-1, ranges N-M with N <= M, no number listed twice, at most
  MAX_LIST_ITEMS items; numbers are given in ASCII digits only.
- activate autostart selects by the definitions' autostart flag, so it does not combine
  with numlist=, namelist=, remid= or ipaddr=.
- remove db deletes definitions: it needs phase=1|2 (definition numbers are per phase)
  and numlist= (it never deletes every definition at once).
- remid= must be an identity as ikedb writes them; it is sent in canonical form.
- list stats shows the daemon's event counters (a StatsRequest): they are daemon-wide, so
  it takes json or prom (Prometheus text format, ikepriv.cli.metrics) and nothing else.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ikepriv.config.identity import parse_identity
from ikepriv.ipc.ipc_error import IpcError
from ikepriv.ipc.messages import (
    MAX_LIST_ITEMS,
    MAX_TEXT,
    ActivateRequest,
    ListRequest,
    NumRange,
    Phase,
    RemoveRequest,
    Role,
    StatsRequest,
)
from ikepriv.ipc.schema import encode

__all__ = [
    "COMMANDS",
    "MAX_NUMBER",
    "Request",
    "UsageError",
    "parse_args",
    "parse_ipaddr",
    "parse_namelist",
    "parse_numlist",
]

Request = ActivateRequest | ListRequest | StatsRequest | RemoveRequest
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_NUMBER = (1 << 32) - 1
"""Tunnel and definition numbers are 32-bit on the control protocol, 0 is not a number."""

_SHOW_CHARS = 40
_NUMBER = re.compile(r"[0-9]{1,10}", re.ASCII)
_NAME = re.compile(r"[A-Za-z0-9._@:+/-]+", re.ASCII)  # Charset.NAME of the control protocol


class UsageError(ValueError):
    """A command line the grammar refuses; str() is the one line to print after 'ike: '."""


def _show(text: str) -> str:
    """User text quoted for an error line: ASCII only (no terminal escapes), bounded."""
    if len(text) > _SHOW_CHARS:
        text = text[:_SHOW_CHARS] + "..."
    if text and text.isascii() and text.isprintable() and not any(c in text for c in " '\""):
        return text
    return ascii(text)


# ---------------------------------------------------------------------------------------
# The keywords and which subcommand takes which
# ---------------------------------------------------------------------------------------

FLAGS = frozenset({"autostart", "db", "verbose", "json", "stats", "prom"})
VALUED: dict[str, str] = {  # keyword -> how to write it, for error lines
    "cmd": "cmd=activate|list|remove",
    "phase": "phase=1|2",
    "numlist": "numlist=1,3-5",
    "namelist": "namelist=NAME,NAME",
    "remid": "remid=ID",
    "ipaddr": "ipaddr=SRC,DST",
    "role": "role=i|r",
}

_PHASES: dict[str, Phase] = {"1": Phase.PHASE1, "2": Phase.PHASE2, "1+": Phase.PHASE1_PLUS}
_ROLES: dict[str, Role] = {"i": Role.INITIATOR, "r": Role.RESPONDER}


@dataclass(frozen=True)
class _Command:
    keywords: tuple[str, ...]
    phases: tuple[str, ...]


COMMANDS: dict[str, _Command] = {
    "activate": _Command(
        ("phase", "numlist", "namelist", "remid", "ipaddr", "autostart"), ("1", "2")
    ),
    "list": _Command(
        ("phase", "numlist", "db", "role", "verbose", "json", "stats", "prom"),
        ("1", "1+", "2"),
    ),
    "remove": _Command(("phase", "numlist", "db"), ("1", "2")),
}


def _alternatives(items: Sequence[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " or " + items[-1]


# ---------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------


def _number(text: str, where: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise UsageError(f"{where}: {_show(text)} is not a number or a range N-M")
    number = int(text)
    if not 1 <= number <= MAX_NUMBER:
        raise UsageError(f"{where}: {number} is out of range (1..{MAX_NUMBER})")
    return number


def parse_numlist(text: str) -> tuple[NumRange, ...]:
    """`1,3-5,9` -> ranges in the order given; empty items, backwards ranges and numbers
    listed twice are refused."""
    where = f"numlist={_show(text)}"
    if not text:
        raise UsageError("numlist= is empty (write numlist=1,3-5)")
    items = text.split(",", MAX_LIST_ITEMS)
    if len(items) > MAX_LIST_ITEMS:
        raise UsageError(f"{where}: more than {MAX_LIST_ITEMS} items")
    ranges: list[NumRange] = []
    for item in items:
        if not item:
            raise UsageError(f"{where}: empty item (two commas, or one at an end)")
        first_text, dash, last_text = item.partition("-")
        if not first_text or (dash and not last_text):
            raise UsageError(f"{where}: {_show(item)} is not a number or a range N-M")
        first = _number(first_text, where)
        last = _number(last_text, where) if dash else first
        if first > last:
            raise UsageError(f"{where}: range {first}-{last} is backwards (write {last}-{first})")
        ranges.append(NumRange(first, last))
    ordered = sorted(ranges, key=lambda r: r.first)
    for before, after in itertools.pairwise(ordered):
        if after.first <= before.last:
            raise UsageError(f"{where}: {after.first} is listed twice")
    return tuple(ranges)


def parse_namelist(text: str) -> tuple[str, ...]:
    """`to-siteB,lanA-lanB` -> names; each as ikedb allows them, none twice."""
    where = f"namelist={_show(text)}"
    if not text:
        raise UsageError("namelist= is empty (write namelist=NAME,NAME)")
    names = text.split(",", MAX_LIST_ITEMS)
    if len(names) > MAX_LIST_ITEMS:
        raise UsageError(f"{where}: more than {MAX_LIST_ITEMS} names")
    seen: set[str] = set()
    for name in names:
        if not name:
            raise UsageError(f"{where}: empty name (two commas, or one at an end)")
        if len(name) > MAX_TEXT or not _NAME.fullmatch(name):
            raise UsageError(
                f"{where}: {_show(name)} is not a tunnel name "
                f"(up to {MAX_TEXT} letters, digits and . _ - @ : + /)"
            )
        if name in seen:
            raise UsageError(f"{where}: {_show(name)} is listed twice")
        seen.add(name)
    return tuple(names)


def _endpoint(text: str, where: str) -> IPAddress:
    if "%" in text:
        raise UsageError(f"{where}: {_show(text)}: scoped addresses are not supported")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise UsageError(f"{where}: {_show(text)} is not an IP address") from None
    unusable = addr.is_unspecified or addr.is_multicast
    if unusable or addr == ipaddress.IPv4Address("255.255.255.255"):
        raise UsageError(f"{where}: {addr} is not a unicast address")
    return addr


def parse_ipaddr(text: str) -> tuple[IPAddress, IPAddress]:
    """`SRC,DST`: two unicast addresses of one family, not the same."""
    where = f"ipaddr={_show(text)}"
    parts = text.split(",")
    if len(parts) != 2:
        raise UsageError(f"{where}: expected two addresses, ipaddr=SRC,DST")
    src, dst = (_endpoint(part, where) for part in parts)
    if src.version != dst.version:
        raise UsageError(f"{where}: mixes IPv4 and IPv6")
    if src == dst:
        raise UsageError(f"{where}: source and destination are the same address")
    return src, dst


def _parse_remid(text: str) -> str:
    where = f"remid={_show(text)}"
    if not text:
        raise UsageError("remid= is empty (write remid=ID, e.g. remid=gw.example.org)")
    try:
        identity = parse_identity(text)
    except ValueError as exc:
        reason = str(exc).encode("ascii", "backslashreplace").decode("ascii")
        raise UsageError(f"{where}: {reason}") from None
    canonical = str(identity)
    if len(canonical.encode("utf-8")) > MAX_TEXT:
        raise UsageError(f"{where}: longer than {MAX_TEXT} bytes")
    return canonical


def _parse_phase(text: str, command: str) -> Phase:
    allowed = COMMANDS[command].phases
    if text not in allowed:
        raise UsageError(f"phase={_show(text)}: cmd={command} takes phase={'|'.join(allowed)}")
    return _PHASES[text]


def _parse_role(text: str) -> Role:
    role = _ROLES.get(text)
    if role is None:
        raise UsageError(f"role={_show(text)}: expected role=i (initiator) or role=r (responder)")
    return role


# ---------------------------------------------------------------------------------------
# Words -> keywords -> request
# ---------------------------------------------------------------------------------------


def _words(argv: Sequence[str]) -> dict[str, str | None]:
    """Keyword -> value (None for a flag); refuses unknown, malformed and repeated words."""
    given: dict[str, str | None] = {}
    for word in argv:
        key, equals, value = word.partition("=")
        if not key:
            raise UsageError(f"{_show(word)} is not KEYWORD=VALUE (see 'ike help')")
        if key in FLAGS:
            if equals:
                raise UsageError(f"{key} takes no value (write {key}, not {_show(word)})")
            parsed: str | None = None
        elif key in VALUED:
            if not equals:
                raise UsageError(f"{key} needs a value: {VALUED[key]}")
            parsed = value
        elif not equals and key in COMMANDS:
            raise UsageError(f"unknown keyword {_show(word)} (did you mean cmd={key}?)")
        else:
            raise UsageError(f"unknown keyword {_show(key)} (see 'ike help')")
        if key in given:
            raise UsageError(f"{key} is given twice")
        given[key] = parsed
    return given


def _command_of(given: dict[str, str | None]) -> str:
    command = given.pop("cmd", None)
    if command is None:
        raise UsageError("missing cmd=activate|list|remove (see 'ike help')")
    if command not in COMMANDS:
        raise UsageError(
            f"unknown subcommand cmd={_show(command)} (expected {_alternatives(list(COMMANDS))})"
        )
    allowed = COMMANDS[command].keywords
    for key in given:
        if key not in allowed:
            raise UsageError(f"{key} is not valid with cmd={command} (valid: {', '.join(allowed)})")
    return command


def _text(given: dict[str, str | None], key: str) -> str | None:
    return given.get(key)


def _activate(given: dict[str, str | None]) -> ActivateRequest:
    if "autostart" in given:
        clash = [key for key in ("numlist", "namelist", "remid", "ipaddr") if key in given]
        if clash:
            raise UsageError(
                f"autostart starts every definition marked so; it does not combine with {clash[0]}="
            )
    phase_text = _text(given, "phase")
    numlist_text = _text(given, "numlist")
    namelist_text = _text(given, "namelist")
    remid_text = _text(given, "remid")
    ipaddr_text = _text(given, "ipaddr")
    src, dst = parse_ipaddr(ipaddr_text) if ipaddr_text is not None else (None, None)
    return ActivateRequest(
        phase=_parse_phase(phase_text, "activate") if phase_text is not None else Phase.ALL,
        numlist=parse_numlist(numlist_text) if numlist_text is not None else (),
        namelist=parse_namelist(namelist_text) if namelist_text is not None else (),
        remid=_parse_remid(remid_text) if remid_text is not None else None,
        src=src,
        dst=dst,
        autostart="autostart" in given,
    )


def _list(given: dict[str, str | None]) -> ListRequest | StatsRequest:
    if "stats" in given:
        clash = [key for key in given if key not in ("stats", "json", "prom")]
        if "json" in given and "prom" in given:
            raise UsageError("json and prom exclude each other (prom: Prometheus text format)")
        if clash:
            raise UsageError(
                f"stats shows the daemon's counters; it does not combine with "
                f"{clash[0]}{'=' if clash[0] in VALUED else ''}"
            )
        return StatsRequest(json="json" in given)
    if "prom" in given:
        raise UsageError("prom goes with stats: ike cmd=list stats prom")
    if "db" in given and "role" in given:
        raise UsageError(
            "db and role= exclude each other (db lists definitions, role= filters active tunnels)"
        )
    phase_text = _text(given, "phase")
    numlist_text = _text(given, "numlist")
    role_text = _text(given, "role")
    return ListRequest(
        phase=_parse_phase(phase_text, "list") if phase_text is not None else Phase.ALL,
        numlist=parse_numlist(numlist_text) if numlist_text is not None else (),
        db="db" in given,
        role=_parse_role(role_text) if role_text is not None else None,
        verbose="verbose" in given,
        json="json" in given,
    )


def _remove(given: dict[str, str | None]) -> RemoveRequest:
    phase_text = _text(given, "phase")
    numlist_text = _text(given, "numlist")
    phase = _parse_phase(phase_text, "remove") if phase_text is not None else Phase.ALL
    numlist = parse_numlist(numlist_text) if numlist_text is not None else ()
    if "db" in given:
        if phase is Phase.ALL:
            raise UsageError(
                "remove db needs phase=1 or phase=2 (definition numbers are per phase)"
            )
        if not numlist:
            raise UsageError("remove db needs numlist= (it never deletes every definition)")
    return RemoveRequest(phase=phase, numlist=numlist, db="db" in given)


_BUILDERS: dict[str, Callable[[dict[str, str | None]], Request]] = {
    "activate": _activate,
    "list": _list,
    "remove": _remove,
}


def parse_args(argv: Sequence[str]) -> Request:
    """The request the words ask for; UsageError (one line) for anything else."""
    given = _words(argv)
    command = _command_of(given)
    request = _BUILDERS[command](given)
    try:
        encode(request)  # the whole request must fit one control datagram
    except IpcError as exc:
        raise UsageError(f"the request does not fit the control protocol: {exc}") from None
    return request
