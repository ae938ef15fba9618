#!/usr/bin/env bash
# The steady-state profile of docs/benchmarks.md ("Steady state: where the CPU goes"):
# the latency scenario (1,000 connections x 100 publications/s x 20 s) against one
# server, with a 10-second `perf stat` window in its middle (writev and sendto calls,
# context switches, task-clock), printed per delivery. Needs perf (linux-perf) and root
# for the syscall tracepoints.
#
#   bash bench/profile-steady.sh target/release-lto/pushgate   # a pushgate binary
#   bash bench/profile-steady.sh uws                            # the uws peer (DEFER_PUBLISH=1)
#   bash bench/profile-steady.sh rust-naive                     # or any peer of $PEERS_DIR
#
# Alternate two binaries a few times to compare them (one figure alone means little).
# PROFILE_SCENARIO=sustained PROFILE_CONNS=10000 PROFILE_DURATION=30 PROFILE_RATE=100:
# the same window in another paced scenario (deliveries = conns x rate per second).
# PROFILE_WORKERS=2: the load generator's connections split over two single-threaded
# processes instead of one (a client that can use both cores).
# PROFILE_RECORD=FILE: also `perf record -g` the server into FILE for 8 s from second 6
# (read with `perf report -i FILE --children -g none --sort sym`; a symbol's share ×
# the printed µs/delivery is its cost per delivery; the sampling adds a little CPU).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
BIN="${1:?usage: profile-steady.sh PUSHGATE_BINARY|PEER}"
SCENARIO="${PROFILE_SCENARIO:-latency}" CONNS="${PROFILE_CONNS:-1000}"
DURATION="${PROFILE_DURATION:-20}" RATE="${PROFILE_RATE:-100}" WORKERS="${PROFILE_WORKERS:-1}"
mkdir -p "$OUT"
read -r P H G < <(free_ports 3)
if [[ -x "$PEERS_DIR/$BIN/run.sh" ]]; then
  DEFER_PUBLISH=1 "$PEERS_DIR/$BIN/run.sh" "$P" >"$OUT/$BIN.server.log" 2>&1 &
  SERVER_PID=$!; PUB="http://127.0.0.1:$P/publish"; LABEL=$BIN; H=$P
else
  "$BIN" serve --ws-addr "127.0.0.1:$P" --http-addr "127.0.0.1:$H" --grpc-addr "127.0.0.1:$G" \
    >"$OUT/pushgate.server.log" 2>&1 &
  SERVER_PID=$!; PUB="http://127.0.0.1:$H/publish?all=true"; LABEL=pushgate
fi
wait_port "$H"
(sleep 8; perf stat -x, -e 'syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_write,context-switches,task-clock' -e irq:softirq_entry --filter 'vec == 3' \
  -p "$SERVER_PID" -- sleep 10 2>"$OUT/perf.csv") &
PERF=$!
if [[ -n "${PROFILE_RECORD:-}" ]]; then
  (sleep 6; perf record -F 2000 -g -p "$SERVER_PID" -o "$PROFILE_RECORD" -- sleep 8 >/dev/null 2>&1) &
  RECORD=$!
fi
# Softirq work the kernel defers to ksoftirqd is charged to no server or client:
# sample those threads' CPU around the run so the whole is accounted for.
ksoftirqd_ticks() { cat /proc/[0-9]*/stat 2>/dev/null | awk '$2 ~ /^\(ksoftirqd/ {t += $14 + $15} END {print t + 0}'; }
K0=$(ksoftirqd_ticks)
"$BENCH" run --scenario "$SCENARIO" --target "$LABEL" --ws "ws://127.0.0.1:$P/ws" --publish "$PUB" \
  --pid "$SERVER_PID" --size 100 --conns "$CONNS" --duration "$DURATION" --rate "$RATE" --workers "$WORKERS" --no-header --json "$OUT/result.json" >/dev/null
K1=$(ksoftirqd_ticks)
wait "$PERF"
[[ -z "${RECORD:-}" ]] || wait "$RECORD"
python3 - "$OUT" "$LABEL" "$((K1 - K0))" "$(getconf CLK_TCK)" "$((CONNS * RATE * 10))" <<'PY'
import csv, json, sys
out, label = sys.argv[1], sys.argv[2]
ksoft_us = int(sys.argv[3]) * 1e6 / int(sys.argv[4])
r = json.load(open(f"{out}/result.json"))
v = {row[2]: float(row[0]) for row in csv.reader(open(f"{out}/perf.csv"))
     if len(row) > 2 and row[0] not in ("", "<not counted>")}
d = int(sys.argv[5])  # deliveries offered in the 10 s window
print(f"{label}: server CPU µs/delivery {r['cpu_us_per_delivery']:.3f} (run), "
      f"{v['task-clock'] * 1000 / d:.3f} (window); writev/delivery "
      f"{v['syscalls:sys_enter_writev'] / d:.3f}, sendto/delivery {v['syscalls:sys_enter_sendto'] / d:.3f}, "
      f"write/delivery {v['syscalls:sys_enter_write'] / d:.3f}; "
      f"NET_RX softirqs/delivery {v.get('irq:softirq_entry', 0) / d:.3f}; context switches {v['context-switches']:.0f}; p10 {dict(r['lat_percentiles'])[10.0] / 1000:.2f} ms, "
      f"p50 {r['lat_p50_us'] / 1000:.2f} ms, p99 {r['lat_p99_us'] / 1000:.2f} ms, last recipient's p50 {r['last_p50_us'] / 1000:.2f} ms; lost {r['lost']}")
n = r["delivered"]
server, client = r["cpu_us_per_delivery"], r["client_cpu_us_per_delivery"]
print(f"{label}: per delivery over the run: server {server:.3f} + client {client:.3f} "
      f"+ ksoftirqd {ksoft_us / n:.3f} = {server + client + ksoft_us / n:.3f} µs")
PY
