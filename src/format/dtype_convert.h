/* Converting tensor elements between dtypes through f32: half-precision
 * rounding, and GGUF's q8_0 / q4_0 block quantization. Used by the writers
 * for `qiao convert --type`. */
#ifndef QIAO_DTYPE_CONVERT_H
#define QIAO_DTYPE_CONVERT_H

#include <stdint.h>

#include "qiao/model.h"

/* IEEE half <-> float, rounding to nearest even (NaN stays NaN, overflow
 * becomes infinity). */
uint16_t qiao__f32_to_f16(float x);
float qiao__f16_to_f32(uint16_t h);
/* bfloat16 <-> float, rounding to nearest even. */
uint16_t qiao__f32_to_bf16(float x);
float qiao__bf16_to_f32(uint16_t h);

/* `n` elements of `dtype` at `src` -> floats. `n` is a multiple of the block
 * size; I32 values are converted to float. The block types of format 1.1
 * (q4_k .. q5_1) dequantize by format.md §4.1's formulas, bit for bit as
 * llama.cpp's dequantize_row_* (tests/peers/test_dequant_llamacpp.c). */
void qiao__dtype_to_f32(qiao_dtype dtype, const void *src, float *dst, uint64_t n);

/* `n` floats -> `dtype` at `dst` (n a multiple of the block size). q8_0:
 * per block of 32, d = amax / 127 and q = round(x / d). q4_0: d = m / -8 where
 * m is the value of largest magnitude, q = min(15, (int)(x / d + 8.5)),
 * elements 0..15 in the low nibbles and 16..31 in the high ones. */
void qiao__dtype_from_f32(qiao_dtype dtype, const float *src, void *dst, uint64_t n);

#endif
