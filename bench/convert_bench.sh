#!/bin/sh
# Conversion throughput and peak memory for a multi-GB random-weight model in
# Qwen2.5-0.5B shape, and `qiao inspect` / `qiao validate` times. Not run by
# the tests; see bench/README.md.
#
# usage: bench/convert_bench.sh [path/to/qiao] [work folder]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
qiao=${1:-$here/../build-bench/qiao}
work=${2:-${TMPDIR:-/tmp}/qiao-bench}
mkdir -p "$work"
src="$work/random-qwen2.5-0.5b.gguf"
[ -f "$src" ] || python3 "$here/make_random_model.py" "$src"
size_mb=$(( $(stat -c %s "$src") / 1000000 ))

# run LABEL CMD...: wall seconds, MB/s of the input and peak RSS
run() {
  label=$1
  shift
  sync
  /usr/bin/time -v "$@" 2> "$work/time.txt" > /dev/null || { cat "$work/time.txt"; exit 1; }
  wall=$(grep "Elapsed (wall clock)" "$work/time.txt" | awk '{print $NF}' |
         awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
  rss=$(grep "Maximum resident set size" "$work/time.txt" | awk '{print $NF}')
  mbs=$(awk -v s="$size_mb" -v t="$wall" 'BEGIN { if (t > 0) printf "%.0f", s / t; else print "-" }')
  printf "%-34s %8.2f s %8s MB/s %8d MiB peak RSS\n" "$label" "$wall" "$mbs" $((rss / 1024))
}

echo "input: $src ($size_mb MB), qiao: $qiao"
run "convert gguf -> qiao (copy f32)" "$qiao" convert "$src" "$work/m.qiao" --quiet
run "convert gguf -> qiao --type f16" "$qiao" convert "$src" "$work/m-f16.qiao" --type f16 --quiet
run "convert gguf -> qiao --type q8_0" "$qiao" convert "$src" "$work/m-q8.qiao" --type q8_0 --quiet
run "convert gguf -> gguf --type q4_0" "$qiao" convert "$src" "$work/m-q4.gguf" --type q4_0 --quiet
run "convert qiao -> gguf (copy)" "$qiao" convert "$work/m.qiao" "$work/m.gguf" --quiet
run "inspect m.qiao" "$qiao" inspect "$work/m.qiao"
run "inspect source gguf" "$qiao" inspect "$src"
run "validate m.qiao (hashes all data)" "$qiao" validate "$work/m.qiao"
ls -la "$work"
