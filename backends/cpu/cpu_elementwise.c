/* The small ops: rmsnorm, rope, swiglu, add, argmax, and the mixture-of-
 * experts routing ops moe_gate and moe_combine. Large ones are split over
 * threads by rows or elements (each output is computed the same way
 * whatever the split). */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"

#define TRY(expr)                                                                                  \
  do {                                                                                             \
    qiao_dev_error *try_error_ = (expr);                                                           \
    if (try_error_ != NULL) return try_error_;                                                     \
  } while (0)

enum { PARALLEL_ELEMENTS = 1 << 16 };

#define F32 QIAO_DEV_F32
#define I32 QIAO_DEV_I32
#define WRITE QIAO__CPU_REF_WRITE

/* ---- rmsnorm -------------------------------------------------------------- */
typedef struct rmsnorm_job {
  const qiao_dev_rmsnorm_args *a;
  const float *x, *weight;
  float *out;
} rmsnorm_job;

static void rmsnorm_task(void *ctx, uint32_t ith, uint32_t nth) {
  const rmsnorm_job *job = ctx;
  uint64_t cols = job->a->cols, lo = 0, hi = 0;
  qiao__cpu_split(job->a->rows, ith, nth, &lo, &hi);
  for (uint64_t r = lo; r < hi; r++) {
    const float *x = job->x + r * cols;
    float *out = job->out + r * cols;
    double sum = 0.0;
    for (uint64_t i = 0; i < cols; i++)
      sum += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(sum / (double)cols + (double)job->a->eps));
    for (uint64_t i = 0; i < cols; i++)
      out[i] = x[i] * scale * job->weight[i];
  }
}

qiao_dev_error *qiao__cpu_rmsnorm(qiao_dev_queue *queue, const qiao_dev_rmsnorm_args *a) {
  const char *op = "rmsnorm";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  uint64_t x_bytes = 0, w_bytes = 0;
  TRY(qiao__cpu_extent(op, "x", F32, a->rows, a->cols, &x_bytes));
  TRY(qiao__cpu_extent(op, "weight", F32, 1, a->cols, &w_bytes));
  qiao__cpu_operand x, w, out;
  TRY(qiao__cpu_operand_get(dev, op, "x", a->x, x_bytes, F32, 0, &x));
  TRY(qiao__cpu_operand_get(dev, op, "weight", a->weight, w_bytes, F32, 0, &w));
  TRY(qiao__cpu_operand_get(dev, op, "out", a->out, x_bytes, F32, WRITE, &out));
  TRY(qiao__cpu_no_overlap(op, &out, &x, 1));
  TRY(qiao__cpu_no_overlap(op, &out, &w, 0));
  if (!(a->eps >= 0.0f))
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: eps %g is negative or NaN", op,
                           (double)a->eps);
  if (a->cols == 0) return NULL;
  rmsnorm_job job = {a, (const float *)(const void *)x.ptr, (const float *)(const void *)w.ptr,
                     (float *)(void *)out.ptr};
  qiao__cpu_run(dev, rmsnorm_task, &job, a->rows > 1 && a->rows * a->cols >= PARALLEL_ELEMENTS);
  return NULL;
}

