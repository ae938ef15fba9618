#!/usr/bin/env bash
# make demo: a gateway and the live-feed page, both on 127.0.0.1.
#   gateway: ws://127.0.0.1:${DEMO_WS_PORT:-8080}/ws, HTTP API 127.0.0.1:${DEMO_HTTP_PORT:-8081}
#   page:    http://127.0.0.1:${DEMO_PAGE_PORT:-8090}/
# The channel "demo" keeps a history, so the page shows offsets and a reconnecting page
# misses nothing. Ctrl-C stops both.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
WS_PORT="${DEMO_WS_PORT:-8080}"
HTTP_PORT="${DEMO_HTTP_PORT:-8081}"
GRPC_PORT="${DEMO_GRPC_PORT:-50051}"
PAGE_PORT="${DEMO_PAGE_PORT:-8090}"
command -v node >/dev/null || { echo "make demo needs node (20+)" >&2; exit 1; }
cargo build --release -p pushgate
BIN=target/release/pushgate

TMP="$(mktemp -d /tmp/pushgate-demo.XXXXXX)"
GW_PID=""
PAGE_PID=""
cleanup() {
  # (wait reports the signal as a failure: ignored, so that set -e does not end the loop)
  for pid in $PAGE_PID $GW_PID; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

printf '[[history]]\nchannels = "demo"\nsize = 100\nttl_ms = 3600000\n' >"$TMP/demo.toml"
args=(serve --config "$TMP/demo.toml" --ws-addr "127.0.0.1:$WS_PORT" --http-addr "127.0.0.1:$HTTP_PORT" --grpc-addr "127.0.0.1:$GRPC_PORT")
PUSHGATE_LOG="${PUSHGATE_LOG:-warn}" "$BIN" "${args[@]}" &
GW_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$HTTP_PORT/livez" >/dev/null 2>&1 && break
  kill -0 "$GW_PID" 2>/dev/null || { echo "the gateway did not start" >&2; exit 1; }
  sleep 0.1
done
echo "gateway: ws://127.0.0.1:$WS_PORT/ws (publish: curl -X POST 'http://127.0.0.1:$HTTP_PORT/publish?channel=demo' -d hello)"
# In the background and waited for, so that a signal to this script stops both at once.
node examples/live-feed/server.mjs --port "$PAGE_PORT" --gateway-http "http://127.0.0.1:$HTTP_PORT" \
  --ws-url "ws://127.0.0.1:$WS_PORT/ws" --channel demo &
PAGE_PID=$!
wait "$PAGE_PID"
