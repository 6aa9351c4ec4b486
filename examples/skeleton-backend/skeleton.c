/* A skeleton qiao device backend: every function of the device ABI in the
 * place a vendor's backend puts it, with the argument checks the ABI
 * requires (docs/spec/device-abi.md), and no op. It claims nothing:
 * op_supported answers 0 for every op and dtype, and every op refuses with
 * QIAO_DEV_UNSUPPORTED, so `qiao conformance` certifies no op and fails
 * none. Its "device" is host memory, and work runs during the enqueue call.
 *
 * Start a backend from this file: keep the structure, replace the bodies
 * marked "A real backend", and claim an op in op_supported only once it
 * passes `qiao conformance --op OP` (docs/vendor-guide.md gives the order).
 *
 * It includes nothing of qiao but the public header qiao/device.h and
 * exports one symbol, qiao_device_get_api. */
#include <qiao/device.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SKELETON_EXPORT __attribute__((visibility("default")))
#define SKELETON_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- Errors (§6) -----------------------------------------------------------
 * Every fallible function returns NULL on success or an error the caller
 * owns. The message names the function or op and what was wrong. */

struct qiao_dev_error {
  qiao_dev_code code;
  bool is_static; /* the out-of-memory fallback: never freed */
  char message[256];
};

static qiao_dev_error out_of_memory = {QIAO_DEV_OUT_OF_MEMORY, true,
                                       "skeleton: out of memory creating an error"};

static SKELETON_PRINTF(2, 3) qiao_dev_error *fail(qiao_dev_code code, const char *fmt, ...) {
  qiao_dev_error *e = malloc(sizeof(*e));
  if (e == NULL) return &out_of_memory; /* never NULL for a failure */
  e->code = code;
  e->is_static = false;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(e->message, sizeof(e->message), fmt, ap);
  va_end(ap);
  return e;
}

static qiao_dev_code error_code(const qiao_dev_error *error) {
  return error->code;
}

static const char *error_message(const qiao_dev_error *error) {
  return error->message;
}

static void error_destroy(qiao_dev_error *error) {
  if (error != NULL && !error->is_static) free(error);
}

/* ---- Handles (§4) ----------------------------------------------------------
 * Opaque to the runtime. A tag in each lets the backend tell a handle it did
 * not create (BAD_HANDLE), as far as that is possible. */

enum {
  TAG_BACKEND = 0x51424b31,
  TAG_DEVICE = 0x51444531,
  TAG_BUFFER = 0x51425531,
  TAG_QUEUE = 0x51515531
};

struct qiao_dev_backend {
  uint32_t tag;
  uint32_t runtime_abi_minor; /* decides how device_open reads its options (§3) */
};

struct qiao_dev_device {
  uint32_t tag;
  qiao_dev_backend *backend;
};

struct qiao_dev_buffer {
  uint32_t tag;
  qiao_dev_device *device;
  uint64_t size;
  unsigned char *data; /* A real backend: a device allocation */
};

struct qiao_dev_queue {
  uint32_t tag;
  qiao_dev_device *device;
  /* A real backend: a driver stream or command list, and the first
   * asynchronous error not yet reported by queue_synchronize. */
};

/* What the one device reports. A real backend asks its driver. */
#define SKELETON_MEMORY_BYTES (1ull << 30)

/* ---- Backend (§13) ---------------------------------------------------------- */

static qiao_dev_error *backend_open(const qiao_dev_backend_options *options,
                                    qiao_dev_backend **out_backend) {
  if (options == NULL || out_backend == NULL)
    return fail(QIAO_DEV_INVALID_ARGUMENT, "backend_open: options and out_backend are required");
  /* A struct smaller than 1.0's (16 bytes) is refused (§3). */
  if (options->struct_size < sizeof(qiao_dev_backend_options))
    return fail(QIAO_DEV_INVALID_ARGUMENT,
                "backend_open: options struct_size %zu is smaller than ABI 1.0's %zu",
                options->struct_size, sizeof(qiao_dev_backend_options));
  if (options->runtime_abi_major != QIAO_DEVICE_ABI_MAJOR)
    return fail(QIAO_DEV_UNSUPPORTED,
                "backend_open: built for device ABI %d.x, the runtime speaks %u.x",
                QIAO_DEVICE_ABI_MAJOR, options->runtime_abi_major);
  uint32_t minor = options->runtime_abi_minor;
  /* A real backend: load the driver and discover devices here, never in the
   * entry point. Zero devices is a success. */
  qiao_dev_backend *b = calloc(1, sizeof(*b));
  if (b == NULL) return fail(QIAO_DEV_OUT_OF_MEMORY, "backend_open: out of memory");
  b->tag = TAG_BACKEND;
  b->runtime_abi_minor = minor;
  *out_backend = b;
  return NULL;
}

