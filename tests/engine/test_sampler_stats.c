/* The sampler's distribution, statistically: for each setting of
 * temperature, top-k, top-p, min-p and the penalties, the probabilities the
 * definitions give (computed here in double, independently of the sampler:
 * penalties, then logits / T, then min-p, top-k, top-p over what is left,
 * renormalized) against the frequencies of 20000 seeded draws. A token
 * outside the kept set must never come out; every kept token with p >= 1%
 * must (missing one has probability < e^-200); each frequency must be within
 * 6 standard deviations of its probability. A sampler off by one token at a
 * cut (top-p without the crossing token, top-k + 1) or on a penalty fails. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "qiao/sampler.h"
#include "test_util.h"

#define V 10
#define DRAWS 20000

typedef struct setting {
  const char *what;
  float temperature, top_p, min_p;
  uint32_t top_k;
  float repeat, presence, frequency;
  int32_t history[4];
  int n_history;
} setting;

/* The logits every setting starts from: distinct, spread over a few nats,
 * one negative pair for the repeat penalty's sign. */
static const float logits[V] = {2.0f, 1.7f, 1.3f, 0.9f, 0.2f, -0.4f, -0.9f, -1.5f, 1.5f, -0.2f};

/* The expected probabilities of `s` (0 for dropped tokens). */
static void expected(const setting *s, double *p) {
  double l[V];
  int count[V] = {0};
  for (int i = 0; i < s->n_history; i++)
    count[s->history[i]]++;
  for (int i = 0; i < V; i++) {
    l[i] = logits[i];
    if (count[i] > 0) { /* once per distinct seen token */
      l[i] = l[i] > 0 ? l[i] / s->repeat : l[i] * s->repeat;
      l[i] -= s->presence + s->frequency * count[i];
    }
    l[i] /= s->temperature;
  }
  bool keep[V];
  double max = -INFINITY, total = 0;
  for (int i = 0; i < V; i++)
    max = fmax(max, l[i]);
  for (int i = 0; i < V; i++) /* min-p: p_i >= min_p * p_max */
    keep[i] = s->min_p <= 0 || exp(l[i] - max) >= s->min_p;
  int order[V]; /* kept ids by descending logit, ties by id */
  int n = 0;
  for (int i = 0; i < V; i++)
    if (keep[i]) order[n++] = i;
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && l[order[j]] > l[order[j - 1]]; j--) {
      int t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
  if (s->top_k > 0 && s->top_k < (uint32_t)n) n = (int)s->top_k;
  for (int i = 0; i < n; i++)
    total += exp(l[order[i]] - max);
  if (s->top_p > 0 && s->top_p < 1) { /* the shortest prefix reaching top_p, crossing token in */
    double acc = 0;
    for (int i = 0; i < n; i++) {
      acc += exp(l[order[i]] - max) / total;
      if (acc >= s->top_p) {
        n = i + 1;
        break;
      }
    }
  }
  total = 0;
  for (int i = 0; i < n; i++)
    total += exp(l[order[i]] - max);
  memset(p, 0, V * sizeof(double));
  for (int i = 0; i < n; i++)
    p[order[i]] = exp(l[order[i]] - max) / total;
}

static void check_setting(const setting *s) {
  qiao_sampler_params params = qiao_sampler_default_params();
  params.temperature = s->temperature;
  params.top_k = s->top_k;
  params.top_p = s->top_p;
  params.min_p = s->min_p;
  params.repeat_penalty = s->repeat;
  params.presence_penalty = s->presence;
  params.frequency_penalty = s->frequency;
  params.penalty_window = 0;
  params.seed = 17;
  qiao_sampler *sampler = NULL;
  CHECK_OK(qiao_sampler_create(&params, V, &sampler));
  if (sampler == NULL) return;
  for (int i = 0; i < s->n_history; i++)
    qiao_sampler_accept(sampler, s->history[i]);
  int counts[V] = {0};
  for (int d = 0; d < DRAWS; d++) {
    int32_t t = -1;
    CHECK_OK(qiao_sampler_sample(sampler, logits, &t, NULL));
    if (t >= 0 && t < V) counts[t]++;
  }
  qiao_sampler_destroy(sampler);
  double p[V];
  expected(s, p);
  int bad = 0;
  for (int i = 0; i < V; i++) {
    double f = (double)counts[i] / DRAWS, sd = sqrt(p[i] * (1 - p[i]) / DRAWS);
    bool wrong = (p[i] == 0 && counts[i] > 0) || (p[i] >= 0.01 && counts[i] == 0) ||
                 fabs(f - p[i]) > 6 * sd + 1e-9;
    if (wrong) {
      fprintf(stderr, "%s: token %d: frequency %.4f, expected %.4f (sd %.4f)\n", s->what, i, f,
              p[i], sd);
      bad++;
    }
  }
  printf("%-44s %s\n", s->what, bad ? "WRONG" : "ok");
  CHECK(bad == 0);
}

int main(void) {
  const setting settings[] = {
      {"temperature 1", 1, 1, 0, 0, 1, 0, 0, {0}, 0},
      {"temperature 0.5", 0.5f, 1, 0, 0, 1, 0, 0, {0}, 0},
      {"temperature 2", 2, 1, 0, 0, 1, 0, 0, {0}, 0},
      {"top-k 3", 1, 1, 0, 3, 1, 0, 0, {0}, 0},
      {"top-k 1", 1.5f, 1, 0, 1, 1, 0, 0, {0}, 0},
      /* p(0) = 0.25 < 0.4, the crossing token 1 must stay */
      {"top-p 0.4", 1, 0.4f, 0, 0, 1, 0, 0, {0}, 0},
      {"top-p 0.8", 1, 0.8f, 0, 0, 1, 0, 0, {0}, 0},
      {"top-k 5 then top-p 0.7", 1, 0.7f, 0, 5, 1, 0, 0, {0}, 0},
      {"min-p 0.3", 1, 1, 0.3f, 0, 1, 0, 0, {0}, 0},
      /* at T = 2 the floor is on logit / 2: more survive than at T = 1 */
      {"min-p 0.3 at temperature 2", 2, 1, 0.3f, 0, 1, 0, 0, {0}, 0},
      {"min-p 0.2, top-k 4, top-p 0.9, T 0.8", 0.8f, 0.9f, 0.2f, 4, 1, 0, 0, {0}, 0},
      /* seen: 0 (positive logit, divided) and 7 (negative, multiplied) */
      {"repeat penalty 1.5", 1, 1, 0, 0, 1.5f, 0, 0, {0, 7, 0}, 3},
      /* token 0 seen twice: presence once, frequency twice */
      {"presence 0.5", 1, 1, 0, 0, 1, 0.5f, 0, {0, 0, 2}, 3},
      {"frequency 0.4", 1, 1, 0, 0, 1, 0, 0.4f, {0, 0, 0, 8}, 4},
  };
  for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++)
    check_setting(&settings[i]);
  TEST_END();
}
