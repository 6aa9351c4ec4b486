/* Tensor element types: their layouts (GGUF-compatible blocks for the
 * quantized ones) and the bytes a row of them takes. */
#include <string.h>

#include "core/checked.h"
#include "format/model_internal.h"

static const qiao_dtype_info dtype_infos[QIAO_DTYPE_COUNT] = {
    [QIAO_DTYPE_F32] = {"f32", 1, 4, 32, "none"},
    [QIAO_DTYPE_F16] = {"f16", 1, 2, 16, "none"},
    [QIAO_DTYPE_BF16] = {"bf16", 1, 2, 16, "none"},
    /* 32 values: one f16 scale then 32 int8 */
    [QIAO_DTYPE_Q8_0] = {"q8_0", 32, 34, 8, "f16"},
    /* 32 values: one f16 scale then 16 bytes of 4-bit values (low nibbles
     * hold elements 0..15, high nibbles 16..31) */
    [QIAO_DTYPE_Q4_0] = {"q4_0", 32, 18, 4, "f16"},
    [QIAO_DTYPE_I32] = {"i32", 1, 4, 32, "none"},
    /* Format 1.1 (GGUF's layouts, format.md §4.1). 256 values: f16 d, f16
     * dmin, 12 bytes of eight 6-bit scales and mins, 128 bytes of nibbles */
    [QIAO_DTYPE_Q4_K] = {"q4_k", 256, 144, 4, "f16+u6"},
    /* as q4_k plus 32 bytes holding the fifth bit of each value */
    [QIAO_DTYPE_Q5_K] = {"q5_k", 256, 176, 5, "f16+u6"},
    /* 128 bytes of low nibbles, 64 of high 2-bit pairs, sixteen i8 scales, f16 d */
    [QIAO_DTYPE_Q6_K] = {"q6_k", 256, 210, 6, "f16+i8"},
    /* sixteen bytes of 4-bit scale and min, 64 bytes of 2-bit values, f16 d, f16 dmin */
    [QIAO_DTYPE_Q2_K] = {"q2_k", 256, 84, 2, "f16+u4"},
    /* 32 bytes of high bits, 64 of 2-bit values, 12 of sixteen 6-bit scales, f16 d */
    [QIAO_DTYPE_Q3_K] = {"q3_k", 256, 110, 3, "f16+i6"},
    /* 32 values: f16 d, f16 m, 16 bytes of nibbles as q4_0 */
    [QIAO_DTYPE_Q4_1] = {"q4_1", 32, 20, 4, "f16"},
    /* 32 values: f16 d, 4 bytes of fifth bits, 16 bytes of nibbles */
    [QIAO_DTYPE_Q5_0] = {"q5_0", 32, 22, 5, "f16"},
    /* 32 values: f16 d, f16 m, 4 bytes of fifth bits, 16 bytes of nibbles */
    [QIAO_DTYPE_Q5_1] = {"q5_1", 32, 24, 5, "f16"},
    /* Format 1.2 (format.md §4.1). 128 values: f32 d, then 128 E4M3 codes */
    [QIAO_DTYPE_F8_E4M3_B128] = {"f8_e4m3_b128", 128, 132, 8, "f32"},
    /* Format 1.3 (format.md §4.1). 32 values: f16 d, 16 bytes of nibbles,
     * each an index into the 16 non-linear levels */
    [QIAO_DTYPE_IQ4_NL] = {"iq4_nl", 32, 18, 4, "f16"},
    /* 256 values: f16 d, eight 6-bit sub-block scales (u16 high bits, 4 bytes
     * of low nibbles), 128 bytes of nibbles as iq4_nl */
    [QIAO_DTYPE_IQ4_XS] = {"iq4_xs", 256, 136, 4, "f16+i6"},
};

const qiao_dtype_info *qiao_dtype_get_info(qiao_dtype dtype) {
  if ((unsigned)dtype >= QIAO_DTYPE_COUNT) return NULL;
  return &dtype_infos[dtype];
}

qiao_status *qiao_dtype_from_name(const char *name, qiao_dtype *out_dtype) {
  for (int i = 0; i < QIAO_DTYPE_COUNT; i++) {
    if (name != NULL && strcmp(name, dtype_infos[i].name) == 0) {
      *out_dtype = (qiao_dtype)i;
      return NULL;
    }
  }
  return qiao__error(QIAO_INVALID_ARGUMENT,
                     "unknown dtype '%s' (expected f32, f16, bf16, q8_0, q4_0, i32, q4_k, "
                     "q5_k, q6_k, q2_k, q3_k, q4_1, q5_0, q5_1, f8_e4m3_b128, iq4_nl or iq4_xs)",
                     name ? name : "");
}

qiao_status *qiao_dtype_row_bytes(qiao_dtype dtype, uint64_t n_elems, uint64_t *out_bytes) {
  const qiao_dtype_info *info = qiao_dtype_get_info(dtype);
  if (info == NULL) return qiao__error(QIAO_INVALID_ARGUMENT, "dtype %d is not valid", (int)dtype);
  if (n_elems % info->block_elems != 0)
    return qiao__error(QIAO_MALFORMED,
                       "row of %llu elements is not a multiple of the %s block (%u)",
                       (unsigned long long)n_elems, info->name, info->block_elems);
  uint64_t bytes;
  if (!qiao__mul_u64(n_elems / info->block_elems, info->block_bytes, &bytes))
    return qiao__error(QIAO_MALFORMED, "row of %llu %s elements overflows",
                       (unsigned long long)n_elems, info->name);
  *out_bytes = bytes;
  return NULL;
}
