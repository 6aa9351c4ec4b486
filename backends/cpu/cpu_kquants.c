/* The block types of device ABI 1.3 (GGUF's Q4_K, Q5_K, Q6_K, Q2_K, Q3_K,
 * Q4_1, Q5_0, Q5_1; layouts in docs/spec/format.md §4.1): their exact
 * conversion to f32, 32 elements at a time, which every kernel set uses for
 * embed and for the tiles of matmul (cpu_matmul.c), and the scalar set for
 * its dot products. Each value is computed in the spec's order, every
 * product and difference rounded to f32 (this file is built without
 * contraction into FMAs), so the values are exact and the same everywhere. */
#include "cpu_internal.h"

static float f16_at(const uint8_t *p) {
  return qiao__cpu_f16_to_f32(qiao__cpu_load_u16(p));
}

/* Q4_K / Q5_K: f16 d, f16 dmin, 12 bytes of eight 6-bit (scale, min) pairs,
 * Q5_K then 32 bytes of fifth bits, then 128 bytes of nibbles. Sub-block j
 * of 32: value l = (d * scale) * q - (dmin * min), q from byte 32 (j / 2) + l
 * (low nibble for even j), plus 16 when bit j of qh[l] is set (Q5_K). */
static void chunk_q4_k_q5_k(const uint8_t *b, int j, float *out, int five) {
  const uint8_t *s = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16) + 32 * (j / 2);
  int sc, m;
  qiao__cpu_k4_scale_min(s, j, &sc, &m);
  float dl = f16_at(b) * (float)sc, ml = f16_at(b + 2) * (float)m;
  for (int l = 0; l < 32; l++) {
    int q = (j & 1) ? qs[l] >> 4 : qs[l] & 0x0f;
    if (five) q |= ((qh[l] >> j) & 1) << 4;
    out[l] = dl * (float)q - ml;
  }
}

/* Q6_K: ql[128], qh[64], i8 scales[16], f16 d. Chunk j = 4h + r: value l =
 * (d * scales[8h + 2r + l/16]) * (q - 32), q's low nibble from
 * ql[64h + 32 (r & 1) + l] (high nibble for r >= 2), its top two bits from
 * bits 2r, 2r + 1 of qh[32h + l]. */
static void chunk_q6_k(const uint8_t *b, int j, float *out) {
  int h = j / 4, r = j % 4;
  const uint8_t *ql = b + 64 * h + 32 * (r & 1), *qh = b + 128 + 32 * h;
  const int8_t *sc = (const int8_t *)(b + 192) + 8 * h + 2 * r;
  float d = f16_at(b + 208);
  for (int l = 0; l < 32; l++) {
    int q = (r < 2 ? ql[l] & 0x0f : ql[l] >> 4) | ((qh[l] >> (2 * r)) & 3) << 4;
    out[l] = d * (float)sc[l / 16] * (float)(q - 32);
  }
}

/* Q2_K: 16 bytes of (scale | min << 4), qs[64], f16 d, f16 dmin. Chunk
 * j = 4h + r, sub-block s = 8h + 2r + l/16: value l = (d * scale_s) * q -
 * (dmin * min_s), q = bits 2r, 2r + 1 of qs[32h + l]. */
static void chunk_q2_k(const uint8_t *b, int j, float *out) {
  int h = j / 4, r = j % 4;
  const uint8_t *sc = b + 8 * h + 2 * r, *qs = b + 16 + 32 * h;
  float d = f16_at(b + 80), dmin = f16_at(b + 82);
  for (int l = 0; l < 32; l++) {
    float dl = d * (float)(sc[l / 16] & 0x0f), ml = dmin * (float)(sc[l / 16] >> 4);
    out[l] = dl * (float)((qs[l] >> (2 * r)) & 3) - ml;
  }
}

