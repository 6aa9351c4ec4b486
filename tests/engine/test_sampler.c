/* The sampler: greedy is the argmax, a seed fixes the draws, top-k / top-p /
 * min-p cut where they should, penalties, logprobs; stop strings that span
 * pushes, with held-back text. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qiao/sampler.h"
#include "test_util.h"

#define V 8

static qiao_sampler *make(float temp, uint32_t top_k, float top_p, float min_p, uint64_t seed) {
  qiao_sampler_params p = qiao_sampler_default_params();
  p.temperature = temp;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = seed;
  qiao_sampler *s = NULL;
  CHECK_OK(qiao_sampler_create(&p, V, &s));
  return s;
}

/* Counts of each token over n draws. */
static void draws(qiao_sampler *s, const float *logits, int n, int *counts, int32_t *first) {
  memset(counts, 0, V * sizeof(int));
  for (int i = 0; i < n; i++) {
    int32_t t = -1;
    CHECK_OK(qiao_sampler_sample(s, logits, &t, NULL));
    if (t >= 0 && t < V) counts[t]++;
    if (first && i < 32) first[i] = t;
  }
}

static void push(qiao_stopper *st, const char *text, const char *expect, bool expect_stop) {
  const char *out;
  size_t len;
  bool stopped = false;
  CHECK_OK(qiao_stopper_push(st, text, strlen(text), &out, &len, &stopped));
  if (len != strlen(expect) || memcmp(out, expect, len) != 0 || stopped != expect_stop) {
    fprintf(stderr, "push '%s': got '%.*s' (stop %d), expected '%s' (stop %d)\n", text, (int)len,
            out, stopped, expect, expect_stop);
    CHECK(0);
  }
}

int main(void) {
  const float logits[V] = {1.0f, 3.0f, 2.5f, 3.0f, -1.0f, 0.0f, 2.9f, -5.0f};
  int counts[V];
  int32_t t = -1;

  /* Greedy: the first index of the maximum. */
  qiao_sampler *g = make(0, 0, 1, 0, 0);
  CHECK(qiao_sampler_is_greedy(g));
  CHECK_OK(qiao_sampler_sample(g, logits, &t, NULL));
  CHECK(t == 1);
  qiao_sampler_destroy(g);

  /* Same seed, same draws; another seed, other draws. */
  int32_t a[32], b[32], c[32];
  qiao_sampler *s1 = make(1, 0, 1, 0, 7), *s2 = make(1, 0, 1, 0, 7), *s3 = make(1, 0, 1, 0, 8);
  draws(s1, logits, 32, counts, a);
  draws(s2, logits, 32, counts, b);
  draws(s3, logits, 32, counts, c);
  CHECK(memcmp(a, b, sizeof(a)) == 0);
  CHECK(memcmp(a, c, sizeof(a)) != 0);
  qiao_sampler_destroy(s1);
  qiao_sampler_destroy(s2);
  qiao_sampler_destroy(s3);

  /* Temperature 1, no cuts: frequencies follow softmax (4000 draws). */
  qiao_sampler *s = make(1, 0, 1, 0, 1);
  draws(s, logits, 4000, counts, NULL);
  double z = 0;
  for (int i = 0; i < V; i++)
    z += exp(logits[i]);
  for (int i = 0; i < V; i++) {
    double expect = 4000 * exp(logits[i]) / z;
    CHECK(fabs(counts[i] - expect) < 5 * sqrt(expect + 1) + 3);
  }
  qiao_sampler_destroy(s);

  /* top-k 2: only the two best (1 and 3, equal logits; ties by id). */
  s = make(1, 2, 1, 0, 1);
  draws(s, logits, 500, counts, NULL);
  CHECK(counts[1] > 0 && counts[3] > 0 && counts[1] + counts[3] == 500);
  qiao_sampler_destroy(s);

  /* top-p 0.5: 1 and 3 hold ~0.27 each -> both needed, nothing else. */
  s = make(1, 0, 0.5f, 0, 1);
  draws(s, logits, 500, counts, NULL);
  CHECK(counts[1] + counts[3] == 500);
  qiao_sampler_destroy(s);

  /* min-p 0.5: keeps p >= 0.5 p_max: 1, 3, 6 (e^-0.1), 2 (e^-0.5 = 0.61). */
  s = make(1, 0, 1, 0.5f, 1);
  draws(s, logits, 1000, counts, NULL);
  CHECK(counts[1] + counts[3] + counts[6] + counts[2] == 1000 && counts[2] > 0 && counts[6] > 0);
  qiao_sampler_destroy(s);

  /* Repetition penalty pushes a seen token down in greedy. */
  qiao_sampler_params p = qiao_sampler_default_params();
  p.temperature = 0;
  p.repeat_penalty = 2.0f;
  CHECK_OK(qiao_sampler_create(&p, V, &s));
  CHECK(!qiao_sampler_is_greedy(s));
  qiao_sampler_accept(s, 1);
  qiao_sampler_accept(s, 3);
  CHECK_OK(qiao_sampler_sample(s, logits, &t, NULL));
  CHECK(t == 6);
  qiao_sampler_destroy(s);

  /* Logprobs of the raw logits. */
  p = qiao_sampler_default_params();
  p.temperature = 0;
  p.n_logprobs = 3;
  CHECK_OK(qiao_sampler_create(&p, V, &s));
  qiao_logprobs lp;
  CHECK_OK(qiao_sampler_sample(s, logits, &t, &lp));
  CHECK(t == 1 && lp.n_top == 3);
  CHECK(fabs(lp.chosen - (3.0 - log(z))) < 1e-5);
  CHECK(lp.top_ids[0] == 1 && lp.top_ids[1] == 3 && lp.top_ids[2] == 6);
  CHECK(fabs(lp.top_logprobs[2] - (2.9 - log(z))) < 1e-5);
  qiao_sampler_destroy(s);

  /* Bad parameters. */
  p = qiao_sampler_default_params();
  p.temperature = -1;
  CHECK_ERR(qiao_sampler_create(&p, V, &s), QIAO_INVALID_ARGUMENT);

  /* Stop strings spanning pushes. */
  const char *stops[] = {"\nUser:", "END"};
  qiao_stopper *st = NULL;
  CHECK_OK(qiao_stopper_create(stops, 2, &st));
  push(st, "Hello", "Hello", false);
  push(st, " wor", " wor", false);
  push(st, "ld\n", "ld", false); /* "\n" may start "\nUser:" */
  push(st, "Us", "", false);     /* "\nUs" still may */
  push(st, "a", "\nUsa", false); /* no longer */
  push(st, "E", "", false);
  push(st, "N", "", false);
  push(st, "D and more", "", true); /* "EN" + "D": stop, nothing after */
  qiao_stopper_destroy(st);
  CHECK_OK(qiao_stopper_create(stops, 2, &st));
  push(st, "abc\nUser: hi", "abc", true);
  qiao_stopper_destroy(st);
  CHECK_OK(qiao_stopper_create(stops, 2, &st));
  push(st, "tail EN", "tail ", false);
  const char *out;
  size_t len;
  qiao_stopper_flush(st, &out, &len);
  CHECK(len == 2 && memcmp(out, "EN", 2) == 0);
  qiao_stopper_destroy(st);
  TEST_END();
}
