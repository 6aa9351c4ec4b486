/* The ops of device ABI 1.4 on the CPU backend, for one kernel set (the
 * argument: scalar, avx2 or avx512; exit 77 when the processor lacks it):
 * attention_latent and moe_route give every token the same bits alone on
 * one thread as inside a batch on four threads, in the ordinary and in the
 * batch-invariant mode (each row a function of its own inputs); and
 * moe_route's group rules on hand-computed DeepSeek-V2/V3 examples, the
 * dropped groups' experts choosing with 0 (and so winning when the bias
 * makes every kept expert's score negative). The values themselves are
 * checked against a float64 reference by conformance (src/conformance). */
#include "cpu_test.h"

#define F32 QIAO_DEV_F32

/* ---- attention_latent: a token alone equals the token in a batch ------------- */

enum { HEADS = 11, LAT = 40, ROPE = 8, ROW = LAT + ROPE, BLOCK = 8, BLOCKS = 14 };

typedef struct latent_setup {
  qiao_dev_dtype dt;
  uint8_t *cache; /* (BLOCKS * BLOCK, ROW) in dt */
  int32_t table[2 * 10];
  float *q_latent, *q_rope; /* (n, HEADS, LAT), (n, HEADS, ROPE) */
  int32_t seq[16], pos[16];
  uint64_t n;
} latent_setup;

static void latent_run(env *t, const latent_setup *s, uint64_t first, uint64_t count, float *out) {
  uint64_t elt = s->dt == QIAO_DEV_F16 ? 2 : 4, n_slots = BLOCKS * BLOCK;
  qiao_dev_buffer *cache = buf(t, s->cache, n_slots * ROW * elt);
  qiao_dev_buffer *table = buf(t, s->table, sizeof(s->table));
  qiao_dev_buffer *ql = buf(t, s->q_latent + first * HEADS * LAT, count * HEADS * LAT * 4);
  qiao_dev_buffer *qr = buf(t, s->q_rope + first * HEADS * ROPE, count * HEADS * ROPE * 4);
  qiao_dev_buffer *seq = buf(t, s->seq + first, count * 4);
  qiao_dev_buffer *pos = buf(t, s->pos + first, count * 4);
  qiao_dev_buffer *o = buf(t, NULL, count * HEADS * LAT * 4);
  qiao_dev_attention_latent_args a = {.struct_size = sizeof(a),
                                      .n_tokens = count,
                                      .n_heads = HEADS,
                                      .latent_dim = LAT,
                                      .rope_dim = ROPE,
                                      .n_seqs = 2,
                                      .max_blocks_per_seq = 10,
                                      .block_size = BLOCK,
                                      .n_slots = n_slots,
                                      .window = 30,
                                      .scale = 0.125f,
                                      .cache_dtype = s->dt,
                                      .q_latent = ref(ql),
                                      .q_rope = ref(qr),
                                      .cache = ref(cache),
                                      .block_table = ref(table),
                                      .token_seq = ref(seq),
                                      .token_pos = ref(pos),
                                      .out = ref(o)};
  EXPECT_OK(api->attention_latent(t->queue, &a));
  get(t, out, o, count * HEADS * LAT * 4);
  qiao_dev_buffer *all[] = {cache, table, ql, qr, seq, pos, o};
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    api->buffer_destroy(all[i]);
}

