/* plugin_validate.h: the host-side argument checks of the device ABI
 * (docs/spec/device-abi.md §6-§11), written once for every GPU plugin so
 * that they all accept and refuse exactly the same calls with the same codes
 * and messages: handles, args structs, shapes and dtypes, every operand
 * inside its buffer with overflow-safe byte counts, alignment, forbidden
 * overlaps, and the transfers' ranges.
 *
 * Handles are each plugin's own structs; each begins with a uint32_t magic
 * number, and a plugin describes the rest with a plugin_rules (its magic
 * numbers, a callback for buffers, its limits). Values inside device
 * buffers (ids, slots, block tables) are not checked here: the kernels do.
 *
 * Compiled into each plugin (backends/common/QiaoPlugin.cmake); includes
 * only qiao/device.h and libc. Every function is thread-safe (no state). */
#ifndef QIAO_PLUGIN_VALIDATE_H
#define QIAO_PLUGIN_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plugin_error.h"
#include "qiao/device.h"

typedef struct plugin_rules {
  const char *name;        /* "opencl": the first word of every message */
  const char *handle_kind; /* "an OpenCL": "not an OpenCL buffer handle" */
  uint64_t max_head_dim;   /* attention: a larger head_dim is UNSUPPORTED */
  /* The first field of a live backend, device and queue handle. */
  uint32_t backend_magic, device_magic, queue_magic;
  /* Whether `buffer` (not NULL) is a live buffer of this plugin; if so, its
   * size and whether it belongs to the device of `queue` (a live queue). */
  bool (*buffer_info)(const qiao_dev_queue *queue, const qiao_dev_buffer *buffer,
                      uint64_t *out_size, bool *out_same_device);
  /* The ABI minor of the runtime that opened the backend of `queue` (a live
   * queue): fields in 1.0's tail padding count only from their version. */
  uint32_t (*runtime_minor)(const qiao_dev_queue *queue);
  /* (ABI 1.3) The plugin implements the block types Q4_K .. Q5_1 as weights
   * (embed, matmul, matmul_experts); otherwise they are UNSUPPORTED. */
  bool block_types_1_3;
  /* (ABI 1.4) The plugin implements F8_E4M3_B128 as weights (embed, matmul,
   * matmul_experts); otherwise it is UNSUPPORTED. */
  bool f8_1_4;
  /* (ABI 1.5) The plugin implements IQ4_NL and IQ4_XS as weights (embed,
   * matmul, matmul_experts); otherwise they are UNSUPPORTED. */
  bool iq4_1_5;
} plugin_rules;

/* What an op's validation found out, for its launch. */
typedef struct plugin_plan {
  bool empty;            /* a dimension is 0: no work, the op succeeds without a launch */
  uint64_t row_bytes;    /* embed, matmul, matmul_experts: one row of weights */
  uint64_t expert_bytes; /* matmul_experts: one expert's (out_dim) rows */
  uint64_t slots;        /* matmul_experts: n_tokens * k */
  uint64_t cache_elem;   /* kv_write, attention: bytes of one cache element (4 or 2) */
  bool has_bias;         /* matmul: bias is given */
} plugin_plan;

/* ---- handles, refs and transfers */

/* INVALID_ARGUMENT "<name>: <where><noun> is NULL" for a NULL handle,
 * BAD_HANDLE "<name>: <where>not <kind> <noun> handle" unless it begins with
 * `magic`. `where` is "<entry>: " or "". */
qiao_dev_error *plugin__check_handle(const plugin_rules *rules, const void *handle, uint32_t magic,
                                     const char *where, const char *noun);
/* The same for a queue (messages without an entry name). */
qiao_dev_error *plugin__check_queue(const plugin_rules *rules, const qiao_dev_queue *queue);
/* Checks that `ref` names `bytes` bytes of a buffer of the queue's device,
 * starting at an offset that is a multiple of `align`. A NULL buffer is
 * INVALID_ARGUMENT even for 0 bytes (optional operands are the op's to
 * handle). `what` is "<op>: <operand>" for messages. */
qiao_dev_error *plugin__check_ref(const plugin_rules *rules, const qiao_dev_queue *queue,
                                  const char *what, qiao_dev_ref ref, uint64_t bytes,
                                  uint64_t align);
/* The checks of upload, download and copy (queue, ranges, NULL host pointers
 * when size > 0, overlap). After success, size 0 means nothing to do. */
qiao_dev_error *plugin__check_upload(const plugin_rules *rules, const qiao_dev_queue *queue,
                                     qiao_dev_ref dst, const void *src, uint64_t size);
qiao_dev_error *plugin__check_download(const plugin_rules *rules, const qiao_dev_queue *queue,
                                       const void *dst, qiao_dev_ref src, uint64_t size);
