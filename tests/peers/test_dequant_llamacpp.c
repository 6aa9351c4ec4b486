/* Reading k-quants and the other block types of format 1.1 / device ABI 1.3,
 * and IQ4_NL / IQ4_XS of format 1.3 / device ABI 1.5, bit for bit as
 * llama.cpp does: blocks made by llama.cpp's own reference
 * quantizers (quantize_row_*_ref of ggml-quants.c, built at test time from
 * shared/peers by ggml_quants.sh) and blocks of random bytes (every quant,
 * sub-block scale and min; scales of both signs, subnormal ones) are
 * dequantized by llama.cpp's dequantize_row_* and by
 *   - qiao's format-level conversion (qiao__dtype_to_f32: inspect, convert,
 *     the engine's fallback), which must give the same bits;
 *   - the CPU backend with each kernel set the processor has: embed must
 *     give the same bits, and matmul on the blocks must give exactly the
 *     bits of matmul on llama.cpp's dequantized f32 rows (the exact path
 *     computes on the exactly dequantized weights), for prefill-sized and
 *     decode-sized batches. */
#include <math.h>
#include <string.h>

#include "cpu_test.h"
#include "format/dtype_convert.h"
#include "peers/ggml_ref.h"
#include "qiao/model.h"

enum { ROWS = 16, K = 1024 };

static const struct {
  qiao_dtype dtype;
  const char *ggml; /* llama.cpp's name for the driver */
  uint64_t block_elems, block_bytes;
  int scales[2]; /* byte offsets of the f16 scales in a block (-1: none) */
} types[] = {
    {QIAO_DTYPE_Q4_K, "q4_K", 256, 144, {0, 2}},
    {QIAO_DTYPE_Q5_K, "q5_K", 256, 176, {0, 2}},
    {QIAO_DTYPE_Q6_K, "q6_K", 256, 210, {208, -1}},
    {QIAO_DTYPE_Q2_K, "q2_K", 256, 84, {80, 82}},
    {QIAO_DTYPE_Q3_K, "q3_K", 256, 110, {108, -1}},
    {QIAO_DTYPE_Q4_1, "q4_1", 32, 20, {0, 2}},
    {QIAO_DTYPE_Q5_0, "q5_0", 32, 22, {0, -1}},
    {QIAO_DTYPE_Q5_1, "q5_1", 32, 24, {0, 2}},
    /* format 1.3 / device ABI 1.5 */
    {QIAO_DTYPE_IQ4_NL, "iq4_nl", 32, 18, {0, -1}},
    {QIAO_DTYPE_IQ4_XS, "iq4_xs", 256, 136, {0, -1}},
};

static float uniform(float lo, float hi) {
  return lo + (hi - lo) * (float)(rnd_u32() & 0xffffff) / (float)0x1000000;
}

/* Rows like real weights and the edges of the quantizers: centred noise,
 * outliers, all positive, all negative, zeros, tiny values (subnormal
 * scales), one large constant. */
static void weights(float *w) {
  for (int r = 0; r < ROWS; r++) {
    float *row = w + r * K;
    for (int i = 0; i < K; i++) {
      float v = uniform(-1, 1) * uniform(0, 1);
      switch (r % 8) {
      case 1: v = fabsf(v); break;
      case 2: v = -fabsf(v) - 0.25f; break;
      case 3: v = i % 97 == 0 ? v * 40.0f : v; break;
      case 4: v = i < K / 2 ? 0.0f : v; break;
      case 5: v *= 1e-6f; break;
      case 6: v = 0.75f; break;
      default: break;
      }
      row[i] = v;
    }
  }
}

/* Overwrites every block with random bytes and random f16 scales. */
static void random_blocks(int t, uint8_t *blocks, uint64_t n_blocks) {
  for (uint64_t b = 0; b < n_blocks; b++) {
    uint8_t *blk = blocks + b * types[t].block_bytes;
    for (uint64_t j = 0; j < types[t].block_bytes; j++)
      blk[j] = (uint8_t)rnd_u32();
    for (int s = 0; s < 2 && types[t].scales[s] >= 0; s++) {
      float d = uniform(1e-4f, 0.1f) * (rnd_u32() & 1 ? -1.0f : 1.0f);
      if (b % 13 == 5) d = ldexpf(uniform(1, 64), -24); /* an f16 subnormal */
      uint16_t h = qiao__f32_to_f16(d);
      memcpy(blk + types[t].scales[s], &h, 2);
    }
  }
}

static int same_bits(const float *a, const float *b, uint64_t n, const char *what,
                     const char *type) {
  for (uint64_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], 4) != 0) {
      fprintf(stderr, "%s %s: element %llu: %.9g, llama.cpp %.9g\n", type, what,
              (unsigned long long)i, (double)a[i], (double)b[i]);
      failures++;
      return 0;
    }
  return 1;
}

/* out (n, ROWS) = x (n, K) @ w^T on the CPU backend, w of dev dtype dt. */
static void matmul(env *e, qiao_dev_dtype dt, const void *w, uint64_t w_bytes, const float *x,
                   uint64_t n, float *out) {
  qiao_dev_buffer *bx = buf(e, x, n * K * 4), *bw = buf(e, w, w_bytes),
                  *bo = buf(e, NULL, n * ROWS * 4);
  qiao_dev_matmul_args a = {.struct_size = sizeof(a),
                            .n = n,
                            .k = K,
                            .m = ROWS,
                            .x = ref(bx),
                            .w_dtype = dt,
                            .w = ref(bw),
                            .out = ref(bo)};
  EXPECT_OK(api->matmul(e->queue, &a));
  get(e, out, bo, n * ROWS * 4);
  api->buffer_destroy(bx);
  api->buffer_destroy(bw);
  api->buffer_destroy(bo);
}

