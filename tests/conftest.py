"""Shared pytest set-up: skips that say why, never silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `root` need uid 0; CI runs as root, so there they always run."""
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (run the README test command as root)")
    for item in items:
        if "root" in item.keywords or "uml" in item.keywords or "interop" in item.keywords:
            item.add_marker(skip)
