/* llama2.c checkpoints (.bin), as written by karpathy/llama2.c:
 *
 * legacy: a header of 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 *   vocab_size, seq_len; a negative vocab_size means the classifier is stored
 *   separately), then fp32 arrays in this order:
 *     token_embedding (vocab, dim), rms_att (L, dim), wq (L, dim, dim),
 *     wk (L, kv_dim, dim), wv (L, kv_dim, dim), wo (L, dim, dim),
 *     rms_ffn (L, dim), w1 (L, hidden, dim), w2 (L, dim, hidden),
 *     w3 (L, hidden, dim), rms_final (dim), freq_cis_real (seq_len, head/2),
 *     freq_cis_imag (seq_len, head/2), [wcls (vocab, dim) when unshared].
 * version 1 ("ak42" magic): uint32 magic 0x616b3432, int32 version 1, the
 *   same 7 int32, uint8 shared_classifier, zero padding to 256 bytes, then
 *   fp32: rms_att (L, dim), rms_ffn (L, dim), rms_final (dim),
 *   token_embedding (vocab, dim), wq, wk, wv, wo, w1, w2, w3 (shapes as
 *   above), [wcls (vocab, dim) when not shared].
 *
 * The weights are already in the pair order of `normal` RoPE, so every tensor
 * is added zero-copy: one per layer, pointing into the file. */
#include <stdio.h>
#include <string.h>

#include "core/checked.h"
#include "format/import_llama2c.h"

#define AK42_MAGIC 0x616b3432u
#define AK42_HEADER_BYTES 256u

typedef struct llama2c_config {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
  bool shared_classifier;
  int version; /* 0 = legacy */
} llama2c_config;

/* A cursor over the weights that refuses to walk past the end of the file. */
typedef struct weight_cursor {
  const char *file;
  const uint8_t *data;
  uint64_t size;
  uint64_t offset;
} weight_cursor;

static int32_t read_i32(const uint8_t *p) {
  uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  int32_t out;
  memcpy(&out, &v, sizeof(out));
  return out;
}

/* Reserves `count` float32 values for the array `field`; *out_offset is
 * where they start. */
static qiao_status *take(weight_cursor *c, const char *field, uint64_t a, uint64_t b, uint64_t d,
                         uint64_t *out_offset) {
  uint64_t count, bytes;
  if (!qiao__mul_u64(a, b, &count) || !qiao__mul_u64(count, d, &count) ||
      !qiao__mul_u64(count, 4, &bytes))
    return qiao__error(QIAO_MALFORMED, "%s: %s: size overflows", c->file, field);
  if (!qiao__range_ok(c->offset, bytes, c->size))
    return qiao__error(QIAO_MALFORMED,
                       "%s: %s: %llu bytes at byte offset %llu run past the end of the "
                       "%llu byte file",
                       c->file, field, (unsigned long long)bytes, (unsigned long long)c->offset,
                       (unsigned long long)c->size);
  *out_offset = c->offset;
  c->offset += bytes;
  return NULL;
}

