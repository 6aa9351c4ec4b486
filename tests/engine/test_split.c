/* Layers split across devices in one engine (options.split) and the memory
 * math done before loading.
 *
 * On stories260K and every tiny reference architecture: a split across two
 * or three CPU stages gives logits bit-identical to the single CPU run (the
 * same kernels see the same rows; only x crosses the boundaries) and the
 * same greedy ids; with the OpenCL plugin (argv[2]) on one side of the split,
 * the logits of every prompt position stay within the device ABI's model
 * budget (§12.3, 1e-3 relative L2) of the single CPU run and of the
 * reference, and the greedy ids equal the reference's (for stories260K also
 * llama2.c's 256 from BOS, so the cache spans many blocks on both devices).
 * Bad split strings are refused with a message about the split. With the
 * small-memory test plugin (argv[1]): a placement that does not fit is
 * refused before any device is opened, naming the device, the layers and
 * the exact shortfall in bytes; split by memory follows the devices'
 * reported memory and is refused when its share does not fit. */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_test_util.h"
#include "qiao/model.h"

#define MODEL_BUDGET 1e-3 /* device ABI §12.3 */

static const char *smallmem, *opencl;

static qiao_status *make(const qiao_model *m, const char *backend, const char *split,
                         qiao_engine_split_by by, uint32_t ctx, qiao_engine **out) {
  qiao_engine_options o = qiao_engine_default_options();
  o.n_threads = 2;
  o.max_context = ctx;
  o.backend = backend;
  o.split = split;
  o.split_by = by;
  return qiao_engine_create(m, &o, out);
}

/* Logits of every prompt position and n_ids greedy ids. */
static bool run(const qiao_model *m, const char *split, const int32_t *prompt, size_t n_prompt,
                float *logits, int32_t *ids, size_t n_ids) {
  qiao_engine *e = NULL;
  CHECK_OK(make(m, NULL, split, QIAO_ENGINE_SPLIT_BY_LAYERS, 64, &e));
  if (e == NULL) return false;
  CHECK_OK(all_logits(e, prompt, n_prompt, logits));
  CHECK_OK(greedy(e, prompt, n_prompt, ids, n_ids));
  qiao_engine_destroy(e);
  return true;
}

static double worst_rel_l2(const float *a, const float *b, size_t rows, size_t vocab) {
  double worst = 0;
  for (size_t r = 0; r < rows; r++) {
    double err = rel_l2(a + r * vocab, b + r * vocab, vocab);
    if (err > worst) worst = err;
  }
  return worst;
}

