#!/bin/sh
# `qiao serve --mpi` (2 ranks on this machine) beside one `qiao serve`
# process, at C concurrent streams: the aggregate generated tokens/s of
#   one     : one process, THREADS threads, C slots (the baseline);
#   depth2  : mpirun -np 2 ... --mpi --mpi-depth 2: two replicas of C/2 slots
#             whose passes are in flight together (each rank THREADS/2 threads);
#   depth1  : mpirun -np 2 ... --mpi --mpi-depth 1: a relay, one replica of C
#             slots, one rank working at a time (each rank THREADS threads).
# Both with --bind-to none: mpirun would bind each rank to one core, which
# halves a relay's rank of 2 threads, and keeps rank 0's HTTP threads off
# the other core in depth 2.
# The three run one after another in each round (so the host's load moves
# them alike); the summary gives each MPI run's ratio to the baseline of its
# round, and the median over rounds. See bench/README.md.
#
# usage: bench/mpi/pipeline.sh   (settings from the environment:)
#   MODEL   (../bench-models/qwen2.5-0.5b-random-q8_0.gguf)   QIAO (./build/qiao)
#   MPIRUN  (mpirun)   ROUNDS (3)   C (8 streams)   N (2*C requests per run)
#   THREADS (2)   PROMPT (32 token ids)   GEN (64 tokens, ignore_eos)   PORT (18190)
#   VOCAB_MIN (1000)  VOCAB_MAX (20000): the prompt ids' range (bench-serve --vocab-min/max)
set -eu
MODEL="${MODEL:-../bench-models/qwen2.5-0.5b-random-q8_0.gguf}"
QIAO="${QIAO:-./build/qiao}"
MPIRUN="${MPIRUN:-mpirun}"
ROUNDS="${ROUNDS:-3}"
C="${C:-8}"
N="${N:-$((2 * C))}"
THREADS="${THREADS:-2}"
PROMPT="${PROMPT:-32}"
GEN="${GEN:-64}"
PORT="${PORT:-18190}"
VOCAB_MIN="${VOCAB_MIN:-1000}"
VOCAB_MAX="${VOCAB_MAX:-20000}"
HALF=$((THREADS / 2 > 0 ? THREADS / 2 : 1))
CTX=$((PROMPT + GEN + 64))

job=""
stop() {
  if [ -n "$job" ]; then
    for p in $(pgrep -P "$job" 2> /dev/null) "$job"; do kill "$p" 2> /dev/null || true; done
    wait "$job" 2> /dev/null || true
  fi
  job=""
}
# (measure runs in a $(...) subshell, where the EXIT trap does not run:
# fail stops the server itself.)
fail() {
  echo "pipeline: error: $*" >&2
  stop
  exit 1
}
[ -f "$MODEL" ] || fail "MODEL $MODEL: no such file (qiao bench --shape ... --save makes one)"
[ -x "$QIAO" ] || fail "QIAO $QIAO: not an executable"
command -v "$MPIRUN" > /dev/null || fail "$MPIRUN not found (Debian: openmpi-bin)"
command -v curl > /dev/null || fail "curl is needed to poll /health"
OUT=$(mktemp -d)
trap 'stop; rm -rf "$OUT"' EXIT
trap 'exit 130' INT TERM

# Starts a server (its command line in "$@"), waits for /health, runs
# bench-serve, prints the generated tokens/s, stops the server.
measure() {
  "$@" > "$OUT/server.log" 2>&1 &
  job=$!
  i=0
  until curl -sf -o /dev/null "http://127.0.0.1:$PORT/health"; do
    i=$((i + 1))
    [ $i -le 600 ] || { tail -n 20 "$OUT/server.log" >&2; fail "server not ready in 60 s"; }
    sleep 0.1
  done
  "$QIAO" bench-serve --url "http://127.0.0.1:$PORT" -c "$C" -n "$N" --prompt-len "$PROMPT" \
    --max-tokens "$GEN" --vocab-min "$VOCAB_MIN" --vocab-max "$VOCAB_MAX" --json > "$OUT/run.json" 2> /dev/null || fail "bench-serve failed"
  stop
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["generated_tokens_per_s"])' \
    "$OUT/run.json"
}

SERVE="serve -m $MODEL --port $PORT --ctx $CTX --no-prefix-cache"
MPI="$MPIRUN --allow-run-as-root --oversubscribe --bind-to none -np 2"
echo "round one depth2 depth1 (generated tokens/s; $C streams, $THREADS threads)" >&2
for r in $(seq 1 "$ROUNDS"); do
  # shellcheck disable=SC2086 # the command lines are meant to split
  one=$(measure "$QIAO" $SERVE -t "$THREADS" --slots "$C")
  # shellcheck disable=SC2086
  d2=$(measure $MPI "$QIAO" $SERVE --mpi --mpi-depth 2 -t "$HALF" --slots $((C / 2)))
  # shellcheck disable=SC2086
  d1=$(measure $MPI "$QIAO" $SERVE --mpi --mpi-depth 1 -t "$THREADS" --slots "$C")
  echo "$r $one $d2 $d1" | tee -a "$OUT/rounds" >&2
done
python3 - "$OUT/rounds" << 'PY'
import statistics, sys
rows = [list(map(float, l.split()))[1:] for l in open(sys.argv[1])]
for name, k in (("depth2", 1), ("depth1", 2)):
    ratios = [r[k] / r[0] for r in rows]
    print("%s / one process: median %.2f (rounds: %s)" % (name, statistics.median(ratios),
          ", ".join("%.2f" % x for x in ratios)))
PY
