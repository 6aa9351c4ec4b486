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
