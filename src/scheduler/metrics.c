/* The scheduler's metrics in the Prometheus text exposition format 0.0.4:
 * per tenant (requests, tokens, latencies) and per device (state, KV cache,
 * prefix cache). Names start with qiao_; times are in seconds. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler_internal.h"

const double qiao__ttft_bounds[HIST_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                2.5,  5,     10,   20,  30,   60,  120};
const double qiao__itl_bounds[HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075,
                                               0.1,   0.15,   0.25,  0.5,  1,     2.5,  5};

void qiao__histogram_add(qiao__histogram *h, const double *bounds, double seconds) {
  int i = 0;
  while (i < HIST_BUCKETS && seconds > bounds[i])
    i++;
  h->counts[i]++;
  h->sum += seconds;
  h->count++;
}

typedef struct text {
  char *data;
  size_t len, cap;
  bool failed;
} text;

static void put(text *t, const char *fmt, ...) QIAO__PRINTF(2, 3);
static void put(text *t, const char *fmt, ...) {
  if (t->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->data ? t->data + t->len : NULL, t->data ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      t->failed = true;
      return;
    }
    if (t->data != NULL && t->len + (size_t)n < t->cap) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = t->cap ? t->cap * 2 : 8192;
    while (cap < t->len + (size_t)n + 1)
      cap *= 2;
    char *grown = realloc(t->data, cap);
    if (grown == NULL) {
      t->failed = true;
      return;
    }
    t->data = grown;
    t->cap = cap;
  }
}

/* A label value with \, " and newline escaped, as the format requires. */
static void put_label(text *t, const char *value) {
  for (const char *p = value; *p; p++) {
    if (*p == '\\')
      put(t, "\\\\");
    else if (*p == '"')
      put(t, "\\\"");
    else if (*p == '\n')
      put(t, "\\n");
    else
      put(t, "%c", *p);
  }
}

