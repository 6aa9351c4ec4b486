/* The freeze of device ABI 1.4 (LP64), beside abi_layout_v1_0.c .. v1_3.c,
 * which keep checking theirs: 1.4 appends the FP8 dtype, the ops of
 * multi-head latent attention and DeepSeekMoE routing, their three args
 * structs and three functions at the end of the table, so none of these
 * numbers may change after the release (docs/spec/device-abi.md Appendix D). */
#include <stddef.h>

#include "qiao/device.h"
#include "test_util.h"

int main(void) {
  CHECK(QIAO_DEVICE_ABI_MAJOR == 1);
  CHECK(QIAO_DEVICE_ABI_MINOR >= 4);
  CHECK(sizeof(void *) == 8 && sizeof(size_t) == 8); /* the numbers below are LP64 */

  /* The values 1.4 appends. */
  CHECK(QIAO_DEV_F8_E4M3_B128 == 14 && QIAO_DEV_DTYPE_COUNT >= 15);
  CHECK(QIAO_DEV_OP_LATENT_WRITE == 12 && QIAO_DEV_OP_ATTENTION_LATENT == 13);
  CHECK(QIAO_DEV_OP_MOE_ROUTE == 14 && QIAO_DEV_OP_COUNT >= 15);
  CHECK(QIAO_DEV_MOE_SCORE_SOFTMAX == 0 && QIAO_DEV_MOE_SCORE_SIGMOID == 1);
  CHECK(QIAO_DEV_MOE_GROUP_MAX == 0 && QIAO_DEV_MOE_GROUP_TOP2_SUM == 1);

  /* qiao_dev_latent_write_args */
  CHECK(sizeof(qiao_dev_latent_write_args) == 112);
  CHECK(_Alignof(qiao_dev_latent_write_args) == 8);
  CHECK(offsetof(qiao_dev_latent_write_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_latent_write_args, n_tokens) == 8);
  CHECK(offsetof(qiao_dev_latent_write_args, latent_dim) == 16);
  CHECK(offsetof(qiao_dev_latent_write_args, rope_dim) == 24);
  CHECK(offsetof(qiao_dev_latent_write_args, n_slots) == 32);
  CHECK(offsetof(qiao_dev_latent_write_args, cache_dtype) == 40);
  CHECK(offsetof(qiao_dev_latent_write_args, latent) == 48);
  CHECK(offsetof(qiao_dev_latent_write_args, rope) == 64);
  CHECK(offsetof(qiao_dev_latent_write_args, slots) == 80);
  CHECK(offsetof(qiao_dev_latent_write_args, cache) == 96);

  /* qiao_dev_attention_latent_args */
  CHECK(sizeof(qiao_dev_attention_latent_args) == 200);
  CHECK(_Alignof(qiao_dev_attention_latent_args) == 8);
  CHECK(offsetof(qiao_dev_attention_latent_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_attention_latent_args, n_tokens) == 8);
  CHECK(offsetof(qiao_dev_attention_latent_args, n_heads) == 16);
  CHECK(offsetof(qiao_dev_attention_latent_args, latent_dim) == 24);
  CHECK(offsetof(qiao_dev_attention_latent_args, rope_dim) == 32);
  CHECK(offsetof(qiao_dev_attention_latent_args, n_seqs) == 40);
  CHECK(offsetof(qiao_dev_attention_latent_args, max_blocks_per_seq) == 48);
  CHECK(offsetof(qiao_dev_attention_latent_args, block_size) == 56);
  CHECK(offsetof(qiao_dev_attention_latent_args, n_slots) == 64);
  CHECK(offsetof(qiao_dev_attention_latent_args, window) == 72);
  CHECK(offsetof(qiao_dev_attention_latent_args, scale) == 80);
  CHECK(offsetof(qiao_dev_attention_latent_args, cache_dtype) == 84);
  CHECK(offsetof(qiao_dev_attention_latent_args, q_latent) == 88);
  CHECK(offsetof(qiao_dev_attention_latent_args, q_rope) == 104);
  CHECK(offsetof(qiao_dev_attention_latent_args, cache) == 120);
  CHECK(offsetof(qiao_dev_attention_latent_args, block_table) == 136);
  CHECK(offsetof(qiao_dev_attention_latent_args, token_seq) == 152);
  CHECK(offsetof(qiao_dev_attention_latent_args, token_pos) == 168);
  CHECK(offsetof(qiao_dev_attention_latent_args, out) == 184);

  /* qiao_dev_moe_route_args */
  CHECK(sizeof(qiao_dev_moe_route_args) == 120);
  CHECK(_Alignof(qiao_dev_moe_route_args) == 8);
  CHECK(offsetof(qiao_dev_moe_route_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_moe_route_args, n_tokens) == 8);
  CHECK(offsetof(qiao_dev_moe_route_args, n_experts) == 16);
  CHECK(offsetof(qiao_dev_moe_route_args, k) == 24);
  CHECK(offsetof(qiao_dev_moe_route_args, scoring) == 32);
  CHECK(offsetof(qiao_dev_moe_route_args, normalize) == 36);
  CHECK(offsetof(qiao_dev_moe_route_args, n_groups) == 40);
  CHECK(offsetof(qiao_dev_moe_route_args, topk_groups) == 44);
  CHECK(offsetof(qiao_dev_moe_route_args, group_score) == 48);
  CHECK(offsetof(qiao_dev_moe_route_args, scale) == 52);
  CHECK(offsetof(qiao_dev_moe_route_args, logits) == 56);
  CHECK(offsetof(qiao_dev_moe_route_args, bias) == 72);
  CHECK(offsetof(qiao_dev_moe_route_args, ids) == 88);
  CHECK(offsetof(qiao_dev_moe_route_args, weights) == 104);

  /* The function table: 1.3's 280 bytes, then the three 1.4 functions. */
  CHECK(offsetof(qiao_dev_api, moe_combine) == 272);
  CHECK(offsetof(qiao_dev_api, latent_write) == 280);
  CHECK(offsetof(qiao_dev_api, attention_latent) == 288);
  CHECK(offsetof(qiao_dev_api, moe_route) == 296);
  CHECK(sizeof(qiao_dev_api) == 304);

  /* Nothing else grew in 1.4. */
  CHECK(sizeof(qiao_dev_matmul_args) == 112);
  CHECK(sizeof(qiao_dev_attention_args) == 200);
  CHECK(sizeof(qiao_dev_moe_gate_args) == 88);
  CHECK(sizeof(qiao_dev_properties) == 288);
  CHECK(sizeof(qiao_dev_device_options) == 16);
  TEST_END();
}
