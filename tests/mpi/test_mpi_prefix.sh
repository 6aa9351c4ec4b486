#!/bin/sh
# serve --mpi with the prefix cache (issue 11): rank 0's engine keeps prompt
# prefixes; the KV of those blocks on rank 1 was written by the same passes,
# so a later request reuses them on both ranks (copies on write travel with
# the next pass). stories260K, 2 ranks, depth 1: a long prompt twice; the
# second is served from the cache (usage and /metrics say so), and both give
# the greedy text of one process (`qiao run`).
# Usage: test_mpi_prefix.sh MPIRUN
set -eu
MPIRUN="$1"
TEST_NAME=mpi_prefix
. "$(dirname "$0")/serve_lib.sh"

PROMPT="Once upon a time there was a little girl named Lily. She loved to play outside in the park with her friends. One day"
# One process: run echoes the prompt, then the text, then a newline.
"$QIAO_BIN" run -m "$M" -p "$PROMPT" --temp 0 -n 40 > "$T/run.txt" 2> "$T/log" ||
  fail "run failed"
python3 - "$T/run.txt" "$PROMPT" > "$T/ref.txt" << 'PY'
import sys
out = open(sys.argv[1], encoding="utf-8").read()
assert out.startswith(sys.argv[2]) and out.endswith("\n"), out
sys.stdout.write(out[len(sys.argv[2]):-1])
PY

: > "$T/log"
"$MPIRUN" --allow-run-as-root --oversubscribe -np 2 -x ASAN_OPTIONS \
  "$QIAO_BIN" serve -m "$M" --mpi --mpi-depth 1 --port 0 -t 1 --slots 2 --grace 2 \
  > "$T/log" 2>&1 &
JOB=$!
wait_ready
BODY=$(python3 -c 'import json, sys; print(json.dumps({"prompt": sys.argv[1], "max_tokens": 40, "temperature": 0}))' "$PROMPT")
# Request $1: checks the text against one process; prints its cached prompt tokens.
ask() {
  STATUS=$(curl -s -m 60 -o "$T/body$1" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "$BODY" "http://127.0.0.1:$PORT/v1/completions") || STATUS=000
  [ "$STATUS" = 200 ] || fail "completion $1: $STATUS $(cat "$T/body$1")"
  python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
got = r["choices"][0]["text"]
want = open(sys.argv[2], encoding="utf-8").read()
if got != want:
    sys.exit("text %r, want %r" % (got, want))
print(r["usage"].get("prompt_tokens_details", {}).get("cached_tokens", 0))' "$T/body$1" "$T/ref.txt" ||
    fail "completion $1: not the text of one process"
}
first=$(ask 1)
second=$(ask 2)
[ "$first" = 0 ] || fail "the first request had $first cached prompt tokens"
[ "$second" -ge 16 ] || fail "the second request had $second cached prompt tokens (want a block or more)"
hits=$(curl -s -m 10 "http://127.0.0.1:$PORT/metrics" |
  sed -n 's/^qiao_prefix_cache_hit_tokens_total{[^}]*} \([0-9]*\)$/\1/p' | head -n 1)
[ "${hits:-0}" -ge 16 ] || fail "/metrics: prefix cache hits ${hits:-none}"
kill -TERM "$(rank_pid 0)"
wait_end "$JOB" 30
JOB=""
[ "$CODE" = 0 ] || fail "serve --mpi: mpirun exit code $CODE after SIGTERM"
echo "ok ($second of the prompt's tokens from the cache)"
