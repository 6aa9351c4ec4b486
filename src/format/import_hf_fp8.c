/* FP8 checkpoints (DeepSeek-V3, Qwen3-FP8): F8_E4M3 weights `X.weight` of
 * shape (out, in) with block scales `X.weight_scale_inv` of shape
 * (ceil(out/128), ceil(in/128)), the real weight being
 *   w[i][j] = e4m3(q[i][j]) * scale_inv[i / 128][j / 128],
 * and config.json's quantization_config {quant_method "fp8", fmt "e4m3",
 * weight_block_size [128, 128]}. Each such weight becomes an f8_e4m3_b128
 * tensor (format.md §4.1): every row's 128-element blocks carry that row's
 * block scale as F32 (the rows of one 128-row tile repeat its scale), so the
 * FP8 bytes are used as stored, never widened; the interleave is a one-time
 * copy (132 bytes per 128 codes). Rows that are not whole blocks of 128 are
 * refused naming the tensor: every published FP8 checkpoint has in-dims that
 * are multiples of 128, and a row-wise block scale could not express them. */
#include "format/import_hf_fp8.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "format/dtype_convert.h"
#include "format/fp8.h"

static const char scale_suffix[] = "_scale_inv";

typedef struct named {
  const char *name;
  qiao_st_tensor *t;
} named;

static int by_name(const void *a, const void *b) {
  return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

static bool is_scale(const char *name) {
  size_t n = strlen(name), s = sizeof(scale_suffix) - 1;
  return n > s && strcmp(name + n - s, scale_suffix) == 0;
}

/* config.json's quantization_config: absent means the 128 x 128 blocks the
 * scale shapes then have to agree with; present, it must say exactly that. */
static qiao_status *check_config(qiao_model *model, const char *dir) {
  json_object *config = NULL;
  QIAO__TRY(qiao__hf_read_json(model, dir, "config.json", true, &config));
  json_object *q = NULL, *v = NULL;
  qiao_status *st = NULL;
  if (!json_object_object_get_ex(config, "quantization_config", &q) ||
      json_object_is_type(q, json_type_null)) {
    json_object_put(config);
    return NULL;
  }
  const char *want_str[][2] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}};
  if (!json_object_is_type(q, json_type_object)) {
    st = qiao__error(QIAO_MALFORMED, "%s/config.json: quantization_config: not an object", dir);
    goto done;
  }
  for (size_t i = 0; i < 2 && st == NULL; i++) {
    bool present = json_object_object_get_ex(q, want_str[i][0], &v);
    if (!present && i > 0) continue; /* fmt is optional (Qwen3-FP8 omits it) */
    if (!present || !json_object_is_type(v, json_type_string) ||
        strcmp(json_object_get_string(v), want_str[i][1]) != 0)
      st = qiao__error(QIAO_UNSUPPORTED,
                       "%s/config.json: quantization_config.%s: %s is not supported with "
                       "F8_E4M3 weights (qiao reads \"%s\")",
                       dir, want_str[i][0], present ? json_object_to_json_string(v) : "absent",
                       want_str[i][1]);
  }
  if (st == NULL && json_object_object_get_ex(q, "activation_scheme", &v) &&
      (!json_object_is_type(v, json_type_string) ||
       strcmp(json_object_get_string(v), "dynamic") != 0))
    st = qiao__error(QIAO_UNSUPPORTED,
                     "%s/config.json: quantization_config.activation_scheme: %s is not "
                     "supported (qiao reads \"dynamic\": no stored activation scales)",
                     dir, json_object_to_json_string(v));
  if (st == NULL && json_object_object_get_ex(q, "weight_block_size", &v)) {
    bool ok = json_object_is_type(v, json_type_array) && json_object_array_length(v) == 2;
    for (size_t i = 0; ok && i < 2; i++) {
      json_object *e = json_object_array_get_idx(v, i);
      ok = json_object_is_type(e, json_type_int) && json_object_get_int64(e) == 128;
    }
    if (!ok)
      st = qiao__error(QIAO_UNSUPPORTED,
                       "%s/config.json: quantization_config.weight_block_size: %s is not "
                       "supported (qiao reads [128, 128])",
                       dir, json_object_to_json_string(v));
  }
