/* cuda_dequant.h: the exact value of every element of a weight row, for the
 * CUDA kernels (embed, matmul, matmul_experts) and for a host build that a
 * CPU-only test compares with the CPU backend (tests/cuda/test_cuda_dequant.c).
 *
 * Written from the formulas of docs/spec/format.md §4.1 (the 1.3 block types)
 * and include/qiao/device.h (the 1.4 FP8 type). Plain C: compiled by nvcc
 * (every function __host__ __device__) and by a C compiler (static inline).
 * Each element value is written as
 *
 *     value = a * q - c    (one product and one difference, each rounded to
 *                           binary32, never fused)
 *
 * with (a, c) the scale and offset of the element's sub-block (cuq_affine)
 * and q its level (cuq_level), which is the spec's formula term for term:
 * Q4_K/Q5_K/Q2_K: a = d * sc, c = dmin * mn; Q6_K/Q3_K: a = d * sc, c = 0
 * (q - 32 and q - 4 are in the level); Q4_1/Q5_1: a = d, c = -m (x - (-m)
 * is x + m exactly); Q8_0, Q4_0, Q5_0: a = d, c = 0; F8: a = d, q = the E4M3
 * value; (1.5) IQ4_NL: a = d, IQ4_XS: a = d * (ls - 32), c = 0, q = the
 * nibble's level from the 16-entry table. Subtracting +0 changes no value, -0 and NaN included.
 * Splitting the two lets a kernel compute (a, c) once per group of 8 elements, which never
 * straddles a sub-block (every sub-block is 16, 32 or 128 elements).
 *
 * Bytes are read one at a time (blocks are only 2-byte aligned), so the same
 * code is correct for any offset on both sides. */
#ifndef QIAO_CUDA_DEQUANT_H
#define QIAO_CUDA_DEQUANT_H

#include <stdint.h>
#include <string.h>

#include "qiao/device.h"

#if defined(__CUDACC__)
#include <cuda_fp16.h>
#define CUQ_HD static __host__ __device__ __forceinline__
#else
#define CUQ_HD static inline
#endif

/* Rounded binary32 product and difference. nvcc contracts a * b - c into an
 * FMA by default; the _rn intrinsics are never contracted. The host side is
 * C17 (-ffp-contract=off in ISO mode): plain operators are rounded each. */
#if defined(__CUDA_ARCH__)
#define CUQ_MUL(a, b) __fmul_rn((a), (b))
#define CUQ_SUB(a, b) __fsub_rn((a), (b))
#else
#define CUQ_MUL(a, b) ((a) * (b))
#define CUQ_SUB(a, b) ((a) - (b))
#endif

/* ---- bits and fields */

CUQ_HD float cuq_f32_from_bits(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#else
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
#endif
}

/* An IEEE binary16 widened to binary32 (exact for every value). */
CUQ_HD float cuq_f16_to_f32(uint16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  const uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31u, man = h & 1023u;
  if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in binary32 */
    const float mag = (float)man * 0x1p-24f;
    return sign ? -mag : mag;
  }
  if (exp == 31) return cuq_f32_from_bits(sign | 0x7f800000u | man << 13); /* inf, NaN */
  return cuq_f32_from_bits(sign | (exp + 112u) << 23 | man << 13);
#endif
}

/* An E4M3FN byte (1 sign, 4 exponent bits with bias 7, 3 mantissa bits, no
 * infinities, 0x7F / 0xFF NaN) as binary32: exponent 0 is m/8 * 2^-6,
 * otherwise (1 + m/8) * 2^(e-7). */
CUQ_HD float cuq_e4m3_to_f32(uint8_t byte) {
  const uint32_t sign = (uint32_t)(byte >> 7) << 31, e = (byte >> 3) & 15u, m = byte & 7u;
  if (e == 15 && m == 7) return cuq_f32_from_bits(sign | 0x7fc00000u);
  if (e == 0) {
    const float mag = (float)m * 0x1p-9f; /* m/8 * 2^-6, exact */
    return sign ? -mag : mag;
  }
  return cuq_f32_from_bits(sign | (e + 120u) << 23 | m << 20); /* binary32 exponent e - 7 + 127 */
}

