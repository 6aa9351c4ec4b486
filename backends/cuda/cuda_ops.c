/* cuda_ops.c: the twelve ops of the ABI. Each runs the shared argument
 * validation on the host in plain C before any CUDA call
 * (backends/common/plugin_validate.c: shapes, dtypes, every operand inside
 * its buffer, alignment, forbidden overlaps; the same rules, codes and
 * messages as every GPU backend), then calls one launcher of cuda_launch.h.
 * Values inside device buffers (ids, slots, block tables) are checked by the
 * kernels themselves and reported at queue_synchronize. */
#include <string.h>

#include "cuda_internal.h"

#define TRY PLUGIN_TRY

/* Validates op `name`'s args into plugin_plan p; an op with no work is done. */
#define VALIDATE(name, q, a)                                                                       \
  plugin_plan p;                                                                                   \
  TRY(plugin__validate_##name(&cuq__rules, q, a, &p));                                             \
  if (p.empty) return NULL

/* Makes the queue's device current, runs a launcher, turns its status into an error. */
#define LAUNCH(q, op, call)                                                                        \
  do {                                                                                             \
    TRY(cuq__select((q)->device, op));                                                             \
    return cuq__launch_error((call), op);                                                          \
  } while (0)

qiao_dev_error *cuq__embed(qiao_dev_queue *q, const qiao_dev_embed_args *a) {
  VALIDATE(embed, q, a);
  q->flags_dirty = true;
  LAUNCH(q, "embed",
         cuq_embed(q->stream, a->table_dtype, cuq__ptr(a->table), p.row_bytes, cuq__ptr(a->ids),
                   cuq__ptr(a->out), a->n_tokens, a->vocab, a->dim, q->flags));
}

qiao_dev_error *cuq__matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  const char *op = "matmul";
  VALIDATE(matmul, q, a);
  const float *x = cuq__ptr(a->x), *bias = p.has_bias ? cuq__ptr(a->bias) : NULL;
  const void *w = cuq__ptr(a->w);
  float *out = cuq__ptr(a->out);
  uint64_t row = p.row_bytes;
  int acc = a->accumulate != 0;
  TRY(cuq__select(q->device, op));
  /* Decode (few rows of x): bandwidth-bound, one warp per weight row. */
  if (a->n <= CUQ_SMALL_N)
    return cuq__launch_error(
        cuq_matmul_small(q->stream, a->w_dtype, x, w, row, bias, out, a->n, a->k, a->m, acc), op);
  /* Prefill with unquantized weights: cuBLAS (see kernels_matmul.cu for how F16/BF16
   * keep F32 activations exact). k == 0 is left to the tiled kernel (bias only). */
  bool dense =
      a->w_dtype == QIAO_DEV_F32 || a->w_dtype == QIAO_DEV_F16 || a->w_dtype == QIAO_DEV_BF16;
  if (dense && q->device->use_cublas && a->k > 0 && a->k <= INT32_MAX && a->m <= INT32_MAX) {
    uint64_t rows_per_chunk = 0;
    uint64_t need = cuq_matmul_cublas_scratch(a->w_dtype, a->n, a->k, a->m, &rows_per_chunk);
    void *scratch = NULL, *handle = NULL;
    if (need > 0) TRY(cuq__scratch(q, need, &scratch));
    TRY(cuq__cublas(q, &handle));
    return cuq__launch_error(cuq_matmul_cublas(q->stream, handle, a->w_dtype, x, w, bias, out, a->n,
                                               a->k, a->m, acc, scratch, rows_per_chunk),
                             op);
  }
  return cuq__launch_error(
      cuq_matmul_tiled(q->stream, a->w_dtype, x, w, row, bias, out, a->n, a->k, a->m, acc), op);
}

qiao_dev_error *cuq__rmsnorm(qiao_dev_queue *q, const qiao_dev_rmsnorm_args *a) {
  VALIDATE(rmsnorm, q, a);
  LAUNCH(q, "rmsnorm",
         cuq_rmsnorm(q->stream, cuq__ptr(a->x), cuq__ptr(a->weight), cuq__ptr(a->out), a->rows,
                     a->cols, a->eps));
}

qiao_dev_error *cuq__rope(qiao_dev_queue *q, const qiao_dev_rope_args *a) {
  VALIDATE(rope, q, a);
  LAUNCH(q, "rope",
         cuq_rope(q->stream, cuq__ptr(a->x), cuq__ptr(a->positions), cuq__ptr(a->freqs),
                  a->n_tokens, a->n_heads, a->head_dim, a->rot_dim / 2,
                  a->style == QIAO_DEV_ROPE_NEOX));
}

qiao_dev_error *cuq__kv_write(qiao_dev_queue *q, const qiao_dev_kv_write_args *a) {
  VALIDATE(kv_write, q, a);
  q->flags_dirty = true;
  LAUNCH(q, "kv_write",
         cuq_kv_write(q->stream, p.cache_elem == 2, cuq__ptr(a->k), cuq__ptr(a->v),
                      cuq__ptr(a->slots), cuq__ptr(a->k_cache), cuq__ptr(a->v_cache), a->n_tokens,
                      a->kv_dim, a->n_slots, q->flags));
}

