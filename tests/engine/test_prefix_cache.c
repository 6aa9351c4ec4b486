/* The prefix cache of the paged KV cache (options.prefix_cache), on
 * stories260K against an engine without it:
 *   1. a prompt prefilled and freed, then the same prompt with another
 *      continuation: whole blocks come from the cache (at most n - 1
 *      positions), and the logits of the rest and the greedy continuation
 *      equal those of a run without the cache;
 *   2. two live sequences share a prefix; one is truncated into a shared
 *      block and rewritten, and rewrites a position below its length: the
 *      other's logits do not change (copy on write);
 *   3. eviction in least-recently-used order in a cache too small for
 *      everything, with the block counts adding up after every step and no
 *      block leaked at the end;
 *   4. hash collisions (forced with a weak key function) cost misses only;
 *   5. without the option nothing is cached.
 * Runs once with the device's default kernels (logits within 1e-5 of the
 * row's largest) and once batch-invariant (bit-equal logits). The block
 * invariants are checked through engine_internal.h after every step. */
#include <stdio.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "engine_test_util.h"
#include "qiao/model.h"

#define VOCAB 512
#define MAX_TOKENS 64

static const qiao_model *model;
static bool bit_exact; /* batch-invariant run: logits must be bit-equal */

static qiao_engine *open_engine(bool prefix_cache, uint32_t block_size, uint32_t n_blocks,
                                uint32_t max_context) {
  qiao_engine_options o = qiao_engine_default_options();
  o.n_threads = 2;
  o.block_size = block_size;
  o.n_blocks = n_blocks;
  o.max_context = max_context;
  o.max_seqs = 4;
  o.batch_invariant = bit_exact;
  o.prefix_cache = prefix_cache;
  qiao_engine *e = NULL;
  CHECK_OK(qiao_engine_create(model, &o, &e));
  return e;
}

/* Every block is in exactly one state and the counts add up: refs equal
 * the holders among live sequences, the LRU list holds exactly the keyed
 * unheld blocks, the free stack the rest. */
static void check_blocks(const qiao_engine *e) {
  qiao_engine_cache_stats st = {.struct_size = sizeof(st)};
  qiao_engine_cache_stats_get(e, &st);
  CHECK(st.used_blocks + st.cached_blocks + e->n_free == st.n_blocks);
  uint32_t *holders = calloc(e->n_blocks, sizeof(uint32_t));
  for (uint32_t s = 0; s < e->max_seqs; s++)
    for (uint32_t i = 0; e->seqs[s].live && i < e->seqs[s].n_blocks; i++)
      holders[e->seqs[s].blocks[i]]++;
  uint32_t used = 0, cached = 0, on_lru = 0;
  for (uint32_t b = 0; b < e->n_blocks; b++) {
    CHECK(e->blocks[b].refs == holders[b]);
    used += holders[b] > 0;
    cached += holders[b] == 0 && e->blocks[b].keyed;
  }
  for (int32_t b = e->lru_head; b >= 0 && on_lru <= e->n_blocks; b = e->blocks[b].lru_next) {
    CHECK(e->blocks[b].refs == 0 && e->blocks[b].keyed);
    on_lru++;
  }
  for (uint32_t i = 0; i < e->n_free; i++)
    CHECK(e->blocks[e->free_blocks[i]].refs == 0 && !e->blocks[e->free_blocks[i]].keyed);
  CHECK(used == st.used_blocks && cached == st.cached_blocks && on_lru == cached);
  free(holders);
}

/* Writes tokens[from, to) to seq at those positions; logits and argmax ids
 * of every one (each when not NULL). */
static qiao_status *write_range(qiao_engine *e, int32_t seq, const int32_t *tokens, uint32_t from,
                                uint32_t to, float *out, int32_t *argmax) {
  int32_t seqs[MAX_TOKENS], pos[MAX_TOKENS];
  uint8_t want[MAX_TOKENS];
  for (uint32_t i = from; i < to; i++) {
    seqs[i - from] = seq;
    pos[i - from] = (int32_t)i;
    want[i - from] = 1;
  }
  qiao_batch b = {to - from, tokens + from, seqs, pos, want};
  return qiao_engine_forward(e, &b, out, argmax);
}

