/* The built-in CPU backend against float64 evaluations of the definitions of
 * docs/spec/device-abi.md §11, with a tenth of each op's budget (conformance
 * gives every backend the full budget; the CPU backend, which the engine
 * falls back to, must keep a margin), exact where the spec says exact
 * (dequantization, F16 conversion, ids). The dequantization and F16 rounding
 * are the float64 reference's (src/conformance/reference.c), itself checked
 * here against the harness's converter over every F16 value. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/harness.h"
#include "conformance/reference.h"
#include "test_util.h"

static cf_device dev;
static cf_rng rng = {12345};

/* A device buffer holding `bytes` of `host` (or zeros when host is NULL). */
static qiao_dev_buffer *buf(const void *host, uint64_t bytes) {
  qiao_dev_buffer *b = NULL;
  CHECK_OK(qiao__cf_dev_status(&dev, dev.api->buffer_create(dev.device, bytes ? bytes : 4, &b),
                               "buffer_create"));
  void *zeros = calloc(1, bytes ? bytes : 4);
  CHECK_OK(qiao__cf_dev_status(
      &dev, dev.api->upload(dev.queue, (qiao_dev_ref){b, 0}, host ? host : zeros, bytes), "up"));
  CHECK_OK(qiao__cf_dev_status(&dev, dev.api->queue_synchronize(dev.queue), "sync"));
  free(zeros);
  return b;
}

static void get(void *host, qiao_dev_buffer *b, uint64_t bytes) {
  CHECK_OK(qiao__cf_dev_status(&dev, dev.api->queue_synchronize(dev.queue), "sync"));
  CHECK_OK(qiao__cf_dev_status(
      &dev, dev.api->download(dev.queue, host, (qiao_dev_ref){b, 0}, bytes), "download"));
  CHECK_OK(qiao__cf_dev_status(&dev, dev.api->queue_synchronize(dev.queue), "sync"));
}

static qiao_dev_ref R(qiao_dev_buffer *b) {
  return (qiao_dev_ref){b, 0};
}

static float *rand_f32(uint64_t n, float lo, float hi) {
  float *p = malloc(n * sizeof(float));
  for (uint64_t i = 0; i < n; i++)
    p[i] = qiao__cf_uniform(&rng, lo, hi);
  return p;
}

/* Element i of a weight tensor, dequantized exactly (§9): the float64
 * reference's own reading (src/conformance/reference.c). */
static double weight(const uint8_t *w, qiao_dev_dtype dt, uint64_t i) {
  return qiao__cf_ref_element(w, dt, i);
}

static void expect_close(const char *what, const float *got, const double *want, uint64_t rows,
                         uint64_t len, double limit) {
  float *w = malloc(rows * len * sizeof(float));
  for (uint64_t i = 0; i < rows * len; i++)
    w[i] = (float)want[i];
  uint64_t row = 0;
  double err = qiao__cf_row_error(got, w, rows, len, &row);
  printf("%-28s error vs float64 %.3g (limit %.3g)\n", what, err, limit);
  if (!(err <= limit)) {
    fprintf(stderr, "%s: error %.3g > %.3g at row %llu\n", what, err, limit,
            (unsigned long long)row);
    test_failures++;
  }
  free(w);
}

