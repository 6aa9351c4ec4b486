/* The CPU backend's function table and its object lifetimes: errors, the
 * backend, the one device, buffers in host memory, queues that execute in
 * order at once (the spec allows synchronous queues), and data movement. */
#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT (plugin builds outside qiao's flags) */
#endif
#ifdef __linux__
#include <sched.h>
#endif
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cpu_backend.h"
#include "cpu_internal.h"
#include "cpu_ops.h"

/* ---- Errors ----------------------------------------------------------------- */
static qiao_dev_code error_code(const qiao_dev_error *error) {
  if (error == NULL) return QIAO_DEV_OK;
  if (error->magic != QIAO__CPU_MAGIC_ERROR) return QIAO_DEV_INTERNAL;
  return error->code;
}

static const char *error_message(const qiao_dev_error *error) {
  if (error == NULL) return "";
  if (error->magic != QIAO__CPU_MAGIC_ERROR) return "not a cpu backend error";
  return error->message;
}

static void error_destroy(qiao_dev_error *error) {
  qiao__cpu_error_free(error);
}

/* ---- Backend ---------------------------------------------------------------- */
static qiao_dev_error *backend_open(const qiao_dev_backend_options *options,
                                    qiao_dev_backend **out_backend) {
  if (options == NULL || out_backend == NULL)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "backend_open: %s is NULL",
                           options == NULL ? "options" : "out_backend");
  size_t needed = sizeof(qiao_dev_backend_options); /* 1.0's 16 bytes */
  if (options->struct_size < needed)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "backend_open: options struct_size %zu is smaller than ABI 1.0's %zu",
                           options->struct_size, needed);
  if (options->runtime_abi_major != QIAO_DEVICE_ABI_MAJOR)
    return qiao__cpu_error(QIAO_DEV_UNSUPPORTED,
                           "backend_open: runtime device ABI major %u differs from the cpu "
                           "backend's %u",
                           options->runtime_abi_major, QIAO_DEVICE_ABI_MAJOR);
  qiao_dev_backend *backend = calloc(1, sizeof(*backend));
  if (backend == NULL) return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "backend_open: no memory");
  backend->magic = QIAO__CPU_MAGIC_BACKEND;
  backend->runtime_minor = options->runtime_abi_minor;
  *out_backend = backend;
  return NULL;
}

static void backend_close(qiao_dev_backend *backend) {
  if (backend == NULL || backend->magic != QIAO__CPU_MAGIC_BACKEND) return;
  backend->magic = QIAO__CPU_MAGIC_DEAD;
  free(backend);
}

static qiao_dev_error *check_backend(const char *fn, const qiao_dev_backend *backend) {
  if (backend == NULL) return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: backend is NULL", fn);
  if (backend->magic != QIAO__CPU_MAGIC_BACKEND)
    return qiao__cpu_error(QIAO_DEV_BAD_HANDLE, "%s: backend is not a live cpu backend", fn);
  return NULL;
}

static qiao_dev_error *check_device(const char *fn, const qiao_dev_device *device) {
  if (device == NULL) return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: device is NULL", fn);
  if (device->magic != QIAO__CPU_MAGIC_DEVICE)
    return qiao__cpu_error(QIAO_DEV_BAD_HANDLE, "%s: device is not a live cpu device", fn);
  return NULL;
}

static qiao_dev_error *device_count(qiao_dev_backend *backend, uint32_t *out_count) {
  qiao_dev_error *error = check_backend("device_count", backend);
  if (error) return error;
  if (out_count == NULL)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "device_count: out_count is NULL");
  *out_count = 1;
  return NULL;
}

static qiao_dev_error *check_index(const char *fn, uint32_t index) {
  if (index != 0)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: device index %u >= device count 1", fn,
                           index);
  return NULL;
}

/* Copies the value after "key<spaces>: " of the first matching line of
 * /proc/cpuinfo into out; leaves out unchanged when there is none. */
static void cpuinfo_field(const char *key, char *out, size_t size) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f == NULL) return;
  char line[512];
  size_t key_len = strlen(key);
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, key, key_len) != 0) continue;
    const char *p = line + key_len;
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p != ':') continue;
    p++;
    while (*p == ' ')
      p++;
    size_t len = strcspn(p, "\n");
    if (len == 0) continue;
    if (len >= size) len = size - 1;
    memcpy(out, p, len);
    out[len] = '\0';
    break;
  }
  fclose(f);
}

