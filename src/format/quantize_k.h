/* Quantizers for GGUF's k-quant block types (q2_k .. q6_k) and the older
 * q4_1, q5_0 and q5_1: f32 values -> blocks bit-identical to GGUF's, so that
 * files written with them load in llama.cpp. Each scale and min is chosen
 * by a search that minimizes the block's squared reconstruction error
 * (docs/spec/format.md §4.2 describes it); a block's bytes depend only on
 * its own values, so the output is the same on every run and thread count. */
#ifndef QIAO_QUANTIZE_K_H
#define QIAO_QUANTIZE_K_H

#include <stdbool.h>
#include <stdint.h>

#include "qiao/model.h"

/* Whether qiao__quantize_k() handles `dtype`. */
bool qiao__quantize_k_supports(qiao_dtype dtype);

/* `n` floats at `src` -> blocks of `dtype` at `dst`; `n` is a multiple of
 * the dtype's block_elems. Non-finite inputs give finite (meaningless)
 * blocks, never undefined behaviour. */
void qiao__quantize_k(qiao_dtype dtype, const float *src, void *dst, uint64_t n);

#endif