/* Rows of logits equal: bit for bit (batch-invariant), else within 1e-5
 * relative to the row's largest logit (rounding differs with the number of
 * tokens in a pass, and the cached positions were computed in another). */
static void check_same_logits(const float *got, const float *want, size_t rows, const char *what) {
  double worst = 0;
  for (size_t r = 0; r < rows; r++) {
    double diff = 0, scale = 1;
    for (size_t i = r * VOCAB; i < (r + 1) * VOCAB; i++) {
      diff = fmax(diff, fabs((double)got[i] - (double)want[i]));
      scale = fmax(scale, fabs((double)want[i]));
    }
    worst = fmax(worst, diff / scale);
  }
  printf("  %s: %zu rows, max |difference| / max |logit| %.3g\n", what, rows, worst);
  if (bit_exact)
    CHECK(memcmp(got, want, rows * VOCAB * sizeof(float)) == 0);
  else
    CHECK(worst <= 1e-5);
}

/* Token ids for the tests: a varied, valid run starting with BOS. */
static void make_tokens(int32_t *out, uint32_t n, uint32_t salt) {
  out[0] = 1;
  for (uint32_t i = 1; i < n; i++)
    out[i] = (int32_t)(3 + (i * 37 + salt * 101) % 500);
}

/* 1. Hit after the prompt's sequence is freed; the continuation matches. */
static void test_hit(qiao_engine *ref, uint32_t bs) {
  printf("hit, block size %u\n", bs);
  qiao_engine *e = open_engine(true, bs, 64 / bs * 2, 64);
  if (e == NULL) return;
  /* p: 2.75 blocks; q: p's first 2.5 blocks, then other tokens. */
  const uint32_t np = 2 * bs + 3 * bs / 4, nq = np + 4;
  int32_t p[MAX_TOKENS], q[MAX_TOKENS];
  make_tokens(p, np, 1);
  make_tokens(q, nq, 2);
  memcpy(q, p, (2 * bs + bs / 2) * sizeof(int32_t));
  int32_t seq;
  uint32_t cached = 99;
  CHECK_OK(qiao_engine_seq_create_cached(e, p, np, &seq, &cached));
  CHECK(cached == 0); /* nothing cached yet */
  CHECK_OK(write_range(e, seq, p, 0, np, NULL, NULL));
  check_blocks(e);
  qiao_engine_seq_free(e, seq);
  check_blocks(e);
  qiao_engine_cache_stats st = {.struct_size = sizeof(st)};
  qiao_engine_cache_stats_get(e, &st);
  CHECK(st.cached_blocks == 2 && st.used_blocks == 0 &&
        st.live_seqs == 0); /* the partial one is freed */

  /* Whole blocks only, at most n - 1 positions. */
  CHECK(qiao_engine_prefix_cached(e, p, np) == 2 * bs);
  CHECK(qiao_engine_prefix_cached(e, p, 2 * bs) == bs);
  CHECK(qiao_engine_prefix_cached(e, p, 2 * bs + 1) == 2 * bs);
  CHECK(qiao_engine_prefix_cached(e, p, bs) == 0);
  CHECK(qiao_engine_prefix_cached(e, p, 1) == 0);
  CHECK(qiao_engine_prefix_cached(e, q, nq) == 2 * bs);
  int32_t other[MAX_TOKENS];
  memcpy(other, p, np * sizeof(int32_t));
  other[bs + 1] = other[bs + 1] == 7 ? 8 : 7; /* differs in the second block */
  CHECK(qiao_engine_prefix_cached(e, other, np) == bs);

  /* q from the cache: the remaining positions' logits and the greedy
   * continuation equal those without a cache. */
  CHECK_OK(qiao_engine_seq_create_cached(e, q, nq, &seq, &cached));
  CHECK(cached == 2 * bs);
  CHECK(qiao_engine_seq_length(e, seq) == 2 * bs);
  check_blocks(e);
  static float got[MAX_TOKENS * VOCAB], want[MAX_TOKENS * VOCAB];
  CHECK_OK(write_range(e, seq, q, cached, nq, got, NULL));
  CHECK_OK(all_logits(ref, q, nq, want));
  check_same_logits(got, want + (size_t)cached * VOCAB, nq - cached,
                    "prompt after the cached part");
  int32_t gen[8], ref_gen[8], ids[MAX_TOKENS];
  CHECK_OK(qiao_engine_seq_truncate(e, seq, cached)); /* again, with argmax ids this time */
  CHECK_OK(write_range(e, seq, q, cached, nq, NULL, ids));
  gen[0] = ids[nq - cached - 1];
  for (int i = 1; i < 8; i++) {
    int32_t pos = (int32_t)(nq + i - 1);
    qiao_batch one = {1, &gen[i - 1], &seq, &pos, NULL};
    CHECK_OK(qiao_engine_forward(e, &one, NULL, &gen[i]));
  }
  CHECK_OK(greedy(ref, q, nq, ref_gen, 8));
  CHECK(memcmp(gen, ref_gen, sizeof(gen)) == 0);
  qiao_engine_seq_free(e, seq);
  qiao_engine_cache_stats_get(e, &st);
  CHECK(st.hit_tokens == 2 * bs && st.used_blocks == 0);
  check_blocks(e);
  qiao_engine_destroy(e);
}

