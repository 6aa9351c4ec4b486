/* Internal: the scheduler's state, shared by its files:
 *   scheduler.c  creation, submission, request handles, drain, health;
 *   tenants.c    tenants: limits, fair-share counters, the tokens-per-minute window;
 *   replica.c    one thread per replica: admission and continuous batching;
 *   metrics.c    counters, histograms and their Prometheus text.
 *
 * Locking: one mutex (sched->mu) guards the queue, the tenants, every
 * request's state and event list, and the counters. A replica thread drops
 * it while its engine runs a step; the fields of a running request that
 * only its replica thread touches (sampler, detokenizer, stopper) are used
 * without it. */
#ifndef QIAO_SCHEDULER_INTERNAL_H
#define QIAO_SCHEDULER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/status_internal.h"
#include "qiao/scheduler.h"

enum { TENANT_NAME_MAX = 64, RATE_WINDOW_S = 60 };

/* Latency histograms: fixed bucket bounds in seconds. */
enum { HIST_BUCKETS = 14 };
typedef struct qiao__histogram {
  uint64_t counts[HIST_BUCKETS + 1]; /* the last is +Inf */
  double sum;
  uint64_t count;
} qiao__histogram;
void qiao__histogram_add(qiao__histogram *h, const double *bounds, double seconds);
extern const double qiao__ttft_bounds[HIST_BUCKETS];
extern const double qiao__itl_bounds[HIST_BUCKETS];

typedef struct qiao__tenant {
  char name[TENANT_NAME_MAX];
  qiao_tenant_limits limits;
  uint32_t running, queued;
  /* Weighted tokens served (the fair-share counter): prompt tokens
   * computed plus tokens generated, divided by the weight. */
  double served;
  /* Tokens in each of the last RATE_WINDOW_S seconds (a ring by second). */
  uint64_t window[RATE_WINDOW_S];
  int64_t window_second[RATE_WINDOW_S];
  /* Counters for metrics. */
  uint64_t rejected[QIAO_REJECT_COUNT];
  uint64_t finished[5]; /* by qiao_finish */
  uint64_t prompt_tokens, cached_tokens, generated_tokens;
  qiao__histogram ttft, itl;
  struct qiao__tenant *next;
} qiao__tenant;

/* One stored event (its text and alternatives owned by it). */
typedef struct qiao__event {
  qiao_request_event ev;
  char *text;
  int32_t *top_ids;
  float *top_logprobs;
} qiao__event;

typedef enum qiao__state { STATE_QUEUED, STATE_RUNNING, STATE_FINISHED } qiao__state;

struct qiao_request {
  qiao_scheduler *sched;
  qiao__tenant *tenant;
  uint32_t refs; /* the caller's handle and the scheduler's */
  pthread_cond_t cv;

  /* Parameters (immutable after submission). */
  int32_t *prompt;
  uint32_t n_prompt, max_tokens;
  bool ignore_eos, logprobs;
  qiao_logit_bias *bias;
  size_t n_bias;

  /* Used by the running replica's thread only. */
  qiao_sampler *sampler;
  qiao_stopper *stopper;
  qiao_detokenizer *detok;
  bool prompt_seen;              /* the detokenizer has seen the prompt */
  qiao_grammar_matcher *matcher; /* constrained decoding, or NULL */
  uint32_t *mask;                /* ((vocab + 31) / 32) the allowed tokens of this step */

  /* State, under sched->mu. */
  qiao__state state;
  bool cancel;
  int replica;          /* -1 while queued */
  int32_t seq;          /* the engine sequence, -1 when none */
  uint32_t n_computed;  /* prompt positions the sequence holds */
  uint32_t n_cached;    /* of those, from the prefix cache */
  uint32_t n_generated; /* tokens generated */
  int32_t next_input;   /* the last generated token, fed at the next step */
  uint64_t order;       /* submission order (FIFO within a tenant) */
  double t_submit, t_admit, t_first, t_last;
  qiao_finish finish;
  char *error;

  /* Events produced and the next one to hand out. */
  qiao__event *events;
  size_t n_events, cap_events, next_event;
  qiao__event current; /* the one last handed out (owned here until the next call) */

  struct qiao_request *prev, *next; /* the queue, or the replica's running list */
};

typedef struct qiao__replica_state {
  qiao_scheduler *sched;
  size_t index;
  pthread_t thread;
  bool thread_started;
  qiao_request *running; /* a list */
  uint32_t n_running, slots;
  bool out; /* taken out of the pool: admits nothing */
  uint64_t steps, step_tokens;
} qiao__replica_state;

struct qiao_scheduler {
  qiao_pool *pool;
  const qiao_tokenizer *tokenizer;
  qiao_scheduler_options opt;
  uint32_t vocab, max_context;

  pthread_mutex_t mu;
  pthread_cond_t work_cv; /* something to admit, a cancel, or stopping */
  pthread_cond_t idle_cv; /* a request finished (drain waits on it) */
  bool stopping, draining;

  qiao_request *queue_head, *queue_tail;
  uint32_t n_queued, n_running;
  uint64_t next_order;

  qiao__tenant *tenants;
  qiao__tenant *default_tenant;

  qiao__replica_state *replicas;
  size_t n_replicas;

  /* The vocabulary's token trie for constrained decoding, built by the
   * first request with a grammar; immutable afterwards. */
  pthread_mutex_t trie_mu;
  qiao_token_trie *trie;
};

/* Seconds on a monotonic clock. */
double qiao__now(void);

/* tenants.c */
qiao__tenant *qiao__tenant_find(qiao_scheduler *s, const char *name);
qiao_status *qiao__tenant_add(qiao_scheduler *s, const char *name, const qiao_tenant_limits *limits,
                              qiao__tenant **out);
/* Tokens the tenant used in the last minute; *retry_after_s: seconds until
 * the window has room again. */
uint64_t qiao__tenant_window_tokens(qiao__tenant *t, double now, uint32_t *retry_after_s);
/* Counts tokens served to the tenant (fair share and rate window). */
void qiao__tenant_charge(qiao_scheduler *s, qiao__tenant *t, uint64_t tokens, double now);
/* A tenant with nothing queued or running that becomes active starts level
 * with the least served active tenant, so that being idle earns no credit. */
void qiao__tenant_activate(qiao_scheduler *s, qiao__tenant *t);
void qiao__tenants_free(qiao_scheduler *s);

/* scheduler.c: the queue and request lifecycle, under sched->mu. */
void qiao__queue_remove(qiao_scheduler *s, qiao_request *r);
/* Appends an event (copies text and alternatives) and wakes the reader. */
void qiao__request_emit(qiao_request *r, const qiao_request_event *ev);
/* Ends a request: the DONE event (with text still held back), counters,
 * and the scheduler's reference. The caller has released its sequence. */
void qiao__request_finish(qiao_request *r, qiao_finish finish, const char *error, const char *tail,
                          size_t tail_len);
/* Drops one reference, freeing the request at zero. */
void qiao__request_unref(qiao_request *r);

/* replica.c */
void *qiao__replica_main(void *arg);

#endif
