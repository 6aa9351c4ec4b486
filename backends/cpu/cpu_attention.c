/* The paged KV cache: kv_write stores a batch's keys and values into their
 * slots; attention runs causal grouped-query attention over it, one (token,
 * head) at a time, with an online softmax over chunks of positions (f32
 * math; an F16 cache is converted on the fly inside the kernels). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cpu_ops.h"

#define TRY(expr)                                                                                  \
  do {                                                                                             \
    qiao_dev_error *try_error_ = (expr);                                                           \
    if (try_error_ != NULL) return try_error_;                                                     \
  } while (0)

#define CACHE_DTYPES ((1u << QIAO_DEV_F32) | (1u << QIAO_DEV_F16))

enum { CHUNK = 64 }; /* positions scored before each softmax update */

/* An error in device data: asynchronous (reported by queue_synchronize),
 * the op does nothing. */
#define DATA_ERROR(...) qiao__cpu_defer(queue, qiao__cpu_error(__VA_ARGS__))

qiao_dev_error *qiao__cpu_mul_dims(const char *op, const char *a_name, uint64_t a,
                                   const char *b_name, uint64_t b, uint64_t *out) {
  if (a != 0 && b > UINT64_MAX / a)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: %s %llu * %s %llu overflows", op, a_name,
                           (unsigned long long)a, b_name, (unsigned long long)b);
  *out = a * b;
  return NULL;
}

qiao_dev_error *qiao__cpu_check_paged_tokens(const char *op, const int32_t *ts, const int32_t *tp,
                                             const int32_t *bt, uint64_t n_tokens, uint64_t n_seqs,
                                             uint64_t max_blocks_per_seq, uint64_t block_size,
                                             uint64_t n_slots, uint64_t window) {
  uint64_t n_blocks = n_slots / block_size;
  for (uint64_t t = 0; t < n_tokens; t++) {
    if (ts[t] < 0 || (uint64_t)ts[t] >= n_seqs)
      return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                             "%s: token_seq[%llu] = %d is not in [0, n_seqs %llu)", op,
                             (unsigned long long)t, ts[t], (unsigned long long)n_seqs);
    if (tp[t] < 0)
      return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: token_pos[%llu] = %d is negative", op,
                             (unsigned long long)t, tp[t]);
    uint64_t p = (uint64_t)tp[t], last = p / block_size;
    if (last >= max_blocks_per_seq)
      return qiao__cpu_error(
          QIAO_DEV_INVALID_ARGUMENT,
          "%s: token_pos[%llu] = %llu needs block %llu >= max_blocks_per_seq %llu", op,
          (unsigned long long)t, (unsigned long long)p, (unsigned long long)last,
          (unsigned long long)max_blocks_per_seq);
    uint64_t lo = (window > 0 && p + 1 > window) ? p + 1 - window : 0;
    const int32_t *row = bt + (uint64_t)ts[t] * max_blocks_per_seq;
    for (uint64_t b = lo / block_size; b <= last; b++) {
      if (row[b] < 0)
        return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                               "%s: block_table[%d,%llu] = %d is negative", op, ts[t],
                               (unsigned long long)b, row[b]);
      if ((uint64_t)row[b] >= n_blocks)
        return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                               "%s: block_table[%d,%llu] = %d >= n_blocks %llu (n_slots / "
                               "block_size)",
                               op, ts[t], (unsigned long long)b, row[b],
                               (unsigned long long)n_blocks);
    }
  }
  return NULL;
}