static void backend_close(qiao_dev_backend *backend) {
  if (backend == NULL || backend->tag != TAG_BACKEND) return;
  backend->tag = 0;
  free(backend);
}

/* ---- Devices ---------------------------------------------------------------- */

static qiao_dev_error *check_backend(const qiao_dev_backend *backend, const char *fn) {
  if (backend == NULL) return fail(QIAO_DEV_INVALID_ARGUMENT, "%s: backend is NULL", fn);
  if (backend->tag != TAG_BACKEND)
    return fail(QIAO_DEV_BAD_HANDLE, "%s: not a backend of this plugin", fn);
  return NULL;
}

static qiao_dev_error *device_count(qiao_dev_backend *backend, uint32_t *out_count) {
  qiao_dev_error *e = check_backend(backend, "device_count");
  if (e) return e;
  if (out_count == NULL) return fail(QIAO_DEV_INVALID_ARGUMENT, "device_count: out_count is NULL");
  *out_count = 1;
  return NULL;
}

/* Writes only the fields that lie entirely inside props->struct_size (§3). */
#define FITS(field)                                                                                \
  (offsetof(qiao_dev_properties, field) + sizeof(((qiao_dev_properties *)0)->field) <=             \
   props->struct_size)

static qiao_dev_error *device_get_properties(qiao_dev_backend *backend, uint32_t index,
                                             qiao_dev_properties *props) {
  qiao_dev_error *e = check_backend(backend, "device_get_properties");
  if (e) return e;
  if (index >= 1)
    return fail(QIAO_DEV_INVALID_ARGUMENT,
                "device_get_properties: index %u, the backend has 1 device", index);
  if (props == NULL || props->struct_size < sizeof(size_t))
    return fail(QIAO_DEV_INVALID_ARGUMENT,
                "device_get_properties: properties is NULL or its struct_size is below %zu",
                sizeof(size_t));
  if (FITS(name)) snprintf(props->name, sizeof(props->name), "skeleton device");
  if (FITS(vendor)) snprintf(props->vendor, sizeof(props->vendor), "example");
  if (FITS(driver_version)) snprintf(props->driver_version, sizeof(props->driver_version), "none");
  if (FITS(memory_bytes)) props->memory_bytes = SKELETON_MEMORY_BYTES;
  if (FITS(max_buffer_bytes)) props->max_buffer_bytes = SKELETON_MEMORY_BYTES;
  if (FITS(compute_units)) props->compute_units = 1;
  /* No QIAO_DEV_FLAG_HOST_MEMORY: buffer_wrap_host is NULL below. */
  if (FITS(flags)) props->flags = 0;
  return NULL;
}

static qiao_dev_error *device_open(qiao_dev_backend *backend, uint32_t index,
                                   const qiao_dev_device_options *options,
                                   qiao_dev_device **out_device) {
  qiao_dev_error *e = check_backend(backend, "device_open");
  if (e) return e;
  if (index >= 1)
    return fail(QIAO_DEV_INVALID_ARGUMENT, "device_open: index %u, the backend has 1 device",
                index);
  if (out_device == NULL) return fail(QIAO_DEV_INVALID_ARGUMENT, "device_open: out_device is NULL");
  uint32_t flags = 0;
  if (options != NULL) {                                        /* NULL: all defaults */
    if (options->struct_size < sizeof(qiao_dev_device_options)) /* 1.0's 16 bytes (§3) */
      return fail(QIAO_DEV_INVALID_ARGUMENT,
                  "device_open: options struct_size %zu is smaller than ABI 1.0's %zu",
                  options->struct_size, sizeof(qiao_dev_device_options));
    /* flags lies in 1.0's tail padding: read it only when the runtime said
     * it knows 1.1 (§3). */
    if (options->struct_size >= offsetof(qiao_dev_device_options, flags) + sizeof(uint32_t) &&
        backend->runtime_abi_minor >= 1)
      flags = options->flags;
  }
  if (flags != 0) /* the skeleton implements no mode (batch invariance, ...) */
    return fail(QIAO_DEV_UNSUPPORTED, "device_open: flags 0x%x are not implemented", flags);
  qiao_dev_device *d = calloc(1, sizeof(*d));
  if (d == NULL) return fail(QIAO_DEV_OUT_OF_MEMORY, "device_open: out of memory");
  d->tag = TAG_DEVICE;
  d->backend = backend;
  *out_device = d;
  return NULL;
}

