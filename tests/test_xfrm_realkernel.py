"""ikepriv's XFRM layer carrying real ESP traffic, in User Mode Linux.

One UML boot runs tests/realkernel/xfrm_in_kernel.py; each case is then checked from its
PASS/FAIL lines, so a failure names the case and the check.
"""

from __future__ import annotations

import re

import pytest
from harness import uml

pytestmark = [pytest.mark.uml, pytest.mark.root]

SCRIPT = uml.TESTS / "realkernel" / "xfrm_in_kernel.py"
CASES = ("cbc-hmac", "gcm", "natt", "v6", "ah", "transport")
LINE = re.compile(r"^(PASS|FAIL) (\S+?): (.*)$")


@pytest.fixture(scope="module")
def guest_lines() -> dict[str, list[tuple[bool, str]]]:
    missing = uml.missing_prerequisites()
    if missing:
        pytest.skip(f"UML tier needs: {', '.join(missing)}")
    run = uml.run(uml.python_argv(str(SCRIPT), *CASES), timeout=300)
    print(run.stdout[-4000:])
    by_case: dict[str, list[tuple[bool, str]]] = {}
    for line in run.stdout.splitlines():
        m = LINE.match(line)
        if m:
            by_case.setdefault(m.group(2), []).append((m.group(1) == "PASS", m.group(3)))
    assert by_case.get("xfrm_in_kernel"), (
        f"guest script did not finish (rc {run.rc})\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    )
    return by_case


@pytest.mark.parametrize("case", CASES)
def test_esp_case_in_real_kernel(case: str, guest_lines: dict[str, list[tuple[bool, str]]]) -> None:
    lines = guest_lines.get(case, [])
    failed = [what for ok, what in lines if not ok]
    assert lines and not failed, "\n".join(failed) or f"no output for {case}"
    # the checks that make a case meaningful: traffic flowed and counted on both sides, cleanup
    text = "\n".join(what for _, what in lines)
    assert "ping" in text
    assert text.count("SA packet counters rose") == 2
    assert text.count("clean after delete") == 2


def test_soft_expire_event_in_real_kernel(guest_lines: dict[str, list[tuple[bool, str]]]) -> None:
    assert any(ok and "soft EXPIRE event" in what for ok, what in guest_lines["cbc-hmac"])


def test_guest_script_succeeded(guest_lines: dict[str, list[tuple[bool, str]]]) -> None:
    [(ok, summary)] = guest_lines["xfrm_in_kernel"]
    assert ok, summary
