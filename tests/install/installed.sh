#!/bin/sh
# install_embed: `cmake --install` into a temporary prefix, then use only
# what it put there. examples/embed is built out of tree twice, with
# pkg-config and with find_package(qiao), and run on stories260K: its ids and
# text must equal llama2.c's. The installed qiao finds its plugins in
# lib/qiao, the installed Python package finds libqiao.so and those plugins,
# and `qiao --version` agrees with the library's version. With a model that
# has a chat template (made by MAKE_CHAT_MODEL, tests/engine) the example
# chats, and its reply equals the command's template | tokenize | run.
#
# Environment (tests/install/CMakeLists.txt): QIAO_BUILD_DIR, QIAO_SOURCE_DIR,
# QIAO_SHARED; under sanitizers QIAO_SANITIZE_FLAGS (the example must link the
# same runtime) and QIAO_TEST_PRELOAD (the sanitizer runtime Python must load
# first).
set -eu
: "${QIAO_BUILD_DIR:?}" "${QIAO_SOURCE_DIR:?}" "${QIAO_SHARED:?}"
MAKE_CHAT_MODEL="${1:?usage: installed.sh MAKE_CHAT_MODEL}"
R="$QIAO_SHARED/reference/stories260K/stories260K_greedy_prompt_64.txt"
MODEL="$QIAO_SHARED/models/stories260K/stories260K.gguf"
if [ ! -f "$R" ] || [ ! -f "$MODEL" ]; then echo "FAIL: missing $R or $MODEL" >&2; exit 1; fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$QIAO_BUILD_DIR" --prefix "$T/prefix" >/dev/null
P="$T/prefix"
for f in bin/qiao lib/libqiao.so lib/qiao/libqiao-cpu.so include/qiao/engine.h \
         include/qiao/version.h lib/pkgconfig/qiao.pc lib/cmake/qiao/qiaoConfig.cmake \
         lib/cmake/qiao/qiaoConfigVersion.cmake lib/python3/dist-packages/qiao/__init__.py; do
  [ -e "$P/$f" ] || fail "not installed: $f"
done
soname=$(readelf -d "$P/lib/libqiao.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
[ -e "$P/lib/$soname" ] || fail "soname $soname is not installed"

# The reference: llama2.c's ids, and its text (the prompt echoed, then the continuation).
expect_ids=$(sed -n 3p "$R" | sed 's/ *$//')
tail -n +5 "$R" > "$T/expect.txt"
check_run() { # $1 = what, $2 = stdout file, $3 = stderr file
  got_ids=$(sed -n 's/^ids: //p' "$3")
  [ "$got_ids" = "$expect_ids" ] || fail "$1: ids differ from llama2.c: $got_ids"
  { printf 'Once upon a time'; cat "$2"; } > "$T/got.txt"
  cmp -s "$T/got.txt" "$T/expect.txt" || fail "$1: text differs from llama2.c: $(cat "$T/got.txt")"
}

# 1. pkg-config, a plain compiler call, nothing from the source tree.
export PKG_CONFIG_PATH="$P/lib/pkgconfig"
[ "$(pkg-config --modversion qiao)" = "$("$P/bin/qiao" --version | sed 's/^qiao //')" ] ||
  fail "qiao --version differs from qiao.pc's version"
# shellcheck disable=SC2046,SC2086
cc -std=c17 -Wall -Wextra -Werror ${QIAO_SANITIZE_FLAGS:-} "$QIAO_SOURCE_DIR/examples/embed/embed.c" \
  $(pkg-config --cflags --libs qiao) -o "$T/embed"
LD_LIBRARY_PATH="$P/lib" "$T/embed" "$MODEL" "Once upon a time" 60 > "$T/out" 2> "$T/err" ||
  fail "embed: $(cat "$T/err")"
check_run "embed (pkg-config)" "$T/out" "$T/err"
grep -q "running with $(pkg-config --modversion qiao)" "$T/err" || fail "embed: version line"

# 1b. With a chat template, the example sends the prompt as a user message:
# its greedy ids equal `qiao run` on the ids of `qiao template | qiao tokenize`.
"$MAKE_CHAT_MODEL" "$T/chat.gguf" >/dev/null || fail "make_chat_model"
LD_LIBRARY_PATH="$P/lib" "$T/embed" "$T/chat.gguf" 'Hello "there".' 8 > "$T/chat.out" 2> "$T/chat.err" ||
  fail "embed (chat): $(cat "$T/chat.err")"
printf '[{"role":"user","content":"Hello \\"there\\"."}]' > "$T/messages.json"
"$P/bin/qiao" template -m "$T/chat.gguf" --messages "$T/messages.json" --add-generation-prompt > "$T/rendered"
ids=$("$P/bin/qiao" tokenize -m "$T/chat.gguf" -f "$T/rendered" --no-bos)
want=$("$P/bin/qiao" run -m "$T/chat.gguf" --prompt-ids "$ids" --temp 0 -n 8 -t 1 --ids 2>/dev/null)
[ "$(sed -n 's/^ids: //p' "$T/chat.err")" = "$want" ] || fail "embed (chat): $(cat "$T/chat.err"), want $want"

# 2. find_package(qiao) from a CMake project.
cmake -S "$QIAO_SOURCE_DIR/examples/embed" -B "$T/cmake-build" -DCMAKE_PREFIX_PATH="$P" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="-Werror ${QIAO_SANITIZE_FLAGS:-}" >/dev/null
cmake --build "$T/cmake-build" >/dev/null
"$T/cmake-build/embed" "$MODEL" "Once upon a time" 60 > "$T/out2" 2> "$T/err2" ||
  fail "embed (find_package): $(cat "$T/err2")"
check_run "embed (find_package)" "$T/out2" "$T/err2"

# 3. The installed command finds the installed plugins in lib/qiao.
"$P/bin/qiao" devices > "$T/devices" 2>&1 || fail "qiao devices: $(cat "$T/devices")"
grep -q "^backend cpu .*($P/bin/../lib/qiao/libqiao-cpu.so)" "$T/devices" ||
  fail "installed qiao does not find lib/qiao/libqiao-cpu.so: $(cat "$T/devices")"

# 4. The installed Python package finds the installed library and, beside it, the plugins.
if [ -n "${QIAO_TEST_PRELOAD:-}" ]; then export ASAN_OPTIONS=detect_leaks=0; fi
PYTHONPATH="$P/lib/python3/dist-packages" LD_PRELOAD="${QIAO_TEST_PRELOAD:-}" python3 -c '
import os, sys, qiao
prefix = sys.argv[1]
assert os.path.realpath(qiao._lib._name).startswith(os.path.realpath(prefix)), qiao._lib._name
found = dict(qiao.backends())
assert found.get("cpu") == os.path.join(prefix, "lib", "qiao", "libqiao-cpu.so"), found
print("python: qiao", qiao.__version__, "from", qiao._lib._name, "plugins", sorted(found))
' "$P" || fail "installed Python package"
echo "installed tree: embed example (pkg-config and CMake) equals llama2.c; plugins and Python found"
