/* qiao bench-serve: a load generator for any OpenAI-compatible server
 * (qiao serve, llama.cpp's llama-server, ...). C streaming requests run at
 * once in one libcurl multi loop until N are done; each response is read as
 * server-sent events and timed: time to first token, the gaps between
 * content chunks, generated tokens. One thread: every timestamp is taken
 * when curl hands the bytes over, with no locking between workers. */
#include <curl/curl.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"

/* Bounds on what a server may make us hold: one SSE line, one event's data,
 * the part of an error body kept for the message, JSON nesting. */
#define MAX_LINE_BYTES (1u << 20)
#define MAX_EVENT_BYTES (1u << 20)
#define MAX_ERROR_BODY 300
#define MAX_JSON_DEPTH 32
/* Failures described one by one on stderr; the rest are only counted. */
#define MAX_REPORTED_FAILURES 5

enum { FAIL_HTTP, FAIL_MALFORMED, FAIL_NO_DONE, FAIL_TRANSPORT, FAIL_COUNT };
static const char *const fail_names[FAIL_COUNT] = {"http", "malformed", "no_done", "transport"};

typedef struct options {
  const char *url, *model, *api_key;
  uint32_t concurrency, requests, prompt_len, max_tokens, vocab_min, vocab_max, timeout_s;
  uint64_t seed;
  bool chat, prompt_ids, json;
} options;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* splitmix64: a fixed-seed generator, so prompts are the same run to run. */
static uint64_t rng_next(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Common English words, each one token (with its leading space) in the
 * GPT-2, LLaMA-3 and Qwen vocabularies: a text prompt of L words is about L
 * tokens. */
static const char *const words[] = {
    "the",   "of",     "and",      "to",      "in",     "is",      "was",  "for",
    "on",    "with",   "as",       "at",      "by",     "from",    "that", "this",
    "it",    "are",    "be",       "have",    "not",    "or",      "one",  "all",
    "time",  "people", "year",     "day",     "world",  "life",    "hand", "part",
    "place", "case",   "week",     "company", "system", "program", "work", "number",
    "night", "point",  "home",     "water",   "room",   "mother",  "area", "money",
    "story", "fact",   "month",    "lot",     "right",  "study",   "book", "eye",
    "job",   "word",   "business", "issue",   "side",   "kind",    "head", "house",
};

/* ---- Growable byte buffer with a hard bound ----------------------------- */

typedef struct buf {
  char *p;
  size_t len, cap;
} buf;

/* false when `max` would be exceeded or memory ran out */
static bool buf_put(buf *b, const char *s, size_t n, size_t max) {
  if (b->len + n + 1 > max) return false;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
      cap *= 2;
    if (cap > max) cap = max;
    char *p = realloc(b->p, cap);
    if (p == NULL) return false;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
  return true;
}

/* ---- One request in flight ---------------------------------------------- */

typedef struct slot {
  CURL *h;
  struct curl_slist *headers;
  char *body;
  char errbuf[CURL_ERROR_SIZE];
  uint32_t index; /* which request (0..N-1) */
  long status;    /* HTTP status, read at the first body bytes */
  bool chat;
  /* SSE parser state */
  buf line, data;
  bool after_cr, data_seen;
  buf error_body; /* first bytes of a non-200 body */
  /* what the stream said */
  bool done, got_usage, failed;
  int fail_reason;
  char fail_msg[256];
  long chunks, usage_completion, usage_prompt;
  double t_start, t_first, t_last, t_end;
  double *itl; /* gaps between content chunks, seconds */
  size_t n_itl, cap_itl;
} slot;

static void slot_fail(slot *s, int reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void slot_fail(slot *s, int reason, const char *fmt, ...) {
  if (s->failed) return; /* the first cause is the one reported */
  s->failed = true;
  s->fail_reason = reason;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->fail_msg, sizeof(s->fail_msg), fmt, ap);
  va_end(ap);
}

/* Server text in messages: printable ASCII only, bounded. */
static void sanitize(char *dst, size_t size, const char *src, size_t n) {
  size_t j = 0;
  for (size_t i = 0; i < n && j + 1 < size; i++)
    dst[j++] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
  dst[j] = '\0';
}

static void content_chunk(slot *s) {
  double t = now_s();
  s->chunks++;
  if (s->chunks == 1) {
    s->t_first = t;
  } else if (s->n_itl < s->cap_itl) {
    s->itl[s->n_itl++] = t - s->t_last;
  }
  s->t_last = t;
}

static bool json_get_count(json_object *o, const char *key, long *out) {
  json_object *v = NULL;
  if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
    return false;
  int64_t x = json_object_get_int64(v);
  if (x < 0 || x > (1ll << 40)) return false;
  *out = (long)x;
  return true;
}

/* One event's data: "[DONE]" or a JSON chunk with choices and/or usage. */
static void handle_event(slot *s, const char *data, size_t len) {
  if (s->done) return; /* nothing after [DONE] counts */
  if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
    s->done = true;
    return;
  }
  char shown[120];
  json_tokener *tok = json_tokener_new_ex(MAX_JSON_DEPTH);
  if (tok == NULL) {
    slot_fail(s, FAIL_MALFORMED, "out of memory parsing an event");
    return;
  }
  json_object *root = json_tokener_parse_ex(tok, data, (int)len);
  bool complete =
      json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == len;
  json_tokener_free(tok);
  if (root == NULL || !complete || !json_object_is_type(root, json_type_object)) {
    sanitize(shown, sizeof(shown), data, len);
    slot_fail(s, FAIL_MALFORMED, "event data is not a JSON object: '%s'", shown);
    json_object_put(root);
    return;
  }
  json_object *err = NULL, *usage = NULL, *choices = NULL;
  if (json_object_object_get_ex(root, "error", &err) && err != NULL) {
    const char *text = json_object_to_json_string_ext(err, JSON_C_TO_STRING_PLAIN);
    sanitize(shown, sizeof(shown), text, strlen(text));
    slot_fail(s, FAIL_MALFORMED, "the stream carried an error: %s", shown);
    json_object_put(root);
    return;
  }
  bool has_usage = json_object_object_get_ex(root, "usage", &usage) &&
                   json_object_is_type(usage, json_type_object);
  if (has_usage) {
    long c = 0, p = 0;
    if (!json_get_count(usage, "completion_tokens", &c)) {
      slot_fail(s, FAIL_MALFORMED, "usage without a valid completion_tokens");
    } else {
      s->got_usage = true;
      s->usage_completion = c;
      if (json_get_count(usage, "prompt_tokens", &p)) s->usage_prompt = p;
    }
  }
  bool has_choices = json_object_object_get_ex(root, "choices", &choices) &&
                     json_object_is_type(choices, json_type_array);
  if (!has_choices && !has_usage)
    slot_fail(s, FAIL_MALFORMED, "event has neither a choices array nor usage");
  size_t n = has_choices ? json_object_array_length(choices) : 0;
  bool text = false;
  for (size_t i = 0; i < n; i++) {
    json_object *c = json_object_array_get_idx(choices, i), *v = NULL;
    if (!json_object_is_type(c, json_type_object)) {
      slot_fail(s, FAIL_MALFORMED, "choices[%zu] is not an object", i);
      break;
    }
    if (s->chat) {
      json_object *delta = NULL;
      if (json_object_object_get_ex(c, "delta", &delta)) c = delta;
      json_object_object_get_ex(c, "content", &v);
    } else {
      json_object_object_get_ex(c, "text", &v);
    }
    if (json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0) text = true;
  }
  if (text && !s->failed) content_chunk(s);
  json_object_put(root);
}

