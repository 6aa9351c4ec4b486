#!/bin/sh
# Engine speed on random-weight model shapes (see bench/README.md, "Engine").
# usage: bench/engine_bench.sh [QIAO_BIN] [THREADS] [SHAPE]
# Prints one JSON line per weight type (qiao bench --json); progress on stderr.
# Build without sanitizers first (cmake -S . -B build && cmake --build build --target qiao).
set -eu
QIAO_BIN="${1:-./build/qiao}"
THREADS="${2:-2}"
SHAPE="${3:-qwen2.5-0.5b}"
lscpu | grep -m1 "Model name" >&2 || true
for type in q8_0 q4_0 f16; do
  "$QIAO_BIN" bench --shape "$SHAPE" --type "$type" -t "$THREADS" -p 128 -n 64 --reps 3 --json
done
