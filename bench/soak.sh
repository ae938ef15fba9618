#!/usr/bin/env bash
# make soak: one pushgate node holding SOAK_CONNS connections (19,000) for SOAK_MINUTES
# (30) while publications to all go out at SOAK_RATE per second (10: 190,000
# deliveries/s), sampling the server's RSS and open descriptors every SOAK_SAMPLE_S
# seconds (60). Passes when no delivery was lost and neither RSS nor descriptors grew
# by SOAK_MAX_GROWTH_PCT (5) % or more from the first sample with every client
# connected to the last. Results: bench/results/<stamp>/soak-samples.csv (one line per
# sample) and soak.json (the load generator's report). Not part of CI; needs the
# release builds of pushgate and pushgate-bench (built here unless SKIP_*_BUILD).
#
# A short check of the script itself: SOAK_CONNS=1000 SOAK_MINUTES=2 SOAK_SAMPLE_S=10 make soak
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOAK_CONNS="${SOAK_CONNS:-19000}"
SOAK_MINUTES="${SOAK_MINUTES:-30}"
SOAK_RATE="${SOAK_RATE:-10}"
SOAK_SAMPLE_S="${SOAK_SAMPLE_S:-60}"
SOAK_MAX_GROWTH_PCT="${SOAK_MAX_GROWTH_PCT:-5}"
mkdir -p "$OUT"
SAMPLES="$OUT/soak-samples.csv"

build_pushgate || { echo "pushgate binary not available at $PUSHGATE" >&2; exit 1; }
build_bench || { echo "bench binary not available at $BENCH" >&2; exit 1; }

start_server pushgate
METRICS_URL="${PUB_URL%%/publish*}/metrics"

# sample: one CSV line: seconds since start, RSS (kB), open fds, open connections.
START=$(date +%s)
sample() {
  local rss fds conns
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
  fds=$(ls "/proc/$SERVER_PID/fd" 2>/dev/null | wc -l)
  conns=$(curl -s --max-time 5 "$METRICS_URL" |
    awk '/^pushgate_connections\{/ {n += $2} END {printf "%d", n}')
  echo "$(( $(date +%s) - START )),$rss,$fds,${conns:-0}" >>"$SAMPLES"
}
echo "seconds,rss_kb,fds,connections" >"$SAMPLES"
( while kill -0 "$SERVER_PID" 2>/dev/null; do sample; sleep "$SOAK_SAMPLE_S"; done ) &
SAMPLER=$!
trap 'kill "$SAMPLER" 2>/dev/null || true; stop_server' EXIT

echo "soak: $SOAK_CONNS connections, $SOAK_RATE publications/s to all, $SOAK_MINUTES min; samples in $SAMPLES"
timeout $(( SOAK_MINUTES * 60 + 900 )) "$BENCH" run --scenario sustained --target pushgate \
  --ws "$WS_URL" --publish "$PUB_URL" --pid "$SERVER_PID" --size "$SIZE" \
  --conns "$SOAK_CONNS" --rate "$SOAK_RATE" --duration "$(( SOAK_MINUTES * 60 ))" \
  --json "$OUT/soak.json"
sample
kill "$SAMPLER" 2>/dev/null || true

python3 - "$SAMPLES" "$OUT/soak.json" "$SOAK_CONNS" "$SOAK_MAX_GROWTH_PCT" <<'PY'
import csv, json, sys
samples_file, report_file, conns, max_growth = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
rows = [r for r in csv.DictReader(open(samples_file))]
report = json.load(open(report_file))
full = [r for r in rows if int(r["connections"]) >= conns]
print(f"{'s':>6} {'RSS MB':>8} {'fds':>7} {'conns':>7}")
for r in rows:
    print(f"{int(r['seconds']):>6} {int(r['rss_kb']) / 1024:>8.1f} {int(r['fds']):>7} {int(r['connections']):>7}")
ok = True
if len(full) < 2:
    print(f"FAIL: fewer than two samples with all {conns} clients connected")
    ok = False
else:
    first, last = full[0], full[-1]
    for key, name in (("rss_kb", "RSS"), ("fds", "fds")):
        a, b = int(first[key]), int(last[key])
        growth = (b - a) * 100.0 / a if a else 0.0
        verdict = "ok" if growth < max_growth else "FAIL"
        ok &= verdict == "ok"
        print(f"{verdict}: {name} {a} -> {b} ({growth:+.2f} %, limit {max_growth} %) from {first['seconds']} s to {last['seconds']} s")
lost, expected = report.get("lost", 0), report.get("expected", 0)
print(f"{'ok' if lost == 0 else 'FAIL'}: {report.get('delivered', 0)} of {expected} deliveries, {lost} lost")
ok &= lost == 0
sys.exit(0 if ok else 1)
PY
