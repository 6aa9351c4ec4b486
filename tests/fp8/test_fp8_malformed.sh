#!/bin/sh
# Malformed FP8 checkpoints are refused with one clear line naming the tensor
# (or the config field), by every command that opens them. Uses $QIAO_BIN.
. "$(dirname "$0")/fp8_common.sh"
expect() { # expect KIND PATTERN
  make_model "$dir/$1" --break "$1"
  if "$QIAO_BIN" inspect "$dir/$1/fp8" > /dev/null 2> "$dir/err.txt"; then
    say "$1: the checkpoint was accepted"
  elif ! grep -q "^error: .*$2" "$dir/err.txt"; then
    say "$1: expected /$2/, got: $(cat "$dir/err.txt")"
  fi
  [ "$(wc -l < "$dir/err.txt")" -eq 1 ] || say "$1: more than one line: $(cat "$dir/err.txt")"
}
expect nan "tensor 'model.layers.1.self_attn.k_proj.weight': element (5, 7) is the FP8 NaN code 0x7f"
expect missing "tensor 'model.layers.0.self_attn.o_proj.weight': an F8_E4M3 weight without its block scales 'model.layers.0.self_attn.o_proj.weight_scale_inv'"
expect shape "tensor 'model.layers.1.mlp.gate_proj.weight_scale_inv': shape must be (3, 2)"
expect oddrow "tensor 'model.layers.0.mlp.down_proj.weight': rows of 320 elements are not whole blocks of 128"
expect inf "tensor 'model.layers.0.mlp.up_proj.weight_scale_inv': scale (0, 0) is not finite"
expect orphan "tensor 'model.norm.weight_scale_inv': block scales for 'model.norm.weight', which is not an F8_E4M3 tensor"
expect blocksize "quantization_config.weight_block_size: \[ 64, 64 \] is not supported"
exit $fail
