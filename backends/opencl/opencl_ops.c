/* opencl_ops.c: the twelve ops of the ABI: argument validation on the host
 * (shapes, dtypes, every operand inside its buffer with overflow-safe sizes,
 * alignment, forbidden overlaps), then one kernel launch each. Values inside
 * device buffers (ids, slots, block tables) are checked by the kernels
 * themselves (see kernels/common.cl). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "opencl_internal.h"

/* ---- sizes */

/* *out = a * b * c, false on overflow. */
static bool prod(uint64_t *out, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t ab;
  return !__builtin_mul_overflow(a, b, &ab) && !__builtin_mul_overflow(ab, c, out);
}

static qiao_dev_error *too_big(const char *op, const char *what) {
  return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: %s: the size of %s overflows", op, what);
}

/* Bytes of one row of `cols` weights in `dtype`, with the alignment of its
 * operand (quantized blocks start with an f16 scale). */
static qiao_dev_error *weight_row(const char *op, qiao_dev_dtype dtype, uint64_t cols,
                                  uint64_t *out_bytes, uint64_t *out_align) {
  uint64_t per = 0, div = 1;
  switch (dtype) {
  case QIAO_DEV_F32: per = 4, *out_align = 4; break;
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: per = 2, *out_align = 2; break;
  case QIAO_DEV_Q8_0: per = 34, div = 32, *out_align = 2; break;
  case QIAO_DEV_Q4_0: per = 18, div = 32, *out_align = 2; break;
  default:
    return ocl__error(QIAO_DEV_UNSUPPORTED, "opencl: %s: weight dtype %d is not supported", op,
                      (int)dtype);
  }
  if (cols % div != 0)
    return ocl__error(QIAO_DEV_INVALID_ARGUMENT,
                      "opencl: %s: row length %llu is not a multiple of the block size 32", op,
                      (unsigned long long)cols);
  if (!prod(out_bytes, cols / div, per, 1)) return too_big(op, "a weight row");
  return NULL;
}

/* A KV cache dtype's element size. */
static qiao_dev_error *cache_elem(const char *op, qiao_dev_dtype dtype, uint64_t *out) {
  if (dtype == QIAO_DEV_F32)
    *out = 4;
  else if (dtype == QIAO_DEV_F16)
    *out = 2;
  else
    return ocl__error(QIAO_DEV_UNSUPPORTED, "opencl: %s: cache dtype %d is not supported", op,
                      (int)dtype);
  return NULL;
}

/* Whether byte ranges [a, a+na) and [b, b+nb) of the same buffer intersect. */
static bool overlap(qiao_dev_ref a, uint64_t na, qiao_dev_ref b, uint64_t nb) {
  return a.buffer == b.buffer && na > 0 && nb > 0 && a.offset < b.offset + nb &&
         b.offset < a.offset + na;
}

static bool same(qiao_dev_ref a, qiao_dev_ref b) {
  return a.buffer == b.buffer && a.offset == b.offset;
}

static qiao_dev_error *overlap_error(const char *op, const char *a, const char *b) {
  return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: %s: %s overlaps %s", op, a, b);
}

/* Validates one operand; `name` is the operand, the message says "<op>: <name>". */
static qiao_dev_error *check(const qiao_dev_queue *q, const char *op, const char *name,
                             qiao_dev_ref ref, uint64_t bytes, uint64_t align) {
  char what[96];
  snprintf(what, sizeof(what), "%s: %s", op, name);
  return ocl__check_ref(q, what, ref, bytes, align);
}

/* Common prologue: a live queue and an args struct at least as large as ours. */
static qiao_dev_error *check_call(const qiao_dev_queue *q, const char *op, const void *args,
                                  size_t struct_size, size_t ours) {
  qiao_dev_error *e = ocl__check_queue(q);
  if (e != NULL) return e;
  if (args == NULL) return ocl__error(QIAO_DEV_INVALID_ARGUMENT, "opencl: %s: args is NULL", op);
  if (struct_size < ours)
    return ocl__error(QIAO_DEV_INVALID_ARGUMENT,
                      "opencl: %s: args struct_size %zu is smaller than ABI 1.0's %zu", op,
                      struct_size, ours);
  return NULL;
}

