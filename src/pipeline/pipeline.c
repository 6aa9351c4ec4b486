/* Pipeline stages over MPI (see pipeline.h). */
#include "pipeline/pipeline.h"

#include <mpi.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "core/status_internal.h"

/* Tags: every pass header goes on TAG_PASS (one ordered stream from rank 0
 * to each rank); a channel's x and reply go on their own tags, so passes of
 * several channels in flight never mix. */
enum { TAG_PASS = 1, TAG_PONG = 2, TAG_X_BASE = 100, TAG_REPLY_BASE = 200 };
/* CMD_PING (the idle heartbeat): a header alone, answered on TAG_PONG with
 * the ping's number (its channel field). */
enum { CMD_STOP = 0, CMD_PASS = 1, CMD_PING = 2 };
/* A pass message: {cmd, T, n_seqs, max_blocks_per_seq, channel, n_copies},
 * then positions, slots and token_seq (T each), the block table, then the
 * KV block copies (n_copies pairs, see qiao_engine_pass.copies). */
#define HEADER_INTS 6
#define MESSAGE_BYTES 256
#define STATUS_INTS (1 + MESSAGE_BYTES / 4)
#define MAX_DEPTH 16

/* One engine's line to the other ranks. Rank 0 has one per replica (the
 * pipeline's depth); each is used by one thread at a time (its replica's),
 * and the other ranks hold one engine per channel, so the KV cache of a
 * replica on rank 0 and of its layers elsewhere stay paired. */
typedef struct channel {
  qiao_pipeline *p;
  uint32_t id;
  int32_t *meta; /* the pass message, sent (rank 0) or received */
  size_t meta_ints;
  float *buf, *back; /* x sent / received (rank 0: separate, both in flight) */
  size_t buf_floats;
  int32_t status[STATUS_INTS];
  /* How long the last wait took (see nap): rank 0, a pass's answer on this
   * channel; other ranks (channel 0), the next pass. */
  double expect_s;
} channel;

struct qiao_pipeline {
  int rank, size;
  uint32_t dim, n_layers;
  uint32_t *first, *end; /* rank r's layers: [first[r], end[r]) (see balance) */
  uint32_t depth;        /* channels (rank 0's replicas in flight at once); 1 = a relay */
  char split[4096];
  double timeout_s;
  channel channels[MAX_DEPTH];
  /* Rank 0: its replicas' threads call MPI one at a time (the library is
   * initialized MPI_THREAD_SERIALIZED) under this lock, which also guards
   * lost_rank. */
  pthread_mutex_t lock;
  /* Rank 0: once a rank failed to answer, every later pass fails at once
   * (its buffers may still be in MPI's hands, so they are never reused). */
  int lost_rank;
  char lost_why[256];
  /* Rank 0 (serve): the idle heartbeat. passes_in_flight and last_pass
   * (when the last one ended) are guarded by lock; stop_heartbeat too. */
  double heartbeat_s;
  uint32_t passes_in_flight;
  struct timespec last_pass;
  bool heartbeat_running, stop_heartbeat;
  pthread_t heartbeat;
  void (*on_lost)(void *user, const char *why);
  void *on_lost_user;
  int32_t ping[HEADER_INTS], pong; /* never reused once a ping failed */
};

static qiao_status *mpi_error(int code, const char *what) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
    snprintf(text, sizeof(text), "code %d", code);
  return qiao__error(QIAO_IO, "MPI %s: %s", what, text);
}

#define MPI_TRY(call, what)                                                                        \
  do {                                                                                             \
    int mpi_rc_ = (call);                                                                          \
    if (mpi_rc_ != MPI_SUCCESS) return mpi_error(mpi_rc_, what);                                   \
  } while (0)

