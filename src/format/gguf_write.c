/* GGUF v3 writer: canonical keys are written under the names llama.cpp
 * reads (gguf_keys.c); keys without a GGUF name keep their canonical name
 * (llama.cpp ignores them, qiao reads them back). Shapes are written
 * innermost first, data aligned to 32 bytes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf_keys.h"
#include "format/model_write.h"

#define GGUF_ALIGNMENT 32u

static const qiao__gguf_key *from_canonical(const char *key) {
  for (const qiao__gguf_key *k = qiao__gguf_keys; k->gguf; k++)
    if (strcmp(k->canonical, key) == 0) return k;
  return NULL;
}

static uint32_t ggml_type(qiao_dtype dtype) {
  switch (dtype) {
  case QIAO_DTYPE_F32: return QIAO__GGML_F32;
  case QIAO_DTYPE_F16: return QIAO__GGML_F16;
  case QIAO_DTYPE_BF16: return QIAO__GGML_BF16;
  case QIAO_DTYPE_Q8_0: return QIAO__GGML_Q8_0;
  case QIAO_DTYPE_Q4_0: return QIAO__GGML_Q4_0;
  case QIAO_DTYPE_Q4_K: return QIAO__GGML_Q4_K;
  case QIAO_DTYPE_Q5_K: return QIAO__GGML_Q5_K;
  case QIAO_DTYPE_Q6_K: return QIAO__GGML_Q6_K;
  case QIAO_DTYPE_Q2_K: return QIAO__GGML_Q2_K;
  case QIAO_DTYPE_Q3_K: return QIAO__GGML_Q3_K;
  case QIAO_DTYPE_Q4_1: return QIAO__GGML_Q4_1;
  case QIAO_DTYPE_Q5_0: return QIAO__GGML_Q5_0;
  case QIAO_DTYPE_Q5_1: return QIAO__GGML_Q5_1;
  case QIAO_DTYPE_IQ4_NL: return QIAO__GGML_IQ4_NL;
  case QIAO_DTYPE_IQ4_XS: return QIAO__GGML_IQ4_XS;
  default: return QIAO__GGML_I32;
  }
}

typedef struct meta_writer {
  qiao__writer *w;
  uint64_t n_kv;
  bool llama3_rope; /* model.rope.scaling.type is "llama3" */
} meta_writer;

static void put_kv(meta_writer *m, const char *key, const qiao_kv *value) {
  qiao__w_string(m->w, key, strlen(key));
  qiao__w_kv_value(m->w, value);
  m->n_kv++;
}

static void put_u32(meta_writer *m, const char *key, uint32_t v) {
  qiao_kv kv = {.type = QIAO_VALUE_U32, .v.u = v};
  put_kv(m, key, &kv);
}

static void put_str(meta_writer *m, const char *key, const char *s, uint64_t len) {
  qiao_kv kv = {.type = QIAO_VALUE_STRING, .v.str = {s, len}};
  put_kv(m, key, &kv);
}

/* tokenizer.eos_ids -> eos, eot and eom ids (the first three); the full
 * list is also kept under its canonical name when longer. */
static void put_eos(meta_writer *m, const qiao_kv *kv) {
  if (kv->type != QIAO_VALUE_ARRAY || kv->elem_type != QIAO_VALUE_U32) {
    put_kv(m, kv->key, kv);
    return;
  }
  static const char *const names[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                      "tokenizer.ggml.eom_token_id"};
  const uint32_t *ids = kv->v.array;
  for (uint64_t i = 0; i < kv->array_len && i < 3; i++)
    put_u32(m, names[i], ids[i]);
  if (kv->array_len > 3) put_kv(m, kv->key, kv);
}

