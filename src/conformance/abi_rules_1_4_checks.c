/* The ABI level's argument rules of the ops of device ABI 1.4
 * (docs/spec/device-abi.md §11.3, §14): latent_write, attention_latent and
 * moe_route refuse the shapes the spec forbids (whatever the work: with
 * n_tokens 0 too), succeed without writing when there is no work, ignore
 * the group fields without groups; and a plugin never claims an appended op
 * whose function its table leaves NULL. Only run on a plugin the runtime may
 * ask about these ops (abi_minor 4 or more, the function present); each
 * check's name is the one §12.6 lists beside its MUST. */
#include <math.h>
#include <string.h>

#include "conformance/abi_check.h"

#define INVALID QIAO_DEV_INVALID_ARGUMENT
#define UNSUP QIAO_DEV_UNSUPPORTED
#define F32 QIAO_DEV_F32

enum { BUF = 4096, POISON = 0x5d };

static qiao_dev_ref at(qiao_dev_buffer *b, uint64_t offset) {
  return (qiao_dev_ref){b, offset};
}

/* Whether the runtime may call op at all (its function is there). */
static bool has(const actx *x, qiao_dev_op op) {
  return qiao_backend_may_ask(x->dev->backend, op, F32) ||
         qiao_backend_may_ask(x->dev->backend, op, QIAO_DEV_F16);
}

/* A call with a failing argument check of op on dtype: that code when the
 * op is claimed, UNSUPPORTED when not (the capability is checked first). */
static qiao_dev_code code_of(const actx *x, qiao_dev_op op, qiao_dev_dtype dt, qiao_dev_code c) {
  return qiao__cf_unless_unclaimed(x, op, dt, c);
}

/* Fills b with POISON and synchronizes. */
static bool poison(actx *x, qiao_dev_buffer *b) {
  unsigned char host[BUF];
  memset(host, POISON, sizeof(host));
  qiao_dev_error *e = x->api->upload(x->dev->queue, at(b, 0), host, BUF);
  if (e == NULL) e = x->api->queue_synchronize(x->dev->queue);
  if (e) x->api->error_destroy(e);
  return e == NULL;
}

static bool all_poison(actx *x, qiao_dev_buffer *b) {
  unsigned char host[BUF];
  qiao__cf_drain(x);
  qiao_dev_error *e = x->api->download(x->dev->queue, host, at(b, 0), BUF);
  if (e == NULL) e = x->api->queue_synchronize(x->dev->queue);
  if (e) {
    x->api->error_destroy(e);
    return false;
  }
  for (int i = 0; i < BUF; i++)
    if (host[i] != POISON) return false;
  return true;
}

/* A call without work (a count of 0): it must succeed and write nothing. */
static void no_work(actx *x, qiao_dev_buffer *b, const char *name, qiao_dev_op op,
                    qiao_dev_dtype dt, qiao_dev_error *(*call)(actx *, qiao_dev_buffer *)) {
  if (!x->report->claimed[op][dt]) return;
  if (!poison(x, b)) {
    qiao__cf_check(x, name, false, "could not fill the buffer");
    return;
  }
  qiao_dev_error *e = call(x, b);
  if (e == NULL) e = x->api->queue_synchronize(x->dev->queue);
  if (e != NULL) {
    qiao__cf_check(x, name, false, "failed: %s", x->api->error_message(e));
    x->api->error_destroy(e);
    return;
  }
  bool same = all_poison(x, b);
  qiao__cf_check(x, name, same, "succeeded and %s", same ? "wrote nothing" : "wrote to a buffer");
}

/* A call with an out-of-range index in device data (§6): INVALID_ARGUMENT
 * at the call or at the next synchronize, and nothing written but in
 * [out_lo, out_hi) (the other bytes, inputs included, keep their values). */
static void out_of_range(actx *x, qiao_dev_buffer *b, const char *name, qiao_dev_error *e,
                         uint64_t out_lo, uint64_t out_hi, const unsigned char *before) {
  const qiao_dev_api *api = x->api;
  qiao_dev_error *s = api->queue_synchronize(x->dev->queue);
  qiao_dev_code got = e ? api->error_code(e) : s ? api->error_code(s) : QIAO_DEV_OK;
  unsigned char after[BUF];
  qiao_dev_error *d = api->download(x->dev->queue, after, at(b, 0), BUF);
  if (d == NULL) d = api->queue_synchronize(x->dev->queue);
  bool same = d == NULL;
  for (uint64_t i = 0; same && i < BUF; i++)
    same = (i >= out_lo && i < out_hi) || after[i] == before[i];
  qiao__cf_check(x, name, got == INVALID && same, "%s; %s", qiao__cf_code_name(got),
                 d      ? "the buffer could not be read back"
                 : same ? "nothing written"
                        : "wrote outside its outputs");
  if (e) api->error_destroy(e);
  if (s) api->error_destroy(s);
  if (d) api->error_destroy(d);
}

