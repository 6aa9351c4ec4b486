#!/bin/sh
# qiao serve --mpi's idle heartbeat (issue 11): with no request running,
# rank 0 pings rank 1 every QIAO_MPI_HEARTBEAT_S seconds. Requests served
# between heartbeats give llama2.c's greedy text (stories260K); then rank 1
# hangs (SIGSTOP) while idle, with mpirun told to let the job go on: within
# heartbeat + QIAO_MPI_TIMEOUT_S, /health answers 503 naming rank 1 and
# requests get 503; SIGTERM to rank 0 ends the job, saying why. Then rank 1
# dies (SIGKILL) while idle: the same. A bad QIAO_MPI_HEARTBEAT_S is
# refused. Every wait is bounded, and every
# process this test starts is killed on exit.
# Usage: test_mpi_heartbeat.sh MPIRUN
set -eu
: "${QIAO_BIN:?}" "${QIAO_SHARED:?}"
MPIRUN="$1"
M="$QIAO_SHARED/models/stories260K/stories260K.gguf"
REF="$QIAO_SHARED/reference/stories260K/stories260K_greedy_prompt_64.txt"
T="${TMPDIR:-/tmp}/qiao_mpi_heartbeat_$$"
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
  [ -s "$T/log" ] && tail -n 40 "$T/log" >&2
  exit 1
}
for f in "$M" "$REF"; do [ -f "$f" ] || fail "missing $f"; done
command -v curl > /dev/null || fail "curl is not installed"
command -v python3 > /dev/null || fail "python3 is not installed"

# llama2.c's greedy continuation of "Once upon a time" (run.c echoes the
# prompt, then the text, then a final newline).
python3 - "$REF" > "$T/ref.txt" << 'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
start = next(i for i, l in enumerate(lines) if l.startswith("# stdout text")) + 1
out = "\n".join(lines[start:])
assert out.startswith("Once upon a time") and out.endswith("\n")
sys.stdout.write(out[len("Once upon a time"):-1])
PY

