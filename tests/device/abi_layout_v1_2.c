/* The layout freeze of device ABI 1.2 (LP64), beside abi_layout_v1_0.c and
 * abi_layout_v1_1.c, which keep checking theirs: 1.2 is 1.1 plus what is
 * checked here, and none of these numbers may change after the release
 * (docs/spec/device-abi.md Appendix C). */
#include <stddef.h>

#include "qiao/device.h"
#include "test_util.h"

int main(void) {
  CHECK(QIAO_DEVICE_ABI_MAJOR == 1);
  CHECK(QIAO_DEVICE_ABI_MINOR >= 2);
  CHECK(sizeof(void *) == 8 && sizeof(size_t) == 8); /* the numbers below are LP64 */

  /* The precisions and the informational flag; earlier bits keep theirs. */
  CHECK(QIAO_DEV_PRECISION_EXACT == 0u);
  CHECK(QIAO_DEV_PRECISION_Q8 == 1u);
  CHECK(QIAO_DEV_FLAG_HOST_MEMORY == 1u && QIAO_DEV_FLAG_BATCH_INVARIANT == 2u);
  CHECK(QIAO_DEV_FLAG_Q8_ACTIVATIONS == 4u);

  /* qiao_dev_matmul_args: x_precision sits in 1.0's tail padding (after
   * accumulate at 104), so the size stays 112 and a backend reads it only
   * from a 1.2 runtime (spec §3). */
  CHECK(sizeof(qiao_dev_matmul_args) == 112);
  CHECK(offsetof(qiao_dev_matmul_args, accumulate) == 104);
  CHECK(offsetof(qiao_dev_matmul_args, x_precision) == 108);
  CHECK(sizeof(((qiao_dev_matmul_args *)0)->x_precision) == 4);

  /* Nothing else grew. */
  CHECK(sizeof(qiao_dev_matmul_experts_args) == 128);
  CHECK(sizeof(qiao_dev_device_options) == 16);
  CHECK(sizeof(qiao_dev_properties) == 288);
  /* the table of 1.0-1.3 ends at 280 bytes; 1.4 appended functions after it */
  CHECK(offsetof(qiao_dev_api, moe_combine) + sizeof(void *) == 280);
  CHECK(sizeof(qiao_dev_api) >= 280);

  TEST_END();
}
