/* vec_q8 kernels (cpu_internal.h) for Q8_0 and Q4_0 weights read as
 * stored: what matmul_experts uses for Q8 activations (device ABI 1.5).
 * matmul keeps its int8 tile copies (cpu_q8_activations.c), but a copy of
 * every expert would double a MoE model's memory, and decode reads only
 * the k experts a token picks, each once: straight from the blocks is what
 * the bandwidth allows. A block is d * v with v = the int8 quant (Q8_0) or
 * nibble - 8 (Q4_0), so sum(v * q) over the block is an exact integer and
 * the result is sum over blocks of (d_w * d_x) * sum(v * q), in f32 per
 * lane, the lanes summed at the end. A result depends on (w, x row, k)
 * only, never on nr or the thread count (batch-invariant). */
#include "cpu_internal.h"

#if defined(__x86_64__)
#include "cpu_simd_x86.h"

/* ---- AVX-512 VNNI: Q8_0 two blocks (64 elements) per step, Q4_0 four ----
 * vpdpbusd multiplies unsigned by signed bytes, so the quants go in as
 * u = v + offset (Q8_0: the byte with its sign bit flipped, offset 128;
 * Q4_0: the stored nibble, offset 8) and offset * q is taken off per lane. */
INLINE TVNNI __m256i unsigned_quants(const uint8_t *blk, const int Q8) {
  if (Q8)
    return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(const void *)(blk + 2)),
                            _mm256_set1_epi8((char)0x80));
  __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2)); /* elements i, 16 + i */
  __m128i lo = _mm_and_si128(a, _mm_set1_epi8(0x0f));
  __m128i hi = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_set1_epi8(0x0f));
  return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

INLINE TVNNI void small_rows_512(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k,
                                 float *out, const int NR, const int Q8) {
  const uint64_t bytes = Q8 ? 34 : 18, nb = k / 32;
  const __m512i offset = _mm512_set1_epi8(Q8 ? (char)0x80 : 8);
  __m512 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm512_setzero_ps();
  for (uint64_t bk = 0; bk < nb; bk += 2) {
    const uint8_t *b0 = w + bk * bytes;
    _mm_prefetch((const char *)b0 + 2048, _MM_HINT_T0);
    int two = bk + 1 < nb;
    /* the last block alone: the upper half stays zero */
    __m512i v = _mm512_castsi256_si512(unsigned_quants(b0, Q8));
    v = two ? _mm512_inserti64x4(v, unsigned_quants(b0 + bytes, Q8), 1)
            : _mm512_inserti64x4(v, _mm256_setzero_si256(), 1);
    float d0 = _cvtsh_ss(qiao__cpu_load_u16(b0));
    float d1 = two ? _cvtsh_ss(qiao__cpu_load_u16(b0 + bytes)) : 0.0f;
    two_blocks_step(acc, v, offset, d0, d1, x, bk, two, NR);
  }
  for (int r = 0; r < NR; r++)
    out[r] = _mm512_reduce_add_ps(acc[r]);
}

/* Q4_0 in steps of four blocks (128 elements): the four blocks' low
 * nibbles in one vector (128-bit lane b: block b's elements 0..15), their
 * high nibbles in another (16..31), x's two 64-byte runs shuffled to match,
 * so one vector of int32 lanes holds the four blocks' partial sums (lane
 * group b: block b) and one fma applies their scales. The offset 8 comes
 * off through x's block sums (sum[b], one lane per group). Half the
 * instructions per element of two blocks per step; blocks past the last
 * multiple of 4 take small_rows_512's steps. */
/* WR weight rows (row_bytes apart) against NR rows of x; out[j * stride +
 * r]. Each (weight row, x row) pair runs the same operations in the same
 * order whatever WR and NR, so a result does not depend on its neighbours;
 * WR > 1 shares x's loads, shuffles and sums between weight rows. */
