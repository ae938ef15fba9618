#!/usr/bin/env bash
# make demo: a gateway and the live-feed page, both on 127.0.0.1.
#   gateway: ws://127.0.0.1:${DEMO_WS_PORT:-8080}/ws, HTTP API 127.0.0.1:${DEMO_HTTP_PORT:-8081}
#   page:    http://127.0.0.1:${DEMO_PAGE_PORT:-8090}/
# The channel "demo" keeps a history (when this build has channel history), so the page
# shows offsets and a reconnecting page misses nothing. Ctrl-C stops both.
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
cleanup() {
  [[ -n "$GW_PID" ]] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

args=(serve --ws-addr "127.0.0.1:$WS_PORT" --http-addr "127.0.0.1:$HTTP_PORT" --grpc-addr "127.0.0.1:$GRPC_PORT")
printf '[[history]]\nchannels = "demo"\nsize = 100\nttl_ms = 3600000\n' >"$TMP/demo.toml"
if "$BIN" config check "$TMP/demo.toml" >/dev/null 2>&1; then
  args+=(--config "$TMP/demo.toml")
else
  echo "(this build has no channel history: the demo runs without offsets)"
fi
PUSHGATE_LOG="${PUSHGATE_LOG:-warn}" "$BIN" "${args[@]}" &
GW_PID=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$HTTP_PORT/livez" >/dev/null 2>&1 && break
  kill -0 "$GW_PID" 2>/dev/null || { echo "the gateway did not start" >&2; exit 1; }
  sleep 0.1
done
echo "gateway: ws://127.0.0.1:$WS_PORT/ws (publish: curl -X POST 'http://127.0.0.1:$HTTP_PORT/publish?channel=demo' -d hello)"
node examples/live-feed/server.mjs --port "$PAGE_PORT" --gateway-http "http://127.0.0.1:$HTTP_PORT" \
  --ws-url "ws://127.0.0.1:$WS_PORT/ws" --channel demo
