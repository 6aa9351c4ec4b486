/* Element conversions between dtypes (see dtype_convert.h). The block
 * layouts match GGUF's so that files stay loadable by llama.cpp. */
#include "format/dtype_convert.h"
#include "format/fp8.h"
#include "format/quantize_iq4.h"
#include "format/quantize_k.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

static uint32_t float_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

static float bits_float(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

uint16_t qiao__f32_to_f16(float x) {
  uint32_t u = float_bits(x);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t exp = (u >> 23) & 0xffu, mant = u & 0x7fffffu;
  if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0)); /* inf / NaN */
  int32_t e = (int32_t)exp - 127 + 15;
  if (e >= 0x1f) return (uint16_t)(sign | 0x7c00u); /* overflow */
  if (e <= 0) {
    /* subnormal half (or zero): shift the mantissa with its implicit 1 */
    if (e < -10) return sign;
    mant |= 0x800000u;
    uint32_t shift = (uint32_t)(14 - e);
    uint32_t half = mant >> shift;
    uint32_t rem = mant & ((1u << shift) - 1), midpoint = 1u << (shift - 1);
    if (rem > midpoint || (rem == midpoint && (half & 1u))) half++;
    return (uint16_t)(sign | half);
  }
  uint32_t half = ((uint32_t)e << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) half++; /* may carry into the exponent */
  return (uint16_t)(sign | half);
}

