/* qiao_model_validate: the hyperparameters against every canonical tensor
 * of the architecture (docs/spec/format.md §8), the tokenizer metadata, and
 * for .qiao files the hash of every tensor. Stops at the first problem. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "format/fp8.h"
#include "format/model_internal.h"

typedef struct checker {
  const qiao_model *m;
  const char *file;
  bool *seen; /* per tensor: matched a canonical name */
} checker;

static void shape_text(char *buf, size_t size, uint32_t n, const uint64_t *shape) {
  int len = snprintf(buf, size, "(");
  for (uint32_t d = 0; d < n && len > 0 && (size_t)len < size; d++)
    len += snprintf(buf + len, size - (size_t)len, "%s%" PRIu64, d ? ", " : "", shape[d]);
  if (len > 0 && (size_t)len < size) snprintf(buf + len, size - (size_t)len, ")");
}

/* Requires tensor `name` (when `required`) with exactly `shape`. */
static qiao_status *expect(checker *c, const char *name, bool required, uint32_t n_dims,
                           uint64_t d0, uint64_t d1, uint64_t d2) {
  uint64_t index = qiao__model_tensor_index(c->m, name);
  if (index == UINT64_MAX)
    return required ? qiao__error(QIAO_MALFORMED, "%s: tensor %s: missing", c->file, name) : NULL;
  const qiao_tensor *t = qiao_model_tensor_at(c->m, index);
  c->seen[index] = true;
  uint64_t want[3] = {d0, d1, d2};
  bool ok = t->n_dims == n_dims;
  for (uint32_t d = 0; ok && d < n_dims; d++)
    ok = t->shape[d] == want[d];
  if (!ok) {
    char got[128], exp[128];
    shape_text(got, sizeof(got), t->n_dims, t->shape);
    shape_text(exp, sizeof(exp), n_dims, want);
    char at[48] = "";
    uint64_t off = qiao__model_tensor_origin(c->m, index)->offset;
    if (off) snprintf(at, sizeof(at), " at byte offset %" PRIu64, off);
    return qiao__error(QIAO_MALFORMED, "%s: tensor %s: shape %s, but the hyperparameters need %s%s",
                       c->file, name, got, exp, at);
  }
  if (t->dtype == QIAO_DTYPE_I32)
    return qiao__error(QIAO_MALFORMED, "%s: tensor %s: dtype i32 is not a weight type", c->file,
                       name);
  return qiao_model_tensor_check(c->m, t);
}

#define LAYER(suffix) (snprintf(name, sizeof(name), "blk.%u.%s", i, suffix), name)

/* The FFN of layer i: dense, or experts (with DeepSeekMoE's shared experts
 * and selection bias when the hyperparameters have them). */
static qiao_status *check_ffn(checker *c, const qiao_hparams *h, uint32_t i) {
  char name[96];
  bool moe = h->n_experts > 0 && qiao_model_tensor_find(c->m, LAYER("ffn_gate_inp.weight"));
  if (moe) {
    uint64_t e = h->n_experts, f = h->expert_ffn_dim, sf = (uint64_t)h->n_shared_experts * f;
    QIAO__TRY(expect(c, LAYER("ffn_gate_inp.weight"), true, 2, e, h->dim, 0));
    QIAO__TRY(expect(c, LAYER("ffn_gate_exps.weight"), true, 3, e, f, h->dim));
    QIAO__TRY(expect(c, LAYER("ffn_up_exps.weight"), true, 3, e, f, h->dim));
    QIAO__TRY(expect(c, LAYER("ffn_down_exps.weight"), true, 3, e, h->dim, f));
    if (h->kv_lora_rank == 0) return NULL;
    QIAO__TRY(expect(c, LAYER("exp_probs_b.bias"), false, 1, e, 0, 0));
    QIAO__TRY(expect(c, LAYER("ffn_gate_shexp.weight"), sf > 0, 2, sf, h->dim, 0));
    QIAO__TRY(expect(c, LAYER("ffn_up_shexp.weight"), sf > 0, 2, sf, h->dim, 0));
    return expect(c, LAYER("ffn_down_shexp.weight"), sf > 0, 2, h->dim, sf, 0);
  }
  if (h->ffn_dim == 0)
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor %s: missing (layer %u is not dense: model.ffn_dim is 0)",
                       c->file, LAYER("ffn_gate_inp.weight"), i);
  QIAO__TRY(expect(c, LAYER("ffn_gate.weight"), true, 2, h->ffn_dim, h->dim, 0));
  QIAO__TRY(expect(c, LAYER("ffn_up.weight"), true, 2, h->ffn_dim, h->dim, 0));
  return expect(c, LAYER("ffn_down.weight"), true, 2, h->dim, h->ffn_dim, 0);
}

