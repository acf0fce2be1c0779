"""Configuration problems that point at the file, line and field an operator must fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ConfigError", "DefinitionError", "Problem"]


@dataclass(frozen=True)
class Problem:
    """One mistake: where it is (line, table, field) and what is wrong."""

    line: int | None
    table: str | None  # e.g. "phase1 'to-siteB'" or "phase2 #3"
    field: str | None
    message: str

    def format(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line is not None else filename
        parts = [where]
        if self.table is not None:
            parts.append(self.table)
        if self.field is not None:
            parts.append(f"field '{self.field}'")
        return ": ".join(parts) + ": " + self.message


class ConfigError(ValueError):
    """A definitions file was refused as a whole; nothing of it was used."""

    def __init__(self, filename: str, problems: Sequence[Problem]) -> None:
        self.filename = filename
        self.problems = tuple(problems)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        return [p.format(self.filename) for p in self.problems]


class DefinitionError(ValueError):
    """A definition value breaks a rule; `field` names the model field (None: the whole).

    Raised by the model's constructors, so every path that builds a definition (the
    loader from a file, the store from a database row) refuses the same things with the
    same words.
    """

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"field '{field}': {message}" if field is not None else message)