/* One model: CPU splits bit-identical; OpenCL splits within the budget. */
static void check_model(const char *name, const qiao_model *m, const int32_t *prompt,
                        size_t n_prompt, const float *ref, const int32_t *ref_greedy,
                        size_t n_greedy) {
  qiao_hparams hp;
  CHECK_OK(qiao_model_get_hparams(m, &hp));
  const uint32_t L = hp.n_layers, V = hp.vocab_size;
  const size_t n_logits = n_prompt * V;
  float *single = malloc(n_logits * sizeof(float)), *split = malloc(n_logits * sizeof(float));
  int32_t single_ids[64] = {0}, ids[64] = {0};
  CHECK(run(m, NULL, prompt, n_prompt, single, single_ids, n_greedy));
  CHECK(memcmp(single_ids, ref_greedy, n_greedy * sizeof(int32_t)) == 0);

  char splits[4][512];
  int n_splits = 0;
  snprintf(splits[n_splits++], 512, "cpu:0-%u,cpu:%u-%u", L / 2 - 1, L / 2, L - 1);
  snprintf(splits[n_splits++], 512, "cpu,cpu");
  if (L >= 3) snprintf(splits[n_splits++], 512, "cpu:0-0,cpu:1-%u,cpu:%u-%u", L - 2, L - 1, L - 1);
  for (int s = 0; s < n_splits; s++) {
    memset(split, 0, n_logits * sizeof(float));
    CHECK(run(m, splits[s], prompt, n_prompt, split, ids, n_greedy));
    bool same = memcmp(split, single, n_logits * sizeof(float)) == 0;
    printf("%-10s --split %-28s logits %s, greedy %s\n", name, splits[s],
           same ? "bit-identical" : "DIFFER",
           memcmp(ids, single_ids, n_greedy * 4) == 0 ? "identical" : "DIFFER");
    CHECK(same);
    CHECK(memcmp(ids, single_ids, n_greedy * sizeof(int32_t)) == 0);
  }
  if (opencl != NULL) {
    char ocl[2][4200];
    snprintf(ocl[0], sizeof(ocl[0]), "cpu:0-%u,%s:%u-%u", L / 2 - 1, opencl, L / 2, L - 1);
    snprintf(ocl[1], sizeof(ocl[1]), "%s:0-%u,cpu:%u-%u", opencl, L / 2 - 1, L / 2, L - 1);
    for (int s = 0; s < 2; s++) {
      CHECK(run(m, ocl[s], prompt, n_prompt, split, ids, n_greedy));
      double vs_cpu = worst_rel_l2(split, single, n_prompt, V);
      double vs_ref = worst_rel_l2(split, ref, n_prompt, V);
      printf("%-10s --split %s: worst rel L2 %.3g vs cpu, %.3g vs reference\n", name,
             s ? "opencl+cpu" : "cpu+opencl", vs_cpu, vs_ref);
      CHECK(vs_cpu <= MODEL_BUDGET);
      CHECK(vs_ref <= MODEL_BUDGET);
      CHECK(memcmp(ids, ref_greedy, n_greedy * sizeof(int32_t)) == 0);
    }
  }
  free(single);
  free(split);
}

/* The placement the engine reports for a CPU split of stories260K. */
static void check_placement(const qiao_model *m) {
  qiao_engine *one = NULL, *two = NULL;
  CHECK_OK(make(m, NULL, NULL, QIAO_ENGINE_SPLIT_BY_LAYERS, 64, &one));
  CHECK_OK(make(m, NULL, "cpu:0-1,cpu:2-4", QIAO_ENGINE_SPLIT_BY_LAYERS, 64, &two));
  if (one == NULL || two == NULL) return;
  const qiao_hparams *hp = qiao_engine_hparams(one);
  CHECK(qiao_engine_stage_count(one) == 1 && qiao_engine_stage_count(two) == 2);
  qiao_engine_stage_info a = {.struct_size = sizeof(a)}, b = a, c = a;
  qiao_engine_stage_info_get(one, 0, &a);
  qiao_engine_stage_info_get(two, 0, &b);
  qiao_engine_stage_info_get(two, 1, &c);
  CHECK(a.first_layer == 0 && a.last_layer == hp->n_layers - 1 && a.embedding && a.output);
  CHECK(a.boundary_bytes_per_token == 0 && strcmp(a.backend, "cpu") == 0 && a.memory_bytes > 0);
  CHECK(b.first_layer == 0 && b.last_layer == 1 && b.embedding && !b.output);
  CHECK(c.first_layer == 2 && c.last_layer == 4 && !c.embedding && c.output);
  CHECK(b.boundary_bytes_per_token == (uint64_t)hp->dim * 4 && c.boundary_bytes_per_token == 0);
  CHECK(b.kv_cache_bytes + c.kv_cache_bytes == a.kv_cache_bytes);
  CHECK(b.kv_cache_bytes * 3 == c.kv_cache_bytes * 2);
  /* Each stage has its RoPE frequencies; a tied embedding is also the
   * output, so the last stage holds a copy of it. */
  const qiao_tensor *embd = qiao_model_tensor_find(m, "token_embd.weight");
  uint64_t extra = (uint64_t)(hp->rope_dim / 2) * 4 + (hp->tied_embeddings ? embd->n_bytes : 0);
  CHECK(b.weight_bytes + c.weight_bytes == a.weight_bytes + extra);
  qiao_engine_destroy(one);
  qiao_engine_destroy(two);
}