/* One complete line (without its end). */
static void handle_line(slot *s, const char *line, size_t len) {
  if (len == 0) { /* a blank line ends the event */
    if (s->data_seen) {
      size_t n = s->data.len;
      if (n > 0 && s->data.p[n - 1] == '\n') n--; /* the last data line's LF */
      handle_event(s, n ? s->data.p : "", n);
    }
    s->data.len = 0;
    s->data_seen = false;
    return;
  }
  if (line[0] == ':') return; /* a comment (keep-alive pings) */
  const char *colon = memchr(line, ':', len);
  size_t name_len = colon ? (size_t)(colon - line) : len;
  if (name_len != 4 || memcmp(line, "data", 4) != 0) return; /* event:, id:, retry: */
  const char *v = colon ? colon + 1 : line + len;
  size_t vlen = (size_t)(line + len - v);
  if (vlen > 0 && v[0] == ' ') v++, vlen--;
  if (!buf_put(&s->data, v, vlen, MAX_EVENT_BYTES) || !buf_put(&s->data, "\n", 1, MAX_EVENT_BYTES))
    slot_fail(s, FAIL_MALFORMED, "an event's data is over %u bytes", MAX_EVENT_BYTES);
  s->data_seen = true;
}

/* Bytes of the stream as curl delivers them: lines end in LF, CR or CRLF
 * and may be split anywhere between two calls. */
