/* Batch invariance of the ops of ABI 1.4 (docs/spec/device-abi.md §10.4,
 * §14): on a device opened in the batch-invariant mode, a token of
 * attention_latent (its latent rows laid out alone in blocks of 16, then
 * among other sequences in shuffled blocks of 8) and of moe_route computed
 * alone and again inside calls of 2 to 33 tokens, at the first, a middle and
 * the last index, must come back with the same bits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/harness.h"
#include "conformance/invariance.h"
#include "core/status_internal.h"

static const uint64_t batch_sizes[] = {2, 3, 5, 8, 17, 33};
#define N_SIZES (sizeof(batch_sizes) / sizeof(batch_sizes[0]))

/* Downloads `bytes` of out, synchronizes, and frees every buffer. */
static qiao_status *finish(qiao__cf_inv *x, qiao__cf_inv_bufs *bs, qiao_status *st, void *host,
                           qiao_dev_ref out, uint64_t bytes) {
  const qiao_dev_api *api = x->dev->api;
  if (st == NULL)
    st = qiao__cf_dev_status(x->dev, api->download(x->dev->queue, host, out, bytes), "download");
  if (st == NULL)
    st = qiao__cf_dev_status(x->dev, api->queue_synchronize(x->dev->queue), "synchronize");
  qiao__cf_inv_release(x, bs);
  return st;
}

static float *randoms(qiao__cf_inv *x, uint64_t n, float scale) {
  float *p = malloc((n ? n : 1) * 4);
  for (uint64_t i = 0; p && i < n; i++)
    p[i] = qiao__cf_uniform(&x->rng, -scale, scale);
  return p;
}

/* ---- attention_latent ----------------------------------------------------------- */

enum { HEADS = 12, LAT = 72, ROPE = 16, TARGET_LEN = 75, MAX_SEQS = 5, MAX_LEN = 120 };
#define ROW ((uint64_t)LAT + ROPE)
#define QL ((uint64_t)HEADS * LAT)
#define QR ((uint64_t)HEADS * ROPE)

typedef struct seq {
  uint64_t len;
  float *rows; /* (len, ROW) */
} seq;

typedef struct call {
  const seq *seqs;
  int n_seqs;
  uint64_t n, block_size, window;
  const int32_t *tok_seq, *tok_pos;
  const float *ql, *qr;
  bool shuffle;
} call;

