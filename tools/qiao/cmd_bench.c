/* qiao bench: prefill and decode speed of a model file, or of a known shape
 * with random weights built in memory, against the machine's memory
 * bandwidth bound (decode reads every weight once per token). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"
#include "engine_cli.h"
#include "format/import_tokenizer.h"
#include "format/model_internal.h"

/* ---- Known shapes (from the models' published configs) ------------------- */

typedef struct shape {
  const char *name, *arch;
  uint32_t dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab;
  bool tied, qkv_bias, qk_norm, llama3_rope;
  float theta;
} shape;

static const shape shapes[] = {
    {"qwen2.5-0.5b", "qwen2", 896, 24, 14, 2, 64, 4864, 151936, true, true, false, false, 1e6f},
    {"qwen2.5-7b", "qwen2", 3584, 28, 28, 4, 128, 18944, 152064, false, true, false, false, 1e6f},
    {"llama3-8b", "llama", 4096, 32, 32, 8, 128, 14336, 128256, false, false, false, false, 5e5f},
    {"llama3.2-1b", "llama", 2048, 16, 32, 8, 64, 8192, 128256, true, false, false, true, 5e5f},
    {"qwen3-0.6b", "qwen3", 1024, 28, 16, 8, 128, 3072, 151936, true, false, true, false, 1e6f},
};

/* xorshift64*: quick random bytes for weights (not for sampling). */
static uint64_t rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545f4914f6cdd1dull;
}

typedef struct fill_job {
  uint8_t *data;
  uint64_t n_bytes;
  qiao_dtype dtype;
  uint64_t seed;
} fill_job;

/* Random weights of a plausible scale (|w| <~ 0.05): int8/int4 values with
 * a fixed f16 scale for q8_0/q4_0, small halves/floats otherwise. */
static void *fill_random(void *arg) {
  fill_job *j = arg;
  uint64_t s = j->seed | 1;
  uint8_t *p = j->data;
  if (j->dtype == QIAO_DTYPE_Q8_0 || j->dtype == QIAO_DTYPE_Q4_0) {
    const uint16_t scale = j->dtype == QIAO_DTYPE_Q8_0 ? 0x1a8f /* ~4e-4 */ : 0x2066 /* ~7e-3 */;
    const uint64_t block = j->dtype == QIAO_DTYPE_Q8_0 ? 34 : 18;
    for (uint64_t b = 0; b + block <= j->n_bytes; b += block) {
      p[b] = (uint8_t)(scale & 0xff);
      p[b + 1] = (uint8_t)(scale >> 8);
      for (uint64_t i = 2; i < block; i += 8) {
        uint64_t r = rng_next(&s);
        memcpy(p + b + i, &r, block - i < 8 ? block - i : 8);
      }
    }
  } else if (j->dtype == QIAO_DTYPE_F16 || j->dtype == QIAO_DTYPE_BF16) {
    for (uint64_t i = 0; i + 2 <= j->n_bytes; i += 2) {
      uint64_t r = i % 8 == 0 ? rng_next(&s) : s;
      uint16_t m = (uint16_t)(r >> (16 * (i % 8 / 2)));
      /* sign, exponent giving [2^-8, 2^-5), random mantissa */
      uint16_t h = j->dtype == QIAO_DTYPE_F16
                       ? (uint16_t)((m & 0x8000) | ((7 + (m >> 13 & 3)) << 10) | (m & 0x3ff))
                       : (uint16_t)((m & 0x8000) | ((119 + (m >> 13 & 3)) << 7) | (m & 0x7f));
      memcpy(p + i, &h, 2);
    }
  } else {
    for (uint64_t i = 0; i + 4 <= j->n_bytes; i += 4) {
      float f = ((float)(rng_next(&s) >> 40) / (float)(1 << 24) - 0.5f) * 0.1f;
      memcpy(p + i, &f, 4);
    }
  }
  return NULL;
}

static qiao_status *add_random(qiao_model *m, const char *name, qiao_dtype dtype, uint32_t n_dims,
                               const uint64_t *dims, uint64_t seed, uint32_t n_threads) {
  uint64_t n_bytes = 0;
  QIAO__TRY(qiao__tensor_bytes(dtype, n_dims, dims, &n_bytes));
  void *data = NULL;
  QIAO__TRY(qiao__model_alloc(m, n_bytes, &data));
  uint64_t unit = dtype == QIAO_DTYPE_Q8_0 ? 34 : dtype == QIAO_DTYPE_Q4_0 ? 18 : 4;
  fill_job jobs[16];
  pthread_t th[16];
  uint32_t nt = n_threads < 1 ? 1 : n_threads > 16 ? 16 : n_threads;
  uint64_t units = n_bytes / unit, per = (units + nt - 1) / nt;
  for (uint32_t t = 0; t < nt; t++) {
    uint64_t a = t * per > units ? units : t * per,
             b = (t + 1) * per > units ? units : (t + 1) * per;
    jobs[t] = (fill_job){(uint8_t *)data + a * unit, (b - a) * unit, dtype, seed * 1000003 + t};
    if (pthread_create(&th[t], NULL, fill_random, &jobs[t]) != 0) fill_random(&jobs[t]), th[t] = 0;
  }
  for (uint32_t t = 0; t < nt; t++)
    if (th[t]) pthread_join(th[t], NULL);
  return qiao__model_add_tensor(m, name, dtype, n_dims, dims, data, n_bytes);
}

static qiao_status *add_ones(qiao_model *m, const char *name, uint64_t n) {
  float *data = NULL;
  QIAO__TRY(qiao__model_alloc(m, n * 4, (void **)&data));
  for (uint64_t i = 0; i < n; i++)
    data[i] = 1.0f;
  return qiao__model_add_tensor(m, name, QIAO_DTYPE_F32, 1, &n, data, n * 4);
}

/* The tokenizer of a tokenizer.json (and the tokenizer_config.json beside
 * it), its vocabulary padded with unused "[PADi]" tokens up to the shape's
 * vocab, as the published GGUFs of these models are (llama.cpp wants one
 * token per embedding row). */