qiao_status *qiao__pipeline_open(int *argc, char ***argv, qiao_pipeline **out) {
  int initialized = 0, provided = 0;
  MPI_Initialized(&initialized);
  /* serve calls MPI from its replica thread and, at the end, from main:
   * one at a time. */
  if (!initialized)
    MPI_TRY(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "init");
  else
    MPI_Query_thread(&provided);
  /* Errors come back as codes (a dead peer must not kill rank 0 silently). */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  qiao_pipeline *p = calloc(1, sizeof(*p));
  if (p == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "pipeline: out of memory");
  MPI_Comm_rank(MPI_COMM_WORLD, &p->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &p->size);
  p->lost_rank = -1;
  p->depth = 1;
  for (uint32_t i = 0; i < MAX_DEPTH; i++) {
    p->channels[i].p = p;
    p->channels[i].id = i;
  }
  pthread_mutex_init(&p->lock, NULL);
  const char *t = getenv("QIAO_MPI_TIMEOUT_S");
  p->timeout_s = t && atof(t) > 0 ? atof(t) : 120;
  const char *h = getenv("QIAO_MPI_HEARTBEAT_S");
  char *h_end = NULL;
  p->heartbeat_s = h && h[0] != '\0' ? strtod(h, &h_end) : 5; /* 0: off */
  bool bad_heartbeat =
      h_end != NULL && (*h_end != '\0' || !(p->heartbeat_s >= 0) || p->heartbeat_s > 86400);
  clock_gettime(CLOCK_MONOTONIC, &p->last_pass);
  const char *refusal = NULL;
  if (p->size < 2)
    refusal = "--mpi: 1 rank; start at least 2 with mpirun -np N (each runs a share of the layers)";
  else if (provided < MPI_THREAD_SERIALIZED)
    refusal = "--mpi: this MPI library does not support MPI_THREAD_SERIALIZED";
  else if (bad_heartbeat)
    refusal = "QIAO_MPI_HEARTBEAT_S: not a number of seconds in [0, 86400] (0: no heartbeat)";
  if (refusal != NULL) {
    pthread_mutex_destroy(&p->lock);
    free(p);
    MPI_Finalize();
    return qiao__error(QIAO_INVALID_ARGUMENT, "%s", refusal);
  }
  *out = p;
  return NULL;
}

int qiao__pipeline_rank(const qiao_pipeline *p) {
  return p->rank;
}
int qiao__pipeline_size(const qiao_pipeline *p) {
  return p->size;
}

qiao_status *qiao__pipeline_set_depth(qiao_pipeline *p, uint32_t depth) {
  if (depth < 1 || depth > MAX_DEPTH)
    return qiao__error(QIAO_INVALID_ARGUMENT, "--mpi-depth %u: not in [1, %d]", depth, MAX_DEPTH);
  p->depth = depth;
  return NULL;
}

uint32_t qiao__pipeline_depth(const qiao_pipeline *p) {
  return p->depth;
}

void *qiao__pipeline_channel(qiao_pipeline *p, uint32_t i) {
  return i < p->depth ? &p->channels[i] : NULL;
}

/* Whether the layers fit into ranks of at most `cap` bytes each, rank 0
 * also carrying `head`; then end[r] is where rank r's layers end. Greedy:
 * each rank takes as many layers as fit, leaving one for each later rank
 * (for one cap, taking more never makes a later rank's share larger). */
static bool fits(const uint64_t *cost, uint32_t n, int size, uint64_t head, uint64_t cap,
                 uint32_t *end) {
  uint32_t l = 0;
  for (int r = 0; r < size; r++) {
    const uint32_t leave = (uint32_t)(size - 1 - r);
    uint64_t acc = (r == 0 ? head : 0) + cost[l++];
    while (l < n - leave && (r == size - 1 || acc + cost[l] <= cap))
      acc += cost[l++];
    if (acc > cap) return false;
    end[r] = l;
  }
  return true;
}

/* Each rank's layers: consecutive, in rank order, balanced by the bytes of
 * weights each reads per pass: its layers' tensors and, on rank 0, which
 * runs the embedding and the output, the output matrix too (a small model's
 * output is a large share: Qwen2.5-0.5B's is 28%). The split with the
 * smallest largest share, one layer or more each. */
