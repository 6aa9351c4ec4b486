/* The scheduler's front: creation, submission (with every admission limit),
 * request handles and their event lists, draining and health. The work
 * itself happens on the replica threads (replica.c). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler_internal.h"

double qiao__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

qiao_scheduler_options qiao_scheduler_default_options(void) {
  qiao_scheduler_options o;
  memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  return o;
}

const char *qiao_reject_name(qiao_reject reject) {
  static const char *const names[QIAO_REJECT_COUNT] = {
      "none",     "queue_full", "tenant_queue", "tenant_rate",
      "too_long", "invalid",    "no_device",    "shutting_down"};
  return (unsigned)reject < QIAO_REJECT_COUNT ? names[reject] : "unknown";
}

/* ---- Creation ---------------------------------------------------------------- */

qiao_status *qiao_scheduler_create(qiao_pool *pool, const qiao_tokenizer *tokenizer,
                                   const qiao_scheduler_options *options,
                                   qiao_scheduler **out_scheduler) {
  if (pool == NULL || tokenizer == NULL || out_scheduler == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_scheduler_create: NULL argument");
  qiao_scheduler *s = calloc(1, sizeof(*s));
  if (s == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "scheduler: out of memory");
  s->opt = qiao_scheduler_default_options();
  if (options != NULL)
    memcpy(&s->opt, options,
           options->struct_size < sizeof(s->opt) ? options->struct_size : sizeof(s->opt));
  if (s->opt.max_queued == 0) s->opt.max_queued = 64;
  if (s->opt.max_step_tokens == 0) s->opt.max_step_tokens = 256;
  if (s->opt.prefill_chunk == 0 || s->opt.prefill_chunk > s->opt.max_step_tokens)
    s->opt.prefill_chunk = s->opt.max_step_tokens;
  s->pool = pool;
  s->tokenizer = tokenizer;
  s->vocab = qiao_pool_hparams(pool)->vocab_size;
  s->max_context = qiao_pool_max_context(pool);
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->trie_mu, NULL);
  pthread_cond_init(&s->work_cv, NULL);
  pthread_cond_init(&s->idle_cv, NULL);
  qiao_tenant_limits defaults = qiao_tenant_default_limits();
  defaults.max_running = s->opt.tenant_max_running;
  if (s->opt.tenant_max_queued > 0) defaults.max_queued = s->opt.tenant_max_queued;
  qiao_status *st = qiao__tenant_add(s, "default", &defaults, &s->default_tenant);
  s->n_replicas = qiao_pool_size(pool);
  s->replicas = st ? NULL : calloc(s->n_replicas, sizeof(*s->replicas));
  if (st == NULL && s->replicas == NULL)
    st = qiao__error(QIAO_OUT_OF_MEMORY, "scheduler: out of memory");
  for (size_t i = 0; st == NULL && i < s->n_replicas; i++) {
    qiao__replica_state *r = &s->replicas[i];
    qiao_pool_replica_info info;
    qiao_pool_replica_info_get(pool, i, &info);
    r->sched = s;
    r->index = i;
    r->slots = info.slots;
    int rc = pthread_create(&r->thread, NULL, qiao__replica_main, r);
    if (rc != 0)
      st = qiao__error(QIAO_INTERNAL, "scheduler: cannot start a thread: %s", strerror(rc));
    else
      r->thread_started = true;
  }
  if (st != NULL) {
    qiao_scheduler_destroy(s);
    return st;
  }
  *out_scheduler = s;
  return NULL;
}

void qiao_scheduler_destroy(qiao_scheduler *s) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->mu);
  s->stopping = true;
  pthread_cond_broadcast(&s->work_cv);
  pthread_mutex_unlock(&s->mu);
  for (size_t i = 0; s->replicas && i < s->n_replicas; i++)
    if (s->replicas[i].thread_started) pthread_join(s->replicas[i].thread, NULL);
  /* The threads cancelled what ran; what is still queued ends here. */
  pthread_mutex_lock(&s->mu);
  while (s->queue_head != NULL) {
    qiao_request *r = s->queue_head;
    qiao__queue_remove(s, r);
    qiao__request_finish(r, QIAO_FINISH_CANCELLED, NULL, NULL, 0);
  }
  pthread_mutex_unlock(&s->mu);
  free(s->replicas);
  qiao__tenants_free(s);
  pthread_cond_destroy(&s->work_cv);
  pthread_cond_destroy(&s->idle_cv);
  pthread_mutex_destroy(&s->mu);
  pthread_mutex_destroy(&s->trie_mu);
  qiao_token_trie_destroy(s->trie);
  free(s);
}

