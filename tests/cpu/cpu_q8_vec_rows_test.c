/* The prefill kernels of Q8 activations on stored blocks (vec_q8_rows,
 * cpu_internal.h): on every kernel set that has one, for Q5_0, Q4_K, Q5_K
 * and Q4_0 (matmul_experts, ABI 1.5) weights, each (weight row, x row)
 * product of a call over nw weight rows and nr x rows is bit for bit what
 * vec_q8 gives for that weight row alone, for every nw, nr and offset into
 * the x rows, block counts odd and even, and a NaN scale of x (a
 * non-finite block) included. That is what keeps a row's result
 * independent of the batch it shares a pass with. No kernel set with
 * vec_q8_rows on this processor: skipped (77). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

enum { MAX_W = 9, MAX_X = QIAO__CPU_MAX_ROWS };

static uint64_t state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  state ^= state << 13, state ^= state >> 7, state ^= state << 17;
  return (uint32_t)state;
}

/* Random blocks whose f16 scales are finite normals of either sign. */
static uint8_t *random_rows(qiao_dev_dtype dt, uint64_t k, uint64_t rb) {
  uint8_t *w = malloc(MAX_W * rb);
  for (uint64_t i = 0; i < MAX_W * rb; i++)
    w[i] = (uint8_t)rnd();
  bool small = dt == QIAO_DEV_Q5_0 || dt == QIAO_DEV_Q4_0;
  uint64_t bytes = dt == QIAO_DEV_Q5_0   ? 22
                   : dt == QIAO_DEV_Q4_0 ? 18
                   : dt == QIAO_DEV_Q4_K ? 144
                                         : 176;
  uint64_t elems = small ? 32 : 256;
  int scales = small ? 1 : 2; /* d, and dmin for the K types */
  for (uint64_t r = 0; r < MAX_W; r++)
    for (uint64_t b = 0; b < k / elems; b++)
      for (int t = 0; t < scales; t++) {
        uint16_t h = (uint16_t)((0x2000 + rnd() % 0x1800) | (rnd() & 1 ? 0x8000u : 0));
        memcpy(w + r * rb + b * bytes + 2 * t, &h, 2);
      }
  return w;
}

static int check(const qiao__cpu_kernels *ks, qiao_dev_dtype dt, uint64_t k) {
  uint64_t rb = dt == QIAO_DEV_Q5_0   ? k / 32 * 22
                : dt == QIAO_DEV_Q4_0 ? k / 32 * 18
                                      : k / 256 * (dt == QIAO_DEV_Q4_K ? 144 : 176);
  uint8_t *w = random_rows(dt, k, rb);
  int8_t *q = malloc(MAX_X * k);
  float *d = malloc(MAX_X * k / 32 * sizeof(float));
  int32_t *sum = malloc(MAX_X * k / 32 * sizeof(int32_t));
  qiao__cpu_q8_row x[MAX_X];
  for (int r = 0; r < MAX_X; r++) {
    for (uint64_t b = 0; b < k / 32; b++) {
      int32_t s = 0;
      for (int i = 0; i < 32; i++)
        s += q[r * k + b * 32 + i] = (int8_t)((int)(rnd() % 255) - 127);
      d[r * k / 32 + b] = (float)(rnd() % 1000) / 7919.0f;
      sum[r * k / 32 + b] = s;
    }
    x[r] = (qiao__cpu_q8_row){q + r * k, d + r * k / 32, sum + r * k / 32};
  }
  if (k / 32 > 1) d[3 * k / 32 + 1] = __builtin_nanf("");
  float want[MAX_W][MAX_X], got[MAX_W * MAX_X];
  for (int j = 0; j < MAX_W; j++)
    ks->vec_q8[dt](w + j * rb, x, MAX_X, k, want[j]);
  int bad = 0;
  for (int nw = 1; nw <= MAX_W; nw++)
    for (int nr = 1; nr <= MAX_X; nr++)
      for (int r0 = 0; r0 + nr <= MAX_X; r0 += 3) {
        ks->vec_q8_rows[dt](w, rb, nw, x + r0, nr, k, got);
        for (int j = 0; j < nw; j++)
          for (int r = 0; r < nr; r++)
            if (memcmp(&got[j * nr + r], &want[j][r0 + r], sizeof(float)) != 0 && bad++ < 3)
              fprintf(stderr, "%s dtype %d k %llu: nw %d nr %d: row %d x %d: %a, alone %a\n",
                      ks->name, (int)dt, (unsigned long long)k, nw, nr, j, r0 + r, got[j * nr + r],
                      want[j][r0 + r]);
      }
  free(w);
  free(q);
  free(d);
  free(sum);
  return bad;
}

int main(void) {
  const qiao__cpu_kernels *sets[] = {qiao__cpu_kernels_scalar(), qiao__cpu_kernels_avx2(),
                                     qiao__cpu_kernels_avx512()};
  static const qiao_dev_dtype dtypes[] = {QIAO_DEV_Q5_0, QIAO_DEV_Q4_K, QIAO_DEV_Q5_K,
                                          QIAO_DEV_Q4_0};
  static const uint64_t ks_small[] = {32, 64, 96, 160, 896}, ks_super[] = {256, 512, 4864};
  int checked = 0, failures = 0;
  for (size_t s = 0; s < sizeof(sets) / sizeof(sets[0]); s++)
    for (size_t t = 0; sets[s] != NULL && t < sizeof(dtypes) / sizeof(dtypes[0]); t++) {
      qiao_dev_dtype dt = dtypes[t];
      if (sets[s]->vec_q8_rows[dt] == NULL || sets[s]->vec_q8[dt] == NULL) continue;
      bool small = dt == QIAO_DEV_Q5_0 || dt == QIAO_DEV_Q4_0;
      const uint64_t *ks = small ? ks_small : ks_super;
      size_t nk = small ? 5 : 3;
      for (size_t i = 0; i < nk; i++)
        failures += check(sets[s], dt, ks[i]), checked++;
    }
  if (checked == 0) {
    fprintf(stderr, "no kernel set here has vec_q8_rows: skipped\n");
    return 77;
  }
  if (failures) fprintf(stderr, "%d products differ from vec_q8's\n", failures);
  return failures != 0;
}
