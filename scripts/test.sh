#!/usr/bin/env bash
# The test command: sets everything up (scripts/setup.sh), then runs the linters, every test
# tier (unit, in-process negotiations, sandbox and vetting as root, User Mode Linux with real
# ESP, interop with strongSwan and libreswan) and a bounded fuzzing run. Exits non-zero on any
# failure. Extra arguments go to pytest (for example `-k codec` or `-m "not uml"`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python

echo "== ruff"
.venv/bin/ruff check ikepriv tests fuzz bench
echo "== ruff format --check"
.venv/bin/ruff format --check ikepriv tests fuzz bench
echo "== mypy --strict"
.venv/bin/mypy --strict ikepriv
echo "== pytest"
$PY -m pytest -q -p no:cacheprovider "$@"
if [ -x fuzz/run.sh ] && [ $# -eq 0 ]; then
  echo "== fuzz (bounded)"
  bash fuzz/run.sh "${IKEPRIV_FUZZ_SECONDS:-15}"
fi