static void matmul(qiao_dev_dtype dt, uint64_t n, uint64_t k, uint64_t m) {
  float *x = rand_f32(n * k, -1, 1), *bias = rand_f32(m, -1, 1);
  uint8_t *w = qiao__cf_random_weights(&rng, dt, m * k);
  qiao_dev_buffer *bx = buf(x, n * k * 4), *bw = buf(w, qiao__cf_dtype_bytes(dt, m * k)),
                  *bb = buf(bias, m * 4), *bo = buf(NULL, n * m * 4);
  qiao_dev_matmul_args a = {sizeof(a), n, k, m, R(bx), dt, R(bw), R(bb), R(bo), 0, 0};
  CHECK_OK(qiao__cf_dev_status(&dev, dev.api->matmul(dev.queue, &a), "matmul"));
  float *out = malloc(n * m * 4);
  get(out, bo, n * m * 4);
  double *want = malloc(n * m * sizeof(double));
  for (uint64_t i = 0; i < n; i++)
    for (uint64_t j = 0; j < m; j++) {
      double s = bias[j];
      for (uint64_t p = 0; p < k; p++)
        s += (double)x[i * k + p] * weight(w, dt, j * k + p);
      want[i * m + j] = s;
    }
  char what[64];
  snprintf(what, sizeof(what), "matmul %s n=%llu k=%llu", qiao_dev_dtype_name(dt),
           (unsigned long long)n, (unsigned long long)k);
  expect_close(what, out, want, n, m, qiao__cf_budget(QIAO_DEV_OP_MATMUL, dt) / 10);
  /* embed of the same table rows is exact */
  if (k % 32 == 0 || dt == QIAO_DEV_F32 || dt == QIAO_DEV_F16 || dt == QIAO_DEV_BF16) {
    int32_t ids[3] = {(int32_t)(m - 1), 0, (int32_t)(m / 2)};
    qiao_dev_buffer *bi = buf(ids, sizeof(ids)), *be = buf(NULL, 3 * k * 4);
    qiao_dev_embed_args e = {sizeof(e), 3, m, k, dt, R(bw), R(bi), R(be)};
    CHECK_OK(qiao__cf_dev_status(&dev, dev.api->embed(dev.queue, &e), "embed"));
    float *rows = malloc(3 * k * 4);
    get(rows, be, 3 * k * 4);
    uint64_t bad = 0;
    for (uint64_t t = 0; t < 3; t++)
      for (uint64_t p = 0; p < k; p++)
        bad += rows[t * k + p] != (float)weight(w, dt, ids[t] * k + p);
    if (bad)
      fprintf(stderr, "embed %s: %llu elements not exact\n", qiao_dev_dtype_name(dt),
              (unsigned long long)bad);
    CHECK(bad == 0);
    free(rows);
    dev.api->buffer_destroy(bi);
    dev.api->buffer_destroy(be);
  }
  free(x), free(bias), free(w), free(out), free(want);
  dev.api->buffer_destroy(bx), dev.api->buffer_destroy(bw), dev.api->buffer_destroy(bb);
  dev.api->buffer_destroy(bo);
}

/* Two sequences, GQA 4, block 16, optional window, over an F32 or F16 cache. */
static void attention(qiao_dev_dtype dt, uint64_t window) {
  enum { H = 8, KVH = 2, D = 64, BS = 16, S = 2, MAXB = 20 };
  const uint64_t lens[S] = {300, 17};
  uint64_t n_slots = MAXB * S * BS, kv = KVH * D, n_tokens = 4;
  int32_t table[S * MAXB], seq[4] = {0, 1, 0, 1}, pos[4] = {299, 16, 298, 15};
  for (int i = 0; i < S * MAXB; i++)
    table[i] = (int32_t)((i * 7 + 3) % (S * MAXB)); /* permuted */
  float *q = rand_f32(n_tokens * H * D, -3, 3), *kc = rand_f32(n_slots * kv, -1, 1),
        *vc = rand_f32(n_slots * kv, -1, 1);
  void *kd = kc, *vd = vc;
  uint16_t *kh = NULL, *vh = NULL;
  if (dt == QIAO_DEV_F16) {
    kh = malloc(n_slots * kv * 2), vh = malloc(n_slots * kv * 2);
    for (uint64_t i = 0; i < n_slots * kv; i++) {
      kh[i] = qiao__cf_f32_to_f16(kc[i]), vh[i] = qiao__cf_f32_to_f16(vc[i]);
      kc[i] = qiao__cf_f16_to_f32(kh[i]), vc[i] = qiao__cf_f16_to_f32(vh[i]);
    }
    kd = kh, vd = vh;
  }
  qiao_dev_buffer *bq = buf(q, n_tokens * H * D * 4),
                  *bk = buf(kd, qiao__cf_dtype_bytes(dt, n_slots * kv)),
                  *bv = buf(vd, qiao__cf_dtype_bytes(dt, n_slots * kv)),
                  *bt = buf(table, sizeof(table)), *bs = buf(seq, sizeof(seq)),
                  *bp = buf(pos, sizeof(pos)), *bo = buf(NULL, n_tokens * H * D * 4);
  qiao_dev_attention_args a = {sizeof(a), n_tokens, H,      KVH,    D,    S,     MAXB,
                               BS,        n_slots,  window, 0.125f, dt,   R(bq), R(bk),
                               R(bv),     R(bt),    R(bs),  R(bp),  R(bo)};
  CHECK_OK(qiao__cf_dev_status(&dev, dev.api->attention(dev.queue, &a), "attention"));
  float *out = malloc(n_tokens * H * D * 4);
  get(out, bo, n_tokens * H * D * 4);
  double *want = calloc(n_tokens * H * D, sizeof(double)), *sc = malloc(300 * sizeof(double));
  for (uint64_t t = 0; t < n_tokens; t++)
    for (uint64_t h = 0; h < H; h++) {
      uint64_t g = h / (H / KVH), p = (uint64_t)pos[t], s = (uint64_t)seq[t];
      uint64_t lo = window && p + 1 > window ? p + 1 - window : 0;
      double mx = -INFINITY, sum = 0;
      for (uint64_t j = lo; j <= p; j++) {
        uint64_t slot = (uint64_t)table[s * MAXB + j / BS] * BS + j % BS;
        double d = 0;
        for (uint64_t c = 0; c < D; c++)
          d += (double)q[(t * H + h) * D + c] * kc[slot * kv + g * D + c];
        sc[j - lo] = 0.125 * d;
        mx = fmax(mx, sc[j - lo]);
      }
      for (uint64_t j = lo; j <= p; j++)
        sum += (sc[j - lo] = exp(sc[j - lo] - mx));
      for (uint64_t j = lo; j <= p; j++) {
        uint64_t slot = (uint64_t)table[s * MAXB + j / BS] * BS + j % BS;
        for (uint64_t c = 0; c < D; c++)
          want[(t * H + h) * D + c] += sc[j - lo] / sum * vc[slot * kv + g * D + c];
      }
    }
  (void)lens;
  char what[64];
  snprintf(what, sizeof(what), "attention %s window=%llu", qiao_dev_dtype_name(dt),
           (unsigned long long)window);
  expect_close(what, out, want, n_tokens * H, D, qiao__cf_budget(QIAO_DEV_OP_ATTENTION, dt) / 10);
  free(q), free(kc), free(vc), free(kh), free(vh), free(out), free(want), free(sc);
  qiao_dev_buffer *all[] = {bq, bk, bv, bt, bs, bp, bo};
  for (size_t i = 0; i < 7; i++)
    dev.api->buffer_destroy(all[i]);
}

