/* AVX-512 VNNI kernels for Q8 activations on the block types of ABI 1.3
 * read as stored (qiao__cpu_vec_q8_fn, cpu_internal.h): Q4_K, Q5_K, Q6_K and
 * Q5_0, what llama.cpp's Q4_K_M, Q5_K_M and Q6_K files mostly hold (Q2_K,
 * Q3_K: cpu_q2_k_q3_k_x86.c; Q4_1, Q5_1: cpu_q4_1_q5_1_x86.c). Decode is
 * bound by the bytes of weights read, so the weights are never expanded or copied: each
 * block's quants are unpacked to unsigned bytes in registers and multiplied
 * with the int8 activations by vpdpbusd (exact integer sums per 4
 * elements); the scales are applied in f32 per lane, 16 lanes summed at the
 * end. Up to 4 rows of x share each unpacked weight vector; in prefill the
 * vec_q8_rows kernels (Q5_0, Q4_K, Q5_K) also let several weight rows share
 * each load of x, with the same operations per pair. A result depends on
 * (w, x row, k) only. */
#include "cpu_internal.h"

#if defined(__x86_64__)
#include "cpu_simd_x86.h"

/* The fifth bits of Q5_K sub-blocks a (bytes 0..31) and b (32..63) at 16,
 * from the 32 bytes qh repeated in both halves. */
INLINE TVNNI __m512i fifth2(__m512i qh2, int a, int b) {
  __m512i shift =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi64x(a)), _mm256_set1_epi64x(b), 1);
  return _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi64(qh2, shift), _mm512_set1_epi8(1)), 4);
}

/* ---- Q4_K / Q5_K: per super-block, 8 sub-blocks of 32 = 8 blocks of x ---- */
INLINE TVNNI void q4_k_rows(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                            const int NR, const int FIVE) {
  const uint64_t block_bytes = FIVE ? 176 : 144;
  const __m512i low = _mm512_set1_epi8(0x0f);
  __m512 acc[4];
  __m256 macc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm512_setzero_ps(), macc[r] = _mm256_setzero_ps();
  for (uint64_t s = 0; s < k / 256; s++) {
    const uint8_t *b = w + s * block_bytes, *sb = b + 4;
    _mm_prefetch((const char *)b + 2048, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 64, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 128, _MM_HINT_T0);
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++)
      qiao__cpu_k4_scale_min(sb, j, &sc[j], &mn[j]);
    __m256 scv = _mm256_mul_ps(_mm256_set1_ps(f16(b)),
                               _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)sc)));
    __m256 mnv = _mm256_mul_ps(_mm256_set1_ps(f16(b + 2)),
                               _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)mn)));
    const uint8_t *qs = b + (FIVE ? 48 : 16);
    __m512i q0 = _mm512_loadu_si512(qs), q1 = _mm512_loadu_si512(qs + 64);
    __m512i l0 = _mm512_and_si512(q0, low), h0 = _mm512_and_si512(_mm512_srli_epi16(q0, 4), low);
    __m512i l1 = _mm512_and_si512(q1, low), h1 = _mm512_and_si512(_mm512_srli_epi16(q1, 4), low);
    if (FIVE) {
      __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b + 16));
      __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), qh, 1);
      l0 = _mm512_or_si512(l0, fifth2(qh2, 0, 2));
      h0 = _mm512_or_si512(h0, fifth2(qh2, 1, 3));
      l1 = _mm512_or_si512(l1, fifth2(qh2, 4, 6));
      h1 = _mm512_or_si512(h1, fifth2(qh2, 5, 7));
    }
    for (int r = 0; r < NR; r++) {
      const int8_t *xq = x[r].q + s * 256;
      __m256 dx = _mm256_loadu_ps(x[r].d + s * 8);
      __m256 f = _mm256_mul_ps(scv, dx);
      __m512i z = _mm512_setzero_si512();
      __m512i d02 = _mm512_dpbusd_epi32(z, l0, x2(xq, xq + 64));
      __m512i d13 = _mm512_dpbusd_epi32(z, h0, x2(xq + 32, xq + 96));
      __m512i d46 = _mm512_dpbusd_epi32(z, l1, x2(xq + 128, xq + 192));
      __m512i d57 = _mm512_dpbusd_epi32(z, h1, x2(xq + 160, xq + 224));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d02), spread2(f, 0, 2), acc[r]);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d13), spread2(f, 1, 3), acc[r]);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d46), spread2(f, 4, 6), acc[r]);
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d57), spread2(f, 5, 7), acc[r]);
      __m256 sums =
          _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(const void *)(x[r].sum + s * 8)));
      macc[r] = _mm256_fmadd_ps(_mm256_mul_ps(mnv, dx), sums, macc[r]);
    }
  }
  for (int r = 0; r < NR; r++) {
    __m256 m = macc[r];
    __m128 m4 = _mm_add_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_add_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_add_ss(m4, _mm_movehdup_ps(m4));
    out[r] = _mm512_reduce_add_ps(acc[r]) - _mm_cvtss_f32(m4);
  }
}

