/* select.cl: argmax and moe_gate. */

/* out[r] = the smallest index of the largest value of x[r, :]; NaN never
 * wins, and a row of NaN only gives 0.
 * One work-group per row; global (rows * WG), local (WG). Each work-item
 * scans its strided share in increasing order (keeping the first of equal
 * values), then the group reduces (value, index) pairs. */
__kernel void argmax(__global const float *x, ulong x_off, __global int *out, ulong out_off,
                     ulong cols) {
  __local float best_v[WG];
  __local int best_i[WG];
  uint lid = get_local_id(0);
  ulong row = x_off + get_group_id(0) * cols;
  float bv = -INFINITY;
  int bi = -1;
  for (ulong c = lid; c < cols; c += WG) {
    float v = x[row + c];
    if (!isnan(v) && (bi < 0 || v > bv)) {
      bv = v;
      bi = (int)c;
    }
  }
  best_v[lid] = bv;
  best_i[lid] = bi;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s) {
      float ov = best_v[lid + s];
      int oi = best_i[lid + s];
      if (oi >= 0 &&
          (best_i[lid] < 0 || ov > best_v[lid] || (ov == best_v[lid] && oi < best_i[lid]))) {
        best_v[lid] = ov;
        best_i[lid] = oi;
      }
    }
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid == 0) out[out_off + get_group_id(0)] = max(best_i[0], 0);
}

/* Routing for token t (one work-item each; global (n_tokens)):
 * p = softmax(logits[t, :]); ids[t, :] = the k experts of largest p in
 * descending order, ties to the smaller index; weights[t, i] = p[ids[t, i]],
 * renormalized to sum 1 when normalize != 0. Experts are ranked by logit
 * (the same order as p, without the rounding of exp). The i-th pick is the
 * best expert that comes strictly after the (i-1)-th in the order (logit
 * descending, index ascending), so no scratch memory is needed. */
__kernel void moe_gate(__global const float *logits, ulong logits_off, __global int *ids,
                       ulong ids_off, __global float *weights, ulong w_off, ulong n_tokens,
                       ulong n_experts, ulong k, int normalize) {
  ulong t = get_global_id(0);
  if (t >= n_tokens) return;
  __global const float *row = logits + logits_off + t * n_experts;
  float mx = -INFINITY;
  for (ulong e = 0; e < n_experts; e++) mx = fmax(mx, row[e]);
  float sum = 0.0f;
  for (ulong e = 0; e < n_experts; e++) sum += exp(row[e] - mx);
  float prev_l = INFINITY, picked = 0.0f;
  long prev_e = -1;
  for (ulong i = 0; i < k; i++) {
    long best = -1;
    float bl = 0.0f;
    for (ulong e = 0; e < n_experts; e++) {
      float le = row[e];
      int after_prev = le < prev_l || (le == prev_l && (long)e > prev_e);
      if (after_prev && (best < 0 || le > bl)) {
        best = (long)e;
        bl = le;
      }
    }
    if (best < 0) best = 0; /* only with NaN logits: keep ids in range */
    float bp = exp(row[best] - mx) / sum;
    ids[ids_off + t * k + i] = (int)best;
    weights[w_off + t * k + i] = bp;
    picked += bp;
    prev_l = row[best];
    prev_e = best;
  }
  if (normalize && picked > 0.0f)
    for (ulong i = 0; i < k; i++) weights[w_off + t * k + i] /= picked;
}

/* ---- (ABI 1.4) moe_route: DeepSeek-V2/V3 routing (device.h,
 * qiao_dev_moe_route_args). One work-item per token; global (n_tokens).
 *
 * No scratch memory: a score p[e] is recomputed where it is needed, by the
 * same expression each time, so every evaluation gives the same bits (and so
 * exact ties stay ties). Selections take the i-th best element as the best
 * one strictly after the (i-1)-th in the order (value descending, index
 * ascending), as moe_gate does. The kept groups are those up to and including
 * the topk_groups-th in that order, so one (score, index) pair describes them. */

/* p[e] for the scoring function: softmax (mx, sum: the row's maximum and
 * sum of exp(l - mx)) or sigmoid. */
float route_p(int sigmoid, __global const float *row, ulong e, float mx, float sum) {
  return sigmoid ? 1.0f / (1.0f + exp(-row[e])) : exp(row[e] - mx) / sum;
}