static void test_latent_invariance(env *alone, env *batch, qiao_dev_dtype dt, const char *mode) {
  latent_setup s = {.dt = dt};
  uint64_t n_slots = BLOCKS * BLOCK, elt = dt == QIAO_DEV_F16 ? 2 : 4;
  float *cf = rnd_floats(n_slots * ROW, 1.0f);
  s.cache = malloc(n_slots * ROW * elt);
  for (uint64_t i = 0; i < n_slots * ROW; i++)
    if (dt == QIAO_DEV_F16)
      memcpy(s.cache + 2 * i, &(uint16_t){to_f16(cf[i])}, 2);
    else
      memcpy(s.cache + 4 * i, &cf[i], 4);
  free(cf);
  /* sequence 0 holds 70 positions in blocks 13, 12, ..., 5; sequence 1 holds 23 in 0, 2, 4 */
  for (int b = 0; b < 20; b++)
    s.table[b] = -1;
  for (int b = 0; b < 9; b++)
    s.table[b] = 13 - b;
  for (int b = 0; b < 3; b++)
    s.table[10 + b] = 2 * b;
  s.n = 13; /* decode-like and prefill-like tokens of both, interleaved */
  for (uint64_t i = 0; i < s.n; i++) {
    s.seq[i] = i % 3 == 2 ? 1 : 0;
    s.pos[i] = s.seq[i] ? 20 + (int32_t)(i % 3) : 57 + (int32_t)i;
  }
  s.q_latent = rnd_floats(s.n * HEADS * LAT, 1.0f);
  s.q_rope = rnd_floats(s.n * HEADS * ROPE, 3.0f);
  uint64_t per = HEADS * LAT;
  float *together = malloc(s.n * per * 4), *one = malloc(per * 4);
  latent_run(batch, &s, 0, s.n, together);
  for (uint64_t i = 0; i < s.n; i++) {
    latent_run(alone, &s, i, 1, one);
    if (memcmp(one, together + i * per, per * 4) != 0) {
      fprintf(stderr, "attention_latent %s %s%s: token %llu alone differs from it in the batch\n",
              alone->isa, dt == QIAO_DEV_F16 ? "f16" : "f32", mode, (unsigned long long)i);
      failures++;
    }
  }
  for (uint64_t i = 0; i < s.n * per; i++)
    if (!isfinite(together[i])) {
      fprintf(stderr, "attention_latent: out[%llu] is not finite\n", (unsigned long long)i);
      failures++;
      break;
    }
  free(together);
  free(one);
  free(s.cache);
  free(s.q_latent);
  free(s.q_rope);
}

/* ---- moe_route ------------------------------------------------------------------- */

typedef struct route_out {
  int32_t ids[64 * 8];
  float weights[64 * 8];
} route_out;

static qiao_dev_error *route(env *t, qiao_dev_moe_route_args a, const float *logits,
                             const float *bias, route_out *out) {
  qiao_dev_buffer *l = buf(t, logits, a.n_tokens * a.n_experts * 4);
  qiao_dev_buffer *b = bias ? buf(t, bias, a.n_experts * 4) : NULL;
  qiao_dev_buffer *ids = buf(t, NULL, a.n_tokens * a.k * 4 + 4);
  qiao_dev_buffer *w = buf(t, NULL, a.n_tokens * a.k * 4 + 4);
  a.struct_size = sizeof(a);
  a.logits = ref(l);
  a.bias = (qiao_dev_ref){b, 0};
  a.ids = ref(ids);
  a.weights = ref(w);
  qiao_dev_error *e = api->moe_route(t->queue, &a);
  if (e == NULL && out != NULL) {
    get(t, out->ids, ids, a.n_tokens * a.k * 4);
    get(t, out->weights, w, a.n_tokens * a.k * 4);
  }
  api->buffer_destroy(l);
  api->buffer_destroy(b);
  api->buffer_destroy(ids);
  api->buffer_destroy(w);
  return e;
}

static void test_route_invariance(env *alone, env *batch, const char *mode) {
  enum { N = 37, E = 64, K = 8 };
  qiao_dev_moe_route_args a = {.n_tokens = N,
                               .n_experts = E,
                               .k = K,
                               .scoring = QIAO_DEV_MOE_SCORE_SIGMOID,
                               .normalize = 1,
                               .n_groups = 8,
                               .topk_groups = 4,
                               .group_score = QIAO_DEV_MOE_GROUP_TOP2_SUM,
                               .scale = 2.5f};
  float *logits = rnd_floats(N * E, 4.0f), *bias = rnd_floats(E, 0.1f);
  route_out *together = calloc(1, sizeof(route_out)), *one = calloc(1, sizeof(route_out));
  EXPECT_OK(route(batch, a, logits, bias, together));
  a.n_tokens = 1;
  for (int t = 0; t < N; t++) {
    EXPECT_OK(route(alone, a, logits + t * E, bias, one));
    if (memcmp(one->ids, together->ids + t * K, K * 4) != 0 ||
        memcmp(one->weights, together->weights + t * K, K * 4) != 0) {
      fprintf(stderr, "moe_route %s%s: token %d alone differs from it in the batch\n", alone->isa,
              mode, t);
      failures++;
    }
  }
  free(logits);
  free(bias);
  free(together);
  free(one);
}

