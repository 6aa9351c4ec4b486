/* linear.cl: embed, matmul and matmul_experts for every weight dtype. Each
 * kernel family is one body function taking the dtype as a compile-time
 * constant argument, instantiated per dtype so the compiler specializes it. */

/* Adds this work-item's share of x[t, :] . w_row to acc[t] for t < nt (the
 * rows of x are k floats apart; the weight row starts at byte `row` of w).
 * Float dtypes step one element at a time so that neighbouring work-items
 * read neighbouring weights; quantized dtypes step one 8-element quarter of a
 * block at a time, computing on the blocks directly (never expanded). */
void row_dot(int dtype, __global const uchar *w, ulong row, __global const float *x, ulong k,
             uint nt, float *acc) {
  uint lid = get_local_id(0);
  __global const uchar *r = w + row;
  if (dtype == DT_Q8_0 || dtype == DT_Q4_0) {
    ulong units = k / 8;
    for (ulong u = lid; u < units; u += WG) {
      float d;
      float8 q;
      if (dtype == DT_Q8_0) {
        __global const uchar *blk = r + (u >> 2) * 34;
        d = half_at(blk);
        q = convert_float8(vload8(0, (__global const char *)(blk + 2 + (u & 3) * 8)));
      } else {
        /* quarter 0: low nibbles of bytes 0-7, 1: low of 8-15, 2: high of 0-7, 3: high of 8-15 */
        __global const uchar *blk = r + (u >> 2) * 18;
        d = half_at(blk);
        uchar8 b = vload8(0, blk + 2 + (u & 1) * 8);
        uchar8 nib;
        if (u & 2)
          nib = b >> (uchar8)4;
        else
          nib = b & (uchar8)15;
        q = convert_float8(convert_int8(nib) - 8);
      }
      for (uint t = 0; t < nt; t++) {
        float8 xv = vload8(0, x + t * k + u * 8);
        acc[t] += d * (dot(q.lo, xv.lo) + dot(q.hi, xv.hi));
      }
    }
    return;
  }
  if (dtype == DT_IQ4_NL || dtype == DT_IQ4_XS) {
    /* (ABI 1.5) the same quarters as Q4_0, each nibble looked up in the
     * table of levels; an IQ4_XS quarter takes its sub-block's scale */
    ulong units = k / 8;
    for (ulong u = lid; u < units; u += WG) {
      __global const uchar *qs;
      float d;
      if (dtype == DT_IQ4_NL) {
        __global const uchar *blk = r + (u >> 2) * 18;
        d = half_at(blk);
        qs = blk + 2;
      } else {
        __global const uchar *blk = r + (u >> 5) * 136;
        uint s = (uint)(u >> 2) & 7, sh = (uint)blk[2] | (uint)blk[3] << 8;
        int ls = (int)(((blk[4 + s / 2] >> (4 * (s % 2))) & 15) | (((sh >> (2 * s)) & 3) << 4));
        d = half_at(blk) * (float)(ls - 32);
        qs = blk + 8 + 16 * s;
      }
      uchar8 b = vload8(0, qs + (u & 1) * 8);
      uchar8 nib = (u & 2) ? b >> (uchar8)4 : b & (uchar8)15;
      float8 q = (float8)(iq4_levels[nib.s0], iq4_levels[nib.s1], iq4_levels[nib.s2],
                          iq4_levels[nib.s3], iq4_levels[nib.s4], iq4_levels[nib.s5],
                          iq4_levels[nib.s6], iq4_levels[nib.s7]);
      for (uint t = 0; t < nt; t++) {
        float8 xv = vload8(0, x + t * k + u * 8);
        acc[t] += d * (dot(q.lo, xv.lo) + dot(q.hi, xv.hi));
      }
    }
    return;
  }
  for (ulong c = lid; c < k; c += WG) {
    float wv = load_weight(dtype, w, row, c);
    for (uint t = 0; t < nt; t++) acc[t] += wv * x[t * k + c];
  }
}