static void expect_refused(const qiao_model *m, const char *split, qiao_engine_split_by by,
                           bool fallback, const char *needle) {
  qiao_engine_options o = qiao_engine_default_options();
  o.max_context = 64;
  o.split = split;
  o.split_by = by;
  o.allow_fallback = fallback;
  qiao_engine *e = NULL;
  qiao_status *st = qiao_engine_create(m, &o, &e);
  const char *msg = qiao_status_message(st);
  if (st == NULL || strncmp(msg, "split", 5) != 0 || strstr(msg, needle) == NULL) {
    fprintf(stderr, "split \"%s\": expected a refusal with \"%s\", got: %s\n", split, needle,
            st ? msg : "success");
    test_failures++;
  }
  qiao_status_free(st);
  qiao_engine_destroy(e);
}

static void check_bad_splits(const qiao_model *m) {
  const qiao_engine_split_by L = QIAO_ENGINE_SPLIT_BY_LAYERS, M = QIAO_ENGINE_SPLIT_BY_MEMORY;
  expect_refused(m, "cpu:0-1,cpu:3-4", L, false, "layers 2-2 are on no device");
  expect_refused(m, "cpu:1-4", L, false, "layers 0-0 are on no device");
  expect_refused(m, "cpu:0-3", L, false, "layers 4-4 are on no device");
  expect_refused(m, "cpu:0-2,cpu:2-4", L, false, "layer 2 is on two devices");
  expect_refused(m, "cpu:3-4,cpu:0-2", L, false, "ranges out of order (3-4 before 0-2)");
  expect_refused(m, "cpu:0-2,cpu:3-5", L, false, "layer 5 is out of range");
  expect_refused(m, "cpu:0-2,nosuchbackend:3-4", L, false, "nosuchbackend");
  expect_refused(m, "cpu:0-2,", L, false, "an empty device");
  expect_refused(m, ",", L, false, "an empty device");
  expect_refused(m, ":0-4", L, false, "without a backend");
  expect_refused(m, "cpu:0-3,cpu,cpu", L, false,
                 "2 devices without a layer range but 1 layer left for them (before layer 5)");
  expect_refused(m, "cpu,cpu:0-4", L, false,
                 "1 device without a layer range but 0 layers left for it (before layer 0)");
  expect_refused(m, "cpu:4-2,cpu:3-4", L, false, "runs backwards");
  expect_refused(m, "cpu:0-99999999999,cpu:3-4", L, false, "bad layer range");
  expect_refused(m, "cpu,cpu,cpu,cpu,cpu,cpu", L, false, "6 devices for 5 layers");
  expect_refused(m, "cpu:0-2,cpu:3-4", M, false, "without layer ranges");
  expect_refused(m, "cpu:0-2,cpu:3-4", L, true, "--allow-fallback");
  qiao_engine_options o = qiao_engine_default_options();
  o.split_by = QIAO_ENGINE_SPLIT_BY_MEMORY; /* and no split */
  qiao_engine *e = NULL;
  CHECK_ERR(qiao_engine_create(m, &o, &e), QIAO_INVALID_ARGUMENT);
  o.split_by = (qiao_engine_split_by)7;
  CHECK_ERR(qiao_engine_create(m, &o, &e), QIAO_INVALID_ARGUMENT);
  CHECK(e == NULL);
}

/* The bytes one stage needs, from the plan on the CPU (which fits). */
static uint64_t need_of(const qiao_engine_stage_info *g) {
  return g->weight_bytes + g->kv_cache_bytes + g->scratch_bytes;
}

