/* The x86-64 kernels: AVX2+FMA+F16C and AVX-512 (F, BW, VL), compiled per
 * function with target attributes (no global -m flags: the binary runs on
 * any x86-64) and chosen at run time with __builtin_cpu_supports.
 *
 * Weights are dequantized exactly to f32 in registers (d * q is exact in
 * f32: an 11-bit scale times an 8-bit integer) and multiplied into f32
 * accumulators with FMA: step j of 16 (8) elements into accumulator j % 2
 * (j % 4). One AVX-512 exception: a single row of x against quantized
 * weights (decode) applies the scale once per block, d * sum(q * x), as it
 * is compute bound there. Prefill (k a multiple of 32) instead packs tiles
 * of weights converted to f32 for a GEMM kernel that broadcasts x and sums
 * each output in FMA chains of 128 elements. Either way an output depends
 * on the shapes only, never on threads. */
#include "cpu_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define INLINE static inline __attribute__((always_inline))
#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define T256 __attribute__((target("avx2,fma,f16c")))

/* Weight rows are streamed once per decode step; the hardware prefetcher
 * alone leaves the kernels waiting on memory (measured: decode at ~30% of
 * the bandwidth bound), so each weight stream is prefetched this far ahead
 * (bytes; tuned on a 2-core EPYC: quantized 6 KiB, F16/BF16 4 KiB; F32 did
 * not gain). Prefetches never fault and change no result. */
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 6144
#endif
#ifndef PREFETCH_REPACKED
#define PREFETCH_REPACKED(NR) ((NR) > 1)
#endif
#ifndef PREFETCH_FLOAT_BYTES
#define PREFETCH_FLOAT_BYTES 4096
#endif

/* ---- AVX-512: steps of 16 elements; step j goes into accumulator j % 2 ---
 * The kernel computes 1 or 2 weight rows (NW) against up to 4 rows of x
 * (NR) at once, so each x load feeds two FMAs and each dequantized weight
 * vector NR of them; every (weight row, x row) pair is summed in the same
 * order whatever NW and NR are. */

/* The f16 scale of a quantized block in all 16 lanes (broadcast, then one
 * conversion). */
INLINE T512 __m512 scale16(const uint8_t *block) {
  short h;
  memcpy(&h, block, 2);
  return _mm512_cvtph_ps(_mm256_set1_epi16(h));
}

/* The 16 quants of half `a` of a block as exact f32 integers (Q4_0: minus 8). */
INLINE T512 __m512 quants16(const uint8_t *block, const int a, const int dt) {
  if (dt == QIAO_DEV_Q8_0)
    return _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(block + 2 + a * 16))));
  /* Q4_0: a 16-entry table lookup (vpermps reads only the low 4 bits of each
   * index, so the low nibble needs no mask) gives nibble - 8 as f32. */
  const __m512 table = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
  __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(block + 2)));
  return _mm512_permutexvar_ps(a ? _mm512_srli_epi32(v, 4) : v, table);
}

/* F8_E4M3_B128 (1.4): the 16 codes at `off` of a 132-byte block (F32 scale
 * d, then 128 E4M3 codes) times d, exactly as the scalar table gives them.
 * Normal codes (exponent e > 0) are the f32 with exponent e + 120 and the
 * 3 mantissa bits on top; subnormal ones (e = 0) m * 2^-9, computed apart
 * so that no f32 subnormal is involved (exact under DAZ too). */
INLINE T512 __m512 f8x16(const uint8_t *block, uint64_t off) {
  __m512i v =
      _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(block + 4 + off)));
  __m512i mag = _mm512_and_si512(v, _mm512_set1_epi32(0x7f));
  __m512 normal = _mm512_castsi512_ps(
      _mm512_add_epi32(_mm512_slli_epi32(mag, 20), _mm512_set1_epi32(120 << 23)));
  __m512 sub = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, _mm512_set1_epi32(7))),
                             _mm512_set1_ps(0x1p-9f));
  __mmask16 is_sub = _mm512_testn_epi32_mask(v, _mm512_set1_epi32(0x78));
  __m512i sign = _mm512_slli_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0x80)), 24);
  __m512 value = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_castps_si512(_mm512_mask_blend_ps(is_sub, normal, sub)), sign));
  float d;
  memcpy(&d, block, 4);
  return _mm512_mul_ps(_mm512_set1_ps(d), value);
}

/* Weights of step s + a (s even; a in {0, 1}, constant, so the half of a
 * quantized block is known at compile time). */
INLINE T512 __m512 w16(const uint8_t *w, uint64_t s, const int a, const int dt) {
  switch (dt) {
  case QIAO_DEV_F8_E4M3_B128: {
    uint64_t e = (s + a) * 16;
    return f8x16(w + e / 128 * 132, e % 128);
  }
  case QIAO_DEV_F32: return _mm512_loadu_ps((const float *)(const void *)w + (s + a) * 16);
  case QIAO_DEV_F16:
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(w + (s + a) * 32)));
  case QIAO_DEV_BF16:
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(
                              (const __m256i *)(const void *)(w + (s + a) * 32))),
                          16));
  case QIAO_DEV_Q8_0: {
    const uint8_t *block = w + (s / 2) * 34;
    return _mm512_mul_ps(scale16(block), quants16(block, a, dt));
  }
  default: { /* Q4_0 */
    const uint8_t *block = w + (s / 2) * 18;
    return _mm512_mul_ps(scale16(block), quants16(block, a, dt));
  }
  }
}

/* The last partial step of a float row (masked; never for quantized). */
INLINE T512 __m512 w16_tail(const uint8_t *w, uint64_t s, __mmask16 m, const int dt) {
  switch (dt) {
  case QIAO_DEV_F32: return _mm512_maskz_loadu_ps(m, (const float *)(const void *)w + s * 16);
  case QIAO_DEV_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + s * 32));
  default:
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, w + s * 32)), 16));
  }
}

#define STEP512(a)                                                                                 \
  do {                                                                                             \
    if (a == 0 && (dt == QIAO_DEV_F16 || dt == QIAO_DEV_BF16)) {                                   \
      uint64_t at_ = s * 32 + PREFETCH_FLOAT_BYTES;                                                \
      _mm_prefetch((const char *)w0 + at_, _MM_HINT_T0);                                           \
      if (NW == 2) _mm_prefetch((const char *)w1 + at_, _MM_HINT_T0);                              \
    }                                                                                              \
    __m512 wv0 = w16(w0, s, a, dt), wv1 = NW == 2 ? w16(w1, s, a, dt) : wv0;                       \
    for (int r = 0; r < NR; r++) {                                                                 \
      __m512 xv = _mm512_loadu_ps(x[r] + (s + a) * 16);                                            \
      acc[0][r][a] = _mm512_fmadd_ps(wv0, xv, acc[0][r][a]);                                       \
      if (NW == 2) acc[1][r][a] = _mm512_fmadd_ps(wv1, xv, acc[1][r][a]);                          \
    }                                                                                              \
  } while (0)

/* One row of x against quantized rows (decode): the scale is applied once
 * per block to the block's partial sum, d * sum(q * x), instead of to every
 * weight: fewer operations where decode is compute bound. Block b goes into
 * accumulator b % 2. */
