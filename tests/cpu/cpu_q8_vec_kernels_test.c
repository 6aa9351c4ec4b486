/* The kernels of Q8 activations on stored blocks (vec_q8, cpu_internal.h)
 * of every 1.3 block type, on every kernel set the processor has (scalar,
 * AVX2, AVX-512 VNNI): each product of a weight row with a quantized x row
 * equals the definition (spec §11.4-11.5: sum over blocks of d_x times the
 * exact integer-by-weight sum, the weights exactly dequantized), computed
 * here in double, within f32 accumulation (relative to the sum of |terms|);
 * a row's bits are the same alone or among up to QIAO__CPU_MAX_ROWS rows at
 * any offset; a block of x whose scale is NaN (non-finite input) makes that
 * row's product NaN; where a set has vec_q8_rows for the dtype, each of its
 * (weight row, x row) products is bit for bit vec_q8's for that pair, for
 * every count of weight rows and x rows. Block counts odd and even, scales
 * of either sign. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

enum { MAX_X = QIAO__CPU_MAX_ROWS, MAX_W = 9 };
#define BUDGET 1e-5 /* f32 accumulation over up to 4864 elements: ~1e-7 measured */

static uint64_t state = 0x243f6a8885a308d3ull;
static uint32_t rnd(void) {
  state ^= state << 13, state ^= state >> 7, state ^= state << 17;
  return (uint32_t)state;
}

/* Where a block keeps its f16 scales (d, then dmin or m where it has one). */
static void scale_offsets(qiao_dev_dtype dt, int *first, int *count) {
  switch (dt) {
  case QIAO_DEV_Q4_K:
  case QIAO_DEV_Q5_K:
  case QIAO_DEV_Q4_1:
  case QIAO_DEV_Q5_1: *first = 0, *count = 2; break;
  case QIAO_DEV_Q6_K: *first = 208, *count = 1; break;
  case QIAO_DEV_Q2_K: *first = 80, *count = 2; break;
  case QIAO_DEV_Q3_K: *first = 108, *count = 1; break;
  default: *first = 0, *count = 1; break; /* Q5_0 */
  }
}

/* One weight row of k elements: random bytes, its f16 scales finite
 * normals of either sign. */
static uint8_t *random_row(qiao_dev_dtype dt, uint64_t k) {
  uint64_t bytes = qiao__cpu_block_bytes(dt), elems = qiao__cpu_block_elems(dt);
  uint8_t *w = malloc(k / elems * bytes);
  for (uint64_t i = 0; i < k / elems * bytes; i++)
    w[i] = (uint8_t)rnd();
  int first, count;
  scale_offsets(dt, &first, &count);
  for (uint64_t b = 0; b < k / elems; b++)
    for (int t = 0; t < count; t++) {
      uint16_t h = (uint16_t)((0x2000 + rnd() % 0x1800) | (rnd() & 1 ? 0x8000u : 0));
      memcpy(w + b * bytes + (uint64_t)first + 2 * (uint64_t)t, &h, 2);
    }
  return w;
}

/* x rows of random int8 quants and scales, sums as the quantizer leaves
 * them; the last block of row nan_row non-finite (d NaN, quants 0). */
static void random_x(uint64_t k, int nan_row, int8_t *q, float *d, int32_t *sum,
                     qiao__cpu_q8_row x[MAX_X]) {
  for (int r = 0; r < MAX_X; r++) {
    for (uint64_t b = 0; b < k / 32; b++) {
      int32_t s = 0;
      for (int i = 0; i < 32; i++)
        s += q[r * k + b * 32 + i] = (int8_t)((int)(rnd() % 255) - 127);
      d[r * k / 32 + b] = (float)(rnd() % 1000 + 1) / 7919.0f;
      sum[r * k / 32 + b] = s;
    }
    x[r] = (qiao__cpu_q8_row){q + r * k, d + r * k / 32, sum + r * k / 32};
  }
  d[nan_row * k / 32 + k / 32 - 1] = NAN;
  memset(q + nan_row * k + k - 32, 0, 32);
  sum[nan_row * k / 32 + k / 32 - 1] = 0;
}

/* vec_q8_rows against vec_q8, bit for bit, on MAX_W consecutive rows. */
static int check_rows(const qiao__cpu_kernels *ks, qiao_dev_dtype dt, uint64_t k) {
  uint64_t rb = k / qiao__cpu_block_elems(dt) * qiao__cpu_block_bytes(dt);
  uint8_t *w = malloc(MAX_W * rb);
  for (int j = 0; j < MAX_W; j++) {
    uint8_t *row = random_row(dt, k);
    memcpy(w + (uint64_t)j * rb, row, rb);
    free(row);
  }
  int8_t *q = malloc(MAX_X * k);
  float *d = malloc(MAX_X * k / 32 * sizeof(float));
  int32_t *sum = malloc(MAX_X * k / 32 * sizeof(int32_t));
  qiao__cpu_q8_row x[MAX_X];
  random_x(k, 3, q, d, sum, x);
  float want[MAX_W][MAX_X], got[MAX_W * MAX_X];
  for (int j = 0; j < MAX_W; j++)
    ks->vec_q8[dt](w + (uint64_t)j * rb, x, MAX_X, k, want[j]);
  int bad = 0;
  for (int nw = 1; nw <= MAX_W; nw++)
    for (int nr = 1; nr <= MAX_X; nr++)
      for (int r0 = 0; r0 + nr <= MAX_X; r0 += 3) {
        ks->vec_q8_rows[dt](w, rb, nw, x + r0, nr, k, got);
        for (int j = 0; j < nw; j++)
          for (int r = 0; r < nr; r++)
            if (memcmp(&got[j * nr + r], &want[j][r0 + r], sizeof(float)) != 0 && bad++ < 5)
              fprintf(stderr,
                      "%s dtype %d k %llu: vec_q8_rows nw %d nr %d: row %d x %d: %a, "
                      "vec_q8 %a\n",
                      ks->name, (int)dt, (unsigned long long)k, nw, nr, j, r0 + r, got[j * nr + r],
                      want[j][r0 + r]);
      }
  free(w);
  free(q);
  free(d);
  free(sum);
  return bad;
}

