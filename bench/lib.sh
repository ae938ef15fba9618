# Shared helpers for bench/run.sh and bench/run-peers.sh (sourced, not run).
# Starts servers on free loopback ports, runs scenarios against them, and
# always cleans its server processes up (trap EXIT).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# kill_wait, shared with the test scripts.
# shellcheck source=deploy/lib.sh
source "$ROOT/deploy/lib.sh"
PEERS_DIR="${PEERS_DIR:-$ROOT/../shared/peers}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
# Benchmarks build with the release-lto profile (Cargo.toml): what the results in
# docs/benchmarks.md were measured with.
PROFILE="${PROFILE:-release-lto}"
BENCH="$TARGET_DIR/$PROFILE/pushgate-bench"
# pushgate is built in the workspace's own target dir (shared with the
# gateway's developers); the bench itself may live in another CARGO_TARGET_DIR
# to avoid fighting over the build lock.
PUSHGATE="${PUSHGATE:-$ROOT/target/$PROFILE/pushgate}"
REPEAT="${REPEAT:-3}"
QUICK="${QUICK:-0}"
STAMP="$(date +%Y%m%d-%H%M%S)"
OUT="${OUT:-$ROOT/bench/results/$STAMP}"

if [[ "$QUICK" == 1 ]]; then
  BURST_CONNS=${BURST_CONNS:-1000}; MESSAGES=${MESSAGES:-20}
  LAT_CONNS=${LAT_CONNS:-1000}; DURATION=${DURATION:-3}; IDLE_CONNS=${IDLE_CONNS:-2000}
  SUST_CONNS=${SUST_CONNS:-1000}; SUST_DURATION=${SUST_DURATION:-3}
  CHURN_RATE=${CHURN_RATE:-100}; CHURN_DURATION=${CHURN_DURATION:-3}
else
  BURST_CONNS=${BURST_CONNS:-10000}; MESSAGES=${MESSAGES:-100}
  LAT_CONNS=${LAT_CONNS:-1000}; DURATION=${DURATION:-20}; IDLE_CONNS=${IDLE_CONNS:-19000}
  # sustained: 10,000 conns × 100 publications/s = 1M deliveries/s offered.
  SUST_CONNS=${SUST_CONNS:-10000}; SUST_DURATION=${SUST_DURATION:-30}
  # churn: 500 connects + 500 disconnects per second for 60 s.
  CHURN_RATE=${CHURN_RATE:-500}; CHURN_DURATION=${CHURN_DURATION:-60}
fi
SUST_RATE=${SUST_RATE:-100}
CHURN_CONNS=${CHURN_CONNS:-1000}      # stable (measured) clients
CHURN_PUB_RATE=${CHURN_PUB_RATE:-10}  # publications/s to all of them
CHURN_HOLD_MS=${CHURN_HOLD_MS:-1000}  # mean stay of a churning connection
SIZE=${SIZE:-100}
# Compression (issue #15): 2 KB JSON publications to 10,000 clients.
if [[ "$QUICK" == 1 ]]; then Z_CONNS=${Z_CONNS:-1000}; Z_MESSAGES=${Z_MESSAGES:-20}; else Z_CONNS=${Z_CONNS:-10000}; Z_MESSAGES=${Z_MESSAGES:-100}; fi
Z_SIZE=${Z_SIZE:-2048}
SLOW_CONNS=${SLOW_CONNS:-100}
CHAN_CONNS=${CHAN_CONNS:-$BURST_CONNS}
# Each channel publication reaches only ~conns×5/1000 clients, so channels
# needs many more publications than burst for a measurable delivery count.
if [[ "$QUICK" == 1 ]]; then CHAN_MESSAGES=${CHAN_MESSAGES:-1000}; else CHAN_MESSAGES=${CHAN_MESSAGES:-10000}; fi

# History (issue #11): the recovery scenario's clients, publications each
# receives live before leaving (warm-up) and misses while away, and how many
# reconnect at the same time (0 = all at once); the history rule of the runs
# with history on (every channel).
if [[ "$QUICK" == 1 ]]; then REC_CONNS=${REC_CONNS:-1000}; else REC_CONNS=${REC_CONNS:-10000}; fi
REC_WARMUP=${REC_WARMUP:-10}
REC_MISSED=${REC_MISSED:-100}
REC_CONCURRENCY=${REC_CONCURRENCY:-0}
HIST_SIZE=${HIST_SIZE:-1000}
HIST_TTL_MS=${HIST_TTL_MS:-600000}
# A TOML file for pushgate's --config (empty: none); see run_history_pair.
PG_CONFIG="${PG_CONFIG:-}"

