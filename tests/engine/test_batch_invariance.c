/* Batch invariance through the engine (options.batch_invariant, device ABI
 * 1.1): on stories260K (f32, and converted to q8_0) and the tiny Qwen2 and
 * Qwen3-MoE reference models,
 *   - a sequence decoded alone gets bit-identical logits at every position
 *     when it is prefilled and decoded among 15 other sequences of other
 *     lengths (mixed prefill and decode passes, its token at changing
 *     places in the batch, other blocks of the cache);
 *   - a prompt prefilled in one pass gets the same logits at every position
 *     as one prefilled in chunks of 1, 3 and 7 tokens;
 *   - with --allow-fallback, the ops moved to the CPU backend keep the mode
 *     (the q8_0 model on a backend without q8_0 matmul equals the CPU's).
 * And the refusals: a backend whose device lacks the flag, or a 1.0 plugin
 * (which could not read the request), fails with QIAO_UNSUPPORTED; a device
 * index beyond the backend's devices fails naming both.
 * usage: engine_batch_invariance NOQ8.so V10.so NOFLAG.so */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "engine_test_util.h"
#include "qiao/model.h"

enum { OTHERS = 15, PROMPT = 7, STEPS = 10, CHUNKED = 20, MAX_CTX = 40 };

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static int32_t random_token(uint32_t vocab) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (int32_t)(1 + rng % (vocab - 1));
}

static qiao_engine *open_engine(const qiao_model *model, const char *backend, bool invariant,
                                bool fallback) {
  qiao_engine_options o = qiao_engine_default_options();
  o.backend = backend;
  o.n_threads = 2;
  o.block_size = 4; /* sequences cross many blocks */
  o.max_context = MAX_CTX;
  o.max_seqs = OTHERS + 1;
  o.n_blocks = (OTHERS + 1) * (MAX_CTX / 4);
  o.batch_invariant = invariant;
  o.allow_fallback = fallback;
  qiao_engine *e = NULL;
  CHECK_OK(qiao_engine_create(model, &o, &e));
  return e;
}

/* Number of rows (of `vocab` floats) that differ in any bit. */
static int rows_differing(const float *a, const float *b, size_t rows, uint32_t vocab) {
  int n = 0;
  for (size_t r = 0; r < rows; r++)
    n += memcmp(a + r * vocab, b + r * vocab, vocab * sizeof(float)) != 0;
  return n;
}

/* The target alone: its prompt in one pass, then one token per pass.
 * out: logits of all PROMPT + STEPS positions. */
static void target_alone(qiao_engine *e, const int32_t *tokens, float *out, uint32_t vocab) {
  int32_t seq = -1, seqs[PROMPT], pos[PROMPT];
  uint8_t want[PROMPT];
  CHECK_OK(qiao_engine_seq_create(e, &seq));
  for (int i = 0; i < PROMPT; i++) {
    seqs[i] = seq;
    pos[i] = i;
    want[i] = 1;
  }
  qiao_batch b = {PROMPT, tokens, seqs, pos, want};
  CHECK_OK(qiao_engine_forward(e, &b, out, NULL));
  for (int s = 0; s < STEPS; s++) {
    int32_t p = PROMPT + s;
    qiao_batch one = {1, &tokens[p], &seq, &p, NULL};
    CHECK_OK(qiao_engine_forward(e, &one, out + (size_t)p * vocab, NULL));
  }
  qiao_engine_seq_free(e, seq);
}

/* A batch being built: tokens of several sequences and which rows the
 * target wants. */
typedef struct batch {
  int32_t tok[512], seq[512], pos[512];
  uint8_t want[512];
  int target_row[512]; /* target position of each wanted row, or -1 */
  size_t n, n_wanted;
} batch;

static void add(batch *b, int32_t tok, int32_t seq, int32_t pos, int target_pos) {
  b->tok[b->n] = tok;
  b->seq[b->n] = seq;
  b->pos[b->n] = pos;
  b->want[b->n] = 1; /* every row: all of them run through the output matmul */
  b->target_row[b->n_wanted++] = target_pos;
  b->n++;
}

/* Runs the batch and copies the target's rows into out (by position). */
static void run(qiao_engine *e, batch *b, float *out, uint32_t vocab) {
  float *logits = malloc(b->n * vocab * sizeof(float));
  qiao_batch qb = {b->n, b->tok, b->seq, b->pos, b->want};
  CHECK_OK(qiao_engine_forward(e, &qb, logits, NULL));
  for (size_t r = 0; r < b->n_wanted; r++)
    if (b->target_row[r] >= 0)
      memcpy(out + (size_t)b->target_row[r] * vocab, logits + r * vocab, vocab * sizeof(float));
  free(logits);
  b->n = b->n_wanted = 0;
}

