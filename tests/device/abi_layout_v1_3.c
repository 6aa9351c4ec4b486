/* The freeze of device ABI 1.3 (LP64), beside abi_layout_v1_0.c .. v1_2.c,
 * which keep checking theirs: 1.3 appends the dtypes of GGUF's k-quant and
 * older block types and changes no struct, so none of these numbers may
 * change after the release (docs/spec/device-abi.md Appendix D). */
#include <stddef.h>

#include "qiao/device.h"
#include "test_util.h"

int main(void) {
  CHECK(QIAO_DEVICE_ABI_MAJOR == 1);
  CHECK(QIAO_DEVICE_ABI_MINOR >= 3);
  CHECK(sizeof(void *) == 8 && sizeof(size_t) == 8); /* the numbers below are LP64 */

  /* The dtypes of 1.0 keep their numbers; 1.3's follow them. */
  CHECK(QIAO_DEV_F32 == 0 && QIAO_DEV_Q4_0 == 4 && QIAO_DEV_I32 == 5);
  CHECK(QIAO_DEV_Q4_K == 6 && QIAO_DEV_Q5_K == 7 && QIAO_DEV_Q6_K == 8);
  CHECK(QIAO_DEV_Q2_K == 9 && QIAO_DEV_Q3_K == 10 && QIAO_DEV_Q4_1 == 11);
  CHECK(QIAO_DEV_Q5_0 == 12 && QIAO_DEV_Q5_1 == 13);
  CHECK(QIAO_DEV_DTYPE_COUNT >= 14);
  CHECK(sizeof(qiao_dev_dtype) == 4);

  /* No struct grew in 1.3. */
  CHECK(sizeof(qiao_dev_matmul_args) == 112);
  CHECK(sizeof(qiao_dev_embed_args) == 88);
  CHECK(sizeof(qiao_dev_matmul_experts_args) == 128);
  /* the table of 1.0-1.3 ends at 280 bytes; 1.4 appended functions after it */
  CHECK(offsetof(qiao_dev_api, moe_combine) + sizeof(void *) == 280);
  CHECK(sizeof(qiao_dev_api) >= 280);
  TEST_END();
}