float qiao__f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    float v = ldexpf((float)mant, -24); /* subnormal */
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t qiao__f32_to_bf16(float x) {
  uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float qiao__bf16_to_f32(uint16_t h) {
  return bits_float((uint32_t)h << 16);
}

static uint16_t load_u16(const uint8_t *p) {
  return (uint16_t)(p[0] | (p[1] << 8));
}
static void store_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

/* ---- Format 1.1 block types (GGUF's layouts, format.md §4.1) -------------
 * Each function dequantizes one block to f32 in the spec's operation order
 * (every product and difference rounded to f32, nothing fused), which is
 * also the order of llama.cpp's dequantize_row_* functions. */

/* The 6-bit scale and min of sub-block j (0..7) of a q4_k / q5_k block
 * from its 12 packed bytes. */
static void k_scale_min(const uint8_t *q, int j, int *sc, int *m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

/* q4_k: f16 d, f16 dmin, scales[12], qs[128]; sub-block j of 32 values
 * reads byte 32 * (j / 2) + l, its low nibble for even j, high for odd. q5_k
 * adds qh[32] before qs: bit j of qh[l] is the fifth bit of element l of
 * sub-block j. */
static void dequant_q4_k_q5_k(const uint8_t *b, float *y, bool five) {
  float d = qiao__f16_to_f32(load_u16(b)), dmin = qiao__f16_to_f32(load_u16(b + 2));
  const uint8_t *scales = b + 4, *qh = b + 16, *qs = five ? b + 48 : b + 16;
  for (int j = 0; j < 8; j++) {
    int sc, m;
    k_scale_min(scales, j, &sc, &m);
    float dl = d * (float)sc, ml = dmin * (float)m;
    for (int l = 0; l < 32; l++) {
      int q = (j & 1) ? qs[32 * (j / 2) + l] >> 4 : qs[32 * (j / 2) + l] & 0x0f;
      if (five && (qh[l] >> j) & 1) q += 16;
      y[32 * j + l] = dl * (float)q - ml;
    }
  }
}

/* q6_k: ql[128], qh[64], scales[16] (i8), f16 d. Element i = 128 h + 32 r + l
 * (h < 2, r < 4, l < 32): low nibble from ql[64 h + l + 32 (r & 1)] (low half
 * for r < 2, high for r >= 2), top 2 bits from bits 2r..2r+1 of
 * qh[32 h + l]; value = (d * scales[8 h + 2 r + l / 16]) * (q - 32). */
static void dequant_q6_k(const uint8_t *b, float *y) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *scales = (const int8_t *)(b + 192);
  float d = qiao__f16_to_f32(load_u16(b + 208));
  for (int h = 0; h < 2; h++)
    for (int r = 0; r < 4; r++)
      for (int l = 0; l < 32; l++) {
        int lo = ql[64 * h + l + 32 * (r & 1)];
        lo = r < 2 ? lo & 0x0f : lo >> 4;
        int hi = (qh[32 * h + l] >> (2 * r)) & 3;
        y[128 * h + 32 * r + l] =
            d * (float)scales[8 * h + 2 * r + l / 16] * (float)((lo | hi << 4) - 32);
      }
}

/* q2_k: scales[16] (low nibble scale, high nibble min), qs[64], f16 d, f16
 * dmin. Element i = 128 h + 32 r + l: 2 bits at 2r of qs[32 h + l]; its
 * sub-block of 16 is s = 8 h + 2 r + l / 16. */
static void dequant_q2_k(const uint8_t *b, float *y) {
  const uint8_t *scales = b, *qs = b + 16;
  float d = qiao__f16_to_f32(load_u16(b + 80)), dmin = qiao__f16_to_f32(load_u16(b + 82));
  for (int h = 0; h < 2; h++)
    for (int r = 0; r < 4; r++)
      for (int l = 0; l < 32; l++) {
        int s = 8 * h + 2 * r + l / 16;
        float dl = d * (float)(scales[s] & 0x0f), ml = dmin * (float)(scales[s] >> 4);
        int q = (qs[32 * h + l] >> (2 * r)) & 3;
        y[128 * h + 32 * r + l] = dl * (float)q - ml;
      }
}

/* q3_k: hmask[32], qs[64], scales[12], f16 d. Element i = 128 h + 32 r + l:
 * 2 bits at 2r of qs[32 h + l], minus 4 unless bit 4h + r of hmask[l] is set;
 * sub-block s = 8 h + 2 r + l / 16 has the 6-bit scale whose low 4 bits are
 * the low (s < 8) or high (s >= 8) nibble of scales[s % 8] and whose top 2
 * bits are bits 2 (s / 4)..+1 of scales[8 + s % 4]; the scale is that minus 32. */
static void dequant_q3_k(const uint8_t *b, float *y) {
  const uint8_t *hmask = b, *qs = b + 32, *sc = b + 96;
  float d = qiao__f16_to_f32(load_u16(b + 108));
  for (int h = 0; h < 2; h++)
    for (int r = 0; r < 4; r++)
      for (int l = 0; l < 32; l++) {
        int s = 8 * h + 2 * r + l / 16;
        int low = s < 8 ? sc[s] & 0x0f : sc[s - 8] >> 4;
        int scale = (low | ((sc[8 + s % 4] >> (2 * (s / 4))) & 3) << 4) - 32;
        int q = ((qs[32 * h + l] >> (2 * r)) & 3) - ((hmask[l] >> (4 * h + r)) & 1 ? 0 : 4);
        y[128 * h + 32 * r + l] = d * (float)scale * (float)q;
      }
}

/* q4_1: f16 d, f16 m, qs[16] as q4_0; value = d * nibble + m. q5_0: f16 d,
 * qh (u32), qs[16]; bit i of qh is the fifth bit of element i; value =
 * d * (q - 16). q5_1: f16 d, f16 m, qh, qs; value = d * q + m. */
static void dequant_q4_1_q5(const uint8_t *b, float *y, qiao_dtype dtype) {
  float d = qiao__f16_to_f32(load_u16(b));
  float m = dtype == QIAO_DTYPE_Q5_0 ? 0.0f : qiao__f16_to_f32(load_u16(b + 2));
  const uint8_t *qs = b + (dtype == QIAO_DTYPE_Q4_1 ? 4 : dtype == QIAO_DTYPE_Q5_0 ? 6 : 8);
  uint32_t qh = 0;
  if (dtype != QIAO_DTYPE_Q4_1) {
    const uint8_t *h = qs - 4;
    qh = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
  }
  for (int i = 0; i < 32; i++) {
    int q = (i < 16 ? qs[i] & 0x0f : qs[i - 16] >> 4) | (int)((qh >> i) & 1) << 4;
    if (dtype == QIAO_DTYPE_Q5_0)
      y[i] = d * (float)(q - 16);
    else
      y[i] = d * (float)q + m;
  }
}

/* iq4_nl and iq4_xs (format 1.3): a nibble indexes these 16 levels. */
static const int8_t iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                      1,    13,   25,  38,  53,  69,  89,  113};