static qiao_status *parse_header(const uint8_t *data, uint64_t size, const char *file,
                                 llama2c_config *cfg, uint64_t *out_weights_offset) {
  const uint8_t *fields = data;
  uint64_t header_bytes = 28;
  memset(cfg, 0, sizeof(*cfg));
  if (size >= 4 && (uint32_t)read_i32(data) == AK42_MAGIC) {
    if (size < AK42_HEADER_BYTES)
      return qiao__error(QIAO_MALFORMED, "%s: %llu bytes, shorter than the %u byte header", file,
                         (unsigned long long)size, AK42_HEADER_BYTES);
    cfg->version = read_i32(data + 4);
    if (cfg->version != 1)
      return qiao__error(QIAO_UNSUPPORTED,
                         "%s: version: llama2.c export version %d is not supported (only 1, fp32) "
                         "at byte offset 4",
                         file, cfg->version);
    fields = data + 8;
    if (data[36] > 1)
      return qiao__error(QIAO_MALFORMED,
                         "%s: shared_classifier: %u is not 0 or 1 at byte offset 36", file,
                         data[36]);
    cfg->shared_classifier = data[36] == 1;
    header_bytes = AK42_HEADER_BYTES;
  } else if (size < 28) {
    return qiao__error(QIAO_MALFORMED, "%s: %llu bytes, shorter than the 28 byte header", file,
                       (unsigned long long)size);
  }
  uint64_t base = (uint64_t)(fields - data);
  cfg->dim = read_i32(fields);
  cfg->hidden_dim = read_i32(fields + 4);
  cfg->n_layers = read_i32(fields + 8);
  cfg->n_heads = read_i32(fields + 12);
  cfg->n_kv_heads = read_i32(fields + 16);
  cfg->vocab_size = read_i32(fields + 20);
  cfg->seq_len = read_i32(fields + 24);
  if (cfg->version == 0) {
    cfg->shared_classifier = cfg->vocab_size > 0;
    if (cfg->vocab_size < 0 && cfg->vocab_size != INT32_MIN) cfg->vocab_size = -cfg->vocab_size;
  }
  const struct {
    const char *name;
    int32_t value;
  } positive[] = {
      {"dim", cfg->dim},         {"hidden_dim", cfg->hidden_dim}, {"n_layers", cfg->n_layers},
      {"n_heads", cfg->n_heads}, {"n_kv_heads", cfg->n_kv_heads}, {"vocab_size", cfg->vocab_size},
      {"seq_len", cfg->seq_len}};
  for (size_t i = 0; i < sizeof(positive) / sizeof(positive[0]); i++) {
    if (positive[i].value <= 0)
      return qiao__error(QIAO_MALFORMED, "%s: %s: %d is not positive at byte offset %llu", file,
                         positive[i].name, positive[i].value, (unsigned long long)(base + 4 * i));
  }
  if (cfg->dim % cfg->n_heads != 0)
    return qiao__error(QIAO_MALFORMED,
                       "%s: n_heads: dim %d is not a multiple of %d heads at byte offset %llu",
                       file, cfg->dim, cfg->n_heads, (unsigned long long)(base + 12));
  if (cfg->n_heads % cfg->n_kv_heads != 0 || cfg->n_kv_heads > cfg->n_heads)
    return qiao__error(
        QIAO_MALFORMED,
        "%s: n_kv_heads: %d heads are not a multiple of %d KV heads at byte offset %llu", file,
        cfg->n_heads, cfg->n_kv_heads, (unsigned long long)(base + 16));
  if ((cfg->dim / cfg->n_heads) % 2 != 0)
    return qiao__error(QIAO_MALFORMED, "%s: n_heads: head size %d is odd at byte offset %llu", file,
                       cfg->dim / cfg->n_heads, (unsigned long long)(base + 12));
  *out_weights_offset = header_bytes;
  return NULL;
}

/* Where each array starts in the file. */
typedef struct llama2c_layout {
  uint64_t token_embd, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;
} llama2c_layout;

static qiao_status *plan_layout(const llama2c_config *cfg, weight_cursor *c, llama2c_layout *lay) {
  uint64_t dim = (uint64_t)cfg->dim, hidden = (uint64_t)cfg->hidden_dim;
  uint64_t L = (uint64_t)cfg->n_layers, vocab = (uint64_t)cfg->vocab_size;
  uint64_t head = dim / (uint64_t)cfg->n_heads, kv_dim = head * (uint64_t)cfg->n_kv_heads;
  uint64_t unused = 0;
  if (cfg->version == 0) {
    QIAO__TRY(take(c, "token_embedding", vocab, dim, 1, &lay->token_embd));
    QIAO__TRY(take(c, "rms_att", L, dim, 1, &lay->rms_att));
    QIAO__TRY(take(c, "wq", L, dim, dim, &lay->wq));
    QIAO__TRY(take(c, "wk", L, kv_dim, dim, &lay->wk));
    QIAO__TRY(take(c, "wv", L, kv_dim, dim, &lay->wv));
    QIAO__TRY(take(c, "wo", L, dim, dim, &lay->wo));
    QIAO__TRY(take(c, "rms_ffn", L, dim, 1, &lay->rms_ffn));
    QIAO__TRY(take(c, "w1", L, hidden, dim, &lay->w1));
    QIAO__TRY(take(c, "w2", L, dim, hidden, &lay->w2));
    QIAO__TRY(take(c, "w3", L, hidden, dim, &lay->w3));
    QIAO__TRY(take(c, "rms_final", dim, 1, 1, &lay->rms_final));
    QIAO__TRY(take(c, "freq_cis_real", (uint64_t)cfg->seq_len, head / 2, 1, &unused));
    QIAO__TRY(take(c, "freq_cis_imag", (uint64_t)cfg->seq_len, head / 2, 1, &unused));
  } else {
    QIAO__TRY(take(c, "rms_att", L, dim, 1, &lay->rms_att));
    QIAO__TRY(take(c, "rms_ffn", L, dim, 1, &lay->rms_ffn));
    QIAO__TRY(take(c, "rms_final", dim, 1, 1, &lay->rms_final));
    QIAO__TRY(take(c, "token_embedding", vocab, dim, 1, &lay->token_embd));
    QIAO__TRY(take(c, "wq", L, dim, dim, &lay->wq));
    QIAO__TRY(take(c, "wk", L, kv_dim, dim, &lay->wk));
    QIAO__TRY(take(c, "wv", L, kv_dim, dim, &lay->wv));
    QIAO__TRY(take(c, "wo", L, dim, dim, &lay->wo));
    QIAO__TRY(take(c, "w1", L, hidden, dim, &lay->w1));
    QIAO__TRY(take(c, "w2", L, dim, hidden, &lay->w2));
    QIAO__TRY(take(c, "w3", L, hidden, dim, &lay->w3));
  }
  if (!cfg->shared_classifier) QIAO__TRY(take(c, "wcls", vocab, dim, 1, &lay->wcls));
  if (c->offset != c->size)
    return qiao__error(QIAO_MALFORMED,
                       "%s: %llu unexpected bytes after the weights at byte offset %llu", c->file,
                       (unsigned long long)(c->size - c->offset), (unsigned long long)c->offset);
  return NULL;
}

