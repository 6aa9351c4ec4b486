/* q8_0 and q4_0 quantization byte for byte against llama.cpp's own reference
 * quantizers (quantize_row_q8_0_ref / quantize_row_q4_0_ref of ggml-quants.c,
 * built at test time from shared/peers by ggml_quants.sh): every f32 weight
 * of stories260K and of the tiny reference models qiao imports, and edge blocks (zeros,
 * ties at .5 of both roundings, the largest magnitude present with both
 * signs, huge values whose scale overflows f16, tiny ones whose scale
 * underflows it, subnormal elements, -0).
 * NaN and infinity are compared with docs/spec/format.md §4.2 only: the spec
 * defines them (NaNs ignored in the maximum, a NaN quantizes to 0), while
 * llama.cpp's reference converts NaN to int8, which C leaves undefined. */
#include <math.h>
#include <string.h>

#include "format/dtype_convert.h"
#include "peers/ggml_ref.h"
#include "qiao/model.h"
#include "test_util.h"

static const char *ref_program;
static int compared_blocks[2], differing_blocks[2];

/* Quantizes n floats (whole blocks) with qiao and with llama.cpp; counts and
 * shows the blocks that differ. */
static void compare(const float *x, size_t n, const char *what) {
  static const struct {
    qiao_dtype dtype;
    const char *name;
    size_t bytes;
  } types[2] = {{QIAO_DTYPE_Q8_0, "q8_0", 34}, {QIAO_DTYPE_Q4_0, "q4_0", 18}};
  for (int t = 0; t < 2; t++) {
    size_t blocks = n / 32, bytes = blocks * types[t].bytes;
    uint8_t *got = malloc(bytes), *want = malloc(bytes);
    qiao__dtype_from_f32(types[t].dtype, x, got, n);
    if (ggml_ref_run(ref_program, "quantize", types[t].name, x, n * 4, want, bytes) != 0) {
      CHECK(!"llama.cpp's quantizer ran");
    } else {
      int shown = 0;
      for (size_t b = 0; b < blocks; b++) {
        compared_blocks[t]++;
        if (memcmp(got + b * types[t].bytes, want + b * types[t].bytes, types[t].bytes) == 0)
          continue;
        differing_blocks[t]++;
        if (shown++ < 3) {
          fprintf(stderr, "%s %s block %zu differs from llama.cpp's:\n  qiao ", what, types[t].name,
                  b);
          for (size_t i = 0; i < types[t].bytes; i++)
            fprintf(stderr, "%02x", got[b * types[t].bytes + i]);
          fprintf(stderr, "\n  ggml ");
          for (size_t i = 0; i < types[t].bytes; i++)
            fprintf(stderr, "%02x", want[b * types[t].bytes + i]);
          fprintf(stderr, "\n");
        }
      }
    }
    free(got);
    free(want);
  }
}

/* Every F32 tensor of a model whose size is whole blocks (blocks are 32
 * consecutive values, so a tensor is one long row here). */
static void compare_model(const char *path, const char *label) {
  qiao_model *m = NULL;
  CHECK_OK(qiao_model_open(path, NULL, &m));
  size_t tensors = 0;
  for (uint64_t i = 0; m && i < qiao_model_tensor_count(m); i++) {
    const qiao_tensor *t = qiao_model_tensor_at(m, i);
    if (t->dtype != QIAO_DTYPE_F32 || t->n_bytes % 128 != 0) continue;
    float *x = malloc(t->n_bytes);
    memcpy(x, t->data, t->n_bytes);
    char what[512];
    snprintf(what, sizeof(what), "%s %s", label, t->name);
    compare(x, t->n_bytes / 4, what);
    free(x);
    tensors++;
  }
  printf("%s: %zu tensors compared\n", label, tensors);
  CHECK(tensors > 0);
  qiao_model_close(m);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float uniform(float lo, float hi) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return lo + (hi - lo) * (float)((rng >> 40) * 0x1p-24);
}

enum { EDGE_BLOCKS = 4096 };
static float edge[EDGE_BLOCKS * 32];
static size_t n_edge = 0;
static float *next_block(void) {
  CHECK(n_edge < EDGE_BLOCKS);
  return edge + 32 * (n_edge++ % EDGE_BLOCKS);
}