static void feed(slot *s, const char *p, size_t n) {
  for (size_t i = 0; i < n && !s->failed; i++) {
    char c = p[i];
    if (s->after_cr) {
      s->after_cr = false;
      if (c == '\n') continue;
    }
    if (c == '\r' || c == '\n') {
      s->after_cr = c == '\r';
      handle_line(s, s->line.len ? s->line.p : "", s->line.len);
      s->line.len = 0;
      continue;
    }
    size_t j = i + 1; /* the run up to the next line end, appended at once */
    while (j < n && p[j] != '\r' && p[j] != '\n')
      j++;
    if (!buf_put(&s->line, p + i, j - i, MAX_LINE_BYTES))
      slot_fail(s, FAIL_MALFORMED, "a line of the stream is over %u bytes", MAX_LINE_BYTES);
    i = j - 1;
  }
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *user) {
  slot *s = user;
  size_t n = size * nmemb;
  if (s->status == 0) curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
  if (s->status != 200) {
    size_t room = MAX_ERROR_BODY - s->error_body.len;
    buf_put(&s->error_body, p, n < room ? n : room, MAX_ERROR_BODY + 1);
    return n;
  }
  feed(s, p, n);
  return s->failed ? 0 : n; /* 0 makes curl stop this transfer */
}

/* ---- Requests ------------------------------------------------------------ */

/* The body of request `index`: its own prompt (so no server can reuse a
 * cached prefix from another request), greedy, exactly max_tokens. */
static char *make_body(const options *o, uint32_t index) {
  uint64_t rng = o->seed * 0x100000001b3ull + index;
  json_object *root = json_object_new_object();
  if (o->model) json_object_object_add(root, "model", json_object_new_string(o->model));
  json_object *prompt = NULL;
  if (o->prompt_ids) {
    prompt = json_object_new_array();
    uint32_t span = o->vocab_max - o->vocab_min;
    for (uint32_t i = 0; i < o->prompt_len; i++)
      json_object_array_add(prompt,
                            json_object_new_int64((int64_t)(o->vocab_min + rng_next(&rng) % span)));
  } else {
    buf text = {0};
    const size_t n_words = sizeof(words) / sizeof(words[0]);
    for (uint32_t i = 0; i < o->prompt_len; i++) {
      const char *w = words[rng_next(&rng) % n_words];
      if ((i > 0 && !buf_put(&text, " ", 1, SIZE_MAX)) || !buf_put(&text, w, strlen(w), SIZE_MAX))
        break;
    }
    prompt = json_object_new_string(text.p ? text.p : "");
    free(text.p);
  }
  if (o->chat) {
    json_object *msg = json_object_new_object(), *msgs = json_object_new_array();
    json_object_object_add(msg, "role", json_object_new_string("user"));
    json_object_object_add(msg, "content", prompt);
    json_object_array_add(msgs, msg);
    json_object_object_add(root, "messages", msgs);
  } else {
    json_object_object_add(root, "prompt", prompt);
  }
  json_object *so = json_object_new_object();
  json_object_object_add(so, "include_usage", json_object_new_boolean(1));
  json_object_object_add(root, "max_tokens", json_object_new_int64(o->max_tokens));
  json_object_object_add(root, "temperature", json_object_new_double(0));
  json_object_object_add(root, "ignore_eos", json_object_new_boolean(1));
  json_object_object_add(root, "stream", json_object_new_boolean(1));
  json_object_object_add(root, "stream_options", so);
  const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
  char *body = text ? strdup(text) : NULL;
  json_object_put(root);
  return body;
}

