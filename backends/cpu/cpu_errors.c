/* Errors and the argument checks every op shares: operand resolution with
 * overflow-safe extents, dtype checks and overlap checks. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "cpu_internal.h"

static qiao_dev_error out_of_memory_error = {QIAO__CPU_MAGIC_ERROR, QIAO_DEV_OUT_OF_MEMORY, 1,
                                             "out of memory while reporting an error"};

qiao_dev_error *qiao__cpu_error(qiao_dev_code code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (len < 0) len = 0;
  qiao_dev_error *error = malloc(sizeof(*error) + (size_t)len + 1);
  if (error == NULL) return &out_of_memory_error;
  error->magic = QIAO__CPU_MAGIC_ERROR;
  error->code = code;
  error->is_static = 0;
  va_start(ap, fmt);
  vsnprintf(error->storage, (size_t)len + 1, fmt, ap);
  error->message = error->storage;
  va_end(ap);
  return error;
}

void qiao__cpu_error_free(qiao_dev_error *error) {
  if (error == NULL || error->is_static || error->magic != QIAO__CPU_MAGIC_ERROR) return;
  error->magic = QIAO__CPU_MAGIC_DEAD;
  free(error);
}

qiao_dev_error *qiao__cpu_defer(qiao_dev_queue *queue, qiao_dev_error *error) {
  if (queue->pending == NULL)
    queue->pending = error;
  else
    qiao__cpu_error_free(error);
  return NULL;
}

const char *qiao__cpu_dtype_name(qiao_dev_dtype dtype) {
  static const char *const names[QIAO_DEV_DTYPE_COUNT] = {
      "F32",  "F16",  "BF16", "Q8_0", "Q4_0", "I32",          "Q4_K",   "Q5_K",  "Q6_K",
      "Q2_K", "Q3_K", "Q4_1", "Q5_0", "Q5_1", "F8_E4M3_B128", "IQ4_NL", "IQ4_XS"};
  return (unsigned)dtype < QIAO_DEV_DTYPE_COUNT ? names[dtype] : "?";
}

qiao_dev_error *qiao__cpu_begin(const char *op, qiao_dev_queue *queue, const void *args,
                                size_t size, qiao_dev_device **out_device) {
  if (queue == NULL) return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: queue is NULL", op);
  if (queue->magic != QIAO__CPU_MAGIC_QUEUE)
    return qiao__cpu_error(QIAO_DEV_BAD_HANDLE, "%s: queue is not a live cpu queue", op);
  if (args == NULL) return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: args is NULL", op);
  size_t given = *(const size_t *)args;
  if (given < size)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "%s: args struct_size %zu is smaller than ABI 1.0's %zu", op, given,
                           size);
  *out_device = queue->device;
  return NULL;
}

qiao_dev_error *qiao__cpu_check_dtype(const char *op, const char *arg, qiao_dev_dtype dtype,
                                      uint32_t allowed) {
  /* A value this backend does not know (a later minor version's) is a pair
   * it does not claim, like any other (device-abi.md §6). */
  if ((unsigned)dtype >= QIAO_DEV_DTYPE_COUNT)
    return qiao__cpu_error(QIAO_DEV_UNSUPPORTED, "%s: %s %u is not a dtype this backend knows", op,
                           arg, (unsigned)dtype);
  if ((allowed & (1u << dtype)) == 0)
    return qiao__cpu_error(QIAO_DEV_UNSUPPORTED, "%s: %s %s is not supported", op, arg,
                           qiao__cpu_dtype_name(dtype));
  return NULL;
}

qiao_dev_error *qiao__cpu_extent(const char *op, const char *arg, qiao_dev_dtype dtype,
                                 uint64_t rows, uint64_t cols, uint64_t *out_bytes) {
  uint64_t row_bytes;
  switch (dtype) {
  case QIAO_DEV_F32:
  case QIAO_DEV_I32: row_bytes = cols * 4; break;
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: row_bytes = cols * 2; break;
  case QIAO_DEV_Q8_0:
  case QIAO_DEV_Q4_0:
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K:
  case QIAO_DEV_Q6_K:
  case QIAO_DEV_Q2_K:
  case QIAO_DEV_Q3_K:
  case QIAO_DEV_Q4_1:
  case QIAO_DEV_Q5_0:
  case QIAO_DEV_Q5_1:
  case QIAO_DEV_F8_E4M3_B128:
  case QIAO_DEV_IQ4_NL:
  case QIAO_DEV_IQ4_XS: {
    uint64_t per = qiao__cpu_block_elems(dtype);
    if (cols % per != 0)
      return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                             "%s: %s row length %llu is not a multiple of %llu (required by %s)",
                             op, arg, (unsigned long long)cols, (unsigned long long)per,
                             qiao__cpu_dtype_name(dtype));
    row_bytes = cols / per * qiao__cpu_block_bytes(dtype);
    break;
  }
  default:
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: %s dtype %u is not a dtype", op, arg,
                           (unsigned)dtype);
  }
  /* cols * 4 cannot have overflowed unless cols >= 2^62: check that too. */
  if (cols > (UINT64_MAX >> 3) || (rows != 0 && row_bytes > UINT64_MAX / rows))
    return qiao__cpu_error(
        QIAO_DEV_INVALID_ARGUMENT, "%s: %s shape (%llu, %llu) of %s overflows 64-bit bytes", op,
        arg, (unsigned long long)rows, (unsigned long long)cols, qiao__cpu_dtype_name(dtype));
  *out_bytes = rows * row_bytes;
  return NULL;
}

