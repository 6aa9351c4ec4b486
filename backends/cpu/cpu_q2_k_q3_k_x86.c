/* AVX-512 VNNI and AVX2 kernels for Q8 activations on Q2_K and Q3_K blocks
 * read as stored (qiao__cpu_vec_q8_fn, cpu_internal.h): the bulk of
 * llama.cpp's Q2_K and Q3_K_M files. Layouts in docs/spec/format.md §4.1,
 * the portable definitions in cpu_kquants.c. Every sub-block of 16 weights
 * lies in one 128-bit lane of a vector, so its scale (and Q2_K's min) is
 * one value per lane; the integer products inside each group of 4 elements
 * are exact (int32), and the f32 factors (d * d_x and dmin * d_x for Q2_K,
 * whose scales are in the integers; d * scale * d_x for Q3_K) are applied
 * once per group, in an order fixed by k alone: a result depends on (w, x
 * row, k) only, never on nr. */
#include "cpu_internal.h"

#if defined(__x86_64__)
#include "cpu_simd_x86.h"

/* ---- AVX-512 VNNI ------------------------------------------------------------
 * Per half h of a super-block (128 elements, x blocks 4h..4h+3) two vectors
 * of 64: chunks (4h, 4h + 1) and (4h + 2, 4h + 3), sub-blocks 8h + 0..3 and
 * 8h + 4..7 in their four 128-bit lanes. */

/* Shuffle indices that give every byte (or, with 0x80 for the high bytes,
 * every 16-bit word) of 128-bit lane L the source byte first + L. */
INLINE TVNNI __m512i lane_bytes(int first) {
  return _mm512_add_epi8(_mm512_setr_epi64(0, 0, 0x0101010101010101, 0x0101010101010101,
                                           0x0202020202020202, 0x0202020202020202,
                                           0x0303030303030303, 0x0303030303030303),
                         _mm512_set1_epi8((char)first));
}
INLINE TVNNI __m512i lane_words(int first) {
  /* 0x80 + first keeps bit 7 set: those bytes come out zero */
  return _mm512_add_epi8(
      _mm512_setr_epi64((long long)0x8000800080008000, (long long)0x8000800080008000,
                        (long long)0x8001800180018001, (long long)0x8001800180018001,
                        (long long)0x8002800280028002, (long long)0x8002800280028002,
                        (long long)0x8003800380038003, (long long)0x8003800380038003),
      _mm512_set1_epi8((char)first));
}

/* Q2_K: 16 bytes (scale | min << 4), qs[64], f16 d, f16 dmin. The 2-bit
 * quants times their sub-block's scale fit a byte (3 * 15): they are formed
 * once per weight vector (a 16-bit multiply that cannot carry across bytes),
 * so each x row needs one vpdpbusd for sum(scale * q * x) and one with the
 * mins for sum(min * x). */
INLINE TVNNI void q2_k_rows(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                            const int NR) {
  const __m512i three = _mm512_set1_epi8(3), low = _mm512_set1_epi8(0x0f);
  const __m512i shift_a = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
  const __m512i shift_b = _mm512_setr_epi64(4, 4, 4, 4, 6, 6, 6, 6);
  __m512 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm512_setzero_ps();
  for (uint64_t s = 0; s < k / 256; s++) {
    const uint8_t *b = w + s * 84;
    _mm_prefetch((const char *)b + 2048, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 64, _MM_HINT_T0);
    __m512i sm = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(const void *)b));
    __m512i sc = _mm512_and_si512(sm, low), mn = _mm512_and_si512(_mm512_srli_epi16(sm, 4), low);
    float d = f16(b + 80), dmin = f16(b + 82);
    for (int h = 0; h < 2; h++) {
      __m512i q2 = dup256(b + 16 + 32 * h);
      __m512i qa = _mm512_and_si512(_mm512_srlv_epi64(q2, shift_a), three);
      __m512i qb = _mm512_and_si512(_mm512_srlv_epi64(q2, shift_b), three);
      qa = _mm512_mullo_epi16(qa, _mm512_shuffle_epi8(sc, lane_words(8 * h)));
      qb = _mm512_mullo_epi16(qb, _mm512_shuffle_epi8(sc, lane_words(8 * h + 4)));
      __m512i ma = _mm512_shuffle_epi8(mn, lane_bytes(8 * h));
      __m512i mb = _mm512_shuffle_epi8(mn, lane_bytes(8 * h + 4));
      for (int r = 0; r < NR; r++) {
        const int8_t *xq = x[r].q + s * 256 + 128 * h;
        __m512i xa = _mm512_loadu_si512(xq), xb = _mm512_loadu_si512(xq + 64);
        __m512i z = _mm512_setzero_si512();
        __m256 dx = _mm256_loadu_ps(x[r].d + s * 8);
        __m256 f = _mm256_mul_ps(_mm256_set1_ps(d), dx),
               g = _mm256_mul_ps(_mm256_set1_ps(dmin), dx);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, qa, xa)),
                                 spread2(f, 4 * h, 4 * h + 1), acc[r]);
        acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, ma, xa)),
                                  spread2(g, 4 * h, 4 * h + 1), acc[r]);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, qb, xb)),
                                 spread2(f, 4 * h + 2, 4 * h + 3), acc[r]);
        acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, mb, xb)),
                                  spread2(g, 4 * h + 2, 4 * h + 3), acc[r]);
      }
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = _mm512_reduce_add_ps(acc[r]);
}

