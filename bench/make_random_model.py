#!/usr/bin/env python3
"""Writes a random-weight GGUF in the shape of Qwen2.5-0.5B (24 layers, dim
896, 14 heads, 2 KV heads, head_dim 64, ffn 4864, vocab 151936, tied
embeddings, QKV bias): about 494M parameters, 2.0 GB in f32. The weights
are a repeated block of Gaussian noise (the converter's speed does not depend
on the values). No tokenizer (tokenizer.model = none).

usage: bench/make_random_model.py OUT.gguf [--dtype f32|f16]
"""
import random
import struct
import sys

DIM, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN, VOCAB = 896, 24, 14, 2, 64, 4864, 151936


def s(text):
    b = text.encode()
    return struct.pack("<Q", len(b)) + b


def main():
    out = sys.argv[1]
    dtype = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--dtype" else "f32"
    esize, gtype = (4, 0) if dtype == "f32" else (2, 1)
    kvs = [("general.architecture", 8, s("qwen2")), ("general.name", 8, s("random-qwen2.5-0.5b-shape")),
           ("qwen2.context_length", 4, struct.pack("<I", 32768)),
           ("qwen2.embedding_length", 4, struct.pack("<I", DIM)),
           ("qwen2.block_count", 4, struct.pack("<I", LAYERS)),
           ("qwen2.feed_forward_length", 4, struct.pack("<I", FFN)),
           ("qwen2.attention.head_count", 4, struct.pack("<I", HEADS)),
           ("qwen2.attention.head_count_kv", 4, struct.pack("<I", KV_HEADS)),
           ("qwen2.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-6)),
           ("qwen2.rope.freq_base", 6, struct.pack("<f", 1e6)),
           ("tokenizer.ggml.model", 8, s("none"))]
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    tensors = [("token_embd.weight", (VOCAB, DIM)), ("output_norm.weight", (DIM,))]
    for i in range(LAYERS):
        p = "blk.%d." % i
        tensors += [(p + "attn_norm.weight", (DIM,)), (p + "attn_q.weight", (q, DIM)),
                    (p + "attn_q.bias", (q,)), (p + "attn_k.weight", (kv, DIM)),
                    (p + "attn_k.bias", (kv,)), (p + "attn_v.weight", (kv, DIM)),
                    (p + "attn_v.bias", (kv,)), (p + "attn_output.weight", (DIM, q)),
                    (p + "ffn_norm.weight", (DIM,)), (p + "ffn_gate.weight", (FFN, DIM)),
                    (p + "ffn_up.weight", (FFN, DIM)), (p + "ffn_down.weight", (DIM, FFN))]
    header = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        header += s(k) + struct.pack("<I", t) + v
    offset, sizes = 0, []
    for name, shape in tensors:
        n = 1
        for d in shape:
            n *= d
        t = 0 if len(shape) == 1 else gtype  # norms and biases stay f32
        nbytes = n * (4 if t == 0 else esize)
        offset = (offset + 31) // 32 * 32
        header += s(name) + struct.pack("<I", len(shape))
        header += b"".join(struct.pack("<Q", d) for d in reversed(shape))
        header += struct.pack("<IQ", t, offset)
        sizes.append((offset, nbytes))
        offset += nbytes
    header += b"\0" * ((len(header) + 31) // 32 * 32 - len(header))
    rng = random.Random(1)
    noise_f32 = struct.pack("<%df" % (1 << 20), *(rng.gauss(0, 0.02) for _ in range(1 << 20)))
    noise = noise_f32 if esize == 4 else struct.pack("<%de" % (1 << 20), *struct.unpack("<%df" % (1 << 20), noise_f32))
    with open(out, "wb") as f:
        f.write(header)
        pos = 0
        for (off, nbytes), (name, shape) in zip(sizes, tensors):
            f.write(b"\0" * (off - pos))
            src = noise_f32 if len(shape) == 1 else noise
            left = nbytes
            while left > 0:
                k = min(left, len(src))
                f.write(src[:k])
                left -= k
            pos = off + nbytes
    print("wrote %s: %.2f GB" % (out, (len(header) + pos) / 1e9))


if __name__ == "__main__":
    main()
