/* kernels_matmul.cu: out[i, j] = (acc ? out[i, j] : 0) + bias[j] + sum_p x[i, p] w[j, p].
 *
 * Three paths, chosen by cuda_ops.c:
 *  - small n (decode, n <= CUQ_SMALL_N): one warp per weight row, reading the
 *    row once for all n rows of x; quantized blocks are read directly (never
 *    expanded in memory); F32 accumulation, warp-shuffle reduction. 16-byte
 *    loads of F32/F16/BF16 rows when the row is 16-byte aligned; Q8_0/Q4_0
 *    blocks (34 and 18 bytes) are only 2-byte aligned, so they are read as
 *    16-bit words, consecutive lanes on consecutive words (coalesced). The
 *    block types of 1.3/1.4 (k-quants, Q4_1, Q5_0, Q5_1, F8) are read in
 *    groups of 8 elements, each dequantized exactly (cuda_dequant.h).
 *  - large n, F32/F16/BF16 weights: cuBLAS. The ABI forbids rounding the F32
 *    activations (section 11: "MUST NOT quantize activations"), and one F16
 *    rounding of x already costs ~5e-4 > the 1e-4 budget. So x is split into
 *    a sum of 16-bit parts that the tensor cores multiply exactly (products of
 *    11- or 8-bit significands are exact in F32) with F32 accumulation:
 *      F16:  x * 2^s = hi + lo (two F16), s a per-row power of two that keeps
 *            |x| * 2^s below 2^14 (no F16 overflow, lo stays normal); error
 *            <= 2^-22 |x|. Two GEMMs into F32 scratch, then an epilogue that
 *            scales back by 2^-s and adds bias / out.
 *      BF16: x = hi + mid + lo (three BF16, 24 significand bits: exact for
 *            normal x). Three GEMMs accumulating into out (beta = 1).
 *      F32:  one GEMM with CUBLAS_COMPUTE_32F_PEDANTIC (no TF32).
 *  - large n otherwise (every block type, or QIAO_CUDA_NO_CUBLAS=1): 64x64 output
 *    tiles, the weight tile dequantized into shared memory (correctness
 *    first: a tensor-core version is future work).
 * matmul_experts is the small-n kernel with one (slot, row) per warp. */
#include <cublas_v2.h>
#include <math.h>

#include "kernels_common.cuh"

/* ---- the decode dot product: acc[t] += w_row . x[t, :] for t < NT, this
 * lane's share (the caller reduces over the warp). */

