#!/usr/bin/env bash
# The Pusher protocol tested with clients we did not write (docs/pusher.md, "Tests"):
# pusher-js in Node and in headless Chromium, Laravel Echo's Pusher connector in
# Chromium, signatures from the `pusher` server SDK's helpers (tests/pusher/js).
#
# Installs what is missing (Debian's chromium with apt-get, as root; the npm packages
# with `npm ci`), builds the release binary (or uses $PUSHGATE_BIN), and runs the
# tests. Every gateway a test starts listens on free loopback ports and is stopped by
# its PID by that test; this script starts nothing else.
# Usage: bash tests/pusher/run.sh       (make pusher)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# shellcheck source=../../deploy/lib.sh
source "$ROOT/deploy/lib.sh"
export PATH="$PATH:/usr/sbin:/sbin"

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "$node_major" -lt 20 ]]; then
  echo "node 20 or later is needed (found $(node --version))" >&2
  exit 1
fi
ensure_apt chromium chromium

if [[ -z "${PUSHGATE_BIN:-}" ]]; then
  echo "building the gateway: cargo build --release -p pushgate" >&2
  (cd "$ROOT" && cargo build --release -p pushgate)
  export PUSHGATE_BIN="$ROOT/target/release/pushgate"
fi
[[ -x "$PUSHGATE_BIN" ]] || { echo "PUSHGATE_BIN=$PUSHGATE_BIN is not an executable" >&2; exit 1; }

cd "$HERE/js"
npm ci --no-audit --no-fund --loglevel=error
npm test
