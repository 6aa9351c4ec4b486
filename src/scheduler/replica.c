/* One thread per replica: continuous batching.
 *
 * Each turn of the loop, under the scheduler's lock: retire cancelled
 * requests, admit queued ones into free slots (fair order, prefix
 * affinity), and build a step: one token for every request that is
 * decoding, then chunks of the prompts still being prefilled, up to
 * max_step_tokens. Without the lock: the engine runs the step, and each
 * request whose last prompt token or decode token was in it samples its
 * next token. Under the lock again: events, counters, finished requests.
 * So requests join and leave the batch at every step, and a long prompt is
 * prefilled a chunk at a time between the decode steps of the others. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scheduler_internal.h"

/* What one sampled row produced, computed without the lock. */
typedef struct row_result {
  qiao_request *r;
  int32_t token;
  bool is_eos; /* end of sequence: no text, the request stops */
  char *text;  /* malloc'd text now safe to show */
  size_t text_len;
  bool finished; /* the request ends with this row */
  qiao_finish finish;
  char *tail; /* finished: text held back until the end */
  size_t tail_len;
  qiao_logprobs lp;
  int32_t top_ids[64];
  float top_logprobs[64];
  qiao_status *error;
} row_result;

typedef struct step_buffers {
  int32_t *tokens, *seqs, *positions;
  uint8_t *want;
  qiao_request **row_request;   /* (slots) the request of each wanted row */
  qiao_request **chunk_request; /* (slots) requests with prompt tokens in the step */
  uint32_t *chunk_len;
  float *logits; /* (slots, vocab) */
  row_result *rows;
} step_buffers;

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, long ms) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_cond_timedwait(cv, mu, &ts);
}

/* ---- The running list ----------------------------------------------------- */

static void running_append(qiao__replica_state *rs, qiao_request *r) {
  r->prev = NULL;
  r->next = NULL;
  if (rs->running == NULL) {
    rs->running = r;
  } else {
    qiao_request *last = rs->running;
    while (last->next)
      last = last->next;
    last->next = r;
    r->prev = last;
  }
  rs->n_running++;
}

static void running_remove(qiao__replica_state *rs, qiao_request *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    rs->running = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  rs->n_running--;
}

/* Frees the request's sequence (holding the engine's lock). */
static void release_sequence(qiao__replica_state *rs, qiao_request *r) {
  if (r->seq < 0) return;
  qiao_pool_seq_free(rs->sched->pool, rs->index, r->seq);
  r->seq = -1;
}

/* Takes a running request off this replica and ends it. */
static void end_request(qiao__replica_state *rs, qiao_request *r, qiao_finish finish,
                        const char *error, const char *tail, size_t tail_len) {
  running_remove(rs, r);
  release_sequence(rs, r);
  qiao__request_finish(r, finish, error, tail, tail_len);
}

/* ---- Admission ---------------------------------------------------------------- */

/* The oldest queued request of the active tenant served least (by weighted
 * tokens) that may run one more request; NULL when none. */
static qiao_request *pick_fair(qiao_scheduler *s, const qiao_request *after_skipped) {
  qiao__tenant *best = NULL;
  for (qiao__tenant *t = s->tenants; t != NULL; t = t->next) {
    if (t->queued == 0) continue;
    if (t->limits.max_running > 0 && t->running >= t->limits.max_running) continue;
    if (best == NULL || t->served < best->served) best = t;
  }
  if (best == NULL) return NULL;
  bool past = after_skipped == NULL;
  for (qiao_request *r = s->queue_head; r != NULL; r = r->next) {
    if (!past) {
      past = r == after_skipped;
      continue;
    }
    if (r->tenant == best) return r;
  }
  return NULL;
}

/* True when another replica with a free slot holds more of r's prompt in its
 * prefix cache than this one: r is left for it. */
static bool better_elsewhere(qiao__replica_state *rs, qiao_request *r) {
  qiao_scheduler *s = rs->sched;
  if (s->n_replicas < 2) return false;
  uint32_t here = qiao_pool_prefix_cached(s->pool, rs->index, r->prompt, r->n_prompt);
  for (size_t j = 0; j < s->n_replicas; j++) {
    qiao__replica_state *o = &s->replicas[j];
    if (j == rs->index || o->out || o->n_running >= o->slots) continue;
    if (qiao_pool_prefix_cached(s->pool, j, r->prompt, r->n_prompt) > here) return true;
  }
  return false;
}

