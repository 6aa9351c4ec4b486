/* cuda_route.h: moe_route's per-token algorithm (device ABI 1.4,
 * include/qiao/device.h), written once for the CUDA kernel, where a warp of
 * 32 lanes routes one token, and for a host build with one lane, which a
 * CPU-only test compares with the CPU backend (tests/cuda/test_cuda_route.c).
 *
 * For token t: p in F32 (softmax: the maximum subtracted, the sum in double;
 * or sigmoid), c = p + bias written to scratch; with groups, each group's
 * score (its largest c, or the sum of its two largest) to scratch, the
 * topk_groups best groups kept and c = 0 for the experts of the others; then
 * the k best experts by c, weights from p (normalized, scaled). Every ranking
 * is cuq_ranks_before's: larger first, NaN last, ties to the smaller index.
 * That is a strict total order, so the i-th pick is the best element ranked
 * strictly after the (i-1)-th (no "taken" set), and the kept groups are
 * exactly those ranked at or before the last group picked.
 *
 * Lane l handles elements l, l + LANES, ...; the warp's results are combined
 * with shuffles on the device, and are the lane's own on the host (LANES = 1),
 * where the same code then runs sequentially. Plain C, like cuda_dequant.h. */
#ifndef QIAO_CUDA_ROUTE_H
#define QIAO_CUDA_ROUTE_H

#include <math.h>
#include <stdint.h>

#include "cuda_dequant.h" /* CUQ_HD */

#if defined(__CUDA_ARCH__)
#define CUQ_ROUTE_LANES 32
#else
#define CUQ_ROUTE_LANES 1
#endif

/* Whether (v, e) ranks before (w, f): larger value first, NaN after every
 * number, equal values (and two NaNs) by the smaller index. */
CUQ_HD int cuq_ranks_before(float v, int e, float w, int f) {
  const int vn = v != v, wn = w != w;
  if (vn != wn) return wn;
  if (!vn && v != w) return v > w;
  return e < f;
}

/* ---- the warp's combining steps (identities with one lane) */

CUQ_HD void cuq_route_sync(void) {
#if defined(__CUDA_ARCH__)
  __syncwarp();
#endif
}

CUQ_HD float cuq_route_max(float v) {
#if defined(__CUDA_ARCH__)
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
#endif
  return v;
}

CUQ_HD double cuq_route_sum(double v) {
#if defined(__CUDA_ARCH__)
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
#endif
  return v;
}

/* The best (value, index) over the lanes' candidates (index -1: none). */
CUQ_HD void cuq_route_best(float *v, int *i) {
#if defined(__CUDA_ARCH__)
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, *v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, *i, o);
    if (oi >= 0 && (*i < 0 || cuq_ranks_before(ov, oi, *v, *i))) {
      *v = ov;
      *i = oi;
    }
  }
#else
  (void)v, (void)i;
#endif
}

/* The best (value, index) among v[0 .. n) ranked strictly after (prev_v,
 * prev_i) (prev_i < 0: no previous pick); index -1 when there is none. Every
 * lane gets the result. */
CUQ_HD void cuq_route_next(const float *v, uint64_t n, float prev_v, int prev_i, int lane,
                           float *out_v, int *out_i) {
  float bv = 0.0f;
  int bi = -1;
  for (uint64_t i = (uint64_t)lane; i < n; i += CUQ_ROUTE_LANES) {
    const float x = v[i];
    if (prev_i >= 0 && !cuq_ranks_before(prev_v, prev_i, x, (int)i)) continue;
    if (bi < 0 || cuq_ranks_before(x, (int)i, bv, bi)) {
      bv = x;
      bi = (int)i;
    }
  }
  cuq_route_best(&bv, &bi);
  *out_v = bv;
  *out_i = bi;
}

/* ---- one token */

typedef struct cuq_route_args {
  const float *logits; /* (n_tokens, n_experts) */
  const float *bias;   /* (n_experts), NULL when absent */
  int32_t *ids;        /* (n_tokens, k) */
  float *weights;      /* (n_tokens, k) */
  float *scratch;      /* (n_tokens, n_experts + n_groups): c, then the group scores */
  uint64_t n_tokens, n_experts, k;
  uint64_t n_groups; /* 0 when there is no group limit (the ABI's 0 or 1) */
  uint64_t topk_groups;
  int sigmoid, normalize, top2_sum;
  float scale;
} cuq_route_args;

