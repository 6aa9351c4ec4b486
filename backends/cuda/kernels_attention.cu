/* kernels_attention.cu: causal grouped-query attention over the paged KV
 * cache, for prefill and decode in one kernel.
 *
 * One block of 4 warps per (token, head, split). Each warp walks its share of
 * the attended positions (j = start + warp, + 4, ...): it finds the slot
 * through the block table, computes the score with the head's dimensions
 * spread over the lanes (head_dim <= 256: up to 8 per lane, in registers) and
 * a warp-shuffle sum, and keeps an online softmax (running max m, sum l, and
 * the weighted sum of V) in F32. The 4 warps are merged in shared memory.
 *
 * Flash-decoding: when (tokens x heads) is too small to fill the GPU, each
 * token's positions [lo, p] are cut into n_split chunks of `chunk` positions
 * (split s: [lo + s*chunk, lo + (s+1)*chunk)); each split writes (m, l, acc)
 * to scratch and attention_merge_kernel combines them.
 *
 * Which positions a token attends to and their slots are cuda_paged.h's
 * (shared with attention_latent, tested on the host by cuda_paged). Only
 * attended positions are read: slots before the window, after p, or of
 * blocks not in the table never enter a product (they may hold NaN). Bad
 * token_seq / token_pos / block_table values raise the attention flag and
 * the position (or the token) is skipped. */
#include <math.h>

#include "cuda_paged.h"
#include "kernels_common.cuh"

#define WARPS 4
#define PER_LANE (CUQ_MAX_HEAD_DIM / 32)

template <bool F16> __device__ __forceinline__ float cache_at(const void *cache, uint64_t i) {
  if (F16) return __half2float(((const __half *)cache)[i]);
  return ((const float *)cache)[i];
}

template <bool F16>
__global__ void __launch_bounds__(32 * WARPS)
    attention_kernel(cuq_attention_dims d, const float *q, const void *k_cache, const void *v_cache,
                     const int32_t *block_table, const int32_t *token_seq, const int32_t *token_pos,
                     float *out, float *partial, int *flags) {
  __shared__ float s_m[WARPS], s_l[WARPS];
  __shared__ float s_acc[WARPS][CUQ_MAX_HEAD_DIM];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const uint64_t D = d.head_dim, group = d.n_heads / d.n_kv_heads;
  const uint64_t units = d.n_tokens * d.n_heads * d.n_split;
  for (uint64_t unit = blockIdx.x; unit < units; unit += gridDim.x) {
    const uint64_t sp = unit % d.n_split, th = unit / d.n_split;
    const uint64_t t = th / d.n_heads, h = th % d.n_heads, g = h / group;
    const int32_t seq = token_seq[t];
    uint64_t start, end; /* inclusive */
    const bool valid = cuq_paged_span(seq, token_pos[t], d.n_seqs, d.max_blocks_per_seq,
                                      d.block_size, d.window, d.n_split, d.chunk, sp, &start, &end);
    if (!valid && threadIdx.x == 0 && h == 0 && sp == 0) cuq_flag(flags, QIAO_DEV_OP_ATTENTION);
    const bool empty = start > end;

    float qv[PER_LANE], acc[PER_LANE];
    const float *qrow = q + th * D;
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
      const uint64_t dd = lane + 32 * i;
      qv[i] = dd < D ? qrow[dd] : 0.0f;
      acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (uint64_t j = start + warp; !empty && j <= end; j += WARPS) {
      uint64_t slot;
      if (!cuq_paged_slot(block_table, seq, d.max_blocks_per_seq, d.block_size, d.n_blocks, j,
                          &slot)) { /* lane-uniform */
        if (lane == 0) cuq_flag(flags, QIAO_DEV_OP_ATTENTION);
        continue;
      }
      const uint64_t row = slot * d.n_kv_heads + g;
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < PER_LANE; i++) {
        const uint64_t dd = lane + 32 * i;
        if (dd < D) dot = fmaf(qv[i], cache_at<F16>(k_cache, row * D + dd), dot);
      }
      const float score = d.scale * cuq_warp_sum(dot);
      const float m_new = fmaxf(m, score);
      if (m_new == -INFINITY) continue; /* exp(-inf) weights: nothing to add yet */
      const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
      const float pj = expf(score - m_new);
      l = l * corr + pj;
#pragma unroll
      for (int i = 0; i < PER_LANE; i++) {
        const uint64_t dd = lane + 32 * i;
        if (dd < D) acc[i] = acc[i] * corr + pj * cache_at<F16>(v_cache, row * D + dd);
      }
      m = m_new;
    }

    /* Merge the warps. */
    if (lane == 0) {
      s_m[warp] = m;
      s_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < PER_LANE; i++) {
      const uint64_t dd = lane + 32 * i;
      if (dd < D) s_acc[warp][dd] = acc[i];
    }
    __syncthreads();
    float M = -INFINITY;
    for (int w = 0; w < WARPS; w++)
      if (s_l[w] > 0.0f) M = fmaxf(M, s_m[w]);
    float L = 0.0f, f[WARPS];
    for (int w = 0; w < WARPS; w++) {
      f[w] = s_l[w] > 0.0f ? expf(s_m[w] - M) : 0.0f;
      L += s_l[w] * f[w];
    }
    for (uint64_t dd = threadIdx.x; dd < D; dd += blockDim.x) {
      float a = 0.0f;
      for (int w = 0; w < WARPS; w++)
        if (f[w] > 0.0f) a += s_acc[w][dd] * f[w];
      if (d.n_split == 1) {
        if (valid) out[th * D + dd] = L > 0.0f ? a / L : 0.0f;
      } else {
        partial[unit * (D + 2) + dd] = a;
      }
    }
    if (d.n_split > 1 && threadIdx.x == 0) {
      partial[unit * (D + 2) + D] = M;
      partial[unit * (D + 2) + D + 1] = L;
    }
    __syncthreads(); /* s_* are rewritten by the next unit */
  }
}