static void head(text *t, const char *name, const char *type, const char *help) {
  put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void tenant_sample(text *t, const char *name, const qiao__tenant *tn, const char *extra,
                          unsigned long long value) {
  put(t, "%s{tenant=\"", name);
  put_label(t, tn->name);
  put(t, "\"%s} %llu\n", extra ? extra : "", value);
}

static void histogram(text *t, const char *name, const qiao__tenant *tn, const qiao__histogram *h,
                      const double *bounds) {
  uint64_t cumulative = 0;
  for (int i = 0; i <= HIST_BUCKETS; i++) {
    cumulative += h->counts[i];
    put(t, "%s_bucket{tenant=\"", name);
    put_label(t, tn->name);
    if (i < HIST_BUCKETS)
      put(t, "\",le=\"%g\"} %llu\n", bounds[i], (unsigned long long)cumulative);
    else
      put(t, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cumulative);
  }
  put(t, "%s_sum{tenant=\"", name);
  put_label(t, tn->name);
  put(t, "\"} %.6f\n", h->sum);
  put(t, "%s_count{tenant=\"", name);
  put_label(t, tn->name);
  put(t, "\"} %llu\n", (unsigned long long)h->count);
}

static void device_sample(text *t, const char *name, const qiao_pool_replica_info *info,
                          unsigned long long value) {
  put(t, "%s{device=\"", name);
  put_label(t, info->spec);
  put(t, "\",name=\"");
  put_label(t, info->device);
  put(t, "\"} %llu\n", value);
}

qiao_status *qiao_scheduler_metrics(qiao_scheduler *s, char **out_text, size_t *out_len) {
  if (s == NULL || out_text == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_scheduler_metrics: NULL argument");
  text t = {0};
  size_t n = s->n_replicas;
  qiao_pool_replica_info *infos = calloc(n, sizeof(*infos));
  if (infos == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "metrics: out of memory");
  for (size_t i = 0; i < n; i++)
    qiao_pool_replica_info_get(s->pool, i, &infos[i]);

  pthread_mutex_lock(&s->mu);
  head(&t, "qiao_requests_running", "gauge", "Requests running on a device.");
  for (qiao__tenant *tn = s->tenants; tn; tn = tn->next)
    tenant_sample(&t, "qiao_requests_running", tn, NULL, tn->running);
  head(&t, "qiao_requests_queued", "gauge", "Requests waiting for a slot.");
  for (qiao__tenant *tn = s->tenants; tn; tn = tn->next)
    tenant_sample(&t, "qiao_requests_queued", tn, NULL, tn->queued);
  head(&t, "qiao_requests_rejected_total", "counter", "Requests refused at submission, by reason.");
  for (qiao__tenant *tn = s->tenants; tn; tn = tn->next)
    for (int why = 1; why < QIAO_REJECT_COUNT; why++) {
      char extra[64];
      snprintf(extra, sizeof(extra), ",reason=\"%s\"", qiao_reject_name((qiao_reject)why));
      tenant_sample(&t, "qiao_requests_rejected_total", tn, extra, tn->rejected[why]);
    }
  head(&t, "qiao_requests_finished_total", "counter", "Requests ended, by how they ended.");
  static const char *const finishes[] = {"", "stop", "length", "cancelled", "error"};
  for (qiao__tenant *tn = s->tenants; tn; tn = tn->next)
    for (int f = 1; f <= 4; f++) {
      char extra[48];
      snprintf(extra, sizeof(extra), ",finish=\"%s\"", finishes[f]);
      tenant_sample(&t, "qiao_requests_finished_total", tn, extra, tn->finished[f]);
    }
  head(&t, "qiao_prompt_tokens_total", "counter", "Prompt tokens computed (not from the cache).");
  for (qiao__tenant *tn = s->tenants; tn; tn = tn->next)
    tenant_sample(&t, "qiao_prompt_tokens_total", tn, NULL, tn->prompt_tokens);
  head(&t, "qiao_prompt_cached_tokens_total", "counter",
       "Prompt tokens served from the prefix cache.");
  for (qiao__tenant *tn = s->tenants; tn; tn = tn->next)
    tenant_sample(&t, "qiao_prompt_cached_tokens_total", tn, NULL, tn->cached_tokens);
  head(&t, "qiao_generation_tokens_total", "counter", "Tokens generated.");
  for (qiao__tenant *tn = s->tenants; tn; tn = tn->next)
    tenant_sample(&t, "qiao_generation_tokens_total", tn, NULL, tn->generated_tokens);
  head(&t, "qiao_time_to_first_token_seconds", "histogram",
       "From submission to the first generated token.");
  for (qiao__tenant *tn = s->tenants; tn; tn = tn->next)
    histogram(&t, "qiao_time_to_first_token_seconds", tn, &tn->ttft, qiao__ttft_bounds);
  head(&t, "qiao_inter_token_latency_seconds", "histogram",
       "Between consecutive tokens of a request.");
  for (qiao__tenant *tn = s->tenants; tn; tn = tn->next)
    histogram(&t, "qiao_inter_token_latency_seconds", tn, &tn->itl, qiao__itl_bounds);
  put(&t,
      "# HELP qiao_queue_limit Requests the queue holds at most.\n"
      "# TYPE qiao_queue_limit gauge\nqiao_queue_limit %u\n",
      s->opt.max_queued);
  head(&t, "qiao_device_up", "gauge", "1 while the device is in the pool, 0 once taken out.");
  for (size_t i = 0; i < n; i++)
    device_sample(&t, "qiao_device_up", &infos[i], infos[i].ok);
  head(&t, "qiao_device_requests_running", "gauge", "Requests running on the device.");
  for (size_t i = 0; i < n; i++)
    device_sample(&t, "qiao_device_requests_running", &infos[i], s->replicas[i].n_running);
  head(&t, "qiao_device_slots", "gauge", "Requests the device runs at once at most.");
  for (size_t i = 0; i < n; i++)
    device_sample(&t, "qiao_device_slots", &infos[i], infos[i].slots);
  head(&t, "qiao_device_steps_total", "counter", "Engine steps run.");
  for (size_t i = 0; i < n; i++)
    device_sample(&t, "qiao_device_steps_total", &infos[i], s->replicas[i].steps);
  pthread_mutex_unlock(&s->mu);

  head(&t, "qiao_kv_blocks", "gauge", "KV cache blocks of the device.");
  for (size_t i = 0; i < n; i++)
    device_sample(&t, "qiao_kv_blocks", &infos[i], infos[i].kv_blocks);
  head(&t, "qiao_kv_blocks_used", "gauge", "KV cache blocks held by running requests.");
  for (size_t i = 0; i < n; i++)
    device_sample(&t, "qiao_kv_blocks_used", &infos[i], infos[i].kv_blocks_used);
  head(&t, "qiao_kv_blocks_cached", "gauge",
       "KV cache blocks holding a prompt prefix for reuse (evictable).");
  for (size_t i = 0; i < n; i++)
    device_sample(&t, "qiao_kv_blocks_cached", &infos[i], infos[i].kv_blocks_cached);
  head(&t, "qiao_prefix_cache_hit_tokens_total", "counter",
       "Prompt tokens served from the device's prefix cache.");
  for (size_t i = 0; i < n; i++)
    device_sample(&t, "qiao_prefix_cache_hit_tokens_total", &infos[i], infos[i].prefix_hit_tokens);
  free(infos);
  if (t.failed) {
    free(t.data);
    return qiao__error(QIAO_OUT_OF_MEMORY, "metrics: out of memory");
  }
  *out_text = t.data;
  if (out_len) *out_len = t.len;
  return NULL;
}