qiao_dev_error *plugin__check_copy(const plugin_rules *rules, const qiao_dev_queue *queue,
                                   qiao_dev_ref dst, qiao_dev_ref src, uint64_t size);

/* ---- the ops: each checks the queue, the args struct and every operand,
 * and fills *plan (written on success only). When plan->empty, the op is
 * done: return success without launching. */

qiao_dev_error *plugin__validate_embed(const plugin_rules *rules, const qiao_dev_queue *queue,
                                       const qiao_dev_embed_args *args, plugin_plan *plan);
qiao_dev_error *plugin__validate_matmul(const plugin_rules *rules, const qiao_dev_queue *queue,
                                        const qiao_dev_matmul_args *args, plugin_plan *plan);
qiao_dev_error *plugin__validate_rmsnorm(const plugin_rules *rules, const qiao_dev_queue *queue,
                                         const qiao_dev_rmsnorm_args *args, plugin_plan *plan);
qiao_dev_error *plugin__validate_rope(const plugin_rules *rules, const qiao_dev_queue *queue,
                                      const qiao_dev_rope_args *args, plugin_plan *plan);
qiao_dev_error *plugin__validate_kv_write(const plugin_rules *rules, const qiao_dev_queue *queue,
                                          const qiao_dev_kv_write_args *args, plugin_plan *plan);
qiao_dev_error *plugin__validate_attention(const plugin_rules *rules, const qiao_dev_queue *queue,
                                           const qiao_dev_attention_args *args, plugin_plan *plan);
qiao_dev_error *plugin__validate_swiglu(const plugin_rules *rules, const qiao_dev_queue *queue,
                                        const qiao_dev_swiglu_args *args, plugin_plan *plan);
qiao_dev_error *plugin__validate_add(const plugin_rules *rules, const qiao_dev_queue *queue,
                                     const qiao_dev_add_args *args, plugin_plan *plan);
qiao_dev_error *plugin__validate_argmax(const plugin_rules *rules, const qiao_dev_queue *queue,
                                        const qiao_dev_argmax_args *args, plugin_plan *plan);
qiao_dev_error *plugin__validate_moe_gate(const plugin_rules *rules, const qiao_dev_queue *queue,
                                          const qiao_dev_moe_gate_args *args, plugin_plan *plan);
qiao_dev_error *plugin__validate_matmul_experts(const plugin_rules *rules,
                                                const qiao_dev_queue *queue,
                                                const qiao_dev_matmul_experts_args *args,
                                                plugin_plan *plan);
qiao_dev_error *plugin__validate_moe_combine(const plugin_rules *rules, const qiao_dev_queue *queue,
                                             const qiao_dev_moe_combine_args *args,
                                             plugin_plan *plan);

/* ---- backend and device entry points */

/* backend_open's checks: both pointers set, options->struct_size covers
 * runtime_abi_major (INVALID_ARGUMENT), that major is ours (UNSUPPORTED). */
qiao_dev_error *plugin__check_backend_options(const plugin_rules *rules,
                                              const qiao_dev_backend_options *options,
                                              qiao_dev_backend **out_backend);
/* The runtime's ABI minor version from backend_open's options (0 when the
 * struct is too small to hold it); a plugin keeps it in its backend handle
 * for plugin__check_device_options. */
uint32_t plugin__runtime_minor(const qiao_dev_backend_options *options);
/* device_open's options: NULL, or a struct_size of at least sizeof(size_t).
 * *out_flags (written on success) gets the QIAO_DEV_OPEN_* flags requested:
 * read only when struct_size covers `flags` and runtime_minor >= 1 (in 1.0
 * those bytes were tail padding: spec §3), else 0. A requested flag that is
 * not in `implemented` fails with UNSUPPORTED. */
qiao_dev_error *plugin__check_device_options(const plugin_rules *rules,
                                             const qiao_dev_device_options *options,
                                             uint32_t runtime_minor, uint32_t implemented,
                                             uint32_t *out_flags);
/* Copies the fields of `from` that lie entirely inside to->struct_size. */
void plugin__copy_properties(const qiao_dev_properties *from, qiao_dev_properties *to);
/* The capability table every GPU plugin implements: weights in F32, F16,
 * BF16, Q8_0, Q4_0; KV caches in F32, F16; every other op F32; false for an
 * op or dtype this ABI version does not know. */
bool plugin__claims(qiao_dev_op op, qiao_dev_dtype dtype);

/* ---- device-side index checks */

/* The queue_synchronize message for the error flags the kernels set (one int
 * per qiao_dev_op, nonzero when that op found an out-of-range index):
 * "embed: ...; kv_write: ..." in msg (cap > 0 bytes). False when no flag is set. */
bool plugin__flags_message(const int flags[QIAO_DEV_OP_COUNT], char *msg, size_t cap);

#endif