static qiao_status *slot_start(slot *s, const options *o, const char *url, uint32_t index,
                               CURLM *multi) {
  free(s->body);
  s->body = make_body(o, index);
  if (s->body == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "bench-serve: out of memory");
  s->index = index;
  s->status = 0;
  s->line.len = s->data.len = s->error_body.len = 0;
  s->after_cr = s->data_seen = s->done = s->got_usage = s->failed = false;
  s->fail_msg[0] = s->errbuf[0] = '\0';
  s->chunks = s->usage_completion = s->usage_prompt = 0;
  s->n_itl = 0;
  s->t_first = s->t_last = s->t_end = 0;
  CURL *h = s->h;
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, s->body);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(s->body));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, s->headers);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)o->timeout_s * 1000L);
  curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
  s->t_start = now_s();
  if (curl_multi_add_handle(multi, h) != CURLM_OK)
    return qiao__error(QIAO_IO, "bench-serve: curl_multi_add_handle failed");
  return NULL;
}

/* How the finished transfer went: sets failed/fail_reason when it failed. */
static void slot_finish(slot *s, CURLcode rc) {
  s->t_end = now_s();
  if (s->status == 0) curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
  if (s->failed) return; /* malformed, found while reading */
  if (rc != CURLE_OK && s->status == 0) {
    slot_fail(s, FAIL_TRANSPORT, "%s", s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc));
  } else if (s->status != 200) {
    char body[MAX_ERROR_BODY + 1];
    sanitize(body, sizeof(body), s->error_body.p ? s->error_body.p : "", s->error_body.len);
    slot_fail(s, FAIL_HTTP, "HTTP %ld: %s", s->status, body);
  } else if (!s->done) {
    slot_fail(s, FAIL_NO_DONE, "the stream ended without 'data: [DONE]'%s%s",
              rc != CURLE_OK ? ": " : "",
              rc != CURLE_OK ? (s->errbuf[0] ? s->errbuf : curl_easy_strerror(rc)) : "");
  }
}

/* ---- Statistics ----------------------------------------------------------- */

typedef struct dvec {
  double *v;
  size_t n, cap;
} dvec;

