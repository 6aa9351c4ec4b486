/* Quantizers for the k-quant and older GGUF block types (see quantize_k.h).
 *
 * Two kinds of grid:
 * - affine (q2_k, q4_k, q5_k, q4_1, q5_1): value = s * q + b, q in [0, nmax];
 *   for the k-quants b = -dmin * m <= 0;
 * - symmetric (q3_k, q6_k, q5_0): value = s * q, q in [-K, K-1].
 * Every (sub-)block scale comes from a search over candidate steps, each
 * refined by least squares on the rounded levels, keeping the one of least
 * squared error. The k-quants then quantize the sub-block scales against a
 * super-block f16 scale and try the neighbouring integer scales of each
 * sub-block, keeping the least error; the values are finally rounded to the
 * nearest level of the scales as stored. Errors are always measured with
 * the dequantization formula of format.md §4.1 (the stored values). */
#include "format/quantize_k.h"

#include <math.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "format/dtype_convert.h"

#define QK 256 /* elements of a k-quant super-block */

/* ---- Helpers ------------------------------------------------------------- */

/* The largest finite f16, so a huge scale saturates instead of becoming inf. */
#define F16_MAX 65504.0f

static uint16_t f16_bits(float x) {
  if (x > F16_MAX) x = F16_MAX;
  if (x < -F16_MAX) x = -F16_MAX;
  return qiao__f32_to_f16(x);
}

/* The value a scale has once stored as f16. */
static float as_f16(float x) {
  return qiao__f16_to_f32(f16_bits(x));
}

static void store_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

/* Nearest integer (halves up) clamped to [lo, hi] (within [-128, 127]);
 * NaN gives lo. Truncating a positive value is its floor. */
static int round_clamp(float v, int lo, int hi) {
  if (!(v > (float)lo)) return lo;
  if (v >= (float)hi) return hi;
  return (int)(v + 128.5f) - 128;
}

/* ---- Affine grids: value = s * q + b, q in [0, nmax] ---------------------- */

/* Rounds each x to its nearest level of (s, b) into q (may be NULL) and
 * returns the squared error, computing each value as the dequantizer does. */
static double affine_error(const float *x, int n, int nmax, float s, float b, uint8_t *q) {
  double err = 0;
  float inv = s > 0 ? 1.0f / s : 0.0f;
  for (int i = 0; i < n; i++) {
    int l = round_clamp((x[i] - b) * inv, 0, nmax);
    if (q) q[i] = (uint8_t)l;
    double e = (double)(s * (float)l + b) - (double)x[i];
    err += e * e;
  }
  return err;
}

/* Sums over a block that least squares needs. */
typedef struct {
  double n, sq, sqq, sx, sxx, sqx;
} sums;

/* Least squares (s, b) for the levels summed in `m`; with `b_nonpos`, b is
 * kept <= 0. Returns false when they do not determine a positive step. */
static bool affine_lsq(const sums *m, bool b_nonpos, float *s, float *b) {
  double det = m->n * m->sqq - m->sq * m->sq;
  if (!(det > 0)) return false;
  double ns = (m->n * m->sqx - m->sq * m->sx) / det, nb = (m->sx - ns * m->sq) / m->n;
  if (b_nonpos && nb > 0) {
    nb = 0;
    ns = m->sqx / m->sqq;
  }
  if (!(ns > 0)) return false;
  *s = (float)ns;
  *b = (float)nb;
  return true;
}

/* Squared error of s * q + b over the levels summed in `m`: an upper bound
 * of the error with each value rounded to its nearest level. */
static double affine_sum_error(const sums *m, double s, double b) {
  return m->sxx - 2 * s * m->sqx - 2 * b * m->sx + s * s * m->sqq + 2 * s * b * m->sq +
         m->n * b * b;
}

