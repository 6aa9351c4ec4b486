/* Q8 activations in matmul_experts (device ABI 1.5, spec §15.1) on the CPU
 * backend, for every weight dtype with a vec_q8 kernel (Q8_0, Q4_0 and the
 * block types of 1.3), on every kernel set the processor has:
 *   - each (token, slot) pair's output equals the definition of §11.4: the
 *     pair's row of x (x_per_slot 0: the token's row; 1: the pair's own)
 *     quantized per block of 32 as the spec says (computed here in binary32,
 *     independently), times the exactly dequantized expert weights, in
 *     double; within f32 accumulation of the per-block terms;
 *   - a token's outputs are the same bits alone or in the batch, outside and
 *     in batch-invariant mode, on 1 or 3 threads (batch invariance);
 *   - a 1.4 runtime's x_precision bytes are padding (the exact result,
 *     whatever they hold); from 1.5 a value other than 0/1 is
 *     INVALID_ARGUMENT naming x_precision;
 *   - a block of x holding a non-finite value makes that pair's outputs NaN. */
#include "cpu_test.h"

#include "cpu_internal.h"

enum { N_TOKENS = 7, K = 3, N_EXPERTS = 5, OUT_DIM = 37, N_PAIRS = N_TOKENS * K };

static const qiao_dev_dtype dtypes[] = {QIAO_DEV_Q8_0, QIAO_DEV_Q4_0, QIAO_DEV_Q4_K, QIAO_DEV_Q5_K,
                                        QIAO_DEV_Q6_K, QIAO_DEV_Q2_K, QIAO_DEV_Q3_K, QIAO_DEV_Q4_1,
                                        QIAO_DEV_Q5_0, QIAO_DEV_Q5_1};

/* Random blocks whose f16 scales (the first one or two of each block of
 * the 32-element types and the K types' d, dmin) are finite and small. */
static uint8_t *random_weights(qiao_dev_dtype dt, uint64_t rows, uint64_t in_dim) {
  uint64_t bb = qiao__cpu_block_bytes(dt), be = qiao__cpu_block_elems(dt);
  uint64_t n_blocks = rows * in_dim / be;
  uint8_t *w = malloc(n_blocks * bb);
  for (uint64_t i = 0; i < n_blocks * bb; i++)
    w[i] = (uint8_t)rnd_u32();
  for (uint64_t b = 0; b < n_blocks; b++) {
    uint8_t *blk = w + b * bb;
    uint64_t at[2] = {0, 2};
    int count =
        dt == QIAO_DEV_Q4_1 || dt == QIAO_DEV_Q5_1 || dt == QIAO_DEV_Q4_K || dt == QIAO_DEV_Q5_K
            ? 2
            : 1;
    if (dt == QIAO_DEV_Q6_K) at[0] = 208;
    if (dt == QIAO_DEV_Q2_K) at[0] = 80, at[1] = 82, count = 2;
    if (dt == QIAO_DEV_Q3_K) at[0] = 108;
    for (int t = 0; t < count; t++) {
      uint16_t h = to_f16((rnd() * 0.5f + (rnd() > 0 ? 0.6f : -0.6f)) * 0.01f);
      memcpy(blk + at[t], &h, 2);
    }
  }
  return w;
}

/* The spec's quantization of one block of 32 (binary32 arithmetic). */
static void spec_quantize(const float *x, int q[32], float *d) {
  float amax = 0.0f;
  for (int i = 0; i < 32; i++)
    amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
  *d = amax / 127.0f;
  for (int i = 0; i < 32; i++) {
    float v = *d == 0.0f ? 0.0f : nearbyintf(x[i] / *d);
    q[i] = v > 127.0f ? 127 : v < -127.0f ? -127 : (int)v;
  }
}

/* The definition of one output in double, and the sum of its terms'
 * magnitudes (the scale of f32 accumulation error). */
static double spec_dot(const float *wrow, const float *x, uint64_t in_dim, double *scale) {
  double total = 0.0, mag = 0.0;
  for (uint64_t b = 0; b < in_dim / 32; b++) {
    int q[32];
    float dx;
    spec_quantize(x + b * 32, q, &dx);
    for (int i = 0; i < 32; i++) {
      double term = (double)wrow[b * 32 + i] * (double)dx * q[i];
      total += term;
      mag += fabs(term);
    }
  }
  *scale = mag;
  return total;
}

typedef struct problem {
  qiao_dev_dtype dt;
  uint64_t in_dim;
  uint32_t x_per_slot;
  float *x;   /* (rows of x, in_dim) */
  uint8_t *w; /* (N_EXPERTS, OUT_DIM, in_dim) */
  int32_t ids[N_PAIRS];
} problem;

