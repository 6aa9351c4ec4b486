/* opencl_memory.c: buffers, queues (with their kernels and error flags),
 * synchronization and data movement. Transfers are non-blocking: the ABI
 * keeps host memory valid until queue_synchronize, which calls clFinish. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl_internal.h"

/* ---- buffers */

qiao_dev_error *ocl__buffer_create(qiao_dev_device *device, uint64_t size,
                                   qiao_dev_buffer **out_buffer) {
  if (device == NULL || out_buffer == NULL)
    return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: buffer_create: NULL argument");
  if (device->magic != OCL_MAGIC_DEVICE)
    return ocl__error(QIAO_DEV_BAD_HANDLE, "opencl: buffer_create: not an OpenCL device handle");
  if (size == 0) return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: buffer_create: size is 0");
  if (size > device->max_alloc || size > SIZE_MAX)
    return ocl__error(QIAO_DEV_OUT_OF_MEMORY,
                      "opencl: buffer_create: %llu bytes exceed the device's largest buffer (%llu)",
                      (unsigned long long)size, (unsigned long long)device->max_alloc);
  qiao_dev_buffer *b = calloc(1, sizeof(*b));
  if (b == NULL) return ocl__error(QIAO_DEV_OUT_OF_MEMORY, "opencl: buffer_create: out of memory");
  cl_int st;
  b->mem = clCreateBuffer(device->context, CL_MEM_READ_WRITE, (size_t)size, NULL, &st);
  if (st != CL_SUCCESS) {
    free(b);
    char what[64];
    snprintf(what, sizeof(what), "%llu bytes", (unsigned long long)size);
    return ocl__cl_error(st, "clCreateBuffer", what);
  }
  b->magic = OCL_MAGIC_BUFFER;
  b->device = device;
  b->size = size;
  *out_buffer = b;
  return NULL;
}

void ocl__buffer_destroy(qiao_dev_buffer *buffer) {
  if (buffer == NULL || buffer->magic != OCL_MAGIC_BUFFER) return;
  buffer->magic = OCL_MAGIC_DEAD;
  clReleaseMemObject(buffer->mem);
  free(buffer);
}

/* ---- queues */

qiao_dev_error *ocl__queue_create(qiao_dev_device *device, qiao_dev_queue **out_queue) {
  if (device == NULL || out_queue == NULL)
    return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: queue_create: NULL argument");
  if (device->magic != OCL_MAGIC_DEVICE)
    return ocl__error(QIAO_DEV_BAD_HANDLE, "opencl: queue_create: not an OpenCL device handle");
  qiao_dev_queue *q = calloc(1, sizeof(*q));
  if (q == NULL) return ocl__error(QIAO_DEV_OUT_OF_MEMORY, "opencl: queue_create: out of memory");
  q->device = device;
  qiao_dev_error *e = NULL;
  cl_int st;
  q->queue = clCreateCommandQueue(device->context, device->id, 0, &st); /* in order */
  if (st != CL_SUCCESS) {
    e = ocl__cl_error(st, "clCreateCommandQueue", "queue_create");
    goto fail;
  }
  for (int k = 0; k < K_COUNT && e == NULL; k++) {
    q->kernels[k] = clCreateKernel(device->program, ocl__kernel_name((ocl_kernel)k), &st);
    if (st != CL_SUCCESS) e = ocl__cl_error(st, "clCreateKernel", ocl__kernel_name((ocl_kernel)k));
  }
  if (e != NULL) goto fail;
  cl_int zeros[QIAO_DEV_OP_COUNT] = {0};
  q->flags = clCreateBuffer(device->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                            sizeof(zeros), zeros, &st);
  if (st != CL_SUCCESS) {
    e = ocl__cl_error(st, "clCreateBuffer", "error flags");
    goto fail;
  }
  q->magic = OCL_MAGIC_QUEUE;
  *out_queue = q;
  return NULL;
fail:
  for (int k = 0; k < K_COUNT; k++)
    if (q->kernels[k] != NULL) clReleaseKernel(q->kernels[k]);
  if (q->queue != NULL) clReleaseCommandQueue(q->queue);
  free(q);
  return e;
}

void ocl__queue_destroy(qiao_dev_queue *queue) {
  if (queue == NULL || queue->magic != OCL_MAGIC_QUEUE) return;
  queue->magic = OCL_MAGIC_DEAD;
  clFinish(queue->queue); /* the ABI: waits for queued work */
  for (int k = 0; k < K_COUNT; k++)
    clReleaseKernel(queue->kernels[k]);
  clReleaseMemObject(queue->flags);
  clReleaseCommandQueue(queue->queue);
  free(queue);
}

qiao_dev_error *ocl__check_queue(const qiao_dev_queue *queue) {
  if (queue == NULL) return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: queue is NULL");
  if (queue->magic != OCL_MAGIC_QUEUE)
    return ocl__error(QIAO_DEV_BAD_HANDLE, "opencl: not an OpenCL queue handle");
  return NULL;
}

/* What each op's device-side check found, for the synchronize error. */
static const char *flag_message(int op) {
  switch (op) {
  case QIAO_DEV_OP_EMBED: return "embed: an ids value is outside [0, vocab)";
  case QIAO_DEV_OP_KV_WRITE:
    return "kv_write: a slots value is outside [0, n_slots) (that token was not written)";
  case QIAO_DEV_OP_ATTENTION:
    return "attention: a token_seq, token_pos or block_table value is out of range";
  case QIAO_DEV_OP_MATMUL_EXPERTS: return "matmul_experts: an ids value is outside [0, n_experts)";
  default: return "an index is out of range";
  }
}

