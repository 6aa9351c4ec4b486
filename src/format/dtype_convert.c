/* Element conversions between dtypes (see dtype_convert.h). The block
 * layouts match GGUF's so that files stay loadable by llama.cpp. */
#include "format/dtype_convert.h"

#include <math.h>
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
  default: break;
  }
}