SERVER_PID=""
stop_server() {
  if [[ -n "$SERVER_PID" ]]; then kill_wait "$SERVER_PID"; fi
  SERVER_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# wait_port PORT: until something listens on 127.0.0.1:PORT (max 60 s).
wait_port() {
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then echo "server exited during startup" >&2; return 1; fi
    sleep 0.1
  done
  echo "server did not listen on port $1 within 60 s" >&2
  return 1
}

# start_server TARGET: sets SERVER_PID, WS_URL, PUB_URL.
start_server() {
  local t="$1" p h g
  # Three ports drawn together (deploy/lib.sh), so they differ: gRPC on a free port
  # too, as its default (50051) may be taken by another gateway on this machine.
  read -r p h g < <(free_ports 3)
  if [[ "$t" == pushgate ]]; then
    local cfg=()
    [[ -n "$PG_CONFIG" ]] && cfg=(--config "$PG_CONFIG")
    (ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$PUSHGATE" serve "${cfg[@]}" --ws-addr "127.0.0.1:$p" \
        --http-addr "127.0.0.1:$h" --grpc-addr "127.0.0.1:$g") \
      >"$OUT/$t.server.log" 2>&1 &
    SERVER_PID=$!
    WS_URL="ws://127.0.0.1:$p/ws"; PUB_URL="http://127.0.0.1:$h/publish?all=true"
    # SSE=1: the clients are Server-Sent Events streams of the same listener.
    [[ "${SSE:-}" == 1 ]] && WS_URL="http://127.0.0.1:$p/sse"
    # PUSHER=1: Pusher clients of the app run_pusher_pair configures.
    if [[ "${PUSHER:-}" == 1 ]]; then
      WS_URL="ws://127.0.0.1:$p/app/$PUSHER_KEY?protocol=7&client=js&version=8.4.0"
      PUB_URL="http://127.0.0.1:$h/apps/$PUSHER_ID/events"
    fi
    wait_port "$h"
  else
    "$PEERS_DIR/$t/run.sh" "$p" >"$OUT/$t.server.log" 2>&1 &
    SERVER_PID=$!
    WS_URL="ws://127.0.0.1:$p/ws"; PUB_URL="http://127.0.0.1:$p/publish"
    # A peer with its own URLs (sockudo: Pusher's /app/KEY and /apps/ID/events).
    if [[ -x "$PEERS_DIR/$t/ws_url.sh" ]]; then
      WS_URL="$("$PEERS_DIR/$t/ws_url.sh" "$p")"; PUB_URL="$("$PEERS_DIR/$t/publish_url.sh" "$p")"
    fi
  fi
  wait_port "$p"
}

# run_scenario TARGET SCENARIO REP [extra args]: fresh server per run so one
# scenario's leftovers (memory, goroutines) do not skew the next. The result
# is $OUT/TARGET-SCENARIO[-$TAG]-REP.json.
run_scenario() {
  local t="$1" s="$2" r="$3"; shift 3
  local args=()
  case "$s" in
    # Unpaced publishing asks for the early answer (`Prefer: respond-async`, 202):
    # pushgate then answers once a publication is accepted, as uws (DEFER_PUBLISH=1)
    # answers before publishing; the peers ignore the header. docs/benchmarks.md,
    # "Burst: an answer that does not wait for the fan-out".
    burst) args=(--conns "$BURST_CONNS" --messages "$MESSAGES" --respond-async) ;;
    latency) args=(--conns "$LAT_CONNS" --duration "$DURATION") ;;
    idle) args=(--conns "$IDLE_CONNS") ;;
    slow) args=(--conns "$LAT_CONNS" --duration "$DURATION" --slow "$SLOW_CONNS") ;;
    channels) args=(--conns "$CHAN_CONNS" --messages "$CHAN_MESSAGES" --respond-async) ;;
    sustained) args=(--conns "$SUST_CONNS" --duration "$SUST_DURATION" --rate "$SUST_RATE") ;;
    churn) args=(--conns "$CHURN_CONNS" --duration "$CHURN_DURATION" --rate "$CHURN_PUB_RATE"
                 --churn-rate "$CHURN_RATE" --churn-hold-ms "$CHURN_HOLD_MS") ;;
    burst-channel) args=(--conns "$BURST_CONNS" --messages "$MESSAGES" --respond-async) ;;
    recovery) args=(--conns "$REC_CONNS" --warmup "$REC_WARMUP" --missed "$REC_MISSED"
                    --reconnect-concurrency "$REC_CONCURRENCY") ;;
  esac
  start_server "$t" || { stop_server; return 1; }
  local header=(--no-header)
  [[ -n "${FIRST_ROW:-}" ]] && header=() && FIRST_ROW=""
  if ! timeout 900 "$BENCH" run --scenario "$s" --target "$t" --ws "$WS_URL" --publish "$PUB_URL" \
      --pid "$SERVER_PID" --size "$SIZE" "${args[@]}" "$@" "${header[@]}" \
      --json "$OUT/$t-$s${TAG:+-$TAG}-$r.json"; then
    echo "!! $t $s run $r failed" >&2
  fi
  stop_server
}

