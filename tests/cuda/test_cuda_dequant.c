/* cuda_dequant: the CUDA kernels' dequantization, without a GPU.
 *
 * backends/cuda/cuda_dequant.h is what every CUDA kernel that reads weights
 * (embed, the tiled matmul, the decode matmul and matmul_experts) uses for
 * the block types of ABI 1.3 and 1.4. It is plain C with __host__ __device__
 * functions, so this test builds it for the host and compares it, bit for
 * bit, with the CPU backend (the reference implementation) on random blocks
 * of every weight dtype, several blocks per row and several rows, through
 * both entry points the kernels use: one element (cuq_dequant: embed) and
 * groups of 8 (cuq_dequant8: the tiled and decode matmul, matmul_experts).
 * That covers the index math (offsets, nibbles, bit planes, scale unpacking)
 * and the order of the arithmetic. What it cannot cover is the device side's
 * own instructions: __half2float, __fmul_rn and __fsub_rn replace the host's
 * f16 widening and operators there (cuda_dequant.h, CUQ_MUL/CUQ_SUB).
 *
 * The f16 and E4M3 decoders are also checked on every bit pattern against
 * independent formulas, and the FP8 type against its definition in
 * include/qiao/device.h (and against the CPU backend when it claims it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "cuda_dequant.h"
#include "cuda_host_test.h"
#include "qiao/device.h"

#define EXPECT(cond)                                                                               \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                     \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof(u));
  return u;
}

/* The same value: equal bits, or both NaN (a NaN's payload is not part of
 * any formula). */
static int same_value(float a, float b) {
  return bits_of(a) == bits_of(b) || (a != a && b != b);
}

static const char *dtype_name(int dt) {
  static const char *names[] = {"F32",  "F16",  "BF16",         "Q8_0",   "Q4_0",  "I32",
                                "Q4_K", "Q5_K", "Q6_K",         "Q2_K",   "Q3_K",  "Q4_1",
                                "Q5_0", "Q5_1", "F8_E4M3_B128", "IQ4_NL", "IQ4_XS"};
  return dt >= 0 && dt < (int)(sizeof(names) / sizeof(names[0])) ? names[dt] : "?";
}

/* ---- the element decoders on every bit pattern */

static void test_f16_all(void) {
  int bad = 0;
  for (uint32_t u = 0; u < 65536; u++) {
    _Float16 h;
    uint16_t v = (uint16_t)u;
    memcpy(&h, &v, sizeof(h));
    if (!same_value(cuq_f16_to_f32(v), (float)h) && bad++ < 3)
      fprintf(stderr, "f16 0x%04x: %a, want %a\n", u, cuq_f16_to_f32(v), (double)(float)h);
  }
  EXPECT(bad == 0);
  failures += bad > 0;
}

/* E4M3FN by its definition: exponent 0 is m/8 * 2^-6, else (1 + m/8) * 2^(e-7). */
static double e4m3_reference(uint8_t byte) {
  int e = (byte >> 3) & 15, m = byte & 7;
  if (e == 15 && m == 7) return NAN;
  double mag = e == 0 ? ldexp(m / 8.0, -6) : ldexp(1.0 + m / 8.0, e - 7);
  return byte & 0x80 ? -mag : mag;
}

static void test_e4m3_all(void) {
  int bad = 0;
  for (uint32_t b = 0; b < 256; b++) {
    float got = cuq_e4m3_to_f32((uint8_t)b);
    double want = e4m3_reference((uint8_t)b);
    if (!(got == want || (got != got && want != want)) ||
        (want == 0.0 && !signbit(got) != !signbit(want)))
      if (bad++ < 3) fprintf(stderr, "e4m3 0x%02x: %a, want %a\n", b, got, want);
  }
  EXPECT(cuq_e4m3_to_f32(0x7e) == 448.0f && cuq_e4m3_to_f32(0xfe) == -448.0f);
  EXPECT(cuq_e4m3_to_f32(0x01) == 0x1p-9f); /* the smallest subnormal */
  EXPECT(bad == 0);
  failures += bad > 0;
}

/* ---- random tables of every weight dtype */

enum { VOCAB = 5, BLOCKS_PER_ROW = 3, ROUNDS = 60 };

/* A random table of VOCAB rows of `dim` elements in dtype dt: random bytes,
 * except F8's scale (a finite F32 over a wide range) and its quants (0x7F
 * and 0xFF are NaN, which a file never stores). */
