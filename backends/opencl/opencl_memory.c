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
  /* the handle first, then the out-parameter (device-abi.md §6) */
  PLUGIN_TRY(
      plugin__check_handle(&ocl__rules, device, OCL_MAGIC_DEVICE, "buffer_create: ", "device"));
  if (out_buffer == NULL)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: buffer_create: out_buffer is NULL");
  if (size == 0)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: buffer_create: size is 0");
  if (size > device->max_alloc || size > SIZE_MAX)
    return plugin__error(
        QIAO_DEV_OUT_OF_MEMORY,
        "opencl: buffer_create: %llu bytes exceed the device's largest buffer (%llu)",
        (unsigned long long)size, (unsigned long long)device->max_alloc);
  qiao_dev_buffer *b = calloc(1, sizeof(*b));
  if (b == NULL)
    return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "opencl: buffer_create: out of memory");
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
  /* the handle first, then the out-parameter (device-abi.md §6) */
  PLUGIN_TRY(
      plugin__check_handle(&ocl__rules, device, OCL_MAGIC_DEVICE, "queue_create: ", "device"));
  if (out_queue == NULL)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: queue_create: out_queue is NULL");
  qiao_dev_queue *q = calloc(1, sizeof(*q));
  if (q == NULL)
    return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "opencl: queue_create: out of memory");
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

/* ---- the handles, as the shared argument checks see them */

static bool buffer_info(const qiao_dev_queue *queue, const qiao_dev_buffer *buffer,
                        uint64_t *out_size, bool *out_same_device) {
  if (buffer->magic != OCL_MAGIC_BUFFER) return false;
  *out_size = buffer->size;
  *out_same_device = buffer->device == queue->device;
  return true;
}

static uint32_t runtime_minor(const qiao_dev_queue *queue) {
  return queue->device->backend->runtime_minor;
}

const plugin_rules ocl__rules = {
    .name = "opencl",
    .handle_kind = "an OpenCL",
    .max_head_dim = OCL_MAX_HEAD_DIM,
    .backend_magic = OCL_MAGIC_BACKEND,
    .device_magic = OCL_MAGIC_DEVICE,
    .queue_magic = OCL_MAGIC_QUEUE,
    .buffer_info = buffer_info,
    .runtime_minor = runtime_minor,
    .block_types_1_3 = true,
    .f8_1_4 = true,
    .iq4_1_5 = true,
};

qiao_dev_error *ocl__queue_synchronize(qiao_dev_queue *queue) {
  qiao_dev_error *e = plugin__check_queue(&ocl__rules, queue);
  if (e != NULL) return e;
  cl_int st = clFinish(queue->queue);
  if (st != CL_SUCCESS) return ocl__cl_error(st, "clFinish", "queue_synchronize");
  if (!queue->flags_dirty) return NULL;
  cl_int flags[QIAO_DEV_OP_COUNT];
  st = clEnqueueReadBuffer(queue->queue, queue->flags, CL_TRUE, 0, sizeof(flags), flags, 0, NULL,
                           NULL);
  if (st != CL_SUCCESS) return ocl__cl_error(st, "clEnqueueReadBuffer", "error flags");
  queue->flags_dirty = false;
  char msg[512];
  if (!plugin__flags_message(flags, msg, sizeof(msg))) return NULL;
  cl_int zeros[QIAO_DEV_OP_COUNT] = {0};
  st = clEnqueueWriteBuffer(queue->queue, queue->flags, CL_TRUE, 0, sizeof(zeros), zeros, 0, NULL,
                            NULL);
  if (st != CL_SUCCESS) return ocl__cl_error(st, "clEnqueueWriteBuffer", "error flags");
  return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: %s", msg);
}

/* ---- references and data movement */

qiao_dev_error *ocl__upload(qiao_dev_queue *queue, qiao_dev_ref dst, const void *src,
                            uint64_t size) {
  PLUGIN_TRY(plugin__check_upload(&ocl__rules, queue, dst, src, size));
  if (size == 0) return NULL;
  cl_int st = clEnqueueWriteBuffer(queue->queue, dst.buffer->mem, CL_FALSE, (size_t)dst.offset,
                                   (size_t)size, src, 0, NULL, NULL);
  return st == CL_SUCCESS ? NULL : ocl__cl_error(st, "clEnqueueWriteBuffer", "upload");
}

qiao_dev_error *ocl__download(qiao_dev_queue *queue, void *dst, qiao_dev_ref src, uint64_t size) {
  PLUGIN_TRY(plugin__check_download(&ocl__rules, queue, dst, src, size));
  if (size == 0) return NULL;
  cl_int st = clEnqueueReadBuffer(queue->queue, src.buffer->mem, CL_FALSE, (size_t)src.offset,
                                  (size_t)size, dst, 0, NULL, NULL);
  return st == CL_SUCCESS ? NULL : ocl__cl_error(st, "clEnqueueReadBuffer", "download");
}

qiao_dev_error *ocl__copy(qiao_dev_queue *queue, qiao_dev_ref dst, qiao_dev_ref src,
                          uint64_t size) {
  PLUGIN_TRY(plugin__check_copy(&ocl__rules, queue, dst, src, size));
  if (size == 0) return NULL;
  cl_int st =
      clEnqueueCopyBuffer(queue->queue, src.buffer->mem, dst.buffer->mem, (size_t)src.offset,
                          (size_t)dst.offset, (size_t)size, 0, NULL, NULL);
  return st == CL_SUCCESS ? NULL : ocl__cl_error(st, "clEnqueueCopyBuffer", "copy");
}
