#!/usr/bin/env bash
# pushgate only, every scenario the bench supports (burst, latency, idle,
# slow consumers, channels, sustained, churn, and history: the fan-out with
# history off and on side by side, the mass-reconnect recovery, and
# compression: 2 KB JSON to 10,000 clients, permessage-deflate off vs on (and on with plain clients); sse-burst
# and sse-idle: WebSocket vs Server-Sent Events clients side by side; pusher-burst
# and pusher-idle: pushgate and sockudo over the Pusher protocol), REPEAT
# times each.
# Env as in lib.sh, e.g. SUST_CONNS, SUST_DURATION, CHURN_RATE, CHURN_DURATION.
#
#   bash bench/run.sh            QUICK=1 REPEAT=1 bash bench/run.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SCENARIOS="${SCENARIOS:-burst latency idle slow channels sustained churn history-burst history-channels recovery compression sse-burst sse-idle pusher-burst pusher-idle}"
mkdir -p "$OUT"
build_bench
build_pushgate || { echo "pushgate binary not available at $PUSHGATE" >&2; exit 1; }

echo "results: $OUT"
FIRST_ROW=1
for s in $SCENARIOS; do
  for r in $(seq 1 "$REPEAT"); do
    case "$s" in
      # History off and on, one after the other (bench/lib.sh).
      history-burst) run_history_pair burst-channel "$r" ;;
      history-channels) run_history_pair channels "$r" ;;
      recovery) run_recovery "$r" ;;
      # Compression off vs on, one after the other (bench/lib.sh).
      compression) run_compression_pair "$r" ;;
      # WebSocket and SSE clients, one after the other (bench/lib.sh).
      sse-burst) run_sse_pair burst "$r" ;;
      sse-idle) run_sse_pair idle "$r" ;;
      # pushgate and sockudo over the Pusher protocol (bench/lib.sh).
      pusher-burst) run_pusher_pair burst "$r" ;;
      pusher-idle) run_pusher_pair idle "$r" ;;
      *) run_scenario pushgate "$s" "$r" ;;
    esac || echo "!! pushgate $s: server did not start" >&2
  done
done
shopt -s nullglob
files=("$OUT"/*.json)
(( ${#files[@]} )) || { echo "no results" >&2; exit 1; }
# The history runs have tables of their own (report-history).
plain=() hist=() z=()
for f in "${files[@]}"; do
  if [[ "$f" == *-hist-* ]]; then hist+=("$f"); elif [[ "$f" == *-z-* ]]; then z+=("$f"); else plain+=("$f"); fi
done
: >"$OUT/summary.md"
if (( ${#plain[@]} )); then
  echo
  "$BENCH" report "${plain[@]}" | tee -a "$OUT/summary.md"
fi
if (( ${#hist[@]} )); then
  echo | tee -a "$OUT/summary.md"
  "$BENCH" report-history "${hist[@]}" | tee -a "$OUT/summary.md"
fi
if (( ${#z[@]} )); then
  echo | tee -a "$OUT/summary.md"
  report_compression "${z[@]}" | tee -a "$OUT/summary.md"
fi