template <int DT, int NT>
__device__ __forceinline__ void row_dot(const unsigned char *w, uint64_t k, const float *x,
                                        uint64_t x_stride, int nt, float acc[NT], int lane) {
  if (DT == QIAO_DEV_F32 || DT == QIAO_DEV_F16 || DT == QIAO_DEV_BF16) {
    const int per = DT == QIAO_DEV_F32 ? 4 : 8; /* elements per 16-byte load */
    const bool vec = ((uintptr_t)w & 15) == 0 && k % per == 0;
    if (vec) {
      const uint4 *w4 = (const uint4 *)w;
      for (uint64_t c = lane; c < k / per; c += 32) {
        const uint4 raw = __ldg(w4 + c);
        float wv[8];
        if (DT == QIAO_DEV_F32) {
          wv[0] = __uint_as_float(raw.x), wv[1] = __uint_as_float(raw.y);
          wv[2] = __uint_as_float(raw.z), wv[3] = __uint_as_float(raw.w);
        } else {
          const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
          for (int i = 0; i < 4; i++) {
            const uint16_t lo = (uint16_t)(words[i] & 0xffffu), hi = (uint16_t)(words[i] >> 16);
            wv[2 * i] = DT == QIAO_DEV_F16 ? cuq_h2f(lo) : cuq_bf2f(lo);
            wv[2 * i + 1] = DT == QIAO_DEV_F16 ? cuq_h2f(hi) : cuq_bf2f(hi);
          }
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
          if (t >= nt) break;
          const float *xs = x + t * x_stride + c * per;
#pragma unroll
          for (int i = 0; i < (DT == QIAO_DEV_F32 ? 4 : 8); i++)
            acc[t] = fmaf(wv[i], __ldg(xs + i), acc[t]);
        }
      }
    } else {
      for (uint64_t p = lane; p < k; p += 32) {
        const float wv = load_elem<DT>(w, p);
#pragma unroll
        for (int t = 0; t < NT; t++)
          if (t < nt) acc[t] = fmaf(wv, __ldg(x + t * x_stride + p), acc[t]);
      }
    }
    return;
  }
  /* The block types of 1.3 and 1.4: groups of 8 consecutive elements, each
   * dequantized exactly (cuda_dequant.h: one sub-block's scale and offset,
   * eight levels), then multiplied with x; consecutive lanes take
   * consecutive groups. */
  if (CUQ_IS_NEW_BLOCK_TYPE(DT)) {
    for (uint64_t g = lane; g < k / 8; g += 32) {
      float wv[8];
      cuq_dequant8(DT, w, g, wv);
#pragma unroll
      for (int t = 0; t < NT; t++) {
        if (t >= nt) break;
        const float *xs = x + t * x_stride + 8 * g;
#pragma unroll
        for (int i = 0; i < 8; i++)
          acc[t] = fmaf(wv[i], __ldg(xs + i), acc[t]);
      }
    }
    return;
  }
  /* Q8_0 and Q4_0: a unit is a quarter block (8 elements); units of consecutive
   * lanes are consecutive in memory. */
  const uint64_t units = k / 32 * 4;
  for (uint64_t u = lane; u < units; u += 32) {
    const uint64_t b = u / 4, qq = u % 4;
    float q[8];
    float d;
    if (DT == QIAO_DEV_Q8_0) {
      const unsigned char *blk = w + 34 * b;
      d = cuq_h2f(cuq_ld16(blk));
#pragma unroll
      for (int i = 0; i < 4; i++) {
        const uint16_t two = cuq_ld16(blk + 2 + 8 * qq + 2 * i);
        q[2 * i] = (float)(signed char)(two & 0xff);
        q[2 * i + 1] = (float)(signed char)(two >> 8);
      }
    } else { /* Q4_0: bytes 4qq..4qq+3 hold elements 4qq+i (low) and 4qq+i+16 (high) */
      const unsigned char *blk = w + 18 * b;
      d = cuq_h2f(cuq_ld16(blk));
#pragma unroll
      for (int i = 0; i < 2; i++) {
        const uint16_t two = cuq_ld16(blk + 2 + 4 * qq + 2 * i);
        q[2 * i] = (float)((two & 15) - 8);
        q[2 * i + 1] = (float)(((two >> 8) & 15) - 8);
        q[4 + 2 * i] = (float)(((two >> 4) & 15) - 8);
        q[4 + 2 * i + 1] = (float)((two >> 12) - 8);
      }
    }
    /* Element offsets of q[0..7] within the row. */
    const uint64_t base = 32 * b + (DT == QIAO_DEV_Q8_0 ? 8 * qq : 4 * qq);
#pragma unroll
    for (int t = 0; t < NT; t++) {
      if (t >= nt) break;
      const float *xs = x + t * x_stride + base;
      float s = 0.0f;
      if (DT == QIAO_DEV_Q8_0) {
#pragma unroll
        for (int i = 0; i < 8; i++)
          s = fmaf(q[i], __ldg(xs + i), s);
      } else {
#pragma unroll
        for (int i = 0; i < 4; i++) {
          s = fmaf(q[i], __ldg(xs + i), s);
          s = fmaf(q[4 + i], __ldg(xs + 16 + i), s);
        }
      }
      acc[t] = fmaf(d, s, acc[t]);
    }
  }
}

#define SMALL_WARPS 4 /* warps per block */

template <int DT>
__global__ void matmul_small_kernel(const float *x, const unsigned char *w, uint64_t row_bytes,
                                    const float *bias, float *out, int n, uint64_t k, uint64_t m,
                                    int accumulate) {
  const int lane = threadIdx.x & 31;
  const uint64_t warps = (uint64_t)gridDim.x * SMALL_WARPS;
  for (uint64_t j = blockIdx.x * (uint64_t)SMALL_WARPS + (threadIdx.x >> 5); j < m; j += warps) {
    float acc[CUQ_SMALL_N];
#pragma unroll
    for (int t = 0; t < CUQ_SMALL_N; t++)
      acc[t] = 0.0f;
    row_dot<DT, CUQ_SMALL_N>(w + j * row_bytes, k, x, k, n, acc, lane);
#pragma unroll
    for (int t = 0; t < CUQ_SMALL_N; t++) {
      if (t >= n) break;
      const float sum = cuq_warp_sum(acc[t]);
      if (lane == 0) {
        float v = sum + (bias != NULL ? bias[j] : 0.0f);
        float *o = out + (uint64_t)t * m + j;
        *o = accumulate ? *o + v : v;
      }
    }
  }
}

