#!/usr/bin/env bash
# What `cargo test` needs beyond Rust: redis-server (Debian's Redis 7) for the cluster
# tests (crates/pushgate/tests/cluster.rs start their own on free ports). Installed
# with apt-get when missing, never started as a service. Run by `make test`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy/lib.sh
source "$ROOT/deploy/lib.sh"
export PATH="$PATH:/usr/sbin:/sbin"
ensure_apt redis-server redis-server
version="$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')"
if [[ -z "$version" || "$version" -lt 7 ]]; then
  echo "redis-server 7 or later is needed (sharded pub/sub); found: $(redis-server --version)" >&2
  exit 1
fi
