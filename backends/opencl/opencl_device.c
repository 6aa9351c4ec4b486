/* opencl_device.c: the backend (every device of every OpenCL platform), device
 * properties, opening a device (one context, the kernels built once) and the
 * capability table. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl_internal.h"

static const char *const kernel_names[K_COUNT] = {"embed_f32",
                                                  "embed_f16",
                                                  "embed_bf16",
                                                  "embed_q8_0",
                                                  "embed_q4_0",
                                                  "matmul_f32",
                                                  "matmul_f16",
                                                  "matmul_bf16",
                                                  "matmul_q8_0",
                                                  "matmul_q4_0",
                                                  "matmul_experts_f32",
                                                  "matmul_experts_f16",
                                                  "matmul_experts_bf16",
                                                  "matmul_experts_q8_0",
                                                  "matmul_experts_q4_0",
                                                  "kv_write_f32",
                                                  "kv_write_f16",
                                                  "attention_f32",
                                                  "attention_f16",
                                                  "rmsnorm",
                                                  "rope",
                                                  "swiglu",
                                                  "add",
                                                  "argmax",
                                                  "moe_gate",
                                                  "moe_combine",
                                                  "embed_q4_k",
                                                  "embed_q5_k",
                                                  "embed_q6_k",
                                                  "embed_q2_k",
                                                  "embed_q3_k",
                                                  "embed_q4_1",
                                                  "embed_q5_0",
                                                  "embed_q5_1",
                                                  "embed_f8_e4m3_b128",
                                                  "embed_iq4_nl",
                                                  "embed_iq4_xs",
                                                  "matmul_q4_k",
                                                  "matmul_q5_k",
                                                  "matmul_q6_k",
                                                  "matmul_q2_k",
                                                  "matmul_q3_k",
                                                  "matmul_q4_1",
                                                  "matmul_q5_0",
                                                  "matmul_q5_1",
                                                  "matmul_f8_e4m3_b128",
                                                  "matmul_iq4_nl",
                                                  "matmul_iq4_xs",
                                                  "matmul_experts_q4_k",
                                                  "matmul_experts_q5_k",
                                                  "matmul_experts_q6_k",
                                                  "matmul_experts_q2_k",
                                                  "matmul_experts_q3_k",
                                                  "matmul_experts_q4_1",
                                                  "matmul_experts_q5_0",
                                                  "matmul_experts_q5_1",
                                                  "matmul_experts_f8_e4m3_b128",
                                                  "matmul_experts_iq4_nl",
                                                  "matmul_experts_iq4_xs",
                                                  "latent_write_f32",
                                                  "latent_write_f16",
                                                  "attention_latent_f32",
                                                  "attention_latent_f16",
                                                  "moe_route"};

const char *ocl__kernel_name(ocl_kernel kernel) {
  return (unsigned)kernel < K_COUNT ? kernel_names[kernel] : "?";
}

/* ---- backend */

