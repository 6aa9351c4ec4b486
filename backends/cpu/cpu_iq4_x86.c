/* AVX2 kernels for Q8 activations on IQ4_NL and IQ4_XS read as stored
 * (qiao__cpu_vec_q8_fn, cpu_internal.h; the layouts in cpu_iq4.c). Each
 * block's 16 bytes of nibbles become 32 int8 levels by one vpshufb on the
 * table; since the levels are signed, vpmaddubsw takes their magnitudes and
 * the activations with the levels' signs (no saturation: |v * q| <= 127 *
 * 127 per product, two per pair), vpmaddwd sums to 8 int32 lanes exactly.
 * Each 32-element chunk then adds cvt(sum) * (a * d_x) into 8 f32 lanes by
 * one FMA, summed at the end. The AVX-512 VNNI kernels (below) take two
 * blocks per vector. Up to 4 rows of x share each unpacked block; a result
 * depends on (w, x row, k) only. */
#include "cpu_internal.h"

#if defined(__x86_64__)
#include "cpu_simd_x86.h"

/* The eight sub-block scales d * (ls - 32) of an IQ4_XS super-block, each
 * one f32 product as the format defines it. */
INLINE T2 void xs_scales(const uint8_t *blk, float d, float a[8]) {
  uint32_t sh = qiao__cpu_load_u16(blk + 2);
  for (int ib = 0; ib < 8; ib++) {
    int ls = (int)(((uint32_t)blk[4 + ib / 2] >> (4 * (ib % 2))) & 15) | (int)((sh >> (2 * ib)) & 3)
                                                                             << 4;
    a[ib] = d * (float)(ls - 32);
  }
}

/* The 32 levels of the 16 bytes of nibbles at qs: low nibbles, then high. */
INLINE T2 __m256i levels32(const uint8_t *qs, __m256i table) {
  __m128i b = _mm_loadu_si128((const __m128i *)(const void *)qs);
  __m256i n = _mm256_inserti128_si256(_mm256_castsi128_si256(b), _mm_srli_epi16(b, 4), 1);
  return _mm256_shuffle_epi8(table, _mm256_and_si256(n, _mm256_set1_epi8(0x0f)));
}

INLINE T2 __m256i level_table(void) {
  __m128i t = _mm_loadu_si128((const __m128i *)(const void *)qiao__cpu_iq4_levels);
  return _mm256_broadcastsi128_si256(t);
}

/* 8 int32 lanes of sum(v * q) for signed v (never 0) and q. */
INLINE T2 __m256i signed_dot(__m256i v, __m256i q) {
  return dot4_256(_mm256_abs_epi8(v), _mm256_sign_epi8(q, v));
}

INLINE T2 void iq4_nl_rows(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                           const int NR) {
  const __m256i table = level_table();
  __m256 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm256_setzero_ps();
  for (uint64_t bk = 0; bk < k / 32; bk++) {
    const uint8_t *blk = w + bk * 18;
    _mm_prefetch((const char *)blk + 2048, _MM_HINT_T0);
    __m256i v = levels32(blk + 2, table);
    float d = f16_2(blk);
    for (int r = 0; r < NR; r++) {
      __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(x[r].q + bk * 32));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(signed_dot(v, xv)),
                               _mm256_set1_ps(d * x[r].d[bk]), acc[r]);
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = hsum8(acc[r]);
}

INLINE T2 void iq4_xs_rows(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                           const int NR) {
  const __m256i table = level_table();
  __m256 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm256_setzero_ps();
  for (uint64_t sb = 0; sb < k / 256; sb++) {
    const uint8_t *blk = w + sb * 136;
    _mm_prefetch((const char *)blk + 2048, _MM_HINT_T0);
    float a8[8];
    xs_scales(blk, f16_2(blk), a8);
    for (int ib = 0; ib < 8; ib++) {
      __m256i v = levels32(blk + 8 + 16 * ib, table);
      float a = a8[ib];
      uint64_t bk = sb * 8 + (uint64_t)ib;
      for (int r = 0; r < NR; r++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(x[r].q + bk * 32));
        acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(signed_dot(v, xv)),
                                 _mm256_set1_ps(a * x[r].d[bk]), acc[r]);
      }
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = hsum8(acc[r]);
}

/* ---- AVX-512 VNNI: two blocks of 32 per 512-bit vector. vpdpbusd needs an
 * unsigned operand, so the levels are stored plus 128 (1..241) and 128 times
 * the block's sum of quants (qiao__cpu_q8_row.sum) is taken back, exactly,
 * in the first lane of each block's eight before the conversion to f32. */

INLINE TVNNI __m512i level_table_u(void) {
  __m128i t = _mm_add_epi8(_mm_loadu_si128((const __m128i *)(const void *)qiao__cpu_iq4_levels),
                           _mm_set1_epi8((char)-128));
  return _mm512_broadcast_i32x4(t);
}