/* Q3_K: hmask[32], qs[64], 12 bytes of sixteen 6-bit scales, f16 d. Chunk
 * j = 4h + r, sub-block s = 8h + 2r + l/16: value l = (d * (scale_s - 32)) *
 * (q - (bit j of hmask[l] ? 0 : 4)), q = bits 2r, 2r + 1 of qs[32h + l];
 * scale_s: low 4 bits from the low (s < 8) or high nibble of byte s % 8,
 * top 2 bits from bits 2 (s / 4), +1 of byte 8 + s % 4. */
static void chunk_q3_k(const uint8_t *b, int j, float *out) {
  int h = j / 4, r = j % 4;
  const uint8_t *hm = b, *qs = b + 32 + 32 * h, *sc = b + 96;
  float d = f16_at(b + 108);
  for (int l = 0; l < 32; l++) {
    int s = 8 * h + 2 * r + l / 16;
    int lo = s < 8 ? sc[s] & 0x0f : sc[s - 8] >> 4;
    int scale = (lo | ((sc[8 + s % 4] >> (2 * (s / 4))) & 3) << 4) - 32;
    int q = ((qs[l] >> (2 * r)) & 3) - ((hm[l] >> j) & 1 ? 0 : 4);
    out[l] = d * (float)scale * (float)q;
  }
}

/* Q4_1: f16 d, f16 m, 16 bytes (element i < 16 in the low nibble of byte i,
 * i + 16 in its high one): d * q + m. Q5_0: f16 d, u32 qh, 16 bytes: bit i
 * of qh is element i's fifth bit; d * (q - 16). Q5_1: f16 d, f16 m, qh, 16
 * bytes: d * q + m. */
static void small_block_quants(qiao_dev_dtype dtype, const uint8_t *b, int q[32]) {
  int hoff = dtype == QIAO_DEV_Q5_0 ? 2 : 4;
  const uint8_t *qs = b + (dtype == QIAO_DEV_Q4_1 ? 4 : hoff + 4);
  uint32_t qh = 0;
  if (dtype != QIAO_DEV_Q4_1)
    qh = (uint32_t)b[hoff] | (uint32_t)b[hoff + 1] << 8 | (uint32_t)b[hoff + 2] << 16 |
         (uint32_t)b[hoff + 3] << 24;
  for (int i = 0; i < 32; i++)
    q[i] = (i < 16 ? qs[i] & 0x0f : qs[i - 16] >> 4) | (int)((qh >> i) & 1u) << 4;
}

static void block_q4_1_q5(qiao_dev_dtype dtype, const uint8_t *b, float *out) {
  float d = f16_at(b), m = dtype == QIAO_DEV_Q5_0 ? 0.0f : f16_at(b + 2);
  int q[32];
  small_block_quants(dtype, b, q);
  for (int i = 0; i < 32; i++)
    out[i] = dtype == QIAO_DEV_Q5_0 ? d * (float)(q[i] - 16) : d * (float)q[i] + m;
}

void qiao__cpu_dequant_chunk(qiao_dev_dtype dtype, const uint8_t *row, uint64_t c, float *out) {
  if (dtype == QIAO_DEV_F8_E4M3_B128) {
    qiao__cpu_dequant_chunk_f8(row, c, out);
    return;
  }
  if (dtype == QIAO_DEV_IQ4_NL || dtype == QIAO_DEV_IQ4_XS) { /* cpu_iq4.c */
    qiao__cpu_dequant_chunk_iq4(dtype, row, c, out);
    return;
  }
  uint64_t bytes = qiao__cpu_block_bytes(dtype);
  if (qiao__cpu_block_elems(dtype) == 32) {
    block_q4_1_q5(dtype, row + c / 32 * bytes, out);
    return;
  }
  const uint8_t *b = row + c / 256 * bytes;
  int j = (int)(c % 256 / 32);
  switch (dtype) {
  case QIAO_DEV_Q4_K: chunk_q4_k_q5_k(b, j, out, 0); break;
  case QIAO_DEV_Q5_K: chunk_q4_k_q5_k(b, j, out, 1); break;
  case QIAO_DEV_Q6_K: chunk_q6_k(b, j, out); break;
  case QIAO_DEV_Q2_K: chunk_q2_k(b, j, out); break;
  case QIAO_DEV_Q3_K: chunk_q3_k(b, j, out); break;
  default: break;
  }
}

