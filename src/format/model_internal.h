/* Internal: the in-memory model that every importer fills in, and the
 * builder calls importers use. Implemented in src/format/model.c. */
#ifndef QIAO_MODEL_INTERNAL_H
#define QIAO_MODEL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status_internal.h"
#include "qiao/model.h"

/* Limits on what a file may ask for; anything larger is refused with
 * QIAO_LIMIT or QIAO_MALFORMED naming the field. */
#define QIAO__MAX_KEY_LEN 256u
#define QIAO__MAX_TENSOR_NAME_LEN 256u
#define QIAO__MAX_TENSORS 1000000u
#define QIAO__MAX_KVS 100000u
#define QIAO__MAX_ARRAY_LEN 16000000u
#define QIAO__MAX_STRING_LEN (64u << 20)
/* scale_type and layout of a .qiao quantization descriptor. */
#define QIAO__MAX_DESCRIPTOR_LEN 64u

/* Whether `len` bytes are UTF-8 without NUL, overlong forms or surrogates
 * (the rule for metadata keys and tensor names). */
bool qiao__utf8_ok(const char *s, uint64_t len);

/* Creates an empty model; `format` is "qiao", "gguf", "hf" or "llama2c". */
qiao_status *qiao__model_create(const char *path, const char *format, qiao_model **out);

/* Maps the whole file read-only; the mapping lives as long as the model.
 * A zero-length file maps to (NULL, 0). */
qiao_status *qiao__model_map_file(qiao_model *model, const char *path, const uint8_t **out_data,
                                  uint64_t *out_size);

/* Memory owned by the model, freed on close (zeroed; fails cleanly on OOM). */
qiao_status *qiao__model_alloc(qiao_model *model, uint64_t size, void **out);

/* Metadata setters. Keys must be non-empty and unique (a duplicate is
 * QIAO_MALFORMED naming the key); values are copied into the model. */
qiao_status *qiao__model_set_u32(qiao_model *model, const char *key, uint32_t value);
qiao_status *qiao__model_set_i32(qiao_model *model, const char *key, int32_t value);
qiao_status *qiao__model_set_u64(qiao_model *model, const char *key, uint64_t value);
qiao_status *qiao__model_set_f32(qiao_model *model, const char *key, float value);
qiao_status *qiao__model_set_bool(qiao_model *model, const char *key, bool value);
qiao_status *qiao__model_set_string(qiao_model *model, const char *key, const char *data,
                                    uint64_t len);
/* For STRING elements `elems` is a qiao_string[]; otherwise packed native
 * values (see qiao_kv). */
qiao_status *qiao__model_set_array(qiao_model *model, const char *key, qiao_value_type elem_type,
                                   uint64_t n, const void *elems);
/* Sets any value (copying it), as read from another model. */
qiao_status *qiao__model_set_kv(qiao_model *model, const qiao_kv *kv);

/* Adds a tensor whose `n_bytes` bytes at `data` stay valid for the model's
 * life (in a mapping or from qiao__model_alloc). Checks the name (non-empty,
 * unique, <= QIAO__MAX_TENSOR_NAME_LEN), the dims (1..QIAO_MAX_DIMS, each > 0),
 * the row against the block size, and that n_bytes equals shape x dtype. */
qiao_status *qiao__model_add_tensor(qiao_model *model, const char *name, qiao_dtype dtype,
                                    uint32_t n_dims, const uint64_t *shape, const void *data,
                                    uint64_t n_bytes);

/* Adds a tensor of an element type this library does not know (a .qiao
 * file of a later minor version): dtype QIAO_DTYPE_UNKNOWN, `stored_dtype`
 * and `layout` as the file gives them. The caller checked n_bytes against
 * the file's own descriptor. */
qiao_status *qiao__model_add_unknown_tensor(qiao_model *model, const char *name,
                                            uint32_t stored_dtype, const char *layout,
                                            size_t layout_len, uint32_t n_dims,
                                            const uint64_t *shape, const void *data,
                                            uint64_t n_bytes);

/* Importers: each fills an empty model from its source. The single-file
 * parsers work on bytes already in memory (a mapping, or a buffer in tests
 * and fuzzers, which must outlive the model); `name` is used in messages. */
qiao_status *qiao__import_qiao(qiao_model *model, const uint8_t *data, uint64_t size,
                               const char *name);
qiao_status *qiao__import_gguf(qiao_model *model, const uint8_t *data, uint64_t size,
                               const char *name);
qiao_status *qiao__import_safetensors(qiao_model *model, const uint8_t *data, uint64_t size,
                                      const char *name); /* adds HF-named tensors */
qiao_status *qiao__import_hf(qiao_model *model, const char *dir);
qiao_status *qiao__import_llama2c(qiao_model *model, const uint8_t *data, uint64_t size,
                                  const char *name, const char *tokenizer_path);

/* ---- Helpers shared by the format code ---------------------------------- */

/* Where a tensor came from in its file, for messages and integrity checks. */
typedef struct qiao__tensor_origin {
  uint64_t offset; /* byte offset of the data in the source file */
  uint64_t hash;   /* XXH3-64 of the data (when has_hash) */
  bool has_hash;
} qiao__tensor_origin;

/* The origin record of tensor `index` (zeroed when added); NULL when out of
 * range. Importers fill it in. */
qiao__tensor_origin *qiao__model_tensor_origin(const qiao_model *model, uint64_t index);

/* Drops the pages of [data, data+size) from memory when they lie in a
 * read-only file mapping of the model (they are read again from the file if
 * touched later); does nothing for owned memory. Keeps the memory of a
 * streaming conversion bounded. */
void qiao__model_release_pages(const qiao_model *model, const void *data, uint64_t size);

/* The index of tensor `name` (for qiao_model_tensor_at), UINT64_MAX when
 * absent. */
uint64_t qiao__model_tensor_index(const qiao_model *model, const char *name);

/* Changes the format name ("qiao", "gguf", "hf", "llama2c"). */
void qiao__model_set_format(qiao_model *model, const char *format);

/* Bytes of one array element of `type` (sizeof(qiao_string) for STRING); 0
 * for ARRAY or an invalid type. */
size_t qiao__value_size(qiao_value_type type);
/* "u32", "string", ... */
const char *qiao__value_type_name(qiao_value_type type);
bool qiao__kv_is_unsigned(qiao_value_type type);
bool qiao__kv_is_signed(qiao_value_type type);

/* Bytes of a tensor of `shape` (checks dims 1..4, each > 0, the row against
 * the block, overflow). */
qiao_status *qiao__tensor_bytes(qiao_dtype dtype, uint32_t n_dims, const uint64_t *shape,
                                uint64_t *out_bytes);

/* Opens a single-file model (.qiao, .gguf, llama2.c without tokenizer) from
 * bytes in memory that outlive the model: for tests and fuzzers. */
qiao_status *qiao__model_open_buffer(const uint8_t *data, uint64_t size, const char *name,
                                     qiao_model **out);
#endif
