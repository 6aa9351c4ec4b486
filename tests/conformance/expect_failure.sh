#!/bin/sh
# expect_failure.sh PLUGIN MODE OP PATTERN: runs the op level of conformance on
# the deliberately broken CPU plugin (QIAO_CPUBROKEN=MODE) for OP only, and
# passes when conformance fails with a line matching PATTERN, the certified
# ops stay certified, and no other op is reported broken.
plugin=$1 mode=$2 op=$3 pattern=$4
out=$(QIAO_CPUBROKEN=$mode "$QIAO_BIN" conformance --backend "$plugin" --level ops --op "$op" 2>&1)
rc=$?
echo "$out" | tail -n 30
if [ $rc -ne 1 ]; then echo "expected exit status 1 (a failed conformance), got $rc"; exit 1; fi
echo "$out" | grep -Eq "$pattern" || { echo "no failure line matches: $pattern"; exit 1; }
echo "$out" | grep -Eq "result: NOT qiao-conformant 1\.[0-9]+ \(failed: ops\)" || { echo "no NOT-conformant statement"; exit 1; }
if echo "$out" | grep -E "^  FAIL " | grep -v "^  FAIL $op " | grep -q .; then
  echo "another op than $op was reported broken"; exit 1
fi
# Without the breakage the same plugin passes.
QIAO_CPUBROKEN=none "$QIAO_BIN" conformance --backend "$plugin" --level ops --op "$op" --quiet >/dev/null 2>&1 ||
  { echo "the unbroken plugin failed conformance for $op"; exit 1; }
echo "conformance caught the broken $op ($mode)"