done:
  json_object_put(config);
  return st;
}

/* Scale element (r, c) of `s` (F32, BF16 or F16, row-major) as f32. */
static float scale_at(const qiao_st_tensor *s, uint64_t r, uint64_t c) {
  uint64_t i = r * s->shape[1] + c;
  if (s->dtype == QIAO_DTYPE_F32) {
    float f;
    memcpy(&f, s->data + 4 * i, 4);
    return f;
  }
  uint16_t h = (uint16_t)(s->data[2 * i] | s->data[2 * i + 1] << 8);
  return s->dtype == QIAO_DTYPE_BF16 ? qiao__bf16_to_f32(h) : qiao__f16_to_f32(h);
}

/* One weight: checks it and its scales, writes the blocks into model memory
 * and makes `t` an f8_e4m3_b128 tensor over them. */
static qiao_status *transcode(qiao_model *model, const char *dir, qiao_st_tensor *t,
                              const qiao_st_tensor *s) {
  if (t->n_dims != 2)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: tensor '%s': F8_E4M3 weights must be 2-D (out, in); this one has %u "
                       "dimensions",
                       dir, t->name, t->n_dims);
  uint64_t rows = t->shape[0], cols = t->shape[1];
  if (cols % QIAO__F8_BLOCK != 0)
    return qiao__error(QIAO_UNSUPPORTED,
                       "%s: tensor '%s': rows of %llu elements are not whole blocks of 128, "
                       "which the f8_e4m3_b128 type needs (convert the checkpoint to bf16 first)",
                       dir, t->name, (unsigned long long)cols);
  if (s == NULL)
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor '%s': an F8_E4M3 weight without its block scales '%s%s'", dir,
                       t->name, t->name, scale_suffix);
  if (s->f8_e4m3 ||
      (s->dtype != QIAO_DTYPE_F32 && s->dtype != QIAO_DTYPE_BF16 && s->dtype != QIAO_DTYPE_F16))
    return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': block scales must be F32, BF16 or F16",
                       dir, s->name);
  uint64_t srows = (rows + QIAO__F8_BLOCK - 1) / QIAO__F8_BLOCK, scols = cols / QIAO__F8_BLOCK;
  if (s->n_dims != 2 || s->shape[0] != srows || s->shape[1] != scols)
    return qiao__error(QIAO_MALFORMED,
                       "%s: tensor '%s': shape must be (%llu, %llu), one scale per 128 x 128 "
                       "block of '%s' (%llu, %llu)",
                       dir, s->name, (unsigned long long)srows, (unsigned long long)scols, t->name,
                       (unsigned long long)rows, (unsigned long long)cols);
  for (uint64_t r = 0; r < srows; r++)
    for (uint64_t c = 0; c < scols; c++)
      if (!isfinite(scale_at(s, r, c)))
        return qiao__error(QIAO_MALFORMED, "%s: tensor '%s': scale (%llu, %llu) is not finite (%g)",
                           dir, s->name, (unsigned long long)r, (unsigned long long)c,
                           (double)scale_at(s, r, c));
  uint64_t bytes;
  if (!qiao__mul_u64(rows, scols * QIAO__F8_BLOCK_BYTES, &bytes))
    return qiao__error(QIAO_LIMIT, "%s: tensor '%s': size overflows", dir, t->name);
  uint8_t *out;
  QIAO__TRY(qiao__model_alloc(model, bytes, (void **)&out));
  for (uint64_t r = 0; r < rows; r++) {
    const uint8_t *codes = t->data + r * cols;
    uint64_t nan = qiao__e4m3_find_nan(codes, cols);
    if (nan < cols)
      return qiao__error(QIAO_MALFORMED,
                         "%s: tensor '%s': element (%llu, %llu) is the FP8 NaN code 0x%02x "
                         "(a weight file must not hold NaN) at byte offset %llu",
                         dir, t->name, (unsigned long long)r, (unsigned long long)nan, codes[nan],
                         (unsigned long long)(t->file_offset + r * cols + nan));
    for (uint64_t c = 0; c < scols; c++) {
      uint8_t *block = out + (r * scols + c) * QIAO__F8_BLOCK_BYTES;
      float d = scale_at(s, r / QIAO__F8_BLOCK, c);
      memcpy(block, &d, 4);
      memcpy(block + 4, codes + c * QIAO__F8_BLOCK, QIAO__F8_BLOCK);
    }
  }
  qiao__model_release_pages(model, t->data, t->n_bytes);
  t->f8_e4m3 = false;
  t->dtype = QIAO_DTYPE_F8_E4M3_B128;
  t->data = out;
  t->n_bytes = bytes;
  return NULL;
}