/* Q3_K's sixteen 6-bit scales, minus 32 (cpu_kquants.c chunk_q3_k): scale
 * s has its low 4 bits in the low (s < 8) or high nibble of byte s % 8, its
 * top 2 bits at bit 2 (s / 4) of byte 8 + s % 4; four at a time in 32-bit
 * words. */
INLINE void q3_k_scales(const uint8_t *sc, int8_t out[16]) {
  uint32_t lo0, lo1, hi;
  memcpy(&lo0, sc, 4);
  memcpy(&lo1, sc + 4, 4);
  memcpy(&hi, sc + 8, 4);
  const uint32_t nib = 0x0f0f0f0f, two = 0x03030303;
  uint32_t v[4] = {(lo0 & nib) | (hi & two) << 4, (lo1 & nib) | (hi >> 2 & two) << 4,
                   (lo0 >> 4 & nib) | (hi >> 4 & two) << 4,
                   (lo1 >> 4 & nib) | (hi >> 6 & two) << 4};
  uint8_t bytes[16];
  memcpy(bytes, v, 16);
  for (int s = 0; s < 16; s++)
    out[s] = (int8_t)(bytes[s] - 32);
}

/* Q3_K: hmask[32], qs[64], 12 bytes of scales, f16 d. A quant is u - 4
 * with u = q + 4 (high bit set) in 0..7: sum(u * x) - 4 sum(x) exactly per
 * lane (the second sum as vpdpbusd's starting value), times the lane's f32
 * factor d * scale (exact: 11 by 6 bits) and d_x. */
INLINE TVNNI void q3_k_rows(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                            const int NR) {
  const __m512i three = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1), four = _mm512_set1_epi8(4);
  const __m512i shift_a = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
  const __m512i shift_b = _mm512_setr_epi64(4, 4, 4, 4, 6, 6, 6, 6);
  __m512 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm512_setzero_ps();
  for (uint64_t s = 0; s < k / 256; s++) {
    const uint8_t *b = w + s * 110;
    _mm_prefetch((const char *)b + 2048, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 64, _MM_HINT_T0);
    int8_t scales[16];
    q3_k_scales(b + 96, scales);
    __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)scales));
    float d = f16(b + 108);
    __m512i hm2 = dup256(b);
    for (int h = 0; h < 2; h++) {
      __m512i q2 = dup256(b + 32 + 32 * h);
      /* the high bits: bit j of hmask for chunk j = 4h + r */
      __m512i hsa =
          _mm512_setr_epi64(4 * h, 4 * h, 4 * h, 4 * h, 4 * h + 1, 4 * h + 1, 4 * h + 1, 4 * h + 1);
      __m512i hsb = _mm512_add_epi64(hsa, _mm512_set1_epi64(2));
      __m512i ua =
          _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi64(q2, shift_a), three),
                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi64(hm2, hsa), one), 2));
      __m512i ub =
          _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi64(q2, shift_b), three),
                          _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi64(hm2, hsb), one), 2));
      __m512 fa = _mm512_mul_ps(_mm512_cvtepi32_ps(scale_lanes(sc, 8 * h)), _mm512_set1_ps(d));
      __m512 fb = _mm512_mul_ps(_mm512_cvtepi32_ps(scale_lanes(sc, 8 * h + 4)), _mm512_set1_ps(d));
      for (int r = 0; r < NR; r++) {
        const int8_t *xq = x[r].q + s * 256 + 128 * h;
        __m512i xa = _mm512_loadu_si512(xq), xb = _mm512_loadu_si512(xq + 64);
        __m512i z = _mm512_setzero_si512();
        __m512i na = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(z, four, xa));
        __m512i nb = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(z, four, xb));
        __m256 dx = _mm256_loadu_ps(x[r].d + s * 8);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(na, ua, xa)),
                                 _mm512_mul_ps(fa, spread2(dx, 4 * h, 4 * h + 1)), acc[r]);
        acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(nb, ub, xb)),
                                 _mm512_mul_ps(fb, spread2(dx, 4 * h + 2, 4 * h + 3)), acc[r]);
      }
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = _mm512_reduce_add_ps(acc[r]);
}

QIAO__VEC_Q8_BY_FOUR(TVNNI, qiao__cpu_vec_q8_512_q2_k, q2_k_rows)
QIAO__VEC_Q8_BY_FOUR(TVNNI, qiao__cpu_vec_q8_512_q3_k, q3_k_rows)

