#!/bin/sh
# qiao bench-serve against fake_openai_server: request and token counts,
# failures by reason, SSE written in every awkward way, both endpoints, the
# API key, and usage errors. Timing checks are lower bounds the fake server
# guarantees (it waits 20 ms before the first token), never upper bounds.
set -eu
: "${QIAO_BIN:?}"
FAKE="${1:?usage: test_bench_serve.sh FAKE_SERVER}"
T="${TMPDIR:-/tmp}/qiao_bench_serve_$$"
mkdir -p "$T"
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

"$FAKE" "$T/port" 300 &
pid=$!
i=0
while [ ! -s "$T/port" ]; do
  i=$((i + 1))
  [ $i -le 200 ] || fail "fake server did not start"
  sleep 0.05
done
URL="http://127.0.0.1:$(cat "$T/port")"

# field NAME: the value of "NAME" in the JSON object in $T/out
field() { sed -n "s/.*\"$1\": \([^,}]*\).*/\1/p" "$T/out"; }
expect() { [ "$(field "$1")" = "$2" ] || fail "$3: $1 is '$(field "$1")', expected '$2'"; }
# ge A B: A >= B (decimals)
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }

# Good streams, prompt ids: every request ok, tokens from usage.
"$QIAO_BIN" bench-serve --url "$URL/ok" -c 3 -n 12 --prompt-len 16 --max-tokens 8 --json \
  > "$T/out" 2> "$T/err" || fail "ok run: $(cat "$T/err")"
expect requests_ok 12 ok; expect requests_failed 0 ok
expect generated_tokens 96 ok; expect prompt_tokens 192 ok
expect generated_counted_from '"usage"' ok; expect prompt_kind '"ids"' ok
expect prompt_tokens_estimated false ok
ge "$(field ttft_ms_p50)" 20 || fail "ttft p50 $(field ttft_ms_p50) below the server's 20 ms"
ge "$(field ttft_ms_p99)" "$(field ttft_ms_p50)" || fail "ttft p99 below p50"
ge "$(field itl_ms_p99)" "$(field itl_ms_p50)" || fail "itl p99 below p50"
ge "$(field itl_ms_mean)" 0.000001 || fail "itl mean $(field itl_ms_mean)"
ge "$(field wall_s)" 0.08 || fail "wall $(field wall_s): 4 rounds of 20 ms at least"
ge "$(field generated_tokens_per_s)" 0.001 || fail "no generated tokens/s"
ge "$(field decode_tokens_per_s_median)" 0.001 || fail "no decode tokens/s"
grep -q "12/12 requests done" "$T/err" || fail "no progress on stderr"
[ "$(wc -l < "$T/out")" -eq 1 ] || fail "--json is not one line"

# Without usage: generated tokens are the content chunks, so each awkward
# event (split, CRLF, two data lines, extra fields) must count exactly once
# and the empty-text chunks not at all.
"$QIAO_BIN" bench-serve --url "$URL/nousage/" -c 2 -n 4 --max-tokens 7 --json \
  > "$T/out" 2> "$T/err" || fail "nousage run: $(cat "$T/err")"
expect generated_tokens 28 nousage; expect generated_counted_from '"chunks"' nousage
expect prompt_tokens 512 nousage; expect prompt_tokens_estimated true nousage

# The chat endpoint with a text prompt (about one token a word).
"$QIAO_BIN" bench-serve --url "$URL/nousage" --endpoint chat -c 2 -n 3 --prompt-len 10 \
  --max-tokens 6 --json > "$T/out" 2> "$T/err" || fail "chat run: $(cat "$T/err")"
expect requests_ok 3 chat; expect generated_tokens 18 chat; expect prompt_kind '"text"' chat
"$QIAO_BIN" bench-serve --url "$URL/ok" --prompt-text --prompt-len 10 -n 2 --max-tokens 3 --json \
  > "$T/out" 2> "$T/err" || fail "text run: $(cat "$T/err")"
expect prompt_tokens 20 text; expect generated_tokens 6 text

# The API key.
"$QIAO_BIN" bench-serve --url "$URL/auth" --api-key sekrit -n 2 --max-tokens 2 --json \
  > "$T/out" 2> "$T/err" || fail "auth run: $(cat "$T/err")"
