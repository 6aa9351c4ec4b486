/* Batch invariance (docs/spec/device-abi.md §10.4, checked as part of the
 * ops level, §12.1). A device that claims QIAO_DEV_FLAG_BATCH_INVARIANT is
 * opened a second time in that mode, and rows of matmul and attention are
 * computed alone and then inside calls of 2 to 33 rows, at the first, a
 * middle and the last index among random rows: every element must come back
 * with the same bits. A device that does not claim the flag must refuse to
 * open in the mode. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conformance/harness.h"
#include "conformance/invariance.h"
#include "core/status_internal.h"

static const uint64_t batch_sizes[] = {2, 3, 5, 8, 17, 33};
#define N_SIZES (sizeof(batch_sizes) / sizeof(batch_sizes[0]))

void qiao__cf_inv_record(qiao__cf_inv *x, qiao_dev_op op, qiao_dev_dtype dt, const char *shape,
                         bool pass, const char *why, qiao_status *st) {
  if (st != NULL) {
    pass = false;
    why = qiao_status_message(st);
  }
  json_object *j = json_object_new_object();
  json_object_object_add(j, "op", json_object_new_string(qiao_dev_op_name(op)));
  json_object_object_add(j, "dtype", json_object_new_string(qiao_dev_dtype_name(dt)));
  json_object_object_add(j, "shape", json_object_new_string(shape));
  json_object_object_add(j, "check", json_object_new_string("batch_invariance"));
  json_object_object_add(j, "result", json_object_new_string(pass ? "pass" : "fail"));
  if (!pass) json_object_object_add(j, "detail", json_object_new_string(why));
  json_object_array_add(x->report->ops, j);
  x->report->area_ops.checks++;
  if (!pass) {
    x->report->failed[op][dt] = true;
    qiao__cf_fail(x->report, &x->report->area_ops, "%s %s [%s]: %s", qiao_dev_op_name(op),
                  qiao_dev_dtype_name(dt), shape, why);
  }
  qiao_status_free(st);
}

bool qiao__cf_inv_rows_match(const float *out, const float *alone, uint64_t row_len,
                             const uint64_t *rows, int count, uint64_t n, const char *unit,
                             const char *n_name, const char *context, char *why, size_t why_size) {
  for (int r = 0; r < count; r++) {
    const float *got = out + rows[r] * row_len;
    int64_t j = qiao__cf_inv_first_difference(got, alone, row_len);
    if (j < 0) continue;
    snprintf(why, why_size,
             "not batch-invariant: %s %llu of %s=%llu%s differs from the %s computed alone "
             "(element %lld: %.9g vs %.9g)",
             unit, (unsigned long long)rows[r], n_name, (unsigned long long)n, context, unit,
             (long long)j, (double)got[j], (double)alone[j]);
    return false;
  }
  return true;
}

qiao_status *qiao__cf_inv_upload(qiao__cf_inv *x, qiao__cf_inv_bufs *bs, const void *host,
                                 uint64_t bytes, qiao_dev_ref *out) {
  const qiao_dev_api *api = x->dev->api;
  qiao_dev_buffer *b = NULL;
  qiao_status *st = qiao__cf_dev_status(
      x->dev, api->buffer_create(x->dev->device, bytes ? bytes : 4, &b), "buffer_create");
  if (st != NULL) return st;
  bs->b[bs->n++] = b;
  *out = (qiao_dev_ref){b, 0};
  if (host != NULL && bytes > 0)
    return qiao__cf_dev_status(x->dev, api->upload(x->dev->queue, *out, host, bytes), "upload");
  return NULL;
}

void qiao__cf_inv_release(qiao__cf_inv *x, qiao__cf_inv_bufs *bs) {
  qiao_dev_error *e = x->dev->api->queue_synchronize(x->dev->queue);
  if (e != NULL) x->dev->api->error_destroy(e);
  for (int i = 0; i < bs->n; i++)
    x->dev->api->buffer_destroy(bs->b[i]);
  bs->n = 0;
}

int64_t qiao__cf_inv_first_difference(const void *got, const void *want, uint64_t n) {
  const uint8_t *g = got, *w = want;
  for (uint64_t i = 0; i < n; i++)
    if (memcmp(g + 4 * i, w + 4 * i, 4) != 0) return (int64_t)i;
  return -1;
}

int qiao__cf_inv_target_rows(uint64_t n, uint64_t rows[3]) {
  rows[0] = 0;
  int count = 1;
  if (n / 2 != 0) rows[count++] = n / 2;
  if (n - 1 != n / 2 && n > 1) rows[count++] = n - 1;
  return count;
}

/* ---- matmul --------------------------------------------------------------- */

