#!/bin/sh
# qiao serve --mpi under mpirun on localhost (2 ranks, oversubscribed), on
# stories260K: completions give llama2.c's greedy text; then rank 1 is killed
# (SIGKILL) and, with mpirun told to let the job go on
# (--mca orte_abort_on_non_zero_status 0), the replica is taken out: a
# request in flight fails naming the rank, /health answers 503 naming it,
# new requests get 503, and SIGTERM to rank 0 ends the job; with mpirun's
# default the whole job ends at once. Nothing may hang: every wait is
# bounded, and every process this test starts is killed on exit.
# Usage: test_mpi_serve.sh MPIRUN
set -eu
MPIRUN="$1"
TEST_NAME=mpi_serve
. "$(dirname "$0")/serve_lib.sh"
llama2c_text

# Starts `mpirun -np 2 qiao serve --mpi` in the background ($1: extra mpirun
# flags, $2: extra serve flags) and waits for "ready"; sets JOB and PORT.
start() {
  : > "$T/log"
  # shellcheck disable=SC2086
  QIAO_MPI_TIMEOUT_S=5 "$MPIRUN" --allow-run-as-root --oversubscribe -np 2 $1 \
    -x QIAO_MPI_TIMEOUT_S -x ASAN_OPTIONS -x UBSAN_OPTIONS \
    "$QIAO_BIN" serve -m "$M" --mpi --port 0 -t 1 --slots 4 --grace 2 ${2:-} > "$T/log" 2>&1 &
  JOB=$!
  wait_ready
}

# 1. Serving: the greedy text of llama2.c, twice (one at a time, then two at
# once); the default depth is the number of ranks: two replicas (channels)
# whose passes are in flight together, each paired with its engine on rank 1.
start ""
health
[ "$HEALTH" = 200 ] || fail "/health: $HEALTH $(cat "$T/health")"
[ "$(grep -o '"spec": *"cpu:0:0-1,external:2-4"' "$T/health" | wc -l)" = 2 ] ||
  fail "/health: not 2 replicas of spec cpu:0:0-1,external:2-4: $(cat "$T/health")"
grep -q "MPI rank 1: ready, serving rank 0's passes (2 channels)" "$T/log" ||
  fail "rank 1 does not serve 2 channels"
complete "$GREEDY"
[ "$STATUS" = 200 ] || fail "completion: $STATUS $(cat "$T/body")"
check_text "$T/body"
curl -s -m 60 -o "$T/b1" -H 'Content-Type: application/json' -d "$GREEDY" \
  "http://127.0.0.1:$PORT/v1/completions" &
c1=$!
complete "$GREEDY"
wait "$c1" || fail "the concurrent completion failed"
[ "$STATUS" = 200 ] || fail "completion: $STATUS $(cat "$T/body")"
check_text "$T/body"
check_text "$T/b1"

# Four at once: they run on both replicas, every text the reference.
for k in 1 2 3 4; do
  curl -s -m 60 -o "$T/c$k" -H 'Content-Type: application/json' -d "$GREEDY" \
    "http://127.0.0.1:$PORT/v1/completions" &
  eval "p$k=\$!"
done
for k in 1 2 3 4; do
  eval "wait \$p$k" || fail "concurrent completion $k failed"
  check_text "$T/c$k"
done

# 2. SIGTERM to rank 0 ends every rank, exit 0.
kill -TERM "$(rank_pid 0)"
wait_end "$JOB" 30
JOB=""
[ "$CODE" = 0 ] || fail "SIGTERM to rank 0: mpirun exit code $CODE"
grep -q "qiao serve: stopped" "$T/log" || fail "rank 0 did not stop cleanly"

# Depth 1 (a relay: one replica) serves the same text; a bad depth is refused.
start "" "--mpi-depth 1"
grep -q "serving rank 0's passes (1 channel)" "$T/log" || fail "--mpi-depth 1: not 1 channel"
complete "$GREEDY"
[ "$STATUS" = 200 ] || fail "completion at depth 1: $STATUS $(cat "$T/body")"
check_text "$T/body"
kill -TERM "$(rank_pid 0)"
wait_end "$JOB" 30
JOB=""
[ "$CODE" = 0 ] || fail "SIGTERM to rank 0 at depth 1: mpirun exit code $CODE"
CODE=0
"$MPIRUN" --allow-run-as-root --oversubscribe -np 2 -x ASAN_OPTIONS \
  "$QIAO_BIN" serve -m "$M" --mpi --port 0 --mpi-depth 17 > "$T/log" 2>&1 || CODE=$?
[ "$CODE" != 0 ] || fail "--mpi-depth 17 was accepted"
grep -q "error: --mpi-depth" "$T/log" || fail "--mpi-depth 17: no error naming the flag"

# 3. Rank 1 killed while mpirun lets the job go on: a long request in flight
# fails naming the rank; /health answers 503 naming it; new requests get
# 503; SIGTERM to rank 0 then ends the job (with an error: a rank is lost).
start "--mca orte_abort_on_non_zero_status 0"
curl -s -m 60 -o "$T/long" -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"prompt": "Once upon a time", "max_tokens": 4000, "temperature": 0, "ignore_eos": true}' \
  "http://127.0.0.1:$PORT/v1/completions" > "$T/long_status" &
c1=$!
r1=$(rank_pid 1)
[ -n "$r1" ] || fail "no rank 1 process"
# Once the request runs, rank 1 stops answering at once (SIGSTOP, so that
# the request is surely in flight), then dies.
i=0
until health && grep -q '"running": *1' "$T/health"; do
  i=$((i + 1))
  [ $i -le 600 ] || fail "the long request did not start: $(cat "$T/health")"
  sleep 0.05
done
kill -STOP "$r1"
kill -9 "$r1"
wait_end "$c1" 60
[ "$(cat "$T/long_status")" != 200 ] || fail "the request in flight succeeded: $(head -c 300 "$T/long")"
grep -q "MPI rank 1" "$T/long" || fail "the request in flight does not name rank 1: $(cat "$T/long")"
health
[ "$HEALTH" = 503 ] || fail "/health after rank 1 died: $HEALTH $(cat "$T/health")"
grep -q "MPI rank 1" "$T/health" || fail "/health does not name rank 1: $(cat "$T/health")"
complete "$GREEDY"
[ "$STATUS" = 503 ] || fail "a request after rank 1 died: $STATUS $(cat "$T/body")"
kill -TERM "$(rank_pid 0)"
wait_end "$JOB" 30
JOB=""
[ "$CODE" != 0 ] || fail "the job ended with 0 though rank 1 was lost"
grep -q "^error: MPI rank 1 is lost (it did not answer within 5 s" "$T/log" ||
  fail "rank 0 did not say why the job ended"

# 4. Rank 1 killed under mpirun's defaults: the job ends at once, nonzero.
start ""
kill -9 "$(rank_pid 1)"
wait_end "$JOB" 30
JOB=""
[ "$CODE" != 0 ] || fail "mpirun exit code 0 after rank 1 was killed"
echo "ok"