static void check_memory(const qiao_model *m, const float *single_logits, const int32_t *prompt,
                         size_t n_prompt) {
  char spec[4200];
  qiao_engine *e = NULL;
  qiao_engine_options o = qiao_engine_default_options();
  o.max_context = 64;
  /* What one device holds for every layer: from the plan, on the CPU. */
  qiao_engine_stage_info *plan = NULL;
  uint32_t n = 0;
  CHECK_OK(qiao_engine_plan(m, &o, &plan, &n));
  CHECK(n == 1 && plan != NULL);
  if (plan == NULL) return;
  const uint64_t need = need_of(&plan[0]);
  free(plan);

  /* One small device: refused before any device is opened. */
  setenv("QIAO_TEST_DEVICE_MEMORY", "1048576", 1);
  setenv("QIAO_TEST_NO_OPEN", "1", 1);
  o.backend = smallmem;
  qiao_status *st = qiao_engine_create(m, &o, &e);
  char want[256];
  snprintf(want, sizeof(want), "but has 1.0 MiB: %" PRIu64 " bytes short", need - (1u << 20));
  const char *msg = qiao_status_message(st);
  printf("refused: %s\n", msg);
  CHECK(qiao_status_code(st) == QIAO_LIMIT && e == NULL);
  CHECK(strstr(msg, "device smallmem:0 (small memory test device 0) needs ") != NULL);
  CHECK(strstr(msg, "for layers 0-4 with the embedding and the output (weights ") != NULL);
  CHECK(strstr(msg, "KV cache ") != NULL && strstr(msg, "scratch ") != NULL);
  CHECK(strstr(msg, want) != NULL);
  qiao_status_free(st);
  CHECK_ERR(qiao_engine_plan(m, &o, &plan, &n), QIAO_LIMIT);

  /* Enough memory: the plan does not open the device; the engine runs. */
  setenv("QIAO_TEST_DEVICE_MEMORY", "67108864", 1);
  CHECK_OK(qiao_engine_plan(m, &o, &plan, &n));
  free(plan);
  setenv("QIAO_TEST_NO_OPEN", "0", 1);
  CHECK_OK(qiao_engine_create(m, &o, &e));
  if (e != NULL) {
    qiao_hparams hp = *qiao_engine_hparams(e);
    float *logits = malloc(n_prompt * hp.vocab_size * sizeof(float));
    CHECK_OK(all_logits(e, prompt, n_prompt, logits));
    CHECK(memcmp(logits, single_logits, n_prompt * hp.vocab_size * sizeof(float)) == 0);
    free(logits);
    qiao_engine_destroy(e);
    e = NULL;
  }

  /* Devices without ranges share the layers by memory (device 1 reports 3x
   * device 0's) or evenly; in a mix, they share the layers after the ranged
   * one. last[i] is stage i's last layer. */
  char mix[4200];
  snprintf(spec, sizeof(spec), "%s:0,%s:1", smallmem, smallmem);
  snprintf(mix, sizeof(mix), "cpu:0-0,%s:0,%s:1", smallmem, smallmem);
  const struct {
    const char *spec;
    qiao_engine_split_by by;
    uint32_t n_stages, last[3];
  } cases[] = {{spec, QIAO_ENGINE_SPLIT_BY_MEMORY, 2, {0, 4}},    /* 1 + 4 */
               {spec, QIAO_ENGINE_SPLIT_BY_LAYERS, 2, {2, 4}},    /* 3 + 2 */
               {mix, QIAO_ENGINE_SPLIT_BY_MEMORY, 3, {0, 1, 4}},  /* 1, then 1 + 3 */
               {mix, QIAO_ENGINE_SPLIT_BY_LAYERS, 3, {0, 2, 4}}}; /* 1, then 2 + 2 */
  for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
    CHECK_OK(make(m, NULL, cases[c].spec, cases[c].by, 64, &e));
    if (e == NULL) continue;
    CHECK(qiao_engine_stage_count(e) == cases[c].n_stages);
    uint32_t small = 0; /* the smallmem stages seen */
    for (uint32_t i = 0; i < cases[c].n_stages; i++) {
      qiao_engine_stage_info g = {.struct_size = sizeof(g)};
      qiao_engine_stage_info_get(e, i, &g);
      CHECK(g.first_layer == (i ? cases[c].last[i - 1] + 1 : 0));
      CHECK(g.last_layer == cases[c].last[i]);
      if (strcmp(g.backend, "smallmem") == 0) {
        CHECK(g.memory_bytes == (64ull << 20) * (1 + 2ull * g.device_index));
        small++;
      }
    }
    CHECK(small == 2);
    qiao_hparams hp = *qiao_engine_hparams(e);
    float *logits = malloc(n_prompt * hp.vocab_size * sizeof(float));
    CHECK_OK(all_logits(e, prompt, n_prompt, logits));
    CHECK(memcmp(logits, single_logits, n_prompt * hp.vocab_size * sizeof(float)) == 0);
    free(logits);
    qiao_engine_destroy(e);
    e = NULL;
  }

  /* Split by memory beside the CPU's gigabytes: the small device still
   * runs one layer (the last, with the output), which does not fit. */
  setenv("QIAO_TEST_DEVICE_MEMORY", "1048576", 1);
  setenv("QIAO_TEST_NO_OPEN", "1", 1);
  snprintf(spec, sizeof(spec), "cpu,%s:0", smallmem);
  st = make(m, NULL, spec, QIAO_ENGINE_SPLIT_BY_MEMORY, 64, &e);
  msg = qiao_status_message(st);
  printf("refused: %s\n", msg);
  CHECK(qiao_status_code(st) == QIAO_LIMIT);
  CHECK(strstr(msg, "device smallmem:0 (small memory test device 0) needs ") != NULL);
  CHECK(strstr(msg, "for layers 4-4 with the output") != NULL);
  qiao_status_free(st);

  /* Two stages on one device: each fits alone, together they do not. */
  o.backend = NULL;
  o.split = "cpu:0-2,cpu:3-4";
  CHECK_OK(qiao_engine_plan(m, &o, &plan, &n));
  if (plan != NULL && n == 2) {
    uint64_t a = need_of(&plan[0]), b = need_of(&plan[1]), has = (a > b ? a : b) + 1024;
    char mem[32];
    snprintf(mem, sizeof(mem), "%" PRIu64, has);
    setenv("QIAO_TEST_DEVICE_MEMORY", mem, 1);
    snprintf(spec, sizeof(spec), "%s:0-2,%s:3-4", smallmem, smallmem);
    st = make(m, NULL, spec, QIAO_ENGINE_SPLIT_BY_LAYERS, 64, &e);
    msg = qiao_status_message(st);
    snprintf(want, sizeof(want), "%" PRIu64 " bytes short", a + b - has);
    printf("refused: %s\n", msg);
    CHECK(qiao_status_code(st) == QIAO_LIMIT);
    CHECK(strstr(msg, "for layers 0-2, 3-4 ") != NULL && strstr(msg, want) != NULL);
    qiao_status_free(st);
  }
  free(plan);
  unsetenv("QIAO_TEST_NO_OPEN");
  unsetenv("QIAO_TEST_DEVICE_MEMORY");
}

