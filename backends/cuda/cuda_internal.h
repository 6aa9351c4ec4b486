/* cuda_internal.h: the handles of the qiao CUDA backend and the helpers its
 * C files share. Nothing here is exported from libqiao-cuda.so: the only
 * visible symbol is qiao_device_get_api (see cuda_api.c).
 *
 * The CUDA runtime's "current device" is per host thread, so every entry
 * point that calls CUDA first selects its device with cudaSetDevice. */
#ifndef QIAO_CUDA_INTERNAL_H
#define QIAO_CUDA_INTERNAL_H

#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cuda_launch.h"
#include "plugin_validate.h"
#include "qiao/device.h"

/* Magic numbers at the start of every handle: a handle of another backend (or
 * a freed one) is reported as QIAO_DEV_BAD_HANDLE instead of being used. */
#define CUQ_MAGIC_BACKEND 0x51435542u /* "QCUB" */
#define CUQ_MAGIC_DEVICE 0x51435544u
#define CUQ_MAGIC_BUFFER 0x5143554du
#define CUQ_MAGIC_QUEUE 0x51435551u
#define CUQ_MAGIC_DEAD 0xdeadc0dau

/* What backend_open learned about one GPU. */
typedef struct cuq_device_info {
  int ordinal;
  char name[128]; /* as qiao_dev_properties.name */
  uint64_t memory_bytes;
  uint32_t sm_count;
  int cc_major, cc_minor;
} cuq_device_info;

struct qiao_dev_backend {
  uint32_t magic;
  uint32_t n_devices;
  int driver_version, runtime_version;
  cuq_device_info *devices; /* (n_devices) */
};

struct qiao_dev_device {
  uint32_t magic;
  qiao_dev_backend *backend;
  cuq_device_info info;
  bool use_cublas; /* false when QIAO_CUDA_NO_CUBLAS=1: the tiled kernel instead */
};

struct qiao_dev_buffer {
  uint32_t magic;
  qiao_dev_device *device;
  void *ptr; /* cudaMalloc'd, NULL when size is 0 */
  uint64_t size;
};

/* A qiao queue is one CUDA stream with its own error flags (one int per op,
 * set by kernels that find an out-of-range index in device data), a cuBLAS
 * handle bound to the stream (created on first use) and a scratch area that
 * grows on demand (the ops of one stream run in order, so one area serves
 * every op). */
struct qiao_dev_queue {
  uint32_t magic;
  qiao_dev_device *device;
  cudaStream_t stream;
  int *flags;       /* device (QIAO_DEV_OP_COUNT) ints */
  bool flags_dirty; /* a kernel that may set flags ran since the last synchronize */
  void *cublas;     /* cublasHandle_t, NULL until the first cuBLAS matmul */
  void *scratch;
  uint64_t scratch_bytes;
};

/* ---- errors (cuda_error.c; the error object is backends/common/plugin_error.h) */
/* "cuda: <call>(<what>): cudaErrorX: <description>" with the code mapped from the error. */
qiao_dev_error *cuq__cuda_error(cudaError_t err, const char *call, const char *what);
/* A launcher's failure, for op `op`. */
qiao_dev_error *cuq__launch_error(cuq_status st, const char *op);

/* ---- backend and devices (cuda_device.c) */
qiao_dev_error *cuq__backend_open(const qiao_dev_backend_options *options,
                                  qiao_dev_backend **out_backend);
void cuq__backend_close(qiao_dev_backend *backend);
qiao_dev_error *cuq__device_count(qiao_dev_backend *backend, uint32_t *out_count);
qiao_dev_error *cuq__device_get_properties(qiao_dev_backend *backend, uint32_t index,
                                           qiao_dev_properties *properties);
qiao_dev_error *cuq__device_open(qiao_dev_backend *backend, uint32_t index,
                                 const qiao_dev_device_options *options,
                                 qiao_dev_device **out_device);
void cuq__device_close(qiao_dev_device *device);
qiao_dev_error *cuq__op_supported(qiao_dev_device *device, qiao_dev_op op, qiao_dev_dtype dtype,
                                  uint32_t *out_supported);
/* Makes the device current on the calling thread. */
qiao_dev_error *cuq__select(const qiao_dev_device *device, const char *what);

/* ---- memory, queues, data movement (cuda_memory.c) */
qiao_dev_error *cuq__buffer_create(qiao_dev_device *device, uint64_t size,
                                   qiao_dev_buffer **out_buffer);
void cuq__buffer_destroy(qiao_dev_buffer *buffer);
qiao_dev_error *cuq__queue_create(qiao_dev_device *device, qiao_dev_queue **out_queue);
void cuq__queue_destroy(qiao_dev_queue *queue);
qiao_dev_error *cuq__queue_synchronize(qiao_dev_queue *queue);
qiao_dev_error *cuq__upload(qiao_dev_queue *queue, qiao_dev_ref dst, const void *src,
                            uint64_t size);
qiao_dev_error *cuq__download(qiao_dev_queue *queue, void *dst, qiao_dev_ref src, uint64_t size);
qiao_dev_error *cuq__copy(qiao_dev_queue *queue, qiao_dev_ref dst, qiao_dev_ref src, uint64_t size);
/* This backend's handles and limits for the shared argument checks
 * (backends/common/plugin_validate.h). */
extern const plugin_rules cuq__rules;
/* The device address of a validated ref (NULL for a {NULL, 0} operand). */
void *cuq__ptr(qiao_dev_ref ref);
/* At least `bytes` of queue scratch (grown after synchronizing the stream). */
qiao_dev_error *cuq__scratch(qiao_dev_queue *queue, uint64_t bytes, void **out);
/* The queue's cuBLAS handle, created on first use. */
qiao_dev_error *cuq__cublas(qiao_dev_queue *queue, void **out_handle);

/* ---- ops (cuda_ops.c) */
qiao_dev_error *cuq__embed(qiao_dev_queue *queue, const qiao_dev_embed_args *args);
qiao_dev_error *cuq__matmul(qiao_dev_queue *queue, const qiao_dev_matmul_args *args);
qiao_dev_error *cuq__rmsnorm(qiao_dev_queue *queue, const qiao_dev_rmsnorm_args *args);
qiao_dev_error *cuq__rope(qiao_dev_queue *queue, const qiao_dev_rope_args *args);
qiao_dev_error *cuq__kv_write(qiao_dev_queue *queue, const qiao_dev_kv_write_args *args);
qiao_dev_error *cuq__attention(qiao_dev_queue *queue, const qiao_dev_attention_args *args);
qiao_dev_error *cuq__swiglu(qiao_dev_queue *queue, const qiao_dev_swiglu_args *args);
qiao_dev_error *cuq__add(qiao_dev_queue *queue, const qiao_dev_add_args *args);
qiao_dev_error *cuq__argmax(qiao_dev_queue *queue, const qiao_dev_argmax_args *args);
qiao_dev_error *cuq__moe_gate(qiao_dev_queue *queue, const qiao_dev_moe_gate_args *args);
qiao_dev_error *cuq__matmul_experts(qiao_dev_queue *queue,
                                    const qiao_dev_matmul_experts_args *args);
qiao_dev_error *cuq__moe_combine(qiao_dev_queue *queue, const qiao_dev_moe_combine_args *args);

#endif
