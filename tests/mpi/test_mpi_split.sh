#!/bin/sh
# --mpi with a --split inside a rank (issue 11: "each rank may itself use any
# backend or a --split"), on stories260K over 2 ranks (mpirun's MPMD form
# gives each rank its own flags): rank 0 splits its layers 0-2 over two cpu
# stages, rank 1 its layers 3-4 over cpu and opencl (PoCL in CI); `run`
# gives the greedy ids of one process, `serve` llama2.c's greedy text. A
# --split with layer ranges, or with more devices than the rank has layers,
# is refused naming it. Skipped (77) without an OpenCL device.
# Usage: test_mpi_split.sh MPIRUN
set -eu
: "${QIAO_BIN:?}" "${QIAO_SHARED:?}"
MPIRUN="$1"
M="$QIAO_SHARED/models/stories260K/stories260K.gguf"
REF="$QIAO_SHARED/reference/stories260K/stories260K_greedy_prompt_64.txt"
T="${TMPDIR:-/tmp}/qiao_mpi_split_$$"
mkdir -p "$T"
JOB=""
cleanup() {
  if [ -n "$JOB" ]; then
    for pid in $(pgrep -P "$JOB" 2>/dev/null) "$JOB"; do kill -9 "$pid" 2>/dev/null || true; done
  fi
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
  echo "FAIL: $*" >&2
  [ -s "$T/err" ] && tail -n 40 "$T/err" >&2
  exit 1
}
for f in "$M" "$REF"; do [ -f "$f" ] || fail "missing $f"; done
command -v curl > /dev/null || fail "curl is not installed"
command -v python3 > /dev/null || fail "python3 is not installed"
if ! "$QIAO_BIN" devices 2> /dev/null | grep -q "^backend opencl"; then
  echo "skipped: no OpenCL device"
  exit 77
fi
mpi() {
  timeout 120 "$MPIRUN" --allow-run-as-root --oversubscribe -x ASAN_OPTIONS "$@"
}
RUN="run -m $M -p Once --temp 0 -n 60 --ids --mpi -t 1"

# 1. run: the greedy ids of one process.
# shellcheck disable=SC2086
one=$("$QIAO_BIN" run -m "$M" -p Once --temp 0 -n 60 --ids 2> "$T/err") || fail "run failed"
# shellcheck disable=SC2086
two=$(mpi -np 1 "$QIAO_BIN" $RUN --split cpu,cpu : -np 1 "$QIAO_BIN" $RUN --split cpu,opencl \
  2> "$T/err") || fail "2-rank run with --split in each rank failed"
[ "$one" = "$two" ] || fail "2-rank ids with --split differ: $two vs $one"
grep -q "^MPI rank 1: layers on cpu:0 (3-3), opencl:0 (4-4)$" "$T/err" ||
  fail "rank 1 did not place layers 3-4 on cpu and opencl"
grep -q "\[cpu+cpu+external," "$T/err" || fail "rank 0 did not split its layers over two cpu stages"

# 2. Refusals, naming the split: layer ranges; more devices than layers.
code=0
# shellcheck disable=SC2086
mpi -np 2 "$QIAO_BIN" $RUN --split cpu:0-1,cpu:2-2 > /dev/null 2> "$T/err" || code=$?
[ "$code" -ne 0 ] && [ "$code" -ne 124 ] || fail "--split with ranges: exit code $code"
grep -q 'error: rank .: --mpi with --split: "cpu:0-1": name devices without layer ranges' \
  "$T/err" || fail "--split with ranges: no error naming it"
code=0
# shellcheck disable=SC2086
mpi -np 2 "$QIAO_BIN" $RUN --split cpu,cpu,cpu > /dev/null 2> "$T/err" || code=$?
[ "$code" -ne 0 ] && [ "$code" -ne 124 ] || fail "--split of 3 devices for 2 layers: exit $code"
grep -q "error: rank 1: --mpi: rank 1 has 2 layers (3-4) for the 3 devices of --split" "$T/err" ||
  fail "--split of 3 devices for 2 layers: no error naming it"

# 3. serve: rank 1 splits its layers over cpu and opencl; llama2.c's text.
python3 - "$REF" > "$T/ref.txt" << 'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
start = next(i for i, l in enumerate(lines) if l.startswith("# stdout text")) + 1
out = "\n".join(lines[start:])
assert out.startswith("Once upon a time") and out.endswith("\n")
sys.stdout.write(out[len("Once upon a time"):-1])
PY
SERVE="serve -m $M --mpi --port 0 -t 1 --slots 2 --grace 2"
# shellcheck disable=SC2086
"$MPIRUN" --allow-run-as-root --oversubscribe -x ASAN_OPTIONS \
  -np 1 "$QIAO_BIN" $SERVE : -np 1 "$QIAO_BIN" $SERVE --split cpu,opencl > "$T/err" 2>&1 &
JOB=$!
i=0
# Ready: rank 0 listens and has opened its replicas; rank 1 placed its layers.
until grep -q "qiao serve: ready" "$T/err" && grep -q "^MPI rank 1: layers on" "$T/err"; do
  i=$((i + 1))
  [ $i -le 600 ] || fail "serve --mpi did not get ready in 60 s"
  kill -0 "$JOB" 2> /dev/null || fail "mpirun ended before serve was ready"
  sleep 0.1
done
PORT=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$T/err" | head -n 1)
[ -n "$PORT" ] || fail "no port in the log"
grep -q "^MPI rank 1: layers on cpu:0 (3-3), opencl:0 (4-4)$" "$T/err" ||
  fail "serve: rank 1 did not place layers 3-4 on cpu and opencl"
STATUS=$(curl -s -m 60 -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0}' \
  "http://127.0.0.1:$PORT/v1/completions") || STATUS=000
[ "$STATUS" = 200 ] || fail "completion: $STATUS $(cat "$T/body")"
python3 -c '
import json, sys
got = json.load(open(sys.argv[1]))["choices"][0]["text"]
want = open(sys.argv[2], encoding="utf-8").read()
sys.exit(0 if got == want else "text %r, want %r" % (got, want))' "$T/body" "$T/ref.txt" ||
  fail "serve --mpi with --split in rank 1: not llama2.c's greedy text"
for pid in $(pgrep -P "$JOB"); do
  tr '\0' '\n' < "/proc/$pid/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=0" &&
    kill -TERM "$pid"
done
i=0
while kill -0 "$JOB" 2> /dev/null; do
  i=$((i + 1))
  [ $i -le 300 ] || fail "serve --mpi did not end within 30 s of SIGTERM"
  sleep 0.1
done
code=0
wait "$JOB" || code=$?
JOB=""
[ "$code" = 0 ] || fail "serve --mpi: mpirun exit code $code after SIGTERM"
! grep -Eq "ERROR: AddressSanitizer|runtime error:" "$T/err" || fail "a sanitizer reported an error"
echo "ok"