# The workspace is shared with the gateway's developers: if their work in
# progress breaks the workspace build, fall back (loudly) to the last bench
# binary rather than not measuring at all.
build_bench() {
  if [[ -z "${SKIP_BENCH_BUILD:-}" ]]; then
    (cd "$ROOT" && cargo build --profile "$PROFILE" -p pushgate-bench) ||
      echo "!! bench build failed; using the existing (possibly stale) binary" >&2
  fi
  [[ -x "$BENCH" ]]
}

# build_pushgate: best effort; returns 1 only if no binary is available.
# A failed build (someone's work in progress) falls back to the binary that
# is already there.
build_pushgate() {
  if [[ -z "${SKIP_PUSHGATE_BUILD:-}" ]]; then
    (cd "$ROOT" && env -u CARGO_TARGET_DIR cargo build --profile "$PROFILE" -p pushgate) ||
      echo "!! pushgate build failed; using the existing binary if any" >&2
  fi
  [[ -x "$PUSHGATE" ]]
}

# build_targets: the load generator and each of $TARGETS (pushgate, or a peer of
# $PEERS_DIR by its build.sh); `available` lists those that built. The Go peers need
# Debian's Go toolchain and gorilla/websocket, node-ws and uws need npm: installed
# first on a fresh machine (root, Debian), as CI would.
build_targets() {
  local need_pkgs=() t
  [[ " $TARGETS " == *" go-"* ]] && ! command -v go >/dev/null && need_pkgs+=(golang)
  [[ " $TARGETS " == *" go-"* ]] && [[ ! -d /usr/share/gocode/src/github.com/gorilla/websocket ]] \
    && need_pkgs+=(golang-github-gorilla-websocket-dev)
  [[ " $TARGETS " == *" node-ws "* || " $TARGETS " == *" uws "* ]] && ! command -v npm >/dev/null \
    && need_pkgs+=(nodejs npm)
  if (( ${#need_pkgs[@]} )); then
    echo "installing ${need_pkgs[*]} for the peers" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >&2
  fi
  build_bench
  available=()
  for t in $TARGETS; do
    if [[ "$t" == pushgate ]]; then
      if build_pushgate; then available+=("$t"); else echo "!! pushgate not built; skipping it" >&2; fi
    elif "$PEERS_DIR/$t/build.sh" >&2; then
      available+=("$t")
    else
      echo "!! peer $t failed to build; skipping it" >&2
    fi
  done
}

# write_history_config: the [[history]] rule of the runs with history on, in
# $OUT/history.toml (every channel: "*").
write_history_config() {
  HISTORY_CONFIG="$OUT/history.toml"
  printf '%s\n' '# bench/lib.sh: history on for every channel (the history benchmarks, issue #11).' \
    '[[history]]' 'channels = "*"' "size = $HIST_SIZE" "ttl_ms = $HIST_TTL_MS" >"$HISTORY_CONFIG"
}

# run_history_pair SCENARIO REP: the same scenario twice in a row, the gateway
# restarted without and with the history rule, so that their ratio is taken
# on the same machine state. The order alternates (off, on for odd REP; on,
# off for even), so that a drift of the machine's load favours neither.
# Targets pushgate-hist-off / -on; files $OUT/pushgate-SCENARIO-hist-{off,on}-REP.json.
run_history_pair() {
  local s="$1" r="$2"
  [[ -n "${HISTORY_CONFIG:-}" ]] || write_history_config
  if (( r % 2 )); then
    PG_CONFIG="" TAG=hist-off run_scenario pushgate "$s" "$r" --target pushgate-hist-off
    PG_CONFIG="$HISTORY_CONFIG" TAG=hist-on run_scenario pushgate "$s" "$r" --target pushgate-hist-on
  else
    PG_CONFIG="$HISTORY_CONFIG" TAG=hist-on run_scenario pushgate "$s" "$r" --target pushgate-hist-on
    PG_CONFIG="" TAG=hist-off run_scenario pushgate "$s" "$r" --target pushgate-hist-off
  fi
}

# run_compression_pair REP: permessage-deflate (issue #15): the burst of
# $Z_MESSAGES publications of $Z_SIZE bytes of JSON records to $Z_CONNS clients,
# three times in a row on fresh gateways: compression off with plain clients;
# compression on with plain clients (nobody negotiates: what the setting alone
# costs the fan-out); compression on with every client offering
# permessage-deflate (it inflates each message). The order rotates with REP so
# that no variant always runs first. Files
# $OUT/pushgate-burst-z-{off,plain,on}-REP.json; report_compression prints the table.
run_compression_pair() {
  local r="$1" zc="$OUT/compression.toml"
  printf '%s\n' '# bench/lib.sh: permessage-deflate on (issue #15).' 'compression = "on"' >"$zc"
  local common=(--conns "$Z_CONNS" --messages "$Z_MESSAGES" --size "$Z_SIZE" --payload json)
  local variants=(off plain on) i v
  for i in 0 1 2; do
    v="${variants[$(((i + r) % 3))]}"
    case "$v" in
      off) PG_CONFIG="" TAG=z-off run_scenario pushgate burst "$r" --target pushgate-z-off "${common[@]}" ;;
      plain) PG_CONFIG="$zc" TAG=z-plain run_scenario pushgate burst "$r" --target pushgate-z-plain "${common[@]}" ;;
      on) PG_CONFIG="$zc" TAG=z-on run_scenario pushgate burst "$r" --target pushgate-z-on "${common[@]}" --deflate ;;
    esac
  done
}