/* ---- rope: cos/sin computed once per (token, i), applied to every head ---- */
qiao_dev_error *qiao__cpu_rope(qiao_dev_queue *queue, const qiao_dev_rope_args *a) {
  const char *op = "rope";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  if (a->style != QIAO_DEV_ROPE_NORMAL && a->style != QIAO_DEV_ROPE_NEOX)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: style %u is not a rope style", op,
                           (unsigned)a->style);
  if (a->rot_dim % 2 != 0 || a->rot_dim > a->head_dim)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT,
                           "%s: rot_dim %llu must be even and <= head_dim %llu", op,
                           (unsigned long long)a->rot_dim, (unsigned long long)a->head_dim);
  if (a->n_heads != 0 && a->head_dim > UINT64_MAX / a->n_heads)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: n_heads * head_dim overflows", op);
  uint64_t row = a->n_heads * a->head_dim, half = a->rot_dim / 2, x_bytes = 0, pos_bytes = 0,
           f_bytes = 0;
  TRY(qiao__cpu_extent(op, "x", F32, a->n_tokens, row, &x_bytes));
  TRY(qiao__cpu_extent(op, "positions", I32, 1, a->n_tokens, &pos_bytes));
  TRY(qiao__cpu_extent(op, "freqs", F32, 1, half, &f_bytes));
  qiao__cpu_operand x, pos, freqs;
  TRY(qiao__cpu_operand_get(dev, op, "x", a->x, x_bytes, F32, WRITE, &x));
  TRY(qiao__cpu_operand_get(dev, op, "positions", a->positions, pos_bytes, I32, 0, &pos));
  TRY(qiao__cpu_operand_get(dev, op, "freqs", a->freqs, f_bytes, F32, 0, &freqs));
  TRY(qiao__cpu_no_overlap(op, &x, &pos, 0));
  TRY(qiao__cpu_no_overlap(op, &x, &freqs, 0));
  if (a->n_tokens == 0 || half == 0 || a->n_heads == 0) return NULL;
  const int32_t *p = (const int32_t *)(const void *)pos.ptr;
  const float *f = (const float *)(const void *)freqs.ptr;
  float *cs = malloc(2 * half * sizeof(float)); /* cos, sin for one token */
  if (cs == NULL) return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "%s: no memory", op);
  float *xs = (float *)(void *)x.ptr;
  for (uint64_t t = 0; t < a->n_tokens; t++) {
    for (uint64_t i = 0; i < half; i++) {
      float angle = (float)p[t] * f[i];
      cs[2 * i] = (float)cos((double)angle);
      cs[2 * i + 1] = (float)sin((double)angle);
    }
    for (uint64_t h = 0; h < a->n_heads; h++) {
      float *v = xs + (t * a->n_heads + h) * a->head_dim;
      for (uint64_t i = 0; i < half; i++) {
        uint64_t i0 = a->style == QIAO_DEV_ROPE_NORMAL ? 2 * i : i;
        uint64_t i1 = a->style == QIAO_DEV_ROPE_NORMAL ? 2 * i + 1 : i + half;
        float x0 = v[i0], x1 = v[i1], c = cs[2 * i], s = cs[2 * i + 1];
        v[i0] = x0 * c - x1 * s;
        v[i1] = x0 * s + x1 * c;
      }
    }
  }
  free(cs);
  return NULL;
}

/* ---- swiglu and add --------------------------------------------------------- */
typedef struct binary_job {
  const float *a, *b;
  float *out;
  uint64_t n;
  int swiglu; /* else add */
} binary_job;

static void binary_task(void *ctx, uint32_t ith, uint32_t nth) {
  const binary_job *job = ctx;
  uint64_t lo = 0, hi = 0;
  qiao__cpu_split(job->n, ith, nth, &lo, &hi);
  if (job->swiglu)
    for (uint64_t i = lo; i < hi; i++) {
      float g = job->a[i];
      job->out[i] = g / (1.0f + expf(-g)) * job->b[i];
    }
  else
    for (uint64_t i = lo; i < hi; i++)
      job->out[i] = job->a[i] + job->b[i];
}

/* swiglu and add after qiao__cpu_begin: out may equal a or b. */
static qiao_dev_error *binary(qiao_dev_device *dev, const char *op, const char *a_name,
                              const char *b_name, uint64_t n, qiao_dev_ref a_ref,
                              qiao_dev_ref b_ref, qiao_dev_ref out_ref, int swiglu) {
  uint64_t bytes = 0;
  TRY(qiao__cpu_extent(op, "out", F32, 1, n, &bytes));
  qiao__cpu_operand a, b, out;
  TRY(qiao__cpu_operand_get(dev, op, a_name, a_ref, bytes, F32, 0, &a));
  TRY(qiao__cpu_operand_get(dev, op, b_name, b_ref, bytes, F32, 0, &b));
  TRY(qiao__cpu_operand_get(dev, op, "out", out_ref, bytes, F32, WRITE, &out));
  TRY(qiao__cpu_no_overlap(op, &out, &a, 1));
  TRY(qiao__cpu_no_overlap(op, &out, &b, 1));
  binary_job job = {(const float *)(const void *)a.ptr, (const float *)(const void *)b.ptr,
                    (float *)(void *)out.ptr, n, swiglu};
  qiao__cpu_run(dev, binary_task, &job, n >= PARALLEL_ELEMENTS);
  return NULL;
}

qiao_dev_error *qiao__cpu_swiglu(qiao_dev_queue *queue, const qiao_dev_swiglu_args *a) {
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin("swiglu", queue, a, sizeof(*a), &dev));
  return binary(dev, "swiglu", "gate", "up", a->n, a->gate, a->up, a->out, 1);
}