INLINE TVNNI void q4_0_wrows_512(const uint8_t *w, uint64_t row_bytes, const qiao__cpu_q8_row *x,
                                 uint64_t k, float *out, int stride, const int WR, const int NR) {
  const uint64_t nb = k / 32, nb4 = nb / 4 * 4;
  const __m512i low = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
  const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  const __m512i scale_words =
      _mm512_setr_epi32(0, 0, 0x00090009, 0x00090009, 0x00120012, 0x00120012, 0x001b001b,
                        0x001b001b, 0, 0, 0, 0, 0, 0, 0, 0);
  __m512 acc[4][4];
  for (int j = 0; j < WR; j++)
    for (int r = 0; r < NR; r++)
      acc[j][r] = _mm512_setzero_ps();
  for (uint64_t bk = 0; bk < nb4; bk += 4) {
    __m512i lo[4], hi[4];
    __m512 dw[4];
    for (int j = 0; j < WR; j++) {
      const uint8_t *b0 = w + (uint64_t)j * row_bytes + bk * 18;
      _mm_prefetch((const char *)b0 + 2048, _MM_HINT_T0);
      _mm_prefetch((const char *)b0 + 2048 + 64, _MM_HINT_T0);
      __m512i q = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(const void *)(b0 + 2)));
      q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(const void *)(b0 + 20)), 1);
      q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(const void *)(b0 + 38)), 2);
      q = _mm512_inserti32x4(q, _mm_loadu_si128((const __m128i *)(const void *)(b0 + 56)), 3);
      lo[j] = _mm512_and_si512(q, low), hi[j] = _mm512_and_si512(_mm512_srli_epi16(q, 4), low);
      /* the four f16 scales (words 0, 9, 18, 27 of the step's first 64
       * bytes), each to its lane group */
      __m512i words = _mm512_permutexvar_epi16(scale_words, _mm512_loadu_si512(b0));
      dw[j] = _mm512_cvtph_ps(_mm512_castsi512_si256(words));
    }
    for (int r = 0; r < NR; r++) {
      const int8_t *xq = x[r].q + bk * 32;
      __m512i x0 = _mm512_loadu_si512(xq), x1 = _mm512_loadu_si512(xq + 64);
      __m512i xlo = _mm512_shuffle_i64x2(x0, x1, 0x88), xhi = _mm512_shuffle_i64x2(x0, x1, 0xdd);
      /* 8 * sum[b] in lane 4b: what the offset added */
      __m512i off = _mm512_slli_epi32(_mm512_maskz_expandloadu_epi32(0x1111, x[r].sum + bk), 3);
      __m512 dx = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_loadu_ps(x[r].d + bk)));
      for (int j = 0; j < WR; j++) {
        __m512i z = _mm512_setzero_si512();
        __m512i i = _mm512_sub_epi32(
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(z, lo[j], xlo), hi[j], xhi), off);
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dw[j], dx), acc[j][r]);
      }
    }
  }
  for (uint64_t bk = nb4; bk < nb; bk++) /* the last blocks, one at a time */
    for (int j = 0; j < WR; j++) {
      const uint8_t *b0 = w + (uint64_t)j * row_bytes + bk * 18;
      __m512i v = _mm512_castsi256_si512(unsigned_quants(b0, 0));
      v = _mm512_inserti64x4(v, _mm256_setzero_si256(), 1);
      float d = _cvtsh_ss(qiao__cpu_load_u16(b0));
      for (int r = 0; r < NR; r++) {
        __m512i xv = _mm512_inserti64x4(
            _mm512_setzero_si512(),
            _mm256_loadu_si256((const __m256i *)(const void *)(x[r].q + bk * 32)), 0);
        __m512i z = _mm512_setzero_si512();
        __m512i i =
            _mm512_sub_epi32(_mm512_dpbusd_epi32(z, v, xv), _mm512_dpbusd_epi32(z, eight, xv));
        __m512 f = _mm512_maskz_mov_ps(0x00ff, _mm512_set1_ps(d * x[r].d[bk]));
        acc[j][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), f, acc[j][r]);
      }
    }
  for (int j = 0; j < WR; j++)
    for (int r = 0; r < NR; r++)
      out[j * stride + r] = _mm512_reduce_add_ps(acc[j][r]);
}
INLINE TVNNI void q4_0_rows_512(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                                const int NR) {
  q4_0_wrows_512(w, 0, x, k, out, 0, 1, NR);
}
INLINE TVNNI void q4_0_only_512(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                                const int NR, const int Q8) {
  (void)Q8;
  q4_0_rows_512(w, x, k, out, NR);
}

