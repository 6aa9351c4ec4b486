/* Small helpers shared by the x86 kernels of Q8 activations on stored blocks
 * (cpu_kquants_x86.c, cpu_q2_k_q3_k_x86.c, cpu_q4_1_q5_1_x86.c, cpu_iq4_x86.c,
 * cpu_vec_q8_x86.c): the target
 * attributes of the AVX-512 VNNI and AVX2 sets, f16 loads, lane spreads and
 * horizontal sums. Include only inside `#if defined(__x86_64__)`. */
#ifndef QIAO_CPU_SIMD_X86_H
#define QIAO_CPU_SIMD_X86_H

#include <immintrin.h>

#include "cpu_internal.h"

#define INLINE static inline __attribute__((always_inline))
#define TVNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define T2 __attribute__((target("avx2,fma,f16c")))

INLINE TVNNI float f16(const uint8_t *p) {
  return _cvtsh_ss(qiao__cpu_load_u16(p));
}

/* 16 lanes: lanes 0..7 = v[a], lanes 8..15 = v[b] of an 8-float vector. */
INLINE TVNNI __m512 spread2(__m256 v, int a, int b) {
  __m512i idx =
      _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(a)), _mm256_set1_epi32(b), 1);
  return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(v));
}

/* Two 32-byte runs of activations as one vector. */
INLINE TVNNI __m512i x2(const int8_t *lo, const int8_t *hi) {
  return _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(const void *)lo)),
      _mm256_loadu_si256((const __m256i *)(const void *)hi), 1);
}

/* 32 bytes repeated in both halves of a vector. */
INLINE TVNNI __m512i dup256(const uint8_t *p) {
  __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
  return _mm512_inserti64x4(_mm512_castsi256_si512(v), v, 1);
}

/* 16 int32 lanes, lane i = s[4 * first + i / 4]: the scales of the four
 * sub-blocks of 16 that a vector of 64 products covers (each lane of a
 * vpdpbusd sums 4 consecutive elements). */
INLINE TVNNI __m512i scale_lanes(__m512i s, int first) {
  __m512i idx = _mm512_add_epi32(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                 _mm512_set1_epi32(first));
  return _mm512_permutexvar_epi32(idx, s);
}

/* One step of two 32-element blocks for NR rows of x, from block bk: u holds
 * the blocks' quants as unsigned bytes (value + offset; upper half zero when
 * `two` is 0, the last block alone), so each half's int32 lanes get
 * sum(u * q) - sum(offset * q) = sum(value * q), scaled by d_w * d_x of its
 * block into acc[r] by one fma. */
INLINE TVNNI void two_blocks_step(__m512 *acc, __m512i u, __m512i offset, float d0, float d1,
                                  const qiao__cpu_q8_row *x, uint64_t bk, int two, const int NR) {
  for (int r = 0; r < NR; r++) {
    const int8_t *xq = x[r].q + bk * 32;
    __m512i xv = two ? _mm512_loadu_si512(xq)
                     : _mm512_inserti64x4(_mm512_setzero_si512(),
                                          _mm256_loadu_si256((const __m256i *)(const void *)xq), 0);
    __m512i z = _mm512_setzero_si512();
    __m512i i = _mm512_sub_epi32(_mm512_dpbusd_epi32(z, u, xv), _mm512_dpbusd_epi32(z, offset, xv));
    __m512 f = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0 * x[r].d[bk]),
                                    _mm512_set1_ps(two ? d1 * x[r].d[bk + 1] : 0.0f));
    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), f, acc[r]);
  }
}

/* 8 int32 lanes: lane i = sum of u[4i..4i+3] * s[4i..4i+3] (u unsigned, no
 * saturation while |u * s| summed in pairs stays under 2^15). */
INLINE T2 __m256i dot4_256(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

INLINE T2 float hsum8(__m256 v) {
  __m128 m4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m4 = _mm_add_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_add_ss(m4, _mm_movehdup_ps(m4));
  return _mm_cvtss_f32(m4);
}

INLINE T2 float f16_2(const uint8_t *p) {
  return _cvtsh_ss(qiao__cpu_load_u16(p));
}

/* The rows helper of a vec_q8 kernel called on x rows in groups of up to 4
 * (each group's unpacked weights are shared by its rows). */
#define QIAO__VEC_Q8_BY_FOUR(attr, name, rows)                                                     \
  attr void name(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out) {    \
    for (int r0 = 0; r0 < nr; r0 += 4) {                                                           \
      switch (nr - r0 < 4 ? nr - r0 : 4) {                                                         \
      case 4: rows(w, x + r0, k, out + r0, 4); break;                                              \
      case 3: rows(w, x + r0, k, out + r0, 3); break;                                              \
      case 2: rows(w, x + r0, k, out + r0, 2); break;                                              \
      default: rows(w, x + r0, k, out + r0, 1); break;                                             \
      }                                                                                            \
    }                                                                                              \
  }

#endif
