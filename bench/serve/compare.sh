#!/bin/sh
# qiao serve beside llama.cpp's llama-server on one GGUF: both servers up at
# once on 127.0.0.1, then `qiao bench-serve` at each concurrency level
# against the peer and then qiao (alternating, so the host's load moves both
# alike), one JSON file per run, a summary table at the end. See README.md.
#
# usage: bench/serve/compare.sh   (settings from the environment:)
#   MODEL         the GGUF (default ../bench-models/qwen2.5-0.5b-random-q8_0.gguf)
#   QIAO          the qiao executable, built without sanitizers (default ./build/qiao)
#   LLAMA_SERVER  default ../llama.cpp-peer/build/bin/llama-server
#   LEVELS        concurrency levels (default "1 4 16 32"); each runs max(2c, 16) requests
#   THREADS (2) SLOTS (16) PROMPT (128 token ids) GEN (64 tokens, ignore_eos)
#   PEER_PORT (18181) QIAO_PORT (18182)
#   QIAO_SERVE_ARGS / PEER_ARGS  extra flags for either server
#   OUT           results folder (default bench/serve/results/<UTC time>)
set -eu
MODEL="${MODEL:-../bench-models/qwen2.5-0.5b-random-q8_0.gguf}"
QIAO="${QIAO:-./build/qiao}"
LLAMA_SERVER="${LLAMA_SERVER:-../llama.cpp-peer/build/bin/llama-server}"
LEVELS="${LEVELS:-1 4 16 32}"
THREADS="${THREADS:-2}"
SLOTS="${SLOTS:-16}"
PROMPT="${PROMPT:-128}"
GEN="${GEN:-64}"
PEER_PORT="${PEER_PORT:-18181}"
QIAO_PORT="${QIAO_PORT:-18182}"
OUT="${OUT:-bench/serve/results/$(date -u +%Y%m%dT%H%M%SZ)}"
# Each slot holds one request: prompt + generated tokens, with room to spare.
CTX_PER_SLOT=$((PROMPT + GEN + 64))

fail() { echo "compare: error: $*" >&2; exit 1; }
[ -f "$MODEL" ] || fail "MODEL $MODEL: no such file (make it: see bench/serve/README.md)"
[ -x "$QIAO" ] || fail "QIAO $QIAO: not an executable"
[ -x "$LLAMA_SERVER" ] || fail "LLAMA_SERVER $LLAMA_SERVER: not an executable"
command -v curl > /dev/null || fail "curl (the command) is needed to poll /health"
command -v python3 > /dev/null || fail "python3 is needed to write the summary"
mkdir -p "$OUT"

peer_pid=""
qiao_pid=""
stop() {
  for p in $peer_pid $qiao_pid; do kill "$p" 2> /dev/null || true; done
  for p in $peer_pid $qiao_pid; do wait "$p" 2> /dev/null || true; done
}
trap stop EXIT
trap 'exit 130' INT TERM

# llama-server: continuous batching on (its default, said explicitly), one
# KV cache per slot of CTX_PER_SLOT tokens (-c is the total), prompt and
# generation on THREADS threads, no host-memory prompt cache (no prompt
# repeats: bench-serve gives every request its own random ids, so it could
# only cost time). Everything else is llama.cpp's default (f16 KV cache,
# flash attention auto, batch 2048 / ubatch 512). qiao serve: the same
# threads, slots and context per slot; a long idle timeout so requests that
# queue for a slot at 32 streams are not dropped.
# shellcheck disable=SC2086 # the extra args are meant to split
"$LLAMA_SERVER" -m "$MODEL" --host 127.0.0.1 --port "$PEER_PORT" -t "$THREADS" -tb "$THREADS" \
  -np "$SLOTS" -c $((SLOTS * CTX_PER_SLOT)) -cb --cache-ram 0 ${PEER_ARGS:-} \
  > "$OUT/llama-server.log" 2>&1 &
peer_pid=$!
# shellcheck disable=SC2086
"$QIAO" serve -m "$MODEL" --host 127.0.0.1 --port "$QIAO_PORT" -t "$THREADS" --slots "$SLOTS" \
  --ctx "$CTX_PER_SLOT" --timeout 600 ${QIAO_SERVE_ARGS:-} > "$OUT/qiao-serve.log" 2>&1 &
qiao_pid=$!

wait_health() { # NAME PORT PID
  i=0
  until curl -sf "http://127.0.0.1:$2/health" > /dev/null 2>&1; do
    kill -0 "$3" 2> /dev/null || fail "$1 exited while starting: see $OUT/$1.log"
    i=$((i + 1))
    [ $i -le 600 ] || fail "$1 not healthy after 120 s: see $OUT/$1.log"
    sleep 0.2
  done
}
wait_health llama-server "$PEER_PORT" "$peer_pid"
wait_health qiao-serve "$QIAO_PORT" "$qiao_pid"

