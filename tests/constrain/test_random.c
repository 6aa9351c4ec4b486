/* Generation under constraint with random logits (a random-weight model,
 * the hardest case: it never "wants" to close a brace) over real
 * vocabularies: the Qwen3 byte-level BPE (151k tokens) and the stories260K
 * SentencePiece vocabulary (512 tokens with byte fallback). Every output
 * that ends must parse and validate (tests/constrain/validate.h, written
 * independently of the compiler), every mask must allow some token, and
 * the mask must agree with accepting each chosen token. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qiao/grammar.h"
#include "qiao/sampler.h"
#include "qiao/tokenizer.h"
#include "test_util.h"
#include "validate.h"

static const char *const SCHEMAS[] = {
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\",\"c\"]},\"maxItems\":3},"
    "\"ok\":{\"type\":\"boolean\"},\"conf\":{\"type\":\"number\",\"minimum\":-1,"
    "\"exclusiveMaximum\":1}},\"required\":[\"name\",\"age\",\"conf\"],"
    "\"additionalProperties\":false}",
    "{\"$defs\":{\"t\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\","
    "\"minimum\":-9,"
    "\"maximum\":9},\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/"
    "t\"},\"maxItems\":2}},"
    "\"required\":[\"v\"]}},\"$ref\":\"#/$defs/t\"}",
    "{\"type\":\"array\",\"minItems\":1,\"maxItems\":4,\"items\":{\"anyOf\":[{\"type\":\"string\","
    "\"pattern\":\"^[A-Z]{2}\\\\d{3}$\"},{\"type\":\"number\",\"exclusiveMinimum\":0},{\"type\":"
    "\"null\"}]}}",
    "{\"type\":\"object\",\"properties\":{\"when\":{\"type\":\"string\",\"format\":\"date\"},"
    "\"kind\":{\"const\":\"event\"},\"where\":{\"type\":\"object\",\"properties\":{\"lat\":{"
    "\"type\":"
    "\"number\"},\"city\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":4}},\"required\":["
    "\"lat\","
    "\"city\"]}},\"required\":[\"when\",\"kind\",\"where\"]}",
    /* oneOf with provably disjoint branches: each output matches exactly one */
    "{\"type\":\"array\",\"maxItems\":3,\"items\":{\"oneOf\":[{\"type\":\"object\",\"properties\":"
    "{\"kind\":{\"const\":\"pt\"},\"x\":{\"type\":\"integer\",\"minimum\":-9,\"maximum\":9}},"
    "\"required\":[\"kind\",\"x\"]},{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":"
    "\"tag\"},\"x\":{\"type\":\"string\",\"maxLength\":4}},\"required\":[\"kind\"]},{\"type\":"
    "\"null\"},{\"enum\":[1,2,\"z\"]}]}}",
};

static uint64_t rng_state = 0x1234567;
static float rnd(void) { /* xorshift64*: uniform in [0, 1) */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (float)((rng_state * 2685821657736338717ull) >> 40) / (float)(1u << 24);
}

