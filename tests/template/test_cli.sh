#!/bin/sh
# `qiao template` prints exactly the rendering (no newline added): compare
# stdout byte for byte with what transformers rendered (values from
# shared/reference/chat_templates.json), and check flag errors.
set -eu
: "${QIAO_BIN:?}" "${QIAO_SHARED:?}"
T="$QIAO_SHARED/chat_templates"
for f in Qwen-Qwen2.5-7B-Instruct.jinja meta-llama-Llama-3.1-8B-Instruct.jinja; do
  [ -f "$T/$f" ] || { echo "missing shared file $T/$f (set QIAO_SHARED)" >&2; exit 1; }
done
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail=0

check() { # name expected-file actual-file
  if ! cmp -s "$2" "$3"; then
    echo "FAIL $1: output differs" >&2
    echo "--- want" >&2; od -c "$2" | head -20 >&2
    echo "--- got" >&2; od -c "$3" | head -20 >&2
    fail=1
  fi
}

printf '[{"role": "user", "content": "Hello"}]' >"$dir/hello.json"

# Qwen2.5, add_generation_prompt
"$QIAO_BIN" template -t "$T/Qwen-Qwen2.5-7B-Instruct.jinja" --messages "$dir/hello.json" \
  --add-generation-prompt >"$dir/got1"
printf '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n' >"$dir/want1"
check qwen25-hello "$dir/want1" "$dir/got1"

# Llama 3.1 with --var (a plain string and a JSON string) and no generation prompt
"$QIAO_BIN" template -t "$T/meta-llama-Llama-3.1-8B-Instruct.jinja" --messages "$dir/hello.json" \
  --var 'bos_token=<s>' --var 'date_string="23 Nov 2026"' >"$dir/got2"
printf '<s><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 23 Nov 2026\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>' >"$dir/want2"
check llama31-vars "$dir/want2" "$dir/got2"

# Llama 3.1 with tools
printf '[{"role": "user", "content": "What'"'"'s the weather in Shanghai?"}]' >"$dir/q.json"
printf '[{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]' >"$dir/tools.json"
"$QIAO_BIN" template -t "$T/meta-llama-Llama-3.1-8B-Instruct.jinja" --messages "$dir/q.json" \
  --tools "$dir/tools.json" --add-generation-prompt --var bos_token='<s>' \
  --var 'date_string=23 Nov 2026' >"$dir/got3"
printf '<s><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 23 Nov 2026\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\nRespond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.\n\n{\n    "type": "function",\n    "function": {\n        "name": "get_weather",\n        "description": "Weather for a city",\n        "parameters": {\n            "type": "object",\n            "properties": {\n                "city": {\n                    "type": "string"\n                }\n            },\n            "required": [\n                "city"\n            ]\n        }\n    }\n}\n\nWhat'"'"'s the weather in Shanghai?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' >"$dir/want3"
check llama31-tools "$dir/want3" "$dir/got3"

# -m: the chat template and bos_token come from a model's metadata and vocab
# (phi-3's vocab GGUF carries both; jinja2 renders this as below)
phi3="$QIAO_SHARED/tokenizers/gguf-vocab/ggml-vocab-phi-3.gguf"
[ -f "$phi3" ] || { echo "missing shared file $phi3" >&2; exit 1; }
"$QIAO_BIN" template -m "$phi3" --messages "$dir/hello.json" --add-generation-prompt >"$dir/got4"
printf '<s><|user|>\nHello<|end|>\n<|assistant|>\n' >"$dir/want4"
check phi3-model "$dir/want4" "$dir/got4"
# --var overrides the model's bos_token
"$QIAO_BIN" template -m "$phi3" --messages "$dir/hello.json" --var bos_token= >"$dir/got5"
printf '<|user|>\nHello<|end|>\n<|assistant|>\n' >"$dir/want5"
check phi3-var "$dir/want5" "$dir/got5"

# errors: raise_exception reaches the user once, as "error: ..."; usage errors exit 2
printf '{{ raise_exception("nope") }}' >"$dir/raise.jinja"
if "$QIAO_BIN" template -t "$dir/raise.jinja" --messages "$dir/hello.json" >"$dir/out" 2>"$dir/err"; then
  echo "FAIL raise_exception: exit status 0" >&2; fail=1
fi
grep -q '^error: .*raise_exception: nope' "$dir/err" || { echo "FAIL raise message" >&2; cat "$dir/err" >&2; fail=1; }
[ ! -s "$dir/out" ] || { echo "FAIL raise: wrote to stdout" >&2; fail=1; }
set +e
"$QIAO_BIN" template --messages "$dir/hello.json" 2>/dev/null; rc=$?
[ $rc -eq 2 ] || { echo "FAIL no -t/-m: exit $rc, want 2" >&2; fail=1; }
"$QIAO_BIN" template -t "$dir/raise.jinja" 2>/dev/null; rc=$?
[ $rc -eq 2 ] || { echo "FAIL no --messages: exit $rc, want 2" >&2; fail=1; }
"$QIAO_BIN" template -t "$dir/raise.jinja" --messages "$dir/hello.json" --var novalue 2>/dev/null; rc=$?
[ $rc -eq 2 ] || { echo "FAIL --var without =: exit $rc, want 2" >&2; fail=1; }
printf '{"role": "user"}' >"$dir/notlist.json"
"$QIAO_BIN" template -t "$T/Qwen-Qwen2.5-7B-Instruct.jinja" --messages "$dir/notlist.json" 2>/dev/null; rc=$?
[ $rc -eq 1 ] || { echo "FAIL messages not a list: exit $rc, want 1" >&2; fail=1; }
exit $fail
