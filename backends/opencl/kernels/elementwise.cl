/* elementwise.cl: swiglu, add and moe_combine; one work-item per output element.
 * Element-wise kernels run in work-groups of (WG, 1, 1) with the first global
 * size rounded up to a multiple of WG: each checks its index first. */

/* out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)); out may equal gate or up. */
__kernel void swiglu(__global const float *gate, ulong gate_off, __global const float *up,
                     ulong up_off, __global float *out, ulong out_off, ulong n) {
  ulong i = get_global_id(0);
  if (i >= n) return;
  float g = gate[gate_off + i];
  out[out_off + i] = g / (1.0f + exp(-g)) * up[up_off + i];
}

/* out[i] = a[i] + b[i]; out may equal a or b. */
__kernel void add(__global const float *a, ulong a_off, __global const float *b, ulong b_off,
                  __global float *out, ulong out_off, ulong n) {
  ulong i = get_global_id(0);
  if (i >= n) return;
  out[out_off + i] = a[a_off + i] + b[b_off + i];
}

/* out[t, d] = (accumulate ? out[t, d] : 0) + sum_i weights[t, i] * x[t, i, d];
 * global (dim, n_tokens). */
__kernel void moe_combine(__global const float *x, ulong x_off, __global const float *weights,
                          ulong w_off, __global float *out, ulong out_off, ulong k, ulong dim,
                          int accumulate) {
  ulong d = get_global_id(0), t = get_global_id(1);
  if (d >= dim) return;
  float sum = 0.0f;
  for (ulong i = 0; i < k; i++) sum += weights[w_off + t * k + i] * x[x_off + (t * k + i) * dim + d];
  ulong o = out_off + t * dim + d;
  out[o] = accumulate ? out[o] + sum : sum;
}
