#!/bin/sh
# qiao convert from an FP8 checkpoint: to .qiao keeping f8_e4m3_b128 (a
# format 1.2 file that validates and gives the checkpoint's logits bit for
# bit); to .gguf refused without --type (GGUF has no FP8 type), naming the
# tensor; with --type q8_0 / q4_k_m / f16 / bf16 the same tensors, bytes for
# bytes, as converting the dequantized f32 twin (FP8 dequantizes exactly), so
# the same logits; --type f8_e4m3_b128 quantizes f32 weights (format.md
# §4.2). Uses $QIAO_BIN (set by CTest).
. "$(dirname "$0")/fp8_common.sh"
make_model "$dir/m"
ids="1 5 9 33 100 7 250 42"
logits() { # logits MODEL OUT
  "$QIAO_BIN" logits -m "$1" --ids "$ids" -o "$2" 2> "$dir/err.txt" || say "logits $1: $(cat "$dir/err.txt")"
}
logits "$dir/m/fp8" "$dir/ref.f32"

# .qiao keeping every type
"$QIAO_BIN" convert "$dir/m/fp8" "$dir/keep.qiao" --quiet 2> "$dir/err.txt" || say "convert keep: $(cat "$dir/err.txt")"
"$QIAO_BIN" validate "$dir/keep.qiao" > /dev/null 2>&1 || say "keep.qiao does not validate"
minor=$(od -An -tu2 -j6 -N2 "$dir/keep.qiao" | tr -d ' ')
[ "$minor" = 2 ] || say "keep.qiao: minor version $minor, expected 2 (format 1.2)"
"$QIAO_BIN" inspect "$dir/keep.qiao" | grep -q "blk.0.ffn_down.weight *f8_e4m3_b128" || say "keep.qiao lost f8_e4m3_b128"
logits "$dir/keep.qiao" "$dir/keep.f32"
cmp -s "$dir/keep.f32" "$dir/ref.f32" || say "keep.qiao: logits are not bit-identical to the checkpoint's"

# .gguf: refused without a --type, nothing written
if "$QIAO_BIN" convert "$dir/m/fp8" "$dir/no.gguf" --quiet 2> "$dir/err.txt"; then
  say "convert FP8 to .gguf without --type succeeded"
fi
grep -q "GGUF has no type for f8_e4m3_b128.*--type" "$dir/err.txt" || say "gguf refusal message: $(cat "$dir/err.txt")"
grep -q "tensor output.weight" "$dir/err.txt" || say "gguf refusal does not name the tensor: $(cat "$dir/err.txt")"
[ ! -e "$dir/no.gguf" ] || say "a refused conversion left $dir/no.gguf"
ls "$dir" | grep -q "tmp-" && say "a refused conversion left a temporary file"

# --type T: the same bytes as converting the f32 twin
for spec in q8_0:gguf q4_k_m:qiao q4_k_m:gguf f16:gguf bf16:qiao q4_0:qiao; do
  t=${spec%%:*} ext=${spec##*:}
  for m in fp8 f32; do
    "$QIAO_BIN" convert "$dir/m/$m" "$dir/$m.$t.$ext" --type "$t" --quiet 2> "$dir/err.txt" ||
      say "convert $m --type $t .$ext: $(cat "$dir/err.txt")"
  done
  "$QIAO_BIN" validate "$dir/fp8.$t.$ext" > /dev/null 2>&1 || say "fp8.$t.$ext does not validate"
  "$QIAO_BIN" inspect "$dir/fp8.$t.$ext" | awk '/^tensors:/ {t = 1; next} t {print $1, $2, $NF}' > "$dir/a.txt"
  "$QIAO_BIN" inspect "$dir/f32.$t.$ext" | awk '/^tensors:/ {t = 1; next} t {print $1, $2, $NF}' > "$dir/b.txt"
  cmp -s "$dir/a.txt" "$dir/b.txt" || say "--type $t .$ext: tensor types or sizes differ from the f32 twin's"
  logits "$dir/fp8.$t.$ext" "$dir/a.f32"
  logits "$dir/f32.$t.$ext" "$dir/b.f32"
  cmp -s "$dir/a.f32" "$dir/b.f32" || say "--type $t .$ext: logits differ from the converted f32 twin's"
done
# quantizing to f8_e4m3_b128: every linear weight and token_embd (llama.cpp's rule), the rest as they were
"$QIAO_BIN" convert "$dir/m/f32" "$dir/q.qiao" --type f8_e4m3_b128 --quiet 2> "$dir/err.txt" ||
  say "convert --type f8_e4m3_b128: $(cat "$dir/err.txt")"
n=$("$QIAO_BIN" inspect "$dir/q.qiao" | grep -c " f8_e4m3_b128 ")
[ "$n" = 16 ] || say "--type f8_e4m3_b128: $n tensors of the type, expected 16 (15 linear, token_embd)"
logits "$dir/q.qiao" "$dir/q.f32"
# a second FP8 rounding of every weight (per-row blocks, not the checkpoint's
# tiles): a sanity bound on the logits (this random model turns weight errors
# of a few % into ~9% of logits); the quantizer itself is held to exact
# round-to-nearest-even by fp8_codec
compare "$dir/q.f32" "$dir/ref.f32" 300 0.2 || say "--type f8_e4m3_b128: logits too far"
exit $fail