INLINE T512 void dot512_q1(const uint8_t *w0, const uint8_t *w1, const float *x, uint64_t k,
                           float *out0, float *out1, const int dt, const int NW) {
  const uint64_t bs = dt == QIAO_DEV_Q8_0 ? 34 : 18, blocks = k / 32;
  __m512 acc[2][2] = {{_mm512_setzero_ps(), _mm512_setzero_ps()},
                      {_mm512_setzero_ps(), _mm512_setzero_ps()}};
#define BLOCK512(p)                                                                                \
  do {                                                                                             \
    __m512 x0 = _mm512_loadu_ps(x + (b + p) * 32), x1 = _mm512_loadu_ps(x + (b + p) * 32 + 16);    \
    for (int i = 0; i < NW; i++) {                                                                 \
      const uint8_t *block = (i ? w1 : w0) + (b + p) * bs;                                         \
      _mm_prefetch((const char *)block + PREFETCH_BYTES, _MM_HINT_T0);                             \
      __m512 t = _mm512_mul_ps(quants16(block, 0, dt), x0);                                        \
      t = _mm512_fmadd_ps(quants16(block, 1, dt), x1, t);                                          \
      acc[i][p] = _mm512_fmadd_ps(scale16(block), t, acc[i][p]);                                   \
    }                                                                                              \
  } while (0)
  uint64_t b = 0;
  for (; b + 2 <= blocks; b += 2) {
    BLOCK512(0);
    BLOCK512(1);
  }
  if (b < blocks) BLOCK512(0);
#undef BLOCK512
  out0[0] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][0], acc[0][1]));
  if (NW == 2) out1[0] = _mm512_reduce_add_ps(_mm512_add_ps(acc[1][0], acc[1][1]));
}

INLINE T512 void dot512(const uint8_t *w0, const uint8_t *w1, const float *const *x, uint64_t k,
                        float *out0, float *out1, const int dt, const int NW, const int NR) {
  if (NR == 1 && (dt == QIAO_DEV_Q8_0 || dt == QIAO_DEV_Q4_0)) {
    dot512_q1(w0, w1, x[0], k, out0, out1, dt, NW);
    return;
  }
  __m512 acc[2][4][2];
  for (int i = 0; i < NW; i++)
    for (int r = 0; r < NR; r++)
      acc[i][r][0] = acc[i][r][1] = _mm512_setzero_ps();
  uint64_t steps = k / 16, s = 0;
  for (; s + 2 <= steps; s += 2) {
    STEP512(0);
    STEP512(1);
  }
  if (s < steps) STEP512(0);
  if (dt != QIAO_DEV_Q8_0 && dt != QIAO_DEV_Q4_0 && dt != QIAO_DEV_F8_E4M3_B128 && k % 16 != 0) {
    __mmask16 m = (__mmask16)((1u << (k % 16)) - 1);
    __m512 wv0 = w16_tail(w0, steps, m, dt), wv1 = NW == 2 ? w16_tail(w1, steps, m, dt) : wv0;
    for (int r = 0; r < NR; r++) {
      __m512 xv = _mm512_maskz_loadu_ps(m, x[r] + steps * 16);
      acc[0][r][0] = _mm512_fmadd_ps(wv0, xv, acc[0][r][0]);
      if (NW == 2) acc[1][r][0] = _mm512_fmadd_ps(wv1, xv, acc[1][r][0]);
    }
  }
  for (int r = 0; r < NR; r++) {
    out0[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[0][r][0], acc[0][r][1]));
    if (NW == 2) out1[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[1][r][0], acc[1][r][1]));
  }
}

/* nr rows of x in groups of 4, for NW weight rows. */
#define DOT512_GROUPS(NW)                                                                          \
  do {                                                                                             \
    int r = 0;                                                                                     \
    for (; nr - r >= 4; r += 4)                                                                    \
      dot512(w0, w1, x + r, k, out0 + r, out1 + r, dt, NW, 4);                                     \
    switch (nr - r) {                                                                              \
    case 3: dot512(w0, w1, x + r, k, out0 + r, out1 + r, dt, NW, 3); break;                        \
    case 2: dot512(w0, w1, x + r, k, out0 + r, out1 + r, dt, NW, 2); break;                        \
    case 1: dot512(w0, w1, x + r, k, out0 + r, out1 + r, dt, NW, 1); break;                        \
    default: break;                                                                                \
    }                                                                                              \
  } while (0)

#define DOT512(name, name2, dtype)                                                                 \
  static T512 void name(const uint8_t *w0, const float *const *x, int nr, uint64_t k,              \
                        float *out0) {                                                             \
    const uint8_t *w1 = w0;                                                                        \
    float *out1 = out0;                                                                            \
    const int dt = dtype;                                                                          \
    DOT512_GROUPS(1);                                                                              \
  }                                                                                                \
  static T512 void name2(const uint8_t *w0, const uint8_t *w1, const float *const *x, int nr,      \
                         uint64_t k, float *out0, float *out1) {                                   \
    const int dt = dtype;                                                                          \
    DOT512_GROUPS(2);                                                                              \
  }
/* The decode case: the dot kernel inlined into the loop over rows. */
#define GEMV512(name, dtype)                                                                       \
  static T512 void name(const uint8_t *w, uint64_t row_bytes, uint64_t m, const float *x,          \
                        uint64_t k, float *out) {                                                  \
    const float *const xs[1] = {x};                                                                \
    for (uint64_t j = 0; j < m; j++) {                                                             \
      const uint8_t *row = w + j * row_bytes;                                                      \
      dot512(row, row, xs, k, out + j, out + j, dtype, 1, 1);                                      \
    }                                                                                              \
  }
GEMV512(gemv512_f32, QIAO_DEV_F32)
GEMV512(gemv512_f16, QIAO_DEV_F16)
GEMV512(gemv512_bf16, QIAO_DEV_BF16)
GEMV512(gemv512_q8_0, QIAO_DEV_Q8_0)
GEMV512(gemv512_q4_0, QIAO_DEV_Q4_0)
GEMV512(gemv512_f8, QIAO_DEV_F8_E4M3_B128)

DOT512(dot512_f32, dot2_512_f32, QIAO_DEV_F32)
DOT512(dot512_f16, dot2_512_f16, QIAO_DEV_F16)
DOT512(dot512_bf16, dot2_512_bf16, QIAO_DEV_BF16)
DOT512(dot512_q8_0, dot2_512_q8_0, QIAO_DEV_Q8_0)
DOT512(dot512_q4_0, dot2_512_q4_0, QIAO_DEV_Q4_0)
DOT512(dot512_f8, dot2_512_f8, QIAO_DEV_F8_E4M3_B128)

#define DEQUANT512(name, dtype)                                                                    \
  static T512 void name(const uint8_t *w, uint64_t k, float *out) {                                \
    for (uint64_t s = 0; s < k / 16; s += 2) {                                                     \
      _mm512_storeu_ps(out + s * 16, w16(w, s, 0, dtype));                                         \
      _mm512_storeu_ps(out + s * 16 + 16, w16(w, s, 1, dtype));                                    \
    }                                                                                              \
  }
DEQUANT512(dequant512_f32, QIAO_DEV_F32)
DEQUANT512(dequant512_f16, QIAO_DEV_F16)
DEQUANT512(dequant512_bf16, QIAO_DEV_BF16)
DEQUANT512(dequant512_q8_0, QIAO_DEV_Q8_0)
DEQUANT512(dequant512_q4_0, QIAO_DEV_Q4_0)
DEQUANT512(dequant512_f8, QIAO_DEV_F8_E4M3_B128)

/* ---- AVX-512 packed GEMM (prefill): see cpu_internal.h ------------------ */

