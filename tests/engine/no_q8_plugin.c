/* A test plugin: the CPU backend, except that it says it cannot do matmul
 * on q8_0 weights. The engine must refuse a q8_0 model on it, naming the op,
 * the dtype and the tensor, instead of computing somewhere else. */
#include "cpu_backend.h"
#include "qiao/device.h"

static qiao_dev_api table;

static qiao_dev_error *op_supported(qiao_dev_device *device, qiao_dev_op op, qiao_dev_dtype dtype,
                                    uint32_t *out_supported) {
  if (op == QIAO_DEV_OP_MATMUL && dtype == QIAO_DEV_Q8_0) {
    *out_supported = 0;
    return NULL;
  }
  return qiao_cpu_get_api()->op_supported(device, op, dtype, out_supported);
}

__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {
  table = *qiao_cpu_get_api();
  table.name = "noq8";
  table.op_supported = op_supported;
  return &table;
}