static uint64_t dtype_alignment(qiao_dev_dtype dtype) {
  switch ((int)dtype) {
  case QIAO_DEV_F32:
  case QIAO_DEV_I32: return 4;
  case QIAO__CPU_BYTES: return 1;
  default: return 2; /* f16/bf16 elements; the f16 scale of Q8_0/Q4_0 blocks */
  }
}

qiao_dev_error *qiao__cpu_operand_get(qiao_dev_device *device, const char *op, const char *name,
                                      qiao_dev_ref ref, uint64_t bytes, qiao_dev_dtype dtype,
                                      unsigned flags, qiao__cpu_operand *out) {
  memset(out, 0, sizeof(*out));
  out->name = name;
  const qiao_dev_buffer *buffer = ref.buffer;
  if (buffer == NULL) {
    /* Absent: only an optional operand, as {NULL, 0}; a required one names a
     * buffer even when it has 0 bytes (device-abi.md §7). */
    if ((flags & QIAO__CPU_REF_OPTIONAL) && ref.offset == 0) return NULL;
    if (flags & QIAO__CPU_REF_OPTIONAL)
      return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                             "%s: %s has no buffer but offset %llu (absent is {NULL, 0})", op, name,
                             (unsigned long long)ref.offset);
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: %s buffer is NULL", op, name);
  }
  if (buffer->magic != QIAO__CPU_MAGIC_BUFFER)
    return qiao__cpu_error(QIAO_DEV_BAD_HANDLE, "%s: %s buffer is not a live cpu buffer", op, name);
  if (buffer->device != device)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: %s buffer belongs to another device", op,
                           name);
  if (ref.offset > buffer->size || bytes > buffer->size - ref.offset)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "%s: %s needs %llu bytes at offset %llu but its buffer has %llu", op,
                           name, (unsigned long long)bytes, (unsigned long long)ref.offset,
                           (unsigned long long)buffer->size);
  uint64_t align = dtype_alignment(dtype);
  if (((uintptr_t)buffer->data + ref.offset) % align != 0)
    return qiao__cpu_error(
        QIAO_DEV_INVALID_ARGUMENT, "%s: %s offset %llu is not aligned to %llu bytes (%s)", op, name,
        (unsigned long long)ref.offset, (unsigned long long)align, qiao__cpu_dtype_name(dtype));
  if ((flags & QIAO__CPU_REF_WRITE) && buffer->read_only)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "%s: %s is a read-only buffer (wrapped host memory)", op, name);
  /* The central place where every write into a buffer (uploads, copies and
   * op outputs) is announced: repacked copies of what it overwrites go. */
  if ((flags & QIAO__CPU_REF_WRITE) && bytes > 0 && atomic_load(&buffer->repacked) != 0)
    qiao__cpu_repack_invalidate((qiao_dev_buffer *)(uintptr_t)buffer, ref.offset, bytes);
  out->buffer = buffer;
  out->offset = ref.offset;
  out->bytes = bytes;
  out->ptr = buffer->data + ref.offset;
  return NULL;
}

qiao_dev_error *qiao__cpu_no_overlap(const char *op, const qiao__cpu_operand *out,
                                     const qiao__cpu_operand *in, int allow_equal) {
  if (out->buffer == NULL || in->buffer == NULL || out->buffer != in->buffer) return NULL;
  if (out->bytes == 0 || in->bytes == 0) return NULL;
  if (allow_equal && out->offset == in->offset && out->bytes == in->bytes) return NULL;
  if (out->offset < in->offset + in->bytes && in->offset < out->offset + out->bytes)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "%s: %s [%llu, +%llu) overlaps %s [%llu, +%llu) in the same buffer", op,
                           out->name, (unsigned long long)out->offset,
                           (unsigned long long)out->bytes, in->name, (unsigned long long)in->offset,
                           (unsigned long long)in->bytes);
  return NULL;
}

void qiao__cpu_dequantize_row(qiao_dev_dtype dtype, const uint8_t *row, uint64_t n, float *out) {
  switch (dtype) {
  case QIAO_DEV_F32: memcpy(out, row, n * 4); break;
  case QIAO_DEV_F16:
    for (uint64_t i = 0; i < n; i++)
      out[i] = qiao__cpu_f16_to_f32(qiao__cpu_load_u16(row + 2 * i));
    break;
  case QIAO_DEV_BF16:
    for (uint64_t i = 0; i < n; i++)
      out[i] = qiao__cpu_bf16_to_f32(qiao__cpu_load_u16(row + 2 * i));
    break;
  case QIAO_DEV_Q8_0:
    for (uint64_t b = 0; b < n / 32; b++) {
      const uint8_t *block = row + b * 34;
      float d = qiao__cpu_f16_to_f32(qiao__cpu_load_u16(block));
      for (int i = 0; i < 32; i++)
        out[b * 32 + i] = d * (float)(int8_t)block[2 + i];
    }
    break;
  case QIAO_DEV_Q4_0:
    for (uint64_t b = 0; b < n / 32; b++) {
      const uint8_t *block = row + b * 18;
      float d = qiao__cpu_f16_to_f32(qiao__cpu_load_u16(block));
      for (int j = 0; j < 16; j++) {
        out[b * 32 + j] = d * (float)((block[2 + j] & 0x0f) - 8);
        out[b * 32 + j + 16] = d * (float)((block[2 + j] >> 4) - 8);
      }
    }
    break;
  default:
    if (qiao__cpu_new_block_dtype(dtype))
      for (uint64_t c = 0; c < n; c += 32)
        qiao__cpu_dequant_chunk(dtype, row, c, out + c);
    break;
  }
}
