#!/bin/sh
# qiao chat renders each turn with the model's chat template and tokenizes it
# exactly as `qiao template | qiao tokenize --no-bos` does (the template
# writes any BOS itself, as transformers' apply_chat_template): for two turns
# the prompt length chat reports equals that of the pipeline, and the greedy
# reply equals `qiao run --prompt-ids` on the pipeline's ids, so any other id
# (a role name, a separator, a BOS too many) would show. The second turn's
# history holds the first reply (trimmed) in the assistant role.
set -eu
: "${QIAO_BIN:?}" "${QIAO_SHARED:?}"
MAKE_CHAT_MODEL="${1:?usage: test_chat_cli.sh MAKE_CHAT_MODEL}"
T="${TMPDIR:-/tmp}/qiao_chat_cli_$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$MAKE_CHAT_MODEL" "$T/chat.gguf" || fail "make_chat_model"
M="$T/chat.gguf"
printf 'Hello there.\nTell me a story.\n' |
  "$QIAO_BIN" chat -m "$M" --temp 0 -n 8 -t 1 --verbose > "$T/chat" 2> "$T/err" || fail "chat: $(cat "$T/err")"
[ "$(wc -l < "$T/chat")" -eq 2 ] || fail "chat: two replies expected: $(cat "$T/chat")"
reply1=$(sed -n 1p "$T/chat")
reply2=$(sed -n 2p "$T/chat")
trimmed1=$(printf '%s' "$reply1" | sed 's/^ *//; s/ *$//')
case $trimmed1 in *'"'* | *'\'*) fail "reply 1 needs JSON escaping: $reply1" ;; esac

# turn 1, then turn 2 with the first reply in the history
printf '[{"role":"user","content":"Hello there."}]' > "$T/m1.json"
printf '[{"role":"user","content":"Hello there."},{"role":"assistant","content":"%s"},{"role":"user","content":"Tell me a story."}]' \
  "$trimmed1" > "$T/m2.json"
turn=1
for want_reply in "$reply1" "$reply2"; do
  "$QIAO_BIN" template -m "$M" --messages "$T/m$turn.json" --add-generation-prompt > "$T/r$turn" ||
    fail "template turn $turn"
  ids=$("$QIAO_BIN" tokenize -m "$M" -f "$T/r$turn" --no-bos) || fail "tokenize turn $turn"
  n=$(echo "$ids" | wc -w)
  grep -q "^chat: turn $turn: reused [0-9]* of $n prompt tokens" "$T/err" ||
    fail "turn $turn: the pipeline gives $n prompt tokens; chat said: $(grep "turn $turn" "$T/err")"
  got=$("$QIAO_BIN" run -m "$M" --prompt-ids "$ids" --temp 0 -n 8 -t 1 --no-echo 2> /dev/null)
  [ "$got" = "$want_reply" ] ||
    fail "turn $turn: chat replied '$want_reply', run on the pipeline's ids '$got'"
  turn=$((turn + 1))
done
echo "chat prompts equal qiao template | qiao tokenize for 2 turns"

# Stop at the end of turn: a copy of the model whose EOS is the id the greedy
# reply reaches at some step k (the first one from k = 2 that did not come
# earlier) must reply with exactly the k ids before it, printing no text of
# the EOS itself: the reply equals `qiao run -n k` on the same prompt.
ids=$("$QIAO_BIN" tokenize -m "$M" -f "$T/r1" --no-bos) || fail "tokenize turn 1"
reply_ids=$("$QIAO_BIN" run -m "$M" --prompt-ids "$ids" --temp 0 -n 8 -t 1 --no-echo --ids 2> /dev/null) ||
  fail "run --ids"
k=0 eos="" seen=" "
for id in $reply_ids; do
  if [ $k -ge 2 ]; then
    case $seen in *" $id "*) ;; *) eos=$id; break ;; esac
  fi
  seen="$seen$id "
  k=$((k + 1))
done
[ -n "$eos" ] || fail "no new id from step 2 in the greedy reply: $reply_ids"
"$MAKE_CHAT_MODEL" "$T/eos.gguf" "$eos" || fail "make_chat_model with EOS $eos"
want=$("$QIAO_BIN" run -m "$M" --prompt-ids "$ids" --temp 0 -n $k -t 1 --no-echo 2> /dev/null)
printf 'Hello there.\n' |
  "$QIAO_BIN" chat -m "$T/eos.gguf" --temp 0 -n 8 -t 1 > "$T/chat_eos" 2> "$T/err" ||
  fail "chat with EOS $eos: $(cat "$T/err")"
[ "$(wc -l < "$T/chat_eos")" -eq 1 ] || fail "chat with EOS: one reply line expected: $(cat "$T/chat_eos")"
got=$(cat "$T/chat_eos")
[ "$got" = "$want" ] ||
  fail "chat with EOS $eos (step $k of '$reply_ids'): replied '$got', expected the $k ids before it: '$want'"
echo "chat stops at EOS $eos after $k tokens and does not print it"
