/* cuda_memory.c: buffers (cudaMalloc, never managed memory), queues (one
 * stream each, with error flags, scratch and a cuBLAS handle),
 * synchronization and data movement. Transfers are cudaMemcpyAsync on the
 * queue's stream: the ABI keeps host memory valid until queue_synchronize. */
#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"

/* ---- buffers */

qiao_dev_error *cuq__buffer_create(qiao_dev_device *device, uint64_t size,
                                   qiao_dev_buffer **out_buffer) {
  /* the handle first, then the out-parameter (device-abi.md §6) */
  PLUGIN_TRY(
      plugin__check_handle(&cuq__rules, device, CUQ_MAGIC_DEVICE, "buffer_create: ", "device"));
  if (out_buffer == NULL)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "cuda: buffer_create: out_buffer is NULL");
  if (size == 0) return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "cuda: buffer_create: size is 0");
  if (size > device->info.memory_bytes || size > SIZE_MAX)
    return plugin__error(QIAO_DEV_OUT_OF_MEMORY,
                         "cuda: buffer_create: %llu bytes exceed the device's memory (%llu)",
                         (unsigned long long)size, (unsigned long long)device->info.memory_bytes);
  qiao_dev_error *e = cuq__select(device, "buffer_create");
  if (e != NULL) return e;
  qiao_dev_buffer *b = calloc(1, sizeof(*b));
  if (b == NULL) return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "cuda: buffer_create: out of memory");
  cudaError_t err = cudaMalloc(&b->ptr, (size_t)size);
  if (err != cudaSuccess) {
    free(b);
    char what[64];
    snprintf(what, sizeof(what), "%llu bytes", (unsigned long long)size);
    return cuq__cuda_error(err, "cudaMalloc", what);
  }
  b->magic = CUQ_MAGIC_BUFFER;
  b->device = device;
  b->size = size;
  *out_buffer = b;
  return NULL;
}

void cuq__buffer_destroy(qiao_dev_buffer *buffer) {
  if (buffer == NULL || buffer->magic != CUQ_MAGIC_BUFFER) return;
  buffer->magic = CUQ_MAGIC_DEAD;
  if (cuq__select(buffer->device, "buffer_destroy") == NULL) cudaFree(buffer->ptr);
  free(buffer);
}

void *cuq__ptr(qiao_dev_ref ref) {
  return ref.buffer == NULL ? NULL : (char *)ref.buffer->ptr + ref.offset;
}

/* ---- queues */

qiao_dev_error *cuq__queue_create(qiao_dev_device *device, qiao_dev_queue **out_queue) {
  /* the handle first, then the out-parameter (device-abi.md §6) */
  PLUGIN_TRY(
      plugin__check_handle(&cuq__rules, device, CUQ_MAGIC_DEVICE, "queue_create: ", "device"));
  if (out_queue == NULL)
    return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "cuda: queue_create: out_queue is NULL");
  qiao_dev_error *e = cuq__select(device, "queue_create");
  if (e != NULL) return e;
  qiao_dev_queue *q = calloc(1, sizeof(*q));
  if (q == NULL) return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "cuda: queue_create: out of memory");
  q->device = device;
  /* Non-blocking: no implicit ordering with the legacy default stream. */
  cudaError_t err = cudaStreamCreateWithFlags(&q->stream, cudaStreamNonBlocking);
  if (err != cudaSuccess) {
    free(q);
    return cuq__cuda_error(err, "cudaStreamCreateWithFlags", "queue_create");
  }
  err = cudaMalloc((void **)&q->flags, QIAO_DEV_OP_COUNT * sizeof(int));
  if (err == cudaSuccess)
    err = cudaMemsetAsync(q->flags, 0, QIAO_DEV_OP_COUNT * sizeof(int), q->stream);
  if (err != cudaSuccess) {
    e = cuq__cuda_error(err, "cudaMalloc", "queue_create: error flags");
    cudaFree(q->flags);
    cudaStreamDestroy(q->stream);
    free(q);
    return e;
  }
  q->magic = CUQ_MAGIC_QUEUE;
  *out_queue = q;
  return NULL;
}

void cuq__queue_destroy(qiao_dev_queue *queue) {
  if (queue == NULL || queue->magic != CUQ_MAGIC_QUEUE) return;
  queue->magic = CUQ_MAGIC_DEAD;
  if (cuq__select(queue->device, "queue_destroy") == NULL) {
    cudaStreamSynchronize(queue->stream); /* the ABI: waits for queued work */
    if (queue->cublas != NULL) cublasDestroy((cublasHandle_t)queue->cublas);
    cudaFree(queue->scratch);
    cudaFree(queue->flags);
    cudaStreamDestroy(queue->stream);
    (void)cudaGetLastError();
  }
  free(queue);
}

/* ---- the handles, as the shared argument checks see them */

static bool buffer_info(const qiao_dev_queue *queue, const qiao_dev_buffer *buffer,
                        uint64_t *out_size, bool *out_same_device) {
  if (buffer->magic != CUQ_MAGIC_BUFFER) return false;
  *out_size = buffer->size;
  *out_same_device = buffer->device == queue->device;
  return true;
}

static uint32_t runtime_minor(const qiao_dev_queue *queue) {
  return queue->device->backend->runtime_minor;
}

const plugin_rules cuq__rules = {
    .name = "cuda",
    .handle_kind = "a CUDA",
    .max_head_dim = CUQ_MAX_HEAD_DIM,
    .backend_magic = CUQ_MAGIC_BACKEND,
    .device_magic = CUQ_MAGIC_DEVICE,
    .queue_magic = CUQ_MAGIC_QUEUE,
    .buffer_info = buffer_info,
    .runtime_minor = runtime_minor,
    .block_types_1_3 = true, /* Q4_K .. Q5_1: cuda_dequant.h */
    .f8_1_4 = true,          /* F8_E4M3_B128: cuda_dequant.h */
    .iq4_1_5 = true,         /* IQ4_NL, IQ4_XS: cuda_dequant.h */
};

