#!/usr/bin/env bash
# Cluster (Redis) benchmark, one run on one machine, REPEAT times:
#
#   latency     the paced latency scenario (CL_LAT_CONNS conns, CL_LAT_RATE/s,
#               CL_LAT_DURATION s) against (a) one node with the default
#               in-process broker and (b) the same clients spread over NODES
#               nodes joined through Redis, publishing into node 1.
#   throughput  CL_MESSAGES broadcasts published as fast as node 1 takes them
#               on one gRPC PublishStream (CL_PUBLISH=http: pipelined POST
#               /publish?all=true instead) to CL_CONNS clients spread over the
#               nodes: publications/s through Redis, deliveries/s, loss and
#               duplicates counted per (connection, publication) on every client.
#               A burst queues up to CL_MESSAGES frames per client, so the nodes
#               get queue_max_frames=CL_QUEUE_FRAMES (default CL_MESSAGES) and
#               queue_max_bytes to match: this phase measures the broker, not
#               the slow-consumer policy (which closes a client with more than
#               1024 frames queued by default).
#   defaults    the same burst with the nodes' default queues: how many clients
#               the slow-consumer policy closes when the 2 cores cannot keep up.
#   wide        CL_WIDE_CONNS connections over the nodes (more than one process
#               can hold: 20,000 open files each), CL_WIDE_MESSAGES broadcasts
#               that must reach every one of them; connections and RSS per node.
#   history     channel publications through Redis with history off, then on
#               (a [[history]] rule for every channel: one Lua script per
#               publication instead of SPUBLISH, delivered from the bus on every
#               node): CL_HIST_MESSAGES publications, pipelined over HTTP into
#               node 1, to CL_HIST_CHANNELS channels, CL_HIST_CONNS clients
#               spread over the nodes, each following one channel.
#   presence    presence join/leave throughput: CL_PRES_CONNS clients spread over
#               the nodes (a [[presence]] rule for pbench:*) subscribe to one of
#               CL_PRES_CHANNELS channels and unsubscribe, CL_PRES_CYCLES times;
#               timed until GET /presence on every node lists all of them / none
#               (pushgate-bench presence; not part of the default PHASES).
#   rcluster    the same channel burst (history off) through one Redis, then
#               through a Redis Cluster of RC_MASTERS masters (no replicas),
#               NODES nodes each with redis_mode=cluster: publications/s and
#               deliveries/s of both and their ratio (bench/rcluster_ratio.sh).
#               CL_RC_CONNS clients, CL_RC_CHANNELS channels (they spread over
#               the masters by hash slot), CL_RC_MESSAGES publications.
#
# Every phase gets a fresh redis-server (own free port, --save "" --appendonly
# no; never the system one) and fresh nodes (SHARDS shards each), stopped
# afterwards (trap EXIT). Results: $OUT/*.json, $OUT/summary.md.
#
#   bash bench/cluster.sh                 REPEAT=1 bash bench/cluster.sh
#   PHASES="throughput" CL_MESSAGES=50000 bash bench/cluster.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

NODES=${NODES:-3}
SHARDS=${SHARDS:-1}
PHASES="${PHASES:-latency throughput defaults wide history rcluster}"
CL_LAT_CONNS=${CL_LAT_CONNS:-1000}
CL_LAT_RATE=${CL_LAT_RATE:-100}
CL_LAT_DURATION=${CL_LAT_DURATION:-10}
CL_CONNS=${CL_CONNS:-300}
CL_MESSAGES=${CL_MESSAGES:-20000}
CL_WIDE_CONNS=${CL_WIDE_CONNS:-36000}
CL_WIDE_MESSAGES=${CL_WIDE_MESSAGES:-3}
CL_PUBLISH=${CL_PUBLISH:-grpc}
CL_QUEUE_FRAMES=${CL_QUEUE_FRAMES:-$CL_MESSAGES}
CL_HIST_CONNS=${CL_HIST_CONNS:-300}
CL_HIST_CHANNELS=${CL_HIST_CHANNELS:-100}
CL_HIST_MESSAGES=${CL_HIST_MESSAGES:-50000}
CL_PRES_CONNS=${CL_PRES_CONNS:-2000}
CL_PRES_CHANNELS=${CL_PRES_CHANNELS:-20}
CL_PRES_CYCLES=${CL_PRES_CYCLES:-3}
CL_RC_CONNS=${CL_RC_CONNS:-300}
CL_RC_CHANNELS=${CL_RC_CHANNELS:-100}
CL_RC_MESSAGES=${CL_RC_MESSAGES:-50000}
RC_MASTERS=${RC_MASTERS:-3}
REDIS_SERVER="${REDIS_SERVER:-redis-server}"
command -v "$REDIS_SERVER" >/dev/null ||
  { echo "redis-server not found: bash tests/deps.sh installs it" >&2; exit 1; }