static uint64_t physical_memory(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return (uint64_t)1 << 32;
  return (uint64_t)pages * (uint64_t)page;
}

static uint32_t online_cores(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (uint32_t)n : 1;
}

/* The default thread count: the CPUs this process may run on, which is
 * fewer than online when it was bound (mpirun binds each rank to a core by
 * default; taskset, cgroups): more threads than that take turns on them,
 * and a thread that waits for another at each op's end waits a time slice. */
static uint32_t usable_cores(void) {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
    return (uint32_t)CPU_COUNT(&set);
#endif
  return online_cores();
}

static const qiao__cpu_kernels *best_kernels(void) {
  const qiao__cpu_kernels *k = qiao__cpu_kernels_avx512();
  if (k == NULL) k = qiao__cpu_kernels_avx2();
  return k != NULL ? k : qiao__cpu_kernels_scalar();
}

static qiao_dev_error *select_kernels(const qiao__cpu_kernels **out);

static qiao_dev_error *device_get_properties(qiao_dev_backend *backend, uint32_t index,
                                             qiao_dev_properties *properties) {
  qiao_dev_error *error = check_backend("device_get_properties", backend);
  if (error == NULL) error = check_index("device_get_properties", index);
  if (error) return error;
  if (properties == NULL)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "device_get_properties: properties is NULL");
  size_t n = properties->struct_size;
  if (n < sizeof(size_t))
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "device_get_properties: struct_size %zu is too small", n);
  qiao_dev_properties full;
  memset(&full, 0, sizeof(full));
  snprintf(full.name, sizeof(full.name), "cpu");
  cpuinfo_field("model name", full.name, sizeof(full.name));
  snprintf(full.vendor, sizeof(full.vendor), "unknown");
  cpuinfo_field("vendor_id", full.vendor, sizeof(full.vendor));
  snprintf(full.driver_version, sizeof(full.driver_version), "qiao-cpu %s (best kernels: %s)",
           QIAO__CPU_VERSION, best_kernels()->name);
  full.memory_bytes = physical_memory();
  full.max_buffer_bytes = full.memory_bytes;
  full.compute_units = online_cores();
  full.flags = QIAO_DEV_FLAG_HOST_MEMORY | QIAO_DEV_FLAG_BATCH_INVARIANT;
  /* The kernels device_open would choose (QIAO_CPU_ISA): Q8 activations
   * where they have the kernel for them. */
  const qiao__cpu_kernels *kernels = NULL;
  qiao_dev_error *isa_error = select_kernels(&kernels);
  qiao__cpu_error_free(isa_error);
  if (isa_error == NULL && kernels->gemm_q8[QIAO_DEV_Q8_0] != NULL)
    full.flags |= QIAO_DEV_FLAG_Q8_ACTIVATIONS;
#define PUT(field)                                                                                 \
  if (offsetof(qiao_dev_properties, field) + sizeof(full.field) <= n)                              \
    memcpy(&properties->field, &full.field, sizeof(full.field));
  PUT(name)
  PUT(vendor)
  PUT(driver_version)
  PUT(memory_bytes)
  PUT(max_buffer_bytes)
  PUT(compute_units)
  PUT(flags)
#undef PUT
  return NULL;
}

/* QIAO_CPU_ISA=auto|scalar|avx2|avx512 (see cpu_backend.h). */
static qiao_dev_error *select_kernels(const qiao__cpu_kernels **out) {
  const char *isa = getenv("QIAO_CPU_ISA");
  if (isa == NULL || *isa == '\0' || strcmp(isa, "auto") == 0) {
    *out = best_kernels();
    return NULL;
  }
  const qiao__cpu_kernels *k;
  if (strcmp(isa, "scalar") == 0)
    k = qiao__cpu_kernels_scalar();
  else if (strcmp(isa, "avx2") == 0)
    k = qiao__cpu_kernels_avx2();
  else if (strcmp(isa, "avx512") == 0)
    k = qiao__cpu_kernels_avx512();
  else
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "device_open: QIAO_CPU_ISA '%s' is not auto, scalar, avx2 or avx512",
                           isa);
  if (k == NULL)
    return qiao__cpu_error(QIAO_DEV_UNSUPPORTED,
                           "device_open: QIAO_CPU_ISA=%s but this processor lacks it", isa);
  *out = k;
  return NULL;
}

