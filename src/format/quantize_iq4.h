/* Quantizers for GGUF's non-linear 4-bit types iq4_nl and iq4_xs (format
 * 1.3, format.md §4.1 and §4.2): f32 values -> blocks bit-identical in
 * layout to GGUF's, each nibble an index into the 16 fixed levels. Every
 * block (iq4_nl) or sub-block (iq4_xs) scale comes from a search that
 * minimizes the squared reconstruction error; a block's bytes depend only
 * on its own values, so the output is the same on every run. */
#ifndef QIAO_QUANTIZE_IQ4_H
#define QIAO_QUANTIZE_IQ4_H

#include <stdint.h>

#include "qiao/model.h"

/* `n` floats at `src` -> blocks of `dtype` (QIAO_DTYPE_IQ4_NL: n a multiple
 * of 32; QIAO_DTYPE_IQ4_XS: of 256) at `dst`. Non-finite inputs give
 * finite (meaningless) blocks, never undefined behaviour. */
void qiao__quantize_iq4(qiao_dtype dtype, const float *src, void *dst, uint64_t n);

#endif