static void admit(qiao__replica_state *rs) {
  qiao_scheduler *s = rs->sched;
  const qiao_request *skipped = NULL;
  while (rs->n_running < rs->slots && !rs->out && !s->stopping) {
    qiao_request *r = pick_fair(s, skipped);
    if (r == NULL) return;
    if (better_elsewhere(rs, r)) {
      pthread_cond_broadcast(&s->work_cv);
      skipped = r;
      continue;
    }
    int32_t seq = -1;
    uint32_t cached = 0;
    qiao_status *st =
        qiao_pool_seq_create(s->pool, rs->index, r->prompt, r->n_prompt, &seq, &cached);
    if (st != NULL) { /* out of the pool since this turn began: the step will say so */
      qiao_status_free(st);
      return;
    }
    qiao__queue_remove(s, r);
    r->state = STATE_RUNNING;
    r->replica = (int)rs->index;
    r->seq = seq;
    r->n_computed = cached;
    r->n_cached = cached;
    r->t_admit = qiao__now();
    r->tenant->running++;
    r->tenant->cached_tokens += cached;
    s->n_running++;
    running_append(rs, r);
  }
}

/* ---- Sampling one row (without the lock) ---------------------------------------- */

static char *copy_text(const char *text, size_t len) {
  char *c = malloc(len + 1);
  if (c == NULL) return NULL;
  if (len) memcpy(c, text, len);
  c[len] = '\0';
  return c;
}

/* The text held back at the end: the detokenizer's unfinished bytes, then
 * what the stopper still holds (unless a stop string ended it). */
static void take_tail(qiao_request *r, row_result *out) {
  const char *text = NULL;
  size_t len = 0;
  bool stopped = false;
  qiao_status *st = qiao_detokenizer_flush(r->detok, &text, &len);
  if (st == NULL) st = qiao_stopper_push(r->stopper, text, len, &text, &len, &stopped);
  char *part = st == NULL ? copy_text(text, len) : NULL;
  size_t part_len = part ? len : 0;
  if (st == NULL && !stopped) {
    qiao_stopper_flush(r->stopper, &text, &len);
    char *joined = malloc(part_len + len + 1);
    if (joined != NULL) {
      if (part_len) memcpy(joined, part, part_len);
      if (len) memcpy(joined + part_len, text, len);
      joined[part_len + len] = '\0';
      free(part);
      part = joined;
      part_len += len;
    }
  }
  qiao_status_free(st);
  out->tail = part;
  out->tail_len = part ? part_len : 0;
}

/* The tokens the request's grammar allows now, over the model's vocabulary
 * (which may be larger than the tokenizer's: the extra ids are never
 * allowed). */
static qiao_status *grammar_mask(qiao_scheduler *s, qiao_request *r, const uint32_t **out) {
  const uint32_t *m = NULL;
  QIAO__TRY(qiao__annotate(qiao_grammar_matcher_mask(r->matcher, &m), "grammar"));
  uint32_t tv = qiao_token_trie_vocab_size(s->trie), n = tv < s->vocab ? tv : s->vocab;
  uint32_t words = (s->vocab + 31) / 32, full = n / 32;
  memcpy(r->mask, m, full * sizeof(uint32_t));
  memset(r->mask + full, 0, (words - full) * sizeof(uint32_t));
  if (n % 32) r->mask[full] = m[full] & ((1u << (n % 32)) - 1);
  *out = r->mask;
  return NULL;
}