/* c[e] = p[e] + bias[e], or p[e] without a bias. */
float route_c(int sigmoid, __global const float *row, __global const float *bias, int has_bias,
              ulong e, float mx, float sum) {
  float p = route_p(sigmoid, row, e, mx, sum);
  return has_bias ? p + bias[e] : p;
}

/* A group's score over its experts [g0, g0 + size): the largest c (GROUP_MAX)
 * or the sum of the two largest (GROUP_TOP2_SUM). */
float route_group_score(int sigmoid, int top2, __global const float *row,
                        __global const float *bias, int has_bias, ulong g0, ulong size, float mx,
                        float sum) {
  float b1 = -INFINITY, b2 = -INFINITY;
  for (ulong e = g0; e < g0 + size; e++) {
    float c = route_c(sigmoid, row, bias, has_bias, e, mx, sum);
    if (c > b1) {
      b2 = b1;
      b1 = c;
    } else if (c > b2) {
      b2 = c;
    }
  }
  return top2 ? b1 + b2 : b1;
}

/* Whether (v, i) comes strictly after (pv, pi) in the order value descending,
 * index ascending. */
int after(float v, long i, float pv, long pi) { return v < pv || (v == pv && i > pi); }

__kernel void moe_route(__global const float *logits, ulong logits_off,
                        __global const float *bias_buf, ulong bias_off, int has_bias,
                        __global int *ids, ulong ids_off, __global float *weights, ulong w_off,
                        ulong n_tokens, ulong n_experts, ulong k, int sigmoid, int normalize,
                        ulong n_groups, ulong topk_groups, int top2, float scale) {
  ulong t = get_global_id(0);
  if (t >= n_tokens) return;
  __global const float *row = logits + logits_off + t * n_experts;
  __global const float *bias = bias_buf + bias_off;
  float mx = -INFINITY, sum = 0.0f;
  if (!sigmoid) {
    for (ulong e = 0; e < n_experts; e++) mx = fmax(mx, row[e]);
    for (ulong e = 0; e < n_experts; e++) sum += exp(row[e] - mx);
  }

  /* The last kept group (last_s, last_g); every group when there is no limit. */
  ulong gsize = n_groups > 1 ? n_experts / n_groups : n_experts;
  ulong groups = n_groups > 1 ? n_groups : 1;
  float last_s = -INFINITY;
  long last_g = (long)groups - 1;
  if (n_groups > 1) {
    last_g = -1;
    for (ulong i = 0; i < topk_groups; i++) {
      long best = -1;
      float bs = 0.0f;
      for (ulong g = 0; g < groups; g++) {
        float gs = route_group_score(sigmoid, top2, row, bias, has_bias, g * gsize, gsize, mx, sum);
        if ((i == 0 || after(gs, (long)g, last_s, last_g)) && (best < 0 || gs > bs)) {
          best = (long)g;
          bs = gs;
        }
      }
      if (best < 0) break; /* only with NaN scores: keep what was found */
      last_s = bs;
      last_g = best;
    }
  }

  /* ids: the k experts of largest masked c, in descending order. */
  float prev_c = 0.0f, picked = 0.0f;
  long prev_e = -1;
  for (ulong i = 0; i < k; i++) {
    long best = -1;
    float bc = 0.0f;
    for (ulong g = 0; g < groups; g++) {
      int kept = 1;
      if (n_groups > 1) {
        float gs = route_group_score(sigmoid, top2, row, bias, has_bias, g * gsize, gsize, mx, sum);
        kept = last_g >= 0 && (gs > last_s || (gs == last_s && (long)g <= last_g));
      }
      for (ulong e = g * gsize; e < (g + 1) * gsize; e++) {
        float c = kept ? route_c(sigmoid, row, bias, has_bias, e, mx, sum) : 0.0f;
        if ((i == 0 || after(c, (long)e, prev_c, prev_e)) && (best < 0 || c > bc)) {
          best = (long)e;
          bc = c;
        }
      }
    }
    if (best < 0) best = 0; /* only with NaN scores: keep ids in range */
    float p = route_p(sigmoid, row, (ulong)best, mx, sum);
    ids[ids_off + t * k + i] = (int)best;
    weights[w_off + t * k + i] = p;
    picked += p;
    prev_c = bc;
    prev_e = best;
  }
  for (ulong i = 0; i < k; i++) {
    float w = weights[w_off + t * k + i];
    if (normalize) w = w / (picked + 1e-20f);
    weights[w_off + t * k + i] = w * scale;
  }
}
