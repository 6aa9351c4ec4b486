/* The layout freeze of device ABI 1.0: the size, alignment and every field
 * offset of each struct in qiao/device.h, and of the function table, as
 * released (LP64: Linux on x86-64 and AArch64). A released version's layout
 * never changes: a minor version only appends fields after these, so none of
 * the numbers below may change. If this test fails, the header broke the ABI:
 * undo the change or make it a new major version (docs/spec/device-abi.md §9). */
#include <stddef.h>

#include "qiao/device.h"
#include "test_util.h"

int main(void) {
  CHECK(QIAO_DEVICE_ABI_MAJOR == 1); /* any minor: every 1.x header keeps the layout below */
  CHECK(strcmp(QIAO_DEVICE_ENTRY_POINT, "qiao_device_get_api") == 0);
  CHECK(sizeof(void *) == 8 && sizeof(size_t) == 8); /* the numbers below are LP64 */

  /* enum values are part of the ABI */
  CHECK(QIAO_DEV_OK == 0 && QIAO_DEV_INVALID_ARGUMENT == 1 && QIAO_DEV_BAD_HANDLE == 2);
  CHECK(QIAO_DEV_OUT_OF_MEMORY == 3 && QIAO_DEV_UNSUPPORTED == 4 && QIAO_DEV_DEVICE_LOST == 5);
  CHECK(QIAO_DEV_INTERNAL == 6);
  CHECK(QIAO_DEV_F32 == 0 && QIAO_DEV_F16 == 1 && QIAO_DEV_BF16 == 2 && QIAO_DEV_Q8_0 == 3);
  /* the count grows with minor versions (1.3 appended dtypes): only >= */
  CHECK(QIAO_DEV_Q4_0 == 4 && QIAO_DEV_I32 == 5 && QIAO_DEV_DTYPE_COUNT >= 6);
  CHECK(QIAO_DEV_OP_EMBED == 0 && QIAO_DEV_OP_MATMUL == 1 && QIAO_DEV_OP_RMSNORM == 2);
  CHECK(QIAO_DEV_OP_ROPE == 3 && QIAO_DEV_OP_KV_WRITE == 4 && QIAO_DEV_OP_ATTENTION == 5);
  CHECK(QIAO_DEV_OP_SWIGLU == 6 && QIAO_DEV_OP_ADD == 7 && QIAO_DEV_OP_ARGMAX == 8);
  CHECK(QIAO_DEV_OP_MOE_GATE == 9 && QIAO_DEV_OP_MATMUL_EXPERTS == 10);
  /* the count grows with minor versions (1.4 appended ops): only >= */
  CHECK(QIAO_DEV_OP_MOE_COMBINE == 11 && QIAO_DEV_OP_COUNT >= 12);
  CHECK(QIAO_DEV_ROPE_NORMAL == 0 && QIAO_DEV_ROPE_NEOX == 1);
  CHECK(QIAO_DEV_FLAG_HOST_MEMORY == 1u);

  /* qiao_dev_ref */
  CHECK(sizeof(qiao_dev_ref) == 16);
  CHECK(_Alignof(qiao_dev_ref) == 8);
  CHECK(offsetof(qiao_dev_ref, buffer) == 0);
  CHECK(offsetof(qiao_dev_ref, offset) == 8);

  /* qiao_dev_backend_options */
  CHECK(sizeof(qiao_dev_backend_options) == 16);
  CHECK(_Alignof(qiao_dev_backend_options) == 8);
  CHECK(offsetof(qiao_dev_backend_options, struct_size) == 0);
  CHECK(offsetof(qiao_dev_backend_options, runtime_abi_major) == 8);
  CHECK(offsetof(qiao_dev_backend_options, runtime_abi_minor) == 12);

  /* qiao_dev_properties */
  CHECK(sizeof(qiao_dev_properties) == 288);
  CHECK(_Alignof(qiao_dev_properties) == 8);
  CHECK(offsetof(qiao_dev_properties, struct_size) == 0);
  CHECK(offsetof(qiao_dev_properties, name) == 8);
  CHECK(offsetof(qiao_dev_properties, vendor) == 136);
  CHECK(offsetof(qiao_dev_properties, driver_version) == 200);
  CHECK(offsetof(qiao_dev_properties, memory_bytes) == 264);
  CHECK(offsetof(qiao_dev_properties, max_buffer_bytes) == 272);
  CHECK(offsetof(qiao_dev_properties, compute_units) == 280);
  CHECK(offsetof(qiao_dev_properties, flags) == 284);

  /* qiao_dev_device_options */
  CHECK(sizeof(qiao_dev_device_options) == 16);
  CHECK(_Alignof(qiao_dev_device_options) == 8);
  CHECK(offsetof(qiao_dev_device_options, struct_size) == 0);
  CHECK(offsetof(qiao_dev_device_options, n_threads) == 8);

  /* qiao_dev_embed_args */
  CHECK(sizeof(qiao_dev_embed_args) == 88);
  CHECK(_Alignof(qiao_dev_embed_args) == 8);
  CHECK(offsetof(qiao_dev_embed_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_embed_args, n_tokens) == 8);
  CHECK(offsetof(qiao_dev_embed_args, vocab) == 16);
  CHECK(offsetof(qiao_dev_embed_args, dim) == 24);
  CHECK(offsetof(qiao_dev_embed_args, table_dtype) == 32);
  CHECK(offsetof(qiao_dev_embed_args, table) == 40);
  CHECK(offsetof(qiao_dev_embed_args, ids) == 56);
  CHECK(offsetof(qiao_dev_embed_args, out) == 72);

  /* qiao_dev_matmul_args */
  CHECK(sizeof(qiao_dev_matmul_args) == 112);
  CHECK(_Alignof(qiao_dev_matmul_args) == 8);
  CHECK(offsetof(qiao_dev_matmul_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_matmul_args, n) == 8);
  CHECK(offsetof(qiao_dev_matmul_args, k) == 16);
  CHECK(offsetof(qiao_dev_matmul_args, m) == 24);
  CHECK(offsetof(qiao_dev_matmul_args, x) == 32);
  CHECK(offsetof(qiao_dev_matmul_args, w_dtype) == 48);
  CHECK(offsetof(qiao_dev_matmul_args, w) == 56);
  CHECK(offsetof(qiao_dev_matmul_args, bias) == 72);
  CHECK(offsetof(qiao_dev_matmul_args, out) == 88);
  CHECK(offsetof(qiao_dev_matmul_args, accumulate) == 104);

  /* qiao_dev_rmsnorm_args */
  CHECK(sizeof(qiao_dev_rmsnorm_args) == 80);
  CHECK(_Alignof(qiao_dev_rmsnorm_args) == 8);
  CHECK(offsetof(qiao_dev_rmsnorm_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_rmsnorm_args, rows) == 8);
  CHECK(offsetof(qiao_dev_rmsnorm_args, cols) == 16);
  CHECK(offsetof(qiao_dev_rmsnorm_args, eps) == 24);
  CHECK(offsetof(qiao_dev_rmsnorm_args, x) == 32);
  CHECK(offsetof(qiao_dev_rmsnorm_args, weight) == 48);
  CHECK(offsetof(qiao_dev_rmsnorm_args, out) == 64);

  /* qiao_dev_rope_args */
  CHECK(sizeof(qiao_dev_rope_args) == 96);
  CHECK(_Alignof(qiao_dev_rope_args) == 8);
  CHECK(offsetof(qiao_dev_rope_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_rope_args, n_tokens) == 8);
  CHECK(offsetof(qiao_dev_rope_args, n_heads) == 16);
  CHECK(offsetof(qiao_dev_rope_args, head_dim) == 24);
  CHECK(offsetof(qiao_dev_rope_args, rot_dim) == 32);
  CHECK(offsetof(qiao_dev_rope_args, style) == 40);
  CHECK(offsetof(qiao_dev_rope_args, x) == 48);
  CHECK(offsetof(qiao_dev_rope_args, positions) == 64);
  CHECK(offsetof(qiao_dev_rope_args, freqs) == 80);

  /* qiao_dev_kv_write_args */
  CHECK(sizeof(qiao_dev_kv_write_args) == 120);
  CHECK(_Alignof(qiao_dev_kv_write_args) == 8);
  CHECK(offsetof(qiao_dev_kv_write_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_kv_write_args, n_tokens) == 8);
  CHECK(offsetof(qiao_dev_kv_write_args, kv_dim) == 16);
  CHECK(offsetof(qiao_dev_kv_write_args, n_slots) == 24);
  CHECK(offsetof(qiao_dev_kv_write_args, cache_dtype) == 32);
  CHECK(offsetof(qiao_dev_kv_write_args, k) == 40);
  CHECK(offsetof(qiao_dev_kv_write_args, v) == 56);
  CHECK(offsetof(qiao_dev_kv_write_args, slots) == 72);
  CHECK(offsetof(qiao_dev_kv_write_args, k_cache) == 88);
  CHECK(offsetof(qiao_dev_kv_write_args, v_cache) == 104);

  /* qiao_dev_attention_args */
  CHECK(sizeof(qiao_dev_attention_args) == 200);
  CHECK(_Alignof(qiao_dev_attention_args) == 8);
  CHECK(offsetof(qiao_dev_attention_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_attention_args, n_tokens) == 8);
  CHECK(offsetof(qiao_dev_attention_args, n_heads) == 16);
  CHECK(offsetof(qiao_dev_attention_args, n_kv_heads) == 24);
  CHECK(offsetof(qiao_dev_attention_args, head_dim) == 32);
  CHECK(offsetof(qiao_dev_attention_args, n_seqs) == 40);
  CHECK(offsetof(qiao_dev_attention_args, max_blocks_per_seq) == 48);
  CHECK(offsetof(qiao_dev_attention_args, block_size) == 56);
  CHECK(offsetof(qiao_dev_attention_args, n_slots) == 64);
  CHECK(offsetof(qiao_dev_attention_args, window) == 72);
  CHECK(offsetof(qiao_dev_attention_args, scale) == 80);
  CHECK(offsetof(qiao_dev_attention_args, cache_dtype) == 84);
  CHECK(offsetof(qiao_dev_attention_args, q) == 88);
  CHECK(offsetof(qiao_dev_attention_args, k_cache) == 104);
  CHECK(offsetof(qiao_dev_attention_args, v_cache) == 120);
  CHECK(offsetof(qiao_dev_attention_args, block_table) == 136);
  CHECK(offsetof(qiao_dev_attention_args, token_seq) == 152);
  CHECK(offsetof(qiao_dev_attention_args, token_pos) == 168);
  CHECK(offsetof(qiao_dev_attention_args, out) == 184);

  /* qiao_dev_swiglu_args */
  CHECK(sizeof(qiao_dev_swiglu_args) == 64);
  CHECK(_Alignof(qiao_dev_swiglu_args) == 8);
  CHECK(offsetof(qiao_dev_swiglu_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_swiglu_args, n) == 8);
  CHECK(offsetof(qiao_dev_swiglu_args, gate) == 16);
  CHECK(offsetof(qiao_dev_swiglu_args, up) == 32);
  CHECK(offsetof(qiao_dev_swiglu_args, out) == 48);

  /* qiao_dev_add_args */
  CHECK(sizeof(qiao_dev_add_args) == 64);
  CHECK(_Alignof(qiao_dev_add_args) == 8);
  CHECK(offsetof(qiao_dev_add_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_add_args, n) == 8);
  CHECK(offsetof(qiao_dev_add_args, a) == 16);
  CHECK(offsetof(qiao_dev_add_args, b) == 32);
  CHECK(offsetof(qiao_dev_add_args, out) == 48);

  /* qiao_dev_argmax_args */
  CHECK(sizeof(qiao_dev_argmax_args) == 56);
  CHECK(_Alignof(qiao_dev_argmax_args) == 8);
  CHECK(offsetof(qiao_dev_argmax_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_argmax_args, rows) == 8);
  CHECK(offsetof(qiao_dev_argmax_args, cols) == 16);
  CHECK(offsetof(qiao_dev_argmax_args, x) == 24);
  CHECK(offsetof(qiao_dev_argmax_args, out) == 40);

  /* qiao_dev_moe_gate_args */
  CHECK(sizeof(qiao_dev_moe_gate_args) == 88);
  CHECK(_Alignof(qiao_dev_moe_gate_args) == 8);
  CHECK(offsetof(qiao_dev_moe_gate_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_moe_gate_args, n_tokens) == 8);
  CHECK(offsetof(qiao_dev_moe_gate_args, n_experts) == 16);
  CHECK(offsetof(qiao_dev_moe_gate_args, k) == 24);
  CHECK(offsetof(qiao_dev_moe_gate_args, normalize) == 32);
  CHECK(offsetof(qiao_dev_moe_gate_args, logits) == 40);
  CHECK(offsetof(qiao_dev_moe_gate_args, ids) == 56);
  CHECK(offsetof(qiao_dev_moe_gate_args, weights) == 72);

  /* qiao_dev_matmul_experts_args */
  CHECK(sizeof(qiao_dev_matmul_experts_args) == 128);
  CHECK(_Alignof(qiao_dev_matmul_experts_args) == 8);
  CHECK(offsetof(qiao_dev_matmul_experts_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_matmul_experts_args, n_tokens) == 8);
  CHECK(offsetof(qiao_dev_matmul_experts_args, k) == 16);
  CHECK(offsetof(qiao_dev_matmul_experts_args, n_experts) == 24);
  CHECK(offsetof(qiao_dev_matmul_experts_args, in_dim) == 32);
  CHECK(offsetof(qiao_dev_matmul_experts_args, out_dim) == 40);
  CHECK(offsetof(qiao_dev_matmul_experts_args, x_per_slot) == 48);
  CHECK(offsetof(qiao_dev_matmul_experts_args, x) == 56);
  CHECK(offsetof(qiao_dev_matmul_experts_args, w_dtype) == 72);
  CHECK(offsetof(qiao_dev_matmul_experts_args, w) == 80);
  CHECK(offsetof(qiao_dev_matmul_experts_args, ids) == 96);
  CHECK(offsetof(qiao_dev_matmul_experts_args, out) == 112);

  /* qiao_dev_moe_combine_args */
  CHECK(sizeof(qiao_dev_moe_combine_args) == 88);
  CHECK(_Alignof(qiao_dev_moe_combine_args) == 8);
  CHECK(offsetof(qiao_dev_moe_combine_args, struct_size) == 0);
  CHECK(offsetof(qiao_dev_moe_combine_args, n_tokens) == 8);
  CHECK(offsetof(qiao_dev_moe_combine_args, k) == 16);
  CHECK(offsetof(qiao_dev_moe_combine_args, dim) == 24);
  CHECK(offsetof(qiao_dev_moe_combine_args, accumulate) == 32);
  CHECK(offsetof(qiao_dev_moe_combine_args, x) == 40);
  CHECK(offsetof(qiao_dev_moe_combine_args, weights) == 56);
  CHECK(offsetof(qiao_dev_moe_combine_args, out) == 72);

  /* qiao_dev_api */
  /* the table of 1.0-1.3 ends at 280 bytes; 1.4 appended functions after it */
  CHECK(offsetof(qiao_dev_api, moe_combine) + sizeof(void *) == 280);
  CHECK(sizeof(qiao_dev_api) >= 280);
  CHECK(_Alignof(qiao_dev_api) == 8);
  CHECK(offsetof(qiao_dev_api, struct_size) == 0);
  CHECK(offsetof(qiao_dev_api, abi_major) == 8);
  CHECK(offsetof(qiao_dev_api, abi_minor) == 12);
  CHECK(offsetof(qiao_dev_api, name) == 16);
  CHECK(offsetof(qiao_dev_api, version) == 24);
  CHECK(offsetof(qiao_dev_api, error_code) == 32);
  CHECK(offsetof(qiao_dev_api, error_message) == 40);
  CHECK(offsetof(qiao_dev_api, error_destroy) == 48);
  CHECK(offsetof(qiao_dev_api, backend_open) == 56);
  CHECK(offsetof(qiao_dev_api, backend_close) == 64);
  CHECK(offsetof(qiao_dev_api, device_count) == 72);
  CHECK(offsetof(qiao_dev_api, device_get_properties) == 80);
  CHECK(offsetof(qiao_dev_api, device_open) == 88);
  CHECK(offsetof(qiao_dev_api, device_close) == 96);
  CHECK(offsetof(qiao_dev_api, op_supported) == 104);
  CHECK(offsetof(qiao_dev_api, buffer_create) == 112);
  CHECK(offsetof(qiao_dev_api, buffer_destroy) == 120);
  CHECK(offsetof(qiao_dev_api, buffer_wrap_host) == 128);
  CHECK(offsetof(qiao_dev_api, queue_create) == 136);
  CHECK(offsetof(qiao_dev_api, queue_destroy) == 144);
  CHECK(offsetof(qiao_dev_api, queue_synchronize) == 152);
  CHECK(offsetof(qiao_dev_api, upload) == 160);
  CHECK(offsetof(qiao_dev_api, download) == 168);
  CHECK(offsetof(qiao_dev_api, copy) == 176);
  CHECK(offsetof(qiao_dev_api, embed) == 184);
  CHECK(offsetof(qiao_dev_api, matmul) == 192);
  CHECK(offsetof(qiao_dev_api, rmsnorm) == 200);
  CHECK(offsetof(qiao_dev_api, rope) == 208);
  CHECK(offsetof(qiao_dev_api, kv_write) == 216);
  CHECK(offsetof(qiao_dev_api, attention) == 224);
  CHECK(offsetof(qiao_dev_api, swiglu) == 232);
  CHECK(offsetof(qiao_dev_api, add) == 240);
  CHECK(offsetof(qiao_dev_api, argmax) == 248);
  CHECK(offsetof(qiao_dev_api, moe_gate) == 256);
  CHECK(offsetof(qiao_dev_api, matmul_experts) == 264);
  CHECK(offsetof(qiao_dev_api, moe_combine) == 272);

  /* enums cross the boundary as 4-byte values */
  CHECK(sizeof(qiao_dev_dtype) == 4);
  CHECK(sizeof(qiao_dev_op) == 4);
  CHECK(sizeof(qiao_dev_code) == 4);
  CHECK(sizeof(qiao_dev_rope_style) == 4);

  TEST_END();
}