static void put_translated(meta_writer *m, const char *arch, const qiao_kv *kv) {
  const qiao__gguf_key *map = from_canonical(kv->key);
  /* llama.cpp knows no "llama3" scaling type (it refuses the file) and would
   * take the factor as linear scaling: keep these under qiao's names; the
   * scaling reaches llama.cpp through the rope_freqs.weight tensor. */
  if (m->llama3_rope && strncmp(kv->key, "model.rope.scaling.", 19) == 0) map = NULL;
  if (map == NULL || (map->per_arch && arch == NULL)) {
    put_kv(m, kv->key, kv);
    return;
  }
  char key[512];
  if (map->per_arch)
    snprintf(key, sizeof(key), "%s.%s", arch, map->gguf);
  else
    snprintf(key, sizeof(key), "%s", map->gguf);
  qiao_kv v = *kv;
  switch (map->conv) {
  case QIAO__CONV_EOS_ID: put_eos(m, kv); return;
  case QIAO__CONV_TOK_MODEL:
    if (kv->type == QIAO_VALUE_STRING) {
      if (kv->v.str.len == 3 && memcmp(kv->v.str.data, "spm", 3) == 0)
        v.v.str = (qiao_string){"llama", 5};
      if (kv->v.str.len == 3 && memcmp(kv->v.str.data, "bpe", 3) == 0)
        v.v.str = (qiao_string){"gpt2", 4};
    }
    break;
  case QIAO__CONV_TOK_PRE:
    if (kv->type == QIAO_VALUE_STRING) {
      const char *pre = qiao__gguf_pre_from_canonical(kv->v.str.data, kv->v.str.len);
      if (pre) v.v.str = (qiao_string){pre, strlen(pre)};
    }
    break;
  case QIAO__CONV_U32:
  case QIAO__CONV_TOKEN_ID:
    /* llama.cpp reads these as u32 */
    if (qiao__kv_is_signed(kv->type) && kv->v.i >= 0 && kv->v.i <= (int64_t)UINT32_MAX) {
      v.type = QIAO_VALUE_U32;
      v.v.u = (uint64_t)kv->v.i;
    } else if (qiao__kv_is_unsigned(kv->type) && kv->v.u <= UINT32_MAX) {
      v.type = QIAO_VALUE_U32;
    }
    break;
  case QIAO__CONV_F32:
    if (kv->type == QIAO_VALUE_F64) v.type = QIAO_VALUE_F32;
    break;
  default: break;
  }
  put_kv(m, key, &v);
  /* llama.cpp takes the value width as dim / n_heads unless told */
  if (strcmp(kv->key, "model.head_dim") == 0) {
    snprintf(key, sizeof(key), "%s.attention.value_length", arch);
    put_kv(m, key, &v);
  }
}

/* A value_length kept from an earlier GGUF is rewritten from model.head_dim. */
static bool written_from_head_dim(const qiao_model *model, const char *arch, const char *key) {
  if (arch == NULL || qiao_model_kv_find(model, "model.head_dim") == NULL) return false;
  size_t n = strlen(arch);
  return strncmp(key, arch, n) == 0 && strcmp(key + n, ".attention.value_length") == 0;
}

/* deepseek2: keys written by put_deepseek2 rather than one by one. */
static bool deepseek2_special(const char *arch, const char *key) {
  return arch != NULL && strcmp(arch, "deepseek2") == 0 &&
         (strcmp(key, "model.head_dim") == 0 || strcmp(key, "model.mla.v_head_dim") == 0 ||
          strcmp(key, "model.n_kv_heads") == 0 || strcmp(key, "model.moe.gating") == 0);
}

/* The widths of a deepseek2 file in the form of its tensors (gguf_keys.h):
 * with attn_k_b/attn_v_b the latent is one shared head (key_length L + R,
 * value_length L, one KV head) and the per-head widths go to the _mla keys;
 * with attn_kv_b the per-head widths are key_length and value_length. */
