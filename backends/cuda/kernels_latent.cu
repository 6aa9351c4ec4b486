/* kernels_latent.cu: multi-head latent attention (device ABI 1.4,
 * include/qiao/device.h): latent_write and attention_latent over one latent
 * cache per layer, (n_slots, L + R) with L = latent_dim, R = rope_dim.
 *
 * attention_latent is kernels_attention.cu's kernel with a different row:
 * one block of 4 warps per (token, head, split); each warp walks its share
 * of the attended positions, finds the slot through the block table and
 * scores the cache row C[j] against the head's query,
 *   s_j = scale * (q_latent[t, h, :] . C[j, 0:L] + q_rope[t, h, :] . C[j, L:L+R]),
 * the two dot products over the lanes (the query and accumulator in
 * registers: LPL = 16 latent values per lane for L <= 512, 32 for L <= 1024;
 * R <= 128: 4 per lane), then keeps an online softmax (running max
 * m, sum l, and the weighted sum of C[j, 0:L]) in F32. Warps are merged in
 * shared memory; flash-decoding splits are merged by kernels_attention.cu's
 * merge kernel (the same (m, l, acc) partials, with head_dim = L).
 *
 * Which positions a token attends to and where their rows are is
 * cuda_paged.h's (tested on the host against the CPU backend). Only attended
 * positions are read: slots before the window, after p, or of blocks not in
 * the table never enter a product. Bad token_seq / token_pos /
 * block_table / slots values raise the op's flag and that work is skipped. */
#include <math.h>
#include <string.h>

#include "cuda_paged.h"
#include "kernels_common.cuh"

#define WARPS 4
#define ROPE_PER_LANE (CUQ_MAX_LATENT_ROPE_DIM / 32)
#define THREADS 256

template <bool F16> __device__ __forceinline__ float cache_at(const void *cache, uint64_t i) {
  if (F16) return __half2float(((const __half *)cache)[i]);
  return ((const float *)cache)[i];
}

/* ---- latent_write: cache[slots[t], :] = (latent[t, :], rope[t, :]), F16
 * rounded to nearest even (__float2half_rn: IEEE, overflow to infinity). */

template <bool F16>
__global__ void latent_write_kernel(const float *latent, const float *rope, const int32_t *slots,
                                    void *cache, uint64_t n_tokens, uint64_t L, uint64_t R,
                                    uint64_t n_slots, int *flags) {
  const uint64_t row = L + R, total = n_tokens * row;
  for (uint64_t e = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; e < total;
       e += (uint64_t)gridDim.x * blockDim.x) {
    const uint64_t t = e / row, i = e % row;
    const int32_t slot = slots[t];
    if (slot < 0 || (uint64_t)slot >= n_slots) {
      if (i == 0) cuq_flag(flags, QIAO_DEV_OP_LATENT_WRITE);
      continue;
    }
    const float v = i < L ? latent[t * L + i] : rope[t * R + (i - L)];
    const uint64_t dst = (uint64_t)slot * row + i;
    if (F16)
      ((__half *)cache)[dst] = __float2half_rn(v);
    else
      ((float *)cache)[dst] = v;
  }
}

extern "C" cuq_status cuq_latent_write(cudaStream_t s, int cache_f16, const float *latent,
                                       const float *rope, const int32_t *slots, void *cache,
                                       uint64_t n_tokens, uint64_t latent_dim, uint64_t rope_dim,
                                       uint64_t n_slots, int *flags) {
  const unsigned g = cuq_grid(n_tokens * (latent_dim + rope_dim), THREADS);
  if (cache_f16)
    latent_write_kernel<true><<<g, THREADS, 0, s>>>(latent, rope, slots, cache, n_tokens,
                                                    latent_dim, rope_dim, n_slots, flags);
  else
    latent_write_kernel<false><<<g, THREADS, 0, s>>>(latent, rope, slots, cache, n_tokens,
                                                     latent_dim, rope_dim, n_slots, flags);
  return cuq_launched("cudaLaunchKernel(latent_write)");
}

/* ---- attention_latent */

