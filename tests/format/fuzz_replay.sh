#!/bin/sh
# fuzz_replay.sh [SANITIZED]: replays every seed and kept crash in
# fuzz/corpus/<target>/ through build/fuzz-replay/replay_<target>; fails if a
# corpus folder has no target or no file, or a target no corpus folder. With
# SANITIZED=ON (an ASan+UBSan build) each replay program must carry the
# sanitizers, so the replay is checked by them, not merely run.
set -u
sanitized=${1:-OFF}
status=0
for target in $(sed -n 's/^qiao_fuzz_target(\([a-z_0-9]*\).*/\1/p' "$QIAO_SOURCE_DIR/fuzz/targets.cmake"); do
  [ -d "$QIAO_SOURCE_DIR/fuzz/corpus/$target" ] ||
    { echo "error: fuzz target $target has no corpus folder fuzz/corpus/$target" >&2; status=1; }
done
for dir in "$QIAO_SOURCE_DIR"/fuzz/corpus/*/; do
  target=$(basename "$dir")
  bin="$QIAO_BUILD_DIR/fuzz-replay/replay_$target"
  if [ ! -x "$bin" ]; then
    echo "error: no replay program for corpus folder $target ($bin)" >&2
    status=1
    continue
  fi
  if [ "$sanitized" = ON ]; then
    symbols=$(nm "$bin")
    for sym in __asan_init __ubsan_handle_; do
      echo "$symbols" | grep -q "$sym" ||
        { echo "error: $bin lacks $sym: not built with the sanitizers" >&2; status=1; }
    done
  fi
  files=$(find "$dir" -type f | sort)
  if [ -z "$files" ]; then
    echo "error: fuzz/corpus/$target is empty: nothing would be replayed" >&2
    status=1
    continue
  fi
  # shellcheck disable=SC2086
  if ! "$bin" $files; then
    echo "error: $target: a corpus file failed (see above)" >&2
    status=1
  fi
done
exit $status