static qiao_status *add_tokenizer(qiao_model *m, const char *path, uint32_t vocab) {
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  qiao_model *t = NULL;
  QIAO__TRY(qiao__model_create(path, "hf", &t));
  qiao_status *st = qiao__import_tokenizer_json(t, path, slash ? dir : ".");
  for (uint64_t i = 0; st == NULL && i < qiao_model_kv_count(t); i++) {
    const qiao_kv *kv = qiao_model_kv_at(t, i);
    bool tokens = strcmp(kv->key, "tokenizer.tokens") == 0,
         types = strcmp(kv->key, "tokenizer.token_types") == 0;
    if ((!tokens && !types) || kv->type != QIAO_VALUE_ARRAY || kv->array_len >= vocab) {
      st = qiao__model_set_kv(m, kv);
      continue;
    }
    const uint64_t n = kv->array_len;
    if (types && kv->elem_type != QIAO_VALUE_I32) {
      st = qiao__error(QIAO_MALFORMED, "%s: tokenizer.token_types is not i32", path);
    } else if (types) {
      int32_t *v = NULL;
      st = qiao__model_alloc(m, vocab * 4ull, (void **)&v);
      if (st == NULL) {
        memcpy(v, kv->v.array, n * 4);
        for (uint64_t j = n; j < vocab; j++)
          v[j] = 5; /* unused */
        st = qiao__model_set_array(m, kv->key, QIAO_VALUE_I32, vocab, v);
      }
    } else {
      qiao_string *v = NULL;
      char *names = NULL;
      st = qiao__model_alloc(m, vocab * sizeof(qiao_string), (void **)&v);
      if (st == NULL) st = qiao__model_alloc(m, (vocab - n) * 24, (void **)&names);
      if (st == NULL) {
        memcpy(v, kv->v.array, n * sizeof(qiao_string));
        for (uint64_t j = n; j < vocab; j++) {
          char *name = names + (j - n) * 24;
          v[j] =
              (qiao_string){name, (uint64_t)snprintf(name, 24, "[PAD%llu]", (unsigned long long)j)};
        }
        st = qiao__model_set_array(m, kv->key, QIAO_VALUE_STRING, vocab, v);
      }
    }
  }
  qiao_model_close(t);
  return st;
}

/* Zeroes the output rows (the embedding when tied) of every token that is
 * not plain text by itself: control and padding tokens, and pieces of an
 * unfinished UTF-8 character. Their logits are then 0 among ~150k random
 * ones, so greedy decoding of the random model yields valid UTF-8 text,
 * which servers' output parsers need (llama-server fails a stream on
 * invalid UTF-8). */
static qiao_status *zero_non_text_rows(qiao_model *m) {
  const qiao_tensor *w = qiao_model_tensor_find(m, "output.weight");
  if (w == NULL) w = qiao_model_tensor_find(m, "token_embd.weight");
  const qiao_kv *types = qiao_model_kv_find(m, "tokenizer.token_types");
  if (w == NULL || w->n_dims != 2 || types == NULL || types->elem_type != QIAO_VALUE_I32)
    return qiao__error(QIAO_MALFORMED, "bench: no output matrix or token types to clean");
  qiao_tokenizer *tok = NULL;
  QIAO__TRY(qiao_tokenizer_create_from_model(m, &tok));
  const uint64_t rows = w->shape[0], row_bytes = w->n_bytes / rows;
  const int32_t *type = types->v.array;
  qiao_status *st = NULL;
  uint64_t zeroed = 0;
  for (uint64_t id = 0; st == NULL && id < rows; id++) {
    bool text = id < types->array_len && type[id] == 1; /* normal */
    char *s = NULL;
    size_t len = 0;
    int32_t i32 = (int32_t)id;
    if (text && (st = qiao_tokenizer_decode(tok, &i32, 1, &s, &len)) == NULL)
      text = len > 0 && memmem(s, len, "\xef\xbf\xbd", 3) == NULL; /* no U+FFFD */
    free(s);
    /* the model's own memory (qiao__model_alloc), written before any use */
    if (!text) {
      memset((uint8_t *)(uintptr_t)w->data + id * row_bytes, 0, row_bytes);
      zeroed++;
    }
  }
  qiao_tokenizer_destroy(tok);
  if (st == NULL)
    fprintf(stderr, "bench: %llu of %llu tokens are not text alone: their output rows are zero\n",
            (unsigned long long)zeroed, (unsigned long long)rows);
  return st;
}