static qiao_status *latent_rows(qiao__cf_inv *x, qiao_dev_dtype dt, const call *c, float *out) {
  uint64_t max_blocks = 0, total = 3; /* 3 spare blocks nobody uses */
  for (int s = 0; s < c->n_seqs; s++) {
    uint64_t b = (c->seqs[s].len + c->block_size - 1) / c->block_size;
    total += b;
    if (b > max_blocks) max_blocks = b;
  }
  uint64_t n_slots = total * c->block_size, esz = dt == QIAO_DEV_F16 ? 2 : 4;
  uint64_t *order = malloc(total * 8);
  int32_t *table = malloc((uint64_t)c->n_seqs * max_blocks * 4);
  uint8_t *cache = malloc(n_slots * ROW * esz);
  qiao_status *st = NULL;
  if (!order || !table || !cache)
    st = qiao__error(QIAO_OUT_OF_MEMORY, "out of memory building the cache");
  for (uint64_t i = 0; st == NULL && i < total; i++)
    order[i] = i;
  for (uint64_t i = total; st == NULL && c->shuffle && i > 1; i--) {
    uint64_t j = qiao__cf_below(&x->rng, i), t = order[i - 1];
    order[i - 1] = order[j];
    order[j] = t;
  }
  uint64_t next = 0;
  for (int s = 0; st == NULL && s < c->n_seqs; s++)
    for (uint64_t b = 0; b < max_blocks; b++)
      table[(uint64_t)s * max_blocks + b] =
          b * c->block_size < c->seqs[s].len ? (int32_t)order[next++] : -1;
  for (uint64_t i = 0; st == NULL && i < n_slots * ROW; i++) /* no token attends: NaN */
    qiao__cf_inv_put(cache, dt, i, NAN);
  for (int s = 0; st == NULL && s < c->n_seqs; s++)
    for (uint64_t j = 0; j < c->seqs[s].len; j++) {
      uint64_t slot =
          (uint64_t)table[(uint64_t)s * max_blocks + j / c->block_size] * c->block_size +
          j % c->block_size;
      for (uint64_t i = 0; i < ROW; i++)
        qiao__cf_inv_put(cache, dt, slot * ROW + i, c->seqs[s].rows[j * ROW + i]);
    }
  qiao__cf_inv_bufs bs = {0};
  qiao_dev_ref ql, qr, cr, tb, ts, tp, o = {0};
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, c->ql, c->n * QL * 4, &ql);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, c->qr, c->n * QR * 4, &qr);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, cache, n_slots * ROW * esz, &cr);
  if (st == NULL)
    st = qiao__cf_inv_upload(x, &bs, table, (uint64_t)c->n_seqs * max_blocks * 4, &tb);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, c->tok_seq, c->n * 4, &ts);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, c->tok_pos, c->n * 4, &tp);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, NULL, c->n * QL * 4, &o);
  if (st == NULL) {
    qiao_dev_attention_latent_args a = {.struct_size = sizeof(a),
                                        .n_tokens = c->n,
                                        .n_heads = HEADS,
                                        .latent_dim = LAT,
                                        .rope_dim = ROPE,
                                        .n_seqs = (uint64_t)c->n_seqs,
                                        .max_blocks_per_seq = max_blocks,
                                        .block_size = c->block_size,
                                        .n_slots = n_slots,
                                        .window = c->window,
                                        .scale = 0.1f,
                                        .cache_dtype = dt,
                                        .q_latent = ql,
                                        .q_rope = qr,
                                        .cache = cr,
                                        .block_table = tb,
                                        .token_seq = ts,
                                        .token_pos = tp,
                                        .out = o};
    st = qiao__cf_dev_status(x->dev, x->dev->api->attention_latent(x->dev->queue, &a),
                             "attention_latent");
  }
  st = finish(x, &bs, st, out, o, c->n * QL * 4);
  free(order);
  free(table);
  free(cache);
  return st;
}