qiao_dev_error *qiao__cpu_kv_write(qiao_dev_queue *queue, const qiao_dev_kv_write_args *a) {
  const char *op = "kv_write";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  TRY(qiao__cpu_check_dtype(op, "cache_dtype", a->cache_dtype, CACHE_DTYPES));
  uint64_t kv_bytes = 0, slots_bytes = 0, cache_bytes = 0;
  TRY(qiao__cpu_extent(op, "k", QIAO_DEV_F32, a->n_tokens, a->kv_dim, &kv_bytes));
  TRY(qiao__cpu_extent(op, "slots", QIAO_DEV_I32, 1, a->n_tokens, &slots_bytes));
  TRY(qiao__cpu_extent(op, "k_cache", a->cache_dtype, a->n_slots, a->kv_dim, &cache_bytes));
  qiao__cpu_operand k, v, slots, kc, vc;
  TRY(qiao__cpu_operand_get(dev, op, "k", a->k, kv_bytes, QIAO_DEV_F32, 0, &k));
  TRY(qiao__cpu_operand_get(dev, op, "v", a->v, kv_bytes, QIAO_DEV_F32, 0, &v));
  TRY(qiao__cpu_operand_get(dev, op, "slots", a->slots, slots_bytes, QIAO_DEV_I32, 0, &slots));
  TRY(qiao__cpu_operand_get(dev, op, "k_cache", a->k_cache, cache_bytes, a->cache_dtype,
                            QIAO__CPU_REF_WRITE, &kc));
  TRY(qiao__cpu_operand_get(dev, op, "v_cache", a->v_cache, cache_bytes, a->cache_dtype,
                            QIAO__CPU_REF_WRITE, &vc));
  const qiao__cpu_operand *outs[2] = {&kc, &vc}, *ins[3] = {&k, &v, &slots};
  TRY(qiao__cpu_no_overlap(op, &kc, &vc, 0));
  for (int o = 0; o < 2; o++)
    for (int i = 0; i < 3; i++)
      TRY(qiao__cpu_no_overlap(op, outs[o], ins[i], 0));
  const int32_t *slot = (const int32_t *)(const void *)slots.ptr;
  for (uint64_t t = 0; t < a->n_tokens; t++) {
    if (slot[t] < 0)
      return DATA_ERROR(QIAO_DEV_INVALID_ARGUMENT, "%s: slots[%llu] = %d is negative", op,
                        (unsigned long long)t, slot[t]);
    if ((uint64_t)slot[t] >= a->n_slots)
      return DATA_ERROR(QIAO_DEV_INVALID_ARGUMENT, "%s: slots[%llu] = %d >= n_slots %llu", op,
                        (unsigned long long)t, slot[t], (unsigned long long)a->n_slots);
  }
  const float *src[2] = {(const float *)(const void *)k.ptr, (const float *)(const void *)v.ptr};
  uint8_t *dst[2] = {kc.ptr, vc.ptr};
  for (int c = 0; c < 2; c++)
    for (uint64_t t = 0; t < a->n_tokens; t++) {
      const float *row = src[c] + t * a->kv_dim;
      if (a->cache_dtype == QIAO_DEV_F32) {
        memcpy(dst[c] + (uint64_t)slot[t] * a->kv_dim * 4, row, a->kv_dim * 4);
      } else {
        uint8_t *out = dst[c] + (uint64_t)slot[t] * a->kv_dim * 2;
        for (uint64_t i = 0; i < a->kv_dim; i++) {
          uint16_t h = qiao__cpu_f32_to_f16(row[i]);
          out[2 * i] = (uint8_t)h;
          out[2 * i + 1] = (uint8_t)(h >> 8);
        }
      }
    }
  return NULL;
}

typedef struct attention_job {
  const qiao_dev_attention_args *a;
  const qiao__cpu_kernels *kernels;
  const float *q;
  const uint8_t *k_cache, *v_cache; /* (n_slots, n_kv_heads * head_dim) */
  const int32_t *block_table, *token_seq, *token_pos;
  float *out;
  float *scratch; /* per thread: head_dim accumulators + CHUNK scores */
  uint64_t elt;   /* bytes per cache element */
} attention_job;

static void attend_one(const attention_job *job, uint64_t t, uint64_t h, float *acc,
                       float *scores) {
  const qiao_dev_attention_args *a = job->a;
  uint64_t hd = a->head_dim, group = a->n_heads / a->n_kv_heads, kvh = h / group;
  uint64_t row_bytes = a->n_kv_heads * hd * job->elt, head_off = kvh * hd * job->elt;
  uint64_t p = (uint64_t)job->token_pos[t];
  uint64_t lo = (a->window > 0 && p + 1 > a->window) ? p + 1 - a->window : 0;
  const int32_t *table = job->block_table + (uint64_t)job->token_seq[t] * a->max_blocks_per_seq;
  const float *q = job->q + (t * a->n_heads + h) * hd;
  qiao__cpu_dot_fn dot = job->kernels->dot[a->cache_dtype];
  qiao__cpu_axpy_fn axpy = job->kernels->axpy[a->cache_dtype == QIAO_DEV_F16];
  float m = -INFINITY, l = 0.0f;
  for (uint64_t i = 0; i < hd; i++)
    acc[i] = 0.0f;
  for (uint64_t j0 = lo; j0 <= p; j0 += CHUNK) {
    uint64_t n = p + 1 - j0 < CHUNK ? p + 1 - j0 : CHUNK;
    uint64_t slots[CHUNK];
    float chunk_max = -INFINITY;
    for (uint64_t c = 0; c < n; c++) {
      uint64_t j = j0 + c;
      slots[c] = (uint64_t)table[j / a->block_size] * a->block_size + j % a->block_size;
      dot(job->k_cache + slots[c] * row_bytes + head_off, &q, 1, hd, &scores[c]);
      scores[c] *= a->scale;
      if (scores[c] > chunk_max) chunk_max = scores[c];
    }
    if (chunk_max > m) { /* rescale what was accumulated against the old max */
      float factor = expf(m - chunk_max);
      for (uint64_t i = 0; i < hd; i++)
        acc[i] *= factor;
      l *= factor;
      m = chunk_max;
    }
    for (uint64_t c = 0; c < n; c++) {
      float e = expf(scores[c] - m);
      l += e;
      axpy(acc, e, job->v_cache + slots[c] * row_bytes + head_off, hd);
    }
  }
  float *out = job->out + (t * a->n_heads + h) * hd;
  for (uint64_t i = 0; i < hd; i++)
    out[i] = acc[i] / l;
}

