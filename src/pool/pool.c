/* The device pool: one engine (replica) per device spec, each with its own
 * health. The replica's thread (the scheduler's) is the only one that runs
 * its engine; other threads see a snapshot of its state taken after each
 * step, and may look up its prefix cache only when the replica is between
 * steps (a try-lock, so routing never waits for a step to end). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status_internal.h"
#include "qiao/pool.h"

/* Consecutive failed steps after which a replica is taken out. */
enum { MAX_CONSECUTIVE_FAILURES = 3 };

typedef struct replica {
  qiao_engine *engine;
  /* Held around every engine call (the replica's thread makes them);
   * tried by other threads for prefix lookups. */
  pthread_mutex_t engine_mu;
  uint32_t consecutive_failures;
  /* Guarded by the pool's mutex. */
  qiao_pool_replica_info info;
} replica;

struct qiao_pool {
  const qiao_model *model;
  pthread_mutex_t mu;
  replica *replicas;
  size_t n;
  qiao_hparams hp;
  uint32_t max_context;
  bool shared_fate; /* options.shared_fate */
};

qiao_pool_options qiao_pool_default_options(void) {
  qiao_pool_options o;
  memset(&o, 0, sizeof(o));
  o.struct_size = sizeof(o);
  return o;
}

/* "opencl:1" -> ("opencl", 1); a trailing ":DIGITS" is the device index, so
 * plugin paths that contain ':' elsewhere still work. */
static qiao_status *parse_spec(const char *spec, char *backend, size_t cap, uint32_t *index) {
  size_t len = strlen(spec);
  if (len == 0) return qiao__error(QIAO_INVALID_ARGUMENT, "device spec: empty");
  if (len >= cap)
    return qiao__error(QIAO_INVALID_ARGUMENT, "device spec '%.40s...': too long", spec);
  const char *colon = strrchr(spec, ':');
  *index = 0;
  size_t name_len = len;
  if (colon != NULL && colon[1] != '\0' && strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
    if (strlen(colon + 1) > 6)
      return qiao__error(QIAO_INVALID_ARGUMENT, "device spec '%s': index too large", spec);
    *index = (uint32_t)strtoul(colon + 1, NULL, 10);
    name_len = (size_t)(colon - spec);
  }
  if (name_len == 0)
    return qiao__error(QIAO_INVALID_ARGUMENT, "device spec '%s': no backend", spec);
  memcpy(backend, spec, name_len);
  backend[name_len] = '\0';
  return NULL;
}

static void refresh_info_locked(replica *r) {
  if (r->engine == NULL) return;
  qiao_engine_cache_stats cs;
  memset(&cs, 0, sizeof(cs));
  cs.struct_size = sizeof(cs);
  qiao_engine_cache_stats_get(r->engine, &cs);
  r->info.kv_blocks = cs.n_blocks;
  r->info.kv_blocks_used = cs.used_blocks;
  r->info.kv_blocks_cached = cs.cached_blocks;
  r->info.kv_block_size = cs.block_size;
  r->info.prefix_hit_tokens = cs.hit_tokens;
}

static qiao_status *open_replica(qiao_pool *p, const char *spec, const qiao_pool_options *o,
                                 void *external_user, replica *r) {
  char backend[sizeof(r->info.spec)];
  uint32_t index = 0;
  qiao_engine_options eo = qiao_engine_default_options();
  if (strchr(spec, ',') != NULL) { /* one replica across several devices */
    eo.split = spec;
    eo.split_by = o->split_by;
    eo.external = o->external;
    eo.external_user = external_user;
  } else {
    QIAO__TRY(parse_spec(spec, backend, sizeof(backend), &index));
    eo.backend = backend;
    eo.device_index = index;
  }
  eo.n_threads = o->n_threads;
  eo.max_seqs = o->slots ? o->slots : 8;
  eo.max_context = o->max_context;
  eo.n_blocks = o->kv_blocks;
  eo.batch_invariant = o->batch_invariant;
  eo.prefix_cache = o->prefix_cache;
  eo.exact_matmul = o->exact_matmul;
  eo.verbose = o->verbose;
  if (eo.n_blocks == 0) {
    /* Enough for every slot's full context, so admission never has to
     * wait for blocks; 16 positions a block (the engine's default). */
    uint32_t ctx =
        o->max_context
            ? o->max_context
            : (p->hp.context_length && p->hp.context_length < 4096 ? p->hp.context_length : 4096);
    uint64_t blocks = ((uint64_t)ctx + 15) / 16 * eo.max_seqs;
    if (blocks > UINT32_MAX) blocks = UINT32_MAX;
    eo.n_blocks = (uint32_t)blocks;
  }
  qiao_status *st = qiao_engine_create(p->model, &eo, &r->engine);
  if (st != NULL) return qiao__annotate(st, "device %s", spec);
  snprintf(r->info.spec, sizeof(r->info.spec), "%s", spec);
  snprintf(r->info.device, sizeof(r->info.device), "%s", qiao_engine_device_name(r->engine));
  r->info.ok = true;
  r->info.slots = eo.max_seqs;
  refresh_info_locked(r);
  return NULL;
}

