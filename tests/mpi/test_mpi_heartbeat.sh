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
MPIRUN="$1"
TEST_NAME=mpi_heartbeat
. "$(dirname "$0")/serve_lib.sh"
llama2c_text

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
  wait_ready
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
  complete "$GREEDY"
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
  complete "$GREEDY"
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
