#!/bin/sh
# Replays every seed and kept crash in fuzz/corpus/<target>/ through
# build/fuzz-replay/replay_<target>; fails if a corpus folder has no target.
set -u
status=0
for dir in "$QIAO_SOURCE_DIR"/fuzz/corpus/*/; do
  target=$(basename "$dir")
  bin="$QIAO_BUILD_DIR/fuzz-replay/replay_$target"
  if [ ! -x "$bin" ]; then
    echo "error: no replay program for corpus folder $target ($bin)" >&2
    status=1
    continue
  fi
  files=$(find "$dir" -type f | sort)
  [ -z "$files" ] && continue
  # shellcheck disable=SC2086
  if ! "$bin" $files; then
    echo "error: $target: a corpus file failed (see above)" >&2
    status=1
  fi
done
exit $status
