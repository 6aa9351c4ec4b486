/* kernels_elementwise.cu: embed, rmsnorm, rope, kv_write, swiglu, add,
 * argmax, moe_gate, moe_route (1.4) and moe_combine. Simple, one thread per
 * element or one block (or warp) per row; every loop is a grid-stride loop
 * over 64-bit counts. Math follows docs/spec/device-abi.md section 11 in F32
 * without fast-math (expf, sincosf and sqrtf are the accurate versions). */
#include <math.h>

#include "cuda_route.h"
#include "kernels_common.cuh"

#define THREADS 256

/* ---- embed: out[t, :] = dequantize(table[ids[t], :]) */

template <int DT>
__global__ void embed_kernel(const unsigned char *table, uint64_t row_bytes, const int32_t *ids,
                             float *out, uint64_t n_tokens, uint64_t vocab, uint64_t dim,
                             int *flags) {
  const uint64_t total = n_tokens * dim;
  for (uint64_t e = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; e < total;
       e += (uint64_t)gridDim.x * blockDim.x) {
    const uint64_t t = e / dim, i = e % dim;
    const int32_t id = ids[t];
    if (id < 0 || (uint64_t)id >= vocab) {
      if (i == 0) cuq_flag(flags, QIAO_DEV_OP_EMBED);
      continue;
    }
    out[e] = load_elem<DT>(table + (uint64_t)id * row_bytes, i);
  }
}

extern "C" cuq_status cuq_embed(cudaStream_t s, qiao_dev_dtype dtype, const void *table,
                                uint64_t row_bytes, const int32_t *ids, float *out,
                                uint64_t n_tokens, uint64_t vocab, uint64_t dim, int *flags) {
  const unsigned g = cuq_grid(n_tokens * dim, THREADS);
  const unsigned char *t = (const unsigned char *)table;
  CUQ_LAUNCH_FOR_DTYPE(dtype, embed_kernel, g, THREADS, 0, s, t, row_bytes, ids, out, n_tokens,
                       vocab, dim, flags);
  return cuq_launched("cudaLaunchKernel(embed)");
}

/* ---- rmsnorm: one block per row; out may equal x (each element is read
 * before the same thread writes it, after the whole row was summed). */