/* Fills b with POISON, then puts `n` bytes of `v` at offset; keeps a copy of
 * the whole buffer in `copy`. */
static bool prepare(actx *x, qiao_dev_buffer *b, uint64_t offset, const void *v, uint64_t n,
                    unsigned char *copy) {
  memset(copy, POISON, BUF);
  memcpy(copy + offset, v, n);
  qiao_dev_error *e = x->api->upload(x->dev->queue, at(b, 0), copy, BUF);
  if (e == NULL) e = x->api->queue_synchronize(x->dev->queue);
  if (e) x->api->error_destroy(e);
  return e == NULL;
}

/* ---- latent_write ------------------------------------------------------------ */

static qiao_dev_latent_write_args latent_write_args(qiao_dev_buffer *b) {
  return (qiao_dev_latent_write_args){.struct_size = sizeof(qiao_dev_latent_write_args),
                                      .n_tokens = 1,
                                      .latent_dim = 8,
                                      .rope_dim = 4,
                                      .n_slots = 4,
                                      .cache_dtype = F32,
                                      .latent = at(b, 0),
                                      .rope = at(b, 512),
                                      .slots = at(b, 1024),
                                      .cache = at(b, 2048)};
}

static qiao_dev_error *z_latent_write(actx *x, qiao_dev_buffer *b) {
  qiao_dev_latent_write_args a = latent_write_args(b);
  a.n_tokens = 0;
  return x->api->latent_write(x->dev->queue, &a);
}

static void latent_write_rules(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  qiao_dev_queue *q = x->dev->queue;
  qiao_dev_code c = code_of(x, QIAO_DEV_OP_LATENT_WRITE, F32, INVALID);
  qiao_dev_latent_write_args a = latent_write_args(b);
  a.latent_dim = 0;
  qiao__cf_expect(x, "latent_write_latent_dim_0", api->latent_write(q, &a), c);
  a.n_tokens = 0;
  qiao__cf_expect(x, "latent_write_latent_dim_0_without_work", api->latent_write(q, &a), c);
  a = latent_write_args(b);
  a.rope_dim = 0;
  qiao__cf_expect(x, "latent_write_rope_dim_0", api->latent_write(q, &a), c);
  a = latent_write_args(b);
  a.cache_dtype = QIAO_DEV_BF16; /* not defined for latent_write */
  qiao__cf_expect(x, "latent_write_undefined_dtype_unsupported", api->latent_write(q, &a), UNSUP);
  no_work(x, b, "zero_count_latent_write", QIAO_DEV_OP_LATENT_WRITE, F32, z_latent_write);
  if (!x->report->claimed[QIAO_DEV_OP_LATENT_WRITE][F32]) return;
  unsigned char copy[BUF];
  const int32_t slot = 4; /* n_slots 4 */
  a = latent_write_args(b);
  if (prepare(x, b, 1024, &slot, 4, copy))
    out_of_range(x, b, "latent_write_out_of_range_slot_writes_nothing", api->latent_write(q, &a), 0,
                 0, copy);
}

/* ---- attention_latent --------------------------------------------------------- */

static qiao_dev_attention_latent_args attention_latent_args(qiao_dev_buffer *b) {
  return (qiao_dev_attention_latent_args){.struct_size = sizeof(qiao_dev_attention_latent_args),
                                          .n_tokens = 1,
                                          .n_heads = 2,
                                          .latent_dim = 8,
                                          .rope_dim = 4,
                                          .n_seqs = 1,
                                          .max_blocks_per_seq = 1,
                                          .block_size = 4,
                                          .n_slots = 4,
                                          .scale = 1,
                                          .cache_dtype = F32,
                                          .q_latent = at(b, 0),
                                          .q_rope = at(b, 512),
                                          .cache = at(b, 1024),
                                          .block_table = at(b, 1536),
                                          .token_seq = at(b, 2048),
                                          .token_pos = at(b, 2560),
                                          .out = at(b, 3072)};
}

static qiao_dev_error *z_attention_latent(actx *x, qiao_dev_buffer *b) {
  qiao_dev_attention_latent_args a = attention_latent_args(b);
  a.n_tokens = 0;
  return x->api->attention_latent(x->dev->queue, &a);
}

