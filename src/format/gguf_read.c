/* GGUF v2/v3 reader: every count, length and offset is checked against the
 * bytes actually present before it is used. Metadata is translated to the
 * canonical keys (gguf_keys.c); keys without a canonical name are kept as
 * they are. Tensor data stays in the caller's bytes (zero-copy).
 *
 * Layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 * n_kv x (string key, u32 type, value), n_tensors x (string name, u32 n_dims,
 * n_dims x u64 dim (innermost first), u32 type, u64 offset), padding to
 * general.alignment, tensor data. A string is u64 length + bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "format/byte_reader.h"
#include "format/gguf_keys.h"
#include "format/kv_codec.h"
#include "format/model_internal.h"

#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_ALIGNMENT (1u << 20)

/* ---- Translation to canonical keys ---------------------------------------- */

/* Collected eos/eot/eom ids, kept in that preference order. */
typedef struct eos_list {
  uint32_t ids[3];
  int rank[3];
  int n;
} eos_list;

static int eos_rank(const char *key) {
  if (strcmp(key, "tokenizer.ggml.eos_token_id") == 0) return 0;
  if (strcmp(key, "tokenizer.ggml.eot_token_id") == 0) return 1;
  return 2;
}

/* A deepseek2 key whose meaning depends on the file's form (gguf_keys.h). */
static qiao_status *convert_deepseek2(qiao_model *m, const char *name, const char *canonical,
                                      const qiao__raw_kv *kv) {
  const qiao_kv *v = &kv->v;
  if (canonical[0] == '\0') return NULL; /* derived: written again from the canonical keys */
  if (v->type != QIAO_VALUE_U32) return qiao__raw_wrong_type(name, kv, "a u32");
  if (strcmp(canonical, "model.moe.gating") != 0)
    return qiao__model_set_u32(m, canonical, (uint32_t)v->v.u);
  if (v->v.u > 2) /* llama.cpp's 3 and 4 are gating functions qiao does not implement */
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: metadata key %s: gating function %llu is not supported "
                       "(1 softmax, 2 sigmoid)",
                       name, kv->key, (unsigned long long)v->v.u);
  return v->v.u == 2 ? qiao__model_set_string(m, canonical, "sigmoid", 7)
                     : qiao__model_set_string(m, canonical, "softmax", 7);
}

