/* Q8 activations (device ABI 1.2, x_precision = QIAO_DEV_PRECISION_Q8,
 * spec §11.4) on the CPU backend, for Q8_0 and Q4_0 weights:
 *   - the result equals the definition: x quantized per block of 32 as the
 *     spec says (computed here, independently, in double), the integer
 *     products exact, within F32 accumulation of the per-block terms;
 *   - every row's bits are the same alone or among others, in either mode,
 *     on 1 or 3 threads, and on the scalar and AVX-512 VNNI kernel sets
 *     and, with AVX-VNNI, AVX2 (all implement the same per-block sums:
 *     cpu_internal.h);
 *   - a 1.1 runtime (runtime_abi_minor 1) never gets it: x_precision lies in
 *     1.0's tail padding; an unknown precision is INVALID_ARGUMENT;
 *   - a block holding a non-finite value makes the row's outputs NaN. */
#include "cpu_test.h"

static const qiao_dev_dtype dtypes[] = {QIAO_DEV_Q8_0, QIAO_DEV_Q4_0};
static const uint64_t ks[] = {32, 96, 416, 1056};
static const uint64_t ms[] = {1, 40, 97};
enum { MAX_N = 17 };

static int open_env(env *t, const char *isa, uint32_t n_threads, uint32_t flags, uint32_t minor) {
  api = qiao_cpu_get_api();
  return env_open_minor(t, isa, n_threads, flags, minor);
}

/* Whether the device reports QIAO_DEV_FLAG_Q8_ACTIVATIONS with kernels isa. */
static int claims_q8(env *t, const char *isa) {
  qiao_dev_properties p = {.struct_size = sizeof(p)};
  setenv("QIAO_CPU_ISA", isa, 1);
  EXPECT_OK(api->device_get_properties(t->backend, 0, &p));
  unsetenv("QIAO_CPU_ISA");
  return (p.flags & QIAO_DEV_FLAG_Q8_ACTIVATIONS) != 0;
}

