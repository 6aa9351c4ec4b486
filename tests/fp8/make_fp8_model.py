#!/usr/bin/env python3
"""Writes a small random Hugging Face model twice: as an FP8 checkpoint the
way DeepSeek-V3 and Qwen3-FP8 publish them (every linear weight F8_E4M3 with
a 128 x 128 block scale tensor `X.weight_scale_inv` in F32, and
config.json's quantization_config), and as the f32 checkpoint of exactly
the weights the FP8 one holds (e4m3(q) * scale, rounded once to f32).

usage: make_fp8_model.py OUT_DIR [--arch llama|qwen3_moe|deepseek_v3] [--break KIND]
  OUT_DIR/fp8 and OUT_DIR/f32 are written (OUT_DIR/f32 only without --break).
  --break writes a malformed FP8 directory instead:
    nan          one weight byte is the NaN code 0x7F
    missing      one weight's scale tensor is absent
    shape        one scale tensor has a wrong shape
    oddrow       the FFN width is 320, so ffn_down's rows are not whole 128-blocks
    inf          one scale is +infinity
    orphan       a scale tensor whose weight is not F8_E4M3
    blocksize    quantization_config.weight_block_size is [64, 64]

The model is random (dim 256, heads of 64, FFN 384, vocab 300, 2 layers)
because the tiny reference models of ../shared have rows of 64 and 176
elements, which the 128-element FP8 blocks cannot hold. Its own E4M3 encoder
(round to nearest even onto the E4M3 grid, clamped at 448) and decoder; no
numpy or torch: struct only. Deterministic (seeded)."""
import json
import math
import os
import random
import struct
import sys

BLOCK = 128


def e4m3_value(q):
    """The exact value of an E4M3 code (None for the NaN codes)."""
    if q & 0x7F == 0x7F:
        return None
    sign = -1.0 if q & 0x80 else 1.0
    e, m = (q >> 3) & 15, q & 7
    if e == 0:
        return sign * m / 8.0 * 2.0 ** -6
    return sign * (1 + m / 8.0) * 2.0 ** (e - 7)


