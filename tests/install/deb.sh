#!/bin/sh
# install_deb: the Debian package, without touching the real system. CPack
# builds qiao_<version>_<arch>.deb from this build folder; its metadata must
# declare the libraries' packages and the conffile; `dpkg -x` unpacks it into
# a temporary root where qiao runs and finds its plugins, the embed example
# builds against it with pkg-config and equals llama2.c, the unit carries its
# hardening and its ExecStart line serves stories260K with qiao.conf's
# settings, and postinst creates the system user (with stand-ins for
# useradd and systemctl). packaging/README.md describes the package.
set -eu
: "${QIAO_BUILD_DIR:?}" "${QIAO_SOURCE_DIR:?}" "${QIAO_SHARED:?}"
R="$QIAO_SHARED/reference/stories260K/stories260K_greedy_prompt_64.txt"
MODEL="$QIAO_SHARED/models/stories260K/stories260K.gguf"
if [ ! -f "$R" ] || [ ! -f "$MODEL" ]; then echo "FAIL: missing $R or $MODEL" >&2; exit 1; fi
T=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 1. Build the package.
(cd "$QIAO_BUILD_DIR" && cpack -G DEB -B "$T/pkg" > "$T/cpack.log" 2>&1) ||
  fail "cpack: $(tail -n 20 "$T/cpack.log")"
version=$(sed -n 's/^#define QIAO_VERSION_STRING "\(.*\)"/\1/p' "$QIAO_SOURCE_DIR/include/qiao/version.h")
deb="$T/pkg/qiao_${version}_$(dpkg --print-architecture).deb"
[ -f "$deb" ] || fail "no $deb: $(ls "$T/pkg")"

# 2. Its metadata: dependencies from dpkg-shlibdeps, the conffile, the scripts.
depends=$(dpkg-deb -f "$deb" Depends)
for p in libc6 libjson-c5 libpcre2-8-0 libutf8proc2 libxxhash0 libmicrohttpd12 passwd; do
  echo "$depends" | grep -q "\\b$p\\b" || fail "Depends lacks $p: $depends"
done
dpkg-deb -e "$deb" "$T/control"
[ "$(cat "$T/control/conffiles")" = "/etc/qiao/qiao.conf" ] || fail "conffiles: $(cat "$T/control/conffiles")"
for s in postinst prerm postrm; do
  [ -x "$T/control/$s" ] || fail "$s missing or not executable"
  sh -n "$T/control/$s" || fail "$s: syntax"
done

# 3. Unpacked into a clean root: the command runs and finds the root's plugins.
dpkg -x "$deb" "$T/root"
U="$T/root/usr"
[ -f "$T/root/etc/qiao/qiao.conf" ] || fail "no /etc/qiao/qiao.conf"
[ -e "$T/root/usr/etc" ] && fail "/usr/etc left in the package"
[ "$("$U/bin/qiao" --version)" = "qiao $version" ] || fail "qiao --version: $("$U/bin/qiao" --version)"
"$U/bin/qiao" devices > "$T/devices" 2>&1 || fail "qiao devices: $(cat "$T/devices")"
grep -q "($U/bin/../lib/qiao/libqiao-cpu.so)" "$T/devices" || fail "plugins not found: $(cat "$T/devices")"

# 4. The embed example against the unpacked library, with pkg-config: the
# package's qiao.pc names /usr (so a system install gets no -I/usr/include);
# --define-prefix points it at the unpacked root.
grep -qx "prefix=/usr" "$U/lib/pkgconfig/qiao.pc" || fail "qiao.pc: $(head -n 1 "$U/lib/pkgconfig/qiao.pc")"
flags=$(PKG_CONFIG_PATH="$U/lib/pkgconfig" pkg-config --define-prefix --cflags --libs qiao | sed "s/ *$//")
[ "$flags" = "-I$U/include -L$U/lib -lqiao" ] || fail "pkg-config --define-prefix: $flags"
# shellcheck disable=SC2086
cc -std=c17 -Wall -Wextra -Werror ${QIAO_SANITIZE_FLAGS:-} "$QIAO_SOURCE_DIR/examples/embed/embed.c" \
  $flags -o "$T/embed"
LD_LIBRARY_PATH="$U/lib" "$T/embed" "$MODEL" "Once upon a time" 60 > "$T/out" 2> "$T/err" ||
  fail "embed: $(cat "$T/err")"
