#!/bin/sh
# qiao run / qiao logits from the command line: greedy ids equal llama2.c's
# for the three forms of stories260K, text streams, a seed fixes sampled
# text and different seeds differ, logits match transformers, and bad input
# gives one clear error.
set -eu
: "${QIAO_BIN:?}" "${QIAO_SHARED:?}"
COMPARE="${1:?usage: test_run_cli.sh COMPARE_F32 MAKE_CHAT_MODEL}"
MAKE_CHAT_MODEL="${2:?usage: test_run_cli.sh COMPARE_F32 MAKE_CHAT_MODEL}"
S="$QIAO_SHARED/models/stories260K"
R="$QIAO_SHARED/reference/stories260K"
T="${TMPDIR:-/tmp}/qiao_engine_run_$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

[ -f "$S/stories260K.gguf" ] || fail "missing $S/stories260K.gguf"
expect_prompt=$(sed -n 3p "$R/stories260K_greedy_prompt_64.txt" | sed 's/ *$//')
expect_bos=$(sed -n 3p "$R/stories260K_greedy_bos_256.txt" | sed 's/ *$//')

# Greedy from "Once upon a time" (BOS added by the model's tokenizer).
got=$("$QIAO_BIN" run -m "$S/stories260K.gguf" -p "Once upon a time" --temp 0 -n 60 --ids -t 2 2>/dev/null)
[ "$got" = "$expect_prompt" ] || fail "gguf prompt greedy: $got"
got=$("$QIAO_BIN" run -m "$S/stories260K.bin" --tokenizer "$S/tok512.bin" -p "Once upon a time" --temp 0 -n 60 --ids -t 1 2>/dev/null)
[ "$got" = "$expect_prompt" ] || fail "bin prompt greedy: $got"
got=$("$QIAO_BIN" run -m "$S/hf" --prompt-ids "1 403 407 261 378" --temp 0 -n 60 --ids -t 1 2>/dev/null)
[ "$got" = "$expect_prompt" ] || fail "hf prompt greedy: $got"
# From BOS alone, 256 tokens.
got=$("$QIAO_BIN" run -m "$S/stories260K.gguf" --temp 0 -n 256 --ids -t 1 2>/dev/null)
[ "$got" = "$expect_bos" ] || fail "gguf BOS greedy: $got"

# Text: the prompt, then the reference text continuing it (--no-echo: only the
# continuation); stderr has the timing line, stdout not.
"$QIAO_BIN" run -p "Once upon a time" --temp 0 -n 60 -t 1 > "$T/text" 2> "$T/err"
grep -q "^Once upon a time, there was a little girl named Lily. She loved to play outside in the park." "$T/text" || fail "text: $(cat "$T/text")"
"$QIAO_BIN" run -p "Once upon a time" --temp 0 -n 60 -t 1 --no-echo > "$T/text" 2>/dev/null
grep -q "^, there was a little girl named Lily. She loved to play outside in the park." "$T/text" || fail "text --no-echo: $(cat "$T/text")"
grep -q "tokens/s" "$T/err" || fail "no timing line on stderr"
if grep -q "tokens/s" "$T/text"; then fail "timing line on stdout"; fi

# Stop strings: the text ends before the stop string.
"$QIAO_BIN" run -p "Once upon a time" --temp 0 -n 60 -t 1 --stop "Lily" --no-echo > "$T/stop" 2>/dev/null
[ "$(cat "$T/stop")" = ", there was a little girl named " ] || fail "stop: '$(cat "$T/stop")'"

# Seeds: same seed -> same text; different seeds (temperature 1) differ.
a=$("$QIAO_BIN" run --seed 7 --temp 1 -n 40 -t 1 2>/dev/null)
b=$("$QIAO_BIN" run --seed 7 --temp 1 -n 40 -t 1 2>/dev/null)
c=$("$QIAO_BIN" run --seed 8 --temp 1 -n 40 -t 1 2>/dev/null)
[ "$a" = "$b" ] || fail "same seed, different text"
[ "$a" != "$c" ] || fail "different seeds, same text"

# logits: one pass over the prompt, [positions x vocab] f32.
"$QIAO_BIN" logits -m "$S/stories260K.gguf" --ids "1 403 407 261 378" -o "$T/logits.f32"
[ "$(wc -c < "$T/logits.f32")" -eq $((5 * 512 * 4)) ] || fail "logits size"
cmp -s "$T/logits.f32" "$R/hf_logits.f32" && fail "logits bit-equal to float64 reference?"
"$COMPARE" "$T/logits.f32" "$R/hf_logits.f32" 512 1e-4 > /dev/null || fail "logits differ from transformers"

# chat from a pipe (stories260K has no template: plain continuation, said on stderr).
printf 'Lily went to the park.\n/reset\nThe cat sat.\n' | "$QIAO_BIN" chat --temp 0 -n 12 -t 1 > "$T/chat" 2> "$T/err"
[ "$(wc -l < "$T/chat")" -eq 2 ] || fail "chat: $(cat "$T/chat")"
grep -q "no chat template" "$T/err" || fail "chat: no notice on stderr"

# chat with a template (stories260K plus a small one): two turns, the second
# reuses the cached prefix of the conversation.
"$MAKE_CHAT_MODEL" "$T/chat.gguf" || fail "make_chat_model"
printf 'Hello there.\nTell me a story.\n' | "$QIAO_BIN" chat -m "$T/chat.gguf" --temp 0 -n 8 -t 1 --verbose > "$T/chat" 2> "$T/err"
[ "$(wc -l < "$T/chat")" -eq 2 ] || fail "template chat: $(cat "$T/chat")"
grep -q "^chat: turn 2: reused [1-9][0-9]* of" "$T/err" || fail "template chat: no cache reuse: $(cat "$T/err")"

# bench on a file (no tokenizer needed), one JSON line with the promised keys;
# the CPU backend reads the weights from the mapped file, copying none.
"$QIAO_BIN" bench -m "$S/stories260K.gguf" -p 8 -n 4 --reps 1 -t 1 --json > "$T/bench" 2>"$T/err"
grep -q "weights used in place (0.0 MiB copied" "$T/err" || fail "bench: weights copied: $(cat "$T/err")"
[ "$(wc -l < "$T/bench")" -eq 1 ] || fail "bench: not one line"
for key in prefill_tokens_per_s decode_tokens_per_s weight_bytes_per_token memory_bandwidth_gb_s \
  bandwidth_bound_tokens_per_s fraction_of_bound backend device threads model type; do
  grep -q "\"$key\": " "$T/bench" || fail "bench: no $key in $(cat "$T/bench")"
done

# Errors: one line, exit 1 (bad token id) or 2 (usage).
set +e
"$QIAO_BIN" logits --ids "1 9999" -o "$T/x.f32" 2> "$T/err"; rc=$?
set -e
[ $rc -eq 1 ] || fail "bad id exit $rc"
grep -q "^error: .*id 9999" "$T/err" || fail "bad id message: $(cat "$T/err")"
set +e
"$QIAO_BIN" run --temp -1 2> "$T/err"; rc=$?
set -e
[ $rc -eq 2 ] || fail "bad --temp exit $rc"
echo "ok"
