"""docs/tunnel-definitions.md documents every key, and its example is a valid file."""

from __future__ import annotations

import re
from pathlib import Path

from ikepriv.config import load_definitions
from ikepriv.config.loader import PHASE1_KEYS, PHASE2_KEYS

DOC = (Path(__file__).resolve().parent.parent / "docs" / "tunnel-definitions.md").read_text()


def _documented(section: str) -> list[str]:
    body = DOC.split(section, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_0-9]+)` \|", body, flags=re.MULTILINE)


def test_every_key_is_documented_and_nothing_else() -> None:
    assert sorted(_documented("## `[[phase1]]`")) == sorted(PHASE1_KEYS)
    assert sorted(_documented("## `[[phase2]]`")) == sorted(PHASE2_KEYS)


def test_documented_example_is_accepted() -> None:
    example = DOC.split("## Example", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    defs = load_definitions(example)
    assert [d.name for d in defs.phase1] == ["to-siteB"]
    assert [d.name for d in defs.phase2] == ["lanA-lanB"]
