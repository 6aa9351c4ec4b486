/* Block-scaled FP8 E4M3 (see fp8.h): element codes and blocks. */
#include "format/fp8.h"

#include <math.h>
#include <string.h>

float qiao__e4m3_to_f32(uint8_t q) {
  uint32_t sign = (uint32_t)(q & 0x80u) << 24, e = (q >> 3) & 15u, m = q & 7u;
  if (qiao__e4m3_is_nan(q)) return NAN;
  float v;
  if (e == 0) {
    v = (float)m * 0x1p-9f; /* subnormal: m/8 * 2^-6, exact */
    return sign ? -v : v;
  }
  uint32_t bits = sign | ((e - 7u + 127u) << 23) | (m << 20);
  memcpy(&v, &bits, 4);
  return v;
}

uint8_t qiao__f32_to_e4m3(float v) {
  if (isnan(v)) return 0;
  uint8_t sign = signbit(v) ? 0x80 : 0;
  double a = fabs((double)v);
  if (a >= 448.0) return (uint8_t)(sign | 0x7e);
  if (a == 0) return sign;
  int exp2;
  frexp(a, &exp2);    /* a in [2^(exp2-1), 2^exp2) */
  int e = exp2 - 1;   /* the unbiased exponent of a */
  if (e < -6) e = -6; /* subnormals share the spacing of the smallest binade */
  double spacing = ldexp(1.0, e - 3);
  double r = nearbyint(a / spacing); /* a / spacing is exact; ties to even */
  /* subnormal (e = -6, r < 8): the code is r; otherwise r in [8, 16] and a
   * carry to 16 moves into the next exponent by itself */
  unsigned code = e == -6 && r < 8 ? (unsigned)r : (unsigned)((e + 7) << 3) + (unsigned)r - 8u;
  if (code > 0x7e) code = 0x7e;
  return (uint8_t)(sign | code);
}

void qiao__f8b128_to_f32(const uint8_t *blocks, float *dst, uint64_t n) {
  for (uint64_t b = 0; b < n / QIAO__F8_BLOCK; b++) {
    const uint8_t *block = blocks + b * QIAO__F8_BLOCK_BYTES;
    float d;
    memcpy(&d, block, 4);
    for (uint32_t i = 0; i < QIAO__F8_BLOCK; i++)
      dst[b * QIAO__F8_BLOCK + i] = d * qiao__e4m3_to_f32(block[4 + i]);
  }
}

void qiao__f8b128_from_f32(const float *src, uint8_t *blocks, uint64_t n) {
  for (uint64_t b = 0; b < n / QIAO__F8_BLOCK; b++) {
    const float *x = src + b * QIAO__F8_BLOCK;
    uint8_t *block = blocks + b * QIAO__F8_BLOCK_BYTES;
    float amax = 0;
    for (uint32_t i = 0; i < QIAO__F8_BLOCK; i++)
      if (isfinite(x[i]) && fabsf(x[i]) > amax) amax = fabsf(x[i]);
    float d = amax / QIAO__F8_MAX;
    memcpy(block, &d, 4);
    for (uint32_t i = 0; i < QIAO__F8_BLOCK; i++)
      block[4 + i] = d > 0 ? qiao__f32_to_e4m3(x[i] / d) : 0;
  }
}

uint64_t qiao__e4m3_find_nan(const uint8_t *codes, uint64_t n) {
  for (uint64_t i = 0; i < n; i++)
    if (qiao__e4m3_is_nan(codes[i])) return i;
  return n;
}
