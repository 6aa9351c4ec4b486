/* invariance_checks.h: the checks of batch-invariant mode (device ABI 1.1,
 * device-abi.md §10.4) on any backend table, shared by tests/cpu (every
 * kernel set of the CPU backend) and tests/opencl (the OpenCL plugin): for
 * every op, a row computed alone (n = 1) must come back bit-identical when
 * it is computed among other random rows, at the first, a middle or the
 * last index of calls of n = 2, 3, 5, 8, 17 and 33 rows, on two devices
 * opened in the mode (for the CPU: with 1 thread and with 3). Also how
 * device_open reads the options' flags (1.0 runtimes, unknown bits).
 * Header-only test code; `api` (cpu_test.h) is the table under test. */
#ifndef QIAO_INVARIANCE_CHECKS_H
#define QIAO_INVARIANCE_CHECKS_H

#include <stdbool.h>

#include "cpu_test.h"

static const uint64_t batch_sizes[] = {2, 3, 5, 8, 17, 33};
#define N_SIZES (sizeof(batch_sizes) / sizeof(batch_sizes[0]))

/* Opens device 0 of `api` with device_open flags (see env_open_flags). */
static int open_mode(env *t, const char *isa, uint32_t n_threads, uint32_t flags) {
  return env_open_flags(t, isa, n_threads, flags);
}

/* ---- device_open's flags ---------------------------------------------------- */

static void options_checks(void) {
  qiao_dev_backend *b = NULL;
  qiao_dev_backend_options bo = {sizeof(bo), QIAO_DEVICE_ABI_MAJOR, QIAO_DEVICE_ABI_MINOR};
  EXPECT_OK(api->backend_open(&bo, &b));
  qiao_dev_properties p = {.struct_size = sizeof(p)};
  EXPECT_OK(api->device_get_properties(b, 0, &p));
  EXPECT(p.flags & QIAO_DEV_FLAG_BATCH_INVARIANT);

  qiao_dev_device *d = NULL;
  qiao_dev_device_options o = {.struct_size = sizeof(o), .flags = QIAO_DEV_OPEN_BATCH_INVARIANT};
  EXPECT_OK(api->device_open(b, 0, &o, &d));
  api->device_close(d);
  /* A bit this backend does not know: refused, out-parameter untouched. */
  d = NULL;
  o.flags = 2u;
  EXPECT_ERR(api->device_open(b, 0, &o, &d), QIAO_DEV_UNSUPPORTED, "unknown flags");
  EXPECT(d == NULL);
  /* Smaller than ABI 1.0's struct (16 bytes, spec section 3): refused. */
  o.struct_size = offsetof(qiao_dev_device_options, flags);
  EXPECT_ERR(api->device_open(b, 0, &o, &d), QIAO_DEV_INVALID_ARGUMENT, "smaller than ABI 1.0");
  EXPECT(d == NULL);
  api->backend_close(b);

  /* A 1.0 runtime: its struct_size is also 16, and the flags bytes are its
   * tail padding, perhaps garbage. They must be ignored. */
  qiao_dev_backend_options old = {sizeof(old), QIAO_DEVICE_ABI_MAJOR, 0};
  EXPECT_OK(api->backend_open(&old, &b));
  unsigned char raw[sizeof(qiao_dev_device_options)];
  memset(raw, 0xff, sizeof(raw));
  qiao_dev_device_options *v10 = (qiao_dev_device_options *)(void *)raw;
  v10->struct_size = 16;
  v10->n_threads = 2;
  d = NULL;
  EXPECT_OK(api->device_open(b, 0, v10, &d));
  EXPECT(d != NULL);
  api->device_close(d);
  api->backend_close(b);
}

/* ---- The generic check: a row alone, then among others ---------------------- */

/* An op on n rows: `in` holds n rows of in_len floats (ids and positions as
 * exact floats), `out` receives n rows of out_len floats. */
typedef void (*rows_fn)(env *t, const void *ctx, uint64_t n, const float *in, float *out);
/* Fills one random input row. */
typedef void (*gen_fn)(const void *ctx, float *row);

typedef struct row_op {
  const char *what; /* "matmul q8_0 k=384", for messages */
  rows_fn run;
  gen_fn gen;
  const void *ctx;
  uint64_t in_len, out_len;
} row_op;

static void gen_uniform(const void *ctx, float *row, uint64_t n) {
  (void)ctx;
  for (uint64_t i = 0; i < n; i++)
    row[i] = rnd();
}

