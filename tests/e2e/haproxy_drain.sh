#!/usr/bin/env bash
# End-to-end: the real haproxy (Debian package) in front of two pushgate nodes joined
# through Redis (broker=redis, a redis-server of our own on a free port, no
# persistence); WebSocket clients connect through haproxy, receive publications posted
# to either node, and survive the drain of one node by reconnecting to the other. The
# checks are in haproxy_drain.py (python3 standard library only). Prints one line per
# check and "N passed, M failed".
# Run: make e2e   (or bash tests/e2e/haproxy_drain.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/lib.sh
source deploy/lib.sh
export PATH="$PATH:/usr/sbin:/sbin"

ensure_apt haproxy haproxy || fail_setup "install haproxy"
# Redis 7 or later (sharded pub/sub), as tests/deps.sh requires for the cluster tests.
ensure_apt redis-server redis-server || fail_setup "install redis-server"
redis_major="$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')"
[[ -n "$redis_major" && "$redis_major" -ge 7 ]] || fail_setup "redis-server 7 or later (found: $(redis-server --version))"
PY="$(command -v python3 || true)"
[[ -n "$PY" ]] || { ensure_apt python3 python3 || fail_setup "install python3"; PY=/usr/bin/python3; }

# The binary the tests and the Dockerfile use: cargo build --release -p pushgate
# (a no-op when it is up to date, so the test never runs a stale binary).
TMP="$(mktemp -d /tmp/pushgate-e2e.XXXXXX)"
cleanup() {
  local rc=$?
  if [[ -f "$TMP/pids" ]]; then
    # shellcheck disable=SC2046 # one pid per line
    kill_wait $(cat "$TMP/pids")
  fi
  if [[ $rc -ne 0 ]]; then
    for f in "$TMP"/*.log; do
      [[ -f "$f" ]] || continue
      echo "--- last lines of $(basename "$f")"; tail -n 15 "$f"
    done
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! cargo build --release -p pushgate >"$TMP/build.log" 2>&1; then
  tail -n 30 "$TMP/build.log"
  fail_setup "cargo build --release -p pushgate"
fi

# The cluster's Redis: a free loopback port, no persistence (nothing written to disk),
# its pid in $TMP/pids so that cleanup stops it with the nodes and haproxy.
REDIS_PORT="$(free_ports 1)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --dir "$TMP" --logfile "$TMP/redis.log" --daemonize no &
echo $! >>"$TMP/pids"

"$PY" tests/e2e/haproxy_drain.py \
  --bin "$ROOT/target/release/pushgate" \
  --haproxy "$(command -v haproxy)" \
  --cfg-template deploy/haproxy/haproxy.cfg \
  --lib deploy/lib.sh \
  --healthcheck deploy/healthcheck.sh \
  --tmp "$TMP" \
  --redis-port "$REDIS_PORT" \
  --clients "${E2E_CLIENTS:-20}"
