#!/bin/sh
# Speed of the CUDA backend against the GPU's measured bounds.
# usage: bench/cuda/run_bench.sh [BUILD_DIR]   (from the repository root)
# Prints JSON lines: first the probe (copy bandwidth, cuBLAS f16 rate), then
# one qiao bench line per configuration. See bench/cuda/README.md for the table.
set -eu
B="${1:-build-cuda-rel}"
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DQIAO_CUDA=ON >/dev/null
cmake --build "$B" -j"$(nproc)" --target qiao qiao_cuda qiao_cuda_probe >&2
Q="$B/qiao"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem --format=csv >&2 || true
"$B/qiao_cuda_probe"
for type in f16 q8_0 q4_0; do
  "$Q" bench --shape llama3-8b --type "$type" -p 512 -n 128 --backend cuda --json
done
"$Q" bench --shape qwen2.5-0.5b --type f16 -p 512 -n 128 --backend cuda --json
for batch in 8 32; do
  "$Q" bench --shape llama3-8b --type q8_0 -p 512 -n 128 --batch "$batch" --backend cuda --json
  "$Q" bench --shape qwen2.5-0.5b --type f16 -p 512 -n 128 --batch "$batch" --backend cuda --json
done