/* Adds an fp32 tensor at byte `offset`: (rows, cols), or (cols) when rows
 * is 0. */
static qiao_status *add_f32(qiao_model *model, const uint8_t *data, const char *name,
                            uint64_t offset, uint64_t rows, uint64_t cols) {
  uint64_t shape[2] = {rows, cols};
  uint32_t n_dims = rows == 0 ? 1 : 2;
  const uint64_t *s = rows == 0 ? &shape[1] : shape;
  QIAO__TRY(qiao__model_add_tensor(model, name, QIAO_DTYPE_F32, n_dims, s, data + offset,
                                   (rows == 0 ? 1 : rows) * cols * 4));
  qiao__tensor_origin *origin =
      qiao__model_tensor_origin(model, qiao_model_tensor_count(model) - 1);
  if (origin != NULL) origin->offset = offset;
  return NULL;
}

/* Adds layer `l`'s slice of the per-layer array at `base`, whose layers are
 * (rows, cols) each, or (cols) when rows is 0, as blk.{l}.`suffix`. */
static qiao_status *add_layer(qiao_model *model, const uint8_t *data, uint64_t l,
                              const char *suffix, uint64_t base, uint64_t rows, uint64_t cols) {
  char name[64];
  snprintf(name, sizeof(name), "blk.%llu.%s", (unsigned long long)l, suffix);
  uint64_t slice_bytes = (rows == 0 ? 1 : rows) * cols * 4; /* bounded by plan_layout */
  return add_f32(model, data, name, base + l * slice_bytes, rows, cols);
}

static qiao_status *add_tensors(qiao_model *model, const uint8_t *data, const llama2c_config *cfg,
                                const llama2c_layout *lay) {
  uint64_t dim = (uint64_t)cfg->dim, hidden = (uint64_t)cfg->hidden_dim;
  uint64_t vocab = (uint64_t)cfg->vocab_size;
  uint64_t kv_dim = dim / (uint64_t)cfg->n_heads * (uint64_t)cfg->n_kv_heads;
  QIAO__TRY(add_f32(model, data, "token_embd.weight", lay->token_embd, vocab, dim));
  QIAO__TRY(add_f32(model, data, "output_norm.weight", lay->rms_final, 0, dim));
  if (!cfg->shared_classifier)
    QIAO__TRY(add_f32(model, data, "output.weight", lay->wcls, vocab, dim));
  for (uint64_t l = 0; l < (uint64_t)cfg->n_layers; l++) {
    QIAO__TRY(add_layer(model, data, l, "attn_norm.weight", lay->rms_att, 0, dim)); /* (dim) */
    QIAO__TRY(add_layer(model, data, l, "attn_q.weight", lay->wq, dim, dim));       /* (dim, dim) */
    QIAO__TRY(add_layer(model, data, l, "attn_k.weight", lay->wk, kv_dim, dim)); /* (kv_dim, dim) */
    QIAO__TRY(add_layer(model, data, l, "attn_v.weight", lay->wv, kv_dim, dim)); /* (kv_dim, dim) */
    QIAO__TRY(add_layer(model, data, l, "attn_output.weight", lay->wo, dim, dim)); /* (dim, dim) */
    QIAO__TRY(add_layer(model, data, l, "ffn_norm.weight", lay->rms_ffn, 0, dim)); /* (dim) */
    QIAO__TRY(add_layer(model, data, l, "ffn_gate.weight", lay->w1, hidden, dim)); /* w1 */
    QIAO__TRY(add_layer(model, data, l, "ffn_down.weight", lay->w2, dim, hidden)); /* w2 */
    QIAO__TRY(add_layer(model, data, l, "ffn_up.weight", lay->w3, hidden, dim));   /* w3 */
  }
  return NULL;
}

