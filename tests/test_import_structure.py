"""The package's import graph is a layered order, as docs/architecture.md describes.

A reviewer reads the design from the imports: the root parent must not load the child's
code (its sandbox module alone pulls in libc through ctypes, prctl, seccomp and Landlock),
the child must not load the parent's, and the negotiation core must be an acyclic stack of
modules rather than a knot that only loads thanks to imports hidden inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ikepriv"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {
    _module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "build_dh" not in p.name
}


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> Iterator[str]:
    """The ikepriv modules an import statement makes `module` depend on: each module it
    names with the packages above it (their __init__ runs first), and a package whose
    __init__ it reads a name from.

    The packages that contain `module` itself count only when it reads a name from one:
    Python has run (or is running) their __init__ before `module`, whatever `module`
    imports, so `ikepriv.isakmp.sa` importing `ikepriv.isakmp.isakmp_error` says nothing about
    the order of `ikepriv.isakmp` and its modules, while `from ikepriv.isakmp import X`
    inside `ikepriv.isakmp.sa` does (X must exist before the package has finished)."""
    own = {module.rsplit(".", k)[0] for k in range(1, module.count(".") + 1)}
    starts: list[tuple[str, bool]] = []  # (name, a name is read from that module)
    if isinstance(node, ast.Import):
        starts = [(alias.name, False) for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = module.split(".")
            if not MODULES[module].name == "__init__.py":
                pkg = pkg[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join([*pkg, base] if base else pkg)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            starts.append((sub, False) if sub in MODULES else (base, True))
    for name, reads_from_it in starts:
        if reads_from_it and name in MODULES:
            yield name
        while name:
            if name in MODULES and name not in own:
                yield name
            name = name.rpartition(".")[0]


def _imports(module: str) -> tuple[set[str], list[tuple[int, str]]]:
    """(every ikepriv module imported anywhere in `module`, the ones imported inside a
    function, with their line numbers)."""
    tree = ast.parse(MODULES[module].read_text())
    found: set[str] = set()
    nested: list[tuple[int, str]] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                targets = set(_resolve(module, child)) - {module}
                found.update(targets)
                if in_function:
                    nested.extend((child.lineno, t) for t in sorted(targets))
            inner = in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            walk(child, inner)

    walk(tree, False)
    return found, nested


GRAPH = {module: _imports(module)[0] for module in MODULES}


def _reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_cycle() -> None:
    """Every import counts, those under TYPE_CHECKING and inside functions too: a cycle
    that only loads because one side imports late is still a cycle for the reader."""
    cycles = sorted(m for m in MODULES if m in _reachable(m) and not m.endswith("__init__"))
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_no_function_level_imports_of_our_own_modules() -> None:
    nested = {m: n for m in MODULES if (n := _imports(m)[1])}
    assert nested == {}


@pytest.mark.parametrize(
    ("side", "other"),
    [
        ("ikepriv.parent_kernel", "ikepriv.child_negotiator"),
        ("ikepriv.child_negotiator", "ikepriv.parent_kernel"),
        ("ikepriv.child_negotiator.core", "ikepriv.child_negotiator.process"),
        ("ikepriv.ipc", "ikepriv.parent_kernel"),
        ("ikepriv.ipc", "ikepriv.child_negotiator"),
    ],
)
def test_process_boundaries(side: str, other: str) -> None:
    """Nothing on one side loads, even indirectly, a module of the other."""
    crossing = {
        m: sorted(t for t in _reachable(m) if t == other or t.startswith(other + "."))
        for m in MODULES
        if m == side or m.startswith(side + ".")
    }
    assert {m: ts for m, ts in crossing.items() if ts} == {}


def test_the_parent_process_does_not_load_sandbox_libraries() -> None:
    """What the daemon really loads, measured in a fresh interpreter."""
    code = (
        "import sys, ikepriv.cli.ikeprivd, ikepriv.parent_kernel.daemon\n"
        "bad = sorted(m for m in sys.modules if m.startswith('ikepriv.child_negotiator')"
        " or m in ('prctl', 'seccomp', 'pyseccomp'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(  # noqa: S603 -- our interpreter, our code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == ""


def test_every_module_imports_on_its_own() -> None:
    """Each module loads first in a fresh interpreter: no module depends on another having
    been imported before it (the symptom a hidden cycle gives)."""
    names = [m for m in MODULES if not m.endswith("__main__")]
    code = (
        "import importlib, subprocess, sys\n"
        "failed = []\n"
        "for name in sys.argv[1:]:\n"
        "    r = subprocess.run([sys.executable, '-c', f'import {name}'],"
        " capture_output=True, text=True)\n"
        "    if r.returncode:\n"
        "        failed.append((name, r.stderr.strip().splitlines()[-1:]))\n"
        "print(failed)\n"
    )
    out = subprocess.run(  # noqa: S603 -- our interpreter, our code
        [sys.executable, "-c", code, *names], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"