/* ---- embed: out[t, j] = dequantize(table[ids[t], j]); global (dim, n_tokens) */
void embed_body(int dtype, __global const uchar *w, ulong w_off, ulong row_bytes,
                __global const int *ids, ulong ids_off, __global float *out, ulong out_off,
                ulong vocab, ulong dim, __global int *err) {
  ulong j = get_global_id(0), t = get_global_id(1);
  if (j >= dim) return;
  int id = ids[ids_off + t];
  if (id < 0 || (ulong)id >= vocab) {
    err[OP_EMBED] = 1;
    id = id < 0 ? 0 : (int)(vocab - 1);
  }
  out[out_off + t * dim + j] = load_weight(dtype, w + w_off, (ulong)id * row_bytes, j);
}

#define EMBED_KERNEL(SUF, DT)                                                                      \
  __kernel void embed_##SUF(__global const uchar *w, ulong w_off, ulong row_bytes,                 \
                            __global const int *ids, ulong ids_off, __global float *out,           \
                            ulong out_off, ulong vocab, ulong dim, __global int *err) {            \
    embed_body(DT, w, w_off, row_bytes, ids, ids_off, out, out_off, vocab, dim, err);              \
  }
EMBED_KERNEL(f32, DT_F32)
EMBED_KERNEL(f16, DT_F16)
EMBED_KERNEL(bf16, DT_BF16)
EMBED_KERNEL(q8_0, DT_Q8_0)
EMBED_KERNEL(q4_0, DT_Q4_0)
EMBED_KERNEL(q4_k, DT_Q4_K)
EMBED_KERNEL(q5_k, DT_Q5_K)
EMBED_KERNEL(q6_k, DT_Q6_K)
EMBED_KERNEL(q2_k, DT_Q2_K)
EMBED_KERNEL(q3_k, DT_Q3_K)
EMBED_KERNEL(q4_1, DT_Q4_1)
EMBED_KERNEL(q5_0, DT_Q5_0)
EMBED_KERNEL(q5_1, DT_Q5_1)
EMBED_KERNEL(f8_e4m3_b128, DT_F8_E4M3_B128)
EMBED_KERNEL(iq4_nl, DT_IQ4_NL)
EMBED_KERNEL(iq4_xs, DT_IQ4_XS)

/* ---- matmul: out[i, j] = (accumulate ? out[i, j] : 0) + bias[j] + x[i, :] . w[j, :]
 * Work-group (j, i0 / NT) computes one weight row against NT tokens, so a row
 * is read once per NT tokens; global (m * WG, ceil(n / NT)), local (WG, 1). */
#define MATMUL_PARAMS                                                                              \
  __global const float *x, ulong x_off, __global const uchar *w, ulong w_off, ulong row_bytes,     \
      __global const float *bias, ulong bias_off, int has_bias, __global float *out,               \
      ulong out_off, ulong n, ulong k, ulong m, int accumulate
#define MATMUL_ARGS                                                                                \
  x, x_off, w, w_off, row_bytes, bias, bias_off, has_bias, out, out_off, n, k, m, accumulate

void matmul_body(int dtype, MATMUL_PARAMS, __local float *red) {
  uint lid = get_local_id(0);
  ulong j = get_group_id(0), i0 = get_group_id(1) * NT;
  uint nt = (uint)min((ulong)NT, n - i0);
  float acc[NT] = {0.0f, 0.0f, 0.0f, 0.0f};
  row_dot(dtype, w + w_off, j * row_bytes, x + x_off + i0 * k, k, nt, acc);
  for (uint t = 0; t < NT; t++) red[t * WG + lid] = acc[t];
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint s = WG / 2; s > 0; s >>= 1) {
    if (lid < s)
      for (uint t = 0; t < NT; t++) red[t * WG + lid] += red[t * WG + lid + s];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (lid < nt) {
    ulong o = out_off + (i0 + lid) * m + j;
    float v = accumulate ? out[o] : 0.0f;
    if (has_bias) v += bias[bias_off + j];
    out[o] = v + red[lid * WG];
  }
}

#define MATMUL_KERNEL(SUF, DT)                                                                     \
  __kernel void matmul_##SUF(MATMUL_PARAMS) {                                                      \
    __local float red[NT * WG];                                                                    \
    matmul_body(DT, MATMUL_ARGS, red);                                                             \
  }