CUQ_HD uint16_t cuq_u16(const unsigned char *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
CUQ_HD uint32_t cuq_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
CUQ_HD float cuq_f16_at(const unsigned char *p) {
  return cuq_f16_to_f32(cuq_u16(p));
}

/* ---- block geometry (weight dtypes only; 0 for any other value) */

CUQ_HD uint32_t cuq_block_elems(int dt) {
  switch (dt) {
  case QIAO_DEV_F32:
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: return 1;
  case QIAO_DEV_Q8_0:
  case QIAO_DEV_Q4_0:
  case QIAO_DEV_Q4_1:
  case QIAO_DEV_Q5_0:
  case QIAO_DEV_Q5_1:
  case QIAO_DEV_IQ4_NL: return 32;
  case QIAO_DEV_IQ4_XS:
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K:
  case QIAO_DEV_Q6_K:
  case QIAO_DEV_Q2_K:
  case QIAO_DEV_Q3_K: return 256;
  case QIAO_DEV_F8_E4M3_B128: return 128;
  default: return 0;
  }
}

CUQ_HD uint32_t cuq_block_bytes(int dt) {
  switch (dt) {
  case QIAO_DEV_F32: return 4;
  case QIAO_DEV_F16:
  case QIAO_DEV_BF16: return 2;
  case QIAO_DEV_Q8_0: return 34;
  case QIAO_DEV_Q4_0: return 18;
  case QIAO_DEV_Q4_K: return 144;
  case QIAO_DEV_Q5_K: return 176;
  case QIAO_DEV_Q6_K: return 210;
  case QIAO_DEV_Q2_K: return 84;
  case QIAO_DEV_Q3_K: return 110;
  case QIAO_DEV_Q4_1: return 20;
  case QIAO_DEV_Q5_0: return 22;
  case QIAO_DEV_Q5_1: return 24;
  case QIAO_DEV_F8_E4M3_B128: return 132;
  case QIAO_DEV_IQ4_NL: return 18;
  case QIAO_DEV_IQ4_XS: return 136;
  default: return 0;
  }
}

/* ---- the scale and offset of element e's sub-block (e: index in its block) */

typedef struct cuq_affine {
  float a, c; /* value = a * q - c */
} cuq_affine;

CUQ_HD cuq_affine cuq_make_affine(float a, float c) {
  cuq_affine r;
  r.a = a;
  r.c = c;
  return r;
}

/* Q4_K / Q5_K: the 6-bit scale and min of sub-block j of 32, from the 12
 * bytes S at offset 4. */
CUQ_HD void cuq_k4_scale_min(const unsigned char *S, uint32_t j, uint32_t *sc, uint32_t *mn) {
  if (j < 4) {
    *sc = S[j] & 63u;
    *mn = S[j + 4] & 63u;
  } else {
    *sc = (S[j + 4] & 15u) | (uint32_t)(S[j - 4] >> 6) << 4;
    *mn = (uint32_t)(S[j + 4] >> 4) | (uint32_t)(S[j] >> 6) << 4;
  }
}

/* Q3_K: the 6-bit scale (0..63, before the -32) of sub-block s of 16, from
 * the 12 bytes S at offset 96. */
CUQ_HD uint32_t cuq_k3_scale(const unsigned char *S, uint32_t s) {
  const uint32_t low = s < 8 ? S[s] & 15u : (uint32_t)(S[s - 8] >> 4);
  return low | ((uint32_t)(S[8 + s % 4] >> (2 * (s / 4))) & 3u) << 4;
}

CUQ_HD cuq_affine cuq_affine_of(int dt, const unsigned char *b, uint32_t e) {
  /* The k-quants' 128-element halves h, 32-element quarters r, sub-blocks s of 16. */
  const uint32_t h = e / 128, r = e % 128 / 32, s = 8 * h + 2 * r + e % 32 / 16;
  switch (dt) {
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K: {
    uint32_t sc, mn;
    cuq_k4_scale_min(b + 4, e / 32, &sc, &mn);
    return cuq_make_affine(CUQ_MUL(cuq_f16_at(b), (float)sc),
                           CUQ_MUL(cuq_f16_at(b + 2), (float)mn));
  }
  case QIAO_DEV_Q6_K:
    return cuq_make_affine(CUQ_MUL(cuq_f16_at(b + 208), (float)(signed char)b[192 + s]), 0.0f);
  case QIAO_DEV_Q2_K:
    return cuq_make_affine(CUQ_MUL(cuq_f16_at(b + 80), (float)(b[s] & 15u)),
                           CUQ_MUL(cuq_f16_at(b + 82), (float)(b[s] >> 4)));
  case QIAO_DEV_Q3_K:
    return cuq_make_affine(CUQ_MUL(cuq_f16_at(b + 108), (float)((int)cuq_k3_scale(b + 96, s) - 32)),
                           0.0f);
  case QIAO_DEV_Q4_1:
  case QIAO_DEV_Q5_1: return cuq_make_affine(cuq_f16_at(b), -cuq_f16_at(b + 2));
  case QIAO_DEV_Q8_0:
  case QIAO_DEV_Q4_0:
  case QIAO_DEV_Q5_0: return cuq_make_affine(cuq_f16_at(b), 0.0f);
  case QIAO_DEV_F8_E4M3_B128: return cuq_make_affine(cuq_f32_from_bits(cuq_u32(b)), 0.0f);
  case QIAO_DEV_IQ4_NL: return cuq_make_affine(cuq_f16_at(b), 0.0f);
  case QIAO_DEV_IQ4_XS: { /* sub-block j of 32: the 6-bit scale ls, minus 32 */
    const uint32_t j = e / 32;
    const uint32_t ls = ((uint32_t)(b[4 + j / 2] >> (4 * (j % 2))) & 15u) |
                        ((uint32_t)(cuq_u16(b + 2) >> (2 * j)) & 3u) << 4;
    return cuq_make_affine(CUQ_MUL(cuq_f16_at(b), (float)((int)ls - 32)), 0.0f);
  }
  default: return cuq_make_affine(1.0f, 0.0f); /* F32, F16, BF16: the level is the value */
  }
}

/* ---- the level q of element e of block b (an integer, or F8's E4M3 value) */

/* Element j < 32 of 16 bytes of nibbles: j in the low nibble of byte j, j + 16 in the high. */
CUQ_HD uint32_t cuq_nibble32(const unsigned char *qs, uint32_t j) {
  return j < 16 ? qs[j] & 15u : (uint32_t)(qs[j - 16] >> 4);
}

/* (1.5) IQ4_NL / IQ4_XS: the level of nibble n. */
CUQ_HD float cuq_iq4_level(uint32_t n) {
  switch (n & 15u) {
  case 0: return -127.0f;
  case 1: return -104.0f;
  case 2: return -83.0f;
  case 3: return -65.0f;
  case 4: return -49.0f;
  case 5: return -35.0f;
  case 6: return -22.0f;
  case 7: return -10.0f;
  case 8: return 1.0f;
  case 9: return 13.0f;
  case 10: return 25.0f;
  case 11: return 38.0f;
  case 12: return 53.0f;
  case 13: return 69.0f;
  case 14: return 89.0f;
  default: return 113.0f;
  }
}

CUQ_HD float cuq_level(int dt, const unsigned char *b, uint32_t e) {
  const uint32_t h = e / 128, r = e % 128 / 32, l = e % 32;
  switch (dt) {
  case QIAO_DEV_F32: return cuq_f32_from_bits(cuq_u32(b));
  case QIAO_DEV_F16: return cuq_f16_at(b);
  case QIAO_DEV_BF16: return cuq_f32_from_bits((uint32_t)cuq_u16(b) << 16);
  case QIAO_DEV_Q8_0: return (float)(signed char)b[2 + e];
  case QIAO_DEV_Q4_0: return (float)((int)cuq_nibble32(b + 2, e) - 8);
  case QIAO_DEV_Q4_1: return (float)cuq_nibble32(b + 4, e);
  case QIAO_DEV_Q5_0:
    return (float)((int)(cuq_nibble32(b + 6, e) | ((cuq_u32(b + 2) >> e) & 1u) << 4) - 16);
  case QIAO_DEV_Q5_1: return (float)(cuq_nibble32(b + 8, e) | ((cuq_u32(b + 4) >> e) & 1u) << 4);
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K: {
    const uint32_t j = e / 32;
    const unsigned char byte = b[(dt == QIAO_DEV_Q5_K ? 48 : 16) + 32 * (j / 2) + l];
    uint32_t q = j % 2 == 0 ? byte & 15u : (uint32_t)(byte >> 4);
    if (dt == QIAO_DEV_Q5_K) q |= ((uint32_t)(b[16 + l] >> j) & 1u) << 4;
    return (float)q;
  }
  case QIAO_DEV_Q6_K: {
    const unsigned char lb = b[64 * h + 32 * (r % 2) + l];
    const uint32_t q = (r < 2 ? lb & 15u : (uint32_t)(lb >> 4)) |
                       ((uint32_t)(b[128 + 32 * h + l] >> (2 * r)) & 3u) << 4;
    return (float)((int)q - 32);
  }
  case QIAO_DEV_Q2_K: return (float)((b[16 + 32 * h + l] >> (2 * r)) & 3u);
  case QIAO_DEV_Q3_K: {
    const int q = (int)((b[32 + 32 * h + l] >> (2 * r)) & 3u);
    return (float)(q - ((b[l] >> (4 * h + r)) & 1u ? 0 : 4));
  }
  case QIAO_DEV_F8_E4M3_B128: return cuq_e4m3_to_f32(b[4 + e]);
  case QIAO_DEV_IQ4_NL: return cuq_iq4_level(cuq_nibble32(b + 2, e));
  case QIAO_DEV_IQ4_XS: return cuq_iq4_level(cuq_nibble32(b + 8 + 16 * (e / 32), l));
  default: return 0.0f;
  }
}

/* ---- rows */

CUQ_HD float cuq_apply(cuq_affine p, float q) {
  return CUQ_SUB(CUQ_MUL(p.a, q), p.c);
}

/* Element i of a row of weights in dtype dt (row: the row's first byte). The
 * float types are plain widenings (a * q - c with a = 1, c = 0 is q). */
CUQ_HD float cuq_dequant(int dt, const unsigned char *row, uint64_t i) {
  const uint32_t be = cuq_block_elems(dt);
  const unsigned char *b = row + i / be * cuq_block_bytes(dt);
  const uint32_t e = (uint32_t)(i % be);
  if (be == 1) return cuq_level(dt, b, 0);
  return cuq_apply(cuq_affine_of(dt, b, e), cuq_level(dt, b, e));
}

/* Elements 8g .. 8g+7 of a row of a block dtype (never the float types):
 * one sub-block's (a, c), eight levels. */
CUQ_HD void cuq_dequant8(int dt, const unsigned char *row, uint64_t g, float v[8]) {
  const uint32_t be = cuq_block_elems(dt);
  const uint64_t i = 8 * g;
  const unsigned char *b = row + i / be * cuq_block_bytes(dt);
  const uint32_t e = (uint32_t)(i % be);
  const cuq_affine p = cuq_affine_of(dt, b, e);
  for (uint32_t t = 0; t < 8; t++)
    v[t] = cuq_apply(p, cuq_level(dt, b, e + t));
}

#endif
