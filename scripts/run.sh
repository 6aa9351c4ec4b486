#!/usr/bin/env bash
# Builds qiao (Release) and generates text with the bundled default model,
# stories260K from ../shared (or $QIAO_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
./build/qiao run -p "Once upon a time" -n 128 "$@"