static void device_close(qiao_dev_device *device) {
  if (device == NULL || device->tag != TAG_DEVICE) return;
  device->tag = 0;
  free(device);
}

static qiao_dev_error *check_device(const qiao_dev_device *device, const char *fn) {
  if (device == NULL) return fail(QIAO_DEV_INVALID_ARGUMENT, "%s: device is NULL", fn);
  if (device->tag != TAG_DEVICE)
    return fail(QIAO_DEV_BAD_HANDLE, "%s: not a device of this plugin", fn);
  return NULL;
}

/* ---- Capabilities (§10) ------------------------------------------------------
 * The one place that claims an op x dtype. A claim promises the op passes
 * conformance for that dtype; claim nothing you have not run. Unknown op or
 * dtype values answer 0, not an error. */

static qiao_dev_error *op_supported(qiao_dev_device *device, qiao_dev_op op, qiao_dev_dtype dtype,
                                    uint32_t *out_supported) {
  qiao_dev_error *e = check_device(device, "op_supported");
  if (e) return e;
  if (out_supported == NULL)
    return fail(QIAO_DEV_INVALID_ARGUMENT, "op_supported: out_supported is NULL");
  (void)op;
  (void)dtype;
  /* A real backend, for example:
   *   *out_supported = op == QIAO_DEV_OP_ADD && dtype == QIAO_DEV_F32; */
  *out_supported = 0;
  return NULL;
}

/* ---- Memory (§7) ------------------------------------------------------------ */

static qiao_dev_error *buffer_create(qiao_dev_device *device, uint64_t size,
                                     qiao_dev_buffer **out_buffer) {
  qiao_dev_error *e = check_device(device, "buffer_create");
  if (e) return e;
  if (out_buffer == NULL)
    return fail(QIAO_DEV_INVALID_ARGUMENT, "buffer_create: out_buffer is NULL");
  if (size > SKELETON_MEMORY_BYTES)
    return fail(QIAO_DEV_OUT_OF_MEMORY, "buffer_create: %llu bytes exceed the device's %llu",
                (unsigned long long)size, (unsigned long long)SKELETON_MEMORY_BYTES);
  qiao_dev_buffer *b = calloc(1, sizeof(*b));
  /* A real backend: allocate device memory. Size 0 may succeed. */
  unsigned char *data = malloc(size ? (size_t)size : 1);
  if (b == NULL || data == NULL) {
    free(b);
    free(data);
    return fail(QIAO_DEV_OUT_OF_MEMORY, "buffer_create: out of memory for %llu bytes",
                (unsigned long long)size);
  }
  b->tag = TAG_BUFFER;
  b->device = device;
  b->size = size;
  b->data = data;
  *out_buffer = b;
  return NULL;
}

static void buffer_destroy(qiao_dev_buffer *buffer) {
  if (buffer == NULL || buffer->tag != TAG_BUFFER) return;
  buffer->tag = 0;
  free(buffer->data);
  free(buffer);
}

/* `bytes` at `ref` inside a buffer of the queue's device, overflow-safe. A
 * ref names a buffer even for 0 bytes (§7). */
static qiao_dev_error *check_ref(const qiao_dev_queue *queue, qiao_dev_ref ref, uint64_t bytes,
                                 const char *fn, const char *operand) {
  if (ref.buffer == NULL)
    return fail(QIAO_DEV_INVALID_ARGUMENT, "%s: %s: buffer is NULL", fn, operand);
  if (ref.buffer->tag != TAG_BUFFER)
    return fail(QIAO_DEV_BAD_HANDLE, "%s: %s: not a buffer of this plugin", fn, operand);
  if (ref.buffer->device != queue->device)
    return fail(QIAO_DEV_INVALID_ARGUMENT, "%s: %s: the buffer is of another device", fn, operand);
  if (ref.offset > ref.buffer->size || bytes > ref.buffer->size - ref.offset)
    return fail(QIAO_DEV_INVALID_ARGUMENT,
                "%s: %s: %llu bytes at offset %llu exceed the buffer's %llu bytes", fn, operand,
                (unsigned long long)bytes, (unsigned long long)ref.offset,
                (unsigned long long)ref.buffer->size);
  return NULL;
}

