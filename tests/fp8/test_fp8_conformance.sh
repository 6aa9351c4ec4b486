#!/bin/sh
# The CPU backend claims embed, matmul and matmul_experts for f8_e4m3_b128
# (device ABI 1.4) and passes conformance's op level on them: random blocks
# and the every-code cases (all 254 codes, subnormals, 448, negative zero,
# extreme and negative-zero scales) against the float64 reference. Uses $QIAO_BIN.
. "$(dirname "$0")/fp8_common.sh"
"$QIAO_BIN" conformance --backend cpu --level ops --op embed,matmul,matmul_experts \
  -o "$dir/report.json" > "$dir/out.txt" 2>&1 || say "conformance failed: $(tail -20 "$dir/out.txt")"
python3 - "$dir/report.json" << 'PY' || fail=1
import json, sys
r = json.load(open(sys.argv[1]))
cases = [c for c in r["ops"] if c["dtype"] == "f8_e4m3_b128"]
ops = sorted({c["op"] for c in cases})
every = [c for c in cases if "every-code" in c.get("shape", "")]
bad = [c for c in cases if not str(c.get("result", "")).startswith("pass")]
print("%d f8_e4m3_b128 cases (%s), %d every-code, %d not passing" % (len(cases), ", ".join(ops), len(every), len(bad)))
if ops != ["embed", "matmul", "matmul_experts"] or len(every) < 3 or bad:
    sys.exit("FAIL: f8_e4m3_b128 cases missing or failing: %s" % bad[:3])
PY
exit $fail
