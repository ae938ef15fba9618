#!/usr/bin/env bash
# Deliveries per second against connection count: the burst scenario at each
# of SWEEP_CONNS for each target, REPEAT times (default 1), fresh server per
# run. Messages per burst are scaled so every point delivers about
# SWEEP_DELIVERIES (1M) frames: small points are not over in a few ms.
#
#   bash bench/sweep.sh
#   TARGETS=pushgate SWEEP_CONNS="1000 5000" bash bench/sweep.sh
#   python3 bench/plot.py --sweep bench/results/<ts>    # → docs/bench-throughput.svg
#
# Env: TARGETS (pushgate go-hub rust-naive), SWEEP_CONNS (1000 2500 5000 10000
#      19000), SWEEP_DELIVERIES (1000000), REPEAT (1), plus lib.sh's.
set -euo pipefail
REPEAT="${REPEAT:-1}"
source "$(dirname "$0")/lib.sh"

TARGETS="${TARGETS:-pushgate go-hub rust-naive}"
SWEEP_CONNS="${SWEEP_CONNS:-1000 2500 5000 10000 19000}"
SWEEP_DELIVERIES="${SWEEP_DELIVERIES:-1000000}"
mkdir -p "$OUT"

build_targets

echo "results: $OUT"
FIRST_ROW=1
for t in "${available[@]}"; do
  for n in $SWEEP_CONNS; do
    m=$(( SWEEP_DELIVERIES / n )); (( m < 20 )) && m=20
    for r in $(seq 1 "$REPEAT"); do
      BURST_CONNS=$n MESSAGES=$m TAG="c$n" run_scenario "$t" burst "$r" ||
        echo "!! $t burst $n: server did not start" >&2
    done
  done
done
echo
echo "plot: python3 bench/plot.py --sweep $OUT"