/* q4_k_rows on WR weight rows at once, each x row's vectors loaded once for
 * all of them; every (weight row, x row) pair runs the operations of
 * q4_k_rows in the same order, so the bits are the same. */
INLINE TVNNI void q4_k_wrows(const uint8_t *w, uint64_t row_bytes, const qiao__cpu_q8_row *x,
                             uint64_t k, float *out, int out_stride, const int WR, const int NR,
                             const int FIVE) {
  const uint64_t block_bytes = FIVE ? 176 : 144;
  const __m512i low = _mm512_set1_epi8(0x0f);
  __m512 acc[2][4];
  __m256 macc[2][4];
  for (int j = 0; j < WR; j++)
    for (int r = 0; r < NR; r++)
      acc[j][r] = _mm512_setzero_ps(), macc[j][r] = _mm256_setzero_ps();
  for (uint64_t s = 0; s < k / 256; s++) {
    __m256 scv[2], mnv[2];
    __m512i l0[2], h0[2], l1[2], h1[2];
    for (int j = 0; j < WR; j++) {
      const uint8_t *b = w + j * row_bytes + s * block_bytes, *sb = b + 4;
      _mm_prefetch((const char *)b + 2048, _MM_HINT_T0);
      _mm_prefetch((const char *)b + 2048 + 64, _MM_HINT_T0);
      _mm_prefetch((const char *)b + 2048 + 128, _MM_HINT_T0);
      int sc[8], mn[8];
      for (int t = 0; t < 8; t++)
        qiao__cpu_k4_scale_min(sb, t, &sc[t], &mn[t]);
      scv[j] = _mm256_mul_ps(_mm256_set1_ps(f16(b)),
                             _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)sc)));
      mnv[j] = _mm256_mul_ps(_mm256_set1_ps(f16(b + 2)),
                             _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)mn)));
      const uint8_t *qs = b + (FIVE ? 48 : 16);
      __m512i q0 = _mm512_loadu_si512(qs), q1 = _mm512_loadu_si512(qs + 64);
      l0[j] = _mm512_and_si512(q0, low), h0[j] = _mm512_and_si512(_mm512_srli_epi16(q0, 4), low);
      l1[j] = _mm512_and_si512(q1, low), h1[j] = _mm512_and_si512(_mm512_srli_epi16(q1, 4), low);
      if (FIVE) {
        __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b + 16));
        __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), qh, 1);
        l0[j] = _mm512_or_si512(l0[j], fifth2(qh2, 0, 2));
        h0[j] = _mm512_or_si512(h0[j], fifth2(qh2, 1, 3));
        l1[j] = _mm512_or_si512(l1[j], fifth2(qh2, 4, 6));
        h1[j] = _mm512_or_si512(h1[j], fifth2(qh2, 5, 7));
      }
    }
    for (int r = 0; r < NR; r++) {
      const int8_t *xq = x[r].q + s * 256;
      __m256 dx = _mm256_loadu_ps(x[r].d + s * 8);
      __m512i x02 = x2(xq, xq + 64), x13 = x2(xq + 32, xq + 96);
      __m512i x46 = x2(xq + 128, xq + 192), x57 = x2(xq + 160, xq + 224);
      __m256 sums =
          _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(const void *)(x[r].sum + s * 8)));
      for (int j = 0; j < WR; j++) {
        __m256 f = _mm256_mul_ps(scv[j], dx);
        __m512i z = _mm512_setzero_si512();
        __m512i d02 = _mm512_dpbusd_epi32(z, l0[j], x02);
        __m512i d13 = _mm512_dpbusd_epi32(z, h0[j], x13);
        __m512i d46 = _mm512_dpbusd_epi32(z, l1[j], x46);
        __m512i d57 = _mm512_dpbusd_epi32(z, h1[j], x57);
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d02), spread2(f, 0, 2), acc[j][r]);
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d13), spread2(f, 1, 3), acc[j][r]);
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d46), spread2(f, 4, 6), acc[j][r]);
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d57), spread2(f, 5, 7), acc[j][r]);
        macc[j][r] = _mm256_fmadd_ps(_mm256_mul_ps(mnv[j], dx), sums, macc[j][r]);
      }
    }
  }
  for (int j = 0; j < WR; j++)
    for (int r = 0; r < NR; r++) {
      __m256 m = macc[j][r];
      __m128 m4 = _mm_add_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      m4 = _mm_add_ps(m4, _mm_movehl_ps(m4, m4));
      m4 = _mm_add_ss(m4, _mm_movehdup_ps(m4));
      out[j * out_stride + r] = _mm512_reduce_add_ps(acc[j][r]) - _mm_cvtss_f32(m4);
    }
}