qiao_dev_error *cuq__attention(qiao_dev_queue *q, const qiao_dev_attention_args *a) {
  VALIDATE(attention, q, a);
  cuq_attention_dims d;
  memset(&d, 0, sizeof(d));
  d.n_tokens = a->n_tokens;
  d.n_heads = a->n_heads;
  d.n_kv_heads = a->n_kv_heads;
  d.head_dim = a->head_dim;
  d.n_seqs = a->n_seqs;
  d.max_blocks_per_seq = a->max_blocks_per_seq;
  d.block_size = a->block_size;
  d.n_blocks = a->n_slots / a->block_size;
  /* Positions are I32, so a window beyond 2^31 is the same as none. */
  d.window = a->window > 0x80000000u ? 0x80000000u : a->window;
  d.scale = a->scale;
  /* Flash-decoding: when there are too few (token, head) pairs to fill the
   * GPU, split each token's KV positions into chunks handled by separate
   * blocks, merged by a second kernel. The sequence lengths live on the
   * device, so the split is sized by the longest possible one. */
  /* Chunks are counted from a token's first attended position, so a sliding
   * window bounds the length to split. */
  uint64_t max_len; /* positions are I32: at most 2^31 of them */
  if (__builtin_mul_overflow(a->max_blocks_per_seq, a->block_size, &max_len) ||
      max_len > 0x80000000u)
    max_len = 0x80000000u;
  if (d.window > 0 && d.window < max_len) max_len = d.window;
  uint64_t units = a->n_tokens * a->n_heads, target = 4ull * q->device->info.sm_count;
  uint64_t n_split = 1;
  if (units < target && max_len > 256) {
    n_split = (target + units - 1) / units;
    uint64_t max_split = (max_len + 255) / 256; /* at least 256 positions per chunk */
    if (n_split > max_split) n_split = max_split;
    if (n_split > 1024) n_split = 1024;
  }
  d.n_split = (uint32_t)n_split;
  d.chunk = n_split > 1 ? (max_len + n_split - 1) / n_split : 0;
  void *scratch = NULL;
  uint64_t need = cuq_attention_scratch(&d);
  if (need > 0) TRY(cuq__scratch(q, need, &scratch));
  q->flags_dirty = true;
  LAUNCH(q, "attention",
         cuq_attention(q->stream, p.cache_elem == 2, &d, cuq__ptr(a->q), cuq__ptr(a->k_cache),
                       cuq__ptr(a->v_cache), cuq__ptr(a->block_table), cuq__ptr(a->token_seq),
                       cuq__ptr(a->token_pos), cuq__ptr(a->out), scratch, q->flags));
}

qiao_dev_error *cuq__swiglu(qiao_dev_queue *q, const qiao_dev_swiglu_args *a) {
  VALIDATE(swiglu, q, a);
  LAUNCH(q, "swiglu",
         cuq_swiglu(q->stream, cuq__ptr(a->gate), cuq__ptr(a->up), cuq__ptr(a->out), a->n));
}

qiao_dev_error *cuq__add(qiao_dev_queue *q, const qiao_dev_add_args *a) {
  VALIDATE(add, q, a);
  LAUNCH(q, "add", cuq_add(q->stream, cuq__ptr(a->a), cuq__ptr(a->b), cuq__ptr(a->out), a->n));
}

qiao_dev_error *cuq__argmax(qiao_dev_queue *q, const qiao_dev_argmax_args *a) {
  VALIDATE(argmax, q, a);
  LAUNCH(q, "argmax", cuq_argmax(q->stream, cuq__ptr(a->x), cuq__ptr(a->out), a->rows, a->cols));
}

qiao_dev_error *cuq__moe_gate(qiao_dev_queue *q, const qiao_dev_moe_gate_args *a) {
  VALIDATE(moe_gate, q, a);
  LAUNCH(q, "moe_gate",
         cuq_moe_gate(q->stream, cuq__ptr(a->logits), cuq__ptr(a->ids), cuq__ptr(a->weights),
                      a->n_tokens, a->n_experts, a->k, a->normalize != 0));
}

qiao_dev_error *cuq__matmul_experts(qiao_dev_queue *q, const qiao_dev_matmul_experts_args *a) {
  VALIDATE(matmul_experts, q, a);
  q->flags_dirty = true;
  LAUNCH(q, "matmul_experts",
         cuq_matmul_experts(q->stream, a->w_dtype, cuq__ptr(a->x), cuq__ptr(a->w), p.row_bytes,
                            p.expert_bytes, cuq__ptr(a->ids), cuq__ptr(a->out), a->n_tokens, a->k,
                            a->n_experts, a->in_dim, a->out_dim, a->x_per_slot != 0, q->flags));
}

qiao_dev_error *cuq__moe_combine(qiao_dev_queue *q, const qiao_dev_moe_combine_args *a) {
  VALIDATE(moe_combine, q, a);
  LAUNCH(q, "moe_combine",
         cuq_moe_combine(q->stream, cuq__ptr(a->x), cuq__ptr(a->weights), cuq__ptr(a->out),
                         a->n_tokens, a->k, a->dim, a->accumulate != 0));
}