static void attention_latent_case(qiao__cf_inv *x, qiao_dev_dtype dt, uint64_t window) {
  char shape[160], why[256] = "";
  snprintf(shape, sizeof(shape),
           "n_tokens=1..33 n_heads=%d latent_dim=%d rope_dim=%d pos=%d window=%llu "
           "batch-invariant",
           HEADS, LAT, ROPE, TARGET_LEN - 1, (unsigned long long)window);
  seq target = {TARGET_LEN, randoms(x, TARGET_LEN * ROW, 1)};
  float *tql = randoms(x, QL, 1), *tqr = randoms(x, QR, 2), *alone = malloc(QL * 4);
  float *ql = malloc(33 * QL * 4), *qr = malloc(33 * QR * 4), *out = malloc(33 * QL * 4);
  int32_t ts[33], tp[33], s0 = 0, p0 = TARGET_LEN - 1;
  bool pass = target.rows && tql && tqr && alone && ql && qr && out;
  if (!pass) snprintf(why, sizeof(why), "out of memory building inputs");
  qiao_status *st = NULL;
  if (pass) {
    call c = {&target, 1, 1, 16, window, &s0, &p0, tql, tqr, false};
    st = latent_rows(x, dt, &c, alone);
  }
  for (size_t si = 0; pass && st == NULL && si < N_SIZES; si++) {
    uint64_t n = batch_sizes[si], rows[3];
    seq seqs[MAX_SEQS];
    int n_seqs = 2 + (int)qiao__cf_below(&x->rng, MAX_SEQS - 1);
    int at = (int)qiao__cf_below(&x->rng, (uint64_t)n_seqs);
    for (int s = 0; s < n_seqs; s++) {
      seqs[s] = target;
      if (s == at) continue;
      seqs[s].len = 1 + qiao__cf_below(&x->rng, MAX_LEN);
      seqs[s].rows = randoms(x, seqs[s].len * ROW, 1);
      if (seqs[s].rows == NULL) seqs[s].len = 0, pass = false;
    }
    for (uint64_t i = 0; i < n * QL; i++)
      ql[i] = qiao__cf_uniform(&x->rng, -1, 1);
    for (uint64_t i = 0; i < n * QR; i++)
      qr[i] = qiao__cf_uniform(&x->rng, -2, 2);
    for (uint64_t i = 0; i < n; i++) {
      ts[i] = (int32_t)qiao__cf_below(&x->rng, (uint64_t)n_seqs);
      tp[i] = (int32_t)qiao__cf_below(&x->rng, seqs[ts[i]].len ? seqs[ts[i]].len : 1);
    }
    int count = qiao__cf_inv_target_rows(n, rows);
    for (int r = 0; r < count; r++) {
      ts[rows[r]] = at;
      tp[rows[r]] = TARGET_LEN - 1;
      memcpy(ql + rows[r] * QL, tql, QL * 4);
      memcpy(qr + rows[r] * QR, tqr, QR * 4);
    }
    if (pass) {
      call c = {seqs, n_seqs, n, 8, window, ts, tp, ql, qr, true};
      st = latent_rows(x, dt, &c, out);
    } else {
      snprintf(why, sizeof(why), "out of memory building inputs");
    }
    char seqs_note[32];
    snprintf(seqs_note, sizeof(seqs_note), " (%d sequences)", n_seqs);
    if (st == NULL && pass)
      pass = qiao__cf_inv_rows_match(out, alone, QL, rows, count, n, "token", "n_tokens", seqs_note,
                                     why, sizeof(why));
    for (int s = 0; s < n_seqs; s++)
      if (s != at) free(seqs[s].rows);
  }
  qiao__cf_inv_record(x, QIAO_DEV_OP_ATTENTION_LATENT, dt, shape, pass, why, st);
  free(target.rows);
  free(tql);
  free(tqr);
  free(alone);
  free(ql);
  free(qr);
  free(out);
}

/* ---- moe_route ------------------------------------------------------------------ */

enum { EXPERTS = 256, K = 8 };

static qiao_status *route_rows(qiao__cf_inv *x, uint64_t n, const float *logits, const float *bias,
                               int32_t *ids, float *weights) {
  qiao__cf_inv_bufs bs = {0};
  qiao_dev_ref l, b, i, w = {0};
  qiao_status *st = qiao__cf_inv_upload(x, &bs, logits, n * EXPERTS * 4, &l);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, bias, EXPERTS * 4, &b);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, NULL, n * K * 4, &i);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, NULL, n * K * 4, &w);
  if (st == NULL) {
    /* DeepSeek-V3's routing */
    qiao_dev_moe_route_args a = {.struct_size = sizeof(a),
                                 .n_tokens = n,
                                 .n_experts = EXPERTS,
                                 .k = K,
                                 .scoring = QIAO_DEV_MOE_SCORE_SIGMOID,
                                 .normalize = 1,
                                 .n_groups = 8,
                                 .topk_groups = 4,
                                 .group_score = QIAO_DEV_MOE_GROUP_TOP2_SUM,
                                 .scale = 2.5f,
                                 .logits = l,
                                 .bias = b,
                                 .ids = i,
                                 .weights = w};
    st = qiao__cf_dev_status(x->dev, x->dev->api->moe_route(x->dev->queue, &a), "moe_route");
  }
  if (st == NULL)
    st = qiao__cf_dev_status(x->dev, x->dev->api->download(x->dev->queue, ids, i, n * K * 4),
                             "download");
  return finish(x, &bs, st, weights, w, n * K * 4);
}

