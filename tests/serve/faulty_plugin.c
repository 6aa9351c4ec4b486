/* A test plugin for failure tests (libqiao-test-faulty.so): the CPU
 * backend, until told to fail.
 *
 *   QIAO_FAULTY_TRIGGER=PATH   once the file PATH exists (a stat at every
 *       call), every op, upload, download, copy and queue_synchronize
 *       returns QIAO_DEV_DEVICE_LOST "faulty test device: lost", as a GPU
 *       that fell off the bus would.
 *   QIAO_FAULTY_FAIL_EVERY=N   every Nth op call (counted over the process)
 *       returns QIAO_DEV_INTERNAL "faulty test device: op K failed": a
 *       device that fails repeatedly but is not lost.
 *   QIAO_FAULTY_OPEN_DELAY_MS=N   device_open takes N ms more: a device
 *       that is slow to bring up (a server is then still loading).
 *   QIAO_FAULTY_OP_DELAY_US=N   every op takes N us more: a slow device, so
 *       that tests of queues and fairness do not depend on how fast the
 *       build is (a Release build finishes a tiny model's request before
 *       the next one arrives).
 *
 * Both are read when the runtime loads the plugin (qiao_device_get_api). A
 * failing call does nothing on the device. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "cpu_backend.h"
#include "cpu_internal.h" /* qiao__cpu_error: our errors are the CPU backend's */
#include "qiao/device.h"

static qiao_dev_api table;
static const qiao_dev_api *cpu;
static char trigger[4096]; /* "" = never lost */
static unsigned long long fail_every, open_delay_ms, op_delay_us;
static atomic_ullong op_calls;

/* The error a call returns instead of running, or NULL. `op`: a compute op
 * (counted for QIAO_FAULTY_FAIL_EVERY). */
static void sleep_us(unsigned long long us) {
  struct timespec delay = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000L};
  while (nanosleep(&delay, &delay) != 0) { /* interrupted: sleep the rest */
  }
}

static qiao_dev_error *fault(bool op) {
  if (op && op_delay_us > 0) sleep_us(op_delay_us);
  struct stat st;
  if (trigger[0] != '\0' && stat(trigger, &st) == 0)
    return qiao__cpu_error(QIAO_DEV_DEVICE_LOST, "faulty test device: lost");
  if (op && fail_every > 0) {
    unsigned long long k = atomic_fetch_add(&op_calls, 1) + 1;
    if (k % fail_every == 0)
      return qiao__cpu_error(QIAO_DEV_INTERNAL, "faulty test device: op %llu failed", k);
  }
  return NULL;
}

#define OP(fn, ARGS)                                                                               \
  static qiao_dev_error *fn(qiao_dev_queue *queue, const ARGS *args) {                             \
    qiao_dev_error *error = fault(true);                                                           \
    return error ? error : cpu->fn(queue, args);                                                   \
  }
OP(embed, qiao_dev_embed_args)
OP(matmul, qiao_dev_matmul_args)
OP(rmsnorm, qiao_dev_rmsnorm_args)
OP(rope, qiao_dev_rope_args)
OP(kv_write, qiao_dev_kv_write_args)
OP(attention, qiao_dev_attention_args)
OP(swiglu, qiao_dev_swiglu_args)
OP(add, qiao_dev_add_args)
OP(argmax, qiao_dev_argmax_args)
OP(moe_gate, qiao_dev_moe_gate_args)
OP(matmul_experts, qiao_dev_matmul_experts_args)
OP(moe_combine, qiao_dev_moe_combine_args)
#undef OP

static qiao_dev_error *upload(qiao_dev_queue *queue, qiao_dev_ref dst, const void *src,
                              uint64_t size) {
  qiao_dev_error *error = fault(false);
  return error ? error : cpu->upload(queue, dst, src, size);
}

static qiao_dev_error *download(qiao_dev_queue *queue, void *dst, qiao_dev_ref src, uint64_t size) {
  qiao_dev_error *error = fault(false);
  return error ? error : cpu->download(queue, dst, src, size);
}

static qiao_dev_error *copy(qiao_dev_queue *queue, qiao_dev_ref dst, qiao_dev_ref src,
                            uint64_t size) {
  qiao_dev_error *error = fault(false);
  return error ? error : cpu->copy(queue, dst, src, size);
}

static qiao_dev_error *queue_synchronize(qiao_dev_queue *queue) {
  qiao_dev_error *error = fault(false);
  if (error == NULL) return cpu->queue_synchronize(queue);
  /* Still let queued work finish: the runtime may free what it uses next. */
  cpu->error_destroy(cpu->queue_synchronize(queue));
  return error;
}

static qiao_dev_error *slow_device_open(qiao_dev_backend *backend, uint32_t index,
                                        const qiao_dev_device_options *options,
                                        qiao_dev_device **out_device) {
  sleep_us(open_delay_ms * 1000);
  return cpu->device_open(backend, index, options, out_device);
}

__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {
  cpu = qiao_cpu_get_api();
  const char *path = getenv("QIAO_FAULTY_TRIGGER");
  snprintf(trigger, sizeof(trigger), "%s", path ? path : "");
  const char *every = getenv("QIAO_FAULTY_FAIL_EVERY");
  fail_every = every ? strtoull(every, NULL, 10) : 0;
  const char *delay = getenv("QIAO_FAULTY_OPEN_DELAY_MS");
  open_delay_ms = delay ? strtoull(delay, NULL, 10) : 0;
  const char *op_delay = getenv("QIAO_FAULTY_OP_DELAY_US");
  op_delay_us = op_delay ? strtoull(op_delay, NULL, 10) : 0;
  table = *cpu;
  table.name = "faulty";
  table.device_open = slow_device_open;
  table.embed = embed;
  table.matmul = matmul;
  table.rmsnorm = rmsnorm;
  table.rope = rope;
  table.kv_write = kv_write;
  table.attention = attention;
  table.swiglu = swiglu;
  table.add = add;
  table.argmax = argmax;
  table.moe_gate = moe_gate;
  table.matmul_experts = matmul_experts;
  table.moe_combine = moe_combine;
  table.upload = upload;
  table.download = download;
  table.copy = copy;
  table.queue_synchronize = queue_synchronize;
  return &table;
}