# report_compression FILES...: bytes on the wire per delivery (frames the
# clients received, headers included), deliveries/s and server CPU per
# delivery, compression off vs on.
report_compression() {
  python3 - "$@" <<'PY'
import json, sys
print("| run | conns | delivered | bytes/delivery | deliveries/s | server CPU µs/delivery | client CPU µs/delivery |")
print("|---|---|---|---|---|---|---|")
for f in sys.argv[1:]:
    r = json.load(open(f))
    d = r.get("delivered") or 0
    fmt = lambda v, p=1: "-" if v is None else f"{v:,.{p}f}"
    print(f"| {r['target']} | {r['connected']:,} | {d:,} | {fmt(r.get('wire_bytes', 0) / d if d else None)} "
          f"| {fmt(r.get('deliveries_per_sec'), 0)} | {fmt(r.get('cpu_us_per_delivery'), 3)} "
          f"| {fmt(r.get('client_cpu_us_per_delivery'), 3)} |")
# Medians per variant, and each as a ratio of compression off's.
import statistics
runs = {}
for f in sys.argv[1:]:
    r = json.load(open(f))
    runs.setdefault(r["target"], []).append(r)
def med(rs, k):
    v = [x.get(k) for x in rs if x.get(k) is not None]
    return statistics.median(v) if v else None
def wire(rs):
    return statistics.median([x.get("wire_bytes", 0) / x["delivered"] for x in rs if x.get("delivered")])
base = runs.get("pushgate-z-off")
print()
print("| variant (medians) | runs | lost | bytes/delivery | deliveries/s | server CPU µs/delivery | client CPU µs/delivery |")
print("|---|---|---|---|---|---|---|")
for t in sorted(runs):
    rs = runs[t]
    lost = sum((x.get("expected") or 0) - (x.get("delivered") or 0) for x in rs)
    cells = []
    for k, p in (("deliveries_per_sec", 0), ("cpu_us_per_delivery", 3), ("client_cpu_us_per_delivery", 3)):
        v = med(rs, k)
        b = med(base, k) if base else None
        ratio = f" ({v / b:.2f}×)" if v is not None and b else ""
        cells.append("-" if v is None else f"{v:,.{p}f}{ratio}")
    w = wire(rs); bw = wire(base) if base else None
    print(f"| {t} | {len(rs)} | {lost} | {w:,.1f}" + (f" ({w / bw:.2f}×)" if bw else "") + " | " + " | ".join(cells) + " |")
PY
}

