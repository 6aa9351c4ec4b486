/* The portable kernels: plain C, exact dequantization of 32 weights at a
 * time, then f32 multiply-adds into 8 lanes per row (element i into lane
 * i % 8), summed pairwise at the end. They run on any architecture and are
 * what the SIMD kernels are tested against. */
#include "cpu_internal.h"

/* Dequantizes elements [c, c + n) of a weight row (n <= 32, c % 32 == 0). */
static void chunk_to_f32(qiao_dev_dtype dtype, const uint8_t *w, uint64_t c, int n, float *out) {
  switch (dtype) {
  case QIAO_DEV_F32: memcpy(out, w + 4 * c, (size_t)n * 4); break;
  case QIAO_DEV_F16:
    for (int i = 0; i < n; i++)
      out[i] = qiao__cpu_f16_to_f32(qiao__cpu_load_u16(w + 2 * (c + i)));
    break;
  case QIAO_DEV_BF16:
    for (int i = 0; i < n; i++)
      out[i] = qiao__cpu_bf16_to_f32(qiao__cpu_load_u16(w + 2 * (c + i)));
    break;
  case QIAO_DEV_Q8_0:
  case QIAO_DEV_Q4_0:
    qiao__cpu_dequantize_row(dtype, w + c / 32 * (dtype == QIAO_DEV_Q8_0 ? 34 : 18), 32, out);
    break;
  default: qiao__cpu_dequant_chunk(dtype, w, c, out); /* k % 32 == 0 for these */
  }
}

static void dot_rows(qiao_dev_dtype dtype, const uint8_t *w, const float *const *x, int nr,
                     uint64_t k, float *out) {
  float acc[QIAO__CPU_MAX_ROWS][8] = {{0}};
  float wv[32];
  for (uint64_t c = 0; c < k; c += 32) {
    int n = k - c < 32 ? (int)(k - c) : 32;
    chunk_to_f32(dtype, w, c, n, wv);
    for (int r = 0; r < nr; r++) {
      const float *xr = x[r] + c;
      for (int i = 0; i < n; i++)
        acc[r][i % 8] += wv[i] * xr[i];
    }
  }
  for (int r = 0; r < nr; r++) {
    const float *a = acc[r];
    out[r] = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
  }
}

#define DOT(name, dtype)                                                                           \
  static void name(const uint8_t *w, const float *const *x, int nr, uint64_t k, float *out) {      \
    dot_rows(dtype, w, x, nr, k, out);                                                             \
  }
DOT(dot_f32, QIAO_DEV_F32)
DOT(dot_f16, QIAO_DEV_F16)
DOT(dot_bf16, QIAO_DEV_BF16)
DOT(dot_q8_0, QIAO_DEV_Q8_0)
DOT(dot_q4_0, QIAO_DEV_Q4_0)
DOT(dot_q4_k, QIAO_DEV_Q4_K)
DOT(dot_q5_k, QIAO_DEV_Q5_K)
DOT(dot_q6_k, QIAO_DEV_Q6_K)
DOT(dot_q2_k, QIAO_DEV_Q2_K)
DOT(dot_q3_k, QIAO_DEV_Q3_K)
DOT(dot_q4_1, QIAO_DEV_Q4_1)
DOT(dot_q5_0, QIAO_DEV_Q5_0)
DOT(dot_q5_1, QIAO_DEV_Q5_1)
DOT(dot_f8_e4m3_b128, QIAO_DEV_F8_E4M3_B128)
DOT(dot_iq4_nl, QIAO_DEV_IQ4_NL)
DOT(dot_iq4_xs, QIAO_DEV_IQ4_XS)

static void axpy_f32(float *y, float a, const uint8_t *x, uint64_t n) {
  const float *xf = (const float *)(const void *)x;
  for (uint64_t i = 0; i < n; i++)
    y[i] += a * xf[i];
}

static void axpy_f16(float *y, float a, const uint8_t *x, uint64_t n) {
  for (uint64_t i = 0; i < n; i++)
    y[i] += a * qiao__cpu_f16_to_f32(qiao__cpu_load_u16(x + 2 * i));
}

static void dequant_q8_0(const uint8_t *w, uint64_t k, float *out) {
  qiao__cpu_dequantize_row(QIAO_DEV_Q8_0, w, k, out);
}
static void dequant_q4_0(const uint8_t *w, uint64_t k, float *out) {
  qiao__cpu_dequantize_row(QIAO_DEV_Q4_0, w, k, out);
}

static const qiao__cpu_kernels scalar_kernels = {
    .name = "scalar",
    .quant_dot_any_nr = 1,
    .dot = {dot_f32, dot_f16, dot_bf16, dot_q8_0, dot_q4_0, NULL, dot_q4_k, dot_q5_k, dot_q6_k,
            dot_q2_k, dot_q3_k, dot_q4_1, dot_q5_0, dot_q5_1, dot_f8_e4m3_b128, dot_iq4_nl,
            dot_iq4_xs},
    .dequant = {[QIAO_DEV_Q8_0] = dequant_q8_0,
                [QIAO_DEV_Q4_0] = dequant_q4_0,
                QIAO__CPU_NEW_BLOCK_DEQUANT,
                [QIAO_DEV_F8_E4M3_B128] = qiao__cpu_dequant_f8_e4m3_b128},
    .axpy = {axpy_f32, axpy_f16},
    .vec_q8 = {QIAO__CPU_NEW_BLOCK_VEC_Q8, [QIAO_DEV_Q8_0] = qiao__cpu_vec_q8_q8_0,
               [QIAO_DEV_Q4_0] = qiao__cpu_vec_q8_q4_0},
    .gemm_q8 = {[QIAO_DEV_Q8_0] = qiao__cpu_gemm_q8_scalar_q8_0,
                [QIAO_DEV_Q4_0] = qiao__cpu_gemm_q8_scalar_q4_0},
};

const qiao__cpu_kernels *qiao__cpu_kernels_scalar(void) {
  return &scalar_kernels;
}