qiao_tenant_limits qiao_tenant_default_limits(void) {
  qiao_tenant_limits l = {.max_running = 0, .max_queued = QIAO_NO_LIMIT, .weight = 1};
  return l;
}

qiao_status *qiao_scheduler_add_tenant(qiao_scheduler *s, const char *name,
                                       const qiao_tenant_limits *limits) {
  if (s == NULL) return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_scheduler_add_tenant: NULL");
  pthread_mutex_lock(&s->mu);
  qiao__tenant *t = NULL;
  qiao_status *st = qiao__tenant_add(s, name, limits, &t);
  pthread_mutex_unlock(&s->mu);
  return st;
}

/* ---- The queue ----------------------------------------------------------------- */

void qiao__queue_remove(qiao_scheduler *s, qiao_request *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    s->queue_head = r->next;
  if (r->next)
    r->next->prev = r->prev;
  else
    s->queue_tail = r->prev;
  r->prev = r->next = NULL;
  s->n_queued--;
  r->tenant->queued--;
}

static void queue_append(qiao_scheduler *s, qiao_request *r) {
  r->prev = s->queue_tail;
  r->next = NULL;
  if (s->queue_tail)
    s->queue_tail->next = r;
  else
    s->queue_head = r;
  s->queue_tail = r;
  s->n_queued++;
  r->tenant->queued++;
}

/* ---- Requests ------------------------------------------------------------------ */

static void event_free(qiao__event *e) {
  free(e->text);
  free(e->top_ids);
  free(e->top_logprobs);
  memset(e, 0, sizeof(*e));
}

static void request_free(qiao_request *r) {
  for (size_t i = r->next_event; i < r->n_events; i++)
    event_free(&r->events[i]);
  event_free(&r->current);
  free(r->events);
  free(r->prompt);
  free(r->bias);
  free(r->error);
  qiao_sampler_destroy(r->sampler);
  qiao_stopper_destroy(r->stopper);
  qiao_detokenizer_destroy(r->detok);
  qiao_grammar_matcher_destroy(r->matcher);
  free(r->mask);
  pthread_cond_destroy(&r->cv);
  free(r);
}

void qiao__request_unref(qiao_request *r) {
  if (--r->refs == 0) request_free(r);
}

void qiao__request_emit(qiao_request *r, const qiao_request_event *ev) {
  if (r->n_events == r->cap_events) {
    size_t cap = r->cap_events ? r->cap_events * 2 : 16;
    qiao__event *grown = realloc(r->events, cap * sizeof(*grown));
    if (grown == NULL) return; /* the event is lost; DONE still comes (its slot is reserved) */
    r->events = grown;
    r->cap_events = cap;
  }
  qiao__event *e = &r->events[r->n_events];
  memset(e, 0, sizeof(*e));
  e->ev = *ev;
  e->text = malloc(ev->text_len + 1);
  if (e->text != NULL) {
    if (ev->text_len) memcpy(e->text, ev->text, ev->text_len);
    e->text[ev->text_len] = '\0';
  } else {
    e->ev.text_len = 0;
  }
  e->ev.text = e->text ? e->text : "";
  if (ev->n_top > 0) {
    e->top_ids = malloc(ev->n_top * sizeof(int32_t));
    e->top_logprobs = malloc(ev->n_top * sizeof(float));
    if (e->top_ids && e->top_logprobs) {
      memcpy(e->top_ids, ev->top_ids, ev->n_top * sizeof(int32_t));
      memcpy(e->top_logprobs, ev->top_logprobs, ev->n_top * sizeof(float));
    } else {
      e->ev.n_top = 0;
    }
  }
  e->ev.top_ids = e->top_ids;
  e->ev.top_logprobs = e->top_logprobs;
  e->ev.error = NULL;
  r->n_events++;
  pthread_cond_broadcast(&r->cv);
}

