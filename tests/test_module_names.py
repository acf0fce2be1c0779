"""Every module under ikepriv/ has a file name of its own.

Two `framing.py` or two `messages.py` in one package tree make tracebacks, editor tabs,
grep hits and review comments ambiguous; a name should say which thing it is
(`natt_framing.py`, `xfrm_messages.py`). Package markers (`__init__.py`, `__main__.py`) are
the only names that repeat.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "ikepriv"
REPEATABLE = {"__init__.py", "__main__.py"}


def test_module_file_names_are_unique() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name not in REPEATABLE:
            where[path.name].append(str(path.relative_to(PACKAGE.parent)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