/* The target among OTHERS other sequences: the others' prompts first, then
 * the target's prompt beside one decode token of each other, then every
 * sequence one token per pass, the target at another place each time. */
static void target_batched(qiao_engine *e, const int32_t *tokens, float *out, uint32_t vocab) {
  int32_t other[OTHERS], len[OTHERS], target = -1;
  batch *b = calloc(1, sizeof(*b));
  for (int s = 0; s < OTHERS; s++) {
    CHECK_OK(qiao_engine_seq_create(e, &other[s]));
    len[s] = 1 + (int32_t)(rng % 13);
    for (int32_t i = 0; i < len[s]; i++)
      add(b, random_token(vocab), other[s], i, -1);
  }
  run(e, b, out, vocab);
  CHECK_OK(qiao_engine_seq_create(e, &target));
  for (int s = 0; s < OTHERS; s++) {
    if (s == OTHERS / 2)
      for (int i = 0; i < PROMPT; i++)
        add(b, tokens[i], target, i, i);
    add(b, random_token(vocab), other[s], len[s], -1);
    len[s]++;
  }
  run(e, b, out, vocab);
  for (int step = 0; step < STEPS; step++) {
    int at = (step * 7) % (OTHERS + 1);
    for (int s = 0, k = 0; k <= OTHERS; k++) {
      if (k == at) {
        add(b, tokens[PROMPT + step], target, PROMPT + step, PROMPT + step);
        continue;
      }
      add(b, random_token(vocab), other[s], len[s], -1);
      len[s]++;
      s++;
    }
    run(e, b, out, vocab);
  }
  qiao_engine_seq_free(e, target);
  for (int s = 0; s < OTHERS; s++)
    qiao_engine_seq_free(e, other[s]);
  free(b);
}

/* The prompt of CHUNKED tokens in passes of `chunk` tokens (all wanted). */
static void prefill_chunked(qiao_engine *e, const int32_t *tokens, int chunk, float *out,
                            uint32_t vocab) {
  int32_t seq = -1, seqs[CHUNKED], pos[CHUNKED];
  uint8_t want[CHUNKED];
  CHECK_OK(qiao_engine_seq_create(e, &seq));
  for (int i = 0; i < CHUNKED; i++) {
    seqs[i] = seq;
    pos[i] = i;
    want[i] = 1;
  }
  for (int i = 0; i < CHUNKED; i += chunk) {
    int n = CHUNKED - i < chunk ? CHUNKED - i : chunk;
    qiao_batch b = {(size_t)n, tokens + i, seqs + i, pos + i, want + i};
    CHECK_OK(qiao_engine_forward(e, &b, out + (size_t)i * vocab, NULL));
  }
  qiao_engine_seq_free(e, seq);
}

/* Every check on one model; `plain` runs the decode comparison without the
 * mode too, for information (it may differ: that is what the mode fixes). */
static void check_model(const char *name, const qiao_model *model, const char *backend,
                        bool fallback, float *cpu_alone) {
  qiao_engine *e = open_engine(model, backend, true, fallback);
  if (e == NULL) return;
  uint32_t vocab = qiao_engine_hparams(e)->vocab_size;
  int32_t tokens[PROMPT + STEPS], prompt[CHUNKED];
  tokens[0] = prompt[0] = 1;
  for (int i = 1; i < PROMPT + STEPS; i++)
    tokens[i] = random_token(vocab);
  for (int i = 1; i < CHUNKED; i++)
    prompt[i] = random_token(vocab);
  const size_t rows = PROMPT + STEPS;
  float *alone = malloc(rows * vocab * sizeof(float)), *mixed = malloc(rows * vocab * 4);
  target_alone(e, tokens, alone, vocab);
  target_batched(e, tokens, mixed, vocab);
  int d = rows_differing(mixed, alone, rows, vocab);
  printf("%s: decode among %d others: %d of %zu positions differ from alone\n", name, OTHERS, d,
         rows);
  CHECK(d == 0);
  if (cpu_alone != NULL) { /* the same model all on the CPU, in the mode */
    int c = rows_differing(alone, cpu_alone, rows, vocab);
    printf("%s: against the cpu backend alone: %d of %zu positions differ\n", name, c, rows);
    CHECK(c == 0);
  }

  float *one = malloc(CHUNKED * vocab * 4), *chunked = malloc(CHUNKED * vocab * 4);
  prefill_chunked(e, prompt, CHUNKED, one, vocab);
  static const int chunks[3] = {1, 3, 7};
  for (int i = 0; i < 3; i++) {
    prefill_chunked(e, prompt, chunks[i], chunked, vocab);
    int c = rows_differing(chunked, one, CHUNKED, vocab);
    printf("%s: prefill in chunks of %d: %d of %d positions differ from one pass\n", name,
           chunks[i], c, CHUNKED);
    CHECK(c == 0);
  }
  qiao_engine_destroy(e);

  if (!fallback) { /* for information: the ordinary mode */
    qiao_engine *p = open_engine(model, backend, false, false);
    if (p != NULL) {
      target_alone(p, tokens, alone, vocab);
      target_batched(p, tokens, mixed, vocab);
      printf("%s: without the mode, %d of %zu positions differ (information only)\n", name,
             rows_differing(mixed, alone, rows, vocab), rows);
      qiao_engine_destroy(p);
    }
  }
  free(alone);
  free(mixed);
  free(one);
  free(chunked);
}

