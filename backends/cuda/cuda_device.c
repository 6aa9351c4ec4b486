/* cuda_device.c: the backend (every CUDA device the runtime sees), device
 * properties, opening a device and the capability table. A machine without a
 * GPU or driver is a backend with zero devices, not an error, so that
 * `qiao devices` works everywhere. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

/* ---- backend */

qiao_dev_error *cuq__backend_open(const qiao_dev_backend_options *options,
                                  qiao_dev_backend **out_backend) {
  PLUGIN_TRY(plugin__check_backend_options(&cuq__rules, options, out_backend));

  qiao_dev_backend *b = calloc(1, sizeof(*b));
  if (b == NULL) return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "cuda: backend_open: out of memory");
  b->magic = CUQ_MAGIC_BACKEND;
  b->runtime_minor = plugin__runtime_minor(options);
  cudaDriverGetVersion(&b->driver_version); /* 0 when no driver is installed */
  cudaRuntimeGetVersion(&b->runtime_version);

  /* No driver (cudaErrorInsufficientDriver) or no GPU (cudaErrorNoDevice) is
   * an empty backend. cudaGetLastError clears the runtime's last error. */
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= 0) {
    (void)cudaGetLastError();
    *out_backend = b;
    return NULL;
  }
  b->devices = calloc((size_t)count, sizeof(*b->devices));
  if (b->devices == NULL) {
    free(b);
    return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "cuda: backend_open: out of memory");
  }
  for (int i = 0; i < count; i++) {
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) { /* a device in a bad state */
      (void)cudaGetLastError();
      continue;
    }
    cuq_device_info *d = &b->devices[b->n_devices++];
    d->ordinal = i;
    memcpy(d->name, prop.name, sizeof(d->name) - 1); /* prop.name is 256 bytes */
    d->name[sizeof(d->name) - 1] = '\0';
    d->memory_bytes = prop.totalGlobalMem;
    d->sm_count = prop.multiProcessorCount > 0 ? (uint32_t)prop.multiProcessorCount : 1;
    d->cc_major = prop.major;
    d->cc_minor = prop.minor;
  }
  *out_backend = b;
  return NULL;
}

void cuq__backend_close(qiao_dev_backend *backend) {
  if (backend == NULL || backend->magic != CUQ_MAGIC_BACKEND) return;
  backend->magic = CUQ_MAGIC_DEAD;
  free(backend->devices);
  free(backend);
}

static qiao_dev_error *check_backend(const qiao_dev_backend *backend, const char *where) {
  return plugin__check_handle(&cuq__rules, backend, CUQ_MAGIC_BACKEND, where, "backend");
}

static qiao_dev_error *check_index(const qiao_dev_backend *backend, uint32_t index,
                                   const char *fn) {
  if (index < backend->n_devices) return NULL;
  if (backend->n_devices == 0)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT,
                         "cuda: %s: device index %u out of range: no CUDA device is available "
                         "(no GPU, or no NVIDIA driver; driver version %d)",
                         fn, (unsigned)index, backend->driver_version);
  return plugin__error(QIAO_DEV_INVALID_ARGUMENT,
                       "cuda: %s: device index %u out of range (%u devices)", fn, (unsigned)index,
                       (unsigned)backend->n_devices);
}

qiao_dev_error *cuq__device_count(qiao_dev_backend *backend, uint32_t *out_count) {
  qiao_dev_error *e = check_backend(backend, "device_count: ");
  if (e != NULL) return e;
  if (out_count == NULL)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "cuda: device_count: out_count is NULL");
  *out_count = backend->n_devices;
  return NULL;
}

/* ---- properties */