static void rope(qiao_dev_rope_style style) {
  enum { T = 6, H = 3, D = 96, ROT = 64 };
  float *x = rand_f32(T * H * D, -1, 1), freqs[ROT / 2];
  int32_t pos[T] = {0, 1, 17, 511, 4099, 32767};
  for (int i = 0; i < ROT / 2; i++)
    freqs[i] = (float)pow(10000.0, -2.0 * i / ROT);
  qiao_dev_buffer *bx = buf(x, sizeof(float) * T * H * D), *bp = buf(pos, sizeof(pos)),
                  *bf = buf(freqs, sizeof(freqs));
  qiao_dev_rope_args a = {sizeof(a), T, H, D, ROT, style, R(bx), R(bp), R(bf)};
  CHECK_OK(qiao__cf_dev_status(&dev, dev.api->rope(dev.queue, &a), "rope"));
  float *out = malloc(sizeof(float) * T * H * D);
  get(out, bx, sizeof(float) * T * H * D);
  double *want = malloc(sizeof(double) * T * H * D);
  for (int i = 0; i < T * H * D; i++)
    want[i] = x[i];
  for (int t = 0; t < T; t++)
    for (int h = 0; h < H; h++)
      for (int i = 0; i < ROT / 2; i++) {
        double ang = (float)pos[t] * freqs[i]; /* the f32 product of §11.3 */
        int i0 = style == QIAO_DEV_ROPE_NORMAL ? 2 * i : i;
        int i1 = style == QIAO_DEV_ROPE_NORMAL ? 2 * i + 1 : i + ROT / 2;
        double *v = want + (t * H + h) * D;
        const float *xv = x + (t * H + h) * D;
        v[i0] = xv[i0] * cos(ang) - xv[i1] * sin(ang);
        v[i1] = xv[i0] * sin(ang) + xv[i1] * cos(ang);
      }
  expect_close(style == QIAO_DEV_ROPE_NORMAL ? "rope normal" : "rope neox", out, want, T * H, D,
               qiao__cf_budget(QIAO_DEV_OP_ROPE, QIAO_DEV_F32) / 10);
  free(x), free(out), free(want);
  dev.api->buffer_destroy(bx), dev.api->buffer_destroy(bp), dev.api->buffer_destroy(bf);
}