/* Creates a sequence from the cache for tokens[0, n), computes the rest,
 * frees it; returns the positions the cache gave. */
static uint32_t run_prompt(qiao_engine *e, const int32_t *tokens, uint32_t n) {
  int32_t seq = -1;
  uint32_t cached = 0;
  CHECK_OK(qiao_engine_seq_create_cached(e, tokens, n, &seq, &cached));
  CHECK_OK(write_range(e, seq, tokens, cached, n, NULL, NULL));
  check_blocks(e);
  qiao_engine_seq_free(e, seq);
  check_blocks(e);
  return cached;
}

static qiao_engine_cache_stats stats(const qiao_engine *e) {
  qiao_engine_cache_stats st = {.struct_size = sizeof(st)};
  qiao_engine_cache_stats_get(e, &st);
  return st;
}

/* 2. Writes into shared blocks copy them first: the other sequence never
 * sees them. */
static void test_shared_writes(qiao_engine *ref) {
  printf("shared blocks, copy on write\n");
  qiao_engine *e = open_engine(true, 4, 32, 64);
  if (e == NULL) return;
  static float got[MAX_TOKENS * VOCAB], want[MAX_TOKENS * VOCAB];
  int32_t a[MAX_TOKENS], b[MAX_TOKENS], sa = -1, sb = -1;
  uint32_t cached = 99;
  make_tokens(a, 15, 3);
  CHECK_OK(qiao_engine_seq_create_cached(e, a, 12, &sa, &cached));
  CHECK(cached == 0);
  CHECK_OK(write_range(e, sa, a, 0, 12, NULL, NULL)); /* 3 full blocks, keyed while a lives */
  memcpy(b, a, 12 * sizeof(int32_t));
  b[12] = 77;
  CHECK_OK(qiao_engine_seq_create_cached(e, b, 13, &sb, &cached));
  CHECK(cached == 12);
  CHECK(stats(e).used_blocks == 3 && stats(e).live_seqs == 2);
  for (int i = 0; i < 3; i++)
    CHECK(e->blocks[e->seqs[sa].blocks[i]].refs == 2);
  check_blocks(e);

  /* b cuts into the shared block 1 and writes other tokens from there. */
  for (int i = 6; i < 13; i++)
    b[i] = 200 + i;
  CHECK_OK(qiao_engine_seq_truncate(e, sb, 6));
  CHECK_OK(write_range(e, sb, b, 6, 13, got, NULL));
  CHECK(e->seqs[sb].blocks[0] == e->seqs[sa].blocks[0]);
  CHECK(e->seqs[sb].blocks[1] != e->seqs[sa].blocks[1]);
  check_blocks(e);
  CHECK_OK(all_logits(ref, b, 13, want));
  check_same_logits(got, want + 6 * VOCAB, 7, "b after truncating into a shared block");
  CHECK_OK(write_range(e, sa, a, 12, 14, got, NULL));
  CHECK_OK(all_logits(ref, a, 14, want));
  check_same_logits(got, want + 12 * VOCAB, 2, "a after b's writes");
  /* b's own blocks 1 and 2 are now keyed after a's block 0. */
  CHECK(qiao_engine_prefix_cached(e, b, 13) == 12);

  /* b rewrites position 1 (in block 0, shared with a) without truncating. */
  int32_t tok = 99, pos = 1;
  qiao_batch rewrite = {1, &tok, &sb, &pos, NULL};
  CHECK_OK(qiao_engine_forward(e, &rewrite, NULL, NULL));
  CHECK(e->seqs[sb].blocks[0] != e->seqs[sa].blocks[0]);
  CHECK(qiao_engine_seq_length(e, sb) == 13);
  check_blocks(e);
  CHECK_OK(write_range(e, sa, a, 14, 15, got, NULL));
  CHECK_OK(all_logits(ref, a, 15, want));
  check_same_logits(got, want + 14 * VOCAB, 1, "a after b rewrote a shared position");
  /* b's blocks 1 and 2 still hold what was computed after a's block 0; b's
   * rewritten block 0 is not in order (positions 2, 3 are stale): no key. */
  CHECK(qiao_engine_prefix_cached(e, b, 13) == 12);
  int32_t b2[MAX_TOKENS];
  memcpy(b2, b, 13 * sizeof(int32_t));
  b2[1] = 99;
  CHECK(qiao_engine_prefix_cached(e, b2, 13) == 0);

  /* b rewrites position 5 in its own keyed block 1: copied, and the keyed
   * one is kept in the cache. */
  pos = 5;
  uint32_t cached_before = stats(e).cached_blocks;
  CHECK_OK(qiao_engine_forward(e, &rewrite, NULL, NULL));
  CHECK(stats(e).cached_blocks == cached_before + 1);
  CHECK(qiao_engine_prefix_cached(e, b, 13) == 12);
  check_blocks(e);
  qiao_engine_seq_free(e, sa);
  qiao_engine_seq_free(e, sb);
  check_blocks(e);
  CHECK(stats(e).used_blocks == 0 && stats(e).live_seqs == 0);

  /* Positions out of order in one batch (a new token at 0 after 4..7):
   * the KV of 1..3 is stale, so no block of it may be keyed. */
  int32_t x[MAX_TOKENS], sx = -1;
  make_tokens(x, 9, 5);
  CHECK_OK(qiao_engine_seq_create_cached(e, x, 9, &sx, &cached));
  CHECK_OK(write_range(e, sx, x, 0, 4, NULL, NULL));
  int32_t toks[5] = {x[4], x[5], x[6], x[7], 98}, seqs[5] = {sx, sx, sx, sx, sx};
  int32_t poss[5] = {4, 5, 6, 7, 0};
  qiao_batch mixed = {5, toks, seqs, poss, NULL};
  CHECK_OK(qiao_engine_forward(e, &mixed, NULL, NULL));
  qiao_engine_seq_free(e, sx);
  check_blocks(e);
  CHECK(qiao_engine_prefix_cached(e, x, 9) == 4); /* the first block 0, kept when copied */
  x[0] = 98;
  CHECK(qiao_engine_prefix_cached(e, x, 9) == 0);
  qiao_engine_destroy(e);
}