#define DEQUANT(name, dtype)                                                                       \
  void name(const uint8_t *w, uint64_t k, float *out) {                                            \
    for (uint64_t c = 0; c < k; c += 32)                                                           \
      qiao__cpu_dequant_chunk(dtype, w, c, out + c);                                               \
  }
DEQUANT(qiao__cpu_dequant_q4_k, QIAO_DEV_Q4_K)
DEQUANT(qiao__cpu_dequant_q5_k, QIAO_DEV_Q5_K)
DEQUANT(qiao__cpu_dequant_q6_k, QIAO_DEV_Q6_K)
DEQUANT(qiao__cpu_dequant_q2_k, QIAO_DEV_Q2_K)
DEQUANT(qiao__cpu_dequant_q3_k, QIAO_DEV_Q3_K)
DEQUANT(qiao__cpu_dequant_q4_1, QIAO_DEV_Q4_1)
DEQUANT(qiao__cpu_dequant_q5_0, QIAO_DEV_Q5_0)
DEQUANT(qiao__cpu_dequant_q5_1, QIAO_DEV_Q5_1)

/* ---- Q8 activations (device ABI 1.2's x_precision, spec §11.4) -------------
 * Chunk c (32 elements) of a row in integer form: element i is exactly
 * a[i / 16] * v[i] - m[i / 16], a and m f32 products of the block's f16
 * scales and its integer sub-block scales and mins, v a small integer.
 * Q8_0 and Q4_0 too (a = d, m = 0): matmul_experts' path (ABI 1.5). */
static void chunk_ints(qiao_dev_dtype dtype, const uint8_t *row, uint64_t c, int v[32], float a[2],
                       float m[2]) {
  uint64_t bytes = qiao__cpu_block_bytes(dtype);
  if (dtype == QIAO_DEV_Q8_0 || dtype == QIAO_DEV_Q4_0) { /* d * v (matmul_experts, 1.5) */
    const uint8_t *b = row + c / 32 * bytes, *qs = b + 2;
    for (int i = 0; i < 32; i++)
      v[i] = dtype == QIAO_DEV_Q8_0 ? (int8_t)qs[i] : (i < 16 ? qs[i] & 0x0f : qs[i - 16] >> 4) - 8;
    a[0] = a[1] = f16_at(b), m[0] = m[1] = 0.0f;
    return;
  }
  if (qiao__cpu_block_elems(dtype) == 32) {
    const uint8_t *b = row + c / 32 * bytes;
    float d = f16_at(b), mn = dtype == QIAO_DEV_Q5_0 ? 0.0f : -f16_at(b + 2);
    small_block_quants(dtype, b, v);
    if (dtype == QIAO_DEV_Q5_0)
      for (int i = 0; i < 32; i++)
        v[i] -= 16;
    a[0] = a[1] = d, m[0] = m[1] = mn;
    return;
  }
  const uint8_t *b = row + c / 256 * bytes;
  int j = (int)(c % 256 / 32), h = j / 4, r = j % 4;
  switch (dtype) {
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K: {
    const uint8_t *s = b + 4, *qh = b + 16;
    const uint8_t *qs = b + (dtype == QIAO_DEV_Q5_K ? 48 : 16) + 32 * (j / 2);
    int sc, mn;
    qiao__cpu_k4_scale_min(s, j, &sc, &mn);
    for (int l = 0; l < 32; l++) {
      v[l] = (j & 1) ? qs[l] >> 4 : qs[l] & 0x0f;
      if (dtype == QIAO_DEV_Q5_K) v[l] |= ((qh[l] >> j) & 1) << 4;
    }
    a[0] = a[1] = f16_at(b) * (float)sc;
    m[0] = m[1] = f16_at(b + 2) * (float)mn;
    break;
  }
  case QIAO_DEV_Q6_K: {
    const uint8_t *ql = b + 64 * h + 32 * (r & 1), *qh = b + 128 + 32 * h;
    const int8_t *sc = (const int8_t *)(b + 192) + 8 * h + 2 * r;
    for (int l = 0; l < 32; l++)
      v[l] = ((r < 2 ? ql[l] & 0x0f : ql[l] >> 4) | ((qh[l] >> (2 * r)) & 3) << 4) - 32;
    float d = f16_at(b + 208);
    a[0] = d * (float)sc[0], a[1] = d * (float)sc[1], m[0] = m[1] = 0.0f;
    break;
  }
  case QIAO_DEV_Q2_K: {
    const uint8_t *sc = b + 8 * h + 2 * r, *qs = b + 16 + 32 * h;
    for (int l = 0; l < 32; l++)
      v[l] = (qs[l] >> (2 * r)) & 3;
    float d = f16_at(b + 80), dmin = f16_at(b + 82);
    for (int t = 0; t < 2; t++)
      a[t] = d * (float)(sc[t] & 0x0f), m[t] = dmin * (float)(sc[t] >> 4);
    break;
  }
  case QIAO_DEV_Q3_K: {
    const uint8_t *hm = b, *qs = b + 32 + 32 * h, *sc = b + 96;
    for (int l = 0; l < 32; l++)
      v[l] = ((qs[l] >> (2 * r)) & 3) - ((hm[l] >> j) & 1 ? 0 : 4);
    float d = f16_at(b + 108);
    for (int t = 0; t < 2; t++) {
      int s = 8 * h + 2 * r + t;
      int lo = s < 8 ? sc[s] & 0x0f : sc[s - 8] >> 4;
      a[t] = d * (float)((lo | ((sc[8 + s % 4] >> (2 * (s / 4))) & 3) << 4) - 32);
      m[t] = 0.0f;
    }
    break;
  }
  default: break;
  }
}