__device__ float block_sum(float v, float *shared /* [32] */) {
  v = cuq_warp_sum(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads(); /* shared may still be read by a previous call */
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  const int n_warps = (blockDim.x + 31) >> 5;
  v = lane < n_warps ? shared[lane] : 0.0f;
  return cuq_warp_sum(v); /* every warp computes the same total */
}

__global__ void rmsnorm_kernel(const float *x, const float *weight, float *out, uint64_t rows,
                               uint64_t cols, float eps) {
  __shared__ float shared[32];
  for (uint64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * cols;
    float *orow = out + r * cols;
    float ss = 0.0f;
    for (uint64_t i = threadIdx.x; i < cols; i += blockDim.x)
      ss = fmaf(xr[i], xr[i], ss);
    ss = block_sum(ss, shared);
    const float scale = 1.0f / sqrtf(ss / (float)cols + eps);
    for (uint64_t i = threadIdx.x; i < cols; i += blockDim.x)
      orow[i] = xr[i] * scale * weight[i];
  }
}

extern "C" cuq_status cuq_rmsnorm(cudaStream_t s, const float *x, const float *weight, float *out,
                                  uint64_t rows, uint64_t cols, float eps) {
  rmsnorm_kernel<<<cuq_grid(rows, 1), THREADS, 0, s>>>(x, weight, out, rows, cols, eps);
  return cuq_launched("cudaLaunchKernel(rmsnorm)");
}

/* ---- rope: one thread per (token, head, pair). The angle is exactly one
 * correctly rounded binary32 product (__fmul_rn: never fused). */

__global__ void rope_kernel(float *x, const int32_t *positions, const float *freqs,
                            uint64_t n_tokens, uint64_t n_heads, uint64_t head_dim, uint64_t half,
                            int neox) {
  const uint64_t total = n_tokens * n_heads * half;
  for (uint64_t e = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; e < total;
       e += (uint64_t)gridDim.x * blockDim.x) {
    const uint64_t i = e % half, th = e / half; /* th = t * n_heads + h */
    const uint64_t t = th / n_heads;
    const float a = __fmul_rn((float)positions[t], freqs[i]);
    float sn, cs;
    sincosf(a, &sn, &cs);
    float *row = x + th * head_dim;
    const uint64_t i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
    const float x0 = row[i0], x1 = row[i1];
    row[i0] = x0 * cs - x1 * sn;
    row[i1] = x0 * sn + x1 * cs;
  }
}

extern "C" cuq_status cuq_rope(cudaStream_t s, float *x, const int32_t *positions,
                               const float *freqs, uint64_t n_tokens, uint64_t n_heads,
                               uint64_t head_dim, uint64_t half, int neox) {
  rope_kernel<<<cuq_grid(n_tokens * n_heads * half, THREADS), THREADS, 0, s>>>(
      x, positions, freqs, n_tokens, n_heads, head_dim, half, neox);
  return cuq_launched("cudaLaunchKernel(rope)");
}

/* ---- kv_write: F16 caches round to nearest even (__float2half_rn is IEEE:
 * subnormals and overflow to infinity included). */

template <bool F16>
__global__ void kv_write_kernel(const float *k, const float *v, const int32_t *slots, void *k_cache,
                                void *v_cache, uint64_t n_tokens, uint64_t kv_dim, uint64_t n_slots,
                                int *flags) {
  const uint64_t total = n_tokens * kv_dim;
  for (uint64_t e = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; e < total;
       e += (uint64_t)gridDim.x * blockDim.x) {
    const uint64_t t = e / kv_dim, i = e % kv_dim;
    const int32_t slot = slots[t];
    if (slot < 0 || (uint64_t)slot >= n_slots) {
      if (i == 0) cuq_flag(flags, QIAO_DEV_OP_KV_WRITE);
      continue;
    }
    const uint64_t dst = (uint64_t)slot * kv_dim + i;
    if (F16) {
      ((__half *)k_cache)[dst] = __float2half_rn(k[e]);
      ((__half *)v_cache)[dst] = __float2half_rn(v[e]);
    } else {
      ((float *)k_cache)[dst] = k[e];
      ((float *)v_cache)[dst] = v[e];
    }
  }
}

extern "C" cuq_status cuq_kv_write(cudaStream_t s, int cache_f16, const float *k, const float *v,
                                   const int32_t *slots, void *k_cache, void *v_cache,
                                   uint64_t n_tokens, uint64_t kv_dim, uint64_t n_slots,
                                   int *flags) {
  const unsigned g = cuq_grid(n_tokens * kv_dim, THREADS);
  if (cache_f16)
    kv_write_kernel<true>
        <<<g, THREADS, 0, s>>>(k, v, slots, k_cache, v_cache, n_tokens, kv_dim, n_slots, flags);
  else
    kv_write_kernel<false>
        <<<g, THREADS, 0, s>>>(k, v, slots, k_cache, v_cache, n_tokens, kv_dim, n_slots, flags);
  return cuq_launched("cudaLaunchKernel(kv_write)");
}

/* ---- swiglu and add: out may equal an input (each element is read, then written, by one thread)
 */

__global__ void swiglu_kernel(const float *gate, const float *up, float *out, uint64_t n) {
  for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
       i += (uint64_t)gridDim.x * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void add_kernel(const float *a, const float *b, float *out, uint64_t n) {
  for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < n;
       i += (uint64_t)gridDim.x * blockDim.x)
    out[i] = __fadd_rn(a[i], b[i]);
}

extern "C" cuq_status cuq_swiglu(cudaStream_t s, const float *gate, const float *up, float *out,
                                 uint64_t n) {
  swiglu_kernel<<<cuq_grid(n, THREADS), THREADS, 0, s>>>(gate, up, out, n);
  return cuq_launched("cudaLaunchKernel(swiglu)");
}

extern "C" cuq_status cuq_add(cudaStream_t s, const float *a, const float *b, float *out,
                              uint64_t n) {
  add_kernel<<<cuq_grid(n, THREADS), THREADS, 0, s>>>(a, b, out, n);
  return cuq_launched("cudaLaunchKernel(add)");
}

/* ---- argmax: one block per row. A candidate (v, j) beats (best, bj) when v
 * is larger, or equal with a smaller index; NaN compares false so it never
 * wins; a row of NaN only keeps the "none" index and yields 0. */

#define NONE 0x7fffffff

__device__ __forceinline__ void argmax_merge(float &best, int &bj, float v, int j) {
  if (j == NONE) return;
  if (bj == NONE || v > best || (v == best && j < bj)) {
    best = v;
    bj = j;
  }
}

__global__ void argmax_kernel(const float *x, int32_t *out, uint64_t rows, uint64_t cols) {
  __shared__ float sv[32];
  __shared__ int sj[32];
  for (uint64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * cols;
    float best = -INFINITY;
    int bj = NONE;
    for (uint64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const float v = xr[i];
      if (v == v) argmax_merge(best, bj, v, (int)i); /* skip NaN */
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oj = __shfl_xor_sync(0xffffffffu, bj, o);
      argmax_merge(best, bj, ov, oj);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) {
      sv[warp] = best;
      sj[warp] = bj;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      float b = -INFINITY;
      int j = NONE;
      for (int w = 0; w < (int)((blockDim.x + 31) >> 5); w++)
        argmax_merge(b, j, sv[w], sj[w]);
      out[r] = j == NONE ? 0 : j;
    }
  }
}

extern "C" cuq_status cuq_argmax(cudaStream_t s, const float *x, int32_t *out, uint64_t rows,
                                 uint64_t cols) {
  argmax_kernel<<<cuq_grid(rows, 1), THREADS, 0, s>>>(x, out, rows, cols);
  return cuq_launched("cudaLaunchKernel(argmax)");
}

/* ---- moe_gate: one warp per token. Experts are ranked by logit (the same
 * ranking as by p, without p's rounding ties), ties to the smaller index,
 * NaN never beats a number; the i-th pick is the best expert ranked strictly
 * after the (i-1)-th, so no "taken" set is needed (cuq_ranks_before,
 * cuda_route.h). The softmax sum is in double, like the reference. */

__global__ void moe_gate_kernel(const float *logits, int32_t *ids, float *weights,
                                uint64_t n_tokens, uint64_t n_experts, uint64_t k, int normalize) {
  const int lane = threadIdx.x & 31;
  const uint64_t warps = (uint64_t)gridDim.x * (blockDim.x >> 5);
  for (uint64_t t = blockIdx.x * (uint64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); t < n_tokens;
       t += warps) {
    const float *l = logits + t * n_experts;
    float mx = -INFINITY;
    for (uint64_t e = lane; e < n_experts; e += 32)
      mx = fmaxf(mx, l[e]); /* fmaxf ignores NaN */
    mx = cuq_warp_max(mx);
    double sum = 0.0;
    for (uint64_t e = lane; e < n_experts; e += 32)
      sum += (double)expf(l[e] - mx);
    for (int o = 16; o > 0; o >>= 1)
      sum += __shfl_xor_sync(0xffffffffu, sum, o);
    float prev_v = 0.0f;
    int prev_e = -1;
    double chosen = 0.0;
    for (uint64_t i = 0; i < k; i++) {
      float bv = 0.0f;
      int be = -1;
      for (uint64_t e = lane; e < n_experts; e += 32) {
        const float v = l[e];
        if (prev_e >= 0 && !cuq_ranks_before(prev_v, prev_e, v, (int)e)) continue;
        if (be < 0 || cuq_ranks_before(v, (int)e, bv, be)) {
          bv = v;
          be = (int)e;
        }
      }
      for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oe = __shfl_xor_sync(0xffffffffu, be, o);
        if (oe >= 0 && (be < 0 || cuq_ranks_before(ov, oe, bv, be))) {
          bv = ov;
          be = oe;
        }
      }
      /* be >= 0: k <= n_experts leaves a candidate at every step */
      const float p = (float)((double)expf(bv - mx) / sum);
      if (lane == 0) {
        ids[t * k + i] = be;
        weights[t * k + i] = p;
      }
      chosen += p;
      prev_v = bv;
      prev_e = be;
    }
    if (normalize && chosen > 0.0) {
      __syncwarp();
      for (uint64_t i = lane; i < k; i += 32)
        weights[t * k + i] = (float)(weights[t * k + i] / chosen);
    }
  }
}

