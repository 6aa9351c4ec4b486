#!/bin/sh
# examples_skeleton_backend: build examples/skeleton-backend as a separate
# CMake project against qiao's installed headers (warnings as errors), check
# it exports only the entry point, load it with `qiao devices`, and run
# conformance on it: it claims nothing, so no op is certified, and every
# level passes (models with fallback).
set -e
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$QIAO_BUILD_DIR" --prefix "$work/prefix" --component Unspecified >/dev/null
cmake -S "$QIAO_SOURCE_DIR/examples/skeleton-backend" -B "$work/build" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="-Werror" >/dev/null
cmake --build "$work/build" >/dev/null
plugin="$work/build/libqiao-skeleton.so"
test -f "$plugin"
exported=$(nm -D --defined-only "$plugin" | awk '$2 == "T" {print $3}')
[ "$exported" = "qiao_device_get_api" ] || { echo "exports: $exported"; exit 1; }
"$QIAO_BIN" devices --backend "$plugin" | tee "$work/devices.txt"
grep -q "skeleton" "$work/devices.txt"
QIAO_BACKEND_PATH="$work/build" "$QIAO_BIN" devices --backend skeleton >/dev/null
# every level: nothing claimed, nothing certified, nothing failed. The ABI
# level expects UNSUPPORTED from the argument checks of unclaimed ops, and the
# models level skips every model (they all need unclaimed ops) and runs it
# with fallback (device-abi.md §12.3, §12.4).
"$QIAO_BIN" conformance --backend "$plugin" -o "$work/report.json" > "$work/conf.txt" 2>&1 ||
  { cat "$work/conf.txt"; echo "the skeleton is not conformant"; exit 1; }
grep -E "^  (ops|abi|models) |^result:" "$work/conf.txt"
grep -q '"certified"' "$work/report.json" && { echo "the skeleton certified an op"; exit 1; }
grep -q "result: qiao-conformant 1\.[0-9]*: ops+abi+models (models needing unclaimed ops run with fallback)" \
  "$work/conf.txt" || { echo "no conformant statement naming the fallback"; exit 1; }
python3 - "$work/report.json" <<'PY' || exit 1
import json, sys
r = json.load(open(sys.argv[1]))
models = r["models"]
assert len(models) == 6, models
for m in models:
    assert "does not support" in m.get("skipped", ""), m
    assert m["fallback"] is True and m["result"] == "pass with fallback", m
assert all(c["result"] == "pass" for c in r["abi"])
print("models skipped and run with fallback:", ", ".join(m["model"] for m in models))
PY
# "not defined in this ABI version": the same words and mark in qiao devices
# and in conformance
grep -q "\. not defined in this ABI version" "$work/conf.txt" || { echo "conformance legend"; exit 1; }
grep -q "\. not defined in this ABI version" "$work/devices.txt" || { echo "devices legend"; exit 1; }
echo "skeleton backend built from the installed header alone; claims nothing; conformant"