void qiao__cpu_vec_q8_scalar(qiao_dev_dtype dtype, const uint8_t *w, const qiao__cpu_q8_row *x,
                             int nr, uint64_t k, float *out) {
  float acc[QIAO__CPU_MAX_ROWS][8] = {{0}};
  int v[32];
  float a[2], m[2];
  for (uint64_t c = 0; c < k; c += 32) {
    chunk_ints(dtype, w, c, v, a, m);
    uint64_t b = c / 32;
    for (int r = 0; r < nr; r++) {
      const int8_t *q = x[r].q + c;
      float part = 0.0f;
      for (int t = 0; t < 2; t++) {
        int32_t dot = 0, sum = 0;
        for (int i = 16 * t; i < 16 * t + 16; i++)
          dot += v[i] * q[i], sum += q[i];
        part += (float)dot * a[t] - (float)sum * m[t];
      }
      acc[r][b % 8] += x[r].d[b] * part;
    }
  }
  for (int r = 0; r < nr; r++) {
    const float *s = acc[r];
    out[r] = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
  }
}

#define VEC_Q8(name, dtype)                                                                        \
  void name(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k, float *out) {         \
    qiao__cpu_vec_q8_scalar(dtype, w, x, nr, k, out);                                              \
  }
VEC_Q8(qiao__cpu_vec_q8_q4_k, QIAO_DEV_Q4_K)
VEC_Q8(qiao__cpu_vec_q8_q5_k, QIAO_DEV_Q5_K)
VEC_Q8(qiao__cpu_vec_q8_q6_k, QIAO_DEV_Q6_K)
VEC_Q8(qiao__cpu_vec_q8_q2_k, QIAO_DEV_Q2_K)
VEC_Q8(qiao__cpu_vec_q8_q3_k, QIAO_DEV_Q3_K)
VEC_Q8(qiao__cpu_vec_q8_q4_1, QIAO_DEV_Q4_1)
VEC_Q8(qiao__cpu_vec_q8_q5_0, QIAO_DEV_Q5_0)
VEC_Q8(qiao__cpu_vec_q8_q5_1, QIAO_DEV_Q5_1)
VEC_Q8(qiao__cpu_vec_q8_q8_0, QIAO_DEV_Q8_0)
VEC_Q8(qiao__cpu_vec_q8_q4_0, QIAO_DEV_Q4_0)
