"""python_bindings: the ctypes bindings (python/qiao) against libqiao.so.

Greedy generation on stories260K equals llama2.c's ids and text (from a
prompt and from BOS), logits equal transformers' within 1e-4 relative L2,
tokenizer ids equal the reference tokenizers' (shared/reference/
tokenizer_refs.json), and failures arrive as exceptions carrying the C
message. Run by CTest with QIAO_LIBRARY pointing at the build's library."""
import array
import json
import math
import os
import sys
import tempfile

import qiao

SHARED = os.environ["QIAO_SHARED"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def shared(*parts):
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        sys.exit("FAIL: missing %s" % path)
    return path


def llama2c_reference(name):
    """(ids, stdout text) of a llama2.c reference file."""
    lines = open(shared("reference", "stories260K", name)).read().split("\n")
    ids = [int(t) for t in lines[2].split()]
    return ids, "\n".join(lines[4:])


def rel_l2(a, b):
    num = sum((x - y) ** 2 for x, y in zip(a, b))
    den = sum(y * y for y in b)
    return math.sqrt(num / den)


model = qiao.Model(shared("models", "stories260K", "stories260K.gguf"))
check(model.format == "gguf" and model.architecture == "llama" and model.vocab_size == 512,
      "model properties: %s %s %d" % (model.format, model.architecture, model.vocab_size))
engine = qiao.Engine(model, n_threads=2, max_context=512)
check(engine.vocab_size == 512 and engine.backend_name == "cpu", "engine properties")

# Greedy from "Once upon a time": a streaming iterator of (id, text).
ref_ids, ref_text = llama2c_reference("stories260K_greedy_prompt_64.txt")
check(len(ref_ids) == 60, "reference length")
tokens = list(engine.generate("Once upon a time", max_tokens=len(ref_ids)))
check([t.id for t in tokens] == ref_ids, "prompt greedy ids: %s" % [t.id for t in tokens])
text = "Once upon a time" + "".join(t.text for t in tokens) + "\n"
check(text == ref_text, "prompt greedy text: %r" % text)
check(all(isinstance(t, qiao.Token) for t in tokens), "items are qiao.Token")

# Greedy from BOS, 256 tokens, given as ids.
bos_ids, _ = llama2c_reference("stories260K_greedy_bos_256.txt")
got = [t.id for t in engine.generate([1], max_tokens=256)]
check(got == bos_ids, "BOS greedy ids differ at %d" %
      next((i for i, (a, b) in enumerate(zip(got, bos_ids)) if a != b), len(got)))

# Logits of the prompt against transformers (float64).
hf = json.load(open(shared("reference", "stories260K", "hf_reference.json")))
hf_logits = array.array("f")
with open(shared("reference", "stories260K", "hf_logits.f32"), "rb") as f:
    hf_logits.frombytes(f.read())
logits = engine.logits(hf["prompt"])
n = len(hf["prompt"])
check(tuple(logits.shape) == (n, 512), "logits shape %s" % (logits.shape,))
rows = logits.tolist()
worst = max(rel_l2(rows[p], hf_logits[p * 512:(p + 1) * 512]) for p in range(n))
check(worst < 1e-4, "logits rel L2 %.3g" % worst)
if qiao.engine.numpy is None:
    check(isinstance(logits, memoryview) and logits.format == "f", "memoryview without numpy")
else:
    check(str(logits.dtype) == "float32", "numpy float32 logits")
    qiao.engine.numpy, saved = None, qiao.engine.numpy  # the memoryview path too
    view = engine.logits(hf["prompt"])
    qiao.engine.numpy = saved
    check(isinstance(view, memoryview) and view.tolist() == rows, "memoryview logits")

# Streaming is lazy and a generation's sequence is freed when it ends.
small = qiao.Engine(model, n_threads=1, max_context=128, max_seqs=1)
g = small.generate("Once upon a time", max_tokens=60)
first = [next(g).id for _ in range(3)]
check(first == ref_ids[:3], "first streamed ids %s" % first)
try:
    next(small.generate("Lily", max_tokens=1))
    check(False, "a second live sequence beyond max_seqs=1 did not fail")
except qiao.LimitError as e:
    check("seq" in e.message or "sequence" in e.message, "LimitError message: %s" % e.message)
g.close()
check([t.id for t in small.generate("Once upon a time", max_tokens=5)] == ref_ids[:5],
      "generation after close()")
# Sampling: a seed fixes the text; another seed changes it.
a = engine.generate_text("Once upon a time", 40, temperature=1.0, seed=7)
b = engine.generate_text("Once upon a time", 40, temperature=1.0, seed=7)
c = engine.generate_text("Once upon a time", 40, temperature=1.0, seed=8)
check(a == b and a != c, "seeded sampling: %r %r %r" % (a, b, c))

# Tokenizers against the reference implementations.
refs = json.load(open(shared("reference", "tokenizer_refs.json")))
for name, path in (("llama2_spm", ("models", "llama2-tokenizer", "tokenizer.model")),
                   ("qwen3", ("tokenizers", "qwen3", "tokenizer.json"))):
    tok = qiao.Tokenizer.open(shared(*path))
    check(len(refs[name]) == len(refs["texts"]) > 10, "%s: reference count" % name)
    bad = [t for t, ids in zip(refs["texts"], refs[name]) if tok.encode(t, add_bos=False) != ids]
    check(not bad, "%s: %d of %d texts differ, first %r" % (name, len(bad), len(refs["texts"]),
                                                            bad[:1]))
    if name == "qwen3":
        for t in refs["texts"]:
            check(tok.decode(tok.encode(t, add_bos=False)) == t, "qwen3 round trip %r" % t)
stories_tok = qiao.Tokenizer(model)
check(stories_tok.encode("Once upon a time") == [1] + hf["prompt"][1:], "stories encode")
check(stories_tok.bos_id == 1 and stories_tok.is_eos(2), "stories bos/eos")

# Errors: the C code as the class, the C message in the exception.
try:
    qiao.Model("/nonexistent/model.gguf")
    check(False, "opening a missing file did not raise")
except qiao.NotFoundError as e:
    check(e.code == 2 and "/nonexistent/model.gguf" in e.message and "/nonexistent" in str(e),
          "NotFoundError: %s" % e)
with tempfile.NamedTemporaryFile(suffix=".gguf") as junk:
    junk.write(b"GGUF" + b"\xff" * 60)
    junk.flush()
    try:
        qiao.Model(junk.name)
        check(False, "a malformed file did not raise")
    except qiao.QiaoError as e:
        check(isinstance(e, (qiao.MalformedError, qiao.UnsupportedError)) and junk.name in e.message,
              "malformed file: %r" % e)
try:
    qiao.Engine(model, backend="no-such-backend")
    check(False, "a missing backend did not raise")
except qiao.NotFoundError as e:
    check("libqiao-no-such-backend.so" in e.message, "backend message: %s" % e.message)
check(issubclass(qiao.InvalidArgumentError, ValueError), "InvalidArgumentError is a ValueError")

live = small.generate("Once upon a time", max_tokens=5)
small.close()
try:
    next(live)
    check(False, "generating on a closed engine did not raise")
except ValueError:
    pass
engine.close()
model.close()
try:
    model.format
    check(False, "a closed model did not raise")
except ValueError:
    pass
if failures:
    sys.exit("%d failures" % len(failures))
print("python bindings: generation, logits, tokenizers and errors equal the references")