/* 32 elements from 16 bytes of nibbles scaled by d: low nibbles are
 * elements 0..15, high nibbles 16..31. */
static void dequant_iq4_32(const uint8_t *qs, float d, float *y) {
  for (int j = 0; j < 16; j++) {
    y[j] = d * (float)iq4_levels[qs[j] & 0x0f];
    y[j + 16] = d * (float)iq4_levels[qs[j] >> 4];
  }
}

/* iq4_xs: f16 d, u16 scales_h, scales_l[4], qs[128]; sub-block ib's 6-bit
 * scale is the (ib % 2) nibble of scales_l[ib / 2] with bits 2 ib..2 ib+1 of
 * scales_h above it; its elements use d * (scale - 32). */
static void dequant_iq4_xs(const uint8_t *b, float *y) {
  float d = qiao__f16_to_f32(load_u16(b));
  uint16_t scales_h = load_u16(b + 2);
  for (int ib = 0; ib < 8; ib++) {
    int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0x0f) | ((scales_h >> (2 * ib)) & 3) << 4;
    dequant_iq4_32(b + 8 + 16 * ib, d * (float)(ls - 32), y + 32 * ib);
  }
}

void qiao__dtype_to_f32(qiao_dtype dtype, const void *src_v, float *dst, uint64_t n) {
  const uint8_t *src = src_v;
  switch (dtype) {
  case QIAO_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
  case QIAO_DTYPE_F16:
    for (uint64_t i = 0; i < n; i++)
      dst[i] = qiao__f16_to_f32(load_u16(src + 2 * i));
    break;
  case QIAO_DTYPE_BF16:
    for (uint64_t i = 0; i < n; i++)
      dst[i] = qiao__bf16_to_f32(load_u16(src + 2 * i));
    break;
  case QIAO_DTYPE_I32:
    for (uint64_t i = 0; i < n; i++) {
      int32_t v;
      memcpy(&v, src + 4 * i, 4);
      dst[i] = (float)v;
    }
    break;
  case QIAO_DTYPE_Q8_0:
    for (uint64_t b = 0; b < n / 32; b++) {
      const uint8_t *block = src + 34 * b;
      float d = qiao__f16_to_f32(load_u16(block));
      for (int j = 0; j < 32; j++)
        dst[32 * b + j] = d * (float)(int8_t)block[2 + j];
    }
    break;
  case QIAO_DTYPE_Q4_0:
    for (uint64_t b = 0; b < n / 32; b++) {
      const uint8_t *block = src + 18 * b;
      float d = qiao__f16_to_f32(load_u16(block));
      for (int j = 0; j < 16; j++) {
        dst[32 * b + j] = d * (float)((block[2 + j] & 0x0f) - 8);
        dst[32 * b + j + 16] = d * (float)((block[2 + j] >> 4) - 8);
      }
    }
    break;
  case QIAO_DTYPE_Q4_K:
  case QIAO_DTYPE_Q5_K: {
    uint32_t bytes = dtype == QIAO_DTYPE_Q4_K ? 144 : 176;
    for (uint64_t b = 0; b < n / 256; b++)
      dequant_q4_k_q5_k(src + bytes * b, dst + 256 * b, dtype == QIAO_DTYPE_Q5_K);
    break;
  }
  case QIAO_DTYPE_Q6_K:
    for (uint64_t b = 0; b < n / 256; b++)
      dequant_q6_k(src + 210 * b, dst + 256 * b);
    break;
  case QIAO_DTYPE_Q2_K:
    for (uint64_t b = 0; b < n / 256; b++)
      dequant_q2_k(src + 84 * b, dst + 256 * b);
    break;
  case QIAO_DTYPE_Q3_K:
    for (uint64_t b = 0; b < n / 256; b++)
      dequant_q3_k(src + 110 * b, dst + 256 * b);
    break;
  case QIAO_DTYPE_Q4_1:
  case QIAO_DTYPE_Q5_0:
  case QIAO_DTYPE_Q5_1: {
    uint32_t bytes = dtype == QIAO_DTYPE_Q4_1 ? 20 : dtype == QIAO_DTYPE_Q5_0 ? 22 : 24;
    for (uint64_t b = 0; b < n / 32; b++)
      dequant_q4_1_q5(src + bytes * b, dst + 32 * b, dtype);
    break;
  }
  case QIAO_DTYPE_F8_E4M3_B128: qiao__f8b128_to_f32(src, dst, n); break;
  case QIAO_DTYPE_IQ4_NL:
    for (uint64_t b = 0; b < n / 32; b++)
      dequant_iq4_32(src + 18 * b + 2, qiao__f16_to_f32(load_u16(src + 18 * b)), dst + 32 * b);
    break;
  case QIAO_DTYPE_IQ4_XS:
    for (uint64_t b = 0; b < n / 256; b++)
      dequant_iq4_xs(src + 136 * b, dst + 256 * b);
    break;
  default: break;
  }
}

