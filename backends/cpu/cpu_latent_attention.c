/* Multi-head latent attention (device ABI 1.4): latent_write stores each
 * token's compressed latent and rotary key into one cache row; and
 * attention_latent attends over those rows, every head reading the same
 * row. One work item is a token and up to QIAO__CPU_MAX_ROWS of its heads:
 * the dot kernel scores those heads against a cache row in one pass over
 * it, and each head's result depends only on its own query and positions
 * (the kernels' per-row sums do not depend on how many rows share a call),
 * so any split over threads or batches gives the same bits. The softmax is
 * online over chunks of positions (f32, maximum subtracted), as in
 * cpu_attention.c. */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"

#define TRY(expr)                                                                                  \
  do {                                                                                             \
    qiao_dev_error *try_error_ = (expr);                                                           \
    if (try_error_ != NULL) return try_error_;                                                     \
  } while (0)

#define CACHE_DTYPES ((1u << QIAO_DEV_F32) | (1u << QIAO_DEV_F16))
#define HEADS QIAO__CPU_MAX_ROWS /* heads scored together against one cache row */

enum { CHUNK = 64 }; /* positions scored before each softmax update */

#define DATA_ERROR(...) qiao__cpu_defer(queue, qiao__cpu_error(__VA_ARGS__))

/* The checks both ops share: the cache dtype, nonzero latent_dim and
 * rope_dim, and the cache row's length latent_dim + rope_dim. */
static qiao_dev_error *check_dims(const char *op, qiao_dev_dtype cache_dtype, uint64_t latent_dim,
                                  uint64_t rope_dim, uint64_t *out_row) {
  TRY(qiao__cpu_check_dtype(op, "cache_dtype", cache_dtype, CACHE_DTYPES));
  if (latent_dim == 0 || rope_dim == 0)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: %s is 0", op,
                           latent_dim == 0 ? "latent_dim" : "rope_dim");
  if (latent_dim > UINT64_MAX - rope_dim)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "%s: latent_dim %llu + rope_dim %llu overflows", op,
                           (unsigned long long)latent_dim, (unsigned long long)rope_dim);
  *out_row = latent_dim + rope_dim;
  return NULL;
}

/* Stores n floats into a cache row part of dtype F32 or F16. */
static void store(uint8_t *dst, qiao_dev_dtype dtype, const float *src, uint64_t n) {
  if (dtype == QIAO_DEV_F32) {
    memcpy(dst, src, n * 4);
    return;
  }
  for (uint64_t i = 0; i < n; i++) {
    uint16_t h = qiao__cpu_f32_to_f16(src[i]);
    dst[2 * i] = (uint8_t)h;
    dst[2 * i + 1] = (uint8_t)(h >> 8);
  }
}

