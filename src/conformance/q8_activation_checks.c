/* Q8 activations (docs/spec/device-abi.md §11.4, ABI 1.2), part of the ops
 * level (§12.1). For every weight dtype the device claims matmul for, a
 * matmul given x_precision = QIAO_DEV_PRECISION_Q8 must come back either
 *   - "exact": within matmul's budget (§11.2) of the definition on the F32
 *     activations (the backend did not quantize: always allowed), or
 *   - "q8": within the class budget (§11.4) of the definition on the
 *     activations quantized as §11.4 says,
 * and which one is recorded in the report. A row holding a non-finite value
 * must come back non-finite; the other rows stay right. Plugins built for
 * ABI 1.0 or 1.1 never read the field: the check is skipped for them. Both
 * references are evaluated here in float64 from the spec's formulas.
 * matmul_experts (§15.1, ABI 1.5) the same way, for every weight dtype the
 * device claims it for, with x_per_slot 0 and 1: each (token, slot) pair's
 * row of x quantized as §11.4 says, times its expert's weights; skipped for
 * plugins of ABI 1.4 and older, which read those bytes as padding. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/harness.h"
#include "conformance/reference.h"
#include "core/status_internal.h"

#define Q8_BUDGET 1e-3

typedef struct qcase {
  uint64_t n, k, m;
} qcase;

/* Decode, a few rows, a prefill block; one block, several, a long k. */
static const qcase cases[] = {{1, 32, 17}, {3, 96, 64}, {11, 4128, 33}, {33, 256, 40}};

/* The §11.4 quantization of one block of 32 activations, in binary32. */
static void quantize_block(const float *x, float q[32], float *d) {
  float amax = 0.0f;
  for (int i = 0; i < 32; i++)
    amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
  *d = amax / 127.0f;
  for (int i = 0; i < 32; i++) {
    float v = *d == 0.0f ? 0.0f : nearbyintf(x[i] / *d);
    q[i] = v > 127.0f ? 127.0f : v < -127.0f ? -127.0f : v;
  }
}

/* Both references of out (n, m) = x (n, k) @ w (m, k)^T, in float64 rounded
 * once to binary32. */
static void references_at(const float *x, const void *w, uint64_t w0, qiao_dev_dtype dt, uint64_t n,
                          uint64_t k, uint64_t m, float *exact, float *q8) {
  double *wrow = malloc(k * sizeof(double));
  float qb[32];
  for (uint64_t j = 0; wrow && j < m; j++) {
    for (uint64_t i = 0; i < k; i++)
      wrow[i] = qiao__cf_ref_element(w, dt, w0 + j * k + i);
    for (uint64_t r = 0; r < n; r++) {
      const float *xr = x + r * k;
      double e = 0.0, s = 0.0;
      for (uint64_t b = 0; b < k / 32; b++) {
        float d;
        quantize_block(xr + b * 32, qb, &d);
        double block = 0.0;
        for (int i = 0; i < 32; i++) {
          e += (double)xr[b * 32 + (uint64_t)i] * wrow[b * 32 + (uint64_t)i];
          block += (double)qb[i] * wrow[b * 32 + (uint64_t)i];
        }
        s += (double)d * block;
      }
      exact[r * m + j] = (float)e;
      q8[r * m + j] = (float)s;
    }
  }
  free(wrow);
}
static void references(const float *x, const void *w, qiao_dev_dtype dt, uint64_t n, uint64_t k,
                       uint64_t m, float *exact, float *q8) {
  references_at(x, w, 0, dt, n, k, m, exact, q8);
}

