/* Token sampling (penalties, temperature, top-k, top-p, min-p, seeded PRNG,
 * logprobs) and stop strings over the detokenized text stream. */
#include "qiao/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"

#define MAX_LOGPROBS 64u

qiao_sampler_params qiao_sampler_default_params(void) {
  qiao_sampler_params p;
  memset(&p, 0, sizeof(p));
  p.struct_size = sizeof(p);
  p.temperature = 0.8f;
  p.top_k = 40;
  p.top_p = 0.95f;
  p.min_p = 0.05f;
  p.repeat_penalty = 1.0f;
  p.penalty_window = 64;
  return p;
}

typedef struct candidate {
  int32_t id;
  float logit; /* after penalties and temperature; later the probability */
} candidate;

struct qiao_sampler {
  qiao_sampler_params p;
  uint32_t vocab;
  uint64_t rng[4];  /* xoshiro256** state */
  int32_t *history; /* accepted tokens */
  size_t n_history, cap_history;
  uint32_t *counts; /* (vocab) scratch for penalties */
  float *work;      /* (vocab) */
  candidate *cands; /* (vocab) */
  int32_t top_ids[MAX_LOGPROBS];
  float top_logprobs[MAX_LOGPROBS];
};

/* ---- PRNG: splitmix64 seeding, xoshiro256** (Blackman & Vigna) ---------- */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4]) {
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform(qiao_sampler *s) {
  return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53;
}

/* ---- Lifetime --------------------------------------------------------------- */

qiao_status *qiao_sampler_create(const qiao_sampler_params *params, uint32_t vocab_size,
                                 qiao_sampler **out_sampler) {
  qiao_sampler_params p = qiao_sampler_default_params();
  if (params != NULL) {
    size_t n = params->struct_size < sizeof(p) ? params->struct_size : sizeof(p);
    memcpy(&p, params, n);
    p.struct_size = sizeof(p);
  }
  if (vocab_size == 0) return qiao__error(QIAO_INVALID_ARGUMENT, "sampler: vocab size 0");
  if (!(p.temperature >= 0 && isfinite(p.temperature)))
    return qiao__error(QIAO_INVALID_ARGUMENT, "sampler: temperature must be >= 0");
  if (!(p.top_p >= 0 && p.top_p <= 1) && !(p.top_p > 1 && isfinite(p.top_p)))
    return qiao__error(QIAO_INVALID_ARGUMENT, "sampler: top_p must be in [0, 1]");
  if (!(p.min_p >= 0 && p.min_p <= 1))
    return qiao__error(QIAO_INVALID_ARGUMENT, "sampler: min_p must be in [0, 1]");
  if (!(p.repeat_penalty > 0 && isfinite(p.repeat_penalty)))
    return qiao__error(QIAO_INVALID_ARGUMENT, "sampler: repeat penalty must be > 0");
  if (!isfinite(p.presence_penalty) || !isfinite(p.frequency_penalty))
    return qiao__error(QIAO_INVALID_ARGUMENT, "sampler: penalties must be finite");
  if (p.n_logprobs > MAX_LOGPROBS)
    return qiao__error(QIAO_INVALID_ARGUMENT, "sampler: at most %u logprobs", MAX_LOGPROBS);
  qiao_sampler *s = calloc(1, sizeof(*s));
  if (s == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "sampler: out of memory");
  s->p = p;
  s->vocab = vocab_size;
  s->counts = calloc(vocab_size, sizeof(*s->counts));
  s->work = malloc(vocab_size * sizeof(*s->work));
  s->cands = malloc(vocab_size * sizeof(*s->cands));
  if (s->counts == NULL || s->work == NULL || s->cands == NULL) {
    qiao_sampler_destroy(s);
    return qiao__error(QIAO_OUT_OF_MEMORY, "sampler: out of memory");
  }
  uint64_t x = p.seed;
  for (int i = 0; i < 4; i++)
    s->rng[i] = splitmix64(&x);
  *out_sampler = s;
  return NULL;
}

void qiao_sampler_destroy(qiao_sampler *s) {
  if (s == NULL) return;
  free(s->history);
  free(s->counts);
  free(s->work);
  free(s->cands);
  free(s);
}

static bool has_penalties(const qiao_sampler *s) {
  return s->p.repeat_penalty != 1.0f || s->p.presence_penalty != 0.0f ||
         s->p.frequency_penalty != 0.0f;
}

bool qiao_sampler_is_greedy(const qiao_sampler *s) {
  return s->p.temperature == 0.0f && !has_penalties(s) && s->p.n_logprobs == 0;
}

void qiao_sampler_accept(qiao_sampler *s, int32_t token) {
  if (!has_penalties(s)) return;
  if (s->n_history == s->cap_history) {
    size_t cap = s->cap_history ? s->cap_history * 2 : 256;
    int32_t *grown = realloc(s->history, cap * sizeof(*grown));
    if (grown == NULL) return; /* penalties then see a shorter history */
    s->history = grown;
    s->cap_history = cap;
  }
  s->history[s->n_history++] = token;
}

void qiao_sampler_reset(qiao_sampler *s) {
  s->n_history = 0;
}

/* ---- Sampling ------------------------------------------------------------ */

/* Descending logit, then ascending id: a total order, so results never
 * depend on the sort algorithm. */
static int by_logit_desc(const void *a, const void *b) {
  const candidate *x = a, *y = b;
  if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

static void apply_penalties(qiao_sampler *s, float *logits) {
  size_t start = 0;
  if (s->p.penalty_window > 0 && s->n_history > s->p.penalty_window)
    start = s->n_history - s->p.penalty_window;
  for (size_t i = start; i < s->n_history; i++) {
    int32_t t = s->history[i];
    if (t >= 0 && (uint32_t)t < s->vocab) s->counts[t]++;
  }
  for (size_t i = start; i < s->n_history; i++) {
    int32_t t = s->history[i];
    if (t < 0 || (uint32_t)t >= s->vocab || s->counts[t] == 0) continue;
    float l = logits[t];
    l = l > 0 ? l / s->p.repeat_penalty : l * s->p.repeat_penalty;
    l -= s->p.presence_penalty + s->p.frequency_penalty * (float)s->counts[t];
    logits[t] = l;
    s->counts[t] = 0; /* each distinct token once */
  }
}

static int32_t argmax(const float *x, uint32_t n) {
  uint32_t best = 0;
  for (uint32_t i = 1; i < n; i++)
    if (x[i] > x[best]) best = i;
  return (int32_t)best;
}

static void fill_logprobs(qiao_sampler *s, const float *logits, int32_t token, qiao_logprobs *lp) {
  double max = logits[argmax(logits, s->vocab)], sum = 0;
  for (uint32_t i = 0; i < s->vocab; i++)
    sum += exp((double)logits[i] - max);
  double lse = max + log(sum);
  lp->chosen = (float)((double)logits[token] - lse);
  /* Top N by insertion into a small sorted list. */
  uint32_t n = 0, cap = s->p.n_logprobs;
  for (uint32_t i = 0; i < s->vocab && cap > 0; i++) {
    float v = logits[i];
    if (n == cap && !(v > s->top_logprobs[n - 1])) continue;
    uint32_t j = n < cap ? n++ : n - 1;
    while (j > 0 && v > s->top_logprobs[j - 1]) {
      s->top_logprobs[j] = s->top_logprobs[j - 1];
      s->top_ids[j] = s->top_ids[j - 1];
      j--;
    }
    s->top_logprobs[j] = v;
    s->top_ids[j] = (int32_t)i;
  }
  for (uint32_t i = 0; i < n; i++)
    s->top_logprobs[i] = (float)((double)s->top_logprobs[i] - lse);
  lp->n_top = n;
  lp->top_ids = s->top_ids;
  lp->top_logprobs = s->top_logprobs;
}

static bool allowed_bit(const uint32_t *allowed, uint32_t i) {
  return allowed == NULL || ((allowed[i >> 5] >> (i & 31)) & 1u);
}

/* The argmax among allowed tokens (the smallest id on ties); -1 if none. */
static int32_t masked_argmax(const float *x, uint32_t n, const uint32_t *allowed) {
  int32_t best = -1;
  for (uint32_t w = 0; w < (n + 31) / 32; w++) {
    uint32_t bits = allowed[w];
    while (bits != 0) { /* visit only the set bits: masks are often sparse */
      uint32_t i = w * 32 + (uint32_t)__builtin_ctz(bits);
      bits &= bits - 1;
      if (i < n && (best < 0 || x[i] > x[best])) best = (int32_t)i;
    }
  }
  return best;
}

qiao_status *qiao_sampler_sample(qiao_sampler *s, const float *logits, int32_t *out_token,
                                 qiao_logprobs *out_logprobs) {
  return qiao_sampler_sample_masked(s, logits, NULL, out_token, out_logprobs);
}

qiao_status *qiao_sampler_sample_masked(qiao_sampler *s, const float *logits,
                                        const uint32_t *allowed, int32_t *out_token,
                                        qiao_logprobs *out_logprobs) {
  if (logits == NULL || out_token == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "sampler: NULL logits or output");
  float *w = s->work;
  memcpy(w, logits, s->vocab * sizeof(float));
  if (has_penalties(s)) apply_penalties(s, w);
  for (uint32_t i = 0; i < s->vocab; i++)
    if (isnan(w[i])) return qiao__error(QIAO_INTERNAL, "sampler: logit %u is NaN", i);
  int32_t token;
  int32_t best = allowed ? masked_argmax(w, s->vocab, allowed) : argmax(w, s->vocab);
  if (best < 0) return qiao__error(QIAO_INVALID_ARGUMENT, "sampler: the mask allows no token");
  if (s->p.temperature == 0.0f || w[best] == -INFINITY) { /* all allowed are banned: the first */
    token = best;
  } else {
    /* Candidates with logits / temperature, then the top-k of them. */
    uint32_t n = 0;
    candidate *c = s->cands;
    float inv_t = 1.0f / s->p.temperature;
    float max_logit = w[best] * inv_t;
    /* min-p keeps p >= min_p * p_max, i.e. logit >= max + log(min_p): drop
     * the rest before sorting (this also makes sampling fast on big vocabs). */
    float floor_logit = s->p.min_p > 0 ? max_logit + logf(s->p.min_p) : -INFINITY;
    for (uint32_t i = 0; i < s->vocab; i++) {
      float l = w[i] * inv_t;
      if (l >= floor_logit && allowed_bit(allowed, i)) c[n++] = (candidate){(int32_t)i, l};
    }
    uint32_t k = s->p.top_k > 0 && s->p.top_k < n ? s->p.top_k : n;
    if (k < n && k <= 256) { /* select the k best by insertion, sorted */
      uint32_t m = 0;
      for (uint32_t i = 0; i < n; i++) {
        candidate x = c[i];
        if (m == k && by_logit_desc(&x, &c[m - 1]) >= 0) continue;
        uint32_t j = m < k ? m++ : m - 1;
        while (j > 0 && by_logit_desc(&x, &c[j - 1]) < 0) {
          c[j] = c[j - 1];
          j--;
        }
        c[j] = x;
      }
      n = k;
    } else {
      qsort(c, n, sizeof(*c), by_logit_desc);
      n = k;
    }
    /* Softmax over the survivors (sorted: c[0] is the max). */
    double max = c[0].logit, sum = 0;
    for (uint32_t i = 0; i < n; i++) {
      double p = exp((double)c[i].logit - max);
      c[i].logit = (float)p;
      sum += p;
    }
    /* top-p: the smallest prefix whose mass reaches top_p. */
    if (s->p.top_p > 0 && s->p.top_p < 1) {
      double acc = 0, target = s->p.top_p * sum;
      uint32_t keep = n;
      for (uint32_t i = 0; i < n; i++) {
        acc += c[i].logit;
        if (acc >= target) {
          keep = i + 1;
          break;
        }
      }
      n = keep;
    }
    sum = 0;
    for (uint32_t i = 0; i < n; i++)
      sum += c[i].logit;
    double r = uniform(s) * sum, acc = 0;
    token = c[n - 1].id;
    for (uint32_t i = 0; i < n; i++) {
      acc += c[i].logit;
      if (r < acc) {
        token = c[i].id;
        break;
      }
    }
  }
  if (out_logprobs != NULL) {
    memset(out_logprobs, 0, sizeof(*out_logprobs));
    fill_logprobs(s, logits, token, out_logprobs);
  }
  *out_token = token;
  return NULL;
}

/* ---- Stop strings ----------------------------------------------------------- */

struct qiao_stopper {
  char **stops;
  size_t *lens;
  size_t n;
  char *pending; /* text not shown yet */
  size_t n_pending, cap_pending;
  char *out; /* what the last call returned */
  size_t cap_out;
};

qiao_status *qiao_stopper_create(const char *const *stops, size_t n, qiao_stopper **out) {
  qiao_stopper *s = calloc(1, sizeof(*s));
  if (s == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "stop strings: out of memory");
  s->stops = calloc(n ? n : 1, sizeof(char *));
  s->lens = calloc(n ? n : 1, sizeof(size_t));
  if (s->stops == NULL || s->lens == NULL) {
    qiao_stopper_destroy(s);
    return qiao__error(QIAO_OUT_OF_MEMORY, "stop strings: out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    size_t len = stops[i] ? strlen(stops[i]) : 0;
    if (len == 0) continue;
    s->stops[s->n] = malloc(len + 1);
    if (s->stops[s->n] == NULL) {
      qiao_stopper_destroy(s);
      return qiao__error(QIAO_OUT_OF_MEMORY, "stop strings: out of memory");
    }
    memcpy(s->stops[s->n], stops[i], len + 1);
    s->lens[s->n++] = len;
  }
  *out = s;
  return NULL;
}

void qiao_stopper_destroy(qiao_stopper *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < s->n; i++)
    free(s->stops[i]);
  free(s->stops);
  free(s->lens);
  free(s->pending);
  free(s->out);
  free(s);
}

static qiao_status *reserve(char **buf, size_t *cap, size_t need) {
  if (need <= *cap) return NULL;
  size_t c = *cap ? *cap : 64;
  while (c < need)
    c *= 2;
  char *grown = realloc(*buf, c);
  if (grown == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "stop strings: out of memory");
  *buf = grown;
  *cap = c;
  return NULL;
}

/* Emits pending[0, n) through the out buffer and drops it from pending. */
static qiao_status *emit(qiao_stopper *s, size_t n, const char **out_text, size_t *out_len) {
  QIAO__TRY(reserve(&s->out, &s->cap_out, n + 1));
  memcpy(s->out, s->pending, n);
  s->out[n] = '\0';
  memmove(s->pending, s->pending + n, s->n_pending - n);
  s->n_pending -= n;
  *out_text = s->out;
  *out_len = n;
  return NULL;
}

qiao_status *qiao_stopper_push(qiao_stopper *s, const char *text, size_t len, const char **out_text,
                               size_t *out_len, bool *out_stopped) {
  QIAO__TRY(reserve(&s->pending, &s->cap_pending, s->n_pending + len + 1));
  memcpy(s->pending + s->n_pending, text, len);
  s->n_pending += len;
  /* A complete stop string: show what precedes the earliest one. */
  size_t first = SIZE_MAX;
  for (size_t i = 0; i < s->n; i++) {
    if (s->lens[i] > s->n_pending) continue;
    for (size_t at = 0; at + s->lens[i] <= s->n_pending && at < first; at++)
      if (memcmp(s->pending + at, s->stops[i], s->lens[i]) == 0) {
        first = at;
        break;
      }
  }
  if (first != SIZE_MAX) {
    QIAO__TRY(emit(s, first, out_text, out_len));
    s->n_pending = 0;
    *out_stopped = true;
    return NULL;
  }
  /* Hold back the longest tail that is a proper prefix of a stop string. */
  size_t hold = 0;
  for (size_t i = 0; i < s->n; i++) {
    size_t max = s->lens[i] - 1 < s->n_pending ? s->lens[i] - 1 : s->n_pending;
    for (size_t h = max; h > hold; h--)
      if (memcmp(s->pending + s->n_pending - h, s->stops[i], h) == 0) {
        hold = h;
        break;
      }
  }
  *out_stopped = false;
  return emit(s, s->n_pending - hold, out_text, out_len);
}

void qiao_stopper_flush(qiao_stopper *s, const char **out_text, size_t *out_len) {
  if (emit(s, s->n_pending, out_text, out_len) != NULL) { /* out of memory: drop it */
    s->n_pending = 0;
    *out_text = "";
    *out_len = 0;
  }
}