static void attention_latent_rules(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  qiao_dev_queue *q = x->dev->queue;
  qiao_dev_code c = code_of(x, QIAO_DEV_OP_ATTENTION_LATENT, F32, INVALID);
  qiao_dev_attention_latent_args a = attention_latent_args(b);
  a.latent_dim = 0;
  qiao__cf_expect(x, "attention_latent_latent_dim_0", api->attention_latent(q, &a), c);
  a.n_tokens = 0;
  qiao__cf_expect(x, "attention_latent_latent_dim_0_without_work", api->attention_latent(q, &a), c);
  a = attention_latent_args(b);
  a.rope_dim = 0;
  qiao__cf_expect(x, "attention_latent_rope_dim_0", api->attention_latent(q, &a), c);
  a = attention_latent_args(b);
  a.block_size = 0;
  qiao__cf_expect(x, "attention_latent_block_size_0", api->attention_latent(q, &a), c);
  a.n_tokens = 0;
  qiao__cf_expect(x, "attention_latent_block_size_0_without_work", api->attention_latent(q, &a), c);
  a = attention_latent_args(b);
  a.cache_dtype = QIAO_DEV_Q8_0; /* not defined for attention_latent */
  qiao__cf_expect(x, "attention_latent_undefined_dtype_unsupported", api->attention_latent(q, &a),
                  UNSUP);
  no_work(x, b, "zero_count_attention_latent", QIAO_DEV_OP_ATTENTION_LATENT, F32,
          z_attention_latent);
  if (!x->report->claimed[QIAO_DEV_OP_ATTENTION_LATENT][F32]) return;
  unsigned char copy[BUF];
  const int32_t seq = 1; /* n_seqs 1 */
  a = attention_latent_args(b);
  /* token_pos and block_table hold POISON: out of range too; any of them will do */
  if (prepare(x, b, 2048, &seq, 4, copy))
    out_of_range(x, b, "attention_latent_out_of_range_token_seq", api->attention_latent(q, &a),
                 3072, 3072 + 2 * 8 * 4, copy);
}

/* ---- moe_route ------------------------------------------------------------------ */

/* 8 experts in 4 groups of 2, the best 2 groups kept, k 2: valid. */
static qiao_dev_moe_route_args moe_route_args(qiao_dev_buffer *b) {
  return (qiao_dev_moe_route_args){.struct_size = sizeof(qiao_dev_moe_route_args),
                                   .n_tokens = 1,
                                   .n_experts = 8,
                                   .k = 2,
                                   .scoring = QIAO_DEV_MOE_SCORE_SIGMOID,
                                   .normalize = 1,
                                   .n_groups = 4,
                                   .topk_groups = 2,
                                   .group_score = QIAO_DEV_MOE_GROUP_TOP2_SUM,
                                   .scale = 1,
                                   .logits = at(b, 0),
                                   .bias = at(b, 512),
                                   .ids = at(b, 1024),
                                   .weights = at(b, 1536)};
}

static qiao_dev_error *z_moe_route(actx *x, qiao_dev_buffer *b) {
  qiao_dev_moe_route_args a = moe_route_args(b);
  a.n_tokens = 0;
  return x->api->moe_route(x->dev->queue, &a);
}