/* out (n, m) of x (n, k) and the weights on the device, with activation
 * precision `precision` (QIAO_DEV_PRECISION_*, ABI 1.2). */
static qiao_status *matmul_rows(qiao__cf_inv *x, qiao_dev_dtype dt, const void *w, uint64_t k,
                                uint64_t m, uint64_t n, const float *xs, uint32_t precision,
                                float *out) {
  qiao__cf_inv_bufs bs = {0};
  qiao_dev_ref xr, wr, outr;
  qiao_status *st = qiao__cf_inv_upload(x, &bs, xs, n * k * 4, &xr);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, w, qiao__cf_dtype_bytes(dt, m * k), &wr);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, NULL, n * m * 4, &outr);
  if (st == NULL) {
    qiao_dev_matmul_args a = {.struct_size = sizeof(a),
                              .n = n,
                              .k = k,
                              .m = m,
                              .x = xr,
                              .w_dtype = dt,
                              .w = wr,
                              .out = outr,
                              .x_precision = precision};
    st = qiao__cf_dev_status(x->dev, x->dev->api->matmul(x->dev->queue, &a), "matmul");
  }
  if (st == NULL)
    st = qiao__cf_dev_status(x->dev, x->dev->api->download(x->dev->queue, out, outr, n * m * 4),
                             "download");
  if (st == NULL)
    st = qiao__cf_dev_status(x->dev, x->dev->api->queue_synchronize(x->dev->queue), "synchronize");
  qiao__cf_inv_release(x, &bs);
  return st;
}

static void matmul_case(qiao__cf_inv *x, qiao_dev_dtype dt, uint64_t k, uint64_t m,
                        uint32_t precision) {
  char shape[112], why[256] = "";
  snprintf(shape, sizeof(shape), "n=1..33 k=%llu m=%llu%s batch-invariant", (unsigned long long)k,
           (unsigned long long)m, precision == QIAO_DEV_PRECISION_Q8 ? " x_precision=Q8" : "");
  void *w = qiao__cf_random_weights(&x->rng, dt, m * k);
  float *target = malloc(k * 4), *alone = malloc(m * 4);
  float *xs = malloc(33 * k * 4), *out = malloc(33 * m * 4);
  bool pass = w && target && alone && xs && out;
  if (!pass) snprintf(why, sizeof(why), "out of memory building inputs");
  for (uint64_t i = 0; pass && i < k; i++)
    target[i] = qiao__cf_uniform(&x->rng, -1, 1);
  qiao_status *st = pass ? matmul_rows(x, dt, w, k, m, 1, target, precision, alone) : NULL;
  for (size_t s = 0; pass && st == NULL && s < N_SIZES; s++) {
    uint64_t n = batch_sizes[s], rows[3];
    int count = qiao__cf_inv_target_rows(n, rows);
    for (uint64_t i = 0; i < n * k; i++)
      xs[i] = qiao__cf_uniform(&x->rng, -1, 1);
    for (int r = 0; r < count; r++)
      memcpy(xs + rows[r] * k, target, k * 4);
    st = matmul_rows(x, dt, w, k, m, n, xs, precision, out);
    if (st == NULL && pass)
      pass =
          qiao__cf_inv_rows_match(out, alone, m, rows, count, n, "row", "n", "", why, sizeof(why));
  }
  qiao__cf_inv_record(x, QIAO_DEV_OP_MATMUL, dt, shape, pass, why, st);
  free(w);
  free(target);
  free(alone);
  free(xs);
  free(out);
}

/* ---- attention -------------------------------------------------------------
 * Logical sequences (keys and values by position) laid out in a fresh paged
 * cache per call: the target sequence alone in blocks of 16 in order, or
 * among other sequences in blocks of 8 in shuffled order, every slot no
 * token attends holding NaN. */
enum { HEADS = 8, KV_HEADS = 2, HEAD_DIM = 64, TARGET_LEN = 75, MAX_SEQS = 5, MAX_LEN = 120 };
#define KV_DIM ((uint64_t)KV_HEADS * HEAD_DIM)
#define Q_LEN ((uint64_t)HEADS * HEAD_DIM)

typedef struct seq {
  uint64_t len;
  float *kv; /* (2, len, KV_DIM): keys then values */
} seq;

typedef struct call {
  const seq *seqs;
  int n_seqs;
  uint64_t n, block_size, window;
  const int32_t *tok_seq, *tok_pos;
  const float *q;
  bool shuffle;
} call;

