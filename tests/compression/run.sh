#!/usr/bin/env bash
# permessage-deflate with an independent client: Python `websockets` (PyPI, pinned)
# against the real release binary, on free ports. The checks are in
# websockets_deflate.py; Node's `ws` and Chromium are in clients/js/test (make test-js).
# Prints one line per check and "N passed, M failed".
# Run: make compression   (or bash tests/compression/run.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

WEBSOCKETS_VERSION=15.0.1
fail_setup() { echo "FAIL $1"; echo "0 passed, 1 failed"; exit 1; }

PY="$(command -v python3 || true)"
[[ -n "$PY" ]] || fail_setup "python3 is needed"
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('websockets') != '$WEBSOCKETS_VERSION')" 2>/dev/null; then
  echo "installing websockets==$WEBSOCKETS_VERSION (pip)..." >&2
  "$PY" -m pip install -q "websockets==$WEBSOCKETS_VERSION" >/tmp/pushgate-pip-ws.log 2>&1 ||
    "$PY" -m pip install -q --break-system-packages "websockets==$WEBSOCKETS_VERSION" >>/tmp/pushgate-pip-ws.log 2>&1 ||
    { tail -20 /tmp/pushgate-pip-ws.log; fail_setup "pip install websockets==$WEBSOCKETS_VERSION"; }
fi

# The same release binary as the other end-to-end tests (a no-op when up to date).
LOG="$(mktemp /tmp/pushgate-compression-build.XXXXXX)"
trap 'rm -f "$LOG"' EXIT
if ! cargo build --release -p pushgate >"$LOG" 2>&1; then
  tail -n 30 "$LOG"
  fail_setup "cargo build --release -p pushgate"
fi
"$PY" tests/compression/websockets_deflate.py --bin target/release/pushgate
