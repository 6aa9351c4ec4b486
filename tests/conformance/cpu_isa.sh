#!/bin/sh
# cpu_isa.sh ISA REPORT: certifies the built-in CPU backend with one kernel
# set (QIAO_CPU_ISA=scalar|avx2|avx512): every level of `qiao conformance`
# against the float64 reference and the transformers references. Exits 77
# (CTest: skipped) only when the processor lacks the kernel set, as the
# backend itself says.
isa=$1 report=$2
out=$(QIAO_CPU_ISA=$isa "$QIAO_BIN" conformance --backend cpu --quiet -o "$report" 2>&1)
rc=$?
echo "$out" | tail -n 30
if [ $rc -ne 0 ] && echo "$out" | grep -q "QIAO_CPU_ISA=$isa but this processor lacks it"; then
  echo "skipped: this processor lacks the $isa kernels"
  exit 77
fi
[ $rc -eq 0 ] || { echo "conformance of the cpu backend with QIAO_CPU_ISA=$isa failed ($rc)"; exit 1; }
echo "$out" | grep -q "^result: qiao-conformant [0-9.]*: ops+abi+models$" ||
  { echo "no full conformance statement"; exit 1; }
