/* opencl_ops.c: the fifteen ops of the ABI (1.4): the shared argument validation
 * on the host (backends/common/plugin_validate.c: shapes, dtypes, every
 * operand inside its buffer, alignment, forbidden overlaps), then one kernel
 * launch each. Values inside device buffers (ids, slots, block tables) are
 * checked by the kernels themselves (see kernels/common.cl). */
#include <stdio.h>

#include "opencl_internal.h"
#include "plugin_validate_1_4.h"

#define TRY PLUGIN_TRY

/* Validates op `name`'s args into plugin_plan p; an op with no work is done. */
#define VALIDATE(name, q, a)                                                                       \
  plugin_plan p;                                                                                   \
  TRY(plugin__validate_##name(&ocl__rules, q, a, &p));                                             \
  if (p.empty) return NULL

static qiao_dev_error *too_big(const char *op) {
  return plugin__error(QIAO_DEV_INVALID_ARGUMENT,
                       "opencl: %s: the size of the launch grid overflows", op);
}

/* ---- launching */

typedef struct launch {
  qiao_dev_queue *q;
  ocl_kernel kernel;
  cl_uint n_args;
  cl_int status; /* the first clSetKernelArg failure */
  cl_uint failed_arg;
} launch;

static launch launch_begin(qiao_dev_queue *q, ocl_kernel kernel) {
  launch l = {q, kernel, 0, CL_SUCCESS, 0};
  return l;
}

static void arg(launch *l, size_t size, const void *value) {
  cl_int st = clSetKernelArg(l->q->kernels[l->kernel], l->n_args, size, value);
  if (st != CL_SUCCESS && l->status == CL_SUCCESS) {
    l->status = st;
    l->failed_arg = l->n_args;
  }
  l->n_args++;
}

static void arg_mem(launch *l, cl_mem m) {
  arg(l, sizeof(m), &m);
}
static void arg_u64(launch *l, uint64_t v) {
  cl_ulong x = v;
  arg(l, sizeof(x), &x);
}
static void arg_i32(launch *l, int32_t v) {
  cl_int x = v;
  arg(l, sizeof(x), &x);
}
static void arg_f32(launch *l, float v) {
  cl_float x = v;
  arg(l, sizeof(x), &x);
}
/* A validated operand: its buffer, then its offset in elements of `elem` bytes. */
static void arg_ref(launch *l, qiao_dev_ref ref, uint64_t elem) {
  arg_mem(l, ref.buffer->mem);
  arg_u64(l, ref.offset / elem);
}
/* An optional operand given as {NULL, 0}: the flags buffer stands in (never read). */
static void arg_opt_ref(launch *l, qiao_dev_ref ref, uint64_t elem) {
  if (ref.buffer == NULL) {
    arg_mem(l, l->q->flags);
    arg_u64(l, 0);
  } else {
    arg_ref(l, ref, elem);
  }
}

/* Enqueues the kernel. local == NULL (one work-item per element, no local
 * memory): work-groups of (WG, 1, 1), the first global size rounded up to a
 * multiple of WG (the kernels skip the extra items). A fixed work-group size
 * also means one compiled variant per kernel where a driver specializes on it
 * (PoCL does, and compiling is slow). */
static qiao_dev_error *launch_run(launch *l, cl_uint dims, const size_t *global_in,
                                  const size_t *local) {
  const char *name = ocl__kernel_name(l->kernel);
  size_t global[3] = {global_in[0], dims > 1 ? global_in[1] : 1, dims > 2 ? global_in[2] : 1};
  size_t fixed[3] = {l->q->device->wg, 1, 1};
  if (local == NULL) {
    size_t wg = fixed[0];
    if (global[0] > SIZE_MAX - wg) return too_big(name);
    global[0] = (global[0] + wg - 1) / wg * wg;
    local = fixed;
  }
  if (l->status != CL_SUCCESS) {
    char what[96];
    snprintf(what, sizeof(what), "%s, argument %u", name, (unsigned)l->failed_arg);
    return ocl__cl_error(l->status, "clSetKernelArg", what);
  }
  cl_int st = clEnqueueNDRangeKernel(l->q->queue, l->q->kernels[l->kernel], dims, NULL, global,
                                     local, 0, NULL, NULL);
  if (st != CL_SUCCESS) return ocl__cl_error(st, "clEnqueueNDRangeKernel", name);
  return NULL;
}

/* A global size: count work-groups of wg items, as size_t. */
static qiao_dev_error *groups(const char *op, uint64_t count, uint64_t wg, size_t *out) {
  uint64_t v;
  if (__builtin_mul_overflow(count, wg, &v) || v > SIZE_MAX) return too_big(op);
  *out = (size_t)v;
  return NULL;
}

/* ---- the ops */

qiao_dev_error *ocl__embed(qiao_dev_queue *q, const qiao_dev_embed_args *a) {
  VALIDATE(embed, q, a);
  launch l = launch_begin(q, ocl__weight_kernel(K_EMBED, K_EMBED_1_3, a->table_dtype));
  arg_mem(&l, a->table.buffer->mem);
  arg_u64(&l, a->table.offset);
  arg_u64(&l, p.row_bytes);
  arg_ref(&l, a->ids, 4);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->vocab);
  arg_u64(&l, a->dim);
  arg_mem(&l, q->flags);
  size_t global[2] = {(size_t)a->dim, (size_t)a->n_tokens};
  q->flags_dirty = true;
  return launch_run(&l, 2, global, NULL);
}

