/* moe_route (device ABI 1.4): DeepSeek-V2/V3 expert routing: a softmax or
 * sigmoid score per expert, a selection bias, group-limited selection (the
 * experts of the groups not kept choose with c = 0, as transformers'
 * masked_fill does), the top k by the biased score, and weights from the
 * unbiased score. Each token is routed alone (f32 scores, the softmax's
 * sum in f64), so a token's result never depends on the batch or threads. */
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"

#define TRY(expr)                                                                                  \
  do {                                                                                             \
    qiao_dev_error *try_error_ = (expr);                                                           \
    if (try_error_ != NULL) return try_error_;                                                     \
  } while (0)

#define F32 QIAO_DEV_F32
#define I32 QIAO_DEV_I32
#define INVALID(...) qiao__cpu_error(QIAO_DEV_INVALID_ARGUMENT, __VA_ARGS__)

enum { PARALLEL_ELEMENTS = 1 << 14 };

/* Whether a beats b in a ranking where larger wins and ties go to the
 * smaller index (a's index is larger when later_a): NaN never beats a
 * number, and a number always beats NaN. */
static int beats(float a, float b, int later_a) {
  if (a != a) return 0;
  if (b != b) return 1;
  return a > b || (a == b && !later_a);
}

typedef struct route_job {
  const qiao_dev_moe_route_args *a;
  const float *logits, *bias; /* bias NULL when absent */
  int32_t *ids;
  float *weights;
  float *scratch; /* per thread: 2 * n_experts + n_groups floats, n_experts bytes */
  uint64_t per_thread;
} route_job;

static void route_token(const route_job *job, uint64_t t, float *p, float *c, float *gs,
                        uint8_t *taken) {
  const qiao_dev_moe_route_args *a = job->a;
  uint64_t ne = a->n_experts;
  const float *l = job->logits + t * ne;
  if (a->scoring == QIAO_DEV_MOE_SCORE_SOFTMAX) {
    float max = l[0];
    for (uint64_t e = 1; e < ne; e++)
      if (l[e] > max) max = l[e];
    double sum = 0.0;
    for (uint64_t e = 0; e < ne; e++) {
      p[e] = expf(l[e] - max);
      sum += p[e];
    }
    for (uint64_t e = 0; e < ne; e++)
      p[e] = (float)(p[e] / sum);
  } else {
    for (uint64_t e = 0; e < ne; e++)
      p[e] = 1.0f / (1.0f + expf(-l[e]));
  }
  for (uint64_t e = 0; e < ne; e++) {
    c[e] = job->bias != NULL ? p[e] + job->bias[e] : p[e];
    taken[e] = 0;
  }
  if (a->n_groups > 1) {
    uint64_t ng = a->n_groups, per = ne / ng;
    for (uint64_t g = 0; g < ng; g++) {
      const float *cg = c + g * per;
      uint64_t best = 0;
      for (uint64_t e = 1; e < per; e++)
        if (beats(cg[e], cg[best], 1)) best = e;
      float score = cg[best];
      if (a->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM) {
        uint64_t second = best == 0 ? 1 : 0;
        for (uint64_t e = 0; e < per; e++)
          if (e != best && beats(cg[e], cg[second], e > second)) second = e;
        score += cg[second];
      }
      gs[g] = score;
    }
    /* taken[] marks the kept groups' first experts while choosing groups. */
    for (uint32_t i = 0; i < a->topk_groups; i++) {
      uint64_t best = UINT64_MAX;
      for (uint64_t g = 0; g < ng; g++)
        if (!taken[g * per] && (best == UINT64_MAX || beats(gs[g], gs[best], g > best))) best = g;
      taken[best * per] = 1;
    }
    for (uint64_t g = 0; g < ng; g++) {
      int kept = taken[g * per];
      taken[g * per] = 0;
      if (!kept)
        for (uint64_t e = 0; e < per; e++)
          c[g * per + e] = 0.0f;
    }
  }
  int32_t *ids = job->ids + t * a->k;
  float *w = job->weights + t * a->k;
  double chosen = 0.0;
  for (uint64_t i = 0; i < a->k; i++) {
    uint64_t best = UINT64_MAX;
    for (uint64_t e = 0; e < ne; e++)
      if (!taken[e] && (best == UINT64_MAX || beats(c[e], c[best], e > best))) best = e;
    taken[best] = 1;
    ids[i] = (int32_t)best;
    w[i] = p[best];
    chosen += p[best];
  }
  double denom = a->normalize ? chosen + 1e-20 : 1.0;
  for (uint64_t i = 0; i < a->k; i++)
    w[i] = (float)((double)w[i] / denom * (double)a->scale);
}

static void route_task(void *ctx, uint32_t ith, uint32_t nth) {
  const route_job *job = ctx;
  uint64_t lo = 0, hi = 0, ne = job->a->n_experts;
  qiao__cpu_split(job->a->n_tokens, ith, nth, &lo, &hi);
  float *p = job->scratch + (uint64_t)ith * job->per_thread, *c = p + ne, *gs = c + ne;
  uint8_t *taken = (uint8_t *)(gs + job->a->n_groups);
  for (uint64_t t = lo; t < hi; t++)
    route_token(job, t, p, c, gs, taken);
}