static int first_difference(const float *a, const float *b, uint64_t n) {
  for (uint64_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return (int)i;
  return -1;
}

/* Runs the row alone on `alone` (invariant mode, 1 thread), then inside every
 * batch size at three positions, alternately on `alone` and `many` (3
 * threads). Every result must equal the alone one bit for bit. With `plain`
 * (ordinary mode) set, also counts how often the ordinary mode differs. */
static void check_rows(const row_op *op, env *alone, env *many, env *plain, int *plain_diffs,
                       int *plain_runs) {
  float *target = malloc(op->in_len * sizeof(float) + 4);
  float *base = malloc(op->out_len * sizeof(float) + 4);
  float *plain_base = malloc(op->out_len * sizeof(float) + 4);
  op->gen(op->ctx, target);
  op->run(alone, op->ctx, 1, target, base);
  if (plain) op->run(plain, op->ctx, 1, target, plain_base);
  for (size_t s = 0; s < N_SIZES; s++) {
    uint64_t n = batch_sizes[s];
    uint64_t positions[3] = {0, n / 2, n - 1};
    float *in = malloc(n * op->in_len * sizeof(float) + 4);
    float *out = malloc(n * op->out_len * sizeof(float) + 4);
    for (int p = 0; p < 3; p++) {
      uint64_t pos = positions[p];
      if (p > 0 && pos == positions[p - 1]) continue;
      for (uint64_t r = 0; r < n; r++)
        op->gen(op->ctx, in + r * op->in_len);
      memcpy(in + pos * op->in_len, target, op->in_len * sizeof(float));
      op->run((n + (uint64_t)p) % 2 ? alone : many, op->ctx, n, in, out);
      int j = first_difference(out + pos * op->out_len, base, op->out_len);
      if (j >= 0) {
        fprintf(stderr,
                "%s %s: row %llu of n=%llu differs from the row alone (element %d: %.9g vs %.9g)\n",
                alone->isa, op->what, (unsigned long long)pos, (unsigned long long)n, j,
                (double)out[pos * op->out_len + (uint64_t)j], (double)base[j]);
        failures++;
      }
      if (plain) {
        op->run(plain, op->ctx, n, in, out);
        *plain_diffs += first_difference(out + pos * op->out_len, plain_base, op->out_len) >= 0;
        ++*plain_runs;
      }
    }
    free(in);
    free(out);
  }
  free(target);
  free(base);
  free(plain_base);
}

/* ---- matmul ------------------------------------------------------------------ */

typedef struct matmul_ctx {
  qiao_dev_dtype dtype;
  const uint8_t *w; /* (m, k) encoded */
  const float *bias;
  uint64_t k, m;
} matmul_ctx;

static void matmul_gen(const void *ctx, float *row) {
  gen_uniform(ctx, row, ((const matmul_ctx *)ctx)->k);
}

static void matmul_run(env *t, const void *ctx, uint64_t n, const float *in, float *out) {
  const matmul_ctx *c = ctx;
  uint64_t w_bytes = c->m * row_bytes(c->dtype, c->k);
  qiao_dev_buffer *x = buf(t, in, n * c->k * 4), *w = buf(t, c->w, w_bytes);
  qiao_dev_buffer *bias = c->bias ? buf(t, c->bias, c->m * 4) : NULL;
  qiao_dev_buffer *o = buf(t, NULL, n * c->m * 4);
  qiao_dev_matmul_args a = {.struct_size = sizeof(a),
                            .n = n,
                            .k = c->k,
                            .m = c->m,
                            .x = ref(x),
                            .w_dtype = c->dtype,
                            .w = ref(w),
                            .bias = bias ? ref(bias) : (qiao_dev_ref){NULL, 0},
                            .out = ref(o)};
  EXPECT_OK(api->matmul(t->queue, &a));
  get(t, out, o, n * c->m * 4);
  api->buffer_destroy(x);
  api->buffer_destroy(w);
  api->buffer_destroy(bias);
  api->buffer_destroy(o);
}

static void matmul_checks(env *alone, env *many, env *plain) {
  /* k: below and across vector widths for float weights, several GEMM
   * chunks of 128 (384, 1056), and not a multiple of 32 (the dot path). */
  static const uint64_t float_ks[] = {1, 31, 33, 100, 384, 1000};
  static const uint64_t quant_ks[] = {32, 96, 384, 1056};
  const uint64_t m = 40; /* crosses a tile of 32 weight rows */
  for (size_t d = 0; d < sizeof(weight_dtypes) / sizeof(weight_dtypes[0]); d++) {
    qiao_dev_dtype dt = weight_dtypes[d];
    bool quant = dt == QIAO_DEV_Q8_0 || dt == QIAO_DEV_Q4_0;
    const uint64_t *ks = quant ? quant_ks : float_ks;
    size_t n_ks = quant ? sizeof(quant_ks) / 8 : sizeof(float_ks) / 8;
    int plain_diffs = 0, plain_runs = 0;
    for (size_t i = 0; i < n_ks; i++) {
      uint64_t k = ks[i];
      float *wf = rnd_floats(m * k, 1.0f), *bias = rnd_floats(m, 1.0f);
      uint8_t *w = encode(dt, wf, m, k);
      matmul_ctx c = {dt, w, i % 2 ? bias : NULL, k, m};
      char what[96];
      snprintf(what, sizeof(what), "matmul %d k=%llu m=%llu%s", (int)dt, (unsigned long long)k,
               (unsigned long long)m, c.bias ? " bias" : "");
      row_op op = {what, matmul_run, matmul_gen, &c, k, m};
      check_rows(&op, alone, many, plain, &plain_diffs, &plain_runs);
      free(wf);
      free(bias);
      free(w);
    }
    printf("%s matmul dtype %d: invariant; the ordinary mode differs in %d of %d rows\n",
           alone->isa, (int)dt, plain_diffs, plain_runs);
  }
}

/* ---- matmul_experts ------------------------------------------------------------
 * A row is one token: its K expert ids (as floats), then its x (in_dim, or
 * K * in_dim with x_per_slot). Tokens of a batch route to the experts in
 * every mix, so each expert sees a different number of rows. */
enum { EXPERTS = 5, K_SEL = 2 };

typedef struct experts_ctx {
  qiao_dev_dtype dtype;
  const uint8_t *w; /* (EXPERTS, out_dim, in_dim) */
  uint64_t in_dim, out_dim;
  uint32_t x_per_slot;
} experts_ctx;

static uint64_t experts_x_len(const experts_ctx *c) {
  return (c->x_per_slot ? K_SEL : 1) * c->in_dim;
}

static void experts_gen(const void *ctx, float *row) {
  const experts_ctx *c = ctx;
  for (int i = 0; i < K_SEL; i++)
    row[i] = (float)(rnd_u32() % EXPERTS);
  gen_uniform(ctx, row + K_SEL, experts_x_len(c));
}

static void experts_run(env *t, const void *ctx, uint64_t n, const float *in, float *out) {
  const experts_ctx *c = ctx;
  uint64_t xl = experts_x_len(c), in_len = K_SEL + xl;
  int32_t *ids = malloc(n * K_SEL * 4);
  float *x = malloc(n * xl * 4);
  for (uint64_t r = 0; r < n; r++) {
    for (int i = 0; i < K_SEL; i++)
      ids[r * K_SEL + (uint64_t)i] = (int32_t)in[r * in_len + (uint64_t)i];
    memcpy(x + r * xl, in + r * in_len + K_SEL, xl * 4);
  }
  uint64_t w_bytes = EXPERTS * c->out_dim * row_bytes(c->dtype, c->in_dim);
  qiao_dev_buffer *xb = buf(t, x, n * xl * 4), *wb = buf(t, c->w, w_bytes);
  qiao_dev_buffer *ib = buf(t, ids, n * K_SEL * 4), *ob = buf(t, NULL, n * K_SEL * c->out_dim * 4);
  qiao_dev_matmul_experts_args a = {.struct_size = sizeof(a),
                                    .n_tokens = n,
                                    .k = K_SEL,
                                    .n_experts = EXPERTS,
                                    .in_dim = c->in_dim,
                                    .out_dim = c->out_dim,
                                    .x_per_slot = c->x_per_slot,
                                    .x = ref(xb),
                                    .w_dtype = c->dtype,
                                    .w = ref(wb),
                                    .ids = ref(ib),
                                    .out = ref(ob)};
  EXPECT_OK(api->matmul_experts(t->queue, &a));
  get(t, out, ob, n * K_SEL * c->out_dim * 4);
  api->buffer_destroy(xb);
  api->buffer_destroy(wb);
  api->buffer_destroy(ib);
  api->buffer_destroy(ob);
  free(ids);
  free(x);
}

static void experts_checks(env *alone, env *many) {
  const uint64_t out_dim = 36;
  for (size_t d = 0; d < sizeof(weight_dtypes) / sizeof(weight_dtypes[0]); d++) {
    qiao_dev_dtype dt = weight_dtypes[d];
    bool quant = dt == QIAO_DEV_Q8_0 || dt == QIAO_DEV_Q4_0;
    const uint64_t dims[2] = {quant ? 64 : 45, 288};
    for (int i = 0; i < 2; i++) {
      uint64_t in_dim = dims[i];
      float *wf = rnd_floats(EXPERTS * out_dim * in_dim, 1.0f);
      uint8_t *w = encode(dt, wf, EXPERTS * out_dim, in_dim);
      experts_ctx c = {dt, w, in_dim, out_dim, (uint32_t)i};
      char what[96];
      snprintf(what, sizeof(what), "matmul_experts %d in_dim=%llu x_per_slot=%d", (int)dt,
               (unsigned long long)in_dim, i);
      row_op op = {what, experts_run, experts_gen, &c, K_SEL + experts_x_len(&c), K_SEL * out_dim};
      check_rows(&op, alone, many, NULL, NULL, NULL);
      free(wf);
      free(w);
    }
  }
}

/* ---- rmsnorm ----------------------------------------------------------------- */

static void rmsnorm_gen(const void *ctx, float *row) {
  gen_uniform(ctx, row, *(const uint64_t *)ctx);
}

static void rmsnorm_run(env *t, const void *ctx, uint64_t n, const float *in, float *out) {
  uint64_t cols = *(const uint64_t *)ctx;
  float *weight = malloc(cols * 4);
  for (uint64_t i = 0; i < cols; i++)
    weight[i] = 0.5f + (float)(i % 7) * 0.25f;
  qiao_dev_buffer *x = buf(t, in, n * cols * 4), *w = buf(t, weight, cols * 4);
  qiao_dev_buffer *o = buf(t, NULL, n * cols * 4);
  qiao_dev_rmsnorm_args a = {.struct_size = sizeof(a),
                             .rows = n,
                             .cols = cols,
                             .eps = 1e-5f,
                             .x = ref(x),
                             .weight = ref(w),
                             .out = ref(o)};
  EXPECT_OK(api->rmsnorm(t->queue, &a));
  get(t, out, o, n * cols * 4);
  api->buffer_destroy(x);
  api->buffer_destroy(w);
  api->buffer_destroy(o);
  free(weight);
}

/* ---- rope: a row is one token, its position first --------------------------- */

typedef struct rope_ctx {
  uint64_t n_heads, head_dim, rot_dim;
  qiao_dev_rope_style style;
} rope_ctx;

static void rope_gen(const void *ctx, float *row) {
  const rope_ctx *c = ctx;
  row[0] = (float)(rnd_u32() % 5000);
  gen_uniform(ctx, row + 1, c->n_heads * c->head_dim);
}

static void rope_run(env *t, const void *ctx, uint64_t n, const float *in, float *out) {
  const rope_ctx *c = ctx;
  uint64_t len = c->n_heads * c->head_dim;
  int32_t *pos = malloc(n * 4);
  float *freqs = malloc(c->rot_dim / 2 * 4 + 4);
  for (uint64_t i = 0; i < c->rot_dim / 2; i++)
    freqs[i] = powf(10000.0f, -2.0f * (float)i / (float)c->rot_dim);
  for (uint64_t r = 0; r < n; r++) {
    pos[r] = (int32_t)in[r * (len + 1)];
    memcpy(out + r * len, in + r * (len + 1) + 1, len * 4);
  }
  qiao_dev_buffer *x = buf(t, out, n * len * 4), *p = buf(t, pos, n * 4);
  qiao_dev_buffer *f = buf(t, freqs, c->rot_dim / 2 * 4 + 4);
  qiao_dev_rope_args a = {.struct_size = sizeof(a),
                          .n_tokens = n,
                          .n_heads = c->n_heads,
                          .head_dim = c->head_dim,
                          .rot_dim = c->rot_dim,
                          .style = c->style,
                          .x = ref(x),
                          .positions = ref(p),
                          .freqs = ref(f)};
  EXPECT_OK(api->rope(t->queue, &a));
  get(t, out, x, n * len * 4);
  api->buffer_destroy(x);
  api->buffer_destroy(p);
  api->buffer_destroy(f);
  free(pos);
  free(freqs);
}

/* ---- swiglu and add: a row is a segment of len elements of the flat arrays
 * (gate then up), so the segment sits at every offset and, for long
 * segments, across the threads' split of the elements. */
typedef struct binary_ctx {
  uint64_t len;
  int swiglu;
} binary_ctx;

static void binary_gen(const void *ctx, float *row) {
  gen_uniform(ctx, row, 2 * ((const binary_ctx *)ctx)->len);
}

static void binary_run(env *t, const void *ctx, uint64_t n, const float *in, float *out) {
  const binary_ctx *c = ctx;
  uint64_t total = n * c->len;
  float *ga = malloc(total * 4 + 4), *ub = malloc(total * 4 + 4);
  for (uint64_t r = 0; r < n; r++) {
    memcpy(ga + r * c->len, in + r * 2 * c->len, c->len * 4);
    memcpy(ub + r * c->len, in + r * 2 * c->len + c->len, c->len * 4);
  }
  qiao_dev_buffer *a = buf(t, ga, total * 4), *b = buf(t, ub, total * 4);
  qiao_dev_buffer *o = buf(t, NULL, total * 4);
  if (c->swiglu) {
    qiao_dev_swiglu_args s = {
        .struct_size = sizeof(s), .n = total, .gate = ref(a), .up = ref(b), .out = ref(o)};
    EXPECT_OK(api->swiglu(t->queue, &s));
  } else {
    qiao_dev_add_args s = {
        .struct_size = sizeof(s), .n = total, .a = ref(a), .b = ref(b), .out = ref(o)};
    EXPECT_OK(api->add(t->queue, &s));
  }
  get(t, out, o, total * 4);
  api->buffer_destroy(a);
  api->buffer_destroy(b);
  api->buffer_destroy(o);
  free(ga);
  free(ub);
}

/* ---- argmax (the index as a float), embed (the id first) ------------------------ */

static void argmax_gen(const void *ctx, float *row) {
  uint64_t cols = *(const uint64_t *)ctx;
  for (uint64_t i = 0; i < cols; i++)
    row[i] = (float)(rnd_u32() % 64); /* ties on purpose */
}

static void argmax_run(env *t, const void *ctx, uint64_t n, const float *in, float *out) {
  uint64_t cols = *(const uint64_t *)ctx;
  int32_t *ids = malloc(n * 4);
  qiao_dev_buffer *x = buf(t, in, n * cols * 4), *o = buf(t, NULL, n * 4);
  qiao_dev_argmax_args a = {
      .struct_size = sizeof(a), .rows = n, .cols = cols, .x = ref(x), .out = ref(o)};
  EXPECT_OK(api->argmax(t->queue, &a));
  get(t, ids, o, n * 4);
  for (uint64_t r = 0; r < n; r++)
    out[r] = (float)ids[r];
  api->buffer_destroy(x);
  api->buffer_destroy(o);
  free(ids);
}

typedef struct embed_ctx {
  qiao_dev_dtype dtype;
  const uint8_t *table;
  uint64_t vocab, dim;
} embed_ctx;

static void embed_gen(const void *ctx, float *row) {
  row[0] = (float)(rnd_u32() % ((const embed_ctx *)ctx)->vocab);
}

static void embed_run(env *t, const void *ctx, uint64_t n, const float *in, float *out) {
  const embed_ctx *c = ctx;
  int32_t *ids = malloc(n * 4);
  for (uint64_t r = 0; r < n; r++)
    ids[r] = (int32_t)in[r];
  qiao_dev_buffer *tb = buf(t, c->table, c->vocab * row_bytes(c->dtype, c->dim));
  qiao_dev_buffer *ib = buf(t, ids, n * 4), *o = buf(t, NULL, n * c->dim * 4);
  qiao_dev_embed_args a = {.struct_size = sizeof(a),
                           .n_tokens = n,
                           .vocab = c->vocab,
                           .dim = c->dim,
                           .table_dtype = c->dtype,
                           .table = ref(tb),
                           .ids = ref(ib),
                           .out = ref(o)};
  EXPECT_OK(api->embed(t->queue, &a));
  get(t, out, o, n * c->dim * 4);
  api->buffer_destroy(tb);
  api->buffer_destroy(ib);
  api->buffer_destroy(o);
  free(ids);
}

/* ---- moe_gate (ids as floats, then weights) and moe_combine ----------------------- */
enum { GATE_EXPERTS = 8, COMBINE_DIM = 100 };

static void gate_gen(const void *ctx, float *row) {
  gen_uniform(ctx, row, GATE_EXPERTS);
}

static void gate_run(env *t, const void *ctx, uint64_t n, const float *in, float *out) {
  uint32_t normalize = *(const uint32_t *)ctx;
  int32_t *ids = malloc(n * K_SEL * 4);
  float *w = malloc(n * K_SEL * 4);
  qiao_dev_buffer *l = buf(t, in, n * GATE_EXPERTS * 4), *ib = buf(t, NULL, n * K_SEL * 4);
  qiao_dev_buffer *wb = buf(t, NULL, n * K_SEL * 4);
  qiao_dev_moe_gate_args a = {.struct_size = sizeof(a),
                              .n_tokens = n,
                              .n_experts = GATE_EXPERTS,
                              .k = K_SEL,
                              .normalize = normalize,
                              .logits = ref(l),
                              .ids = ref(ib),
                              .weights = ref(wb)};
  EXPECT_OK(api->moe_gate(t->queue, &a));
  get(t, ids, ib, n * K_SEL * 4);
  get(t, w, wb, n * K_SEL * 4);
  for (uint64_t r = 0; r < n; r++)
    for (int i = 0; i < K_SEL; i++) {
      out[r * 2 * K_SEL + (uint64_t)i] = (float)ids[r * K_SEL + (uint64_t)i];
      out[r * 2 * K_SEL + K_SEL + (uint64_t)i] = w[r * K_SEL + (uint64_t)i];
    }
  api->buffer_destroy(l);
  api->buffer_destroy(ib);
  api->buffer_destroy(wb);
  free(ids);
  free(w);
}

/* A row: K weights, K * dim of x, then dim of the previous out (accumulated). */
static void combine_gen(const void *ctx, float *row) {
  gen_uniform(ctx, row, K_SEL + K_SEL * COMBINE_DIM + COMBINE_DIM);
}

static void combine_run(env *t, const void *ctx, uint64_t n, const float *in, float *out) {
  (void)ctx;
  const uint64_t len = K_SEL + K_SEL * COMBINE_DIM + COMBINE_DIM;
  float *w = malloc(n * K_SEL * 4), *x = malloc(n * K_SEL * COMBINE_DIM * 4);
  for (uint64_t r = 0; r < n; r++) {
    memcpy(w + r * K_SEL, in + r * len, K_SEL * 4);
    memcpy(x + r * K_SEL * COMBINE_DIM, in + r * len + K_SEL, K_SEL * COMBINE_DIM * 4);
    memcpy(out + r * COMBINE_DIM, in + r * len + K_SEL + K_SEL * COMBINE_DIM, COMBINE_DIM * 4);
  }
  qiao_dev_buffer *wb = buf(t, w, n * K_SEL * 4), *xb = buf(t, x, n * K_SEL * COMBINE_DIM * 4);
  qiao_dev_buffer *o = buf(t, out, n * COMBINE_DIM * 4);
  qiao_dev_moe_combine_args a = {.struct_size = sizeof(a),
                                 .n_tokens = n,
                                 .k = K_SEL,
                                 .dim = COMBINE_DIM,
                                 .accumulate = 1,
                                 .x = ref(xb),
                                 .weights = ref(wb),
                                 .out = ref(o)};
  EXPECT_OK(api->moe_combine(t->queue, &a));
  get(t, out, o, n * COMBINE_DIM * 4);
  api->buffer_destroy(wb);
  api->buffer_destroy(xb);
  api->buffer_destroy(o);
  free(w);
  free(x);
}

static void small_op_checks(env *alone, env *many) {
  static const uint64_t norm_cols[] = {1, 7, 64, 4000};
  for (size_t i = 0; i < 4; i++) {
    char what[64];
    snprintf(what, sizeof(what), "rmsnorm cols=%llu", (unsigned long long)norm_cols[i]);
    row_op op = {what, rmsnorm_run, rmsnorm_gen, &norm_cols[i], norm_cols[i], norm_cols[i]};
    check_rows(&op, alone, many, NULL, NULL, NULL);
  }
  const rope_ctx ropes[2] = {{3, 64, 64, QIAO_DEV_ROPE_NORMAL}, {2, 40, 24, QIAO_DEV_ROPE_NEOX}};
  for (int i = 0; i < 2; i++) {
    uint64_t len = ropes[i].n_heads * ropes[i].head_dim;
    row_op op = {
        i ? "rope neox partial" : "rope normal", rope_run, rope_gen, &ropes[i], len + 1, len};
    check_rows(&op, alone, many, NULL, NULL, NULL);
  }
  const binary_ctx binaries[4] = {{37, 1}, {2100, 1}, {37, 0}, {2100, 0}};
  for (int i = 0; i < 4; i++) {
    char what[64];
    snprintf(what, sizeof(what), "%s len=%llu", binaries[i].swiglu ? "swiglu" : "add",
             (unsigned long long)binaries[i].len);
    row_op op = {what, binary_run, binary_gen, &binaries[i], 2 * binaries[i].len, binaries[i].len};
    check_rows(&op, alone, many, NULL, NULL, NULL);
  }
  const uint64_t argmax_cols = 1000;
  row_op am = {"argmax cols=1000", argmax_run, argmax_gen, &argmax_cols, argmax_cols, 1};
  check_rows(&am, alone, many, NULL, NULL, NULL);
  for (uint32_t normalize = 0; normalize < 2; normalize++) {
    row_op op = {normalize ? "moe_gate normalized" : "moe_gate",
                 gate_run,
                 gate_gen,
                 &normalize,
                 GATE_EXPERTS,
                 2 * K_SEL};
    check_rows(&op, alone, many, NULL, NULL, NULL);
  }
  row_op mc = {"moe_combine accumulate",
               combine_run,
               combine_gen,
               NULL,
               K_SEL + K_SEL * COMBINE_DIM + COMBINE_DIM,
               COMBINE_DIM};
  check_rows(&mc, alone, many, NULL, NULL, NULL);
  for (size_t d = 0; d < sizeof(weight_dtypes) / sizeof(weight_dtypes[0]); d++) {
    float *tf = rnd_floats(50 * 64, 1.0f);
    uint8_t *table = encode(weight_dtypes[d], tf, 50, 64);
    embed_ctx c = {weight_dtypes[d], table, 50, 64};
    row_op op = {"embed", embed_run, embed_gen, &c, 1, 64};
    check_rows(&op, alone, many, NULL, NULL, NULL);
    free(tf);
    free(table);
  }
}

/* ---- attention -----------------------------------------------------------------
 * Logical sequences (their keys and values by position) are laid out in a
 * fresh paged cache for every call: the target sequence alone in blocks of
 * 16 in order, or among other sequences in blocks of 5 handed out shuffled,
 * with every slot no token attends holding NaN. The target token (at the
 * last position of its sequence) must get the same output either way. */
enum { A_HEADS = 4, A_KV_HEADS = 2, MAX_SEQS = 6, MAX_LEN = 90 };

typedef struct a_seq {
  uint64_t len;
  float *kv; /* (2, len, kv_dim): keys then values */
} a_seq;

typedef struct a_layout {
  uint64_t block_size, n_blocks, max_blocks;
  int32_t *table; /* (n_seqs, max_blocks) */
} a_layout;

static uint64_t a_kv_dim(uint64_t hd) {
  return A_KV_HEADS * hd;
}

/* Writes the sequences' keys and values into two caches of `dtype` (bytes,
 * the same layout), blocks shuffled when `shuffle`; unused slots are NaN. */
static void a_cache(const a_seq *seqs, int n_seqs, uint64_t hd, qiao_dev_dtype dtype,
                    uint64_t block_size, bool shuffle, a_layout *lay, uint8_t *caches[2]) {
  uint64_t kv_dim = a_kv_dim(hd), total = 0, max_blocks = 0;
  for (int s = 0; s < n_seqs; s++) {
    uint64_t b = (seqs[s].len + block_size - 1) / block_size;
    total += b;
    if (b > max_blocks) max_blocks = b;
  }
  total += 3; /* spare blocks nobody uses */
  uint64_t *order = malloc(total * 8);
  for (uint64_t i = 0; i < total; i++)
    order[i] = i;
  for (uint64_t i = total; shuffle && i > 1; i--) {
    uint64_t j = rnd_u32() % i, tmp = order[i - 1];
    order[i - 1] = order[j];
    order[j] = tmp;
  }
  lay->block_size = block_size;
  lay->n_blocks = total;
  lay->max_blocks = max_blocks;
  lay->table = malloc((uint64_t)n_seqs * max_blocks * 4 + 4);
  uint64_t next = 0;
  for (int s = 0; s < n_seqs; s++)
    for (uint64_t b = 0; b < max_blocks; b++)
      lay->table[(uint64_t)s * max_blocks + b] =
          b * block_size < seqs[s].len ? (int32_t)order[next++] : -1;
  uint64_t esz = dtype == QIAO_DEV_F16 ? 2 : 4, slots = total * block_size;
  for (int c = 0; c < 2; c++) {
    uint8_t *cache = malloc(slots * kv_dim * esz);
    for (uint64_t i = 0; i < slots * kv_dim; i++) {
      uint16_t h = 0x7e00; /* NaN */
      float f = NAN;
      memcpy(cache + esz * i, esz == 2 ? (const void *)&h : (const void *)&f, esz);
    }
    for (int s = 0; s < n_seqs; s++)
      for (uint64_t j = 0; j < seqs[s].len; j++) {
        uint64_t slot =
            (uint64_t)lay->table[(uint64_t)s * max_blocks + j / block_size] * block_size +
            j % block_size;
        const float *row = seqs[s].kv + ((uint64_t)c * seqs[s].len + j) * kv_dim;
        for (uint64_t i = 0; i < kv_dim; i++) {
          uint16_t h = to_f16(row[i]);
          memcpy(cache + (slot * kv_dim + i) * esz,
                 esz == 2 ? (const void *)&h : (const void *)&row[i], esz);
        }
      }
    caches[c] = cache;
  }
  free(order);
}

/* Runs attention for n tokens (seq, pos, q rows) over the sequences. */
static void a_run(env *t, const a_seq *seqs, int n_seqs, uint64_t hd, qiao_dev_dtype dtype,
                  uint64_t window, uint64_t block_size, bool shuffle, uint64_t n,
                  const int32_t *tok_seq, const int32_t *tok_pos, const float *q, float *out) {
  a_layout lay;
  uint8_t *caches[2];
  a_cache(seqs, n_seqs, hd, dtype, block_size, shuffle, &lay, caches);
  uint8_t *kc = caches[0], *vc = caches[1];
  uint64_t kv_dim = a_kv_dim(hd), esz = dtype == QIAO_DEV_F16 ? 2 : 4;
  uint64_t n_slots = lay.n_blocks * block_size, q_len = A_HEADS * hd;
  qiao_dev_buffer *qb = buf(t, q, n * q_len * 4), *kb = buf(t, kc, n_slots * kv_dim * esz);
  qiao_dev_buffer *vb = buf(t, vc, n_slots * kv_dim * esz);
  qiao_dev_buffer *tb = buf(t, lay.table, (uint64_t)n_seqs * lay.max_blocks * 4);
  qiao_dev_buffer *sb = buf(t, tok_seq, n * 4), *pb = buf(t, tok_pos, n * 4);
  qiao_dev_buffer *ob = buf(t, NULL, n * q_len * 4);
  qiao_dev_attention_args a = {.struct_size = sizeof(a),
                               .n_tokens = n,
                               .n_heads = A_HEADS,
                               .n_kv_heads = A_KV_HEADS,
                               .head_dim = hd,
                               .n_seqs = (uint64_t)n_seqs,
                               .max_blocks_per_seq = lay.max_blocks,
                               .block_size = block_size,
                               .n_slots = n_slots,
                               .window = window,
                               .scale = 1.0f / sqrtf((float)hd),
                               .cache_dtype = dtype,
                               .q = ref(qb),
                               .k_cache = ref(kb),
                               .v_cache = ref(vb),
                               .block_table = ref(tb),
                               .token_seq = ref(sb),
                               .token_pos = ref(pb),
                               .out = ref(ob)};
  EXPECT_OK(api->attention(t->queue, &a));
  get(t, out, ob, n * q_len * 4);
  qiao_dev_buffer *all[] = {qb, kb, vb, tb, sb, pb, ob};
  for (int i = 0; i < 7; i++)
    api->buffer_destroy(all[i]);
  free(kc);
  free(vc);
  free(lay.table);
}

static void attention_checks(env *alone, env *many) {
  static const qiao_dev_dtype dtypes[2] = {QIAO_DEV_F32, QIAO_DEV_F16};
  static const uint64_t hds[2] = {64, 40}, windows[2] = {0, 7};
  for (int d = 0; d < 2; d++)
    for (int h = 0; h < 2; h++)
      for (int wi = 0; wi < 2; wi++) {
        uint64_t hd = hds[h], kv_dim = a_kv_dim(hd), q_len = A_HEADS * hd, window = windows[wi];
        a_seq target = {70, rnd_floats(2 * 70 * kv_dim, 1.0f)};
        float *tq = rnd_floats(q_len, 1.0f), *base = malloc(q_len * 4);
        int32_t s0 = 0, p0 = 69;
        a_run(alone, &target, 1, hd, dtypes[d], window, 16, false, 1, &s0, &p0, tq, base);
        for (size_t si = 0; si < N_SIZES; si++) {
          uint64_t n = batch_sizes[si];
          /* The target among 1 to 5 other sequences of 1 to 90 positions. */
          a_seq seqs[MAX_SEQS];
          int n_seqs = 2 + (int)(rnd_u32() % (MAX_SEQS - 1)), at = (int)(rnd_u32() % n_seqs);
          for (int s = 0; s < n_seqs; s++) {
            if (s == at) {
              seqs[s] = target;
              continue;
            }
            seqs[s].len = 1 + rnd_u32() % MAX_LEN;
            seqs[s].kv = rnd_floats(2 * seqs[s].len * kv_dim, 1.0f);
          }
          int32_t *ts = malloc(n * 4), *tp = malloc(n * 4);
          float *q = rnd_floats(n * q_len, 1.0f), *out = malloc(n * q_len * 4);
          uint64_t pos = si % 3 == 0 ? 0 : si % 3 == 1 ? n / 2 : n - 1;
          for (uint64_t i = 0; i < n; i++) { /* other tokens: any sequence, any position */
            int s = (int)(rnd_u32() % n_seqs);
            ts[i] = s;
            tp[i] = (int32_t)(rnd_u32() % seqs[s].len);
          }
          ts[pos] = at;
          tp[pos] = 69;
          memcpy(q + pos * q_len, tq, q_len * 4);
          a_run(n % 2 ? alone : many, seqs, n_seqs, hd, dtypes[d], window, 5, true, n, ts, tp, q,
                out);
          int j = first_difference(out + pos * q_len, base, q_len);
          if (j >= 0) {
            fprintf(stderr,
                    "%s attention dtype %d head_dim %llu window %llu: token %llu of n=%llu "
                    "(%d sequences) differs from the token alone (element %d)\n",
                    alone->isa, (int)dtypes[d], (unsigned long long)hd, (unsigned long long)window,
                    (unsigned long long)pos, (unsigned long long)n, n_seqs, j);
            failures++;
          }
          for (int s = 0; s < n_seqs; s++)
            if (s != at) free(seqs[s].kv);
          free(ts);
          free(tp);
          free(q);
          free(out);
        }
        free(target.kv);
        free(tq);
        free(base);
      }
}

/* Every check on two devices opened in the mode (and one in the ordinary
 * mode, for the information line of matmul); returns whether all passed. */
static int check_all_ops(env *alone, env *many, env *plain) {
  int before = failures;
  matmul_checks(alone, many, plain);
  experts_checks(alone, many);
  small_op_checks(alone, many);
  attention_checks(alone, many);
  printf("%s: %s\n", alone->isa, failures == before ? "every op batch-invariant" : "FAILED");
  return failures == before;
}

#endif