/* ---- Queues (§8) -------------------------------------------------------------
 * The skeleton runs work during the enqueue call, which is trivially "in
 * submission order". A real backend enqueues, and queue_synchronize waits
 * and returns the first asynchronous error, then clears it. */

static qiao_dev_error *queue_create(qiao_dev_device *device, qiao_dev_queue **out_queue) {
  qiao_dev_error *e = check_device(device, "queue_create");
  if (e) return e;
  if (out_queue == NULL) return fail(QIAO_DEV_INVALID_ARGUMENT, "queue_create: out_queue is NULL");
  qiao_dev_queue *q = calloc(1, sizeof(*q));
  if (q == NULL) return fail(QIAO_DEV_OUT_OF_MEMORY, "queue_create: out of memory");
  q->tag = TAG_QUEUE;
  q->device = device;
  *out_queue = q;
  return NULL;
}

static void queue_destroy(qiao_dev_queue *queue) {
  if (queue == NULL || queue->tag != TAG_QUEUE) return;
  /* A real backend: wait for the queue's work first. */
  queue->tag = 0;
  free(queue);
}

static qiao_dev_error *check_queue(const qiao_dev_queue *queue, const char *fn) {
  if (queue == NULL) return fail(QIAO_DEV_INVALID_ARGUMENT, "%s: queue is NULL", fn);
  if (queue->tag != TAG_QUEUE)
    return fail(QIAO_DEV_BAD_HANDLE, "%s: not a queue of this plugin", fn);
  return NULL;
}

static qiao_dev_error *queue_synchronize(qiao_dev_queue *queue) {
  return check_queue(queue, "queue_synchronize");
}

/* ---- Transfers -------------------------------------------------------------- */

static qiao_dev_error *upload(qiao_dev_queue *queue, qiao_dev_ref dst, const void *src,
                              uint64_t size) {
  qiao_dev_error *e = check_queue(queue, "upload");
  if (e == NULL) e = check_ref(queue, dst, size, "upload", "dst");
  if (e) return e;
  if (size == 0) return NULL;
  if (src == NULL) return fail(QIAO_DEV_INVALID_ARGUMENT, "upload: src is NULL");
  memcpy(dst.buffer->data + dst.offset, src, (size_t)size); /* A real backend: enqueue */
  return NULL;
}

static qiao_dev_error *download(qiao_dev_queue *queue, void *dst, qiao_dev_ref src, uint64_t size) {
  qiao_dev_error *e = check_queue(queue, "download");
  if (e == NULL) e = check_ref(queue, src, size, "download", "src");
  if (e) return e;
  if (size == 0) return NULL;
  if (dst == NULL) return fail(QIAO_DEV_INVALID_ARGUMENT, "download: dst is NULL");
  memcpy(dst, src.buffer->data + src.offset, (size_t)size); /* A real backend: enqueue */
  return NULL;
}

static qiao_dev_error *copy(qiao_dev_queue *queue, qiao_dev_ref dst, qiao_dev_ref src,
                            uint64_t size) {
  qiao_dev_error *e = check_queue(queue, "copy");
  if (e == NULL) e = check_ref(queue, dst, size, "copy", "dst");
  if (e == NULL) e = check_ref(queue, src, size, "copy", "src");
  if (e) return e;
  if (size) memmove(dst.buffer->data + dst.offset, src.buffer->data + src.offset, (size_t)size);
  return NULL;
}

/* ---- Ops (§11) ----------------------------------------------------------------
 * Each op checks, in this order: the queue, args non-NULL, args->struct_size
 * at least the 1.0 size (Appendix A of the ABI spec), the capability
 * (UNSUPPORTED for a pair op_supported does not claim), then the shape rules
 * and every operand's range (check_ref) — all before enqueueing anything.
 * The skeleton stops at the capability: it claims nothing. */

