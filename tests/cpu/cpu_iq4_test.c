/* IQ4_NL and IQ4_XS in the CPU backend (device ABI 1.5; format.md §4.1):
 * - dequantization of hand-built blocks equals the formula's values, worked
 *   out here from the table (every nibble, every 6-bit IQ4_XS scale), in the
 *   chunk conversion and in every kernel set's dequant entry;
 * - each kernel set's Q8-activation kernel (vec_q8) on random blocks is
 *   within 1e-5 of the float64 definition (per block of 32: d_x * a *
 *   sum(level * q), a = d or d * (ls - 32)) relative to the sum of the
 *   terms' magnitudes, and a row's result does not depend on how many rows
 *   share the call (nr), bit for bit; and where a set has the prefill
 *   kernel (vec_q8_rows), every (weight row, x row) pair of a call over
 *   several weight rows gives vec_q8's bits. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

static int failures = 0;
#define EXPECT(c)                                                                                  \
  do {                                                                                             \
    if (!(c) && failures++ < 10) fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #c);   \
  } while (0)

static const int levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                               1,    13,   25,  38,  53,  69,  89,  113};

static uint64_t state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
  state ^= state << 13, state ^= state >> 7, state ^= state << 17;
  return (uint32_t)state;
}

static void dequant_all(qiao_dev_dtype dt, const uint8_t *row, uint64_t k, const float *want) {
  float got[512];
  for (uint64_t c = 0; c < k; c += 32)
    qiao__cpu_dequant_chunk_iq4(dt, row, c, got + c);
  EXPECT(memcmp(got, want, k * sizeof(float)) == 0);
  const qiao__cpu_kernels *sets[] = {qiao__cpu_kernels_scalar(), qiao__cpu_kernels_avx2(),
                                     qiao__cpu_kernels_avx512()};
  for (int s = 0; s < 3; s++) {
    if (sets[s] == NULL) continue;
    EXPECT(sets[s]->dequant[dt] != NULL);
    if (sets[s]->dequant[dt] == NULL) continue;
    memset(got, 0, sizeof(got));
    sets[s]->dequant[dt](row, k, got);
    for (uint64_t i = 0; i < k; i++)
      if (memcmp(&got[i], &want[i], 4) != 0 && failures++ < 10)
        fprintf(stderr, "%s dtype %d element %llu: %g, want %g\n", sets[s]->name, (int)dt,
                (unsigned long long)i, got[i], want[i]);
  }
}

/* IQ4_NL: two blocks, d = 0.5 and -3 (f16 0x3800, 0xc200); byte j holds
 * nibble j (element j) and 15 - j (element j + 16). */
static void hand_iq4_nl(void) {
  uint8_t row[36];
  float want[64];
  const uint16_t d16[2] = {0x3800, 0xc200};
  const float d[2] = {0.5f, -3.0f};
  for (int b = 0; b < 2; b++) {
    memcpy(row + 18 * b, &d16[b], 2);
    for (int j = 0; j < 16; j++) {
      row[18 * b + 2 + j] = (uint8_t)(j | (15 - j) << 4);
      want[32 * b + j] = d[b] * (float)levels[j];
      want[32 * b + j + 16] = d[b] * (float)levels[15 - j];
    }
  }
  dequant_all(QIAO_DEV_IQ4_NL, row, 64, want);
}

/* IQ4_XS: two super-blocks, d = 0.25 and -0.125; sub-block ib's 6-bit scale
 * ls = (9 ib + 5 + 31 b) % 64 (all of 0..63 across the rows below); byte j
 * of sub-block ib holds nibbles (j + ib) % 16 and (3 j + ib) % 16. */
static void hand_iq4_xs(void) {
  uint8_t row[272];
  float want[512];
  const uint16_t d16[2] = {0x3400, 0xb000};
  const float d[2] = {0.25f, -0.125f};
  memset(row, 0, sizeof(row));
  for (int b = 0; b < 2; b++) {
    uint8_t *blk = row + 136 * b;
    memcpy(blk, &d16[b], 2);
    uint16_t scales_h = 0;
    for (int ib = 0; ib < 8; ib++) {
      int ls = (9 * ib + 5 + 31 * b) % 64;
      blk[4 + ib / 2] |= (uint8_t)((ls & 15) << (4 * (ib % 2)));
      scales_h |= (uint16_t)((ls >> 4) << (2 * ib));
      for (int j = 0; j < 16; j++) {
        int lo = (j + ib) % 16, hi = (3 * j + ib) % 16;
        blk[8 + 16 * ib + j] = (uint8_t)(lo | hi << 4);
        float a = d[b] * (float)(ls - 32);
        want[256 * b + 32 * ib + j] = a * (float)levels[lo];
        want[256 * b + 32 * ib + j + 16] = a * (float)levels[hi];
      }
    }
    memcpy(blk + 2, &scales_h, 2);
  }
  dequant_all(QIAO_DEV_IQ4_XS, row, 512, want);
}

static float f16_value(uint16_t h) {
  return qiao__cpu_f16_to_f32(h);
}

/* Random rows (finite f16 scales of either sign, any nibbles and 6-bit
 * scales) against random quantized x rows, each kernel set. */
