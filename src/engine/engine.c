/* The engine: a model's weights on one device (or split by layers across
 * several, placement.c), a paged KV cache, sequences, and batching of
 * forward calls (the pass itself is in forward.c). */
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "core/checked.h"
#include "engine/engine_internal.h"
#include "format/dtype_convert.h"

/* ---- Ownership lists ------------------------------------------------------ */

static qiao_status *track_buffer(qiao__stage *g, qiao_dev_buffer *buffer, const void *host,
                                 uint64_t size) {
  if (g->n_buffers == g->cap_buffers) {
    size_t cap = g->cap_buffers ? g->cap_buffers * 2 : 64;
    qiao__buffer_rec *grown = realloc(g->buffers, cap * sizeof(*grown));
    if (grown == NULL) {
      g->api->buffer_destroy(buffer);
      return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
    }
    g->buffers = grown;
    g->cap_buffers = cap;
  }
  g->buffers[g->n_buffers++] = (qiao__buffer_rec){buffer, host, size, NULL, NULL};
  return NULL;
}

/* Host memory (64-byte aligned) that lives as long as the engine. */
static qiao_status *host_alloc(qiao_engine *e, uint64_t size, void **out) {
  if (e->n_host_blocks == e->cap_host_blocks) {
    size_t cap = e->cap_host_blocks ? e->cap_host_blocks * 2 : 16;
    void **grown = realloc(e->host_blocks, cap * sizeof(*grown));
    if (grown == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
    e->host_blocks = grown;
    e->cap_host_blocks = cap;
  }
  uint64_t rounded = (size + 63) / 64 * 64;
  void *p = rounded ? aligned_alloc(64, rounded) : NULL;
  if (p == NULL && rounded)
    return qiao__error(QIAO_OUT_OF_MEMORY, "engine: cannot allocate %llu bytes",
                       (unsigned long long)size);
  if (p) memset(p, 0, rounded);
  e->host_blocks[e->n_host_blocks++] = p;
  *out = p;
  return NULL;
}

/* A new zeroed buffer of `size` bytes on the stage's device. */
static qiao_status *device_alloc(qiao__stage *g, uint64_t size, const char *what,
                                 qiao_dev_ref *out) {
  if (size == 0) size = 4;
  qiao_dev_buffer *buffer = NULL;
  qiao_status *st = QIAO__DEV(g, g->api->buffer_create(g->device, size, &buffer), what);
  if (st != NULL) return qiao__annotate(st, "allocating %llu bytes", (unsigned long long)size);
  QIAO__TRY(track_buffer(g, buffer, NULL, size));
  *out = (qiao_dev_ref){buffer, 0};
  return NULL;
}

/* Puts `size` bytes of host memory that outlive the engine on the device:
 * wrapped in place on host-memory devices, uploaded otherwise. */
static qiao_status *device_put(qiao__stage *g, const void *data, uint64_t size, const char *what,
                               qiao_dev_ref *out) {
  if (g->host_memory) {
    if (((uintptr_t)data % 32) != 0) { /* keep kernels on aligned rows: copy */
      void *copy = NULL;
      QIAO__TRY(host_alloc(g->engine, size, &copy));
      memcpy(copy, data, size);
      data = copy;
      g->weight_bytes_copied += size;
    }
    qiao_dev_buffer *buffer = NULL;
    QIAO__DEV_TRY(g, g->api->buffer_wrap_host(g->device, data, size, &buffer), what);
    QIAO__TRY(track_buffer(g, buffer, data, size));
    *out = (qiao_dev_ref){buffer, 0};
    return NULL;
  }
  QIAO__TRY(device_alloc(g, size, what, out));
  g->buffers[g->n_buffers - 1].host = data; /* the model's bytes outlive the engine */
  return QIAO__DEV(g, g->api->upload(g->queue, *out, data, size), what);
}

/* ---- Weights -------------------------------------------------------------- */

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, mant = h & 1023, bits;
  if (exp == 0) {
    float f = ldexpf((float)mant, -24);
    return sign ? -f : f;
  }
  if (exp == 31)
    bits = sign | 0x7f800000u | (mant << 13);
  else
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

static const char *shape_text(const qiao_tensor *t, char *buf, size_t size) {
  int n = snprintf(buf, size, "(");
  for (uint32_t i = 0; i < t->n_dims && n > 0 && (size_t)n < size; i++)
    n += snprintf(buf + n, size - (size_t)n, "%s%llu", i ? ", " : "",
                  (unsigned long long)t->shape[i]);
  if (n > 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, ")");
  return buf;
}

/* Tensor `name` (NULL in *out when absent and not `required`), checked to
 * have the given shape and a dtype this library can use. */
static qiao_status *find_checked(const qiao_engine *e, const char *name, bool required,
                                 uint32_t n_dims, const uint64_t *shape, const qiao_tensor **out) {
  *out = NULL;
  const qiao_tensor *t = qiao_model_tensor_find(e->model, name);
  if (t == NULL) {
    if (!required) return NULL;
    return qiao__error(QIAO_MALFORMED, "model %s: tensor %s is missing", qiao_model_path(e->model),
                       name);
  }
  QIAO__TRY(qiao_model_tensor_check(e->model, t)); /* a type of a later minor version */
  bool same = t->n_dims == n_dims;
  for (uint32_t i = 0; same && i < n_dims; i++)
    same = t->shape[i] == shape[i];
  if (!same) {
    char found[96], want[96];
    qiao_tensor expect = {.n_dims = n_dims};
    for (uint32_t i = 0; i < n_dims; i++)
      expect.shape[i] = shape[i];
    return qiao__error(QIAO_MALFORMED, "model %s: tensor %s: shape %s, expected %s",
                       qiao_model_path(e->model), name, shape_text(t, found, sizeof(found)),
                       shape_text(&expect, want, sizeof(want)));
  }
  *out = t;
  return NULL;
}

/* Finds tensor `name` with the given shape (n_dims values) and puts it on
 * the stage's device. `vector` tensors (norms, biases) are converted to F32.
 * When `required` is false and the tensor is absent, leaves *out zeroed. */
static qiao_status *load_weight(qiao__stage *g, const char *name, bool required, bool vector,
                                uint32_t n_dims, const uint64_t *shape, qiao__weight *out) {
  qiao_engine *e = g->engine;
  memset(out, 0, sizeof(*out));
  const qiao_tensor *t = NULL;
  QIAO__TRY(find_checked(e, name, required, n_dims, shape, &t));
  if (t == NULL) return NULL;
  const void *data = t->data;
  uint64_t n_bytes = t->n_bytes;
  qiao_dev_dtype dtype = (qiao_dev_dtype)t->dtype;
  if (vector && t->dtype != QIAO_DTYPE_F32) {
    uint64_t n = shape[0];
    float *f = NULL;
    if (t->dtype != QIAO_DTYPE_F16 && t->dtype != QIAO_DTYPE_BF16)
      return qiao__error(QIAO_UNSUPPORTED,
                         "model %s: tensor %s: dtype %s for a vector (need f32, f16 or bf16)",
                         qiao_model_path(e->model), name, qiao_dev_dtype_name(dtype));
    QIAO__TRY(host_alloc(e, n * 4, (void **)&f));
    const uint8_t *src = t->data;
    for (uint64_t i = 0; i < n; i++) {
      uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
      if (t->dtype == QIAO_DTYPE_F16) {
        f[i] = f16_to_f32(h);
      } else {
        uint32_t bits = (uint32_t)h << 16;
        memcpy(&f[i], &bits, 4);
      }
    }
    data = f;
    n_bytes = n * 4;
    dtype = QIAO_DEV_F32;
  }
  QIAO__TRY(device_put(g, data, n_bytes, name, &out->ref));
  out->dtype = dtype;
  out->n_bytes = n_bytes;
  return NULL;
}

/* blk.{l}.{suffix}, required, with the given shape. */
static qiao_status *find_tensor(qiao__stage *g, uint32_t l, const char *suffix, uint32_t n_dims,
                                const uint64_t *shape, const qiao_tensor **out) {
  char name[128];
  snprintf(name, sizeof(name), "blk.%u.%s", l, suffix);
  return find_checked(g->engine, name, true, n_dims, shape, out);
}

/* A weight made at load from rows of tensor t: row_count rows starting at
 * each of `n_runs` first rows (run r starts at firsts[r]), in the stored
 * dtype, concatenated. */
static qiao_status *gather_rows(qiao__stage *g, const qiao_tensor *t, const uint64_t *firsts,
                                uint64_t n_runs, uint64_t row_count, const char *what,
                                qiao__weight *out) {
  const uint64_t rows = t->shape[0], row_bytes = t->n_bytes / rows;
  uint8_t *dst = NULL;
  QIAO__TRY(host_alloc(g->engine, n_runs * row_count * row_bytes, (void **)&dst));
  for (uint64_t r = 0; r < n_runs; r++) {
    assert(firsts[r] + row_count <= rows);
    memcpy(dst + r * row_count * row_bytes, (const uint8_t *)t->data + firsts[r] * row_bytes,
           row_count * row_bytes);
  }
  out->dtype = (qiao_dev_dtype)t->dtype;
  out->n_bytes = n_runs * row_count * row_bytes;
  return device_put(g, dst, out->n_bytes, what, &out->ref);
}

qiao_dev_dtype qiao__uk_t_dtype(qiao_dtype kv_b_dtype) {
  /* F32 and FP8 values (an E4M3 code times its block's F32 scale) are kept
   * exactly; the others (f16, bf16, the block types) lose little in F16,
   * which halves what decode reads. */
  return kv_b_dtype == QIAO_DTYPE_F32 || kv_b_dtype == QIAO_DTYPE_F8_E4M3_B128 ? QIAO_DEV_F32
                                                                               : QIAO_DEV_F16;
}

/* W_UK^T (H, L, N) from attn_kv_b (H*(N+V), L): uk_t[h][l][n] =
 * kv_b[h*(N+V) + n][l], in qiao__uk_t_dtype(kv_b); and W_UV (H, V, L):
 * rows h*(N+V) + N .. + V of kv_b as stored. */
static qiao_status *split_kv_b(qiao__stage *g, const qiao_tensor *kv_b, const char *name,
                               qiao__layer *L) {
  qiao_engine *e = g->engine;
  const qiao_hparams *hp = &e->hp;
  const uint64_t H = hp->n_heads, Lr = hp->kv_lora_rank, N = hp->head_dim - hp->rope_dim;
  const uint64_t V = hp->v_head_dim, row_bytes = kv_b->n_bytes / kv_b->shape[0];
  const bool f32 = qiao__uk_t_dtype(kv_b->dtype) == QIAO_DEV_F32;
  float *row = NULL;
  void *uk = NULL;
  QIAO__TRY(host_alloc(e, Lr * 4, (void **)&row));
  QIAO__TRY(host_alloc(e, H * Lr * N * (f32 ? 4 : 2), &uk));
  for (uint64_t h = 0; h < H; h++) {
    for (uint64_t n = 0; n < N; n++) {
      qiao__dtype_to_f32(kv_b->dtype, (const uint8_t *)kv_b->data + (h * (N + V) + n) * row_bytes,
                         row, Lr);
      for (uint64_t l = 0; l < Lr; l++) {
        uint64_t at = (h * Lr + l) * N + n;
        if (f32)
          ((float *)uk)[at] = row[l];
        else
          ((uint16_t *)uk)[at] = qiao__f32_to_f16(row[l]);
      }
    }
  }
  L->uk_t.dtype = f32 ? QIAO_DEV_F32 : QIAO_DEV_F16;
  L->uk_t.n_bytes = H * Lr * N * (f32 ? 4 : 2);
  QIAO__TRY(device_put(g, uk, L->uk_t.n_bytes, name, &L->uk_t.ref));
  uint64_t *firsts = NULL;
  QIAO__TRY(host_alloc(e, H * 8, (void **)&firsts));
  for (uint64_t h = 0; h < H; h++)
    firsts[h] = h * (N + V) + N;
  return gather_rows(g, kv_b, firsts, H, V, name, &L->uv);
}

/* Multi-head latent attention's weights of layer l (deepseek2): the q path
 * split into its nope and rope rows, attn_kv_a_mqa's two row ranges, and
 * W_UK^T / W_UV (attn_k_b / attn_v_b as stored, or made from attn_kv_b). */
static qiao_status *load_mla(qiao__stage *g, uint32_t l, qiao__layer *L) {
  qiao_engine *e = g->engine;
  const qiao_hparams *hp = &e->hp;
  const uint64_t D = hp->dim, H = hp->n_heads, R = hp->rope_dim, N = hp->head_dim - R;
  const uint64_t Lr = hp->kv_lora_rank, V = hp->v_head_dim, QL = hp->q_lora_rank;
  const uint64_t in = QL ? QL : D;
  char name[128];
  qiao__weight full;
#define W(field, suffix, req, vec, nd, ...)                                                        \
  do {                                                                                             \
    snprintf(name, sizeof(name), "blk.%u.%s", l, suffix);                                          \
    const uint64_t shape_[] = {__VA_ARGS__};                                                       \
    QIAO__TRY(load_weight(g, name, req, vec, nd, shape_, &L->field));                              \
  } while (0)
  W(q_a, "attn_q_a.weight", QL > 0, false, 2, QL, D);
  W(q_a_norm, "attn_q_a_norm.weight", QL > 0, true, 1, QL);
  W(kv_a_norm, "attn_kv_a_norm.weight", true, true, 1, Lr);
  W(o, "attn_output.weight", true, false, 2, D, H * V);
#undef W
  /* q: (H*(N+R), in) viewed (H, N+R, in): rows h*(N+R) + [0, N) are q_nope's */
  const qiao_tensor *q = NULL;
  QIAO__TRY(find_tensor(g, l, QL ? "attn_q_b.weight" : "attn_q.weight", 2,
                        (const uint64_t[]){H * (N + R), in}, &q));
  uint64_t *firsts = NULL;
  QIAO__TRY(host_alloc(e, H * 8, (void **)&firsts));
  snprintf(name, sizeof(name), "blk.%u.%s (nope rows)", l,
           QL ? "attn_q_b.weight" : "attn_q.weight");
  for (uint64_t h = 0; h < H; h++)
    firsts[h] = h * (N + R);
  QIAO__TRY(gather_rows(g, q, firsts, H, N, name, &L->q_nope));
  for (uint64_t h = 0; h < H; h++)
    firsts[h] = h * (N + R) + N;
  QIAO__TRY(gather_rows(g, q, firsts, H, R, name, &L->q_rope));
  /* attn_kv_a_mqa (L+R, D): two views of one buffer */
  snprintf(name, sizeof(name), "blk.%u.attn_kv_a_mqa.weight", l);
  QIAO__TRY(load_weight(g, name, true, false, 2, (const uint64_t[]){Lr + R, D}, &full));
  L->kv_a_latent = L->kv_a_rope = full;
  L->kv_a_latent.n_bytes = full.n_bytes / (Lr + R) * Lr;
  L->kv_a_rope.n_bytes = full.n_bytes / (Lr + R) * R;
  L->kv_a_rope.ref.offset += L->kv_a_latent.n_bytes;
  /* W_UK^T and W_UV */
  snprintf(name, sizeof(name), "blk.%u.attn_k_b.weight", l);
  if (qiao_model_tensor_find(e->model, name) != NULL) {
    QIAO__TRY(load_weight(g, name, true, false, 3, (const uint64_t[]){H, Lr, N}, &L->uk_t));
    snprintf(name, sizeof(name), "blk.%u.attn_v_b.weight", l);
    return load_weight(g, name, true, false, 3, (const uint64_t[]){H, V, Lr}, &L->uv);
  }
  const qiao_tensor *kv_b = NULL;
  QIAO__TRY(find_tensor(g, l, "attn_kv_b.weight", 2, (const uint64_t[]){H * (N + V), Lr}, &kv_b));
  snprintf(name, sizeof(name), "blk.%u.attn_kv_b.weight", l);
  return split_kv_b(g, kv_b, name, L);
}

static qiao_status *load_layer(qiao__stage *g, uint32_t l, qiao__layer *L) {
  qiao_engine *e = g->engine;
  const qiao_hparams *hp = &e->hp;
  const uint64_t D = hp->dim, qd = (uint64_t)hp->n_heads * hp->head_dim, kvd = e->kv_dim;
  char name[128];
#define W(field, suffix, req, vec, nd, ...)                                                        \
  do {                                                                                             \
    snprintf(name, sizeof(name), "blk.%u.%s", l, suffix);                                          \
    const uint64_t shape_[] = {__VA_ARGS__};                                                       \
    QIAO__TRY(load_weight(g, name, req, vec, nd, shape_, &L->field));                              \
  } while (0)
  W(attn_norm, "attn_norm.weight", true, true, 1, D);
  W(ffn_norm, "ffn_norm.weight", true, true, 1, D);
  if (e->mla) {
    QIAO__TRY(load_mla(g, l, L)); /* latent attention's weights */
  } else {
    W(q, "attn_q.weight", true, false, 2, qd, D);
    W(k, "attn_k.weight", true, false, 2, kvd, D);
    W(v, "attn_v.weight", true, false, 2, kvd, D);
    W(o, "attn_output.weight", true, false, 2, D, qd);
    W(q_bias, "attn_q.bias", hp->qkv_bias, true, 1, qd);
    W(k_bias, "attn_k.bias", hp->qkv_bias, true, 1, kvd);
    W(v_bias, "attn_v.bias", hp->qkv_bias, true, 1, kvd);
    W(q_norm, "attn_q_norm.weight", hp->qk_norm, true, 1, hp->head_dim);
    W(k_norm, "attn_k_norm.weight", hp->qk_norm, true, 1, hp->head_dim);
  }
  snprintf(name, sizeof(name), "blk.%u.ffn_gate_inp.weight", l);
  L->moe = hp->n_experts > 0 && qiao_model_tensor_find(e->model, name) != NULL;
  if (L->moe) {
    const uint64_t E = hp->n_experts, EF = hp->expert_ffn_dim;
    W(router, "ffn_gate_inp.weight", true, false, 2, E, D);
    W(gate_exps, "ffn_gate_exps.weight", true, false, 3, E, EF, D);
    W(up_exps, "ffn_up_exps.weight", true, false, 3, E, EF, D);
    W(down_exps, "ffn_down_exps.weight", true, false, 3, E, D, EF);
    const uint64_t SF = (uint64_t)hp->n_shared_experts * EF; /* DeepSeekMoE */
    W(exp_bias, "exp_probs_b.bias", false, true, 1, E);
    W(gate_sh, "ffn_gate_shexp.weight", SF > 0, false, 2, SF, D);
    W(up_sh, "ffn_up_shexp.weight", SF > 0, false, 2, SF, D);
    W(down_sh, "ffn_down_shexp.weight", SF > 0, false, 2, D, SF);
  } else {
    if (hp->ffn_dim == 0)
      return qiao__error(QIAO_MALFORMED, "model %s: layer %u is dense but model.ffn_dim is 0",
                         qiao_model_path(e->model), l);
    W(gate, "ffn_gate.weight", true, false, 2, hp->ffn_dim, D);
    W(up, "ffn_up.weight", true, false, 2, hp->ffn_dim, D);
    W(down, "ffn_down.weight", true, false, 2, D, hp->ffn_dim);
  }
#undef W
  return NULL;
}

/* RoPE frequencies, computed once: theta^(-2i/rope_dim), then the model's
 * scaling (or the rope_freqs.weight divisors of GGUF LLaMA 3 files). */
static qiao_status *load_rope_freqs(qiao__stage *g) {
  qiao_engine *e = g->engine;
  const qiao_hparams *hp = &e->hp;
  uint32_t half = hp->rope_dim / 2;
  float *freqs = NULL;
  QIAO__TRY(host_alloc(e, (uint64_t)half * 4, (void **)&freqs));
  const qiao_tensor *divisors = qiao_model_tensor_find(e->model, "rope_freqs.weight");
  if (divisors != NULL) QIAO__TRY(qiao_model_tensor_check(e->model, divisors));
  if (divisors != NULL &&
      (divisors->dtype != QIAO_DTYPE_F32 || divisors->n_dims != 1 || divisors->shape[0] != half))
    return qiao__error(QIAO_MALFORMED, "model %s: tensor rope_freqs.weight: expected (%u) f32",
                       qiao_model_path(e->model), half);
  for (uint32_t i = 0; i < half; i++) {
    double freq = pow((double)hp->rope_theta, -2.0 * i / (double)hp->rope_dim);
    if (divisors != NULL) {
      float d;
      memcpy(&d, (const uint8_t *)divisors->data + 4 * i, 4);
      freq /= d;
    } else if (hp->rope_scaling == QIAO_ROPE_SCALING_LINEAR) {
      freq /= hp->rope_factor;
    } else if (hp->rope_scaling == QIAO_ROPE_SCALING_YARN) {
      /* YaRN: interpolated (freq / factor) below the ramp, extrapolated
       * (freq) above it, blended linearly between the dimensions where
       * beta_fast and beta_slow rotations fit the original context. */
      double dim = hp->rope_dim, ctx = hp->rope_original_context, base = hp->rope_theta;
      double low = floor(dim * log(ctx / (hp->rope_yarn_beta_fast * 2 * M_PI)) / (2 * log(base)));
      double high = ceil(dim * log(ctx / (hp->rope_yarn_beta_slow * 2 * M_PI)) / (2 * log(base)));
      if (low < 0) low = 0;
      if (high > dim - 1) high = dim - 1;
      if (low == high) high += 0.001;
      double ramp = (i - low) / (high - low);
      ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
      freq = freq / hp->rope_factor * ramp + freq * (1 - ramp);
    } else if (hp->rope_scaling == QIAO_ROPE_SCALING_LLAMA3) {
      double factor = hp->rope_factor, lo = hp->rope_low_freq_factor,
             hi = hp->rope_high_freq_factor;
      double ctx = hp->rope_original_context;
      double wavelen = 2.0 * M_PI / freq;
      double low_freq_wavelen = ctx / lo, high_freq_wavelen = ctx / hi;
      if (wavelen > low_freq_wavelen) {
        freq /= factor;
      } else if (wavelen >= high_freq_wavelen) {
        double smooth = (ctx / wavelen - lo) / (hi - lo);
        freq = (1.0 - smooth) * freq / factor + smooth * freq;
      }
    }
    freqs[i] = (float)freq;
  }
  return device_put(g, freqs, (uint64_t)half * 4, "rope freqs", &g->rope_freqs);
}

/* ---- Capabilities --------------------------------------------------------- */

static qiao_status *require_op(qiao__stage *g, qiao_dev_op op, qiao_dev_dtype dtype,
                               const char *needed_by) {
  qiao_engine *e = g->engine;
  bool supported = false; /* never asks a plugin about a dtype of a later minor version */
  QIAO__TRY(qiao_backend_op_supported(g->backend, g->device, op, dtype, &supported));
  if (!supported && e->allow_fallback) return qiao__fallback_add(e, op, dtype, needed_by);
  if (!supported)
    return qiao__error(QIAO_UNSUPPORTED, "backend %s does not support %s for %s (needed by %s)",
                       qiao_backend_name(g->backend), qiao_dev_op_name(op),
                       qiao_dev_dtype_name(dtype), needed_by);
  return NULL;
}

/* The ops stage g runs: the embedding on the first stage, its layers', the
 * output and argmax on the last. */
static qiao_status *check_capabilities(qiao__stage *g) {
  qiao_engine *e = g->engine;
  const qiao_hparams *hp = &e->hp;
  const bool first = e->embed_stage >= 0 && g == &e->stages[e->embed_stage];
  const bool last = e->output_stage >= 0 && g == &e->stages[e->output_stage];
  if (first) QIAO__TRY(require_op(g, QIAO_DEV_OP_EMBED, e->token_embd.dtype, "token_embd.weight"));
  QIAO__TRY(require_op(g, QIAO_DEV_OP_RMSNORM, QIAO_DEV_F32, "blk.0.attn_norm.weight"));
  QIAO__TRY(require_op(g, QIAO_DEV_OP_ROPE, QIAO_DEV_F32, "rope"));
  if (e->mla) {
    QIAO__TRY(require_op(g, QIAO_DEV_OP_LATENT_WRITE, e->cache_dtype, "the latent KV cache"));
    QIAO__TRY(require_op(g, QIAO_DEV_OP_ATTENTION_LATENT, e->cache_dtype, "the latent KV cache"));
  } else {
    QIAO__TRY(require_op(g, QIAO_DEV_OP_KV_WRITE, e->cache_dtype, "the KV cache"));
    QIAO__TRY(require_op(g, QIAO_DEV_OP_ATTENTION, e->cache_dtype, "the KV cache"));
  }
  QIAO__TRY(require_op(g, QIAO_DEV_OP_SWIGLU, QIAO_DEV_F32, "the FFN"));
  if (last) {
    QIAO__TRY(require_op(g, QIAO_DEV_OP_ARGMAX, QIAO_DEV_F32, "greedy sampling"));
    QIAO__TRY(require_op(g, QIAO_DEV_OP_MATMUL, e->output.dtype,
                         hp->tied_embeddings ? "token_embd.weight" : "output.weight"));
  }
  char name[128];
  for (uint32_t l = g->first_layer; l < g->end_layer; l++) {
    const qiao__layer *L = &e->layers[l];
    const struct {
      const qiao__weight *w;
      qiao_dev_op op;
      const char *suffix;
    } uses[] = {{&L->q, QIAO_DEV_OP_MATMUL, "attn_q.weight"},
                {&L->k, QIAO_DEV_OP_MATMUL, "attn_k.weight"},
                {&L->v, QIAO_DEV_OP_MATMUL, "attn_v.weight"},
                {&L->o, QIAO_DEV_OP_MATMUL, "attn_output.weight"},
                {&L->gate, QIAO_DEV_OP_MATMUL, "ffn_gate.weight"},
                {&L->up, QIAO_DEV_OP_MATMUL, "ffn_up.weight"},
                {&L->down, QIAO_DEV_OP_MATMUL, "ffn_down.weight"},
                {&L->router, QIAO_DEV_OP_MATMUL, "ffn_gate_inp.weight"},
                {&L->gate_exps, QIAO_DEV_OP_MATMUL_EXPERTS, "ffn_gate_exps.weight"},
                {&L->up_exps, QIAO_DEV_OP_MATMUL_EXPERTS, "ffn_up_exps.weight"},
                {&L->down_exps, QIAO_DEV_OP_MATMUL_EXPERTS, "ffn_down_exps.weight"},
                {&L->q_a, QIAO_DEV_OP_MATMUL, "attn_q_a.weight"},
                {&L->q_nope, QIAO_DEV_OP_MATMUL, "attn_q_b.weight"},
                {&L->q_rope, QIAO_DEV_OP_MATMUL, "attn_q_b.weight"},
                {&L->kv_a_latent, QIAO_DEV_OP_MATMUL, "attn_kv_a_mqa.weight"},
                {&L->uk_t, QIAO_DEV_OP_MATMUL_EXPERTS, "attn_kv_b.weight (W_UK^T)"},
                {&L->uv, QIAO_DEV_OP_MATMUL_EXPERTS, "attn_kv_b.weight (W_UV)"},
                {&L->gate_sh, QIAO_DEV_OP_MATMUL, "ffn_gate_shexp.weight"},
                {&L->up_sh, QIAO_DEV_OP_MATMUL, "ffn_up_shexp.weight"},
                {&L->down_sh, QIAO_DEV_OP_MATMUL, "ffn_down_shexp.weight"}};
    for (size_t i = 0; i < sizeof(uses) / sizeof(uses[0]); i++) {
      if (uses[i].w->ref.buffer == NULL) continue;
      snprintf(name, sizeof(name), "blk.%u.%s", l, uses[i].suffix);
      QIAO__TRY(require_op(g, uses[i].op, uses[i].w->dtype, name));
    }
    if (L->moe) {
      snprintf(name, sizeof(name), "blk.%u.ffn_gate_inp.weight", l);
      /* DeepSeekMoE routing is moe_route's (1.4); the others' moe_gate's */
      QIAO__TRY(
          require_op(g, e->mla ? QIAO_DEV_OP_MOE_ROUTE : QIAO_DEV_OP_MOE_GATE, QIAO_DEV_F32, name));
      QIAO__TRY(require_op(g, QIAO_DEV_OP_MOE_COMBINE, QIAO_DEV_F32, name));
    }
  }
  return NULL;
}

/* ---- Creation ------------------------------------------------------------- */

static uint64_t matmul_bytes(const qiao__weight *w) {
  return w->ref.buffer ? w->n_bytes : 0;
}

/* A block's key: XXH3-64 of its token ids, seeded with its parent's key. */
static uint64_t block_key_xxh3(uint64_t parent_key, const int32_t *tokens, uint32_t n) {
  return XXH3_64bits_withSeed(tokens, (size_t)n * sizeof(int32_t), parent_key);
}

/* Block records, and with a prefix cache its table, the token ids of keyed
 * blocks and of every sequence (see "Block states" below). */
static qiao_status *create_block_state(qiao_engine *e, bool prefix_cache) {
  e->blocks = calloc(e->n_blocks, sizeof(*e->blocks));
  if (e->blocks == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  for (uint32_t b = 0; b < e->n_blocks; b++)
    e->blocks[b].parent = e->blocks[b].lru_prev = e->blocks[b].lru_next = -1;
  e->lru_head = e->lru_tail = -1;
  e->block_key = block_key_xxh3;
  e->prefix_cache = prefix_cache;
  if (!prefix_cache) return NULL;
  uint64_t table_size = 2;
  while (table_size < 2ull * e->n_blocks)
    table_size *= 2;
  e->table_mask = table_size - 1;
  e->table = malloc(table_size * sizeof(int32_t));
  e->block_tokens = malloc(e->n_slots * sizeof(int32_t));
  e->cow_mark = calloc((size_t)e->max_seqs * e->max_blocks_per_seq, 1);
  e->ext_copies = malloc((size_t)e->max_seqs * e->max_blocks_per_seq * 2 * sizeof(int32_t));
  if (e->table == NULL || e->block_tokens == NULL || e->cow_mark == NULL || e->ext_copies == NULL)
    return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory for the prefix cache");
  memset(e->table, 0xff, table_size * sizeof(int32_t)); /* -1: empty */
  for (uint32_t s = 0; s < e->max_seqs; s++) {
    e->seqs[s].tokens = malloc((size_t)e->max_context * sizeof(int32_t));
    if (e->seqs[s].tokens == NULL)
      return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory for the prefix cache");
  }
  return NULL;
}

/* Hyperparameter checks and the limits of the options (no device touched). */
static qiao_status *set_limits(qiao_engine *e, const qiao_engine_options *o) {
  qiao_hparams *hp = &e->hp;
  QIAO__TRY(qiao_model_get_hparams(e->model, hp));
  if (hp->rope_dim == 0 || hp->rope_dim % 2 != 0 || hp->rope_dim > hp->head_dim)
    return qiao__error(QIAO_MALFORMED,
                       "model %s: model.rope.dim %u must be even and <= head_dim %u",
                       qiao_model_path(e->model), hp->rope_dim, hp->head_dim);
  if (hp->n_experts > 0 && (hp->n_experts_used == 0 || hp->n_experts_used > hp->n_experts))
    return qiao__error(QIAO_MALFORMED, "model %s: model.moe.n_experts_used %u not in [1, %u]",
                       qiao_model_path(e->model), hp->n_experts_used, hp->n_experts);

  e->verbose = o->verbose;
  e->block_size = o->block_size ? o->block_size : 16;
  e->max_context =
      o->max_context
          ? o->max_context
          : (hp->context_length && hp->context_length < 4096 ? hp->context_length : 4096);
  e->max_seqs = o->max_seqs ? o->max_seqs : 8;
  e->max_batch = o->max_batch_tokens ? o->max_batch_tokens : 512;
  if (e->block_size > 4096 || e->max_context > (1u << 24) || e->max_seqs > 65536 ||
      e->max_batch > 65536)
    return qiao__error(
        QIAO_INVALID_ARGUMENT,
        "engine options: block_size, max_context, max_seqs or max_batch_tokens too large");
  e->max_blocks_per_seq = (e->max_context + e->block_size - 1) / e->block_size;
  e->n_blocks = o->n_blocks ? o->n_blocks : e->max_blocks_per_seq;
  if (o->cache_dtype != QIAO_DTYPE_F32 && o->cache_dtype != QIAO_DTYPE_F16)
    return qiao__error(QIAO_INVALID_ARGUMENT, "engine options: cache dtype must be f32 or f16");
  e->cache_dtype = (qiao_dev_dtype)o->cache_dtype;
  e->mla = hp->kv_lora_rank > 0;
  e->kv_dim = e->mla ? (uint64_t)hp->kv_lora_rank + hp->rope_dim /* the latent, then the rope key */
                     : (uint64_t)hp->n_kv_heads * hp->head_dim;
  uint64_t kv_bytes = 0;
  if (!qiao__mul_u64((uint64_t)e->n_blocks, e->block_size, &e->n_slots) ||
      !qiao__mul_u64(e->n_slots, e->kv_dim * (e->cache_dtype == QIAO_DEV_F16 ? 2 : 4), &kv_bytes) ||
      e->n_slots > INT32_MAX)
    return qiao__error(QIAO_LIMIT, "engine options: KV cache of %u blocks is too large",
                       e->n_blocks);
  /* R output rows at a time: logits of at most ~64 MiB per pass. */
  uint64_t rows = hp->vocab_size ? (64ull << 20) / ((uint64_t)hp->vocab_size * 4) : 1;
  e->out_rows = (uint32_t)(rows < 1 ? 1 : rows > e->max_batch ? e->max_batch : rows);
  e->allow_fallback = o->allow_fallback;
  e->batch_invariant = o->batch_invariant;
  e->exact_matmul = o->exact_matmul;
  return NULL;
}

/* Opens the stage's device and queue. */
static qiao_status *open_stage(qiao__stage *g, const qiao_engine_options *o) {
  const char *backend_name = qiao_backend_name(g->backend);
  qiao_dev_device_options dopt = {.struct_size = sizeof(dopt), .n_threads = o->n_threads};
  if (o->batch_invariant) {
    /* A 1.0 plugin would ignore the request: check the claim first. */
    bool supported = false;
    QIAO__TRY(qiao_backend_batch_invariant(g->backend, g->device_index, &supported));
    if (!supported)
      return qiao__error(QIAO_UNSUPPORTED,
                         "backend %s device %u is not batch-invariant "
                         "(QIAO_DEV_FLAG_BATCH_INVARIANT)",
                         backend_name, g->device_index);
    dopt.flags = QIAO_DEV_OPEN_BATCH_INVARIANT;
  }
  QIAO__DEV_TRY(
      g, g->api->device_open(qiao_backend_handle(g->backend), g->device_index, &dopt, &g->device),
      "device_open");
  QIAO__DEV_TRY(g, g->api->queue_create(g->device, &g->queue), "queue_create");
  g->ops = g->api;
  g->ops_queue = g->queue;
  return NULL;
}

/* "cpu" and the device's name, or for a split "cpu+opencl" and the
 * devices' names joined by " + ". */
static void make_labels(qiao_engine *e) {
  size_t nb = 0, nd = 0;
  for (uint32_t i = 0; i < e->n_stages; i++) {
    const qiao__stage *g = &e->stages[i];
    const char *sep = i ? "+" : "";
    if (nb < sizeof(e->backend_label))
      nb += (size_t)snprintf(e->backend_label + nb, sizeof(e->backend_label) - nb, "%s%s", sep,
                             g->external ? "external" : qiao_backend_name(g->backend));
    if (nd < sizeof(e->device_label))
      nd += (size_t)snprintf(e->device_label + nd, sizeof(e->device_label) - nd, "%s%s",
                             i ? " + " : "", g->device_name);
  }
}

static qiao_status *create(qiao_engine *e, const qiao_engine_options *o) {
  const qiao_hparams *hp = &e->hp;
  QIAO__TRY(set_limits(e, o));
  /* Where everything goes and whether it fits, before any allocation. */
  QIAO__TRY(qiao__placement_make(e, o));
  for (uint32_t i = 0; i < e->n_stages; i++)
    if (!e->stages[i].external) QIAO__TRY(open_stage(&e->stages[i], o));
  make_labels(e);

  /* Weights, uploaded once: the embedding on the first stage, each layer on
   * its stage, the output on the last (of this engine's own). */
  const uint64_t D = hp->dim, V = hp->vocab_size;
  const uint64_t embd_shape[] = {V, D};
  if (e->embed_stage >= 0) {
    qiao__stage *first = &e->stages[e->embed_stage], *last = &e->stages[e->output_stage];
    QIAO__TRY(load_weight(first, "token_embd.weight", true, false, 2, embd_shape, &e->token_embd));
    const uint64_t norm_shape[] = {D};
    QIAO__TRY(load_weight(last, "output_norm.weight", true, true, 1, norm_shape, &e->output_norm));
    if (hp->tied_embeddings && first == last) {
      e->output = e->token_embd;
    } else {
      QIAO__TRY(load_weight(last, hp->tied_embeddings ? "token_embd.weight" : "output.weight", true,
                            false, 2, embd_shape, &e->output));
    }
  }
  e->layers = calloc(hp->n_layers, sizeof(*e->layers));
  if (e->layers == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  for (uint32_t i = 0; i < e->n_stages; i++) {
    qiao__stage *g = &e->stages[i];
    for (uint32_t l = g->first_layer; l < g->end_layer; l++)
      e->layers[l].stage = i;
    if (g->external) continue;
    for (uint32_t l = g->first_layer; l < g->end_layer; l++)
      QIAO__TRY(load_layer(g, l, &e->layers[l]));
    QIAO__TRY(load_rope_freqs(g));
    QIAO__TRY(check_capabilities(g));
  }
  qiao__fallback_install(e);

  /* Bytes read per decoded token: every matmul weight, the used experts. */
  uint64_t bytes = e->output.n_bytes + e->token_embd.n_bytes / V;
  for (uint32_t l = 0; l < hp->n_layers; l++) {
    const qiao__layer *L = &e->layers[l];
    bytes += matmul_bytes(&L->q) + matmul_bytes(&L->k) + matmul_bytes(&L->v) + matmul_bytes(&L->o) +
             matmul_bytes(&L->gate) + matmul_bytes(&L->up) + matmul_bytes(&L->down) +
             matmul_bytes(&L->router);
    bytes += matmul_bytes(&L->q_a) + matmul_bytes(&L->q_nope) + matmul_bytes(&L->q_rope) +
             matmul_bytes(&L->kv_a_latent) + matmul_bytes(&L->kv_a_rope) + matmul_bytes(&L->uk_t) +
             matmul_bytes(&L->uv) + matmul_bytes(&L->gate_sh) + matmul_bytes(&L->up_sh) +
             matmul_bytes(&L->down_sh);
    if (L->moe)
      bytes +=
          (matmul_bytes(&L->gate_exps) + matmul_bytes(&L->up_exps) + matmul_bytes(&L->down_exps)) /
          hp->n_experts * hp->n_experts_used;
  }
  e->weight_bytes_per_token = bytes;

  /* KV cache: one K and one V array per layer, on the layer's device; with
   * latent attention one array of (latent, rope key) rows per layer. */
  const uint64_t kv_bytes = e->n_slots * e->kv_dim * (e->cache_dtype == QIAO_DEV_F16 ? 2 : 4);
  for (uint32_t l = 0; l < hp->n_layers; l++) {
    qiao__stage *g = &e->stages[e->layers[l].stage];
    if (g->external) continue;
    QIAO__TRY(
        device_alloc(g, kv_bytes, e->mla ? "latent cache" : "k cache", &e->layers[l].k_cache));
    if (!e->mla) QIAO__TRY(device_alloc(g, kv_bytes, "v cache", &e->layers[l].v_cache));
  }
  e->free_blocks = malloc((size_t)e->n_blocks * sizeof(int32_t));
  e->seqs = calloc(e->max_seqs, sizeof(*e->seqs));
  if (e->free_blocks == NULL || e->seqs == NULL)
    return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  for (uint32_t b = 0; b < e->n_blocks; b++)
    e->free_blocks[b] = (int32_t)(e->n_blocks - 1 - b);
  e->n_free = e->n_blocks;
  for (uint32_t s = 0; s < e->max_seqs; s++) {
    e->seqs[s].blocks = calloc(e->max_blocks_per_seq, sizeof(int32_t));
    if (e->seqs[s].blocks == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  }
  QIAO__TRY(create_block_state(e, o->prefix_cache));

  /* Scratch activations for max_batch tokens on every stage (the logits on
   * the last only). */
  static const char *const scratch_names[QIAO__N_SCRATCH] = {
      "x",      "xn",         "q",           "k",           "v",        "att",     "gate",
      "up",     "moe logits", "moe ids",     "moe weights", "moe out",  "tokens",  "positions",
      "slots",  "token_seq",  "block table", "output rows", "logits",   "argmax",  "q low",
      "q rope", "latent",     "k rope",      "q latent",    "o latent", "head ids"};
  for (uint32_t i = 0; i < e->n_stages; i++) {
    qiao__stage *g = &e->stages[i];
    if (g->external) continue;
    qiao__scratch *s = &g->s;
    qiao_dev_ref *refs[QIAO__N_SCRATCH] = {
        &s->x,      &s->xn,        &s->q,          &s->k,         &s->v,           &s->att,
        &s->gate,   &s->up,        &s->moe_logits, &s->moe_ids,   &s->moe_weights, &s->moe_out,
        &s->tokens, &s->positions, &s->slots,      &s->token_seq, &s->block_table, &s->rows_x,
        &s->logits, &s->argmax,    &s->q_low,      &s->q_rope,    &s->latent,      &s->k_rope,
        &s->q_lat,  &s->o_lat,     &s->head_ids};
    uint64_t sizes[QIAO__N_SCRATCH];
    qiao__scratch_bytes(e, g, sizes);
    for (size_t k = 0; k < QIAO__N_SCRATCH; k++)
      QIAO__TRY(device_alloc(g, sizes[k], scratch_names[k], refs[k]));
    if (e->mla) { /* the per-head matmuls' expert ids: head h in column h of every row */
      const uint64_t H = hp->n_heads;
      int32_t *ids = NULL;
      QIAO__TRY(host_alloc(e, e->max_batch * H * 4, (void **)&ids));
      for (uint64_t i = 0; i < e->max_batch * H; i++)
        ids[i] = (int32_t)(i % H);
      QIAO__DEV_TRY(g, g->api->upload(g->queue, s->head_ids, ids, e->max_batch * H * 4),
                    "upload head ids");
    }
  }
  const uint64_t T = e->max_batch;
  e->h_tokens = malloc(T * 4);
  e->h_positions = malloc(T * 4);
  e->h_slots = malloc(T * 4);
  e->h_token_seq = malloc(T * 4);
  e->h_block_table = malloc((size_t)e->max_seqs * e->max_blocks_per_seq * 4);
  if (!e->h_tokens || !e->h_positions || !e->h_slots || !e->h_token_seq || !e->h_block_table)
    return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  if (e->n_stages > 1 && (e->h_x = malloc(T * D * 4)) == NULL)
    return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  if (e->verbose) {
    for (uint32_t i = 0; i < e->n_stages; i++) {
      const qiao__stage *g = &e->stages[i];
      if (g->external) {
        fprintf(stderr, "engine: %s layers %u-%u run elsewhere (external)\n", hp->architecture,
                g->first_layer, g->end_layer - 1);
        continue;
      }
      char placement[96] = "uploaded";
      if (g->host_memory)
        snprintf(placement, sizeof(placement), "used in place (%.1f MiB copied to align them)",
                 (double)g->weight_bytes_copied / (1 << 20));
      char range[64] = "";
      if (e->n_stages > 1)
        snprintf(range, sizeof(range), " layers %u-%u", g->first_layer, g->end_layer - 1);
      fprintf(stderr, "engine: %s%s on %s (%s), weights %s, KV cache %u blocks of %u (%s)\n",
              hp->architecture, range, qiao_backend_name(g->backend), g->device_name, placement,
              e->n_blocks, e->block_size, qiao_dev_dtype_name(e->cache_dtype));
    }
  }
  /* Wait for the weight uploads. */
  for (uint32_t i = 0; i < e->n_stages; i++) {
    qiao__stage *g = &e->stages[i];
    if (!g->external) QIAO__DEV_TRY(g, g->api->queue_synchronize(g->queue), "uploading weights");
  }
  return NULL;
}

qiao_engine_options qiao_engine_default_options(void) {
  qiao_engine_options o;
  memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  return o;
}

/* The options as this version reads them: the caller's fields within its
 * struct_size, zeros beyond. */
static qiao_engine_options read_options(const qiao_engine_options *options) {
  qiao_engine_options o;
  memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  if (options != NULL) {
    size_t n = options->struct_size < sizeof(o) ? options->struct_size : sizeof(o);
    memcpy(&o, options, n);
  }
  return o;
}

qiao_status *qiao_engine_create(const qiao_model *model, const qiao_engine_options *options,
                                qiao_engine **out_engine) {
  if (model == NULL || out_engine == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_engine_create: NULL model or output");
  qiao_engine_options o = read_options(options);
  qiao_engine *e = calloc(1, sizeof(*e));
  if (e == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  e->model = model;
  qiao_status *st = create(e, &o);
  if (st != NULL) {
    qiao_engine_destroy(e);
    return st;
  }
  *out_engine = e;
  return NULL;
}

qiao_status *qiao_engine_plan(const qiao_model *model, const qiao_engine_options *options,
                              qiao_engine_stage_info **out_stages, uint32_t *out_count) {
  if (model == NULL || out_stages == NULL || out_count == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_engine_plan: NULL model or output");
  qiao_engine_options o = read_options(options);
  qiao_engine *e = calloc(1, sizeof(*e));
  if (e == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  e->model = model;
  qiao_status *st = set_limits(e, &o);
  if (st == NULL) st = qiao__placement_make(e, &o);
  qiao_engine_stage_info *stages = NULL;
  if (st == NULL && (stages = calloc(e->n_stages, sizeof(*stages))) == NULL)
    st = qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  if (st == NULL) {
    for (uint32_t i = 0; i < e->n_stages; i++)
      stages[i] = e->stages[i].info;
    *out_stages = stages;
    *out_count = e->n_stages;
  }
  qiao_engine_destroy(e);
  return st;
}

void qiao_engine_destroy(qiao_engine *e) {
  if (e == NULL) return;
  for (uint32_t i = 0; i < e->n_stages; i++) {
    qiao__stage *g = &e->stages[i];
    if (g->queue) {
      g->api->error_destroy(g->api->queue_synchronize(g->queue));
      g->api->queue_destroy(g->queue);
    }
  }
  qiao__fallback_close(e);
  for (uint32_t i = 0; i < e->n_stages; i++) {
    qiao__stage *g = &e->stages[i];
    for (size_t b = 0; b < g->n_buffers; b++)
      g->api->buffer_destroy(g->buffers[b].buffer);
    free(g->buffers);
    if (g->device) g->api->device_close(g->device);
  }
  for (uint32_t i = e->n_stages; i-- > 0;) /* every device of a backend closed first */
    if (e->stages[i].owns_backend) qiao_backend_unload(e->stages[i].backend);
  free(e->stages);
  free(e->split_text);
  free(e->h_x);
  for (size_t i = 0; i < e->n_host_blocks; i++)
    free(e->host_blocks[i]);
  free(e->host_blocks);
  free(e->layers);
  free(e->free_blocks);
  if (e->seqs)
    for (uint32_t s = 0; s < e->max_seqs; s++) {
      free(e->seqs[s].blocks);
      free(e->seqs[s].tokens);
    }
  free(e->seqs);
  free(e->blocks);
  free(e->table);
  free(e->block_tokens);
  free(e->cow_mark);
  free(e->ext_copies);
  free(e->h_tokens);
  free(e->h_positions);
  free(e->h_slots);
  free(e->h_token_seq);
  free(e->h_block_table);
  free(e);
}

const qiao_hparams *qiao_engine_hparams(const qiao_engine *e) {
  return &e->hp;
}
uint32_t qiao_engine_max_context(const qiao_engine *e) {
  return e->max_context;
}
const char *qiao_engine_backend_name(const qiao_engine *e) {
  return e->backend_label;
}
const char *qiao_engine_device_name(const qiao_engine *e) {
  return e->device_label;
}
uint64_t qiao_engine_weight_bytes_per_token(const qiao_engine *e) {
  return e->weight_bytes_per_token;
}
uint64_t qiao_engine_kv_bytes_per_token(const qiao_engine *e) {
  return e->kv_dim * (e->mla ? 1 : 2) * e->hp.n_layers * (e->cache_dtype == QIAO_DEV_F16 ? 2 : 4);
}
uint32_t qiao_engine_stage_count(const qiao_engine *e) {
  return e->n_stages;
}
void qiao_engine_stage_info_get(const qiao_engine *e, uint32_t i, qiao_engine_stage_info *out) {
  if (e == NULL || out == NULL || i >= e->n_stages) return;
  qiao_engine_stage_info info = e->stages[i].info;
  info.struct_size = out->struct_size;
  memcpy(out, &info, out->struct_size < sizeof(info) ? out->struct_size : sizeof(info));
}

/* ---- Sequences and the paged cache ---------------------------------------- */

/* Block states and the prefix cache.
 *
 * Every block is free (on the free stack), used (held by refs > 0
 * sequences) or cached (held by none, but keyed: it keeps the KV of a token
 * prefix for qiao_engine_seq_create_cached; on the LRU list). Without
 * options.prefix_cache no block is ever keyed, so a block is either free or
 * held by exactly one sequence, as it always was.
 *
 * A block gets a key once it is full and its sequence wrote every position
 * from 0 to its end in order (qiao__seq.clean): key = XXH3-64 of its
 * block_size token ids, seeded with the key of the block before it (0 for
 * the first), so the key names the whole prefix. The table maps a key to one
 * block. A keyed block also stores its token ids and its parent (block id and
 * gen), and a lookup checks both before taking it: a hash collision can only
 * cost a miss, never give KV of other tokens.
 *
 * A keyed block is never written again. A sequence about to write into one
 * (a position below its length, or after truncating into it) first gets a
 * private copy of it (copy on write, in forward); the keyed block stays in
 * the cache for others. Only keyed blocks are ever shared, so an unkeyed
 * block always has one holder, which may write it in place. */

static void lru_remove(qiao_engine *e, int32_t b) {
  qiao__block *k = &e->blocks[b];
  if (k->lru_prev >= 0)
    e->blocks[k->lru_prev].lru_next = k->lru_next;
  else
    e->lru_head = k->lru_next;
  if (k->lru_next >= 0)
    e->blocks[k->lru_next].lru_prev = k->lru_prev;
  else
    e->lru_tail = k->lru_prev;
  k->lru_prev = k->lru_next = -1;
  e->n_cached--;
}

/* Appends b as the most recently used cached block. */
static void lru_push(qiao_engine *e, int32_t b) {
  qiao__block *k = &e->blocks[b];
  k->lru_prev = e->lru_tail;
  k->lru_next = -1;
  if (e->lru_tail >= 0)
    e->blocks[e->lru_tail].lru_next = b;
  else
    e->lru_head = b;
  e->lru_tail = b;
  e->n_cached++;
}

/* The key table: linear probing over a power-of-two array at most half full
 * (it holds at most n_blocks keys). */
static int32_t table_find(const qiao_engine *e, uint64_t key) {
  for (uint64_t i = key & e->table_mask;; i = (i + 1) & e->table_mask) {
    int32_t b = e->table[i];
    if (b < 0 || e->blocks[b].key == key) return b;
  }
}

static void table_insert(qiao_engine *e, int32_t b) {
  uint64_t i = e->blocks[b].key & e->table_mask;
  while (e->table[i] >= 0)
    i = (i + 1) & e->table_mask;
  e->table[i] = b;
}

/* Removes b, then moves later entries of its probe run back into the hole
 * so that every entry stays reachable from its home slot. */
static void table_remove(qiao_engine *e, int32_t b) {
  const uint64_t mask = e->table_mask;
  uint64_t hole = e->blocks[b].key & mask;
  while (e->table[hole] != b)
    hole = (hole + 1) & mask;
  e->table[hole] = -1;
  for (uint64_t j = (hole + 1) & mask; e->table[j] >= 0; j = (j + 1) & mask) {
    uint64_t home = e->blocks[e->table[j]].key & mask;
    /* The entry at j may stay only if its home lies cyclically in (hole, j]. */
    bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (!stays) {
      e->table[hole] = e->table[j];
      e->table[j] = -1;
      hole = j;
    }
  }
}

/* A block for a sequence to write: a free one, else the least recently used
 * cached one, whose prefix is then forgotten. The caller checked that
 * n_free + n_cached > 0. */
static int32_t take_block(qiao_engine *e) {
  int32_t b;
  if (e->n_free > 0) {
    b = e->free_blocks[--e->n_free];
  } else {
    b = e->lru_head;
    lru_remove(e, b);
    table_remove(e, b);
    e->blocks[b].keyed = false;
    e->evicted_blocks++;
  }
  e->blocks[b].refs = 1;
  return b;
}

static void drop_ref(qiao_engine *e, int32_t b) {
  if (--e->blocks[b].refs > 0) return;
  if (e->blocks[b].keyed)
    lru_push(e, b);
  else
    e->free_blocks[e->n_free++] = b;
}

/* Keys the sequence's newly full, in-order blocks (after a forward pass). */
static void key_blocks(qiao_engine *e, qiao__seq *q) {
  const uint32_t bs = e->block_size;
  while (q->n_keyed < q->n_blocks && (uint64_t)(q->n_keyed + 1) * bs <= q->clean) {
    uint32_t i = q->n_keyed;
    int32_t b = q->blocks[i], parent = i > 0 ? q->blocks[i - 1] : -1; /* the parent is keyed */
    qiao__block *k = &e->blocks[b];
    if (k->keyed) break; /* cannot happen: a block clean again was written, so copied */
    const int32_t *tokens = q->tokens + (size_t)i * bs;
    uint64_t key = e->block_key(parent >= 0 ? e->blocks[parent].key : 0, tokens, bs);
    /* Taken: the same prefix computed by another sequence too (or a hash
     * collision). This block then stays private, and so do the ones after. */
    if (table_find(e, key) >= 0) break;
    memcpy(e->block_tokens + (size_t)b * bs, tokens, (size_t)bs * sizeof(int32_t));
    k->keyed = true;
    k->key = key;
    k->gen++;
    k->parent = parent;
    k->parent_gen = parent >= 0 ? e->blocks[parent].gen : 0;
    table_insert(e, b);
    q->n_keyed++;
  }
}

/* The longest run of cached whole blocks that `tokens` starts with, capped
 * at n - 1 positions and at max_context - 1 (the caller computes the next
 * token). Writes the block ids to out_blocks when not NULL. */
static uint32_t match_prefix(const qiao_engine *e, const int32_t *tokens, size_t n,
                             int32_t *out_blocks) {
  if (!e->prefix_cache || tokens == NULL || n < 2) return 0;
  const uint32_t bs = e->block_size;
  uint64_t limit = (uint64_t)(n - 1) / bs, most = (e->max_context - 1) / bs;
  if (limit > most) limit = most;
  uint64_t key = 0;
  int32_t parent = -1;
  uint32_t m = 0;
  for (; m < limit; m++) {
    const int32_t *t = tokens + (size_t)m * bs;
    key = e->block_key(key, t, bs);
    int32_t b = table_find(e, key);
    if (b < 0) break;
    const qiao__block *k = &e->blocks[b];
    if (k->parent != parent || (parent >= 0 && k->parent_gen != e->blocks[parent].gen) ||
        memcmp(e->block_tokens + (size_t)b * bs, t, (size_t)bs * sizeof(int32_t)) != 0)
      break;
    if (out_blocks != NULL) out_blocks[m] = b;
    parent = b;
  }
  return m;
}

static qiao__seq *find_seq(const qiao_engine *e, int32_t seq) {
  if (seq < 0 || (uint32_t)seq >= e->max_seqs || !e->seqs[seq].live) return NULL;
  return &e->seqs[seq];
}

qiao_status *qiao_engine_seq_create(qiao_engine *e, int32_t *out_seq) {
  for (uint32_t s = 0; s < e->max_seqs; s++) {
    if (!e->seqs[s].live) {
      e->seqs[s].live = true;
      e->seqs[s].length = 0;
      e->seqs[s].n_blocks = 0;
      e->seqs[s].clean = 0;
      e->seqs[s].n_keyed = 0;
      *out_seq = (int32_t)s;
      return NULL;
    }
  }
  return qiao__error(QIAO_LIMIT, "engine: all %u sequences are in use", e->max_seqs);
}

qiao_status *qiao_engine_seq_create_cached(qiao_engine *e, const int32_t *tokens, size_t n_tokens,
                                           int32_t *out_seq, uint32_t *out_cached) {
  if (out_seq == NULL || out_cached == NULL || (tokens == NULL && n_tokens > 0))
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_engine_seq_create_cached: NULL argument");
  *out_cached = 0;
  QIAO__TRY(qiao_engine_seq_create(e, out_seq));
  qiao__seq *q = &e->seqs[*out_seq];
  uint32_t m = match_prefix(e, tokens, n_tokens, q->blocks);
  for (uint32_t i = 0; i < m; i++) {
    int32_t b = q->blocks[i];
    if (e->blocks[b].refs++ == 0) lru_remove(e, b); /* was cached: now used */
  }
  q->n_blocks = q->n_keyed = m;
  q->length = q->clean = m * e->block_size;
  if (q->length > 0) memcpy(q->tokens, tokens, (size_t)q->length * sizeof(int32_t));
  e->hit_tokens += q->length;
  *out_cached = q->length;
  return NULL;
}

uint32_t qiao_engine_prefix_cached(const qiao_engine *e, const int32_t *tokens, size_t n_tokens) {
  return match_prefix(e, tokens, n_tokens, NULL) * e->block_size;
}

void qiao_engine_cache_stats_get(const qiao_engine *e, qiao_engine_cache_stats *out) {
  if (e == NULL || out == NULL) return;
  qiao_engine_cache_stats s;
  memset(&s, 0, sizeof(s));
  s.struct_size = out->struct_size;
  s.block_size = e->block_size;
  s.n_blocks = e->n_blocks;
  s.cached_blocks = e->n_cached;
  s.used_blocks = e->n_blocks - e->n_free - e->n_cached;
  for (uint32_t i = 0; i < e->max_seqs; i++)
    s.live_seqs += e->seqs[i].live;
  s.hit_tokens = e->hit_tokens;
  s.evicted_blocks = e->evicted_blocks;
  memcpy(out, &s, out->struct_size < sizeof(s) ? out->struct_size : sizeof(s));
}

bool qiao_engine_device_lost(const qiao_engine *e) {
  return e != NULL && e->device_lost;
}

qiao_status *qiao__engine_dev_status(qiao__stage *g, qiao_dev_error *error, const char *what) {
  if (error == NULL) return NULL;
  qiao_engine *e = g->engine;
  bool lost;
  if (error == (qiao_dev_error *)(void *)&e->fb_sentinel) /* the fallback's error, kept aside */
    lost = e->fb_error != NULL && e->fb_api->error_code(e->fb_error) == QIAO_DEV_DEVICE_LOST;
  else
    lost = g->api->error_code != NULL && g->api->error_code(error) == QIAO_DEV_DEVICE_LOST;
  qiao_status *st = qiao__engine_status(g, error, what);
  if (!lost) return st;
  e->device_lost = true;
  return qiao__annotate(st, "DEVICE_LOST");
}

/* Drops the sequence's blocks from the last down to index `keep`: released
 * last first, a prefix's later blocks go out of the cache before its first. */
static void release_blocks(qiao_engine *e, qiao__seq *q, uint32_t keep) {
  while (q->n_blocks > keep)
    drop_ref(e, q->blocks[--q->n_blocks]);
  if (q->n_keyed > q->n_blocks) q->n_keyed = q->n_blocks;
}

void qiao_engine_seq_free(qiao_engine *e, int32_t seq) {
  qiao__seq *q = find_seq(e, seq);
  if (q == NULL) return;
  release_blocks(e, q, 0);
  q->live = false;
  q->length = q->clean = 0;
}

uint32_t qiao_engine_seq_length(const qiao_engine *e, int32_t seq) {
  const qiao__seq *q = find_seq(e, seq);
  return q ? q->length : 0;
}

qiao_status *qiao_engine_seq_truncate(qiao_engine *e, int32_t seq, uint32_t n) {
  qiao__seq *q = find_seq(e, seq);
  if (q == NULL) return qiao__error(QIAO_INVALID_ARGUMENT, "engine: no sequence %d", seq);
  if (n < q->length) q->length = n;
  if (q->clean > q->length) q->clean = q->length;
  /* A keyed block cut into stays held (and cached); writing into it copies it. */
  if (q->n_keyed > q->length / e->block_size) q->n_keyed = q->length / e->block_size;
  release_blocks(e, q, (q->length + e->block_size - 1) / e->block_size);
  return NULL;
}

/* Copies KV block `from` to `to` on this engine's own stages (K and V rows
 * of each of their layers), queued on their devices. */
static qiao_status *copy_block(qiao_engine *e, int32_t from, int32_t to) {
  const uint64_t bytes =
      (uint64_t)e->block_size * e->kv_dim * (e->cache_dtype == QIAO_DEV_F16 ? 2 : 4);
  for (uint32_t l = 0; l < e->hp.n_layers; l++) {
    const qiao__layer *L = &e->layers[l];
    qiao__stage *g = &e->stages[L->stage];
    if (g->external) continue; /* its engine repeats the copy (qiao_engine_pass.copies) */
    qiao_dev_ref caches[2] = {L->k_cache, L->v_cache};
    for (int c = 0; c < (e->mla ? 1 : 2); c++) { /* latent attention: one cache */
      qiao_dev_ref dst = {caches[c].buffer, caches[c].offset + (uint64_t)to * bytes};
      qiao_dev_ref src = {caches[c].buffer, caches[c].offset + (uint64_t)from * bytes};
      QIAO__DEV_TRY(g, g->ops->copy(g->ops_queue, dst, src, bytes), "copy on write of a KV block");
    }
  }
  return NULL;
}

/* Gives sequence q a private copy of its block bi, which is keyed or
 * shared, before the caller writes into it; external stages get the copy
 * with the call's first pass (e->ext_copies). */
static qiao_status *copy_on_write(qiao_engine *e, qiao__seq *q, uint32_t bi) {
  int32_t from = q->blocks[bi], to = take_block(e); /* `from` is held: never taken here */
  q->blocks[bi] = to;
  drop_ref(e, from); /* a keyed block stays cached; the copy below is queued before any reuse */
  if (q->n_keyed > bi) q->n_keyed = bi;
  bool any_external = false;
  for (uint32_t i = 0; i < e->n_stages; i++)
    any_external |= e->stages[i].external;
  if (any_external) {
    e->ext_copies[2 * e->n_ext_copies] = from;
    e->ext_copies[2 * e->n_ext_copies + 1] = to;
    e->n_ext_copies++;
  }
  return copy_block(e, from, to);
}

/* ---- Forward: checks, block allocation, passes of max_batch tokens -------- */

/* What one forward call does to one sequence. */
typedef struct call_seq {
  uint32_t new_len;
  bool touched;  /* the batch writes to it */
  bool in_order; /* its positions in the batch are lo, lo + 1, ..., last */
  uint32_t lo, last;
} call_seq;

/* The blocks the batch writes that the sequence must copy first (marked in
 * e->cow_mark); the marks are cleared by the caller. */
static uint64_t mark_copies(qiao_engine *e, const qiao_batch *b) {
  uint64_t n = 0;
  for (size_t t = 0; t < b->n_tokens; t++) {
    const qiao__seq *q = &e->seqs[b->seqs[t]];
    uint32_t bi = (uint32_t)b->positions[t] / e->block_size;
    if (bi >= q->n_blocks) continue; /* a new block: private */
    const qiao__block *k = &e->blocks[q->blocks[bi]];
    uint8_t *mark = &e->cow_mark[(size_t)b->seqs[t] * e->max_blocks_per_seq + bi];
    if ((k->keyed || k->refs > 1) && !*mark) {
      *mark = 1;
      n++;
    }
  }
  return n;
}

qiao_status *qiao_engine_forward(qiao_engine *e, const qiao_batch *b, float *out_logits,
                                 int32_t *out_argmax) {
  if (b == NULL || b->n_tokens == 0 || b->tokens == NULL || b->seqs == NULL || b->positions == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "engine forward: empty or incomplete batch");
  if (b->n_tokens > UINT32_MAX) return qiao__error(QIAO_LIMIT, "engine forward: too many tokens");
  if (e->device_lost)
    return qiao__error(QIAO_DEVICE, "DEVICE_LOST: engine: the device was lost; the engine is "
                                    "unusable");
  if (e->embed_stage < 0)
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "engine forward: the first stage is external, so this engine has no "
                       "embedding (use qiao_engine_forward_hidden)");
  const uint32_t n = (uint32_t)b->n_tokens;
  e->n_ext_copies = 0;

  /* Check every token and find each sequence's new length. */
  call_seq *cs = calloc(e->max_seqs, sizeof(*cs));
  if (cs == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  for (uint32_t s = 0; s < e->max_seqs; s++)
    cs[s].new_len = e->seqs[s].length;
  qiao_status *st = NULL;
  for (uint32_t t = 0; t < n && st == NULL; t++) {
    int32_t seq = b->seqs[t], pos = b->positions[t], tok = b->tokens[t];
    if (find_seq(e, seq) == NULL)
      st = qiao__error(QIAO_INVALID_ARGUMENT, "engine forward: token %u: no sequence %d", t, seq);
    else if (tok < 0 || (uint32_t)tok >= e->hp.vocab_size)
      st = qiao__error(QIAO_INVALID_ARGUMENT, "engine forward: token %u: id %d not in [0, %u)", t,
                       tok, e->hp.vocab_size);
    else if (pos < 0 || (uint32_t)pos >= e->max_context)
      st = qiao__error(QIAO_LIMIT, "engine forward: token %u: position %d not in [0, %u) (context)",
                       t, pos, e->max_context);
    else if ((uint32_t)pos > cs[seq].new_len)
      st = qiao__error(
          QIAO_INVALID_ARGUMENT,
          "engine forward: token %u: position %d leaves a gap in sequence %d (length %u)", t, pos,
          seq, cs[seq].new_len);
    if (st != NULL) break;
    call_seq *c = &cs[seq];
    if ((uint32_t)pos == c->new_len) c->new_len++;
    if (!c->touched) {
      c->touched = c->in_order = true;
      c->lo = (uint32_t)pos;
    } else {
      c->in_order = c->in_order && (uint32_t)pos == c->last + 1;
      if ((uint32_t)pos < c->lo) c->lo = (uint32_t)pos;
    }
    c->last = (uint32_t)pos;
  }
  /* Blocks to take: new ones, and private copies of keyed or shared blocks
   * the batch writes into; on shortage nothing changes. */
  uint64_t needed = 0;
  for (uint32_t s = 0; s < e->max_seqs && st == NULL; s++) {
    if (!e->seqs[s].live) continue;
    uint32_t want = (cs[s].new_len + e->block_size - 1) / e->block_size;
    if (want > e->seqs[s].n_blocks) needed += want - e->seqs[s].n_blocks;
  }
  uint64_t copies = st == NULL && e->prefix_cache ? mark_copies(e, b) : 0;
  if (st == NULL && needed + copies > (uint64_t)e->n_free + e->n_cached)
    st = qiao__error(QIAO_LIMIT,
                     "engine: the KV cache is full (%llu more blocks needed, %u free or "
                     "evictable of %u)",
                     (unsigned long long)(needed + copies), e->n_free + e->n_cached, e->n_blocks);
  bool writes = st == NULL; /* from here on, cache contents may change */
  if (copies > 0) {         /* copy (or just unmark, after a shortage) */
    for (uint32_t t = 0; t < n; t++) {
      qiao__seq *q = &e->seqs[b->seqs[t]];
      uint32_t bi = (uint32_t)b->positions[t] / e->block_size;
      uint8_t *mark = &e->cow_mark[(size_t)b->seqs[t] * e->max_blocks_per_seq + bi];
      if (bi >= q->n_blocks || !*mark) continue;
      *mark = 0;
      if (st == NULL) st = copy_on_write(e, q, bi);
    }
  }
  for (uint32_t s = 0; s < e->max_seqs && st == NULL; s++) {
    qiao__seq *q = &e->seqs[s];
    if (!q->live) continue;
    uint32_t want = (cs[s].new_len + e->block_size - 1) / e->block_size;
    while (q->n_blocks < want)
      q->blocks[q->n_blocks++] = take_block(e);
  }

  /* Passes of at most max_batch tokens, in batch order. */
  int32_t *local = NULL; /* seq id -> index in this pass */
  uint32_t *rows = NULL;
  if (st == NULL) {
    local = malloc(e->max_seqs * sizeof(int32_t));
    rows = malloc((size_t)e->max_batch * sizeof(uint32_t));
    if (local == NULL || rows == NULL)
      st = qiao__error(QIAO_OUT_OF_MEMORY, "engine: out of memory");
  }
  uint64_t out_row = 0;
  const uint64_t V = e->hp.vocab_size;
  for (uint32_t t0 = 0; t0 < n && st == NULL; t0 += e->max_batch) {
    uint32_t T = n - t0 < e->max_batch ? n - t0 : e->max_batch, n_local = 0, n_rows = 0;
    for (uint32_t s = 0; s < e->max_seqs; s++)
      local[s] = -1;
    for (uint32_t i = 0; i < T; i++) {
      uint32_t t = t0 + i;
      int32_t seq = b->seqs[t], pos = b->positions[t];
      const qiao__seq *q = &e->seqs[seq];
      if (local[seq] < 0) {
        local[seq] = (int32_t)n_local;
        int32_t *row = e->h_block_table + (size_t)n_local * e->max_blocks_per_seq;
        memset(row, 0, e->max_blocks_per_seq * sizeof(int32_t));
        memcpy(row, q->blocks, q->n_blocks * sizeof(int32_t));
        n_local++;
      }
      e->h_tokens[i] = b->tokens[t];
      e->h_positions[i] = pos;
      e->h_token_seq[i] = local[seq];
      e->h_slots[i] = q->blocks[(uint32_t)pos / e->block_size] * (int32_t)e->block_size +
                      (int32_t)((uint32_t)pos % e->block_size);
      bool want = b->want ? b->want[t] != 0 : t == n - 1;
      if (want) rows[n_rows++] = i;
    }
    st = qiao__forward(e, T, n_local, rows, n_rows, out_logits ? out_logits + out_row * V : NULL,
                       out_argmax ? out_argmax + out_row : NULL);
    out_row += n_rows;
    if (st == NULL) e->n_ext_copies = 0; /* the external stages made them */
  }
  if (st != NULL && e->n_ext_copies > 0) {
    /* An external stage may have missed a copy: its KV cache may no longer
     * match this one, and nothing can tell which blocks differ. */
    e->device_lost = true;
    e->n_ext_copies = 0;
    st = qiao__annotate(st, "DEVICE_LOST: a pass with KV block copies for external stages failed");
  }
  if (st != NULL) {
    if (writes) /* let queued work finish before the caller's buffers go away */
      for (uint32_t i = 0; i < e->n_stages; i++)
        if (!e->stages[i].external)
          e->stages[i].api->error_destroy(e->stages[i].api->queue_synchronize(e->stages[i].queue));
    /* The written positions (and blocks copied for them) may hold anything:
     * nothing from their block on counts as written in order. */
    for (uint32_t s = 0; s < e->max_seqs && writes; s++) {
      qiao__seq *q = &e->seqs[s];
      uint32_t from = cs[s].lo / e->block_size * e->block_size;
      if (cs[s].touched && q->clean > from) q->clean = from;
      if (q->n_keyed > q->clean / e->block_size) q->n_keyed = q->clean / e->block_size;
    }
  } else {
    for (uint32_t s = 0; s < e->max_seqs; s++)
      if (e->seqs[s].live) e->seqs[s].length = cs[s].new_len;
    if (e->prefix_cache) {
      for (uint32_t t = 0; t < n; t++)
        e->seqs[b->seqs[t]].tokens[b->positions[t]] = b->tokens[t];
      for (uint32_t s = 0; s < e->max_seqs; s++) {
        qiao__seq *q = &e->seqs[s];
        const call_seq *c = &cs[s];
        if (!c->touched) continue;
        if (!c->in_order) {
          if (q->clean > c->lo) q->clean = c->lo;
        } else if (c->lo <= q->clean) { /* continues (or rewrites) the in-order prefix */
          q->clean = c->last + 1;
        }
        key_blocks(e, q);
      }
    }
  }
  free(local);
  free(rows);
  free(cs);
  return st;
}

qiao_status *qiao_engine_forward_hidden(qiao_engine *e, const qiao_engine_pass *p, float *x) {
  /* A caller of 0.3 knows the fields up to block_table. */
  const size_t size_0_3 = offsetof(qiao_engine_pass, block_table) + sizeof(p->block_table);
  if (e == NULL || p == NULL || x == NULL || p->struct_size < size_0_3 || p->positions == NULL ||
      p->slots == NULL || p->token_seq == NULL || p->block_table == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "engine forward_hidden: NULL or short argument");
  if (e->device_lost)
    return qiao__error(QIAO_DEVICE, "DEVICE_LOST: engine: the device was lost; the engine is "
                                    "unusable");
  /* The caller is another engine, possibly on another machine: every index
   * is checked before it reaches a device. */
  if (p->n_tokens == 0 || p->n_tokens > e->max_batch || p->n_seqs == 0 || p->n_seqs > e->max_seqs ||
      p->max_blocks_per_seq != e->max_blocks_per_seq)
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "engine forward_hidden: %u tokens of %u sequences, %u blocks per sequence "
                       "(this engine: at most %u tokens, %u sequences, %u blocks per sequence)",
                       p->n_tokens, p->n_seqs, p->max_blocks_per_seq, e->max_batch, e->max_seqs,
                       e->max_blocks_per_seq);
  for (uint32_t t = 0; t < p->n_tokens; t++)
    if (p->positions[t] < 0 || (uint32_t)p->positions[t] >= e->max_context || p->slots[t] < 0 ||
        (uint64_t)p->slots[t] >= e->n_slots || p->token_seq[t] < 0 ||
        (uint32_t)p->token_seq[t] >= p->n_seqs)
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "engine forward_hidden: token %u: position %d, slot %d or sequence %d out "
                         "of range",
                         t, p->positions[t], p->slots[t], p->token_seq[t]);
  const uint64_t table = (uint64_t)p->n_seqs * e->max_blocks_per_seq;
  for (uint64_t i = 0; i < table; i++)
    if (p->block_table[i] < 0 || (uint32_t)p->block_table[i] >= e->n_blocks)
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "engine forward_hidden: block table entry %llu: block %d not in [0, %u)",
                         (unsigned long long)i, p->block_table[i], e->n_blocks);
  const bool has_copies = p->struct_size >= sizeof(*p) && p->n_copies > 0;
  if (has_copies && (p->copies == NULL || p->n_copies > e->n_blocks))
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "engine forward_hidden: %u block copies (at most %u, with the list)",
                       p->n_copies, e->n_blocks);
  for (uint32_t i = 0; has_copies && i < 2 * p->n_copies; i++)
    if (p->copies[i] < 0 || (uint32_t)p->copies[i] >= e->n_blocks)
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "engine forward_hidden: block copy %u: block %d not in [0, %u)", i / 2,
                         p->copies[i], e->n_blocks);
  /* The copies on write of the engine that sent the pass, first (in order:
   * a block may be copied from after an earlier copy wrote it). */
  qiao_status *st = NULL;
  for (uint32_t i = 0; has_copies && i < p->n_copies && st == NULL; i++)
    st = copy_block(e, p->copies[2 * i], p->copies[2 * i + 1]);
  memcpy(e->h_positions, p->positions, (size_t)p->n_tokens * 4);
  memcpy(e->h_slots, p->slots, (size_t)p->n_tokens * 4);
  memcpy(e->h_token_seq, p->token_seq, (size_t)p->n_tokens * 4);
  memcpy(e->h_block_table, p->block_table, (size_t)table * 4);
  if (st == NULL) st = qiao__forward_hidden(e, p, x);
  if (st != NULL) /* let queued work finish before the caller's x goes away */
    for (uint32_t i = 0; i < e->n_stages; i++)
      if (!e->stages[i].external)
        e->stages[i].api->error_destroy(e->stages[i].api->queue_synchronize(e->stages[i].queue));
  return st;
}