/* (int)v clamped to [lo, hi]; NaN gives 0 (a cast of NaN or of an
 * out-of-range value would be undefined). */
static int to_int_clamped(float v, int lo, int hi) {
  if (!(v == v)) return 0;
  if (v <= (float)lo) return lo;
  if (v >= (float)hi) return hi;
  return (int)v;
}

static void quantize_q8_0(const float *x, uint8_t *block) {
  float amax = 0;
  for (int j = 0; j < 32; j++)
    amax = fmaxf(amax, fabsf(x[j]));
  float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
  store_u16(block, qiao__f32_to_f16(d));
  for (int j = 0; j < 32; j++)
    block[2 + j] = (uint8_t)(int8_t)to_int_clamped(roundf(x[j] * id), -127, 127);
}

static void quantize_q4_0(const float *x, uint8_t *block) {
  float amax = 0, max = 0;
  for (int j = 0; j < 32; j++)
    if (fabsf(x[j]) > amax) {
      amax = fabsf(x[j]);
      max = x[j];
    }
  float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
  store_u16(block, qiao__f32_to_f16(d));
  for (int j = 0; j < 16; j++) {
    int lo = to_int_clamped(x[j] * id + 8.5f, 0, 15);
    int hi = to_int_clamped(x[j + 16] * id + 8.5f, 0, 15);
    block[2 + j] = (uint8_t)(lo | (hi << 4));
  }
}

void qiao__dtype_from_f32(qiao_dtype dtype, const float *src, void *dst_v, uint64_t n) {
  uint8_t *dst = dst_v;
  switch (dtype) {
  case QIAO_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); break;
  case QIAO_DTYPE_F16:
    for (uint64_t i = 0; i < n; i++)
      store_u16(dst + 2 * i, qiao__f32_to_f16(src[i]));
    break;
  case QIAO_DTYPE_BF16:
    for (uint64_t i = 0; i < n; i++)
      store_u16(dst + 2 * i, qiao__f32_to_bf16(src[i]));
    break;
  case QIAO_DTYPE_I32:
    for (uint64_t i = 0; i < n; i++) {
      int32_t v = (int32_t)to_int_clamped(roundf(src[i]), INT32_MIN + 1, INT32_MAX - 127);
      memcpy(dst + 4 * i, &v, 4);
    }
    break;
  case QIAO_DTYPE_Q8_0:
    for (uint64_t b = 0; b < n / 32; b++)
      quantize_q8_0(src + 32 * b, dst + 34 * b);
    break;
  case QIAO_DTYPE_Q4_0:
    for (uint64_t b = 0; b < n / 32; b++)
      quantize_q4_0(src + 32 * b, dst + 18 * b);
    break;
  case QIAO_DTYPE_F8_E4M3_B128: qiao__f8b128_from_f32(src, dst, n); break;
  case QIAO_DTYPE_IQ4_NL:
  case QIAO_DTYPE_IQ4_XS: qiao__quantize_iq4(dtype, src, dst, n); break;
  default: /* the k-quants and q4_1 / q5_0 / q5_1 (quantize_k.c) */
    if (qiao__quantize_k_supports(dtype)) qiao__quantize_k(dtype, src, dst, n);
    break;
  }
}
