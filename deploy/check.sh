#!/usr/bin/env bash
# Checks the deploy artifacts with the real tools where they exist here:
#   promtool check config / check rules / test rules   (Debian package prometheus)
#   haproxy -c -f   on deploy/haproxy/haproxy.cfg and on its rendered e2e variant
#   nginx -t        on deploy/nginx/pushgate.conf inside a generated minimal nginx.conf
#   deploy/check_files.py: every YAML/JSON file parses, plus structural checks
# Installs what is missing (apt-get; daemons are not started). Exits 1 on any failure.
# Run: make deploy-check   (or bash deploy/check.sh)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=deploy/lib.sh
source deploy/lib.sh

ensure_apt promtool prometheus haproxy haproxy nginx nginx-light || exit 1
# /usr/sbin is not on every PATH (nginx, haproxy live there).
export PATH="$PATH:/usr/sbin:/sbin"
PY="$(find_python yaml)" || exit 1

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
pass=0 fail=0

# run NAME CMD...: runs CMD quietly; prints ok/FAIL and the output on failure.
run() {
  local name="$1"; shift
  if "$@" >"$TMP/out" 2>&1; then
    pass=$((pass + 1)); echo "ok   $name"
  else
    fail=$((fail + 1)); echo "FAIL $name"; sed 's/^/     /' "$TMP/out"
  fi
}

run "promtool check config deploy/prometheus/prometheus.yml" \
  promtool check config deploy/prometheus/prometheus.yml
run "promtool check rules deploy/prometheus/alerts.yml" \
  promtool check rules deploy/prometheus/alerts.yml
run "promtool test rules deploy/prometheus/alerts_test.yml" \
  promtool test rules deploy/prometheus/alerts_test.yml

# The compose file's servers are container names, resolved by Docker's DNS at run
# time (init-addr last,libc,none): here they do not resolve, which haproxy reports as
# a warning. Any other warning fails the check.
haproxy_compose() {
  haproxy -c -f deploy/haproxy/haproxy.cfg >"$TMP/haproxy.out" 2>&1 || { cat "$TMP/haproxy.out"; return 1; }
  if grep '\[WARNING\]' "$TMP/haproxy.out" | grep -v "could not resolve address"; then return 1; fi
}
run "haproxy -c -f deploy/haproxy/haproxy.cfg (compose; only unresolved-name warnings allowed)" haproxy_compose

# The loopback variant the e2e test runs: no warning at all.
haproxy_e2e() {
  render_haproxy_cfg deploy/haproxy/haproxy.cfg 18080 18404 4000 18001 18002 18003 18004 >"$TMP/haproxy-e2e.cfg"
  haproxy -c -f "$TMP/haproxy-e2e.cfg" >"$TMP/haproxy.out" 2>&1 || { cat "$TMP/haproxy.out"; return 1; }
  if grep -E '\[(WARNING|ALERT)\]' "$TMP/haproxy.out"; then return 1; fi
}
run "haproxy -c -f <rendered e2e variant of haproxy.cfg> (no warnings)" haproxy_e2e

# nginx -t needs a complete configuration: a minimal nginx.conf around the example,
# with pid, logs and temp paths in a temp dir (no root paths needed).
nginx_check() {
  mkdir -p "$TMP/nginx/logs"
  cat >"$TMP/nginx/nginx.conf" <<CONF
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log;
worker_processes 1;
events { worker_connections 1024; }
http {
    access_log $TMP/nginx/logs/access.log;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    include $ROOT/deploy/nginx/pushgate.conf;
}
CONF
  nginx -t -q -p "$TMP/nginx" -e "$TMP/nginx/logs/error.log" -c "$TMP/nginx/nginx.conf"
}
run "nginx -t on deploy/nginx/pushgate.conf (in a generated nginx.conf)" nginx_check

run "bash -n deploy/healthcheck.sh deploy/lib.sh deploy/check.sh tests/e2e/haproxy_drain.sh" \
  bash -c 'for f in deploy/healthcheck.sh deploy/lib.sh deploy/check.sh tests/e2e/haproxy_drain.sh; do bash -n "$f" || exit 1; done'

# JSON/YAML parsing and structure: one line per check of its own.
if "$PY" deploy/check_files.py >"$TMP/files.out" 2>&1; then
  grep -c '^ok' "$TMP/files.out" >"$TMP/n"; pass=$((pass + $(cat "$TMP/n")))
  grep -v '^structure:' "$TMP/files.out"
else
  grep -v '^structure:' "$TMP/files.out"
  pass=$((pass + $(grep -c '^ok' "$TMP/files.out")))
  fail=$((fail + $(grep -c '^FAIL' "$TMP/files.out" || true)))
  [[ $(grep -c '^FAIL' "$TMP/files.out") -gt 0 ]] || fail=$((fail + 1))
fi

echo "deploy-check: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