#define TRY(expr)                                                                                  \
  do {                                                                                             \
    qiao_dev_error *try_e_ = (expr);                                                               \
    if (try_e_ != NULL) return try_e_;                                                             \
  } while (0)

#define CHECK_CALL(op, q, a)                                                                       \
  TRY(check_call(q, op, a, (a) == NULL ? 0 : (a)->struct_size, sizeof(*(a))))

#define INVALID(...) ocl__error(QIAO_DEV_INVALID_ARGUMENT, __VA_ARGS__)

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
    if (global[0] > SIZE_MAX - wg) return too_big(name, "the launch grid");
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
  if (!prod(&v, count, wg, 1) || v > SIZE_MAX) return too_big(op, "the launch grid");
  *out = (size_t)v;
  return NULL;
}

/* ---- embed */

qiao_dev_error *ocl__embed(qiao_dev_queue *q, const qiao_dev_embed_args *a) {
  const char *op = "embed";
  CHECK_CALL(op, q, a);
  uint64_t row, align, table_bytes, ids_bytes, out_bytes;
  TRY(weight_row(op, a->table_dtype, a->dim, &row, &align));
  if (!prod(&table_bytes, a->vocab, row, 1)) return too_big(op, "table");
  if (!prod(&ids_bytes, a->n_tokens, 4, 1)) return too_big(op, "ids");
  if (!prod(&out_bytes, a->n_tokens, a->dim, 4)) return too_big(op, "out");
  TRY(check(q, op, "table", a->table, table_bytes, align));
  TRY(check(q, op, "ids", a->ids, ids_bytes, 4));
  TRY(check(q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->table, table_bytes)) return overlap_error(op, "out", "table");
  if (overlap(a->out, out_bytes, a->ids, ids_bytes)) return overlap_error(op, "out", "ids");
  if (a->n_tokens == 0 || a->dim == 0) return NULL;
  if (a->vocab == 0) /* every id would be out of range, and there is no row to clamp to */
    return INVALID("opencl: embed: vocab is 0");

  launch l = launch_begin(q, K_EMBED + a->table_dtype);
  arg_mem(&l, a->table.buffer->mem);
  arg_u64(&l, a->table.offset);
  arg_u64(&l, row);
  arg_ref(&l, a->ids, 4);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->vocab);
  arg_u64(&l, a->dim);
  arg_mem(&l, q->flags);
  size_t global[2] = {(size_t)a->dim, (size_t)a->n_tokens};
  q->flags_dirty = true;
  return launch_run(&l, 2, global, NULL);
}

/* ---- matmul */

qiao_dev_error *ocl__matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  const char *op = "matmul";
  CHECK_CALL(op, q, a);
  uint64_t row, align, x_bytes, w_bytes, bias_bytes, out_bytes;
  TRY(weight_row(op, a->w_dtype, a->k, &row, &align));
  if (!prod(&x_bytes, a->n, a->k, 4)) return too_big(op, "x");
  if (!prod(&w_bytes, a->m, row, 1)) return too_big(op, "w");
  if (!prod(&bias_bytes, a->m, 4, 1)) return too_big(op, "bias");
  if (!prod(&out_bytes, a->n, a->m, 4)) return too_big(op, "out");
  TRY(check(q, op, "x", a->x, x_bytes, 4));
  TRY(check(q, op, "w", a->w, w_bytes, align));
  bool has_bias = a->bias.buffer != NULL;
  if (has_bias)
    TRY(check(q, op, "bias", a->bias, bias_bytes, 4));
  else if (a->bias.offset != 0)
    return INVALID("opencl: matmul: bias has no buffer but offset %llu",
                   (unsigned long long)a->bias.offset);
  TRY(check(q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->x, x_bytes)) return overlap_error(op, "out", "x");
  if (overlap(a->out, out_bytes, a->w, w_bytes)) return overlap_error(op, "out", "w");
  if (has_bias && overlap(a->out, out_bytes, a->bias, bias_bytes))
    return overlap_error(op, "out", "bias");
  if (a->n == 0 || a->m == 0) return NULL;

  size_t wg = q->device->wg, global[2], local[2] = {wg, 1};
  TRY(groups(op, a->m, wg, &global[0]));
  global[1] = (size_t)((a->n + 3) / 4); /* NT = 4 tokens per work-group */
  launch l = launch_begin(q, K_MATMUL + a->w_dtype);
  arg_ref(&l, a->x, 4);
  arg_mem(&l, a->w.buffer->mem);
  arg_u64(&l, a->w.offset);
  arg_u64(&l, row);
  arg_opt_ref(&l, a->bias, 4);
  arg_i32(&l, has_bias);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->n);
  arg_u64(&l, a->k);
  arg_u64(&l, a->m);
  arg_i32(&l, a->accumulate != 0);
  return launch_run(&l, 2, global, local);
}