extern "C" cuq_status cuq_moe_gate(cudaStream_t s, const float *logits, int32_t *ids,
                                   float *weights, uint64_t n_tokens, uint64_t n_experts,
                                   uint64_t k, int normalize) {
  moe_gate_kernel<<<cuq_grid(n_tokens, 4), 128, 0, s>>>(logits, ids, weights, n_tokens, n_experts,
                                                        k, normalize);
  return cuq_launched("cudaLaunchKernel(moe_gate)");
}

/* ---- (1.4) moe_route: one warp per token, cuda_route.h's algorithm (the
 * same code that tests/cuda/test_cuda_route.c runs on the host against the
 * CPU backend). */

__global__ void moe_route_kernel(cuq_route_args a) {
  const int lane = threadIdx.x & 31;
  const uint64_t warps = (uint64_t)gridDim.x * (blockDim.x >> 5);
  for (uint64_t t = blockIdx.x * (uint64_t)(blockDim.x >> 5) + (threadIdx.x >> 5); t < a.n_tokens;
       t += warps)
    cuq_route_token(&a, t, lane);
}

extern "C" cuq_status cuq_moe_route(cudaStream_t s, const float *logits, const float *bias,
                                    int32_t *ids, float *weights, float *scratch, uint64_t n_tokens,
                                    uint64_t n_experts, uint64_t k, int sigmoid, int normalize,
                                    uint64_t n_groups, uint64_t topk_groups, int top2_sum,
                                    float scale) {
  cuq_route_args a;
  a.logits = logits, a.bias = bias, a.ids = ids, a.weights = weights, a.scratch = scratch;
  a.n_tokens = n_tokens, a.n_experts = n_experts, a.k = k;
  a.n_groups = n_groups, a.topk_groups = topk_groups;
  a.sigmoid = sigmoid, a.normalize = normalize, a.top2_sum = top2_sum, a.scale = scale;
  moe_route_kernel<<<cuq_grid(n_tokens, 4), 128, 0, s>>>(a);
  return cuq_launched("cudaLaunchKernel(moe_route)");
}

/* ---- moe_combine: out[t, :] = (acc ? out[t, :] : 0) + sum_i weights[t, i] x[t, i, :] */

__global__ void moe_combine_kernel(const float *x, const float *weights, float *out,
                                   uint64_t n_tokens, uint64_t k, uint64_t dim, int accumulate) {
  const uint64_t total = n_tokens * dim;
  for (uint64_t e = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; e < total;
       e += (uint64_t)gridDim.x * blockDim.x) {
    const uint64_t t = e / dim, d = e % dim;
    float acc = accumulate ? out[e] : 0.0f;
    for (uint64_t i = 0; i < k; i++)
      acc += weights[t * k + i] * x[(t * k + i) * dim + d];
    out[e] = acc;
  }
}

extern "C" cuq_status cuq_moe_combine(cudaStream_t s, const float *x, const float *weights,
                                      float *out, uint64_t n_tokens, uint64_t k, uint64_t dim,
                                      int accumulate) {
  moe_combine_kernel<<<cuq_grid(n_tokens * dim, THREADS), THREADS, 0, s>>>(
      x, weights, out, n_tokens, k, dim, accumulate);
  return cuq_launched("cudaLaunchKernel(moe_combine)");
}