/* v[r] = row r of a 16 x 16 block -> v[c] = column c. */
INLINE T512 void transpose16(__m512 v[16]) {
  __m512 a[16], b[16];
  for (int i = 0; i < 16; i += 2) { /* pairs of rows interleaved */
    a[i] = _mm512_unpacklo_ps(v[i], v[i + 1]);
    a[i + 1] = _mm512_unpackhi_ps(v[i], v[i + 1]);
  }
  /* b[4g + e]: rows 4g .. 4g+3 at elements e, e+4, e+8, e+12 (one per lane) */
  for (int g = 0; g < 4; g++) {
    __m512d lo0 = _mm512_castps_pd(a[4 * g]), lo1 = _mm512_castps_pd(a[4 * g + 2]);
    __m512d hi0 = _mm512_castps_pd(a[4 * g + 1]), hi1 = _mm512_castps_pd(a[4 * g + 3]);
    b[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo0, lo1));
    b[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo0, lo1));
    b[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi0, hi1));
    b[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi0, hi1));
  }
  /* Gather each element's four lanes from the four groups of rows. */
  for (int e = 0; e < 4; e++) {
    __m512 lo01 = _mm512_shuffle_f32x4(b[e], b[4 + e], 0x88); /* e, e+8 of groups 0, 1 */
    __m512 hi01 = _mm512_shuffle_f32x4(b[e], b[4 + e], 0xdd); /* e+4, e+12 */
    __m512 lo23 = _mm512_shuffle_f32x4(b[8 + e], b[12 + e], 0x88);
    __m512 hi23 = _mm512_shuffle_f32x4(b[8 + e], b[12 + e], 0xdd);
    v[e] = _mm512_shuffle_f32x4(lo01, lo23, 0x88);
    v[e + 8] = _mm512_shuffle_f32x4(lo01, lo23, 0xdd);
    v[e + 4] = _mm512_shuffle_f32x4(hi01, hi23, 0x88);
    v[e + 12] = _mm512_shuffle_f32x4(hi01, hi23, 0xdd);
  }
}

static T512 void pack512(const float *rows, uint64_t k, int half, float *wp) {
  for (uint64_t i0 = 0; i0 < k; i0 += 16) {
    __m512 v[16];
    for (int r = 0; r < 16; r++)
      v[r] = _mm512_loadu_ps(rows + (uint64_t)r * k + i0);
    transpose16(v);
    for (int e = 0; e < 16; e++)
      _mm512_storeu_ps(wp + (i0 + (uint64_t)e) * QIAO__CPU_GEMM_COLS + 16 * half, v[e]);
  }
}

/* The packed GEMM's one summation rule, shared by every kernel that must
 * give its bits (the repacked and fused ones too): a chunk's sums start
 * fresh and are added to what the earlier chunks left in out. */
INLINE T512 void add_chunk(float *o, __m512 acc, int first) {
  _mm512_storeu_ps(o, first ? acc : _mm512_add_ps(_mm512_loadu_ps(o), acc));
}

/* add_chunk for the rows of a tile: rows r < nr of two accumulators (16
 * columns each) into out[r * QIAO__CPU_GEMM_COLS + c]. */
INLINE T512 void add_tile(float *out, __m512 (*acc)[2], int nr, int first) {
  for (int r = 0; r < nr; r++)
    for (int h = 0; h < 2; h++)
      add_chunk(out + r * QIAO__CPU_GEMM_COLS + 16 * h, acc[r][h], first);
}

/* NR rows of x against the 32 packed columns: element i of each x row is
 * broadcast and multiplied into two vectors of 16 columns. Each chunk of
 * GEMM_CHUNK elements is summed in fresh accumulators and then added to
 * out: one chain over all of k measured 6x the error of the dot kernels
 * against float64 (1.4e-6 vs 2.2e-7 at k = 4128). */
enum { GEMM_CHUNK = 128 };
INLINE T512 void gemm512_rows(const float *wp, const float *const *x, uint64_t k, float *out,
                              const int NR) {
  for (uint64_t i0 = 0; i0 < k; i0 += GEMM_CHUNK) {
    uint64_t i1 = k - i0 < GEMM_CHUNK ? k : i0 + GEMM_CHUNK;
    __m512 acc[QIAO__CPU_MAX_ROWS][2];
    for (int r = 0; r < NR; r++)
      acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (uint64_t i = i0; i < i1; i++) {
      __m512 w0 = _mm512_loadu_ps(wp + i * QIAO__CPU_GEMM_COLS);
      __m512 w1 = _mm512_loadu_ps(wp + i * QIAO__CPU_GEMM_COLS + 16);
      for (int r = 0; r < NR; r++) {
        __m512 xv = _mm512_set1_ps(x[r][i]);
        acc[r][0] = _mm512_fmadd_ps(xv, w0, acc[r][0]);
        acc[r][1] = _mm512_fmadd_ps(xv, w1, acc[r][1]);
      }
    }
    add_tile(out, acc, NR, i0 == 0);
  }
}

static T512 void gemm512(const float *wp, const float *const *x, int nr, uint64_t k, float *out) {
  switch (nr) {
  case 8: gemm512_rows(wp, x, k, out, 8); break;
  case 7: gemm512_rows(wp, x, k, out, 7); break;
  case 6: gemm512_rows(wp, x, k, out, 6); break;
  case 5: gemm512_rows(wp, x, k, out, 5); break;
  case 4: gemm512_rows(wp, x, k, out, 4); break;
  case 3: gemm512_rows(wp, x, k, out, 3); break;
  case 2: gemm512_rows(wp, x, k, out, 2); break;
  default: gemm512_rows(wp, x, k, out, 1); break;
  }
}

/* The packed GEMM's sums for a few rows of x (batch-invariant decode),
 * straight from the weights: each step dequantizes 16 elements of 16 weight
 * rows, transposes them in registers into what pack512 would have stored
 * (element e of the 16 rows in one vector), and multiplies exactly as
 * gemm512_rows does, in the same order, so every result is bit-identical to
 * dequant + pack + gemm, without writing the tile to memory twice. Rows of
 * the tile at or past `count` read row 0 instead; their results are never
 * stored by the caller. */
INLINE T512 void gemv_packed512_rows(const uint8_t *w, uint64_t row_bytes, uint64_t count,
                                     const float *const *x, uint64_t k, float *out, const int dt,
                                     const int NR) {
  const uint8_t *rows[QIAO__CPU_GEMM_COLS];
  for (uint64_t c = 0; c < QIAO__CPU_GEMM_COLS; c++)
    rows[c] = w + (c < count ? c : 0) * row_bytes;
  /* Prefetches never fault, so reading past the matrix is harmless. */
  const char *next = (const char *)w + QIAO__CPU_GEMM_COLS * row_bytes;
  const uint64_t per_pair = (QIAO__CPU_GEMM_COLS * row_bytes + k / 32 - 1) / (k / 32);
  for (uint64_t i0 = 0; i0 < k; i0 += GEMM_CHUNK) {
    uint64_t i1 = k - i0 < GEMM_CHUNK ? k : i0 + GEMM_CHUNK;
    __m512 acc[2][4];
    for (int h = 0; h < 2; h++)
      for (int r = 0; r < NR; r++)
        acc[h][r] = _mm512_setzero_ps();
    for (uint64_t s = i0 / 16; s < i1 / 16; s += 2) { /* k % 32 == 0: steps in pairs */
      /* The tile is read 32 rows at a time, which the hardware prefetcher
       * follows badly; the next tile (the next 32 rows, contiguous) is
       * fetched into L2 in order meanwhile, an equal part at every step. */
      for (uint64_t b = (s / 2) * per_pair; b < (s / 2 + 1) * per_pair; b += 64)
        _mm_prefetch(next + b, _MM_HINT_T1);
#define STEP_PACKED(a)                                                                             \
  for (int h = 0; h < 2; h++) {                                                                    \
    __m512 v[16];                                                                                  \
    for (int c = 0; c < 16; c++)                                                                   \
      v[c] = w16(rows[16 * h + c], s, a, dt);                                                      \
    transpose16(v);                                                                                \
    for (int e = 0; e < 16; e++)                                                                   \
      for (int r = 0; r < NR; r++)                                                                 \
        acc[h][r] =                                                                                \
            _mm512_fmadd_ps(_mm512_set1_ps(x[r][(s + a) * 16 + (uint64_t)e]), v[e], acc[h][r]);    \
  }
      STEP_PACKED(0)
      STEP_PACKED(1)
#undef STEP_PACKED
    }
    for (int r = 0; r < NR; r++)
      for (int h = 0; h < 2; h++) {
        float *o = out + r * QIAO__CPU_GEMM_COLS + 16 * h;
        add_chunk(o, acc[h][r], i0 == 0);
      }
  }
}

