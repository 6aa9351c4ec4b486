/* AVX-512 VNNI and AVX2 kernels for Q8 activations on Q4_1 and Q5_1 blocks
 * read as stored (qiao__cpu_vec_q8_fn, cpu_internal.h). A block of 32 is
 * d * q + m with q unsigned (4 or 5 bits): per block of x, d_x * (d *
 * sum(q * x) + m * sum(x)), both integer sums exact (int32 per group of 4
 * elements; AVX2 takes sum(x) from the quantizer, qiao__cpu_q8_row). The
 * order of the f32 sums is fixed by k alone, so a result depends on (w, x
 * row, k) only, never on nr; in prefill the AVX-512 vec_q8_rows kernels let
 * up to 4 weight rows share each x vector, with the same operations per pair. */
#include "cpu_internal.h"

#if defined(__x86_64__)
#include "cpu_simd_x86.h"

/* Q4_1: f16 d, f16 m, 16 bytes of nibbles (element i < 16 low, i + 16 high).
 * Q5_1: f16 d, f16 m, u32 qh (bit i: element i's fifth bit), 16 bytes. */
enum { Q4_1_BYTES = 20, Q5_1_BYTES = 24 };

/* ---- AVX-512 VNNI: two blocks per step ------------------------------------ */
/* The 64 unsigned quants of the blocks at blk and blk + bytes, in element
 * order (each block's 16 bytes in two 128-bit lanes, low nibbles first). */
INLINE TVNNI __m512i quants2(const uint8_t *blk, const int FIVE) {
  const uint64_t bytes = FIVE ? Q5_1_BYTES : Q4_1_BYTES, qs = FIVE ? 8 : 4;
  __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(blk + qs));
  __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(blk + bytes + qs));
  __m512i q = _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_inserti128_si256(_mm256_castsi128_si256(a), a, 1)),
      _mm256_inserti128_si256(_mm256_castsi128_si256(b), b, 1), 1);
  q = _mm512_and_si512(
      _mm512_srlv_epi16(q, _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                             0x0004000400040004, 0x0004000400040004)),
      _mm512_set1_epi8(0x0f));
  if (FIVE) {
    uint32_t h0, h1;
    memcpy(&h0, blk + 4, 4);
    memcpy(&h1, blk + bytes + 4, 4);
    q = _mm512_or_si512(
        q, _mm512_maskz_mov_epi8((__mmask64)h0 | (__mmask64)h1 << 32, _mm512_set1_epi8(0x10)));
  }
  return q;
}

/* The quants of one block in the low half, zeros in the high one. */
INLINE TVNNI __m512i quants1(const uint8_t *blk, const int FIVE) {
  __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(blk + (FIVE ? 8 : 4)));
  __m128i lo = _mm_and_si128(a, _mm_set1_epi8(0x0f));
  __m128i hi = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_set1_epi8(0x0f));
  __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
  if (FIVE) {
    uint32_t qh;
    memcpy(&qh, blk + 4, 4);
    v = _mm256_or_si256(v, _mm256_maskz_mov_epi8((__mmask32)qh, _mm256_set1_epi8(0x10)));
  }
  return _mm512_inserti64x4(_mm512_setzero_si512(), v, 0);
}

/* The f32 factors of the blocks at blk (lanes 0..7) and blk + bytes (8..15;
 * zero when the row has no second block): d in *dw, m in *mw. */
INLINE TVNNI void factors2(const uint8_t *blk, int two, const int FIVE, __m512 *dw, __m512 *mw) {
  const uint64_t bytes = FIVE ? Q5_1_BYTES : Q4_1_BYTES;
  *dw = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(f16(blk)),
                             _mm512_set1_ps(two ? f16(blk + bytes) : 0.0f));
  *mw = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(f16(blk + 2)),
                             _mm512_set1_ps(two ? f16(blk + bytes + 2) : 0.0f));
}

