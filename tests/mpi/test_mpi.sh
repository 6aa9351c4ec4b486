#!/bin/sh
# qiao --mpi under mpirun on localhost (oversubscribed; as root in CI), on
# stories260K: 2 ranks give logits byte-identical to one process, 3 ranks the
# same greedy ids, chat the same replies, bench reports the placement and
# runs micro-batches (--mpi-depth); -t above a rank's CPUs warns; a rank that dies ends the job, with no hang: at once by
# mpirun's default, or, when mpirun lets the job go on
# (--mca orte_abort_on_non_zero_status 0), with rank 0's error naming the rank.
# Usage: test_mpi.sh MPIRUN
set -eu
: "${QIAO_BIN:?}" "${QIAO_SHARED:?}"
MPIRUN="$1"
M="$QIAO_SHARED/models/stories260K/stories260K.gguf"
T="${TMPDIR:-/tmp}/qiao_mpi_$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
fail() {
  echo "FAIL: $*" >&2
  [ -s "$T/err" ] && cat "$T/err" >&2
  exit 1
}
[ -f "$M" ] || fail "missing $M"
mpi() {
  np=$1
  shift
  timeout 120 "$MPIRUN" --allow-run-as-root --oversubscribe -np "$np" "$@"
}

"$QIAO_BIN" logits -m "$M" --ids "1 403 407 261 378" -o "$T/one.f32" 2> "$T/err" ||
  fail "logits failed"
mpi 2 "$QIAO_BIN" logits -m "$M" --ids "1 403 407 261 378" -o "$T/two.f32" --mpi -t 1 \
  2> "$T/err" || fail "2-rank logits failed"
cmp -s "$T/one.f32" "$T/two.f32" || fail "2-rank logits differ from one process"

one=$("$QIAO_BIN" run -m "$M" -p "Once upon a time" --temp 0 -n 60 --ids 2> "$T/err") ||
  fail "run failed"
three=$(mpi 3 "$QIAO_BIN" run -m "$M" -p "Once upon a time" --temp 0 -n 60 --ids --mpi -t 1 \
  2> "$T/err") || fail "3-rank run failed"
[ "$one" = "$three" ] || fail "3-rank ids differ: $three vs $one"

# chat over 2 ranks (stdin reaches rank 0): the same replies as one process.
printf 'Once upon a time\nThe end\n' | "$QIAO_BIN" chat -m "$M" --temp 0 -n 30 > "$T/chat1" \
  2> "$T/err" || fail "chat failed"
printf 'Once upon a time\nThe end\n' | mpi 2 "$QIAO_BIN" chat -m "$M" --temp 0 -n 30 --mpi -t 1 \
  > "$T/chat2" 2> "$T/err" || fail "2-rank chat failed"
[ -s "$T/chat1" ] && cmp -s "$T/chat1" "$T/chat2" ||
  fail "2-rank chat differs: $(cat "$T/chat2") vs $(cat "$T/chat1")"

# bench over 2 and 3 ranks: its placement names the external stages and the
# bytes per token that cross to them. The shares are balanced by weight
# bytes, rank 0's output (131 KB) counted: stories260K's layers are 181 KB
# each, so 2 ranks hold 2 + 3 layers (493 + 543 KB), 3 ranks 1 + 2 + 2.
mpi 2 "$QIAO_BIN" bench -m "$M" -p 16 -n 8 --reps 1 --mpi -t 1 --json > "$T/bench" 2> "$T/err" ||
  fail "2-rank bench failed"
grep -q '"backend": "cpu+external".*"first_layer": 0, "last_layer": 1, .*"boundary_bytes_per_token": 256}, {"backend": "external", .*"first_layer": 2, "last_layer": 4, .*"boundary_bytes_per_token": 256}\]}' \
  "$T/bench" || fail "2-rank bench: no placement: $(cat "$T/bench")"