static void edge_blocks(void) {
  float *x = next_block(); /* zeros, and -0 */
  memset(x, 0, 128);
  x = next_block();
  for (int j = 0; j < 32; j++)
    x[j] = j % 3 ? 0.0f : -0.0f;
  for (int b = 0; b < 512; b++) {
    /* q8_0 ties: x * (1 / d) lands on k + 0.5 when d = 1 (amax = 127) or a
     * power of two times it */
    float s = ldexpf(1.0f, b % 16 - 8);
    x = next_block();
    for (int j = 0; j < 32; j++)
      x[j] = ((float)(int)uniform(-127, 127) + 0.5f) * s;
    x[b % 32] = (b & 1 ? 127.0f : -127.0f) * s;
    /* q4_0 ties: x * (1 / d) + 8.5 an integer (d = m / -8 a power of two) */
    x = next_block();
    float m = (b & 2 ? 8.0f : -8.0f) * s, d4 = m / -8.0f;
    for (int j = 0; j < 32; j++)
      x[j] = ((float)(int)uniform(0, 17) - 8.5f) * d4;
    x[(b * 7) % 32] = m;
    /* the largest magnitude twice, with both signs, in either order */
    x = next_block();
    for (int j = 0; j < 32; j++)
      x[j] = uniform(-1, 1) * s;
    x[(b * 5) % 32] = (b & 4 ? 1.0f : -1.0f) * 1.5f * s;
    x[(b * 5 + 9) % 32] = (b & 4 ? -1.0f : 1.0f) * 1.5f * s;
  }
  /* magnitudes from tiny (scale below f16's subnormals, 1 / d still finite)
   * to huge (scale above 65504), and subnormal elements */
  static const float scales[] = {1e-36f, 1e-30f, 1e-20f, 1e-8f, 6e-8f, 1e-5f, 1.0f,
                                 1e4f,   8.3e6f, 1e7f,   1e20f, 1e30f, 3e38f};
  for (size_t s = 0; s < sizeof(scales) / sizeof(scales[0]); s++)
    for (int b = 0; b < 8; b++) {
      x = next_block();
      for (int j = 0; j < 32; j++)
        x[j] = uniform(-1, 1) * scales[s];
      x[b * 4] = (b & 1 ? -1.0f : 1.0f) * scales[s];
    }
  x = next_block();
  for (int j = 0; j < 32; j++)
    x[j] = j % 2 ? 1e-40f : -3e-3f;
  x = next_block();
  for (int j = 0; j < 32; j++)
    x[j] = 0.25f; /* all equal: q4_0 maps every value to the extreme nibble */
  x = next_block();
  for (int j = 0; j < 32; j++)
    x[j] = (float)j - 16.0f;
  /* random blocks over many binades */
  while (n_edge < EDGE_BLOCKS) {
    x = next_block();
    float s = ldexpf(1.0f, (int)uniform(-30, 30));
    for (int j = 0; j < 32; j++)
      x[j] = uniform(-1, 1) * s;
  }
  compare(edge, n_edge * 32, "edge");
}

/* NaN and infinity, by §4.2's text. */
static void nan_inf_blocks(void) {
  float x[32];
  uint8_t q8[34], q4[18];
  for (int j = 0; j < 32; j++)
    x[j] = (float)(j - 8); /* amax 23 at j = 31; m = 23 */
  x[5] = NAN;
  x[31] = -NAN; /* the last element NaN: still ignored in the maximum */
  qiao__dtype_from_f32(QIAO_DTYPE_Q8_0, x, q8, 32);
  qiao__dtype_from_f32(QIAO_DTYPE_Q4_0, x, q4, 32);
  uint16_t d8 = (uint16_t)(q8[0] | q8[1] << 8), d4 = (uint16_t)(q4[0] | q4[1] << 8);
  /* amax 22 (j = 30), NaNs ignored: d = 22 / 127 in f16 */
  CHECK(d8 == qiao__f32_to_f16(22.0f / 127.0f));
  CHECK(q8[2 + 5] == 0 && q8[2 + 31] == 0);
  CHECK((int8_t)q8[2 + 30] == 127 && (int8_t)q8[2 + 0] == (int8_t)roundf(-8 * (127.0f / 22.0f)));
  /* q4_0: m = 22 (j = 30), d = -2.75; a NaN gives the nibble 0 */
  CHECK(d4 == qiao__f32_to_f16(22.0f / -8.0f));
  CHECK((q4[2 + 5] & 15) == 0 && (q4[2 + 15] >> 4) == 0);
  /* infinity: d = inf, 1 / d = 0, finite values quantize to 0 (q8_0) and
   * to the nibble 8 (q4_0); inf * 0 is a NaN, which gives 0 */
  for (int j = 0; j < 32; j++)
    x[j] = (float)(j - 8);
  x[3] = INFINITY;
  qiao__dtype_from_f32(QIAO_DTYPE_Q8_0, x, q8, 32);
  qiao__dtype_from_f32(QIAO_DTYPE_Q4_0, x, q4, 32);
  CHECK(q8[0] == 0x00 && q8[1] == 0x7c);
  for (int j = 0; j < 32; j++)
    CHECK(q8[2 + j] == 0);
  CHECK(q4[0] == 0x00 && q4[1] == 0xfc); /* d = -inf */
  CHECK((q4[2 + 3] & 15) == 0 && (q4[2 + 4] & 15) == 8 && (q4[2 + 4] >> 4) == 8);
}

int main(void) {
  ref_program = ggml_ref_program();
  if (ref_program == NULL) return 1; /* the peer is required: fail, never skip */
  compare_model(test_shared_path("models/stories260K/stories260K.gguf"), "stories260K");
  const char *archs[] = {"llama2", "llama3", "qwen2", "qwen3", "qwen3_moe"};
  for (size_t a = 0; a < sizeof(archs) / sizeof(archs[0]); a++) {
    char rel[256], dir[4096];
    snprintf(rel, sizeof(rel), "reference/tiny/%s/model.safetensors", archs[a]);
    snprintf(dir, sizeof(dir), "%s", test_shared_path(rel)); /* fails loudly when missing */
    *strrchr(dir, '/') = '\0';
    compare_model(dir, archs[a]);
  }
  edge_blocks();
  nan_inf_blocks();
  printf("q8_0: %d of %d blocks differ from llama.cpp's; q4_0: %d of %d\n", differing_blocks[0],
         compared_blocks[0], differing_blocks[1], compared_blocks[1]);
  CHECK(differing_blocks[0] == 0 && differing_blocks[1] == 0);
  CHECK(compared_blocks[0] > 10000 && compared_blocks[1] > 10000);
  TEST_END();
}
