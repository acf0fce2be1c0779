"""The man pages say what --help and docs/tunnel-definitions.md say (they are made from them).

Each page is rendered by the real man(1) (groff), and the rendered text must contain every
line that the program prints for --help, and ikepriv.toml(5) every word of the document.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ikepriv.cli import manpages, metrics

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9_]+", text.lower())  # headings are upper case in man


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if shutil.which("man") is None:
        pytest.skip("man(1) is not installed (package man-db)")
    out = tmp_path_factory.mktemp("man")
    written = manpages.write_all(out)
    assert sorted(p.name for p in written) == sorted(
        ["ike.8", "ikedb.8", "ikeprivd.8", "ikedump.8", "ikepriv.toml.5"]
    )
    pages = {}
    for path in written:
        result = subprocess.run(  # noqa: S603
            ["man", "--warnings", "-l", str(path)],  # noqa: S607
            capture_output=True, text=True, check=True,
            env={**os.environ, "MANWIDTH": "200", "LC_ALL": "C.UTF-8", "MANPAGER": "cat"},
        )  # fmt: skip
        assert result.stderr == "", (path, result.stderr)
        pages[path.name] = result.stdout
    return pages


@pytest.mark.parametrize("prog", ["ikeprivd", "ike", "ikedb", "ikedump"])
def test_page_holds_every_help_line(rendered: dict[str, str], prog: str) -> None:
    page = re.sub(r"\s+", " ", rendered[f"{prog}.8"])
    # the installed script's --help (ike: `ike help`), not the module's string
    word = "help" if prog == "ike" else "--help"
    env = {**os.environ, "COLUMNS": str(manpages.WIDTH)}
    out = subprocess.run(  # noqa: S603
        [str(BIN / prog), word], capture_output=True, text=True, check=True, env=env
    ).stdout
    for line in out.splitlines():
        if line.strip():
            assert re.sub(r"\s+", " ", line.strip()) in page, (prog, line)


def test_ike_page_lists_the_metrics(rendered: dict[str, str]) -> None:
    for name, _, help_text in metrics.metric_names():
        assert name in rendered["ike.8"]
        assert re.sub(r"\s+", " ", help_text) in re.sub(r"\s+", " ", rendered["ike.8"])


def test_toml_page_is_the_definitions_document(rendered: dict[str, str]) -> None:
    doc = (ROOT / "docs" / "tunnel-definitions.md").read_text()
    doc = doc.split("\n", 1)[1]  # the "# Tunnel definitions" title is the page's NAME line
    doc = re.sub(r"^```.*$", "", doc, flags=re.M)  # fences and their language tags
    page_words = _words(rendered["ikepriv.toml.5"])
    doc_words = _words(doc)
    # every word of the document, in the same order (markup aside)
    it = iter(page_words)
    missing = [w for w in doc_words if w not in it]
    assert not missing, missing[:10]
