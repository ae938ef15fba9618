#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) each, one after the other
# (docs/conformance.md, "Fuzzing"). Needs a nightly toolchain and cargo-fuzz; not part
# of `make test`. A crash stops the run and leaves the input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGETS=(frame_reader command_parser handshake bus_wire resp sse_cursor pusher_wire)

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "a nightly toolchain is needed: rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is needed: cargo install cargo-fuzz" >&2
  exit 1
fi

LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
# Built first, so that a target that no longer compiles is not taken for a crash.
if ! cargo +nightly fuzz build -O >"$LOG" 2>&1; then
  tail -n 40 "$LOG"
  echo "FAIL: the fuzz targets do not build (the code they call has changed)" >&2
  exit 1
fi
for t in "${TARGETS[@]}"; do
  echo "== $t (${SECONDS_EACH} s)"
  mkdir -p "corpus/$t"
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -max_len=4096 -print_final_stats=1 >"$LOG" 2>&1; then
    tail -n 40 "$LOG"
    echo "FAIL $t: the crashing input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  grep -E 'DONE|stat::number_of_executed_units|stat::peak_rss_mb' "$LOG" || true
done
echo "ok: ${#TARGETS[@]} targets, ${SECONDS_EACH} s each, no crash"