static qiao_dev_error *op_entry(const qiao_dev_queue *queue, const void *args, size_t v1_0_size,
                                const char *op) {
  qiao_dev_error *e = check_queue(queue, op);
  if (e) return e;
  if (args == NULL) return fail(QIAO_DEV_INVALID_ARGUMENT, "%s: args is NULL", op);
  size_t struct_size = *(const size_t *)args; /* every args struct starts with it */
  if (struct_size < v1_0_size)
    return fail(QIAO_DEV_INVALID_ARGUMENT, "%s: args struct_size %zu is below ABI 1.0's %zu", op,
                struct_size, v1_0_size);
  /* A real backend: if op_supported claims the pair, check shapes and
   * ranges here and enqueue the kernel; otherwise: */
  return fail(QIAO_DEV_UNSUPPORTED, "%s: not implemented by the skeleton backend", op);
}

/* The 1.0 sizes (LP64) from Appendix A of docs/spec/device-abi.md. */
static qiao_dev_error *embed(qiao_dev_queue *q, const qiao_dev_embed_args *a) {
  return op_entry(q, a, 88, "embed");
}
static qiao_dev_error *matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  return op_entry(q, a, 112, "matmul");
}
static qiao_dev_error *rmsnorm(qiao_dev_queue *q, const qiao_dev_rmsnorm_args *a) {
  return op_entry(q, a, 80, "rmsnorm");
}
static qiao_dev_error *rope(qiao_dev_queue *q, const qiao_dev_rope_args *a) {
  return op_entry(q, a, 96, "rope");
}
static qiao_dev_error *kv_write(qiao_dev_queue *q, const qiao_dev_kv_write_args *a) {
  return op_entry(q, a, 120, "kv_write");
}
static qiao_dev_error *attention(qiao_dev_queue *q, const qiao_dev_attention_args *a) {
  return op_entry(q, a, 200, "attention");
}
static qiao_dev_error *swiglu(qiao_dev_queue *q, const qiao_dev_swiglu_args *a) {
  return op_entry(q, a, 64, "swiglu");
}
static qiao_dev_error *add(qiao_dev_queue *q, const qiao_dev_add_args *a) {
  return op_entry(q, a, 64, "add");
}
static qiao_dev_error *argmax(qiao_dev_queue *q, const qiao_dev_argmax_args *a) {
  return op_entry(q, a, 56, "argmax");
}
static qiao_dev_error *moe_gate(qiao_dev_queue *q, const qiao_dev_moe_gate_args *a) {
  return op_entry(q, a, 88, "moe_gate");
}
static qiao_dev_error *matmul_experts(qiao_dev_queue *q, const qiao_dev_matmul_experts_args *a) {
  return op_entry(q, a, 128, "matmul_experts");
}
static qiao_dev_error *moe_combine(qiao_dev_queue *q, const qiao_dev_moe_combine_args *a) {
  return op_entry(q, a, 88, "moe_combine");
}

/* ---- The entry point (§2) -----------------------------------------------------
 * The table is static and constant: the entry point cannot fail and may be
 * called from any thread any number of times. Functions of a later ABI
 * minor version that this file does not set stay NULL, which the ABI reads
 * as "absent". */

static const qiao_dev_api skeleton_api = {
    .struct_size = sizeof(qiao_dev_api),
    .abi_major = QIAO_DEVICE_ABI_MAJOR,
    .abi_minor = QIAO_DEVICE_ABI_MINOR,
    .name = "skeleton",
    .version = "0.1",
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
    .buffer_wrap_host = NULL, /* only for QIAO_DEV_FLAG_HOST_MEMORY devices */
    .queue_create = queue_create,
    .queue_destroy = queue_destroy,
    .queue_synchronize = queue_synchronize,
    .upload = upload,
    .download = download,
    .copy = copy,
    .embed = embed,
    .matmul = matmul,
    .rmsnorm = rmsnorm,
    .rope = rope,
    .kv_write = kv_write,
    .attention = attention,
    .swiglu = swiglu,
    .add = add,
    .argmax = argmax,
    .moe_gate = moe_gate,
    .matmul_experts = matmul_experts,
    .moe_combine = moe_combine,
};

SKELETON_EXPORT const qiao_dev_api *qiao_device_get_api(void) {
  return &skeleton_api;
}