/* 3. A cache of 8 blocks of 4: eviction takes the least recently used
 * cached block, a prefix's later blocks before its first. */
static void test_eviction(void) {
  printf("eviction\n");
  qiao_engine *e = open_engine(true, 4, 8, 16);
  if (e == NULL) return;
  int32_t p[6][MAX_TOKENS];
  for (int i = 1; i <= 5; i++)
    make_tokens(p[i], 10, (uint32_t)(10 + i)); /* 9 tokens used: 2 keyed blocks + 1 */
  CHECK(run_prompt(e, p[1], 9) == 0);
  CHECK(stats(e).cached_blocks == 2 && stats(e).used_blocks == 0);
  CHECK(run_prompt(e, p[2], 9) == 0);
  CHECK(run_prompt(e, p[3], 9) == 0);
  CHECK(stats(e).cached_blocks == 6 && e->n_free == 2 && stats(e).evicted_blocks == 0);
  /* Using p1's blocks makes them the most recently used. */
  CHECK(run_prompt(e, p[1], 10) == 8);
  CHECK(stats(e).hit_tokens == 8);
  /* p4 takes the 2 free blocks and evicts p2's second block. */
  CHECK(run_prompt(e, p[4], 9) == 0);
  CHECK(stats(e).evicted_blocks == 1 && stats(e).cached_blocks == 7);
  CHECK(qiao_engine_prefix_cached(e, p[2], 9) == 4);
  CHECK(qiao_engine_prefix_cached(e, p[3], 9) == 8);
  CHECK(qiao_engine_prefix_cached(e, p[1], 9) == 8);
  CHECK(qiao_engine_prefix_cached(e, p[4], 9) == 8);
  /* p5: the free block, then p2's first and p3's second. */
  CHECK(run_prompt(e, p[5], 9) == 0);
  CHECK(stats(e).evicted_blocks == 3);
  CHECK(qiao_engine_prefix_cached(e, p[2], 9) == 0);
  CHECK(qiao_engine_prefix_cached(e, p[3], 9) == 4);
  CHECK(qiao_engine_prefix_cached(e, p[1], 9) == 8);
  CHECK(qiao_engine_prefix_cached(e, p[5], 9) == 8);

  /* Two live sequences of 16 take all 8 blocks; then nothing more fits and a
   * refused call changes nothing. */
  int32_t x[MAX_TOKENS], y[MAX_TOKENS], sx = -1, sy = -1, sz = -1;
  uint32_t cached = 0;
  make_tokens(x, 16, 30);
  make_tokens(y, 16, 31);
  CHECK_OK(qiao_engine_seq_create_cached(e, x, 16, &sx, &cached));
  CHECK_OK(write_range(e, sx, x, 0, 16, NULL, NULL));
  CHECK_OK(qiao_engine_seq_create_cached(e, y, 16, &sy, &cached));
  CHECK_OK(write_range(e, sy, y, 0, 12, NULL, NULL));
  check_blocks(e);
  CHECK_OK(write_range(e, sy, y, 12, 16, NULL, NULL));
  CHECK(stats(e).used_blocks == 8 && stats(e).cached_blocks == 0 && e->n_free == 0);
  CHECK(stats(e).evicted_blocks == 10);
  CHECK(qiao_engine_prefix_cached(e, p[1], 9) == 0);
  CHECK_OK(qiao_engine_seq_create(e, &sz));
  CHECK_ERR(write_range(e, sz, x, 0, 1, NULL, NULL), QIAO_LIMIT);
  int32_t x_block0 = e->seqs[sx].blocks[0];
  CHECK_ERR(write_range(e, sx, y, 0, 1, NULL, NULL), QIAO_LIMIT); /* would need a copy */
  CHECK(e->seqs[sx].blocks[0] == x_block0 && qiao_engine_seq_length(e, sx) == 16);
  check_blocks(e);
  qiao_engine_seq_free(e, sz);
  qiao_engine_seq_free(e, sx);
  qiao_engine_seq_free(e, sy);
  check_blocks(e);
  CHECK(stats(e).used_blocks == 0 && stats(e).cached_blocks == 8);
  CHECK(qiao_engine_prefix_cached(e, x, 16) == 12); /* at most n - 1 */
  CHECK(qiao_engine_prefix_cached(e, y, 16) == 12);
  qiao_engine_destroy(e);
}

