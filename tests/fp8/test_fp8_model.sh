#!/bin/sh
# FP8 checkpoints load directly: a random llama, qwen3_moe and deepseek_v3
# (multi-head latent attention, DeepSeekMoE) model written
# at test time as FP8 (F8_E4M3 weights, 128 x 128 F32 block scales) and as
# the f32 twin of exactly those weights give the same logits within the
# matmul budget (1e-4, exact activations) and identical greedy ids; the
# weights stay FP8 (132 bytes per 128 weights, inspect says f8_e4m3_b128).
# Uses $QIAO_BIN (set by CTest).
. "$(dirname "$0")/fp8_common.sh"
ids="1 5 9 33 100 7 250 42 299 0 13"
for arch in llama qwen3_moe deepseek_v3; do
  make_model "$dir/$arch" --arch "$arch"
  "$QIAO_BIN" inspect "$dir/$arch/fp8" > "$dir/inspect.txt" 2>&1 || say "$arch: inspect: $(cat "$dir/inspect.txt")"
  if [ "$arch" = deepseek_v3 ]; then # kv_b: the latent's up-projection, 2 heads x (64 + 64)
    want="blk.1.attn_kv_b.weight *f8_e4m3_b128 (256, 128) *33792$"
  else
    want="blk.1.attn_k.weight *f8_e4m3_b128 (128, 256) *33792$"
  fi
  grep -q "$want" "$dir/inspect.txt" || say "$arch: no '$want' in: $(grep blk.1.attn "$dir/inspect.txt")"
  grep -q "token_embd.weight *f32" "$dir/inspect.txt" || say "$arch: token_embd changed type"
  "$QIAO_BIN" validate "$dir/$arch/fp8" > /dev/null 2> "$dir/err.txt" || say "$arch: validate: $(cat "$dir/err.txt")"
  for m in fp8 f32; do
    "$QIAO_BIN" logits -m "$dir/$arch/$m" --ids "$ids" -o "$dir/$m.f32" 2> "$dir/err.txt" ||
      say "$arch $m: logits: $(cat "$dir/err.txt")"
    "$QIAO_BIN" run -m "$dir/$arch/$m" --prompt-ids "$ids" -n 24 --temp 0 --ids --no-echo \
      > "$dir/$m.ids" 2> "$dir/err.txt" || say "$arch $m: run: $(cat "$dir/err.txt")"
  done
  compare "$dir/fp8.f32" "$dir/f32.f32" 300 1e-4 || say "$arch: FP8 logits differ from the f32 twin's"
  [ -s "$dir/fp8.ids" ] && cmp -s "$dir/fp8.ids" "$dir/f32.ids" ||
    say "$arch: greedy ids differ: $(cat "$dir/fp8.ids") vs $(cat "$dir/f32.ids")"
  # a multi-threaded and a single-threaded run agree too (the tile path)
  "$QIAO_BIN" logits -m "$dir/$arch/fp8" --ids "$ids" -t 1 -o "$dir/one.f32" 2> /dev/null &&
    compare "$dir/one.f32" "$dir/f32.f32" 300 1e-4 > /dev/null || say "$arch: -t 1 logits differ"
done
exit $fail