static void sample_row(qiao_scheduler *s, qiao_request *r, float *logits, row_result *out) {
  memset(out, 0, sizeof(*out));
  out->r = r;
  for (size_t i = 0; i < r->n_bias; i++) /* ids were checked at submission */
    logits[r->bias[i].token] =
        r->bias[i].bias <= -100.0f ? -INFINITY : logits[r->bias[i].token] + r->bias[i].bias;
  qiao_logprobs lp;
  memset(&lp, 0, sizeof(lp));
  const uint32_t *allowed = NULL;
  if (r->matcher != NULL) {
    out->error = grammar_mask(s, r, &allowed);
    if (out->error != NULL) return;
  }
  out->error = qiao_sampler_sample_masked(r->sampler, logits, allowed, &out->token,
                                          r->logprobs ? &lp : NULL);
  if (out->error == NULL && r->matcher != NULL)
    out->error =
        qiao__annotate(qiao_grammar_matcher_accept_token(r->matcher, out->token), "grammar");
  if (out->error != NULL) return;
  if (r->logprobs) {
    out->lp.chosen = lp.chosen;
    out->lp.n_top = lp.n_top > 64 ? 64 : lp.n_top;
    memcpy(out->top_ids, lp.top_ids, out->lp.n_top * sizeof(int32_t));
    memcpy(out->top_logprobs, lp.top_logprobs, out->lp.n_top * sizeof(float));
  }
  if (!r->prompt_seen) { /* the detokenizer sees the prompt first (its text is not shown) */
    const char *t;
    size_t l;
    for (uint32_t i = 0; i < r->n_prompt && out->error == NULL; i++)
      out->error = qiao_detokenizer_push(r->detok, r->prompt[i], &t, &l);
    r->prompt_seen = true;
    if (out->error != NULL) return;
  }
  uint32_t generated = r->n_generated + 1; /* counting this one */
  /* Under a grammar, an end token was accepted only where the output is
   * complete: it ends the request even with ignore_eos. */
  bool grammar_end = r->matcher != NULL && qiao_grammar_matcher_ended(r->matcher);
  if ((!r->ignore_eos || grammar_end) && qiao_tokenizer_is_eos(s->tokenizer, out->token)) {
    out->is_eos = true;
    out->finished = true;
    out->finish = QIAO_FINISH_STOP;
    take_tail(r, out);
    return;
  }
  qiao_sampler_accept(r->sampler, out->token);
  const char *text = NULL;
  size_t len = 0;
  bool stopped = false;
  out->error = qiao_detokenizer_push(r->detok, out->token, &text, &len);
  if (out->error == NULL)
    out->error = qiao_stopper_push(r->stopper, text, len, &text, &len, &stopped);
  if (out->error != NULL) return;
  out->text = copy_text(text, len);
  out->text_len = out->text ? len : 0;
  if (stopped) {
    out->finished = true;
    out->finish = QIAO_FINISH_STOP;
  } else if (generated >= r->max_tokens || r->n_prompt + generated >= s->max_context) {
    out->finished = true;
    out->finish = QIAO_FINISH_LENGTH;
    take_tail(r, out);
  }
}

/* ---- The loop ------------------------------------------------------------------ */

static void fail_running(qiao__replica_state *rs, const char *message) {
  while (rs->running != NULL)
    end_request(rs, rs->running, QIAO_FINISH_ERROR, message, NULL, 0);
}

/* After this replica left the pool: if none is left, what waits cannot run. */
static void fail_queue_if_no_device(qiao_scheduler *s) {
  for (size_t i = 0; i < s->n_replicas; i++)
    if (!s->replicas[i].out) return;
  while (s->queue_head != NULL) {
    qiao_request *r = s->queue_head;
    qiao__queue_remove(s, r);
    qiao__request_finish(r, QIAO_FINISH_ERROR, "no device is left in the pool", NULL, 0);
  }
}

static qiao_status *buffers_alloc(qiao_scheduler *s, uint32_t slots, step_buffers *b) {
  size_t T = s->opt.max_step_tokens + slots;
  b->tokens = malloc(T * sizeof(int32_t));
  b->seqs = malloc(T * sizeof(int32_t));
  b->positions = malloc(T * sizeof(int32_t));
  b->want = malloc(T);
  b->row_request = malloc(slots * sizeof(*b->row_request));
  b->chunk_request = malloc(slots * sizeof(*b->chunk_request));
  b->chunk_len = malloc(slots * sizeof(*b->chunk_len));
  b->rows = malloc(slots * sizeof(*b->rows));
  b->logits = (size_t)slots <= SIZE_MAX / sizeof(float) / s->vocab
                  ? malloc((size_t)slots * s->vocab * sizeof(float))
                  : NULL;
  if (!b->tokens || !b->seqs || !b->positions || !b->want || !b->row_request || !b->chunk_request ||
      !b->chunk_len || !b->rows || !b->logits)
    return qiao__error(QIAO_OUT_OF_MEMORY, "scheduler: no memory for step buffers");
  return NULL;
}