/* Drops the scale tensors from their tables (their names are freed). */
static void drop_scales(hf_weights *w) {
  for (uint64_t s = 0; s < w->n_tables; s++) {
    qiao_st_table *table = &w->tables[s];
    uint64_t kept = 0;
    for (uint64_t i = 0; i < table->count; i++) {
      if (is_scale(table->tensors[i].name)) {
        free(table->tensors[i].name);
        continue;
      }
      table->tensors[kept++] = table->tensors[i];
    }
    table->count = kept;
  }
}

qiao_status *qiao__hf_fp8_pair(qiao_model *model, const char *dir, hf_weights *w) {
  uint64_t n = 0, n_fp8 = 0, n_scales = 0;
  for (uint64_t s = 0; s < w->n_tables; s++)
    for (uint64_t i = 0; i < w->tables[s].count; i++) {
      n++;
      n_fp8 += w->tables[s].tensors[i].f8_e4m3;
      n_scales += is_scale(w->tables[s].tensors[i].name);
    }
  if (n_fp8 == 0 && n_scales == 0) return NULL;
  QIAO__TRY(check_config(model, dir));
  named *index = malloc((size_t)n * sizeof(*index));
  if (index == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
  uint64_t k = 0;
  for (uint64_t s = 0; s < w->n_tables; s++)
    for (uint64_t i = 0; i < w->tables[s].count; i++)
      index[k++] = (named){w->tables[s].tensors[i].name, &w->tables[s].tensors[i]};
  qsort(index, (size_t)n, sizeof(*index), by_name);
  qiao_status *st = NULL;
  char want[QIAO__MAX_TENSOR_NAME_LEN + sizeof(scale_suffix)];
  for (uint64_t i = 0; i < n && st == NULL; i++) {
    const qiao_st_tensor *t = index[i].t;
    if (!is_scale(t->name)) continue;
    /* its weight must be an F8_E4M3 tensor */
    size_t len = strlen(t->name) - (sizeof(scale_suffix) - 1);
    memcpy(want, t->name, len);
    want[len] = '\0';
    named key = {want, NULL}, *hit = bsearch(&key, index, (size_t)n, sizeof(*index), by_name);
    if (hit == NULL || !hit->t->f8_e4m3)
      st = qiao__error(QIAO_MALFORMED, "%s: tensor '%s': block scales for '%s', which is %s", dir,
                       t->name, want, hit == NULL ? "absent" : "not an F8_E4M3 tensor");
  }
  for (uint64_t i = 0; i < n && st == NULL; i++) {
    qiao_st_tensor *t = index[i].t;
    if (!t->f8_e4m3) continue;
    snprintf(want, sizeof(want), "%s%s", t->name, scale_suffix);
    named key = {want, NULL}, *hit = bsearch(&key, index, (size_t)n, sizeof(*index), by_name);
    st = transcode(model, dir, t, hit ? hit->t : NULL);
  }
  free(index);
  if (st == NULL) drop_scales(w);
  return st;
}
