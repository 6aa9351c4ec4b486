/* kernels_common.cuh: what every kernel file shares: element conversions
 * (exact, as docs/spec/device-abi.md section 9 requires), warp reductions,
 * grid sizing and the launch status. */
#ifndef QIAO_CUDA_KERNELS_COMMON_CUH
#define QIAO_CUDA_KERNELS_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "cuda_dequant.h"
#include "cuda_launch.h"

/* Grids are capped and kernels loop with a grid stride, so that any count
 * (up to 2^64) is covered without overflowing a launch dimension. */
#define CUQ_MAX_GRID 65535u * 16u

static inline unsigned cuq_grid(uint64_t work, uint64_t per_block) {
  uint64_t g = (work + per_block - 1) / per_block;
  if (g < 1) g = 1;
  return g > CUQ_MAX_GRID ? CUQ_MAX_GRID : (unsigned)g;
}

/* The launch's status: a configuration error shows up at once. */
static inline cuq_status cuq_launched(const char *name) {
  cudaError_t err = cudaGetLastError();
  cuq_status st = {NULL, 0, 0};
  if (err != cudaSuccess) {
    st.call = name;
    st.cuda_error = (int)err;
  }
  return st;
}

/* A launcher asked for a dtype it has no kernel for (a host-side bug). */
static inline cuq_status cuq_bad_dtype(const char *kernel) {
  cuq_status st = {kernel, (int)cudaErrorInvalidValue, 0};
  return st;
}

static inline cuq_status cuq_ok(void) {
  cuq_status st = {NULL, 0, 0};
  return st;
}

/* Exact conversions of stored elements to F32. */
__device__ __forceinline__ float cuq_h2f(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}
__device__ __forceinline__ float cuq_bf2f(uint16_t bits) {
  return __uint_as_float((uint32_t)bits << 16);
}
/* A 16-bit little-endian value at a 2-aligned address. */
__device__ __forceinline__ uint16_t cuq_ld16(const unsigned char *p) {
  return __ldg((const unsigned short *)p);
}

__device__ __forceinline__ float cuq_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float cuq_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* Raises flags[op] (an out-of-range index in device data). */
__device__ __forceinline__ void cuq_flag(int *flags, int op) {
  atomicExch(&flags[op], 1);
}

/* Launches KERNEL<dtype> for every weight dtype the kernels implement. The
 * host validation lets no other dtype through; one that comes anyway is an
 * internal error, never a silent no-op. */
#define CUQ_LAUNCH_FOR_DTYPE(dtype, KERNEL, grid, block, smem, stream, ...)                        \
  switch (dtype) {                                                                                 \
  case QIAO_DEV_F32: KERNEL<QIAO_DEV_F32><<<grid, block, smem, stream>>>(__VA_ARGS__); break;      \
  case QIAO_DEV_F16: KERNEL<QIAO_DEV_F16><<<grid, block, smem, stream>>>(__VA_ARGS__); break;      \
  case QIAO_DEV_BF16: KERNEL<QIAO_DEV_BF16><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_Q8_0: KERNEL<QIAO_DEV_Q8_0><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_Q4_0: KERNEL<QIAO_DEV_Q4_0><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_Q4_K: KERNEL<QIAO_DEV_Q4_K><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_Q5_K: KERNEL<QIAO_DEV_Q5_K><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_Q6_K: KERNEL<QIAO_DEV_Q6_K><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_Q2_K: KERNEL<QIAO_DEV_Q2_K><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_Q3_K: KERNEL<QIAO_DEV_Q3_K><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_Q4_1: KERNEL<QIAO_DEV_Q4_1><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_Q5_0: KERNEL<QIAO_DEV_Q5_0><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_Q5_1: KERNEL<QIAO_DEV_Q5_1><<<grid, block, smem, stream>>>(__VA_ARGS__); break;    \
  case QIAO_DEV_F8_E4M3_B128:                                                                      \
    KERNEL<QIAO_DEV_F8_E4M3_B128><<<grid, block, smem, stream>>>(__VA_ARGS__);                     \
    break;                                                                                         \
  case QIAO_DEV_IQ4_NL: KERNEL<QIAO_DEV_IQ4_NL><<<grid, block, smem, stream>>>(__VA_ARGS__);       \
      break;                                                                                       \
  case QIAO_DEV_IQ4_XS: KERNEL<QIAO_DEV_IQ4_XS><<<grid, block, smem, stream>>>(__VA_ARGS__);       \
      break;                                                                                       \
  default: return cuq_bad_dtype(#KERNEL);                                                          \
  }

/* Whether DT is a block type of ABI 1.3, 1.4 or 1.5 (Q4_K .. Q5_1,
 * F8_E4M3_B128, IQ4_NL, IQ4_XS), dequantized by cuda_dequant.h. */
#define CUQ_IS_NEW_BLOCK_TYPE(DT) ((DT) >= QIAO_DEV_Q4_K && (DT) <= QIAO_DEV_IQ4_XS)

/* Element i of a weight row in its stored dtype, dequantized exactly
 * (row: the row's first byte; quantized rows are whole blocks). */
template <int DT> __device__ __forceinline__ float load_elem(const unsigned char *row, uint64_t i) {
  if (CUQ_IS_NEW_BLOCK_TYPE(DT)) return cuq_dequant(DT, row, i);
  if (DT == QIAO_DEV_F32) return __ldg((const float *)row + i);
  if (DT == QIAO_DEV_F16) return cuq_h2f(cuq_ld16(row + 2 * i));
  if (DT == QIAO_DEV_BF16) return cuq_bf2f(cuq_ld16(row + 2 * i));
  const uint64_t b = i / 32, j = i % 32;
  if (DT == QIAO_DEV_Q8_0) {
    const unsigned char *blk = row + 34 * b;
    return cuq_h2f(cuq_ld16(blk)) * (float)(signed char)blk[2 + j];
  }
  const unsigned char *blk = row + 18 * b; /* Q4_0 */
  const unsigned char byte = blk[2 + (j & 15)];
  const int nib = j < 16 ? (byte & 15) : (byte >> 4);
  return cuq_h2f(cuq_ld16(blk)) * (float)(nib - 8);
}

#endif
