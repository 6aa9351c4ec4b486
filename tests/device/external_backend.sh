#!/bin/sh
# device_external_backend_build: install qiao's headers to a temporary prefix,
# configure and build examples/external-backend as a separate CMake project
# against them, then load the plugin with `qiao devices` and certify its ops.
set -e
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$QIAO_BUILD_DIR" --prefix "$work/prefix" --component Unspecified >/dev/null
test -f "$work/prefix/include/qiao/device.h"
# The example must not see the source tree's headers: only the installed ones.
cmake -S "$QIAO_SOURCE_DIR/examples/external-backend" -B "$work/build" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DBACKEND_SOURCES="$QIAO_SOURCE_DIR/backends/cpu" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="${QIAO_EXAMPLE_CFLAGS}" >/dev/null
cmake --build "$work/build" -j2 >/dev/null
plugin="$work/build/libqiao-external.so"
test -f "$plugin"
# exactly one exported function symbol: the entry point
exported=$(nm -D --defined-only "$plugin" | awk '$2 == "T" {print $3}')
[ "$exported" = "qiao_device_get_api" ] || { echo "exports: $exported"; exit 1; }
"$QIAO_BIN" devices --backend "$plugin" | tee "$work/devices.txt"
grep -q "$plugin" "$work/devices.txt"
grep -q "matmul" "$work/devices.txt"
# and by name through QIAO_BACKEND_PATH
QIAO_BACKEND_PATH="$work/build" "$QIAO_BIN" devices --backend external >/dev/null
"$QIAO_BIN" conformance --backend "$plugin" --level ops --op matmul,attention,rope --quiet
echo "external backend built from the installed header alone and certified"