static bool dvec_push(dvec *d, double x) {
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 64;
    double *v = realloc(d->v, cap * sizeof(double));
    if (v == NULL) return false;
    d->v = v;
    d->cap = cap;
  }
  d->v[d->n++] = x;
  return true;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Linear interpolation between the closest ranks (numpy's default); NAN
 * when there are no values. Sorts v. */
static double percentile(dvec *d, double p) {
  if (d->n == 0) return NAN;
  qsort(d->v, d->n, sizeof(double), cmp_double);
  double r = p / 100.0 * (double)(d->n - 1);
  size_t lo = (size_t)r, hi = lo + 1 < d->n ? lo + 1 : lo;
  return d->v[lo] + (d->v[hi] - d->v[lo]) * (r - (double)lo);
}

static double mean(const dvec *d) {
  if (d->n == 0) return NAN;
  double sum = 0;
  for (size_t i = 0; i < d->n; i++)
    sum += d->v[i];
  return sum / (double)d->n;
}

typedef struct totals {
  uint32_t ok, failed[FAIL_COUNT], reported;
  uint64_t generated, prompt;
  uint32_t from_usage, from_chunks; /* how generated tokens were counted */
  bool prompt_estimated;            /* some prompt counts are the requested length */
  double t_first_start, t_last_end;
  dvec ttft, itl, decode_tps;
} totals;

static bool record(totals *t, const slot *s, const options *o) {
  if (t->t_first_start == 0 || s->t_start < t->t_first_start) t->t_first_start = s->t_start;
  if (s->t_end > t->t_last_end) t->t_last_end = s->t_end;
  if (s->failed) {
    t->failed[s->fail_reason]++;
    if (t->reported++ < MAX_REPORTED_FAILURES)
      fprintf(stderr, "bench-serve: request %u failed (%s): %s\n", s->index,
              fail_names[s->fail_reason], s->fail_msg);
    return true;
  }
  t->ok++;
  long gen = s->got_usage ? s->usage_completion : s->chunks;
  if (s->got_usage)
    t->from_usage++;
  else
    t->from_chunks++;
  t->generated += (uint64_t)gen;
  if (s->got_usage && s->usage_prompt > 0) {
    t->prompt += (uint64_t)s->usage_prompt;
  } else {
    t->prompt += o->prompt_len;
    t->prompt_estimated = true;
  }
  bool ok = true;
  if (s->chunks > 0) ok = dvec_push(&t->ttft, s->t_first - s->t_start);
  for (size_t i = 0; ok && i < s->n_itl; i++)
    ok = dvec_push(&t->itl, s->itl[i]);
  if (ok && gen >= 2 && s->chunks >= 2 && s->t_last > s->t_first)
    ok = dvec_push(&t->decode_tps, (double)(gen - 1) / (s->t_last - s->t_first));
  return ok;
}

/* A JSON number, or null for NAN. */
static void put_num(const char *key, double v, const char *sep) {
  if (isnan(v))
    printf("\"%s\": null%s", key, sep);
  else
    printf("\"%s\": %.3f%s", key, v, sep);
}

static void put_str(const char *key, const char *v, const char *sep) {
  json_object *s = json_object_new_string(v);
  printf("\"%s\": %s%s", key,
         json_object_to_json_string_ext(s, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
         sep);
  json_object_put(s);
}

static void report(const options *o, const char *url, totals *t) {
  double wall = t->t_last_end > t->t_first_start ? t->t_last_end - t->t_first_start : 0;
  uint32_t failed = 0;
  for (int r = 0; r < FAIL_COUNT; r++)
    failed += t->failed[r];
  double gen_tps = wall > 0 ? (double)t->generated / wall : NAN;
  double prompt_tps = wall > 0 ? (double)t->prompt / wall : NAN;
  double itl_mean = mean(&t->itl) * 1e3;
  double tt[3], it[3];
  const double ps[3] = {50, 90, 99};
  for (int i = 0; i < 3; i++) {
    tt[i] = percentile(&t->ttft, ps[i]) * 1e3;
    it[i] = percentile(&t->itl, ps[i]) * 1e3;
  }
  double dec = percentile(&t->decode_tps, 50);
  const char *counted = t->from_usage && t->from_chunks ? "mixed"
                        : t->from_usage                 ? "usage"
                        : t->from_chunks                ? "chunks"
                                                        : "none";
  const char *kind = o->prompt_ids ? "ids" : "text";
  if (o->json) {
    printf("{");
    put_str("url", url, ", ");
    put_str("endpoint", o->chat ? "chat" : "completions", ", ");
    printf("\"concurrency\": %u, \"requests\": %u, \"prompt_len\": %u, \"max_tokens\": %u, ",
           o->concurrency, o->requests, o->prompt_len, o->max_tokens);
    put_str("prompt_kind", kind, ", ");
    put_num("wall_s", wall, ", ");
    printf("\"requests_ok\": %u, \"requests_failed\": %u, ", t->ok, failed);
    for (int r = 0; r < FAIL_COUNT; r++)
      printf("\"failed_%s\": %u, ", fail_names[r], t->failed[r]);
    printf("\"generated_tokens\": %llu, \"prompt_tokens\": %llu, ",
           (unsigned long long)t->generated, (unsigned long long)t->prompt);
    put_num("generated_tokens_per_s", gen_tps, ", ");
    put_num("prompt_tokens_per_s", prompt_tps, ", ");
    put_num("ttft_ms_p50", tt[0], ", ");
    put_num("ttft_ms_p90", tt[1], ", ");
    put_num("ttft_ms_p99", tt[2], ", ");
    put_num("itl_ms_p50", it[0], ", ");
    put_num("itl_ms_p90", it[1], ", ");
    put_num("itl_ms_p99", it[2], ", ");
    put_num("itl_ms_mean", itl_mean, ", ");
    put_num("decode_tokens_per_s_median", dec, ", ");
    put_str("generated_counted_from", counted, ", ");
    printf("\"prompt_tokens_estimated\": %s}\n", t->prompt_estimated ? "true" : "false");
    return;
  }
  printf("%s: %u requests, %u at once, prompt %u %s, max_tokens %u\n", url, o->requests,
         o->concurrency, o->prompt_len, o->prompt_ids ? "token ids" : "words", o->max_tokens);
  printf("  wall time               %10.3f s\n", wall);
  printf("  requests ok / failed    %6u / %u", t->ok, failed);
  if (failed) {
    const char *sep = " (";
    for (int r = 0; r < FAIL_COUNT; r++)
      if (t->failed[r]) printf("%s%s %u", sep, fail_names[r], t->failed[r]), sep = ", ";
    printf(")");
  }
  printf("\n");
  printf("  generated tokens        %10llu  %10.1f tokens/s (counted from %s)\n",
         (unsigned long long)t->generated, gen_tps, counted);
  printf("  prompt tokens           %10llu  %10.1f tokens/s%s\n", (unsigned long long)t->prompt,
         prompt_tps, t->prompt_estimated ? " (some counts are the requested length)" : "");
  printf("  TTFT ms  p50 p90 p99    %10.1f %10.1f %10.1f\n", tt[0], tt[1], tt[2]);
  printf("  ITL ms   p50 p90 p99    %10.2f %10.2f %10.2f  (mean %.2f)\n", it[0], it[1], it[2],
         itl_mean);
  printf("  decode tokens/s per request, median %8.1f\n", dec);
}

/* ---- The run -------------------------------------------------------------- */

static qiao_status *run(const options *o, const char *url, totals *t) {
  CURLM *multi = curl_multi_init();
  slot *slots = calloc(o->concurrency, sizeof(slot));
  if (multi == NULL || slots == NULL) {
    curl_multi_cleanup(multi);
    free(slots);
    return qiao__error(QIAO_OUT_OF_MEMORY, "bench-serve: out of memory");
  }
  char auth[1024];
  qiao_status *st = NULL;
  uint32_t active = o->concurrency < o->requests ? o->concurrency : o->requests;
  for (uint32_t i = 0; st == NULL && i < active; i++) {
    slot *s = &slots[i];
    s->chat = o->chat;
    s->cap_itl = (size_t)o->max_tokens * 2 + 8; /* more chunks than that are not timed */
    s->itl = malloc(s->cap_itl * sizeof(double));
    s->h = curl_easy_init();
    struct curl_slist *hd = NULL;
    hd = curl_slist_append(hd, "Content-Type: application/json");
    if (hd) hd = curl_slist_append(hd, "Accept: text/event-stream");
    if (hd) hd = curl_slist_append(hd, "Expect:"); /* no 100-continue round trip */
    if (hd && o->api_key) {
      snprintf(auth, sizeof(auth), "Authorization: Bearer %s", o->api_key);
      hd = curl_slist_append(hd, auth);
    }
    s->headers = hd;
    if (s->itl == NULL || s->h == NULL || hd == NULL)
      st = qiao__error(QIAO_OUT_OF_MEMORY, "bench-serve: out of memory");
  }
  uint32_t started = 0, finished = 0, last_shown = 0;
  for (uint32_t i = 0; st == NULL && i < active; i++)
    st = slot_start(&slots[i], o, url, started++, multi);
  while (st == NULL && finished < started) {
    int running = 0;
    if (curl_multi_perform(multi, &running) != CURLM_OK) {
      st = qiao__error(QIAO_IO, "bench-serve: curl_multi_perform failed");
      break;
    }
    CURLMsg *msg;
    int left = 0;
    while (st == NULL && (msg = curl_multi_info_read(multi, &left)) != NULL) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL *h = msg->easy_handle;
      CURLcode rc = msg->data.result;
      slot *s = NULL;
      for (uint32_t i = 0; i < active; i++)
        if (slots[i].h == h) s = &slots[i];
      curl_multi_remove_handle(multi, h);
      if (s == NULL) continue;
      slot_finish(s, rc);
      if (!record(t, s, o)) st = qiao__error(QIAO_OUT_OF_MEMORY, "bench-serve: out of memory");
      finished++;
      /* about 20 progress lines per run, and the last */
      if (finished == o->requests || (uint64_t)finished * 20 / o->requests != last_shown) {
        last_shown = (uint32_t)((uint64_t)finished * 20 / o->requests);
        uint32_t bad = 0;
        for (int r = 0; r < FAIL_COUNT; r++)
          bad += t->failed[r];
        fprintf(stderr, "bench-serve: %u/%u requests done (%u failed)\n", finished, o->requests,
                bad);
      }
      if (st == NULL && started < o->requests) st = slot_start(s, o, url, started++, multi);
    }
    if (st == NULL && finished < started && curl_multi_poll(multi, NULL, 0, 1000, NULL) != CURLM_OK)
      st = qiao__error(QIAO_IO, "bench-serve: curl_multi_poll failed");
  }
  for (uint32_t i = 0; i < active; i++) {
    if (slots[i].h) {
      curl_multi_remove_handle(multi, slots[i].h);
      curl_easy_cleanup(slots[i].h);
    }
    curl_slist_free_all(slots[i].headers);
    free(slots[i].body);
    free(slots[i].line.p);
    free(slots[i].data.p);
    free(slots[i].error_body.p);
    free(slots[i].itl);
  }
  free(slots);
  curl_multi_cleanup(multi);
  return st;
}

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: qiao bench-serve --url URL [-c CONCURRENCY] [-n REQUESTS] [--prompt-len L]\n"
      "                        [--max-tokens M] [--endpoint completions|chat] [--model NAME]\n"
      "                        [--api-key KEY] [--prompt-ids | --prompt-text] [--seed S] [--json]\n"
      "Loads an OpenAI-compatible server: C streaming requests at once until N are done, each\n"
      "greedy (temperature 0) with ignore_eos and max_tokens M, so every request generates M\n"
      "tokens. Reports wall time, requests ok/failed by reason, generated and prompt tokens/s\n"
      "(all tokens / wall time from the first request's start to the last one's end), time to\n"
      "first token and inter-token latency percentiles, and the median per-request decode rate.\n"
      "  --url URL         the server, e.g. http://127.0.0.1:8080 (/v1/... is appended)\n"
      "  -c N              requests in flight at once (default 1)\n"
      "  -n N              requests in all (default 16)\n"
      "  --prompt-len L    prompt length in tokens (default 128)\n"
      "  --max-tokens M    tokens to generate per request (default 64)\n"
      "  --endpoint E      completions (/v1/completions, default) or chat (/v1/chat/completions)\n"
      "  --model NAME      the \"model\" field (left out by default)\n"
      "  --api-key KEY     sent as 'Authorization: Bearer KEY'\n"
      "  --prompt-ids      the prompt as L random token ids in [vocab-min, vocab-max)\n"
      "                    (default for completions; ids from a fixed-seed generator)\n"
      "  --prompt-text     the prompt as L random common English words (about L tokens;\n"
      "                    always for chat)\n"
      "  --vocab-min A     --vocab-max B: the id range of --prompt-ids (default 1000, 20000)\n"
      "  --seed S          prompts' seed (default 1); request i's prompt depends on S and i\n"
      "  --timeout S       seconds one request may take (default 600)\n"
      "  --json            one JSON object on stdout instead of the table\n"
      "Progress goes to stderr. Exit 0 when every request succeeded, 1 when any failed (the\n"
      "report is printed either way), 2 on a usage error.\n");
}