/* The 64 unsigned levels of two 16-byte runs of nibbles: lane groups of 16
 * bytes are a's low nibbles, a's high, b's low, b's high (elements 0..31 of
 * each block in order). */
INLINE TVNNI __m512i levels64(const uint8_t *a, const uint8_t *b, __m512i table) {
  __m128i qa = _mm_loadu_si128((const __m128i *)(const void *)a);
  __m128i qb = _mm_loadu_si128((const __m128i *)(const void *)b);
  __m256i va = _mm256_inserti128_si256(_mm256_castsi128_si256(qa), _mm_srli_epi16(qa, 4), 1);
  __m256i vb = _mm256_inserti128_si256(_mm256_castsi128_si256(qb), _mm_srli_epi16(qb, 4), 1);
  __m512i n = _mm512_inserti64x4(_mm512_castsi256_si512(va), vb, 1);
  return _mm512_shuffle_epi8(table, _mm512_and_si512(n, _mm512_set1_epi8(0x0f)));
}

/* Adds block pair (c, c + 1) of x row xr, unsigned levels u, scales a0, a1. */
INLINE TVNNI __m512 pair_fma(__m512 acc, __m512i u, const qiao__cpu_q8_row *xr, uint64_t c,
                             float a0, float a1) {
  __m512i xv = _mm512_loadu_si512((const void *)(xr->q + c * 32));
  __m512i dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, xv);
  __m512i corr = _mm512_mask_set1_epi32(_mm512_setzero_si512(), 0x0001, 128 * xr->sum[c]);
  corr = _mm512_mask_set1_epi32(corr, 0x0100, 128 * xr->sum[c + 1]);
  __m512 sc = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(a0 * xr->d[c]),
                                   _mm512_set1_ps(a1 * xr->d[c + 1]));
  return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dp, corr)), sc, acc);
}

INLINE TVNNI float hsum16(__m512 v) {
  return _mm512_reduce_add_ps(v);
}

INLINE TVNNI void iq4_nl_rows_512(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k,
                                  float *out, const int NR) {
  const __m512i table = level_table_u();
  __m512 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm512_setzero_ps();
  uint64_t nb = k / 32, c = 0;
  for (; c + 2 <= nb; c += 2) {
    const uint8_t *b0 = w + c * 18, *b1 = b0 + 18;
    _mm_prefetch((const char *)b0 + 2048, _MM_HINT_T0);
    __m512i u = levels64(b0 + 2, b1 + 2, table);
    float a0 = _cvtsh_ss(qiao__cpu_load_u16(b0)), a1 = _cvtsh_ss(qiao__cpu_load_u16(b1));
    for (int r = 0; r < NR; r++)
      acc[r] = pair_fma(acc[r], u, &x[r], c, a0, a1);
  }
  for (int r = 0; r < NR; r++) {
    float o = hsum16(acc[r]);
    if (c < nb) { /* an odd last block, by the AVX2 kernel's operations */
      const uint8_t *b0 = w + c * 18;
      __m256i v = levels32(b0 + 2, level_table());
      __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(x[r].q + c * 32));
      o += hsum8(_mm256_mul_ps(_mm256_cvtepi32_ps(signed_dot(v, xv)),
                               _mm256_set1_ps(f16_2(b0) * x[r].d[c])));
    }
    out[r] = o;
  }
}

