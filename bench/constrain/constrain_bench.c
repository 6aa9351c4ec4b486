/* Constrained decoding cost on a real vocabulary (default: Qwen3's 151k
 * tokens), for a nested schema:
 *   - token trie build time (once per model);
 *   - schema compile time (median of 20);
 *   - per generated token, the mask (trie walk on a new state, cache hit on
 *     a known one) plus advancing the matcher, replaying a valid document
 *     token by token with a fresh matcher per request (a request starts
 *     with a cold cache), over several requests;
 *   - the sampler with and without the mask (greedy and temperature 1).
 * usage: bench_constrain [TOKENIZER_JSON] [REQUESTS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qiao/grammar.h"
#include "qiao/sampler.h"
#include "qiao/tokenizer.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int fail(qiao_status *st) {
  fprintf(stderr, "error: %s\n", qiao_status_message(st));
  qiao_status_free(st);
  return 1;
}

static const char *SCHEMA =
    "{\"$defs\":{\"address\":{\"type\":\"object\",\"properties\":{\"street\":{\"type\":\"string\"},"
    "\"city\":{\"type\":\"string\"},\"zip\":{\"type\":\"string\",\"pattern\":\"^[0-9]{5}$\"}},"
    "\"required\":[\"street\",\"city\",\"zip\"],\"additionalProperties\":false}},"
    "\"type\":\"object\",\"properties\":{"
    "\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
    "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"email\":{\"type\":[\"string\",\"null\"]},"
    "\"born\":{\"type\":\"string\",\"format\":\"date\"},"
    "\"home\":{\"$ref\":\"#/$defs/address\"},"
    "\"work\":{\"anyOf\":[{\"$ref\":\"#/$defs/address\"},{\"type\":\"null\"}]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":10},"
    "\"scores\":{\"type\":\"array\",\"items\":{\"type\":\"number\"}},"
    "\"status\":{\"enum\":[\"active\",\"inactive\",\"banned\"]},"
    "\"meta\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}},"
    "\"required\":[\"id\",\"name\",\"age\",\"home\",\"tags\",\"status\"],"
    "\"additionalProperties\":false}";

static const char *DOC =
    "{\"id\": \"123e4567-e89b-12d3-a456-426614174000\", \"name\": \"Ada Lovelace, Countess of "
    "Lovelace\", \"age\": 36, \"home\": {\"street\": \"12 St James's Square\", \"city\": "
    "\"London\", \"zip\": \"10001\"}, \"tags\": [\"mathematician\", \"writer\", \"analyst\", "
    "\"first programmer\"], \"status\": \"inactive\", \"email\": null, \"born\": \"1815-12-10\", "
    "\"work\": {\"street\": \"Analytical Engine Lane 1\", \"city\": \"London\", \"zip\": "
    "\"20002\"}, \"scores\": [9.5, 10, 8.25, 7e2], \"meta\": {\"note\": \"Notes on the "
    "Analytical Engine, with the first published algorithm\", \"era\": \"Victorian\"}}";

int main(int argc, char **argv) {
  const char *path = argc > 1 ? argv[1] : "../shared/tokenizers/qwen3/tokenizer.json";
  int requests = argc > 2 ? atoi(argv[2]) : 5;
  if (requests < 1 || requests > 1000) requests = 5;
  qiao_tokenizer *tok = NULL;
  qiao_status *st = qiao_tokenizer_open(path, &tok);
  if (st != NULL) return fail(st);
  uint32_t vocab = qiao_tokenizer_vocab_size(tok);
  double t0 = now();
  qiao_token_trie *trie = NULL;
  if ((st = qiao_token_trie_from_tokenizer(tok, &trie)) != NULL) return fail(st);
  double trie_s = now() - t0;
  printf("vocabulary: %u tokens, %zu trie nodes; trie built in %.1f ms\n", vocab,
         qiao_token_trie_nodes(trie), trie_s * 1e3);

  double compile[20];
  qiao_grammar *g = NULL;
  for (int i = 0; i < 20; i++) {
    qiao_grammar_destroy(g);
    g = NULL;
    t0 = now();
    if ((st = qiao_grammar_compile_json_schema(SCHEMA, strlen(SCHEMA), &g)) != NULL)
      return fail(st);
    compile[i] = now() - t0;
  }
  qsort(compile, 20, sizeof(double), cmp_double);
  size_t rules, elems;
  qiao_grammar_size(g, &rules, &elems);
  printf("schema (%zu bytes): %zu rules, %zu elements; compiled in %.3f ms (median of 20)\n",
         strlen(SCHEMA), rules, elems, compile[10] * 1e3);

  /* The document as a model would produce it: its token ids. */
  qiao_encode_options enc = {sizeof(enc), false, false};
  int32_t *ids = NULL;
  size_t n_ids = 0;
  if ((st = qiao_tokenizer_encode(tok, DOC, strlen(DOC), &enc, &ids, &n_ids)) != NULL)
    return fail(st);
  const int32_t *eos = NULL;
  qiao_tokenizer_eos_ids(tok, &eos);
  size_t steps = n_ids + 1; /* + the end token */
  double *per = malloc(steps * (size_t)requests * sizeof(double));
  /* Twice: each request with its own compiled grammar (nothing shared: a
   * new schema every time), then all requests with one grammar (a server
   * that sees the same schema again shares its masks). */
  for (int shared = 0; shared < 2; shared++) {
    double first_total = 0, all_total = 0;
    for (int r = 0; r < requests; r++) {
      qiao_grammar *rg = g;
      if (!shared && (st = qiao_grammar_compile_json_schema(SCHEMA, strlen(SCHEMA), &rg)) != NULL)
        return fail(st);
      qiao_grammar_matcher *m = NULL;
      if ((st = qiao_grammar_matcher_create(rg, trie, &m)) != NULL) return fail(st);
      double rt = 0;
      for (size_t i = 0; i < steps; i++) {
        const uint32_t *mask = NULL;
        int32_t t = i < n_ids ? ids[i] : eos[0];
        double a = now();
        if ((st = qiao_grammar_matcher_mask(m, &mask)) != NULL) return fail(st);
        if (!((mask[t / 32] >> (t % 32)) & 1)) {
          fprintf(stderr, "error: token %zu (%d) of the document is masked\n", i, t);
          return 1;
        }
        if ((st = qiao_grammar_matcher_accept_token(m, t)) != NULL) return fail(st);
        double d = now() - a;
        per[(size_t)r * steps + i] = d;
        rt += d;
      }
      if (!qiao_grammar_matcher_ended(m)) {
        fprintf(stderr, "error: the document did not complete the grammar\n");
        return 1;
      }
      if (r == 0) first_total = rt;
      all_total += rt;
      qiao_grammar_matcher_destroy(m);
      if (!shared) qiao_grammar_destroy(rg);
    }
    size_t total_steps = steps * (size_t)requests;
    qsort(per, total_steps, sizeof(double), cmp_double);
    printf("document: %zu tokens; per token (mask + accept), %d requests, %s:\n"
           "  mean %.1f us, median %.1f us, p90 %.1f us, max %.2f ms; first request %.1f ms, "
           "mean request %.1f ms\n",
           n_ids, requests, shared ? "one grammar shared by all" : "a grammar compiled per request",
           all_total / (double)total_steps * 1e6, per[total_steps / 2] * 1e6,
           per[total_steps * 9 / 10] * 1e6, per[total_steps - 1] * 1e3, first_total * 1e3,
           all_total / requests * 1e3);
  }

  /* Sampling over the model vocabulary (Qwen2.5 pads to 151936), with and
   * without a mask. */
  uint32_t mv = vocab < 151936 ? 151936 : vocab;
  float *logits = malloc(mv * sizeof(float));
  uint32_t *mask = calloc((mv + 31) / 32, sizeof(uint32_t));
  uint64_t x = 1;
  for (uint32_t i = 0; i < mv; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    logits[i] = (float)(x >> 40) / (float)(1u << 24) * 10.0f;
    if (i < vocab && i % 3 != 0) mask[i / 32] |= 1u << (i % 32); /* a dense mask: 2/3 allowed */
  }
  for (int temp = 0; temp < 2; temp++) {
    qiao_sampler_params sp = qiao_sampler_default_params();
    sp.temperature = temp ? 1.0f : 0.0f;
    qiao_sampler *s = NULL;
    if ((st = qiao_sampler_create(&sp, mv, &s)) != NULL) return fail(st);
    int32_t t;
    double plain = 0, masked = 0;
    for (int rep = 0; rep < 50; rep++) {
      double a = now();
      qiao_status_free(qiao_sampler_sample(s, logits, &t, NULL));
      double b = now();
      qiao_status_free(qiao_sampler_sample_masked(s, logits, mask, &t, NULL));
      masked += now() - b;
      plain += b - a;
    }
    printf("sampler (%s, %u logits): %.1f us plain, %.1f us masked\n",
           temp ? "temperature 1, default top-k/p/min-p" : "greedy", mv, plain / 50 * 1e6,
           masked / 50 * 1e6);
    qiao_sampler_destroy(s);
  }
  free(logits);
  free(mask);
  free(per);
  free(ids);
  qiao_grammar_destroy(g);
  qiao_token_trie_destroy(trie);
  qiao_tokenizer_destroy(tok);
  return 0;
}