static qiao_dev_error *device_open(qiao_dev_backend *backend, uint32_t index,
                                   const qiao_dev_device_options *options,
                                   qiao_dev_device **out_device) {
  qiao_dev_error *error = check_backend("device_open", backend);
  if (error == NULL) error = check_index("device_open", index);
  if (error) return error;
  if (out_device == NULL)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "device_open: out_device is NULL");
  uint32_t n_threads = 0, flags = 0;
  if (options != NULL) {
    if (options->struct_size < sizeof(qiao_dev_device_options)) /* 16 in every version */
      return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                             "device_open: options struct_size %zu is smaller than ABI 1.0's %zu",
                             options->struct_size, sizeof(qiao_dev_device_options));
    n_threads = options->n_threads;
    /* flags lies in 1.0's tail padding: a 1.0 runtime may leave garbage
     * there, so it counts only from a 1.1 runtime (device-abi.md §3). */
    if (backend->runtime_minor >= 1 &&
        options->struct_size >= offsetof(qiao_dev_device_options, flags) + sizeof(uint32_t))
      flags = options->flags;
  }
  if (flags & ~(uint32_t)QIAO_DEV_OPEN_BATCH_INVARIANT)
    return qiao__cpu_error(QIAO_DEV_UNSUPPORTED,
                           "device_open: unknown flags 0x%x requested (a newer ABI's?)",
                           flags & ~(uint32_t)QIAO_DEV_OPEN_BATCH_INVARIANT);
  if (n_threads > 1024)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "device_open: n_threads %u is more than 1024",
                           n_threads);
  if (n_threads == 0) n_threads = usable_cores();
  const qiao__cpu_kernels *kernels = NULL;
  error = select_kernels(&kernels);
  if (error) return error;
  qiao_dev_device *device = calloc(1, sizeof(*device));
  if (device == NULL) return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "device_open: no memory");
  if (pthread_mutex_init(&device->repack_lock, NULL) != 0) {
    free(device);
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "device_open: cannot create a mutex");
  }
  if (n_threads > 1) {
    error = qiao__cpu_pool_create(n_threads, &device->pool);
    if (error) {
      pthread_mutex_destroy(&device->repack_lock);
      free(device);
      return error;
    }
  }
  device->magic = QIAO__CPU_MAGIC_DEVICE;
  device->n_threads = n_threads;
  device->backend = backend;
  device->kernels = kernels;
  device->batch_invariant = (flags & QIAO_DEV_OPEN_BATCH_INVARIANT) != 0;
  device->max_buffer_bytes = physical_memory();
  *out_device = device;
  return NULL;
}

static void device_close(qiao_dev_device *device) {
  if (device == NULL || device->magic != QIAO__CPU_MAGIC_DEVICE) return;
  device->magic = QIAO__CPU_MAGIC_DEAD;
  qiao__cpu_repack_clear(device);
  pthread_mutex_destroy(&device->repack_lock);
  qiao__cpu_pool_destroy(device->pool);
  free(device);
}

void qiao__cpu_live_buffers(const qiao_dev_device *device, uint64_t *out_count,
                            uint64_t *out_bytes) {
  *out_count = atomic_load(&device->live_buffers);
  *out_bytes = atomic_load(&device->live_bytes);
}

static qiao_dev_error *op_supported(qiao_dev_device *device, qiao_dev_op op, qiao_dev_dtype dtype,
                                    uint32_t *out_supported) {
  qiao_dev_error *error = check_device("op_supported", device);
  if (error) return error;
  if (out_supported == NULL)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "op_supported: out_supported is NULL");
  /* Values this backend does not know (a later minor version's) are simply
   * not supported (device-abi.md §10.1). */
  if ((unsigned)op >= QIAO_DEV_OP_COUNT || (unsigned)dtype >= QIAO_DEV_DTYPE_COUNT) {
    *out_supported = 0;
    return NULL;
  }
  *out_supported = (qiao__cpu_op_dtypes(op) >> dtype) & 1u;
  return NULL;
}

/* ---- Buffers ---------------------------------------------------------------- */
static qiao_dev_buffer *buffer_new(qiao_dev_device *device, uint8_t *data, uint64_t size,
                                   uint32_t read_only) {
  qiao_dev_buffer *buffer = calloc(1, sizeof(*buffer));
  if (buffer == NULL) return NULL;
  buffer->magic = QIAO__CPU_MAGIC_BUFFER;
  buffer->read_only = read_only;
  buffer->device = device;
  buffer->data = data;
  buffer->size = size;
  atomic_fetch_add(&device->live_buffers, 1);
  atomic_fetch_add(&device->live_bytes, size);
  return buffer;
}

