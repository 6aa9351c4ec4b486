#!/bin/sh
# --mpi with a --split inside a rank (issue 11: "each rank may itself use any
# backend or a --split"), on stories260K over 2 ranks (mpirun's MPMD form
# gives each rank its own flags): rank 0 splits its layers 0-1 (its share,
# with the output, balanced by weight bytes) over two cpu stages, rank 1 its
# layers 2-4 over cpu and opencl (PoCL in CI), or by memory over the two
# devices of the small-memory test plugin (the second reports 3x the
# first's: 1 + 2 layers); `run` gives the greedy ids of one process, `serve`
# llama2.c's greedy text. A --split with layer ranges, or with more devices
# than the rank has layers, is refused naming it. Skipped (77) without an
# OpenCL device.
# Usage: test_mpi_split.sh MPIRUN SMALLMEM_PLUGIN
set -eu
MPIRUN="$1"
SMALLMEM="$2"
TEST_NAME=mpi_split
. "$(dirname "$0")/serve_lib.sh"
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
one=$("$QIAO_BIN" run -m "$M" -p Once --temp 0 -n 60 --ids 2> "$T/log") || fail "run failed"
# shellcheck disable=SC2086
two=$(mpi -np 1 "$QIAO_BIN" $RUN --split cpu,cpu : -np 1 "$QIAO_BIN" $RUN --split cpu,opencl \
  2> "$T/log") || fail "2-rank run with --split in each rank failed"
[ "$one" = "$two" ] || fail "2-rank ids with --split differ: $two vs $one"
grep -q "^MPI rank 1: layers on cpu:0 (2-3), opencl:0 (4-4)$" "$T/log" ||
  fail "rank 1 did not place layers 2-4 on cpu and opencl"
grep -q "\[cpu+cpu+external," "$T/log" || fail "rank 0 did not split its layers over two cpu stages"
# shellcheck disable=SC2086
two=$(QIAO_TEST_DEVICE_MEMORY=67108864 mpi -x QIAO_TEST_DEVICE_MEMORY -np 1 "$QIAO_BIN" $RUN : \
  -np 1 "$QIAO_BIN" $RUN --split "$SMALLMEM:0,$SMALLMEM:1" --split-by memory 2> "$T/log") ||
  fail "2-rank run with --split-by memory in rank 1 failed: $(tail -n 5 "$T/log")"
[ "$one" = "$two" ] || fail "2-rank ids with --split-by memory differ: $two vs $one"
grep -q "^MPI rank 1: layers on smallmem:0 (2-2), smallmem:1 (3-4)$" "$T/log" ||
  fail "rank 1 did not place its layers 2-4 by memory (1:3): $(grep 'MPI rank 1' "$T/log")"

# 2. Refusals, naming the split: layer ranges; more devices than layers.
code=0
# shellcheck disable=SC2086
mpi -np 2 "$QIAO_BIN" $RUN --split cpu:0-1,cpu:2-2 > /dev/null 2> "$T/log" || code=$?
[ "$code" -ne 0 ] && [ "$code" -ne 124 ] || fail "--split with ranges: exit code $code"
grep -q 'error: rank .: --mpi with --split: "cpu:0-1": name devices without layer ranges' \
  "$T/log" || fail "--split with ranges: no error naming it"
code=0
# shellcheck disable=SC2086
mpi -np 2 "$QIAO_BIN" $RUN --split cpu,cpu,cpu > /dev/null 2> "$T/log" || code=$?
[ "$code" -ne 0 ] && [ "$code" -ne 124 ] || fail "--split of 3 devices for 2 layers: exit $code"
grep -q "error: rank 0: --mpi: rank 0 has 2 layers (0-1) for the 3 devices of --split" "$T/log" ||
  fail "--split of 3 devices for 2 layers: no error naming it"

# 3. serve: rank 1 splits its layers over cpu and opencl; llama2.c's text.
llama2c_text
SERVE="serve -m $M --mpi --port 0 -t 1 --slots 2 --grace 2"
# shellcheck disable=SC2086
"$MPIRUN" --allow-run-as-root --oversubscribe -x ASAN_OPTIONS \
  -np 1 "$QIAO_BIN" $SERVE : -np 1 "$QIAO_BIN" $SERVE --split cpu,opencl > "$T/log" 2>&1 &
JOB=$!
# Ready: rank 0 listens and has opened its replicas; rank 1 placed its layers.
wait_ready "^MPI rank 1: layers on"
grep -q "^MPI rank 1: layers on cpu:0 (2-3), opencl:0 (4-4)$" "$T/log" ||
  fail "serve: rank 1 did not place layers 2-4 on cpu and opencl"
complete "$GREEDY"
[ "$STATUS" = 200 ] || fail "completion: $STATUS $(cat "$T/body")"
check_text "$T/body" "serve --mpi with --split in rank 1"
kill -TERM "$(rank_pid 0)"
wait_end "$JOB" 30
JOB=""
[ "$CODE" = 0 ] || fail "serve --mpi: mpirun exit code $CODE after SIGTERM"
echo "ok"
