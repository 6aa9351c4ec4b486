/* q8_0 and q4_0 quantization byte for byte against the reference
 * quantization of docs/spec/format.md §4, written here from its formula in
 * binary32 arithmetic, over random blocks of many magnitudes and the blocks
 * where rounding decides: halves, negative extremes, zeros, subnormal
 * scales, a scale that overflows f16.
 * The quotient x / d is taken as x * (1 / d), both rounded to binary32: what
 * GGUF's reference quantizer (llama.cpp quantize_row_q8_0_ref / _q4_0_ref)
 * computes, and what the spec's promise of GGUF-identical blocks requires;
 * a correctly rounded x / d differs from it in about 1% of random blocks
 * (counted and printed below, so a spec or code change shows). */
#include <math.h>
#include <string.h>

#include "format/dtype_convert.h"
#include "test_util.h"

/* IEEE binary16 bits of a binary32, round to nearest even (§4: "d stored as
 * f16"), from the value: the nearest multiple of the binade's spacing. */
static uint16_t f16_bits(float x) {
  uint16_t sign = signbit(x) ? 0x8000 : 0;
  double a = fabs((double)x);
  if (isnan(x)) return 0x7e00;
  if (a == 0) return sign;
  int e = 0;
  frexp(a, &e);
  int binade = e - 1 < -14 ? -14 : e - 1;
  double step = ldexp(1.0, binade - 10), r = nearbyint(a / step) * step;
  if (r >= 65536.0) return sign | 0x7c00;
  if (r < ldexp(1.0, -14)) return sign | (uint16_t)(r / ldexp(1.0, -24));
  frexp(r, &e);
  return sign | (uint16_t)((e - 1 + 15) << 10) | (uint16_t)((r / ldexp(1.0, e - 1) - 1) * 1024);
}

/* q8_0: amax = max |x|, d = amax / 127, q = round(x / d) (halves away from
 * zero; 0 when d = 0), d stored as f16. */
static void spec_q8_0(const float *x, uint8_t *block) {
  float amax = 0;
  for (int j = 0; j < 32; j++)
    if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
  float d = amax / 127.0f;
  uint16_t h = f16_bits(d);
  memcpy(block, &h, 2);
  for (int j = 0; j < 32; j++)
    block[2 + j] = (uint8_t)(int8_t)(d == 0 ? 0 : (int)roundf(x[j] * (1.0f / d)));
}

/* The same with the correctly rounded quotient, only to count how often the
 * two readings of "x / d" part. */
static void quotient_q8_0(const float *x, uint8_t *block) {
  spec_q8_0(x, block);
  float amax = 0;
  for (int j = 0; j < 32; j++)
    if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
  float d = amax / 127.0f;
  for (int j = 0; j < 32; j++)
    block[2 + j] = (uint8_t)(int8_t)(d == 0 ? 0 : (int)roundf(x[j] / d));
}

/* q4_0: m = the value of largest magnitude (with its sign; the first on
 * ties), d = m / -8, q = min(15, trunc(x / d + 8.5)) (0 when d = 0), d as f16;
 * byte j: element j low nibble, element j + 16 high nibble. */
static void spec_q4_0(const float *x, uint8_t *block) {
  float m = 0;
  for (int j = 0; j < 32; j++)
    if (fabsf(x[j]) > fabsf(m)) m = x[j];
  float d = m / -8.0f;
  uint16_t h = f16_bits(d);
  memcpy(block, &h, 2);
  int q[32];
  for (int j = 0; j < 32; j++) {
    /* d = 0: every x is 0 and q = trunc(0 + 8.5) = 8, the nibble of value 0
     * (GGUF's; the spec's "0 when d = 0" is the value, not the nibble) */
    int v = (int)truncf(x[j] * (d == 0 ? 0.0f : 1.0f / d) + 8.5f);
    q[j] = v > 15 ? 15 : v;
  }
  for (int j = 0; j < 16; j++)
    block[2 + j] = (uint8_t)(q[j] | (q[j + 16] << 4));
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float uniform(float lo, float hi) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return lo + (hi - lo) * (float)((rng >> 40) * 0x1p-24);
}

static int differ_q8 = 0, differ_q4 = 0, blocks = 0, quotient_differs = 0;

static void check_block(const float *x, const char *what) {
  uint8_t got8[34], want8[34], got4[18], want4[18];
  qiao__dtype_from_f32(QIAO_DTYPE_Q8_0, x, got8, 32);
  qiao__dtype_from_f32(QIAO_DTYPE_Q4_0, x, got4, 32);
  spec_q8_0(x, want8);
  spec_q4_0(x, want4);
  blocks++;
  uint8_t quotient[34];
  quotient_q8_0(x, quotient);
  quotient_differs += memcmp(quotient, want8, 34) != 0;
  if (memcmp(got8, want8, 34) != 0 && differ_q8++ < 5)
    fprintf(stderr, "q8_0 %s: block differs from the spec's formula\n", what);
  if (memcmp(got4, want4, 18) != 0 && differ_q4++ < 5)
    fprintf(stderr, "q4_0 %s: block differs from the spec's formula\n", what);
}

int main(void) {
  float x[32];
  /* random blocks over 24 binades, both signs */
  for (int b = 0; b < 200000; b++) {
    float scale = ldexpf(1.0f, (int)uniform(-20, 4));
    for (int j = 0; j < 32; j++)
      x[j] = uniform(-1, 1) * scale;
    check_block(x, "random");
  }
  /* planted: every value a half step of the grid (ties of the rounding) */
  for (int b = 0; b < 2000; b++) {
    float amax = uniform(0.5f, 2.0f), d = amax / 127.0f;
    for (int j = 0; j < 32; j++)
      x[j] = ((float)(int)uniform(-127, 127) + 0.5f) * d;
    x[b % 32] = (b & 1) ? amax : -amax;
    check_block(x, "q8_0 halves");
    float m = (b & 2) ? amax : -amax, d4 = m / -8.0f;
    for (int j = 0; j < 32; j++)
      x[j] = ((float)(int)uniform(0, 16) - 8.0f + 0.5f) * d4;
    x[(b * 7) % 32] = m;
    check_block(x, "q4_0 halves");
  }
  memset(x, 0, sizeof(x));
  check_block(x, "zeros");
  x[3] = -0.0f, x[5] = 1e-40f, x[9] = -3e-3f; /* a subnormal element; 1 / d is finite */
  check_block(x, "subnormal element");
  for (int j = 0; j < 32; j++)
    x[j] = (j % 2 ? -1.0f : 1.0f) * 1e7f; /* d overflows f16 */
  check_block(x, "huge");
  for (int j = 0; j < 32; j++)
    x[j] = (float)j - 16.0f; /* m = -16: the negative extreme first */
  check_block(x, "ramp");
  printf("%d blocks: %d q8_0 and %d q4_0 differ from the spec's formula\n", blocks, differ_q8,
         differ_q4);
  printf("(a correctly rounded x / d would give another q8_0 block in %d of them)\n",
         quotient_differs);
  CHECK(differ_q8 == 0);
  CHECK(differ_q4 == 0);
  TEST_END();
}
