// A tiny random-weight model with a real vocabulary, written as a Hugging
// Face folder (config.json, model.safetensors) beside links to a shared
// tokenizer.json / tokenizer_config.json: a Qwen3-architecture decoder of
// one layer, hidden size 32, whose vocabulary is the tokenizer's. It knows
// nothing; tests make it write what they need with a grammar.
import fs from 'node:fs';
import path from 'node:path';

// mulberry32: reproducible weights.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The number of ids of a tokenizer.json: its vocabulary and added tokens.
export function tokenizerVocabSize(tokenizerJson) {
  const t = JSON.parse(fs.readFileSync(tokenizerJson, 'utf8'));
  let n = 0;
  for (const id of Object.values(t.model.vocab)) n = Math.max(n, id + 1);
  for (const a of t.added_tokens || []) n = Math.max(n, a.id + 1);
  return n;
}

// Writes the model into `dir` (created). tokenizerJson: the file to link;
// tokenizerConfig: a file to link, or an object to write as
// tokenizer_config.json (e.g. with a chat_template), or null.
export function writeTinyModel(dir, { tokenizerJson, tokenizerConfig = null, seed = 1 }) {
  fs.mkdirSync(dir, { recursive: true });
  const vocab = tokenizerVocabSize(tokenizerJson);
  const H = 32, heads = 2, kvHeads = 1, headDim = 16, ffn = 64;
  const config = {
    architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', hidden_size: H, intermediate_size: ffn,
    num_hidden_layers: 1, num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: headDim,
    hidden_act: 'silu', max_position_embeddings: 2048, rms_norm_eps: 1e-6, rope_theta: 1000000.0,
    tie_word_embeddings: true, vocab_size: vocab, torch_dtype: 'float32', attention_bias: false,
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const L = 'model.layers.0.';
  const tensors = [
    ['model.embed_tokens.weight', [vocab, H], 'rand'],
    [L + 'input_layernorm.weight', [H], 'ones'],
    [L + 'self_attn.q_proj.weight', [heads * headDim, H], 'rand'],
    [L + 'self_attn.k_proj.weight', [kvHeads * headDim, H], 'rand'],
    [L + 'self_attn.v_proj.weight', [kvHeads * headDim, H], 'rand'],
    [L + 'self_attn.o_proj.weight', [H, heads * headDim], 'rand'],
    [L + 'self_attn.q_norm.weight', [headDim], 'ones'],
    [L + 'self_attn.k_norm.weight', [headDim], 'ones'],
    [L + 'post_attention_layernorm.weight', [H], 'ones'],
    [L + 'mlp.gate_proj.weight', [ffn, H], 'rand'],
    [L + 'mlp.up_proj.weight', [ffn, H], 'rand'],
    [L + 'mlp.down_proj.weight', [H, ffn], 'rand'],
    ['model.norm.weight', [H], 'ones'],
  ];
  const next = rng(seed);
  const header = { __metadata__: { format: 'pt' } };
  const datas = [];
  let offset = 0;
  for (const [name, shape, fill] of tensors) {
    const n = shape.reduce((a, b) => a * b, 1);
    const f = new Float32Array(n);
    for (let i = 0; i < n; i++) f[i] = fill === 'ones' ? 1 : (next() - 0.5) * 0.5;
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + f.byteLength] };
    offset += f.byteLength;
    datas.push(Buffer.from(f.buffer));
  }
  let h = JSON.stringify(header);
  h += ' '.repeat((8 - (h.length % 8)) % 8); // the data starts 8-byte aligned
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), Buffer.concat([len, Buffer.from(h), ...datas]));
  const link = (src, name) => {
    const dst = path.join(dir, name);
    fs.rmSync(dst, { force: true });
    fs.symlinkSync(src, dst);
  };
  link(tokenizerJson, 'tokenizer.json');
  if (typeof tokenizerConfig === 'string') link(tokenizerConfig, 'tokenizer_config.json');
  else if (tokenizerConfig) fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig));
  return { dir, vocab };
}