static void rmsnorm_swiglu(void) {
  enum { ROWS = 3, COLS = 4099 };
  float *x = rand_f32(ROWS * COLS, -3, 3), *w = rand_f32(COLS, -2, 2),
        *u = rand_f32(ROWS * COLS, -2, 2);
  qiao_dev_buffer *bx = buf(x, sizeof(float) * ROWS * COLS), *bw = buf(w, sizeof(float) * COLS),
                  *bu = buf(u, sizeof(float) * ROWS * COLS),
                  *bo = buf(NULL, sizeof(float) * ROWS * COLS);
  qiao_dev_rmsnorm_args a = {sizeof(a), ROWS, COLS, 1e-5f, R(bx), R(bw), R(bo)};
  CHECK_OK(qiao__cf_dev_status(&dev, dev.api->rmsnorm(dev.queue, &a), "rmsnorm"));
  float *out = malloc(sizeof(float) * ROWS * COLS);
  double *want = malloc(sizeof(double) * ROWS * COLS);
  get(out, bo, sizeof(float) * ROWS * COLS);
  for (int r = 0; r < ROWS; r++) {
    double ss = 0;
    for (int j = 0; j < COLS; j++)
      ss += (double)x[r * COLS + j] * x[r * COLS + j];
    double inv = 1 / sqrt(ss / COLS + 1e-5f);
    for (int j = 0; j < COLS; j++)
      want[r * COLS + j] = x[r * COLS + j] * inv * w[j];
  }
  expect_close("rmsnorm", out, want, ROWS, COLS,
               qiao__cf_budget(QIAO_DEV_OP_RMSNORM, QIAO_DEV_F32) / 10);
  qiao_dev_swiglu_args s = {sizeof(s), ROWS * COLS, R(bx), R(bu), R(bo)};
  CHECK_OK(qiao__cf_dev_status(&dev, dev.api->swiglu(dev.queue, &s), "swiglu"));
  get(out, bo, sizeof(float) * ROWS * COLS);
  for (int i = 0; i < ROWS * COLS; i++)
    want[i] = x[i] / (1 + exp(-(double)x[i])) * u[i];
  expect_close("swiglu", out, want, 1, ROWS * COLS,
               qiao__cf_budget(QIAO_DEV_OP_SWIGLU, QIAO_DEV_F32) / 10);
  free(x), free(w), free(u), free(out), free(want);
  dev.api->buffer_destroy(bx), dev.api->buffer_destroy(bw), dev.api->buffer_destroy(bu);
  dev.api->buffer_destroy(bo);
}

/* kv_write F16 rounds to nearest even, exactly like the harness's converter. */
static void kv_write_f16(void) {
  enum { T = 3, KV = 40, SLOTS = 5 };
  float *k = rand_f32(T * KV, -70000, 70000), *v = rand_f32(T * KV, -1e-5f, 1e-5f);
  const float special[] = {1.00048828125f, 1.00146484375f, -2.0009765625f, 65520.0f, 5.96e-8f,
                           2.98e-8f,       -1e-7f,         0.0f,           -0.0f,    65504.0f};
  memcpy(k, special, sizeof(special));
  int32_t slots[T] = {4, 0, 2};
  qiao_dev_buffer *bk = buf(k, sizeof(float) * T * KV), *bv = buf(v, sizeof(float) * T * KV),
                  *bs = buf(slots, sizeof(slots)), *kc = buf(NULL, SLOTS * KV * 2),
                  *vc = buf(NULL, SLOTS * KV * 2);
  qiao_dev_kv_write_args a = {sizeof(a), T,     KV,    SLOTS, QIAO_DEV_F16,
                              R(bk),     R(bv), R(bs), R(kc), R(vc)};
  CHECK_OK(qiao__cf_dev_status(&dev, dev.api->kv_write(dev.queue, &a), "kv_write"));
  uint16_t kh[SLOTS * KV], vh[SLOTS * KV];
  get(kh, kc, sizeof(kh));
  get(vh, vc, sizeof(vh));
  int bad = 0;
  for (int t = 0; t < T; t++)
    for (int j = 0; j < KV; j++) {
      bad += kh[slots[t] * KV + j] != qiao__cf_ref_to_f16(k[t * KV + j]);
      bad += vh[slots[t] * KV + j] != qiao__cf_ref_to_f16(v[t * KV + j]);
    }
  printf("%-28s %d of %d conversions differ from round-to-nearest-even\n", "kv_write f16", bad,
         2 * T * KV);
  CHECK(bad == 0);
  free(k), free(v);
  qiao_dev_buffer *all[] = {bk, bv, bs, kc, vc};
  for (size_t i = 0; i < 5; i++)
    dev.api->buffer_destroy(all[i]);
}