/* Multi-head latent attention of layer i (deepseek2): the q path (low-rank
 * or direct), the latent and rope key projection, and the up-projection as
 * one attn_kv_b or split into attn_k_b and attn_v_b. */
static qiao_status *check_mla(checker *c, const qiao_hparams *h, uint32_t i) {
  char name[96];
  const uint64_t H = h->n_heads, L = h->kv_lora_rank, R = h->rope_dim, V = h->v_head_dim;
  const uint64_t N = h->head_dim - R, D = h->dim, ql = h->q_lora_rank;
  if (ql > 0) {
    QIAO__TRY(expect(c, LAYER("attn_q_a.weight"), true, 2, ql, D, 0));
    QIAO__TRY(expect(c, LAYER("attn_q_a_norm.weight"), true, 1, ql, 0, 0));
    QIAO__TRY(expect(c, LAYER("attn_q_b.weight"), true, 2, H * h->head_dim, ql, 0));
  } else {
    QIAO__TRY(expect(c, LAYER("attn_q.weight"), true, 2, H * h->head_dim, D, 0));
  }
  QIAO__TRY(expect(c, LAYER("attn_kv_a_mqa.weight"), true, 2, L + R, D, 0));
  QIAO__TRY(expect(c, LAYER("attn_kv_a_norm.weight"), true, 1, L, 0, 0));
  bool split = qiao_model_tensor_find(c->m, LAYER("attn_k_b.weight")) != NULL;
  QIAO__TRY(expect(c, LAYER("attn_kv_b.weight"), !split, 2, H * (N + V), L, 0));
  QIAO__TRY(expect(c, LAYER("attn_k_b.weight"), split, 3, H, L, N));
  QIAO__TRY(expect(c, LAYER("attn_v_b.weight"), split, 3, H, V, L));
  return expect(c, LAYER("attn_output.weight"), true, 2, D, H * V, 0);
}
#undef LAYER

static qiao_status *check_tensors(checker *c, const qiao_hparams *h) {
  uint64_t q_dim = (uint64_t)h->n_heads * h->head_dim,
           kv_dim = (uint64_t)h->n_kv_heads * h->head_dim;
  QIAO__TRY(expect(c, "token_embd.weight", true, 2, h->vocab_size, h->dim, 0));
  QIAO__TRY(expect(c, "output_norm.weight", true, 1, h->dim, 0, 0));
  QIAO__TRY(expect(c, "output.weight", !h->tied_embeddings, 2, h->vocab_size, h->dim, 0));
  if (h->tied_embeddings && qiao_model_tensor_find(c->m, "output.weight"))
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor output.weight: present, but model.tied_embeddings is true",
                       c->file);
  QIAO__TRY(expect(c, "rope_freqs.weight", false, 1, h->rope_dim / 2, 0, 0));
  char name[96];
#define LAYER(suffix) (snprintf(name, sizeof(name), "blk.%u.%s", i, suffix), name)
  for (uint32_t i = 0; i < h->n_layers; i++) {
    QIAO__TRY(expect(c, LAYER("attn_norm.weight"), true, 1, h->dim, 0, 0));
    QIAO__TRY(expect(c, LAYER("ffn_norm.weight"), true, 1, h->dim, 0, 0));
    QIAO__TRY(check_ffn(c, h, i));
    if (h->kv_lora_rank > 0) {
      QIAO__TRY(check_mla(c, h, i));
      continue;
    }
    QIAO__TRY(expect(c, LAYER("attn_q.weight"), true, 2, q_dim, h->dim, 0));
    QIAO__TRY(expect(c, LAYER("attn_k.weight"), true, 2, kv_dim, h->dim, 0));
    QIAO__TRY(expect(c, LAYER("attn_v.weight"), true, 2, kv_dim, h->dim, 0));
    QIAO__TRY(expect(c, LAYER("attn_output.weight"), true, 2, h->dim, q_dim, 0));
    QIAO__TRY(expect(c, LAYER("attn_q.bias"), h->qkv_bias, 1, q_dim, 0, 0));
    QIAO__TRY(expect(c, LAYER("attn_k.bias"), h->qkv_bias, 1, kv_dim, 0, 0));
    QIAO__TRY(expect(c, LAYER("attn_v.bias"), h->qkv_bias, 1, kv_dim, 0, 0));
    QIAO__TRY(expect(c, LAYER("attn_q_norm.weight"), h->qk_norm, 1, h->head_dim, 0, 0));
    QIAO__TRY(expect(c, LAYER("attn_k_norm.weight"), h->qk_norm, 1, h->head_dim, 0, 0));
  }