/* Every CPU kernel set on the blocks against llama.cpp's f32 rows. */
static void check_cpu(int t, const uint8_t *blocks, uint64_t bytes, const float *llama,
                      const char *what) {
  static const char *const isas[] = {"scalar", "avx2", "avx512"};
  qiao_dev_dtype dt = (qiao_dev_dtype)types[t].dtype;
  for (size_t s = 0; s < sizeof(isas) / sizeof(isas[0]); s++) {
    env e;
    api = qiao_cpu_get_api();
    if (!env_open(&e, isas[s], 2)) continue; /* the processor lacks it */
    char label[96];
    /* embed: every row, exactly */
    int32_t ids[ROWS];
    for (int r = 0; r < ROWS; r++)
      ids[r] = ROWS - 1 - r;
    qiao_dev_buffer *bt = buf(&e, blocks, bytes), *bi = buf(&e, ids, sizeof(ids)),
                    *bo = buf(&e, NULL, ROWS * K * 4);
    qiao_dev_embed_args ea = {sizeof(ea), ROWS, ROWS, K, dt, ref(bt), ref(bi), ref(bo)};
    EXPECT_OK(api->embed(e.queue, &ea));
    float *got = malloc(ROWS * K * 4);
    get(&e, got, bo, ROWS * K * 4);
    snprintf(label, sizeof(label), "%s: cpu %s embed", what, isas[s]);
    for (int r = 0; r < ROWS; r++)
      if (!same_bits(got + r * K, llama + (ROWS - 1 - r) * K, K, label, types[t].ggml)) break;
    api->buffer_destroy(bt);
    api->buffer_destroy(bi);
    api->buffer_destroy(bo);
    free(got);
    /* matmul: the blocks against llama.cpp's f32 rows */
    static const uint64_t ns[] = {1, 3, 8, 13};
    for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
      uint64_t n = ns[i];
      float *x = malloc(n * K * 4), *oq = malloc(n * ROWS * 4), *of = malloc(n * ROWS * 4);
      for (uint64_t j = 0; j < n * K; j++)
        x[j] = uniform(-1, 1);
      matmul(&e, dt, blocks, bytes, x, n, oq);
      matmul(&e, QIAO_DEV_F32, llama, ROWS * K * 4, x, n, of);
      snprintf(label, sizeof(label), "%s: cpu %s matmul n=%llu", what, isas[s],
               (unsigned long long)n);
      if (n >= 5) { /* prefill: both take the exact tile path, the same sums */
        same_bits(oq, of, n * ROWS, label, types[t].ggml);
      } else { /* decode: the f32 weights take another summation order */
        for (uint64_t j = 0; j < n * ROWS; j++) {
          double want = 0;
          for (uint64_t c = 0; c < K; c++)
            want += (double)x[j / ROWS * K + c] * llama[j % ROWS * K + c];
          double scale = 0;
          for (uint64_t c = 0; c < K; c++)
            scale += fabs((double)x[j / ROWS * K + c] * llama[j % ROWS * K + c]);
          if (fabs(oq[j] - want) > 1e-5 * scale + 1e-30) {
            fprintf(stderr, "%s %s: out %llu = %.9g, want %.9g\n", types[t].ggml, label,
                    (unsigned long long)j, (double)oq[j], want);
            failures++;
            break;
          }
        }
      }
      free(x);
      free(oq);
      free(of);
    }
    env_close(&e);
  }
}

int main(void) {
  const char *ref_program = ggml_ref_program();
  if (ref_program == NULL) return 1;
  float *w = malloc(ROWS * K * 4), *llama = malloc(ROWS * K * 4), *ours = malloc(ROWS * K * 4);
  weights(w);
  for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
    uint64_t n_blocks = ROWS * K / types[t].block_elems, bytes = n_blocks * types[t].block_bytes;
    uint8_t *blocks = malloc(bytes);
    for (int pass = 0; pass < 2; pass++) {
      const char *what = pass == 0 ? "llama.cpp-quantized blocks" : "random blocks";
      if (pass == 0) {
        if (ggml_ref_run(ref_program, "quantize", types[t].ggml, w, ROWS * K * 4, blocks, bytes)) {
          failures++;
          continue;
        }
      } else {
        random_blocks((int)t, blocks, n_blocks);
      }
      if (ggml_ref_run(ref_program, "dequantize", types[t].ggml, blocks, bytes, llama,
                       ROWS * K * 4)) {
        failures++;
        continue;
      }
      qiao__dtype_to_f32(types[t].dtype, blocks, ours, ROWS * K);
      char label[96];
      snprintf(label, sizeof(label), "%s: format dequantization", what);
      same_bits(ours, llama, ROWS * K, label, types[t].ggml);
      check_cpu((int)t, blocks, bytes, llama, what);
    }
    fprintf(stderr, "%s: checked\n", types[t].ggml);
    free(blocks);
  }
  free(w);
  free(llama);
  free(ours);
  if (failures) fprintf(stderr, "%d failures\n", failures);
  return failures ? 1 : 0;
}
