/* The state of `qiao serve` that every HTTP handler shares: the settings
 * from the command line, and the model, tokenizer, device pool and
 * scheduler once they are loaded.
 *
 * Lifecycle: the HTTP server starts before the model is loaded so that
 * /health can answer 503 while loading. The loader fills the pointers below
 * and then publishes them by setting `phase` to SERVE_READY (release order);
 * handlers read `phase` first (acquire order) and touch the pointers only
 * when it is READY or DRAINING. After READY the pointers never change until
 * the server has stopped. */
#ifndef QIAO_SERVE_APP_H
#define QIAO_SERVE_APP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "affinity.h"
#include "keys.h"
#include "qiao/model.h"
#include "qiao/pool.h"
#include "qiao/scheduler.h"
#include "qiao/template.h"
#include "qiao/tokenizer.h"

#define SERVE_MAX_DEVICES 64

typedef struct serve_config {
  const char *host;
  uint32_t port; /* 0: any free port */
  uint32_t n_threads;
  const char *devices[SERVE_MAX_DEVICES];
  size_t n_devices;
  uint32_t slots, ctx, max_queue, step_tokens;
  uint64_t max_body;  /* bytes of a request body */
  uint32_t timeout_s; /* idle or slow connections are dropped after this */
  uint32_t grace_s;   /* on SIGTERM, running requests get this long to finish */
  bool prefix_cache, batch_invariant, log_prompts;
  bool exact_matmul;        /* --exact */
  bool split_by_memory;     /* --split-by memory */
  const char *model_name;   /* NULL: the model file's base name */
  const char *replica_name; /* --replica-name; NULL: HOST:PORT once listening */
  int reasoning_format;     /* --reasoning-format: a serve_reasoning_format (reasoning.h) */
} serve_config;

typedef enum serve_phase {
  SERVE_LOADING = 0, /* the model is being opened: most routes answer 503 */
  SERVE_READY = 1,
  SERVE_DRAINING = 2, /* SIGTERM: new requests answer 503, running ones finish */
} serve_phase;

typedef struct serve_app {
  const serve_config *config;
  serve_keys *keys; /* NULL: no --api-keys, everyone is tenant "default" */
  char model_name[256];
  int64_t started; /* when the server started (Unix time), for /v1/models */
  /* X-Qiao-Replica: NULL until named (the default name needs the port, known
   * only once listening), then points at replica_name_buf and never changes. */
  _Atomic(const char *) replica_name;
  char replica_name_buf[SERVE_REPLICA_NAME_MAX + 1];
  _Atomic int phase; /* a serve_phase */

  /* Set while loading, read-only once phase is READY. */
  qiao_model *model;
  qiao_tokenizer *tokenizer;
  qiao_pool *pool;
  qiao_scheduler *scheduler;
  qiao_template *chat_template;      /* NULL: the model has none and no --chat-template */
  char bos_text[256], eos_text[256]; /* the template's bos_token / eos_token */
  uint32_t vocab_size, max_context;
  /* Chat replies' <think> part goes to reasoning_content (--reasoning-format
   * deepseek, or auto and the vocabulary has the tags); requests may turn it
   * off. */
  bool reasoning;

  /* HTTP requests between their first byte and their last response byte:
   * shutdown waits for this to reach 0. */
  atomic_uint in_flight;
} serve_app;

static inline serve_phase serve_app_phase(serve_app *app) {
  return (serve_phase)atomic_load_explicit(&app->phase, memory_order_acquire);
}

#endif