void qiao__cf_inv_put(uint8_t *cache, qiao_dev_dtype dt, uint64_t i, float v) {
  if (dt == QIAO_DEV_F16) {
    uint16_t h = qiao__cf_f32_to_f16(v);
    memcpy(cache + 2 * i, &h, 2);
  } else {
    memcpy(cache + 4 * i, &v, 4);
  }
}

static qiao_status *attention_rows(qiao__cf_inv *x, qiao_dev_dtype dt, const call *c, float *out) {
  uint64_t max_blocks = 0, total = 3; /* 3 spare blocks nobody uses */
  for (int s = 0; s < c->n_seqs; s++) {
    uint64_t b = (c->seqs[s].len + c->block_size - 1) / c->block_size;
    total += b;
    if (b > max_blocks) max_blocks = b;
  }
  uint64_t n_slots = total * c->block_size, esz = dt == QIAO_DEV_F16 ? 2 : 4;
  uint64_t *order = malloc(total * 8);
  int32_t *table = malloc((uint64_t)c->n_seqs * max_blocks * 4);
  uint8_t *caches[2] = {malloc(n_slots * KV_DIM * esz), malloc(n_slots * KV_DIM * esz)};
  qiao_status *st = NULL;
  if (!order || !table || !caches[0] || !caches[1])
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
  for (int kv = 0; st == NULL && kv < 2; kv++) {
    for (uint64_t i = 0; i < n_slots * KV_DIM; i++)
      qiao__cf_inv_put(caches[kv], dt, i, NAN);
    for (int s = 0; s < c->n_seqs; s++)
      for (uint64_t j = 0; j < c->seqs[s].len; j++) {
        uint64_t slot =
            (uint64_t)table[(uint64_t)s * max_blocks + j / c->block_size] * c->block_size +
            j % c->block_size;
        const float *row = c->seqs[s].kv + ((uint64_t)kv * c->seqs[s].len + j) * KV_DIM;
        for (uint64_t i = 0; i < KV_DIM; i++)
          qiao__cf_inv_put(caches[kv], dt, slot * KV_DIM + i, row[i]);
      }
  }
  qiao__cf_inv_bufs bs = {0};
  qiao_dev_ref q, kc, vc, tb, ts, tp, o;
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, c->q, c->n * Q_LEN * 4, &q);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, caches[0], n_slots * KV_DIM * esz, &kc);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, caches[1], n_slots * KV_DIM * esz, &vc);
  if (st == NULL)
    st = qiao__cf_inv_upload(x, &bs, table, (uint64_t)c->n_seqs * max_blocks * 4, &tb);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, c->tok_seq, c->n * 4, &ts);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, c->tok_pos, c->n * 4, &tp);
  if (st == NULL) st = qiao__cf_inv_upload(x, &bs, NULL, c->n * Q_LEN * 4, &o);
  if (st == NULL) {
    qiao_dev_attention_args a = {.struct_size = sizeof(a),
                                 .n_tokens = c->n,
                                 .n_heads = HEADS,
                                 .n_kv_heads = KV_HEADS,
                                 .head_dim = HEAD_DIM,
                                 .n_seqs = (uint64_t)c->n_seqs,
                                 .max_blocks_per_seq = max_blocks,
                                 .block_size = c->block_size,
                                 .n_slots = n_slots,
                                 .window = c->window,
                                 .scale = 0.125f,
                                 .cache_dtype = dt,
                                 .q = q,
                                 .k_cache = kc,
                                 .v_cache = vc,
                                 .block_table = tb,
                                 .token_seq = ts,
                                 .token_pos = tp,
                                 .out = o};
    st = qiao__cf_dev_status(x->dev, x->dev->api->attention(x->dev->queue, &a), "attention");
  }
  if (st == NULL)
    st = qiao__cf_dev_status(x->dev, x->dev->api->download(x->dev->queue, out, o, c->n * Q_LEN * 4),
                             "download");
  if (st == NULL)
    st = qiao__cf_dev_status(x->dev, x->dev->api->queue_synchronize(x->dev->queue), "synchronize");
  qiao__cf_inv_release(x, &bs);
  free(order);
  free(table);
  free(caches[0]);
  free(caches[1]);
  return st;
}

static float *randoms(qiao__cf_inv *x, uint64_t n) {
  float *p = malloc((n ? n : 1) * 4);
  for (uint64_t i = 0; p && i < n; i++)
    p[i] = qiao__cf_uniform(&x->rng, -1, 1);
  return p;
}

