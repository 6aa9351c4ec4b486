#!/bin/sh
# device_cli_devices: `qiao devices` lists the built-in backend and the
# plugins on $QIAO_BACKEND_PATH (broken ones with the reason they are
# refused); `--backend` on devices and conformance reports refusals clearly.
# $1: the folder of the test plugins.
plugins=$1
fail() { echo "FAIL: $*"; exit 1; }
out=$("$QIAO_BIN" devices) || fail "qiao devices exited $?"
echo "$out" | grep -q "^backend cpu .*(built-in), built for device ABI 1\." || fail "no built-in cpu"
echo "$out" | grep -q "capabilities" || fail "no capability table"
echo "$out" | grep -Eq "^ +matmul +yes" || fail "cpu does not list matmul"
# the marks of `qiao conformance`: "." for a pair the ABI does not define
echo "$out" | grep -Eq "^ +rmsnorm +yes +\. +\. " || fail "rmsnorm f16 is not marked as undefined (.)"

out=$(QIAO_BACKEND_PATH="$plugins" "$QIAO_BIN" devices)
echo "$out"
echo "$out" | grep -q "^backend test 0 ($plugins/libqiao-testvalid.so)" || fail "testvalid not listed"
echo "$out" | grep -q "no devices" || fail "testvalid has no devices"
echo "$out" | grep -q "libqiao-testmajor2.so: not usable: built for device ABI 2.0" || fail "major 2 not explained"
echo "$out" | grep -q "not usable: backend" && fail "doubled prefix: 'not usable: backend ...'"
echo "$out" | grep -q "function table field 'version' is NULL" || fail "no-version not explained"
echo "$out" | grep -q "missing entry point qiao_device_get_api" || fail "no-entry not explained"
echo "$out" | grep -q "function table entry 'rope' is NULL" || fail "null fn not explained"
echo "$out" | grep -q "is smaller than ABI 1.0's" || fail "small table not explained"

# --backend NAME through the path, and refusals as errors with exit status 1
QIAO_BACKEND_PATH="$plugins" "$QIAO_BIN" devices --backend testvalid >/dev/null || fail "by name"
"$QIAO_BIN" devices --backend "$plugins/libqiao-testmajor2.so" >/dev/null && fail "major 2 loaded"
err=$("$QIAO_BIN" conformance --backend "$plugins/libqiao-testnullfn.so" 2>&1)
[ $? -eq 1 ] || fail "conformance on a malformed plugin should exit 1"
echo "$err" | grep -q "^error: conformance: backend .*libqiao-testnullfn.so: function table entry 'rope' is NULL" ||
  fail "conformance refusal message: $err"
err=$("$QIAO_BIN" conformance --backend nosuchbackend 2>&1)
echo "$err" | grep -q "libqiao-nosuchbackend.so not found" || fail "not-found message: $err"
# every folder searched, the build tree's backends/NAME/ among them
echo "$err" | grep -q "searched: .*/backends/nosuchbackend" || fail "backends/N not listed: $err"
echo "$err" | grep -Eq "backend nosuchbackend: .*backend nosuchbackend:" && fail "doubled prefix: $err"
# the same words for "not defined" in devices and conformance
"$QIAO_BIN" devices --backend cpu | grep -q "\. not defined in this ABI version" ||
  fail "devices: no '. not defined in this ABI version'"
"$QIAO_BIN" conformance --backend cpu --level ops --op add 2>&1 |
  grep -q "\. not defined in this ABI version" || fail "conformance: no '. not defined in this ABI version'"
"$QIAO_BIN" conformance --level nonsense >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --level is a usage error"
"$QIAO_BIN" conformance --op nonsense >/dev/null 2>&1; [ $? -eq 2 ] || fail "bad --op is a usage error"
echo "ok"
