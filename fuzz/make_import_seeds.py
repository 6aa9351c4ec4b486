#!/usr/bin/env python3
"""Writes the small seed files of fuzz/corpus/fuzz_llama2c/ and
fuzz/corpus/fuzz_safetensors/: tiny llama2.c checkpoints (legacy shared and
unshared classifier, "ak42" version 1), a tiny tok.bin, and safetensors files
with F32, F16 and BF16 tensors. Deterministic; no shared model is copied.

usage: fuzz/make_import_seeds.py
"""
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(1)


def f32s(n):
    return struct.pack("<%df" % n, *[rng.uniform(-1, 1) for _ in range(n)])


def write(rel, data):
    with open(os.path.join(HERE, "corpus", rel), "wb") as f:
        f.write(data)


def llama2c():
    # dim 8, hidden 16, 1 layer, 2 heads, 1 KV head, vocab 6, seq_len 4
    dim, hidden, layers, heads, kv_heads, vocab, seq = 8, 16, 1, 2, 1, 6, 4
    head = dim // heads
    kv = head * kv_heads
    body = (f32s(vocab * dim) + f32s(layers * dim) + f32s(layers * dim * dim) +
            f32s(layers * kv * dim) * 2 + f32s(layers * dim * dim) + f32s(layers * dim) +
            f32s(layers * hidden * dim) + f32s(layers * dim * hidden) +
            f32s(layers * hidden * dim) + f32s(dim) + f32s(seq * head // 2) * 2)
    header = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq)
    write("fuzz_llama2c/legacy_shared.bin", header + body)
    unshared = struct.pack("<7i", dim, hidden, layers, heads, kv_heads, -vocab, seq)
    write("fuzz_llama2c/legacy_unshared.bin", unshared + body + f32s(vocab * dim))
    v1 = struct.pack("<Ii7iB", 0x616B3432, 1, dim, hidden, layers, heads, kv_heads, vocab, seq, 1)
    v1 += b"\0" * (256 - len(v1))
    v1 += (f32s(layers * dim) * 2 + f32s(dim) + f32s(vocab * dim) + f32s(layers * dim * dim) +
           f32s(layers * kv * dim) * 2 + f32s(layers * dim * dim) + f32s(layers * hidden * dim) +
           f32s(layers * dim * hidden) + f32s(layers * hidden * dim))
    write("fuzz_llama2c/v1_shared.bin", v1)
    # max_token_length 259: its first byte (3) makes the target use vocab 3 + 3 = 6
    tokens = [b"<unk>", b"\n<s>\n", b"\n</s>\n", b"<0x00>", b" a", b"b"]
    tok = struct.pack("<i", 259)
    for i, t in enumerate(tokens):
        tok += struct.pack("<fi", -float(i), len(t)) + t
    write("fuzz_llama2c/tok6.bin", tok)


def safetensors(entries, metadata=True):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = {"format": "pt"}
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data


def st_seeds():
    write("fuzz_safetensors/two_f32.safetensors", safetensors(
        [("model.norm.weight", "F32", [8], f32s(8)),
         ("model.embed_tokens.weight", "F32", [6, 8], f32s(48))]))
    write("fuzz_safetensors/f16_bf16.safetensors", safetensors(
        [("a", "F16", [4, 2], bytes(16)), ("b", "BF16", [3], bytes(6))], metadata=False))
    write("fuzz_safetensors/empty.safetensors", safetensors([]))


if __name__ == "__main__":
    llama2c()
    st_seeds()