HEARTBEAT=1
TIMEOUT=3
# Starts `mpirun -np 2 qiao serve --mpi` (the job goes on when a rank ends)
# and waits for "ready"; sets JOB and PORT.
start() {
  : > "$T/log"
  QIAO_MPI_TIMEOUT_S=$TIMEOUT QIAO_MPI_HEARTBEAT_S=$HEARTBEAT "$MPIRUN" --allow-run-as-root \
    --oversubscribe -np 2 --mca orte_abort_on_non_zero_status 0 \
    -x QIAO_MPI_TIMEOUT_S -x QIAO_MPI_HEARTBEAT_S -x ASAN_OPTIONS -x UBSAN_OPTIONS \
    "$QIAO_BIN" serve -m "$M" --mpi --port 0 -t 1 --slots 2 --grace 2 > "$T/log" 2>&1 &
  JOB=$!
  i=0
  until grep -q "qiao serve: ready" "$T/log"; do
    i=$((i + 1))
    [ $i -le 600 ] || fail "serve --mpi did not get ready in 60 s"
    kill -0 "$JOB" 2>/dev/null || fail "mpirun ended before serve was ready"
    sleep 0.1
  done
  PORT=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$T/log" | head -n 1)
  [ -n "$PORT" ] || fail "no port in the log"
}
# Waits at most $2 seconds for pid $1 to end; its exit code in CODE.
wait_end() {
  i=0
  while kill -0 "$1" 2>/dev/null; do
    i=$((i + 1))
    [ $i -le $(($2 * 10)) ] || fail "pid $1 still runs after $2 s (a hang)"
    sleep 0.1
  done
  CODE=0
  wait "$1" || CODE=$?
  ! grep -Eq "ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:" "$T/log" ||
    fail "a sanitizer reported an error"
}
rank_pid() { # the qiao process of rank $1 (Open MPI sets OMPI_COMM_WORLD_RANK)
  for pid in $(pgrep -P "$JOB"); do
    tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" &&
      echo "$pid" && return
  done
}
ask() { # POST /v1/completions ($1: JSON body) -> $T/body, status in STATUS
  STATUS=$(curl -s -m 60 -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "$1" "http://127.0.0.1:$PORT/v1/completions") || STATUS=000
}
health() {
  HEALTH=$(curl -s -m 10 -o "$T/health" -w '%{http_code}' "http://127.0.0.1:$PORT/health") ||
    HEALTH=000
}
GREEDY='{"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0}'
check_text() {
  python3 -c '
import json, sys
got = json.load(open(sys.argv[1]))["choices"][0]["text"]
want = open(sys.argv[2], encoding="utf-8").read()
sys.exit(0 if got == want else "text %r, want %r" % (got, want))' "$1" "$T/ref.txt" ||
    fail "serve --mpi: not llama2.c's greedy text"
}
# Rank 1 is lost while idle ($1: the signal): /health turns 503 naming it
# within heartbeat + timeout (and some slack for a loaded machine), new
# requests get 503, SIGTERM to rank 0 ends the job nonzero, saying why.
lose_rank_1() {
  r1=$(rank_pid 1)
  [ -n "$r1" ] || fail "no rank 1 process"
  kill "-$1" "$r1"
  i=0
  until health && [ "$HEALTH" = 503 ]; do
    i=$((i + 1))
    [ $i -le $(((HEARTBEAT + TIMEOUT + 6) * 10)) ] ||
      fail "/health after rank 1 got SIG$1 while idle: $HEALTH $(cat "$T/health")"
    sleep 0.1
  done
  grep -q "MPI rank 1 is lost: it did not answer a heartbeat within $TIMEOUT s" "$T/health" ||
    fail "/health does not name rank 1 and the heartbeat: $(cat "$T/health")"
  ask "$GREEDY"
  [ "$STATUS" = 503 ] || fail "a request after rank 1 was lost: $STATUS $(cat "$T/body")"
  kill -9 "$r1" 2>/dev/null || true
  kill -TERM "$(rank_pid 0)"
  wait_end "$JOB" 30
  JOB=""
  [ "$CODE" != 0 ] || fail "the job ended with 0 though rank 1 was lost"
  grep -q "^error: MPI rank 1 is lost (it did not answer a heartbeat" "$T/log" ||
    fail "rank 0 did not say why the job ended"
}

# 1. Requests between heartbeats: the reference text; /health stays 200
# over several idle heartbeats.
start
for k in 1 2 3; do
  ask "$GREEDY"
  [ "$STATUS" = 200 ] || fail "completion $k: $STATUS $(cat "$T/body")"
  check_text "$T/body"
  sleep $((HEARTBEAT + 1))
  health
  [ "$HEALTH" = 200 ] || fail "/health between requests: $HEALTH $(cat "$T/health")"
done
# 2. Rank 1 hangs while idle.
lose_rank_1 STOP
# 3. Rank 1 dies while idle.
start
sleep $((HEARTBEAT + 1))
health
[ "$HEALTH" = 200 ] || fail "/health while idle: $HEALTH $(cat "$T/health")"
lose_rank_1 KILL
# 4. A bad QIAO_MPI_HEARTBEAT_S is refused, naming it.
CODE=0
QIAO_MPI_HEARTBEAT_S=soon timeout 60 "$MPIRUN" --allow-run-as-root --oversubscribe -np 2 \
  -x QIAO_MPI_HEARTBEAT_S -x ASAN_OPTIONS "$QIAO_BIN" serve -m "$M" --mpi --port 0 \
  > "$T/log" 2>&1 || CODE=$?
[ "$CODE" != 0 ] && [ "$CODE" != 124 ] || fail "QIAO_MPI_HEARTBEAT_S=soon: exit code $CODE"
grep -q "error: QIAO_MPI_HEARTBEAT_S: not a number of seconds" "$T/log" ||
  fail "QIAO_MPI_HEARTBEAT_S=soon: no error naming it"
echo "ok"