static void buffers_free(step_buffers *b) {
  free(b->tokens);
  free(b->seqs);
  free(b->positions);
  free(b->want);
  free(b->row_request);
  free(b->chunk_request);
  free(b->chunk_len);
  free(b->rows);
  free(b->logits);
}

/* Builds the step from the running requests; returns its token count and
 * the counts of wanted rows and prefill chunks. */
static uint32_t build_step(qiao__replica_state *rs, step_buffers *b, uint32_t *n_rows,
                           uint32_t *n_chunks) {
  qiao_scheduler *s = rs->sched;
  uint32_t n = 0, rows = 0, chunks = 0;
  /* Decode tokens first: running streams keep their pace. */
  for (qiao_request *r = rs->running; r != NULL; r = r->next) {
    if (r->n_computed < r->n_prompt || r->n_generated == 0) continue;
    b->tokens[n] = r->next_input;
    b->seqs[n] = r->seq;
    b->positions[n] = (int32_t)(r->n_prompt + r->n_generated - 1);
    b->want[n] = 1;
    b->row_request[rows++] = r;
    n++;
  }
  /* Then prompt chunks, in admission order, within the step's budget. */
  for (qiao_request *r = rs->running; r != NULL; r = r->next) {
    if (r->n_computed >= r->n_prompt) continue;
    uint32_t budget = s->opt.max_step_tokens > n ? s->opt.max_step_tokens - n : 0;
    if (budget == 0) break;
    uint32_t chunk = r->n_prompt - r->n_computed;
    if (chunk > s->opt.prefill_chunk) chunk = s->opt.prefill_chunk;
    if (chunk > budget) chunk = budget;
    for (uint32_t i = 0; i < chunk; i++) {
      uint32_t pos = r->n_computed + i;
      b->tokens[n] = r->prompt[pos];
      b->seqs[n] = r->seq;
      b->positions[n] = (int32_t)pos;
      b->want[n] = pos + 1 == r->n_prompt;
      if (b->want[n]) b->row_request[rows++] = r;
      n++;
    }
    b->chunk_request[chunks] = r;
    b->chunk_len[chunks++] = chunk;
  }
  *n_rows = rows;
  *n_chunks = chunks;
  return n;
}

/* Applies a sampled row under the lock: events, counters, the end. */
static void apply_row(qiao__replica_state *rs, row_result *res, double now) {
  qiao_scheduler *s = rs->sched;
  qiao_request *r = res->r;
  if (res->error != NULL) {
    end_request(rs, r, QIAO_FINISH_ERROR, qiao_status_message(res->error), NULL, 0);
    return;
  }
  r->n_generated++;
  r->next_input = res->token;
  qiao__tenant_charge(s, r->tenant, 1, now);
  r->tenant->generated_tokens++;
  if (r->t_first == 0) {
    r->t_first = now;
    qiao__histogram_add(&r->tenant->ttft, qiao__ttft_bounds, now - r->t_submit);
  } else {
    qiao__histogram_add(&r->tenant->itl, qiao__itl_bounds, now - r->t_last);
  }
  r->t_last = now;
  if (!res->is_eos && !r->cancel) {
    qiao_request_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.kind = QIAO_EVENT_TOKEN;
    ev.token = res->token;
    ev.text = res->text ? res->text : "";
    ev.text_len = res->text_len;
    ev.logprob = res->lp.chosen;
    ev.n_top = res->lp.n_top;
    ev.top_ids = res->top_ids;
    ev.top_logprobs = res->top_logprobs;
    qiao__request_emit(r, &ev);
  }
  if (res->finished) end_request(rs, r, res->finish, NULL, res->tail, res->tail_len);
}

static void row_free(row_result *res) {
  free(res->text);
  free(res->tail);
  qiao_status_free(res->error);
}