# CPU seconds a process has used (utime + stime), to show the idle server
# stayed idle while the other one was measured.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }

{
  echo "date_utc: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
  echo "model: $MODEL"
  echo "qiao: $("$QIAO" --version) ($(git rev-parse --short HEAD 2> /dev/null || echo '?'))"
  echo "llama-server: $("$LLAMA_SERVER" --version 2>&1 | grep -m1 -i version || echo '?')"
  echo "threads $THREADS, slots $SLOTS, prompt $PROMPT ids, generate $GEN, levels $LEVELS"
  echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$OUT/machine.txt"

# One short request each first: page the weights in, start threads.
for port in "$PEER_PORT" "$QIAO_PORT"; do
  "$QIAO" bench-serve --url "http://127.0.0.1:$port" -c 1 -n 1 --prompt-len 8 --max-tokens 4 \
    --json > /dev/null 2>> "$OUT/warmup.log" || fail "warm-up on port $port failed: $OUT/warmup.log"
done

run() { # NAME PORT PID OTHER_PID C
  n=$(($5 * 2))
  [ "$n" -ge 16 ] || n=16
  echo "compare: $1 at $5 streams, $n requests" >&2
  a=$(cpu_s "$3")
  b=$(cpu_s "$4")
  "$QIAO" bench-serve --url "http://127.0.0.1:$2" -c "$5" -n "$n" --prompt-len "$PROMPT" \
    --max-tokens "$GEN" --seed "$5" --json > "$OUT/$1-c$5.json" 2> "$OUT/$1-c$5.log" ||
    echo "compare: $1 at $5 streams: some requests failed (see $OUT/$1-c$5.log)" >&2
  printf '{"server_cpu_s": %s, "other_server_cpu_s": %s, "loadavg": "%s"}\n' \
    "$(awk -v x="$(cpu_s "$3")" -v y="$a" 'BEGIN { printf "%.2f", x - y }')" \
    "$(awk -v x="$(cpu_s "$4")" -v y="$b" 'BEGIN { printf "%.2f", x - y }')" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" > "$OUT/$1-c$5.cpu.json"
}
for c in $LEVELS; do
  run llama-server "$PEER_PORT" "$peer_pid" "$qiao_pid" "$c"
  run qiao "$QIAO_PORT" "$qiao_pid" "$peer_pid" "$c"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/machine.txt"

# shellcheck disable=SC2086
python3 - "$OUT" $LEVELS << 'EOF'
import json, sys
out, levels = sys.argv[1], [int(x) for x in sys.argv[2:]]
rows, table = [], []
def load(name, c):
    with open(f"{out}/{name}-c{c}.json") as f: r = json.load(f)
    with open(f"{out}/{name}-c{c}.cpu.json") as f: r.update(json.load(f))
    return r
def fmt(x, d=1): return "-" if x is None else f"{x:.{d}f}"
# CPU the server spent per generated token: less sensitive than tokens/s to
# how much of the 2 cores the host's other work left it.
def cpu_ms(r): return 1e3 * r["server_cpu_s"] / r["generated_tokens"] if r["generated_tokens"] else None
table.append("| streams | requests | llama-server gen tok/s | qiao gen tok/s | qiao / llama | "
             "TTFT p99 ms llama / qiao | TTFT p50 ms llama / qiao | ITL p50 ms llama / qiao | "
             "decode tok/s per stream llama / qiao | server CPU ms per token llama / qiao | "
             "failed llama / qiao |")
table.append("|" + "---|" * 11)
for c in levels:
    p, q = load("llama-server", c), load("qiao", c)
    rows.append({"streams": c, "llama_server": p, "qiao": q})
    g = lambda r: r["generated_tokens_per_s"]
    ratio = g(q) / g(p) if g(p) and g(q) is not None else None
    table.append(f"| {c} | {p['requests']} | {fmt(g(p))} | {fmt(g(q))} | {fmt(ratio, 2)} | "
                 f"{fmt(p['ttft_ms_p99'], 0)} / {fmt(q['ttft_ms_p99'], 0)} | "
                 f"{fmt(p['ttft_ms_p50'], 0)} / {fmt(q['ttft_ms_p50'], 0)} | "
                 f"{fmt(p['itl_ms_p50'])} / {fmt(q['itl_ms_p50'])} | "
                 f"{fmt(p['decode_tokens_per_s_median'])} / {fmt(q['decode_tokens_per_s_median'])} | "
                 f"{fmt(cpu_ms(p), 0)} / {fmt(cpu_ms(q), 0)} | "
                 f"{p['requests_failed']} / {q['requests_failed']} |")
with open(f"{out}/summary.json", "w") as f: json.dump(rows, f, indent=1)
with open(f"{out}/summary.md", "w") as f: f.write("\n".join(table) + "\n")
print("\n".join(table))
EOF
echo "compare: results in $OUT" >&2