/* A key that collides on purpose: the block's first token only. */
static uint64_t first_token_key(uint64_t parent_key, const int32_t *tokens, uint32_t n) {
  (void)parent_key;
  (void)n;
  return (uint64_t)tokens[0];
}

/* 4. Colliding keys never pair a block with other tokens or another prefix. */
static void test_collisions(qiao_engine *ref) {
  printf("hash collisions\n");
  qiao_engine *e = open_engine(true, 4, 32, 64);
  if (e == NULL) return;
  e->block_key = first_token_key;
  static float got[MAX_TOKENS * VOCAB], want[MAX_TOKENS * VOCAB];
  int32_t a[MAX_TOKENS], b[MAX_TOKENS], c[MAX_TOKENS], d[MAX_TOKENS], f[MAX_TOKENS];
  make_tokens(a, 10, 40);
  make_tokens(b, 9, 41);
  b[0] = 376;                                /* block 0: another key */
  memcpy(b + 4, a + 4, 4 * sizeof(int32_t)); /* block 1: a's tokens, so a's key */
  CHECK(run_prompt(e, a, 9) == 0);
  CHECK(run_prompt(e, b, 9) == 0);
  CHECK(stats(e).cached_blocks == 3); /* b's block 1 found its key taken: not cached */
  CHECK(qiao_engine_prefix_cached(e, a, 10) == 8);

  /* b's prefix, then a's block 1 tokens: a's block 1 has the right tokens
   * and key but follows another block. */
  memcpy(c, b, 10 * sizeof(int32_t));
  c[8] = 290;
  c[9] = 277;
  /* a's block 0, then a block with a's block 1 key but other tokens. */
  memcpy(d, a, 9 * sizeof(int32_t));
  d[5] = d[5] == 450 ? 451 : 450;
  /* a block with a's block 0 key but other tokens. */
  memcpy(f, a, 9 * sizeof(int32_t));
  f[2] = f[2] == 450 ? 451 : 450;
  CHECK(qiao_engine_prefix_cached(e, f, 9) == 0);
  const int32_t *prompts[] = {c, d};
  const uint32_t lens[] = {10, 9};
  for (int i = 0; i < 2; i++) {
    int32_t seq = -1;
    uint32_t cached = 99;
    CHECK(qiao_engine_prefix_cached(e, prompts[i], lens[i]) == 4);
    CHECK_OK(qiao_engine_seq_create_cached(e, prompts[i], lens[i], &seq, &cached));
    CHECK(cached == 4);
    CHECK_OK(write_range(e, seq, prompts[i], cached, lens[i], got, NULL));
    CHECK_OK(all_logits(ref, prompts[i], lens[i], want));
    check_same_logits(got, want + 4 * VOCAB, lens[i] - 4,
                      i ? "other tokens, same key" : "same tokens, other parent");
    qiao_engine_seq_free(e, seq);
    check_blocks(e);
  }
  qiao_engine_destroy(e);
}