static qiao_status *build_shape(const shape *sh, qiao_dtype dtype, uint32_t n_threads,
                                const char *tokenizer_json, qiao_model **out) {
  qiao_model *m = NULL;
  QIAO__TRY(qiao__model_create(sh->name, "qiao", &m));
  qiao_status *st = NULL;
#define T(x)                                                                                       \
  do {                                                                                             \
    if (st == NULL) st = (x);                                                                      \
  } while (0)
  T(qiao__model_set_string(m, "general.architecture", sh->arch, strlen(sh->arch)));
  T(qiao__model_set_string(m, "general.name", sh->name, strlen(sh->name)));
  T(qiao__model_set_u32(m, "model.vocab_size", sh->vocab));
  T(qiao__model_set_u32(m, "model.context_length", 4096));
  T(qiao__model_set_u32(m, "model.dim", sh->dim));
  T(qiao__model_set_u32(m, "model.n_layers", sh->n_layers));
  T(qiao__model_set_u32(m, "model.n_heads", sh->n_heads));
  T(qiao__model_set_u32(m, "model.n_kv_heads", sh->n_kv_heads));
  T(qiao__model_set_u32(m, "model.head_dim", sh->head_dim));
  T(qiao__model_set_u32(m, "model.ffn_dim", sh->ffn_dim));
  T(qiao__model_set_f32(m, "model.norm_eps", 1e-6f));
  T(qiao__model_set_f32(m, "model.rope.theta", sh->theta));
  T(qiao__model_set_bool(m, "model.tied_embeddings", sh->tied));
  T(qiao__model_set_bool(m, "model.qkv_bias", sh->qkv_bias));
  T(qiao__model_set_bool(m, "model.qk_norm", sh->qk_norm));
  if (sh->llama3_rope) {
    T(qiao__model_set_string(m, "model.rope.scaling.type", "llama3", 6));
    T(qiao__model_set_f32(m, "model.rope.scaling.factor", 32));
  }
  if (tokenizer_json != NULL)
    T(add_tokenizer(m, tokenizer_json, sh->vocab));
  else
    T(qiao__model_set_string(m, "tokenizer.model", "none", 4));
  const uint64_t D = sh->dim, qd = (uint64_t)sh->n_heads * sh->head_dim,
                 kvd = (uint64_t)sh->n_kv_heads * sh->head_dim, F = sh->ffn_dim, V = sh->vocab;
  uint64_t seed = 1;
  const uint64_t embd[] = {V, D};
  T(add_random(m, "token_embd.weight", dtype, 2, embd, seed++, n_threads));
  if (!sh->tied) T(add_random(m, "output.weight", dtype, 2, embd, seed++, n_threads));
  T(add_ones(m, "output_norm.weight", D));
  char name[128];
  for (uint32_t l = 0; l < sh->n_layers && st == NULL; l++) {
    const struct {
      const char *suffix;
      uint64_t rows, cols;
    } mats[] = {{"attn_q.weight", qd, D},      {"attn_k.weight", kvd, D}, {"attn_v.weight", kvd, D},
                {"attn_output.weight", D, qd}, {"ffn_gate.weight", F, D}, {"ffn_up.weight", F, D},
                {"ffn_down.weight", D, F}};
    for (size_t i = 0; i < sizeof(mats) / sizeof(mats[0]); i++) {
      snprintf(name, sizeof(name), "blk.%u.%s", l, mats[i].suffix);
      const uint64_t dims[] = {mats[i].rows, mats[i].cols};
      T(add_random(m, name, dtype, 2, dims, seed++, n_threads));
    }
    snprintf(name, sizeof(name), "blk.%u.attn_norm.weight", l);
    T(add_ones(m, name, D));
    snprintf(name, sizeof(name), "blk.%u.ffn_norm.weight", l);
    T(add_ones(m, name, D));
    if (sh->qkv_bias) {
      const char *b[] = {"attn_q.bias", "attn_k.bias", "attn_v.bias"};
      const uint64_t n[] = {qd, kvd, kvd};
      for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof(name), "blk.%u.%s", l, b[i]);
        T(add_random(m, name, QIAO_DTYPE_F32, 1, &n[i], seed++, 1));
      }
    }
    if (sh->qk_norm) {
      snprintf(name, sizeof(name), "blk.%u.attn_q_norm.weight", l);
      T(add_ones(m, name, sh->head_dim));
      snprintf(name, sizeof(name), "blk.%u.attn_k_norm.weight", l);
      T(add_ones(m, name, sh->head_dim));
    }
  }
  if (tokenizer_json != NULL) T(zero_non_text_rows(m));
#undef T
  if (st != NULL) {
    qiao_model_close(m);
    return st;
  }
  *out = m;
  return NULL;
}

/* ---- DeepSeek shapes (deepseek2: latent attention, DeepSeekMoE) ---------- */

typedef struct deepseek_shape {
  const char *name;
  uint32_t dim, n_layers, n_heads, q_lora, kv_lora, rope, nope, v_head;
  uint32_t n_experts, used, shared, expert_ffn, dense_lead, dense_ffn, vocab, groups, groups_kept;
  bool sigmoid, norm_topk;
  float scale;
  bool buildable; /* small enough to build here; else only the memory math */
} deepseek_shape;

static const deepseek_shape deepseek_shapes[] = {
    {.name = "deepseek-v2-lite",
     .dim = 2048,
     .n_layers = 27,
     .n_heads = 16,
     .q_lora = 0,
     .kv_lora = 512,
     .rope = 64,
     .nope = 128,
     .v_head = 128,
     .n_experts = 64,
     .used = 6,
     .shared = 2,
     .expert_ffn = 1408,
     .dense_lead = 1,
     .dense_ffn = 10944,
     .vocab = 102400,
     .groups = 0,
     .groups_kept = 0,
     .sigmoid = false,
     .norm_topk = false,
     .scale = 1.0f,
     .buildable = true},
    {.name = "deepseek-v3",
     .dim = 7168,
     .n_layers = 61,
     .n_heads = 128,
     .q_lora = 1536,
     .kv_lora = 512,
     .rope = 64,
     .nope = 128,
     .v_head = 128,
     .n_experts = 256,
     .used = 8,
     .shared = 1,
     .expert_ffn = 2048,
     .dense_lead = 3,
     .dense_ffn = 18432,
     .vocab = 129280,
     .groups = 8,
     .groups_kept = 4,
     .sigmoid = true,
     .norm_topk = true,
     .scale = 2.5f,
     .buildable = false},
};

static const deepseek_shape *find_deepseek_shape(const char *name) {
  for (size_t i = 0; i < sizeof(deepseek_shapes) / sizeof(deepseek_shapes[0]); i++)
    if (strcmp(deepseek_shapes[i].name, name) == 0) return &deepseek_shapes[i];
  return NULL;
}

/* The number of tokens of a tokenizer.json. */
static qiao_status *tokenizer_size(const char *path, uint32_t *out) {
  char dir[4096];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) *slash = '\0';
  qiao_model *t = NULL;
  QIAO__TRY(qiao__model_create(path, "hf", &t));
  qiao_status *st = qiao__import_tokenizer_json(t, path, slash ? dir : ".");
  const qiao_kv *kv = st == NULL ? qiao_model_kv_find(t, "tokenizer.tokens") : NULL;
  if (st == NULL && (kv == NULL || kv->type != QIAO_VALUE_ARRAY || kv->array_len > UINT32_MAX))
    st = qiao__error(QIAO_MALFORMED, "%s: no tokens", path);
  if (st == NULL) *out = (uint32_t)kv->array_len;
  qiao_model_close(t);
  return st;
}

/* A deepseek2 model of the shape with random weights (norms 1), with the
 * vocabulary of tokenizer_json when given (the embedding and output grow to
 * it when it is larger than the shape's: DeepSeek-V3's 129280 tokens on
 * V2-Lite's shape), else none. */
