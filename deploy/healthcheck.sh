#!/bin/bash
# Container health check: GET /livez on the internal HTTP API, with nothing but bash
# (the runtime image has no curl). Exit 0 when the answer is "200", 1 otherwise.
# The port comes from PUSHGATE_HTTP_ADDR (default 127.0.0.1:8081); the check always
# connects over loopback. Usage: healthcheck.sh [PATH]   (default /livez)
addr="${PUSHGATE_HTTP_ADDR:-127.0.0.1:8081}"
port="${addr##*:}"
path="${1:-/livez}"
exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "$path" >&3
IFS=' ' read -r -t 3 _ status _ <&3 || exit 1
[[ "$status" == 200 ]]
