# Shared by the fp8_* shell tests: a temporary folder, failure reporting,
# the fixture generator and a logits comparison (python3 with struct only).
set -u
fail=0
say() { echo "FAIL: $*" >&2; fail=1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/fp8-XXXXXX")
trap 'rm -rf "$dir"' EXIT
here=$(dirname "$0")
command -v python3 > /dev/null || { echo "python3 is needed to write the FP8 fixtures" >&2; exit 1; }

# make_model OUT [flags]: the FP8 checkpoint OUT/fp8 and its f32 twin OUT/f32
make_model() {
  python3 "$here/make_fp8_model.py" "$@" || { echo "make_fp8_model.py $* failed" >&2; exit 1; }
}

# compare A.f32 B.f32 ROW BOUND: every row of ROW floats of A within relative
# L2 BOUND of B's (and the same number of floats); prints the worst row.
compare() {
  python3 - "$@" << 'PY'
import math, struct, sys
a, b = (open(p, "rb").read() for p in sys.argv[1:3])
row, bound = int(sys.argv[3]), float(sys.argv[4])
if len(a) != len(b) or len(a) == 0 or len(a) % (4 * row):
    sys.exit("sizes differ: %d and %d bytes" % (len(a), len(b)))
n = len(a) // 4
A, B = struct.unpack("<%df" % n, a), struct.unpack("<%df" % n, b)
worst = 0.0
for r in range(n // row):
    x, y = A[r * row:(r + 1) * row], B[r * row:(r + 1) * row]
    d = math.sqrt(sum((p - q) ** 2 for p, q in zip(x, y)))
    worst = max(worst, d / max(math.sqrt(sum(q * q for q in y)), 1e-30))
print("worst row relative L2 %.3g (bound %g)" % (worst, bound))
sys.exit(0 if worst <= bound else 1)
PY
}
