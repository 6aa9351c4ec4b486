#!/usr/bin/env bash
# A short libFuzzer run of every target in fuzz/targets.cmake, each on a
# scratch copy of its seed corpus: the smoke test CI runs. Longer campaigns:
# see fuzz/README.md. Usage: fuzz/run-smoke.sh BUILD_DIR SECONDS_PER_TARGET
set -euo pipefail
build=$(cd "${1:?build dir}" && pwd)
seconds=${2:-15}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for target in $(sed -n 's/^qiao_fuzz_target(\([a-z_0-9]*\).*/\1/p' "$here/targets.cmake"); do
  exe="$build/fuzz/$target"
  [ -x "$exe" ] || { echo "fuzz smoke: $exe was not built" >&2; exit 1; }
  # a target without seeds would fuzz from nothing and prove little: refuse it
  if [ -z "$(find "$here/corpus/$target" -type f 2>/dev/null)" ]; then
    echo "fuzz smoke: fuzz/corpus/$target has no seed files" >&2
    exit 1
  fi
  mkdir -p "$work/$target"
  cp -r "$here/corpus/$target/." "$work/$target/"
  echo "fuzz smoke: $target for ${seconds}s" >&2
  (cd "$work" && "$exe" "$work/$target" -max_total_time="$seconds" -max_len=65536 \
     -rss_limit_mb=2048 -timeout=10 -print_final_stats=0 >"$work/$target.log" 2>&1) || {
    tail -n 40 "$work/$target.log" >&2
    echo "fuzz smoke: $target found a problem (crash input above; add it to fuzz/corpus/$target)" >&2
    exit 1
  }
done