qiao_dev_error *ocl__queue_synchronize(qiao_dev_queue *queue) {
  qiao_dev_error *e = ocl__check_queue(queue);
  if (e != NULL) return e;
  cl_int st = clFinish(queue->queue);
  if (st != CL_SUCCESS) return ocl__cl_error(st, "clFinish", "queue_synchronize");
  if (!queue->flags_dirty) return NULL;
  cl_int flags[QIAO_DEV_OP_COUNT];
  st = clEnqueueReadBuffer(queue->queue, queue->flags, CL_TRUE, 0, sizeof(flags), flags, 0, NULL,
                           NULL);
  if (st != CL_SUCCESS) return ocl__cl_error(st, "clEnqueueReadBuffer", "error flags");
  queue->flags_dirty = false;
  char msg[512] = "";
  size_t len = 0;
  for (int op = 0; op < QIAO_DEV_OP_COUNT; op++) {
    if (flags[op] == 0) continue;
    int n = snprintf(msg + len, sizeof(msg) - len, "%s%s", len ? "; " : "", flag_message(op));
    if (n > 0) len += (size_t)n < sizeof(msg) - len ? (size_t)n : sizeof(msg) - len - 1;
  }
  if (len == 0) return NULL;
  cl_int zeros[QIAO_DEV_OP_COUNT] = {0};
  st = clEnqueueWriteBuffer(queue->queue, queue->flags, CL_TRUE, 0, sizeof(zeros), zeros, 0, NULL,
                            NULL);
  if (st != CL_SUCCESS) return ocl__cl_error(st, "clEnqueueWriteBuffer", "error flags");
  return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: %s", msg);
}

/* ---- references and data movement */

qiao_dev_error *ocl__check_ref(const qiao_dev_queue *queue, const char *what, qiao_dev_ref ref,
                               uint64_t bytes, uint64_t align) {
  if (ref.buffer == NULL)
    return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: %s: buffer is NULL", what);
  const qiao_dev_buffer *b = ref.buffer;
  if (b->magic != OCL_MAGIC_BUFFER)
    return ocl__error(QIAO_DEV_BAD_HANDLE, "opencl: %s: not an OpenCL buffer handle", what);
  if (b->device != queue->device)
    return ocl__error(QIAO_DEV_INVALID_ARGUMENT,
                      "opencl: %s: the buffer belongs to another device than the queue", what);
  if (align > 1 && ref.offset % align != 0)
    return ocl__error(QIAO_DEV_INVALID_ARGUMENT,
                      "opencl: %s: offset %llu is not a multiple of %llu bytes", what,
                      (unsigned long long)ref.offset, (unsigned long long)align);
  if (ref.offset > b->size || bytes > b->size - ref.offset)
    return ocl__error(QIAO_DEV_INVALID_ARGUMENT,
                      "opencl: %s: %llu bytes at offset %llu exceed the buffer's %llu bytes", what,
                      (unsigned long long)bytes, (unsigned long long)ref.offset,
                      (unsigned long long)b->size);
  return NULL;
}

qiao_dev_error *ocl__upload(qiao_dev_queue *queue, qiao_dev_ref dst, const void *src,
                            uint64_t size) {
  qiao_dev_error *e = ocl__check_queue(queue);
  if (e == NULL) e = ocl__check_ref(queue, "upload: dst", dst, size, 1);
  if (e != NULL) return e;
  if (size == 0) return NULL;
  if (src == NULL) return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: upload: src is NULL");
  cl_int st = clEnqueueWriteBuffer(queue->queue, dst.buffer->mem, CL_FALSE, (size_t)dst.offset,
                                   (size_t)size, src, 0, NULL, NULL);
  return st == CL_SUCCESS ? NULL : ocl__cl_error(st, "clEnqueueWriteBuffer", "upload");
}

qiao_dev_error *ocl__download(qiao_dev_queue *queue, void *dst, qiao_dev_ref src, uint64_t size) {
  qiao_dev_error *e = ocl__check_queue(queue);
  if (e == NULL) e = ocl__check_ref(queue, "download: src", src, size, 1);
  if (e != NULL) return e;
  if (size == 0) return NULL;
  if (dst == NULL) return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: download: dst is NULL");
  cl_int st = clEnqueueReadBuffer(queue->queue, src.buffer->mem, CL_FALSE, (size_t)src.offset,
                                  (size_t)size, dst, 0, NULL, NULL);
  return st == CL_SUCCESS ? NULL : ocl__cl_error(st, "clEnqueueReadBuffer", "download");
}

qiao_dev_error *ocl__copy(qiao_dev_queue *queue, qiao_dev_ref dst, qiao_dev_ref src,
                          uint64_t size) {
  qiao_dev_error *e = ocl__check_queue(queue);
  if (e == NULL) e = ocl__check_ref(queue, "copy: dst", dst, size, 1);
  if (e == NULL) e = ocl__check_ref(queue, "copy: src", src, size, 1);
  if (e != NULL) return e;
  if (size == 0) return NULL;
  if (dst.buffer == src.buffer && dst.offset < src.offset + size && src.offset < dst.offset + size)
    return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: copy: dst and src overlap");
  cl_int st =
      clEnqueueCopyBuffer(queue->queue, src.buffer->mem, dst.buffer->mem, (size_t)src.offset,
                          (size_t)dst.offset, (size_t)size, 0, NULL, NULL);
  return st == CL_SUCCESS ? NULL : ocl__cl_error(st, "clEnqueueCopyBuffer", "copy");
}
