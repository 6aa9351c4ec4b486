#!/bin/sh
# --split from the command line, on stories260K (5 layers): run and logits
# give what one device gives (ids identical, logits byte-identical on two CPU
# stages); inspect and bench print the placement (bench --json with the bytes
# per token crossing each boundary); bad --split values are refused naming
# the flag, before anything runs; a device too small is refused naming it and
# the shortfall; serve runs a split replica beside a plain one and both
# answer the same greedy text.
# Usage: test_split_cli.sh SMALLMEM_PLUGIN
set -eu
: "${QIAO_BIN:?}" "${QIAO_SHARED:?}"
SMALLMEM="$1"
M="$QIAO_SHARED/models/stories260K/stories260K.gguf"
T="${TMPDIR:-/tmp}/qiao_split_cli_$$"
mkdir -p "$T"
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2> /dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  [ -s "$T/err" ] && cat "$T/err" >&2
  exit 1
}
[ -f "$M" ] || fail "missing $M"

# run and logits: the same as one device.
one=$("$QIAO_BIN" run -m "$M" -p "Once upon a time" --temp 0 -n 40 --ids 2> "$T/err") ||
  fail "run failed"
two=$("$QIAO_BIN" run -m "$M" -p "Once upon a time" --temp 0 -n 40 --ids \
  --split cpu:0-1,cpu:2-4 2> "$T/err") || fail "run --split failed"
[ "$one" = "$two" ] || fail "run --split ids differ: $two vs $one"
"$QIAO_BIN" logits -m "$M" --ids "1 403 407 261 378" -o "$T/one.f32" 2> "$T/err" ||
  fail "logits failed"
"$QIAO_BIN" logits -m "$M" --ids "1 403 407 261 378" -o "$T/three.f32" --split cpu,cpu,cpu \
  2> "$T/err" || fail "logits --split failed"
cmp -s "$T/one.f32" "$T/three.f32" || fail "logits --split cpu,cpu,cpu differ from one device"

# inspect and bench print the placement.
"$QIAO_BIN" inspect "$M" --split cpu,cpu > "$T/out" 2> "$T/err" || fail "inspect --split failed"
grep -q "^placement: 2 stages" "$T/out" || fail "inspect: no placement"
grep -q "stage 0: cpu:0 (.*) layers 0-2, embedding" "$T/out" || fail "inspect: stage 0"
grep -q "stage 1: cpu:0 (.*) layers 3-4, output" "$T/out" || fail "inspect: stage 1"
grep -q "to stage 1: 256 bytes per token" "$T/out" || fail "inspect: boundary bytes"
"$QIAO_BIN" bench -m "$M" -p 16 -n 8 --reps 1 --json --split cpu:0-0,cpu:1-4 > "$T/out" \
  2> "$T/err" || fail "bench --split failed"
grep -q '"placement": \[{"backend": "cpu", "device_index": 0, "device": "[^"]*", "first_layer": 0, "last_layer": 0, "embedding": true, "output": false, .*"boundary_bytes_per_token": 256}, {"backend": "cpu", .*"first_layer": 1, "last_layer": 4, "embedding": false, "output": true, .*"boundary_bytes_per_token": 0}\]}' \
  "$T/out" || fail "bench --json: no placement: $(cat "$T/out")"
"$QIAO_BIN" bench -m "$M" -p 16 -n 8 --reps 1 > "$T/out" 2> "$T/err" || fail "bench failed"
grep -q "stage 0: cpu:0 (.*) layers 0-4, embedding, output" "$T/out" ||
  fail "bench: no placement in the table"

# Bad values: refused naming --split, exit 1, nothing on stdout.
for bad in "cpu:0-1,cpu:3-4" "cpu:0-2,cpu:2-4" "cpu:0-2,cpu:3-5" "nosuch:0-2,cpu:3-4" "" \
  "cpu:0-3,cpu,cpu" ",cpu"; do
  for cmd in run logits bench; do
    code=0
    case $cmd in
    run) "$QIAO_BIN" run -m "$M" -p hi -n 2 --split "$bad" > "$T/out" 2> "$T/err" || code=$? ;;
    logits) "$QIAO_BIN" logits -m "$M" --ids "1 2" -o "$T/x.f32" --split "$bad" > "$T/out" \
      2> "$T/err" || code=$? ;;
    bench) "$QIAO_BIN" bench -m "$M" -p 4 -n 2 --split "$bad" > "$T/out" 2> "$T/err" || code=$? ;;
    esac
    [ "$code" -ne 0 ] || fail "$cmd --split '$bad' was accepted"
    grep -q "^error: --split" "$T/err" || fail "$cmd --split '$bad': the error does not name --split"
    [ ! -s "$T/out" ] || fail "$cmd --split '$bad' wrote to stdout"
  done
