/* Test plugins for batch-invariant mode: the CPU backend presenting itself as
 *   VARIANT_V10     an ABI 1.0 plugin (abi_minor 0): like a real one it cannot
 *                   read device_options.flags, so it opens every device in
 *                   its ordinary mode whatever is asked (its properties still
 *                   carry the CPU's flag bits: a runtime must not trust them);
 *   VARIANT_NOFLAG  an ABI 1.1 plugin whose device does not claim
 *                   QIAO_DEV_FLAG_BATCH_INVARIANT.
 * The engine must refuse batch_invariant on both. */
#include <stddef.h>

#include "cpu_backend.h"
#include "qiao/device.h"

static qiao_dev_api table;

static qiao_dev_error *open_ignoring_flags(qiao_dev_backend *b, uint32_t index,
                                           const qiao_dev_device_options *o,
                                           qiao_dev_device **out) {
  qiao_dev_device_options v10 = {.struct_size = sizeof(v10)};
  if (o != NULL) v10.n_threads = o->n_threads;
  return qiao_cpu_get_api()->device_open(b, index, o ? &v10 : NULL, out);
}

static qiao_dev_error *properties_without_flag(qiao_dev_backend *b, uint32_t index,
                                               qiao_dev_properties *p) {
  qiao_dev_error *e = qiao_cpu_get_api()->device_get_properties(b, index, p);
  if (e == NULL && p->struct_size >= offsetof(qiao_dev_properties, flags) + sizeof(p->flags))
    p->flags &= ~(uint32_t)QIAO_DEV_FLAG_BATCH_INVARIANT;
  return e;
}

__attribute__((visibility("default"))) const qiao_dev_api *qiao_device_get_api(void) {
  table = *qiao_cpu_get_api();
#if VARIANT_V10
  table.name = "testv10";
  table.abi_minor = 0;
  table.device_open = open_ignoring_flags;
  (void)properties_without_flag;
#else
  table.name = "testnoflag";
  table.device_get_properties = properties_without_flag;
  (void)open_ignoring_flags;
#endif
  return &table;
}
