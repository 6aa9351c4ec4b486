/* Batch-invariant mode of the OpenCL backend (device ABI 1.1): the device
 * claims QIAO_DEV_FLAG_BATCH_INVARIANT, and every op passes the checks of
 * tests/cpu/invariance_checks.h (a row alone equals that row among 1 to 32
 * others, bit for bit) on two devices opened in the mode; for information,
 * how often the ordinary mode differs (on this backend the kernels are the
 * same in both modes: see opencl_device.c). */
#include <dlfcn.h>

#include "invariance_checks.h"

int main(void) {
  void *lib = dlopen(QIAO_OPENCL_PLUGIN, RTLD_NOW | RTLD_LOCAL);
  qiao_device_get_api_fn get =
      lib ? (qiao_device_get_api_fn)dlsym(lib, QIAO_DEVICE_ENTRY_POINT) : NULL;
  if (get == NULL) {
    fprintf(stderr, "cannot load %s: %s\n", QIAO_OPENCL_PLUGIN, dlerror());
    return 1;
  }
  api = get();
  options_checks();
  env alone, many, plain;
  if (!open_mode(&alone, "opencl", 0, QIAO_DEV_OPEN_BATCH_INVARIANT)) {
    fprintf(stderr, "the OpenCL device refused batch-invariant mode\n");
    return 1;
  }
  open_mode(&many, "opencl", 0, QIAO_DEV_OPEN_BATCH_INVARIANT);
  open_mode(&plain, "opencl", 0, 0);
  check_all_ops(&alone, &many, &plain);
  env_close(&alone);
  env_close(&many);
  env_close(&plain);
  dlclose(lib);
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  printf("ok\n");
  return 0;
}