#undef LAYER
  for (uint64_t i = 0; i < qiao_model_tensor_count(c->m); i++)
    if (!c->seen[i])
      return qiao__error(QIAO_MALFORMED,
                         "%s: tensor %s: not a tensor of a %s model with these hyperparameters",
                         c->file, qiao_model_tensor_at(c->m, i)->name, h->architecture);
  return NULL;
}

/* ---- Tokenizer ------------------------------------------------------------ */

static qiao_status *array_of(const checker *c, const char *key, qiao_value_type elem,
                             const qiao_kv **out) {
  const qiao_kv *kv = qiao_model_kv_find(c->m, key);
  *out = kv;
  if (kv == NULL) return NULL;
  if (kv->type != QIAO_VALUE_ARRAY || kv->elem_type != elem)
    return qiao__error(QIAO_MALFORMED, "%s: metadata key %s: expected an array of %s", c->file, key,
                       qiao__value_type_name(elem));
  return NULL;
}

static qiao_status *check_id(const checker *c, const char *key, uint64_t id, uint64_t n_tokens) {
  if (id >= n_tokens)
    return qiao__error(QIAO_MALFORMED,
                       "%s: metadata key %s: id %" PRIu64 " is not below the %" PRIu64 " tokens",
                       c->file, key, id, n_tokens);
  return NULL;
}

static qiao_status *check_tokenizer(const checker *c, uint32_t vocab_size) {
  const qiao_kv *tokens, *scores, *types, *merges, *eos;
  QIAO__TRY(array_of(c, "tokenizer.tokens", QIAO_VALUE_STRING, &tokens));
  QIAO__TRY(array_of(c, "tokenizer.scores", QIAO_VALUE_F32, &scores));
  QIAO__TRY(array_of(c, "tokenizer.token_types", QIAO_VALUE_I32, &types));
  QIAO__TRY(array_of(c, "tokenizer.merges", QIAO_VALUE_STRING, &merges));
  QIAO__TRY(array_of(c, "tokenizer.eos_ids", QIAO_VALUE_U32, &eos));
  qiao_string model = {"none", 4};
  if (qiao_model_kv_find(c->m, "tokenizer.model"))
    QIAO__TRY(qiao_model_get_string(c->m, "tokenizer.model", &model));
  bool none = model.len == 4 && memcmp(model.data, "none", 4) == 0;
  if (tokens == NULL) {
    if (!none)
      return qiao__error(QIAO_MALFORMED, "%s: metadata key tokenizer.tokens: missing", c->file);
    return NULL;
  }
  uint64_t n = tokens->array_len;
  if (n == 0)
    return qiao__error(QIAO_MALFORMED, "%s: metadata key tokenizer.tokens: empty", c->file);
  if (vocab_size && n > vocab_size)
    return qiao__error(QIAO_MALFORMED,
                       "%s: metadata key tokenizer.tokens: %" PRIu64
                       " tokens, more than model.vocab_size %u",
                       c->file, n, vocab_size);
  if (scores && scores->array_len != n)
    return qiao__error(QIAO_MALFORMED,
                       "%s: metadata key tokenizer.scores: %" PRIu64 " scores for %" PRIu64
                       " tokens",
                       c->file, scores->array_len, n);
  if (types && types->array_len != n)
    return qiao__error(QIAO_MALFORMED,
                       "%s: metadata key tokenizer.token_types: %" PRIu64 " types for %" PRIu64
                       " tokens",
                       c->file, types->array_len, n);
  if (model.len == 3 && memcmp(model.data, "spm", 3) == 0 && scores == NULL)
    return qiao__error(QIAO_MALFORMED,
                       "%s: metadata key tokenizer.scores: missing for an spm tokenizer", c->file);
  if (model.len == 3 && memcmp(model.data, "bpe", 3) == 0 && merges == NULL)
    return qiao__error(QIAO_MALFORMED,
                       "%s: metadata key tokenizer.merges: missing for a bpe tokenizer", c->file);
  static const char *const id_keys[] = {"tokenizer.bos_id", "tokenizer.unk_id", "tokenizer.pad_id"};
  for (size_t k = 0; k < 3; k++) {
    if (qiao_model_kv_find(c->m, id_keys[k]) == NULL) continue;
    uint32_t id;
    QIAO__TRY(qiao_model_get_u32(c->m, id_keys[k], &id));
    if (id == UINT32_MAX) continue; /* -1 as u32: no such token (format.md §7.3) */
    QIAO__TRY(check_id(c, id_keys[k], id, n));
  }
  if (eos)
    for (uint64_t i = 0; i < eos->array_len; i++)
      QIAO__TRY(check_id(c, "tokenizer.eos_ids", ((const uint32_t *)eos->v.array)[i], n));
  return NULL;
}