static qiao_status *build_deepseek_shape(const deepseek_shape *shape, qiao_dtype dtype,
                                         uint32_t n_threads, const char *tokenizer_json,
                                         qiao_model **out) {
  deepseek_shape grown = *shape;
  const deepseek_shape *sh = &grown;
  if (tokenizer_json != NULL) {
    uint32_t tokens = 0;
    QIAO__TRY(tokenizer_size(tokenizer_json, &tokens));
    if (tokens > grown.vocab) grown.vocab = tokens;
  }
  qiao_model *m = NULL;
  QIAO__TRY(qiao__model_create(sh->name, "qiao", &m));
  qiao_status *st = NULL;
#define T(x)                                                                                       \
  do {                                                                                             \
    if (st == NULL) st = (x);                                                                      \
  } while (0)
  T(qiao__model_set_string(m, "general.architecture", "deepseek2", 9));
  T(qiao__model_set_string(m, "general.name", sh->name, strlen(sh->name)));
  T(qiao__model_set_u32(m, "model.vocab_size", sh->vocab));
  T(qiao__model_set_u32(m, "model.context_length", 4096));
  T(qiao__model_set_u32(m, "model.dim", sh->dim));
  T(qiao__model_set_u32(m, "model.n_layers", sh->n_layers));
  T(qiao__model_set_u32(m, "model.n_heads", sh->n_heads));
  T(qiao__model_set_u32(m, "model.head_dim", sh->nope + sh->rope));
  T(qiao__model_set_u32(m, "model.ffn_dim", sh->dense_ffn));
  T(qiao__model_set_f32(m, "model.norm_eps", 1e-6f));
  T(qiao__model_set_f32(m, "model.rope.theta", 10000.0f));
  T(qiao__model_set_u32(m, "model.rope.dim", sh->rope));
  T(qiao__model_set_u32(m, "model.mla.q_lora_rank", sh->q_lora));
  T(qiao__model_set_u32(m, "model.mla.kv_lora_rank", sh->kv_lora));
  T(qiao__model_set_u32(m, "model.mla.v_head_dim", sh->v_head));
  T(qiao__model_set_u32(m, "model.moe.n_experts", sh->n_experts));
  T(qiao__model_set_u32(m, "model.moe.n_experts_used", sh->used));
  T(qiao__model_set_u32(m, "model.moe.ffn_dim", sh->expert_ffn));
  T(qiao__model_set_bool(m, "model.moe.norm_topk_prob", sh->norm_topk));
  T(qiao__model_set_u32(m, "model.moe.n_shared_experts", sh->shared));
  T(qiao__model_set_u32(m, "model.moe.n_dense_lead", sh->dense_lead));
  T(qiao__model_set_string(m, "model.moe.gating", sh->sigmoid ? "sigmoid" : "softmax", 7));
  T(qiao__model_set_u32(m, "model.moe.n_groups", sh->groups));
  T(qiao__model_set_u32(m, "model.moe.n_groups_used", sh->groups_kept));
  T(qiao__model_set_f32(m, "model.moe.routed_scale", sh->scale));
  T(qiao__model_set_bool(m, "model.tied_embeddings", false));
  if (tokenizer_json != NULL)
    T(add_tokenizer(m, tokenizer_json, sh->vocab));
  else
    T(qiao__model_set_string(m, "tokenizer.model", "none", 4));
  const uint64_t D = sh->dim, H = sh->n_heads, L = sh->kv_lora, R = sh->rope, N = sh->nope;
  const uint64_t V = sh->v_head, QL = sh->q_lora, E = sh->n_experts, EF = sh->expert_ffn;
  const uint64_t SF = (uint64_t)sh->shared * EF, F = sh->dense_ffn;
  uint64_t seed = 1;
  const uint64_t embd[] = {sh->vocab, D};
  T(add_random(m, "token_embd.weight", dtype, 2, embd, seed++, n_threads));
  T(add_random(m, "output.weight", dtype, 2, embd, seed++, n_threads));
  T(add_ones(m, "output_norm.weight", D));
  char name[128];
  for (uint32_t l = 0; l < sh->n_layers && st == NULL; l++) {
    const bool moe = l >= sh->dense_lead;
    const struct {
      const char *suffix;
      uint32_t n_dims;
      uint64_t d0, d1, d2;
      bool use;
    } mats[] = {{"attn_q_a.weight", 2, QL, D, 0, QL > 0},
                {"attn_q_b.weight", 2, H * (N + R), QL, 0, QL > 0},
                {"attn_q.weight", 2, H * (N + R), D, 0, QL == 0},
                {"attn_kv_a_mqa.weight", 2, L + R, D, 0, true},
                {"attn_kv_b.weight", 2, H * (N + V), L, 0, true},
                {"attn_output.weight", 2, D, H * V, 0, true},
                {"ffn_gate.weight", 2, F, D, 0, !moe},
                {"ffn_up.weight", 2, F, D, 0, !moe},
                {"ffn_down.weight", 2, D, F, 0, !moe},
                {"ffn_gate_inp.weight", 2, E, D, 0, moe},
                {"ffn_gate_exps.weight", 3, E, EF, D, moe},
                {"ffn_up_exps.weight", 3, E, EF, D, moe},
                {"ffn_down_exps.weight", 3, E, D, EF, moe},
                {"ffn_gate_shexp.weight", 2, SF, D, 0, moe && SF > 0},
                {"ffn_up_shexp.weight", 2, SF, D, 0, moe && SF > 0},
                {"ffn_down_shexp.weight", 2, D, SF, 0, moe && SF > 0}};
    for (size_t i = 0; i < sizeof(mats) / sizeof(mats[0]); i++) {
      if (!mats[i].use) continue;
      snprintf(name, sizeof(name), "blk.%u.%s", l, mats[i].suffix);
      const uint64_t dims[] = {mats[i].d0, mats[i].d1, mats[i].d2};
      T(add_random(m, name, dtype, mats[i].n_dims, dims, seed++, n_threads));
    }
    const struct {
      const char *suffix;
      uint64_t n;
      bool use;
    } norms[] = {{"attn_norm.weight", D, true},
                 {"ffn_norm.weight", D, true},
                 {"attn_q_a_norm.weight", QL, QL > 0},
                 {"attn_kv_a_norm.weight", L, true}};
    for (size_t i = 0; i < sizeof(norms) / sizeof(norms[0]); i++) {
      if (!norms[i].use) continue;
      snprintf(name, sizeof(name), "blk.%u.%s", l, norms[i].suffix);
      T(add_ones(m, name, norms[i].n));
    }
    if (moe && sh->sigmoid) {
      snprintf(name, sizeof(name), "blk.%u.exp_probs_b.bias", l);
      T(add_random(m, name, QIAO_DTYPE_F32, 1, &E, seed++, 1));
    }
  }
#undef T
  if (st != NULL) {
    qiao_model_close(m);
    return st;
  }
  *out = m;
  return NULL;
}

/* The memory math of a DeepSeek shape in `dtype`, without building it:
 * weights read per decoded token (the used and shared experts only), all
 * the weights, and the KV cache per token (the latent and rope key per
 * layer) beside what a cache of full keys and values would take. */