/* Fits (s, b) to one block. `b_nonpos`: the grid's lowest value must be <= 0
 * (the k-quants' unsigned mins). `f16_params`: s and b are stored as f16
 * (q4_1, q5_1), so candidates are compared with those values; the plain
 * min/max grid is always among the candidates. Candidate steps span
 * (hi - lo) / (nmax - 1 .. nmax + 2); each takes the least-squares (s, b)
 * of its levels, and the best is refined by rounding to its own grid. */
static void fit_affine(const float *x, int n, int nmax, bool b_nonpos, bool f16_params,
                       float *out_s, float *out_b) {
  float lo = x[0], hi = x[0];
  sums base = {.n = n};
  for (int i = 0; i < n; i++) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
    base.sx += x[i];
    base.sxx += (double)x[i] * x[i];
  }
  if (b_nonpos && lo > 0) lo = 0;
  if (!(hi > lo)) { /* constant (or non-finite) block */
    *out_s = 0;
    *out_b = f16_params ? as_f16(lo) : (lo == lo ? lo : 0);
    return;
  }
  float best_s = (hi - lo) / (float)nmax, best_b = lo;
  if (f16_params) {
    best_s = as_f16(best_s);
    best_b = as_f16(best_b);
  }
  double best = affine_error(x, n, nmax, best_s, best_b, NULL);
  for (int t = -10; t <= 20; t += 2) {
    float inv = ((float)nmax + 0.1f * (float)t) / (hi - lo), s, b;
    sums m = base;
    for (int i = 0; i < n; i++) {
      int l = round_clamp((x[i] - lo) * inv, 0, nmax);
      m.sq += l;
      m.sqq += (double)l * l;
      m.sqx += (double)l * x[i];
    }
    if (!affine_lsq(&m, b_nonpos, &s, &b)) continue;
    if (f16_params) {
      s = as_f16(s);
      b = as_f16(b);
    }
    /* Lloyd steps: the levels nearest to the fitted grid, refitted */
    uint8_t lq[32], prev[32];
    for (int it = 0; it < 3; it++) {
      double err = affine_error(x, n, nmax, s, b, lq);
      if (err < best) {
        best = err;
        best_s = s;
        best_b = b;
      }
      /* unchanged levels give the same fit again */
      if (it == 2 || (it > 0 && memcmp(lq, prev, (size_t)n) == 0)) break;
      memcpy(prev, lq, (size_t)n);
      sums r = base;
      for (int i = 0; i < n; i++) {
        r.sq += lq[i];
        r.sqq += (double)lq[i] * lq[i];
        r.sqx += (double)lq[i] * x[i];
      }
      if (!affine_lsq(&r, b_nonpos, &s, &b)) break;
      if (f16_params) {
        s = as_f16(s);
        b = as_f16(b);
      }
    }
  }
  uint8_t q[32];
  for (int it = 0; it < 2; it++) {
    affine_error(x, n, nmax, best_s, best_b, q);
    sums m = base;
    for (int i = 0; i < n; i++) {
      m.sq += q[i];
      m.sqq += (double)q[i] * q[i];
      m.sqx += (double)q[i] * x[i];
    }
    float s, b;
    if (!affine_lsq(&m, b_nonpos, &s, &b)) break;
    if (f16_params) {
      s = as_f16(s);
      b = as_f16(b);
    }
    double err = affine_sum_error(&m, s, b);
    if (!(err < best)) break;
    best = err;
    best_s = s;
    best_b = b;
  }
  *out_s = best_s;
  *out_b = best_b;
}

/* ---- Symmetric grids: value = s * q, q in [-k, k-1] ------------------------ */

static double sym_error(const float *x, int n, int k, float s, int8_t *q) {
  double err = 0;
  float inv = s != 0 ? 1.0f / s : 0.0f;
  for (int i = 0; i < n; i++) {
    int l = round_clamp(x[i] * inv, -k, k - 1);
    if (q) q[i] = (int8_t)l;
    double e = (double)(s * (float)l) - (double)x[i];
    err += e * e;
  }
  return err;
}