static qiao_status *balance(qiao_pipeline *p, const qiao_model *model) {
  const uint32_t n = p->n_layers;
  const int size = p->size;
  uint64_t *cost = calloc(n, sizeof(*cost));
  uint32_t *first = calloc((size_t)size, sizeof(*first)), *end = calloc((size_t)size, sizeof(*end));
  if (cost == NULL || first == NULL || end == NULL) {
    free(cost);
    free(first);
    free(end);
    return qiao__error(QIAO_OUT_OF_MEMORY, "pipeline: out of memory");
  }
  /* Sums that would pass 2^62 stop there (a file's sizes are not trusted;
   * no real model comes near). */
  const uint64_t most = (uint64_t)1 << 62;
  uint64_t total = 0;
  for (uint64_t i = 0; i < qiao_model_tensor_count(model); i++) {
    const qiao_tensor *t = qiao_model_tensor_at(model, i);
    char *after = NULL;
    if (t == NULL || strncmp(t->name, "blk.", 4) != 0) continue;
    unsigned long l = strtoul(t->name + 4, &after, 10);
    if (after == t->name + 4 || *after != '.' || l >= n) continue;
    const uint64_t bytes = t->n_bytes < most ? t->n_bytes : most;
    cost[l] = cost[l] < most - bytes ? cost[l] + bytes : most;
    total = total < most - bytes ? total + bytes : most;
  }
  const qiao_tensor *out = qiao_model_tensor_find(model, "output.weight");
  if (out == NULL) out = qiao_model_tensor_find(model, "token_embd.weight"); /* tied */
  const uint64_t head = out == NULL ? 0 : out->n_bytes < most ? out->n_bytes : most;
  p->first = first;
  p->end = end;
  uint64_t lo = 0, hi = head + total;
  while (lo < hi) { /* the smallest cap that fits */
    uint64_t mid = lo + (hi - lo) / 2;
    if (fits(cost, n, size, head, mid, p->end))
      hi = mid;
    else
      lo = mid + 1;
  }
  fits(cost, n, size, head, lo, p->end);
  free(cost);
  for (int r = 0; r < size; r++)
    p->first[r] = r == 0 ? 0 : p->end[r - 1];
  return NULL;
}

static double seconds_since(const struct timespec *t0) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* Naps while waiting for MPI: Open MPI's own waits spin on the CPU, which
 * on a machine with fewer cores than ranks takes it from the rank that is
 * working. `expect_s` is how long the same wait took last time (0: not
 * known), so the nap follows when the answer should come: until 80% of it
 * naps last until then (1 ms at most, so an early answer is still seen
 * soon); from there to 150% of it (10 ms at most) they are short (1/200 of
 * it, 5 to 100 us), so an answer is seen within about that of arriving;
 * after that, or with nothing expected, the nap grows with the wait (an
 * eighth of it, 2 us to 1 ms), so an idle rank uses next to no CPU. Naps of
 * 1 ms around each pass of a relay cost 3.5 ms of its 27 ms decode step on
 * 2 ranks (a trace of one pass on each side); these 0.5 ms. */
static void nap(double waited_s, double expect_s) {
#ifdef __linux__
  /* Naps of a few microseconds: without this the kernel rounds each up to
   * 50 us. For the waiting thread only (serve: the replica's thread). */
  static _Thread_local bool slack_set = false;
  if (!slack_set) {
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    slack_set = true;
  }
#endif
  const double early = 0.8 * expect_s;
  const double late = 1.5 * expect_s < early + 0.01 ? 1.5 * expect_s : early + 0.01;
  double s = waited_s / 8;
  if (waited_s < early) {
    s = early - waited_s;
  } else if (waited_s < late) {
    s = expect_s / 200;
    if (s < 5e-6) s = 5e-6;
    if (s > 1e-4) s = 1e-4;
  }
  if (s < 2e-6) s = 2e-6;
  if (s > 1e-3) s = 1e-3;
  struct timespec ts = {0, (long)(s * 1e9)};
  nanosleep(&ts, NULL);
}

/* Waits for n requests; at most timeout_s when > 0 (then *timed_out). Each
 * test holds p's lock (other threads of rank 0 call MPI too); naps do not.
 * `expect` (NULL: none) holds how long this kind of wait took last time
 * (see nap) and gets how long this one took. */
static qiao_status *wait_all(qiao_pipeline *p, int n, MPI_Request *req, double timeout_s,
                             double *expect, bool *timed_out) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  *timed_out = false;
  for (;;) {
    int done = 0;
    pthread_mutex_lock(&p->lock);
    int rc = MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
    pthread_mutex_unlock(&p->lock);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "wait");
    double waited = seconds_since(&t0);
    if (done) {
      if (expect != NULL) *expect = waited;
      return NULL;
    }
    if (timeout_s > 0 && waited > timeout_s) {
      *timed_out = true;
      return NULL;
    }
    nap(waited, expect != NULL ? *expect : 0);
  }
}

/* Buffers for a pass of T tokens and `ints` metadata. */
static qiao_status *grow(channel *c, size_t ints, size_t floats) {
  if (ints > c->meta_ints) {
    int32_t *m = realloc(c->meta, ints * sizeof(int32_t));
    if (m == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "pipeline: out of memory");
    c->meta = m;
    c->meta_ints = ints;
  }
  if (floats > c->buf_floats) {
    float *b = realloc(c->buf, floats * sizeof(float));
    if (b == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "pipeline: out of memory");
    c->buf = b;
    b = realloc(c->back, floats * sizeof(float));
    if (b == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "pipeline: out of memory");
    c->back = b;
    c->buf_floats = floats;
  }
  return NULL;
}