mpi 3 "$QIAO_BIN" bench -m "$M" -p 16 -n 8 --reps 1 --mpi -t 1 --json > "$T/bench" 2> "$T/err" ||
  fail "3-rank bench failed"
grep -q '"first_layer": 0, "last_layer": 0, .*"first_layer": 1, "last_layer": 2, .*"first_layer": 3, "last_layer": 4, ' \
  "$T/bench" || fail "3-rank bench: not the balanced placement: $(cat "$T/bench")"

# bench's micro-batches: --batch 4 --mpi-depth 2 decodes two groups of 2 on
# two engines (one MPI channel each), their passes in flight together.
mpi 2 "$QIAO_BIN" bench -m "$M" -p 16 -n 8 --reps 1 --mpi -t 1 --batch 4 --mpi-depth 2 --json \
  > "$T/bench" 2> "$T/err" || fail "2-rank bench with --mpi-depth 2 failed"
grep -q '"batch": 4, "micro_batches": 2,' "$T/bench" ||
  fail "bench --mpi-depth 2: not 2 micro-batches: $(cat "$T/bench")"
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); sys.exit(r["decode_tokens_per_s"] <= 0)' \
  "$T/bench" || fail "bench --mpi-depth 2: no decode speed: $(cat "$T/bench")"
code=0
"$QIAO_BIN" bench -m "$M" -p 16 -n 8 --batch 4 --mpi-depth 2 > /dev/null 2> "$T/err" || code=$?
[ "$code" -ne 0 ] && grep -q "error: bench: --mpi-depth 2 needs --mpi" "$T/err" ||
  fail "bench --mpi-depth without --mpi accepted"

# Rank 1 dies after 3 passes (a test hook of src/pipeline).
code=0
QIAO_PIPELINE_TEST_DIE_AFTER=3 mpi 2 -x QIAO_PIPELINE_TEST_DIE_AFTER "$QIAO_BIN" run -m "$M" \
  -p "Once upon a time" --temp 0 -n 60 --ids --mpi -t 1 > /dev/null 2> "$T/err" || code=$?
[ "$code" -ne 0 ] && [ "$code" -ne 124 ] || fail "a dead rank: exit code $code (124: a hang)"
code=0
QIAO_PIPELINE_TEST_DIE_AFTER=3 QIAO_MPI_TIMEOUT_S=5 mpi 2 --mca orte_abort_on_non_zero_status 0 \
  -x QIAO_PIPELINE_TEST_DIE_AFTER -x QIAO_MPI_TIMEOUT_S "$QIAO_BIN" run -m "$M" \
  -p "Once upon a time" --temp 0 -n 60 --ids --mpi -t 1 > /dev/null 2> "$T/err" || code=$?
[ "$code" -ne 0 ] && [ "$code" -ne 124 ] || fail "a dead rank, job kept: exit code $code"
grep -q "^error: .*MPI rank 1 (layers 2-4) did not answer within 5 s" "$T/err" ||
  fail "rank 0 did not name the dead rank"

# More threads than a rank may use: a warning naming --bind-to none (the
# ranges are then refused, so the 200 threads never start).
code=0
mpi 2 "$QIAO_BIN" run -m "$M" -p hi -n 1 --mpi -t 200 --split cpu:0-0,cpu:1-1 > /dev/null \
  2> "$T/err" || code=$?
[ "$code" -ne 0 ] && [ "$code" -ne 124 ] || fail "-t 200 with a --split with ranges: exit $code"
grep -q "^qiao: warning: MPI rank 0 may run on [0-9]* CPUs* but -t asks for 200 threads: .*--bind-to none" \
  "$T/err" || fail "-t 200: no warning about the CPUs a rank may use"

# One rank is refused.
code=0
mpi 1 "$QIAO_BIN" run -m "$M" -p hi -n 2 --mpi > /dev/null 2> "$T/err" || code=$?
[ "$code" -ne 0 ] && grep -q "error: --mpi: 1 rank" "$T/err" || fail "1 rank accepted"
echo "ok"
