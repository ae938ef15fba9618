#!/usr/bin/env bash
# What the JS client's tests need on a fresh machine, beyond node (20+) and cargo:
#   - Debian's chromium (the browser tests drive it with playwright-core; no browser is
#     ever downloaded), haproxy and redis-server 7+ (the chaos test), via apt-get when
#     missing (as root; otherwise it says what to install);
#   - the npm packages of clients/js (npm ci: typescript, esbuild, ws, playwright-core).
# Usage: bash clients/js/test/deps.sh            everything
#        bash clients/js/test/deps.sh --system   only the apt packages (npm test runs this)
set -euo pipefail
JS="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="$(cd "$JS/../.." && pwd)"
# shellcheck source=../../../deploy/lib.sh
source "$ROOT/deploy/lib.sh"
export PATH="$PATH:/usr/sbin:/sbin"

node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "$node_major" -lt 20 ]]; then
  echo "node 20 or later is needed (found $(node --version))" >&2
  exit 1
fi
ensure_apt chromium chromium haproxy haproxy redis-server redis-server
# The chaos test's nodes share history through Redis with sharded pub/sub (Redis 7).
redis_major="$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')"
if [[ -z "$redis_major" || "$redis_major" -lt 7 ]]; then
  echo "redis-server 7 or later is needed (sharded pub/sub); found: $(redis-server --version)" >&2
  exit 1
fi
if [[ "${1:-}" != "--system" ]]; then
  # One more try: esbuild's install script runs the binary it has just written, which
  # fails now and then with ETXTBSY on a loaded machine (seen here once in a few runs).
  (cd "$JS" && { npm ci --no-audit --no-fund --loglevel=error ||
    { echo "npm ci failed; once more" >&2 && npm ci --no-audit --no-fund --loglevel=error; }; })
fi