static qiao_status *convert_kv(qiao_model *m, const char *name, const char *arch,
                               const qiao__raw_kv *kv, eos_list *eos, bool mla_form) {
  const char *special = qiao__gguf_deepseek2_key(arch, kv->key, mla_form);
  if (special != NULL) return convert_deepseek2(m, name, special, kv);
  const qiao__gguf_key *map = qiao__gguf_key_from_gguf(arch, kv->key);
  if (map == NULL) return qiao__raw_kv_store(m, kv->key, kv, name); /* kept under its own name */
  const qiao_kv *v = &kv->v;
  switch (map->conv) {
  case QIAO__CONV_U32:
  case QIAO__CONV_TOKEN_ID:
  case QIAO__CONV_EOS_ID: {
    /* llama.cpp reads these as u32 and refuses any other type */
    if (v->type != QIAO_VALUE_U32) return qiao__raw_wrong_type(name, kv, "a u32");
    int64_t x =
        qiao__kv_is_unsigned(v->type) ? (int64_t)(v->v.u > INT64_MAX ? INT64_MAX : v->v.u) : v->v.i;
    bool none = x == -1 || (v->type == QIAO_VALUE_U32 && x == 0xffffffff);
    if (map->conv != QIAO__CONV_U32 && none) return NULL; /* "no such token" */
    if (x < 0 || x > (int64_t)UINT32_MAX)
      return qiao__error(QIAO_MALFORMED,
                         "%s: metadata key %s: value out of range at byte offset %llu", name,
                         kv->key, (unsigned long long)kv->offset);
    if (map->conv == QIAO__CONV_EOS_ID) {
      int rank = eos_rank(kv->key);
      for (int i = 0; i < eos->n; i++)
        if (eos->rank[i] == rank)
          return qiao__error(QIAO_MALFORMED, "%s: metadata key %s: duplicate at byte offset %llu",
                             name, kv->key, (unsigned long long)kv->offset);
      eos->ids[eos->n] = (uint32_t)x;
      eos->rank[eos->n++] = rank;
      return NULL;
    }
    return qiao__model_set_u32(m, map->canonical, (uint32_t)x);
  }
  case QIAO__CONV_F32: /* as llama.cpp: an f32 and nothing else */
    if (v->type != QIAO_VALUE_F32) return qiao__raw_wrong_type(name, kv, "an f32");
    return qiao__model_set_f32(m, map->canonical, (float)v->v.f);
  case QIAO__CONV_BOOL:
    if (v->type != QIAO_VALUE_BOOL) return qiao__raw_wrong_type(name, kv, "a bool");
    return qiao__model_set_bool(m, map->canonical, v->v.b);
  case QIAO__CONV_STRING:
    if (v->type != QIAO_VALUE_STRING) return qiao__raw_wrong_type(name, kv, "a string");
    return qiao__model_set_string(m, map->canonical, v->v.str.data, v->v.str.len);
  case QIAO__CONV_TOK_MODEL: {
    if (v->type != QIAO_VALUE_STRING) return qiao__raw_wrong_type(name, kv, "a string");
    const char *model = NULL;
    if (v->v.str.len == 5 && memcmp(v->v.str.data, "llama", 5) == 0)
      model = "spm";
    else if (v->v.str.len == 4 && memcmp(v->v.str.data, "gpt2", 4) == 0)
      model = "bpe";
    if (model) return qiao__model_set_string(m, map->canonical, model, strlen(model));
    /* "none", or a tokenizer qiao does not implement (the tokenizer says so) */
    return qiao__model_set_string(m, map->canonical, v->v.str.data, v->v.str.len);
  }
  case QIAO__CONV_STR_ARRAY:
    if (v->type != QIAO_VALUE_ARRAY || v->elem_type != QIAO_VALUE_STRING)
      return qiao__raw_wrong_type(name, kv, "an array of string");
    return qiao__raw_kv_store(m, map->canonical, kv, name);
  case QIAO__CONV_F32_ARRAY:
    if (v->type != QIAO_VALUE_ARRAY || v->elem_type != QIAO_VALUE_F32)
      return qiao__raw_wrong_type(name, kv, "an array of f32");
    return qiao__raw_kv_store(m, map->canonical, kv, name);
  case QIAO__CONV_TOK_PRE: {
    if (v->type != QIAO_VALUE_STRING) return qiao__raw_wrong_type(name, kv, "a string");
    const char *pre = qiao__gguf_pre_to_canonical(v->v.str.data, v->v.str.len);
    if (pre) return qiao__model_set_string(m, map->canonical, pre, strlen(pre));
    return qiao__model_set_string(m, map->canonical, v->v.str.data, v->v.str.len);
  }
  case QIAO__CONV_I32_ARRAY: {
    /* llama.cpp reads the elements as i32 whatever the stored type */
    if (v->type != QIAO_VALUE_ARRAY || v->elem_type != QIAO_VALUE_I32)
      return qiao__raw_wrong_type(name, kv, "an array of i32");
    int32_t *a = malloc(v->array_len ? (size_t)v->array_len * sizeof(int32_t) : 1);
    if (a == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
    for (uint64_t i = 0; i < v->array_len; i++) {
      int64_t x = qiao__raw_int_elem(v, i);
      if (x < INT32_MIN || x > INT32_MAX) {
        free(a);
        return qiao__error(QIAO_MALFORMED, "%s: metadata key %s: element %llu out of range", name,
                           kv->key, (unsigned long long)i);
      }
      a[i] = (int32_t)x;
    }
    qiao_status *st = qiao__model_set_array(m, map->canonical, QIAO_VALUE_I32, v->array_len, a);
    free(a);
    return st;
  }
  }
  return qiao__error(QIAO_INTERNAL, "gguf key conversion %d", (int)map->conv);
}

/* A file that spells out tokenizer.eos_ids (qiao writes it when there are
 * more than three) keeps that list. */
static qiao_status *store_eos(qiao_model *m, eos_list *eos) {
  if (eos->n == 0 || qiao_model_kv_find(m, "tokenizer.eos_ids") != NULL) return NULL;
  uint32_t ids[3];
  int n = 0;
  for (int rank = 0; rank < 3; rank++)
    for (int i = 0; i < eos->n; i++) {
      if (eos->rank[i] != rank) continue;
      bool dup = false;
      for (int j = 0; j < n; j++)
        dup |= ids[j] == eos->ids[i];
      if (!dup) ids[n++] = eos->ids[i];
    }
  return qiao__model_set_array(m, "tokenizer.eos_ids", QIAO_VALUE_U32, (uint64_t)n, ids);
}

/* ---- Tensors --------------------------------------------------------------- */

typedef struct gguf_tensor {
  qiao_string name; /* in the file; checked free of NUL bytes */
  uint64_t info_offset;
  qiao_dtype dtype;
  uint32_t n_dims;
  uint64_t shape[QIAO_MAX_DIMS]; /* outermost first */
  uint64_t offset;               /* relative to the data section */
  uint64_t n_bytes;
} gguf_tensor;

static void c_name(const gguf_tensor *t, char *buf) {
  memcpy(buf, t->name.data, (size_t)t->name.len);
  buf[t->name.len] = '\0';
}

static qiao_status *map_type(const reader *r, const char *tensor, uint32_t type, qiao_dtype *out) {
  switch (type) {
  case QIAO__GGML_F32: *out = QIAO_DTYPE_F32; return NULL;
  case QIAO__GGML_F16: *out = QIAO_DTYPE_F16; return NULL;
  case QIAO__GGML_BF16: *out = QIAO_DTYPE_BF16; return NULL;
  case QIAO__GGML_Q8_0: *out = QIAO_DTYPE_Q8_0; return NULL;
  case QIAO__GGML_Q4_0: *out = QIAO_DTYPE_Q4_0; return NULL;
  case QIAO__GGML_I32: *out = QIAO_DTYPE_I32; return NULL;
  case QIAO__GGML_Q4_K: *out = QIAO_DTYPE_Q4_K; return NULL;
  case QIAO__GGML_Q5_K: *out = QIAO_DTYPE_Q5_K; return NULL;
  case QIAO__GGML_Q6_K: *out = QIAO_DTYPE_Q6_K; return NULL;
  case QIAO__GGML_Q2_K: *out = QIAO_DTYPE_Q2_K; return NULL;
  case QIAO__GGML_Q3_K: *out = QIAO_DTYPE_Q3_K; return NULL;
  case QIAO__GGML_Q4_1: *out = QIAO_DTYPE_Q4_1; return NULL;
  case QIAO__GGML_Q5_0: *out = QIAO_DTYPE_Q5_0; return NULL;
  case QIAO__GGML_Q5_1: *out = QIAO_DTYPE_Q5_1; return NULL;
  case QIAO__GGML_IQ4_NL: *out = QIAO_DTYPE_IQ4_NL; return NULL;
  case QIAO__GGML_IQ4_XS: *out = QIAO_DTYPE_IQ4_XS; return NULL;
  }
  const char *type_name = qiao__ggml_type_name(type);
  if (type_name)
    return qiao__error(QIAO_UNSUPPORTED, "%s: tensor %s: unsupported tensor type %s (%s)", r->name,
                       tensor, type_name, tensor);
  return qiao__error(QIAO_UNSUPPORTED, "%s: tensor %s: unsupported tensor type %u (%s)", r->name,
                     tensor, type, tensor);
}

static qiao_status *read_tensor_info(reader *r, gguf_tensor *t) {
  t->info_offset = r->pos;
  qiao_string name;
  QIAO__TRY(read_string(r, "tensor name", &name));
  if (name.len == 0 || name.len > QIAO__MAX_TENSOR_NAME_LEN || memchr(name.data, 0, name.len))
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor name: empty, longer than %u bytes or with a NUL byte at byte "
                       "offset %llu",
                       r->name, QIAO__MAX_TENSOR_NAME_LEN, (unsigned long long)t->info_offset);
  t->name = name;
  char tname[QIAO__MAX_TENSOR_NAME_LEN + 1];
  c_name(t, tname);
  QIAO__TRY(read_u32(r, tname, &t->n_dims));
  if (t->n_dims < 1 || t->n_dims > QIAO_MAX_DIMS)
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor %s: %u dimensions (expected 1 to %d) at byte offset %llu",
                       r->name, tname, t->n_dims, QIAO_MAX_DIMS, (unsigned long long)(r->pos - 4));
  for (uint32_t d = 0; d < t->n_dims; d++) /* GGUF lists the innermost first */
    QIAO__TRY(read_u64(r, tname, &t->shape[t->n_dims - 1 - d]));
  uint32_t type;
  QIAO__TRY(read_u32(r, tname, &type));
  QIAO__TRY(map_type(r, tname, type, &t->dtype));
  QIAO__TRY(read_u64(r, tname, &t->offset));
  qiao_status *st = qiao__tensor_bytes(t->dtype, t->n_dims, t->shape, &t->n_bytes);
  if (st)
    return qiao__annotate(st, "%s: tensor %s (info at byte offset %llu)", r->name, tname,
                          (unsigned long long)t->info_offset);
  return NULL;
}