/* ---- rmsnorm */

qiao_dev_error *ocl__rmsnorm(qiao_dev_queue *q, const qiao_dev_rmsnorm_args *a) {
  const char *op = "rmsnorm";
  CHECK_CALL(op, q, a);
  uint64_t x_bytes, w_bytes;
  if (!prod(&x_bytes, a->rows, a->cols, 4)) return too_big(op, "x");
  if (!prod(&w_bytes, a->cols, 4, 1)) return too_big(op, "weight");
  TRY(check(q, op, "x", a->x, x_bytes, 4));
  TRY(check(q, op, "weight", a->weight, w_bytes, 4));
  TRY(check(q, op, "out", a->out, x_bytes, 4));
  if (!same(a->out, a->x) && overlap(a->out, x_bytes, a->x, x_bytes))
    return overlap_error(op, "out", "x (only out == x is allowed)");
  if (overlap(a->out, x_bytes, a->weight, w_bytes)) return overlap_error(op, "out", "weight");
  if (a->rows == 0 || a->cols == 0) return NULL;

  size_t wg = q->device->wg, global[1], local[1] = {wg};
  TRY(groups(op, a->rows, wg, &global[0]));
  launch l = launch_begin(q, K_RMSNORM);
  arg_ref(&l, a->x, 4);
  arg_ref(&l, a->weight, 4);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->cols);
  arg_f32(&l, a->eps);
  return launch_run(&l, 1, global, local);
}

/* ---- rope */