/* Rank 0, the caller holding p->lock: has a rank been lost? */
static qiao_status *lost_locked(const qiao_pipeline *p) {
  if (p->lost_rank < 0) return NULL;
  return qiao__error(QIAO_DEVICE, "MPI rank %d is lost: it %s", p->lost_rank, p->lost_why);
}

/* The rank whose share holds `layer`. */
static int rank_of_layer(const qiao_pipeline *p, uint32_t layer) {
  for (int r = 1; r < p->size; r++)
    if (layer >= p->first[r] && layer < p->end[r]) return r;
  return 0; /* not an external stage's layer: an internal bug */
}

/* The passes in flight on rank 0, for the heartbeat (see heartbeat_main). */
static void pass_begin(qiao_pipeline *p) {
  pthread_mutex_lock(&p->lock);
  p->passes_in_flight++;
  pthread_mutex_unlock(&p->lock);
}
static void pass_end(qiao_pipeline *p) {
  pthread_mutex_lock(&p->lock);
  p->passes_in_flight--;
  clock_gettime(CLOCK_MONOTONIC, &p->last_pass);
  pthread_mutex_unlock(&p->lock);
}

static qiao_status *relay_pass(channel *c, const qiao_engine_pass *pass, float *x);

/* Sends x and the pass to rank `to` on channel `user`, gets x back; waits at
 * most timeout_s. A rank that does not answer (or an MPI error talking to
 * it) is lost for good: this pass and every later one, on every channel,
 * fail naming it. While this channel waits, rank 0's other replicas run
 * their own layers and send their passes: that is the pipeline. */
static qiao_status *relay(void *user, const qiao_engine_pass *pass, float *x) {
  channel *c = user;
  qiao_pipeline *p = c->p;
  pthread_mutex_lock(&p->lock);
  qiao_status *lost = lost_locked(p);
  pthread_mutex_unlock(&p->lock);
  if (lost != NULL) return lost;
  pass_begin(p);
  qiao_status *st = relay_pass(c, pass, x);
  pass_end(p);
  return st;
}

