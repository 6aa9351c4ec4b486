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
enum { TAG_PASS = 1, TAG_X_BASE = 100, TAG_REPLY_BASE = 200 };
enum { CMD_STOP = 0, CMD_PASS = 1 };
/* A pass message: {cmd, T, n_seqs, max_blocks_per_seq, channel}, then
 * positions, slots and token_seq (T each), then the block table. */
#define HEADER_INTS 5
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
} channel;

struct qiao_pipeline {
  int rank, size;
  uint32_t dim;
  uint32_t depth; /* channels (rank 0's replicas in flight at once); 1 = a relay */
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
  const char *refusal = NULL;
  if (p->size < 2)
    refusal = "--mpi: 1 rank; start at least 2 with mpirun -np N (each runs a share of the layers)";
  else if (provided < MPI_THREAD_SERIALIZED)
    refusal = "--mpi: this MPI library does not support MPI_THREAD_SERIALIZED";
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

/* Layers [*first, *end) of rank r of size: an even split, the first ranks
 * one more. */
static void share(uint32_t n_layers, int size, int r, uint32_t *first, uint32_t *end) {
  uint32_t base = n_layers / (uint32_t)size, extra = n_layers % (uint32_t)size;
  *first = (uint32_t)r * base + ((uint32_t)r < extra ? (uint32_t)r : extra);
  *end = *first + base + ((uint32_t)r < extra ? 1 : 0);
}

static double seconds_since(const struct timespec *t0) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) * 1e-9;
}

/* Naps while waiting for MPI: Open MPI's own waits spin on the CPU, which
 * on a machine with fewer cores than ranks takes it from the rank that is
 * working. The nap grows with the wait (an eighth of it, 2 us to 1 ms), so
 * a fast answer costs little latency and an idle rank next to no CPU. */
static void nap(double waited_s) {
#ifdef __linux__
  /* Naps of a few microseconds: without this the kernel rounds each up to
   * 50 us. For the waiting thread only (serve: the replica's thread). */
  static _Thread_local bool slack_set = false;
  if (!slack_set) {
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    slack_set = true;
  }
#endif
  double s = waited_s / 8;
  if (s < 2e-6) s = 2e-6;
  if (s > 1e-3) s = 1e-3;
  struct timespec ts = {0, (long)(s * 1e9)};
  nanosleep(&ts, NULL);
}

/* Waits for n requests; at most timeout_s when > 0 (then *timed_out). Each
 * test holds p's lock (other threads of rank 0 call MPI too); naps do not. */