/* Runs the target's matmul with Q8 activations; out (n, m). */
static qiao_status *run_matmul(cf_device *dev, const float *x, const void *w, qiao_dev_dtype dt,
                               uint64_t n, uint64_t k, uint64_t m, float *out) {
  const qiao_dev_api *api = dev->api;
  qiao_dev_buffer *bx = NULL, *bw = NULL, *bo = NULL;
  uint64_t wbytes = qiao__cf_dtype_bytes(dt, m * k);
  qiao_status *st = qiao__cf_dev_status(dev, api->buffer_create(dev->device, n * k * 4, &bx), "x");
  if (st == NULL) st = qiao__cf_dev_status(dev, api->buffer_create(dev->device, wbytes, &bw), "w");
  if (st == NULL)
    st = qiao__cf_dev_status(dev, api->buffer_create(dev->device, n * m * 4, &bo), "out");
  if (st == NULL)
    st = qiao__cf_dev_status(dev, api->upload(dev->queue, (qiao_dev_ref){bx, 0}, x, n * k * 4),
                             "upload");
  if (st == NULL)
    st = qiao__cf_dev_status(dev, api->upload(dev->queue, (qiao_dev_ref){bw, 0}, w, wbytes),
                             "upload");
  if (st == NULL) {
    qiao_dev_matmul_args a = {.struct_size = sizeof(a),
                              .n = n,
                              .k = k,
                              .m = m,
                              .x = {bx, 0},
                              .w_dtype = dt,
                              .w = {bw, 0},
                              .out = {bo, 0},
                              .x_precision = QIAO_DEV_PRECISION_Q8};
    st = qiao__cf_dev_status(dev, api->matmul(dev->queue, &a), "matmul");
  }
  if (st == NULL)
    st = qiao__cf_dev_status(dev, api->download(dev->queue, out, (qiao_dev_ref){bo, 0}, n * m * 4),
                             "download");
  if (st == NULL) st = qiao__cf_dev_status(dev, api->queue_synchronize(dev->queue), "synchronize");
  api->buffer_destroy(bx);
  api->buffer_destroy(bw);
  api->buffer_destroy(bo);
  return st;
}

/* Random activations with what real ones have: blocks of zeros, a block of
 * tiny values beside large ones, outliers. */
static void activations(cf_rng *rng, float *x, uint64_t n, uint64_t k) {
  for (uint64_t i = 0; i < n * k; i++)
    x[i] = qiao__cf_uniform(rng, -1, 1);
  for (uint64_t r = 0; r < n; r++) {
    float *row = x + r * k;
    if (k >= 64) memset(row + 32, 0, 32 * sizeof(float)); /* a zero block */
    row[qiao__cf_below(rng, k)] *= 50.0f;                 /* an outlier */
    if (r % 2 == 1)
      for (uint64_t i = 0; i < 32; i++) /* a block of tiny values */
        row[i] *= 1e-6f;
  }
}

static void record_op(qiao_conformance_report *report, qiao_dev_op op, qiao_dev_dtype dt,
                      const char *shape, const char *result, double err_exact, double err_q8,
                      const char *why) {
  json_object *j = json_object_new_object();
  json_object_object_add(j, "op", json_object_new_string(qiao_dev_op_name(op)));
  json_object_object_add(j, "dtype", json_object_new_string(qiao_dev_dtype_name(dt)));
  json_object_object_add(j, "shape", json_object_new_string(shape));
  json_object_object_add(j, "check", json_object_new_string("q8_activations"));
  json_object_object_add(j, "result", json_object_new_string(result));
  if (isfinite(err_exact))
    json_object_object_add(j, "error_exact", json_object_new_double(err_exact));
  if (isfinite(err_q8)) json_object_object_add(j, "error_q8", json_object_new_double(err_q8));
  json_object_object_add(j, "budget_exact", json_object_new_double(qiao__cf_budget(op, dt)));
  json_object_object_add(j, "budget_q8", json_object_new_double(Q8_BUDGET));
  json_object_array_add(report->ops, j);
  report->area_ops.checks++;
  if (why != NULL) {
    report->failed[op][dt] = true;
    json_object_object_add(j, "detail", json_object_new_string(why));
    qiao__cf_fail(report, &report->area_ops, "%s %s [%s]: %s", qiao_dev_op_name(op),
                  qiao_dev_dtype_name(dt), shape, why);
  }
}
static void record(qiao_conformance_report *report, qiao_dev_dtype dt, const char *shape,
                   const char *result, double err_exact, double err_q8, const char *why) {
  record_op(report, QIAO_DEV_OP_MATMUL, dt, shape, result, err_exact, err_q8, why);
}

/* Records the verdict on out (rows, cols): "exact" within op's budget of
 * the exact reference, "q8" within Q8_BUDGET of the Q8 one, or a failure. */
static void judge(qiao_conformance_report *report, qiao_dev_op op, qiao_dev_dtype dt,
                  const char *shape, const float *got, const float *exact, const float *q8,
                  uint64_t rows, uint64_t cols) {
  char why[320];
  uint64_t row_e = 0, row_q = 0;
  double err_exact = qiao__cf_row_error(got, exact, rows, cols, &row_e);
  double err_q8 = qiao__cf_row_error(got, q8, rows, cols, &row_q);
  if (err_exact <= qiao__cf_budget(op, dt)) {
    record_op(report, op, dt, shape, "pass: exact", err_exact, err_q8, NULL);
  } else if (err_q8 <= Q8_BUDGET) {
    record_op(report, op, dt, shape, "pass: q8", err_exact, err_q8, NULL);
  } else {
    snprintf(why, sizeof(why),
             "error %.3g > budget %.3g against the Q8 activations of §11.4 (worst row %llu), and "
             "%.3g > %.3g against the exact ones (worst row %llu)",
             err_q8, Q8_BUDGET, (unsigned long long)row_q, err_exact, qiao__cf_budget(op, dt),
             (unsigned long long)row_e);
    record_op(report, op, dt, shape, "fail", err_exact, err_q8, why);
  }
}