/* DeepSeek-V3's routing where the bias makes every kept expert's score
 * negative: the dropped groups' experts (score 0) win, in index order. */
static void test_route_masked_zero(env *t) {
  const float logits[8] = {0, 0, 0, 0, 0, 0, 0, 0}; /* p = 0.5 each */
  const float bias[8] = {-1, -1, -2, -2, -3, -3, -0.9f, -4};
  /* c = -0.5 -0.5 | -1.5 -1.5 | -2.5 -2.5 | -0.4 -3.5: group scores (top 2)
   * -1, -3, -5, -3.9: groups 0 and 1 kept, experts 4..7 choose with 0 */
  qiao_dev_moe_route_args a = {.n_tokens = 1,
                               .n_experts = 8,
                               .k = 3,
                               .scoring = QIAO_DEV_MOE_SCORE_SIGMOID,
                               .normalize = 1,
                               .n_groups = 4,
                               .topk_groups = 2,
                               .group_score = QIAO_DEV_MOE_GROUP_TOP2_SUM,
                               .scale = 2};
  route_out out;
  EXPECT_OK(route(t, a, logits, bias, &out));
  EXPECT(out.ids[0] == 4 && out.ids[1] == 5 && out.ids[2] == 6);
  for (int i = 0; i < 3; i++)
    EXPECT(fabsf(out.weights[i] - (float)(2.0 / 3.0)) <= 1e-7f);
  /* with GROUP_MAX the scores are -0.5, -1.5, -2.5, -0.4: groups 3 and 0 kept */
  a.group_score = QIAO_DEV_MOE_GROUP_MAX;
  EXPECT_OK(route(t, a, logits, bias, &out));
  EXPECT(out.ids[0] == 2 && out.ids[1] == 3 && out.ids[2] == 4); /* zeros of groups 1, 2 */
}

/* DeepSeek-V2's group_limited_greedy: softmax, one group kept by its max. */
static void test_route_v2(env *t) {
  const float logits[10] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0}; /* the last two: n_experts 10 below */
  qiao_dev_moe_route_args a = {.n_tokens = 1,
                               .n_experts = 8,
                               .k = 2,
                               .scoring = QIAO_DEV_MOE_SCORE_SOFTMAX,
                               .n_groups = 4,
                               .topk_groups = 1,
                               .group_score = QIAO_DEV_MOE_GROUP_MAX,
                               .scale = 1};
  route_out out;
  EXPECT_OK(route(t, a, logits, NULL, &out));
  EXPECT(out.ids[0] == 7 && out.ids[1] == 6);
  double sum = 0;
  for (int e = 0; e < 8; e++)
    sum += exp(logits[e] - 8.0);
  EXPECT(fabs(out.weights[0] - 1.0 / sum) <= 1e-6 &&
         fabs(out.weights[1] - exp(-1.0) / sum) <= 1e-6);
  /* the group rules */
  a.n_experts = 10;
  EXPECT_ERR(route(t, a, logits, NULL, NULL), QIAO_DEV_INVALID_ARGUMENT, "multiple of n_groups");
  a.n_experts = 8;
  a.k = 3; /* one group of 2 kept */
  EXPECT_ERR(route(t, a, logits, NULL, NULL), QIAO_DEV_INVALID_ARGUMENT, "kept groups");
}

int main(int argc, char **argv) {
  const char *isa = argc > 1 ? argv[1] : "scalar";
  api = qiao_cpu_get_api();
  for (int invariant = 0; invariant < 2; invariant++) {
    uint32_t flags = invariant ? QIAO_DEV_OPEN_BATCH_INVARIANT : 0;
    const char *mode = invariant ? " batch-invariant" : "";
    env alone, batch;
    if (!env_open_flags(&alone, isa, 1, flags)) {
      fprintf(stderr, "kernel set %s: not on this processor\n", isa);
      return 77;
    }
    if (!env_open_flags(&batch, isa, 4, flags)) return 1;
    test_latent_invariance(&alone, &batch, QIAO_DEV_F32, mode);
    test_latent_invariance(&alone, &batch, QIAO_DEV_F16, mode);
    test_route_invariance(&alone, &batch, mode);
    if (!invariant) {
      test_route_masked_zero(&alone);
      test_route_v2(&alone);
    }
    env_close(&alone);
    env_close(&batch);
  }
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