/* The target's logits alone on the CPU backend in the mode (for the
 * fallback comparison); the same tokens as check_model draws. */
static float *cpu_reference(const qiao_model *model) {
  qiao_engine *e = open_engine(model, "cpu", true, false);
  if (e == NULL) return NULL;
  uint32_t vocab = qiao_engine_hparams(e)->vocab_size;
  int32_t tokens[PROMPT + STEPS];
  tokens[0] = 1;
  for (int i = 1; i < PROMPT + STEPS; i++)
    tokens[i] = random_token(vocab);
  float *out = malloc((PROMPT + STEPS) * vocab * sizeof(float));
  target_alone(e, tokens, out, vocab);
  qiao_engine_destroy(e);
  return out;
}

static void refusals(const qiao_model *model, const char *v10, const char *noflag) {
  qiao_engine_options o = qiao_engine_default_options();
  o.max_context = 16;
  o.batch_invariant = true;
  const char *plugins[2] = {v10, noflag}, *names[2] = {"testv10", "testnoflag"};
  for (int i = 0; i < 2; i++) {
    qiao_engine *e = NULL;
    o.backend = plugins[i];
    qiao_status *st = qiao_engine_create(model, &o, &e);
    CHECK(qiao_status_code(st) == QIAO_UNSUPPORTED && e == NULL);
    char want[160];
    snprintf(want, sizeof(want),
             "backend %s device 0 is not batch-invariant (QIAO_DEV_FLAG_BATCH_INVARIANT)",
             names[i]);
    printf("refused: %s\n", qiao_status_message(st));
    CHECK(strstr(qiao_status_message(st), want) != NULL);
    qiao_status_free(st);
  }
  /* Without the mode, the 1.0 plugin still loads and runs. */
  o.backend = v10;
  o.batch_invariant = false;
  qiao_engine *e = NULL;
  CHECK_OK(qiao_engine_create(model, &o, &e));
  qiao_engine_destroy(e);
  /* A device the backend does not have. */
  o.backend = "cpu";
  o.device_index = 1;
  e = NULL;
  qiao_status *st = qiao_engine_create(model, &o, &e);
  CHECK(qiao_status_code(st) == QIAO_NOT_FOUND && e == NULL);
  printf("refused: %s\n", qiao_status_message(st));
  CHECK(strstr(qiao_status_message(st), "backend cpu has 1 device(s); there is no device 1") !=
        NULL);
  qiao_status_free(st);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: engine_batch_invariance NOQ8.so V10.so NOFLAG.so\n");
    return 1;
  }
  qiao_model *stories = NULL, *q8 = NULL, *qwen2 = NULL, *moe = NULL;
  CHECK_OK(
      qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &stories));
  CHECK_OK(qiao_model_open(test_shared_path("reference/tiny/qwen2"), NULL, &qwen2));
  CHECK_OK(qiao_model_open(test_shared_path("reference/tiny/qwen3_moe"), NULL, &moe));
  if (stories != NULL) {
    char path[256];
    snprintf(path, sizeof(path), "/tmp/qiao_engine_inv_%d.gguf", (int)getpid());
    qiao_convert_options co = {sizeof(co), QIAO_FILE_GGUF, QIAO_DTYPE_Q8_0, false};
    CHECK_OK(qiao_model_write(stories, path, &co));
    CHECK_OK(qiao_model_open(path, NULL, &q8));
    unlink(path);
  }
  if (stories) check_model("stories260K", stories, "cpu", false, NULL);
  if (q8) check_model("stories260K q8_0", q8, "cpu", false, NULL);
  if (qwen2) check_model("tiny qwen2", qwen2, "cpu", false, NULL);
  if (moe) check_model("tiny qwen3_moe", moe, "cpu", false, NULL);
  if (q8) { /* q8_0 matmuls on the fallback: the same bits as all on the CPU */
    uint64_t saved = rng;
    float *cpu = cpu_reference(q8);
    rng = saved;
    check_model("stories260K q8_0 with fallback", q8, argv[1], true, cpu);
    free(cpu);
  }
  if (stories) refusals(stories, argv[2], argv[3]);
  qiao_model_close(stories);
  qiao_model_close(q8);
  qiao_model_close(qwen2);
  qiao_model_close(moe);
  TEST_END();
}