static void check_case(qiao_conformance_report *report, cf_device *target, cf_rng *rng,
                       qiao_dev_dtype dt, const qcase *c) {
  char shape[128], why[320];
  snprintf(shape, sizeof(shape), "n=%llu k=%llu m=%llu x_precision=Q8", (unsigned long long)c->n,
           (unsigned long long)c->k, (unsigned long long)c->m);
  float *x = malloc(c->n * c->k * 4), *got = malloc(c->n * c->m * 4);
  float *exact = malloc(c->n * c->m * 4), *q8 = malloc(c->n * c->m * 4);
  void *w = qiao__cf_random_weights(rng, dt, c->m * c->k);
  if (!x || !got || !exact || !q8 || !w) {
    record(report, dt, shape, "fail", NAN, NAN, "out of memory building the inputs");
    goto done;
  }
  activations(rng, x, c->n, c->k);
  uint64_t bad_row = c->n > 1 ? 1 : c->n; /* a non-finite value in row 1 */
  if (bad_row < c->n) x[bad_row * c->k + c->k / 2] = INFINITY;
  references(x, w, dt, c->n, c->k, c->m, exact, q8);
  qiao_status *st = run_matmul(target, x, w, dt, c->n, c->k, c->m, got);
  if (st != NULL) {
    snprintf(why, sizeof(why), "%s", qiao_status_message(st));
    qiao_status_free(st);
    record(report, dt, shape, "fail", NAN, NAN, why);
    goto done;
  }
  if (bad_row < c->n) { /* that row: every output non-finite; then left out */
    for (uint64_t j = 0; j < c->m; j++)
      if (isfinite(got[bad_row * c->m + j])) {
        snprintf(why, sizeof(why),
                 "row %llu holds +inf but out[%llu, %llu] = %.9g is finite (must be non-finite)",
                 (unsigned long long)bad_row, (unsigned long long)bad_row, (unsigned long long)j,
                 (double)got[bad_row * c->m + j]);
        record(report, dt, shape, "fail", NAN, NAN, why);
        goto done;
      }
    for (uint64_t j = 0; j < c->m; j++)
      got[bad_row * c->m + j] = exact[bad_row * c->m + j] = q8[bad_row * c->m + j] = 0.0f;
  }
  judge(report, QIAO_DEV_OP_MATMUL, dt, shape, got, exact, q8, c->n, c->m);
done:
  free(x);
  free(got);
  free(exact);
  free(q8);
  free(w);
}

/* ---- matmul_experts (§15.1) ------------------------------------------------ */
typedef struct ecase {
  uint64_t n_tokens, k, n_experts, in_dim, out_dim;
} ecase;

/* Decode with 2 of 4 experts, a few tokens, a long row. */
static const ecase expert_cases[] = {{1, 2, 4, 32, 17}, {5, 3, 6, 288, 33}, {9, 2, 3, 1056, 20}};