#define GEMV_PACKED512(name, dtype)                                                                \
  static T512 void name(const uint8_t *w, uint64_t row_bytes, uint64_t count,                      \
                        const float *const *x, int nr, uint64_t k, float *out) {                   \
    switch (nr) {                                                                                  \
    case 4: gemv_packed512_rows(w, row_bytes, count, x, k, out, dtype, 4); break;                  \
    case 3: gemv_packed512_rows(w, row_bytes, count, x, k, out, dtype, 3); break;                  \
    case 2: gemv_packed512_rows(w, row_bytes, count, x, k, out, dtype, 2); break;                  \
    default: gemv_packed512_rows(w, row_bytes, count, x, k, out, dtype, 1); break;                 \
    }                                                                                              \
  }
GEMV_PACKED512(gemv_packed512_f32, QIAO_DEV_F32)
GEMV_PACKED512(gemv_packed512_f16, QIAO_DEV_F16)
GEMV_PACKED512(gemv_packed512_bf16, QIAO_DEV_BF16)
GEMV_PACKED512(gemv_packed512_q8_0, QIAO_DEV_Q8_0)
GEMV_PACKED512(gemv_packed512_q4_0, QIAO_DEV_Q4_0)

/* ---- AVX-512 GEMM on repacked quantized tiles: see cpu_internal.h ------
 * The batch-invariant path: the packed GEMM's sums on weights kept as int8
 * and f32 scales (a quarter of the f32 tile's bytes). Each element's 32
 * weights are converted as dequant512 does (the f32 product of the scale
 * and the integer: exact) and multiplied exactly as gemm512_rows does, in
 * the same order, so every result is bit-identical to it. */
INLINE T512 void repack512(const uint8_t *w, uint64_t row_bytes, uint64_t count, uint64_t k,
                           uint8_t *tile, const int dt) {
  const uint64_t block_bytes = dt == QIAO_DEV_Q8_0 ? 34 : 18;
  for (uint64_t b = 0; b < k / 32; b++) {
    uint8_t *dst = tile + b * QIAO__CPU_REPACK_BLOCK;
    short d[QIAO__CPU_GEMM_COLS];
    int8_t q[32][QIAO__CPU_GEMM_COLS]; /* [element][column] */
    for (uint64_t c = 0; c < QIAO__CPU_GEMM_COLS; c++) {
      if (c >= count) { /* past the last row: zero columns, never stored */
        d[c] = 0;
        for (int i = 0; i < 32; i++)
          q[i][c] = 0;
        continue;
      }
      const uint8_t *block = w + c * row_bytes + b * block_bytes;
      memcpy(&d[c], block, 2);
      for (int i = 0; i < 32; i++)
        q[i][c] = dt == QIAO_DEV_Q8_0
                      ? (int8_t)block[2 + i]
                      : (int8_t)((i < 16 ? block[2 + i] & 0xf : block[2 + i - 16] >> 4) - 8);
    }
    /* The same conversion as scale16's. */
    _mm512_storeu_ps((float *)(void *)dst,
                     _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)d)));
    _mm512_storeu_ps((float *)(void *)(dst + 64),
                     _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(d + 16))));
    memcpy(dst + 4 * QIAO__CPU_GEMM_COLS, q, sizeof(q));
  }
}
static T512 void repack512_q8_0(const uint8_t *w, uint64_t row_bytes, uint64_t count, uint64_t k,
                                uint8_t *tile) {
  repack512(w, row_bytes, count, k, tile, QIAO_DEV_Q8_0);
}
static T512 void repack512_q4_0(const uint8_t *w, uint64_t row_bytes, uint64_t count, uint64_t k,
                                uint8_t *tile) {
  repack512(w, row_bytes, count, k, tile, QIAO_DEV_Q4_0);
}

/* The 16 weights of columns 16 * h .. 16 * h + 15 at element e of a block. */
INLINE T512 __m512 repacked16(const uint8_t *q, __m512 d, int e, int h) {
  __m128i v =
      _mm_loadu_si128((const __m128i *)(const void *)(q + e * QIAO__CPU_GEMM_COLS + 16 * h));
  return _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)));
}

INLINE T512 void gemm_repacked512_rows(const uint8_t *tile, const float *const *x, uint64_t k,
                                       float *out, const int NR) {
  /* The next tile (contiguous: the caller's next, or another thread's) is
   * fetched into L2 meanwhile, a block per block, so that the weights'
   * stream from memory overlaps the arithmetic. Prefetches never fault. */
  const char *next = (const char *)tile + k / 32 * QIAO__CPU_REPACK_BLOCK;
  for (uint64_t i0 = 0; i0 < k; i0 += GEMM_CHUNK) {
    uint64_t i1 = k - i0 < GEMM_CHUNK ? k : i0 + GEMM_CHUNK;
    __m512 acc[QIAO__CPU_MAX_ROWS][2];
    for (int r = 0; r < NR; r++)
      acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (uint64_t b = i0 / 32; b < i1 / 32; b++) { /* whole blocks: k % 32 == 0 */
      const uint8_t *block = tile + b * QIAO__CPU_REPACK_BLOCK;
      for (int line = 0; PREFETCH_REPACKED(NR) && line < QIAO__CPU_REPACK_BLOCK; line += 64)
        _mm_prefetch(next + b * QIAO__CPU_REPACK_BLOCK + line, _MM_HINT_T1);
      const uint8_t *q = block + 4 * QIAO__CPU_GEMM_COLS;
      __m512 d0 = _mm512_loadu_ps((const float *)(const void *)block);
      __m512 d1 = _mm512_loadu_ps((const float *)(const void *)(block + 64));
      for (int e = 0; e < 32; e++) {
        __m512 w0 = repacked16(q, d0, e, 0), w1 = repacked16(q, d1, e, 1);
        for (int r = 0; r < NR; r++) {
          __m512 xv = _mm512_set1_ps(x[r][b * 32 + (uint64_t)e]);
          acc[r][0] = _mm512_fmadd_ps(xv, w0, acc[r][0]);
          acc[r][1] = _mm512_fmadd_ps(xv, w1, acc[r][1]);
        }
      }
    }
    add_tile(out, acc, NR, i0 == 0);
  }
}

/* One row of x (decode) against two consecutive tiles: each output is an
 * FMA chain, so one tile's two chains would wait on the FMA latency; four
 * independent ones keep the units busy. out[c] for the first tile's
 * columns, out[QIAO__CPU_GEMM_COLS + c] for the second's; the same sums. */
static T512 void gemm2_repacked512(const uint8_t *tile, const float *x, uint64_t k, float *out) {
  const uint64_t tile_bytes = k / 32 * QIAO__CPU_REPACK_BLOCK;
  for (uint64_t i0 = 0; i0 < k; i0 += GEMM_CHUNK) {
    uint64_t i1 = k - i0 < GEMM_CHUNK ? k : i0 + GEMM_CHUNK;
    __m512 acc[2][2];
    for (int t = 0; t < 2; t++)
      acc[t][0] = acc[t][1] = _mm512_setzero_ps();
    for (uint64_t b = i0 / 32; b < i1 / 32; b++) {
      const uint8_t *block0 = tile + b * QIAO__CPU_REPACK_BLOCK, *block1 = block0 + tile_bytes;
      const uint8_t *q0 = block0 + 4 * QIAO__CPU_GEMM_COLS, *q1 = block1 + 4 * QIAO__CPU_GEMM_COLS;
      __m512 d00 = _mm512_loadu_ps((const float *)(const void *)block0);
      __m512 d01 = _mm512_loadu_ps((const float *)(const void *)(block0 + 64));
      __m512 d10 = _mm512_loadu_ps((const float *)(const void *)block1);
      __m512 d11 = _mm512_loadu_ps((const float *)(const void *)(block1 + 64));
      for (int e = 0; e < 32; e++) {
        __m512 xv = _mm512_set1_ps(x[b * 32 + (uint64_t)e]);
        acc[0][0] = _mm512_fmadd_ps(xv, repacked16(q0, d00, e, 0), acc[0][0]);
        acc[0][1] = _mm512_fmadd_ps(xv, repacked16(q0, d01, e, 1), acc[0][1]);
        acc[1][0] = _mm512_fmadd_ps(xv, repacked16(q1, d10, e, 0), acc[1][0]);
        acc[1][1] = _mm512_fmadd_ps(xv, repacked16(q1, d11, e, 1), acc[1][1]);
      }
    }
    add_tile(out, acc, 2, i0 == 0);
  }
}

