#!/usr/bin/env bash
# What `cargo test` needs beyond Rust: redis-server (Debian's Redis 7, built with TLS)
# and redis-cli for the cluster tests (crates/pushgate/tests/cluster.rs,
# redis_cluster.rs, redis_tls_sentinel.rs start their own on free ports; redis-cli
# makes the Redis Cluster), openssl for the TLS test's certificates. Installed with
# apt-get when missing, never started as a service. Run by `make test`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy/lib.sh
source "$ROOT/deploy/lib.sh"
export PATH="$PATH:/usr/sbin:/sbin"
ensure_apt redis-server redis-server redis-cli redis-tools openssl openssl
version="$(redis-server --version | sed -n 's/.* v=\([0-9]*\)\..*/\1/p')"
if [[ -z "$version" || "$version" -lt 7 ]]; then
  echo "redis-server 7 or later is needed (sharded pub/sub); found: $(redis-server --version)" >&2
  exit 1
fi
# The TLS test needs a redis-server built with TLS (Debian's links libssl).
if ! ldd "$(command -v redis-server)" 2>/dev/null | grep -q libssl; then
  echo "warning: redis-server seems built without TLS; redis_tls_sentinel.rs's TLS test will fail" >&2
fi