static unsigned char *random_table(int dt, uint64_t dim, uint64_t row_bytes) {
  unsigned char *t = malloc(VOCAB * row_bytes);
  for (uint64_t i = 0; i < VOCAB * row_bytes; i++)
    t[i] = (unsigned char)rnd_u32();
  if (dt == QIAO_DEV_F8_E4M3_B128)
    for (uint64_t r = 0; r < VOCAB; r++)
      for (uint64_t b = 0; b < dim / 128; b++) {
        unsigned char *blk = t + r * row_bytes + 132 * b;
        /* mostly moderate scales; some at the edges: -0, a subnormal, 2^-120, 2^100 */
        static const float edges[] = {-0.0f, 0x1.8p-140f, -0x1p-120f, 0x1p100f, -0x1.4p100f};
        float d = ldexpf((float)(rnd_u32() % 2000001) / 1e6f - 1.0f, (int)(rnd_u32() % 41) - 20);
        if (rnd_u32() % 4 == 0) d = edges[rnd_u32() % 5];
        memcpy(blk, &d, 4);
        for (int j = 0; j < 128; j++)
          if ((blk[4 + j] & 0x7f) == 0x7f) blk[4 + j] ^= 1; /* NaN -> +-448 */
      }
  return t;
}

/* FP8 by its definition: x = d * e4m3(q), one binary32 rounding (the double
 * product of a 24-bit and a 4-bit significand is exact, so rounding it to
 * float is that rounding). */
static float f8_reference(const unsigned char *row, uint64_t i) {
  const unsigned char *blk = row + i / 128 * 132;
  float d;
  memcpy(&d, blk, 4);
  return (float)((double)d * e4m3_reference(blk[4 + i % 128]));
}

/* The CPU backend's device 0 and a queue, open for the whole test. */
static qiao_dev_backend *cpu_backend;
static qiao_dev_device *cpu_device;
static qiao_dev_queue *cpu_queue;

static int cpu_open(void) {
  qiao_dev_backend_options bo = {sizeof(bo), QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR};
  return ok(api->backend_open(&bo, &cpu_backend), "backend_open") &&
         ok(api->device_open(cpu_backend, 0, NULL, &cpu_device), "device_open") &&
         ok(api->queue_create(cpu_device, &cpu_queue), "queue_create");
}

static void cpu_close(void) {
  api->queue_destroy(cpu_queue);
  api->device_close(cpu_device);
  api->backend_close(cpu_backend);
}

/* The CPU backend's embed of every row of `table` into out (VOCAB * dim).
 * Returns 0 when it does not claim (embed, dt). */
static int cpu_embed(int dt, const unsigned char *table, uint64_t dim, uint64_t row_bytes,
                     float *out) {
  uint32_t claimed = 0;
  if (!ok(api->op_supported(cpu_device, QIAO_DEV_OP_EMBED, (qiao_dev_dtype)dt, &claimed),
          "op_supported") ||
      !claimed)
    return 0;
  int32_t ids[VOCAB];
  for (int r = 0; r < VOCAB; r++)
    ids[r] = VOCAB - 1 - r; /* rows in reverse: the row index math counts */
  const uint64_t out_bytes = VOCAB * dim * 4;
  qiao_dev_buffer *tb = NULL, *ib = NULL, *ob = NULL;
  float *rev = malloc(out_bytes);
  int done = 0;
  if (ok(api->buffer_create(cpu_device, VOCAB * row_bytes, &tb), "buffer_create") &&
      ok(api->buffer_create(cpu_device, sizeof(ids), &ib), "buffer_create") &&
      ok(api->buffer_create(cpu_device, out_bytes, &ob), "buffer_create") &&
      ok(api->upload(cpu_queue, (qiao_dev_ref){tb, 0}, table, VOCAB * row_bytes), "upload") &&
      ok(api->upload(cpu_queue, (qiao_dev_ref){ib, 0}, ids, sizeof(ids)), "upload")) {
    qiao_dev_embed_args a = {.struct_size = sizeof(a),
                             .n_tokens = VOCAB,
                             .vocab = VOCAB,
                             .dim = dim,
                             .table_dtype = (qiao_dev_dtype)dt,
                             .table = {tb, 0},
                             .ids = {ib, 0},
                             .out = {ob, 0}};
    if (ok(api->embed(cpu_queue, &a), "embed") &&
        ok(api->download(cpu_queue, rev, (qiao_dev_ref){ob, 0}, out_bytes), "download") &&
        ok(api->queue_synchronize(cpu_queue), "queue_synchronize")) {
      for (int r = 0; r < VOCAB; r++)
        memcpy(out + (uint64_t)ids[r] * dim, rev + (uint64_t)r * dim, dim * 4);
      done = 1;
    }
  }
  free(rev);
  api->buffer_destroy(tb), api->buffer_destroy(ib), api->buffer_destroy(ob);
  return done;
}

/* Compares the CUDA helpers with `want` (VOCAB * dim values) on every
 * element of `table`; returns the number of mismatches. */