static void run_vocab(const char *tok_path, int runs, uint32_t max_steps) {
  qiao_tokenizer *tok = NULL;
  CHECK_OK(qiao_tokenizer_open(test_shared_path(tok_path), &tok));
  if (tok == NULL) return;
  qiao_token_trie *trie = NULL;
  CHECK_OK(qiao_token_trie_from_tokenizer(tok, &trie));
  uint32_t vocab = qiao_tokenizer_vocab_size(tok);
  float *logits = malloc(vocab * sizeof(float));
  qiao_sampler_params sp = qiao_sampler_default_params();
  sp.temperature = 1.0f;
  sp.top_k = 0;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  sp.seed = 7;
  qiao_sampler *sampler = NULL;
  CHECK_OK(qiao_sampler_create(&sp, vocab, &sampler));
  char *out = malloc(1 << 16);
  for (size_t si = 0; si < sizeof(SCHEMAS) / sizeof(SCHEMAS[0]) && trie != NULL; si++) {
    qiao_grammar *g = NULL;
    CHECK_OK(qiao_grammar_compile_json_schema(SCHEMAS[si], strlen(SCHEMAS[si]), &g));
    if (g == NULL) continue;
    qiao_grammar_matcher *m = NULL;
    CHECK_OK(qiao_grammar_matcher_create(g, trie, &m));
    int completed = 0;
    for (int run = 0; run < runs && m != NULL; run++) {
      qiao_grammar_matcher_reset(m);
      size_t len = 0;
      for (uint32_t step = 0; step < max_steps; step++) {
        const uint32_t *mask = NULL;
        CHECK_OK(qiao_grammar_matcher_mask(m, &mask));
        if (mask == NULL) break;
        /* Random logits: a random-weight model. */
        for (uint32_t i = 0; i < vocab; i++)
          logits[i] = rnd() * 8.0f;
        int32_t t = -1;
        qiao_status *st = qiao_sampler_sample_masked(sampler, logits, mask, &t, NULL);
        if (st != NULL) {
          fprintf(stderr, "%s schema %zu run %d step %u: %s (after '%.*s')\n", tok_path, si, run,
                  step, qiao_status_message(st), (int)len, out);
          qiao_status_free(st);
          test_failures++;
          break;
        }
        CHECK((mask[t / 32] >> (t % 32)) & 1);
        /* On a small vocabulary, the whole mask against trying each token
         * (the trie walk, its state table and cache against plain matching). */
        if (vocab <= 1024 && run < 3) {
          qiao_grammar_matcher *probe = NULL;
          CHECK_OK(qiao_grammar_matcher_create(g, trie, &probe));
          for (uint32_t k = 0; k < vocab && probe != NULL; k++) {
            qiao_grammar_matcher_reset(probe);
            qiao_status *ps = qiao_grammar_matcher_accept_bytes(probe, out, len);
            CHECK(ps == NULL);
            qiao_status_free(ps);
            ps = qiao_grammar_matcher_accept_token(probe, (int32_t)k);
            bool ok = ps == NULL, bit = (mask[k / 32] >> (k % 32)) & 1;
            qiao_status_free(ps);
            if (ok != bit) {
              fprintf(stderr, "schema %zu step %u token %u: mask %d, matching %d\n", si, step, k,
                      bit, ok);
              test_failures++;
            }
          }
          qiao_grammar_matcher_destroy(probe);
        }
        st = qiao_grammar_matcher_accept_token(m, t);
        if (st != NULL) {
          fprintf(stderr, "mask allowed token %d but the matcher refused it: %s\n", t,
                  qiao_status_message(st));
          qiao_status_free(st);
          test_failures++;
          break;
        }
        if (qiao_grammar_matcher_ended(m)) break;
        size_t n = 0;
        CHECK_OK(qiao_tokenizer_token_bytes(tok, t, out + len, (1 << 16) - 1 - len, &n));
        len += n;
      }
      out[len] = '\0';
      if (!qiao_grammar_matcher_ended(m)) continue;
      completed++;
      char why[256] = "";
      if (!v_check(SCHEMAS[si], out, len, why, sizeof(why))) {
        fprintf(stderr, "%s schema %zu: invalid output (%s): %s\n", tok_path, si, why, out);
        test_failures++;
      }
      if (run == 0) printf("%s schema %zu: %s\n", tok_path, si, out);
    }
    printf("%s schema %zu: %d of %d runs completed\n", tok_path, si, completed, runs);
    CHECK(completed > 0);
    qiao_grammar_matcher_destroy(m);
    qiao_grammar_destroy(g);
  }
  free(out);
  free(logits);
  qiao_sampler_destroy(sampler);
  qiao_token_trie_destroy(trie);
  qiao_tokenizer_destroy(tok);
}

int main(void) {
  run_vocab("models/stories260K/tok512.bin", 20, 1500);
  run_vocab("tokenizers/qwen3/tokenizer.json", 6, 600);
  TEST_END();
}