static qiao_status *wait_all(qiao_pipeline *p, int n, MPI_Request *req, double timeout_s,
                             bool *timed_out) {
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  *timed_out = false;
  for (;;) {
    int done = 0;
    pthread_mutex_lock(&p->lock);
    int rc = MPI_Testall(n, req, &done, MPI_STATUSES_IGNORE);
    pthread_mutex_unlock(&p->lock);
    if (rc != MPI_SUCCESS) return mpi_error(rc, "wait");
    if (done) return NULL;
    double waited = seconds_since(&t0);
    if (timeout_s > 0 && waited > timeout_s) {
      *timed_out = true;
      return NULL;
    }
    nap(waited);
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

/* Sends x and the pass to rank `to` on channel `user`, gets x back; waits at
 * most timeout_s. A rank that does not answer (or an MPI error talking to
 * it) is lost for good: this pass and every later one, on every channel,
 * fail naming it. While this channel waits, rank 0's other replicas run
 * their own layers and send their passes: that is the pipeline. */
static qiao_status *relay(void *user, const qiao_engine_pass *pass, float *x) {
  channel *c = user;
  qiao_pipeline *p = c->p;
  const int to = (int)pass->stage; /* stage r of the split is rank r */
  pthread_mutex_lock(&p->lock);
  qiao_status *lost = lost_locked(p);
  pthread_mutex_unlock(&p->lock);
  if (lost != NULL) return lost;
  const size_t T = pass->n_tokens, table = (size_t)pass->n_seqs * pass->max_blocks_per_seq;
  const size_t ints = HEADER_INTS + 3 * T + table, floats = T * p->dim;
  if (ints > INT32_MAX || floats > INT32_MAX)
    return qiao__error(QIAO_LIMIT, "MPI rank %d: a pass of %zu tokens is too large", to, T);
  QIAO__TRY(grow(c, ints, floats));
  int32_t *m = c->meta;
  m[0] = CMD_PASS;
  m[1] = (int32_t)T;
  m[2] = (int32_t)pass->n_seqs;
  m[3] = (int32_t)pass->max_blocks_per_seq;
  m[4] = (int32_t)c->id;
  memcpy(m + HEADER_INTS, pass->positions, T * sizeof(int32_t));
  memcpy(m + HEADER_INTS + T, pass->slots, T * sizeof(int32_t));
  memcpy(m + HEADER_INTS + 2 * T, pass->token_seq, T * sizeof(int32_t));
  memcpy(m + HEADER_INTS + 3 * T, pass->block_table, table * sizeof(int32_t));
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
  qiao_status *st =
      rc == MPI_SUCCESS ? wait_all(p, 4, req, p->timeout_s, &timed_out) : mpi_error(rc, "send");
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

qiao_status *qiao__pipeline_engine_options(qiao_pipeline *p, const qiao_hparams *hp,
                                           qiao_engine_options *o) {
  const uint32_t n_layers = hp->n_layers;
  p->dim = hp->dim;
  if (n_layers < (uint32_t)p->size)
    return qiao__error(QIAO_INVALID_ARGUMENT,
                       "--mpi: %d ranks for %u layers (a layer or more each)", p->size, n_layers);
  if (o->split != NULL && o->split[0] != '\0')
    return qiao__error(QIAO_UNSUPPORTED, "--mpi with --split: not yet (one device per rank)");
  const char *backend = o->backend ? o->backend : "cpu";
  size_t len = 0;
  for (int r = 0; r < p->size; r++) {
    uint32_t first, end;
    share(n_layers, p->size, r, &first, &end);
    int n;
    if (r == p->rank)
      n = snprintf(p->split + len, sizeof(p->split) - len, "%s%s:%u:%u-%u", r ? "," : "", backend,
                   o->device_index, first, end - 1);
    else
      n = snprintf(p->split + len, sizeof(p->split) - len, "%sexternal:%u-%u", r ? "," : "", first,
                   end - 1);
    if (n < 0 || (size_t)n >= sizeof(p->split) - len)
      return qiao__error(QIAO_LIMIT, "--mpi: the split of %d ranks is too long", p->size);
    len += (size_t)n;
  }
  o->split = p->split;
  o->prefix_cache = false;
  if (p->rank == 0) {
    o->external = relay;
    o->external_user = &p->channels[0];
  }
  return NULL;
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
      nap(seconds_since(&t0));
    }
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
    if (die_after >= 0 && passes++ >= die_after) _exit(3);
    if (m[0] != CMD_PASS || m[1] <= 0 || m[1] > 65536 || m[2] <= 0 || m[2] > 65536 || m[3] <= 0 ||
        m[3] > (1 << 24) || m[4] < 0 || (uint32_t)m[4] >= n_engines ||
        (uint64_t)count != HEADER_INTS + 3 * (uint64_t)m[1] + (uint64_t)m[2] * (uint64_t)m[3])
      return qiao__error(QIAO_MALFORMED, "pipeline: rank 0 sent a bad pass header");
    const size_t T = (size_t)m[1];
    const int ch = m[4], tag_x = TAG_X_BASE + ch, tag_reply = TAG_REPLY_BASE + ch;
    QIAO__TRY(grow(c, 0, T * p->dim));
    MPI_Request req;
    bool timed_out = false;
    MPI_TRY(MPI_Irecv(c->buf, (int)(T * p->dim), MPI_FLOAT, 0, tag_x, MPI_COMM_WORLD, &req),
            "receive");
    QIAO__TRY(wait_all(p, 1, &req, 0, &timed_out));
    qiao_engine_pass pass = {.struct_size = sizeof(pass),
                             .n_tokens = (uint32_t)T,
                             .n_seqs = (uint32_t)m[2],
                             .max_blocks_per_seq = (uint32_t)m[3],
                             .positions = m + HEADER_INTS,
                             .slots = m + HEADER_INTS + T,
                             .token_seq = m + HEADER_INTS + 2 * T,
                             .block_table = m + HEADER_INTS + 3 * T};
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
    QIAO__TRY(wait_all(p, 2, out, 0, &timed_out));
  }
}

void qiao__pipeline_close(qiao_pipeline *p, bool ok) {
  if (p == NULL) return;
  /* After an error the others may wait on a pass or a reply, and a lost
   * rank never answers a stop (nor MPI_Finalize). */
  if (ok && p->lost_rank >= 0) {
    fprintf(stderr, "error: MPI rank %d is lost (it %s): ending the job\n", p->lost_rank,
            p->lost_why);
    fflush(stderr);
  }
  if (!ok || p->lost_rank >= 0) MPI_Abort(MPI_COMM_WORLD, 1);
  if (p->rank == 0) {
    int32_t stop[HEADER_INTS] = {CMD_STOP, 0, 0, 0, 0};
    for (int r = 1; r < p->size; r++)
      MPI_Send(stop, HEADER_INTS, MPI_INT32_T, r, TAG_PASS, MPI_COMM_WORLD);
  }
  MPI_Finalize();
  for (uint32_t i = 0; i < MAX_DEPTH; i++) {
    free(p->channels[i].buf);
    free(p->channels[i].back);
    free(p->channels[i].meta);
  }
  pthread_mutex_destroy(&p->lock);
  free(p);
}