void qiao__request_finish(qiao_request *r, qiao_finish finish, const char *error, const char *tail,
                          size_t tail_len) {
  qiao_scheduler *s = r->sched;
  double now = qiao__now();
  if (r->state == STATE_RUNNING) {
    s->n_running--;
    r->tenant->running--;
  }
  r->state = STATE_FINISHED;
  r->finish = finish;
  if (error != NULL && r->error == NULL) r->error = strdup(error);
  r->tenant->finished[finish <= 4 ? finish : 0]++;
  qiao_request_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.kind = QIAO_EVENT_DONE;
  ev.text = tail ? tail : "";
  ev.text_len = tail ? tail_len : 0;
  ev.finish = finish;
  ev.prompt_tokens = r->n_prompt;
  ev.cached_tokens = r->n_cached;
  ev.completion_tokens = r->n_generated;
  ev.queue_s = (r->t_admit > 0 ? r->t_admit : now) - r->t_submit;
  ev.ttft_s = r->t_first > 0 ? r->t_first - r->t_submit : 0;
  ev.total_s = now - r->t_submit;
  if (r->replica >= 0) {
    qiao_pool_replica_info info;
    qiao_pool_replica_info_get(s->pool, (size_t)r->replica, &info);
    snprintf(ev.replica, sizeof(ev.replica), "%s", info.spec);
  }
  qiao__request_emit(r, &ev);
  pthread_cond_broadcast(&s->idle_cv);
  qiao__request_unref(r); /* the scheduler's reference */
}

/* A tenant may hold max_running + max_queued requests (running or waiting);
 * without max_running, as many as all slots may run. */
static bool over_tenant_limit(const qiao_scheduler *s, const qiao__tenant *t) {
  if (t->limits.max_queued == QIAO_NO_LIMIT) return false;
  uint64_t may_run = t->limits.max_running;
  if (may_run == 0 || may_run == QIAO_NO_LIMIT) {
    may_run = 0;
    for (size_t i = 0; i < s->n_replicas; i++)
      may_run += s->replicas[i].slots;
  }
  return (uint64_t)t->running + t->queued >= may_run + t->limits.max_queued;
}

static qiao_status *reject(qiao_submit_result *res, qiao_reject why, uint32_t retry_after,
                           qiao_status *st) {
  res->reject = why;
  res->retry_after_s = retry_after;
  return st;
}

/* Builds the request's sampler, stopper and detokenizer, checking params. */
static qiao_status *request_prepare(qiao_scheduler *s, const qiao_request_params *p,
                                    qiao_request *r) {
  for (size_t i = 0; i < p->n_prompt; i++)
    if (p->prompt[i] < 0 || (uint32_t)p->prompt[i] >= s->vocab)
      return qiao__error(QIAO_INVALID_ARGUMENT, "prompt: token %zu is %d, not in [0, %u)", i,
                         p->prompt[i], s->vocab);
  for (size_t i = 0; i < p->n_logit_bias; i++) {
    const qiao_logit_bias *b = &p->logit_bias[i];
    if (b->token < 0 || (uint32_t)b->token >= s->vocab)
      return qiao__error(QIAO_INVALID_ARGUMENT, "logit_bias: token %d is not in [0, %u)", b->token,
                         s->vocab);
    if (!isfinite(b->bias))
      return qiao__error(QIAO_INVALID_ARGUMENT, "logit_bias: token %d: bias is not finite",
                         b->token);
  }
  qiao_sampler_params sp = p->sampling;
  if (sp.struct_size == 0) sp = qiao_sampler_default_params();
  if (!p->logprobs) sp.n_logprobs = 0;
  QIAO__TRY(qiao_sampler_create(&sp, s->vocab, &r->sampler));
  QIAO__TRY(qiao_stopper_create(p->stops, p->n_stops, &r->stopper));
  QIAO__TRY(qiao_detokenizer_create(s->tokenizer, &r->detok));
  if (p->grammar != NULL) {
    pthread_mutex_lock(&s->trie_mu);
    qiao_status *st = s->trie ? NULL : qiao_token_trie_from_tokenizer(s->tokenizer, &s->trie);
    pthread_mutex_unlock(&s->trie_mu);
    QIAO__TRY(qiao__annotate(st, "grammar"));
    QIAO__TRY(qiao_grammar_matcher_create(p->grammar, s->trie, &r->matcher));
    r->mask = calloc((s->vocab + 31) / 32, sizeof(uint32_t));
    if (r->mask == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "request: out of memory");
  }
  r->prompt = malloc(p->n_prompt * sizeof(int32_t));
  if (r->prompt == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "request: out of memory");
  memcpy(r->prompt, p->prompt, p->n_prompt * sizeof(int32_t));
  if (p->n_logit_bias > 0) {
    r->bias = malloc(p->n_logit_bias * sizeof(*r->bias));
    if (r->bias == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "request: out of memory");
    memcpy(r->bias, p->logit_bias, p->n_logit_bias * sizeof(*r->bias));
    r->n_bias = p->n_logit_bias;
  }
  return NULL;
}