#define VEC_Q8_ROWS_K4(name, FIVE_)                                                                \
  TVNNI void name(const uint8_t *w, uint64_t row_bytes, int nw, const qiao__cpu_q8_row *x, int nr, \
                  uint64_t k, float *out) {                                                        \
    for (int j0 = 0; j0 < nw; j0 += 2) {                                                           \
      int wr = nw - j0 < 2 ? 1 : 2;                                                                \
      const uint8_t *wj = w + (uint64_t)j0 * row_bytes;                                            \
      for (int r0 = 0; r0 < nr; r0 += 4) {                                                         \
        int n = nr - r0 < 4 ? nr - r0 : 4;                                                         \
        float *o = out + j0 * nr + r0;                                                             \
        if (wr == 2) {                                                                             \
          switch (n) {                                                                             \
          case 4: q4_k_wrows(wj, row_bytes, x + r0, k, o, nr, 2, 4, FIVE_); break;                 \
          case 3: q4_k_wrows(wj, row_bytes, x + r0, k, o, nr, 2, 3, FIVE_); break;                 \
          case 2: q4_k_wrows(wj, row_bytes, x + r0, k, o, nr, 2, 2, FIVE_); break;                 \
          default: q4_k_wrows(wj, row_bytes, x + r0, k, o, nr, 2, 1, FIVE_); break;                \
          }                                                                                        \
        } else {                                                                                   \
          switch (n) {                                                                             \
          case 4: q4_k_wrows(wj, row_bytes, x + r0, k, o, nr, 1, 4, FIVE_); break;                 \
          case 3: q4_k_wrows(wj, row_bytes, x + r0, k, o, nr, 1, 3, FIVE_); break;                 \
          case 2: q4_k_wrows(wj, row_bytes, x + r0, k, o, nr, 1, 2, FIVE_); break;                 \
          default: q4_k_wrows(wj, row_bytes, x + r0, k, o, nr, 1, 1, FIVE_); break;                \
          }                                                                                        \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
  }
VEC_Q8_ROWS_K4(qiao__cpu_vec_q8_rows_512_q4_k, 0)
VEC_Q8_ROWS_K4(qiao__cpu_vec_q8_rows_512_q5_k, 1)

/* ---- Q6_K: per half of a super-block, 128 elements = 4 blocks of x -------- */
INLINE TVNNI void q6_k_rows(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                            const int NR) {
  const __m512i low = _mm512_set1_epi8(0x0f), two = _mm512_set1_epi8(0x03);
  const __m512i thirty_two = _mm512_set1_epi8(32);
  const __m512i shift_a = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
  const __m512i shift_b = _mm512_setr_epi64(4, 4, 4, 4, 6, 6, 6, 6);
  __m512 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm512_setzero_ps();
  for (uint64_t s = 0; s < k / 256; s++) {
    const uint8_t *b = w + s * 210;
    _mm_prefetch((const char *)b + 2048, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 64, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 128, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 192, _MM_HINT_T0);
    __m512i scales =
        _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(b + 192)));
    float d = f16(b + 208);
    for (int h = 0; h < 2; h++) {
      __m512i ql = _mm512_loadu_si512(b + 64 * h);
      __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b + 128 + 32 * h));
      __m512i qh2 = _mm512_inserti64x4(_mm512_castsi256_si512(qh), qh, 1);
      __m512i va = _mm512_or_si512(
          _mm512_and_si512(ql, low),
          _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi64(qh2, shift_a), two), 4));
      __m512i vb = _mm512_or_si512(
          _mm512_and_si512(_mm512_srli_epi16(ql, 4), low),
          _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi64(qh2, shift_b), two), 4));
      /* lane i of a product covers elements 4i..4i+3: sub-block 8h + i / 4;
       * its factor d * scale is exact in f32 (11 by 8 bits) */
      __m512 fa = _mm512_mul_ps(_mm512_cvtepi32_ps(scale_lanes(scales, 8 * h)), _mm512_set1_ps(d));
      __m512 fb =
          _mm512_mul_ps(_mm512_cvtepi32_ps(scale_lanes(scales, 8 * h + 4)), _mm512_set1_ps(d));
      for (int r = 0; r < NR; r++) {
        const int8_t *xq = x[r].q + s * 256 + 128 * h;
        __m512i xa = _mm512_loadu_si512(xq), xb = _mm512_loadu_si512(xq + 64);
        __m512i z = _mm512_setzero_si512();
        /* -sum(32 * q) per lane as the accumulator: sum((v - 32) * q) exactly */
        __m512i na = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(z, thirty_two, xa));
        __m512i nb = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(z, thirty_two, xb));
        __m256 dx = _mm256_loadu_ps(x[r].d + s * 8);
        __m512 dxa = spread2(dx, 4 * h, 4 * h + 1), dxb = spread2(dx, 4 * h + 2, 4 * h + 3);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(na, va, xa)),
                                 _mm512_mul_ps(fa, dxa), acc[r]);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(nb, vb, xb)),
                                 _mm512_mul_ps(fb, dxb), acc[r]);
      }
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = _mm512_reduce_add_ps(acc[r]);
}

