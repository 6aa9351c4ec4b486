#!/bin/sh
# qiao convert --type with the k-quants and llama.cpp's mixes: each tensor
# gets the type llama-quantize gives it (the lists below are what
# llama-quantize of ../shared/peers' llama.cpp wrote from the same f32
# inputs; the tiny models' rows of 64 and 176 elements make most tensors
# fall back, as they do in llama.cpp), the fallbacks are said on stderr,
# --verbose reports each tensor's error, the written files validate and
# open again, the bytes are the same on a second run, and a bad --type is
# refused naming the flag. Uses $QIAO_BIN and $QIAO_SHARED (set by CTest).
set -u
fail=0
say() { echo "FAIL: $*" >&2; fail=1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/format_convert_quant-XXXXXX")
trap 'rm -rf "$dir"' EXIT
stories="$QIAO_SHARED/models/stories260K/stories260K.gguf"
tiny="$QIAO_SHARED/reference/tiny"
for f in "$stories" "$tiny/llama2/model.safetensors" "$tiny/qwen3_moe/model.safetensors"; do
  [ -f "$f" ] || { echo "missing $f (set QIAO_SHARED)" >&2; exit 1; }
done

# NAME=TYPE of every tensor that is not f32, sorted by name
types() {
  "$QIAO_BIN" inspect "$1" | awk '/^tensors:/ { t = 1; next } t && NF >= 3 && $2 != "f32" { print $1 "=" $2 }' |
    sort | tr '\n' ' '
}

expect_types() { # expect_types FILE EXPECTED
  got=$(types "$1")
  [ "$got" = "$2 " ] || say "$1: tensor types
  got:      $got
  expected: $2"
}

# llama2 (2 layers, untied): attn_v of the last layer is q6_k (-> q8_0),
# output.weight q8_0 (rows of 64 are not whole super-blocks), ffn_down f16
llama2_q4_k_m="blk.0.attn_k.weight=q5_0 blk.0.attn_output.weight=q5_0 blk.0.attn_q.weight=q5_0 blk.0.attn_v.weight=q5_0 blk.0.ffn_down.weight=f16 blk.0.ffn_gate.weight=q5_0 blk.0.ffn_up.weight=q5_0 blk.1.attn_k.weight=q5_0 blk.1.attn_output.weight=q5_0 blk.1.attn_q.weight=q5_0 blk.1.attn_v.weight=q8_0 blk.1.ffn_down.weight=f16 blk.1.ffn_gate.weight=q5_0 blk.1.ffn_up.weight=q5_0 output.weight=q8_0 token_embd.weight=q5_0"
# stories260K (5 layers): attn_v of layers 2 and 4 get more bits
stories_q4_k_m="blk.0.attn_k.weight=q5_0 blk.0.attn_output.weight=q5_0 blk.0.attn_q.weight=q5_0 blk.0.attn_v.weight=q5_0 blk.0.ffn_down.weight=f16 blk.0.ffn_gate.weight=q5_0 blk.0.ffn_up.weight=q5_0 blk.1.attn_k.weight=q5_0 blk.1.attn_output.weight=q5_0 blk.1.attn_q.weight=q5_0 blk.1.attn_v.weight=q5_0 blk.1.ffn_down.weight=f16 blk.1.ffn_gate.weight=q5_0 blk.1.ffn_up.weight=q5_0 blk.2.attn_k.weight=q5_0 blk.2.attn_output.weight=q5_0 blk.2.attn_q.weight=q5_0 blk.2.attn_v.weight=q8_0 blk.2.ffn_down.weight=f16 blk.2.ffn_gate.weight=q5_0 blk.2.ffn_up.weight=q5_0 blk.3.attn_k.weight=q5_0 blk.3.attn_output.weight=q5_0 blk.3.attn_q.weight=q5_0 blk.3.attn_v.weight=q5_0 blk.3.ffn_down.weight=f16 blk.3.ffn_gate.weight=q5_0 blk.3.ffn_up.weight=q5_0 blk.4.attn_k.weight=q5_0 blk.4.attn_output.weight=q5_0 blk.4.attn_q.weight=q5_0 blk.4.attn_v.weight=q8_0 blk.4.ffn_down.weight=f16 blk.4.ffn_gate.weight=q5_0 blk.4.ffn_up.weight=q5_0 output.weight=q8_0 token_embd.weight=q5_0"
# qwen3_moe (8 experts): attn_k and attn_v q8_0, attn_output q5_k (-> q5_1);
# the routers (ffn_gate_inp) stay f32
qwen3_moe_q4_k_m="blk.0.attn_k.weight=q8_0 blk.0.attn_output.weight=q5_1 blk.0.attn_q.weight=q5_0 blk.0.attn_v.weight=q8_0 blk.0.ffn_down_exps.weight=f16 blk.0.ffn_gate_exps.weight=q5_0 blk.0.ffn_up_exps.weight=q5_0 blk.1.attn_k.weight=q8_0 blk.1.attn_output.weight=q5_1 blk.1.attn_q.weight=q5_0 blk.1.attn_v.weight=q8_0 blk.1.ffn_down_exps.weight=f16 blk.1.ffn_gate_exps.weight=q5_0 blk.1.ffn_up_exps.weight=q5_0 output.weight=q8_0 token_embd.weight=q5_0"
# Q5_K_S: q5_k everywhere (-> q5_1), output.weight q6_k (-> q8_0)
stories_q5_k_s="blk.0.attn_k.weight=q5_1 blk.0.attn_output.weight=q5_1 blk.0.attn_q.weight=q5_1 blk.0.attn_v.weight=q5_1 blk.0.ffn_down.weight=f16 blk.0.ffn_gate.weight=q5_1 blk.0.ffn_up.weight=q5_1 blk.1.attn_k.weight=q5_1 blk.1.attn_output.weight=q5_1 blk.1.attn_q.weight=q5_1 blk.1.attn_v.weight=q5_1 blk.1.ffn_down.weight=f16 blk.1.ffn_gate.weight=q5_1 blk.1.ffn_up.weight=q5_1 blk.2.attn_k.weight=q5_1 blk.2.attn_output.weight=q5_1 blk.2.attn_q.weight=q5_1 blk.2.attn_v.weight=q5_1 blk.2.ffn_down.weight=f16 blk.2.ffn_gate.weight=q5_1 blk.2.ffn_up.weight=q5_1 blk.3.attn_k.weight=q5_1 blk.3.attn_output.weight=q5_1 blk.3.attn_q.weight=q5_1 blk.3.attn_v.weight=q5_1 blk.3.ffn_down.weight=f16 blk.3.ffn_gate.weight=q5_1 blk.3.ffn_up.weight=q5_1 blk.4.attn_k.weight=q5_1 blk.4.attn_output.weight=q5_1 blk.4.attn_q.weight=q5_1 blk.4.attn_v.weight=q5_1 blk.4.ffn_down.weight=f16 blk.4.ffn_gate.weight=q5_1 blk.4.ffn_up.weight=q5_1 output.weight=q8_0 token_embd.weight=q5_1"

convert() { # convert IN OUT TYPE [flags]: exit status checked, stderr kept
  in=$1 out=$2 type=$3
  shift 3
  "$QIAO_BIN" convert "$in" "$out" --type "$type" --quiet "$@" 2> "$dir/err.txt" ||
    { say "convert $in --type $type: $(cat "$dir/err.txt")"; return 1; }
  "$QIAO_BIN" validate "$out" > /dev/null 2>&1 || say "validate $out after --type $type"
}

for ext in gguf qiao; do
  convert "$tiny/llama2" "$dir/llama2.$ext" q4_k_m && expect_types "$dir/llama2.$ext" "$llama2_q4_k_m"
  grep -q "^note: blk.1.attn_v.weight: rows of 64 elements are not whole q6_k blocks of 256; written as q8_0$" "$dir/err.txt" ||
    say "llama2 q4_k_m: no fallback note: $(cat "$dir/err.txt")"
done
convert "$stories" "$dir/stories.gguf" q4_k_m && expect_types "$dir/stories.gguf" "$stories_q4_k_m"
convert "$stories" "$dir/stories_s.gguf" q5_k_s && expect_types "$dir/stories_s.gguf" "$stories_q5_k_s"
convert "$tiny/qwen3_moe" "$dir/moe.gguf" q4_k_m && expect_types "$dir/moe.gguf" "$qwen3_moe_q4_k_m"

# every plain type: files that validate, the same bytes twice
for type in q4_k q5_k q6_k q2_k q3_k q4_1 q5_0 q5_1 q4_k_s q5_k_m; do
  convert "$tiny/llama2" "$dir/a.gguf" $type && convert "$tiny/llama2" "$dir/b.gguf" $type &&
    { cmp -s "$dir/a.gguf" "$dir/b.gguf" || say "--type $type: two runs differ"; }
done

# --verbose: one error line per converted tensor
convert "$tiny/llama2" "$dir/v.gguf" q4_k_m --verbose
grep -Eq "^blk.0.attn_q.weight: f32 -> q5_0: RMS error [0-9.e+-]+, relative [0-9.e+-]+$" "$dir/err.txt" ||
  say "--verbose: no error line: $(cat "$dir/err.txt")"
[ "$(grep -c "RMS error" "$dir/err.txt")" -eq 16 ] || say "--verbose: expected 16 error lines"

# a bad --type: exit 2, one line naming the flag and the value
"$QIAO_BIN" convert "$tiny/llama2" "$dir/bad.gguf" --type q4_k_x > /dev/null 2> "$dir/err.txt"
[ $? -eq 2 ] || say "bad --type: exit status"
grep -q "^error: convert: --type: expected .*got 'q4_k_x'" "$dir/err.txt" || say "bad --type: $(cat "$dir/err.txt")"
[ ! -e "$dir/bad.gguf" ] || say "bad --type: wrote a file"
exit $fail