static int by_offset(const void *a, const void *b) {
  const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Data offsets: aligned, inside the file, no two tensors overlapping. */
static qiao_status *check_placement(const reader *r, gguf_tensor *ts, uint64_t n,
                                    uint64_t data_start, uint64_t alignment) {
  for (uint64_t i = 0; i < n; i++) {
    gguf_tensor *t = &ts[i];
    char tname[QIAO__MAX_TENSOR_NAME_LEN + 1];
    c_name(t, tname);
    if (t->offset % alignment != 0)
      return qiao__error(
          QIAO_MALFORMED, "%s: tensor %s: data offset %llu is not a multiple of the alignment %llu",
          r->name, tname, (unsigned long long)t->offset, (unsigned long long)alignment);
    uint64_t abs;
    if (!qiao__add_u64(data_start, t->offset, &abs) || !qiao__range_ok(abs, t->n_bytes, r->size))
      return qiao__error(QIAO_MALFORMED,
                         "%s: tensor %s: data (%llu bytes at offset %llu) runs past the end of the "
                         "file (%llu bytes)",
                         r->name, tname, (unsigned long long)t->n_bytes,
                         (unsigned long long)t->offset, (unsigned long long)r->size);
  }
  if (n < 2) return NULL;
  gguf_tensor **order = malloc((size_t)n * sizeof(*order));
  if (order == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  for (uint64_t i = 0; i < n; i++)
    order[i] = &ts[i];
  qsort(order, (size_t)n, sizeof(*order), by_offset);
  qiao_status *st = NULL;
  for (uint64_t i = 1; i < n && st == NULL; i++)
    if (order[i - 1]->offset + order[i - 1]->n_bytes > order[i]->offset)
      st = qiao__error(
          QIAO_MALFORMED, "%s: tensor %.*s: data overlaps tensor %.*s at byte offset %llu", r->name,
          (int)order[i]->name.len, order[i]->name.data, (int)order[i - 1]->name.len,
          order[i - 1]->name.data, (unsigned long long)(data_start + order[i]->offset));
  free(order);
  return st;
}

/* ---- The whole file -------------------------------------------------------- */

static qiao_status *find_alignment(const reader *r, const qiao__raw_kv *kvs, uint64_t n,
                                   uint64_t *out) {
  *out = GGUF_DEFAULT_ALIGNMENT;
  for (uint64_t i = 0; i < n; i++) {
    if (strcmp(kvs[i].key, "general.alignment") != 0) continue;
    const qiao_kv *v = &kvs[i].v;
    /* ggml's GGUF reader accepts a u32 only */
    if (v->type != QIAO_VALUE_U32) return qiao__raw_wrong_type(r->name, &kvs[i], "a u32");
    uint64_t a = v->v.u;
    if (!qiao__is_pow2(a) || a < 8 || a > GGUF_MAX_ALIGNMENT)
      return qiao__error(QIAO_MALFORMED,
                         "%s: metadata key general.alignment: %llu is not a power of two in [8, "
                         "%u] at byte offset %llu",
                         r->name, (unsigned long long)a, GGUF_MAX_ALIGNMENT,
                         (unsigned long long)kvs[i].offset);
    *out = a;
  }
  return NULL;
}

static const char *find_arch(const qiao__raw_kv *kvs, uint64_t n, char *buf, size_t size) {
  for (uint64_t i = 0; i < n; i++)
    if (strcmp(kvs[i].key, "general.architecture") == 0 && kvs[i].v.type == QIAO_VALUE_STRING &&
        kvs[i].v.v.str.len < size && memchr(kvs[i].v.v.str.data, 0, kvs[i].v.v.str.len) == NULL) {
      memcpy(buf, kvs[i].v.v.str.data, kvs[i].v.v.str.len);
      buf[kvs[i].v.v.str.len] = '\0';
      return buf;
    }
  return NULL;
}

/* Keys that qiao derives from the tensors or fills in when GGUF is silent. */
static qiao_status *add_derived(qiao_model *m, const char *arch) {
  if (qiao_model_kv_find(m, "general.source_format") == NULL)
    QIAO__TRY(qiao__model_set_string(m, "general.source_format", "gguf", 4));
  if (qiao_model_kv_find(m, "tokenizer.model") == NULL)
    QIAO__TRY(qiao__model_set_string(m, "tokenizer.model", "none", 4));
  const qiao_tensor *embd = qiao_model_tensor_find(m, "token_embd.weight");
  if (qiao_model_kv_find(m, "model.vocab_size") == NULL) {
    const qiao_kv *tokens = qiao_model_kv_find(m, "tokenizer.tokens");
    if (embd != NULL && embd->shape[0] <= UINT32_MAX)
      QIAO__TRY(qiao__model_set_u32(m, "model.vocab_size", (uint32_t)embd->shape[0]));
    else if (tokens != NULL && tokens->type == QIAO_VALUE_ARRAY && tokens->array_len <= UINT32_MAX)
      QIAO__TRY(qiao__model_set_u32(m, "model.vocab_size", (uint32_t)tokens->array_len));
  }
  if (embd == NULL) return NULL; /* a vocab-only file */
  if (qiao_model_kv_find(m, "model.tied_embeddings") == NULL)
    QIAO__TRY(qiao__model_set_bool(m, "model.tied_embeddings",
                                   qiao_model_tensor_find(m, "output.weight") == NULL));
  if (qiao_model_kv_find(m, "model.qkv_bias") == NULL)
    QIAO__TRY(qiao__model_set_bool(m, "model.qkv_bias",
                                   qiao_model_tensor_find(m, "blk.0.attn_q.bias") != NULL));
  if (qiao_model_kv_find(m, "model.qk_norm") == NULL)
    QIAO__TRY(qiao__model_set_bool(m, "model.qk_norm",
                                   qiao_model_tensor_find(m, "blk.0.attn_q_norm.weight") != NULL));
  /* llama.cpp always renormalizes the top-k weights of qwen3moe */
  if (arch && strcmp(arch, "qwen3moe") == 0 &&
      qiao_model_kv_find(m, "model.moe.norm_topk_prob") == NULL)
    QIAO__TRY(qiao__model_set_bool(m, "model.moe.norm_topk_prob", true));
  return NULL;
}

/* Makes room for element `n` of a malloc'd array, doubling its capacity
 * when `n` reaches a power of two. */
static qiao_status *grow(void **array, uint64_t n, size_t elem_size) {
  if (n != 0 && (n & (n - 1)) != 0) return NULL;
  uint64_t cap = n == 0 ? 16 : 2 * n;
  if (n != 0 && n < 16) return NULL;
  void *p = realloc(*array, (size_t)cap * elem_size);
  if (p == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  *array = p;
  return NULL;
}

static qiao_status *import(qiao_model *m, reader *r, qiao__raw_kv **kvs_out, gguf_tensor **ts_out) {
  const uint8_t *magic;
  QIAO__TRY(take(r, 4, "magic", &magic));
  if (memcmp(magic, "GGUF", 4) != 0)
    return qiao__error(QIAO_MALFORMED, "%s: magic: not a GGUF file at byte offset 0", r->name);
  uint32_t version;
  QIAO__TRY(read_u32(r, "version", &version));
  if (version != 2 && version != 3)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: version: GGUF version %u is not supported (2 and 3 are; a big-endian "
                       "file also shows up this way) at byte offset 4",
                       r->name, version);
  uint64_t n_tensors, n_kv;
  QIAO__TRY(read_u64(r, "tensor count", &n_tensors));
  QIAO__TRY(read_u64(r, "metadata count", &n_kv));
  /* Every entry takes at least 12 bytes, so a count larger than the file
   * cannot be right; this also bounds the allocations below. */
  if (n_kv > QIAO__MAX_KVS || n_kv > r->size / 12)
    return qiao__error(QIAO_MALFORMED,
                       "%s: metadata count: %llu entries cannot fit (at byte offset 16)", r->name,
                       (unsigned long long)n_kv);
  if (n_tensors > QIAO__MAX_TENSORS || n_tensors > r->size / 24)
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor count: %llu tensors cannot fit (at byte offset 8)", r->name,
                       (unsigned long long)n_tensors);
  /* The arrays grow as entries are actually read, so a lying count cannot
   * make us allocate much more than the file holds. */
  qiao__raw_kv *kvs = NULL;
  for (uint64_t i = 0; i < n_kv; i++) {
    QIAO__TRY(grow((void **)kvs_out, i, sizeof(qiao__raw_kv)));
    kvs = *kvs_out;
    QIAO__TRY(qiao__read_raw_kv(r, &kvs[i]));
  }
  gguf_tensor *ts = NULL;
  for (uint64_t i = 0; i < n_tensors; i++) {
    QIAO__TRY(grow((void **)ts_out, i, sizeof(gguf_tensor)));
    ts = *ts_out;
    QIAO__TRY(read_tensor_info(r, &ts[i]));
  }

  uint64_t alignment;
  QIAO__TRY(find_alignment(r, kvs, n_kv, &alignment));
  uint64_t data_start = (r->pos + alignment - 1) / alignment * alignment;
  if (n_tensors > 0 && data_start > r->size)
    return qiao__error(
        QIAO_MALFORMED,
        "%s: tensor data: the data section (at byte offset %llu) starts past the end of the file",
        r->name, (unsigned long long)data_start);
  QIAO__TRY(check_placement(r, ts, n_tensors, data_start, alignment));

  char arch_buf[64];
  const char *arch = find_arch(kvs, n_kv, arch_buf, sizeof(arch_buf));
  eos_list eos = {0};
  bool mla_form = false; /* a deepseek2 file with key_length_mla (gguf_keys.h) */
  for (uint64_t i = 0; i < n_kv && arch != NULL; i++)
    mla_form |= strncmp(kvs[i].key, arch, strlen(arch)) == 0 &&
                strcmp(kvs[i].key + strlen(arch), ".attention.key_length_mla") == 0;
  for (uint64_t i = 0; i < n_kv; i++) {
    if (strcmp(kvs[i].key, "general.alignment") == 0) continue; /* a property of this file */
    kvs[i].v.key = kvs[i].key; /* the array may have moved since read_kv */
    qiao_status *st = convert_kv(m, r->name, arch, &kvs[i], &eos, mla_form);
    if (st) {
      if (strncmp(qiao_status_message(st), r->name, strlen(r->name)) == 0) return st;
      return qiao__annotate(st, "%s (metadata entry at byte offset %llu)", r->name,
                            (unsigned long long)kvs[i].offset);
    }
  }
  QIAO__TRY(store_eos(m, &eos));
  for (uint64_t i = 0; i < n_tensors; i++) {
    gguf_tensor *t = &ts[i];
    uint64_t abs = data_start + t->offset;
    char tname[QIAO__MAX_TENSOR_NAME_LEN + 1];
    c_name(t, tname);
    qiao_status *st =
        qiao__model_add_tensor(m, tname, t->dtype, t->n_dims, t->shape, r->data + abs, t->n_bytes);
    if (st)
      return qiao__annotate(st, "%s (tensor info at byte offset %llu)", r->name,
                            (unsigned long long)t->info_offset);
    qiao__model_tensor_origin(m, qiao_model_tensor_count(m) - 1)->offset = abs;
  }
  qiao_status *st = add_derived(m, arch);
  return st ? qiao__annotate(st, "%s", r->name) : NULL;
}

qiao_status *qiao__import_gguf(qiao_model *model, const uint8_t *data, uint64_t size,
                               const char *name) {
  reader r = {data, size, 0, name};
  qiao__raw_kv *kvs = NULL;
  gguf_tensor *ts = NULL;
  qiao_status *st = import(model, &r, &kvs, &ts);
  free(kvs);
  free(ts);
  return st;
}
