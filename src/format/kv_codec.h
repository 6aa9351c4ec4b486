/* Metadata values as GGUF and .qiao both encode them (the same value types
 * and byte layout): reading one entry from untrusted bytes, and storing it
 * in a model. */
#ifndef QIAO_KV_CODEC_H
#define QIAO_KV_CODEC_H

#include "format/byte_reader.h"
#include "format/model_internal.h"

/* One metadata entry as found in a file. Scalars are decoded into `v`;
 * strings point into the file; arrays point at their first raw element
 * (already bounds-checked). `v.key` is not set. */
typedef struct qiao__raw_kv {
  char key[QIAO__MAX_KEY_LEN + 1];
  uint64_t offset; /* of the key, for messages */
  qiao_kv v;
} qiao__raw_kv;

/* Reads a key (non-empty, <= QIAO__MAX_KEY_LEN, no NUL) and a typed value.
 * Arrays of arrays are refused. */
qiao_status *qiao__read_raw_kv(reader *r, qiao__raw_kv *kv);

bool qiao__kv_is_int(qiao_value_type type);

/* Element i of a raw integer array, widened. */
int64_t qiao__raw_int_elem(const qiao_kv *v, uint64_t i);

/* Decodes a raw array of strings into a malloc'd qiao_string[] (pointing
 * into the file). */
qiao_status *qiao__raw_strings(const qiao__raw_kv *kv, const char *file, qiao_string **out);

/* Stores the entry in `model` under `key`, with the same type. */
qiao_status *qiao__raw_kv_store(qiao_model *model, const char *key, const qiao__raw_kv *kv,
                                const char *file);

/* "<file>: metadata key K: expected E, found T at byte offset N" */
qiao_status *qiao__raw_wrong_type(const char *file, const qiao__raw_kv *kv, const char *expected);

#endif