/* ---- Q5_0: two blocks of 32 per step ---------------------------------------- */
/* The 64 unsigned 5-bit quants of two consecutive Q5_0 blocks, in element
 * order: each block's 16 bytes in two 128-bit lanes, low nibbles then high
 * ones, and the fifth bits from both 32-bit qh as one 64-bit byte mask. */
INLINE TVNNI __m512i q5_0_quants2(const uint8_t *blk) {
  __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(blk + 6));
  __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(blk + 22 + 6));
  __m512i q = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(a), a, 1)),
      _mm256_inserti128_si256(_mm256_castsi128_si256(b), b, 1), 1);
  q = _mm512_and_si512(
      _mm512_srlv_epi16(q, _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                             0x0004000400040004, 0x0004000400040004)),
      _mm512_set1_epi8(0x0f));
  uint32_t h0, h1;
  memcpy(&h0, blk + 2, 4);
  memcpy(&h1, blk + 22 + 2, 4);
  __m512i fifth =
      _mm512_maskz_mov_epi8((__mmask64)h0 | (__mmask64)h1 << 32, _mm512_set1_epi8(0x10));
  return _mm512_or_si512(q, fifth);
}

INLINE TVNNI void q5_0_rows(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                            const int NR) {
  const __m512i sixteen = _mm512_set1_epi8(16);
  __m512 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm512_setzero_ps();
  const uint64_t nb = k / 32;
  for (uint64_t bk = 0; bk < nb; bk += 2) {
    const uint8_t *b0 = w + bk * 22;
    _mm_prefetch((const char *)b0 + 2048, _MM_HINT_T0);
    int two = bk + 1 < nb;
    __m512i v;
    if (two) {
      v = q5_0_quants2(b0);
    } else { /* the last block alone: the other half stays zero */
      __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(b0 + 6));
      __m128i lo = _mm_and_si128(a, _mm_set1_epi8(0x0f));
      __m128i hi = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_set1_epi8(0x0f));
      uint32_t qh;
      memcpy(&qh, b0 + 2, 4);
      __m256i v0 = _mm256_or_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1),
                                   _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(0x10)));
      v = _mm512_inserti64x4(_mm512_setzero_si512(), v0, 0);
    }
    float d0 = f16(b0), d1 = two ? f16(b0 + 22) : 0.0f;
    two_blocks_step(acc, v, sixteen, d0, d1, x, bk, two, NR);
  }
  for (int r = 0; r < NR; r++)
    out[r] = _mm512_reduce_add_ps(acc[r]);
}

/* Several weight rows per pass for prefill: each x row's vector, its
 * correction sum(16 * q) and its scales are loaded once for WR weight rows.
 * Every (weight row, x row) pair runs exactly the operations of q5_0_rows in
 * the same order (products d_w * d_x per lane, integer sums, one fma per
 * step), so a result is the same whatever WR, NR or the row's neighbours. */
