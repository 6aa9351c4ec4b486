#!/bin/sh
# qiao tokenize / detokenize end to end: the stories260K prompt ids of
# llama2.c from each form of its vocab, special tokens, round trips, errors.
set -u
S=$QIAO_SHARED
fail=0
expect() { # expect WHAT GOT WANT
  if [ "$2" != "$3" ]; then
    echo "FAIL $1: got '$2', want '$3'" >&2
    fail=1
  fi
}
expect gguf "$($QIAO_BIN tokenize -m $S/models/stories260K/stories260K.gguf -p 'Once upon a time')" "1 403 407 261 378"
expect tok.bin "$($QIAO_BIN tokenize --tokenizer $S/models/stories260K/tok512.bin -p 'Once upon a time')" "1 403 407 261 378"
expect llama2c "$($QIAO_BIN tokenize -m $S/models/stories260K/stories260K.bin --tokenizer $S/models/stories260K/tok512.bin -p 'Once upon a time')" "1 403 407 261 378"
expect no-bos "$($QIAO_BIN tokenize -m $S/models/stories260K/stories260K.gguf --no-bos -p 'Once upon a time')" "403 407 261 378"
printf 'Once upon a time' > "${TMPDIR:-/tmp}/qiao_tok_cli_$$.txt"
expect file "$($QIAO_BIN tokenize -m $S/models/stories260K/stories260K.gguf -f ${TMPDIR:-/tmp}/qiao_tok_cli_$$.txt)" "1 403 407 261 378"
expect stdin "$(printf 'Once upon a time' | $QIAO_BIN tokenize -m $S/models/stories260K/stories260K.gguf)" "1 403 407 261 378"
rm -f "${TMPDIR:-/tmp}/qiao_tok_cli_$$.txt"
Q=$S/tokenizers/qwen3/tokenizer.json
expect special "$($QIAO_BIN tokenize -m $Q -p '<|im_start|>user
hi<|im_end|>')" "151644 872 198 6023 151645"
expect no-special "$($QIAO_BIN tokenize -m $Q --no-special -p '<|im_start|>')" "27 91 318 4906 91 29"
expect detok "$($QIAO_BIN detokenize -m $Q --ids '151644 872 198 6023 151645')" "<|im_start|>user
hi<|im_end|>"
expect detok-stdin "$(echo '1 403 407 261 378' | $QIAO_BIN detokenize -m $S/models/stories260K/stories260K.gguf)" "Once upon a time"
expect spm-model "$($QIAO_BIN tokenize -m $S/models/llama2-tokenizer/tokenizer.model -p 'Hello world')" "1 15043 3186"
expect chinese "$($QIAO_BIN detokenize -m $Q --ids "$($QIAO_BIN tokenize -m $Q -p '模型-芯片生态创新联盟')")" "模型-芯片生态创新联盟"
if $QIAO_BIN detokenize -m $Q --ids '1 abc' 2>/dev/null; then echo "FAIL bad ids accepted" >&2; fail=1; fi
if $QIAO_BIN detokenize -m $S/models/stories260K/stories260K.gguf --ids 999999999 2>/dev/null; then echo "FAIL out-of-range id accepted" >&2; fail=1; fi
if $QIAO_BIN tokenize -m $Q --bogus 2>/dev/null; then echo "FAIL bad flag accepted" >&2; fail=1; fi
exit $fail
