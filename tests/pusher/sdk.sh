#!/usr/bin/env bash
# The Pusher HTTP API and webhooks with the Python server SDK (`pusher` on PyPI,
# pinned in python/requirements.txt, installed into tests/pusher/.venv) against the
# real release binary on free ports. The checks are in python/test_sdk.py; this
# script builds, starts one node with a [[pusher_apps]] app whose webhook_url points at
# the test's own receiver, runs the checks, and stops the node by its PID.
# Prints one line per check and "N passed, M failed".
# Run: make pusher-sdk   (or bash tests/pusher/sdk.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
HERE=tests/pusher
fail_setup() { echo "FAIL $1"; echo "0 passed, 1 failed"; exit 1; }

PY="$(command -v python3 || true)"
[[ -n "$PY" ]] || fail_setup "python3 is needed"
VENV="$HERE/.venv"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PY" -m venv "$VENV" || fail_setup "python3 -m venv (Debian: apt-get install python3-venv)"
fi
if ! cmp -s "$HERE/python/requirements.txt" "$VENV/installed.txt"; then
  echo "installing the Python server SDK into $VENV (pip)..." >&2
  "$VENV/bin/pip" install -q -r "$HERE/python/requirements.txt" >"$VENV/pip.log" 2>&1 ||
    { tail -20 "$VENV/pip.log"; fail_setup "pip install -r $HERE/python/requirements.txt"; }
  cp "$HERE/python/requirements.txt" "$VENV/installed.txt"
fi

LOG="$(mktemp /tmp/pushgate-pusher-sdk.XXXXXX)"
CONFIG="$(mktemp /tmp/pushgate-pusher-sdk-config.XXXXXX)"
PID=""
cleanup() {
  if [[ -n "$PID" ]]; then
    kill "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
  fi
  rm -f "$CONFIG"
}
trap cleanup EXIT

# The same release binary as the other end-to-end tests (a no-op when up to date).
if ! cargo build --release -p pushgate >"$LOG" 2>&1; then
  tail -n 30 "$LOG"
  fail_setup "cargo build --release -p pushgate"
fi

# Four free ports: WebSocket, internal HTTP, gRPC, and the test's webhook receiver.
read -r WS HTTP GRPC HOOK < <("$VENV/bin/python" -c '
import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])
for x in s: x.close()')

cat >"$CONFIG" <<TOML
ws_addr = "127.0.0.1:$WS"
http_addr = "127.0.0.1:$HTTP"
grpc_addr = "127.0.0.1:$GRPC"

[[pusher_apps]]
id = "4242"
key = "sdk-key"
secret = "sdk-secret"
client_events = true
webhook_url = "http://127.0.0.1:$HOOK/pusher/webhooks"
TOML

target/release/pushgate serve --config "$CONFIG" >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 1 400); do
  if "$VENV/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$HTTP/livez', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 "$PID" 2>/dev/null || { tail -n 30 "$LOG"; fail_setup "pushgate exited at start"; }
  sleep 0.05
done

set +e
"$VENV/bin/python" "$HERE/python/test_sdk.py" --ws "$WS" --http "$HTTP" --hook "$HOOK" \
  --app-id 4242 --key sdk-key --secret sdk-secret
STATUS=$?
set -e
if [[ $STATUS -ne 0 ]]; then
  echo "pushgate's log: $LOG" >&2
else
  rm -f "$LOG"
fi
exit $STATUS
