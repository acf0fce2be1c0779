#!/usr/bin/env bash
# Runs every atheris harness fuzz/fuzz_*.py (isakmp, decrypt, core, ipc, parent_tables,
# fragments) for SECONDS each (default 20) on a scratch copy of
# its seed corpus (fuzz/corpus/<name>/), and fails if any harness finds a crash.
# For long runs by hand: `bash fuzz/run.sh 3600`, or run one harness directly:
#   .venv/bin/python fuzz/fuzz_isakmp.py -max_total_time=36000 fuzz/corpus/isakmp
# Crashes are written to fuzz/artifacts/; turn each into a regression case under tests/.
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-20}
PY=${PY:-.venv/bin/python}
mkdir -p fuzz/artifacts
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for harness in fuzz/fuzz_*.py; do
  [ -e "$harness" ] || continue
  name=$(basename "$harness" .py); name=${name#fuzz_}
  mkdir -p "$work/$name"
  if [ -d "fuzz/corpus/$name" ]; then cp -r "fuzz/corpus/$name/." "$work/$name/"; fi
  log="$work/$name.log"
  "$PY" "$harness" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -rss_limit_mb=2048 \
      -timeout=10 -artifact_prefix=fuzz/artifacts/ "$work/$name" >"$log" 2>&1
  rc=$?
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  if [ $rc -ne 0 ]; then
    echo "fuzz $name: FAILED (rc $rc)"; tail -40 "$log"; status=1
  else
    echo "fuzz $name: ok, ${execs:-?} execs in ${SECONDS_EACH}s (${rate:-?} exec/s)"
  fi
done
exit $status