static qiao_status *set_string(qiao_model *model, const char *key, const char *value) {
  return qiao__model_set_string(model, key, value, strlen(value));
}

static qiao_status *add_hparams(qiao_model *model, const char *file, const llama2c_config *cfg) {
  const char *base = strrchr(file, '/');
  base = base ? base + 1 : file;
  uint32_t head_dim = (uint32_t)(cfg->dim / cfg->n_heads);
  QIAO__TRY(set_string(model, "general.architecture", "llama"));
  QIAO__TRY(set_string(model, "general.name", base));
  if (qiao_model_kv_find(model, "general.source_format") == NULL)
    QIAO__TRY(set_string(model, "general.source_format", "llama2c"));
  QIAO__TRY(set_string(model, "general.source_architecture",
                       cfg->version == 0 ? "llama2.c" : "llama2.c v1"));
  QIAO__TRY(qiao__model_set_u32(model, "model.vocab_size", (uint32_t)cfg->vocab_size));
  QIAO__TRY(qiao__model_set_u32(model, "model.context_length", (uint32_t)cfg->seq_len));
  QIAO__TRY(qiao__model_set_u32(model, "model.dim", (uint32_t)cfg->dim));
  QIAO__TRY(qiao__model_set_u32(model, "model.n_layers", (uint32_t)cfg->n_layers));
  QIAO__TRY(qiao__model_set_u32(model, "model.n_heads", (uint32_t)cfg->n_heads));
  QIAO__TRY(qiao__model_set_u32(model, "model.n_kv_heads", (uint32_t)cfg->n_kv_heads));
  QIAO__TRY(qiao__model_set_u32(model, "model.head_dim", head_dim));
  QIAO__TRY(qiao__model_set_u32(model, "model.ffn_dim", (uint32_t)cfg->hidden_dim));
  QIAO__TRY(qiao__model_set_f32(model, "model.norm_eps", 1e-5f));
  QIAO__TRY(qiao__model_set_f32(model, "model.rope.theta", 10000.0f));
  QIAO__TRY(qiao__model_set_u32(model, "model.rope.dim", head_dim));
  QIAO__TRY(set_string(model, "model.rope.style", "normal"));
  QIAO__TRY(qiao__model_set_bool(model, "model.tied_embeddings", cfg->shared_classifier));
  return NULL;
}

qiao_status *qiao__import_llama2c(qiao_model *model, const uint8_t *data, uint64_t size,
                                  const char *name, const char *tokenizer_path) {
  const char *file = name ? name : "(buffer)";
  llama2c_config cfg;
  uint64_t weights_offset = 0;
  QIAO__TRY(parse_header(data, size, file, &cfg, &weights_offset));
  weight_cursor cursor = {file, data, size, weights_offset};
  llama2c_layout layout = {0};
  QIAO__TRY(plan_layout(&cfg, &cursor, &layout));
  QIAO__TRY(add_hparams(model, file, &cfg));
  QIAO__TRY(add_tensors(model, data, &cfg, &layout));
  if (tokenizer_path != NULL) {
    const uint8_t *tok;
    uint64_t tok_size;
    QIAO__TRY(qiao__model_map_file(model, tokenizer_path, &tok, &tok_size));
    QIAO__TRY(qiao__llama2c_add_tokenizer(model, tok, tok_size, tokenizer_path,
                                          (uint32_t)cfg.vocab_size));
  }
  return NULL;
}
