/* The CPU backend's F8_E4M3_B128 kernels, in every kernel set this
 * processor runs: the SIMD conversions give exactly the scalar table's bits
 * for every code and scale (subnormal codes and scales, -0, 448), and the
 * dot, dot2 and gemv kernels give exactly the F32 kernels' bits on the
 * dequantized row (what batch-invariant mode and the tile path rely on). */
#include <math.h>

#include "cpu_internal.h"
#include "test_util.h"

enum { K = 512, ROWS = 3 };

static void fill(uint8_t *w, uint32_t seed) {
  static const float scales[] = {1.0f, 0x1p-120f, 1e-39f, 0x1p100f, -0.0f, -0.0625f, 3.0f, 7e-3f};
  for (int r = 0; r < ROWS; r++)
    for (int b = 0; b < K / 128; b++) {
      uint8_t *block = w + (r * (K / 128) + b) * 132;
      float d = scales[(r * 4 + b + seed) % 8];
      memcpy(block, &d, 4);
      for (int j = 0; j < 128; j++) {
        uint8_t q = (uint8_t)(b * 128 + j + seed * 7);
        block[4 + j] = (q & 0x7f) == 0x7f ? (uint8_t)(q & 0x80) : q;
      }
    }
}

static void check_set(const qiao__cpu_kernels *ks, const qiao__cpu_kernels *scalar) {
  const qiao_dev_dtype dt = QIAO_DEV_F8_E4M3_B128;
  static uint8_t w[ROWS * K / 128 * 132];
  static float want[ROWS * K], got[ROWS * K], x[4][K];
  for (int i = 0; i < K; i++)
    for (int r = 0; r < 4; r++)
      x[r][i] = (float)((i * 37 + r * 11) % 101 - 50) / 50.0f;
  const float *xs[4] = {x[0], x[1], x[2], x[3]};
  for (uint32_t seed = 0; seed < 8; seed++) {
    fill(w, seed);
    uint64_t row_bytes = K / 128 * 132;
    for (int r = 0; r < ROWS; r++) {
      scalar->dequant[dt](w + r * row_bytes, K, want + r * K);
      CHECK(ks->dequant[dt] != NULL);
      if (ks->dequant[dt]) ks->dequant[dt](w + r * row_bytes, K, got + r * K);
      CHECK(memcmp(want + r * K, got + r * K, sizeof(float) * K) == 0);
      /* element by element against the table (the scalar set's own) */
      const float *table = qiao__cpu_e4m3_table();
      for (int i = 0; i < K; i++) {
        const uint8_t *block = w + r * row_bytes + i / 128 * 132;
        float d;
        memcpy(&d, block, 4);
        float v = d * table[block[4 + i % 128]];
        CHECK(memcmp(&v, &want[r * K + i], 4) == 0);
      }
    }
    if (ks->dot[dt] == NULL) continue;
    for (int nr = 1; nr <= 4; nr++)
      for (int r = 0; r < ROWS; r++) {
        float a[4], b[4];
        ks->dot[dt](w + r * row_bytes, xs, nr, K, a);
        ks->dot[QIAO_DEV_F32]((const uint8_t *)(want + r * K), xs, nr, K, b);
        CHECK(memcmp(a, b, sizeof(float) * (size_t)nr) == 0);
        if (ks->dot2[dt]) {
          float c0[4], c1[4], e[4];
          ks->dot2[dt](w + r * row_bytes, w + ((r + 1) % ROWS) * row_bytes, xs, nr, K, c0, c1);
          ks->dot[QIAO_DEV_F32]((const uint8_t *)(want + ((r + 1) % ROWS) * K), xs, nr, K, e);
          CHECK(memcmp(c0, b, sizeof(float) * (size_t)nr) == 0);
          CHECK(memcmp(c1, e, sizeof(float) * (size_t)nr) == 0);
        }
      }
    if (ks->gemv[dt]) {
      float g[ROWS], one[1];
      ks->gemv[dt](w, row_bytes, ROWS, x[0], K, g);
      for (int r = 0; r < ROWS; r++) {
        ks->dot[dt](w + r * row_bytes, xs, 1, K, one);
        CHECK(memcmp(&g[r], one, 4) == 0);
      }
    }
  }
}

int main(void) {
  const qiao__cpu_kernels *scalar = qiao__cpu_kernels_scalar();
  const qiao__cpu_kernels *sets[] = {scalar, qiao__cpu_kernels_avx2(), qiao__cpu_kernels_avx512()};
  int ran = 0;
  for (size_t i = 0; i < sizeof(sets) / sizeof(sets[0]); i++) {
    if (sets[i] == NULL) continue;
    check_set(sets[i], scalar);
    printf("%s: checked\n", sets[i]->name);
    ran++;
  }
  CHECK(ran >= 1);
  TEST_END();
}