static T512 void gemm_repacked512(const uint8_t *tile, const float *const *x, int nr, uint64_t k,
                                  float *out) {
  switch (nr) {
  case 8: gemm_repacked512_rows(tile, x, k, out, 8); break;
  case 7: gemm_repacked512_rows(tile, x, k, out, 7); break;
  case 6: gemm_repacked512_rows(tile, x, k, out, 6); break;
  case 5: gemm_repacked512_rows(tile, x, k, out, 5); break;
  case 4: gemm_repacked512_rows(tile, x, k, out, 4); break;
  case 3: gemm_repacked512_rows(tile, x, k, out, 3); break;
  case 2: gemm_repacked512_rows(tile, x, k, out, 2); break;
  default: gemm_repacked512_rows(tile, x, k, out, 1); break;
  }
}

/* Q8 activations on the tiles of Q8_0 or Q4_0 weights (cpu_internal.h,
 * qiao__cpu_q8_row), with AVX512-VNNI: one vpdpbusd multiplies a group of
 * 4 unsigned weight bytes by 4 signed activation bytes for 16 columns and
 * adds the 4 products to a 32-bit lane (Q4_0: the nibbles of one load are
 * two groups); the offset of the weights is taken back per block with the
 * row's quant sum. The float steps are those of the portable kernel, one
 * row at a time, so the bits are the same for any nr. */
#define T512VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
/* The 4 quants of group g of block b of a row of x, as one 32-bit lane. */
static inline int32_t x_four(const qiao__cpu_q8_row *x, uint64_t b, int g) {
  int32_t four;
  memcpy(&four, x->q + b * 32 + (uint64_t)g * 4, 4);
  return four;
}
INLINE T512VNNI __m512i x_group(const qiao__cpu_q8_row *x, uint64_t b, int g) {
  return _mm512_set1_epi32(x_four(x, b, g));
}

INLINE T512VNNI void gemm_q8_512_rows(const uint8_t *tile, const qiao__cpu_q8_row *x, uint64_t k,
                                      float *out, const int NR, const int DT) {
  const uint64_t cols = QIAO__CPU_GEMM_COLS, block_bytes = qiao__cpu_q8_block_bytes(DT);
  const int offset = DT == QIAO_DEV_Q8_0 ? 128 : 8;
  const char *next = (const char *)tile + k / 32 * block_bytes; /* see gemm_repacked512 */
  const __m512i low = _mm512_set1_epi8(0x0f);
  __m512 acc[4][2];
  for (int r = 0; r < NR; r++)
    acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (uint64_t b = 0; b < k / 32; b++) {
    const uint8_t *block = tile + b * block_bytes, *quants = block + 4 * cols;
    for (uint64_t line = 0; NR <= 2 && line < block_bytes; line += 64)
      _mm_prefetch(next + b * block_bytes + line, _MM_HINT_T1);
    __m512i dot[4][2];
    for (int r = 0; r < NR; r++)
      dot[r][0] = dot[r][1] = _mm512_setzero_si512();
    for (int g = 0; g < (DT == QIAO_DEV_Q8_0 ? 8 : 4); g++) {
      __m512i w0 = _mm512_loadu_si512(quants + g * cols * 4);
      __m512i w1 = _mm512_loadu_si512(quants + g * cols * 4 + 64);
      if (DT == QIAO_DEV_Q8_0) {
        for (int r = 0; r < NR; r++) {
          __m512i xv = x_group(&x[r], b, g);
          dot[r][0] = _mm512_dpbusd_epi32(dot[r][0], w0, xv);
          dot[r][1] = _mm512_dpbusd_epi32(dot[r][1], w1, xv);
        }
      } else { /* low nibbles: group g, high nibbles: group g + 4 */
        __m512i l0 = _mm512_and_si512(w0, low), l1 = _mm512_and_si512(w1, low);
        __m512i h0 = _mm512_and_si512(_mm512_srli_epi16(w0, 4), low);
        __m512i h1 = _mm512_and_si512(_mm512_srli_epi16(w1, 4), low);
        for (int r = 0; r < NR; r++) {
          __m512i xl = x_group(&x[r], b, g), xh = x_group(&x[r], b, g + 4);
          dot[r][0] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(dot[r][0], l0, xl), h0, xh);
          dot[r][1] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(dot[r][1], l1, xl), h1, xh);
        }
      }
    }
    __m512 d0 = _mm512_loadu_ps((const float *)(const void *)block);
    __m512 d1 = _mm512_loadu_ps((const float *)(const void *)(block + 64));
    for (int r = 0; r < NR; r++) {
      __m512i shift = _mm512_set1_epi32(offset * x[r].sum[b]);
      __m512 dx = _mm512_set1_ps(x[r].d[b]);
      acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dot[r][0], shift)),
                                  _mm512_mul_ps(d0, dx), acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dot[r][1], shift)),
                                  _mm512_mul_ps(d1, dx), acc[r][1]);
    }
  }
  for (int r = 0; r < NR; r++) {
    _mm512_storeu_ps(out + r * cols, acc[r][0]);
    _mm512_storeu_ps(out + r * cols + 16, acc[r][1]);
  }
}

/* qiao__cpu_quantize_q8 with 16 lanes: the same binary32 division and
 * round-to-nearest-even conversion (the default MXCSR mode), so the same
 * bits. */
static T512 void quantize_q8_512(const float *x, uint64_t k, int8_t *q, float *d, int32_t *sum) {
  const __m512 big = _mm512_set1_ps(3.40282347e38f);
  const __m512 hi = _mm512_set1_ps(127.0f), lo = _mm512_set1_ps(-127.0f);
  for (uint64_t b = 0; b < k / 32; b++) {
    __m512 v0 = _mm512_loadu_ps(x + b * 32), v1 = _mm512_loadu_ps(x + b * 32 + 16);
    __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
    /* finite: |x| <= FLT_MAX, ordered (false for NaN) */
    __mmask16 f0 = _mm512_cmp_ps_mask(a0, big, _CMP_LE_OQ);
    __mmask16 f1 = _mm512_cmp_ps_mask(a1, big, _CMP_LE_OQ);
    if (f0 != 0xffff || f1 != 0xffff) {
      d[b] = __builtin_nanf("");
      memset(q + b * 32, 0, 32);
      sum[b] = 0;
      continue;
    }
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
    float db = amax / 127.0f;
    d[b] = db;
    __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512();
    if (db != 0.0f) {
      __m512 dv = _mm512_set1_ps(db);
      __m512 r0 = _mm512_roundscale_ps(_mm512_div_ps(v0, dv), _MM_FROUND_TO_NEAREST_INT);
      __m512 r1 = _mm512_roundscale_ps(_mm512_div_ps(v1, dv), _MM_FROUND_TO_NEAREST_INT);
      i0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r0, lo), hi));
      i1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(r1, lo), hi));
    }
    _mm_storeu_si128((__m128i *)(void *)(q + b * 32), _mm512_cvtepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(void *)(q + b * 32 + 16), _mm512_cvtepi32_epi8(i1));
    sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
  }
}