static void put_deepseek2(meta_writer *m, const qiao_model *model) {
  uint32_t hd = 0, v = 0, kvh = 0, lora = 0, rot = 0;
  qiao_status_free(qiao_model_get_u32(model, "model.head_dim", &hd));
  qiao_status_free(qiao_model_get_u32(model, "model.mla.v_head_dim", &v));
  qiao_status_free(qiao_model_get_u32(model, "model.mla.kv_lora_rank", &lora));
  qiao_status_free(qiao_model_get_u32(model, "model.rope.dim", &rot));
  qiao_status *st = qiao_model_get_u32(model, "model.n_kv_heads", &kvh);
  if (st != NULL) qiao_status_free(qiao_model_get_u32(model, "model.n_heads", &kvh));
  qiao_status_free(st);
  if (qiao_model_tensor_find(model, "blk.0.attn_k_b.weight") != NULL) {
    put_u32(m, "deepseek2.attention.key_length", lora + rot);
    put_u32(m, "deepseek2.attention.value_length", lora);
    put_u32(m, "deepseek2.attention.key_length_mla", hd);
    put_u32(m, "deepseek2.attention.value_length_mla", v);
    put_u32(m, "deepseek2.attention.head_count_kv", 1);
  } else {
    put_u32(m, "deepseek2.attention.key_length", hd);
    put_u32(m, "deepseek2.attention.value_length", v);
    put_u32(m, "deepseek2.attention.head_count_kv", kvh);
  }
  qiao_string gating = {"softmax", 7};
  qiao_status_free(qiao_model_get_string(model, "model.moe.gating", &gating));
  put_u32(m, "deepseek2.expert_gating_func",
          gating.len == 7 && memcmp(gating.data, "sigmoid", 7) == 0 ? 2u : 1u);
}