static qiao_dev_error *buffer_create(qiao_dev_device *device, uint64_t size,
                                     qiao_dev_buffer **out_buffer) {
  qiao_dev_error *error = check_device("buffer_create", device);
  if (error) return error;
  if (out_buffer == NULL)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "buffer_create: out_buffer is NULL");
  if (size > device->max_buffer_bytes || size > SIZE_MAX - 64)
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY,
                           "buffer_create: size %llu is more than max_buffer_bytes %llu",
                           (unsigned long long)size, (unsigned long long)device->max_buffer_bytes);
  size_t rounded = size == 0 ? 64 : (size_t)((size + 63) & ~(uint64_t)63);
  uint8_t *data = aligned_alloc(64, rounded);
  if (data == NULL)
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "buffer_create: cannot allocate %llu bytes",
                           (unsigned long long)size);
  memset(data, 0, rounded); /* deterministic contents for a reference backend */
  qiao_dev_buffer *buffer = buffer_new(device, data, size, 0);
  if (buffer == NULL) {
    free(data);
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "buffer_create: no memory for the handle");
  }
  *out_buffer = buffer;
  return NULL;
}

static qiao_dev_error *buffer_wrap_host(qiao_dev_device *device, const void *host, uint64_t size,
                                        qiao_dev_buffer **out_buffer) {
  qiao_dev_error *error = check_device("buffer_wrap_host", device);
  if (error) return error;
  if (host == NULL || out_buffer == NULL)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "buffer_wrap_host: %s is NULL",
                           host == NULL ? "host" : "out_buffer");
  if (size > UINTPTR_MAX - (uintptr_t)host)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "buffer_wrap_host: size %llu wraps around the address space",
                           (unsigned long long)size);
  /* The device only reads wrapped memory (it stays unchanged, per the ABI). */
  qiao_dev_buffer *buffer = buffer_new(device, (uint8_t *)(uintptr_t)host, size, 1);
  if (buffer == NULL)
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "buffer_wrap_host: no memory for the handle");
  *out_buffer = buffer;
  return NULL;
}

static void buffer_destroy(qiao_dev_buffer *buffer) {
  if (buffer == NULL || buffer->magic != QIAO__CPU_MAGIC_BUFFER) return;
  if (atomic_load(&buffer->repacked) != 0) qiao__cpu_repack_invalidate(buffer, 0, UINT64_MAX);
  buffer->magic = QIAO__CPU_MAGIC_DEAD;
  atomic_fetch_sub(&buffer->device->live_buffers, 1);
  atomic_fetch_sub(&buffer->device->live_bytes, buffer->size);
  if (!buffer->read_only) free(buffer->data);
  free(buffer);
}

/* ---- Queues ----------------------------------------------------------------- */
static qiao_dev_error *queue_create(qiao_dev_device *device, qiao_dev_queue **out_queue) {
  qiao_dev_error *error = check_device("queue_create", device);
  if (error) return error;
  if (out_queue == NULL)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "queue_create: out_queue is NULL");
  qiao_dev_queue *queue = calloc(1, sizeof(*queue));
  if (queue == NULL) return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "queue_create: no memory");
  queue->magic = QIAO__CPU_MAGIC_QUEUE;
  queue->device = device;
  *out_queue = queue;
  return NULL;
}

static void queue_destroy(qiao_dev_queue *queue) {
  if (queue == NULL || queue->magic != QIAO__CPU_MAGIC_QUEUE) return;
  queue->magic = QIAO__CPU_MAGIC_DEAD;
  qiao__cpu_error_free(queue->pending);
  free(queue);
}

/* Work runs when enqueued, so there is never pending work; what is left is
 * the first error found in device data since the last synchronize. */
static qiao_dev_error *queue_synchronize(qiao_dev_queue *queue) {
  if (queue == NULL)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "queue_synchronize: queue is NULL");
  if (queue->magic != QIAO__CPU_MAGIC_QUEUE)
    return qiao__cpu_error(QIAO_DEV_BAD_HANDLE, "queue_synchronize: queue is not a live cpu queue");
  qiao_dev_error *pending = queue->pending;
  queue->pending = NULL;
  return pending;
}