INLINE TVNNI void iq4_xs_rows_512(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k,
                                  float *out, const int NR) {
  const __m512i table = level_table_u();
  __m512 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm512_setzero_ps();
  for (uint64_t sb = 0; sb < k / 256; sb++) {
    const uint8_t *blk = w + sb * 136;
    _mm_prefetch((const char *)blk + 2048, _MM_HINT_T0);
    float a8[8];
    xs_scales(blk, f16_2(blk), a8);
    for (int ib = 0; ib < 8; ib += 2) {
      __m512i u = levels64(blk + 8 + 16 * ib, blk + 24 + 16 * ib, table);
      float a0 = a8[ib], a1 = a8[ib + 1];
      for (int r = 0; r < NR; r++)
        acc[r] = pair_fma(acc[r], u, &x[r], sb * 8 + (uint64_t)ib, a0, a1);
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = hsum16(acc[r]);
}

/* Prefill (qiao__cpu_vec_q8_rows_fn): WR weight rows against NR x rows, each
 * unpacked block pair shared by the NR x rows and each load of x by the WR
 * weight rows; every (weight row, x row) pair runs exactly the operations
 * of the one-row kernels above, so its bits are theirs. */
INLINE TVNNI void iq4_wrows_512(int xs, const uint8_t *w, uint64_t row_bytes,
                                const qiao__cpu_q8_row *x, uint64_t k, float *out, int nr_out,
                                const int WR, const int NR) {
  const __m512i table = level_table_u();
  __m512 acc[4][4];
  for (int j = 0; j < WR; j++)
    for (int r = 0; r < NR; r++)
      acc[j][r] = _mm512_setzero_ps();
  uint64_t nb = k / 32, c = 0;
  for (; c + 2 <= nb; c += 2) {
    __m512i u[4];
    float a0[4], a1[4];
    for (int j = 0; j < WR; j++) {
      const uint8_t *row = w + (uint64_t)j * row_bytes;
      if (xs) {
        const uint8_t *blk = row + c / 8 * 136;
        int ib = (int)(c % 8);
        float a8[8];
        xs_scales(blk, f16_2(blk), a8);
        u[j] = levels64(blk + 8 + 16 * ib, blk + 24 + 16 * ib, table);
        a0[j] = a8[ib], a1[j] = a8[ib + 1];
      } else {
        const uint8_t *b0 = row + c * 18, *b1 = b0 + 18;
        u[j] = levels64(b0 + 2, b1 + 2, table);
        a0[j] = _cvtsh_ss(qiao__cpu_load_u16(b0)), a1[j] = _cvtsh_ss(qiao__cpu_load_u16(b1));
      }
    }
    for (int r = 0; r < NR; r++)
      for (int j = 0; j < WR; j++)
        acc[j][r] = pair_fma(acc[j][r], u[j], &x[r], c, a0[j], a1[j]);
  }
  for (int j = 0; j < WR; j++)
    for (int r = 0; r < NR; r++) {
      float o = hsum16(acc[j][r]);
      if (c < nb) { /* iq4_nl's odd last block, as iq4_nl_rows_512 */
        const uint8_t *b0 = w + (uint64_t)j * row_bytes + c * 18;
        __m256i v = levels32(b0 + 2, level_table());
        __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(x[r].q + c * 32));
        o += hsum8(_mm256_mul_ps(_mm256_cvtepi32_ps(signed_dot(v, xv)),
                                 _mm256_set1_ps(f16_2(b0) * x[r].d[c])));
      }
      out[j * nr_out + r] = o;
    }
}

/* One (weight rows, x rows) group of up to 4 by 4, with constant shapes. */
INLINE TVNNI void wrows_group(const int xs, const uint8_t *w, uint64_t row_bytes,
                              const qiao__cpu_q8_row *x, uint64_t k, float *out, int nr, int wr,
                              int rr) {
  switch (wr * 4 + rr) {
  case 5: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 1, 1); break;
  case 6: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 1, 2); break;
  case 7: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 1, 3); break;
  case 8: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 1, 4); break;
  case 9: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 2, 1); break;
  case 10: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 2, 2); break;
  case 11: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 2, 3); break;
  case 12: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 2, 4); break;
  case 13: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 3, 1); break;
  case 14: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 3, 2); break;
  case 15: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 3, 3); break;
  case 16: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 3, 4); break;
  case 17: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 4, 1); break;
  case 18: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 4, 2); break;
  case 19: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 4, 3); break;
  case 20: iq4_wrows_512(xs, w, row_bytes, x, k, out, nr, 4, 4); break;
  default: break;
  }
}

INLINE TVNNI void wrows_all(const int xs, const uint8_t *w, uint64_t row_bytes, int nw,
                            const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out) {
  for (int j0 = 0; j0 < nw; j0 += 4)
    for (int r0 = 0; r0 < nr; r0 += 4)
      wrows_group(xs, w + (uint64_t)j0 * row_bytes, row_bytes, x + r0, k,
                  out + (uint64_t)j0 * (uint64_t)nr + (uint64_t)r0, nr, nw - j0 < 4 ? nw - j0 : 4,
                  nr - r0 < 4 ? nr - r0 : 4);
}

TVNNI void qiao__cpu_vec_q8_rows_512_iq4_nl(const uint8_t *w, uint64_t row_bytes, int nw,
                                            const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                            float *out) {
  wrows_all(0, w, row_bytes, nw, x, nr, k, out);
}

TVNNI void qiao__cpu_vec_q8_rows_512_iq4_xs(const uint8_t *w, uint64_t row_bytes, int nw,
                                            const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                            float *out) {
  wrows_all(1, w, row_bytes, nw, x, nr, k, out);
}

/* x rows in groups of up to 4, each group sharing the unpacked blocks. */
QIAO__VEC_Q8_BY_FOUR(T2, qiao__cpu_vec_q8_256_iq4_nl, iq4_nl_rows)
QIAO__VEC_Q8_BY_FOUR(T2, qiao__cpu_vec_q8_256_iq4_xs, iq4_xs_rows)
QIAO__VEC_Q8_BY_FOUR(TVNNI, qiao__cpu_vec_q8_512_iq4_nl, iq4_nl_rows_512)
QIAO__VEC_Q8_BY_FOUR(TVNNI, qiao__cpu_vec_q8_512_iq4_xs, iq4_xs_rows_512)

#endif