/* relay's pass, counted in flight (the heartbeat waits for quiet). */
static qiao_status *relay_pass(channel *c, const qiao_engine_pass *pass, float *x) {
  qiao_pipeline *p = c->p;
  const int to = rank_of_layer(p, pass->first_layer); /* ranks may hold several stages */
  if (to == 0)
    return qiao__error(QIAO_INVALID_ARGUMENT, "pipeline: layers %u-%u are on no other rank",
                       pass->first_layer, pass->last_layer);
  const size_t T = pass->n_tokens, table = (size_t)pass->n_seqs * pass->max_blocks_per_seq;
  const size_t copies = 2 * (size_t)pass->n_copies;
  const size_t ints = HEADER_INTS + 3 * T + table + copies, floats = T * p->dim;
  if (ints > INT32_MAX || floats > INT32_MAX)
    return qiao__error(QIAO_LIMIT, "MPI rank %d: a pass of %zu tokens is too large", to, T);
  QIAO__TRY(grow(c, ints, floats));
  int32_t *m = c->meta;
  m[0] = CMD_PASS;
  m[1] = (int32_t)T;
  m[2] = (int32_t)pass->n_seqs;
  m[3] = (int32_t)pass->max_blocks_per_seq;
  m[4] = (int32_t)c->id;
  m[5] = (int32_t)pass->n_copies;
  memcpy(m + HEADER_INTS, pass->positions, T * sizeof(int32_t));
  memcpy(m + HEADER_INTS + T, pass->slots, T * sizeof(int32_t));
  memcpy(m + HEADER_INTS + 2 * T, pass->token_seq, T * sizeof(int32_t));
  memcpy(m + HEADER_INTS + 3 * T, pass->block_table, table * sizeof(int32_t));
  if (copies > 0) memcpy(m + HEADER_INTS + 3 * T + table, pass->copies, copies * sizeof(int32_t));
  memcpy(c->buf, x, floats * sizeof(float));
  const int tag_x = TAG_X_BASE + (int)c->id, tag_reply = TAG_REPLY_BASE + (int)c->id;
  MPI_Request req[4];
  pthread_mutex_lock(&p->lock);
  int rc = MPI_Isend(m, (int)ints, MPI_INT32_T, to, TAG_PASS, MPI_COMM_WORLD, &req[0]);
  if (rc == MPI_SUCCESS)
    rc = MPI_Isend(c->buf, (int)floats, MPI_FLOAT, to, tag_x, MPI_COMM_WORLD, &req[1]);
  if (rc == MPI_SUCCESS)
    rc = MPI_Irecv(c->status, STATUS_INTS, MPI_INT32_T, to, tag_reply, MPI_COMM_WORLD, &req[2]);
  if (rc == MPI_SUCCESS)
    rc = MPI_Irecv(c->back, (int)floats, MPI_FLOAT, to, tag_x, MPI_COMM_WORLD, &req[3]);
  pthread_mutex_unlock(&p->lock);
  bool timed_out = false;
  qiao_status *st = rc == MPI_SUCCESS ? wait_all(p, 4, req, p->timeout_s, &c->expect_s, &timed_out)
                                      : mpi_error(rc, "send");
  if (st != NULL || timed_out) {
    pthread_mutex_lock(&p->lock);
    if (p->lost_rank < 0) {
      p->lost_rank = to;
      if (st != NULL)
        snprintf(p->lost_why, sizeof(p->lost_why), "failed: %s", qiao_status_message(st));
      else
        snprintf(p->lost_why, sizeof(p->lost_why),
                 "did not answer within %.0f s: it died or hangs (QIAO_MPI_TIMEOUT_S)",
                 p->timeout_s);
    }
    qiao_status *failed = qiao__error(QIAO_DEVICE, "MPI rank %d (layers %u-%u) %s", to,
                                      pass->first_layer, pass->last_layer, p->lost_why);
    pthread_mutex_unlock(&p->lock);
    qiao_status_free(st);
    return failed;
  }
  if (c->status[0] != 0) {
    char *msg = (char *)&c->status[1];
    msg[MESSAGE_BYTES - 1] = '\0';
    return qiao__error((qiao_code)c->status[0], "MPI rank %d (layers %u-%u): %s", to,
                       pass->first_layer, pass->last_layer, msg);
  }
  memcpy(x, c->back, floats * sizeof(float));
  return NULL;
}

/* Appends this rank's stages, layers [first, end), to p->split at *len:
 * `devices` ("cpu:0", or a --split list without layer ranges such as
 * "cpu,opencl:0"; modified) share them evenly, in order, or by memory
 * (written without ranges: the engine gives them the layers between the
 * other ranks' external stages in proportion to each device's memory). */
static qiao_status *own_stages(qiao_pipeline *p, char *devices, uint32_t first, uint32_t end,
                               bool by_memory, const char *sep, size_t *len) {
  uint32_t n_devices = 1;
  for (const char *c = devices; *c; c++)
    n_devices += *c == ',';
  if (n_devices > end - first)
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "--mpi: rank %d has %u layers (%u-%u) for the %u devices of --split %s",
                       p->rank, end - first, first, end - 1, n_devices, devices);
  char *item = devices;
  for (uint32_t d = 0; d < n_devices; d++) {
    char *comma = strchr(item, ',');
    if (comma != NULL) *comma = '\0';
    const char *colon = strrchr(item, ':');
    if (*item == '\0' || (colon != NULL && strchr(colon, '-') != NULL))
      return qiao__error(QIAO_INVALID_ARGUMENT,
                         "--mpi with --split: \"%s\": name devices without layer ranges (each "
                         "rank splits its own share of the layers among them)",
                         item);
    /* d of n_devices: an even share of [first, end), the first one more */
    const uint32_t count = end - first, base = count / n_devices, extra = count % n_devices;
    const uint32_t a = d * base + (d < extra ? d : extra), b = a + base + (d < extra ? 1 : 0);
    int n = by_memory
                ? snprintf(p->split + *len, sizeof(p->split) - *len, "%s%s", d ? "," : sep, item)
                : snprintf(p->split + *len, sizeof(p->split) - *len, "%s%s:%u-%u", d ? "," : sep,
                           item, first + a, first + b - 1);
    if (n < 0 || (size_t)n >= sizeof(p->split) - *len)
      return qiao__error(QIAO_LIMIT, "--mpi: the split of %d ranks is too long", p->size);
    *len += (size_t)n;
    item = comma != NULL ? comma + 1 : item;
  }
  return NULL;
}