qiao_status *qiao_scheduler_submit(qiao_scheduler *s, const qiao_request_params *params,
                                   qiao_submit_result *out_result, qiao_request **out_request) {
  qiao_submit_result scratch;
  qiao_submit_result *res = out_result ? out_result : &scratch;
  res->reject = QIAO_REJECT_NONE;
  res->retry_after_s = 0;
  if (s == NULL || params == NULL || out_request == NULL)
    return reject(res, QIAO_REJECT_INVALID, 0,
                  qiao__error(QIAO_INVALID_ARGUMENT, "qiao_scheduler_submit: NULL argument"));
  qiao_request_params p;
  memset(&p, 0, sizeof(p));
  memcpy(&p, params, params->struct_size < sizeof(p) ? params->struct_size : sizeof(p));
  if (p.n_prompt == 0 || p.prompt == NULL)
    return reject(res, QIAO_REJECT_INVALID, 0, qiao__error(QIAO_INVALID_ARGUMENT, "prompt: empty"));
  if (p.n_prompt >= s->max_context)
    return reject(res, QIAO_REJECT_TOO_LONG, 0,
                  qiao__error(QIAO_LIMIT,
                              "prompt: %zu tokens do not fit the context of %u (with at least "
                              "one token to generate)",
                              p.n_prompt, s->max_context));

  qiao_request *r = calloc(1, sizeof(*r));
  if (r == NULL)
    return reject(res, QIAO_REJECT_INVALID, 0,
                  qiao__error(QIAO_OUT_OF_MEMORY, "request: out of memory"));
  pthread_cond_init(&r->cv, NULL);
  r->sched = s;
  r->replica = -1;
  r->seq = -1;
  r->refs = 2;
  qiao_status *st = request_prepare(s, &p, r);
  if (st != NULL) {
    request_free(r);
    return reject(res, QIAO_REJECT_INVALID, 0, st);
  }
  r->n_prompt = (uint32_t)p.n_prompt;
  uint32_t room = s->max_context - r->n_prompt;
  r->max_tokens = p.max_tokens == 0 || p.max_tokens > room ? room : p.max_tokens;
  r->ignore_eos = p.ignore_eos;
  r->logprobs = p.logprobs;

  const char *tenant_name = p.tenant && p.tenant[0] ? p.tenant : "default";
  pthread_mutex_lock(&s->mu);
  double now = qiao__now();
  qiao__tenant *t = qiao__tenant_find(s, tenant_name);
  qiao_reject why = QIAO_REJECT_NONE;
  uint32_t retry = 0;
  size_t ok_replicas = 0;
  for (size_t i = 0; i < s->n_replicas; i++)
    ok_replicas += !s->replicas[i].out;
  if (t == NULL) {
    st = qiao__error(QIAO_INVALID_ARGUMENT, "tenant '%s' is not known", tenant_name);
    why = QIAO_REJECT_INVALID;
  } else if (s->draining || s->stopping) {
    st = qiao__error(QIAO_LIMIT, "the server is shutting down");
    why = QIAO_REJECT_SHUTTING_DOWN;
    retry = 5;
  } else if (ok_replicas == 0) {
    st = qiao__error(QIAO_DEVICE, "no device is left in the pool");
    why = QIAO_REJECT_NO_DEVICE;
    retry = 30;
  } else if (t->limits.tokens_per_minute > 0 &&
             qiao__tenant_window_tokens(t, now, &retry) >= t->limits.tokens_per_minute) {
    st = qiao__error(QIAO_LIMIT, "tenant '%s': %llu tokens per minute used", t->name,
                     (unsigned long long)t->limits.tokens_per_minute);
    why = QIAO_REJECT_TENANT_RATE;
    if (retry == 0) retry = 1;
  } else if (over_tenant_limit(s, t)) {
    st = qiao__error(QIAO_LIMIT, "tenant '%s': %u requests running and %u waiting (its limit)",
                     t->name, t->running, t->queued);
    why = QIAO_REJECT_TENANT_QUEUE;
    retry = 1;
  } else if (s->n_queued >= s->opt.max_queued) {
    st = qiao__error(QIAO_LIMIT, "the queue is full (%u requests waiting)", s->opt.max_queued);
    why = QIAO_REJECT_QUEUE_FULL;
    retry = 1;
  }
  if (st != NULL) {
    if (t != NULL)
      t->rejected[why]++;
    else
      s->default_tenant->rejected[why]++;
    pthread_mutex_unlock(&s->mu);
    request_free(r);
    return reject(res, why, retry, st);
  }
  qiao__tenant_activate(s, t);
  r->tenant = t;
  r->state = STATE_QUEUED;
  r->order = s->next_order++;
  r->t_submit = now;
  queue_append(s, r);
  pthread_cond_broadcast(&s->work_cv);
  pthread_mutex_unlock(&s->mu);
  *out_request = r;
  return NULL;
}