[ "$(sed -n 's/^ids: //p' "$T/err")" = "$(sed -n 3p "$R" | sed 's/ *$//')" ] || fail "embed ids: $(cat "$T/err")"
tail -n +5 "$R" > "$T/expect"
{ printf 'Once upon a time'; cat "$T/out"; } | cmp -s - "$T/expect" || fail "embed text: $(cat "$T/out")"

# 4b. The package's Python bindings load the package's library and plugins.
if [ -n "${QIAO_TEST_PRELOAD:-}" ]; then export ASAN_OPTIONS=detect_leaks=0; fi
PYTHONPATH="$U/lib/python3/dist-packages" PYTHONDONTWRITEBYTECODE=1 LD_PRELOAD="${QIAO_TEST_PRELOAD:-}" \
  python3 -c '
import os, sys, qiao
usr, model, want = sys.argv[1], sys.argv[2], [int(t) for t in sys.argv[3].split()]
assert os.path.realpath(qiao._lib._name) == os.path.realpath(usr + "/lib/libqiao.so.0"), qiao._lib._name
assert dict(qiao.backends())["cpu"] == usr + "/lib/qiao/libqiao-cpu.so", qiao.backends()
got = [t.id for t in qiao.Engine(qiao.Model(model)).generate("Once upon a time", 60)]
assert got == want, got
' "$U" "$MODEL" "$(sed -n 3p "$R")" || fail "the Python bindings of the package"

# 5. The unit: its own user, the hardening, the settings file.
unit="$U/lib/systemd/system/qiao.service"
for line in "User=qiao" "Group=qiao" "NoNewPrivileges=yes" "ProtectSystem=strict" "ProtectHome=yes" \
            "PrivateTmp=yes" "CapabilityBoundingSet=" "EnvironmentFile=/etc/qiao/qiao.conf" \
            "StateDirectory=qiao" "WantedBy=multi-user.target"; do
  grep -qx "$line" "$unit" || fail "qiao.service lacks $line"
done
# systemd's own parser, where present (every complaint fails, except that
# /usr/bin/qiao is not installed on this machine).
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze verify "$unit" > "$T/verify" 2>&1 || true
  grep -v "Command /usr/bin/qiao is not executable" "$T/verify" > "$T/verify.other" || true
  [ -s "$T/verify.other" ] && fail "systemd-analyze verify: $(cat "$T/verify.other")"
fi
# Its ExecStart, with the shipped settings but stories260K and any free port, serves.
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
case "$exec_start" in /usr/bin/qiao\ serve\ *) ;; *) fail "ExecStart: $exec_start" ;; esac
(
  set -a
  # shellcheck disable=SC1091
  . "$T/root/etc/qiao/qiao.conf"
  set +a
  export QIAO_MODEL="$MODEL" QIAO_PORT=0
  eval "exec $U/bin/qiao ${exec_start#/usr/bin/qiao}"
) > "$T/serve.out" 2> "$T/serve.err" &
server=$!
url=""
for _ in $(seq 1 300); do
  url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$T/serve.err")
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || fail "qiao serve exited: $(cat "$T/serve.err")"
  sleep 0.1
done
[ -n "$url" ] || fail "qiao serve did not listen: $(cat "$T/serve.err")"
case "$url" in http://127.0.0.1:*) ;; *) fail "not on qiao.conf's host: $url" ;; esac
health=$(python3 -c '
import sys, time, urllib.request, urllib.error
for _ in range(300):  # 503 until the model is loaded
    try:
        print(urllib.request.urlopen(sys.argv[1] + "/health", timeout=5).status); break
    except urllib.error.HTTPError as e:
        time.sleep(0.1)
' "$url")
[ "$health" = "200" ] || fail "GET /health: $health"
kill -TERM "$server"
wait "$server" || fail "qiao serve did not exit cleanly on SIGTERM: $(tail -n 5 "$T/serve.err")"
server=""

# 6. postinst with stand-ins: it creates the system user qiao.
mkdir "$T/stubs"
for c in useradd ldconfig systemctl; do
  printf '#!/bin/sh\necho "%s $*" >> "%s/calls"\n' "$c" "$T" > "$T/stubs/$c"
done
printf '#!/bin/sh\nexit 2\n' > "$T/stubs/getent" # no such user yet
chmod +x "$T/stubs/"*
PATH="$T/stubs:$PATH" sh "$T/control/postinst" configure || fail "postinst failed"
grep -q "^useradd --system --user-group .* qiao$" "$T/calls" || fail "postinst: $(cat "$T/calls")"
echo "qiao_${version}: package metadata, unpacked command, plugins, embed example, service line and postinst ok"