qiao_dev_error *cuq__queue_synchronize(qiao_dev_queue *queue) {
  qiao_dev_error *e = plugin__check_queue(&cuq__rules, queue);
  if (e == NULL) e = cuq__select(queue->device, "queue_synchronize");
  if (e != NULL) return e;
  cudaError_t err = cudaStreamSynchronize(queue->stream);
  if (err != cudaSuccess) return cuq__cuda_error(err, "cudaStreamSynchronize", "queue_synchronize");
  if (!queue->flags_dirty) return NULL;
  int flags[QIAO_DEV_OP_COUNT];
  err = cudaMemcpyAsync(flags, queue->flags, sizeof(flags), cudaMemcpyDeviceToHost, queue->stream);
  if (err == cudaSuccess) err = cudaStreamSynchronize(queue->stream);
  if (err != cudaSuccess) return cuq__cuda_error(err, "cudaMemcpyAsync", "error flags");
  queue->flags_dirty = false;
  char msg[512];
  if (!plugin__flags_message(flags, msg, sizeof(msg))) return NULL;
  err = cudaMemsetAsync(queue->flags, 0, sizeof(flags), queue->stream);
  if (err == cudaSuccess) err = cudaStreamSynchronize(queue->stream);
  if (err != cudaSuccess) return cuq__cuda_error(err, "cudaMemsetAsync", "error flags");
  return plugin__error(QIAO_DEV_INVALID_ARGUMENT, "cuda: %s", msg);
}

qiao_dev_error *cuq__scratch(qiao_dev_queue *queue, uint64_t bytes, void **out) {
  if (bytes <= queue->scratch_bytes) {
    *out = queue->scratch;
    return NULL;
  }
  /* Grow to a multiple of 1 MiB; the old area may still be in use by queued work. */
  uint64_t want = (bytes + (1u << 20) - 1) & ~(uint64_t)((1u << 20) - 1);
  if (want < bytes || want > SIZE_MAX)
    return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "cuda: scratch of %llu bytes",
                         (unsigned long long)bytes);
  cudaError_t err = cudaStreamSynchronize(queue->stream);
  if (err != cudaSuccess) return cuq__cuda_error(err, "cudaStreamSynchronize", "scratch");
  cudaFree(queue->scratch);
  queue->scratch = NULL;
  queue->scratch_bytes = 0;
  void *p = NULL;
  err = cudaMalloc(&p, (size_t)want);
  if (err != cudaSuccess) {
    char what[64];
    snprintf(what, sizeof(what), "scratch, %llu bytes", (unsigned long long)want);
    return cuq__cuda_error(err, "cudaMalloc", what);
  }
  queue->scratch = p;
  queue->scratch_bytes = want;
  *out = p;
  return NULL;
}

qiao_dev_error *cuq__cublas(qiao_dev_queue *queue, void **out_handle) {
  if (queue->cublas == NULL) {
    cublasHandle_t h = NULL;
    cublasStatus_t st = cublasCreate(&h);
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream(h, queue->stream);
    /* Tensor-core math only where a compute type asks for it: F32 GEMMs stay
     * exact F32 (no TF32), see kernels_matmul.cu. */
    if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    if (st != CUBLAS_STATUS_SUCCESS) {
      if (h != NULL) cublasDestroy(h);
      (void)cudaGetLastError();
      cuq_status s = {"cublasCreate", 0, (int)st};
      return cuq__launch_error(s, "matmul");
    }
    queue->cublas = h;
  }
  *out_handle = queue->cublas;
  return NULL;
}

/* ---- references and data movement */

qiao_dev_error *cuq__upload(qiao_dev_queue *queue, qiao_dev_ref dst, const void *src,
                            uint64_t size) {
  PLUGIN_TRY(plugin__check_upload(&cuq__rules, queue, dst, src, size));
  if (size == 0) return NULL;
  PLUGIN_TRY(cuq__select(queue->device, "upload"));
  cudaError_t err =
      cudaMemcpyAsync(cuq__ptr(dst), src, (size_t)size, cudaMemcpyHostToDevice, queue->stream);
  return err == cudaSuccess ? NULL : cuq__cuda_error(err, "cudaMemcpyAsync", "upload");
}

qiao_dev_error *cuq__download(qiao_dev_queue *queue, void *dst, qiao_dev_ref src, uint64_t size) {
  PLUGIN_TRY(plugin__check_download(&cuq__rules, queue, dst, src, size));
  if (size == 0) return NULL;
  PLUGIN_TRY(cuq__select(queue->device, "download"));
  cudaError_t err =
      cudaMemcpyAsync(dst, cuq__ptr(src), (size_t)size, cudaMemcpyDeviceToHost, queue->stream);
  return err == cudaSuccess ? NULL : cuq__cuda_error(err, "cudaMemcpyAsync", "download");
}

qiao_dev_error *cuq__copy(qiao_dev_queue *queue, qiao_dev_ref dst, qiao_dev_ref src,
                          uint64_t size) {
  PLUGIN_TRY(plugin__check_copy(&cuq__rules, queue, dst, src, size));
  if (size == 0) return NULL;
  PLUGIN_TRY(cuq__select(queue->device, "copy"));
  cudaError_t err = cudaMemcpyAsync(cuq__ptr(dst), cuq__ptr(src), (size_t)size,
                                    cudaMemcpyDeviceToDevice, queue->stream);
  return err == cudaSuccess ? NULL : cuq__cuda_error(err, "cudaMemcpyAsync", "copy");
}