static void attention_case(qiao__cf_inv *x, qiao_dev_dtype dt, uint64_t window) {
  char shape[160], why[256] = "";
  snprintf(shape, sizeof(shape),
           "n_tokens=1..33 n_heads=%d n_kv_heads=%d head_dim=%d pos=%d window=%llu "
           "batch-invariant",
           HEADS, KV_HEADS, HEAD_DIM, TARGET_LEN - 1, (unsigned long long)window);
  seq target = {TARGET_LEN, randoms(x, 2 * TARGET_LEN * KV_DIM)};
  float *tq = randoms(x, Q_LEN), *alone = malloc(Q_LEN * 4);
  float *q = malloc(33 * Q_LEN * 4), *out = malloc(33 * Q_LEN * 4);
  int32_t ts[33], tp[33], s0 = 0, p0 = TARGET_LEN - 1;
  bool pass = target.kv && tq && alone && q && out;
  if (!pass) snprintf(why, sizeof(why), "out of memory building inputs");
  qiao_status *st = NULL;
  if (pass) {
    call c = {&target, 1, 1, 16, window, &s0, &p0, tq, false};
    st = attention_rows(x, dt, &c, alone);
  }
  for (size_t si = 0; pass && st == NULL && si < N_SIZES; si++) {
    /* The target among 1 to 4 other sequences of 1 to MAX_LEN positions,
     * and other tokens of any sequence, the target's own included. */
    uint64_t n = batch_sizes[si], rows[3];
    seq seqs[MAX_SEQS];
    int n_seqs = 2 + (int)qiao__cf_below(&x->rng, MAX_SEQS - 1);
    int at = (int)qiao__cf_below(&x->rng, (uint64_t)n_seqs);
    for (int s = 0; s < n_seqs; s++) {
      seqs[s] = target;
      if (s == at) continue;
      seqs[s].len = 1 + qiao__cf_below(&x->rng, MAX_LEN);
      seqs[s].kv = randoms(x, 2 * seqs[s].len * KV_DIM);
      if (seqs[s].kv == NULL) seqs[s].len = 0, pass = false;
    }
    for (uint64_t i = 0; i < n * Q_LEN; i++)
      q[i] = qiao__cf_uniform(&x->rng, -1, 1);
    for (uint64_t i = 0; i < n; i++) {
      ts[i] = (int32_t)qiao__cf_below(&x->rng, (uint64_t)n_seqs);
      tp[i] = (int32_t)qiao__cf_below(&x->rng, seqs[ts[i]].len ? seqs[ts[i]].len : 1);
    }
    int count = qiao__cf_inv_target_rows(n, rows);
    for (int r = 0; r < count; r++) {
      ts[rows[r]] = at;
      tp[rows[r]] = TARGET_LEN - 1;
      memcpy(q + rows[r] * Q_LEN, tq, Q_LEN * 4);
    }
    if (pass) {
      call c = {seqs, n_seqs, n, 8, window, ts, tp, q, true};
      st = attention_rows(x, dt, &c, out);
    } else {
      snprintf(why, sizeof(why), "out of memory building inputs");
    }
    char seqs_note[32];
    snprintf(seqs_note, sizeof(seqs_note), " (%d sequences)", n_seqs);
    if (st == NULL && pass)
      pass = qiao__cf_inv_rows_match(out, alone, Q_LEN, rows, count, n, "token", "n_tokens",
                                     seqs_note, why, sizeof(why));
    for (int s = 0; s < n_seqs; s++)
      if (s != at) free(seqs[s].kv);
  }
  qiao__cf_inv_record(x, QIAO_DEV_OP_ATTENTION, dt, shape, pass, why, st);
  free(target.kv);
  free(tq);
  free(alone);
  free(q);
  free(out);
}

/* ---- The level's entry ------------------------------------------------------ */

/* A device that does not claim the flag must refuse to open in the mode
 * (1.1 plugins; a 1.0 plugin cannot read the request). */
static void refusal(qiao_conformance_report *report, cf_device *target, uint32_t index) {
  const qiao_dev_api *api = target->api;
  json_object *j = json_object_new_object();
  json_object_object_add(j, "check", json_object_new_string("batch_invariant_refused"));
  report->area_ops.checks++;
  if (api->abi_minor < 1) {
    json_object_object_add(j, "result", json_object_new_string("skipped: an ABI 1.0 plugin"));
    json_object_array_add(report->ops, j);
    return;
  }
  qiao_dev_device_options o = {.struct_size = sizeof(o), .flags = QIAO_DEV_OPEN_BATCH_INVARIANT};
  qiao_dev_device *d = NULL;
  qiao_dev_error *e = api->device_open(qiao_backend_handle(target->backend), index, &o, &d);
  bool ok = e != NULL && api->error_code(e) == QIAO_DEV_UNSUPPORTED;
  json_object_object_add(j, "result", json_object_new_string(ok ? "pass" : "fail"));
  json_object_array_add(report->ops, j);
  if (!ok)
    qiao__cf_fail(report, &report->area_ops,
                  "device_open: QIAO_DEV_OPEN_BATCH_INVARIANT on a device without "
                  "QIAO_DEV_FLAG_BATCH_INVARIANT %s (must fail with UNSUPPORTED)",
                  e ? "failed with another code" : "succeeded");
  if (e != NULL) api->error_destroy(e);
  api->device_close(d);
}

