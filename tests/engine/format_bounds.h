/* Error bounds that follow from the element types' definitions
 * (docs/spec/format.md §4.1-4.2), not from any measurement: how far a weight
 * converted to f16, bf16, q8_0 or q4_0 may lie from its f32 original, and so
 * how far a matmul output may move. Header-only.
 *
 * Per weight w (converted w'):
 *  - f16, round to nearest: |w' - w| <= 2^-11 |w| (half an ulp of 11
 *    significant bits) in the normal range, <= 2^-25 below 2^-14 (half the
 *    subnormal spacing 2^-24).
 *  - bf16, round to nearest on 8 significant bits: |w' - w| <= 2^-8 |w|.
 *  - q8_0, a block of 32 with amax = max |w|: d = amax / 127, q = round(w / d)
 *    so |w - q d| <= d / 2; the stored scale d16 is d rounded to f16, so
 *    |q d16 - q d| <= 127 |d16 - d| <= 127 max(2^-11 d, 2^-25). Together
 *    |w' - w| <= d / 2 + 127 max(2^-11 d, 2^-25) (about amax / 226), plus
 *    1e-4 d for w / d being computed as w * (1 / d) in binary32 (relative
 *    error 2^-23 of a quotient <= 127: 2e-5 of a step).
 *  - q4_0, a block with m the value of largest magnitude: d = m / -8, so
 *    w / d lies in [-8, 8]; q = trunc(w / d + 8.5) clamped to 15 rounds to
 *    the nearest step (|w - (q - 8) d| <= |d| / 2) except where w / d >= 7.5
 *    (values of the sign opposite to m above 15/16 of amax), clamped to 7:
 *    there |w - 7 d| <= |d|. The f16 scale adds 8 max(2^-11 |d|, 2^-25),
 *    and binary32 arithmetic 1e-4 |d|.
 * A matmul output y_i = sum_j w_ij x_j then moves by at most
 * sum_j bound(w_ij) |x_j| (format_bounds_matvec). */
#ifndef QIAO_TEST_FORMAT_BOUNDS_H
#define QIAO_TEST_FORMAT_BOUNDS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/dtype_convert.h"
#include "qiao/model.h"

static inline double f16_scale_error(double d) {
  return fmax(ldexp(fabs(d), -11), ldexp(1.0, -25));
}

/* bound[0..n) for the f32 weights w[0..n) converted to `dtype` (n a
 * multiple of 32 for the block types). Returns 0, or -1 for a type this
 * header does not know. */
static inline int format_bounds(qiao_dtype dtype, const float *w, uint64_t n, double *bound) {
  switch (dtype) {
  case QIAO_DTYPE_F32:
    for (uint64_t i = 0; i < n; i++)
      bound[i] = 0;
    return 0;
  case QIAO_DTYPE_F16:
    for (uint64_t i = 0; i < n; i++)
      bound[i] = fabs(w[i]) < ldexp(1.0, -14) ? ldexp(1.0, -25) : ldexp(fabs(w[i]), -11);
    return 0;
  case QIAO_DTYPE_BF16:
    for (uint64_t i = 0; i < n; i++)
      bound[i] = ldexp(fabs(w[i]), -8);
    return 0;
  case QIAO_DTYPE_Q8_0:
    for (uint64_t b = 0; b < n / 32; b++) {
      double amax = 0;
      for (int j = 0; j < 32; j++)
        amax = fmax(amax, fabs(w[32 * b + j]));
      double d = amax / 127;
      for (int j = 0; j < 32; j++)
        bound[32 * b + j] = d / 2 + 127 * f16_scale_error(d) + 1e-4 * d;
    }
    return 0;
  case QIAO_DTYPE_Q4_0:
    for (uint64_t b = 0; b < n / 32; b++) {
      double m = 0;
      for (int j = 0; j < 32; j++)
        if (fabs(w[32 * b + j]) > fabs(m)) m = w[32 * b + j];
      double d = m / -8;
      for (int j = 0; j < 32; j++) {
        double ratio = d != 0 ? w[32 * b + j] / d : 0;
        double step = ratio >= 7.5 - 1e-4 ? fabs(d) : fabs(d) / 2;
        bound[32 * b + j] = step + 8 * f16_scale_error(d) + 1e-4 * fabs(d);
      }
    }
    return 0;
  default: return -1;
  }
}

/* The largest |w' - w| / bound over a converted tensor `conv` of the f32
 * tensor `orig` (same shape): <= 1 when the conversion keeps the format's
 * promise. INFINITY for a mismatch of shape or an unknown type. */
static inline double format_bounds_worst_ratio(const qiao_tensor *orig, const qiao_tensor *conv) {
  if (orig->dtype != QIAO_DTYPE_F32 || orig->n_bytes % 4 != 0) return INFINITY;
  uint64_t n = orig->n_bytes / 4;
  float *w = malloc(n * sizeof(float)), *back = malloc(n * sizeof(float));
  double *bound = malloc(n * sizeof(double)), worst = 0;
  memcpy(w, orig->data, n * 4);
  if (format_bounds(conv->dtype, w, n, bound) != 0)
    worst = INFINITY;
  else {
    qiao__dtype_to_f32(conv->dtype, conv->data, back, n);
    for (uint64_t i = 0; i < n; i++) {
      double err = fabs((double)back[i] - w[i]);
      double r = bound[i] > 0 ? err / bound[i] : (err > 0 ? INFINITY : 0);
      if (!(r <= worst)) worst = r;
    }
  }
  free(w), free(back), free(bound);
  return worst;
}

/* The largest ratio over every tensor of `conv` found by name in `orig`
 * (the f32 model it was converted from); *n_checked counts them. */
static inline double format_bounds_model(const qiao_model *orig, const qiao_model *conv,
                                         size_t *n_checked, const char **worst_name) {
  double worst = 0;
  *n_checked = 0;
  for (uint64_t i = 0; i < qiao_model_tensor_count(conv); i++) {
    const qiao_tensor *c = qiao_model_tensor_at(conv, i);
    const qiao_tensor *o = qiao_model_tensor_find(orig, c->name);
    if (o == NULL || o->dtype != QIAO_DTYPE_F32) continue;
    int same_shape =
        o->n_dims == c->n_dims && memcmp(o->shape, c->shape, o->n_dims * sizeof(o->shape[0])) == 0;
    double r = same_shape ? format_bounds_worst_ratio(o, c) : INFINITY;
    (*n_checked)++;
    if (!(r <= worst)) {
      worst = r;
      if (worst_name) *worst_name = c->name;
    }
  }
  return worst;
}

/* bound_y[r] = sum_c bound(w[r][c]) |x[c]|: how far row r of W x may move
 * when W (rows x cols, f32) is converted to `dtype`. */
static inline void format_bounds_matvec(qiao_dtype dtype, const float *w, uint64_t rows,
                                        uint64_t cols, const double *x, double *bound_y) {
  double *b = malloc(cols * sizeof(double));
  for (uint64_t r = 0; r < rows; r++) {
    format_bounds(dtype, w + r * cols, cols, b);
    double s = 0;
    for (uint64_t c = 0; c < cols; c++)
      s += b[c] * fabs(x[c]);
    bound_y[r] = s;
  }
  free(b);
}

#endif