/* ---- AVX2: one chunk of 32 (two sub-blocks, one per 128-bit lane) per step,
 * the same integer sums per group of 4 elements, 8 lanes. --------------------- */
INLINE T2 void q2_k_rows_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                             const int NR) {
  const __m256i three = _mm256_set1_epi8(3), low = _mm256_set1_epi8(0x0f);
  /* lane 0 takes source byte s, lane 1 byte s + 1; words with a zero high byte */
  const __m256i lane_b = _mm256_setr_epi64x(0, 0, 0x0101010101010101, 0x0101010101010101);
  const __m256i lane_w =
      _mm256_setr_epi64x((long long)0x8000800080008000, (long long)0x8000800080008000,
                         (long long)0x8001800180018001, (long long)0x8001800180018001);
  __m256 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm256_setzero_ps();
  for (uint64_t s = 0; s < k / 256; s++) {
    const uint8_t *b = w + s * 84;
    _mm_prefetch((const char *)b + 2048, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 64, _MM_HINT_T0);
    __m256i sm = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)b));
    __m256i sc = _mm256_and_si256(sm, low), mn = _mm256_and_si256(_mm256_srli_epi16(sm, 4), low);
    float d = f16_2(b + 80), dmin = f16_2(b + 82);
    for (int h = 0; h < 2; h++) {
      __m256i q2 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 16 + 32 * h));
      for (int p = 0; p < 4; p++) { /* chunk 4h + p, sub-blocks 8h + 2p, +1 */
        __m256i first = _mm256_set1_epi8((char)(8 * h + 2 * p));
        __m256i q = _mm256_and_si256(_mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * p)), three);
        q = _mm256_mullo_epi16(q, _mm256_shuffle_epi8(sc, _mm256_add_epi8(lane_w, first)));
        __m256i m = _mm256_shuffle_epi8(mn, _mm256_add_epi8(lane_b, first));
        for (int r = 0; r < NR; r++) {
          const int8_t *xq = x[r].q + s * 256 + 128 * h + 32 * p;
          __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)xq);
          float dx = x[r].d[s * 8 + 4 * h + p];
          acc[r] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot4_256(q, xv)), _mm256_set1_ps(d * dx), acc[r]);
          acc[r] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(dot4_256(m, xv)), _mm256_set1_ps(dmin * dx),
                                    acc[r]);
        }
      }
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = hsum8(acc[r]);
}

INLINE T2 void q3_k_rows_256(const uint8_t *w, const qiao__cpu_q8_row *x, uint64_t k, float *out,
                             const int NR) {
  const __m256i three = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1), four = _mm256_set1_epi8(4);
  __m256 acc[4];
  for (int r = 0; r < NR; r++)
    acc[r] = _mm256_setzero_ps();
  for (uint64_t s = 0; s < k / 256; s++) {
    const uint8_t *b = w + s * 110;
    _mm_prefetch((const char *)b + 2048, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 2048 + 64, _MM_HINT_T0);
    int8_t scales[16];
    q3_k_scales(b + 96, scales);
    float d = f16_2(b + 108);
    __m256i hm = _mm256_loadu_si256((const __m256i *)(const void *)b);
    for (int h = 0; h < 2; h++) {
      __m256i q2 = _mm256_loadu_si256((const __m256i *)(const void *)(b + 32 + 32 * h));
      for (int p = 0; p < 4; p++) { /* chunk j = 4h + p, sub-blocks 8h + 2p, +1 */
        int j = 4 * h + p, s0 = 8 * h + 2 * p;
        __m256i v = _mm256_or_si256(
            _mm256_and_si256(_mm256_srl_epi16(q2, _mm_cvtsi32_si128(2 * p)), three),
            _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hm, _mm_cvtsi32_si128(j)), one),
                              2));
        v = _mm256_sub_epi8(v, four);
        __m256i av = _mm256_abs_epi8(v);
        __m256i sc = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(scales[s0])),
                                             _mm_set1_epi16(scales[s0 + 1]), 1);
        for (int r = 0; r < NR; r++) {
          const int8_t *xq = x[r].q + s * 256 + 32 * j;
          __m256i xv = _mm256_loadu_si256((const __m256i *)(const void *)xq);
          __m256i i = _mm256_madd_epi16(_mm256_maddubs_epi16(av, _mm256_sign_epi8(xv, v)), sc);
          acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i),
                                   _mm256_set1_ps(d * x[r].d[s * 8 + (uint64_t)j]), acc[r]);
        }
      }
    }
  }
  for (int r = 0; r < NR; r++)
    out[r] = hsum8(acc[r]);
}

QIAO__VEC_Q8_BY_FOUR(T2, qiao__cpu_vec_q8_256_q2_k, q2_k_rows_256)
QIAO__VEC_Q8_BY_FOUR(T2, qiao__cpu_vec_q8_256_q3_k, q3_k_rows_256)

#endif
