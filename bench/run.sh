#!/usr/bin/env bash
# pushgate only, every scenario the bench supports (burst, latency, idle,
# slow consumers, channels, sustained, churn), REPEAT times each.
# Env as in lib.sh, e.g. SUST_CONNS, SUST_DURATION, CHURN_RATE, CHURN_DURATION.
#
#   bash bench/run.sh            QUICK=1 REPEAT=1 bash bench/run.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SCENARIOS="${SCENARIOS:-burst latency idle slow channels sustained churn}"
mkdir -p "$OUT"
build_bench
build_pushgate || { echo "pushgate binary not available at $PUSHGATE" >&2; exit 1; }

echo "results: $OUT"
FIRST_ROW=1
for s in $SCENARIOS; do
  for r in $(seq 1 "$REPEAT"); do
    run_scenario pushgate "$s" "$r" || echo "!! pushgate $s: server did not start" >&2
  done
done
shopt -s nullglob
files=("$OUT"/*.json)
(( ${#files[@]} )) || { echo "no results" >&2; exit 1; }
echo
"$BENCH" report "${files[@]}" | tee "$OUT/summary.md"