qiao_dev_error *qiao__cpu_latent_write(qiao_dev_queue *queue, const qiao_dev_latent_write_args *a) {
  const char *op = "latent_write";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  uint64_t row = 0;
  TRY(check_dims(op, a->cache_dtype, a->latent_dim, a->rope_dim, &row));
  uint64_t lat_bytes = 0, rope_bytes = 0, slots_bytes = 0, cache_bytes = 0;
  TRY(qiao__cpu_extent(op, "latent", QIAO_DEV_F32, a->n_tokens, a->latent_dim, &lat_bytes));
  TRY(qiao__cpu_extent(op, "rope", QIAO_DEV_F32, a->n_tokens, a->rope_dim, &rope_bytes));
  TRY(qiao__cpu_extent(op, "slots", QIAO_DEV_I32, 1, a->n_tokens, &slots_bytes));
  TRY(qiao__cpu_extent(op, "cache", a->cache_dtype, a->n_slots, row, &cache_bytes));
  qiao__cpu_operand latent, rope, slots, cache;
  TRY(qiao__cpu_operand_get(dev, op, "latent", a->latent, lat_bytes, QIAO_DEV_F32, 0, &latent));
  TRY(qiao__cpu_operand_get(dev, op, "rope", a->rope, rope_bytes, QIAO_DEV_F32, 0, &rope));
  TRY(qiao__cpu_operand_get(dev, op, "slots", a->slots, slots_bytes, QIAO_DEV_I32, 0, &slots));
  TRY(qiao__cpu_operand_get(dev, op, "cache", a->cache, cache_bytes, a->cache_dtype,
                            QIAO__CPU_REF_WRITE, &cache));
  TRY(qiao__cpu_no_overlap(op, &cache, &latent, 0));
  TRY(qiao__cpu_no_overlap(op, &cache, &rope, 0));
  TRY(qiao__cpu_no_overlap(op, &cache, &slots, 0));
  const int32_t *slot = (const int32_t *)(const void *)slots.ptr;
  for (uint64_t t = 0; t < a->n_tokens; t++) {
    if (slot[t] < 0)
      return DATA_ERROR(QIAO_DEV_INVALID_ARGUMENT, "%s: slots[%llu] = %d is negative", op,
                        (unsigned long long)t, slot[t]);
    if ((uint64_t)slot[t] >= a->n_slots)
      return DATA_ERROR(QIAO_DEV_INVALID_ARGUMENT, "%s: slots[%llu] = %d >= n_slots %llu", op,
                        (unsigned long long)t, slot[t], (unsigned long long)a->n_slots);
  }
  uint64_t elt = a->cache_dtype == QIAO_DEV_F16 ? 2 : 4;
  const float *lat = (const float *)(const void *)latent.ptr;
  const float *rp = (const float *)(const void *)rope.ptr;
  for (uint64_t t = 0; t < a->n_tokens; t++) {
    uint8_t *dst = cache.ptr + (uint64_t)slot[t] * row * elt; /* (latent_dim + rope_dim) */
    store(dst, a->cache_dtype, lat + t * a->latent_dim, a->latent_dim);
    store(dst + a->latent_dim * elt, a->cache_dtype, rp + t * a->rope_dim, a->rope_dim);
  }
  return NULL;
}

typedef struct latent_job {
  const qiao_dev_attention_latent_args *a;
  const qiao__cpu_kernels *kernels;
  const float *q_latent, *q_rope;
  const uint8_t *cache; /* (n_slots, latent_dim + rope_dim) */
  const int32_t *block_table, *token_seq, *token_pos;
  float *out;
  float *scratch; /* per thread: HEADS * (latent_dim + 3 * CHUNK + 2) floats */
  uint64_t elt;   /* bytes per cache element */
  uint64_t head_groups;
} latent_job;

/* Heads h0 .. h0 + nh - 1 of token t. acc: (nh, latent_dim); scores, ropes:
 * (nh, CHUNK); m, l: (nh). */