qiao_status *qiao__pipeline_engine_options(qiao_pipeline *p, const qiao_model *model,
                                           qiao_engine_options *o) {
  qiao_hparams hp;
  QIAO__TRY(qiao_model_get_hparams(model, &hp));
  const uint32_t n_layers = hp.n_layers;
  p->dim = hp.dim;
  p->n_layers = n_layers;
  if (n_layers < (uint32_t)p->size)
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "--mpi: %d ranks for %u layers (a layer or more each)", p->size, n_layers);
  if (p->first == NULL) QIAO__TRY(balance(p, model));
  const bool own_split = o->split != NULL && o->split[0] != '\0';
  const bool by_memory = own_split && o->split_by == QIAO_ENGINE_SPLIT_BY_MEMORY;
  char own[sizeof(p->split)];
  if (own_split) {
    if (strlen(o->split) >= sizeof(own))
      return qiao__error(QIAO_LIMIT, "--mpi: --split is longer than %zu characters",
                         sizeof(own) - 1);
    memcpy(own, o->split, strlen(o->split) + 1);
  } else {
    snprintf(own, sizeof(own), "%s:%u", o->backend ? o->backend : "cpu", o->device_index);
  }
  size_t len = 0;
  for (int r = 0; r < p->size; r++) {
    if (r == p->rank) {
      QIAO__TRY(own_stages(p, own, p->first[r], p->end[r], by_memory, r ? "," : "", &len));
      continue;
    }
    int n = snprintf(p->split + len, sizeof(p->split) - len, "%sexternal:%u-%u", r ? "," : "",
                     p->first[r], p->end[r] - 1);
    if (n < 0 || (size_t)n >= sizeof(p->split) - len)
      return qiao__error(QIAO_LIMIT, "--mpi: the split of %d ranks is too long", p->size);
    len += (size_t)n;
  }
  o->split = p->split;
  o->split_by = by_memory ? QIAO_ENGINE_SPLIT_BY_MEMORY : QIAO_ENGINE_SPLIT_BY_LAYERS;
  if (p->rank == 0) {
    o->external = relay;
    o->external_user = &p->channels[0];
  }
  return NULL;
}

/* Rank 0: pings rank r and waits for its answer, at most timeout_s. False
 * (p->lost_* set, unless a pass lost a rank first) when it does not answer:
 * it died or hangs. */
static bool ping(qiao_pipeline *p, int r, int32_t number) {
  int32_t *m = p->ping;
  memset(m, 0, sizeof(p->ping));
  m[0] = CMD_PING;
  m[4] = number;
  MPI_Request req[2];
  pthread_mutex_lock(&p->lock);
  int rc = MPI_Isend(m, HEADER_INTS, MPI_INT32_T, r, TAG_PASS, MPI_COMM_WORLD, &req[0]);
  if (rc == MPI_SUCCESS)
    rc = MPI_Irecv(&p->pong, 1, MPI_INT32_T, r, TAG_PONG, MPI_COMM_WORLD, &req[1]);
  pthread_mutex_unlock(&p->lock);
  bool timed_out = false;
  qiao_status *st = rc == MPI_SUCCESS ? wait_all(p, 2, req, p->timeout_s, NULL, &timed_out)
                                      : mpi_error(rc, "send");
  bool ok = st == NULL && !timed_out && p->pong == number;
  if (!ok) {
    pthread_mutex_lock(&p->lock);
    if (p->lost_rank < 0) {
      p->lost_rank = r;
      if (st != NULL)
        snprintf(p->lost_why, sizeof(p->lost_why), "failed a heartbeat: %s",
                 qiao_status_message(st));
      else if (timed_out)
        snprintf(p->lost_why, sizeof(p->lost_why),
                 "did not answer a heartbeat within %.0f s: it died or hangs (QIAO_MPI_TIMEOUT_S)",
                 p->timeout_s);
      else
        snprintf(p->lost_why, sizeof(p->lost_why), "answered heartbeat %d with %d", number,
                 p->pong);
    }
    pthread_mutex_unlock(&p->lock);
  }
  qiao_status_free(st);
  return ok;
}

/* Rank 0's heartbeat thread: whenever no pass has been in flight for
 * heartbeat_s, pings every other rank in turn (a pass would have noticed a
 * lost rank itself). The first rank lost, by a ping or by a pass, is
 * reported once through on_lost; then the thread ends. */