/* External stages: engine A runs some layers and hands x with the pass to
 * engine B (as a pipeline stage on another machine would), which runs the
 * rest with qiao_engine_forward_hidden. Logits bit-identical to one engine,
 * greedy ids through the KV cache identical. */
static qiao_status *run_on_b(void *user, const qiao_engine_pass *pass, float *x) {
  return qiao_engine_forward_hidden((qiao_engine *)user, pass, x);
}

static void check_external(const qiao_model *m, const float *single, const int32_t *single_ids,
                           const int32_t *prompt, size_t n_prompt, size_t n_ids) {
  const char *pairs[2][2] = {{"cpu:0-1,external:2-4", "external:0-1,cpu:2-4"},
                             {"cpu:0-0,external:1-3,cpu:4-4", "external:0-0,cpu:1-3,external:4-4"}};
  for (int p = 0; p < 2; p++) {
    qiao_engine *a = NULL, *b = NULL;
    qiao_engine_options o = qiao_engine_default_options();
    o.n_threads = 2;
    o.max_context = 64;
    o.split = pairs[p][1];
    CHECK_OK(qiao_engine_create(m, &o, &b));
    o.split = pairs[p][0];
    o.external = run_on_b;
    o.external_user = b;
    CHECK_OK(qiao_engine_create(m, &o, &a));
    if (a == NULL || b == NULL) {
      qiao_engine_destroy(a);
      qiao_engine_destroy(b);
      continue;
    }
    qiao_hparams hp = *qiao_engine_hparams(a);
    float *logits = calloc(n_prompt * hp.vocab_size, sizeof(float));
    int32_t ids[64] = {0};
    CHECK_OK(all_logits(a, prompt, n_prompt, logits));
    CHECK_OK(greedy(a, prompt, n_prompt, ids, n_ids));
    bool same = memcmp(logits, single, n_prompt * hp.vocab_size * sizeof(float)) == 0;
    printf("external %s | %s: logits %s, greedy %s\n", pairs[p][0], pairs[p][1],
           same ? "bit-identical" : "DIFFER",
           memcmp(ids, single_ids, n_ids * 4) == 0 ? "identical" : "DIFFER");
    CHECK(same && memcmp(ids, single_ids, n_ids * sizeof(int32_t)) == 0);
    qiao_engine_stage_info g = {.struct_size = sizeof(g)};
    qiao_engine_stage_info_get(a, 1, &g);
    CHECK(strcmp(g.backend, "external") == 0 && g.weight_bytes == 0 && g.kv_cache_bytes == 0);
    /* B has no embedding; a pass with an index out of range is refused. */
    int32_t seq = 0, pos = 0, tok = 1;
    qiao_batch batch = {1, &tok, &seq, &pos, NULL};
    CHECK_ERR(qiao_engine_forward(b, &batch, NULL, NULL), QIAO_INVALID_ARGUMENT);
    int32_t table[4] = {0, 0, 0, 0}, slot = 1 << 20;
    qiao_engine_pass bad = {.struct_size = sizeof(bad),
                            .n_tokens = 1,
                            .n_seqs = 1,
                            .max_blocks_per_seq = 4,
                            .positions = &pos,
                            .slots = &slot,
                            .token_seq = &seq,
                            .block_table = table};
    CHECK_ERR(qiao_engine_forward_hidden(b, &bad, logits), QIAO_INVALID_ARGUMENT);
    slot = 0;
    table[3] = 99;
    CHECK_ERR(qiao_engine_forward_hidden(b, &bad, logits), QIAO_INVALID_ARGUMENT);
    /* A caller of 0.3 (no copies in its pass) is still served; a copy of a
     * block out of range is refused. */
    table[3] = 0;
    qiao_engine_pass old = bad;
    old.struct_size = offsetof(qiao_engine_pass, n_copies);
    CHECK_OK(qiao_engine_forward_hidden(b, &old, logits));
    int32_t copy[2] = {0, 1 << 20};
    bad.n_copies = 1;
    bad.copies = copy;
    CHECK_ERR(qiao_engine_forward_hidden(b, &bad, logits), QIAO_INVALID_ARGUMENT);
    free(logits);
    qiao_engine_destroy(a);
    qiao_engine_destroy(b);
  }
  /* No runner, every stage external: refused. */
  qiao_engine *e = NULL;
  qiao_engine_options o = qiao_engine_default_options();
  o.max_context = 64;
  o.split = "cpu:0-1,external:2-4";
  CHECK_ERR(qiao_engine_create(m, &o, &e), QIAO_INVALID_ARGUMENT);
  o.external = run_on_b;
  o.split = "external:0-1,external:2-4";
  CHECK_ERR(qiao_engine_create(m, &o, &e), QIAO_INVALID_ARGUMENT);
  CHECK(e == NULL);
}