MATMUL_KERNEL(f32, DT_F32)
MATMUL_KERNEL(f16, DT_F16)
MATMUL_KERNEL(bf16, DT_BF16)
MATMUL_KERNEL(q8_0, DT_Q8_0)
MATMUL_KERNEL(q4_0, DT_Q4_0)
MATMUL_KERNEL(q4_k, DT_Q4_K)
MATMUL_KERNEL(q5_k, DT_Q5_K)
MATMUL_KERNEL(q6_k, DT_Q6_K)
MATMUL_KERNEL(q2_k, DT_Q2_K)
MATMUL_KERNEL(q3_k, DT_Q3_K)
MATMUL_KERNEL(q4_1, DT_Q4_1)
MATMUL_KERNEL(q5_0, DT_Q5_0)
MATMUL_KERNEL(q5_1, DT_Q5_1)
MATMUL_KERNEL(f8_e4m3_b128, DT_F8_E4M3_B128)
MATMUL_KERNEL(iq4_nl, DT_IQ4_NL)
MATMUL_KERNEL(iq4_xs, DT_IQ4_XS)

/* ---- matmul_experts: out[t, i, r] = w[ids[t, i]][r, :] . x_row
 * Work-group (r, slot) with slot = t * k_sel + i; global (out_dim * WG, n_tokens * k_sel). */
#define EXPERTS_PARAMS                                                                             \
  __global const float *x, ulong x_off, __global const uchar *w, ulong w_off, ulong row_bytes,     \
      ulong expert_bytes, __global const int *ids, ulong ids_off, __global float *out,             \
      ulong out_off, ulong k_sel, ulong n_experts, ulong in_dim, ulong out_dim, int x_per_slot,    \
      __global int *err
#define EXPERTS_ARGS                                                                               \
  x, x_off, w, w_off, row_bytes, expert_bytes, ids, ids_off, out, out_off, k_sel, n_experts,       \
      in_dim, out_dim, x_per_slot, err

void matmul_experts_body(int dtype, EXPERTS_PARAMS, __local float *red) {
  uint lid = get_local_id(0);
  ulong r = get_group_id(0), slot = get_group_id(1);
  int e = ids[ids_off + slot];
  if (e < 0 || (ulong)e >= n_experts) {
    if (lid == 0) err[OP_MATMUL_EXPERTS] = 1;
    e = e < 0 ? 0 : (int)(n_experts - 1);
  }
  ulong xrow = x_per_slot ? slot : slot / k_sel;
  float acc[NT] = {0.0f, 0.0f, 0.0f, 0.0f};
  row_dot(dtype, w + w_off + (ulong)e * expert_bytes, r * row_bytes, x + x_off + xrow * in_dim,
          in_dim, 1, acc);
  red[lid] = acc[0];
  reduce_sum(red, lid);
  if (lid == 0) out[out_off + slot * out_dim + r] = red[0];
}

#define EXPERTS_KERNEL(SUF, DT)                                                                    \
  __kernel void matmul_experts_##SUF(EXPERTS_PARAMS) {                                             \
    __local float red[WG];                                                                         \
    matmul_experts_body(DT, EXPERTS_ARGS, red);                                                    \
  }
EXPERTS_KERNEL(f32, DT_F32)
EXPERTS_KERNEL(f16, DT_F16)
EXPERTS_KERNEL(bf16, DT_BF16)
EXPERTS_KERNEL(q8_0, DT_Q8_0)
EXPERTS_KERNEL(q4_0, DT_Q4_0)
EXPERTS_KERNEL(q4_k, DT_Q4_K)
EXPERTS_KERNEL(q5_k, DT_Q5_K)
EXPERTS_KERNEL(q6_k, DT_Q6_K)
EXPERTS_KERNEL(q2_k, DT_Q2_K)
EXPERTS_KERNEL(q3_k, DT_Q3_K)
EXPERTS_KERNEL(q4_1, DT_Q4_1)
EXPERTS_KERNEL(q5_0, DT_Q5_0)
EXPERTS_KERNEL(q5_1, DT_Q5_1)
EXPERTS_KERNEL(f8_e4m3_b128, DT_F8_E4M3_B128)
EXPERTS_KERNEL(iq4_nl, DT_IQ4_NL)
EXPERTS_KERNEL(iq4_xs, DT_IQ4_XS)