/* WR weight rows (row_bytes apart) times NR x rows, two blocks per step:
 * per lane, cvt(sum(q * x)) * (d * d_x) + (cvt(sum(x)) * d_x) * m, the x
 * side (its vector, sums and d_x) formed once for all weight rows. Every
 * (weight row, x row) pair runs the same operations in the same order
 * whatever WR and NR, so vec_q8 (WR = 1) and vec_q8_rows give the same bits. */
INLINE TVNNI void q4_1_wrows(const uint8_t *w, uint64_t row_bytes, const qiao__cpu_q8_row *x,
                             uint64_t k, float *out, int out_stride, const int WR, const int NR,
                             const int FIVE) {
  const uint64_t bytes = FIVE ? Q5_1_BYTES : Q4_1_BYTES, nb = k / 32;
  const __m512i ones = _mm512_set1_epi8(1);
  __m512 acc[4][4];
  for (int j = 0; j < WR; j++)
    for (int r = 0; r < NR; r++)
      acc[j][r] = _mm512_setzero_ps();
  for (uint64_t bk = 0; bk < nb; bk += 2) {
    int two = bk + 1 < nb; /* else the last block alone: the high half stays zero */
    __m512i v[4];
    __m512 dw[4], mw[4];
    for (int j = 0; j < WR; j++) {
      const uint8_t *b0 = w + j * row_bytes + bk * bytes;
      _mm_prefetch((const char *)b0 + 2048, _MM_HINT_T0);
      v[j] = two ? quants2(b0, FIVE) : quants1(b0, FIVE);
      factors2(b0, two, FIVE, &dw[j], &mw[j]);
    }
    for (int r = 0; r < NR; r++) {
      const int8_t *xq = x[r].q + bk * 32;
      __m512i xv =
          two ? _mm512_loadu_si512(xq)
              : _mm512_inserti64x4(_mm512_setzero_si512(),
                                   _mm256_loadu_si256((const __m256i *)(const void *)xq), 0);
      __m512i z = _mm512_setzero_si512();
      __m512 dx = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(x[r].d[bk]),
                                       _mm512_set1_ps(two ? x[r].d[bk + 1] : 0.0f));
      __m512 sx = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, ones, xv)), dx);
      for (int j = 0; j < WR; j++) {
        __m512i i = _mm512_dpbusd_epi32(z, v[j], xv);
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw[j], dx), acc[j][r]);
        acc[j][r] = _mm512_fmadd_ps(sx, mw[j], acc[j][r]);
      }
    }
  }
  for (int j = 0; j < WR; j++)
    for (int r = 0; r < NR; r++)
      out[j * out_stride + r] = _mm512_reduce_add_ps(acc[j][r]);
}

INLINE TVNNI void q4_1_rows(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                            const int NR, const int FIVE) {
  q4_1_wrows(w, 0, x, k, out, 0, 1, NR, FIVE);
}

/* One call of q4_1_wrows with constant WR, NR (unrolled, accumulators in
 * registers) for each shape of a group. */
#define Q4_1_CASE(WR_, NR_)                                                                        \
  if (wr == WR_ && n == NR_) {                                                                     \
    q4_1_wrows(wj, row_bytes, x + r0, k, o + r0, nr, WR_, NR_, FIVE);                              \
    continue;                                                                                      \
  }