extern "C" cuq_status cuq_matmul_small(cudaStream_t s, qiao_dev_dtype dtype, const float *x,
                                       const void *w, uint64_t row_bytes, const float *bias,
                                       float *out, uint64_t n, uint64_t k, uint64_t m,
                                       int accumulate) {
  const unsigned g = cuq_grid(m, SMALL_WARPS);
  const unsigned char *wb = (const unsigned char *)w;
  CUQ_LAUNCH_FOR_DTYPE(dtype, matmul_small_kernel, g, 32 * SMALL_WARPS, 0, s, x, wb, row_bytes,
                       bias, out, (int)n, k, m, accumulate);
  return cuq_launched("cudaLaunchKernel(matmul_small)");
}

/* ---- matmul_experts: one warp per (slot, output row), x row by slot. */

template <int DT>
__global__ void matmul_experts_kernel(const float *x, const unsigned char *w, uint64_t row_bytes,
                                      uint64_t expert_bytes, const int32_t *ids, float *out,
                                      uint64_t n_slots, uint64_t k, uint64_t n_experts,
                                      uint64_t in_dim, uint64_t out_dim, int x_per_slot,
                                      int *flags) {
  const int lane = threadIdx.x & 31;
  const uint64_t warps = (uint64_t)gridDim.x * SMALL_WARPS, units = n_slots * out_dim;
  for (uint64_t u = blockIdx.x * (uint64_t)SMALL_WARPS + (threadIdx.x >> 5); u < units;
       u += warps) {
    const uint64_t slot = u / out_dim, j = u % out_dim;
    const int32_t id = ids[slot];
    if (id < 0 || (uint64_t)id >= n_experts) {
      if (lane == 0 && j == 0) cuq_flag(flags, QIAO_DEV_OP_MATMUL_EXPERTS);
      continue;
    }
    const float *xr = x + (x_per_slot ? slot : slot / k) * in_dim;
    float acc[1] = {0.0f};
    row_dot<DT, 1>(w + (uint64_t)id * expert_bytes + j * row_bytes, in_dim, xr, in_dim, 1, acc,
                   lane);
    const float sum = cuq_warp_sum(acc[0]);
    if (lane == 0) out[u] = sum;
  }
}

extern "C" cuq_status cuq_matmul_experts(cudaStream_t s, qiao_dev_dtype dtype, const float *x,
                                         const void *w, uint64_t row_bytes, uint64_t expert_bytes,
                                         const int32_t *ids, float *out, uint64_t n_tokens,
                                         uint64_t k, uint64_t n_experts, uint64_t in_dim,
                                         uint64_t out_dim, int x_per_slot, int *flags) {
  const uint64_t slots = n_tokens * k;
  const unsigned g = cuq_grid(slots * out_dim, SMALL_WARPS);
  const unsigned char *wb = (const unsigned char *)w;
  CUQ_LAUNCH_FOR_DTYPE(dtype, matmul_experts_kernel, g, 32 * SMALL_WARPS, 0, s, x, wb, row_bytes,
                       expert_bytes, ids, out, slots, k, n_experts, in_dim, out_dim, x_per_slot,
                       flags);
  return cuq_launched("cudaLaunchKernel(matmul_experts)");
}

/* ---- tiled: 64 (rows of x) x 64 (rows of w) outputs per block, k in steps
 * of 32 (one quantized block per weight row), 256 threads of 4x4 outputs
 * each (rows ty + 16i, columns tx + 16j). Out-of-range elements are staged
 * as 0 (never read), so they add nothing. */

#define TILE 64
#define TK 32