/* Combines the n_split partial results of each (token, head). */
__global__ void attention_merge_kernel(cuq_attention_dims d, const float *partial, float *out) {
  const uint64_t D = d.head_dim, units = d.n_tokens * d.n_heads;
  for (uint64_t th = blockIdx.x; th < units; th += gridDim.x) {
    const float *pt = partial + th * d.n_split * (D + 2);
    float M = -INFINITY;
    for (uint32_t s = 0; s < d.n_split; s++)
      if (pt[s * (D + 2) + D + 1] > 0.0f) M = fmaxf(M, pt[s * (D + 2) + D]);
    float L = 0.0f;
    for (uint32_t s = 0; s < d.n_split; s++) {
      const float ls = pt[s * (D + 2) + D + 1];
      if (ls > 0.0f) L += ls * expf(pt[s * (D + 2) + D] - M);
    }
    for (uint64_t dd = threadIdx.x; dd < D; dd += blockDim.x) {
      float a = 0.0f;
      for (uint32_t s = 0; s < d.n_split; s++) {
        const float ls = pt[s * (D + 2) + D + 1];
        if (ls > 0.0f) a += pt[s * (D + 2) + dd] * expf(pt[s * (D + 2) + D] - M);
      }
      out[th * D + dd] = L > 0.0f ? a / L : 0.0f;
    }
  }
}

extern "C" uint64_t cuq_attention_scratch(const cuq_attention_dims *d) {
  if (d->n_split <= 1) return 0;
  return d->n_tokens * d->n_heads * d->n_split * (d->head_dim + 2) * sizeof(float);
}

extern "C" cuq_status cuq_attention(cudaStream_t s, int cache_f16, const cuq_attention_dims *d,
                                    const float *q, const void *k_cache, const void *v_cache,
                                    const int32_t *block_table, const int32_t *token_seq,
                                    const int32_t *token_pos, float *out, void *scratch,
                                    int *flags) {
  const unsigned g = cuq_grid(d->n_tokens * d->n_heads * d->n_split, 1);
  float *partial = (float *)scratch;
  if (cache_f16)
    attention_kernel<true><<<g, 32 * WARPS, 0, s>>>(*d, q, k_cache, v_cache, block_table, token_seq,
                                                    token_pos, out, partial, flags);
  else
    attention_kernel<false><<<g, 32 * WARPS, 0, s>>>(*d, q, k_cache, v_cache, block_table,
                                                     token_seq, token_pos, out, partial, flags);
  cuq_status st = cuq_launched("cudaLaunchKernel(attention)");
  if (st.call != NULL || d->n_split <= 1) return st;
  return cuq_attention_merge(s, d, partial, out);
}

extern "C" cuq_status cuq_attention_merge(cudaStream_t s, const cuq_attention_dims *d,
                                          const float *partial, float *out) {
  attention_merge_kernel<<<cuq_grid(d->n_tokens * d->n_heads, 1), 128, 0, s>>>(*d, partial, out);
  return cuq_launched("cudaLaunchKernel(attention_merge)");
}
