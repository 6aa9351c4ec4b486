/* GGUF v3 writer: canonical keys are written under the names llama.cpp
 * reads (gguf_keys.c); keys without a GGUF name keep their canonical name
 * (llama.cpp ignores them, qiao reads them back). Shapes are written
 * innermost first, data aligned to 32 bytes. */
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
  default: return QIAO__GGML_I32;
  }
}

typedef struct meta_writer {
  qiao__writer *w;
  uint64_t n_kv;
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
  for (uint64_t i = 0; i < kv->array_len && i < 3; i++) put_u32(m, names[i], ids[i]);
  if (kv->array_len > 3) put_kv(m, kv->key, kv);
}

static void put_translated(meta_writer *m, const char *arch, const qiao_kv *kv) {
  const qiao__gguf_key *map = from_canonical(kv->key);
  if (map == NULL || (map->per_arch && arch == NULL)) {
    put_kv(m, kv->key, kv);
    return;
  }
  char key[512];
  if (map->per_arch) snprintf(key, sizeof(key), "%s.%s", arch, map->gguf);
  else snprintf(key, sizeof(key), "%s", map->gguf);
  qiao_kv v = *kv;
  switch (map->conv) {
  case QIAO__CONV_EOS_ID: put_eos(m, kv); return;
  case QIAO__CONV_TOK_MODEL:
    if (kv->type == QIAO_VALUE_STRING) {
      if (kv->v.str.len == 3 && memcmp(kv->v.str.data, "spm", 3) == 0) v.v.str = (qiao_string){"llama", 5};
      if (kv->v.str.len == 3 && memcmp(kv->v.str.data, "bpe", 3) == 0) v.v.str = (qiao_string){"gpt2", 4};
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
}

static void build_meta(const qiao_model *model, qiao__tensor_plan *plans, uint64_t n,
                       qiao__writer *w) {
  meta_writer m = {w, 0};
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
    if (strcmp(kv->key, "general.architecture") == 0 || strcmp(kv->key, "general.alignment") == 0)
      continue;
    put_translated(&m, arch, kv);
  }
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
    for (uint32_t d = t->n_dims; d-- > 0;) qiao__w_u64(w, t->shape[d]); /* innermost first */
    qiao__w_u32(w, ggml_type(plans[i].dtype));
    qiao__w_u64(w, plans[i].offset);
  }
  if (w->error == NULL)
    for (int i = 0; i < 8; i++) w->buf[16 + i] = (uint8_t)(m.n_kv >> (8 * i));
}

qiao_status *qiao__write_gguf(const qiao_model *model, qiao__tensor_plan *plans, uint64_t n,
                              qiao__writer *file, bool progress) {
  qiao__writer meta = {.path = file->path};
  build_meta(model, plans, n, &meta);
  qiao_status *st = meta.error;
  meta.error = NULL;
  if (st == NULL) {
    uint64_t data_start = (meta.pos + GGUF_ALIGNMENT - 1) / GGUF_ALIGNMENT * GGUF_ALIGNMENT;
    qiao__w_bytes(file, meta.buf, meta.pos);
    st = qiao__write_tensors(file, plans, n, data_start, progress);
  }
  qiao__w_release(&meta);
  return st;
}