/* The score p of expert e of logits l (mx, sum: the softmax's maximum and sum). */
CUQ_HD float cuq_route_p(const float *l, uint64_t e, int sigmoid, float mx, double sum) {
  if (sigmoid) return 1.0f / (1.0f + expf(-l[e]));
  return (float)((double)expf(l[e] - mx) / sum);
}

/* Routes token t; lane is this thread's lane (0 on the host). The ABI's shape
 * rules hold (k <= n_experts < 2^31, groups dividing n_experts, k at most
 * the kept groups' experts). */
CUQ_HD void cuq_route_token(const cuq_route_args *a, uint64_t t, int lane) {
  const uint64_t ne = a->n_experts, ng = a->n_groups, k = a->k;
  const float *l = a->logits + t * ne;
  float *c = a->scratch + t * (ne + ng), *gs = c + ne;
  float mx = 0.0f;
  double sum = 1.0;
  if (!a->sigmoid) {
    mx = -INFINITY;
    for (uint64_t e = (uint64_t)lane; e < ne; e += CUQ_ROUTE_LANES)
      mx = fmaxf(mx, l[e]); /* fmaxf ignores NaN */
    mx = cuq_route_max(mx);
    sum = 0.0;
    for (uint64_t e = (uint64_t)lane; e < ne; e += CUQ_ROUTE_LANES)
      sum += (double)expf(l[e] - mx);
    sum = cuq_route_sum(sum);
  }
  for (uint64_t e = (uint64_t)lane; e < ne; e += CUQ_ROUTE_LANES) {
    const float p = cuq_route_p(l, e, a->sigmoid, mx, sum);
    c[e] = a->bias != NULL ? p + a->bias[e] : p;
  }
  cuq_route_sync();
  if (ng > 1) {
    const uint64_t per = ne / ng;
    for (uint64_t g = (uint64_t)lane; g < ng; g += CUQ_ROUTE_LANES) {
      float v1 = 0.0f, v2 = 0.0f; /* the group's best and second best */
      int i1 = -1, i2 = -1;
      for (uint64_t e = g * per; e < (g + 1) * per; e++) {
        const float v = c[e];
        if (i1 < 0 || cuq_ranks_before(v, (int)e, v1, i1)) {
          v2 = v1, i2 = i1;
          v1 = v, i1 = (int)e;
        } else if (i2 < 0 || cuq_ranks_before(v, (int)e, v2, i2)) {
          v2 = v, i2 = (int)e;
        }
      }
      gs[g] = a->top2_sum ? v1 + v2 : v1;
    }
    cuq_route_sync();
    float last_v = 0.0f; /* the last group kept: the groups ranked after it are not */
    int last_g = -1;
    for (uint64_t i = 0; i < a->topk_groups; i++)
      cuq_route_next(gs, ng, last_v, last_g, lane, &last_v, &last_g);
    for (uint64_t e = (uint64_t)lane; e < ne; e += CUQ_ROUTE_LANES) {
      const int g = (int)(e / per);
      if (cuq_ranks_before(last_v, last_g, gs[g], g)) c[e] = 0.0f;
    }
    cuq_route_sync();
  }
  float prev_v = 0.0f;
  int prev_e = -1;
  double chosen = 0.0;
  for (uint64_t i = 0; i < k; i++) {
    float bv;
    int be;
    cuq_route_next(c, ne, prev_v, prev_e, lane, &bv, &be);
    /* be >= 0: k <= n_experts leaves a candidate at every step */
    const float p = cuq_route_p(l, (uint64_t)be, a->sigmoid, mx, sum);
    if (lane == 0) {
      a->ids[t * k + i] = be;
      a->weights[t * k + i] = p;
    }
    chosen += p;
    prev_v = bv;
    prev_e = be;
  }
  const double denom = a->normalize ? chosen + 1e-20 : 1.0;
  cuq_route_sync();
  for (uint64_t i = (uint64_t)lane; i < k; i += CUQ_ROUTE_LANES)
    a->weights[t * k + i] = (float)((double)a->weights[t * k + i] / denom * (double)a->scale);
  cuq_route_sync(); /* this token's scratch is done; the next token's is elsewhere */
}

#endif
