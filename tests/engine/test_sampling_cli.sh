#!/bin/sh
# Sampling flags of `qiao run` reach the sampler and mean what they say, on
# stories260K after a fixed prompt: from the model's own logits for the next
# token (`qiao logits`), this script works out which tokens each setting
# keeps (--top-k, --top-p with the token that crosses the threshold, --min-p)
# and checks 30 seeded draws: none outside the kept set, every kept token of
# probability >= 0.25 (after the cut) drawn at least once (a miss has
# probability < 1.8e-4; the seeds are fixed, so the outcome is too). The
# penalties (--repeat-penalty, --presence-penalty, --frequency-penalty) must
# move the greedy choice to the argmax of the penalized logits, which differs
# from the plain argmax here (the plain choice is a token of the prompt).
set -eu
: "${QIAO_BIN:?}" "${QIAO_SHARED:?}"
T="${TMPDIR:-/tmp}/qiao_sampling_cli_$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
M="$QIAO_SHARED/models/stories260K/stories260K.gguf"
[ -f "$M" ] || fail "missing $M"
vocab=512

ids=$("$QIAO_BIN" tokenize -m "$M" -p "Once upon a time there was a girl. The girl")
n=$(echo "$ids" | wc -w)
"$QIAO_BIN" logits -m "$M" --ids "$ids" -o "$T/logits.f32" -t 1 2> /dev/null || fail "qiao logits"
# the last row: "id logit" per line
od -An -v -t f4 -w4 -j $(((n - 1) * vocab * 4)) -N $((vocab * 4)) "$T/logits.f32" |
  awk '{ print NR - 1, $1 }' > "$T/last"
[ "$(wc -l < "$T/last")" -eq $vocab ] || fail "logits: expected $vocab values"

# kept MODE VALUE: "id p" of the kept tokens at temperature 1, p renormalized
kept() {
  sort -k2,2gr -k1,1n "$T/last" | awk -v mode="$1" -v v="$2" '
    { id[NR] = $1; l[NR] = $2 }
    END {
      n = NR; total = 0
      for (i = 1; i <= n; i++) { e[i] = exp(l[i] - l[1]); total += e[i] }
      keep = n
      if (mode == "top-k") keep = v
      if (mode == "min-p") { keep = 0; for (i = 1; i <= n; i++) if (e[i] >= v) keep = i }
      if (mode == "top-p") {
        acc = 0
        for (i = 1; i <= n; i++) { acc += e[i] / total; if (acc >= v) { keep = i; break } }
      }
      sum = 0
      for (i = 1; i <= keep; i++) sum += e[i]
      for (i = 1; i <= keep; i++) print id[i], e[i] / sum
    }'
}

check() { # MODE VALUE FLAGS...: 30 draws against kept MODE VALUE
  mode=$1 value=$2
  shift 2
  kept "$mode" "$value" > "$T/kept"
  : > "$T/drawn"
  for seed in $(seq 1 30); do
    "$QIAO_BIN" run -m "$M" --prompt-ids "$ids" -n 1 --ids -t 1 --temp 1 --top-k 0 --top-p 1 \
      --min-p 0 "$@" --seed "$seed" 2> /dev/null >> "$T/drawn" || fail "$mode: qiao run"
  done
  for t in $(cat "$T/drawn"); do
    grep -q "^$t " "$T/kept" || fail "$mode $value: drew $t, outside the kept set: $(cut -d' ' -f1 "$T/kept" | tr '\n' ' ')"
  done
  while read -r t p; do
    if awk -v p="$p" 'BEGIN { exit !(p >= 0.25) }'; then
      grep -qw "$t" "$T/drawn" || fail "$mode $value: token $t (p $p) never drawn in 30 seeds"
    fi
  done < "$T/kept"
  echo "$mode $value: kept $(tr '\n' ' ' < "$T/kept"); drew $(tr ' ' '\n' < "$T/drawn" | sort -u | grep -c .) distinct"
}

check top-k 3 --top-k 3
# top-p just above the best token's probability: the second token crosses
# the threshold and must stay (a sampler that drops it keeps one token)
top_p=$(kept all 0 | awk 'NR == 1 { printf "%.3f", $2 + 0.03 }')
check top-p "$top_p" --top-p "$top_p"
check min-p 0.4 --min-p 0.4

# penalized greedy: the argmax of the logits after the penalty of each seen token
penalized() { # REPEAT PRESENCE FREQUENCY
  echo "$ids" | tr ' ' '\n' | sort | uniq -c | awk '{ print $2, $1 }' > "$T/seen"
  awk -v r="$1" -v pr="$2" -v fr="$3" '
    NR == FNR { count[$1] = $2; next }
    { l = $2
      if ($1 in count) { l = l > 0 ? l / r : l * r; l -= pr + fr * count[$1] }
      if (best == "" || l > bl) { best = $1; bl = l } }
    END { print best }' "$T/seen" "$T/last"
}
plain=$(penalized 1 0 0)
for setting in "1.5 0 0" "1 1.2 0" "1 0 0.9"; do
  set -- $setting
  want=$(penalized "$1" "$2" "$3")
  [ "$want" != "$plain" ] || fail "penalties $setting do not change the choice here: pick another prompt"
  got=$("$QIAO_BIN" run -m "$M" --prompt-ids "$ids" -n 1 --ids -t 1 --temp 0 --repeat-penalty "$1" \
    --presence-penalty "$2" --frequency-penalty "$3" 2> /dev/null)
  [ "$got" = "$want" ] || fail "penalties $setting: chose $got, expected $want (plain greedy $plain)"
done
echo "penalties: each moved the greedy choice from $plain as the definitions say"