done
code=0
"$QIAO_BIN" inspect "$M" --split "cpu:0-1,cpu:3-4" > /dev/null 2> "$T/err" || code=$?
[ "$code" -ne 0 ] && grep -q "^error: --split" "$T/err" || fail "inspect accepted a gap"
code=0
"$QIAO_BIN" run -m "$M" -p hi --split-by sideways > /dev/null 2> "$T/err" || code=$?
[ "$code" -ne 0 ] && grep -q "^error: --split-by" "$T/err" || fail "--split-by sideways accepted"

# A device too small: refused naming it and the shortfall, before loading.
code=0
QIAO_TEST_DEVICE_MEMORY=1048576 "$QIAO_BIN" run -m "$M" -p hi -n 2 --backend "$SMALLMEM" \
  > /dev/null 2> "$T/err" || code=$?
[ "$code" -ne 0 ] || fail "a 1 MiB device was accepted"
grep -q "^error: device smallmem:0 (small memory test device 0) needs .* but has 1.0 MiB: [0-9]* bytes short" \
  "$T/err" || fail "the memory refusal does not name the device and the shortfall"
code=0
QIAO_TEST_DEVICE_MEMORY=1048576 "$QIAO_BIN" inspect "$M" --split "cpu,$SMALLMEM:1" \
  --split-by memory > /dev/null 2> "$T/err" || code=$?
[ "$code" -ne 0 ] && grep -q "device smallmem:1 .* bytes short" "$T/err" ||
  fail "inspect --split-by memory accepted a device too small"

# serve: a split replica beside a plain one; both give the same greedy text.
"$QIAO_BIN" serve -m "$M" --host 127.0.0.1 --port 0 -t 1 --slots 2 --no-prefix-cache \
  --device cpu --split cpu:0-1,cpu:2-4 > "$T/serve.out" 2> "$T/serve.err" &
SERVER=$!
port=""
i=0
while [ -z "$port" ] && [ $i -lt 300 ]; do
  port=$(sed -n 's#^qiao serve: listening on http://127.0.0.1:\([0-9]*\)$#\1#p' "$T/serve.err")
  kill -0 "$SERVER" 2> /dev/null || fail "serve --split exited: $(cat "$T/serve.err")"
  [ -n "$port" ] || sleep 0.1
  i=$((i + 1))
done
[ -n "$port" ] || fail "serve --split did not listen: $(cat "$T/serve.err")"
code=""
i=0
while [ "$code" != 200 ] && [ $i -lt 600 ]; do # 503 while loading
  code=$(curl -s -o "$T/health" -w '%{http_code}' "http://127.0.0.1:$port/health") || true
  [ "$code" = 200 ] || sleep 0.1
  i=$((i + 1))
done
[ "$code" = 200 ] || fail "GET /health: $code $(cat "$T/health")"
grep -q '"cpu:0-1,cpu:2-4"' "$T/health" || fail "/health does not list the split: $(cat "$T/health")"
body='{"prompt": "Once upon a time", "max_tokens": 24, "temperature": 0}'
pids=""
for k in 1 2 3 4 5 6; do
  curl -s -m 60 "http://127.0.0.1:$port/v1/completions" -H 'Content-Type: application/json' \
    -d "$body" > "$T/r$k" &
  pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a completion request failed"; done
first=$(sed 's/.*"text": *"\([^"]*\)".*/\1/' "$T/r1")
[ -n "$first" ] || fail "no text: $(cat "$T/r1")"
for k in 2 3 4 5 6; do
  text=$(sed 's/.*"text": *"\([^"]*\)".*/\1/' "$T/r$k")
  [ "$text" = "$first" ] || fail "replicas differ: '$text' vs '$first'"
done
curl -s "http://127.0.0.1:$port/metrics" > "$T/metrics"
grep -q 'qiao_device_steps_total{device="cpu:0-1,cpu:2-4"[^}]*} [1-9]' "$T/metrics" ||
  fail "the split replica took no step: $(grep steps_total "$T/metrics")"
kill -TERM "$SERVER"
wait "$SERVER" || fail "serve did not stop cleanly: $(cat "$T/serve.err")"
SERVER=""
echo "ok"
