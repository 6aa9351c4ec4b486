/* The plugin entry point of libqiao-cpu.so: the same table the runtime
 * links in statically. Only this symbol is exported. */
#include "cpu_backend.h"

__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {
  return qiao_cpu_get_api();
}