expect requests_ok 2 auth
if "$QIAO_BIN" bench-serve --url "$URL/auth" --api-key wrong -n 2 --max-tokens 2 --json \
  > "$T/out" 2> "$T/err"; then fail "wrong key accepted"; fi
expect failed_http 2 auth; grep -q "HTTP 401" "$T/err" || fail "401 not reported"

# Failures by reason, in turn: ok, HTTP 500, malformed event, no [DONE].
set +e
"$QIAO_BIN" bench-serve --url "$URL/mix" -c 4 -n 16 --max-tokens 5 --json > "$T/out" 2> "$T/err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "mix: exit $rc, expected 1"
expect requests_ok 4 mix; expect requests_failed 12 mix; expect failed_http 4 mix
expect failed_malformed 4 mix; expect failed_no_done 4 mix; expect failed_transport 0 mix
expect generated_tokens 20 mix
grep -q "failed (http): HTTP 500: {\"error\":{\"message\":\"fake overload\"}}" "$T/err" ||
  fail "mix: no HTTP 500 message: $(cat "$T/err")"
grep -q "failed (malformed): event data is not a JSON object: '{not json'" "$T/err" ||
  fail "mix: no malformed message"
grep -q "failed (no_done)" "$T/err" || fail "mix: no no_done message"

# A line over the client's 1 MiB bound: malformed, not unbounded memory.
set +e
"$QIAO_BIN" bench-serve --url "$URL/huge" -n 2 --json > "$T/out" 2> "$T/err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "huge: exit $rc"
expect failed_malformed 2 huge
grep -q "a line of the stream is over 1048576 bytes" "$T/err" || fail "huge: $(cat "$T/err")"

# The human table.
"$QIAO_BIN" bench-serve --url "$URL/ok" -c 2 -n 2 --max-tokens 3 > "$T/out" 2> "$T/err" ||
  fail "table run"
grep -q "requests ok / failed *2 / 0" "$T/out" || fail "table: $(cat "$T/out")"
grep -q "TTFT ms" "$T/out" || fail "table has no TTFT"

# A server that is not there: transport failures, exit 1.
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
set +e
"$QIAO_BIN" bench-serve --url "$URL/ok" -c 2 -n 3 --json > "$T/out" 2> "$T/err"
rc=$?
set -e
[ $rc -eq 1 ] || fail "no server: exit $rc"
expect failed_transport 3 "no server"
grep -q "failed (transport)" "$T/err" || fail "no transport message"

# Usage errors name the flag, exit 2.
usage_error() {
  set +e
  "$QIAO_BIN" bench-serve "$@" > "$T/out" 2> "$T/err"
  rc=$?
  set -e
  [ $rc -eq 2 ] || fail "bench-serve $*: exit $rc, expected 2"
}
usage_error -c 4
grep -q "error: bench-serve: --url is required" "$T/err" || fail "missing --url: $(cat "$T/err")"
usage_error --url "$URL" -c 0
grep -q "error: -c: 0 is out of range" "$T/err" || fail "-c 0: $(cat "$T/err")"
usage_error --url ftp://x
grep -q "error: --url: expected http" "$T/err" || fail "ftp url: $(cat "$T/err")"
usage_error --url "$URL" --endpoint embeddings
grep -q "error: --endpoint: expected completions or chat, got 'embeddings'" "$T/err" ||
  fail "endpoint: $(cat "$T/err")"
usage_error --url "$URL" --endpoint chat --prompt-ids
grep -q "error: --prompt-ids" "$T/err" || fail "chat ids: $(cat "$T/err")"
usage_error --url "$URL" --vocab-min 500 --vocab-max 100
grep -q "error: --vocab-min 500 must be below --vocab-max 100" "$T/err" || fail "vocab range"
usage_error --url "$URL" --bogus
grep -q "unknown flag '--bogus'" "$T/err" || fail "unknown flag: $(cat "$T/err")"
[ ! -s "$T/out" ] || fail "usage error wrote to stdout"
"$QIAO_BIN" bench-serve --help | grep -q "usage: qiao bench-serve" || fail "--help"
echo "bench-serve: all checks passed"
