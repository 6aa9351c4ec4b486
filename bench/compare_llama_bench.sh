#!/bin/sh
# qiao bench beside llama.cpp's llama-bench on the same GGUF files, rounds
# interleaved (llama, qiao, llama, qiao, ...), and the median ratio per
# weight type: on a shared VM absolute tokens/s move 2x from minute to
# minute, ratios taken together do not.
#
# usage: bench/compare_llama_bench.sh
# environment (defaults):
#   QIAO          ./build/qiao (built without sanitizers)
#   LLAMA_BENCH   ../llama.cpp-peer/build/bin/llama-bench
#                 (../shared/peers/build-llama-cpp.sh ../llama.cpp-peer llama-bench)
#   MODELS        ../bench-models: where the random-weight GGUFs are written once
#   SHAPE         qwen2.5-0.5b    TYPES  "q8_0 q4_0 f16"
#   THREADS 2  PROMPT 128  GEN 64  ROUNDS 4
#   QIAO_ARGS     extra flags for qiao bench (e.g. --exact)
#   TOKENIZER     a tokenizer.json the written GGUFs get (llama-bench needs a
#                 vocabulary; e.g. ../shared/tokenizers/deepseek_v3/tokenizer.json
#                 with SHAPE=deepseek-v2-lite TYPES=q4_0)
# Prints a Markdown table on stdout; progress and raw numbers on stderr.
set -eu
QIAO="${QIAO:-./build/qiao}"
LLAMA_BENCH="${LLAMA_BENCH:-../llama.cpp-peer/build/bin/llama-bench}"
MODELS="${MODELS:-../bench-models}"
SHAPE="${SHAPE:-qwen2.5-0.5b}"
TYPES="${TYPES:-q8_0 q4_0 f16}"
THREADS="${THREADS:-2}"
PROMPT="${PROMPT:-128}"
GEN="${GEN:-64}"
ROUNDS="${ROUNDS:-4}"
QIAO_ARGS="${QIAO_ARGS:-}"
fail() { echo "compare_llama_bench: $*" >&2; exit 1; }
[ -x "$QIAO" ] || fail "QIAO $QIAO: not an executable"
[ -x "$LLAMA_BENCH" ] || fail "LLAMA_BENCH $LLAMA_BENCH: not an executable (see the head of this script)"
mkdir -p "$MODELS"
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
lscpu | grep -m1 "Model name" >&2 || true
echo "| type | prefill qiao / llama | decode qiao / llama | qiao prefill, decode tok/s | llama prefill, decode tok/s | decode bound tok/s |"
echo "|---|---|---|---|---|---|"
for type in $TYPES; do
  model="$MODELS/$SHAPE-random-$type.gguf"
  if [ ! -f "$model" ]; then
    echo "compare_llama_bench: writing $model" >&2
    "$QIAO" bench --shape "$SHAPE" --type "$type" ${TOKENIZER:+--tokenizer "$TOKENIZER"} \
      --save "$model" >&2
  fi
  raw=$(mktemp)
  r=1
  while [ "$r" -le "$ROUNDS" ]; do
    echo "compare_llama_bench: $type round $r/$ROUNDS" >&2
    # llama-bench: one JSON object per test (pp then tg), avg_ts each.
    "$LLAMA_BENCH" -m "$model" -t "$THREADS" -p "$PROMPT" -n "$GEN" -r 1 -o jsonl 2>/dev/null |
      sed -n 's/.*"n_prompt": *\([0-9]*\).*"n_gen": *\([0-9]*\).*"avg_ts": *\([0-9.e+]*\).*/llama \1 \2 \3/p' >>"$raw"
    # shellcheck disable=SC2086 # extra flags are meant to split
    "$QIAO" bench -m "$model" -t "$THREADS" -p "$PROMPT" -n "$GEN" --reps 1 --json $QIAO_ARGS 2>/dev/null |
      sed -n 's/.*"prefill_tokens_per_s": *\([0-9.]*\).*"decode_tokens_per_s": *\([0-9.]*\).*"bandwidth_bound_tokens_per_s": *\([0-9.]*\).*/qiao \1 \2 \3/p' >>"$raw"
    r=$((r + 1))
  done
  cat "$raw" >&2
  lp=$(awk '$1 == "llama" && $3 == 0 {print $4}' "$raw" | median)
  ld=$(awk '$1 == "llama" && $2 == 0 {print $4}' "$raw" | median)
  qp=$(awk '$1 == "qiao" {print $2}' "$raw" | median)
  qd=$(awk '$1 == "qiao" {print $3}' "$raw" | median)
  bound=$(awk '$1 == "qiao" {print $4}' "$raw" | median)
  # Ratios per round (qiao's round r against llama's round r), then the median.
  rp=$(awk '$1 == "llama" && $3 == 0 {l[++n] = $4} $1 == "qiao" {q[++m] = $2} END {for (i = 1; i <= m && i <= n; i++) print q[i] / l[i]}' "$raw" | median)
  rd=$(awk '$1 == "llama" && $2 == 0 {l[++n] = $4} $1 == "qiao" {q[++m] = $3} END {for (i = 1; i <= m && i <= n; i++) print q[i] / l[i]}' "$raw" | median)
  printf "| %s | %.2f | %.2f | %.1f, %.1f | %.1f, %.1f | %.1f |\n" "$type" "$rp" "$rd" "$qp" "$qd" "$lp" "$ld" "$bound"
  rm -f "$raw"
done
