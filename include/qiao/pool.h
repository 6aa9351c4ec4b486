/* qiao/pool.h: a pool of devices that serve one model, one replica each.
 *
 * A pool opens one engine (a replica of the model) on each device it is
 * given, of any mix of backends ("cpu", "opencl:0", a plugin path). A replica
 * that fails (its device reports an error on several consecutive steps, or
 * loses the device) is taken out of the pool for good: its sequences are
 * gone, and the pool says which device is out and why.
 *
 * The scheduler (qiao/scheduler.h) is the pool's one user: it runs each
 * replica's steps on a thread of its own and routes requests between them.
 *
 * Ownership: the pool borrows the model, which must stay open until
 * qiao_pool_destroy. Thread-safety: functions taking a replica index may be
 * called from one thread per replica at a time; qiao_pool_replica_info and
 * the counters are safe from any thread. */
#ifndef QIAO_POOL_H
#define QIAO_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qiao/engine.h"
#include "qiao/model.h"
#include "qiao/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qiao_pool qiao_pool;

typedef struct qiao_pool_options {
  size_t struct_size;
  uint32_t n_threads;   /* host threads per replica; 0 = the backend's default */
  uint32_t slots;       /* sequences each replica runs at once; 0 = 8 */
  uint32_t max_context; /* positions per sequence; 0 = the engine's default */
  uint32_t kv_blocks;   /* KV blocks per replica; 0 = enough for every slot's full context */
  bool batch_invariant; /* require batch-invariant devices (see qiao/engine.h) */
  bool prefix_cache;    /* keep prompt prefixes in the KV cache for reuse */
  bool verbose;         /* loading progress and placement on stderr */
  bool exact_matmul;    /* F32 activations for quantized weights too (qiao/engine.h) */
  /* Appended in 0.2: how a split spec without layer ranges places them. */
  qiao_engine_split_by split_by;
  /* Appended in 0.2: the runner of a split's "external" stages (see
   * qiao_engine_options.external; e.g. pipeline stages in other processes).
   * With prefix_cache, the copies on write reach those stages with the
   * pass (qiao_engine_pass.copies). */
  qiao_engine_external_fn external;
  void *external_user;
  /* Appended in 0.3: when not NULL, replica i's engine gets
   * external_users[i] instead of external_user (an array of as many entries
   * as qiao_pool_create's specs, read during the call only): e.g. one MPI
   * channel per replica, so several replicas' passes are in flight. */
  void *const *external_users;
  /* Appended in 0.3: the replicas share their devices (e.g. the virtual
   * replicas of one MPI pipeline): when one is taken out (device lost, or
   * failed steps), every replica is, with the same failure. */
  bool shared_fate;
} qiao_pool_options;

qiao_pool_options qiao_pool_default_options(void);

/* Opens a replica on each of the n device specs: "BACKEND" or
 * "BACKEND:INDEX" (BACKEND is a name such as cpu or opencl, or a plugin
 * path), or a split of one replica's layers across devices (a list with a
 * ',', see qiao_engine_options.split). Fails naming the spec when any
 * replica cannot be opened. */
qiao_status *qiao_pool_create(const qiao_model *model, const char *const *specs, size_t n,
                              const qiao_pool_options *options, qiao_pool **out_pool);
void qiao_pool_destroy(qiao_pool *pool); /* accepts NULL */

size_t qiao_pool_size(const qiao_pool *pool);
const qiao_hparams *qiao_pool_hparams(const qiao_pool *pool);
/* Positions a sequence may hold (the same on every replica). */
uint32_t qiao_pool_max_context(const qiao_pool *pool);

typedef struct qiao_pool_replica_info {
  char spec[160];    /* as given: "cpu", "opencl:0" */
  char device[128];  /* the device's name */
  bool ok;           /* false once taken out of the pool */
  char failure[256]; /* why it was taken out ("" while ok) */
  uint32_t slots;
  uint32_t kv_blocks, kv_blocks_used, kv_blocks_cached, kv_block_size;
  uint64_t prefix_hit_tokens; /* prompt tokens served from the prefix cache */
} qiao_pool_replica_info;

void qiao_pool_replica_info_get(qiao_pool *pool, size_t replica, qiao_pool_replica_info *out);

/* ---- A replica's work, for the replica's own thread ------------------------
 * One thread per replica calls these (the engine is not thread-safe);
 * each takes the replica's lock, and refreshes its snapshot afterwards. */

/* A new sequence for `tokens`, starting with the whole blocks of them that
 * the prefix cache holds (qiao_engine_seq_create_cached): *out_cached
 * positions are already computed. */
qiao_status *qiao_pool_seq_create(qiao_pool *pool, size_t replica, const int32_t *tokens, size_t n,
                                  int32_t *out_seq, uint32_t *out_cached);
void qiao_pool_seq_free(qiao_pool *pool, size_t replica, int32_t seq);

/* Runs a batch on the replica (qiao_engine_forward; logits of the wanted
 * rows). A failure counts towards a limit of 3 consecutive failures; a lost
 * device (qiao_engine_device_lost) or the limit takes the replica out of
 * the pool for good, and *out_taken_out is then true. A replica that is out
 * fails at once. */
qiao_status *qiao_pool_forward(qiao_pool *pool, size_t replica, const qiao_batch *batch,
                               float *out_logits, bool *out_taken_out);

/* Takes the replica out of the pool for good, from any thread, as a failed
 * device would be (its info then says `why`; with shared_fate, every
 * replica): for a health check outside the pool that saw its device die
 * while idle (e.g. serve --mpi's heartbeat). The scheduler's thread for it
 * sees this between steps. A replica already out keeps its first failure. */
void qiao_pool_take_out(qiao_pool *pool, size_t replica, const char *why);

/* Leading prompt positions the replica's prefix cache would serve now, for
 * routing from any thread; 0 while the replica is in the middle of a step
 * (this never waits for one). */
uint32_t qiao_pool_prefix_cached(qiao_pool *pool, size_t replica, const int32_t *tokens, size_t n);

#ifdef __cplusplus
}
#endif
#endif