int qiao_cmd_bench_serve(int argc, char **argv) {
  options o = {.concurrency = 1,
               .requests = 16,
               .prompt_len = 128,
               .max_tokens = 64,
               .vocab_min = 1000,
               .vocab_max = 20000,
               .timeout_s = 600,
               .seed = 1};
  int ids_choice = -1; /* -1 default, 0 text, 1 ids */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (qiao_cli_is_help(a)) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--json") == 0) {
      o.json = true;
      continue;
    } else if (strcmp(a, "--prompt-ids") == 0 || strcmp(a, "--prompt-text") == 0) {
      ids_choice = strcmp(a, "--prompt-ids") == 0;
      continue;
    }
    static const char *const valued[] = {
        "--url",   "-c",        "-n",     "--prompt-len", "--max-tokens", "--endpoint",
        "--model", "--api-key", "--seed", "--vocab-min",  "--vocab-max",  "--timeout"};
    bool known = false;
    for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++)
      known = known || strcmp(a, valued[k]) == 0;
    if (!known) return qiao_cli_unknown_arg("bench-serve", a);
    const char *v = qiao_cli_flag_value(argc, argv, &i);
    if (v == NULL) return 2;
    qiao_status *st = NULL;
    if (strcmp(a, "--url") == 0)
      o.url = v;
    else if (strcmp(a, "--model") == 0)
      o.model = v;
    else if (strcmp(a, "--api-key") == 0)
      o.api_key = v;
    else if (strcmp(a, "--endpoint") == 0) {
      if (strcmp(v, "completions") != 0 && strcmp(v, "chat") != 0)
        return qiao_cli_usage_error("--endpoint: expected completions or chat, got '%s'", v);
      o.chat = strcmp(v, "chat") == 0;
    } else if (strcmp(a, "-c") == 0)
      st = qiao_cli_parse_u32(a, v, 1, 4096, &o.concurrency);
    else if (strcmp(a, "-n") == 0)
      st = qiao_cli_parse_u32(a, v, 1, 10000000, &o.requests);
    else if (strcmp(a, "--prompt-len") == 0)
      st = qiao_cli_parse_u32(a, v, 1, 1u << 20, &o.prompt_len);
    else if (strcmp(a, "--max-tokens") == 0)
      st = qiao_cli_parse_u32(a, v, 1, 1u << 20, &o.max_tokens);
    else if (strcmp(a, "--vocab-min") == 0)
      st = qiao_cli_parse_u32(a, v, 0, INT32_MAX - 1, &o.vocab_min);
    else if (strcmp(a, "--vocab-max") == 0)
      st = qiao_cli_parse_u32(a, v, 1, INT32_MAX, &o.vocab_max);
    else if (strcmp(a, "--timeout") == 0)
      st = qiao_cli_parse_u32(a, v, 1, 86400, &o.timeout_s);
    else
      st = qiao_cli_parse_u64(a, v, &o.seed);
    if (st != NULL) return qiao_cli_fail(st) + 1;
  }
  if (o.url == NULL) return qiao_cli_usage_error("bench-serve: --url is required");
  if (strncmp(o.url, "http://", 7) != 0 && strncmp(o.url, "https://", 8) != 0)
    return qiao_cli_usage_error("--url: expected http://HOST:PORT or https://..., got '%s'", o.url);
  if (strlen(o.url) > 2000) return qiao_cli_usage_error("--url: longer than 2000 characters");
  if (o.vocab_min >= o.vocab_max)
    return qiao_cli_usage_error("--vocab-min %u must be below --vocab-max %u", o.vocab_min,
                                o.vocab_max);
  if (o.api_key && (strlen(o.api_key) > 900 || strpbrk(o.api_key, "\r\n") != NULL))
    return qiao_cli_usage_error("--api-key: longer than 900 characters or has a line break");
  if (o.chat && ids_choice == 1)
    return qiao_cli_usage_error("--prompt-ids: the chat endpoint takes text messages");
  o.prompt_ids = ids_choice == -1 ? !o.chat : ids_choice == 1;

  char url[2100];
  size_t base = strlen(o.url);
  while (base > 0 && o.url[base - 1] == '/')
    base--;
  snprintf(url, sizeof(url), "%.*s%s", (int)base, o.url,
           o.chat ? "/v1/chat/completions" : "/v1/completions");

  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return qiao_cli_fail(qiao__error(QIAO_IO, "bench-serve: curl_global_init failed"));
  fprintf(stderr, "bench-serve: %u requests to %s, %u at once\n", o.requests, url, o.concurrency);
  totals t = {0};
  qiao_status *st = run(&o, url, &t);
  if (st == NULL) report(&o, url, &t);
  free(t.ttft.v);
  free(t.itl.v);
  free(t.decode_tps.v);
  curl_global_cleanup();
  if (st != NULL) return qiao_cli_fail(st);
  return t.ok == o.requests ? 0 : 1;
}