/* Runs the target's matmul_experts with Q8 activations; out (n_pairs, out_dim). */
static qiao_status *run_experts(cf_device *dev, const float *x, uint64_t x_rows, const void *w,
                                const int32_t *ids, qiao_dev_dtype dt, const ecase *c,
                                uint32_t x_per_slot, float *out) {
  const qiao_dev_api *api = dev->api;
  qiao_dev_buffer *bx = NULL, *bw = NULL, *bi = NULL, *bo = NULL;
  uint64_t n_pairs = c->n_tokens * c->k;
  uint64_t wbytes = qiao__cf_dtype_bytes(dt, c->n_experts * c->out_dim * c->in_dim);
  uint64_t xbytes = x_rows * c->in_dim * 4, obytes = n_pairs * c->out_dim * 4;
  qiao_status *st = qiao__cf_dev_status(dev, api->buffer_create(dev->device, xbytes, &bx), "x");
  if (st == NULL) st = qiao__cf_dev_status(dev, api->buffer_create(dev->device, wbytes, &bw), "w");
  if (st == NULL)
    st = qiao__cf_dev_status(dev, api->buffer_create(dev->device, n_pairs * 4, &bi), "ids");
  if (st == NULL)
    st = qiao__cf_dev_status(dev, api->buffer_create(dev->device, obytes, &bo), "out");
  if (st == NULL)
    st = qiao__cf_dev_status(dev, api->upload(dev->queue, (qiao_dev_ref){bx, 0}, x, xbytes),
                             "upload");
  if (st == NULL)
    st = qiao__cf_dev_status(dev, api->upload(dev->queue, (qiao_dev_ref){bw, 0}, w, wbytes),
                             "upload");
  if (st == NULL)
    st = qiao__cf_dev_status(dev, api->upload(dev->queue, (qiao_dev_ref){bi, 0}, ids, n_pairs * 4),
                             "upload");
  if (st == NULL) {
    qiao_dev_matmul_experts_args a = {.struct_size = sizeof(a),
                                      .n_tokens = c->n_tokens,
                                      .k = c->k,
                                      .n_experts = c->n_experts,
                                      .in_dim = c->in_dim,
                                      .out_dim = c->out_dim,
                                      .x_per_slot = x_per_slot,
                                      .x_precision = QIAO_DEV_PRECISION_Q8,
                                      .x = {bx, 0},
                                      .w_dtype = dt,
                                      .w = {bw, 0},
                                      .ids = {bi, 0},
                                      .out = {bo, 0}};
    st = qiao__cf_dev_status(dev, api->matmul_experts(dev->queue, &a), "matmul_experts");
  }
  if (st == NULL)
    st = qiao__cf_dev_status(dev, api->download(dev->queue, out, (qiao_dev_ref){bo, 0}, obytes),
                             "download");
  if (st == NULL) st = qiao__cf_dev_status(dev, api->queue_synchronize(dev->queue), "synchronize");
  api->buffer_destroy(bx);
  api->buffer_destroy(bw);
  api->buffer_destroy(bi);
  api->buffer_destroy(bo);
  return st;
}

static void check_experts_case(qiao_conformance_report *report, cf_device *target, cf_rng *rng,
                               qiao_dev_dtype dt, const ecase *c, uint32_t x_per_slot) {
  const qiao_dev_op op = QIAO_DEV_OP_MATMUL_EXPERTS;
  char shape[160], why[320];
  snprintf(shape, sizeof(shape),
           "n_tokens=%llu k=%llu n_experts=%llu in_dim=%llu out_dim=%llu x_per_slot=%u "
           "x_precision=Q8",
           (unsigned long long)c->n_tokens, (unsigned long long)c->k,
           (unsigned long long)c->n_experts, (unsigned long long)c->in_dim,
           (unsigned long long)c->out_dim, x_per_slot);
  uint64_t n_pairs = c->n_tokens * c->k, x_rows = x_per_slot ? n_pairs : c->n_tokens;
  uint64_t outs = n_pairs * c->out_dim;
  float *x = malloc(x_rows * c->in_dim * 4), *got = malloc(outs * 4);
  float *exact = malloc(outs * 4), *q8 = malloc(outs * 4);
  int32_t *ids = malloc(n_pairs * 4);
  void *w = qiao__cf_random_weights(rng, dt, c->n_experts * c->out_dim * c->in_dim);
  if (!x || !got || !exact || !q8 || !ids || !w) {
    record_op(report, op, dt, shape, "fail", NAN, NAN, "out of memory building the inputs");
    goto done;
  }
  activations(rng, x, x_rows, c->in_dim);
  for (uint64_t p = 0; p < n_pairs; p++)
    ids[p] = (int32_t)qiao__cf_below(rng, c->n_experts);
  /* +inf in row 1 of x: the pairs that use it (token 1's, or pair 1) */
  uint64_t bad_row = x_rows > 1 ? 1 : x_rows;
  if (bad_row < x_rows) x[bad_row * c->in_dim + c->in_dim / 2] = INFINITY;
  for (uint64_t p = 0; p < n_pairs; p++) {
    uint64_t row = x_per_slot ? p : p / c->k;
    references_at(x + row * c->in_dim, w, (uint64_t)ids[p] * c->out_dim * c->in_dim, dt, 1,
                  c->in_dim, c->out_dim, exact + p * c->out_dim, q8 + p * c->out_dim);
  }
  qiao_status *st = run_experts(target, x, x_rows, w, ids, dt, c, x_per_slot, got);
  if (st != NULL) {
    snprintf(why, sizeof(why), "%s", qiao_status_message(st));
    qiao_status_free(st);
    record_op(report, op, dt, shape, "fail", NAN, NAN, why);
    goto done;
  }
  for (uint64_t p = 0; p < n_pairs && bad_row < x_rows; p++) {
    if ((x_per_slot ? p : p / c->k) != bad_row) continue;
    for (uint64_t j = 0; j < c->out_dim; j++) { /* every output non-finite; then left out */
      float *o = got + p * c->out_dim + j;
      if (isfinite(*o)) {
        snprintf(why, sizeof(why),
                 "row %llu of x holds +inf but out[%llu, %llu] = %.9g of pair %llu is finite "
                 "(must be non-finite)",
                 (unsigned long long)bad_row, (unsigned long long)p, (unsigned long long)j,
                 (double)*o, (unsigned long long)p);
        record_op(report, op, dt, shape, "fail", NAN, NAN, why);
        goto done;
      }
      *o = exact[p * c->out_dim + j] = q8[p * c->out_dim + j] = 0.0f;
    }
  }
  judge(report, op, dt, shape, got, exact, q8, n_pairs, c->out_dim);
done:
  free(x);
  free(got);
  free(exact);
  free(q8);
  free(ids);
  free(w);
}