qiao_status *qiao_pool_create(const qiao_model *model, const char *const *specs, size_t n,
                              const qiao_pool_options *options, qiao_pool **out_pool) {
  if (model == NULL || out_pool == NULL || (n > 0 && specs == NULL))
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_pool_create: NULL argument");
  if (n == 0) return qiao__error(QIAO_INVALID_ARGUMENT, "pool: no device given");
  if (n > 64) return qiao__error(QIAO_LIMIT, "pool: %zu devices (at most 64)", n);
  qiao_pool_options o = qiao_pool_default_options();
  if (options != NULL)
    memcpy(&o, options, options->struct_size < sizeof(o) ? options->struct_size : sizeof(o));
  qiao_pool *p = calloc(1, sizeof(*p));
  if (p == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "pool: out of memory");
  p->model = model;
  p->shared_fate = o.shared_fate;
  pthread_mutex_init(&p->mu, NULL);
  p->replicas = calloc(n, sizeof(*p->replicas));
  qiao_status *st = p->replicas ? qiao_model_get_hparams(model, &p->hp)
                                : qiao__error(QIAO_OUT_OF_MEMORY, "pool: out of memory");
  for (size_t i = 0; st == NULL && i < n; i++) {
    pthread_mutex_init(&p->replicas[i].engine_mu, NULL);
    p->n = i + 1;
    if (o.verbose) fprintf(stderr, "pool: opening %s (%zu of %zu)\n", specs[i], i + 1, n);
    void *external_user = o.external_users ? o.external_users[i] : o.external_user;
    st = open_replica(p, specs[i], &o, external_user, &p->replicas[i]);
  }
  if (st != NULL) {
    qiao_pool_destroy(p);
    return st;
  }
  p->max_context = qiao_engine_max_context(p->replicas[0].engine);
  for (size_t i = 1; i < n; i++)
    if (qiao_engine_max_context(p->replicas[i].engine) < p->max_context)
      p->max_context = qiao_engine_max_context(p->replicas[i].engine);
  *out_pool = p;
  return NULL;
}

void qiao_pool_destroy(qiao_pool *p) {
  if (p == NULL) return;
  for (size_t i = 0; i < p->n; i++) {
    qiao_engine_destroy(p->replicas[i].engine);
    pthread_mutex_destroy(&p->replicas[i].engine_mu);
  }
  free(p->replicas);
  pthread_mutex_destroy(&p->mu);
  free(p);
}

size_t qiao_pool_size(const qiao_pool *p) {
  return p->n;
}
const qiao_hparams *qiao_pool_hparams(const qiao_pool *p) {
  return &p->hp;
}
uint32_t qiao_pool_max_context(const qiao_pool *p) {
  return p->max_context;
}

void qiao_pool_replica_info_get(qiao_pool *p, size_t i, qiao_pool_replica_info *out) {
  memset(out, 0, sizeof(*out));
  if (i >= p->n) return;
  pthread_mutex_lock(&p->mu);
  *out = p->replicas[i].info;
  pthread_mutex_unlock(&p->mu);
}

/* The replica's engine, or NULL once it is out. */
static qiao_engine *live_engine(qiao_pool *p, size_t i) {
  pthread_mutex_lock(&p->mu);
  qiao_engine *e = p->replicas[i].info.ok ? p->replicas[i].engine : NULL;
  pthread_mutex_unlock(&p->mu);
  return e;
}

static void refresh(qiao_pool *p, size_t i) {
  pthread_mutex_lock(&p->mu);
  refresh_info_locked(&p->replicas[i]);
  pthread_mutex_unlock(&p->mu);
}

