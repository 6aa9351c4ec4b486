/* Q8 activations (device ABI 1.2, spec §11.4): matmul with x quantized per
 * block of 32 elements to int8, weights kept as int8 tiles, products summed
 * in integers within a block. Here: the quantizer, the tile layout's writer
 * and the portable kernel; cpu_kernels_x86.c has the AVX-512 VNNI one and
 * cpu_matmul.c the path that uses them. The layout and the exact sums every
 * kernel computes are described in cpu_internal.h (qiao__cpu_q8_row). */
#include <math.h>

#include "cpu_internal.h"

void qiao__cpu_quantize_q8(const float *x, uint64_t k, int8_t *q, float *d, int32_t *sum) {
  for (uint64_t b = 0; b < k / 32; b++) {
    const float *xb = x + b * 32;
    int8_t *qb = q + b * 32;
    float amax = 0.0f;
    int finite = 1;
    for (int i = 0; i < 32; i++) {
      finite &= isfinite(xb[i]) != 0;
      amax = fmaxf(amax, fabsf(xb[i]));
    }
    int32_t s = 0;
    if (!finite) { /* the outputs this block reaches become NaN (spec §11.4) */
      d[b] = NAN;
      memset(qb, 0, 32);
    } else {
      d[b] = amax / 127.0f;
      for (int i = 0; i < 32; i++) {
        /* |x| <= amax, so x / d rounds to at most 127 in magnitude, unless
         * d is subnormal and inexact: clamp. */
        float v = d[b] == 0.0f ? 0.0f : nearbyintf(xb[i] / d[b]);
        int iv = v > 127.0f ? 127 : v < -127.0f ? -127 : (int)v;
        qb[i] = (int8_t)iv;
        s += iv;
      }
    }
    sum[b] = s;
  }
}

void qiao__cpu_repack_q8(qiao_dev_dtype dtype, const uint8_t *w, uint64_t row_bytes, uint64_t count,
                         uint64_t k, uint8_t *tile) {
  const uint64_t cols = QIAO__CPU_GEMM_COLS, block_bytes = dtype == QIAO_DEV_Q8_0 ? 34 : 18;
  const uint64_t tile_block = qiao__cpu_q8_block_bytes(dtype);
  const int groups = dtype == QIAO_DEV_Q8_0 ? 8 : 4; /* of 4 bytes per column */
  for (uint64_t b = 0; b < k / 32; b++) {
    uint8_t *dst = tile + b * tile_block;
    float *scales = (float *)(void *)dst;
    uint8_t *quants = dst + 4 * cols; /* [group][column][4] */
    for (uint64_t c = 0; c < cols; c++) {
      uint8_t u[32];    /* the column's bytes of this block, group by group */
      if (c >= count) { /* past the last row: zero columns, never stored */
        scales[c] = 0.0f;
        memset(u, dtype == QIAO_DEV_Q8_0 ? 128 : 0x88, sizeof(u));
      } else {
        const uint8_t *block = w + c * row_bytes + b * block_bytes;
        scales[c] = qiao__cpu_f16_to_f32(qiao__cpu_load_u16(block));
        for (int i = 0; i < 4 * groups; i++) /* Q8_0: flipping the sign bit adds 128 */
          u[i] = dtype == QIAO_DEV_Q8_0 ? block[2 + i] ^ 0x80u : block[2 + i];
      }
      for (int g = 0; g < groups; g++)
        memcpy(quants + g * cols * 4 + c * 4, u + 4 * g, 4);
    }
  }
}

/* The portable kernel over a tile of `dtype` (cpu_internal.h), one column
 * at a time. */
static void gemm_q8_scalar(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                           float *out, qiao_dev_dtype dtype) {
  const uint64_t cols = QIAO__CPU_GEMM_COLS, tile_block = qiao__cpu_q8_block_bytes(dtype);
  const int32_t offset = dtype == QIAO_DEV_Q8_0 ? 128 : 8;
  for (int r = 0; r < nr; r++) {
    for (uint64_t c = 0; c < cols; c++) {
      float acc = 0.0f;
      for (uint64_t b = 0; b < k / 32; b++) {
        const uint8_t *block = tile + b * tile_block;
        float scale;
        memcpy(&scale, block + 4 * c, 4);
        const uint8_t *quants = block + 4 * cols;
        const int8_t *xq = x[r].q + b * 32;
        int32_t dot = 0;
        for (int i = 0; i < 32; i++) {
          int32_t u;
          if (dtype == QIAO_DEV_Q8_0) {
            u = quants[(i / 4) * cols * 4 + c * 4 + i % 4];
          } else { /* low nibbles: elements 0..15, high: 16..31 */
            uint8_t byte = quants[((i % 16) / 4) * cols * 4 + c * 4 + i % 4];
            u = i < 16 ? byte & 0xf : byte >> 4;
          }
          dot += u * xq[i];
        }
        dot -= offset * x[r].sum[b];
        acc = fmaf((float)dot, scale * x[r].d[b], acc);
      }
      out[r * cols + c] = acc;
    }
  }
}

void qiao__cpu_gemm_q8_scalar_q8_0(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr,
                                   uint64_t k, float *out) {
  gemm_q8_scalar(tile, x, nr, k, out, QIAO_DEV_Q8_0);
}

void qiao__cpu_gemm_q8_scalar_q4_0(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr,
                                   uint64_t k, float *out) {
  gemm_q8_scalar(tile, x, nr, k, out, QIAO_DEV_Q4_0);
}