INLINE T512VNNI void gemm_q8_512(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                                 float *out, const int DT) {
  for (int r0 = 0; r0 < nr; r0 += 4) { /* 4 rows: 16 accumulators + 2 weights in registers */
    const qiao__cpu_q8_row *xr = x + r0;
    float *o = out + r0 * QIAO__CPU_GEMM_COLS;
    switch (nr - r0 < 4 ? nr - r0 : 4) {
    case 4: gemm_q8_512_rows(tile, xr, k, o, 4, DT); break;
    case 3: gemm_q8_512_rows(tile, xr, k, o, 3, DT); break;
    case 2: gemm_q8_512_rows(tile, xr, k, o, 2, DT); break;
    default: gemm_q8_512_rows(tile, xr, k, o, 1, DT); break;
    }
  }
}
static T512VNNI void gemm_q8_512_q8_0(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr,
                                      uint64_t k, float *out) {
  gemm_q8_512(tile, x, nr, k, out, QIAO_DEV_Q8_0);
}
static T512VNNI void gemm_q8_512_q4_0(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr,
                                      uint64_t k, float *out) {
  gemm_q8_512(tile, x, nr, k, out, QIAO_DEV_Q4_0);
}

static T512 void axpy512_f32(float *y, float a, const uint8_t *x, uint64_t n) {
  const float *xf = (const float *)(const void *)x;
  __m512 av = _mm512_set1_ps(a);
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(xf + i), _mm512_loadu_ps(y + i)));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(
        y + i, m,
        _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, xf + i), _mm512_maskz_loadu_ps(m, y + i)));
  }
}

static T512 void axpy512_f16(float *y, float a, const uint8_t *x, uint64_t n) {
  __m512 av = _mm512_set1_ps(a);
  uint64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av,
                                            _mm512_cvtph_ps(_mm256_loadu_si256(
                                                (const __m256i *)(const void *)(x + 2 * i))),
                                            _mm512_loadu_ps(y + i)));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + 2 * i));
    _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(av, xv, _mm512_maskz_loadu_ps(m, y + i)));
  }
}

/* The AVX-512 set; with AVX512-VNNI it also has the Q8-activation kernel. */
#define AVX512_KERNELS                                                                             \
  .name = "avx512", .quant_dot_any_nr = 0, /* dot512_q1 */                                         \
      .dot = {dot512_f32,                                                                          \
              dot512_f16,                                                                          \
              dot512_bf16,                                                                         \
              dot512_q8_0,                                                                         \
              dot512_q4_0,                                                                         \
              NULL,                                                                                \
              [QIAO_DEV_F8_E4M3_B128] = dot512_f8},                                                \
  .dot2 = {dot2_512_f32,                                                                           \
           dot2_512_f16,                                                                           \
           dot2_512_bf16,                                                                          \
           dot2_512_q8_0,                                                                          \
           dot2_512_q4_0,                                                                          \
           NULL,                                                                                   \
           [QIAO_DEV_F8_E4M3_B128] = dot2_512_f8},                                                 \
  .gemv = {gemv512_f32,                                                                            \
           gemv512_f16,                                                                            \
           gemv512_bf16,                                                                           \
           gemv512_q8_0,                                                                           \
           gemv512_q4_0,                                                                           \
           NULL,                                                                                   \
           [QIAO_DEV_F8_E4M3_B128] = gemv512_f8},                                                  \
  .pack = pack512, .gemm = gemm512,                                                                \
  .gemv_packed = {gemv_packed512_f32,  gemv_packed512_f16,  gemv_packed512_bf16,                   \
                  gemv_packed512_q8_0, gemv_packed512_q4_0, NULL},                                 \
  .repack = {NULL, NULL, NULL, repack512_q8_0, repack512_q4_0, NULL},                              \
  .gemm_repacked = gemm_repacked512, .gemm2_repacked = gemm2_repacked512,                          \
  .dequant = {dequant512_f32,                                                                      \
              dequant512_f16,                                                                      \
              dequant512_bf16,                                                                     \
              dequant512_q8_0,                                                                     \
              dequant512_q4_0,                                                                     \
              NULL,                                                                                \
              QIAO__CPU_NEW_BLOCK_DEQUANT,                                                         \
              [QIAO_DEV_F8_E4M3_B128] = dequant512_f8},                                            \
  .axpy = {axpy512_f32, axpy512_f16},
static const qiao__cpu_kernels avx512_kernels = {AVX512_KERNELS};
static const qiao__cpu_kernels avx512_vnni_kernels = {
    AVX512_KERNELS
        .gemm_q8 = {[QIAO_DEV_Q8_0] = gemm_q8_512_q8_0, [QIAO_DEV_Q4_0] = gemm_q8_512_q4_0},
    .quantize_q8 = quantize_q8_512,
    .vec_q8 = {[QIAO_DEV_Q4_K] = qiao__cpu_vec_q8_512_q4_k,
               [QIAO_DEV_Q5_K] = qiao__cpu_vec_q8_512_q5_k,
               [QIAO_DEV_Q6_K] = qiao__cpu_vec_q8_512_q6_k,
               [QIAO_DEV_Q5_0] = qiao__cpu_vec_q8_512_q5_0,
               [QIAO_DEV_Q2_K] = qiao__cpu_vec_q8_512_q2_k,
               [QIAO_DEV_Q3_K] = qiao__cpu_vec_q8_512_q3_k,
               [QIAO_DEV_Q4_1] = qiao__cpu_vec_q8_512_q4_1,
               [QIAO_DEV_Q5_1] = qiao__cpu_vec_q8_512_q5_1,
               [QIAO_DEV_Q8_0] = qiao__cpu_vec_q8_512_q8_0,
               [QIAO_DEV_Q4_0] = qiao__cpu_vec_q8_512_q4_0,
               [QIAO_DEV_IQ4_NL] = qiao__cpu_vec_q8_512_iq4_nl,
               [QIAO_DEV_IQ4_XS] = qiao__cpu_vec_q8_512_iq4_xs},
    .vec_q8_rows = {[QIAO_DEV_Q4_K] = qiao__cpu_vec_q8_rows_512_q4_k,
                    [QIAO_DEV_Q5_K] = qiao__cpu_vec_q8_rows_512_q5_k,
                    [QIAO_DEV_Q4_1] = qiao__cpu_vec_q8_rows_512_q4_1,
                    [QIAO_DEV_Q5_1] = qiao__cpu_vec_q8_rows_512_q5_1,
                    [QIAO_DEV_Q5_0] = qiao__cpu_vec_q8_rows_512_q5_0,
                    [QIAO_DEV_Q4_0] = qiao__cpu_vec_q8_rows_512_q4_0,
                    [QIAO_DEV_IQ4_NL] = qiao__cpu_vec_q8_rows_512_iq4_nl,
                    [QIAO_DEV_IQ4_XS] = qiao__cpu_vec_q8_rows_512_iq4_xs}};

/* ---- AVX2: steps of 8 elements; a step group of 4 is 32 elements --------- */

/* F8_E4M3_B128 (1.4): as f8x16, 8 codes at a time. */
INLINE T256 __m256 f8x8(const uint8_t *block, uint64_t off) {
  __m256i v =
      _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(block + 4 + off)));
  __m256i mag = _mm256_and_si256(v, _mm256_set1_epi32(0x7f));
  __m256 normal = _mm256_castsi256_ps(
      _mm256_add_epi32(_mm256_slli_epi32(mag, 20), _mm256_set1_epi32(120 << 23)));
  __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(7))),
                             _mm256_set1_ps(0x1p-9f));
  __m256 is_sub = _mm256_castsi256_ps(
      _mm256_cmpeq_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x78)), _mm256_setzero_si256()));
  __m256i sign = _mm256_slli_epi32(_mm256_and_si256(v, _mm256_set1_epi32(0x80)), 24);
  __m256 value = _mm256_castsi256_ps(
      _mm256_or_si256(_mm256_castps_si256(_mm256_blendv_ps(normal, sub, is_sub)), sign));
  float d;
  memcpy(&d, block, 4);
  return _mm256_mul_ps(_mm256_set1_ps(d), value);
}

