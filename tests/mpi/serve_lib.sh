# What the `qiao serve --mpi` tests share; sourced by each after `set -eu`
# with TEST_NAME set. Gives: a temporary folder $T (removed on exit, with
# mpirun $JOB and the ranks it started killed), fail(), llama2.c's greedy
# text of "Once upon a time" in $T/ref.txt (llama2c_text), and the bounded
# waits and requests: wait_ready, wait_end, rank_pid, complete, health,
# check_text. Logs go to $T/log.
: "${QIAO_BIN:?}" "${QIAO_SHARED:?}" "${TEST_NAME:?}"
M="$QIAO_SHARED/models/stories260K/stories260K.gguf"
T="${TMPDIR:-/tmp}/qiao_${TEST_NAME}_$$"
mkdir -p "$T"
JOB=""
cleanup() {
  if [ -n "$JOB" ]; then
    # mpirun and the ranks it started (they are its children).
    for pid in $(pgrep -P "$JOB" 2> /dev/null) "$JOB"; do kill -9 "$pid" 2> /dev/null || true; done
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
[ -f "$M" ] || fail "missing $M"
command -v curl > /dev/null || fail "curl is not installed"
command -v python3 > /dev/null || fail "python3 is not installed"
GREEDY='{"prompt": "Once upon a time", "max_tokens": 60, "temperature": 0}'

# llama2.c's greedy continuation of "Once upon a time" (60 tokens) into
# $T/ref.txt: run.c echoes the prompt, then the text, then a final newline.
llama2c_text() {
  ref="$QIAO_SHARED/reference/stories260K/stories260K_greedy_prompt_64.txt"
  [ -f "$ref" ] || fail "missing $ref"
  python3 - "$ref" > "$T/ref.txt" << 'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
start = next(i for i, l in enumerate(lines) if l.startswith("# stdout text")) + 1
out = "\n".join(lines[start:])
assert out.startswith("Once upon a time") and out.endswith("\n")
sys.stdout.write(out[len("Once upon a time"):-1])
PY
}
# Waits at most 60 s for "qiao serve: ready" in $T/log (and for the extended
# regular expression $1 too, when given) while $JOB runs; sets PORT.
wait_ready() {
  i=0
  until grep -q "qiao serve: ready" "$T/log" && { [ -z "${1:-}" ] || grep -Eq "$1" "$T/log"; }; do
    i=$((i + 1))
    [ $i -le 600 ] || fail "serve --mpi did not get ready in 60 s"
    kill -0 "$JOB" 2> /dev/null || fail "mpirun ended before serve was ready"
    sleep 0.1
  done
  PORT=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$T/log" | head -n 1)
  [ -n "$PORT" ] || fail "no port in the log"
}
# Waits at most $2 seconds for pid $1 to end; its exit code in CODE.
wait_end() {
  i=0
  while kill -0 "$1" 2> /dev/null; do
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
    tr '\0' '\n' < "/proc/$pid/environ" 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" &&
      echo "$pid" && return
  done
}
complete() { # POST /v1/completions ($1: JSON body) -> $T/body, status in STATUS
  STATUS=$(curl -s -m 60 -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d "$1" "http://127.0.0.1:$PORT/v1/completions") || STATUS=000
}
health() {
  HEALTH=$(curl -s -m 10 -o "$T/health" -w '%{http_code}' "http://127.0.0.1:$PORT/health") ||
    HEALTH=000
}
# The completion in file $1 has the text of $T/ref.txt ($2: what it was).
check_text() {
  python3 -c '
import json, sys
got = json.load(open(sys.argv[1]))["choices"][0]["text"]
want = open(sys.argv[2], encoding="utf-8").read()
sys.exit(0 if got == want else "text %r, want %r" % (got, want))' "$1" "$T/ref.txt" ||
    fail "${2:-serve --mpi}: not llama2.c's greedy text"
}
