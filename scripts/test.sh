#!/usr/bin/env bash
# Runs every test: a clang-format check, a Release build (warnings are errors; the CUDA backend is
# compiled when nvcc is present), a short libFuzzer smoke run of each fuzz
# target (clang), then the whole CTest suite under AddressSanitizer and
# UndefinedBehaviorSanitizer. Reports (conformance JSON) land in build-asan/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
jobs=$(nproc)
export QIAO_SHARED="${QIAO_SHARED:-$(cd .. && pwd)/shared}"

echo "== clang-format check" >&2
if command -v clang-format >/dev/null && [ -d .git ]; then
  git ls-files '*.c' '*.h' '*.cu' '*.cuh' | xargs clang-format --dry-run -Werror
fi

echo "== Release build" >&2
# OpenCL explicitly ON (PoCL, from scripts/deps.sh): without it a machine
# lacking OpenCL would drop the backend and its certification silently.
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DQIAO_OPENCL=ON >/dev/null
cmake --build build -j"$jobs" >/dev/null
# The CUDA backend's tests run here, where it is built (the ASan build below has
# it off): loading, host-side argument checks, and with a GPU its kernels.
ctest --test-dir build -R '^cuda_' --output-on-failure >&2

echo "== libFuzzer smoke run" >&2
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQIAO_FUZZ=ON \
  -DQIAO_SANITIZE=ON -DQIAO_CUDA=OFF -DQIAO_OPENCL=OFF >/dev/null
targets=$(sed -n 's/^qiao_fuzz_target(\([a-z_0-9]*\).*/\1/p' fuzz/targets.cmake)
# shellcheck disable=SC2086
cmake --build build-fuzz -j"$jobs" --target $targets >/dev/null
fuzz/run-smoke.sh build-fuzz 15

echo "== ASan+UBSan build and tests" >&2
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DQIAO_SANITIZE=ON -DQIAO_CUDA=OFF \
  -DQIAO_OPENCL=ON >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null
set -o pipefail
ctest --test-dir build-asan -j"$jobs" --output-on-failure --timeout 900 2>&1 | tee build-asan/ctest.log
# Skipped tests (exit 77: a processor without a kernel set) are listed by
# ctest as "Not Run ... Skipped" and in this summary; they never count as passes.
grep -E "\*\*\*Skipped|Not Run" build-asan/ctest.log >&2 || true