static uint64_t x_rows(const problem *p) {
  return p->x_per_slot ? N_PAIRS : N_TOKENS;
}

/* matmul_experts over tokens [t0, t0 + n) of p on t; out (n * K, OUT_DIM). */
static qiao_dev_error *run(env *t, const problem *p, uint64_t t0, uint64_t n, uint32_t precision,
                           float *out) {
  uint64_t per_token = p->x_per_slot ? K : 1, wb = N_EXPERTS * OUT_DIM * p->in_dim /
                                                   qiao__cpu_block_elems(p->dt) *
                                                   qiao__cpu_block_bytes(p->dt);
  qiao_dev_buffer *x = buf(t, p->x + t0 * per_token * p->in_dim, n * per_token * p->in_dim * 4);
  qiao_dev_buffer *w = buf(t, p->w, wb), *ids = buf(t, p->ids + t0 * K, n * K * 4);
  qiao_dev_buffer *o = buf(t, NULL, n * K * OUT_DIM * 4);
  qiao_dev_matmul_experts_args a = {.struct_size = sizeof(a),
                                    .n_tokens = n,
                                    .k = K,
                                    .n_experts = N_EXPERTS,
                                    .in_dim = p->in_dim,
                                    .out_dim = OUT_DIM,
                                    .x_per_slot = p->x_per_slot,
                                    .x_precision = precision,
                                    .x = ref(x),
                                    .w_dtype = p->dt,
                                    .w = ref(w),
                                    .ids = ref(ids),
                                    .out = ref(o)};
  qiao_dev_error *e = api->matmul_experts(t->queue, &a);
  if (e == NULL) get(t, out, o, n * K * OUT_DIM * 4);
  api->buffer_destroy(x);
  api->buffer_destroy(w);
  api->buffer_destroy(ids);
  api->buffer_destroy(o);
  return e;
}

static void make_problem(problem *p, qiao_dev_dtype dt, uint32_t x_per_slot) {
  p->dt = dt;
  /* an odd number of blocks of 32 (the last alone) where the dtype allows */
  p->in_dim = qiao__cpu_block_elems(dt) == 32 ? 288 : 512;
  p->x_per_slot = x_per_slot;
  p->x = rnd_floats(x_rows(p) * p->in_dim, 2.0f);
  p->w = random_weights(dt, N_EXPERTS * OUT_DIM, p->in_dim);
  for (int i = 0; i < N_PAIRS; i++) /* distinct experts per token */
    p->ids[i] = (int32_t)((i / K * 2 + i % K * (1 + i / K % 2)) % N_EXPERTS);
}

/* The batch on `plain` against the definition (has_kernel: the kernel set
 * has vec_q8 for dt; otherwise the exact result); each token alone, on
 * every device of the same kernel set, gives the batch's bits. */
static void check(env *plain, env *const *same_set, int n_same, qiao_dev_dtype dt,
                  uint32_t x_per_slot, int has_kernel) {
  problem p;
  make_problem(&p, dt, x_per_slot);
  float want[N_PAIRS * OUT_DIM], got[N_PAIRS * OUT_DIM], exact[N_PAIRS * OUT_DIM];
  EXPECT_OK(run(plain, &p, 0, N_TOKENS, QIAO_DEV_PRECISION_Q8, want));
  EXPECT_OK(run(plain, &p, 0, N_TOKENS, QIAO_DEV_PRECISION_EXACT, exact));
  uint64_t wrow_bytes = p.in_dim / qiao__cpu_block_elems(dt) * qiao__cpu_block_bytes(dt);
  float *wrow = malloc(p.in_dim * sizeof(float));
  int bad = 0, differs = 0;
  for (uint64_t pair = 0; pair < N_PAIRS; pair++) {
    const float *x = p.x + (x_per_slot ? pair : pair / K) * p.in_dim;
    for (uint64_t j = 0; j < OUT_DIM; j++) {
      qiao__cpu_dequantize_row(dt, p.w + ((uint64_t)p.ids[pair] * OUT_DIM + j) * wrow_bytes,
                               p.in_dim, wrow);
      double scale = 0.0, ref = spec_dot(wrow, x, p.in_dim, &scale);
      double g = want[pair * OUT_DIM + j];
      differs += g != exact[pair * OUT_DIM + j];
      if (has_kernel && !(fabs(g - ref) <= 1e-5 * scale + 1e-30) && bad++ < 3)
        fprintf(stderr, "%s: dtype %d x_per_slot %u pair %llu out %llu: %.9g, definition %.9g\n",
                plain->isa, (int)dt, x_per_slot, (unsigned long long)pair, (unsigned long long)j, g,
                ref);
    }
  }
  if (!has_kernel) { /* no int8 kernel for the dtype: computed exactly (allowed) */
    EXPECT(memcmp(want, exact, sizeof(want)) == 0);
    differs = 1;
  }
  failures += bad != 0;
  if (differs == 0) { /* the Q8 path was not taken */
    fprintf(stderr, "%s: dtype %d: Q8 gave the exact bits\n", plain->isa, (int)dt);
    failures++;
  }
  for (int e = 0; e <= n_same; e++) {
    env *t = e == 0 ? plain : same_set[e - 1];
    for (uint64_t tok = 0; tok < N_TOKENS; tok++) {
      EXPECT_OK(run(t, &p, tok, 1, QIAO_DEV_PRECISION_Q8, got));
      if (memcmp(got, want + tok * K * OUT_DIM, K * OUT_DIM * 4) != 0) {
        fprintf(stderr, "%s (device %d): dtype %d x_per_slot %u: token %llu alone differs\n",
                t->isa, e, (int)dt, x_per_slot, (unsigned long long)tok);
        failures++;
        break;
      }
    }
    if (e > 0) { /* and the whole batch */
      EXPECT_OK(run(t, &p, 0, N_TOKENS, QIAO_DEV_PRECISION_Q8, got));
      EXPECT(memcmp(got, want, sizeof(got)) == 0);
    }
  }
  free(wrow);
  free(p.x);
  free(p.w);
}