static qiao_status *print_deepseek_memory(const deepseek_shape *sh, qiao_dtype dtype, bool json) {
  const uint64_t D = sh->dim, H = sh->n_heads, L = sh->kv_lora, R = sh->rope, N = sh->nope;
  const uint64_t V = sh->v_head, QL = sh->q_lora, E = sh->n_experts, EF = sh->expert_ffn;
  uint64_t bytes_32 = 0; /* bytes of 32 elements (every dimension here is a multiple of 32) */
  QIAO__TRY(qiao_dtype_row_bytes(dtype, 32, &bytes_32));
  const uint64_t attn = (QL ? QL * D + H * (N + R) * QL : H * (N + R) * D) + (L + R) * D +
                        H * (N + V) * L + D * H * V;
  const uint64_t dense = 3 * D * sh->dense_ffn, router = E * D, expert = 3 * D * EF;
  const uint64_t n_dense = sh->dense_lead, n_moe = sh->n_layers - sh->dense_lead;
  const uint64_t active = sh->n_layers * attn + n_dense * dense +
                          n_moe * (router + (uint64_t)(sh->used + sh->shared) * expert) + D +
                          (uint64_t)sh->vocab * D; /* one embedding row, the output */
  const uint64_t total = sh->n_layers * attn + n_dense * dense +
                         n_moe * (router + (uint64_t)(E + sh->shared) * expert) +
                         2ull * sh->vocab * D;
  const uint64_t kv_values = (L + R) * sh->n_layers, full_values = H * (N + R + V) * sh->n_layers;
  const char *type = qiao_dtype_get_info(dtype)->name;
  if (json) {
    printf("{\"shape\": \"%s\", \"type\": \"%s\", \"memory_math_only\": true, "
           "\"weight_bytes_per_token\": %llu, \"weight_bytes\": %llu, "
           "\"kv_bytes_per_token\": %llu, \"kv_bytes_per_token_f32\": %llu, "
           "\"uncompressed_kv_bytes_per_token\": %llu}\n",
           sh->name, type, (unsigned long long)(active / 32 * bytes_32),
           (unsigned long long)(total / 32 * bytes_32), (unsigned long long)(kv_values * 2),
           (unsigned long long)(kv_values * 4), (unsigned long long)(full_values * 2));
    return NULL;
  }
  printf("%s (%s), memory math only (too large to build here)\n", sh->name, type);
  printf("  weights per token:  %8.2f GB (%u of %u experts + %u shared in %llu MoE layers)\n",
         (double)(active / 32 * bytes_32) / 1e9, sh->used, sh->n_experts, sh->shared,
         (unsigned long long)n_moe);
  printf("  all weights:        %8.1f GB\n", (double)(total / 32 * bytes_32) / 1e9);
  printf("  KV cache per token: %8.1f KB f16 (%llu values: (%llu + %llu) x %u layers); full "
         "keys and values would take %.1f KB\n",
         (double)kv_values * 2 / 1e3, (unsigned long long)kv_values, (unsigned long long)L,
         (unsigned long long)R, sh->n_layers, (double)full_values * 2 / 1e3);
  return NULL;
}

/* ---- Memory bandwidth: threads summing a buffer much larger than caches -- */

typedef struct read_job {
  const uint64_t *data;
  size_t n;
  uint64_t sum;
} read_job;

static void *read_all(void *arg) {
  read_job *j = arg;
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t i = 0; i + 4 <= j->n; i += 4) {
    a += j->data[i];
    b ^= j->data[i + 1];
    c += j->data[i + 2];
    d ^= j->data[i + 3];
  }
  j->sum = a + b + c + d;
  return NULL;
}

static double measure_bandwidth(uint32_t n_threads) {
  const size_t bytes = 512u << 20;
  uint64_t *buf = malloc(bytes);
  if (buf == NULL) return 0;
  memset(buf, 1, bytes);
  uint32_t nt = n_threads < 1 ? 1 : n_threads > 64 ? 64 : n_threads;
  double best = 0;
  volatile uint64_t sink = 0;
  for (int rep = 0; rep < 5; rep++) {
    read_job jobs[64];
    pthread_t th[64];
    size_t per = bytes / 8 / nt;
    double t0 = engine_cli_now();
    for (uint32_t t = 0; t < nt; t++) {
      jobs[t] = (read_job){buf + t * per, per, 0};
      if (pthread_create(&th[t], NULL, read_all, &jobs[t]) != 0) read_all(&jobs[t]), th[t] = 0;
    }
    for (uint32_t t = 0; t < nt; t++) {
      if (th[t]) pthread_join(th[t], NULL);
      sink += jobs[t].sum;
    }
    double gbs = (double)bytes / (engine_cli_now() - t0) / 1e9;
    if (gbs > best) best = gbs;
  }
  (void)sink;
  free(buf);
  return best;
}

/* ---- Timing ------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(double), cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct bench_result {
  double prefill_tps, decode_tps;
  double decode_cpu_share; /* CPU seconds used / (wall seconds x threads) while decoding */
} bench_result;

static double cpu_seconds(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)u.ru_utime.tv_sec + (double)u.ru_stime.tv_sec +
         ((double)u.ru_utime.tv_usec + (double)u.ru_stime.tv_usec) * 1e-6;
}

/* One engine's share of the decode: n steps of its `count` sequences (ids),
 * one token each per call, from position p; next (count) holds each
 * sequence's last token and gets the next. */
typedef struct decode_group {
  qiao_engine *engine;
  const int32_t *ids;
  int32_t *next;
  uint32_t count, p, n;
  qiao_status *st;
} decode_group;

static void *decode_steps(void *arg) {
  decode_group *g = arg;
  int32_t *tokens = malloc(g->count * 4), *seqs = malloc(g->count * 4), *pos = malloc(g->count * 4);
  uint8_t *want = malloc(g->count);
  if (!tokens || !seqs || !pos || !want)
    g->st = qiao__error(QIAO_OUT_OF_MEMORY, "bench: out of memory");
  if (want != NULL) memset(want, 1, g->count);
  for (uint32_t step = 0; g->st == NULL && step < g->n; step++) {
    for (uint32_t b = 0; b < g->count; b++) {
      tokens[b] = g->next[b] >= 0 ? g->next[b] : 0;
      seqs[b] = g->ids[b];
      pos[b] = (int32_t)(g->p + step);
    }
    qiao_batch db = {g->count, tokens, seqs, pos, want};
    g->st = qiao_engine_forward(g->engine, &db, NULL, g->next);
  }
  free(tokens);
  free(seqs);
  free(pos);
  free(want);
  return NULL;
}