qiao_dev_error *qiao__cpu_moe_route(qiao_dev_queue *queue, const qiao_dev_moe_route_args *a) {
  const char *op = "moe_route";
  qiao_dev_device *dev;
  TRY(qiao__cpu_begin(op, queue, a, sizeof(*a), &dev));
  if (a->n_experts == 0 || a->n_experts > INT32_MAX || a->k == 0 || a->k > a->n_experts)
    return INVALID("%s: k %llu must be in [1, n_experts %llu] (n_experts < 2^31)", op,
                   (unsigned long long)a->k, (unsigned long long)a->n_experts);
  if (a->scoring != QIAO_DEV_MOE_SCORE_SOFTMAX && a->scoring != QIAO_DEV_MOE_SCORE_SIGMOID)
    return INVALID("%s: scoring %u is not a QIAO_DEV_MOE_SCORE_*", op, a->scoring);
  if (a->normalize > 1) return INVALID("%s: normalize %u is not 0 or 1", op, a->normalize);
  if (!isfinite(a->scale)) return INVALID("%s: scale %g is not finite", op, (double)a->scale);
  if (a->n_groups > 1) {
    uint64_t per = a->n_experts / a->n_groups;
    if (a->n_experts % a->n_groups != 0)
      return INVALID("%s: n_experts %llu is not a multiple of n_groups %u", op,
                     (unsigned long long)a->n_experts, a->n_groups);
    if (a->topk_groups == 0 || a->topk_groups > a->n_groups)
      return INVALID("%s: topk_groups %u is not in [1, n_groups %u]", op, a->topk_groups,
                     a->n_groups);
    if (a->group_score != QIAO_DEV_MOE_GROUP_MAX && a->group_score != QIAO_DEV_MOE_GROUP_TOP2_SUM)
      return INVALID("%s: group_score %u is not a QIAO_DEV_MOE_GROUP_*", op, a->group_score);
    if (a->group_score == QIAO_DEV_MOE_GROUP_TOP2_SUM && per < 2)
      return INVALID("%s: group_score TOP2_SUM needs 2 or more experts per group, not %llu", op,
                     (unsigned long long)per);
    if (a->k > per * a->topk_groups)
      return INVALID("%s: k %llu is more than the %llu experts of the topk_groups %u kept groups",
                     op, (unsigned long long)a->k, (unsigned long long)(per * a->topk_groups),
                     a->topk_groups);
  }
  uint64_t l_bytes = 0, b_bytes = 0, o_bytes = 0;
  TRY(qiao__cpu_extent(op, "logits", F32, a->n_tokens, a->n_experts, &l_bytes));
  TRY(qiao__cpu_extent(op, "bias", F32, 1, a->n_experts, &b_bytes));
  TRY(qiao__cpu_extent(op, "ids", I32, a->n_tokens, a->k, &o_bytes));
  qiao__cpu_operand logits, bias, ids, weights;
  TRY(qiao__cpu_operand_get(dev, op, "logits", a->logits, l_bytes, F32, 0, &logits));
  TRY(qiao__cpu_operand_get(dev, op, "bias", a->bias, b_bytes, F32, QIAO__CPU_REF_OPTIONAL, &bias));
  TRY(qiao__cpu_operand_get(dev, op, "ids", a->ids, o_bytes, I32, QIAO__CPU_REF_WRITE, &ids));
  TRY(qiao__cpu_operand_get(dev, op, "weights", a->weights, o_bytes, F32, QIAO__CPU_REF_WRITE,
                            &weights));
  TRY(qiao__cpu_no_overlap(op, &ids, &logits, 0));
  TRY(qiao__cpu_no_overlap(op, &weights, &logits, 0));
  TRY(qiao__cpu_no_overlap(op, &weights, &ids, 0));
  if (bias.buffer != NULL) {
    TRY(qiao__cpu_no_overlap(op, &ids, &bias, 0));
    TRY(qiao__cpu_no_overlap(op, &weights, &bias, 0));
  }
  if (a->n_tokens == 0) return NULL;
  uint64_t ne = a->n_experts, per_thread = 2 * ne + a->n_groups + (ne + 3) / 4;
  if (per_thread > SIZE_MAX / sizeof(float) / dev->n_threads)
    return INVALID("%s: n_experts %llu is too large", op, (unsigned long long)ne);
  float *scratch = malloc(per_thread * dev->n_threads * sizeof(float));
  if (scratch == NULL) return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "%s: no memory", op);
  route_job job = {a,
                   (const float *)(const void *)logits.ptr,
                   bias.buffer != NULL ? (const float *)(const void *)bias.ptr : NULL,
                   (int32_t *)(void *)ids.ptr,
                   (float *)(void *)weights.ptr,
                   scratch,
                   per_thread};
  qiao__cpu_run(dev, route_task, &job, a->n_tokens > 1 && a->n_tokens * ne >= PARALLEL_ELEMENTS);
  free(scratch);
  return NULL;
}
