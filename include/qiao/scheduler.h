/* qiao/scheduler.h: many requests of many tenants over a pool of devices.
 *
 * The scheduler keeps one bounded queue of requests and, for each replica of
 * the pool, a thread that runs continuous batching: at every step requests
 * join and leave the running batch, prompts are prefilled in chunks between
 * the decode tokens of running requests, and a prompt that shares a prefix
 * with an earlier one reuses its KV blocks (when the pool keeps a prefix
 * cache). A request goes to the replica that frees a slot first, preferring
 * one that holds its prompt's prefix.
 *
 * Fairness: tenants are served in proportion to their weights by tokens
 * (prompt + generated): a queued request of the tenant that has been served
 * the fewest weighted tokens is admitted first; a tenant that was idle
 * starts level with the least-served active tenant, so idleness earns no
 * credit. Limits (per tenant and in all) make the queue bounded.
 *
 * Each request is a stream of events (qiao_request_next) that ends with one
 * QIAO_EVENT_DONE. With temperature 0 or a fixed seed, and a pool of
 * batch-invariant devices, a request's tokens do not depend on what else is
 * running.
 *
 * Ownership: the scheduler borrows the pool and the tokenizer (for stop
 * strings and text), which must outlive it. A request handle is owned by the
 * caller until qiao_request_destroy (which cancels it if still running).
 * Thread-safety: every function may be called from any thread; one request
 * handle is used by one thread at a time. */
#ifndef QIAO_SCHEDULER_H
#define QIAO_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qiao/grammar.h"
#include "qiao/pool.h"
#include "qiao/sampler.h"
#include "qiao/status.h"
#include "qiao/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qiao_scheduler qiao_scheduler;
typedef struct qiao_request qiao_request;

typedef struct qiao_scheduler_options {
  size_t struct_size;
  uint32_t max_queued;      /* requests waiting, all tenants together; 0 = 64 */
  uint32_t max_step_tokens; /* tokens per engine step (decode + prefill chunks); 0 = 256 */
  uint32_t prefill_chunk;   /* prompt tokens of one request per step; 0 = max_step_tokens */
  /* Default limits of a tenant not configured with qiao_scheduler_add_tenant
   * (requests without a key when keys are not used). */
  uint32_t tenant_max_running; /* 0 = no limit beyond the slots */
  uint32_t tenant_max_queued;  /* 0 = no limit beyond max_queued */
} qiao_scheduler_options;

qiao_scheduler_options qiao_scheduler_default_options(void);

/* Starts one thread per replica. `tokenizer` may not be NULL. */
qiao_status *qiao_scheduler_create(qiao_pool *pool, const qiao_tokenizer *tokenizer,
                                   const qiao_scheduler_options *options,
                                   qiao_scheduler **out_scheduler);
/* Cancels what is queued or running, joins the threads. Accepts NULL. Every
 * request handle must have been destroyed first. */
void qiao_scheduler_destroy(qiao_scheduler *scheduler);

/* A limit that is not set. */
#define QIAO_NO_LIMIT UINT32_MAX

typedef struct qiao_tenant_limits {
  uint32_t max_running; /* requests running at once; 0 or QIAO_NO_LIMIT = no limit */
  /* Requests waiting beyond max_running (or beyond all slots without it): a
   * tenant holds at most max_running + max_queued requests, and 0 means
   * what cannot run at once is refused; QIAO_NO_LIMIT = only the global
   * queue bounds them. */
  uint32_t max_queued;
  uint64_t tokens_per_minute; /* prompt + generated tokens in any 60 s; 0 = no limit */
  uint32_t weight;            /* share of the devices; 0 = 1 */
} qiao_tenant_limits;

/* No limits, weight 1. */
qiao_tenant_limits qiao_tenant_default_limits(void);

/* Declares a tenant (name copied, at most 63 bytes). Fails with
 * QIAO_INVALID_ARGUMENT when the name is empty, too long or already known. */
qiao_status *qiao_scheduler_add_tenant(qiao_scheduler *scheduler, const char *name,
                                       const qiao_tenant_limits *limits);

/* ---- Requests ------------------------------------------------------------ */

typedef struct qiao_logit_bias {
  int32_t token;
  float bias; /* added to the logit; <= -100 bans the token */
} qiao_logit_bias;

typedef struct qiao_request_params {
  size_t struct_size;
  const char *tenant;    /* NULL or "" = "default" */
  const int32_t *prompt; /* (n_prompt) token ids, copied; n_prompt >= 1 */
  size_t n_prompt;
  uint32_t max_tokens; /* 0 = as many as fit the context; larger values are capped to it */
  qiao_sampler_params sampling;
  const char *const *stops; /* (n_stops) stop strings, copied */
  size_t n_stops;
  bool ignore_eos;
  const qiao_logit_bias *logit_bias; /* (n_logit_bias), copied */
  size_t n_logit_bias;
  bool logprobs; /* report the chosen token's logprob (and sampling.n_logprobs alternatives) */
  /* Constrained decoding (may be NULL): only tokens that continue a
   * sentence of the grammar are sampled, and end of sequence only when the
   * sentence is complete. The request takes a reference. The first request
   * with a grammar builds the vocabulary's token trie (once per scheduler). */
  qiao_grammar *grammar;
} qiao_request_params;