qiao_dev_error *ocl__rope(qiao_dev_queue *q, const qiao_dev_rope_args *a) {
  const char *op = "rope";
  CHECK_CALL(op, q, a);
  if (a->style != QIAO_DEV_ROPE_NORMAL && a->style != QIAO_DEV_ROPE_NEOX)
    return INVALID("opencl: rope: unknown style %d", (int)a->style);
  if (a->rot_dim % 2 != 0 || a->rot_dim > a->head_dim)
    return INVALID("opencl: rope: rot_dim %llu must be even and <= head_dim %llu",
                   (unsigned long long)a->rot_dim, (unsigned long long)a->head_dim);
  uint64_t x_bytes, pos_bytes, f_bytes, x_elems;
  if (!prod(&x_elems, a->n_tokens, a->n_heads, a->head_dim) || !prod(&x_bytes, x_elems, 4, 1))
    return too_big(op, "x");
  if (!prod(&pos_bytes, a->n_tokens, 4, 1)) return too_big(op, "positions");
  if (!prod(&f_bytes, a->rot_dim / 2, 4, 1)) return too_big(op, "freqs");
  TRY(check(q, op, "x", a->x, x_bytes, 4));
  TRY(check(q, op, "positions", a->positions, pos_bytes, 4));
  TRY(check(q, op, "freqs", a->freqs, f_bytes, 4));
  if (overlap(a->x, x_bytes, a->positions, pos_bytes)) return overlap_error(op, "x", "positions");
  if (overlap(a->x, x_bytes, a->freqs, f_bytes)) return overlap_error(op, "x", "freqs");
  if (a->n_tokens == 0 || a->n_heads == 0 || a->rot_dim == 0) return NULL;

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

/* ---- kv_write */

qiao_dev_error *ocl__kv_write(qiao_dev_queue *q, const qiao_dev_kv_write_args *a) {
  const char *op = "kv_write";
  CHECK_CALL(op, q, a);
  uint64_t es = 0, in_bytes, slots_bytes, cache_bytes;
  TRY(cache_elem(op, a->cache_dtype, &es));
  if (!prod(&in_bytes, a->n_tokens, a->kv_dim, 4)) return too_big(op, "k");
  if (!prod(&slots_bytes, a->n_tokens, 4, 1)) return too_big(op, "slots");
  if (!prod(&cache_bytes, a->n_slots, a->kv_dim, es)) return too_big(op, "k_cache");
  TRY(check(q, op, "k", a->k, in_bytes, 4));
  TRY(check(q, op, "v", a->v, in_bytes, 4));
  TRY(check(q, op, "slots", a->slots, slots_bytes, 4));
  TRY(check(q, op, "k_cache", a->k_cache, cache_bytes, es));
  TRY(check(q, op, "v_cache", a->v_cache, cache_bytes, es));
  if (overlap(a->k_cache, cache_bytes, a->v_cache, cache_bytes))
    return overlap_error(op, "k_cache", "v_cache");
  const qiao_dev_ref caches[2] = {a->k_cache, a->v_cache};
  for (int c = 0; c < 2; c++) {
    const char *name = c ? "v_cache" : "k_cache";
    if (overlap(caches[c], cache_bytes, a->k, in_bytes)) return overlap_error(op, name, "k");
    if (overlap(caches[c], cache_bytes, a->v, in_bytes)) return overlap_error(op, name, "v");
    if (overlap(caches[c], cache_bytes, a->slots, slots_bytes))
      return overlap_error(op, name, "slots");
  }
  if (a->n_tokens == 0 || a->kv_dim == 0) return NULL;

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

/* ---- attention */

qiao_dev_error *ocl__attention(qiao_dev_queue *q, const qiao_dev_attention_args *a) {
  const char *op = "attention";
  CHECK_CALL(op, q, a);
  uint64_t es = 0;
  TRY(cache_elem(op, a->cache_dtype, &es));
  if (a->n_kv_heads == 0 || a->n_heads % a->n_kv_heads != 0)
    return INVALID("opencl: attention: n_heads %llu is not a multiple of n_kv_heads %llu",
                   (unsigned long long)a->n_heads, (unsigned long long)a->n_kv_heads);
  if (a->head_dim > OCL_MAX_HEAD_DIM)
    return ocl__error(QIAO_DEV_UNSUPPORTED, "opencl: attention: head_dim %llu exceeds %d",
                      (unsigned long long)a->head_dim, OCL_MAX_HEAD_DIM);
  if (a->block_size == 0 || a->block_size > UINT32_MAX)
    return INVALID("opencl: attention: block_size %llu is not in [1, 2^32)",
                   (unsigned long long)a->block_size);
  uint64_t q_bytes, cache_bytes, bt_bytes, tok_bytes, q_elems, kv_elems;
  if (!prod(&q_elems, a->n_tokens, a->n_heads, a->head_dim) || !prod(&q_bytes, q_elems, 4, 1))
    return too_big(op, "q");
  if (!prod(&kv_elems, a->n_slots, a->n_kv_heads, a->head_dim) ||
      !prod(&cache_bytes, kv_elems, es, 1))
    return too_big(op, "k_cache");
  if (!prod(&bt_bytes, a->n_seqs, a->max_blocks_per_seq, 4)) return too_big(op, "block_table");
  if (!prod(&tok_bytes, a->n_tokens, 4, 1)) return too_big(op, "token_seq");
  TRY(check(q, op, "q", a->q, q_bytes, 4));
  TRY(check(q, op, "k_cache", a->k_cache, cache_bytes, es));
  TRY(check(q, op, "v_cache", a->v_cache, cache_bytes, es));
  TRY(check(q, op, "block_table", a->block_table, bt_bytes, 4));
  TRY(check(q, op, "token_seq", a->token_seq, tok_bytes, 4));
  TRY(check(q, op, "token_pos", a->token_pos, tok_bytes, 4));
  TRY(check(q, op, "out", a->out, q_bytes, 4));
  if (overlap(a->out, q_bytes, a->q, q_bytes)) return overlap_error(op, "out", "q");
  if (overlap(a->out, q_bytes, a->k_cache, cache_bytes)) return overlap_error(op, "out", "k_cache");
  if (overlap(a->out, q_bytes, a->v_cache, cache_bytes)) return overlap_error(op, "out", "v_cache");
  if (overlap(a->out, q_bytes, a->block_table, bt_bytes))
    return overlap_error(op, "out", "block_table");
  if (overlap(a->out, q_bytes, a->token_seq, tok_bytes))
    return overlap_error(op, "out", "token_seq");
  if (overlap(a->out, q_bytes, a->token_pos, tok_bytes))
    return overlap_error(op, "out", "token_pos");
  if (a->n_tokens == 0 || a->n_heads == 0 || a->head_dim == 0) return NULL;
  /* (token_seq, token_pos and block_table values, n_seqs or n_slots of 0 included, are
   * checked by the kernel.) */

  /* Positions are I32, so a window beyond 2^31 is the same as none. */
  uint64_t window = a->window > 0x80000000u ? 0x80000000u : a->window;
  size_t wg = q->device->wg, global[2], local[2] = {wg, 1};
  TRY(groups(op, a->n_heads, wg, &global[0]));
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

/* ---- swiglu and add: out may equal an input exactly, and may not otherwise overlap one */

static qiao_dev_error *binary(qiao_dev_queue *q, const char *op, ocl_kernel kernel, uint64_t n,
                              qiao_dev_ref in0, const char *name0, qiao_dev_ref in1,
                              const char *name1, qiao_dev_ref out) {
  uint64_t bytes;
  if (!prod(&bytes, n, 4, 1)) return too_big(op, "out");
  TRY(check(q, op, name0, in0, bytes, 4));
  TRY(check(q, op, name1, in1, bytes, 4));
  TRY(check(q, op, "out", out, bytes, 4));
  if (!same(out, in0) && overlap(out, bytes, in0, bytes)) return overlap_error(op, "out", name0);
  if (!same(out, in1) && overlap(out, bytes, in1, bytes)) return overlap_error(op, "out", name1);
  if (n == 0) return NULL;
  size_t global[1] = {(size_t)n};
  launch l = launch_begin(q, kernel);
  arg_ref(&l, in0, 4);
  arg_ref(&l, in1, 4);
  arg_ref(&l, out, 4);
  arg_u64(&l, n);
  return launch_run(&l, 1, global, NULL);
}

qiao_dev_error *ocl__swiglu(qiao_dev_queue *q, const qiao_dev_swiglu_args *a) {
  CHECK_CALL("swiglu", q, a);
  return binary(q, "swiglu", K_SWIGLU, a->n, a->gate, "gate", a->up, "up", a->out);
}

qiao_dev_error *ocl__add(qiao_dev_queue *q, const qiao_dev_add_args *a) {
  CHECK_CALL("add", q, a);
  return binary(q, "add", K_ADD, a->n, a->a, "a", a->b, "b", a->out);
}

/* ---- argmax */

qiao_dev_error *ocl__argmax(qiao_dev_queue *q, const qiao_dev_argmax_args *a) {
  const char *op = "argmax";
  CHECK_CALL(op, q, a);
  if (a->rows > 0 && (a->cols == 0 || a->cols > INT32_MAX))
    return INVALID("opencl: argmax: cols %llu is not in [1, 2^31)", (unsigned long long)a->cols);
  uint64_t x_bytes, out_bytes;
  if (!prod(&x_bytes, a->rows, a->cols, 4)) return too_big(op, "x");
  if (!prod(&out_bytes, a->rows, 4, 1)) return too_big(op, "out");
  TRY(check(q, op, "x", a->x, x_bytes, 4));
  TRY(check(q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->x, x_bytes)) return overlap_error(op, "out", "x");
  if (a->rows == 0) return NULL;

  size_t wg = q->device->wg, global[1], local[1] = {wg};
  TRY(groups(op, a->rows, wg, &global[0]));
  launch l = launch_begin(q, K_ARGMAX);
  arg_ref(&l, a->x, 4);
  arg_ref(&l, a->out, 4);
  arg_u64(&l, a->cols);
  return launch_run(&l, 1, global, local);
}

/* ---- moe_gate */

qiao_dev_error *ocl__moe_gate(qiao_dev_queue *q, const qiao_dev_moe_gate_args *a) {
  const char *op = "moe_gate";
  CHECK_CALL(op, q, a);
  if (a->n_experts == 0 || a->n_experts > INT32_MAX || a->k == 0 || a->k > a->n_experts)
    return INVALID("opencl: moe_gate: k %llu must be in [1, n_experts %llu] (n_experts < 2^31)",
                   (unsigned long long)a->k, (unsigned long long)a->n_experts);
  uint64_t logit_bytes, out_bytes;
  if (!prod(&logit_bytes, a->n_tokens, a->n_experts, 4)) return too_big(op, "logits");
  if (!prod(&out_bytes, a->n_tokens, a->k, 4)) return too_big(op, "ids");
  TRY(check(q, op, "logits", a->logits, logit_bytes, 4));
  TRY(check(q, op, "ids", a->ids, out_bytes, 4));
  TRY(check(q, op, "weights", a->weights, out_bytes, 4));
  if (overlap(a->ids, out_bytes, a->logits, logit_bytes)) return overlap_error(op, "ids", "logits");
  if (overlap(a->weights, out_bytes, a->logits, logit_bytes))
    return overlap_error(op, "weights", "logits");
  if (overlap(a->weights, out_bytes, a->ids, out_bytes)) return overlap_error(op, "weights", "ids");
  if (a->n_tokens == 0) return NULL;

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

/* ---- matmul_experts */

qiao_dev_error *ocl__matmul_experts(qiao_dev_queue *q, const qiao_dev_matmul_experts_args *a) {
  const char *op = "matmul_experts";
  CHECK_CALL(op, q, a);
  uint64_t row, align, expert_bytes, w_bytes, slots, x_rows, x_bytes, ids_bytes, out_bytes;
  TRY(weight_row(op, a->w_dtype, a->in_dim, &row, &align));
  if (!prod(&expert_bytes, a->out_dim, row, 1) || !prod(&w_bytes, a->n_experts, expert_bytes, 1))
    return too_big(op, "w");
  if (!prod(&slots, a->n_tokens, a->k, 1)) return too_big(op, "ids");
  x_rows = a->x_per_slot ? slots : a->n_tokens;
  if (!prod(&x_bytes, x_rows, a->in_dim, 4)) return too_big(op, "x");
  if (!prod(&ids_bytes, slots, 4, 1)) return too_big(op, "ids");
  if (!prod(&out_bytes, slots, a->out_dim, 4)) return too_big(op, "out");
  TRY(check(q, op, "x", a->x, x_bytes, 4));
  TRY(check(q, op, "w", a->w, w_bytes, align));
  TRY(check(q, op, "ids", a->ids, ids_bytes, 4));
  TRY(check(q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->x, x_bytes)) return overlap_error(op, "out", "x");
  if (overlap(a->out, out_bytes, a->w, w_bytes)) return overlap_error(op, "out", "w");
  if (overlap(a->out, out_bytes, a->ids, ids_bytes)) return overlap_error(op, "out", "ids");
  if (slots == 0 || a->out_dim == 0) return NULL;
  if (a->n_experts == 0) /* every id would be out of range, and there is nothing to clamp to */
    return INVALID("opencl: matmul_experts: n_experts is 0");

  size_t wg = q->device->wg, global[2], local[2] = {wg, 1};
  TRY(groups(op, a->out_dim, wg, &global[0]));
  if (slots > SIZE_MAX) return too_big(op, "the launch grid");
  global[1] = (size_t)slots;
  launch l = launch_begin(q, K_MATMUL_EXPERTS + a->w_dtype);
  arg_ref(&l, a->x, 4);
  arg_mem(&l, a->w.buffer->mem);
  arg_u64(&l, a->w.offset);
  arg_u64(&l, row);
  arg_u64(&l, expert_bytes);
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

/* ---- moe_combine */

qiao_dev_error *ocl__moe_combine(qiao_dev_queue *q, const qiao_dev_moe_combine_args *a) {
  const char *op = "moe_combine";
  CHECK_CALL(op, q, a);
  uint64_t x_bytes, x_elems, w_bytes, out_bytes;
  if (!prod(&x_elems, a->n_tokens, a->k, a->dim) || !prod(&x_bytes, x_elems, 4, 1))
    return too_big(op, "x");
  if (!prod(&w_bytes, a->n_tokens, a->k, 4)) return too_big(op, "weights");
  if (!prod(&out_bytes, a->n_tokens, a->dim, 4)) return too_big(op, "out");
  TRY(check(q, op, "x", a->x, x_bytes, 4));
  TRY(check(q, op, "weights", a->weights, w_bytes, 4));
  TRY(check(q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->x, x_bytes)) return overlap_error(op, "out", "x");
  if (overlap(a->out, out_bytes, a->weights, w_bytes)) return overlap_error(op, "out", "weights");
  if (a->n_tokens == 0 || a->dim == 0) return NULL;

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