static void vec_q8_random(qiao_dev_dtype dt, uint64_t k) {
  enum { NR = QIAO__CPU_MAX_ROWS };
  uint64_t elems = dt == QIAO_DEV_IQ4_NL ? 32 : 256, bytes = dt == QIAO_DEV_IQ4_NL ? 18 : 136;
  uint64_t rb = k / elems * bytes;
  uint8_t *w = malloc(rb);
  for (uint64_t i = 0; i < rb; i++)
    w[i] = (uint8_t)rnd();
  for (uint64_t b = 0; b < k / elems; b++) {
    uint16_t h = (uint16_t)((0x2000 + rnd() % 0x1800) | (rnd() & 1 ? 0x8000u : 0));
    memcpy(w + b * bytes, &h, 2);
  }
  int8_t *q = malloc(NR * k);
  float *xd = malloc(NR * k / 32 * sizeof(float));
  int32_t *sum = malloc(NR * k / 32 * sizeof(int32_t));
  qiao__cpu_q8_row x[NR];
  double want[NR], mag[NR];
  for (int r = 0; r < NR; r++) {
    want[r] = mag[r] = 0;
    for (uint64_t b = 0; b < k / 32; b++) {
      int32_t s = 0;
      for (int i = 0; i < 32; i++)
        s += q[r * k + b * 32 + i] = (int8_t)((int)(rnd() % 255) - 127);
      xd[r * k / 32 + b] = (float)(rnd() % 1000 + 1) / 7919.0f;
      sum[r * k / 32 + b] = s;
    }
    x[r] = (qiao__cpu_q8_row){q + r * k, xd + r * k / 32, sum + r * k / 32};
    for (uint64_t i = 0; i < k; i++) { /* the definition, element by element */
      const uint8_t *blk = w + i / elems * bytes;
      double a = f16_value((uint16_t)(blk[0] | blk[1] << 8));
      const uint8_t *qs = blk + 2;
      int l = (int)(i % 32);
      if (dt == QIAO_DEV_IQ4_XS) {
        int ib = (int)(i % 256 / 32);
        int ls = ((blk[4 + ib / 2] >> (4 * (ib % 2))) & 15) |
                 ((blk[2 + ib / 4] >> (2 * (ib % 4))) & 3) << 4;
        a *= ls - 32;
        qs = blk + 8 + 16 * ib;
      }
      int v = levels[l < 16 ? qs[l] & 15 : qs[l - 16] >> 4];
      double t = (double)xd[r * k / 32 + i / 32] * a * v * q[r * k + i];
      want[r] += t, mag[r] += fabs(t);
    }
  }
  const qiao__cpu_kernels *sets[] = {qiao__cpu_kernels_scalar(), qiao__cpu_kernels_avx2(),
                                     qiao__cpu_kernels_avx512()};
  for (int s = 0; s < 3; s++) {
    if (sets[s] == NULL || sets[s]->vec_q8[dt] == NULL) continue;
    float all[NR];
    sets[s]->vec_q8[dt](w, x, NR, k, all);
    for (int r = 0; r < NR; r++) {
      if (fabs(all[r] - want[r]) > 1e-5 * mag[r] && failures++ < 10)
        fprintf(stderr, "%s dtype %d k %llu row %d: %.9g, definition %.9g\n", sets[s]->name,
                (int)dt, (unsigned long long)k, r, all[r], want[r]);
      for (int nr = 1; nr <= 3 && r + nr <= NR; nr++) {
        float some[NR];
        sets[s]->vec_q8[dt](w, x + r, nr, k, some);
        EXPECT(memcmp(&some[0], &all[r], 4) == 0);
      }
    }
  }
  /* prefill: vec_q8_rows over nw weight rows (this row repeated at
   * row_bytes apart) gives each pair vec_q8's bits */
  for (int s = 0; s < 3; s++) {
    if (sets[s] == NULL || sets[s]->vec_q8_rows[dt] == NULL) continue;
    enum { NW = 6 };
    uint8_t *ws = malloc(NW * rb);
    for (int j = 0; j < NW; j++)
      memcpy(ws + j * rb, w, rb);
    float alone[NR], got[NW * NR];
    sets[s]->vec_q8[dt](w, x, NR, k, alone);
    for (int nw = 1; nw <= NW; nw++)
      for (int nr = 1; nr <= NR; nr++) {
        sets[s]->vec_q8_rows[dt](ws, rb, nw, x, nr, k, got);
        for (int j = 0; j < nw; j++)
          for (int r = 0; r < nr; r++)
            if (memcmp(&got[j * nr + r], &alone[r], 4) != 0 && failures++ < 10)
              fprintf(stderr, "%s dtype %d k %llu rows nw %d nr %d (%d, %d): %a, alone %a\n",
                      sets[s]->name, (int)dt, (unsigned long long)k, nw, nr, j, r, got[j * nr + r],
                      alone[r]);
      }
    free(ws);
  }
  free(w), free(q), free(xd), free(sum);
}

int main(void) {
  hand_iq4_nl();
  hand_iq4_xs();
  EXPECT(qiao__cpu_kernels_scalar()->vec_q8[QIAO_DEV_IQ4_NL] != NULL);
  EXPECT(qiao__cpu_kernels_scalar()->vec_q8[QIAO_DEV_IQ4_XS] != NULL);
  static const uint64_t ks_nl[] = {32, 96, 896, 4864}, ks_xs[] = {256, 512, 4864};
  for (int i = 0; i < 4; i++)
    vec_q8_random(QIAO_DEV_IQ4_NL, ks_nl[i]);
  for (int i = 0; i < 3; i++)
    vec_q8_random(QIAO_DEV_IQ4_XS, ks_xs[i]);
  if (failures) fprintf(stderr, "%d failures\n", failures);
  return failures != 0;
}
