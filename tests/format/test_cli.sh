#!/bin/sh
# qiao inspect / validate / convert: exit codes and the one-line error of
# validate. Uses $QIAO_BIN and $QIAO_SHARED (set by CTest).
set -u
fail=0
check() { # check DESCRIPTION EXPECTED_EXIT ACTUAL_EXIT
  if [ "$2" != "$3" ]; then
    echo "FAIL: $1: exit $3, expected $2" >&2
    fail=1
  fi
}
dir=$(mktemp -d "${TMPDIR:-/tmp}/format_cli-XXXXXX")
trap 'rm -rf "$dir"' EXIT
gguf="$QIAO_SHARED/models/stories260K/stories260K.gguf"
bin="$QIAO_SHARED/models/stories260K/stories260K.bin"
tok="$QIAO_SHARED/models/stories260K/tok512.bin"
[ -f "$gguf" ] || { echo "missing $gguf (set QIAO_SHARED)" >&2; exit 1; }

# every command: --help prints its usage on stdout (exit 0); an unknown flag is
# one "error: ..." line on stderr (exit 2)
for cmd in run chat logits bench inspect validate convert tokenize detokenize template devices conformance; do
  "$QIAO_BIN" $cmd --help > "$dir/help.txt" 2> "$dir/err.txt"; check "$cmd --help" 0 $?
  grep -q "^usage: qiao $cmd" "$dir/help.txt" && [ ! -s "$dir/err.txt" ] ||
    { echo "FAIL: $cmd --help: usage not on stdout" >&2; fail=1; }
  "$QIAO_BIN" $cmd --no-such-flag > /dev/null 2> "$dir/err.txt" < /dev/null; check "$cmd unknown flag" 2 $?
  [ "$(wc -l < "$dir/err.txt")" -eq 1 ] && grep -q "^error: $cmd: unknown flag '--no-such-flag'" "$dir/err.txt" ||
    { echo "FAIL: $cmd unknown flag: $(cat "$dir/err.txt")" >&2; fail=1; }
done
"$QIAO_BIN" --help | grep -q "^usage: qiao COMMAND"; check "qiao --help" 0 $?
"$QIAO_BIN" no-such-command > /dev/null 2>&1; check "unknown command" 2 $?

"$QIAO_BIN" inspect "$gguf" > "$dir/inspect.txt"; check "inspect gguf" 0 $?
grep -q "architecture: *llama" "$dir/inspect.txt" || { echo "FAIL: inspect: no architecture" >&2; fail=1; }
grep -q "blk.4.ffn_down.weight *f32 *(64, 172)" "$dir/inspect.txt" || { echo "FAIL: inspect: tensor table" >&2; fail=1; }
grep -q "tokenizer: *spm, 512 tokens, bos 1, eos 2" "$dir/inspect.txt" || { echo "FAIL: inspect: tokenizer" >&2; fail=1; }
"$QIAO_BIN" inspect "$gguf" --metadata | grep -q "tokenizer.ggml.seperator_token_id"; check "inspect --metadata" 0 $?
"$QIAO_BIN" inspect > /dev/null 2>&1; check "inspect without MODEL" 2 $?
"$QIAO_BIN" inspect "$gguf" --bogus > /dev/null 2>&1; check "inspect unknown flag" 2 $?
"$QIAO_BIN" inspect "$dir/nope.gguf" > /dev/null 2>&1; check "inspect missing file" 1 $?
"$QIAO_BIN" inspect "$gguf" "$gguf" > /dev/null 2>&1; check "inspect two MODELs" 2 $?
"$QIAO_BIN" inspect -m "$gguf" > /dev/null; check "inspect -m MODEL" 0 $?

"$QIAO_BIN" validate "$gguf" > /dev/null; check "validate gguf" 0 $?
"$QIAO_BIN" convert "$gguf" "$dir/s.qiao" 2> "$dir/progress.txt"; check "convert gguf -> qiao" 0 $?
grep -q "wrote 48 tensors" "$dir/progress.txt" || { echo "FAIL: convert: no progress" >&2; fail=1; }
"$QIAO_BIN" validate "$dir/s.qiao" > /dev/null; check "validate qiao" 0 $?
"$QIAO_BIN" convert "$dir/s.qiao" "$dir/s.gguf" --type q8_0 --quiet 2> "$dir/quiet.txt"; check "convert qiao -> gguf q8_0" 0 $?
# --quiet prints no progress, only the notes that describe the output: rows
# of 172 (ffn_down) are not whole q8_0 blocks, so those are written as f16.
grep -v "^note: " "$dir/quiet.txt" | grep -q . && { echo "FAIL: --quiet printed progress" >&2; fail=1; }
grep -q "^note: blk.0.ffn_down.weight: rows of 172 elements are not whole q8_0 blocks of 32; written as f16" "$dir/quiet.txt" ||
  { echo "FAIL: convert: no note for the f16 fallback" >&2; fail=1; }