NODE_PIDS=()
REDIS_PID=""
RC_PIDS=()
stop_all() {
  if ((${#NODE_PIDS[@]})); then kill_wait "${NODE_PIDS[@]}"; fi
  NODE_PIDS=()
  [[ -n "$REDIS_PID" ]] && kill_wait "$REDIS_PID"
  REDIS_PID=""
  for p in "${RC_PIDS[@]}"; do kill_wait "$p"; done
  RC_PIDS=()
}
trap 'stop_all; stop_server' EXIT

# wait_ready PID HTTP_PORT: until GET /readyz answers 200 (max 30 s).
wait_ready() {
  for _ in $(seq 1 300); do
    [[ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$2/readyz" || true)" == 200 ]] && return 0
    kill -0 "$1" 2>/dev/null || { echo "node exited during startup" >&2; return 1; }
    sleep 0.1
  done
  echo "node on http port $2 not ready within 30 s" >&2
  return 1
}

start_redis() {
  REDIS_PORT="$(free_ports 1)"
  "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    >"$OUT/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT"; printf 'PING\r\n' >&3; read -r -t 2 l <&3; [[ "$l" == +PONG* ]]) 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "redis-server did not answer PING" >&2
  return 1
}

# start_redis_cluster: RC_MASTERS redis-server --cluster-enabled yes (own dirs,
# free client and bus ports), joined by redis-cli --cluster create with no
# replicas; sets RC_URL (every master as a seed) and RC_PIDS.
start_redis_cluster() {
  local k port bus dir addrs=() ports=() drawn
  # Every master's client and bus ports drawn together, so that none repeats.
  read -r -a drawn < <(free_ports $((2 * RC_MASTERS)))
  for k in $(seq 1 "$RC_MASTERS"); do
    port="${drawn[2*k-2]}"; bus="${drawn[2*k-1]}"; dir="$OUT/rc-$k"
    rm -rf "$dir"; mkdir -p "$dir"
    "$REDIS_SERVER" --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --save "" \
      --appendonly no --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" \
      --dir "$dir" >"$dir/redis.log" 2>&1 &
    RC_PIDS+=($!)
    addrs+=("127.0.0.1:$port"); ports+=("$port")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do
      redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
      sleep 0.1
    done
  done
  redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$OUT/rc-create.log" 2>&1 ||
    { echo "redis-cli --cluster create failed: $OUT/rc-create.log" >&2; return 1; }
  for port in "${ports[@]}"; do
    for _ in $(seq 1 300); do
      redis-cli -p "$port" cluster info 2>/dev/null | grep -q cluster_state:ok && break
      sleep 0.1
    done
  done
  RC_URL="redis://$(join "${addrs[@]}")"
}

# redis_cpu PID...: user+system CPU seconds of the Redis processes so far.
redis_cpu() {
  local p t=0 hz
  hz="$(getconf CLK_TCK)"
  for p in "$@"; do
    t=$(( t + $(awk '{print $14 + $15}' "/proc/$p/stat") ))
  done
  awk -v t="$t" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'
}

# start_node ID [--set ...]: appends to NODE_PIDS, WS_URLS, NODE_HTTP, GRPC_URLS.
start_node() {
  local id="$1"; shift
  local ws http grpc
  read -r ws http grpc < <(free_ports 3)
  (ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$PUSHGATE" serve --ws-addr "127.0.0.1:$ws" \
    --http-addr "127.0.0.1:$http" --grpc-addr "127.0.0.1:$grpc" --shards "$SHARDS" \
    --set "node_id=$id" "$@") >"$OUT/$id.log" 2>&1 &
  local pid=$!
  NODE_PIDS+=("$pid")
  WS_URLS+=("ws://127.0.0.1:$ws/ws")
  NODE_HTTP+=("http://127.0.0.1:$http")
  GRPC_URLS+=("http://127.0.0.1:$grpc")
  wait_ready "$pid" "$http"
}

# start_cluster N [--set ...]: redis + N nodes joined through it;
# start_single: one node, in-process broker. Both set PUB_URL to node 1's
# broadcast publish URL.
start_cluster() {
  local n="$1"; shift
  NODE_PIDS=(); WS_URLS=(); NODE_HTTP=(); GRPC_URLS=()
  start_redis || return 1
  local k
  for k in $(seq 1 "$n"); do
    start_node "n$k" --set broker=redis --set "redis_url=redis://127.0.0.1:$REDIS_PORT" "$@" || return 1
  done
  PUB_URL="${NODE_HTTP[0]}/publish?all=true"
}
start_single() {
  NODE_PIDS=(); WS_URLS=(); NODE_HTTP=(); GRPC_URLS=()
  start_node n1 || return 1
  PUB_URL="${NODE_HTTP[0]}/publish?all=true"
}

join() { local IFS=,; echo "$*"; }

# bench TARGET SCENARIO TAG REP [args]: one run against the nodes started.
bench() {
  local t="$1" s="$2" tag="$3" r="$4"; shift 4
  local header=(--no-header) extra=()
  [[ -n "${FIRST_ROW:-}" ]] && header=() && FIRST_ROW=""
  [[ -n "$REDIS_PID" ]] && extra=(--redis-pid "$REDIS_PID")
  [[ "$s" == cluster && "$CL_PUBLISH" == grpc ]] && extra+=(--grpc "${GRPC_URLS[0]}")
  echo "== $t $s $tag run $r: ${#NODE_PIDS[@]} node(s), $(date +%T)" >&2
  if ! timeout 300 "$BENCH" run --scenario "$s" --target "$t" --ws "$(join "${WS_URLS[@]}")" \
      --publish "$PUB_URL" --pid "$(join "${NODE_PIDS[@]}")" --node-http "$(join "${NODE_HTTP[@]}")" \
      "${extra[@]}" --size "$SIZE" "$@" "${header[@]}" --json "$OUT/$t-$s-$tag-$r.json"; then
    echo "!! $t $s $tag run $r failed" >&2
  fi
}

mkdir -p "$OUT"
build_bench
build_pushgate || { echo "pushgate binary not available at $PUSHGATE" >&2; exit 1; }
CLUSTER="pushgate-redis$NODES"
echo "results: $OUT (commit $(git -C "$ROOT" rev-parse --short HEAD), $NODES nodes × $SHARDS shard(s))"
FIRST_ROW=1
for r in $(seq 1 "$REPEAT"); do
  for phase in $PHASES; do
    case "$phase" in
      latency)
        lat=(--conns "$CL_LAT_CONNS" --rate "$CL_LAT_RATE" --duration "$CL_LAT_DURATION")
        start_single && bench pushgate-1node latency memory "$r" "${lat[@]}"
        stop_all
        start_cluster "$NODES" && bench "$CLUSTER" latency redis "$r" "${lat[@]}"
        stop_all ;;
      throughput)
        start_cluster "$NODES" --set "queue_max_frames=$CL_QUEUE_FRAMES" \
            --set "queue_max_bytes=$(( CL_QUEUE_FRAMES * 256 > 1048576 ? CL_QUEUE_FRAMES * 256 : 1048576 ))" &&
          bench "$CLUSTER" cluster burst "$r" --conns "$CL_CONNS" --messages "$CL_MESSAGES" \
            --settle 0.5 --deadline 120
        stop_all ;;
      defaults)
        start_cluster "$NODES" &&
          bench "$CLUSTER-default-queues" cluster burst "$r" --conns "$CL_CONNS" \
            --messages "$CL_MESSAGES" --settle 0.5 --deadline 120
        stop_all ;;
      wide)
        start_cluster "$NODES" &&
          bench "$CLUSTER" cluster wide "$r" --conns "$CL_WIDE_CONNS" \
            --messages "$CL_WIDE_MESSAGES" --settle 1 --deadline 60
        stop_all ;;
      history)
        # Channels c0..c<N>: the rule keeps 1000 publications of each for 10 min.
        printf '[[history]]\nchannels = "c*"\nsize = 1000\nttl_ms = 600000\n' >"$OUT/history.toml"
        for mode in off on; do
          rule=(); [[ "$mode" == on ]] && rule=(--config "$OUT/history.toml")
          start_cluster "$NODES" "${rule[@]}" &&
            bench "$CLUSTER-history-$mode" channels burst "$r" --conns "$CL_HIST_CONNS" \
              --messages "$CL_HIST_MESSAGES" --channels "$CL_HIST_CHANNELS" \
              --channels-per-conn 1 --deadline 120
          stop_all
        done ;;
      presence)
        printf '[[presence]]\nchannels = "pbench:*"\n' >"$OUT/presence.toml"
        start_cluster "$NODES" --config "$OUT/presence.toml" --set max_inbound_messages_per_sec=0 &&
          { echo "== $CLUSTER presence run $r: ${#NODE_PIDS[@]} node(s), $(date +%T)" >&2
            timeout 300 "$BENCH" presence --ws "$(join "${WS_URLS[@]}")" \
              --node-http "$(join "${NODE_HTTP[@]}")" --conns "$CL_PRES_CONNS" \
              --channels "$CL_PRES_CHANNELS" --cycles "$CL_PRES_CYCLES" \
              --json "$OUT/presence-$r.txt" || echo "!! presence run $r failed" >&2; }
        stop_all ;;
      rcluster)
        for mode in 1redis "${RC_MASTERS}masters"; do
          NODE_PIDS=(); WS_URLS=(); NODE_HTTP=(); GRPC_URLS=()
          if [[ "$mode" == 1redis ]]; then
            start_cluster "$NODES" || { stop_all; continue; }
            pids=("$REDIS_PID")
          else
            start_redis_cluster || { stop_all; continue; }
            ok=1
            for k in $(seq 1 "$NODES"); do
              start_node "n$k" --set broker=redis --set redis_mode=cluster --set "redis_url=$RC_URL" || { ok=0; break; }
            done
            (( ok )) || { stop_all; continue; }
            PUB_URL="${NODE_HTTP[0]}/publish?all=true"
            pids=("${RC_PIDS[@]}")
          fi
          cpu0="$(redis_cpu "${pids[@]}")"
          bench "$CLUSTER-rc-$mode" channels burst "$r" --conns "$CL_RC_CONNS" \
            --messages "$CL_RC_MESSAGES" --channels "$CL_RC_CHANNELS" \
            --channels-per-conn 1 --deadline 120
          cpu1="$(redis_cpu "${pids[@]}")"
          echo "$CLUSTER-rc-$mode run $r: redis CPU $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{printf "%.2f", b-a}') s over ${#pids[@]} process(es)" | tee -a "$OUT/rcluster-cpu.txt"
          stop_all
        done ;;
      *) echo "unknown phase $phase (latency throughput defaults wide history presence rcluster)" >&2; exit 1 ;;
    esac
  done
done
shopt -s nullglob
presence_files=("$OUT"/presence-*.txt)
if (( ${#presence_files[@]} )); then
  echo "presence (JSON, one per run): ${presence_files[*]}"
  grep -h '_per_s' "${presence_files[@]}"
fi
files=("$OUT"/*.json)
(( ${#files[@]} )) || { (( ${#presence_files[@]} )) && exit 0; echo "no results" >&2; exit 1; }
echo
"$BENCH" report-cluster "${files[@]}" | tee "$OUT/summary.md"
# One Redis vs the Redis Cluster, same run: the ratio of the medians.
if [[ " $PHASES " == *" rcluster "* ]]; then
  bash "$(dirname "$0")/rcluster_ratio.sh" "$OUT" "$CLUSTER" "$RC_MASTERS" | tee -a "$OUT/summary.md"
fi