INLINE T256 __m256 w8(const uint8_t *w, uint64_t s, const int a, const int dt) {
  switch (dt) {
  case QIAO_DEV_F8_E4M3_B128: {
    uint64_t e = (s + a) * 8;
    return f8x8(w + e / 128 * 132, e % 128);
  }
  case QIAO_DEV_F32: return _mm256_loadu_ps((const float *)(const void *)w + (s + a) * 8);
  case QIAO_DEV_F16:
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(w + (s + a) * 16)));
  case QIAO_DEV_BF16:
    return _mm256_castsi256_ps(_mm256_slli_epi32(
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(w + (s + a) * 16))),
        16));
  case QIAO_DEV_Q8_0: {
    const uint8_t *block = w + (s / 4) * 34;
    __m256 d = _mm256_set1_ps(_cvtsh_ss(qiao__cpu_load_u16(block)));
    __m128i q = _mm_loadl_epi64((const __m128i *)(const void *)(block + 2 + a * 8));
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
  }
  default: { /* Q4_0 */
    const uint8_t *block = w + (s / 4) * 18;
    __m256 d = _mm256_set1_ps(_cvtsh_ss(qiao__cpu_load_u16(block)));
    __m256i v = _mm256_cvtepu8_epi32(
        _mm_loadl_epi64((const __m128i *)(const void *)(block + 2 + (a & 1) * 8)));
    v = (a >= 2) ? _mm256_srli_epi32(v, 4) : _mm256_and_si256(v, _mm256_set1_epi32(15));
    return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(v, _mm256_set1_epi32(8))));
  }
  }
}

INLINE float w_scalar(const uint8_t *w, uint64_t i, const int dt) {
  switch (dt) {
  case QIAO_DEV_F32: {
    float f;
    memcpy(&f, w + 4 * i, 4);
    return f;
  }
  case QIAO_DEV_F16: return qiao__cpu_f16_to_f32(qiao__cpu_load_u16(w + 2 * i));
  default: return qiao__cpu_bf16_to_f32(qiao__cpu_load_u16(w + 2 * i));
  }
}

INLINE T256 float hsum256(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

#define STEP256(a)                                                                                 \
  do {                                                                                             \
    __m256 wv = w8(w, s, a, dt);                                                                   \
    for (int r = 0; r < NR; r++)                                                                   \
      acc[r][a] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[r] + (s + a) * 8), acc[r][a]);             \
  } while (0)

INLINE T256 void dot256(const uint8_t *w, const float *const *x, uint64_t k, float *out,
                        const int dt, const int NR) {
  __m256 acc[2][4];
  for (int r = 0; r < NR; r++)
    for (int a = 0; a < 4; a++)
      acc[r][a] = _mm256_setzero_ps();
  uint64_t steps = k / 8, s = 0;
  for (; s + 4 <= steps; s += 4) {
    STEP256(0);
    STEP256(1);
    STEP256(2);
    STEP256(3);
  }
  if (steps - s >= 1) STEP256(0);
  if (steps - s >= 2) STEP256(1);
  if (steps - s >= 3) STEP256(2);
  for (int r = 0; r < NR; r++) {
    float tail = 0.0f;
    if (dt != QIAO_DEV_Q8_0 && dt != QIAO_DEV_Q4_0 && dt != QIAO_DEV_F8_E4M3_B128)
      for (uint64_t i = steps * 8; i < k; i++)
        tail += w_scalar(w, i, dt) * x[r][i];
    out[r] = hsum256(_mm256_add_ps(_mm256_add_ps(acc[r][0], acc[r][1]),
                                   _mm256_add_ps(acc[r][2], acc[r][3]))) +
             tail;
  }
}

#define DOT256(name, dt)                                                                           \
  static T256 void name(const uint8_t *w, const float *const *x, int nr, uint64_t k, float *out) { \
    int r = 0;                                                                                     \
    for (; nr - r >= 2; r += 2)                                                                    \
      dot256(w, x + r, k, out + r, dt, 2);                                                         \
    if (r < nr) dot256(w, x + r, k, out + r, dt, 1);                                               \
  }
DOT256(dot256_f32, QIAO_DEV_F32)
DOT256(dot256_f16, QIAO_DEV_F16)
DOT256(dot256_bf16, QIAO_DEV_BF16)
DOT256(dot256_q8_0, QIAO_DEV_Q8_0)
DOT256(dot256_q4_0, QIAO_DEV_Q4_0)
DOT256(dot256_f8, QIAO_DEV_F8_E4M3_B128)

static T256 void dequant256_f8(const uint8_t *w, uint64_t k, float *out) {
  for (uint64_t s = 0; s < k / 8; s++)
    _mm256_storeu_ps(out + s * 8, w8(w, s, 0, QIAO_DEV_F8_E4M3_B128));
}

static void dequant_row_q8_0(const uint8_t *w, uint64_t k, float *out) {
  qiao__cpu_dequantize_row(QIAO_DEV_Q8_0, w, k, out);
}
static void dequant_row_q4_0(const uint8_t *w, uint64_t k, float *out) {
  qiao__cpu_dequantize_row(QIAO_DEV_Q4_0, w, k, out);
}

static T256 void axpy256_f32(float *y, float a, const uint8_t *x, uint64_t n) {
  const float *xf = (const float *)(const void *)x;
  __m256 av = _mm256_set1_ps(a);
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(xf + i), _mm256_loadu_ps(y + i)));
  for (; i < n; i++)
    y[i] += a * xf[i];
}

static T256 void axpy256_f16(float *y, float a, const uint8_t *x, uint64_t n) {
  __m256 av = _mm256_set1_ps(a);
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(
        y + i, _mm256_fmadd_ps(
                   av, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + 2 * i))),
                   _mm256_loadu_ps(y + i)));
  for (; i < n; i++)
    y[i] += a * qiao__cpu_f16_to_f32(qiao__cpu_load_u16(x + 2 * i));
}

/* Q8 activations with AVX-VNNI (the 256-bit vpdpbusd of AVX2-only
 * processors that have it): gemm_q8_512_rows' steps on 8 columns per
 * register, one row of x at a time (16 registers), so the same bits. */
#define T256VNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
INLINE T256VNNI __m256i x_group256(const qiao__cpu_q8_row *x, uint64_t b, int g) {
  return _mm256_set1_epi32(x_four(x, b, g));
}

INLINE T256VNNI void gemm_q8_256_row(const uint8_t *tile, const qiao__cpu_q8_row *x, uint64_t k,
                                     float *out, const int DT) {
  const uint64_t cols = QIAO__CPU_GEMM_COLS, block_bytes = qiao__cpu_q8_block_bytes(DT);
  const int offset = DT == QIAO_DEV_Q8_0 ? 128 : 8;
  const __m256i low = _mm256_set1_epi8(0x0f);
  __m256 acc[4];
  for (int h = 0; h < 4; h++)
    acc[h] = _mm256_setzero_ps();
  for (uint64_t b = 0; b < k / 32; b++) {
    const uint8_t *block = tile + b * block_bytes, *quants = block + 4 * cols;
    __m256i dot[4];
    for (int h = 0; h < 4; h++)
      dot[h] = _mm256_setzero_si256();
    for (int g = 0; g < (DT == QIAO_DEV_Q8_0 ? 8 : 4); g++) {
      __m256i xl = x_group256(x, b, g), xh = DT == QIAO_DEV_Q8_0 ? xl : x_group256(x, b, g + 4);
      for (int h = 0; h < 4; h++) { /* columns 8h .. 8h + 7 */
        __m256i w =
            _mm256_loadu_si256((const __m256i *)(const void *)(quants + g * cols * 4 + h * 32));
        if (DT == QIAO_DEV_Q8_0) {
          dot[h] = _mm256_dpbusd_avx_epi32(dot[h], w, xl);
        } else {
          __m256i lo = _mm256_and_si256(w, low),
                  hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), low);
          dot[h] = _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(dot[h], lo, xl), hi, xh);
        }
      }
    }
    __m256i shift = _mm256_set1_epi32(offset * x->sum[b]);
    __m256 dx = _mm256_set1_ps(x->d[b]);
    for (int h = 0; h < 4; h++) {
      __m256 dw = _mm256_loadu_ps((const float *)(const void *)block + 8 * h);
      acc[h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(dot[h], shift)),
                               _mm256_mul_ps(dw, dx), acc[h]);
    }
  }
  for (int h = 0; h < 4; h++)
    _mm256_storeu_ps(out + 8 * h, acc[h]);
}

