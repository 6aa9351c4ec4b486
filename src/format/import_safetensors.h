/* Internal: parsing a safetensors file held in memory into a table of
 * tensors that point into it. Used by qiao__import_safetensors (which adds
 * the tensors under their Hugging Face names) and the Hugging Face directory
 * importer (which renames, permutes and stacks them). */
#ifndef QIAO_IMPORT_SAFETENSORS_H
#define QIAO_IMPORT_SAFETENSORS_H

#include <stdbool.h>
#include <stdint.h>

#include "format/model_internal.h"

/* Largest JSON header accepted (the safetensors reference limit). */
#define QIAO__SAFETENSORS_MAX_HEADER (100u << 20)

typedef struct qiao_st_tensor {
  char *name; /* the Hugging Face name, NUL-terminated, owned by the table */
  /* F8_E4M3 codes, one byte each, without their scales: dtype is then
   * QIAO_DTYPE_UNKNOWN until the Hugging Face importer pairs the tensor
   * with its weight_scale_inv (import_hf_fp8.c); added alone it is refused. */
  bool f8_e4m3;
  qiao_dtype dtype;
  uint32_t n_dims;
  uint64_t shape[QIAO_MAX_DIMS];
  const uint8_t *data; /* inside the parsed buffer */
  uint64_t n_bytes;
  uint64_t file_offset; /* absolute byte offset of the data, for messages */
} qiao_st_tensor;

typedef struct qiao_st_table {
  qiao_st_tensor *tensors;
  uint64_t count;
} qiao_st_table;

/* Parses and fully checks the safetensors bytes `data` (header length, JSON,
 * dtypes, shapes, byte ranges: in bounds, matching shape x dtype, without
 * overlaps, gaps or trailing bytes). `name` is used in messages. On success
 * fills `out`, whose tensors point into `data`; free it with
 * qiao__st_table_free. */
qiao_status *qiao__st_parse(const uint8_t *data, uint64_t size, const char *name,
                            qiao_st_table *out);

/* Frees what qiao__st_parse allocated. Accepts a zeroed table. */
void qiao__st_table_free(qiao_st_table *table);

/* Adds `t` to `model` as `name` (its own when `name` is NULL). The data stays
 * in place when suitably aligned for its dtype and is copied into model
 * memory otherwise, so readers may load elements directly. */
qiao_status *qiao__st_add_tensor(qiao_model *model, const qiao_st_tensor *t, const char *name);

#endif