static int check(const qiao__cpu_kernels *ks, qiao_dev_dtype dt, uint64_t k) {
  uint8_t *w = random_row(dt, k);
  float *wf = malloc(k * sizeof(float));
  for (uint64_t c = 0; c < k; c += 32)
    qiao__cpu_dequant_chunk(dt, w, c, wf + c);
  int8_t *q = malloc(MAX_X * k);
  float *d = malloc(MAX_X * k / 32 * sizeof(float));
  int32_t *sum = malloc(MAX_X * k / 32 * sizeof(int32_t));
  qiao__cpu_q8_row x[MAX_X];
  int nan_row = 5;
  random_x(k, nan_row, q, d, sum, x);
  int bad = 0;
  float alone[MAX_X], got[MAX_X];
  for (int r = 0; r < MAX_X; r++) {
    ks->vec_q8[dt](w, x + r, 1, k, &alone[r]);
    double ref = 0.0, mag = 0.0;
    for (uint64_t b = 0; b < k / 32; b++) {
      double block = 0.0, babs = 0.0;
      for (uint64_t i = b * 32; i < b * 32 + 32; i++) {
        block += (double)q[r * k + i] * (double)wf[i];
        babs += fabs((double)q[r * k + i] * (double)wf[i]);
      }
      ref += (double)d[r * k / 32 + b] * block, mag += fabs((double)d[r * k / 32 + b]) * babs;
    }
    if (r == nan_row) {
      if (!isnan(alone[r]) && bad++ < 5)
        fprintf(stderr, "%s dtype %d k %llu: a NaN block of x gives %a, not NaN\n", ks->name,
                (int)dt, (unsigned long long)k, alone[r]);
      continue;
    }
    double err = fabs((double)alone[r] - ref) / (mag > 0.0 ? mag : 1.0);
    if (!(err <= BUDGET) && bad++ < 5)
      fprintf(stderr, "%s dtype %d k %llu row %d: %.9g, definition %.9g (error %.3g > %.0e)\n",
              ks->name, (int)dt, (unsigned long long)k, r, alone[r], ref, err, BUDGET);
  }
  for (int nr = 2; nr <= MAX_X; nr++)
    for (int r0 = 0; r0 + nr <= MAX_X; r0++) {
      ks->vec_q8[dt](w, x + r0, nr, k, got);
      for (int r = 0; r < nr; r++)
        if (memcmp(&got[r], &alone[r0 + r], sizeof(float)) != 0 && bad++ < 5)
          fprintf(stderr, "%s dtype %d k %llu: row %d among %d: %a, alone %a\n", ks->name, (int)dt,
                  (unsigned long long)k, r0 + r, nr, got[r], alone[r0 + r]);
    }
  free(w);
  free(wf);
  free(q);
  free(d);
  free(sum);
  return bad;
}

int main(void) {
  const qiao__cpu_kernels *sets[] = {qiao__cpu_kernels_scalar(), qiao__cpu_kernels_avx2(),
                                     qiao__cpu_kernels_avx512()};
  static const qiao_dev_dtype dtypes[] = {QIAO_DEV_Q4_K, QIAO_DEV_Q5_K, QIAO_DEV_Q6_K,
                                          QIAO_DEV_Q2_K, QIAO_DEV_Q3_K, QIAO_DEV_Q4_1,
                                          QIAO_DEV_Q5_0, QIAO_DEV_Q5_1};
  static const uint64_t ks_small[] = {32, 96, 896, 4864}, ks_super[] = {256, 768, 1280, 4864};
  int failures = 0;
  for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++) {
    if (sets[s] == NULL) continue;
    int tested = 0, with_rows = 0;
    for (size_t t = 0; t < sizeof(dtypes) / sizeof(dtypes[0]); t++) {
      qiao_dev_dtype dt = dtypes[t];
      if (sets[s]->vec_q8[dt] == NULL) continue;
      const uint64_t *ks = qiao__cpu_block_elems(dt) == 32 ? ks_small : ks_super;
      for (size_t i = 0; i < 4; i++) {
        failures += check(sets[s], dt, ks[i]);
        if (sets[s]->vec_q8_rows[dt] != NULL) failures += check_rows(sets[s], dt, ks[i]);
      }
      tested++;
      with_rows += sets[s]->vec_q8_rows[dt] != NULL;
    }
    printf("%s: vec_q8 of %d block types checked, vec_q8_rows of %d\n", sets[s]->name, tested,
           with_rows);
  }
  if (failures) fprintf(stderr, "%d failure(s)\n", failures);
  return failures != 0;
}
