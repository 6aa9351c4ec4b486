/* Element conversions: f16/bf16 rounding (exhaustive round trips and
 * known values), q8_0/q4_0 quantization error bounds, and `--type` on a
 * real model (which tensors change type, and by how much). */
#include <math.h>
#include <string.h>

#include "format/dtype_convert.h"
#include "format/model_internal.h"
#include "format_test_util.h"

static uint32_t rng_state = 12345;
static float rnd(void) { /* uniform in [-1, 1) */
  rng_state = rng_state * 1664525u + 1013904223u;
  return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

static void test_half(void) {
  /* every finite half survives half -> float -> half */
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* NaN */
    if (qiao__f32_to_f16(qiao__f16_to_f32((uint16_t)h)) != h) bad++;
    if (qiao__f32_to_bf16(qiao__bf16_to_f32((uint16_t)h)) != h &&
        !((h & 0x7f80) == 0x7f80 && (h & 0x7f)))
      bad++;
  }
  CHECK(bad == 0);
  CHECK(qiao__f32_to_f16(1.0f) == 0x3c00);
  CHECK(qiao__f32_to_f16(-2.0f) == 0xc000);
  CHECK(qiao__f32_to_f16(65504.0f) == 0x7bff);
  CHECK(qiao__f32_to_f16(65520.0f) == 0x7c00);              /* rounds up to infinity */
  CHECK(qiao__f32_to_f16(ldexpf(1, -24)) == 0x0001);        /* smallest subnormal */
  CHECK(qiao__f32_to_f16(ldexpf(1, -25)) == 0x0000);        /* tie to even: 0 */
  CHECK(qiao__f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00); /* tie to even */
  CHECK(qiao__f32_to_f16(1.0f + 3 * ldexpf(1, -11)) == 0x3c02);
  CHECK(qiao__f16_to_f32(0x3555) == 0.333251953125f);
  CHECK(isnan(qiao__f16_to_f32(qiao__f32_to_f16(NAN))));
  CHECK(qiao__f32_to_bf16(1.0f) == 0x3f80);
  CHECK(qiao__f32_to_bf16(1.0f + ldexpf(1, -8)) == 0x3f80); /* tie to even */
  CHECK(qiao__f32_to_bf16(1.0f + 3 * ldexpf(1, -8)) == 0x3f82);
  CHECK(isnan(qiao__bf16_to_f32(qiao__f32_to_bf16(NAN))));
}

/* Quantizes n floats and checks each dequantized value against the bound
 * that GGUF's rounding gives (plus the f16 rounding of the scale). */
static void check_quant(qiao_dtype dtype, const float *x, int n) {
  uint8_t q[34 * 64];
  float y[32 * 64];
  qiao__dtype_from_f32(dtype, x, q, (uint64_t)n);
  qiao__dtype_to_f32(dtype, q, y, (uint64_t)n);
  for (int b = 0; b < n / 32; b++) {
    float amax = 0, max = 0;
    for (int j = 0; j < 32; j++)
      if (fabsf(x[32 * b + j]) > amax) amax = fabsf(max = x[32 * b + j]);
    for (int j = 0; j < 32; j++) {
      float v = x[32 * b + j], err = fabsf(y[32 * b + j] - v), bound;
      if (dtype == QIAO_DTYPE_Q8_0) {
        float d = amax / 127;
        bound = 0.5f * d + 127 * d * ldexpf(1, -11) + 1e-7f;
      } else {
        float d = fabsf(max) / 8;
        /* values at +8d are clamped to level 15 (7d): error up to d */
        bound = (v / (max / -8) > 7.5f ? d : 0.5f * d) + 8 * d * ldexpf(1, -11) + 1e-7f;
      }
      if (err > bound) {
        fprintf(stderr, "%s block %d elem %d: x %g -> %g (error %g > %g)\n",
                qiao_dtype_get_info(dtype)->name, b, j, (double)v, (double)y[32 * b + j],
                (double)err, (double)bound);
        test_failures++;
        return;
      }
    }
  }
}

