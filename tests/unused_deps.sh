#!/usr/bin/env bash
# Unused dependencies, for `make lint`: every dependency a crate's Cargo.toml names
# must be mentioned by its code (`name::`, `use name`, `name!`, with `-` as `_`):
#   [dependencies]        in src/
#   [dev-dependencies]    in src/, tests/, benches/, examples/
#   [build-dependencies]  in build.rs
# and every [workspace.dependencies] entry must be used by some crate. A dependency
# only generated code mentions is listed in the crate's
#   [package.metadata.cargo-machete] ignored = ["name"]
# (cargo-machete's own key, so either tool reads it). Words only: it finds a
# dependency nothing mentions, not one mentioned but not needed. Exits 1 on a finding.
# Why a script and not cargo-machete: docs/architecture.md, "Unused dependencies".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# deps FILE SECTION: the dependency names of one section of a Cargo.toml.
deps() {
  awk -v want="[$2]" '
    /^\[/ { on = ($0 == want); next }
    on && /^[A-Za-z0-9_-]+[ .=]/ { sub(/[ .=].*/, ""); print }
  ' "$1"
}

# ignored FILE: names under [package.metadata.cargo-machete] ignored = [...].
ignored() {
  awk '
    /^\[/ { on = ($0 == "[package.metadata.cargo-machete]"); next }
    on && /^ignored *=/ { gsub(/.*\[|\].*|[" ]/, ""); gsub(/,/, "\n"); print }
  ' "$1"
}

# mentioned NAME DIR...: whether any .rs file under DIRs (or a file DIR) uses NAME.
mentioned() {
  local ident="${1//-/_}"; shift
  local paths=()
  for p in "$@"; do [[ -e "$p" ]] && paths+=("$p"); done
  ((${#paths[@]})) || return 1
  grep -rqE --include='*.rs' "(^|[^A-Za-z0-9_])${ident}(::|!| *;| as | *\{)" "${paths[@]}"
}

found=0
report() { echo "unused dependency: $1"; found=1; }

manifests=$(sed -n '/^members = \[/,/\]/p' Cargo.toml | grep -o '"[^"]*"' | tr -d '"' | sed 's|$|/Cargo.toml|')
for m in $manifests; do
  dir="$(dirname "$m")"
  skip="$(ignored "$m")"
  check() { # SECTION DIRS...
    local section="$1"; shift
    for d in $(deps "$m" "$section"); do
      grep -qxF "$d" <<<"$skip" && continue
      mentioned "$d" "$@" || report "$m [$section] $d"
    done
  }
  check dependencies "$dir/src"
  check dev-dependencies "$dir/src" "$dir/tests" "$dir/benches" "$dir/examples"
  check build-dependencies "$dir/build.rs"
done

# A workspace dependency no member names.
for d in $(deps Cargo.toml workspace.dependencies); do
  grep -qE "^${d}[ .=]" $manifests || report "Cargo.toml [workspace.dependencies] $d"
done

if ((found)); then
  echo "(remove them, or list generated-code-only ones under [package.metadata.cargo-machete] ignored)"
  exit 1
fi
echo "no unused dependencies"