/* Prefill of p tokens (one sequence), then n decode steps of `batch`
 * sequences, one token each per call, greedy on the device. With several
 * engines (bench --mpi --mpi-depth D: one MPI channel each), the sequences
 * are split into D micro-batches, one per engine, decoded by one thread
 * each, so that their passes are in flight on the ranks together. */
static qiao_status *run_bench(qiao_engine *const *engines, uint32_t n_engines, uint32_t p,
                              uint32_t n, uint32_t batch, uint32_t reps, uint32_t threads,
                              bench_result *out) {
  qiao_engine *e = engines[0];
  uint32_t vocab = qiao_engine_hparams(e)->vocab_size;
  decode_group groups[16];
  uint32_t first_of[16]; /* group g: sequences first_of[g] ... (the first groups one more) */
  for (uint32_t g = 0, first = 0; g < n_engines; g++) {
    uint32_t count = batch / n_engines + (g < batch % n_engines ? 1 : 0);
    groups[g] = (decode_group){.engine = engines[g], .count = count, .p = p, .n = n};
    first_of[g] = first;
    first += count;
  }
  uint32_t total = p > batch ? p : batch;
  int32_t *tokens = malloc(total * 4), *seqs = malloc(total * 4), *pos = malloc(total * 4);
  int32_t *next = malloc(total * 4), *ids = malloc(batch * 4);
  qiao_status *st = NULL;
  if (!tokens || !seqs || !pos || !next || !ids)
    st = qiao__error(QIAO_OUT_OF_MEMORY, "bench: out of memory");
  uint64_t rng = 42;
  for (uint32_t i = 0; st == NULL && i < total; i++)
    tokens[i] = (int32_t)(rng_next(&rng) % vocab);
  for (uint32_t g = 0; st == NULL && g < n_engines; g++) {
    groups[g].ids = ids + first_of[g];
    groups[g].next = next + first_of[g];
    for (uint32_t b = first_of[g]; st == NULL && b < first_of[g] + groups[g].count; b++)
      st = qiao_engine_seq_create(groups[g].engine, &ids[b]);
  }
  double prefill[16], decode[16], share[16];
  /* Run 0 is the warm-up. */
  for (uint32_t r = 0; st == NULL && r <= reps; r++) {
    fprintf(stderr, "bench: run %u/%u%s\n", r, reps, r == 0 ? " (warm-up)" : "");
    for (uint32_t g = 0; st == NULL && g < n_engines; g++)
      for (uint32_t b = 0; st == NULL && b < groups[g].count; b++)
        st = qiao_engine_seq_truncate(groups[g].engine, groups[g].ids[b], 0);
    for (uint32_t i = 0; i < p; i++) {
      seqs[i] = ids[0];
      pos[i] = (int32_t)i;
    }
    qiao_batch pb = {p, tokens, seqs, pos, NULL};
    double t0 = engine_cli_now();
    if (st == NULL) st = qiao_engine_forward(e, &pb, NULL, next);
    double t1 = engine_cli_now();
    /* The other sequences of a batch get the same prompt, hence the same
     * first token (a prefill writes next[0] only). */
    for (uint32_t g = 0; st == NULL && g < n_engines; g++) {
      for (uint32_t b = g == 0 ? 1 : 0; st == NULL && b < groups[g].count; b++) {
        for (uint32_t i = 0; i < p; i++)
          seqs[i] = groups[g].ids[b];
        int32_t first = 0;
        st = qiao_engine_forward(groups[g].engine, &pb, NULL, &first);
      }
    }
    for (uint32_t b = 1; b < batch; b++)
      next[b] = next[0];
    double t2 = engine_cli_now(), c2 = cpu_seconds();
    pthread_t th[16];
    bool started[16] = {false};
    for (uint32_t g = 0; st == NULL && g < n_engines; g++) {
      groups[g].st = NULL;
      if (n_engines > 1 && pthread_create(&th[g], NULL, decode_steps, &groups[g]) == 0)
        started[g] = true;
      else
        decode_steps(&groups[g]); /* one engine (or no thread): here */
    }
    for (uint32_t g = 0; g < n_engines; g++) {
      if (started[g]) pthread_join(th[g], NULL);
      if (st == NULL)
        st = groups[g].st;
      else
        qiao_status_free(groups[g].st);
      groups[g].st = NULL;
    }
    double t3 = engine_cli_now(), c3 = cpu_seconds();
    if (r > 0 && st == NULL) {
      prefill[r - 1] = p / (t1 - t0);
      decode[r - 1] = (double)n * batch / (t3 - t2);
      share[r - 1] = (c3 - c2) / ((t3 - t2) * threads);
    }
    rng = 42;
    for (uint32_t i = 0; i < total; i++)
      tokens[i] = (int32_t)(rng_next(&rng) % vocab);
  }
  if (st == NULL) {
    out->prefill_tps = median(prefill, (int)reps);
    out->decode_tps = median(decode, (int)reps);
    out->decode_cpu_share = median(share, (int)reps);
  }
  free(tokens);
  free(seqs);
  free(pos);
  free(next);
  free(ids);
  return st;
}

/* A JSON string of `text` (device names come from plugins). */
static void print_json_string(const char *text) {
  putchar('"');
  for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
    if (*c == '"' || *c == '\\')
      printf("\\%c", *c);
    else if (*c < 0x20)
      printf("\\u%04x", *c);
    else
      putchar(*c);
  }
  putchar('"');
}

/* "placement": each stage's device, layers and bytes, and the bytes per
 * token that cross each boundary. */