/* A 1.4 runtime's x_precision bytes are padding; a 1.5 one's are checked;
 * a non-finite block of x makes its pairs' outputs NaN. */
static void check_versions(env *plain, env *old) {
  problem p;
  make_problem(&p, QIAO_DEV_Q4_0, 0);
  float exact[N_PAIRS * OUT_DIM], got[N_PAIRS * OUT_DIM];
  EXPECT_OK(run(plain, &p, 0, N_TOKENS, QIAO_DEV_PRECISION_EXACT, exact));
  EXPECT_OK(run(old, &p, 0, N_TOKENS, 0xdeadbeefu, got));
  EXPECT(memcmp(got, exact, sizeof(got)) == 0);
  EXPECT_ERR(run(plain, &p, 0, N_TOKENS, 2, got), QIAO_DEV_INVALID_ARGUMENT, "x_precision 2");
  p.x[2 * p.in_dim + 40] = INFINITY; /* token 2, its second block */
  EXPECT_OK(run(plain, &p, 0, N_TOKENS, QIAO_DEV_PRECISION_Q8, got));
  for (uint64_t i = 0; i < N_PAIRS * OUT_DIM; i++)
    EXPECT(i / OUT_DIM / K == 2 ? isnan(got[i]) : isfinite(got[i]));
  free(p.x);
  free(p.w);
}

int main(void) {
  api = qiao_cpu_get_api();
  int checked = 0;
  for (size_t s = 0; s < sizeof(isas) / sizeof(isas[0]); s++) {
    env plain, inv1, inv3;
    if (!env_open_minor(&plain, isas[s], 3, 0, QIAO_DEVICE_ABI_MINOR)) {
      printf("%s: not on this processor\n", isas[s]);
      continue;
    }
    env_open_minor(&inv1, isas[s], 1, QIAO_DEV_OPEN_BATCH_INVARIANT, QIAO_DEVICE_ABI_MINOR);
    env_open_minor(&inv3, isas[s], 3, QIAO_DEV_OPEN_BATCH_INVARIANT, QIAO_DEVICE_ABI_MINOR);
    env *same[] = {&inv1, &inv3};
    const qiao__cpu_kernels *kernels = s == 0   ? qiao__cpu_kernels_scalar()
                                       : s == 1 ? qiao__cpu_kernels_avx2()
                                                : qiao__cpu_kernels_avx512();
    for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++)
      for (uint32_t per_slot = 0; per_slot < 2; per_slot++)
        check(&plain, same, 2, dtypes[d], per_slot, kernels->vec_q8[dtypes[d]] != NULL);
    if (s == 0) {
      env old;
      env_open_minor(&old, isas[s], 1, 0, 4);
      check_versions(&plain, &old);
      env_close(&old);
    }
    env_close(&plain);
    env_close(&inv1);
    env_close(&inv3);
    printf("%s: checked\n", isas[s]);
    checked++;
  }
  EXPECT(checked > 0);
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  printf("ok\n");
  return 0;
}