qiao_dev_error *ocl__matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  VALIDATE(matmul, q, a);
  size_t wg = q->device->wg, global[2], local[2] = {wg, 1};
  TRY(groups("matmul", a->m, wg, &global[0]));
  global[1] = (size_t)((a->n + 3) / 4); /* NT = 4 tokens per work-group */
  launch l = launch_begin(q, ocl__weight_kernel(K_MATMUL, K_MATMUL_1_3, a->w_dtype));
  arg_ref(&l, a->x, 4);
  arg_mem(&l, a->w.buffer->mem);
  arg_u64(&l, a->w.offset);
  arg_u64(&l, p.row_bytes);
  arg_opt_ref(&l, a->bias, 4);
  arg_i32(&l, p.has_bias);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->n);
  arg_u64(&l, a->k);
  arg_u64(&l, a->m);
  arg_i32(&l, a->accumulate != 0);
  return launch_run(&l, 2, global, local);
}

qiao_dev_error *ocl__rmsnorm(qiao_dev_queue *q, const qiao_dev_rmsnorm_args *a) {
  VALIDATE(rmsnorm, q, a);
  size_t wg = q->device->wg, global[1], local[1] = {wg};
  TRY(groups("rmsnorm", a->rows, wg, &global[0]));
  launch l = launch_begin(q, K_RMSNORM);
  arg_ref(&l, a->x, 4);
  arg_ref(&l, a->weight, 4);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->cols);
  arg_f32(&l, a->eps);
  return launch_run(&l, 1, global, local);
}

qiao_dev_error *ocl__rope(qiao_dev_queue *q, const qiao_dev_rope_args *a) {
  VALIDATE(rope, q, a);
  size_t global[3] = {(size_t)(a->rot_dim / 2), (size_t)a->n_heads, (size_t)a->n_tokens};
  launch l = launch_begin(q, K_ROPE);
  arg_ref(&l, a->x, 4);
  arg_ref(&l, a->positions, 4);
  arg_ref(&l, a->freqs, 4);
  arg_u64(&l, a->n_heads);
  arg_u64(&l, a->head_dim);
  arg_u64(&l, a->rot_dim / 2);
  arg_i32(&l, a->style == QIAO_DEV_ROPE_NEOX);
  return launch_run(&l, 3, global, NULL);
}

qiao_dev_error *ocl__kv_write(qiao_dev_queue *q, const qiao_dev_kv_write_args *a) {
  VALIDATE(kv_write, q, a);
  uint64_t es = p.cache_elem;
  size_t global[2] = {(size_t)a->kv_dim, (size_t)a->n_tokens};
  launch l = launch_begin(q, K_KV_WRITE + (es == 2));
  arg_ref(&l, a->k, 4);
  arg_ref(&l, a->v, 4);
  arg_ref(&l, a->slots, 4);
  arg_ref(&l, a->k_cache, es);
  arg_ref(&l, a->v_cache, es);
  arg_u64(&l, a->kv_dim);
  arg_u64(&l, a->n_slots);
  arg_mem(&l, q->flags);
  q->flags_dirty = true;
  return launch_run(&l, 2, global, NULL);
}