/* Up to 4 rows of x share each unpacked weight vector. */
#define VEC_Q8_SMALL(name, T, rows, Q8)                                                            \
  T void name(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out) {       \
    for (int r0 = 0; r0 < nr; r0 += 4) {                                                           \
      switch (nr - r0 < 4 ? nr - r0 : 4) {                                                         \
      case 4: rows(w, x + r0, k, out + r0, 4, Q8); break;                                          \
      case 3: rows(w, x + r0, k, out + r0, 3, Q8); break;                                          \
      case 2: rows(w, x + r0, k, out + r0, 2, Q8); break;                                          \
      default: rows(w, x + r0, k, out + r0, 1, Q8); break;                                         \
      }                                                                                            \
    }                                                                                              \
  }
VEC_Q8_SMALL(qiao__cpu_vec_q8_512_q8_0, TVNNI, small_rows_512, 1)
VEC_Q8_SMALL(qiao__cpu_vec_q8_512_q4_0, TVNNI, q4_0_only_512, 0)

/* Q4_0 on nw weight rows (cpu_internal.h's vec_q8_rows, prefill): four at a
 * time against up to 2 rows of x, two at a time against more. */
TVNNI void qiao__cpu_vec_q8_rows_512_q4_0(const uint8_t *w, uint64_t row_bytes, int nw,
                                          const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                          float *out) {
  const int chunk = nr <= 2 ? 4 : 2;
  for (int j0 = 0; j0 < nw; j0 += chunk) {
    int wr = nw - j0 < chunk ? nw - j0 : chunk;
    const uint8_t *wj = w + (uint64_t)j0 * row_bytes;
    float *o = out + j0 * nr;
    for (int r0 = 0; r0 < nr; r0 += 4) {
      int n = nr - r0 < 4 ? nr - r0 : 4;
#define Q4_0_CASE(WR_, NR_)                                                                        \
  if (wr == WR_ && n == NR_) {                                                                     \
    q4_0_wrows_512(wj, row_bytes, x + r0, k, o + r0, nr, WR_, NR_);                                \
    continue;                                                                                      \
  }
      if (chunk == 4) {
        Q4_0_CASE(4, 2) Q4_0_CASE(4, 1) Q4_0_CASE(3, 2) Q4_0_CASE(3, 1);
      }
      Q4_0_CASE(2, 4) Q4_0_CASE(2, 3) Q4_0_CASE(2, 2) Q4_0_CASE(2, 1);
      Q4_0_CASE(1, 4) Q4_0_CASE(1, 3) Q4_0_CASE(1, 2) Q4_0_CASE(1, 1);
#undef Q4_0_CASE
    }
  }
}

/* ---- AVX2: one block per step, 8 lanes ------------------------------------
 * vpmaddubsw multiplies unsigned by signed bytes with pairs summed to int16:
 * |v| goes in unsigned and q takes v's sign, so each pair is at most
 * 2 * 128 * 127 < 2^15 (no saturation), then vpmaddwd sums to int32. */
INLINE T2 __m256i signed_quants_256(const uint8_t *blk, const int Q8) {
  if (Q8) return _mm256_loadu_si256((const __m256i *)(const void *)(blk + 2));
  __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2));
  __m128i lo = _mm_and_si128(a, _mm_set1_epi8(0x0f));
  __m128i hi = _mm_and_si128(_mm_srli_epi16(a, 4), _mm_set1_epi8(0x0f));
  return _mm256_sub_epi8(_mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1),
                         _mm256_set1_epi8(8));
}

INLINE T2 void small_rows_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                              const int NR, const int Q8) {
  const uint64_t bytes = Q8 ? 34 : 18;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm256_setzero_ps();
  for (uint64_t bk = 0; bk < k / 32; bk++) {
    const uint8_t *blk = w + bk * bytes;
    _mm_prefetch((const char *)blk + 2048, _MM_HINT_T0);
    __m256i v = signed_quants_256(blk, Q8);
    __m256i u = _mm256_sign_epi8(v, v); /* |v|; -128 becomes 128 as unsigned */
    float d = _cvtsh_ss(qiao__cpu_load_u16(blk));
    for (int r = 0; r < NR; r++) {
      __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)(x[r].q + bk * 32));
      __m256i i = _mm256_madd_epi16(_mm256_maddubs_epi16(u, _mm256_sign_epi8(xv, v)), ones);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_set1_ps(d * x[r].d[bk]), acc[r]);
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = hsum8(acc[r]);
}
VEC_Q8_SMALL(qiao__cpu_vec_q8_256_q8_0, T2, small_rows_256, 1)
VEC_Q8_SMALL(qiao__cpu_vec_q8_256_q4_0, T2, small_rows_256, 0)

#endif
