/* The layout freeze of device ABI 1.1 (LP64), beside abi_layout_v1_0.c,
 * which keeps checking every 1.0 number: 1.1 is 1.0 plus what is checked
 * here, and none of these numbers may change after the release
 * (docs/spec/device-abi.md Appendix B). */
#include <stddef.h>

#include "qiao/device.h"
#include "test_util.h"

int main(void) {
  CHECK(QIAO_DEVICE_ABI_MAJOR == 1);
  CHECK(QIAO_DEVICE_ABI_MINOR >= 1);
  CHECK(sizeof(void *) == 8 && sizeof(size_t) == 8); /* the numbers below are LP64 */

  /* the new flag bits; HOST_MEMORY keeps its bit */
  CHECK(QIAO_DEV_FLAG_HOST_MEMORY == 1u);
  CHECK(QIAO_DEV_FLAG_BATCH_INVARIANT == 2u);
  CHECK(QIAO_DEV_OPEN_BATCH_INVARIANT == 1u);

  /* qiao_dev_device_options: flags sits in 1.0's tail padding, so the size
   * stays 16 (why a backend also checks runtime_abi_minor: spec §3). */
  CHECK(sizeof(qiao_dev_device_options) == 16);
  CHECK(_Alignof(qiao_dev_device_options) == 8);
  CHECK(offsetof(qiao_dev_device_options, struct_size) == 0);
  CHECK(offsetof(qiao_dev_device_options, n_threads) == 8);
  CHECK(offsetof(qiao_dev_device_options, flags) == 12);
  CHECK(sizeof(((qiao_dev_device_options *)0)->flags) == 4);

  /* Nothing else grew: the properties and the function table keep their
   * 1.0 sizes (no field or function appended in 1.1). */
  CHECK(sizeof(qiao_dev_properties) == 288);
  CHECK(offsetof(qiao_dev_properties, flags) == 284);
  CHECK(sizeof(qiao_dev_backend_options) == 16);
  /* the table of 1.0-1.3 ends at 280 bytes; 1.4 appended functions after it */
  CHECK(offsetof(qiao_dev_api, moe_combine) + sizeof(void *) == 280);
  CHECK(sizeof(qiao_dev_api) >= 280);

  TEST_END();
}
