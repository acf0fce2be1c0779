"""Line numbers for keys of a TOML definitions file.

tomllib reports lines only for syntax errors, not for values it parsed fine, yet an operator
needs "line 12: remote_addr" to fix a bad address. This scanner finds the line of `key =`
inside the N-th `[[phase1]]` / `[[phase2]]` table. It understands the layout the
documentation uses (one key per line, array-of-tables headers, comments, multi-line arrays
and strings); for anything more exotic it falls back to the table header's line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["SourceMap"]

_ARRAY_HEADER = re.compile(r"""^\s*\[\[\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_.-]+))\s*\]\]""")
_TABLE_HEADER = re.compile(r"""^\s*\[\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_.-]+))\s*\]""")
_KEY = re.compile(r"""^\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*[.=]""")


def _name(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g is not None)


@dataclass
class _Table:
    header_line: int
    keys: dict[str, int] = field(default_factory=dict)


class SourceMap:
    """Where each table and key of a definitions file starts (1-based line numbers)."""

    def __init__(self, text: str) -> None:
        self.top_level: dict[str, int] = {}
        self.headers: dict[str, int] = {}  # plain [table] headers and first [[array]] line
        self._arrays: dict[str, list[_Table]] = {}
        current: dict[str, int] = self.top_level
        in_multiline: str | None = None
        for lineno, line in enumerate(text.splitlines(), start=1):
            if in_multiline is not None:
                if line.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            if m := _ARRAY_HEADER.match(line):
                table = _Table(lineno)
                self._arrays.setdefault(_name(m), []).append(table)
                self.headers.setdefault(_name(m), lineno)
                current = table.keys
            elif m := _TABLE_HEADER.match(line):
                self.headers.setdefault(_name(m), lineno)
                current = {}
            elif m := _KEY.match(line):
                current.setdefault(_name(m), lineno)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_multiline = quote
                    break

    def table_line(self, kind: str, index: int) -> int | None:
        """Line of the header of the index-th (0-based) [[kind]] table."""
        tables = self._arrays.get(kind, [])
        return tables[index].header_line if index < len(tables) else self.headers.get(kind)

    def key_line(self, kind: str, index: int, key: str) -> int | None:
        """Line of `key =` in the index-th [[kind]] table, else the table's header line."""
        tables = self._arrays.get(kind, [])
        if index < len(tables) and key in tables[index].keys:
            return tables[index].keys[key]
        return self.table_line(kind, index)