static void moe_route_rules(actx *x, qiao_dev_buffer *b) {
  const qiao_dev_api *api = x->api;
  qiao_dev_queue *q = x->dev->queue;
  qiao_dev_code c = code_of(x, QIAO_DEV_OP_MOE_ROUTE, F32, INVALID);
  qiao_dev_moe_route_args a = moe_route_args(b);
#define EXPECT(name, field, value)                                                                 \
  do {                                                                                             \
    a = moe_route_args(b);                                                                         \
    a.field = value;                                                                               \
    qiao__cf_expect(x, name, api->moe_route(q, &a), c);                                            \
  } while (0)
  EXPECT("moe_route_k_0", k, 0);
  a.n_tokens = 0;
  qiao__cf_expect(x, "moe_route_k_0_without_work", api->moe_route(q, &a), c);
  EXPECT("moe_route_n_experts_0", n_experts, 0);
  a = moe_route_args(b);
  a.n_groups = 0;
  a.k = 9;
  qiao__cf_expect(x, "moe_route_k_above_n_experts", api->moe_route(q, &a), c);
  EXPECT("moe_route_groups_not_dividing", n_experts, 10);
  a.n_tokens = 0;
  qiao__cf_expect(x, "moe_route_groups_not_dividing_without_work", api->moe_route(q, &a), c);
  EXPECT("moe_route_topk_groups_0", topk_groups, 0);
  EXPECT("moe_route_topk_groups_above_n_groups", topk_groups, 5);
  EXPECT("moe_route_top2_sum_one_expert_per_group", n_groups, 8);
  a = moe_route_args(b);
  a.topk_groups = 1;
  a.k = 3; /* one group of 2 experts kept */
  qiao__cf_expect(x, "moe_route_k_above_kept_experts", api->moe_route(q, &a), c);
  EXPECT("moe_route_invalid_scoring", scoring, 2);
  EXPECT("moe_route_invalid_group_score", group_score, 2);
  EXPECT("moe_route_invalid_normalize", normalize, 2);
  EXPECT("moe_route_nan_scale", scale, NAN);
  EXPECT("moe_route_bias_null_with_offset", bias, ((qiao_dev_ref){NULL, 8}));
#undef EXPECT
  qiao__cf_drain(x);
  no_work(x, b, "zero_count_moe_route", QIAO_DEV_OP_MOE_ROUTE, F32, z_moe_route);

  /* n_groups 0 or 1: no group limit, topk_groups and group_score unread */
  if (!x->report->claimed[QIAO_DEV_OP_MOE_ROUTE][F32]) return;
  const float logits[8] = {0.5f, -1, 2, 0, 1, -2, 3, -0.5f};
  a = moe_route_args(b);
  a.n_groups = 1;
  a.topk_groups = 0;
  a.group_score = 77;
  a.bias = (qiao_dev_ref){NULL, 0};
  int32_t ids[2] = {-1, -1};
  qiao_dev_error *e = api->upload(q, at(b, 0), logits, sizeof(logits));
  if (e == NULL) e = api->moe_route(q, &a);
  if (e == NULL) e = api->download(q, ids, at(b, 1024), sizeof(ids));
  if (e == NULL) e = api->queue_synchronize(q);
  qiao__cf_check(x, "moe_route_group_fields_unread_without_groups",
                 e == NULL && ids[0] == 6 && ids[1] == 2,
                 "n_groups 1, topk_groups 0, group_score 77: %s (ids %d %d, expected 6 2)",
                 e ? api->error_message(e) : "ok", ids[0], ids[1]);
  if (e) api->error_destroy(e);
}

/* ---- the appended functions ------------------------------------------------------ */

/* A 1.4 plugin may leave an appended function NULL only when it never
 * claims its op (asked here directly: the runtime itself never asks). */
static void appended_functions(actx *x) {
  const qiao_dev_api *api = x->api;
  if (api->abi_minor < 4 || api->struct_size < sizeof(qiao_dev_api)) return;
  static const qiao_dev_op ops[3] = {QIAO_DEV_OP_LATENT_WRITE, QIAO_DEV_OP_ATTENTION_LATENT,
                                     QIAO_DEV_OP_MOE_ROUTE};
  bool ok = true;
  char detail[160] = "every claimed appended op has its function";
  for (int i = 0; i < 3; i++) {
    if (has(x, ops[i])) continue;
    for (int dt = 0; dt < QIAO_DEV_DTYPE_COUNT; dt++) {
      uint32_t s = 0;
      qiao_dev_error *e = api->op_supported(x->dev->device, ops[i], (qiao_dev_dtype)dt, &s);
      if (e) api->error_destroy(e);
      if (s != 0 && ok) {
        ok = false;
        snprintf(detail, sizeof(detail), "%s is claimed for %s but its function is NULL",
                 qiao_dev_op_name(ops[i]), qiao_dev_dtype_name((qiao_dev_dtype)dt));
      }
    }
  }
  qiao__cf_check(x, "appended_op_claimed_has_function", ok, "%s", detail);
}

void qiao__cf_abi_rules_1_4(actx *x) {
  appended_functions(x);
  bool lw = has(x, QIAO_DEV_OP_LATENT_WRITE), al = has(x, QIAO_DEV_OP_ATTENTION_LATENT),
       mr = has(x, QIAO_DEV_OP_MOE_ROUTE);
  if (!lw && !al && !mr) return;
  qiao_dev_buffer *b = NULL;
  qiao_dev_error *e = x->api->buffer_create(x->dev->device, BUF, &b);
  if (e != NULL) {
    qiao__cf_check(x, "argument_rules_1_4", false, "buffer_create(%d): %s", BUF,
                   x->api->error_message(e));
    x->api->error_destroy(e);
    return;
  }
  if (lw) latent_write_rules(x, b);
  if (al) attention_latent_rules(x, b);
  if (mr) moe_route_rules(x, b);
  qiao__cf_drain(x);
  x->api->buffer_destroy(b);
}