template <int DT>
__global__ void __launch_bounds__(256)
    matmul_tiled_kernel(const float *x, const unsigned char *w, uint64_t row_bytes,
                        const float *bias, float *out, uint64_t n, uint64_t k, uint64_t m,
                        int accumulate) {
  __shared__ float xs[TILE][TK + 1];
  __shared__ float ws[TILE][TK + 1];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const uint64_t tiles_m = (m + TILE - 1) / TILE, tiles = tiles_m * ((n + TILE - 1) / TILE);
  for (uint64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const uint64_t m0 = (tile % tiles_m) * TILE, n0 = (tile / tiles_m) * TILE;
    float acc[4][4] = {};
    for (uint64_t k0 = 0; k0 < k; k0 += TK) {
      for (int e = tid; e < TILE * TK; e += 256) {
        const int r = e / TK, c = e % TK;
        const uint64_t p = k0 + c;
        xs[r][c] = (n0 + r < n && p < k) ? x[(n0 + r) * k + p] : 0.0f;
        if (!CUQ_IS_NEW_BLOCK_TYPE(DT))
          ws[r][c] = (m0 + r < m && p < k) ? load_elem<DT>(w + (m0 + r) * row_bytes, p) : 0.0f;
      }
      /* The block types of 1.3/1.4 in groups of 8 (one sub-block's scale and
       * offset computed once); k is a multiple of their block size (>= 32),
       * so the step's 32 columns are whole groups inside the row. */
      if (CUQ_IS_NEW_BLOCK_TYPE(DT))
        for (int e = tid; e < TILE * (TK / 8); e += 256) {
          const int r = e / (TK / 8), c = 8 * (e % (TK / 8));
          float v[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
          if (m0 + r < m) cuq_dequant8(DT, w + (m0 + r) * row_bytes, (k0 + c) / 8, v);
#pragma unroll
          for (int i = 0; i < 8; i++)
            ws[r][c + i] = v[i];
        }
      __syncthreads();
#pragma unroll 8
      for (int kk = 0; kk < TK; kk++) {
        float a[4], b[4];
#pragma unroll
        for (int i = 0; i < 4; i++) {
          a[i] = xs[ty + 16 * i][kk];
          b[i] = ws[tx + 16 * i][kk];
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
          for (int j = 0; j < 4; j++)
            acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
      const uint64_t r = n0 + ty + 16 * i;
      if (r >= n) continue;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const uint64_t c = m0 + tx + 16 * j;
        if (c >= m) continue;
        const float v = acc[i][j] + (bias != NULL ? bias[c] : 0.0f);
        float *o = out + r * m + c;
        *o = accumulate ? *o + v : v;
      }
    }
  }
}

extern "C" cuq_status cuq_matmul_tiled(cudaStream_t s, qiao_dev_dtype dtype, const float *x,
                                       const void *w, uint64_t row_bytes, const float *bias,
                                       float *out, uint64_t n, uint64_t k, uint64_t m,
                                       int accumulate) {
  const uint64_t tiles = ((m + TILE - 1) / TILE) * ((n + TILE - 1) / TILE);
  const unsigned g = cuq_grid(tiles, 1);
  const unsigned char *wb = (const unsigned char *)w;
  CUQ_LAUNCH_FOR_DTYPE(dtype, matmul_tiled_kernel, g, 256, 0, s, x, wb, row_bytes, bias, out, n, k,
                       m, accumulate);
  return cuq_launched("cudaLaunchKernel(matmul_tiled)");
}

/* ---- cuBLAS path */

#define SCRATCH_CAP (128ull << 20) /* bytes of scratch per chunk of rows */
#define ALIGN256(v) (((v) + 255) & ~(uint64_t)255)

/* Scratch layout for R rows: F16: hi (R,k) f16 | lo (R,k) f16 | shift (R) i32 | tmp (R,m) f32;
 * BF16: hi | mid | lo, each (R,k) bf16; F32: none. */
static uint64_t layout(qiao_dev_dtype dtype, uint64_t rows, uint64_t k, uint64_t m,
                       uint64_t off[4]) {
  off[0] = 0;
  if (dtype == QIAO_DEV_F16) {
    off[1] = ALIGN256(rows * k * 2);
    off[2] = off[1] + ALIGN256(rows * k * 2);
    off[3] = off[2] + ALIGN256(rows * 4);
    return off[3] + ALIGN256(rows * m * 4);
  }
  if (dtype == QIAO_DEV_BF16) {
    off[1] = ALIGN256(rows * k * 2);
    off[2] = off[1] + ALIGN256(rows * k * 2);
    off[3] = 0;
    return off[2] + ALIGN256(rows * k * 2);
  }
  off[1] = off[2] = off[3] = 0;
  return 0;
}

extern "C" uint64_t cuq_matmul_cublas_scratch(qiao_dev_dtype dtype, uint64_t n, uint64_t k,
                                              uint64_t m, uint64_t *rows_per_chunk) {
  uint64_t off[4];
  const uint64_t per_row = layout(dtype, 1, k, m, off);
  uint64_t rows = per_row == 0 ? n : SCRATCH_CAP / per_row;
  if (rows < 1) rows = 1;
  if (rows > n) rows = n;
  if (rows > 0x7fffffffu) rows = 0x7fffffffu; /* cuBLAS dimensions are int */
  *rows_per_chunk = rows;
  return layout(dtype, rows, k, m, off);
}

/* One block per row of x: the F16 split with a per-row power-of-two scale. */
__global__ void split_f16_kernel(const float *x, uint64_t rows, uint64_t k, __half *hi, __half *lo,
                                 int *shift) {
  __shared__ float shared[32];
  for (uint64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *xr = x + r * k;
    float mx = 0.0f;
    for (uint64_t i = threadIdx.x; i < k; i += blockDim.x)
      mx = fmaxf(mx, fabsf(xr[i])); /* NaN ignored */
    mx = cuq_warp_max(mx);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = (threadIdx.x & 31) < (blockDim.x >> 5) ? shared[threadIdx.x & 31] : 0.0f;
    mx = cuq_warp_max(mx);
    int e = 0;
    if (isfinite(mx) && mx > 0.0f) frexpf(mx, &e); /* mx in [2^(e-1), 2^e) */
    const int sh = 14 - e;                         /* |x| 2^sh < 2^14 */
    if (threadIdx.x == 0) shift[r] = sh;
    for (uint64_t i = threadIdx.x; i < k; i += blockDim.x) {
      const float v = ldexpf(xr[i], sh);
      const __half h = __float2half_rn(v);
      const float hv = __half2float(h);
      hi[r * k + i] = h;
      lo[r * k + i] = __float2half_rn(isfinite(hv) ? v - hv : 0.0f);
    }
  }
}

__global__ void split_bf16_kernel(const float *x, uint64_t total, __nv_bfloat16 *hi,
                                  __nv_bfloat16 *mid, __nv_bfloat16 *lo) {
  for (uint64_t i = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; i < total;
       i += (uint64_t)gridDim.x * blockDim.x) {
    const float v = x[i];
    const __nv_bfloat16 h = __float2bfloat16_rn(v);
    const float hv = __bfloat162float(h);
    const float r1 = isfinite(hv) ? v - hv : 0.0f;
    const __nv_bfloat16 md = __float2bfloat16_rn(r1);
    const float r2 = r1 - __bfloat162float(md);
    hi[i] = h;
    mid[i] = md;
    lo[i] = __float2bfloat16_rn(r2);
  }
}

/* out[r, c] = (acc ? out : 0) + bias[c] + (tmp ? tmp[r, c] * 2^-shift[r] : 0) */
__global__ void epilogue_kernel(float *out, const float *tmp, const int *shift, const float *bias,
                                uint64_t rows, uint64_t m, int accumulate) {
  const uint64_t total = rows * m;
  for (uint64_t e = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; e < total;
       e += (uint64_t)gridDim.x * blockDim.x) {
    const uint64_t r = e / m, c = e % m;
    float v = tmp != NULL ? ldexpf(tmp[e], -shift[r]) : 0.0f;
    if (bias != NULL) v += bias[c];
    out[e] = accumulate ? out[e] + v : v;
  }
}

static cuq_status blas_fail(const char *call, cublasStatus_t st) {
  cuq_status r = {call, 0, (int)st};
  return r;
}

extern "C" cuq_status cuq_matmul_cublas(cudaStream_t s, void *cublas_handle, qiao_dev_dtype dtype,
                                        const float *x, const void *w, const float *bias,
                                        float *out, uint64_t n, uint64_t k, uint64_t m,
                                        int accumulate, void *scratch, uint64_t rows_per_chunk) {
  cublasHandle_t h = (cublasHandle_t)cublas_handle;
  const float one = 1.0f, zero = 0.0f;
  const int ik = (int)k, im = (int)m;
  for (uint64_t r0 = 0; r0 < n; r0 += rows_per_chunk) {
    const uint64_t rows = n - r0 < rows_per_chunk ? n - r0 : rows_per_chunk;
    const float *xc = x + r0 * k;
    float *oc = out + r0 * m;
    const int ir = (int)rows;
    /* Column-major view: out^T (m, rows) = W^T (m, k) * x^T (k, rows). */
    cublasStatus_t st;
    if (dtype == QIAO_DEV_F32) {
      st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, im, ir, ik, &one, w, CUDA_R_32F, ik, xc,
                        CUDA_R_32F, ik, accumulate ? &one : &zero, oc, CUDA_R_32F, im,
                        CUBLAS_COMPUTE_32F_PEDANTIC, CUBLAS_GEMM_DEFAULT);
      if (st != CUBLAS_STATUS_SUCCESS) return blas_fail("cublasGemmEx(f32)", st);
      if (bias != NULL) {
        epilogue_kernel<<<cuq_grid(rows * m, 256), 256, 0, s>>>(oc, NULL, NULL, bias, rows, m, 1);
        cuq_status ls = cuq_launched("cudaLaunchKernel(matmul_epilogue)");
        if (ls.call != NULL) return ls;
      }
      continue;
    }
    uint64_t off[4];
    layout(dtype, rows, k, m, off);
    char *base = (char *)scratch;
    if (dtype == QIAO_DEV_F16) {
      __half *hi = (__half *)(base + off[0]), *lo = (__half *)(base + off[1]);
      int *shift = (int *)(base + off[2]);
      float *tmp = (float *)(base + off[3]);
      split_f16_kernel<<<cuq_grid(rows, 1), 256, 0, s>>>(xc, rows, k, hi, lo, shift);
      cuq_status ls = cuq_launched("cudaLaunchKernel(matmul_split_f16)");
      if (ls.call != NULL) return ls;
      st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, im, ir, ik, &one, w, CUDA_R_16F, ik, hi,
                        CUDA_R_16F, ik, &zero, tmp, CUDA_R_32F, im, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT);
      if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, im, ir, ik, &one, w, CUDA_R_16F, ik, lo,
                          CUDA_R_16F, ik, &one, tmp, CUDA_R_32F, im, CUBLAS_COMPUTE_32F,
                          CUBLAS_GEMM_DEFAULT);
      if (st != CUBLAS_STATUS_SUCCESS) return blas_fail("cublasGemmEx(f16)", st);
      epilogue_kernel<<<cuq_grid(rows * m, 256), 256, 0, s>>>(oc, tmp, shift, bias, rows, m,
                                                              accumulate);
      ls = cuq_launched("cudaLaunchKernel(matmul_epilogue)");
      if (ls.call != NULL) return ls;
      continue;
    }
    /* BF16 */
    __nv_bfloat16 *parts[3] = {(__nv_bfloat16 *)(base + off[0]), (__nv_bfloat16 *)(base + off[1]),
                               (__nv_bfloat16 *)(base + off[2])};
    split_bf16_kernel<<<cuq_grid(rows * k, 256), 256, 0, s>>>(xc, rows * k, parts[0], parts[1],
                                                              parts[2]);
    cuq_status ls = cuq_launched("cudaLaunchKernel(matmul_split_bf16)");
    if (ls.call != NULL) return ls;
    for (int p = 0; p < 3; p++) {
      const float *beta = (p > 0 || accumulate) ? &one : &zero;
      st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, im, ir, ik, &one, w, CUDA_R_16BF, ik, parts[p],
                        CUDA_R_16BF, ik, beta, oc, CUDA_R_32F, im, CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT);
      if (st != CUBLAS_STATUS_SUCCESS) return blas_fail("cublasGemmEx(bf16)", st);
    }
    if (bias != NULL) {
      epilogue_kernel<<<cuq_grid(rows * m, 256), 256, 0, s>>>(oc, NULL, NULL, bias, rows, m, 1);
      ls = cuq_launched("cudaLaunchKernel(matmul_epilogue)");
      if (ls.call != NULL) return ls;
    }
  }
  return cuq_ok();
}
