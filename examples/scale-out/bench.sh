#!/bin/sh
# bench.sh QIAO MODEL [ROUNDS]: what a balancer adds to a request. One
# `qiao serve` replica, measured with `qiao bench-serve` directly and through
# nginx.conf and haproxy.cfg of this folder (both of their upstream entries
# pointed at that one replica, so the only difference is the proxy hop),
# alternating direct / nginx / haproxy ROUNDS times (default 3). Prints one
# line per run: TTFT and inter-token latency p50, generated tokens/s. Needs
# nginx and haproxy; everything runs on 127.0.0.1 from a temp folder and is
# stopped on exit. Run it on a quiet machine.
set -eu
qiao=$1
model=$2
rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/qiao-scaleout-bench.XXXXXX")
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_health() {
  i=0
  until curl -sf "http://127.0.0.1:$1/health" >/dev/null; do
    i=$((i + 1))
    [ $i -lt 300 ] || { echo "bench.sh: nothing healthy on port $1" >&2; exit 1; }
    sleep 0.1
  done
}
# The example with the balancer on $1 and both replicas on $2.
render() { sed -e "s/127\.0\.0\.1:8080/127.0.0.1:$2/; s/127\.0\.0\.1:808[12]/127.0.0.1:$3/" "$here/$1"; }

replica=$(free_port)
"$qiao" serve -m "$model" --host 127.0.0.1 --port "$replica" -t 1 2>"$dir/replica.log" &
pids="$pids $!"
wait_health "$replica"

ngx=$(free_port)
mkdir -p "$dir/nginx/conf" "$dir/nginx/logs" "$dir/nginx/tmp"
render nginx.conf "$ngx" "$replica" >"$dir/nginx/conf/nginx.conf"
nginx -p "$dir/nginx" -c "$dir/nginx/conf/nginx.conf" -e "$dir/nginx/logs/error.log" &
pids="$pids $!"
hap=$(free_port)
render haproxy.cfg "$hap" "$replica" >"$dir/haproxy.cfg"
haproxy -db -f "$dir/haproxy.cfg" 2>"$dir/haproxy.log" &
pids="$pids $!"
wait_health "$ngx"
wait_health "$hap"

# Short prompts and generations of the small model: the proxy's share is as
# large as it gets. stories260K's vocabulary has 512 ids.
run() {
  "$qiao" bench-serve --url "http://127.0.0.1:$2" -c "$3" -n "$4" --prompt-len 32 --max-tokens 32 \
    --vocab-min 3 --vocab-max 500 --json 2>/dev/null |
    python3 -c "import json, sys; r = json.load(sys.stdin); print(f'$1 c=$3: ttft_p50_ms {r[\"ttft_ms_p50\"]:.3f} itl_p50_ms {r[\"itl_ms_p50\"]:.3f} gen_tok_s {r[\"generated_tokens_per_s\"]:.0f} failed {r[\"requests_failed\"]}')"
}
for c in 1 8; do
  n=$((c * 32))
  run warmup "$replica" "$c" "$n" >/dev/null
  r=0
  while [ $r -lt "$rounds" ]; do
    run direct "$replica" "$c" "$n"
    run nginx "$ngx" "$c" "$n"
    run haproxy "$hap" "$c" "$n"
    r=$((r + 1))
  done
done