static void attend_heads(const latent_job *job, uint64_t t, uint64_t h0, int nh, float *scratch) {
  const qiao_dev_attention_latent_args *a = job->a;
  uint64_t L = a->latent_dim, R = a->rope_dim, row_bytes = (L + R) * job->elt;
  float *acc = scratch, *scores = acc + HEADS * L, *ropes = scores + HEADS * CHUNK;
  float *m = ropes + HEADS * CHUNK, *l = m + HEADS, *s = l + HEADS;
  uint64_t p = (uint64_t)job->token_pos[t];
  uint64_t lo = (a->window > 0 && p + 1 > a->window) ? p + 1 - a->window : 0;
  const int32_t *table = job->block_table + (uint64_t)job->token_seq[t] * a->max_blocks_per_seq;
  const float *ql[HEADS], *qr[HEADS];
  for (int r = 0; r < nh; r++) {
    ql[r] = job->q_latent + (t * a->n_heads + h0 + (uint64_t)r) * L;
    qr[r] = job->q_rope + (t * a->n_heads + h0 + (uint64_t)r) * R;
    m[r] = -INFINITY;
    l[r] = 0.0f;
  }
  for (uint64_t i = 0; i < (uint64_t)nh * L; i++)
    acc[i] = 0.0f;
  qiao__cpu_dot_fn dot = job->kernels->dot[a->cache_dtype];
  qiao__cpu_axpy_fn axpy = job->kernels->axpy[a->cache_dtype == QIAO_DEV_F16];
  for (uint64_t j0 = lo; j0 <= p; j0 += CHUNK) {
    uint64_t n = p + 1 - j0 < CHUNK ? p + 1 - j0 : CHUNK;
    const uint8_t *rows[CHUNK];
    for (uint64_t c = 0; c < n; c++) {
      uint64_t j = j0 + c;
      uint64_t slot = (uint64_t)table[j / a->block_size] * a->block_size + j % a->block_size;
      rows[c] = job->cache + slot * row_bytes;
      dot(rows[c], ql, nh, L, s); /* q_latent . C[j, 0:L] for each head */
      for (int r = 0; r < nh; r++)
        scores[(uint64_t)r * CHUNK + c] = s[r];
      dot(rows[c] + L * job->elt, qr, nh, R, s); /* q_rope . C[j, L:L+R] */
      for (int r = 0; r < nh; r++)
        ropes[(uint64_t)r * CHUNK + c] = s[r];
    }
    for (int r = 0; r < nh; r++) {
      float *sc = scores + (uint64_t)r * CHUNK, *ra = acc + (uint64_t)r * L;
      float chunk_max = -INFINITY;
      for (uint64_t c = 0; c < n; c++) {
        sc[c] = a->scale * (sc[c] + ropes[(uint64_t)r * CHUNK + c]);
        if (sc[c] > chunk_max) chunk_max = sc[c];
      }
      if (chunk_max > m[r]) { /* rescale what was accumulated against the old max */
        float factor = expf(m[r] - chunk_max);
        for (uint64_t i = 0; i < L; i++)
          ra[i] *= factor;
        l[r] *= factor;
        m[r] = chunk_max;
      }
      for (uint64_t c = 0; c < n; c++) {
        float e = expf(sc[c] - m[r]);
        l[r] += e;
        axpy(ra, e, rows[c], L);
      }
    }
  }
  for (int r = 0; r < nh; r++) {
    float *out = job->out + (t * a->n_heads + h0 + (uint64_t)r) * L;
    for (uint64_t i = 0; i < L; i++)
      out[i] = acc[(uint64_t)r * L + i] / l[r];
  }
}

static void latent_task(void *ctx, uint32_t ith, uint32_t nth) {
  const latent_job *job = ctx;
  const qiao_dev_attention_latent_args *a = job->a;
  uint64_t items = a->n_tokens * job->head_groups, lo = 0, hi = 0;
  qiao__cpu_split(items, ith, nth, &lo, &hi);
  float *scratch = job->scratch + (uint64_t)ith * (HEADS * (a->latent_dim + 2 * CHUNK + 3));
  for (uint64_t item = lo; item < hi; item++) {
    uint64_t t = item / job->head_groups, h0 = item % job->head_groups * HEADS;
    int nh = a->n_heads - h0 < HEADS ? (int)(a->n_heads - h0) : HEADS;
    attend_heads(job, t, h0, nh, scratch);
  }
}