def e4m3_encode(v):
    """Nearest E4M3 code, ties to the even code, saturating at 448."""
    sign = 0x80 if math.copysign(1.0, v) < 0 else 0
    a = abs(v)
    if a >= 448.0:
        return sign | 0x7E
    if a == 0:
        return sign
    e = math.frexp(a)[1] - 1
    e = max(e, -6)
    spacing = 2.0 ** (e - 3)
    r = round(a / spacing)  # Python rounds halves to even
    if e == -6 and r < 8:
        code = r
    else:
        code = ((e + 7) << 3) + r - 8
    return sign | min(code, 0x7E)


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def quantize(w, rows, cols):
    """(codes, scales, dequantized) of a rows x cols matrix, 128 x 128 blocks."""
    srows, scols = (rows + BLOCK - 1) // BLOCK, (cols + BLOCK - 1) // BLOCK
    scales = []
    for br in range(srows):
        for bc in range(scols):
            amax = 0.0
            for i in range(br * BLOCK, min(rows, (br + 1) * BLOCK)):
                row = w[i * cols:(i + 1) * cols]
                amax = max(amax, max(abs(x) for x in row[bc * BLOCK:(bc + 1) * BLOCK]))
            scales.append(f32(amax / 448.0) if amax > 0 else 1.0)
    codes = bytearray(rows * cols)
    deq = [0.0] * (rows * cols)
    for i in range(rows):
        for j in range(cols):
            s = scales[(i // BLOCK) * scols + j // BLOCK]
            q = e4m3_encode(w[i * cols + j] / s)
            codes[i * cols + j] = q
            deq[i * cols + j] = f32(e4m3_value(q) * s)  # exact product, one rounding
    return codes, scales, deq, (srows, scols)


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, offset = {}, 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data)


def f32_bytes(values):
    return struct.pack("<%df" % len(values), *values)


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    out, arch, brk = args[0], "llama", None
    i = 1
    while i < len(args):
        if args[i] == "--arch":
            arch, i = args[i + 1], i + 2
        elif args[i] == "--break":
            brk, i = args[i + 1], i + 2
        else:
            sys.exit("unknown argument " + args[i])
    rng = random.Random(1234)
    dim, n_layers, n_heads, n_kv, head_dim, vocab = 256, 2, 4, 2, 64, 300
    ffn = 320 if brk == "oddrow" else 384
    n_experts, moe_ffn, top_k = 4, 128, 2
    ds_heads, ds_lora, ds_nope, ds_rope, ds_v = 2, 128, 64, 32, 64
    config = {
        "hidden_size": dim, "num_hidden_layers": n_layers, "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv, "head_dim": head_dim, "vocab_size": vocab,
        "intermediate_size": ffn, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "max_position_embeddings": 256, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "bfloat16",
    }
    if arch == "llama":
        config.update({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    elif arch == "qwen3_moe":
        config.update({"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
                       "num_experts": n_experts, "num_experts_per_tok": top_k,
                       "moe_intermediate_size": moe_ffn, "norm_topk_prob": True,
                       "decoder_sparse_step": 1, "mlp_only_layers": []})
    elif arch == "deepseek_v3":
        # multi-head latent attention and DeepSeekMoE, every linear in-dim a
        # multiple of 128 (q_lora 128, kv_lora 128, heads x v_head 128)
        config.update({"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
                       "num_attention_heads": ds_heads, "num_key_value_heads": ds_heads,
                       "head_dim": ds_rope, "q_lora_rank": 128, "kv_lora_rank": ds_lora,
                       "qk_nope_head_dim": ds_nope, "qk_rope_head_dim": ds_rope,
                       "qk_head_dim": ds_nope + ds_rope, "v_head_dim": ds_v,
                       "n_routed_experts": n_experts, "num_experts_per_tok": top_k,
                       "n_group": 2, "topk_group": 1, "n_shared_experts": 1,
                       "moe_intermediate_size": moe_ffn, "first_k_dense_replace": 1,
                       "routed_scaling_factor": 2.5, "norm_topk_prob": True,
                       "rope_interleave": True, "hidden_act": "silu", "attention_bias": False,
                       "num_nextn_predict_layers": 0,
                       "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"}})
        del config["rope_theta"]
    else:
        sys.exit("unknown --arch " + arch)

    def rand(n, std):
        return [rng.gauss(0.0, std) for _ in range(n)]

    def norm(n):
        return [1.0 + rng.uniform(-0.1, 0.1) for _ in range(n)]

    # (name, rows, cols) of each linear weight (FP8) and (name, values) of the rest
    linears, plain = [], [("model.embed_tokens.weight", (vocab, dim), rand(vocab * dim, 0.5)),
                          ("model.norm.weight", (dim,), norm(dim))]
    linears.append(("lm_head.weight", vocab, dim))
    for l in range(n_layers):
        p = "model.layers.%d." % l
        plain += [(p + "input_layernorm.weight", (dim,), norm(dim)),
                  (p + "post_attention_layernorm.weight", (dim,), norm(dim))]
        if arch == "deepseek_v3":
            a = p + "self_attn."
            plain += [(a + "q_a_layernorm.weight", (128,), norm(128)),
                      (a + "kv_a_layernorm.weight", (ds_lora,), norm(ds_lora))]
            linears += [(a + "q_a_proj.weight", 128, dim),
                        (a + "q_b_proj.weight", ds_heads * (ds_nope + ds_rope), 128),
                        (a + "kv_a_proj_with_mqa.weight", ds_lora + ds_rope, dim),
                        (a + "kv_b_proj.weight", ds_heads * (ds_nope + ds_v), ds_lora),
                        (a + "o_proj.weight", dim, ds_heads * ds_v)]
        else:
            linears += [(p + "self_attn.q_proj.weight", n_heads * head_dim, dim),
                        (p + "self_attn.k_proj.weight", n_kv * head_dim, dim),
                        (p + "self_attn.v_proj.weight", n_kv * head_dim, dim),
                        (p + "self_attn.o_proj.weight", dim, n_heads * head_dim)]
        if arch == "deepseek_v3" and l >= 1:  # layer 0 dense (first_k_dense_replace)
            plain += [(p + "mlp.gate.weight", (n_experts, dim), rand(n_experts * dim, 0.2)),
                      (p + "mlp.gate.e_score_correction_bias", (n_experts,),
                       [rng.uniform(-0.05, 0.05) for _ in range(n_experts)])]
            for q in [p + "mlp.experts.%d." % e for e in range(n_experts)] + [p + "mlp.shared_experts."]:
                linears += [(q + "gate_proj.weight", moe_ffn, dim), (q + "up_proj.weight", moe_ffn, dim),
                            (q + "down_proj.weight", dim, moe_ffn)]
        elif arch == "qwen3_moe":
            plain += [(p + "self_attn.q_norm.weight", (head_dim,), norm(head_dim)),
                      (p + "self_attn.k_norm.weight", (head_dim,), norm(head_dim)),
                      (p + "mlp.gate.weight", (n_experts, dim), rand(n_experts * dim, 0.2))]
            for e in range(n_experts):
                q = p + "mlp.experts.%d." % e
                linears += [(q + "gate_proj.weight", moe_ffn, dim), (q + "up_proj.weight", moe_ffn, dim),
                            (q + "down_proj.weight", dim, moe_ffn)]
        else:
            linears += [(p + "mlp.gate_proj.weight", ffn, dim), (p + "mlp.up_proj.weight", ffn, dim),
                        (p + "mlp.down_proj.weight", dim, ffn)]

    fp8, ref = [], []
    for name, shape, values in plain:
        fp8.append((name, "F32", shape, f32_bytes(values)))
        ref.append((name, "F32", shape, f32_bytes(values)))
    for name, rows, cols in linears:
        w = rand(rows * cols, 1.0 / math.sqrt(cols))
        # a few planted values: beyond 448 * scale is impossible (amax sets it),
        # so plant small ones that land on subnormal codes, and exact zeros
        for k in range(0, len(w), 997):
            w[k] = w[k] * 1e-4
        w[0] = -0.0
        codes, scales, deq, sshape = quantize(w, rows, cols)
        scale_bytes = f32_bytes(scales)
        if brk == "nan" and name.endswith("layers.1.self_attn.k_proj.weight"):
            codes[5 * cols + 7] = 0x7F
        if brk == "inf" and name.endswith("layers.0.mlp.up_proj.weight"):
            scale_bytes = struct.pack("<f", float("inf")) + scale_bytes[4:]
        fp8.append((name, "F8_E4M3", (rows, cols), bytes(codes)))
        if brk == "missing" and name.endswith("layers.0.self_attn.o_proj.weight"):
            pass
        elif brk == "shape" and name.endswith("layers.1.mlp.gate_proj.weight"):
            fp8.append((name + "_scale_inv", "F32", (sshape[1], sshape[0]), scale_bytes))
        else:
            fp8.append((name + "_scale_inv", "F32", sshape, scale_bytes))
        ref.append((name, "F32", (rows, cols), f32_bytes(deq)))
    if brk == "orphan":
        fp8.append(("model.norm.weight_scale_inv", "F32", (1, 2), f32_bytes([1.0, 1.0])))

    qconfig = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
               "weight_block_size": [64, 64] if brk == "blocksize" else [128, 128]}
    os.makedirs(os.path.join(out, "fp8"), exist_ok=True)
    with open(os.path.join(out, "fp8", "config.json"), "w") as f:
        json.dump(dict(config, quantization_config=qconfig), f, indent=1)
    write_safetensors(os.path.join(out, "fp8", "model.safetensors"), fp8)
    if brk is None:
        os.makedirs(os.path.join(out, "f32"), exist_ok=True)
        with open(os.path.join(out, "f32", "config.json"), "w") as f:
            json.dump(dict(config, torch_dtype="float32"), f, indent=1)
        write_safetensors(os.path.join(out, "f32", "model.safetensors"), ref)


if __name__ == "__main__":
    main()