static qiao_status *out_of_pool(qiao_pool *p, size_t i) {
  if (i >= p->n) return qiao__error(QIAO_INVALID_ARGUMENT, "pool: no replica %zu", i);
  return qiao__error(QIAO_DEVICE, "device %s is out of the pool", p->replicas[i].info.spec);
}

qiao_status *qiao_pool_seq_create(qiao_pool *p, size_t i, const int32_t *tokens, size_t n,
                                  int32_t *out_seq, uint32_t *out_cached) {
  qiao_engine *e = i < p->n ? live_engine(p, i) : NULL;
  if (e == NULL) return out_of_pool(p, i);
  replica *r = &p->replicas[i];
  pthread_mutex_lock(&r->engine_mu);
  qiao_status *st = qiao_engine_seq_create_cached(e, tokens, n, out_seq, out_cached);
  refresh(p, i);
  pthread_mutex_unlock(&r->engine_mu);
  return st;
}

void qiao_pool_seq_free(qiao_pool *p, size_t i, int32_t seq) {
  if (i >= p->n) return;
  replica *r = &p->replicas[i];
  pthread_mutex_lock(&r->engine_mu);
  qiao_engine_seq_free(r->engine, seq); /* host bookkeeping: fine after a device loss */
  refresh(p, i);
  pthread_mutex_unlock(&r->engine_mu);
}

uint32_t qiao_pool_prefix_cached(qiao_pool *p, size_t i, const int32_t *tokens, size_t n) {
  if (i >= p->n || live_engine(p, i) == NULL) return 0;
  replica *r = &p->replicas[i];
  if (pthread_mutex_trylock(&r->engine_mu) != 0) return 0; /* mid-step: no answer */
  uint32_t cached = qiao_engine_prefix_cached(r->engine, tokens, n);
  pthread_mutex_unlock(&r->engine_mu);
  return cached;
}

/* Takes replica i out for good (the caller holds p->mu), and with
 * shared_fate every other replica too, with the same failure. */
static void take_out_locked(qiao_pool *p, size_t i, const char *failure) {
  for (size_t j = 0; j < p->n; j++) {
    if ((j != i && !p->shared_fate) || !p->replicas[j].info.ok) continue;
    p->replicas[j].info.ok = false; /* with shared_fate: its devices are this one's */
    snprintf(p->replicas[j].info.failure, sizeof(p->replicas[j].info.failure), "%s", failure);
  }
}

/* Counts a step's outcome; returns true when it takes the replica out. */
static bool report(qiao_pool *p, size_t i, const qiao_status *step_status) {
  replica *r = &p->replicas[i];
  pthread_mutex_lock(&p->mu);
  bool out = false;
  if (r->info.ok) {
    if (step_status == NULL) {
      r->consecutive_failures = 0;
    } else {
      r->consecutive_failures++;
      bool lost = qiao_engine_device_lost(r->engine);
      if (lost || r->consecutive_failures >= MAX_CONSECUTIVE_FAILURES) {
        char failure[sizeof(r->info.failure)];
        snprintf(
            failure, sizeof(failure), "%s%s",
            lost ? "device lost: " : "failed 3 steps in a row: ", qiao_status_message(step_status));
        take_out_locked(p, i, failure);
        out = true;
      }
    }
    refresh_info_locked(r);
  }
  pthread_mutex_unlock(&p->mu);
  return out;
}

void qiao_pool_take_out(qiao_pool *p, size_t i, const char *why) {
  if (p == NULL || i >= p->n) return;
  pthread_mutex_lock(&p->mu);
  if (p->replicas[i].info.ok) take_out_locked(p, i, why ? why : "taken out");
  pthread_mutex_unlock(&p->mu);
}

qiao_status *qiao_pool_forward(qiao_pool *p, size_t i, const qiao_batch *batch, float *out_logits,
                               bool *out_taken_out) {
  *out_taken_out = false;
  qiao_engine *e = i < p->n ? live_engine(p, i) : NULL;
  if (e == NULL) return out_of_pool(p, i);
  replica *r = &p->replicas[i];
  pthread_mutex_lock(&r->engine_mu);
  qiao_status *st = qiao_engine_forward(e, batch, out_logits, NULL);
  *out_taken_out = report(p, i, st);
  pthread_mutex_unlock(&r->engine_mu);
  return st;
}
