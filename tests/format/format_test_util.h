/* Helpers shared by the format tests: a scratch folder and model
 * comparisons. Header-only. */
#ifndef QIAO_FORMAT_TEST_UTIL_H
#define QIAO_FORMAT_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qiao/model.h"
#include "test_util.h"

/* A fresh folder under $TMPDIR (or /tmp) for this test's files. */
static inline const char *scratch_dir(const char *test) {
  static char dir[512];
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof(dir), "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", test);
  if (mkdtemp(dir) == NULL) {
    fprintf(stderr, "cannot create a scratch folder\n");
    exit(1);
  }
  return dir;
}

static inline char *scratch_file(const char *dir, const char *name) {
  static char bufs[8][600];
  static int next = 0;
  char *b = bufs[next++ % 8];
  snprintf(b, 600, "%s/%s", dir, name);
  return b;
}

static inline bool string_eq(qiao_string a, qiao_string b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, (size_t)a.len) == 0);
}

/* Same type and value (arrays element by element). */
static inline bool kv_equal(const qiao_kv *a, const qiao_kv *b) {
  if (a->type != b->type) return false;
  switch (a->type) {
  case QIAO_VALUE_STRING: return string_eq(a->v.str, b->v.str);
  case QIAO_VALUE_ARRAY: {
    if (a->elem_type != b->elem_type || a->array_len != b->array_len) return false;
    if (a->elem_type == QIAO_VALUE_STRING) {
      const qiao_string *x = a->v.array, *y = b->v.array;
      for (uint64_t i = 0; i < a->array_len; i++)
        if (!string_eq(x[i], y[i])) return false;
      return true;
    }
    size_t es = a->elem_type == QIAO_VALUE_BOOL || a->elem_type <= QIAO_VALUE_I8 ? 1
                : a->elem_type <= QIAO_VALUE_I16                                 ? 2
                : a->elem_type <= QIAO_VALUE_F32                                 ? 4
                                                                                 : 8;
    return a->array_len == 0 || memcmp(a->v.array, b->v.array, (size_t)(a->array_len * es)) == 0;
  }
  case QIAO_VALUE_BOOL: return a->v.b == b->v.b;
  case QIAO_VALUE_F32:
  case QIAO_VALUE_F64: return a->v.f == b->v.f;
  default: return a->v.u == b->v.u;
  }
}

/* Every tensor of `a` is in `b` with the same dtype, shape and bytes, and
 * `b` has no other tensor (but for a rope_freqs.weight that the GGUF writer
 * adds for LLaMA-3 RoPE scaling). */
static inline int tensors_identical(const qiao_model *a, const qiao_model *b) {
  int bad = 0;
  uint64_t extra = qiao_model_tensor_find(a, "rope_freqs.weight") == NULL &&
                   qiao_model_tensor_find(b, "rope_freqs.weight") != NULL;
  if (qiao_model_tensor_count(a) + extra != qiao_model_tensor_count(b)) {
    fprintf(stderr, "tensor counts differ: %llu vs %llu\n",
            (unsigned long long)qiao_model_tensor_count(a),
            (unsigned long long)qiao_model_tensor_count(b));
    bad++;
  }
  for (uint64_t i = 0; i < qiao_model_tensor_count(a); i++) {
    const qiao_tensor *x = qiao_model_tensor_at(a, i);
    const qiao_tensor *y = qiao_model_tensor_find(b, x->name);
    bool same = y && x->dtype == y->dtype && x->n_dims == y->n_dims && x->n_bytes == y->n_bytes &&
                memcmp(x->shape, y->shape, x->n_dims * sizeof(uint64_t)) == 0 &&
                memcmp(x->data, y->data, (size_t)x->n_bytes) == 0;
    if (!same) {
      fprintf(stderr, "tensor %s differs\n", x->name);
      bad++;
    }
  }
  return bad;
}

/* Every metadata entry of `a` whose key starts with `prefix` is in `b`
 * with the same type and value. */
static inline int kvs_identical(const qiao_model *a, const qiao_model *b, const char *prefix) {
  int bad = 0;
  for (uint64_t i = 0; i < qiao_model_kv_count(a); i++) {
    const qiao_kv *x = qiao_model_kv_at(a, i);
    if (strncmp(x->key, prefix, strlen(prefix)) != 0) continue;
    const qiao_kv *y = qiao_model_kv_find(b, x->key);
    if (y == NULL || !kv_equal(x, y)) {
      fprintf(stderr, "metadata %s differs\n", x->key);
      bad++;
    }
  }
  return bad;
}

#endif
