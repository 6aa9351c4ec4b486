/* Batch invariance (device-abi.md §10.4, §12.1) of matmul_experts, with
 * exact activations and (ABI 1.5, §15.1) with Q8 activations allowed: a
 * target token's k outputs computed alone (n_tokens = 1) must be
 * bit-identical inside calls of 2, 3, 5, 8, 17 and 33 tokens, at the first,
 * a middle and the last position, among random tokens routed to random
 * experts (some shared with the target's, some not), for x_per_slot 0
 * and 1. Part of the ops level on a device that claims the mode. */
#include <stdlib.h>
#include <string.h>

#include "conformance/harness.h"
#include "conformance/invariance.h"
#include "core/status_internal.h"

enum { K = 3, N_EXPERTS = 7, OUT_DIM = 45, MAX_TOKENS = 33 };

static const uint64_t sizes[] = {2, 3, 5, 8, 17, 33};

/* out (n * K, OUT_DIM) of n tokens' rows of x (x_per_slot: K rows each). */
static qiao_status *experts_rows(qiao__cf_inv *x, qiao_dev_dtype dt, const void *w, uint64_t in_dim,
                                 uint64_t n, uint32_t x_per_slot, const float *xs,
                                 const int32_t *ids, uint32_t precision, float *out) {
  qiao__cf_inv_bufs bs = {0};
  qiao_dev_ref xr, wr, ir, outr;
  uint64_t x_rows = x_per_slot ? n * K : n;
  qiao_status *st = qiao__cf_inv_upload(x, &bs, xs, x_rows * in_dim * 4, &xr);
  if (st == NULL)
    st =
        qiao__cf_inv_upload(x, &bs, w, qiao__cf_dtype_bytes(dt, N_EXPERTS * OUT_DIM * in_dim), &wr);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, ids, n * K * 4, &ir);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, NULL, n * K * OUT_DIM * 4, &outr);
  if (st == NULL) {
    qiao_dev_matmul_experts_args a = {.struct_size = sizeof(a),
                                      .n_tokens = n,
                                      .k = K,
                                      .n_experts = N_EXPERTS,
                                      .in_dim = in_dim,
                                      .out_dim = OUT_DIM,
                                      .x_per_slot = x_per_slot,
                                      .x_precision = precision,
                                      .x = xr,
                                      .w_dtype = dt,
                                      .w = wr,
                                      .ids = ir,
                                      .out = outr};
    st = qiao__cf_dev_status(x->dev, x->dev->api->matmul_experts(x->dev->queue, &a),
                             "matmul_experts");
  }
  if (st == NULL)
    st = qiao__cf_dev_status(
        x->dev, x->dev->api->download(x->dev->queue, out, outr, n * K * OUT_DIM * 4), "download");
  if (st == NULL)
    st = qiao__cf_dev_status(x->dev, x->dev->api->queue_synchronize(x->dev->queue), "synchronize");
  qiao__cf_inv_release(x, &bs);
  return st;
}

static void experts_case(qiao__cf_inv *x, qiao_dev_dtype dt, uint64_t in_dim, uint32_t x_per_slot,
                         uint32_t precision) {
  char shape[160], why[256] = "";
  snprintf(shape, sizeof(shape),
           "n_tokens=1..33 k=%d n_experts=%d in_dim=%llu out_dim=%d x_per_slot=%u%s "
           "batch-invariant",
           K, N_EXPERTS, (unsigned long long)in_dim, OUT_DIM, x_per_slot,
           precision == QIAO_DEV_PRECISION_Q8 ? " x_precision=Q8" : "");
  uint64_t per_token = x_per_slot ? K : 1; /* rows of x per token */
  void *w = qiao__cf_random_weights(&x->rng, dt, N_EXPERTS * OUT_DIM * in_dim);
  float *target = malloc(per_token * in_dim * 4), *alone = malloc(K * OUT_DIM * 4);
  float *xs = malloc(MAX_TOKENS * per_token * in_dim * 4);
  float *out = malloc(MAX_TOKENS * K * OUT_DIM * 4);
  int32_t target_ids[K] = {5, 1, 3}, *ids = malloc(MAX_TOKENS * K * 4);
  bool pass = w && target && alone && xs && out && ids;
  if (!pass) snprintf(why, sizeof(why), "out of memory building inputs");
  for (uint64_t i = 0; pass && i < per_token * in_dim; i++)
    target[i] = qiao__cf_uniform(&x->rng, -1, 1);
  qiao_status *st =
      pass ? experts_rows(x, dt, w, in_dim, 1, x_per_slot, target, target_ids, precision, alone)
           : NULL;
  for (size_t s = 0; pass && st == NULL && s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    uint64_t n = sizes[s], rows[3];
    int count = qiao__cf_inv_target_rows(n, rows);
    for (uint64_t i = 0; i < n * per_token * in_dim; i++)
      xs[i] = qiao__cf_uniform(&x->rng, -1, 1);
    for (uint64_t i = 0; i < n * K; i++)
      ids[i] = (int32_t)qiao__cf_below(&x->rng, N_EXPERTS);
    for (int r = 0; r < count; r++) {
      memcpy(xs + rows[r] * per_token * in_dim, target, per_token * in_dim * 4);
      memcpy(ids + rows[r] * K, target_ids, sizeof(target_ids));
    }
    st = experts_rows(x, dt, w, in_dim, n, x_per_slot, xs, ids, precision, out);
    if (st == NULL && pass)
      pass = qiao__cf_inv_rows_match(out, alone, K * OUT_DIM, rows, count, n, "token", "n_tokens",
                                     "", why, sizeof(why));
  }
  qiao__cf_inv_record(x, QIAO_DEV_OP_MATMUL_EXPERTS, dt, shape, pass, why, st);
  free(w);
  free(target);
  free(alone);
  free(xs);
  free(out);
  free(ids);
}

void qiao__cf_run_invariance_1_5(qiao_conformance_report *report, cf_device *inv, uint64_t seed,
                                 uint32_t op_mask) {
  if (op_mask != 0 && !(op_mask & (1u << QIAO_DEV_OP_MATMUL_EXPERTS))) return;
  qiao__cf_inv x = {report, inv, {seed ^ 0x15150015u}};
  const qiao_dev_api *api = inv->api;
  for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
    if (api->abi_minor < qiao_dev_dtype_abi_minor((qiao_dev_dtype)dt)) continue;
    uint32_t claimed = 0;
    qiao_dev_error *e =
        api->op_supported(inv->device, QIAO_DEV_OP_MATMUL_EXPERTS, (qiao_dev_dtype)dt, &claimed);
    if (e != NULL) api->error_destroy(e);
    if (!claimed) continue;
    qiao__cf_progress(report, "ops: batch invariance of matmul_experts %s",
                      qiao_dev_dtype_name((qiao_dev_dtype)dt));
    uint64_t in_dim = qiao__cf_row_len((qiao_dev_dtype)dt, 288, 288);
    for (uint32_t per_slot = 0; per_slot < 2; per_slot++) {
      experts_case(&x, (qiao_dev_dtype)dt, in_dim, per_slot, QIAO_DEV_PRECISION_EXACT);
      if (api->abi_minor >= 5)
        experts_case(&x, (qiao_dev_dtype)dt, in_dim, per_slot, QIAO_DEV_PRECISION_Q8);
    }
  }
}