qiao_dev_error *qiao__cpu_add(qiao_dev_queue *queue, const qiao_dev_add_args *a) {
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin("add", queue, a, sizeof(*a), &dev));
  return binary(dev, "add", "a", "b", a->n, a->a, a->b, a->out, 0);
}

/* ---- argmax ------------------------------------------------------------------- */
qiao_dev_error *qiao__cpu_argmax(qiao_dev_queue *queue, const qiao_dev_argmax_args *a) {
  const char *op = "argmax";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  if (a->cols == 0 || a->cols > INT32_MAX)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: cols %llu is not in [1, 2^31)", op,
                           (unsigned long long)a->cols);
  uint64_t x_bytes = 0, out_bytes = 0;
  TRY(qiao__cpu_extent(op, "x", F32, a->rows, a->cols, &x_bytes));
  TRY(qiao__cpu_extent(op, "out", I32, 1, a->rows, &out_bytes));
  qiao__cpu_operand x, out;
  TRY(qiao__cpu_operand_get(dev, op, "x", a->x, x_bytes, F32, 0, &x));
  TRY(qiao__cpu_operand_get(dev, op, "out", a->out, out_bytes, I32, WRITE, &out));
  TRY(qiao__cpu_no_overlap(op, &out, &x, 0));
  const float *xs = (const float *)(const void *)x.ptr;
  int32_t *o = (int32_t *)(void *)out.ptr;
  for (uint64_t r = 0; r < a->rows; r++) {
    const float *row = xs + r * a->cols;
    uint64_t best = 0;
    for (uint64_t i = 1; i < a->cols; i++)
      if (row[i] > row[best] || (row[best] != row[best] && row[i] == row[i])) best = i;
    o[r] = (int32_t)best;
  }
  return NULL;
}

/* ---- moe_gate ----------------------------------------------------------------- */
qiao_dev_error *qiao__cpu_moe_gate(qiao_dev_queue *queue, const qiao_dev_moe_gate_args *a) {
  const char *op = "moe_gate";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  if (a->k == 0 || a->k > a->n_experts)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: k %llu is not in [1, n_experts %llu]",
                           op, (unsigned long long)a->k, (unsigned long long)a->n_experts);
  uint64_t l_bytes = 0, o_bytes = 0;
  TRY(qiao__cpu_extent(op, "logits", F32, a->n_tokens, a->n_experts, &l_bytes));
  TRY(qiao__cpu_extent(op, "ids", I32, a->n_tokens, a->k, &o_bytes));
  if (a->n_experts > INT32_MAX)
    return qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, "%s: n_experts %llu does not fit in I32", op,
                           (unsigned long long)a->n_experts);
  qiao__cpu_operand logits, ids, weights;
  TRY(qiao__cpu_operand_get(dev, op, "logits", a->logits, l_bytes, F32, 0, &logits));
  TRY(qiao__cpu_operand_get(dev, op, "ids", a->ids, o_bytes, I32, WRITE, &ids));
  TRY(qiao__cpu_operand_get(dev, op, "weights", a->weights, o_bytes, F32, WRITE, &weights));
  TRY(qiao__cpu_no_overlap(op, &ids, &logits, 0));
  TRY(qiao__cpu_no_overlap(op, &weights, &logits, 0));
  TRY(qiao__cpu_no_overlap(op, &weights, &ids, 0));
  if (a->n_tokens == 0) return NULL;
  uint64_t ne = a->n_experts;
  float *p = malloc(ne * (sizeof(float) + 1));
  if (p == NULL) return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "%s: no memory", op);
  uint8_t *taken = (uint8_t *)(p + ne);
  const float *ls = (const float *)(const void *)logits.ptr;
  int32_t *out_ids = (int32_t *)(void *)ids.ptr;
  float *out_w = (float *)(void *)weights.ptr;
  for (uint64_t t = 0; t < a->n_tokens; t++) {
    const float *l = ls + t * ne;
    float max = l[0];
    for (uint64_t e = 1; e < ne; e++)
      if (l[e] > max) max = l[e];
    double sum = 0.0;
    for (uint64_t e = 0; e < ne; e++) {
      p[e] = expf(l[e] - max);
      sum += p[e];
    }
    for (uint64_t e = 0; e < ne; e++) {
      p[e] = (float)(p[e] / sum);
      taken[e] = 0;
    }
    double chosen = 0.0;
    for (uint64_t i = 0; i < a->k; i++) {
      uint64_t best = UINT64_MAX;
      /* By logit (the same ranking as by p, without p's rounding ties);
       * ties to the smaller index; NaN never beats a number. */
      for (uint64_t e = 0; e < ne; e++)
        if (!taken[e] &&
            (best == UINT64_MAX || l[e] > l[best] || (l[best] != l[best] && l[e] == l[e])))
          best = e;
      taken[best] = 1;
      out_ids[t * a->k + i] = (int32_t)best;
      out_w[t * a->k + i] = p[best];
      chosen += p[best];
    }
    if (a->normalize && chosen > 0.0)
      for (uint64_t i = 0; i < a->k; i++)
        out_w[t * a->k + i] = (float)(out_w[t * a->k + i] / chosen);
  }
  free(p);
  return NULL;
}

