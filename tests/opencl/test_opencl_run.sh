#!/bin/sh
# qiao run on the OpenCL backend: greedy ids from stories260K equal the CPU
# backend's and llama2.c's (from the prompt, and from BOS over 256 tokens so
# the KV cache spans many blocks); logits match transformers when the
# comparison tool is given.
set -eu
: "${QIAO_BIN:?}" "${QIAO_SHARED:?}"
COMPARE="${1:-}"
S="$QIAO_SHARED/models/stories260K"
R="$QIAO_SHARED/reference/stories260K"
T="${TMPDIR:-/tmp}/qiao_opencl_run_$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
fail() {
  echo "FAIL: $*" >&2
  [ -s "$T/err" ] && cat "$T/err" >&2
  exit 1
}

[ -f "$S/stories260K.gguf" ] || fail "missing $S/stories260K.gguf"
expect_prompt=$(sed -n 3p "$R/stories260K_greedy_prompt_64.txt" | sed 's/ *$//')
expect_bos=$(sed -n 3p "$R/stories260K_greedy_bos_256.txt" | sed 's/ *$//')

got=$("$QIAO_BIN" run --backend opencl -m "$S/stories260K.gguf" -p "Once upon a time" --temp 0 \
  -n 60 --ids 2> "$T/err") || fail "qiao run --backend opencl failed"
cpu=$("$QIAO_BIN" run --backend cpu -m "$S/stories260K.gguf" -p "Once upon a time" --temp 0 \
  -n 60 --ids 2> "$T/err") || fail "qiao run --backend cpu failed"
[ "$got" = "$cpu" ] || fail "opencl ids differ from cpu: $got"
[ "$got" = "$expect_prompt" ] || fail "opencl ids differ from llama2.c: $got"

got=$("$QIAO_BIN" run --backend opencl -m "$S/stories260K.gguf" --temp 0 -n 256 --ids \
  2> "$T/err") || fail "qiao run --backend opencl (BOS) failed"
[ "$got" = "$expect_bos" ] || fail "opencl BOS greedy differs from llama2.c: $got"

if [ -n "$COMPARE" ]; then
  [ -x "$COMPARE" ] || fail "the comparison tool $COMPARE is not built"
  "$QIAO_BIN" logits --backend opencl -m "$S/stories260K.gguf" --ids "1 403 407 261 378" \
    -o "$T/logits.f32" 2> "$T/err" || fail "qiao logits --backend opencl failed"
  "$COMPARE" "$T/logits.f32" "$R/hf_logits.f32" 512 1e-4 > "$T/err" 2>&1 ||
    fail "opencl logits differ from transformers"
fi
echo "ok"