static void attention_task(void *ctx, uint32_t ith, uint32_t nth) {
  const attention_job *job = ctx;
  uint64_t items = job->a->n_tokens * job->a->n_heads, lo = 0, hi = 0;
  qiao__cpu_split(items, ith, nth, &lo, &hi);
  float *acc = job->scratch + (uint64_t)ith * (job->a->head_dim + CHUNK);
  for (uint64_t item = lo; item < hi; item++)
    attend_one(job, item / job->a->n_heads, item % job->a->n_heads, acc, acc + job->a->head_dim);
}

qiao_dev_error *qiao__cpu_attention(qiao_dev_queue *queue, const qiao_dev_attention_args *a) {
  const char *op = "attention";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  TRY(qiao__cpu_check_dtype(op, "cache_dtype", a->cache_dtype, CACHE_DTYPES));
  if (a->n_kv_heads == 0 || a->n_heads % a->n_kv_heads != 0)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "%s: n_heads %llu is not a multiple of n_kv_heads %llu", op,
                           (unsigned long long)a->n_heads, (unsigned long long)a->n_kv_heads);
  if (a->block_size == 0)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: block_size is 0", op);
  uint64_t q_dim = 0, kv_dim = 0, q_bytes = 0, cache_bytes = 0, table_bytes = 0, tok_bytes = 0;
  TRY(qiao__cpu_mul_dims(op, "n_heads", a->n_heads, "head_dim", a->head_dim, &q_dim));
  TRY(qiao__cpu_mul_dims(op, "n_kv_heads", a->n_kv_heads, "head_dim", a->head_dim, &kv_dim));
  TRY(qiao__cpu_extent(op, "q", QIAO_DEV_F32, a->n_tokens, q_dim, &q_bytes));
  TRY(qiao__cpu_extent(op, "k_cache", a->cache_dtype, a->n_slots, kv_dim, &cache_bytes));
  TRY(qiao__cpu_extent(op, "block_table", QIAO_DEV_I32, a->n_seqs, a->max_blocks_per_seq,
                       &table_bytes));
  TRY(qiao__cpu_extent(op, "token_seq", QIAO_DEV_I32, 1, a->n_tokens, &tok_bytes));
  qiao__cpu_operand q, kc, vc, table, seq, pos, out;
  TRY(qiao__cpu_operand_get(dev, op, "q", a->q, q_bytes, QIAO_DEV_F32, 0, &q));
  TRY(qiao__cpu_operand_get(dev, op, "k_cache", a->k_cache, cache_bytes, a->cache_dtype, 0, &kc));
  TRY(qiao__cpu_operand_get(dev, op, "v_cache", a->v_cache, cache_bytes, a->cache_dtype, 0, &vc));
  TRY(qiao__cpu_operand_get(dev, op, "block_table", a->block_table, table_bytes, QIAO_DEV_I32, 0,
                            &table));
  TRY(qiao__cpu_operand_get(dev, op, "token_seq", a->token_seq, tok_bytes, QIAO_DEV_I32, 0, &seq));
  TRY(qiao__cpu_operand_get(dev, op, "token_pos", a->token_pos, tok_bytes, QIAO_DEV_I32, 0, &pos));
  TRY(qiao__cpu_operand_get(dev, op, "out", a->out, q_bytes, QIAO_DEV_F32, QIAO__CPU_REF_WRITE,
                            &out));
  const qiao__cpu_operand *ins[6] = {&q, &kc, &vc, &table, &seq, &pos};
  for (int i = 0; i < 6; i++)
    TRY(qiao__cpu_no_overlap(op, &out, ins[i], 0));

  /* Device data checked before any read through it. */
  const int32_t *ts = (const int32_t *)(const void *)seq.ptr;
  const int32_t *tp = (const int32_t *)(const void *)pos.ptr;
  const int32_t *bt = (const int32_t *)(const void *)table.ptr;
  qiao_dev_error *bad =
      qiao__cpu_check_paged_tokens(op, ts, tp, bt, a->n_tokens, a->n_seqs, a->max_blocks_per_seq,
                                   a->block_size, a->n_slots, a->window);
  if (bad != NULL) return qiao__cpu_defer(queue, bad);
  if (a->n_tokens == 0 || a->n_heads == 0 || a->head_dim == 0) return NULL;

  uint64_t per_thread = a->head_dim + CHUNK;
  if (per_thread > SIZE_MAX / sizeof(float) / dev->n_threads)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: head_dim %llu is too large", op,
                           (unsigned long long)a->head_dim);
  float *scratch = malloc(per_thread * dev->n_threads * sizeof(float));
  if (scratch == NULL)
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "%s: no memory for scratch", op);
  attention_job job = {a,
                       dev->kernels,
                       (const float *)(const void *)q.ptr,
                       kc.ptr,
                       vc.ptr,
                       bt,
                       ts,
                       tp,
                       (float *)(void *)out.ptr,
                       scratch,
                       a->cache_dtype == QIAO_DEV_F16 ? 2 : 4};
  qiao__cpu_run(dev, attention_task, &job, a->n_tokens * a->n_heads > 1);
  free(scratch);
  return NULL;
}
