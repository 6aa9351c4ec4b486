/* The thread pool: n_threads - 1 workers plus the calling thread. Decode
 * issues ~15 small ops per layer, so dispatch must be cheap: workers spin
 * briefly on a generation counter and only then sleep on a condition
 * variable; the caller spins likewise while waiting for the rest. */
#include <sched.h>
#include <stdlib.h>

#include "cpu_internal.h"

enum { SPIN_ITERATIONS = 1 << 15 };

typedef struct worker {
  qiao__cpu_pool *pool;
  uint32_t ith;
} worker;

struct qiao__cpu_pool {
  uint32_t n_threads;
  uint32_t n_started; /* workers actually started */
  pthread_t *threads;
  worker *workers;
  pthread_mutex_t run_lock; /* serializes run() from several queues */
  pthread_mutex_t mutex;    /* guards sleeping on wake/done */
  pthread_cond_t wake, done;
  _Atomic uint32_t generation; /* bumped once per job */
  _Atomic uint32_t pending;    /* workers still running the current job */
  _Atomic uint32_t sleeping_workers;
  _Atomic uint32_t caller_sleeping;
  _Atomic uint32_t stop;
  qiao__cpu_task_fn fn; /* the current job, published by generation */
  void *ctx;
};

/* One spin iteration; now and then it yields the processor, so that an
 * oversubscribed machine still runs the thread being waited for. */
static inline void spin_wait(int spins) {
  if ((spins & 1023) == 1023) {
    sched_yield();
    return;
  }
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static void *worker_main(void *arg) {
  worker *self = arg;
  qiao__cpu_pool *pool = self->pool;
  uint32_t seen = 0;
  for (;;) {
    uint32_t gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
    for (int spins = 0; gen == seen && spins < SPIN_ITERATIONS; spins++) {
      spin_wait(spins);
      gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
    }
    if (gen == seen) {
      pthread_mutex_lock(&pool->mutex);
      atomic_fetch_add(&pool->sleeping_workers, 1);
      while ((gen = atomic_load(&pool->generation)) == seen)
        pthread_cond_wait(&pool->wake, &pool->mutex);
      atomic_fetch_sub(&pool->sleeping_workers, 1);
      pthread_mutex_unlock(&pool->mutex);
    }
    seen = gen;
    if (atomic_load(&pool->stop)) return NULL;
    pool->fn(pool->ctx, self->ith, pool->n_threads);
    if (atomic_fetch_sub(&pool->pending, 1) == 1 && atomic_load(&pool->caller_sleeping)) {
      pthread_mutex_lock(&pool->mutex);
      pthread_cond_signal(&pool->done);
      pthread_mutex_unlock(&pool->mutex);
    }
  }
}

static void publish(qiao__cpu_pool *pool) {
  atomic_fetch_add(&pool->generation, 1);
  if (atomic_load(&pool->sleeping_workers) > 0) {
    pthread_mutex_lock(&pool->mutex);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
  }
}

static void stop_workers(qiao__cpu_pool *pool) {
  atomic_store(&pool->stop, 1);
  publish(pool);
  for (uint32_t i = 0; i < pool->n_started; i++)
    pthread_join(pool->threads[i], NULL);
}

qiao_dev_error *qiao__cpu_pool_create(uint32_t n_threads, qiao__cpu_pool **out_pool) {
  qiao__cpu_pool *pool = calloc(1, sizeof(*pool));
  if (pool == NULL) return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "device_open: thread pool");
  pool->n_threads = n_threads;
  pool->threads = calloc(n_threads, sizeof(*pool->threads));
  pool->workers = calloc(n_threads, sizeof(*pool->workers));
  if (pool->threads == NULL || pool->workers == NULL) {
    free(pool->threads);
    free(pool->workers);
    free(pool);
    return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY, "device_open: thread pool of %u threads",
                           n_threads);
  }
  pthread_mutex_init(&pool->run_lock, NULL);
  pthread_mutex_init(&pool->mutex, NULL);
  pthread_cond_init(&pool->wake, NULL);
  pthread_cond_init(&pool->done, NULL);
  for (uint32_t i = 1; i < n_threads; i++) {
    pool->workers[i - 1] = (worker){pool, i};
    if (pthread_create(&pool->threads[i - 1], NULL, worker_main, &pool->workers[i - 1]) != 0) {
      stop_workers(pool);
      pthread_mutex_destroy(&pool->run_lock);
      pthread_mutex_destroy(&pool->mutex);
      pthread_cond_destroy(&pool->wake);
      pthread_cond_destroy(&pool->done);
      free(pool->threads);
      free(pool->workers);
      free(pool);
      return qiao__cpu_error(QIAO_DEV_OUT_OF_MEMORY,
                             "device_open: cannot start worker thread %u of %u", i, n_threads);
    }
    pool->n_started++;
  }
  *out_pool = pool;
  return NULL;
}

void qiao__cpu_pool_destroy(qiao__cpu_pool *pool) {
  if (pool == NULL) return;
  stop_workers(pool);
  pthread_mutex_destroy(&pool->run_lock);
  pthread_mutex_destroy(&pool->mutex);
  pthread_cond_destroy(&pool->wake);
  pthread_cond_destroy(&pool->done);
  free(pool->threads);
  free(pool->workers);
  free(pool);
}

void qiao__cpu_pool_run(qiao__cpu_pool *pool, qiao__cpu_task_fn fn, void *ctx) {
  pthread_mutex_lock(&pool->run_lock);
  pool->fn = fn;
  pool->ctx = ctx;
  atomic_store(&pool->pending, pool->n_threads - 1);
  publish(pool);
  fn(ctx, 0, pool->n_threads);
  for (int spins = 0; atomic_load(&pool->pending) != 0 && spins < SPIN_ITERATIONS; spins++)
    spin_wait(spins);
  if (atomic_load(&pool->pending) != 0) {
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->caller_sleeping, 1);
    while (atomic_load(&pool->pending) != 0)
      pthread_cond_wait(&pool->done, &pool->mutex);
    atomic_store(&pool->caller_sleeping, 0);
    pthread_mutex_unlock(&pool->mutex);
  }
  pthread_mutex_unlock(&pool->run_lock);
}

void qiao__cpu_run(qiao_dev_device *device, qiao__cpu_task_fn fn, void *ctx, int parallel) {
  if (!parallel || device->pool == NULL) {
    fn(ctx, 0, 1);
    return;
  }
  qiao__cpu_pool_run(device->pool, fn, ctx);
}