/* ---- Hashes ----------------------------------------------------------------- */

/* XXH3-64 of the tensor's bytes, releasing the file pages as it goes so
 * that validating a model larger than memory works. */
static uint64_t hash_tensor(const qiao_model *m, const qiao_tensor *t) {
  enum { CHUNK = 64 << 20 };
  XXH3_state_t *s = XXH3_createState();
  if (s == NULL) return XXH3_64bits(t->data, (size_t)t->n_bytes);
  XXH3_64bits_reset(s);
  const uint8_t *p = t->data;
  for (uint64_t done = 0; done < t->n_bytes;) {
    uint64_t k = t->n_bytes - done < CHUNK ? t->n_bytes - done : CHUNK;
    XXH3_64bits_update(s, p + done, (size_t)k);
    qiao__model_release_pages(m, p + done, k);
    done += k;
  }
  uint64_t h = XXH3_64bits_digest(s);
  XXH3_freeState(s);
  return h;
}

/* f8_e4m3_b128 data never holds the NaN codes 0x7F / 0xFF (format.md §4.1). */
static qiao_status *check_fp8_codes(const checker *c, const qiao_tensor *t, uint64_t offset) {
  const uint8_t *p = t->data;
  for (uint64_t b = 0; b < t->n_bytes / QIAO__F8_BLOCK_BYTES; b++) {
    const uint8_t *codes = p + b * QIAO__F8_BLOCK_BYTES + 4;
    uint64_t j = qiao__e4m3_find_nan(codes, QIAO__F8_BLOCK);
    if (j < QIAO__F8_BLOCK)
      return qiao__error(QIAO_MALFORMED,
                         "%s: tensor %s: element %" PRIu64 " is the FP8 NaN code 0x%02x at byte "
                         "offset %" PRIu64,
                         c->file, t->name, b * QIAO__F8_BLOCK + j, codes[j],
                         offset + b * QIAO__F8_BLOCK_BYTES + 4 + j);
  }
  return NULL;
}

static qiao_status *check_hashes(const checker *c) {
  for (uint64_t i = 0; i < qiao_model_tensor_count(c->m); i++) {
    const qiao__tensor_origin *o = qiao__model_tensor_origin(c->m, i);
    if (!o->has_hash) continue;
    const qiao_tensor *t = qiao_model_tensor_at(c->m, i);
    uint64_t h = hash_tensor(c->m, t);
    if (h != o->hash)
      return qiao__error(QIAO_MALFORMED,
                         "%s: tensor %s: data hash %016" PRIx64
                         " does not match the stored %016" PRIx64
                         " (corrupt data) at byte offset %" PRIu64,
                         c->file, t->name, h, o->hash, o->offset);
    if (t->dtype == QIAO_DTYPE_F8_E4M3_B128) QIAO__TRY(check_fp8_codes(c, t, o->offset));
  }
  return NULL;
}

static qiao_status *check_model(const qiao_model *model, bool hashes) {
  checker c = {model, qiao_model_path(model), NULL};
  if (hashes) QIAO__TRY(check_hashes(&c));
  if (qiao_model_tensor_count(model) == 0) {
    QIAO__TRY(check_tokenizer(&c, 0));
    return qiao__error(QIAO_MALFORMED, "%s: tensors: none (a vocabulary-only file is not a model)",
                       c.file);
  }
  qiao_hparams h;
  QIAO__TRY(qiao_model_get_hparams(model, &h));
  c.seen = calloc((size_t)qiao_model_tensor_count(model), sizeof(bool));
  if (c.seen == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  qiao_status *st = check_tensors(&c, &h);
  free(c.seen);
  QIAO__TRY(st);
  return check_tokenizer(&c, h.vocab_size);
}

qiao_status *qiao_model_validate(const qiao_model *model) {
  return check_model(model, true);
}

qiao_status *qiao_model_check(const qiao_model *model) {
  return check_model(model, false);
}
