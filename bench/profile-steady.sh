#!/usr/bin/env bash
# The steady-state profile of docs/benchmarks.md ("Steady state: where the CPU goes"):
# the latency scenario (1,000 connections x 100 publications/s x 20 s) against one
# server, with a 10-second `perf stat` window in its middle (writev and sendto calls,
# context switches, task-clock), printed per delivery. Needs perf (linux-perf) and root
# for the syscall tracepoints.
#
#   bash bench/profile-steady.sh target/release-lto/pushgate   # a pushgate binary
#   bash bench/profile-steady.sh uws                            # the uws peer (DEFER_PUBLISH=1)
#
# Alternate two binaries a few times to compare them (one figure alone means little).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIN="${1:?usage: profile-steady.sh PUSHGATE_BINARY|uws}"
mkdir -p "$OUT"
P=$("$BENCH" free-port); H=$("$BENCH" free-port); G=$("$BENCH" free-port)
if [[ "$BIN" == uws ]]; then
  DEFER_PUBLISH=1 "$PEERS_DIR/uws/run.sh" "$P" >"$OUT/uws.server.log" 2>&1 &
  SERVER_PID=$!; PUB="http://127.0.0.1:$P/publish"; LABEL=uws; H=$P
else
  "$BIN" serve --ws-addr "127.0.0.1:$P" --http-addr "127.0.0.1:$H" --grpc-addr "127.0.0.1:$G" \
    >"$OUT/pushgate.server.log" 2>&1 &
  SERVER_PID=$!; PUB="http://127.0.0.1:$H/publish?all=true"; LABEL=pushgate
fi
wait_port "$H"
(sleep 8; perf stat -x, -e 'syscalls:sys_enter_writev,syscalls:sys_enter_sendto,context-switches,task-clock' \
  -p "$SERVER_PID" -- sleep 10 2>"$OUT/perf.csv") &
PERF=$!
"$BENCH" run --scenario latency --target "$LABEL" --ws "ws://127.0.0.1:$P/ws" --publish "$PUB" \
  --pid "$SERVER_PID" --size 100 --conns 1000 --duration 20 --no-header --json "$OUT/result.json" >/dev/null
wait "$PERF"
python3 - "$OUT" "$LABEL" <<'PY'
import csv, json, sys
out, label = sys.argv[1], sys.argv[2]
r = json.load(open(f"{out}/result.json"))
v = {row[2]: float(row[0]) for row in csv.reader(open(f"{out}/perf.csv"))
     if len(row) > 2 and row[0] not in ("", "<not counted>")}
d = 1000 * 100 * 10  # deliveries in the 10 s window
print(f"{label}: server CPU µs/delivery {r['cpu_us_per_delivery']:.3f} (run), "
      f"{v['task-clock'] * 1000 / d:.3f} (window); writev/delivery "
      f"{v['syscalls:sys_enter_writev'] / d:.3f}, sendto/delivery {v['syscalls:sys_enter_sendto'] / d:.3f}; "
      f"context switches {v['context-switches']:.0f}; p50 {r['lat_p50_us'] / 1000:.1f} ms, "
      f"p99 {r['lat_p99_us'] / 1000:.1f} ms; lost {r['lost']}")
PY