qiao_dev_error *ocl__backend_open(const qiao_dev_backend_options *options,
                                  qiao_dev_backend **out_backend) {
  PLUGIN_TRY(plugin__check_backend_options(&ocl__rules, options, out_backend));

  qiao_dev_backend *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "opencl: backend_open: out of memory");
  b->magic = OCL_MAGIC_BACKEND;
  b->runtime_minor = plugin__runtime_minor(options);

  /* No platform (no ICD installed) is an empty backend, not an error. */
  cl_uint n_platforms = 0;
  cl_int st = clGetPlatformIDs(0, NULL, &n_platforms);
  if (st != CL_SUCCESS || n_platforms == 0) {
    *out_backend = b;
    return NULL;
  }
  cl_platform_id *platforms = calloc(n_platforms, sizeof(*platforms));
  if (platforms == NULL) {
    free(b);
    return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "opencl: backend_open: out of memory");
  }
  st = clGetPlatformIDs(n_platforms, platforms, NULL);
  if (st != CL_SUCCESS) {
    free(platforms);
    free(b);
    return ocl__cl_error(st, "clGetPlatformIDs", NULL);
  }
  for (cl_uint p = 0; p < n_platforms; p++) {
    cl_uint n = 0;
    if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n) != CL_SUCCESS || n == 0)
      continue; /* a platform without devices (CL_DEVICE_NOT_FOUND) */
    cl_device_id *ids = calloc(n, sizeof(*ids));
    ocl_device_info *grown = realloc(b->devices, (b->n_devices + n) * sizeof(*grown));
    if (ids == NULL || grown == NULL) {
      free(ids);
      free(grown != NULL ? grown : b->devices);
      free(platforms);
      free(b);
      return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "opencl: backend_open: out of memory");
    }
    b->devices = grown;
    if (clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, n, ids, NULL) == CL_SUCCESS) {
      for (cl_uint d = 0; d < n; d++) {
        b->devices[b->n_devices].platform = platforms[p];
        b->devices[b->n_devices].id = ids[d];
        b->n_devices++;
      }
    }
    free(ids);
  }
  free(platforms);
  *out_backend = b;
  return NULL;
}

void ocl__backend_close(qiao_dev_backend *backend) {
  if (backend == NULL || backend->magic != OCL_MAGIC_BACKEND) return;
  backend->magic = OCL_MAGIC_DEAD;
  free(backend->devices);
  free(backend);
}

static qiao_dev_error *check_backend(const qiao_dev_backend *backend, const char *where) {
  return plugin__check_handle(&ocl__rules, backend, OCL_MAGIC_BACKEND, where, "backend");
}

qiao_dev_error *ocl__device_count(qiao_dev_backend *backend, uint32_t *out_count) {
  qiao_dev_error *e = check_backend(backend, "device_count: ");
  if (e != NULL) return e;
  if (out_count == NULL)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: device_count: out_count is NULL");
  *out_count = backend->n_devices;
  return NULL;
}

/* ---- properties */

static void info_string(cl_device_id id, cl_device_info what, char *dst, size_t cap) {
  char buf[512] = {0};
  if (clGetDeviceInfo(id, what, sizeof(buf) - 1, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
  snprintf(dst, cap, "%s", buf);
}

static uint64_t info_u64(cl_device_id id, cl_device_info what) {
  cl_ulong v = 0;
  if (clGetDeviceInfo(id, what, sizeof(v), &v, NULL) != CL_SUCCESS) v = 0;
  return v;
}

static uint32_t info_u32(cl_device_id id, cl_device_info what) {
  cl_uint v = 0;
  if (clGetDeviceInfo(id, what, sizeof(v), &v, NULL) != CL_SUCCESS) v = 0;
  return v;
}

qiao_dev_error *ocl__device_get_properties(qiao_dev_backend *backend, uint32_t index,
                                           qiao_dev_properties *properties) {
  qiao_dev_error *e = check_backend(backend, "device_get_properties: ");
  if (e != NULL) return e;
  if (index >= backend->n_devices)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT,
                         "opencl: device_get_properties: device index %u out of range (%u devices)",
                         (unsigned)index, (unsigned)backend->n_devices);
  if (properties == NULL || properties->struct_size < sizeof(size_t))
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT,
                         "opencl: device_get_properties: properties is NULL or too small");
  cl_device_id id = backend->devices[index].id;
  qiao_dev_properties p = {0};
  info_string(id, CL_DEVICE_NAME, p.name, sizeof(p.name));
  info_string(id, CL_DEVICE_VENDOR, p.vendor, sizeof(p.vendor));
  info_string(id, CL_DRIVER_VERSION, p.driver_version, sizeof(p.driver_version));
  p.memory_bytes = info_u64(id, CL_DEVICE_GLOBAL_MEM_SIZE);
  p.max_buffer_bytes = info_u64(id, CL_DEVICE_MAX_MEM_ALLOC_SIZE);
  p.compute_units = info_u32(id, CL_DEVICE_MAX_COMPUTE_UNITS);
  /* No HOST_MEMORY (no buffer_wrap_host: the runtime uploads weights once);
   * batch-invariant mode is always available (see ocl__device_open). */
  p.flags = QIAO_DEV_FLAG_BATCH_INVARIANT;
  plugin__copy_properties(&p, properties);
  return NULL;
}