qiao_dev_error *ocl__attention(qiao_dev_queue *q, const qiao_dev_attention_args *a) {
  VALIDATE(attention, q, a);
  uint64_t es = p.cache_elem;
  /* Positions are I32, so a window beyond 2^31 is the same as none. */
  uint64_t window = a->window > 0x80000000u ? 0x80000000u : a->window;
  size_t wg = q->device->wg, global[2], local[2] = {wg, 1};
  TRY(groups("attention", a->n_heads, wg, &global[0]));
  global[1] = (size_t)a->n_tokens;
  launch l = launch_begin(q, K_ATTENTION + (es == 2));
  arg_ref(&l, a->q, 4);
  arg_ref(&l, a->k_cache, es);
  arg_ref(&l, a->v_cache, es);
  arg_ref(&l, a->block_table, 4);
  arg_ref(&l, a->token_seq, 4);
  arg_ref(&l, a->token_pos, 4);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->n_heads);
  arg_u64(&l, a->n_kv_heads);
  arg_u64(&l, a->head_dim);
  arg_u64(&l, a->n_seqs);
  arg_u64(&l, a->max_blocks_per_seq);
  arg_u64(&l, a->block_size);
  arg_u64(&l, a->n_slots);
  arg_u64(&l, window);
  arg_f32(&l, a->scale);
  arg_mem(&l, q->flags);
  q->flags_dirty = true;
  return launch_run(&l, 2, global, local);
}

/* swiglu and add: out = f(in0, in1), elementwise over n floats. */
static qiao_dev_error *binary(qiao_dev_queue *q, ocl_kernel kernel, uint64_t n, qiao_dev_ref in0,
                              qiao_dev_ref in1, qiao_dev_ref out) {
  size_t global[1] = {(size_t)n};
  launch l = launch_begin(q, kernel);
  arg_ref(&l, in0, 4);
  arg_ref(&l, in1, 4);
  arg_ref(&l, out, 4);
  arg_u64(&l, n);
  return launch_run(&l, 1, global, NULL);
}

qiao_dev_error *ocl__swiglu(qiao_dev_queue *q, const qiao_dev_swiglu_args *a) {
  VALIDATE(swiglu, q, a);
  return binary(q, K_SWIGLU, a->n, a->gate, a->up, a->out);
}

qiao_dev_error *ocl__add(qiao_dev_queue *q, const qiao_dev_add_args *a) {
  VALIDATE(add, q, a);
  return binary(q, K_ADD, a->n, a->a, a->b, a->out);
}

qiao_dev_error *ocl__argmax(qiao_dev_queue *q, const qiao_dev_argmax_args *a) {
  VALIDATE(argmax, q, a);
  size_t wg = q->device->wg, global[1], local[1] = {wg};
  TRY(groups("argmax", a->rows, wg, &global[0]));
  launch l = launch_begin(q, K_ARGMAX);
  arg_ref(&l, a->x, 4);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->cols);
  return launch_run(&l, 1, global, local);
}

qiao_dev_error *ocl__moe_gate(qiao_dev_queue *q, const qiao_dev_moe_gate_args *a) {
  VALIDATE(moe_gate, q, a);
  size_t global[1] = {(size_t)a->n_tokens};
  launch l = launch_begin(q, K_MOE_GATE);
  arg_ref(&l, a->logits, 4);
  arg_ref(&l, a->ids, 4);
  arg_ref(&l, a->weights, 4);
  arg_u64(&l, a->n_tokens);
  arg_u64(&l, a->n_experts);
  arg_u64(&l, a->k);
  arg_i32(&l, a->normalize != 0);
  return launch_run(&l, 1, global, NULL);
}

qiao_dev_error *ocl__matmul_experts(qiao_dev_queue *q, const qiao_dev_matmul_experts_args *a) {
  VALIDATE(matmul_experts, q, a);
  size_t wg = q->device->wg, global[2], local[2] = {wg, 1};
  TRY(groups("matmul_experts", a->out_dim, wg, &global[0]));
  if (p.slots > SIZE_MAX) return too_big("matmul_experts");
  global[1] = (size_t)p.slots;
  launch l =
      launch_begin(q, ocl__weight_kernel(K_MATMUL_EXPERTS, K_MATMUL_EXPERTS_1_3, a->w_dtype));
  arg_ref(&l, a->x, 4);
  arg_mem(&l, a->w.buffer->mem);
  arg_u64(&l, a->w.offset);
  arg_u64(&l, p.row_bytes);
  arg_u64(&l, p.expert_bytes);
  arg_ref(&l, a->ids, 4);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->k);
  arg_u64(&l, a->n_experts);
  arg_u64(&l, a->in_dim);
  arg_u64(&l, a->out_dim);
  arg_i32(&l, a->x_per_slot != 0);
  arg_mem(&l, q->flags);
  q->flags_dirty = true;
  return launch_run(&l, 2, global, local);
}