static T256VNNI void gemm_q8_256_q8_0(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr,
                                      uint64_t k, float *out) {
  for (int r = 0; r < nr; r++)
    gemm_q8_256_row(tile, x + r, k, out + r * QIAO__CPU_GEMM_COLS, QIAO_DEV_Q8_0);
}
static T256VNNI void gemm_q8_256_q4_0(const uint8_t *tile, const qiao__cpu_q8_row *x, int nr,
                                      uint64_t k, float *out) {
  for (int r = 0; r < nr; r++)
    gemm_q8_256_row(tile, x + r, k, out + r * QIAO__CPU_GEMM_COLS, QIAO_DEV_Q4_0);
}

/* qiao__cpu_quantize_q8 with 8 lanes: the same division and rounding. */
static T256 void quantize_q8_256(const float *x, uint64_t k, int8_t *q, float *d, int32_t *sum) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 big = _mm256_set1_ps(3.40282347e38f);
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  for (uint64_t b = 0; b < k / 32; b++) {
    __m256 v[4], amax = _mm256_setzero_ps();
    int finite = 1;
    for (int i = 0; i < 4; i++) {
      v[i] = _mm256_loadu_ps(x + b * 32 + 8 * i);
      __m256 a = _mm256_and_ps(v[i], abs_mask);
      finite &= _mm256_movemask_ps(_mm256_cmp_ps(a, big, _CMP_LE_OQ)) == 0xff;
      amax = _mm256_max_ps(amax, a);
    }
    if (!finite) {
      d[b] = __builtin_nanf("");
      memset(q + b * 32, 0, 32);
      sum[b] = 0;
      continue;
    }
    float lanes[8], m = 0.0f;
    _mm256_storeu_ps(lanes, amax);
    for (int i = 0; i < 8; i++)
      m = lanes[i] > m ? lanes[i] : m;
    float db = m / 127.0f;
    d[b] = db;
    int32_t iq[32] = {0}, s = 0;
    for (int i = 0; db != 0.0f && i < 4; i++) {
      __m256 r = _mm256_round_ps(_mm256_div_ps(v[i], _mm256_set1_ps(db)),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm256_storeu_si256((__m256i *)(void *)(iq + 8 * i),
                          _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi)));
    }
    for (int i = 0; i < 32; i++) {
      q[b * 32 + (uint64_t)i] = (int8_t)iq[i];
      s += iq[i];
    }
    sum[b] = s;
  }
}

static const qiao__cpu_kernels avx2_kernels = {
    .name = "avx2",
    .quant_dot_any_nr = 1,
    .dot = {dot256_f32, dot256_f16, dot256_bf16, dot256_q8_0, dot256_q4_0,
            NULL, [QIAO_DEV_F8_E4M3_B128] = dot256_f8},
    .dequant = {[QIAO_DEV_Q8_0] = dequant_row_q8_0,
                [QIAO_DEV_Q4_0] = dequant_row_q4_0,
                QIAO__CPU_NEW_BLOCK_DEQUANT,
                [QIAO_DEV_F8_E4M3_B128] = dequant256_f8},
    .axpy = {axpy256_f32, axpy256_f16},
    .vec_q8 = {[QIAO_DEV_Q4_K] = qiao__cpu_vec_q8_256_q4_k,
               [QIAO_DEV_Q5_K] = qiao__cpu_vec_q8_256_q5_k,
               [QIAO_DEV_Q6_K] = qiao__cpu_vec_q8_256_q6_k,
               [QIAO_DEV_Q5_0] = qiao__cpu_vec_q8_256_q5_0,
               [QIAO_DEV_Q2_K] = qiao__cpu_vec_q8_256_q2_k,
               [QIAO_DEV_Q3_K] = qiao__cpu_vec_q8_256_q3_k,
               [QIAO_DEV_Q4_1] = qiao__cpu_vec_q8_256_q4_1,
               [QIAO_DEV_Q5_1] = qiao__cpu_vec_q8_256_q5_1,
               [QIAO_DEV_Q8_0] = qiao__cpu_vec_q8_256_q8_0,
               [QIAO_DEV_Q4_0] = qiao__cpu_vec_q8_256_q4_0,
               [QIAO_DEV_IQ4_NL] = qiao__cpu_vec_q8_256_iq4_nl,
               [QIAO_DEV_IQ4_XS] = qiao__cpu_vec_q8_256_iq4_xs},
};
/* The same with AVX-VNNI: Q8 activations too. */
static const qiao__cpu_kernels avx2_vnni_kernels = {
    .name = "avx2",
    .quant_dot_any_nr = 1,
    .dot = {dot256_f32, dot256_f16, dot256_bf16, dot256_q8_0, dot256_q4_0,
            NULL, [QIAO_DEV_F8_E4M3_B128] = dot256_f8},
    .dequant = {[QIAO_DEV_Q8_0] = dequant_row_q8_0,
                [QIAO_DEV_Q4_0] = dequant_row_q4_0,
                QIAO__CPU_NEW_BLOCK_DEQUANT,
                [QIAO_DEV_F8_E4M3_B128] = dequant256_f8},
    .axpy = {axpy256_f32, axpy256_f16},
    .gemm_q8 = {[QIAO_DEV_Q8_0] = gemm_q8_256_q8_0, [QIAO_DEV_Q4_0] = gemm_q8_256_q4_0},
    .quantize_q8 = quantize_q8_256,
    .vec_q8 = {[QIAO_DEV_Q4_K] = qiao__cpu_vec_q8_256_q4_k,
               [QIAO_DEV_Q5_K] = qiao__cpu_vec_q8_256_q5_k,
               [QIAO_DEV_Q6_K] = qiao__cpu_vec_q8_256_q6_k,
               [QIAO_DEV_Q5_0] = qiao__cpu_vec_q8_256_q5_0,
               [QIAO_DEV_Q2_K] = qiao__cpu_vec_q8_256_q2_k,
               [QIAO_DEV_Q3_K] = qiao__cpu_vec_q8_256_q3_k,
               [QIAO_DEV_Q4_1] = qiao__cpu_vec_q8_256_q4_1,
               [QIAO_DEV_Q5_1] = qiao__cpu_vec_q8_256_q5_1,
               [QIAO_DEV_Q8_0] = qiao__cpu_vec_q8_256_q8_0,
               [QIAO_DEV_Q4_0] = qiao__cpu_vec_q8_256_q4_0,
               [QIAO_DEV_IQ4_NL] = qiao__cpu_vec_q8_256_iq4_nl,
               [QIAO_DEV_IQ4_XS] = qiao__cpu_vec_q8_256_iq4_xs},
};

const qiao__cpu_kernels *qiao__cpu_kernels_avx512(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2") &&
      __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return __builtin_cpu_supports("avx512vnni") ? &avx512_vnni_kernels : &avx512_kernels;
  return NULL;
}

const qiao__cpu_kernels *qiao__cpu_kernels_avx2(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c"))
    return __builtin_cpu_supports("avxvnni") ? &avx2_vnni_kernels : &avx2_kernels;
  return NULL;
}

#else /* not x86-64: the portable kernels only */
const qiao__cpu_kernels *qiao__cpu_kernels_avx512(void) {
  return NULL;
}
const qiao__cpu_kernels *qiao__cpu_kernels_avx2(void) {
  return NULL;
}
#endif