/* ---- moe_combine --------------------------------------------------------------- */
qiao_dev_error *qiao__cpu_moe_combine(qiao_dev_queue *queue, const qiao_dev_moe_combine_args *a) {
  const char *op = "moe_combine";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  uint64_t pairs_bytes = 0, x_bytes = 0, out_bytes = 0;
  TRY(qiao__cpu_extent(op, "weights", F32, a->n_tokens, a->k, &pairs_bytes));
  TRY(qiao__cpu_extent(op, "x", F32, pairs_bytes / 4, a->dim, &x_bytes));
  TRY(qiao__cpu_extent(op, "out", F32, a->n_tokens, a->dim, &out_bytes));
  qiao__cpu_operand x, w, out;
  TRY(qiao__cpu_operand_get(dev, op, "x", a->x, x_bytes, F32, 0, &x));
  TRY(qiao__cpu_operand_get(dev, op, "weights", a->weights, pairs_bytes, F32, 0, &w));
  TRY(qiao__cpu_operand_get(dev, op, "out", a->out, out_bytes, F32, WRITE, &out));
  TRY(qiao__cpu_no_overlap(op, &out, &x, 0));
  TRY(qiao__cpu_no_overlap(op, &out, &w, 0));
  const float *xs = (const float *)(const void *)x.ptr, *ws = (const float *)(const void *)w.ptr;
  float *o = (float *)(void *)out.ptr;
  for (uint64_t t = 0; t < a->n_tokens; t++)
    for (uint64_t d = 0; d < a->dim; d++) {
      float v = a->accumulate ? o[t * a->dim + d] : 0.0f;
      for (uint64_t i = 0; i < a->k; i++)
        v += ws[t * a->k + i] * xs[(t * a->k + i) * a->dim + d];
      o[t * a->dim + d] = v;
    }
  return NULL;
}

/* ---- capabilities ---------------------------------------------------------------- */
uint32_t qiao__cpu_op_dtypes(qiao_dev_op op) {
  const uint32_t weights = (1u << QIAO_DEV_F32) | (1u << QIAO_DEV_F16) | (1u << QIAO_DEV_BF16) |
                           (1u << QIAO_DEV_Q8_0) | (1u << QIAO_DEV_Q4_0) |
                           QIAO__CPU_NEW_BLOCK_DTYPES;
  const uint32_t caches = (1u << QIAO_DEV_F32) | (1u << QIAO_DEV_F16);
  switch (op) {
  case QIAO_DEV_OP_EMBED:
  case QIAO_DEV_OP_MATMUL:
  case QIAO_DEV_OP_MATMUL_EXPERTS: return weights;
  case QIAO_DEV_OP_KV_WRITE:
  case QIAO_DEV_OP_ATTENTION:
  case QIAO_DEV_OP_LATENT_WRITE:
  case QIAO_DEV_OP_ATTENTION_LATENT: return caches;
  case QIAO_DEV_OP_RMSNORM:
  case QIAO_DEV_OP_ROPE:
  case QIAO_DEV_OP_SWIGLU:
  case QIAO_DEV_OP_ADD:
  case QIAO_DEV_OP_ARGMAX:
  case QIAO_DEV_OP_MOE_GATE:
  case QIAO_DEV_OP_MOE_COMBINE:
  case QIAO_DEV_OP_MOE_ROUTE: return 1u << QIAO_DEV_F32;
  default: return 0;
  }
}