/* The two F16 converters of the suite agree: the harness's bit-level one
 * (it makes F16 test data) and the reference's value-level one (it decides
 * kv_write). Every f16 value round-trips; every midpoint between neighbours
 * rounds to the even one; overflow and underflow go where IEEE 754 says. */
static void f16_converters(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    double v = qiao__cf_ref_element(&(uint16_t){(uint16_t)h}, QIAO_DEV_F16, 0);
    if (isnan(v)) continue;
    bad += qiao__cf_ref_to_f16(v) != h;
    bad += qiao__cf_f32_to_f16((float)v) != h;
    bad += qiao__cf_f16_to_f32((uint16_t)h) != (float)v;
    if ((h & 0x7fff) < 0x7bff) { /* the midpoint with the next value up in magnitude */
      double next = qiao__cf_ref_element(&(uint16_t){(uint16_t)(h + 1)}, QIAO_DEV_F16, 0);
      float mid = (float)((v + next) / 2); /* exact: 12 significant bits */
      uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
      bad += qiao__cf_ref_to_f16(mid) != even;
      bad += qiao__cf_f32_to_f16(mid) != even;
    }
  }
  const struct {
    float x;
    uint16_t h;
  } edges[] = {{65519.996f, 0x7bff},     {65520.0f, 0x7c00},       {-1e9f, 0xfc00},
               {2.98023224e-8f, 0x0000}, {2.98023259e-8f, 0x0001}, {-0.0f, 0x8000}};
  for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
    bad += qiao__cf_ref_to_f16(edges[i].x) != edges[i].h;
    bad += qiao__cf_f32_to_f16(edges[i].x) != edges[i].h;
  }
  printf("%-28s %d disagreements\n", "f16 converters", bad);
  CHECK(bad == 0);
}

int main(void) {
  f16_converters();
  CHECK_OK(qiao__cf_device_open("cpu", 0, "reference", &dev));
  if (dev.api == NULL) TEST_END();
  const qiao_dev_dtype weights[] = {
      QIAO_DEV_F32,  QIAO_DEV_F16,  QIAO_DEV_BF16, QIAO_DEV_Q8_0,        QIAO_DEV_Q4_0,
      QIAO_DEV_Q4_K, QIAO_DEV_Q5_K, QIAO_DEV_Q6_K, QIAO_DEV_Q2_K,        QIAO_DEV_Q3_K, /* 1.3 */
      QIAO_DEV_Q4_1, QIAO_DEV_Q5_0, QIAO_DEV_Q5_1, QIAO_DEV_F8_E4M3_B128 /* 1.4 */};
  for (size_t i = 0; i < sizeof(weights) / sizeof(weights[0]); i++) {
    /* k in whole blocks (4352 = 17 super-blocks of 256 for the k-quants) */
    matmul(weights[i], 3, qiao__cf_row_len(weights[i], 4128, 4103), 37);
    matmul(weights[i], 2, qiao__cf_row_len(weights[i], 64, 33), 5);
    /* a prefill: tiles of weight rows packed for the GEMM kernel, with a
     * partial tile (37 = 32 + 5) and a partial block of x rows (11 = 8 + 3) */
    matmul(weights[i], 11, qiao__cf_row_len(weights[i], 4128, 4128), 37);
  }
  attention(QIAO_DEV_F32, 0);
  attention(QIAO_DEV_F16, 0);
  attention(QIAO_DEV_F32, 50);
  rope(QIAO_DEV_ROPE_NORMAL);
  rope(QIAO_DEV_ROPE_NEOX);
  rmsnorm_swiglu();
  kv_write_f16();
  qiao__cf_device_close(&dev);
  TEST_END();
}