/* 5. Without the option: a plain sequence, nothing kept. */
static void test_disabled(qiao_engine *ref) {
  printf("disabled\n");
  int32_t a[MAX_TOKENS], seq = -1;
  uint32_t cached = 99;
  make_tokens(a, 9, 50);
  CHECK(run_prompt(ref, a, 9) == 0);
  CHECK(qiao_engine_prefix_cached(ref, a, 9) == 0);
  CHECK_OK(qiao_engine_seq_create_cached(ref, a, 9, &seq, &cached));
  CHECK(cached == 0 && qiao_engine_seq_length(ref, seq) == 0);
  qiao_engine_seq_free(ref, seq);
  CHECK(stats(ref).cached_blocks == 0 && stats(ref).used_blocks == 0 && stats(ref).hit_tokens == 0);
  CHECK_ERR(qiao_engine_seq_create_cached(ref, NULL, 3, &seq, &cached), QIAO_INVALID_ARGUMENT);
}

int main(void) {
  qiao_model *m = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &m));
  if (m == NULL) TEST_END();
  model = m;
  for (int pass = 0; pass < 2; pass++) {
    bit_exact = pass == 1;
    printf("== %s\n", bit_exact ? "batch-invariant: bit-equal" : "default kernels: within 1e-5");
    qiao_engine *ref4 = open_engine(false, 4, 0, 64), *ref16 = open_engine(false, 16, 0, 64);
    if (ref4 && ref16) {
      test_hit(ref4, 4);
      test_hit(ref16, 16);
      test_shared_writes(ref4);
      test_eviction();
      test_collisions(ref4);
      test_disabled(ref4);
    }
    qiao_engine_destroy(ref4);
    qiao_engine_destroy(ref16);
  }
  qiao_model_close(m);
  TEST_END();
}