/* The last row's logits of `n` tokens of `ids` from position `from` of seq. */
static qiao_status *last_logits(qiao_engine *e, int32_t seq, const int32_t *ids, uint32_t from,
                                uint32_t n, float *out) {
  int32_t tokens[64], seqs[64], pos[64];
  for (uint32_t i = 0; i < n - from; i++) {
    tokens[i] = ids[from + i];
    seqs[i] = seq;
    pos[i] = (int32_t)(from + i);
  }
  qiao_batch b = {n - from, tokens, seqs, pos, NULL};
  return qiao_engine_forward(e, &b, out, NULL);
}

/* The prefix cache with an external stage: a sequence that takes cached
 * blocks and writes into one (after a truncate) gets a private copy of it,
 * and engine B (the external stage) must make the same copy, or its KV of
 * the copied positions is stale. Logits bit-identical to one engine that
 * computed the same tokens from scratch. */
static void check_external_prefix_cache(const qiao_model *m) {
  qiao_engine *a = NULL, *b = NULL, *one = NULL;
  qiao_engine_options o = qiao_engine_default_options();
  o.n_threads = 2;
  o.max_context = 64;
  CHECK_OK(qiao_engine_create(m, &o, &one));
  o.split = "external:0-1,cpu:2-4";
  CHECK_OK(qiao_engine_create(m, &o, &b));
  o.split = "cpu:0-1,external:2-4";
  o.external = run_on_b;
  o.external_user = b;
  o.prefix_cache = true;
  CHECK_OK(qiao_engine_create(m, &o, &a));
  if (a == NULL || b == NULL || one == NULL) {
    qiao_engine_destroy(a);
    qiao_engine_destroy(b);
    qiao_engine_destroy(one);
    return;
  }
  const uint32_t V = qiao_engine_hparams(a)->vocab_size;
  qiao_engine_cache_stats cs = {.struct_size = sizeof(cs)};
  qiao_engine_cache_stats_get(a, &cs);
  const uint32_t B = cs.block_size, n = 2 * B + 8, cut = B + B / 2; /* cut: inside block 1 */
  CHECK(n <= 64);
  int32_t ids[64], other[64];
  for (uint32_t i = 0; i < n; i++) {
    ids[i] = (int32_t)(1 + (i * 37 + 5) % (V - 1));
    other[i] = i < cut ? ids[i] : (int32_t)(1 + (i * 53 + 11) % (V - 1));
  }
  float *got = malloc(V * sizeof(float)), *want = malloc(V * sizeof(float));
  int32_t s1 = -1, s2 = -1, s3 = -1;
  uint32_t cached = 0;
  /* A computes ids (keying blocks 0 and 1), then forgets the sequence. */
  CHECK_OK(qiao_engine_seq_create(a, &s1));
  CHECK_OK(last_logits(a, s1, ids, 0, n, got));
  qiao_engine_seq_free(a, s1);
  /* A new sequence takes blocks 0-1 from the cache, is cut back into block
   * 1 and goes on with other tokens: block 1 is copied before the write. */
  CHECK_OK(qiao_engine_seq_create_cached(a, ids, n, &s2, &cached));
  CHECK(cached == 2 * B);
  CHECK_OK(qiao_engine_seq_truncate(a, s2, cut));
  CHECK_OK(last_logits(a, s2, other, cut, n, got));
  CHECK_OK(qiao_engine_seq_create(one, &s3));
  CHECK_OK(last_logits(one, s3, other, 0, n, want));
  bool same = memcmp(got, want, V * sizeof(float)) == 0;
  printf("external stage with the prefix cache: %u positions cached, a copy on write: logits %s\n",
         cached, same ? "bit-identical" : "DIFFER");
  CHECK(same);
  free(got);
  free(want);
  qiao_engine_destroy(a);
  qiao_engine_destroy(b);
  qiao_engine_destroy(one);
}