static void run_q8_experts(qiao_conformance_report *report, cf_device *target, uint64_t seed) {
  const qiao_dev_api *api = target->api;
  if (api->abi_minor < 5) {
    json_object *j = json_object_new_object();
    json_object_object_add(j, "op", json_object_new_string("matmul_experts"));
    json_object_object_add(j, "check", json_object_new_string("q8_activations"));
    json_object_object_add(j, "result",
                           json_object_new_string("skipped: a plugin of ABI 1.4 or older"));
    json_object_array_add(report->ops, j);
    return;
  }
  cf_rng rng = {seed ^ 0x3e9b27d5u};
  for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
    if (api->abi_minor < qiao_dev_dtype_abi_minor((qiao_dev_dtype)dt)) continue;
    uint32_t claimed = 0;
    qiao_dev_error *e =
        api->op_supported(target->device, QIAO_DEV_OP_MATMUL_EXPERTS, (qiao_dev_dtype)dt, &claimed);
    if (e != NULL) api->error_destroy(e);
    if (!claimed) continue;
    qiao__cf_progress(report, "ops: matmul_experts %s with Q8 activations",
                      qiao_dev_dtype_name((qiao_dev_dtype)dt));
    for (size_t i = 0; i < sizeof(expert_cases) / sizeof(expert_cases[0]); i++)
      for (uint32_t per_slot = 0; per_slot < 2; per_slot++) {
        ecase c = expert_cases[i];
        c.in_dim = qiao__cf_row_len((qiao_dev_dtype)dt, c.in_dim, c.in_dim);
        check_experts_case(report, target, &rng, (qiao_dev_dtype)dt, &c, per_slot);
      }
  }
}

void qiao__cf_run_q8_activations(qiao_conformance_report *report, cf_device *target, uint64_t seed,
                                 uint32_t op_mask) {
  if (op_mask == 0 || (op_mask & (1u << QIAO_DEV_OP_MATMUL_EXPERTS)))
    run_q8_experts(report, target, seed);
  if (op_mask != 0 && !(op_mask & (1u << QIAO_DEV_OP_MATMUL))) return;
  const qiao_dev_api *api = target->api;
  if (api->abi_minor < 2) {
    json_object *j = json_object_new_object();
    json_object_object_add(j, "check", json_object_new_string("q8_activations"));
    json_object_object_add(j, "result",
                           json_object_new_string("skipped: a plugin of ABI 1.0 or 1.1"));
    json_object_array_add(report->ops, j);
    return;
  }
  cf_rng rng = {seed ^ 0x51a8c7e1u};
  for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
    if (api->abi_minor < qiao_dev_dtype_abi_minor((qiao_dev_dtype)dt)) continue;
    uint32_t claimed = 0;
    qiao_dev_error *e =
        api->op_supported(target->device, QIAO_DEV_OP_MATMUL, (qiao_dev_dtype)dt, &claimed);
    if (e != NULL) api->error_destroy(e);
    if (!claimed) continue;
    qiao__cf_progress(report, "ops: matmul %s with Q8 activations",
                      qiao_dev_dtype_name((qiao_dev_dtype)dt));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
      /* k in whole blocks of the dtype (super-blocks of 256 for k-quants) */
      qcase c = cases[i];
      c.k = qiao__cf_row_len((qiao_dev_dtype)dt, c.k, c.k);
      check_case(report, target, &rng, (qiao_dev_dtype)dt, &c);
    }
  }
}
