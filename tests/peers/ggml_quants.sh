#!/bin/sh
# ggml_quants.sh OUT_DIR: builds llama.cpp's reference quantizers (ggml's
# quantize_row_*_ref and dequantize_row_*) into one small driver program,
# OUT_DIR/ggml-quant-ref, and prints its path on stdout. For tests that
# compare qiao's quantizers with GGUF's, byte for byte.
#
# Usage from a test (C: popen, or tests/peers/ggml_ref.h; sh: command
# substitution):
#   ref=$(sh "$QIAO_SOURCE_DIR/tests/peers/ggml_quants.sh" "$QIAO_BUILD_DIR/peers") || exit 1
#   "$ref" quantize q8_0 < rows.f32 > blocks.bin    # rows: little-endian f32
#   "$ref" dequantize q4_K < blocks.bin > rows.f32
#   "$ref" list                                      # TYPE BLOCK_ELEMS BLOCK_BYTES
# Types: q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K q8_K (q8_K:
# quantize only) iq4_nl iq4_xs. The input must be whole blocks (32 values;
# 256 for *_K and iq4_xs).
#
# The source is $QIAO_SHARED/peers/llama.cpp-src.tar.gz (shared/README.md):
# ggml/src/ggml-quants.c and the headers it includes are extracted into
# OUT_DIR (a build folder: never the repository) and compiled with $CC (cc)
# in strict binary32 arithmetic (-O2 -ffp-contract=off: each operation
# rounded, as docs/spec/format.md §4.2 and ggml's C reference assume). A
# missing archive or a failed build exits 1, loudly: a test never skips
# because the peer is absent. Rebuilt only when the archive or the driver is
# newer than the program. Concurrent callers are serialized with a lock
# folder.
set -eu
out=${1:?usage: ggml_quants.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
shared=${QIAO_SHARED:-$here/../../../shared}
tarball=$shared/peers/llama.cpp-src.tar.gz
driver=$here/ggml_quant_ref.c
prog=$out/ggml-quant-ref
[ -f "$tarball" ] || { echo "ggml_quants.sh: $tarball is missing (see shared/README.md)" >&2; exit 1; }
mkdir -p "$out"
lock=$out/ggml-quant-ref.lock
tries=0
until mkdir "$lock" 2> /dev/null; do
  tries=$((tries + 1))
  [ $tries -lt 600 ] || { echo "ggml_quants.sh: $lock held for 10 minutes" >&2; exit 1; }
  sleep 1
done
trap 'rmdir "$lock"' EXIT
if [ ! -x "$prog" ] || [ "$tarball" -nt "$prog" ] || [ "$driver" -nt "$prog" ]; then
  src=$out/llama.cpp-quants
  rm -rf "$src"
  mkdir -p "$src"
  tar -xzf "$tarball" -C "$src" --wildcards 'llama.cpp/ggml/include/*.h' \
    'llama.cpp/ggml/src/ggml-quants.c' 'llama.cpp/ggml/src/ggml-quants.h' \
    'llama.cpp/ggml/src/ggml-common.h' 'llama.cpp/ggml/src/ggml-impl.h' \
    'llama.cpp/ggml/src/ggml-cpu/ggml-cpu-impl.h' >&2 ||
    { echo "ggml_quants.sh: cannot extract ggml-quants.c from $tarball" >&2; exit 1; }
  g=$src/llama.cpp/ggml
  ${CC:-cc} -O2 -std=gnu11 -ffp-contract=off -fno-fast-math -w -I"$g/src" -I"$g/include" \
    -o "$prog.tmp" "$driver" "$g/src/ggml-quants.c" -lm >&2 ||
    { echo "ggml_quants.sh: building $prog failed" >&2; exit 1; }
  mv "$prog.tmp" "$prog"
fi
echo "$prog"
