/* Internal: what the .qiao and GGUF writers share. qiao_model_write()
 * (model_write.c) plans each tensor's output dtype and opens a temporary
 * file; the format writer lays out the metadata in memory, then streams the
 * tensors one at a time through qiao__write_tensors(). */
#ifndef QIAO_MODEL_WRITE_H
#define QIAO_MODEL_WRITE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "format/model_internal.h"

/* A byte sink: a FILE (with `pos` tracking the offset) or, when `file` is
 * NULL, a growing memory buffer. The first failure is kept in `error` and
 * later writes do nothing, so callers check once at the end. */
typedef struct qiao__writer {
  FILE *file;
  const char *path; /* for messages */
  uint8_t *buf;
  uint64_t cap;
  uint64_t pos;
  qiao_status *error;
  bool report_error; /* qiao__write_tensors prints each converted tensor's error */
} qiao__writer;

void qiao__w_bytes(qiao__writer *w, const void *data, uint64_t n);
void qiao__w_zeros(qiao__writer *w, uint64_t n);
void qiao__w_u16(qiao__writer *w, uint16_t v);
void qiao__w_u32(qiao__writer *w, uint32_t v);
void qiao__w_u64(qiao__writer *w, uint64_t v);
/* u64 length, then the bytes (the GGUF / .qiao string). */
void qiao__w_string(qiao__writer *w, const char *data, uint64_t len);
/* Writes zeros up to the next multiple of `alignment`. */
void qiao__w_align(qiao__writer *w, uint64_t alignment);
/* u32 type then the value, in the GGUF value encoding. */
void qiao__w_kv_value(qiao__writer *w, const qiao_kv *kv);
/* Frees a memory writer's buffer and any kept error. */
void qiao__w_release(qiao__writer *w);

/* One tensor of the output file. */
typedef struct qiao__tensor_plan {
  const qiao_tensor *src;
  qiao_dtype dtype; /* output dtype */
  uint64_t n_bytes; /* output bytes */
  uint64_t offset;  /* from the start of the data section */
  uint64_t hash;    /* XXH3-64 of the output bytes, set by qiao__write_tensors */
} qiao__tensor_plan;

/* Each tensor's output dtype under `want` (QIAO_DTYPE_COUNT: keep) and
 * `mix` (quant_recipe.c, format.md §4.2), and the dtype asked for it before
 * the fallbacks for rows that are not whole blocks; arrays of the model's
 * tensor count. */
qiao_status *qiao__plan_dtypes(const qiao_model *model, qiao_dtype want, qiao_quant_mix mix,
                               qiao_dtype *out_dtypes, qiao_dtype *out_wanted);

/* Writes each tensor (converted to its planned dtype) at data_start +
 * plan.offset, padding with zeros between them, and fills in plan.hash.
 * `w->pos` must be <= data_start. Memory stays bounded: a chunk at a time,
 * and source pages of `model`'s file mappings are released once read. */
qiao_status *qiao__write_tensors(const qiao_model *model, qiao__writer *w, qiao__tensor_plan *plans,
                                 uint64_t n, uint64_t data_start, bool progress);

/* The format writers, called by qiao_model_write with `file` open on the
 * temporary file. */
qiao_status *qiao__write_qiao(const qiao_model *model, qiao__tensor_plan *plans, uint64_t n,
                              qiao__writer *file, bool progress);
qiao_status *qiao__write_gguf(const qiao_model *model, qiao__tensor_plan *plans, uint64_t n,
                              qiao__writer *file, bool progress);

#endif
