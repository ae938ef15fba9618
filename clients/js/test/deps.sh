#!/usr/bin/env bash
# What the JS client's tests need on a fresh machine, beyond node (20+) and cargo:
#   - Debian's chromium (the browser tests drive it with playwright-core; no browser is
#     ever downloaded), haproxy and redis-server (the chaos test), via apt-get when missing;
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
if [[ "${1:-}" != "--system" ]]; then
  (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)
fi