# run_recovery REP: the mass reconnect, history on (a channel without
# history cannot be recovered).
run_recovery() {
  [[ -n "${HISTORY_CONFIG:-}" ]] || write_history_config
  PG_CONFIG="$HISTORY_CONFIG" TAG=hist-on run_scenario pushgate recovery "$1" --target pushgate-hist-on
}

# The Pusher app of run_pusher_pair: sockudo's (../shared/peers/sockudo/app.sh).
PUSHER_ID=bench PUSHER_KEY=bench-key PUSHER_SECRET=bench-secret

# peer_built PEER: whether a peer's binary is there already (sockudo takes ~17
# minutes to build: run its build.sh once by hand, or PEERS_BUILD=1).
peer_built() {
  local d="$PEERS_DIR/$1"
  [[ "${PEERS_BUILD:-}" == 1 ]] && "$d/build.sh" >&2
  [[ -x "$d/bin/bin/$1" || -x "${TMPDIR:-/tmp}/pushgate-peers/$1/bin/bin/$1" ]]
}

# run_pusher_pair SCENARIO REP: a broadcast scenario (burst, idle) over the
# Pusher protocol (issue #18): pushgate with one `[[pusher_apps]]`, then sockudo
# when it is built, in an order that alternates with REP. The same publisher for
# both: 16 connections, one request at a time (sockudo closes the connection
# after each API call, so nothing can be pipelined). Targets pushgate-pusher and
# sockudo; files $OUT/{pushgate-SCENARIO-pusher,sockudo-SCENARIO}-REP.json.
run_pusher_pair() {
  local s="$1" r="$2" pc="$OUT/pusher.toml" order=(pushgate)
  printf '%s\n' '# bench/lib.sh: one Pusher app (issue #18).' '[[pusher_apps]]' \
    "id = \"$PUSHER_ID\"" "key = \"$PUSHER_KEY\"" "secret = \"$PUSHER_SECRET\"" >"$pc"
  if peer_built sockudo; then
    if (( r % 2 )); then order=(pushgate sockudo); else order=(sockudo pushgate); fi
  else
    echo "note: sockudo is not built ($PEERS_DIR/sockudo/build.sh, ~17 min): pushgate alone" >&2
  fi
  local args=(--pusher "$PUSHER_ID:$PUSHER_KEY:$PUSHER_SECRET" --publishers 16 --pipeline 1) t
  for t in "${order[@]}"; do
    if [[ "$t" == pushgate ]]; then
      PG_CONFIG="$pc" PUSHER=1 TAG=pusher run_scenario pushgate "$s" "$r" --target pushgate-pusher "${args[@]}"
    else
      SOCKUDO_LOG=warn TAG="" run_scenario sockudo "$s" "$r" "${args[@]}"
    fi
  done
}

# run_sse_pair SCENARIO REP: a broadcast scenario (burst, idle) with WebSocket
# clients, then with SSE clients of the same gateway (issue #15), so that the two
# transports are compared on the same machine state; the order alternates as in
# run_history_pair. Targets pushgate-ws / pushgate-sse; files
# $OUT/pushgate-SCENARIO-{ws,sse}-REP.json.
run_sse_pair() {
  local s="$1" r="$2"
  if (( r % 2 )); then
    SSE="" TAG=ws run_scenario pushgate "$s" "$r" --target pushgate-ws
    SSE=1 TAG=sse run_scenario pushgate "$s" "$r" --target pushgate-sse
  else
    SSE=1 TAG=sse run_scenario pushgate "$s" "$r" --target pushgate-sse
    SSE="" TAG=ws run_scenario pushgate "$s" "$r" --target pushgate-ws
  fi
}