static int compare_table(int dt, const unsigned char *table, uint64_t dim, uint64_t row_bytes,
                         const float *want, const char *against) {
  int bad = 0;
  const uint32_t be = cuq_block_elems(dt);
  for (uint64_t r = 0; r < VOCAB; r++) {
    const unsigned char *row = table + r * row_bytes;
    for (uint64_t i = 0; i < dim; i++) {
      float got = cuq_dequant(dt, row, i), w = want[r * dim + i];
      if (!same_value(got, w) && bad++ < 3)
        fprintf(stderr, "%s row %llu [%llu]: cuq_dequant %a, %s %a\n", dtype_name(dt),
                (unsigned long long)r, (unsigned long long)i, got, against, w);
    }
    if (be == 1) continue; /* cuq_dequant8 is for block types only */
    for (uint64_t g = 0; g < dim / 8; g++) {
      float v[8];
      cuq_dequant8(dt, row, g, v);
      for (int t = 0; t < 8; t++)
        if (!same_value(v[t], want[r * dim + 8 * g + t]) && bad++ < 3)
          fprintf(stderr, "%s row %llu [%llu]: cuq_dequant8 %a, %s %a\n", dtype_name(dt),
                  (unsigned long long)r, (unsigned long long)(8 * g + t), v[t], against,
                  want[r * dim + 8 * g + t]);
    }
  }
  return bad;
}

static void test_dtype(int dt) {
  const uint32_t be = cuq_block_elems(dt), bb = cuq_block_bytes(dt);
  const uint64_t dim = be == 1 ? 40 : (uint64_t)be * BLOCKS_PER_ROW, row_bytes = dim / be * bb;
  float *want = malloc(VOCAB * dim * 4);
  int bad = 0, cpu_rounds = 0;
  for (int round = 0; round < ROUNDS && bad == 0; round++) {
    unsigned char *table = random_table(dt, dim, row_bytes);
    if (cpu_embed(dt, table, dim, row_bytes, want)) {
      cpu_rounds++;
      bad += compare_table(dt, table, dim, row_bytes, want, "CPU backend");
    }
    if (dt == QIAO_DEV_F8_E4M3_B128) {
      for (uint64_t r = 0; r < VOCAB; r++)
        for (uint64_t i = 0; i < dim; i++)
          want[r * dim + i] = f8_reference(table + r * row_bytes, i);
      bad += compare_table(dt, table, dim, row_bytes, want, "definition");
    }
    free(table);
  }
  free(want);
  if (cpu_rounds == 0) {
    /* Every dtype but FP8 is an ABI 1.3 or 1.5 dtype the CPU backend implements. */
    if (dt != QIAO_DEV_F8_E4M3_B128) {
      fprintf(stderr, "%s: the CPU backend does not claim embed\n", dtype_name(dt));
      failures++;
    } else {
      printf("note: %s compared with its definition only (the CPU backend does not claim it)\n",
             dtype_name(dt));
    }
  }
  if (bad) {
    fprintf(stderr, "%s: %d mismatches\n", dtype_name(dt), bad);
    failures++;
  } else {
    printf("%-12s %d rounds of %d rows x %llu elements: identical\n", dtype_name(dt), ROUNDS, VOCAB,
           (unsigned long long)dim);
  }
}

int main(void) {
  rng_state = 0x9e3779b97f4a7c15ull;
  api = qiao_cpu_get_api();
  if (!cpu_open()) return 1;
  test_f16_all();
  test_e4m3_all();
  /* The geometry the kernels use is that of format.md §4.1 and device.h. */
  EXPECT(cuq_block_bytes(QIAO_DEV_Q4_K) == 144 && cuq_block_bytes(QIAO_DEV_Q5_K) == 176);
  EXPECT(cuq_block_bytes(QIAO_DEV_Q6_K) == 210 && cuq_block_bytes(QIAO_DEV_Q2_K) == 84);
  EXPECT(cuq_block_bytes(QIAO_DEV_Q3_K) == 110 && cuq_block_bytes(QIAO_DEV_Q4_1) == 20);
  EXPECT(cuq_block_bytes(QIAO_DEV_Q5_0) == 22 && cuq_block_bytes(QIAO_DEV_Q5_1) == 24);
  EXPECT(cuq_block_bytes(QIAO_DEV_F8_E4M3_B128) == 132 &&
         cuq_block_elems(QIAO_DEV_F8_E4M3_B128) == 128);
  EXPECT(cuq_block_bytes(QIAO_DEV_IQ4_NL) == 18 && cuq_block_elems(QIAO_DEV_IQ4_NL) == 32);
  EXPECT(cuq_block_bytes(QIAO_DEV_IQ4_XS) == 136 && cuq_block_elems(QIAO_DEV_IQ4_XS) == 256);
  EXPECT(cuq_block_elems(QIAO_DEV_I32) == 0 && cuq_block_bytes(QIAO_DEV_DTYPE_COUNT) == 0);
  const int dtypes[] = {QIAO_DEV_F32,  QIAO_DEV_F16,          QIAO_DEV_BF16,   QIAO_DEV_Q8_0,
                        QIAO_DEV_Q4_0, QIAO_DEV_Q4_K,         QIAO_DEV_Q5_K,   QIAO_DEV_Q6_K,
                        QIAO_DEV_Q2_K, QIAO_DEV_Q3_K,         QIAO_DEV_Q4_1,   QIAO_DEV_Q5_0,
                        QIAO_DEV_Q5_1, QIAO_DEV_F8_E4M3_B128, QIAO_DEV_IQ4_NL, QIAO_DEV_IQ4_XS};
  for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++)
    test_dtype(dtypes[i]);
  cpu_close();
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
