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
#include "plugin_api.h"
#include "plugin_validate.h"
#include "plugin_validate_1_4.h"
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
  uint32_t runtime_minor; /* the runtime's ABI minor (device_open reads flags from 1) */
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

/* The entry points of the function table, cuq__backend_open ... cuq__moe_route
 * (1.4), with qiao_dev_api's types (backends/common/plugin_api.h): the backend
 * and devices in cuda_device.c, buffers, queues and data movement in
 * cuda_memory.c, the ops in cuda_ops.c. */
PLUGIN_DECLARE_ENTRY_POINTS(cuq)
PLUGIN_DECLARE_ENTRY_POINTS_1_4(cuq)

/* ---- errors (cuda_error.c; the error object is backends/common/plugin_error.h) */
/* "cuda: <call>(<what>): cudaErrorX: <description>" with the code mapped from the error. */
qiao_dev_error *cuq__cuda_error(cudaError_t err, const char *call, const char *what);
/* A launcher's failure, for op `op`. */
qiao_dev_error *cuq__launch_error(cuq_status st, const char *op);

/* ---- backend and devices (cuda_device.c) */
/* Makes the device current on the calling thread. */
qiao_dev_error *cuq__select(const qiao_dev_device *device, const char *what);

/* ---- memory, queues, data movement (cuda_memory.c) */
/* This backend's handles and limits for the shared argument checks
 * (backends/common/plugin_validate.h). */
extern const plugin_rules cuq__rules;
/* The device address of a validated ref (NULL for a {NULL, 0} operand). */
void *cuq__ptr(qiao_dev_ref ref);
/* At least `bytes` of queue scratch (grown after synchronizing the stream). */
qiao_dev_error *cuq__scratch(qiao_dev_queue *queue, uint64_t bytes, void **out);
/* The queue's cuBLAS handle, created on first use. */
qiao_dev_error *cuq__cublas(qiao_dev_queue *queue, void **out_handle);

#endif
