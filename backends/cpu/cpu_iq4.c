/* The non-linear 4-bit block types of device ABI 1.5 (GGUF's IQ4_NL and
 * IQ4_XS; layouts in docs/spec/format.md §4.1): each nibble indexes a fixed
 * table of 16 int8 levels. IQ4_NL: 32 elements per 18-byte block, f16 d
 * then 16 bytes of nibbles (low nibbles elements 0..15, high 16..31); x =
 * d * level. IQ4_XS: 256 elements per 136-byte super-block, f16 d, u16
 * scales_h, 4 bytes scales_l, 128 bytes of nibbles; sub-block ib of 32 has
 * the 6-bit scale ls and x = (d * (ls - 32)) * level, its 16 bytes of
 * nibbles ordered as IQ4_NL's. Here: the exact conversion to f32, 32
 * elements at a time (embed, the tiles and scalar dots of matmul), and the
 * portable Q8-activation kernel. Every product is exact in f32, so the
 * values are the same in every kernel set. */
#include "cpu_internal.h"

const int8_t qiao__cpu_iq4_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113};

static float f16_at(const uint8_t *p) {
  return qiao__cpu_f16_to_f32(qiao__cpu_load_u16(p));
}

int qiao__cpu_iq4_xs_scale(const uint8_t *block, int ib) {
  int lo = (block[4 + ib / 2] >> (4 * (ib % 2))) & 0x0f;
  int hi = (qiao__cpu_load_u16(block + 2) >> (2 * ib)) & 3;
  return (lo | hi << 4) - 32;
}

/* The 16 bytes of nibbles and the f32 scale of chunk c (32 elements). */
static const uint8_t *chunk_of(qiao_dev_dtype dtype, const uint8_t *row, uint64_t c, float *a) {
  if (dtype == QIAO_DEV_IQ4_NL) {
    const uint8_t *b = row + c / 32 * 18;
    *a = f16_at(b);
    return b + 2;
  }
  const uint8_t *b = row + c / 256 * 136;
  int ib = (int)(c % 256 / 32);
  *a = f16_at(b) * (float)qiao__cpu_iq4_xs_scale(b, ib);
  return b + 8 + 16 * ib;
}

void qiao__cpu_dequant_chunk_iq4(qiao_dev_dtype dtype, const uint8_t *row, uint64_t c, float *out) {
  float a;
  const uint8_t *qs = chunk_of(dtype, row, c, &a);
  for (int j = 0; j < 16; j++) {
    out[j] = a * (float)qiao__cpu_iq4_levels[qs[j] & 0x0f];
    out[j + 16] = a * (float)qiao__cpu_iq4_levels[qs[j] >> 4];
  }
}

void qiao__cpu_dequant_iq4_nl(const uint8_t *w, uint64_t k, float *out) {
  for (uint64_t c = 0; c < k; c += 32)
    qiao__cpu_dequant_chunk_iq4(QIAO_DEV_IQ4_NL, w, c, out + c);
}

void qiao__cpu_dequant_iq4_xs(const uint8_t *w, uint64_t k, float *out) {
  for (uint64_t c = 0; c < k; c += 32)
    qiao__cpu_dequant_chunk_iq4(QIAO_DEV_IQ4_XS, w, c, out + c);
}

/* Q8 activations (spec §11.4): chunk c is exactly a * v[i] (v the int8
 * levels), so sum(v * q) is exact and the chunk adds d_x * (a * that) into
 * lane c / 32 % 8 of its row, the 8 lanes summed pairwise at the end. */
static void vec_q8(qiao_dev_dtype dtype, const uint8_t *w, const qiao__cpu_q8_row *x, int nr,
                   uint64_t k, float *out) {
  float acc[QIAO__CPU_MAX_ROWS][8] = {{0}};
  for (uint64_t c = 0; c < k; c += 32) {
    float a;
    const uint8_t *qs = chunk_of(dtype, w, c, &a);
    int v[32];
    for (int j = 0; j < 16; j++) {
      v[j] = qiao__cpu_iq4_levels[qs[j] & 0x0f];
      v[j + 16] = qiao__cpu_iq4_levels[qs[j] >> 4];
    }
    uint64_t b = c / 32;
    for (int r = 0; r < nr; r++) {
      const int8_t *q = x[r].q + c;
      int32_t dot = 0;
      for (int i = 0; i < 32; i++)
        dot += v[i] * q[i];
      acc[r][b % 8] += x[r].d[b] * ((float)dot * a);
    }
  }
  for (int r = 0; r < nr; r++) {
    const float *s = acc[r];
    out[r] = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
  }
}

void qiao__cpu_vec_q8_iq4_nl(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                             float *out) {
  vec_q8(QIAO_DEV_IQ4_NL, w, x, nr, k, out);
}

void qiao__cpu_vec_q8_iq4_xs(const uint8_t *w, const qiao__cpu_q8_row *x, int nr, uint64_t k,
                             float *out) {
  vec_q8(QIAO_DEV_IQ4_XS, w, x, nr, k, out);
}