/* Fits s to one block: candidates map the value of largest magnitude near
 * -k or near k-1, each taking the least-squares scale of its levels.
 * `f16_scale`: s is stored as f16 (q5_0); the plain max / -k grid is then
 * always a candidate. */
static float fit_symmetric(const float *x, int n, int k, bool f16_scale) {
  float amax = 0, max = 0;
  double sxx = 0;
  for (int i = 0; i < n; i++) {
    sxx += (double)x[i] * x[i];
    if (fabsf(x[i]) > amax) {
      amax = fabsf(x[i]);
      max = x[i];
    }
  }
  if (!(amax > 0) || !isfinite(amax)) return 0;
  float best_s = max / (float)-k;
  if (f16_scale) best_s = as_f16(best_s);
  double best = sym_error(x, n, k, best_s, NULL);
  for (int side = 0; side < 2; side++)
    for (int t = -10; t <= 10; t++) {
      float inv = side == 0 ? -((float)k + 0.1f * (float)t) / max
                            : ((float)(k - 1) + 0.1f * (float)t) / max;
      double sqx = 0, sqq = 0;
      for (int i = 0; i < n; i++) {
        int l = round_clamp(x[i] * inv, -k, k - 1);
        sqx += (double)l * x[i];
        sqq += (double)l * l;
      }
      if (!(sqq > 0)) continue;
      float s = (float)(sqx / sqq);
      if (f16_scale) s = as_f16(s);
      double err = sxx - 2 * (double)s * sqx + (double)s * s * sqq;
      if (err < best) {
        best = err;
        best_s = s;
      }
    }
  return best_s;
}

/* ---- k-quant super-blocks --------------------------------------------------- */

/* The integer scale and min of one affine sub-block for the super-block
 * scales (d, dmin): the rounded ratios and their neighbours, keeping the
 * least error. Returns that error. */
static double pick_scale_min(const float *x, int sub_len, int nmax, int scale_max, float d,
                             float dmin, float s, float m, uint8_t *sc, uint8_t *mn) {
  int sc0 = d > 0 ? round_clamp(s / d, 0, scale_max) : 0;
  int mn0 = dmin > 0 ? round_clamp(m / dmin, 0, scale_max) : 0;
  double best = -1;
  for (int a = sc0 - 1; a <= sc0 + 1; a++)
    for (int c = mn0 - 1; c <= mn0 + 1; c++) {
      if (a < 0 || a > scale_max || c < 0 || c > scale_max) continue;
      double err = affine_error(x, sub_len, nmax, d * (float)a, -(dmin * (float)c), NULL);
      if (best < 0 || err < best) {
        best = err;
        *sc = (uint8_t)a;
        *mn = (uint8_t)c;
      }
    }
  return best;
}

/* Affine super-block (q2_k: 16 x 16, 4-bit scales; q4_k/q5_k: 8 x 32, 6-bit):
 * fills the f16 d/dmin, the integer scale and min of each sub-block and the
 * 256 levels. d and dmin start at the largest sub-block scale and min over
 * scale_max and are then each tried a little smaller and larger. */