static void print_placement_json(const qiao_engine *e) {
  printf("\"placement\": [");
  for (uint32_t i = 0; i < qiao_engine_stage_count(e); i++) {
    qiao_engine_stage_info g = {.struct_size = sizeof(g)};
    qiao_engine_stage_info_get(e, i, &g);
    printf("%s{\"backend\": ", i ? ", " : "");
    print_json_string(g.backend);
    printf(", \"device_index\": %u, \"device\": ", g.device_index);
    print_json_string(g.device);
    printf(", \"first_layer\": %u, \"last_layer\": %u, \"embedding\": %s, \"output\": %s, "
           "\"weight_bytes\": %llu, \"kv_cache_bytes\": %llu, \"scratch_bytes\": %llu, "
           "\"memory_bytes\": %llu, \"boundary_bytes_per_token\": %llu}",
           g.first_layer, g.last_layer, g.embedding ? "true" : "false", g.output ? "true" : "false",
           (unsigned long long)g.weight_bytes, (unsigned long long)g.kv_cache_bytes,
           (unsigned long long)g.scratch_bytes, (unsigned long long)g.memory_bytes,
           (unsigned long long)g.boundary_bytes_per_token);
  }
  printf("]");
}

static void print_placement_text(const qiao_engine *e) {
  uint32_t n = qiao_engine_stage_count(e);
  qiao_engine_stage_info stages[64];
  if (n > 64) n = 64;
  for (uint32_t i = 0; i < n; i++) {
    stages[i].struct_size = sizeof(stages[i]);
    qiao_engine_stage_info_get(e, i, &stages[i]);
  }
  engine_cli_print_placement(stdout, stages, n);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: qiao bench (-m MODEL | --shape NAME --type T) [-p 128] [-n 64] [-t N]\n"
          "                  [--backend B | --split SPEC] [--batch N] [--reps R] [--json]\n"
          "                  [--mpi [--mpi-depth D]]\n"
          "Measures prefill tokens/s (a p-token prompt) and decode tokens/s (n tokens, median\n"
          "of R runs after a warm-up) against the memory bandwidth bound.\n"
          "  --shape   qwen2.5-0.5b, qwen2.5-7b, llama3-8b, llama3.2-1b, qwen3-0.6b,\n"
          "            deepseek-v2-lite (random weights); deepseek-v3 (its memory math only)\n"
          "  --type    q8_0, q4_0, f16, bf16, f32 (with --shape)\n"
          "  --batch N decode N sequences in one batch (throughput of all of them)\n"
          "  --mpi-depth D  with --mpi: the N sequences in D micro-batches, one engine and\n"
          "            MPI channel each, decoded by D threads so that every rank works at once\n"
          "            (the same D on every rank; default 1: one batch, a relay)\n"
          "  --reps R  decode runs to take the median of (default 3)\n"
          "  --json    one JSON object on stdout instead of the table\n"
          "  --save OUT.gguf|OUT.qiao  with --shape: write the model (random weights) and exit;\n"
          "            --tokenizer tokenizer.json adds that vocabulary (padded to the shape's;\n"
          "            a deepseek shape grows to a larger one)\n");
  engine_cli_print_device_flags(f);
}

