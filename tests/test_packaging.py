"""The installed package exposes its console scripts and the compiled extension."""

import sys
from pathlib import Path

from ikepriv.ext import _dh


def test_extension_is_compiled() -> None:
    assert _dh.__file__.endswith(".so")


def test_console_scripts_installed() -> None:
    bindir = Path(sys.executable).parent
    missing = [n for n in ("ikeprivd", "ike", "ikedb", "ikedump") if not (bindir / n).exists()]
    assert missing == []