static void *heartbeat_main(void *arg) {
  qiao_pipeline *p = arg;
  int32_t number = 0;
  for (;;) {
    struct timespec tick = {0, 100 * 1000 * 1000}; /* stop is seen within 0.1 s */
    nanosleep(&tick, NULL);
    pthread_mutex_lock(&p->lock);
    bool stop = p->stop_heartbeat, lost = p->lost_rank >= 0;
    bool due = p->passes_in_flight == 0 && seconds_since(&p->last_pass) >= p->heartbeat_s;
    pthread_mutex_unlock(&p->lock);
    if (stop) return NULL;
    for (int r = 1; !lost && due && r < p->size; r++)
      lost = !ping(p, r, ++number);
    if (lost) break;
    if (due) {
      pthread_mutex_lock(&p->lock);
      clock_gettime(CLOCK_MONOTONIC, &p->last_pass); /* the next one in heartbeat_s */
      pthread_mutex_unlock(&p->lock);
    }
  }
  char why[sizeof(p->lost_why) + 64];
  pthread_mutex_lock(&p->lock);
  snprintf(why, sizeof(why), "MPI rank %d is lost: it %s", p->lost_rank, p->lost_why);
  pthread_mutex_unlock(&p->lock);
  if (p->on_lost != NULL) p->on_lost(p->on_lost_user, why);
  return NULL;
}

qiao_status *qiao__pipeline_heartbeat_start(qiao_pipeline *p,
                                            void (*on_lost)(void *user, const char *why),
                                            void *user) {
  if (p->rank != 0 || p->heartbeat_s <= 0 || p->heartbeat_running) return NULL;
  p->on_lost = on_lost;
  p->on_lost_user = user;
  p->stop_heartbeat = false;
  pthread_mutex_lock(&p->lock);
  clock_gettime(CLOCK_MONOTONIC, &p->last_pass);
  pthread_mutex_unlock(&p->lock);
  int rc = pthread_create(&p->heartbeat, NULL, heartbeat_main, p);
  if (rc != 0) return qiao__error(QIAO_OUT_OF_MEMORY, "--mpi: cannot start the heartbeat thread");
  p->heartbeat_running = true;
  return NULL;
}

void qiao__pipeline_heartbeat_stop(qiao_pipeline *p) {
  if (p == NULL || !p->heartbeat_running) return;
  pthread_mutex_lock(&p->lock);
  p->stop_heartbeat = true;
  pthread_mutex_unlock(&p->lock);
  pthread_join(p->heartbeat, NULL); /* a ping in flight ends within timeout_s */
  p->heartbeat_running = false;
}

