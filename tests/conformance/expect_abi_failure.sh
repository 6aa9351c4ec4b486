#!/bin/sh
# expect_abi_failure.sh PLUGIN MODE CHECKS: runs the ABI level of conformance
# on the deliberately broken CPU plugin (QIAO_CPUBROKEN=MODE) and passes when
# conformance fails, every check named in CHECKS (a space-separated list) is
# among the failures, and no check outside CHECKS failed: the broken rule is
# caught, and only that rule.
plugin=$1 mode=$2 checks=$3
out=$(QIAO_CPUBROKEN=$mode "$QIAO_BIN" conformance --backend "$plugin" --level abi 2>&1)
rc=$?
echo "$out" | grep -E "^  FAIL |^result:"
if [ $rc -ne 1 ]; then echo "expected exit status 1 (a failed conformance), got $rc"; exit 1; fi
echo "$out" | grep -Eq "result: NOT qiao-conformant 1\.[0-9]+ \(failed: abi\)" ||
  { echo "no NOT-conformant statement"; exit 1; }
# a code mismatch reads "INVALID_ARGUMENT (1), expected BAD_HANDLE (2)", never as
# bare numbers ("expected error 1 or 1")
echo "$out" | grep -Eq "expected error [0-9]" && { echo "codes printed as bare numbers"; exit 1; }
failed=$(echo "$out" | sed -n 's/^  FAIL abi \([a-z0-9_^]*\): .*/\1/p')
for c in $checks; do
  echo "$failed" | grep -qx "$c" || { echo "check $c did not fail"; exit 1; }
done
for f in $failed; do
  case " $checks " in *" $f "*) ;; *) echo "check $f failed too (only $checks should)"; exit 1 ;; esac
done
echo "conformance caught $mode: $checks"
