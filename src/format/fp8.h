/* Block-scaled FP8 (dtype f8_e4m3_b128, format.md §4.1 and §4.2): the E4M3
 * element code, the 132-byte block of 128 elements, and the transcoding of
 * Hugging Face FP8 checkpoints (F8_E4M3 weights with 128 x 128 block scales)
 * into that block layout. */
#ifndef QIAO_FP8_H
#define QIAO_FP8_H

#include <stdbool.h>
#include <stdint.h>

#define QIAO__F8_BLOCK 128u       /* elements per block */
#define QIAO__F8_BLOCK_BYTES 132u /* f32 scale + 128 codes */
#define QIAO__F8_MAX 448.0f       /* the largest finite E4M3 magnitude */

/* 0x7F and 0xFF: the two NaN codes of E4M3 (no infinities). */
static inline bool qiao__e4m3_is_nan(uint8_t q) {
  return (q & 0x7f) == 0x7f;
}

/* The exact value of an E4M3 code (NaN for 0x7F / 0xFF): sign, exponent e
 * (4 bits, bias 7) and mantissa m (3 bits): e = 0 gives m/8 * 2^-6, else
 * (1 + m/8) * 2^(e-7). */
float qiao__e4m3_to_f32(uint8_t q);

/* The E4M3 code nearest to v (ties to the even code, i.e. the even
 * mantissa), magnitudes beyond 448 saturating to +-448; NaN gives 0. */
uint8_t qiao__f32_to_e4m3(float v);

/* `n` elements (a multiple of 128) of f8_e4m3_b128 blocks -> floats:
 * x = fl32(d * e4m3(q)), one rounding. */
void qiao__f8b128_to_f32(const uint8_t *blocks, float *dst, uint64_t n);

/* `n` floats (a multiple of 128) -> blocks: per block d = amax / 448 in f32
 * (amax over the finite values), q = e4m3(x / d) (infinities saturate,
 * NaN gives 0); every q is 0 when d is 0 (format.md §4.2). */
void qiao__f8b128_from_f32(const float *src, uint8_t *blocks, uint64_t n);

/* The index of the first NaN code among `n` codes, or n. */
uint64_t qiao__e4m3_find_nan(const uint8_t *codes, uint64_t n);

#endif