qiao_status *qiao__pipeline_serve(qiao_pipeline *p, qiao_engine *const *engines,
                                  uint32_t n_engines) {
  if (n_engines != p->depth)
    return qiao__error(QIAO_INVALID_ARGUMENT, "pipeline: %u engines for a depth of %u", n_engines,
                       p->depth);
  p->dim = qiao_engine_hparams(engines[0])->dim;
  channel *c = &p->channels[0]; /* this rank's buffers (one pass at a time) */
  const char *die = getenv("QIAO_PIPELINE_TEST_DIE_AFTER"); /* tests: a rank that dies */
  long passes = 0, die_after = die ? atol(die) : -1;
  for (;;) {
    /* Waits (napping) for rank 0's next pass; its size comes with it. */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ready = 0;
    MPI_Status ms;
    for (;;) {
      MPI_TRY(MPI_Iprobe(0, TAG_PASS, MPI_COMM_WORLD, &ready, &ms), "probe");
      if (ready) break;
      nap(seconds_since(&t0), c->expect_s);
    }
    c->expect_s = seconds_since(&t0);
    int count = 0;
    MPI_TRY(MPI_Get_count(&ms, MPI_INT32_T, &count), "receive");
    /* Rank 0 is trusted no more than a file: bounded before any allocation. */
    if (count < HEADER_INTS || count > (1 << 26))
      return qiao__error(QIAO_MALFORMED, "pipeline: rank 0 sent a pass of %d ints", count);
    QIAO__TRY(grow(c, (size_t)count, 0));
    int32_t *m = c->meta;
    MPI_TRY(MPI_Recv(m, count, MPI_INT32_T, 0, TAG_PASS, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
            "receive");
    if (m[0] == CMD_STOP) return NULL;
    if (m[0] == CMD_PING) { /* the heartbeat: its number back */
      MPI_Request pong;
      bool timed_out = false;
      MPI_TRY(MPI_Isend(&m[4], 1, MPI_INT32_T, 0, TAG_PONG, MPI_COMM_WORLD, &pong), "send");
      QIAO__TRY(wait_all(p, 1, &pong, 0, NULL, &timed_out));
      continue;
    }
    if (die_after >= 0 && passes++ >= die_after) _exit(3);
    if (m[0] != CMD_PASS || m[1] <= 0 || m[1] > 65536 || m[2] <= 0 || m[2] > 65536 || m[3] <= 0 ||
        m[3] > (1 << 24) || m[4] < 0 || (uint32_t)m[4] >= n_engines || m[5] < 0 ||
        m[5] > (1 << 24) ||
        (uint64_t)count !=
            HEADER_INTS + 3 * (uint64_t)m[1] + (uint64_t)m[2] * (uint64_t)m[3] + 2 * (uint64_t)m[5])
      return qiao__error(QIAO_MALFORMED, "pipeline: rank 0 sent a bad pass header");
    const size_t T = (size_t)m[1];
    const int ch = m[4], tag_x = TAG_X_BASE + ch, tag_reply = TAG_REPLY_BASE + ch;
    QIAO__TRY(grow(c, 0, T * p->dim));
    MPI_Request req;
    bool timed_out = false;
    MPI_TRY(MPI_Irecv(c->buf, (int)(T * p->dim), MPI_FLOAT, 0, tag_x, MPI_COMM_WORLD, &req),
            "receive");
    QIAO__TRY(wait_all(p, 1, &req, 0, NULL, &timed_out));
    qiao_engine_pass pass = {.struct_size = sizeof(pass),
                             .n_tokens = (uint32_t)T,
                             .n_seqs = (uint32_t)m[2],
                             .max_blocks_per_seq = (uint32_t)m[3],
                             .positions = m + HEADER_INTS,
                             .slots = m + HEADER_INTS + T,
                             .token_seq = m + HEADER_INTS + 2 * T,
                             .block_table = m + HEADER_INTS + 3 * T,
                             .n_copies = (uint32_t)m[5],
                             .copies = m + HEADER_INTS + 3 * T + (size_t)m[2] * (size_t)m[3]};
    qiao_status *st = qiao_engine_forward_hidden(engines[ch], &pass, c->buf);
    memset(c->status, 0, sizeof(c->status));
    if (st != NULL) {
      c->status[0] = (int32_t)qiao_status_code(st);
      snprintf((char *)&c->status[1], MESSAGE_BYTES, "%s", qiao_status_message(st));
      qiao_status_free(st);
    }
    MPI_Request out[2];
    MPI_TRY(MPI_Isend(c->status, STATUS_INTS, MPI_INT32_T, 0, tag_reply, MPI_COMM_WORLD, &out[0]),
            "send");
    MPI_TRY(MPI_Isend(c->buf, (int)(T * p->dim), MPI_FLOAT, 0, tag_x, MPI_COMM_WORLD, &out[1]),
            "send");
    QIAO__TRY(wait_all(p, 2, out, 0, NULL, &timed_out));
  }
}

void qiao__pipeline_close(qiao_pipeline *p, bool ok) {
  if (p == NULL) return;
  qiao__pipeline_heartbeat_stop(p); /* no MPI call from it after this */
  /* After an error the others may wait on a pass or a reply, and a lost
   * rank never answers a stop (nor MPI_Finalize). */
  if (ok && p->lost_rank >= 0) {
    fprintf(stderr, "error: MPI rank %d is lost (it %s): ending the job\n", p->lost_rank,
            p->lost_why);
    fflush(stderr);
  }
  if (!ok || p->lost_rank >= 0) MPI_Abort(MPI_COMM_WORLD, 1);
  if (p->rank == 0) {
    int32_t stop[HEADER_INTS] = {CMD_STOP, 0, 0, 0, 0, 0};
    for (int r = 1; r < p->size; r++)
      MPI_Send(stop, HEADER_INTS, MPI_INT32_T, r, TAG_PASS, MPI_COMM_WORLD);
  }
  MPI_Finalize();
  free(p->first);
  free(p->end);
  for (uint32_t i = 0; i < MAX_DEPTH; i++) {
    free(p->channels[i].buf);
    free(p->channels[i].back);
    free(p->channels[i].meta);
  }
  pthread_mutex_destroy(&p->lock);
  free(p);
}