void qiao__cf_run_invariance(qiao_conformance_report *report, cf_device *target,
                             const char *backend, uint32_t device_index, uint64_t seed,
                             uint32_t op_mask) {
  bool claimed = false;
  qiao_status *st = qiao_backend_batch_invariant(target->backend, device_index, &claimed);
  json_object_object_add(report->root, "batch_invariant", json_object_new_boolean(claimed));
  if (st != NULL) {
    report->area_ops.checks++;
    qiao__cf_fail(report, &report->area_ops, "batch invariance: %s", qiao_status_message(st));
    qiao_status_free(st);
    return;
  }
  if (!claimed) {
    refusal(report, target, device_index);
    return;
  }
  cf_device inv = {0};
  st = qiao__cf_device_open_flags(backend, device_index, "batch-invariant target",
                                  QIAO_DEV_OPEN_BATCH_INVARIANT, &inv);
  if (st != NULL) {
    report->area_ops.checks++;
    qiao__cf_fail(report, &report->area_ops,
                  "batch invariance: the device claims QIAO_DEV_FLAG_BATCH_INVARIANT but cannot "
                  "be opened in the mode: %s",
                  qiao_status_message(st));
    qiao_status_free(st);
    return;
  }
  qiao__cf_inv x = {report, &inv, {seed ^ 0x1badb002u}};
  const qiao_dev_api *api = inv.api;
  for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
    if (api->abi_minor < qiao_dev_dtype_abi_minor((qiao_dev_dtype)dt)) continue;
    uint32_t mm = 0, att = 0;
    qiao_dev_error *e = api->op_supported(inv.device, QIAO_DEV_OP_MATMUL, (qiao_dev_dtype)dt, &mm);
    if (e != NULL) api->error_destroy(e);
    e = api->op_supported(inv.device, QIAO_DEV_OP_ATTENTION, (qiao_dev_dtype)dt, &att);
    if (e != NULL) api->error_destroy(e);
    bool quant = qiao__cf_block_elems((qiao_dev_dtype)dt) > 1;
    uint64_t k_one = qiao__cf_row_len((qiao_dev_dtype)dt, 32, 32),
             k_long = qiao__cf_row_len((qiao_dev_dtype)dt, 1056, 1056);
    if (mm && (op_mask == 0 || op_mask & (1u << QIAO_DEV_OP_MATMUL))) {
      qiao__cf_progress(report, "ops: batch invariance of matmul %s",
                        qiao_dev_dtype_name((qiao_dev_dtype)dt));
      /* One block; several GEMM-sized chunks; float weights off the blocks;
       * (1.2) with Q8 activations allowed, which the mode covers too. */
      matmul_case(&x, (qiao_dev_dtype)dt, k_one, 67, QIAO_DEV_PRECISION_EXACT);
      matmul_case(&x, (qiao_dev_dtype)dt, k_long, 67, QIAO_DEV_PRECISION_EXACT);
      if (!quant) matmul_case(&x, (qiao_dev_dtype)dt, 100, 67, QIAO_DEV_PRECISION_EXACT);
      if (api->abi_minor >= 2)
        matmul_case(&x, (qiao_dev_dtype)dt, k_long, 67, QIAO_DEV_PRECISION_Q8);
    }
    if (att && (op_mask == 0 || op_mask & (1u << QIAO_DEV_OP_ATTENTION))) {
      qiao__cf_progress(report, "ops: batch invariance of attention %s",
                        qiao_dev_dtype_name((qiao_dev_dtype)dt));
      attention_case(&x, (qiao_dev_dtype)dt, 0);
      attention_case(&x, (qiao_dev_dtype)dt, 20);
    }
  }
  qiao__cf_run_invariance_1_4(report, &inv, seed, op_mask); /* ABI 1.4's ops */
  qiao__cf_run_invariance_1_5(report, &inv, seed, op_mask); /* matmul_experts */
  /* Invariant is not enough: the mode's results must be right too (its
   * kernels differ from the ordinary ones), so every op case again. */
  qiao__cf_run_ops_in_mode(report, &inv, seed, op_mask, " batch-invariant");
  qiao__cf_device_close(&inv);
}