/* ---- opening a device */

/* Builds the program for work-group size wg; on failure the error carries the build log. */
static qiao_dev_error *build_program(qiao_dev_device *d, size_t wg, cl_program *out) {
  const char *src = ocl__kernel_source;
  cl_int st;
  cl_program prog = clCreateProgramWithSource(d->context, 1, &src, NULL, &st);
  if (st != CL_SUCCESS) return ocl__cl_error(st, "clCreateProgramWithSource", "qiao kernels");
  char options[128];
  snprintf(options, sizeof(options), "-cl-std=CL1.2 -DWG=%zu", wg);
  st = clBuildProgram(prog, 1, &d->id, options, NULL, NULL);
  if (st != CL_SUCCESS) {
    char log[4096] = {0};
    clGetProgramBuildInfo(prog, d->id, CL_PROGRAM_BUILD_LOG, sizeof(log) - 1, log, NULL);
    clReleaseProgram(prog);
    return plugin__error(st == CL_OUT_OF_HOST_MEMORY ? QIAO_DEV_OUT_OF_MEMORY : QIAO_DEV_INTERNAL,
                         "opencl: clBuildProgram(qiao kernels, %s): %s; build log:\n%s", options,
                         ocl__cl_status_name(st), log);
  }
  *out = prog;
  return NULL;
}

/* The smallest CL_KERNEL_WORK_GROUP_SIZE over the kernels of a built program. */
static qiao_dev_error *kernel_wg_limit(qiao_dev_device *d, cl_program prog, size_t *out) {
  size_t limit = SIZE_MAX;
  for (int k = 0; k < K_COUNT; k++) {
    cl_int st;
    cl_kernel kernel = clCreateKernel(prog, kernel_names[k], &st);
    if (st != CL_SUCCESS) return ocl__cl_error(st, "clCreateKernel", kernel_names[k]);
    size_t v = 0;
    st = clGetKernelWorkGroupInfo(kernel, d->id, CL_KERNEL_WORK_GROUP_SIZE, sizeof(v), &v, NULL);
    clReleaseKernel(kernel);
    if (st != CL_SUCCESS) return ocl__cl_error(st, "clGetKernelWorkGroupInfo", kernel_names[k]);
    if (v < limit) limit = v;
  }
  *out = limit;
  return NULL;
}

static size_t floor_pow2(size_t v) {
  size_t p = 1;
  while (p * 2 <= v)
    p *= 2;
  return p;
}

