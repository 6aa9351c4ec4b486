/* cuda_ops.c: the twelve ops of the ABI. Each validates its arguments on the
 * host in plain C before any CUDA call (shapes, dtypes, every operand inside
 * its buffer with overflow-safe sizes, alignment, forbidden overlaps; the
 * same rules and codes as the OpenCL backend), then calls one launcher of
 * cuda_launch.h. Values inside device buffers (ids, slots, block tables) are
 * checked by the kernels themselves and reported at queue_synchronize. */
#include <stdio.h>
#include <string.h>

#include "cuda_internal.h"

/* ---- sizes */

/* *out = a * b * c, false on overflow. */
static bool prod(uint64_t *out, uint64_t a, uint64_t b, uint64_t c) {
  uint64_t ab;
  return !__builtin_mul_overflow(a, b, &ab) && !__builtin_mul_overflow(ab, c, out);
}

static qiao_dev_error *too_big(const char *op, const char *what) {
  return cuq__error(QIAO_DEV_INVALID_ARGUMENT, "cuda: %s: the size of %s overflows", op, what);
}

#define INVALID(...) cuq__error(QIAO_DEV_INVALID_ARGUMENT, __VA_ARGS__)

#define TRY(expr)                                                                                  \
  do {                                                                                             \
    qiao_dev_error *try_e_ = (expr);                                                               \
    if (try_e_ != NULL) return try_e_;                                                             \
  } while (0)

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
    return cuq__error(QIAO_DEV_UNSUPPORTED, "cuda: %s: weight dtype %d is not supported", op,
                      (int)dtype);
  }
  if (cols % div != 0)
    return INVALID("cuda: %s: row length %llu is not a multiple of the block size 32", op,
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
    return cuq__error(QIAO_DEV_UNSUPPORTED, "cuda: %s: cache dtype %d is not supported", op,
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
  return INVALID("cuda: %s: %s overlaps %s", op, a, b);
}

/* Validates one operand; the message says "<op>: <name>". */
static qiao_dev_error *check(const qiao_dev_queue *q, const char *op, const char *name,
                             qiao_dev_ref ref, uint64_t bytes, uint64_t align) {
  char what[96];
  snprintf(what, sizeof(what), "%s: %s", op, name);
  return cuq__check_ref(q, what, ref, bytes, align);
}

/* Common prologue: a live queue, an args struct at least as large as ABI
 * 1.0's, and the capability (op, dtype). */
static qiao_dev_error *check_call(const qiao_dev_queue *q, const char *op, const void *args,
                                  size_t struct_size, size_t ours) {
  qiao_dev_error *e = cuq__check_queue(q);
  if (e != NULL) return e;
  if (args == NULL) return INVALID("cuda: %s: args is NULL", op);
  if (struct_size < ours)
    return INVALID("cuda: %s: args struct_size %zu is smaller than ABI 1.0's %zu", op, struct_size,
                   ours);
  return NULL;
}

#define CHECK_CALL(op, q, a)                                                                       \
  TRY(check_call(q, op, a, (a) == NULL ? 0 : (a)->struct_size, sizeof(*(a))))

/* Makes the queue's device current, runs a launcher, turns its status into an error. */
#define LAUNCH(q, op, call)                                                                        \
  do {                                                                                             \
    TRY(cuq__select((q)->device, op));                                                             \
    return cuq__launch_error((call), op);                                                          \
  } while (0)

/* ---- embed */

qiao_dev_error *cuq__embed(qiao_dev_queue *q, const qiao_dev_embed_args *a) {
  const char *op = "embed";
  CHECK_CALL(op, q, a);
  uint64_t row = 0, align = 1, table_bytes, ids_bytes, out_bytes;
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
    return INVALID("cuda: embed: vocab is 0");
  q->flags_dirty = true;
  LAUNCH(q, op,
         cuq_embed(q->stream, a->table_dtype, cuq__ptr(a->table), row, cuq__ptr(a->ids),
                   cuq__ptr(a->out), a->n_tokens, a->vocab, a->dim, q->flags));
}

/* ---- matmul */

qiao_dev_error *cuq__matmul(qiao_dev_queue *q, const qiao_dev_matmul_args *a) {
  const char *op = "matmul";
  CHECK_CALL(op, q, a);
  uint64_t row = 0, align = 1, x_bytes, w_bytes, bias_bytes, out_bytes;
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
    return INVALID("cuda: matmul: bias has no buffer but offset %llu",
                   (unsigned long long)a->bias.offset);
  TRY(check(q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->x, x_bytes)) return overlap_error(op, "out", "x");
  if (overlap(a->out, out_bytes, a->w, w_bytes)) return overlap_error(op, "out", "w");
  if (has_bias && overlap(a->out, out_bytes, a->bias, bias_bytes))
    return overlap_error(op, "out", "bias");
  if (a->n == 0 || a->m == 0) return NULL;

  const float *x = cuq__ptr(a->x), *bias = has_bias ? cuq__ptr(a->bias) : NULL;
  const void *w = cuq__ptr(a->w);
  float *out = cuq__ptr(a->out);
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

/* ---- rmsnorm */

qiao_dev_error *cuq__rmsnorm(qiao_dev_queue *q, const qiao_dev_rmsnorm_args *a) {
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
  LAUNCH(q, op,
         cuq_rmsnorm(q->stream, cuq__ptr(a->x), cuq__ptr(a->weight), cuq__ptr(a->out), a->rows,
                     a->cols, a->eps));
}

/* ---- rope */

qiao_dev_error *cuq__rope(qiao_dev_queue *q, const qiao_dev_rope_args *a) {
  const char *op = "rope";
  CHECK_CALL(op, q, a);
  if (a->style != QIAO_DEV_ROPE_NORMAL && a->style != QIAO_DEV_ROPE_NEOX)
    return INVALID("cuda: rope: unknown style %d", (int)a->style);
  if (a->rot_dim % 2 != 0 || a->rot_dim > a->head_dim)
    return INVALID("cuda: rope: rot_dim %llu must be even and <= head_dim %llu",
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
  LAUNCH(q, op,
         cuq_rope(q->stream, cuq__ptr(a->x), cuq__ptr(a->positions), cuq__ptr(a->freqs),
                  a->n_tokens, a->n_heads, a->head_dim, a->rot_dim / 2,
                  a->style == QIAO_DEV_ROPE_NEOX));
}

/* ---- kv_write */

qiao_dev_error *cuq__kv_write(qiao_dev_queue *q, const qiao_dev_kv_write_args *a) {
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
  q->flags_dirty = true;
  LAUNCH(q, op,
         cuq_kv_write(q->stream, es == 2, cuq__ptr(a->k), cuq__ptr(a->v), cuq__ptr(a->slots),
                      cuq__ptr(a->k_cache), cuq__ptr(a->v_cache), a->n_tokens, a->kv_dim,
                      a->n_slots, q->flags));
}

/* ---- attention */

qiao_dev_error *cuq__attention(qiao_dev_queue *q, const qiao_dev_attention_args *a) {
  const char *op = "attention";
  CHECK_CALL(op, q, a);
  uint64_t es = 0;
  TRY(cache_elem(op, a->cache_dtype, &es));
  if (a->n_kv_heads == 0 || a->n_heads % a->n_kv_heads != 0)
    return INVALID("cuda: attention: n_heads %llu is not a multiple of n_kv_heads %llu",
                   (unsigned long long)a->n_heads, (unsigned long long)a->n_kv_heads);
  if (a->head_dim > CUQ_MAX_HEAD_DIM)
    return cuq__error(QIAO_DEV_UNSUPPORTED, "cuda: attention: head_dim %llu exceeds %d",
                      (unsigned long long)a->head_dim, CUQ_MAX_HEAD_DIM);
  if (a->block_size == 0 || a->block_size > UINT32_MAX)
    return INVALID("cuda: attention: block_size %llu is not in [1, 2^32)",
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
  /* (token_seq, token_pos and block_table values, n_seqs or n_slots of 0
   * included, are checked by the kernel.) */

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
  if (!prod(&max_len, a->max_blocks_per_seq, a->block_size, 1) || max_len > 0x80000000u)
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
  LAUNCH(q, op,
         cuq_attention(q->stream, es == 2, &d, cuq__ptr(a->q), cuq__ptr(a->k_cache),
                       cuq__ptr(a->v_cache), cuq__ptr(a->block_table), cuq__ptr(a->token_seq),
                       cuq__ptr(a->token_pos), cuq__ptr(a->out), scratch, q->flags));
}

/* ---- swiglu and add: out may equal an input exactly, and may not otherwise overlap one */

static qiao_dev_error *binary_check(qiao_dev_queue *q, const char *op, uint64_t n, qiao_dev_ref in0,
                                    const char *name0, qiao_dev_ref in1, const char *name1,
                                    qiao_dev_ref out) {
  uint64_t bytes;
  if (!prod(&bytes, n, 4, 1)) return too_big(op, "out");
  TRY(check(q, op, name0, in0, bytes, 4));
  TRY(check(q, op, name1, in1, bytes, 4));
  TRY(check(q, op, "out", out, bytes, 4));
  if (!same(out, in0) && overlap(out, bytes, in0, bytes)) return overlap_error(op, "out", name0);
  if (!same(out, in1) && overlap(out, bytes, in1, bytes)) return overlap_error(op, "out", name1);
  return NULL;
}

qiao_dev_error *cuq__swiglu(qiao_dev_queue *q, const qiao_dev_swiglu_args *a) {
  const char *op = "swiglu";
  CHECK_CALL(op, q, a);
  TRY(binary_check(q, op, a->n, a->gate, "gate", a->up, "up", a->out));
  if (a->n == 0) return NULL;
  LAUNCH(q, op, cuq_swiglu(q->stream, cuq__ptr(a->gate), cuq__ptr(a->up), cuq__ptr(a->out), a->n));
}

qiao_dev_error *cuq__add(qiao_dev_queue *q, const qiao_dev_add_args *a) {
  const char *op = "add";
  CHECK_CALL(op, q, a);
  TRY(binary_check(q, op, a->n, a->a, "a", a->b, "b", a->out));
  if (a->n == 0) return NULL;
  LAUNCH(q, op, cuq_add(q->stream, cuq__ptr(a->a), cuq__ptr(a->b), cuq__ptr(a->out), a->n));
}

/* ---- argmax */

qiao_dev_error *cuq__argmax(qiao_dev_queue *q, const qiao_dev_argmax_args *a) {
  const char *op = "argmax";
  CHECK_CALL(op, q, a);
  if (a->rows > 0 && (a->cols == 0 || a->cols > INT32_MAX))
    return INVALID("cuda: argmax: cols %llu is not in [1, 2^31)", (unsigned long long)a->cols);
  uint64_t x_bytes, out_bytes;
  if (!prod(&x_bytes, a->rows, a->cols, 4)) return too_big(op, "x");
  if (!prod(&out_bytes, a->rows, 4, 1)) return too_big(op, "out");
  TRY(check(q, op, "x", a->x, x_bytes, 4));
  TRY(check(q, op, "out", a->out, out_bytes, 4));
  if (overlap(a->out, out_bytes, a->x, x_bytes)) return overlap_error(op, "out", "x");
  if (a->rows == 0) return NULL;
  LAUNCH(q, op, cuq_argmax(q->stream, cuq__ptr(a->x), cuq__ptr(a->out), a->rows, a->cols));
}

/* ---- moe_gate */

qiao_dev_error *cuq__moe_gate(qiao_dev_queue *q, const qiao_dev_moe_gate_args *a) {
  const char *op = "moe_gate";
  CHECK_CALL(op, q, a);
  if (a->n_experts == 0 || a->n_experts > INT32_MAX || a->k == 0 || a->k > a->n_experts)
    return INVALID("cuda: moe_gate: k %llu must be in [1, n_experts %llu] (n_experts < 2^31)",
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
  LAUNCH(q, op,
         cuq_moe_gate(q->stream, cuq__ptr(a->logits), cuq__ptr(a->ids), cuq__ptr(a->weights),
                      a->n_tokens, a->n_experts, a->k, a->normalize != 0));
}

/* ---- matmul_experts */

qiao_dev_error *cuq__matmul_experts(qiao_dev_queue *q, const qiao_dev_matmul_experts_args *a) {
  const char *op = "matmul_experts";
  CHECK_CALL(op, q, a);
  uint64_t row = 0, align = 1, expert_bytes, w_bytes, slots, x_rows, x_bytes, ids_bytes, out_bytes;
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
    return INVALID("cuda: matmul_experts: n_experts is 0");
  q->flags_dirty = true;
  LAUNCH(q, op,
         cuq_matmul_experts(q->stream, a->w_dtype, cuq__ptr(a->x), cuq__ptr(a->w), row,
                            expert_bytes, cuq__ptr(a->ids), cuq__ptr(a->out), a->n_tokens, a->k,
                            a->n_experts, a->in_dim, a->out_dim, a->x_per_slot != 0, q->flags));
}

/* ---- moe_combine */

qiao_dev_error *cuq__moe_combine(qiao_dev_queue *q, const qiao_dev_moe_combine_args *a) {
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
  LAUNCH(q, op,
         cuq_moe_combine(q->stream, cuq__ptr(a->x), cuq__ptr(a->weights), cuq__ptr(a->out),
                         a->n_tokens, a->k, a->dim, a->accumulate != 0));
}