static void superblock_affine(const float *x, int sub_len, int nmax, int scale_max, float *d_out,
                              float *dmin_out, uint8_t *sc, uint8_t *mn, uint8_t *q) {
  static const float factors[] = {1.0f, 0.98f, 1.02f};
  int n_sub = QK / sub_len;
  float s[16], m[16], max_s = 0, max_m = 0;
  for (int j = 0; j < n_sub; j++) {
    float b;
    fit_affine(x + j * sub_len, sub_len, nmax, true, false, &s[j], &b);
    m[j] = -b;
    if (s[j] > max_s) max_s = s[j];
    if (m[j] > max_m) max_m = m[j];
  }
  float best_d = as_f16(max_s / (float)scale_max), best_dmin = as_f16(max_m / (float)scale_max);
  double best = -1;
  uint8_t tsc[16], tmn[16];
  /* d first (with dmin at its start), then dmin */
  for (int pass = 0; pass < 2; pass++)
    for (int f = 0; f < 3; f++) {
      if (pass == 1 && f == 0) continue;
      float d = pass == 0 ? as_f16(max_s * factors[f] / (float)scale_max) : best_d;
      float dmin = pass == 1 ? as_f16(max_m * factors[f] / (float)scale_max) : best_dmin;
      double err = 0;
      for (int j = 0; j < n_sub; j++)
        err += pick_scale_min(x + j * sub_len, sub_len, nmax, scale_max, d, dmin, s[j], m[j],
                              &tsc[j], &tmn[j]);
      if (best < 0 || err < best) {
        best = err;
        best_d = d;
        best_dmin = dmin;
        memcpy(sc, tsc, (size_t)n_sub);
        memcpy(mn, tmn, (size_t)n_sub);
      }
    }
  for (int j = 0; j < n_sub; j++)
    affine_error(x + j * sub_len, sub_len, nmax, best_d * (float)sc[j], -(best_dmin * (float)mn[j]),
                 q + j * sub_len);
  *d_out = best_d;
  *dmin_out = best_dmin;
}

/* The integer scale of one symmetric sub-block of 16 for the super-block
 * scale d: the rounded ratio and its neighbours, keeping the least error.
 * Returns that error. */
static double pick_scale_sym(const float *x, int k, int scale_k, float d, float s, int *sc) {
  int sc0 = d != 0 ? round_clamp(s / d, -scale_k, scale_k - 1) : 0;
  double best = -1;
  for (int a = sc0 - 1; a <= sc0 + 1; a++) {
    if (a < -scale_k || a > scale_k - 1) continue;
    double err = sym_error(x, 16, k, d * (float)a, NULL);
    if (best < 0 || err < best) {
      best = err;
      *sc = a;
    }
  }
  return best;
}

/* Symmetric super-block of 16 sub-blocks of 16 (q3_k: levels [-4, 3],
 * 6-bit signed scales [-32, 31]; q6_k: levels [-32, 31], i8 scales): the
 * f16 d, each sub-block's integer scale and the 256 levels. d maps the
 * sub-block scale of largest magnitude to -scale_k, then is tried a little
 * smaller and larger. */
static float superblock_symmetric(const float *x, int k, int scale_k, int *sc, int8_t *q) {
  static const float factors[] = {1.0f, 0.98f, 1.02f};
  float s[16], max = 0, amax = 0;
  for (int j = 0; j < 16; j++) {
    s[j] = fit_symmetric(x + 16 * j, 16, k, false);
    if (fabsf(s[j]) > amax) {
      amax = fabsf(s[j]);
      max = s[j];
    }
  }
  float best_d = 0;
  double best = -1;
  int tsc[16];
  for (int f = 0; f < 3; f++) {
    float d = amax > 1e-30f ? as_f16(max * factors[f] / (float)-scale_k) : 0;
    double err = 0;
    for (int j = 0; j < 16; j++)
      err += pick_scale_sym(x + 16 * j, k, scale_k, d, s[j], &tsc[j]);
    if (best < 0 || err < best) {
      best = err;
      best_d = d;
      memcpy(sc, tsc, sizeof(tsc));
    }
  }
  for (int j = 0; j < 16; j++)
    sym_error(x + 16 * j, 16, k, best_d * (float)sc[j], q + 16 * j);
  return best_d;
}

/* 6-bit scales and mins of q4_k/q5_k: 12 bytes. Sub-blocks 0..3 in the low
 * 6 bits of bytes 0..3 (scales) and 4..7 (mins); 4..7 in the nibbles of
 * bytes 8..11 with their top 2 bits in the top bits of bytes 0..7. */