static void test_quant(void) {
  float x[32 * 64];
  for (int i = 0; i < 32 * 64; i++)
    x[i] = rnd() * (i < 1024 ? 0.02f : 3.0f);
  for (int j = 0; j < 32; j++)
    x[j] = 0;     /* an all-zero block */
  x[100] = 50.0f; /* an outlier */
  x[200] = -50.0f;
  check_quant(QIAO_DTYPE_Q8_0, x, 32 * 64);
  check_quant(QIAO_DTYPE_Q4_0, x, 32 * 64);

  /* exact layout of one q4_0 block: d = max / -8, q = x/d + 8.5 truncated */
  float b[32];
  for (int j = 0; j < 32; j++)
    b[j] = (float)(j - 16) / 2; /* -8 .. 7.5 */
  uint8_t q[18];
  qiao__dtype_from_f32(QIAO_DTYPE_Q4_0, b, q, 32);
  CHECK(qiao__f16_to_f32((uint16_t)(q[0] | q[1] << 8)) == 1.0f); /* max -8 -> d = 1 */
  CHECK((q[2] & 0x0f) == 0);                                     /* x[0] = -8 -> -8 + 8.5 -> 0 */
  CHECK((q[2] >> 4) == 8);                                       /* x[16] = 0 -> 8 */
  CHECK((q[17] >> 4) == 15); /* x[31] = 7.5 -> 16 -> clamped 15 */
  /* q8_0: d = amax / 127 and round-half-away */
  float c[32] = {127.0f, -63.5f};
  uint8_t q8[34];
  qiao__dtype_from_f32(QIAO_DTYPE_Q8_0, c, q8, 32);
  CHECK((int8_t)q8[2] == 127 && (int8_t)q8[3] == -64 && q8[4] == 0);
  /* non-finite input must not be undefined behaviour */
  c[5] = NAN;
  c[6] = INFINITY;
  qiao__dtype_from_f32(QIAO_DTYPE_Q8_0, c, q8, 32);
  qiao__dtype_from_f32(QIAO_DTYPE_Q4_0, c, q, 32);
}

static void test_convert_model(void) {
  const char *dir = scratch_dir("format_dtype");
  qiao_model *src = NULL, *q8 = NULL, *q4 = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &src));
  if (src == NULL) return;
  const char *p8 = scratch_file(dir, "q8.qiao"), *p4 = scratch_file(dir, "q4.gguf");
  qiao_convert_options o8 = {sizeof(o8), QIAO_FILE_QIAO, QIAO_DTYPE_Q8_0, false};
  qiao_convert_options o4 = {sizeof(o4), QIAO_FILE_GGUF, QIAO_DTYPE_Q4_0, false};
  CHECK_OK(qiao_model_write(src, p8, &o8));
  CHECK_OK(qiao_model_write(src, p4, &o4));
  CHECK_OK(qiao_model_open(p8, NULL, &q8));
  CHECK_OK(qiao_model_open(p4, NULL, &q4));
  if (q8 && q4) {
    CHECK_OK(qiao_model_validate(q8));
    CHECK_OK(qiao_model_validate(q4));
    const qiao_tensor *t = qiao_model_tensor_find(q8, "blk.0.attn_q.weight");
    CHECK(t && t->dtype == QIAO_DTYPE_Q8_0 && t->n_bytes == 64 * 2 * 34);
    t = qiao_model_tensor_find(q8, "blk.0.attn_norm.weight");
    CHECK(t && t->dtype == QIAO_DTYPE_F32);
    t = qiao_model_tensor_find(q8, "blk.0.ffn_down.weight"); /* rows of 172: not blocks of 32 */
    CHECK(t && t->dtype == QIAO_DTYPE_F16);
    t = qiao_model_tensor_find(q4, "blk.0.ffn_up.weight");
    CHECK(t && t->dtype == QIAO_DTYPE_Q4_0);
    /* dequantized weights stay close to the originals */
    const qiao_tensor *a = qiao_model_tensor_find(src, "blk.0.attn_q.weight");
    const qiao_tensor *b = qiao_model_tensor_find(q8, "blk.0.attn_q.weight");
    float x[4096], y[4096];
    qiao__dtype_to_f32(a->dtype, a->data, x, 4096);
    qiao__dtype_to_f32(b->dtype, b->data, y, 4096);
    double max_err = 0, max_abs = 0;
    for (int i = 0; i < 4096; i++) {
      max_err = fmax(max_err, fabs((double)x[i] - y[i]));
      max_abs = fmax(max_abs, fabs((double)x[i]));
    }
    CHECK(max_err <= max_abs / 127 * 0.51);
    /* the tokenizer is untouched by --type */
    CHECK(kvs_identical(src, q8, "tokenizer.") == 0);
    CHECK(kvs_identical(src, q4, "tokenizer.") == 0);
  }
  qiao_model_close(src);
  qiao_model_close(q8);
  qiao_model_close(q4);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

int main(void) {
  test_half();
  test_quant();
  test_convert_model();
  TEST_END();
}