INLINE TVNNI void q4_1_groups(const uint8_t *w, uint64_t row_bytes, int nw,
                              const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out,
                              const int FIVE) {
  for (int j0 = 0; j0 < nw; j0 += 4) {
    int wr = nw - j0 < 4 ? nw - j0 : 4;
    const uint8_t *wj = w + (uint64_t)j0 * row_bytes;
    float *o = out + j0 * nr;
    for (int r0 = 0; r0 < nr; r0 += 4) {
      int n = nr - r0 < 4 ? nr - r0 : 4;
      Q4_1_CASE(4, 4) Q4_1_CASE(4, 3) Q4_1_CASE(4, 2) Q4_1_CASE(4, 1);
      Q4_1_CASE(3, 4) Q4_1_CASE(3, 3) Q4_1_CASE(3, 2) Q4_1_CASE(3, 1);
      Q4_1_CASE(2, 4) Q4_1_CASE(2, 3) Q4_1_CASE(2, 2) Q4_1_CASE(2, 1);
      Q4_1_CASE(1, 4) Q4_1_CASE(1, 3) Q4_1_CASE(1, 2) Q4_1_CASE(1, 1);
    }
  }
}
#undef Q4_1_CASE
#define VEC_Q8_ROWS_Q4_1(name, FIVE_)                                                              \
  TVNNI void name(const uint8_t *w, uint64_t row_bytes, int nw, const qiao__cpu_q8_row *x, int nr, \
                  uint64_t k, float *out) {                                                        \
    q4_1_groups(w, row_bytes, nw, x, nr, k, out, FIVE_);                                           \
  }
VEC_Q8_ROWS_Q4_1(qiao__cpu_vec_q8_rows_512_q4_1, 0)
VEC_Q8_ROWS_Q4_1(qiao__cpu_vec_q8_rows_512_q5_1, 1)

INLINE TVNNI void q4_1_only(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                            const int NR) {
  q4_1_rows(w, x, k, out, NR, 0);
}
INLINE TVNNI void q5_1_only(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                            const int NR) {
  q4_1_rows(w, x, k, out, NR, 1);
}
QIAO__VEC_Q8_BY_FOUR(TVNNI, qiao__cpu_vec_q8_512_q4_1, q4_1_only)
QIAO__VEC_Q8_BY_FOUR(TVNNI, qiao__cpu_vec_q8_512_q5_1, q5_1_only)

/* ---- AVX2: one block per step, 8 lanes ------------------------------------ */
INLINE T2 void q4_1_rows_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                             const int NR, const int FIVE) {
  const uint64_t bytes = FIVE ? Q5_1_BYTES : Q4_1_BYTES;
  const __m256i low = _mm256_set1_epi8(0x0f), sixteen = _mm256_set1_epi8(16);
  /* byte i of the 32 takes byte i / 8 of qh and tests bit i % 8 */
  const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ull);
  __m256 acc[4];
  float macc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm256_setzero_ps(), macc[r] = 0.0f;
  for (uint64_t bk = 0; bk < k / 32; bk++) {
    const uint8_t *blk = w + bk * bytes;
    _mm_prefetch((const char *)blk + 2048, _MM_HINT_T0);
    __m128i qs = _mm_loadu_si128((const __m128i *)(const void *)(blk + (FIVE ? 8 : 4)));
    __m256i v = _mm256_and_si256(
        _mm256_inserti128_si256(_mm256_castsi128_si256(qs), _mm_srli_epi16(qs, 4), 1), low);
    if (FIVE) {
      uint32_t qh;
      memcpy(&qh, blk + 4, 4);
      __m256i hb = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
      v = _mm256_or_si256(
          v, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hb, bits), bits), sixteen));
    }
    float d = f16_2(blk), m = f16_2(blk + 2);
    for (int r = 0; r < NR; r++) {
      __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(x[r].q + bk * 32));
      float dx = x[r].d[bk];
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot4_256(v, xv)), _mm256_set1_ps(d * dx), acc[r]);
      macc[r] = __builtin_fmaf(m * dx, (float)x[r].sum[bk], macc[r]);
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = hsum8(acc[r]) + macc[r];
}

INLINE T2 void q4_1_only_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                             const int NR) {
  q4_1_rows_256(w, x, k, out, NR, 0);
}
INLINE T2 void q5_1_only_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                             const int NR) {
  q4_1_rows_256(w, x, k, out, NR, 1);
}
QIAO__VEC_Q8_BY_FOUR(T2, qiao__cpu_vec_q8_256_q4_1, q4_1_only_256)
QIAO__VEC_Q8_BY_FOUR(T2, qiao__cpu_vec_q8_256_q5_1, q5_1_only_256)

#endif