qiao_dev_error *cuq__device_get_properties(qiao_dev_backend *backend, uint32_t index,
                                           qiao_dev_properties *properties) {
  qiao_dev_error *e = check_backend(backend, "device_get_properties: ");
  if (e == NULL) e = check_index(backend, index, "device_get_properties");
  if (e != NULL) return e;
  if (properties == NULL || properties->struct_size < sizeof(size_t))
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT,
                         "cuda: device_get_properties: properties is NULL or too small");
  const cuq_device_info *d = &backend->devices[index];
  qiao_dev_properties p;
  memset(&p, 0, sizeof(p));
  memcpy(p.name, d->name, sizeof(p.name));
  snprintf(p.vendor, sizeof(p.vendor), "NVIDIA");
  snprintf(p.driver_version, sizeof(p.driver_version), "driver %d.%d, runtime %d.%d, sm_%d%d",
           backend->driver_version / 1000, backend->driver_version % 1000 / 10,
           backend->runtime_version / 1000, backend->runtime_version % 1000 / 10, d->cc_major,
           d->cc_minor);
  p.memory_bytes = d->memory_bytes;
  p.max_buffer_bytes = d->memory_bytes; /* cudaMalloc has no per-allocation limit below it */
  p.compute_units = d->sm_count;
  p.flags = 0;
  plugin__copy_properties(&p, properties);
  return NULL;
}

/* ---- opening a device */

qiao_dev_error *cuq__select(const qiao_dev_device *device, const char *what) {
  cudaError_t err = cudaSetDevice(device->info.ordinal);
  return err == cudaSuccess ? NULL : cuq__cuda_error(err, "cudaSetDevice", what);
}

qiao_dev_error *cuq__device_open(qiao_dev_backend *backend, uint32_t index,
                                 const qiao_dev_device_options *options,
                                 qiao_dev_device **out_device) {
  qiao_dev_error *e = check_backend(backend, "device_open: ");
  if (e != NULL) return e;
  if (out_device == NULL)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "cuda: device_open: out_device is NULL");
  if ((e = check_index(backend, index, "device_open")) != NULL) return e;
  /* No batch-invariant mode (QIAO_DEV_FLAG_BATCH_INVARIANT is not claimed):
   * cuBLAS and the matmul kernels pick their blocking, hence the order of
   * each sum, from the number of rows. Requesting it is UNSUPPORTED. */
  uint32_t flags = 0;
  PLUGIN_TRY(plugin__check_device_options(&cuq__rules, options, backend->runtime_minor, 0, &flags));
  qiao_dev_device *d = calloc(1, sizeof(*d));
  if (d == NULL) return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "cuda: device_open: out of memory");
  d->backend = backend;
  d->info = backend->devices[index];
  const char *no_cublas = getenv("QIAO_CUDA_NO_CUBLAS");
  d->use_cublas = no_cublas == NULL || strcmp(no_cublas, "1") != 0;
  /* Create the primary context now, so that a broken device fails here. */
  if ((e = cuq__select(d, "device_open")) == NULL) {
    cudaError_t err = cudaFree(NULL);
    if (err != cudaSuccess) e = cuq__cuda_error(err, "cudaFree(NULL)", "device_open: context");
  }
  if (e != NULL) {
    free(d);
    return e;
  }
  d->magic = CUQ_MAGIC_DEVICE;
  *out_device = d;
  return NULL;
}

void cuq__device_close(qiao_dev_device *device) {
  if (device == NULL || device->magic != CUQ_MAGIC_DEVICE) return;
  device->magic = CUQ_MAGIC_DEAD;
  free(device); /* the primary context stays for the life of the process */
}

/* ---- capabilities: exactly what the kernels implement: the shared GPU
 * table, (1.3) the block types Q4_K .. Q5_1, (1.4) F8_E4M3_B128 and (1.5)
 * IQ4_NL and IQ4_XS as weights, and (1.4) the latent cache ops (cache F32 or F16) and moe_route */

qiao_dev_error *cuq__op_supported(qiao_dev_device *device, qiao_dev_op op, qiao_dev_dtype dtype,
                                  uint32_t *out_supported) {
  PLUGIN_TRY(
      plugin__check_handle(&cuq__rules, device, CUQ_MAGIC_DEVICE, "op_supported: ", "device"));
  if (out_supported == NULL)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "cuda: op_supported: out_supported is NULL");
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