INLINE TVNNI void q5_0_wrows(const uint8_t *w, uint64_t row_bytes, const qiao__cpu_q8_row *x,
                             uint64_t k, float *out, int out_stride, const int WR, const int NR) {
  const __m512i sixteen = _mm512_set1_epi8(16);
  __m512 acc[4][4];
  for (int j = 0; j < WR; j++)
    for (int r = 0; r < NR; r++)
      acc[j][r] = _mm512_setzero_ps();
  const uint64_t nb = k / 32;
  for (uint64_t bk = 0; bk + 1 < nb; bk += 2) {
    __m512i v[4];
    __m512 dw[4];
    for (int j = 0; j < WR; j++) {
      const uint8_t *b0 = w + j * row_bytes + bk * 22;
      _mm_prefetch((const char *)b0 + 2048, _MM_HINT_T0);
      v[j] = q5_0_quants2(b0);
      dw[j] = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(f16(b0)), _mm512_set1_ps(f16(b0 + 22)));
    }
    for (int r = 0; r < NR; r++) {
      __m512i xv = _mm512_loadu_si512(x[r].q + bk * 32);
      __m512i z = _mm512_setzero_si512();
      /* -sum(16 * q) per lane as the accumulator: the same exact integers */
      __m512i neg16 = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(z, sixteen, xv));
      __m512 dx =
          _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(x[r].d[bk]), _mm512_set1_ps(x[r].d[bk + 1]));
      for (int j = 0; j < WR; j++) {
        __m512i i = _mm512_dpbusd_epi32(neg16, v[j], xv);
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw[j], dx), acc[j][r]);
      }
    }
  }
  if (nb % 2) { /* the last block alone: the other half stays zero */
    uint64_t bk = nb - 1;
    for (int j = 0; j < WR; j++) {
      const uint8_t *b0 = w + j * row_bytes + bk * 22;
      __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(b0 + 6));
      __m128i lo = _mm_and_si128(a, _mm_set1_epi8(0x0f));
      __m128i hi = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_set1_epi8(0x0f));
      uint32_t qh;
      memcpy(&qh, b0 + 2, 4);
      __m256i v0 = _mm256_or_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1),
                                   _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(0x10)));
      __m512i v = _mm512_inserti64x4(_mm512_setzero_si512(), v0, 0);
      float d0 = f16(b0);
      for (int r = 0; r < NR; r++) {
        const int8_t *xq = x[r].q + bk * 32;
        __m512i xv = _mm512_inserti64x4(_mm512_setzero_si512(),
                                        _mm256_loadu_si256((const __m256i *)(const void *)xq), 0);
        __m512i z = _mm512_setzero_si512();
        __m512i i =
            _mm512_sub_epi32(_mm512_dpbusd_epi32(z, v, xv), _mm512_dpbusd_epi32(z, sixteen, xv));
        __m512 f =
            _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0 * x[r].d[bk]), _mm512_set1_ps(0.0f));
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), f, acc[j][r]);
      }
    }
  }
  for (int j = 0; j < WR; j++)
    for (int r = 0; r < NR; r++)
      out[j * out_stride + r] = _mm512_reduce_add_ps(acc[j][r]);
}

TVNNI void qiao__cpu_vec_q8_rows_512_q5_0(const uint8_t *w, uint64_t row_bytes, int nw,
                                          const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                          float *out) {
  for (int j0 = 0; j0 < nw; j0 += 4) {
    int wr = nw - j0 < 4 ? nw - j0 : 4;
    const uint8_t *wj = w + (uint64_t)j0 * row_bytes;
    float *o = out + j0 * nr;
    for (int r0 = 0; r0 < nr; r0 += 4) {
      int n = nr - r0 < 4 ? nr - r0 : 4;
#define Q5_0_CASE(WR_, NR_)                                                                        \
  if (wr == WR_ && n == NR_) {                                                                     \
    q5_0_wrows(wj, row_bytes, x + r0, k, o + r0, nr, WR_, NR_);                                    \
    continue;                                                                                      \
  }
      Q5_0_CASE(4, 4) Q5_0_CASE(4, 3) Q5_0_CASE(4, 2) Q5_0_CASE(4, 1);
      Q5_0_CASE(3, 4) Q5_0_CASE(3, 3) Q5_0_CASE(3, 2) Q5_0_CASE(3, 1);
      Q5_0_CASE(2, 4) Q5_0_CASE(2, 3) Q5_0_CASE(2, 2) Q5_0_CASE(2, 1);
      Q5_0_CASE(1, 4) Q5_0_CASE(1, 3) Q5_0_CASE(1, 2) Q5_0_CASE(1, 1);
#undef Q5_0_CASE
    }
  }
}

