/* The freeze of device ABI 1.5 (LP64), beside abi_layout_v1_0.c .. v1_4.c,
 * which keep checking theirs: 1.5 gives matmul_experts the activation
 * precision of matmul (in what was padding, so no size changes) and appends
 * the dtypes IQ4_NL and IQ4_XS, so none of
 * these numbers may change after the release (docs/spec/device-abi.md
 * Appendix F). */
#include <stddef.h>

#include "qiao/device.h"
#include "test_util.h"

int main(void) {
  CHECK(QIAO_DEVICE_ABI_MAJOR == 1);
  CHECK(QIAO_DEVICE_ABI_MINOR >= 5);
  CHECK(sizeof(void *) == 8 && sizeof(size_t) == 8); /* the numbers below are LP64 */

  /* qiao_dev_matmul_experts_args: x_precision in 1.0-1.4's padding */
  CHECK(sizeof(qiao_dev_matmul_experts_args) == 128);
  CHECK(offsetof(qiao_dev_matmul_experts_args, x_per_slot) == 48);
  CHECK(offsetof(qiao_dev_matmul_experts_args, x_precision) == 52);
  CHECK(offsetof(qiao_dev_matmul_experts_args, x) == 56);

  /* the dtypes appended in 1.5 (IQ4_NL: 32 elements in 18 bytes, IQ4_XS:
   * 256 in 136) */
  CHECK(QIAO_DEV_IQ4_NL == 15 && QIAO_DEV_IQ4_XS == 16);
  CHECK(QIAO_DEV_DTYPE_COUNT >= 17);
  return 0;
}