/* ---- Data movement ------------------------------------------------------------ */
static qiao_dev_error *check_queue(const char *fn, qiao_dev_queue *queue) {
  if (queue == NULL) return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: queue is NULL", fn);
  if (queue->magic != QIAO__CPU_MAGIC_QUEUE)
    return qiao__cpu_error(QIAO_DEV_BAD_HANDLE, "%s: queue is not a live cpu queue", fn);
  return NULL;
}

/* Data movement is byte-granular: no alignment (QIAO__CPU_BYTES). */
static qiao_dev_error *byte_operand(qiao_dev_device *device, const char *fn, const char *name,
                                    qiao_dev_ref ref, uint64_t size, unsigned flags,
                                    qiao__cpu_operand *out) {
  return qiao__cpu_operand_get(device, fn, name, ref, size, QIAO__CPU_BYTES, flags, out);
}

static qiao_dev_error *upload(qiao_dev_queue *queue, qiao_dev_ref dst, const void *src,
                              uint64_t size) {
  qiao_dev_error *error = check_queue("upload", queue);
  if (error) return error;
  /* Every check runs whatever the size; 0 bytes then move nothing (§7). */
  qiao__cpu_operand d;
  error = byte_operand(queue->device, "upload", "dst", dst, size, QIAO__CPU_REF_WRITE, &d);
  if (error) return error;
  if (src == NULL && size > 0)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "upload: src is NULL");
  if (size > 0) memcpy(d.ptr, src, size);
  return NULL;
}

static qiao_dev_error *download(qiao_dev_queue *queue, void *dst, qiao_dev_ref src, uint64_t size) {
  qiao_dev_error *error = check_queue("download", queue);
  if (error) return error;
  qiao__cpu_operand s;
  error = byte_operand(queue->device, "download", "src", src, size, 0, &s);
  if (error) return error;
  if (dst == NULL && size > 0)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "download: dst is NULL");
  if (size > 0) memcpy(dst, s.ptr, size);
  return NULL;
}

static qiao_dev_error *copy(qiao_dev_queue *queue, qiao_dev_ref dst, qiao_dev_ref src,
                            uint64_t size) {
  qiao_dev_error *error = check_queue("copy", queue);
  if (error) return error;
  qiao__cpu_operand d, s;
  error = byte_operand(queue->device, "copy", "dst", dst, size, QIAO__CPU_REF_WRITE, &d);
  if (error == NULL) error = byte_operand(queue->device, "copy", "src", src, size, 0, &s);
  if (error) return error;
  if (size > 0) memmove(d.ptr, s.ptr, size);
  return NULL;
}

/* ---- The table ---------------------------------------------------------------- */
static const qiao_dev_api cpu_api = {
    .struct_size = sizeof(qiao_dev_api),
    .abi_major = QIAO_DEVICE_ABI_MAJOR,
    .abi_minor = QIAO_DEVICE_ABI_MINOR,
    .name = "cpu",
    .version = QIAO__CPU_VERSION,
    .error_code = error_code,
    .error_message = error_message,
    .error_destroy = error_destroy,
    .backend_open = backend_open,
    .backend_close = backend_close,
    .device_count = device_count,
    .device_get_properties = device_get_properties,
    .device_open = device_open,
    .device_close = device_close,
    .op_supported = op_supported,
    .buffer_create = buffer_create,
    .buffer_destroy = buffer_destroy,
    .buffer_wrap_host = buffer_wrap_host,
    .queue_create = queue_create,
    .queue_destroy = queue_destroy,
    .queue_synchronize = queue_synchronize,
    .upload = upload,
    .download = download,
    .copy = copy,
    .embed = qiao__cpu_embed,
    .matmul = qiao__cpu_matmul,
    .rmsnorm = qiao__cpu_rmsnorm,
    .rope = qiao__cpu_rope,
    .kv_write = qiao__cpu_kv_write,
    .attention = qiao__cpu_attention,
    .swiglu = qiao__cpu_swiglu,
    .add = qiao__cpu_add,
    .argmax = qiao__cpu_argmax,
    .moe_gate = qiao__cpu_moe_gate,
    .matmul_experts = qiao__cpu_matmul_experts,
    .moe_combine = qiao__cpu_moe_combine,
    .latent_write = qiao__cpu_latent_write,
    .attention_latent = qiao__cpu_attention_latent,
    .moe_route = qiao__cpu_moe_route,
};

const qiao_dev_api *qiao_cpu_get_api(void) {
  return &cpu_api;
}