#define VEC_Q8_512(name, rows)                                                                     \
  TVNNI void name(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out) {   \
    for (int r0 = 0; r0 < nr; r0 += 4) {                                                           \
      switch (nr - r0 < 4 ? nr - r0 : 4) {                                                         \
      case 4: rows(w, x + r0, k, out + r0, 4); break;                                              \
      case 3: rows(w, x + r0, k, out + r0, 3); break;                                              \
      case 2: rows(w, x + r0, k, out + r0, 2); break;                                              \
      default: rows(w, x + r0, k, out + r0, 1); break;                                             \
      }                                                                                            \
    }                                                                                              \
  }
INLINE TVNNI void q4_k_only(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                            const int NR) {
  q4_k_rows(w, x, k, out, NR, 0);
}
INLINE TVNNI void q5_k_only(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                            const int NR) {
  q4_k_rows(w, x, k, out, NR, 1);
}
VEC_Q8_512(qiao__cpu_vec_q8_512_q4_k, q4_k_only)
VEC_Q8_512(qiao__cpu_vec_q8_512_q5_k, q5_k_only)
VEC_Q8_512(qiao__cpu_vec_q8_512_q6_k, q6_k_rows)
VEC_Q8_512(qiao__cpu_vec_q8_512_q5_0, q5_0_rows)

/* ---- AVX2 (any x86-64 with AVX2+FMA+F16C): the same sums per sub-block,
 * integer products by vpmaddubsw + vpmaddwd (no saturation: |u * q| <= 63
 * * 127 per pair of products), 8 lanes. ------------------------------------ */
INLINE T2 void q4_k_rows_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                             const int NR, const int FIVE) {
  const uint64_t block_bytes = FIVE ? 176 : 144;
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256 acc[4], macc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = macc[r] = _mm256_setzero_ps();
  for (uint64_t s = 0; s < k / 256; s++) {
    const uint8_t *b = w + s * block_bytes, *sb = b + 4;
    _mm_prefetch((const char *)b + 2048, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 64, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 128, _MM_HINT_T0);
    int sc[8], mn[8];
    for (int j = 0; j < 8; j++)
      qiao__cpu_k4_scale_min(sb, j, &sc[j], &mn[j]);
    float d = f16_2(b), dmin = f16_2(b + 2);
    float scf[8], mnf[8];
    for (int j = 0; j < 8; j++)
      scf[j] = d * (float)sc[j], mnf[j] = dmin * (float)mn[j];
    __m256 mnv = _mm256_loadu_ps(mnf);
    const uint8_t *qs = b + (FIVE ? 48 : 16);
    __m256i qh =
        FIVE ? _mm256_loadu_si256((const __m256i *)(const void *)(b + 16)) : _mm256_setzero_si256();
    __m256i v[8];
    for (int c = 0; c < 4; c++) {
      __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * c));
      v[2 * c] = _mm256_and_si256(q, low);
      v[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
    }
    if (FIVE)
      for (int j = 0; j < 8; j++)
        v[j] = _mm256_or_si256(
            v[j], _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi64(qh, _mm_cvtsi32_si128(j)),
                                                     _mm256_set1_epi8(1)),
                                    4));
    for (int r = 0; r < NR; r++) {
      const int8_t *xq = x[r].q + s * 256;
      const float *dx = x[r].d + s * 8;
      for (int j = 0; j < 8; j++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(xq + 32 * j));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot4_256(v[j], xv)),
                                 _mm256_set1_ps(scf[j] * dx[j]), acc[r]);
      }
      __m256 sums =
          _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(const void *)(x[r].sum + s * 8)));
      macc[r] = _mm256_fmadd_ps(_mm256_mul_ps(mnv, _mm256_loadu_ps(dx)), sums, macc[r]);
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = hsum8(acc[r]) - hsum8(macc[r]);
}

