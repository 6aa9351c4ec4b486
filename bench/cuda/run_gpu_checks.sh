#!/bin/sh
# Correctness of the CUDA backend on a machine with an NVIDIA GPU (H100 first).
# usage: bench/cuda/run_gpu_checks.sh [BUILD_DIR]   (from the repository root)
# Builds in Release, then:
#   1. the CUDA CTest tests (the plugin loads, device 0 opens, a round trip is exact);
#   2. qiao conformance --backend cuda, every level (ops vs the CPU reference with
#      the budgets of docs/spec/device-abi.md, ABI checks, the tiny models and
#      stories260K end to end: logits vs transformers and greedy ids == CPU);
#   3. greedy ids of stories260K (prompt and BOS/256 tokens), CUDA vs CPU vs llama2.c;
#   4. compute-sanitizer (memcheck, then racecheck on attention) over one short generation.
# Stops at the first failure; reports are left in BUILD_DIR.
set -eu
B="${1:-build-cuda-rel}"
S="${QIAO_SHARED:-../shared}"
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DQIAO_CUDA=ON >/dev/null
cmake --build "$B" -j"$(nproc)" --target qiao qiao_cuda cuda_plugin
Q="$B/qiao"

echo "== 1. ctest -R cuda_"
QIAO_SHARED="$S" ctest --test-dir "$B" -R '^cuda_' --output-on-failure

echo "== 2. conformance (all levels)"
QIAO_SHARED="$S" "$Q" conformance --backend cuda -o "$B/conformance-cuda.json"
# The same with the tiled kernel instead of cuBLAS for large-n F16/BF16/F32 matmuls.
QIAO_SHARED="$S" QIAO_CUDA_NO_CUBLAS=1 "$Q" conformance --backend cuda --level ops \
  --op matmul -o "$B/conformance-cuda-nocublas.json"

echo "== 3. greedy ids, stories260K"
M="$S/models/stories260K/stories260K.gguf"
R="$S/reference/stories260K"
cuda=$("$Q" run --backend cuda -m "$M" -p "Once upon a time" --temp 0 -n 60 --ids)
cpu=$("$Q" run --backend cpu -m "$M" -p "Once upon a time" --temp 0 -n 60 --ids)
ref=$(sed -n 3p "$R/stories260K_greedy_prompt_64.txt" | sed 's/ *$//')
[ "$cuda" = "$cpu" ] || { echo "FAIL: cuda ids differ from cpu: $cuda"; exit 1; }
[ "$cuda" = "$ref" ] || { echo "FAIL: cuda ids differ from llama2.c: $cuda"; exit 1; }
cuda=$("$Q" run --backend cuda -m "$M" --temp 0 -n 256 --ids)
ref=$(sed -n 3p "$R/stories260K_greedy_bos_256.txt" | sed 's/ *$//')
[ "$cuda" = "$ref" ] || { echo "FAIL: cuda BOS/256 ids differ from llama2.c: $cuda"; exit 1; }
for arch in llama2 llama3 qwen2 qwen3 qwen3_moe; do
  d="$S/reference/tiny/$arch"
  [ -d "$d" ] || continue
  # (the conformance models level already compares these; this is the plain CLI path)
  b=$("$Q" run --backend cpu -m "$d" --prompt-ids "1 2 3 4 5" --temp 0 -n 24 --ids) ||
    { echo "tiny/$arch: qiao run cannot load it on cpu either: skipped"; continue; }
  a=$("$Q" run --backend cuda -m "$d" --prompt-ids "1 2 3 4 5" --temp 0 -n 24 --ids)
  [ "$a" = "$b" ] || { echo "FAIL: tiny/$arch: cuda $a != cpu $b"; exit 1; }
  echo "tiny/$arch: ok"
done

echo "== 4. compute-sanitizer"
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$CS" ]; then
  "$CS" --tool memcheck --error-exitcode 1 "$Q" run --backend cuda -m "$M" --temp 0 -n 40 --ids
  "$CS" --tool racecheck --error-exitcode 1 "$Q" run --backend cuda -m "$M" --temp 0 -n 8 --ids
  "$CS" --tool initcheck --error-exitcode 1 "$Q" run --backend cuda -m "$M" --temp 0 -n 8 --ids
else
  echo "compute-sanitizer not found: skipped (it ships with the full CUDA toolkit)"
fi
echo "all CUDA checks passed"
