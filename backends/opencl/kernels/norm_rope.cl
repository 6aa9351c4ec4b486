/* norm_rope.cl: rmsnorm and rope. */

/* out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight[:]
 * One work-group per row; global (rows * WG), local (WG). out may equal x:
 * every read of x happens before the barriers of the reduction, and after it
 * each work-item rewrites only the elements it reads. */
__kernel void rmsnorm(__global const float *x, ulong x_off, __global const float *weight,
                      ulong weight_off, __global float *out, ulong out_off, ulong cols, float eps) {
  __local float red[WG];
  uint lid = get_local_id(0);
  ulong row = x_off + get_group_id(0) * cols;
  float ss = 0.0f;
  for (ulong c = lid; c < cols; c += WG) {
    float v = x[row + c];
    ss += v * v;
  }
  red[lid] = ss;
  reduce_sum(red, lid);
  float inv = 1.0f / sqrt(red[0] / (float)cols + eps);
  ulong orow = out_off + get_group_id(0) * cols;
  for (ulong c = lid; c < cols; c += WG) out[orow + c] = x[row + c] * inv * weight[weight_off + c];
}

/* In place: rotates the pairs (x0, x1) of x[t, h, :] by a = positions[t] * freqs[i].
 * NORMAL pairs are (2i, 2i + 1), NEOX pairs (i, i + rot_dim / 2).
 * global (rot_dim / 2, n_heads, n_tokens). */
__kernel void rope(__global float *x, ulong x_off, __global const int *positions, ulong pos_off,
                   __global const float *freqs, ulong freqs_off, ulong n_heads, ulong head_dim,
                   ulong rot_half, int neox) {
  ulong i = get_global_id(0), h = get_global_id(1), t = get_global_id(2);
  if (i >= rot_half) return;
  float a = (float)positions[pos_off + t] * freqs[freqs_off + i];
  float c = cos(a), s = sin(a);
  ulong base = x_off + (t * n_heads + h) * head_dim;
  ulong i0 = neox ? i : 2 * i;
  ulong i1 = neox ? i + rot_half : 2 * i + 1;
  float x0 = x[base + i0], x1 = x[base + i1];
  x[base + i0] = x0 * c - x1 * s;
  x[base + i1] = x0 * s + x1 * c;
}