/* Why a request was refused at submission. */
typedef enum qiao_reject {
  QIAO_REJECT_NONE = 0,
  QIAO_REJECT_QUEUE_FULL = 1,    /* the global queue is full: HTTP 503 */
  QIAO_REJECT_TENANT_QUEUE = 2,  /* the tenant's queued or running limit: 429 */
  QIAO_REJECT_TENANT_RATE = 3,   /* the tenant's tokens per minute: 429 */
  QIAO_REJECT_TOO_LONG = 4,      /* the prompt does not fit the context: 400 */
  QIAO_REJECT_INVALID = 5,       /* a parameter is wrong (message names it): 400 */
  QIAO_REJECT_NO_DEVICE = 6,     /* every replica is out of the pool: 503 */
  QIAO_REJECT_SHUTTING_DOWN = 7, /* draining: 503 */
  QIAO_REJECT_COUNT = 8
} qiao_reject;

/* A short, stable name for metrics labels: "queue_full", "tenant_rate", ... */
const char *qiao_reject_name(qiao_reject reject);

typedef struct qiao_submit_result {
  qiao_reject reject;
  uint32_t retry_after_s; /* for 429 and 503: when trying again makes sense */
} qiao_submit_result;

/* Queues a request. On refusal returns a status whose message says why
 * (naming the parameter for QIAO_REJECT_INVALID) and fills *out_result;
 * *out_request is written only on success. */
qiao_status *qiao_scheduler_submit(qiao_scheduler *scheduler, const qiao_request_params *params,
                                   qiao_submit_result *out_result, qiao_request **out_request);

typedef enum qiao_event_kind {
  QIAO_EVENT_TOKEN = 1, /* one generated token */
  QIAO_EVENT_DONE = 2   /* the last event of a request */
} qiao_event_kind;

typedef enum qiao_finish {
  QIAO_FINISH_STOP = 1,      /* end of sequence or a stop string */
  QIAO_FINISH_LENGTH = 2,    /* max_tokens or the context */
  QIAO_FINISH_CANCELLED = 3, /* qiao_request_cancel, or the scheduler shut down */
  QIAO_FINISH_ERROR = 4      /* the device failed: error says which and why */
} qiao_finish;

typedef struct qiao_request_event {
  qiao_event_kind kind;
  /* TOKEN: the token, and the text that became safe to show with it (may
   * be empty: bytes of an incomplete character, or text that may begin a
   * stop string, are held back). DONE: text is what was still held back.
   * A stop string and what follows it are never shown. */
  int32_t token;
  const char *text;
  size_t text_len;
  /* TOKEN, when logprobs were asked for. */
  float logprob;
  uint32_t n_top;
  const int32_t *top_ids;
  const float *top_logprobs;
  /* DONE. */
  qiao_finish finish;
  const char *error; /* FINISH_ERROR: names the device and what failed */
  uint32_t prompt_tokens, cached_tokens, completion_tokens;
  double queue_s, ttft_s, total_s; /* waiting, submission to first token, whole request */
  char replica[160];               /* the device spec that served it ("" if none) */
} qiao_request_event;

/* Waits up to timeout_ms (0: do not wait) for the next event. Returns true
 * and fills *out (pointers valid until the next call on this request) when
 * there is one; false when none came in time or the DONE event was already
 * returned. */
bool qiao_request_next(qiao_request *request, uint32_t timeout_ms, qiao_request_event *out);
/* Stops the request: its slot and KV blocks are freed at the next step; a
 * DONE event with QIAO_FINISH_CANCELLED follows. */
void qiao_request_cancel(qiao_request *request);
/* Cancels it if needed and releases the handle. Accepts NULL. */
void qiao_request_destroy(qiao_request *request);

/* ---- Service state --------------------------------------------------------- */

typedef struct qiao_scheduler_health {
  size_t replicas, replicas_ok;
  uint32_t running, queued;
  bool draining;
} qiao_scheduler_health;

void qiao_scheduler_health_get(qiao_scheduler *scheduler, qiao_scheduler_health *out);

/* The metrics in the Prometheus text exposition format (version 0.0.4), in
 * a malloc'd string the caller frees: requests running, queued and rejected
 * by reason, tokens in and out, time to first token and inter-token latency
 * histograms, KV cache use and prefix cache hits per device, per tenant. */
qiao_status *qiao_scheduler_metrics(qiao_scheduler *scheduler, char **out_text, size_t *out_len);

/* Stops admitting (submissions are refused with SHUTTING_DOWN), cancels
 * what is queued, lets running requests finish for up to grace_ms, then
 * cancels them; returns when nothing runs. */
void qiao_scheduler_drain(qiao_scheduler *scheduler, uint32_t grace_ms);

#ifdef __cplusplus
}
#endif
#endif