static void moe_route_case(qiao__cf_inv *x) {
  char shape[96], why[256] = "";
  snprintf(shape, sizeof(shape),
           "n_tokens=1..33 n_experts=%d k=%d sigmoid groups=4/8 top2_sum bias batch-invariant",
           EXPERTS, K);
  float *bias = randoms(x, EXPERTS, 0.05f), *target = randoms(x, EXPERTS, 4);
  float *logits = malloc(33 * EXPERTS * 4), *weights = malloc(33 * K * 4), alone_w[K];
  int32_t *ids = malloc(33 * K * 4), alone_ids[K];
  bool pass = bias && target && logits && weights && ids;
  if (!pass) snprintf(why, sizeof(why), "out of memory building inputs");
  qiao_status *st = pass ? route_rows(x, 1, target, bias, alone_ids, alone_w) : NULL;
  for (size_t si = 0; pass && st == NULL && si < N_SIZES; si++) {
    uint64_t n = batch_sizes[si], rows[3];
    for (uint64_t i = 0; i < n * EXPERTS; i++)
      logits[i] = qiao__cf_uniform(&x->rng, -4, 4);
    int count = qiao__cf_inv_target_rows(n, rows);
    for (int r = 0; r < count; r++)
      memcpy(logits + rows[r] * EXPERTS, target, EXPERTS * 4);
    st = route_rows(x, n, logits, bias, ids, weights);
    for (int r = 0; st == NULL && pass && r < count; r++) {
      int64_t j = qiao__cf_inv_first_difference(ids + rows[r] * K, alone_ids, K);
      const char *what = "ids";
      if (j < 0) {
        j = qiao__cf_inv_first_difference(weights + rows[r] * K, alone_w, K);
        what = "weights";
      }
      if (j < 0) continue;
      pass = false;
      snprintf(why, sizeof(why),
               "not batch-invariant: token %llu of n_tokens=%llu differs from the token routed "
               "alone (%s element %lld)",
               (unsigned long long)rows[r], (unsigned long long)n, what, (long long)j);
    }
  }
  qiao__cf_inv_record(x, QIAO_DEV_OP_MOE_ROUTE, QIAO_DEV_F32, shape, pass, why, st);
  free(bias);
  free(target);
  free(logits);
  free(weights);
  free(ids);
}

void qiao__cf_run_invariance_1_4(qiao_conformance_report *report, cf_device *inv, uint64_t seed,
                                 uint32_t op_mask) {
  qiao__cf_inv x = {report, inv, {seed ^ 0x14140014u}};
  for (int dt = QIAO_DEV_F32; dt <= QIAO_DEV_F16; dt++) {
    bool yes = false;
    qiao_status *st = qiao_backend_op_supported(
        inv->backend, inv->device, QIAO_DEV_OP_ATTENTION_LATENT, (qiao_dev_dtype)dt, &yes);
    qiao_status_free(st);
    if (!yes || (op_mask != 0 && !(op_mask & (1u << QIAO_DEV_OP_ATTENTION_LATENT)))) continue;
    qiao__cf_progress(report, "ops: batch invariance of attention_latent %s",
                      qiao_dev_dtype_name((qiao_dev_dtype)dt));
    attention_latent_case(&x, (qiao_dev_dtype)dt, 0);
    attention_latent_case(&x, (qiao_dev_dtype)dt, 20);
  }
  bool yes = false;
  qiao_status *st = qiao_backend_op_supported(inv->backend, inv->device, QIAO_DEV_OP_MOE_ROUTE,
                                              QIAO_DEV_F32, &yes);
  qiao_status_free(st);
  if (yes && (op_mask == 0 || op_mask & (1u << QIAO_DEV_OP_MOE_ROUTE))) {
    qiao__cf_progress(report, "ops: batch invariance of moe_route f32");
    moe_route_case(&x);
  }
}
