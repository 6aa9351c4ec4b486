/* cuda_ops.c: the fifteen ops of the ABI (1.4). Each runs the shared argument
 * validation on the host in plain C before any CUDA call
 * (backends/common/plugin_validate.c: shapes, dtypes, every operand inside
 * its buffer, alignment, forbidden overlaps; the same rules, codes and
 * messages as every GPU backend), then calls one launcher of cuda_launch.h.
 * Values inside device buffers (ids, slots, block tables) are checked by the
 * kernels themselves and reported at queue_synchronize. */
#include <string.h>

#include "cuda_internal.h"
#include "cuda_paged.h"

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
  /* Flash-decoding when there are too few (token, head) pairs to fill the GPU (cuda_paged.h). */
  cuq_attention_split(q->device->info.sm_count, a->n_tokens * a->n_heads, a->max_blocks_per_seq,
                      a->block_size, d.window, &d.n_split, &d.chunk);
  void *scratch = NULL;
  uint64_t need = cuq_attention_scratch(&d);
  TRY(cuq__select(q->device, "attention")); /* the scratch is allocated on the queue's device */
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

/* ---- (1.4) multi-head latent attention and DeepSeekMoE routing */

qiao_dev_error *cuq__latent_write(qiao_dev_queue *q, const qiao_dev_latent_write_args *a) {
  VALIDATE(latent_write, q, a);
  q->flags_dirty = true;
  LAUNCH(q, "latent_write",
         cuq_latent_write(q->stream, p.cache_elem == 2, cuq__ptr(a->latent), cuq__ptr(a->rope),
                          cuq__ptr(a->slots), cuq__ptr(a->cache), a->n_tokens, a->latent_dim,
                          a->rope_dim, a->n_slots, q->flags));
}

qiao_dev_error *cuq__attention_latent(qiao_dev_queue *q, const qiao_dev_attention_latent_args *a) {
  const char *op = "attention_latent";
  plugin_plan p;
  TRY(plugin__validate_attention_latent(&cuq__rules, q, a, &p));
  /* The kernel holds a head's query and output in registers: a limit
   * (UNSUPPORTED), checked after every shape rule, with work or without. */
  if (a->latent_dim > CUQ_MAX_LATENT_DIM || a->rope_dim > CUQ_MAX_LATENT_ROPE_DIM)
    return plugin__error(QIAO_DEV_UNSUPPORTED,
                         "cuda: %s: latent_dim %llu / rope_dim %llu exceed this backend's %d / %d",
                         op, (unsigned long long)a->latent_dim, (unsigned long long)a->rope_dim,
                         CUQ_MAX_LATENT_DIM, CUQ_MAX_LATENT_ROPE_DIM);
  if (p.empty) return NULL;
  cuq_latent_dims d;
  memset(&d, 0, sizeof(d));
  d.n_tokens = a->n_tokens;
  d.n_heads = a->n_heads;
  d.latent_dim = a->latent_dim;
  d.rope_dim = a->rope_dim;
  d.n_seqs = a->n_seqs;
  d.max_blocks_per_seq = a->max_blocks_per_seq;
  d.block_size = a->block_size;
  d.n_blocks = a->n_slots / a->block_size;
  /* Positions are I32, so a window beyond 2^31 is the same as none. */
  d.window = a->window > 0x80000000u ? 0x80000000u : a->window;
  d.scale = a->scale;
  /* Flash-decoding when there are too few (token, head) pairs to fill the GPU (cuda_paged.h). */
  cuq_attention_split(q->device->info.sm_count, a->n_tokens * a->n_heads, a->max_blocks_per_seq,
                      a->block_size, d.window, &d.n_split, &d.chunk);
  void *scratch = NULL;
  uint64_t need = cuq_attention_latent_scratch(&d);
  TRY(cuq__select(q->device, op)); /* the scratch is allocated on the queue's device */
  if (need > 0) TRY(cuq__scratch(q, need, &scratch));
  q->flags_dirty = true;
  LAUNCH(q, op,
         cuq_attention_latent(q->stream, p.cache_elem == 2, &d, cuq__ptr(a->q_latent),
                              cuq__ptr(a->q_rope), cuq__ptr(a->cache), cuq__ptr(a->block_table),
                              cuq__ptr(a->token_seq), cuq__ptr(a->token_pos), cuq__ptr(a->out),
                              scratch, q->flags));
}

qiao_dev_error *cuq__moe_route(qiao_dev_queue *q, const qiao_dev_moe_route_args *a) {
  const char *op = "moe_route";
  VALIDATE(moe_route, q, a);
  /* Scratch: each token's biased scores c and group scores (cuda_route.h). */
  uint64_t groups = a->n_groups > 1 ? a->n_groups : 0, per_token, need;
  if (__builtin_add_overflow(a->n_experts, groups, &per_token) ||
      __builtin_mul_overflow(per_token, a->n_tokens, &need) ||
      __builtin_mul_overflow(need, sizeof(float), &need))
    return plugin__error(QIAO_DEV_OUT_OF_MEMORY, "cuda: %s: scratch for %llu tokens overflows", op,
                         (unsigned long long)a->n_tokens);
  void *scratch = NULL;
  TRY(cuq__select(q->device, op));
  TRY(cuq__scratch(q, need, &scratch));
  return cuq__launch_error(
      cuq_moe_route(q->stream, cuq__ptr(a->logits), cuq__ptr(a->bias), cuq__ptr(a->ids),
                    cuq__ptr(a->weights), scratch, a->n_tokens, a->n_experts, a->k,
                    a->scoring == QIAO_DEV_MOE_SCORE_SIGMOID, a->normalize != 0, groups,
                    a->topk_groups, a->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM, a->scale),
      op);
}
