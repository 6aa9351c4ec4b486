#!/usr/bin/env python3
"""Writes the small seed files of fuzz/corpus/fuzz_gguf/ (and, with a built
qiao, fuzz/corpus/fuzz_qiao/). Deterministic; no shared models are copied.

usage: fuzz/make_seeds.py [path/to/qiao]
"""
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "?",
       U64: "Q", I64: "q", F64: "d"}


def s(text):
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def value(t, v):
    if t == STRING:
        return s(v)
    if t == ARRAY:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(value(et, x) for x in items)
    return struct.pack("<" + FMT[t], v)


def gguf(kvs, tensors, version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims innermost first, ggml type, bytes)]"""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for key, t, v in kvs:
        out += s(key) + struct.pack("<I", t) + value(t, v)
    offset, infos, data = 0, b"", b""
    for name, dims, gtype, raw in tensors:
        offset = (offset + alignment - 1) // alignment * alignment
        infos += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", gtype, offset)
        data += b"\0" * (offset - len(data)) + raw
        offset += len(raw)
    out += infos
    out += b"\0" * ((len(out) + alignment - 1) // alignment * alignment - len(out))
    return out + data


def floats(n, seed):
    x, vals = seed, []
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        vals.append((x / 0x7FFFFFFF - 0.5) * 0.2)
    return struct.pack("<%df" % n, *vals)


def tokenizer_kvs(n_vocab, bpe=False):
    tokens = ["<unk>", "<s>", "</s>"] + ["t%d" % i for i in range(n_vocab - 3)]
    kvs = [("tokenizer.ggml.model", STRING, "gpt2" if bpe else "llama"),
           ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
           ("tokenizer.ggml.scores", ARRAY, (F32, [float(-i) for i in range(n_vocab)])),
           ("tokenizer.ggml.token_type", ARRAY, (I32, [2, 3, 3] + [1] * (n_vocab - 3))),
           ("tokenizer.ggml.bos_token_id", U32, 1),
           ("tokenizer.ggml.eos_token_id", U32, 2),
           ("tokenizer.ggml.padding_token_id", U32, 0xFFFFFFFF)]
    if bpe:
        kvs += [("tokenizer.ggml.pre", STRING, "gpt-2"),
                ("tokenizer.ggml.merges", ARRAY, (STRING, ["t t", "t0 t1"]))]
    return kvs


def tiny_llama(types):
    """vocab 8, dim 32, 1 layer, 2 heads (1 KV head), ffn 32; `types` picks
    the ggml type of the 2-D weights: 0 f32, 1 f16, 30 bf16, 8 q8_0, 2 q4_0."""
    dim, ffn, vocab, kv = 32, 32, 8, 16
    kvs = [("general.architecture", STRING, "llama"), ("general.name", STRING, "seed"),
           ("general.alignment", U32, 32),
           ("llama.context_length", U32, 64), ("llama.embedding_length", U32, dim),
           ("llama.block_count", U32, 1), ("llama.feed_forward_length", U32, ffn),
           ("llama.attention.head_count", U32, 2), ("llama.attention.head_count_kv", U32, 1),
           ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
           ("llama.rope.dimension_count", U32, 16)] + tokenizer_kvs(vocab)
    seed = [1]

    def weight(name, rows, cols, t):
        seed[0] += 1
        n = rows * cols
        if t == 0:
            raw = floats(n, seed[0])
        elif t in (1, 30):
            raw = bytes((i * 7 + seed[0]) & 0x3F for i in range(2 * n))
        elif t == 8:
            raw = b"".join(struct.pack("<H", 0x2000) + bytes(range(32)) for _ in range(n // 32))
        else:
            raw = b"".join(struct.pack("<H", 0x2000) + bytes(range(16)) for _ in range(n // 32))
        return (name, [cols, rows], t, raw)

    def norm(name, n):
        seed[0] += 1
        return (name, [n], 0, floats(n, seed[0]))

    t = types
    tensors = [weight("token_embd.weight", vocab, dim, t), norm("output_norm.weight", dim),
               weight("output.weight", vocab, dim, t), norm("blk.0.attn_norm.weight", dim),
               weight("blk.0.attn_q.weight", dim, dim, t), weight("blk.0.attn_k.weight", kv, dim, t),
               weight("blk.0.attn_v.weight", kv, dim, t),
               weight("blk.0.attn_output.weight", dim, dim, t), norm("blk.0.ffn_norm.weight", dim),
               weight("blk.0.ffn_gate.weight", ffn, dim, t), weight("blk.0.ffn_up.weight", ffn, dim, t),
               weight("blk.0.ffn_down.weight", dim, ffn, t)]
    return gguf(kvs, tensors)


def main():
    gdir = os.path.join(HERE, "corpus", "fuzz_gguf")
    os.makedirs(gdir, exist_ok=True)
    seeds = {
        "empty_v3.gguf": gguf([], []),
        "empty_v2.gguf": gguf([], [], version=2),
        "all_value_types.gguf": gguf([
            ("a.u8", U8, 1), ("a.i8", I8, -1), ("a.u16", U16, 2), ("a.i16", I16, -2),
            ("a.u32", U32, 3), ("a.i32", I32, -3), ("a.f32", F32, 0.5), ("a.bool", BOOL, True),
            ("a.str", STRING, "x"), ("a.u64", U64, 4), ("a.i64", I64, -4), ("a.f64", F64, 0.25),
            ("a.arr_u8", ARRAY, (U8, [1, 2])), ("a.arr_str", ARRAY, (STRING, ["p", "q"])),
            ("a.arr_bool", ARRAY, (BOOL, [True, False])), ("a.arr_f64", ARRAY, (F64, [1.0])),
        ], []),
        "vocab_spm.gguf": gguf([("general.architecture", STRING, "llama")] + tokenizer_kvs(6), []),
        "vocab_bpe.gguf": gguf([("general.architecture", STRING, "gpt2")] + tokenizer_kvs(6, True), []),
        "tiny_f32.gguf": tiny_llama(0),
        "tiny_f16.gguf": tiny_llama(1),
        "tiny_bf16.gguf": tiny_llama(30),
        "tiny_q8_0.gguf": tiny_llama(8),
        "tiny_q4_0.gguf": tiny_llama(2),
    }
    for name, data in seeds.items():
        with open(os.path.join(gdir, name), "wb") as f:
            f.write(data)
    if len(sys.argv) > 1:
        qiao = sys.argv[1]
        qdir = os.path.join(HERE, "corpus", "fuzz_qiao")
        os.makedirs(qdir, exist_ok=True)
        for src, dst, extra in [("tiny_f32.gguf", "tiny_f32.qiao", []),
                                ("tiny_f32.gguf", "tiny_q4_0.qiao", ["--type", "q4_0"]),
                                ("tiny_q8_0.gguf", "tiny_q8_0.qiao", []),
                                ("vocab_bpe.gguf", "vocab_bpe.qiao", [])]:
            subprocess.run([qiao, "convert", os.path.join(gdir, src), os.path.join(qdir, dst),
                            "--quiet"] + extra, check=True)


if __name__ == "__main__":
    main()