qiao_dev_error *ocl__moe_combine(qiao_dev_queue *q, const qiao_dev_moe_combine_args *a) {
  VALIDATE(moe_combine, q, a);
  size_t global[2] = {(size_t)a->dim, (size_t)a->n_tokens};
  launch l = launch_begin(q, K_MOE_COMBINE);
  arg_ref(&l, a->x, 4);
  arg_ref(&l, a->weights, 4);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->k);
  arg_u64(&l, a->dim);
  arg_i32(&l, a->accumulate != 0);
  return launch_run(&l, 2, global, NULL);
}

/* ---- (1.4) multi-head latent attention and DeepSeekMoE routing */

qiao_dev_error *ocl__latent_write(qiao_dev_queue *q, const qiao_dev_latent_write_args *a) {
  VALIDATE(latent_write, q, a);
  uint64_t es = p.cache_elem;
  /* latent_dim + rope_dim fits: latent and rope (n_tokens > 0 rows) lie in buffers */
  size_t global[2] = {(size_t)(a->latent_dim + a->rope_dim), (size_t)a->n_tokens};
  launch l = launch_begin(q, K_LATENT_WRITE + (es == 2));
  arg_ref(&l, a->latent, 4);
  arg_ref(&l, a->rope, 4);
  arg_ref(&l, a->slots, 4);
  arg_ref(&l, a->cache, es);
  arg_u64(&l, a->latent_dim);
  arg_u64(&l, a->rope_dim);
  arg_u64(&l, a->n_slots);
  arg_mem(&l, q->flags);
  q->flags_dirty = true;
  return launch_run(&l, 2, global, NULL);
}

qiao_dev_error *ocl__attention_latent(qiao_dev_queue *q, const qiao_dev_attention_latent_args *a) {
  VALIDATE(attention_latent, q, a);
  uint64_t es = p.cache_elem;
  /* Positions are I32, so a window beyond 2^31 is the same as none. */
  uint64_t window = a->window > 0x80000000u ? 0x80000000u : a->window;
  size_t wg = q->device->wg, global[2], local[2] = {wg, 1};
  TRY(groups("attention_latent", a->n_heads, wg, &global[0]));
  global[1] = (size_t)a->n_tokens;
  launch l = launch_begin(q, K_ATTENTION_LATENT + (es == 2));
  arg_ref(&l, a->q_latent, 4);
  arg_ref(&l, a->q_rope, 4);
  arg_ref(&l, a->cache, es);
  arg_ref(&l, a->block_table, 4);
  arg_ref(&l, a->token_seq, 4);
  arg_ref(&l, a->token_pos, 4);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->n_heads);
  arg_u64(&l, a->latent_dim);
  arg_u64(&l, a->rope_dim);
  arg_u64(&l, a->n_seqs);
  arg_u64(&l, a->max_blocks_per_seq);
  arg_u64(&l, a->block_size);
  arg_u64(&l, a->n_slots);
  arg_u64(&l, window);
  arg_f32(&l, a->scale);
  arg_mem(&l, q->flags);
  q->flags_dirty = true;
  return launch_run(&l, 2, global, local);
}

qiao_dev_error *ocl__moe_route(qiao_dev_queue *q, const qiao_dev_moe_route_args *a) {
  VALIDATE(moe_route, q, a);
  size_t global[1] = {(size_t)a->n_tokens};
  launch l = launch_begin(q, K_MOE_ROUTE);
  arg_ref(&l, a->logits, 4);
  arg_opt_ref(&l, a->bias, 4);
  arg_i32(&l, p.has_bias);
  arg_ref(&l, a->ids, 4);
  arg_ref(&l, a->weights, 4);
  arg_u64(&l, a->n_tokens);
  arg_u64(&l, a->n_experts);
  arg_u64(&l, a->k);
  arg_i32(&l, a->scoring == QIAO_DEV_MOE_SCORE_SIGMOID);
  arg_i32(&l, a->normalize != 0);
  /* n_groups 0 or 1: no group limit (the kernel tests n_groups > 1) */
  arg_u64(&l, a->n_groups);
  arg_u64(&l, a->topk_groups);
  arg_i32(&l, a->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM);
  arg_f32(&l, a->scale);
  return launch_run(&l, 1, global, NULL);
}
