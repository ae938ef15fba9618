#!/usr/bin/env bash
# Compare pushgate with the reference peers (uws, go-seed, go-hub, node-ws, rust-naive) on scenarios 1–3 (burst,
# latency, idle), REPEAT times each (medians reported; the targets interleaved), then print a table
# with ratios against the best peer per metric.
#
#   bash bench/run-peers.sh                 # full run
#   QUICK=1 REPEAT=1 bash bench/run-peers.sh  # smoke test
#   TARGETS="go-hub rust-naive" bash bench/run-peers.sh
#
# Env: REPEAT (3), QUICK (0), TARGETS, SCENARIOS, PEERS_DIR, CARGO_TARGET_DIR,
#      PUSHGATE (binary), BURST_CONNS, MESSAGES, LAT_CONNS, DURATION, IDLE_CONNS, SIZE.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TARGETS="${TARGETS:-pushgate uws go-seed go-hub node-ws rust-naive}"
# uws (uWebSockets.js) in its stronger mode: app.publish after the POST
# handler, so uWS corks each subscriber and batches its frames
# (../shared/peers/uws/README.md; DEFER_PUBLISH=0 for its default mode).
export DEFER_PUBLISH="${DEFER_PUBLISH:-1}"
SCENARIOS="${SCENARIOS:-burst latency idle}"
mkdir -p "$OUT"

build_targets

echo "results: $OUT"
FIRST_ROW=1
# Repetition by repetition, the targets one after another within each scenario,
# their order rotated with the repetition: a drift of the machine's speed during
# the run then lands on every target alike instead of on whichever ran last, and
# no target always runs first.
n=${#available[@]}
for r in $(seq 1 "$REPEAT"); do
  for s in $SCENARIOS; do
    for i in $(seq 0 $((n - 1))); do
      t=${available[$(((i + r - 1) % n))]}
      run_scenario "$t" "$s" "$r" || echo "!! $t $s: server did not start" >&2
    done
  done
done

shopt -s nullglob
files=("$OUT"/*.json)
if (( ${#files[@]} == 0 )); then echo "no results" >&2; exit 1; fi
echo
"$BENCH" report "${files[@]}" | tee "$OUT/summary.md"