int qiao_cmd_bench(int argc, char **argv) {
  engine_cli_opts o;
  engine_cli_opts_init(&o);
  const char *shape_name = NULL, *type_name = "q8_0", *save_path = NULL;
  uint32_t p = 128, n = 64, batch = 1, reps = 3;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = engine_cli_parse_flag(&o, argc, argv, &i);
    if (r < 0) return 2;
    if (r > 0) continue;
    qiao_status *st = NULL;
    const char *v = NULL;
    if (qiao_cli_is_help(a)) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--json") == 0) {
      json = true;
      continue;
    } else if (strcmp(a, "--shape") != 0 && strcmp(a, "--type") != 0 && strcmp(a, "-p") != 0 &&
               strcmp(a, "-n") != 0 && strcmp(a, "--batch") != 0 && strcmp(a, "--reps") != 0 &&
               strcmp(a, "--save") != 0 && strcmp(a, "--mpi-depth") != 0) {
      return qiao_cli_unknown_arg("bench", a);
    }
    if ((v = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    if (strcmp(a, "--shape") == 0)
      shape_name = v;
    else if (strcmp(a, "--type") == 0)
      type_name = v;
    else if (strcmp(a, "--save") == 0)
      save_path = v;
    else if (strcmp(a, "-p") == 0)
      st = qiao_cli_parse_u32(a, v, 1, 65536, &p);
    else if (strcmp(a, "-n") == 0)
      st = qiao_cli_parse_u32(a, v, 1, 65536, &n);
    else if (strcmp(a, "--batch") == 0)
      st = qiao_cli_parse_u32(a, v, 1, 256, &batch);
    else if (strcmp(a, "--mpi-depth") == 0)
      st = qiao_cli_parse_u32(a, v, 1, 16, &o.mpi_depth);
    else
      st = qiao_cli_parse_u32(a, v, 1, 16, &reps);
    if (st != NULL) return qiao_cli_fail(st) + 1;
  }
  if (shape_name != NULL && o.model.path != NULL)
    return qiao_cli_usage_error("bench: give -m or --shape, not both");
  if (save_path != NULL && shape_name == NULL)
    return qiao_cli_usage_error("bench: --save needs --shape");
  if (o.mpi_depth > 1 && (!o.mpi || o.mpi_depth > batch))
    return qiao_cli_usage_error("bench: --mpi-depth %u needs --mpi and a --batch of %u or more",
                                o.mpi_depth, o.mpi_depth);
  uint32_t threads = o.n_threads ? o.n_threads : 2;

  qiao_engine_options eo = qiao_engine_default_options();
  engine_cli_apply(&o, &eo);
  eo.verbose = true; /* where the weights are: part of what a benchmark measures */
  eo.max_seqs = batch;
  eo.max_context = p + n + 1;
  eo.n_blocks = batch * ((p + n + 16) / 16 + 1);
  eo.max_batch_tokens = p > batch ? p : batch;
  qiao_model *model = NULL;
  qiao_status *st = NULL;
  qiao_dtype dtype = QIAO_DTYPE_COUNT;
  char what[4096];
  const deepseek_shape *ds = shape_name ? find_deepseek_shape(shape_name) : NULL;
  if (ds != NULL) {
    st = qiao_dtype_from_name(type_name, &dtype);
    if (st == NULL && dtype == QIAO_DTYPE_I32)
      st = qiao__error(QIAO_INVALID_ARGUMENT, "--type i32");
    if (st == NULL && !ds->buildable) st = print_deepseek_memory(ds, dtype, json);
    if (st != NULL || !ds->buildable) return st ? qiao_cli_fail(st) : 0;
    fprintf(stderr, "bench: building %s with random %s weights\n", ds->name, type_name);
    st = build_deepseek_shape(ds, dtype, threads, o.model.tokenizer_path, &model);
    snprintf(what, sizeof(what), "%s", ds->name);
    if (st == NULL && save_path != NULL) { /* a model file for other tools: no benchmark */
      size_t len = strlen(save_path);
      qiao_convert_options co = {sizeof(co), QIAO_FILE_QIAO, QIAO_DTYPE_COUNT, true};
      if (len >= 5 && strcmp(save_path + len - 5, ".gguf") == 0) co.format = QIAO_FILE_GGUF;
      st = qiao_model_write(model, save_path, &co);
      qiao_model_close(model);
      if (st == NULL) fprintf(stderr, "bench: wrote %s\n", save_path);
      return st ? qiao_cli_fail(st) : 0;
    }
  } else if (shape_name != NULL) {
    const shape *sh = NULL;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
      if (strcmp(shapes[i].name, shape_name) == 0) sh = &shapes[i];
    if (sh == NULL) return qiao_cli_usage_error("bench: unknown --shape '%s'", shape_name);
    st = qiao_dtype_from_name(type_name, &dtype);
    if (st == NULL && dtype == QIAO_DTYPE_I32)
      st = qiao__error(QIAO_INVALID_ARGUMENT, "--type i32");
    if (st != NULL) return qiao_cli_fail(st);
    fprintf(stderr, "bench: building %s with random %s weights\n", sh->name, type_name);
    st = build_shape(sh, dtype, threads, o.model.tokenizer_path, &model);
    snprintf(what, sizeof(what), "%s", sh->name);
    if (st == NULL && save_path != NULL) { /* a model file for other tools: no benchmark */
      size_t len = strlen(save_path);
      qiao_convert_options co = {sizeof(co), QIAO_FILE_QIAO, QIAO_DTYPE_COUNT, true};
      if (len >= 5 && strcmp(save_path + len - 5, ".gguf") == 0) co.format = QIAO_FILE_GGUF;
      st = qiao_model_write(model, save_path, &co);
      qiao_model_close(model);
      if (st == NULL) fprintf(stderr, "bench: wrote %s\n", save_path);
      return st ? qiao_cli_fail(st) : 0;
    }
  } else {
    st = qiao_cli_open_model(&o.model, false, &model);
    if (st == NULL) snprintf(what, sizeof(what), "%s", qiao_model_path(model));
  }
  engine_cli_session s = {.model = model}; /* with --mpi: this rank's share of the layers */
  if (st == NULL) st = engine_cli_create_engine(&o, &eo, &s);
  if (st == NULL && s.worker) return engine_cli_end(&s, NULL); /* --mpi, rank > 0: served */
  qiao_engine *e = s.engine;
  if (st == NULL && dtype == QIAO_DTYPE_COUNT) {
    const qiao_tensor *t = qiao_model_tensor_find(model, "blk.0.attn_q.weight");
    dtype = t ? t->dtype : QIAO_DTYPE_F32;
  }
  bench_result r = {0, 0, 0};
  if (st == NULL) {
    fprintf(stderr, "bench: %s on %s (%s), %u threads%s%s: prefill %u, decode %u x %u\n", what,
            qiao_engine_backend_name(e), qiao_engine_device_name(e), threads,
            o.batch_invariant ? ", batch-invariant" : "", o.exact_matmul ? ", exact" : "", p, n,
            batch);
    qiao_engine *engines[16] = {e};
    for (uint32_t i = 0; i < s.n_more; i++)
      engines[i + 1] = s.more[i];
    st = run_bench(engines, 1 + s.n_more, p, n, batch, reps, threads, &r);
  }
  if (st == NULL) {
    fprintf(stderr, "bench: measuring memory read bandwidth\n");
    double bw = measure_bandwidth(threads);
    uint64_t bpt = qiao_engine_weight_bytes_per_token(e);
    double bound = bw * 1e9 / (double)bpt;
    const char *type = qiao_dtype_get_info(dtype)->name;
    if (json) {
      printf("{\"prefill_tokens_per_s\": %.2f, \"decode_tokens_per_s\": %.2f, "
             "\"weight_bytes_per_token\": %llu, \"kv_bytes_per_token\": %llu, "
             "\"memory_bandwidth_gb_s\": %.2f, "
             "\"bandwidth_bound_tokens_per_s\": %.2f, \"fraction_of_bound\": %.3f, "
             "\"backend\": \"%s\", \"device\": \"%s\", \"threads\": %u, \"batch\": %u, "
             "\"micro_batches\": %u, "
             "\"prompt_tokens\": %u, \"decode_tokens\": %u, \"decode_cpu_share\": %.2f, "
             "\"batch_invariant\": %s, \"exact_matmul\": %s, \"%s\": \"%s\", \"type\": \"%s\", ",
             r.prefill_tps, r.decode_tps, (unsigned long long)bpt,
             (unsigned long long)qiao_engine_kv_bytes_per_token(e), bw, bound,
             r.decode_tps / batch / bound, qiao_engine_backend_name(e), qiao_engine_device_name(e),
             threads, batch, 1 + s.n_more, p, n, r.decode_cpu_share,
             o.batch_invariant ? "true" : "false", o.exact_matmul ? "true" : "false",
             shape_name ? "shape" : "model", what, type);
      print_placement_json(e);
      printf("}\n");
    } else {
      printf("%s (%s) on %s, %u threads%s%s\n", what, type, qiao_engine_device_name(e), threads,
             o.batch_invariant ? ", batch-invariant" : "", o.exact_matmul ? ", exact" : "");
      printf("  prefill %u tokens:   %8.1f tokens/s\n", p, r.prefill_tps);
      printf("  decode (batch %u):   %8.1f tokens/s", batch, r.decode_tps);
      if (s.n_more > 0) printf(" (%u micro-batches in flight)", 1 + s.n_more);
      printf("\n");
      printf("  weights per token:  %8.1f MB\n", (double)bpt / 1e6);
      printf("  KV cache per token: %8.1f KB (every layer)\n",
             (double)qiao_engine_kv_bytes_per_token(e) / 1e3);
      printf("  memory bandwidth:   %8.1f GB/s -> bound %.1f tokens/s per sequence\n", bw, bound);
      printf("  fraction of bound:  %8.3f\n", r.decode_tps / batch / bound);
      printf("  CPU share decoding: %8.2f (below 1: the machine is busy or threads wait)\n",
             r.decode_cpu_share);
      print_placement_text(e);
    }
  }
  return engine_cli_end(&s, st);
}
