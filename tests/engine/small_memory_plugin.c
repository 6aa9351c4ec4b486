/* A test plugin: the CPU backend as two devices that report little memory,
 * for the engine's memory math. Device i reports QIAO_TEST_DEVICE_MEMORY
 * bytes (default 1 MiB) times 1 + 2i, so device 1 has three times device 0's;
 * both run on the CPU's device 0. With QIAO_TEST_NO_OPEN=1 device_open
 * fails, so a test can tell that a placement was refused before any device
 * was opened (and so before anything was allocated). */
#include <stdio.h>
#include <stdlib.h>

#include "cpu_backend.h"
#include "qiao/device.h"

static qiao_dev_api table;

static uint64_t memory_of(uint32_t index) {
  const char *env = getenv("QIAO_TEST_DEVICE_MEMORY");
  uint64_t base = env ? strtoull(env, NULL, 10) : (1ull << 20);
  return base * (1 + 2ull * index);
}

static qiao_dev_error *device_count(qiao_dev_backend *backend, uint32_t *out_count) {
  (void)backend;
  *out_count = 2;
  return NULL;
}

static qiao_dev_error *device_get_properties(qiao_dev_backend *backend, uint32_t index,
                                             qiao_dev_properties *out) {
  if (index >= 2) return qiao_cpu_get_api()->device_get_properties(backend, index, out);
  qiao_dev_error *err = qiao_cpu_get_api()->device_get_properties(backend, 0, out);
  if (err != NULL) return err;
  snprintf(out->name, sizeof(out->name), "small memory test device %u", index);
  out->memory_bytes = memory_of(index);
  out->max_buffer_bytes = out->memory_bytes;
  return NULL;
}

static qiao_dev_error *device_open(qiao_dev_backend *backend, uint32_t index,
                                   const qiao_dev_device_options *options,
                                   qiao_dev_device **out_device) {
  const char *no_open = getenv("QIAO_TEST_NO_OPEN");
  if (index >= 2 || (no_open != NULL && no_open[0] == '1')) /* the CPU's own error */
    return qiao_cpu_get_api()->device_open(backend, 1000, options, out_device);
  return qiao_cpu_get_api()->device_open(backend, 0, options, out_device);
}

__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {
  table = *qiao_cpu_get_api();
  table.name = "smallmem";
  table.device_count = device_count;
  table.device_get_properties = device_get_properties;
  table.device_open = device_open;
  return &table;
}