"$QIAO_BIN" validate "$dir/s.gguf" > /dev/null; check "validate q8_0 gguf" 0 $?
"$QIAO_BIN" inspect "$dir/s.gguf" | grep -q "blk.0.attn_q.weight *q8_0"; check "q8_0 in inspect" 0 $?
"$QIAO_BIN" convert "$bin" "$dir/l.qiao" --tokenizer "$tok" --type f16 --quiet; check "convert llama2.c" 0 $?
"$QIAO_BIN" validate "$dir/l.qiao" > /dev/null; check "validate converted llama2.c" 0 $?
"$QIAO_BIN" validate "$bin" --tokenizer "$tok" > /dev/null; check "validate llama2.c" 0 $?

# convert never writes a file that validate refuses (spec-tests/manifest.txt)
spec="$QIAO_SOURCE_DIR/spec-tests/files"
# nor copies corrupt data under a fresh hash
for f in no-tensors tokens-over-vocab unknown-type-needed data-hash; do
  "$QIAO_BIN" convert "$spec/$f.qiao" "$dir/$f.qiao" --quiet 2> "$dir/err.txt"; check "convert $f" 1 $?
  [ -e "$dir/$f.qiao" ] && { echo "FAIL: convert $f left a file" >&2; fail=1; }
  grep -q "^error: " "$dir/err.txt" || { echo "FAIL: convert $f: no error" >&2; fail=1; }
done
"$QIAO_BIN" convert "$spec/data-hash.qiao" "$dir/dh.gguf" --type q8_0 --quiet 2> "$dir/err.txt"
check "convert corrupt data to q8_0" 1 $?
grep -q "blk.0.attn_q.weight: data hash .* does not match the stored" "$dir/err.txt" ||
  { echo "FAIL: convert corrupt data: $(cat "$dir/err.txt")" >&2; fail=1; }
# A tensor of a later minor version's type: the file opens, a model that
# needs the tensor fails naming it and the type.
"$QIAO_BIN" logits -m "$spec/tiny-llama.qiao" --ids "1 2" -o "$dir/l.f32"; check "logits tiny-llama" 0 $?
"$QIAO_BIN" logits -m "$spec/unknown-type-needed.qiao" --ids "1 2" -o "$dir/l.f32" 2> "$dir/err.txt"
check "logits with an unknown tensor type" 1 $?
grep -q "tensor blk.0.attn_q.weight: element type 200 (layout 'q3_future') is not supported" "$dir/err.txt" ||
  { echo "FAIL: unknown type: $(cat "$dir/err.txt")" >&2; fail=1; }
# a 1.1 file with only 1.0 types converts to 1.0: minor 0, flags 0, a 96-byte
# header, no extra bytes; its unknown key is kept
"$QIAO_BIN" convert "$spec/tiny-llama-1.1.qiao" "$dir/t10.qiao" --quiet; check "convert 1.1" 0 $?
"$QIAO_BIN" validate "$dir/t10.qiao" > /dev/null; check "validate converted 1.1" 0 $?
[ "$(od -An -tx1 -j4 -N12 "$dir/t10.qiao" | tr -d ' ')" = "010000000000000060000000" ] ||
  { echo "FAIL: convert 1.1: header not 1.0" >&2; fail=1; }
"$QIAO_BIN" inspect --metadata "$dir/t10.qiao" | grep -q "future.key  *7" ||
  { echo "FAIL: convert 1.1: unknown key dropped" >&2; fail=1; }
"$QIAO_BIN" convert "$spec/tiny-llama.qiao" "$dir/tiny.gguf" --quiet; check "convert tiny-llama" 0 $?
"$QIAO_BIN" validate "$dir/tiny.gguf" > /dev/null; check "validate converted tiny-llama" 0 $?
"$QIAO_BIN" convert "$gguf" "$dir/x.bin" > /dev/null 2>&1; check "convert to unknown extension" 2 $?
"$QIAO_BIN" convert "$gguf" "$dir/x.qiao" --type q9_k > /dev/null 2>&1; check "convert bad --type" 2 $?
"$QIAO_BIN" convert "$gguf" > /dev/null 2>&1; check "convert without OUT" 2 $?
"$QIAO_BIN" convert "$gguf" "$dir/no/such/dir/x.qiao" --quiet 2> "$dir/err.txt"; check "convert into a missing folder" 1 $?
# A write that fails after its temporary file was written in full (the
# destination is a folder, so only the final rename fails) leaves nothing
# behind: the temporary lives beside the destination, in $dir.
mkdir "$dir/taken.qiao"
"$QIAO_BIN" convert "$gguf" "$dir/taken.qiao" --quiet 2> "$dir/err.txt"; check "convert onto a folder" 1 $?
grep -q "cannot rename .*taken.qiao.tmp-" "$dir/err.txt" || { echo "FAIL: convert onto a folder did not fail at the rename: $(cat "$dir/err.txt")" >&2; fail=1; }
ls "$dir" | grep -q tmp- && { echo "FAIL: a temporary file was left behind" >&2; fail=1; }

