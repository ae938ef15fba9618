# Helpers shared by deploy/check.sh, tests/deps.sh, tests/e2e/haproxy_drain.sh,
# tests/autobahn/run.sh and bench/lib.sh (sourced, not run).

# fail_setup WHAT: a test script could not set itself up: one failed check, exit 1.
fail_setup() { echo "FAIL $1"; echo "0 passed, 1 failed"; exit 1; }

# kill_wait PID...: SIGTERM, up to 5 s for all of them to exit, then SIGKILL; reaps
# those that are children of this shell.
kill_wait() {
  local p alive
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for p in "$@"; do
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
}

# free_ports N: N loopback ports, free when they were bound together a moment ago
# (for programs that cannot bind port 0 and report theirs: redis-server, kosoku).
free_ports() {
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))' "$1"
}

# ensure_apt CMD PACKAGE [CMD PACKAGE ...]: installs PACKAGE when CMD is not on PATH.
# Debian packages of daemons (prometheus, haproxy, nginx) start their service on
# install; a policy-rc.d that exits 101 forbids that, so nothing is left listening on
# 80/9090/... afterwards. An existing policy-rc.d is left as it is.
ensure_apt() {
  local missing=()
  while [[ $# -ge 2 ]]; do
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    shift 2
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $(id -u) -ne 0 ]]; then
    echo "missing packages ${missing[*]} and not root: install them first" >&2
    return 1
  fi
  echo "installing ${missing[*]} (apt-get)..." >&2
  local policy=/usr/sbin/policy-rc.d created=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
  fi
  local rc=0
  {
    # Refresh the index only when it is missing or the install fails with it.
    if [[ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -e lock -e partial)" ]]; then
      apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; }
  } >/tmp/pushgate-apt.log 2>&1 || rc=$?
  [[ $created == 1 ]] && rm -f "$policy"
  if [[ $rc -ne 0 ]]; then
    echo "apt-get install ${missing[*]} failed; see /tmp/pushgate-apt.log" >&2
    tail -20 /tmp/pushgate-apt.log >&2
    return 1
  fi
  # Belt and braces: if a daemon got started anyway (no policy-rc.d honoured), stop it.
  local svc
  for svc in prometheus haproxy nginx redis-server; do
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
  done
  return 0
}

# find_python MODULE: prints a python3 interpreter that can import MODULE, installing
# the Debian package python3-MODULE for /usr/bin/python3 when none can.
find_python() {
  local mod="$1" py
  for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c "import $mod" >/dev/null 2>&1; then
      command -v "$py"
      return 0
    fi
  done
  # The apt package lands in the system interpreter.
  ensure_apt __never_a_command__ "python3-$mod" >&2 || return 1
  if /usr/bin/python3 -c "import $mod" >/dev/null 2>&1; then
    echo /usr/bin/python3
    return 0
  fi
  echo "cannot get a python3 with module $mod" >&2
  return 1
}

# render_haproxy_cfg SRC WS_PORT STATS_PORT MAXCONN WS1 HTTP1 WS2 HTTP2: prints the
# loopback variant of deploy/haproxy/haproxy.cfg used by the e2e test and by
# check.sh: the lines marked "e2e:" are rewritten, the Docker DNS resolvers dropped,
# the two servers point at 127.0.0.1 ports (with their internal port for the check),
# and checks run every 500 ms so a draining node leaves rotation quickly.
render_haproxy_cfg() {
  local src="$1" ws="$2" stats="$3" maxconn="$4" ws1="$5" http1="$6" ws2="$7" http2="$8"
  local fe=$((maxconn - 100))
  sed -E \
    -e '/# e2e: drop-begin/,/# e2e: drop-end/d' \
    -e "s|^( *)maxconn [0-9]+( +)# e2e: maxconn|\1maxconn ${maxconn}\2# e2e: maxconn|" \
    -e "s|^( *)maxconn [0-9]+( +)# e2e: fe-maxconn|\1maxconn ${fe}\2# e2e: fe-maxconn|" \
    -e "s|^( *)bind [^ ]+( +)# e2e: bind$|\1bind 127.0.0.1:${ws}\2# e2e: bind|" \
    -e "s|^( *)bind [^ ]+( +)# e2e: stats-bind|\1bind 127.0.0.1:${stats}\2# e2e: stats-bind|" \
    -e "s|^( *)default-server .*# e2e: default-server|\1default-server check inter 500ms fall 1 rise 2 observe layer4 error-limit 1 on-error mark-down|" \
    -e "s|^( *)server pushgate1 .*# e2e: server1|\1server pushgate1 127.0.0.1:${ws1} port ${http1}|" \
    -e "s|^( *)server pushgate2 .*# e2e: server2|\1server pushgate2 127.0.0.1:${ws2} port ${http2}|" \
    -e '/# e2e: server3/d' \
    "$src"
}