template <bool F16, int LPL>
__global__ void __launch_bounds__(32 * WARPS)
    attention_latent_kernel(cuq_latent_dims d, const float *q_latent, const float *q_rope,
                            const void *cache, const int32_t *block_table, const int32_t *token_seq,
                            const int32_t *token_pos, float *out, float *partial, int *flags) {
  __shared__ float s_m[WARPS], s_l[WARPS];
  __shared__ float s_acc[WARPS][32 * LPL];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint64_t L = d.latent_dim, R = d.rope_dim, row_len = L + R;
  const uint64_t units = d.n_tokens * d.n_heads * d.n_split;
  for (uint64_t unit = blockIdx.x; unit < units; unit += gridDim.x) {
    const uint64_t sp = unit % d.n_split, th = unit / d.n_split; /* th = t * n_heads + h */
    const uint64_t t = th / d.n_heads, h = th % d.n_heads;
    const int32_t seq = token_seq[t];
    uint64_t start, end; /* inclusive */
    const bool valid = cuq_paged_span(seq, token_pos[t], d.n_seqs, d.max_blocks_per_seq,
                                      d.block_size, d.window, d.n_split, d.chunk, sp, &start, &end);
    if (!valid && threadIdx.x == 0 && h == 0 && sp == 0)
      cuq_flag(flags, QIAO_DEV_OP_ATTENTION_LATENT);
    const bool empty = start > end;

    float ql[LPL], qr[ROPE_PER_LANE], acc[LPL];
#pragma unroll
    for (int i = 0; i < LPL; i++) {
      const uint64_t dd = lane + 32 * i;
      ql[i] = dd < L ? q_latent[th * L + dd] : 0.0f;
      acc[i] = 0.0f;
    }
#pragma unroll
    for (int i = 0; i < ROPE_PER_LANE; i++) {
      const uint64_t dd = lane + 32 * i;
      qr[i] = dd < R ? q_rope[th * R + dd] : 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (uint64_t j = start + warp; !empty && j <= end; j += WARPS) {
      uint64_t slot;
      if (!cuq_paged_slot(block_table, seq, d.max_blocks_per_seq, d.block_size, d.n_blocks, j,
                          &slot)) { /* lane-uniform */
        if (lane == 0) cuq_flag(flags, QIAO_DEV_OP_ATTENTION_LATENT);
        continue;
      }
      const uint64_t base = slot * row_len;
      float dot_lat = 0.0f, dot_rope = 0.0f;
#pragma unroll
      for (int i = 0; i < LPL; i++) {
        const uint64_t dd = lane + 32 * i;
        if (dd < L) dot_lat = fmaf(ql[i], cache_at<F16>(cache, base + dd), dot_lat);
      }
#pragma unroll
      for (int i = 0; i < ROPE_PER_LANE; i++) {
        const uint64_t dd = lane + 32 * i;
        if (dd < R) dot_rope = fmaf(qr[i], cache_at<F16>(cache, base + L + dd), dot_rope);
      }
      const float score = d.scale * (cuq_warp_sum(dot_lat) + cuq_warp_sum(dot_rope));
      const float m_new = fmaxf(m, score);
      if (m_new == -INFINITY) continue; /* exp(-inf) weights: nothing to add yet */
      const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
      const float pj = expf(score - m_new);
      l = l * corr + pj;
#pragma unroll
      for (int i = 0; i < LPL; i++) {
        const uint64_t dd = lane + 32 * i;
        if (dd < L) acc[i] = acc[i] * corr + pj * cache_at<F16>(cache, base + dd);
      }
      m = m_new;
    }

    /* Merge the warps. */
    if (lane == 0) {
      s_m[warp] = m;
      s_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < LPL; i++) {
      const uint64_t dd = lane + 32 * i;
      if (dd < L) s_acc[warp][dd] = acc[i];
    }
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < WARPS; w++)
      if (s_l[w] > 0.0f) M = fmaxf(M, s_m[w]);
    float Lsum = 0.0f, f[WARPS];
    for (int w = 0; w < WARPS; w++) {
      f[w] = s_l[w] > 0.0f ? expf(s_m[w] - M) : 0.0f;
      Lsum += s_l[w] * f[w];
    }
    for (uint64_t dd = threadIdx.x; dd < L; dd += blockDim.x) {
      float a = 0.0f;
      for (int w = 0; w < WARPS; w++)
        if (f[w] > 0.0f) a += s_acc[w][dd] * f[w];
      if (d.n_split == 1) {
        if (valid) out[th * L + dd] = Lsum > 0.0f ? a / Lsum : 0.0f;
      } else {
        partial[unit * (L + 2) + dd] = a;
      }
    }
    if (d.n_split > 1 && threadIdx.x == 0) {
      partial[unit * (L + 2) + L] = M;
      partial[unit * (L + 2) + L + 1] = Lsum;
    }
    __syncthreads(); /* s_* are rewritten by the next unit */
  }
}

extern "C" uint64_t cuq_attention_latent_scratch(const cuq_latent_dims *d) {
  if (d->n_split <= 1) return 0;
  return d->n_tokens * d->n_heads * d->n_split * (d->latent_dim + 2) * sizeof(float);
}

extern "C" cuq_status cuq_attention_latent(cudaStream_t s, int cache_f16, const cuq_latent_dims *d,
                                           const float *q_latent, const float *q_rope,
                                           const void *cache, const int32_t *block_table,
                                           const int32_t *token_seq, const int32_t *token_pos,
                                           float *out, void *scratch, int *flags) {
  const unsigned g = cuq_grid(d->n_tokens * d->n_heads * d->n_split, 1);
  float *partial = (float *)scratch;
  /* 16 latent values per lane up to L = 512 (DeepSeek-V2/V3), 32 beyond. */
#define LAUNCH_LATENT(F16, LPL)                                                                    \
  attention_latent_kernel<F16, LPL><<<g, 32 * WARPS, 0, s>>>(                                      \
      *d, q_latent, q_rope, cache, block_table, token_seq, token_pos, out, partial, flags)
  const bool wide = d->latent_dim > 512;
  if (cache_f16 && !wide)
    LAUNCH_LATENT(true, 16);
  else if (cache_f16)
    LAUNCH_LATENT(true, 32);
  else if (!wide)
    LAUNCH_LATENT(false, 16);
  else
    LAUNCH_LATENT(false, 32);
#undef LAUNCH_LATENT
  cuq_status st = cuq_launched("cudaLaunchKernel(attention_latent)");
  if (st.call != NULL || d->n_split <= 1) return st;
  /* The partials have the layout of attention's with head_dim = L. */
  cuq_attention_dims md;
  memset(&md, 0, sizeof(md));
  md.n_tokens = d->n_tokens;
  md.n_heads = d->n_heads;
  md.head_dim = d->latent_dim;
  md.n_split = d->n_split;
  return cuq_attention_merge(s, &md, partial, out);
}