qiao_dev_error *ocl__device_open(qiao_dev_backend *backend, uint32_t index,
                                 const qiao_dev_device_options *options,
                                 qiao_dev_device **out_device) {
  qiao_dev_error *e = check_backend(backend, "device_open: ");
  if (e != NULL) return e;
  if (out_device == NULL)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: device_open: out_device is NULL");
  if (index >= backend->n_devices)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT,
                         "opencl: device_open: device index %u out of range (%u devices)",
                         (unsigned)index, (unsigned)backend->n_devices);
  /* Batch-invariant mode needs nothing different here: every kernel
   * computes each output row in one work-group (or work-item) whose shape
   * and order of summation follow from WG and the row's own sizes only,
   * never from the number of rows (see opencl_ops.c), and WG is fixed when
   * the device is opened. So the flag is claimed and the mode accepted. */
  uint32_t flags = 0;
  PLUGIN_TRY(plugin__check_device_options(&ocl__rules, options, backend->runtime_minor,
                                          QIAO_DEV_OPEN_BATCH_INVARIANT, &flags));

  qiao_dev_device *d = calloc(1, sizeof(*d));
  if (d == NULL) return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "opencl: device_open: out of memory");
  d->backend = backend;
  d->id = backend->devices[index].id;
  d->max_alloc = info_u64(d->id, CL_DEVICE_MAX_MEM_ALLOC_SIZE);

  cl_context_properties props[] = {CL_CONTEXT_PLATFORM,
                                   (cl_context_properties)backend->devices[index].platform, 0};
  cl_int st;
  d->context = clCreateContext(props, 1, &d->id, NULL, NULL, &st);
  if (st != CL_SUCCESS) {
    free(d);
    return ocl__cl_error(st, "clCreateContext", "device_open");
  }

  /* Work-group size: 64 where the device allows it (a power of two; the
   * reductions need at least 8), lowered if some kernel cannot run that wide. */
  size_t dev_max = 0, item_max[3] = {0, 0, 0};
  clGetDeviceInfo(d->id, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof(dev_max), &dev_max, NULL);
  clGetDeviceInfo(d->id, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof(item_max), item_max, NULL);
  if (item_max[0] != 0 && item_max[0] < dev_max) dev_max = item_max[0];
  size_t wg = floor_pow2(dev_max < 64 ? dev_max : 64);
  for (;;) {
    if (wg < 8) {
      e = plugin__error(QIAO_DEV_UNSUPPORTED,
                        "opencl: device_open: the device runs work-groups of fewer than 8 items");
      break;
    }
    cl_program prog;
    e = build_program(d, wg, &prog);
    if (e != NULL) break;
    size_t limit = 0;
    e = kernel_wg_limit(d, prog, &limit);
    if (e == NULL && limit >= wg) {
      d->program = prog;
      d->wg = wg;
      break;
    }
    clReleaseProgram(prog);
    if (e != NULL) break;
    wg = floor_pow2(limit);
  }
  if (e != NULL) {
    clReleaseContext(d->context);
    free(d);
    return e;
  }
  d->magic = OCL_MAGIC_DEVICE;
  *out_device = d;
  return NULL;
}

void ocl__device_close(qiao_dev_device *device) {
  if (device == NULL || device->magic != OCL_MAGIC_DEVICE) return;
  device->magic = OCL_MAGIC_DEAD;
  clReleaseProgram(device->program);
  clReleaseContext(device->context);
  free(device);
}

/* ---- capabilities: exactly what the kernels implement and tests/opencl verifies */

qiao_dev_error *ocl__op_supported(qiao_dev_device *device, qiao_dev_op op, qiao_dev_dtype dtype,
                                  uint32_t *out_supported) {
  PLUGIN_TRY(
      plugin__check_handle(&ocl__rules, device, OCL_MAGIC_DEVICE, "op_supported: ", "device"));
  if (out_supported == NULL)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: op_supported: out_supported is NULL");
  /* and the block types of 1.3, FP8 of 1.4 and IQ4_NL / IQ4_XS of 1.5 for
   * embed, matmul and matmul_experts, and (1.4) the latent cache ops and
   * moe_route */
  bool weight_op =
      op == QIAO_DEV_OP_EMBED || op == QIAO_DEV_OP_MATMUL || op == QIAO_DEV_OP_MATMUL_EXPERTS;
  bool cache = dtype == QIAO_DEV_F32 || dtype == QIAO_DEV_F16;
  *out_supported =
      plugin__claims(op, dtype) ||
      (weight_op && dtype >= QIAO_DEV_Q4_K && dtype <= QIAO_DEV_IQ4_XS) ||
      ((op == QIAO_DEV_OP_LATENT_WRITE || op == QIAO_DEV_OP_ATTENTION_LATENT) && cache) ||
      (op == QIAO_DEV_OP_MOE_ROUTE && dtype == QIAO_DEV_F32);
  return NULL;
}