# a flipped bit in tensor data: validate exits 1 with one line naming the tensor
cp "$dir/s.qiao" "$dir/bad.qiao"
data_offset=$(od -An -t u8 -j 64 -N 8 "$dir/s.qiao" | tr -d ' ')
printf '\377' | dd of="$dir/bad.qiao" bs=1 seek=$((data_offset + 100)) conv=notrunc 2> /dev/null
"$QIAO_BIN" validate "$dir/bad.qiao" > /dev/null 2> "$dir/err.txt"; check "validate corrupt data" 1 $?
[ "$(wc -l < "$dir/err.txt")" -eq 1 ] || { echo "FAIL: validate printed more than one line" >&2; fail=1; }
grep -q "^error: $dir/bad.qiao: tensor token_embd.weight: data hash .* at byte offset [0-9]*$" "$dir/err.txt" ||
  { echo "FAIL: validate message: $(cat "$dir/err.txt")" >&2; fail=1; }
# ... and in the header: caught at open
cp "$dir/s.qiao" "$dir/bad2.qiao"
printf '\001' | dd of="$dir/bad2.qiao" bs=1 seek=200 conv=notrunc 2> /dev/null
"$QIAO_BIN" validate "$dir/bad2.qiao" > /dev/null 2> "$dir/err.txt"; check "validate corrupt header" 1 $?
grep -q "^error: $dir/bad2.qiao: header hash: " "$dir/err.txt" || { echo "FAIL: header message: $(cat "$dir/err.txt")" >&2; fail=1; }
# a truncated GGUF
head -c 5000 "$gguf" > "$dir/short.gguf"
"$QIAO_BIN" validate "$dir/short.gguf" > /dev/null 2> "$dir/err.txt"; check "validate truncated gguf" 1 $?
[ "$(wc -l < "$dir/err.txt")" -eq 1 ] || { echo "FAIL: truncated gguf: more than one line" >&2; fail=1; }
# a pickle checkpoint is refused
printf '\200\002\212\012l\374\234F' > "$dir/model.pt"
"$QIAO_BIN" validate "$dir/model.pt" > /dev/null 2> "$dir/err.txt"; check "validate pickle" 1 $?
grep -q "arbitrary code" "$dir/err.txt" || { echo "FAIL: pickle message: $(cat "$dir/err.txt")" >&2; fail=1; }
# the importers use the same one-line form: file, field, byte offset
cp "$bin" "$dir/bad.bin"
printf '\003\000\000\000' | dd of="$dir/bad.bin" bs=1 seek=12 conv=notrunc 2> /dev/null # n_heads = 3
"$QIAO_BIN" validate "$dir/bad.bin" --tokenizer "$tok" > /dev/null 2> "$dir/err.txt"; check "validate bad llama2.c header" 1 $?
[ "$(wc -l < "$dir/err.txt")" -eq 1 ] || { echo "FAIL: llama2.c header: more than one line" >&2; fail=1; }
grep -q "^error: $dir/bad.bin: n_heads: .* at byte offset 12$" "$dir/err.txt" ||
  { echo "FAIL: llama2.c header message: $(cat "$dir/err.txt")" >&2; fail=1; }
mkdir "$dir/hf"
printf '{"architectures": ["LlamaForCausalLM"], ' > "$dir/hf/config.json"
"$QIAO_BIN" validate "$dir/hf" > /dev/null 2> "$dir/err.txt"; check "validate truncated config.json" 1 $?
[ "$(wc -l < "$dir/err.txt")" -eq 1 ] || { echo "FAIL: config.json: more than one line" >&2; fail=1; }
grep -q "^error: $dir/hf/config.json: .* at byte offset [0-9]*$" "$dir/err.txt" ||
  { echo "FAIL: config.json message: $(cat "$dir/err.txt")" >&2; fail=1; }
# a vocabulary-only GGUF is not a model
"$QIAO_BIN" validate "$QIAO_SHARED/tokenizers/gguf-vocab/ggml-vocab-gpt-2.gguf" > /dev/null 2>&1; check "validate vocab-only" 1 $?
"$QIAO_BIN" inspect "$QIAO_SHARED/tokenizers/gguf-vocab/ggml-vocab-gpt-2.gguf" > /dev/null; check "inspect vocab-only" 0 $?
exit $fail