bool qiao_request_next(qiao_request *r, uint32_t timeout_ms, qiao_request_event *out) {
  if (r == NULL || out == NULL) return false;
  qiao_scheduler *s = r->sched;
  pthread_mutex_lock(&s->mu);
  if (r->next_event == r->n_events && timeout_ms > 0 && !(r->state == STATE_FINISHED)) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
    while (r->next_event == r->n_events) {
      if (pthread_cond_timedwait(&r->cv, &s->mu, &deadline) == ETIMEDOUT) break;
    }
  }
  bool got = false;
  if (r->next_event < r->n_events) {
    event_free(&r->current);
    r->current = r->events[r->next_event++];
    *out = r->current.ev;
    if (out->kind == QIAO_EVENT_DONE) out->error = r->error;
    got = true;
  }
  pthread_mutex_unlock(&s->mu);
  return got;
}

void qiao_request_cancel(qiao_request *r) {
  if (r == NULL) return;
  qiao_scheduler *s = r->sched;
  pthread_mutex_lock(&s->mu);
  if (r->state == STATE_QUEUED) {
    qiao__queue_remove(s, r);
    qiao__request_finish(r, QIAO_FINISH_CANCELLED, NULL, NULL, 0);
  } else if (r->state == STATE_RUNNING) {
    r->cancel = true; /* its replica thread frees the sequence */
    pthread_cond_broadcast(&s->work_cv);
  }
  pthread_mutex_unlock(&s->mu);
}

void qiao_request_destroy(qiao_request *r) {
  if (r == NULL) return;
  qiao_request_cancel(r);
  qiao_scheduler *s = r->sched;
  pthread_mutex_lock(&s->mu);
  qiao__request_unref(r);
  pthread_mutex_unlock(&s->mu);
}

/* ---- Service state ------------------------------------------------------------ */

void qiao_scheduler_health_get(qiao_scheduler *s, qiao_scheduler_health *out) {
  memset(out, 0, sizeof(*out));
  pthread_mutex_lock(&s->mu);
  out->replicas = s->n_replicas;
  for (size_t i = 0; i < s->n_replicas; i++) {
    /* The pool may have taken a replica out before its thread noticed. */
    qiao_pool_replica_info info;
    qiao_pool_replica_info_get(s->pool, i, &info);
    out->replicas_ok += !s->replicas[i].out && info.ok;
  }
  out->running = s->n_running;
  out->queued = s->n_queued;
  out->draining = s->draining;
  pthread_mutex_unlock(&s->mu);
}

static void cancel_all_running(qiao_scheduler *s) {
  for (size_t i = 0; i < s->n_replicas; i++)
    for (qiao_request *r = s->replicas[i].running; r != NULL; r = r->next)
      r->cancel = true;
  pthread_cond_broadcast(&s->work_cv);
}

void qiao_scheduler_drain(qiao_scheduler *s, uint32_t grace_ms) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->mu);
  s->draining = true;
  while (s->queue_head != NULL) {
    qiao_request *r = s->queue_head;
    qiao__queue_remove(s, r);
    qiao__request_finish(r, QIAO_FINISH_CANCELLED, "the server is shutting down", NULL, 0);
  }
  double deadline = qiao__now() + grace_ms / 1000.0;
  bool cancelled = false;
  while (s->n_running > 0) {
    double left = deadline - qiao__now();
    if (left <= 0 && !cancelled) {
      cancel_all_running(s);
      cancelled = true;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&s->idle_cv, &s->mu, &ts);
  }
  pthread_mutex_unlock(&s->mu);
}
