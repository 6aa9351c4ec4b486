/* opencl_internal.h: the handles of the qiao OpenCL backend and the helpers
 * its files share. Nothing here is exported from libqiao-opencl.so: the only
 * visible symbol is qiao_device_get_api (see opencl_api.c). */
#ifndef QIAO_OPENCL_INTERNAL_H
#define QIAO_OPENCL_INTERNAL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <stdbool.h>
#include <stdint.h>

#include "plugin_api.h"
#include "plugin_validate.h"
#include "qiao/device.h"

/* Magic numbers at the start of every handle: a handle of another backend (or
 * a freed one) is reported as QIAO_DEV_BAD_HANDLE instead of being used. */
#define OCL_MAGIC_BACKEND 0x51434c42u /* "QCLB" */
#define OCL_MAGIC_DEVICE 0x51434c44u
#define OCL_MAGIC_BUFFER 0x51434c4du
#define OCL_MAGIC_QUEUE 0x51434c51u
#define OCL_MAGIC_DEAD 0xdeadc1u

/* The kernels, in the order of kernel_names in opencl_device.c. The
 * dtype-keyed families are laid out F32, F16, BF16, Q8_0, Q4_0 (qiao_dev_dtype order). */
typedef enum ocl_kernel {
  K_EMBED = 0,           /* + dtype, 5 */
  K_MATMUL = 5,          /* + dtype, 5 */
  K_MATMUL_EXPERTS = 10, /* + dtype, 5 */
  K_KV_WRITE = 15,       /* + (cache is F16), 2 */
  K_ATTENTION = 17,      /* + (cache is F16), 2 */
  K_RMSNORM = 19,
  K_ROPE,
  K_SWIGLU,
  K_ADD,
  K_ARGMAX,
  K_MOE_GATE,
  K_MOE_COMBINE,
  /* (ABI 1.3, 1.4, 1.5) the same three families for the dtypes added later,
   * Q4_K .. Q5_1 (1.3), F8_E4M3_B128 (1.4), IQ4_NL and IQ4_XS (1.5):
   * + (dtype - Q4_K), 11 */
  K_EMBED_1_3,
  K_MATMUL_1_3 = K_EMBED_1_3 + 11,
  K_MATMUL_EXPERTS_1_3 = K_MATMUL_1_3 + 11,
  /* (ABI 1.4) multi-head latent attention and DeepSeekMoE routing */
  K_LATENT_WRITE = K_MATMUL_EXPERTS_1_3 + 11, /* + (cache is F16), 2 */
  K_ATTENTION_LATENT = K_LATENT_WRITE + 2,    /* + (cache is F16), 2 */
  K_MOE_ROUTE = K_ATTENTION_LATENT + 2,
  K_COUNT
} ocl_kernel;

/* The kernel of a dtype-keyed family: `first` for F32 .. Q4_0, `first_1_3`
 * for the dtypes of 1.3, 1.4 and 1.5 (Q4_K .. IQ4_XS). */
static inline ocl_kernel ocl__weight_kernel(ocl_kernel first, ocl_kernel first_1_3,
                                            qiao_dev_dtype dtype) {
  return dtype >= QIAO_DEV_Q4_K ? (ocl_kernel)(first_1_3 + (dtype - QIAO_DEV_Q4_K))
                                : (ocl_kernel)(first + dtype);
}

/* Must match MAX_HEAD_DIM in kernels/common.cl. */
#define OCL_MAX_HEAD_DIM 512

typedef struct ocl_device_info {
  cl_platform_id platform;
  cl_device_id id;
} ocl_device_info;

struct qiao_dev_backend {
  uint32_t magic;
  uint32_t n_devices;
  uint32_t runtime_minor;   /* the runtime's ABI minor (device_open reads flags from 1) */
  ocl_device_info *devices; /* (n_devices) */
};

struct qiao_dev_device {
  uint32_t magic;
  qiao_dev_backend *backend;
  cl_device_id id;
  cl_context context;
  cl_program program; /* every kernel, built once at device_open */
  size_t wg;          /* the work-group size the program was built for (-DWG) */
  uint64_t max_alloc; /* CL_DEVICE_MAX_MEM_ALLOC_SIZE */
};

struct qiao_dev_buffer {
  uint32_t magic;
  qiao_dev_device *device;
  cl_mem mem;
  uint64_t size;
};

/* A qiao queue is one in-order OpenCL command queue with its own kernel
 * objects (clSetKernelArg is not thread-safe, and a queue is used by one
 * thread at a time) and its own error flags: one cl_int per op, set by
 * kernels that find an out-of-range index in device data. */
struct qiao_dev_queue {
  uint32_t magic;
  qiao_dev_device *device;
  cl_command_queue queue;
  cl_kernel kernels[K_COUNT];
  cl_mem flags;     /* (QIAO_DEV_OP_COUNT) cl_int */
  bool flags_dirty; /* a kernel that may set flags ran since the last synchronize */
};

/* The entry points of the function table, ocl__backend_open ... ocl__moe_route,
 * with qiao_dev_api's types (backends/common/plugin_api.h): the backend and
 * devices in opencl_device.c, buffers, queues and data movement in
 * opencl_memory.c, the ops in opencl_ops.c. */
PLUGIN_DECLARE_ENTRY_POINTS(ocl)
PLUGIN_DECLARE_ENTRY_POINTS_1_4(ocl)

/* ---- errors (opencl_error.c; the error object is backends/common/plugin_error.h) */
/* "<call>(<what>): CL_..." with the code mapped from the CL status. */
qiao_dev_error *ocl__cl_error(cl_int status, const char *call, const char *what);
const char *ocl__cl_status_name(cl_int status);

/* ---- backend and devices (opencl_device.c) */
const char *ocl__kernel_name(ocl_kernel kernel);

/* ---- memory, queues, data movement (opencl_memory.c) */
/* This backend's handles and limits for the shared argument checks
 * (backends/common/plugin_validate.h). */
extern const plugin_rules ocl__rules;

/* The kernel source, all backends/opencl/kernels files concatenated (generated at build time). */
extern const char ocl__kernel_source[];

#endif
