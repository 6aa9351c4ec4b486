#!/bin/sh
# run_test.sh COMMAND...: how CTest runs every test (cmake/QiaoArea.cmake).
# The shared folder is $QIAO_SHARED when ctest runs with it set, so that
# `QIAO_SHARED=/elsewhere ctest` really tests against /elsewhere, else the one
# configured at cmake time (QIAO_SHARED_DIR). A folder that does not exist
# fails the test here, loudly; a test that needs a file the folder lacks
# fails by itself (shared/README.md: never a silent skip).
QIAO_SHARED=${QIAO_SHARED:-$QIAO_SHARED_DEFAULT}
if [ -z "$QIAO_SHARED" ] || [ ! -d "$QIAO_SHARED" ]; then
  echo "run_test.sh: QIAO_SHARED='$QIAO_SHARED' is not a folder: point it at shared/ (see shared/README.md)" >&2
  exit 1
fi
export QIAO_SHARED
exec "$@"