static void build_meta(const qiao_model *model, qiao__tensor_plan *plans, uint64_t n,
                       qiao__writer *w) {
  const qiao_kv *scaling = qiao_model_kv_find(model, "model.rope.scaling.type");
  meta_writer m = {w, 0,
                   scaling && scaling->type == QIAO_VALUE_STRING && scaling->v.str.len == 6 &&
                       memcmp(scaling->v.str.data, "llama3", 6) == 0};
  qiao__w_bytes(w, "GGUF", 4);
  qiao__w_u32(w, 3);
  qiao__w_u64(w, n);
  qiao__w_u64(w, 0); /* n_kv, patched below */
  char arch_buf[64];
  const char *arch = NULL;
  const qiao_kv *a = qiao_model_kv_find(model, "general.architecture");
  if (a && a->type == QIAO_VALUE_STRING && a->v.str.len < sizeof(arch_buf) &&
      memchr(a->v.str.data, 0, a->v.str.len) == NULL) {
    memcpy(arch_buf, a->v.str.data, a->v.str.len);
    arch_buf[a->v.str.len] = '\0';
    arch = arch_buf;
    put_kv(&m, "general.architecture", a);
  }
  put_u32(&m, "general.alignment", GGUF_ALIGNMENT);
  for (uint64_t i = 0; i < qiao_model_kv_count(model); i++) {
    const qiao_kv *kv = qiao_model_kv_at(model, i);
    if (strcmp(kv->key, "general.architecture") == 0 || strcmp(kv->key, "general.alignment") == 0 ||
        written_from_head_dim(model, arch, kv->key) || deepseek2_special(arch, kv->key))
      continue;
    put_translated(&m, arch, kv);
  }
  if (arch != NULL && strcmp(arch, "deepseek2") == 0) put_deepseek2(&m, model);
  if (qiao_model_kv_find(model, "general.source_format") == NULL) {
    const char *fmt = qiao_model_format(model);
    put_str(&m, "general.source_format", fmt, strlen(fmt));
  }
  uint64_t offset = 0;
  for (uint64_t i = 0; i < n; i++) {
    const qiao_tensor *t = plans[i].src;
    plans[i].offset = (offset + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT;
    offset = plans[i].offset + plans[i].n_bytes;
    qiao__w_string(w, t->name, strlen(t->name));
    qiao__w_u32(w, t->n_dims);
    for (uint32_t d = t->n_dims; d-- > 0;)
      qiao__w_u64(w, t->shape[d]); /* innermost first */
    qiao__w_u32(w, ggml_type(plans[i].dtype));
    qiao__w_u64(w, plans[i].offset);
  }
  if (w->error == NULL)
    for (int i = 0; i < 8; i++)
      w->buf[16 + i] = (uint8_t)(m.n_kv >> (8 * i));
}

/* LLaMA-3 RoPE scaling as llama.cpp expects it: a rope_freqs.weight tensor
 * of per-frequency divisors (rope_dim / 2 f32), computed from the scaling
 * keys as Meta's reference does. NULL when the model needs none. */
static qiao_status *llama3_rope_freqs(const qiao_model *model, qiao_tensor *t, float **out) {
  *out = NULL;
  qiao_hparams h;
  qiao_status *st = qiao_model_get_hparams(model, &h);
  if (st != NULL || h.rope_scaling != QIAO_ROPE_SCALING_LLAMA3 ||
      qiao_model_tensor_find(model, "rope_freqs.weight") != NULL || h.rope_dim < 2) {
    qiao_status_free(st);
    return NULL;
  }
  uint32_t n = h.rope_dim / 2;
  float *f = malloc(n * sizeof(float));
  if (f == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  double low_wavelen = h.rope_original_context / (double)h.rope_low_freq_factor;
  double high_wavelen = h.rope_original_context / (double)h.rope_high_freq_factor;
  for (uint32_t i = 0; i < n; i++) {
    double freq = pow((double)h.rope_theta, -(2.0 * i) / h.rope_dim);
    double wavelen = 2 * M_PI / freq;
    if (wavelen < high_wavelen)
      f[i] = 1.0f;
    else if (wavelen > low_wavelen)
      f[i] = h.rope_factor;
    else {
      double smooth = (h.rope_original_context / wavelen - h.rope_low_freq_factor) /
                      (h.rope_high_freq_factor - h.rope_low_freq_factor);
      f[i] = (float)(1.0 / ((1 - smooth) / h.rope_factor + smooth));
    }
  }
  *t = (qiao_tensor){.name = "rope_freqs.weight",
                     .dtype = QIAO_DTYPE_F32,
                     .n_dims = 1,
                     .shape = {n},
                     .n_bytes = (uint64_t)n * 4,
                     .data = f};
  *out = f;
  return NULL;
}

qiao_status *qiao__write_gguf(const qiao_model *model, qiao__tensor_plan *given, uint64_t n,
                              qiao__writer *file, bool progress) {
  qiao_tensor freqs_tensor;
  float *freqs;
  QIAO__TRY(llama3_rope_freqs(model, &freqs_tensor, &freqs));
  qiao__tensor_plan *plans = given;
  if (freqs) { /* the given plans plus rope_freqs.weight at the end */
    plans = malloc((size_t)(n + 1) * sizeof(*plans));
    if (plans == NULL) {
      free(freqs);
      return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
    }
    memcpy(plans, given, (size_t)n * sizeof(*plans));
    plans[n++] = (qiao__tensor_plan){
        .src = &freqs_tensor, .dtype = QIAO_DTYPE_F32, .n_bytes = freqs_tensor.n_bytes};
  }
  qiao__writer meta = {.path = file->path};
  build_meta(model, plans, n, &meta);
  qiao_status *st = meta.error;
  meta.error = NULL;
  if (st == NULL) {
    uint64_t data_start = (meta.pos + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT;
    qiao__w_bytes(file, meta.buf, meta.pos);
    st = qiao__write_tensors(model, file, plans, n, data_start, progress);
  }
  qiao__w_release(&meta);
  if (plans != given) free(plans);
  free(freqs);
  return st;
}
