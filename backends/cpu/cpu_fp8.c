/* Block-scaled FP8 (dtype F8_E4M3_B128 of device ABI 1.4; format.md §4.1):
 * 128 elements per 132-byte block, an F32 scale d then 128 E4M3 codes;
 * x[i] = d * e4m3(q[i]), one f32 product, rounded once. Its exact
 * conversion to f32, 32 elements at a time, for embed and for the tiles and
 * the scalar dot products of matmul and matmul_experts (cpu_matmul.c). */
#include "cpu_internal.h"

/* The 256 E4M3 values (0x7F and 0xFF, never stored, as NaN), built from
 * the bits: exponent e (bias 7) and mantissa m; e = 0 is m/8 * 2^-6. */
static float e4m3_value(unsigned q) {
  unsigned e = (q >> 3) & 15u, m = q & 7u;
  uint32_t bits;
  if ((q & 0x7fu) == 0x7fu) {
    bits = 0x7fc00000u;
  } else if (e == 0) {
    float v = (float)m * 0x1p-9f;
    return (q & 0x80u) ? -v : v;
  } else {
    bits = ((e + 120u) << 23) | (m << 20);
  }
  bits |= (uint32_t)(q & 0x80u) << 24;
  float v;
  memcpy(&v, &bits, 4);
  return v;
}

static float e4m3_table[256];
static pthread_once_t e4m3_once = PTHREAD_ONCE_INIT;

static void e4m3_init(void) {
  for (unsigned q = 0; q < 256; q++)
    e4m3_table[q] = e4m3_value(q);
}

const float *qiao__cpu_e4m3_table(void) {
  pthread_once(&e4m3_once, e4m3_init);
  return e4m3_table;
}

void qiao__cpu_dequant_chunk_f8(const uint8_t *row, uint64_t c, float *out) {
  const float *table = qiao__cpu_e4m3_table();
  const uint8_t *block = row + c / 128 * 132;
  const uint8_t *q = block + 4 + c % 128;
  float d;
  memcpy(&d, block, 4);
  for (int i = 0; i < 32; i++)
    out[i] = d * table[q[i]];
}

void qiao__cpu_dequant_f8_e4m3_b128(const uint8_t *w, uint64_t k, float *out) {
  const float *table = qiao__cpu_e4m3_table();
  for (uint64_t b = 0; b < k / 128; b++) {
    const uint8_t *block = w + b * 132;
    float d;
    memcpy(&d, block, 4);
    for (int i = 0; i < 128; i++)
      out[b * 128 + i] = d * table[block[4 + i]];
  }
}