static void pack_scales_k4(const uint8_t *sc, const uint8_t *mn, uint8_t *out) {
  memset(out, 0, 12);
  for (int j = 0; j < 8; j++) {
    if (j < 4) {
      out[j] |= sc[j];
      out[j + 4] |= mn[j];
    } else {
      out[j + 4] = (uint8_t)((sc[j] & 0xf) | ((mn[j] & 0xf) << 4));
      out[j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
      out[j] |= (uint8_t)((mn[j] >> 4) << 6);
    }
  }
}

/* q4_k: d, dmin (f16), scales[12], qs[128]; 64-element chunk c: byte
 * 32c + l holds element 64c + l (low nibble) and 64c + 32 + l (high). */
static void quantize_q4_k(const float *x, uint8_t *block) {
  uint8_t sc[8], mn[8], q[QK];
  float d, dmin;
  superblock_affine(x, 32, 15, 63, &d, &dmin, sc, mn, q);
  store_u16(block, f16_bits(d));
  store_u16(block + 2, f16_bits(dmin));
  pack_scales_k4(sc, mn, block + 4);
  uint8_t *qs = block + 16;
  for (int c = 0; c < 4; c++)
    for (int l = 0; l < 32; l++)
      qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
}

/* q5_k: d, dmin, scales[12], qh[32], qs[128]: as q4_k, and bit 2c of qh[l]
 * holds the fifth bit of element 64c + l, bit 2c+1 that of 64c + 32 + l. */
static void quantize_q5_k(const float *x, uint8_t *block) {
  uint8_t sc[8], mn[8], q[QK];
  float d, dmin;
  superblock_affine(x, 32, 31, 63, &d, &dmin, sc, mn, q);
  store_u16(block, f16_bits(d));
  store_u16(block + 2, f16_bits(dmin));
  pack_scales_k4(sc, mn, block + 4);
  uint8_t *qh = block + 16, *qs = block + 48;
  memset(qh, 0, 32);
  for (int c = 0; c < 4; c++)
    for (int l = 0; l < 32; l++) {
      int a = q[64 * c + l], b = q[64 * c + 32 + l];
      qs[32 * c + l] = (uint8_t)((a & 0xf) | ((b & 0xf) << 4));
      qh[l] |= (uint8_t)(((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
    }
}

/* q6_k: ql[128], qh[64], scales[16] (i8), d. In half h (128 elements),
 * element 128h + 32k + l (k = 0..3) has its low 4 bits in ql[64h + l + 32(k&1)]
 * (low nibble for k < 2, high for k >= 2) and its top 2 bits at bit 2k of
 * qh[32h + l]; stored levels are q + 32. */
static void quantize_q6_k(const float *x, uint8_t *block) {
  int sc[16];
  int8_t q[QK];
  float d = superblock_symmetric(x, 32, 128, sc, q);
  uint8_t *ql = block, *qh = block + 128;
  for (int h = 0; h < 2; h++)
    for (int l = 0; l < 32; l++) {
      int v[4];
      for (int k = 0; k < 4; k++)
        v[k] = q[128 * h + 32 * k + l] + 32;
      ql[64 * h + l] = (uint8_t)((v[0] & 0xf) | ((v[2] & 0xf) << 4));
      ql[64 * h + l + 32] = (uint8_t)((v[1] & 0xf) | ((v[3] & 0xf) << 4));
      qh[32 * h + l] =
          (uint8_t)((v[0] >> 4) | ((v[1] >> 4) << 2) | ((v[2] >> 4) << 4) | ((v[3] >> 4) << 6));
    }
  for (int j = 0; j < 16; j++)
    block[192 + j] = (uint8_t)(int8_t)sc[j];
  store_u16(block + 208, f16_bits(d));
}

/* The 2-bit planes of q2_k and q3_k: in half h, byte 32h + l holds elements
 * 128h + l, +32, +64, +96 at bits 0, 2, 4, 6. */
static void pack_2bit(const uint8_t *l2, uint8_t *qs) {
  for (int h = 0; h < 2; h++)
    for (int l = 0; l < 32; l++) {
      const uint8_t *v = l2 + 128 * h + l;
      qs[32 * h + l] = (uint8_t)(v[0] | (v[32] << 2) | (v[64] << 4) | (v[96] << 6));
    }
}

/* q2_k: scales[16] (scale in the low nibble, min in the high one, one per
 * 16 elements), qs[64], d, dmin. */
static void quantize_q2_k(const float *x, uint8_t *block) {
  uint8_t sc[16], mn[16], q[QK];
  float d, dmin;
  superblock_affine(x, 16, 3, 15, &d, &dmin, sc, mn, q);
  for (int j = 0; j < 16; j++)
    block[j] = (uint8_t)(sc[j] | (mn[j] << 4));
  pack_2bit(q, block + 16);
  store_u16(block + 80, f16_bits(d));
  store_u16(block + 82, f16_bits(dmin));
}

/* q3_k: hmask[32], qs[64], scales[12], d. Stored level L = q + 4: bit 2 of
 * element e's L is bit e/32 of hmask[e % 32], its low 2 bits in qs as q2_k.
 * Scales are stored + 32 in 6 bits: low nibbles of bytes 0..7 for scales
 * 0..7, high nibbles for 8..15; top 2 bits of scale j at bit 2(j/4) of byte
 * 8 + j%4. */
static void quantize_q3_k(const float *x, uint8_t *block) {
  int sc[16];
  int8_t q[QK];
  float d = superblock_symmetric(x, 4, 32, sc, q);
  uint8_t *hmask = block, *qs = block + 32, *scales = block + 96, low[QK];
  memset(hmask, 0, 32);
  for (int e = 0; e < QK; e++) {
    int l = q[e] + 4;
    if (l > 3) hmask[e % 32] |= (uint8_t)(1u << (e / 32));
    low[e] = (uint8_t)(l & 3);
  }
  pack_2bit(low, qs);
  memset(scales, 0, 12);
  for (int j = 0; j < 16; j++) {
    int l = sc[j] + 32;
    if (j < 8)
      scales[j] |= (uint8_t)(l & 0xf);
    else
      scales[j - 8] |= (uint8_t)((l & 0xf) << 4);
    scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
  }
  store_u16(block + 108, f16_bits(d));
}

/* ---- Blocks of 32 ----------------------------------------------------------- */

/* 16 bytes of nibbles: element j low, element j + 16 high; and the fifth
 * bits (when `qh`) as the little-endian u32 whose bit j is element j's. */
static void pack_32(const uint8_t *l, uint8_t *qs, uint8_t *qh) {
  uint32_t h = 0;
  for (int j = 0; j < 16; j++) {
    qs[j] = (uint8_t)((l[j] & 0xf) | ((l[j + 16] & 0xf) << 4));
    h |= (uint32_t)(l[j] >> 4) << j;
    h |= (uint32_t)(l[j + 16] >> 4) << (j + 16);
  }
  if (qh)
    for (int i = 0; i < 4; i++)
      qh[i] = (uint8_t)(h >> (8 * i));
}

/* q4_1 (d, m, qs[16]) and q5_1 (d, m, qh[4], qs[16]): value = d * q + m. */
static void quantize_affine_32(const float *x, uint8_t *block, int nmax) {
  float s, b;
  fit_affine(x, 32, nmax, false, true, &s, &b);
  uint8_t q[32];
  affine_error(x, 32, nmax, s, b, q);
  store_u16(block, f16_bits(s));
  store_u16(block + 2, f16_bits(b));
  if (nmax == 15)
    pack_32(q, block + 4, NULL);
  else
    pack_32(q, block + 8, block + 4);
}

/* q5_0: d, qh[4], qs[16]; value = d * (L - 16). */
static void quantize_q5_0(const float *x, uint8_t *block) {
  float s = fit_symmetric(x, 32, 16, true);
  int8_t q[32];
  uint8_t l[32];
  sym_error(x, 32, 16, s, q);
  for (int j = 0; j < 32; j++)
    l[j] = (uint8_t)(q[j] + 16);
  store_u16(block, f16_bits(s));
  pack_32(l, block + 6, block + 2);
}

/* ---- Entry points ------------------------------------------------------------ */

bool qiao__quantize_k_supports(qiao_dtype dtype) {
  switch (dtype) {
  case QIAO_DTYPE_Q2_K:
  case QIAO_DTYPE_Q3_K:
  case QIAO_DTYPE_Q4_K:
  case QIAO_DTYPE_Q5_K:
  case QIAO_DTYPE_Q6_K:
  case QIAO_DTYPE_Q4_1:
  case QIAO_DTYPE_Q5_0:
  case QIAO_DTYPE_Q5_1: return true;
  default: return false;
  }
}

/* Blocks [first, first + count) of `n`'s blocks. */
static void quantize_blocks(qiao_dtype dtype, const float *src, uint8_t *dst, uint64_t first,
                            uint64_t count) {
  for (uint64_t b = first; b < first + count; b++)
    switch (dtype) {
    case QIAO_DTYPE_Q2_K: quantize_q2_k(src + QK * b, dst + 84 * b); break;
    case QIAO_DTYPE_Q3_K: quantize_q3_k(src + QK * b, dst + 110 * b); break;
    case QIAO_DTYPE_Q4_K: quantize_q4_k(src + QK * b, dst + 144 * b); break;
    case QIAO_DTYPE_Q5_K: quantize_q5_k(src + QK * b, dst + 176 * b); break;
    case QIAO_DTYPE_Q6_K: quantize_q6_k(src + QK * b, dst + 210 * b); break;
    case QIAO_DTYPE_Q4_1: quantize_affine_32(src + 32 * b, dst + 20 * b, 15); break;
    case QIAO_DTYPE_Q5_0: quantize_q5_0(src + 32 * b, dst + 22 * b); break;
    case QIAO_DTYPE_Q5_1: quantize_affine_32(src + 32 * b, dst + 24 * b, 31); break;
    default: return;
    }
}

typedef struct {
  qiao_dtype dtype;
  const float *src;
  uint8_t *dst;
  uint64_t first, count;
} quantize_job;

static void *quantize_worker(void *arg) {
  const quantize_job *j = arg;
  quantize_blocks(j->dtype, j->src, j->dst, j->first, j->count);
  return NULL;
}

/* Large inputs are split across threads by whole blocks: each block's
 * bytes depend on its own values only, so the output does not depend on
 * the thread count. */
#define MAX_THREADS 16
#define BLOCKS_PER_THREAD 64

void qiao__quantize_k(qiao_dtype dtype, const float *src, void *dst, uint64_t n) {
  if (!qiao__quantize_k_supports(dtype)) return;
  uint64_t blocks = n / qiao_dtype_get_info(dtype)->block_elems;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  uint64_t n_threads = cpus > 1 ? (uint64_t)cpus : 1;
  if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
  if (n_threads > blocks / BLOCKS_PER_THREAD) n_threads = blocks / BLOCKS_PER_THREAD;
  if (n_threads < 2) {
    quantize_blocks(dtype, src, dst, 0, blocks);
    return;
  }
  pthread_t threads[MAX_THREADS];
  quantize_job jobs[MAX_THREADS];
  bool started[MAX_THREADS] = {false};
  uint64_t per = blocks / n_threads, extra = blocks % n_threads, at = 0;
  for (uint64_t i = 0; i < n_threads; i++) {
    uint64_t count = per + (i < extra ? 1 : 0);
    jobs[i] = (quantize_job){dtype, src, dst, at, count};
    at += count;
    /* the first range runs on this thread; one that cannot start, too */
    if (i > 0) started[i] = pthread_create(&threads[i], NULL, quantize_worker, &jobs[i]) == 0;
  }
  for (uint64_t i = 0; i < n_threads; i++)
    if (!started[i]) quantize_worker(&jobs[i]);
  for (uint64_t i = 1; i < n_threads; i++)
    if (started[i]) pthread_join(threads[i], NULL);
}