INLINE T2 void q6_k_rows_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                             const int NR) {
  const __m256i low = _mm256_set1_epi8(0x0f), three = _mm256_set1_epi8(0x03);
  const __m256i thirty_two = _mm256_set1_epi8(32);
  __m256 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm256_setzero_ps();
  for (uint64_t s = 0; s < k / 256; s++) {
    const uint8_t *b = w + s * 210;
    _mm_prefetch((const char *)b + 2048, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 64, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 128, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 192, _MM_HINT_T0);
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16_2(b + 208);
    for (int h = 0; h < 2; h++) {
      __m256i ql0 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 64 * h));
      __m256i ql1 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 64 * h + 32));
      __m256i qh = _mm256_loadu_si256((const __m256i *)(const void *)(b + 128 + 32 * h));
      __m256i v[4];
      v[0] = _mm256_or_si256(_mm256_and_si256(ql0, low),
                             _mm256_slli_epi16(_mm256_and_si256(qh, three), 4));
      v[1] =
          _mm256_or_si256(_mm256_and_si256(ql1, low),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), three), 4));
      v[2] =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), three), 4));
      v[3] =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                          _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), three), 4));
      for (int p = 0; p < 4; p++) {
        int s16 = 8 * h + 2 * p;
        __m256i scale = _mm256_setr_epi32(sc[s16], sc[s16], sc[s16], sc[s16], sc[s16 + 1],
                                          sc[s16 + 1], sc[s16 + 1], sc[s16 + 1]);
        for (int r = 0; r < NR; r++) {
          const int8_t *xq = x[r].q + s * 256 + 128 * h + 32 * p;
          __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)xq);
          __m256i i = _mm256_sub_epi32(dot4_256(v[p], xv), dot4_256(thirty_two, xv));
          acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_mullo_epi32(i, scale)),
                                   _mm256_set1_ps(d * x[r].d[s * 8 + 4 * h + p]), acc[r]);
        }
      }
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = hsum8(acc[r]);
}

INLINE T2 void q5_0_rows_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                             const int NR) {
  const __m256i sixteen = _mm256_set1_epi8(16), low = _mm256_set1_epi8(0x0f);
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ull);
  __m256 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm256_setzero_ps();
  for (uint64_t bk = 0; bk < k / 32; bk++) {
    const uint8_t *blk = w + bk * 22;
    _mm_prefetch((const char *)blk + 2048, _MM_HINT_T0);
    __m128i qs = _mm_loadu_si128((const __m128i *)(const void *)(blk + 6));
    __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(qs), _mm_srli_epi16(qs, 4), 1);
    uint32_t qh;
    memcpy(&qh, blk + 2, 4);
    __m256i hb = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
    hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bits), bits), sixteen);
    __m256i v = _mm256_or_si256(_mm256_and_si256(q, low), hb);
    float d = f16_2(blk);
    for (int r = 0; r < NR; r++) {
      __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(x[r].q + bk * 32));
      __m256i i = _mm256_sub_epi32(dot4_256(v, xv), dot4_256(sixteen, xv));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_set1_ps(d * x[r].d[bk]), acc[r]);
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = hsum8(acc[r]);
}

INLINE T2 void q4_k_only_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                             const int NR) {
  q4_k_rows_256(w, x, k, out, NR, 0);
}
INLINE T2 void q5_k_only_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                             const int NR) {
  q4_k_rows_256(w, x, k, out, NR, 1);
}
#define VEC_Q8_256(name, rows)                                                                     \
  T2 void name(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out) {      \
    for (int r0 = 0; r0 < nr; r0 += 4) {                                                           \
      switch (nr - r0 < 4 ? nr - r0 : 4) {                                                         \
      case 4: rows(w, x + r0, k, out + r0, 4); break;                                              \
      case 3: rows(w, x + r0, k, out + r0, 3); break;                                              \
      case 2: rows(w, x + r0, k, out + r0, 2); break;                                              \
      default: rows(w, x + r0, k, out + r0, 1); break;                                             \
      }                                                                                            \
    }                                                                                              \
  }
VEC_Q8_256(qiao__cpu_vec_q8_256_q4_k, q4_k_only_256)
VEC_Q8_256(qiao__cpu_vec_q8_256_q5_k, q5_k_only_256)
VEC_Q8_256(qiao__cpu_vec_q8_256_q6_k, q6_k_rows_256)
VEC_Q8_256(qiao__cpu_vec_q8_256_q5_0, q5_0_rows_256)

#endif