/* stories260K from BOS for 256 tokens: llama2.c's ids, on a cpu+opencl split. */
static void check_bos_256(const qiao_model *m) {
  int32_t ref[300], ids[300], bos = 1;
  size_t n_ref = test_llama2c_ids("reference/stories260K/stories260K_greedy_bos_256.txt", ref, 300);
  CHECK(n_ref == 256);
  char spec[4200];
  snprintf(spec, sizeof(spec), "cpu:0-1,%s:2-4", opencl);
  qiao_engine *e = NULL;
  CHECK_OK(make(m, NULL, spec, QIAO_ENGINE_SPLIT_BY_LAYERS, 300, &e));
  if (e == NULL) return;
  CHECK_OK(greedy(e, &bos, 1, ids, 256));
  CHECK(memcmp(ids, ref, 256 * sizeof(int32_t)) == 0);
  printf("stories260K from BOS, cpu+opencl: 256 ids %s llama2.c's\n",
         memcmp(ids, ref, 256 * sizeof(int32_t)) == 0 ? "equal" : "DIFFER from");
  qiao_engine_destroy(e);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: engine_split SMALLMEM_PLUGIN [OPENCL_PLUGIN]\n");
    return 2;
  }
  smallmem = argv[1];
  opencl = argc > 2 && argv[2][0] ? argv[2] : NULL;
  if (opencl == NULL) printf("no OpenCL plugin: the cpu+opencl splits are not run\n");

  const char *names[] = {"stories260K", "llama2", "llama3", "qwen2", "qwen3", "qwen3_moe"};
  for (size_t a = 0; a < sizeof(names) / sizeof(names[0]); a++) {
    const bool stories = a == 0;
    char json[4096], rel[256], dir[4096];
    snprintf(rel, sizeof(rel),
             stories ? "reference/stories260K/hf_reference.json"
                     : "reference/tiny/%s/reference.json",
             names[a]);
    snprintf(json, sizeof(json), "%s", test_shared_path(rel));
    snprintf(rel, sizeof(rel),
             stories ? "reference/stories260K/hf_logits.f32" : "reference/tiny/%s/logits.f32",
             names[a]);
    float *ref = (float *)test_read_file(test_shared_path(rel), NULL);
    snprintf(rel, sizeof(rel),
             stories ? "models/stories260K/stories260K.gguf" : "reference/tiny/%s/config.json",
             names[a]);
    snprintf(dir, sizeof(dir), "%s", test_shared_path(rel));
    if (!stories) *strrchr(dir, '/') = '\0';
    int32_t prompt[64], ref_greedy[64];
    size_t n_prompt = ref_ids(json, "prompt", prompt, 64);
    size_t n_greedy = ref_ids(json, "greedy", ref_greedy, 64);
    CHECK(n_prompt > 0 && n_greedy == 24 && ref != NULL);
    qiao_model *model = NULL;
    CHECK_OK(qiao_model_open(dir, NULL, &model));
    if (model != NULL && ref != NULL && n_prompt > 0) {
      check_model(names[a], model, prompt, n_prompt, ref, ref_greedy, n_greedy);
      if (stories) {
        check_placement(model);
        check_bad_splits(model);
        qiao_hparams hp;
        CHECK_OK(qiao_model_get_hparams(model, &hp));
        float *single = malloc(n_prompt * hp.vocab_size * sizeof(float));
        int32_t ids[64];
        CHECK(run(model, NULL, prompt, n_prompt, single, ids, n_greedy));
        check_memory(model, single, prompt, n_prompt);
        check_external(model, single, ids, prompt, n_prompt, n_greedy);
        check_external_prefix_cache(model);
        free(single);
        if (opencl != NULL) check_bos_256(model);
      }
    }
    qiao_model_close(model);
    free(ref);
  }
  TEST_END();
}