/* A replica the pool took out meanwhile (with another whose devices it
 * shares, see qiao_pool_options.shared_fate) leaves the service too: its
 * requests fail with the pool's reason. Called with s->mu held. */
static bool taken_out_by_pool(qiao__replica_state *rs) {
  qiao_pool_replica_info info;
  qiao_pool_replica_info_get(rs->sched->pool, rs->index, &info);
  if (info.ok) return false;
  char message[512];
  snprintf(message, sizeof(message), "device %s failed: %s", info.spec, info.failure);
  rs->out = true;
  fail_running(rs, message);
  fail_queue_if_no_device(rs->sched);
  return true;
}

void *qiao__replica_main(void *arg) {
  qiao__replica_state *rs = arg;
  qiao_scheduler *s = rs->sched;
  step_buffers b;
  memset(&b, 0, sizeof(b));
  qiao_status *alloc = buffers_alloc(s, rs->slots, &b);
  pthread_mutex_lock(&s->mu);
  if (alloc != NULL) { /* this replica cannot run: it leaves the pool's service */
    fprintf(stderr, "scheduler: replica %zu: %s\n", rs->index, qiao_status_message(alloc));
    qiao_status_free(alloc);
    rs->out = true;
    fail_queue_if_no_device(s);
  }
  while (!rs->out) {
    if (s->stopping) {
      while (rs->running != NULL)
        end_request(rs, rs->running, QIAO_FINISH_CANCELLED, NULL, NULL, 0);
      break;
    }
    if (taken_out_by_pool(rs)) break;
    for (qiao_request *r = rs->running, *next; r != NULL; r = next) {
      next = r->next;
      if (r->cancel) end_request(rs, r, QIAO_FINISH_CANCELLED, NULL, NULL, 0);
    }
    if (!s->draining) admit(rs);
    if (rs->n_running == 0) {
      timed_wait(&s->work_cv, &s->mu, 250);
      continue;
    }
    uint32_t n_rows = 0, n_chunks = 0;
    uint32_t n = build_step(rs, &b, &n_rows, &n_chunks);
    pthread_mutex_unlock(&s->mu);

    /* The step, without the scheduler's lock. */
    qiao_batch batch = {.n_tokens = n,
                        .tokens = b.tokens,
                        .seqs = b.seqs,
                        .positions = b.positions,
                        .want = b.want};
    bool out = false;
    qiao_status *st = qiao_pool_forward(s->pool, rs->index, &batch, b.logits, &out);
    if (st == NULL)
      for (uint32_t i = 0; i < n_rows; i++)
        sample_row(s, b.row_request[i], b.logits + (size_t)i * s->vocab, &b.rows[i]);

    pthread_mutex_lock(&s->mu);
    rs->steps++;
    rs->step_tokens += n;
    if (st != NULL) {
      char message[512];
      qiao_pool_replica_info info;
      qiao_pool_replica_info_get(s->pool, rs->index, &info);
      snprintf(message, sizeof(message), "device %s failed: %s", info.spec,
               qiao_status_message(st));
      if (out) {
        rs->out = true;
        fail_running(rs, message);
        fail_queue_if_no_device(s);
      } else if (qiao_status_code(st) == QIAO_LIMIT && n_chunks > 0) {
        /* The KV cache is full: the last admitted prompt gives way. */
        end_request(rs, b.chunk_request[n_chunks - 1], QIAO_FINISH_ERROR, message, NULL, 0);
      }
      qiao_status_free(st);
      continue; /* a transient failure: the step is tried again */
    }
    double now = qiao__now();
    for (uint32_t c = 0; c < n_chunks; c++) {
      qiao_request *r = b.chunk_request[c];
      r->n_computed += b.chunk_len[c];
      qiao__tenant_charge(s, r->tenant, b.chunk_len[c], now);
      r->tenant->prompt_tokens += b.chunk_len[c];
    }
    for (uint32_t i = 0; i < n_rows; i++) {
      apply_row(rs, &b.rows[i], now);
      row_free(&b.rows[i]);
    }
  }
  pthread_mutex_unlock(&s->mu);
  buffers_free(&b);
  return NULL;
}