static qiao_dev_error *matmul(env *t, qiao_dev_buffer *w, qiao_dev_dtype dt, qiao_dev_buffer *x,
                              uint64_t x_row, qiao_dev_buffer *bias, qiao_dev_buffer *o, uint64_t n,
                              uint64_t k, uint64_t m, uint32_t precision) {
  qiao_dev_matmul_args a = {.struct_size = sizeof(a),
                            .n = n,
                            .k = k,
                            .m = m,
                            .x = {x, x_row * k * 4},
                            .w_dtype = dt,
                            .w = ref(w),
                            .bias = ref(bias),
                            .out = ref(o),
                            .x_precision = precision};
  return api->matmul(t->queue, &a);
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

/* The definition in double: sum over blocks of d_w * d_x * (integer dot). */
static double spec_dot(qiao_dev_dtype dt, const uint8_t *wrow, const float *x, uint64_t k) {
  double total = 0.0;
  for (uint64_t b = 0; b < k / 32; b++) {
    int q[32];
    float dx;
    spec_quantize(x + b * 32, q, &dx);
    const uint8_t *block = wrow + b * (dt == QIAO_DEV_Q8_0 ? 34 : 18);
    uint16_t h;
    memcpy(&h, block, 2);
    long dot = 0;
    for (int i = 0; i < 32; i++) {
      int wq = dt == QIAO_DEV_Q8_0 ? (int8_t)block[2 + i]
                                   : (i < 16 ? block[2 + i] & 0xf : block[2 + i - 16] >> 4) - 8;
      dot += (long)wq * q[i];
    }
    total += from_f16(h) * (double)dx * (double)dot;
  }
  return total;
}

/* The batch on `plain` against the definition; then every row alone and
 * in small groups on `plain` and on each of the n_others devices (other
 * modes, thread counts and kernel sets): the same bits. */
static void check_shape(env *plain, env *const *others, int n_others, qiao_dev_dtype dt, uint64_t k,
                        uint64_t m) {
  uint64_t wb = m * row_bytes(dt, k);
  float *xf = rnd_floats(MAX_N * k, 2.0f), *bf = rnd_floats(m, 1.0f), *wf = rnd_floats(m * k, 1.0f);
  uint8_t *wq = encode(dt, wf, m, k);
  float *want = malloc(MAX_N * m * 4), *got = malloc(MAX_N * m * 4);
  env *envs[8] = {plain};
  for (int i = 0; i < n_others && i < 7; i++)
    envs[i + 1] = others[i];
  /* The whole batch on the plain device: the values against the definition. */
  qiao_dev_buffer *x = buf(plain, xf, MAX_N * k * 4), *w = buf(plain, wq, wb);
  qiao_dev_buffer *bias = buf(plain, bf, m * 4), *o = buf(plain, NULL, MAX_N * m * 4);
  EXPECT_OK(matmul(plain, w, dt, x, 0, bias, o, MAX_N, k, m, QIAO_DEV_PRECISION_Q8));
  get(plain, want, o, MAX_N * m * 4);
  double worst = 0.0;
  for (uint64_t r = 0; r < MAX_N; r++) {
    double err2 = 0.0, ref2 = 0.0;
    for (uint64_t j = 0; j < m; j++) {
      double ref = bf[j] + spec_dot(dt, wq + j * row_bytes(dt, k), xf + r * k, k);
      err2 += (want[r * m + j] - ref) * (want[r * m + j] - ref);
      ref2 += ref * ref;
    }
    double err = sqrt(err2) / (sqrt(ref2) > 1e-30 ? sqrt(ref2) : 1e-30);
    worst = err > worst ? err : worst;
  }
  if (!(worst < 1e-5)) {
    fprintf(stderr, "dtype %d k %llu m %llu: error %.3g against the definition\n", (int)dt,
            (unsigned long long)k, (unsigned long long)m, worst);
    failures++;
  }
  api->buffer_destroy(x);
  api->buffer_destroy(w);
  api->buffer_destroy(bias);
  api->buffer_destroy(o);
  /* Every row alone, on every device, gives the batch's bits (on `plain`,
   * outside batch-invariant mode, a single row takes the exact gemv of the
   * AVX-512 set: rows go at least in pairs there). */
  for (int e = 0; e <= n_others && e < 8; e++) {
    x = buf(envs[e], xf, MAX_N * k * 4);
    w = buf(envs[e], wq, wb);
    bias = buf(envs[e], bf, m * 4);
    o = buf(envs[e], NULL, MAX_N * m * 4);
    for (uint64_t r = 0; r < MAX_N; r++) {
      uint64_t n = 1 + r % 5; /* rows r .. r + n - 1, where they exist */
      if (r + n > MAX_N) n = MAX_N - r;
      if (n == 1 && e == 0) n = 2;
      if (r + n > MAX_N) continue;
      EXPECT_OK(matmul(envs[e], w, dt, x, r, bias, o, n, k, m, QIAO_DEV_PRECISION_Q8));
      get(envs[e], got, o, n * m * 4);
      if (memcmp(got, want + r * m, n * m * 4) != 0) {
        fprintf(stderr, "%s (device %d): dtype %d k %llu m %llu: rows %llu..%llu differ\n",
                envs[e]->isa, e, (int)dt, (unsigned long long)k, (unsigned long long)m,
                (unsigned long long)r, (unsigned long long)(r + n - 1));
        failures++;
        break;
      }
    }
    api->buffer_destroy(x);
    api->buffer_destroy(w);
    api->buffer_destroy(bias);
    api->buffer_destroy(o);
  }
  free(xf);
  free(bf);
  free(wf);
  free(wq);
  free(want);
  free(got);
}

/* A 1.1 runtime's x_precision bytes are padding: whatever they hold, the
 * result is the exact one; from 1.2, an unknown precision is refused. */
static void check_versions(env *plain, env *old) {
  const uint64_t k = 64, m = 8, n = 3;
  float *xf = rnd_floats(n * k, 1.0f), *wf = rnd_floats(m * k, 1.0f);
  uint8_t *wq = encode(QIAO_DEV_Q8_0, wf, m, k);
  float exact[24], got[24];
  env *envs[2] = {plain, old};
  for (int e = 0; e < 2; e++) {
    qiao_dev_buffer *x = buf(envs[e], xf, n * k * 4), *w = buf(envs[e], wq, m * 34 * 2);
    qiao_dev_buffer *o = buf(envs[e], NULL, n * m * 4);
    EXPECT_OK(matmul(envs[e], w, QIAO_DEV_Q8_0, x, 0, NULL, o, n, k, m, QIAO_DEV_PRECISION_EXACT));
    get(envs[e], exact, o, sizeof(exact));
    if (e == 1) {
      EXPECT_OK(matmul(envs[e], w, QIAO_DEV_Q8_0, x, 0, NULL, o, n, k, m, 0xdeadbeefu));
      get(envs[e], got, o, sizeof(got));
      EXPECT(memcmp(got, exact, sizeof(got)) == 0);
    } else {
      EXPECT_OK(matmul(envs[e], w, QIAO_DEV_Q8_0, x, 0, NULL, o, n, k, m, QIAO_DEV_PRECISION_Q8));
      get(envs[e], got, o, sizeof(got));
      EXPECT(memcmp(got, exact, sizeof(got)) != 0); /* quantized: not the exact bits */
      EXPECT_ERR(matmul(envs[e], w, QIAO_DEV_Q8_0, x, 0, NULL, o, n, k, m, 2),
                 QIAO_DEV_INVALID_ARGUMENT, "x_precision 2");
    }
    /* A non-finite value in a block: that row's outputs are NaN, the others finite. */
    xf[k + 5] = INFINITY;
    EXPECT_OK(api->upload(envs[e]->queue, ref(x), xf, n * k * 4));
    EXPECT_OK(matmul(envs[e], w, QIAO_DEV_Q8_0, x, 0, NULL, o, n, k, m, QIAO_DEV_PRECISION_Q8));
    get(envs[e], got, o, sizeof(got));
    for (uint64_t j = 0; j < m; j++) {
      EXPECT(isfinite(got[j]) && isfinite(got[2 * m + j]));
      EXPECT(e == 1 ? !isfinite(got[m + j]) : isnan(got[m + j]));
    }
    xf[k + 5] = 0.5f;
    api->buffer_destroy(x);
    api->buffer_destroy(w);
    api->buffer_destroy(o);
  }
  free(xf);
  free(wf);
  free(wq);
}

int main(void) {
  env plain, mode1, mode3, scalar, avx2, old;
  open_env(&scalar, "scalar", 1, 0, QIAO_DEVICE_ABI_MINOR);
  EXPECT(claims_q8(&scalar, "scalar"));
  if (!open_env(&plain, "avx512", 3, 0, QIAO_DEVICE_ABI_MINOR) || !claims_q8(&plain, "avx512")) {
    /* No AVX512-VNNI: the scalar set is the one to check. */
    printf("avx512 with VNNI: not on this processor; checking the scalar kernels only\n");
    for (size_t d = 0; d < 2; d++)
      for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 3; j++)
          check_shape(&scalar, NULL, 0, dtypes[d], ks[i], ms[j]);
    env_close(&scalar);
    return failures ? 1 : 0;
  }
  open_env(&mode1, "avx512", 1, QIAO_DEV_OPEN_BATCH_INVARIANT, QIAO_DEVICE_ABI_MINOR);
  open_env(&mode3, "avx512", 3, QIAO_DEV_OPEN_BATCH_INVARIANT, QIAO_DEVICE_ABI_MINOR);
  open_env(&old, "avx512", 1, 0, 1);
  /* The AVX2 set has the kernel where the processor has AVX-VNNI. */
  int have_avx2 = open_env(&avx2, "avx2", 2, 0, QIAO_DEVICE_ABI_MINOR);
  int avx2_q8 = have_avx2 && claims_q8(&avx2, "avx2");
  printf("avx2 with AVX-VNNI: %s\n", avx2_q8 ? "checked" : "not on this processor");
  env *others[] = {&mode1, &mode3, &scalar, &avx2};
  for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++)
    for (size_t i = 0; i < sizeof(ks) / sizeof(ks[0]); i++)
      for (size_t j = 0; j < sizeof(ms) / sizeof(ms[0]); j++)
        check_shape(&plain, others, avx2_q8 ? 4 : 3, dtypes[d], ks[i], ms[j]);
  check_versions(&plain, &old);
  env_close(&plain);
  env_close(&mode1);
  env_close(&mode3);
  env_close(&scalar);
  env_close(&old);
  if (have_avx2) env_close(&avx2);
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  printf("ok\n");
  return 0;
}