qiao_dev_error *qiao__cpu_attention_latent(qiao_dev_queue *queue,
                                           const qiao_dev_attention_latent_args *a) {
  const char *op = "attention_latent";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  uint64_t row = 0;
  TRY(check_dims(op, a->cache_dtype, a->latent_dim, a->rope_dim, &row));
  if (a->block_size == 0)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: block_size is 0", op);
  uint64_t ql_dim = 0, qr_dim = 0, ql_bytes = 0, qr_bytes = 0, cache_bytes = 0, table_bytes = 0,
           tok_bytes = 0;
  TRY(qiao__cpu_mul_dims(op, "n_heads", a->n_heads, "latent_dim", a->latent_dim, &ql_dim));
  TRY(qiao__cpu_mul_dims(op, "n_heads", a->n_heads, "rope_dim", a->rope_dim, &qr_dim));
  TRY(qiao__cpu_extent(op, "q_latent", QIAO_DEV_F32, a->n_tokens, ql_dim, &ql_bytes));
  TRY(qiao__cpu_extent(op, "q_rope", QIAO_DEV_F32, a->n_tokens, qr_dim, &qr_bytes));
  TRY(qiao__cpu_extent(op, "cache", a->cache_dtype, a->n_slots, row, &cache_bytes));
  TRY(qiao__cpu_extent(op, "block_table", QIAO_DEV_I32, a->n_seqs, a->max_blocks_per_seq,
                       &table_bytes));
  TRY(qiao__cpu_extent(op, "token_seq", QIAO_DEV_I32, 1, a->n_tokens, &tok_bytes));
  qiao__cpu_operand ql, qr, cache, table, seq, pos, out;
  TRY(qiao__cpu_operand_get(dev, op, "q_latent", a->q_latent, ql_bytes, QIAO_DEV_F32, 0, &ql));
  TRY(qiao__cpu_operand_get(dev, op, "q_rope", a->q_rope, qr_bytes, QIAO_DEV_F32, 0, &qr));
  TRY(qiao__cpu_operand_get(dev, op, "cache", a->cache, cache_bytes, a->cache_dtype, 0, &cache));
  TRY(qiao__cpu_operand_get(dev, op, "block_table", a->block_table, table_bytes, QIAO_DEV_I32, 0,
                            &table));
  TRY(qiao__cpu_operand_get(dev, op, "token_seq", a->token_seq, tok_bytes, QIAO_DEV_I32, 0, &seq));
  TRY(qiao__cpu_operand_get(dev, op, "token_pos", a->token_pos, tok_bytes, QIAO_DEV_I32, 0, &pos));
  TRY(qiao__cpu_operand_get(dev, op, "out", a->out, ql_bytes, QIAO_DEV_F32, QIAO__CPU_REF_WRITE,
                            &out));
  const qiao__cpu_operand *ins[6] = {&ql, &qr, &cache, &table, &seq, &pos};
  for (int i = 0; i < 6; i++)
    TRY(qiao__cpu_no_overlap(op, &out, ins[i], 0));

  /* Device data checked before any read through it (as attention does). */
  const int32_t *ts = (const int32_t *)(const void *)seq.ptr;
  const int32_t *tp = (const int32_t *)(const void *)pos.ptr;
  const int32_t *bt = (const int32_t *)(const void *)table.ptr;
  qiao_dev_error *bad =
      qiao__cpu_check_paged_tokens(op, ts, tp, bt, a->n_tokens, a->n_seqs, a->max_blocks_per_seq,
                                   a->block_size, a->n_slots, a->window);
  if (bad != NULL) return qiao__cpu_defer(queue, bad);
  if (a->n_tokens == 0 || a->n_heads == 0) return NULL;

  uint64_t per_thread = HEADS * (a->latent_dim + 2 * CHUNK + 3);
  if (a->latent_dim > SIZE_MAX / sizeof(float) / HEADS / dev->n_threads / 2)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: latent_dim %llu is too large", op,
                           (unsigned long long)a->latent_dim);
  float *scratch = malloc(per_thread * dev->n_threads * sizeof(float));
  if (scratch == NULL)
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "%s: no memory for scratch", op);
  latent_job job = {a,
                    dev->kernels,
                    (const float *)(const void *)ql.ptr,
                    (const float *)(const void *)qr.ptr,
                    cache.ptr,
                    bt,
                    ts,
                    tp,
                    (float *)(void *)out.ptr,
                    scratch,
                    a->cache_dtype == QIAO_DEV_F16 ? 2 : 4,
                    (a->n_heads + HEADS - 1) / HEADS};
  qiao__cpu_run(dev, latent_task, &job, a->n_tokens * job.head_groups > 1);
  free(scratch);
  return NULL;
}
