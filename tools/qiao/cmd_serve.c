/* qiao serve: an OpenAI-compatible HTTP server.
 *
 * Layers: the HTTP edge (serve/) -> the scheduler (qiao/scheduler.h) ->
 * the device pool (qiao/pool.h) -> engines. This file reads the flags,
 * starts the HTTP server (so /health answers 503 while loading), loads the
 * model onto the devices, then waits for SIGTERM/SIGINT and drains: no new
 * connections, running requests get --grace seconds, then exit 0. */
#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"
#include "engine_cli.h"
#include "serve/app.h"
#include "serve/reasoning.h"
#include "serve/server.h"
#ifdef QIAO_HAVE_MPI
#include "pipeline/pipeline.h"
#endif

struct qiao_pipeline; /* --mpi (src/pipeline), NULL without */

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: qiao serve [-m MODEL] [flags]\n"
      "An OpenAI-compatible HTTP server: POST /v1/completions, /v1/chat/completions,\n"
      "/tokenize, /detokenize; GET /v1/models, /health, /metrics.\n"
      "  -m MODEL              .qiao/.gguf file, HF directory or llama2.c .bin\n"
      "                        (default: stories260K.gguf in $QIAO_SHARED or ../shared)\n"
      "  --tokenizer PATH      the tok.bin of a llama2.c .bin (or a tokenizer for an HF folder)\n"
      "  --host HOST           address to listen on (default 127.0.0.1)\n"
      "  --port N              port, 0 = any free one (default 8080)\n"
      "  -t N                  host threads per device (default: the backend's choice)\n"
      "  --device SPEC         a device to serve on: BACKEND or BACKEND:INDEX (cpu, opencl:0,\n"
      "                        a plugin path); repeat for one replica per device (default cpu)\n"
      "  --split SPEC          a replica whose layers span devices: cpu:0-11,opencl:12-23 or\n"
      "                        cpu,opencl (repeatable, mixes with --device)\n"
      "  --split-by HOW        for a --split without ranges: layers (default) or memory\n"
      "  --slots N             sequences each device runs at once (default 8)\n"
      "  --ctx N               positions per sequence (default: min(model context, 4096))\n"
      "  --api-keys FILE       require keys: lines 'KEY TENANT [max_running=N] [max_queued=N]\n"
      "                        [tpm=N] [weight=N]'; the file must be chmod 600\n"
      "  --chat-template FILE  a Jinja chat template instead of the model's own\n"
      "  --model-name NAME     the model's name in responses (default: the file's name)\n"
      "  --replica-name NAME   this process's name in the X-Qiao-Replica response header\n"
      "                        (default HOST:PORT; 1-64 of A-Z a-z 0-9 - . _ : [ ])\n"
      "  --max-queue N         requests waiting, all tenants together (default 64)\n"
      "  --max-body BYTES      largest request body (default 1048576)\n"
      "  --timeout SECONDS     drop idle or slow connections (default 30)\n"
      "  --grace SECONDS       on SIGTERM, time for running requests to finish (default 10)\n"
      "  --step-tokens N       tokens per engine step (default 256)\n"
      "  --no-prefix-cache     do not reuse the KV cache of shared prompt prefixes\n"
      "  --no-batch-invariant  allow devices whose results depend on the batch\n"
      "  --exact               F32 activations for Q8_0/Q4_0 weights too (default: the\n"
      "                        device may quantize them to int8, device ABI 1.2)\n"
      "  --log-prompts         include prompt text in the request log (stderr)\n"
      "  --reasoning-format F  chat replies of reasoning models (DeepSeek-R1, Qwen3, QwQ):\n"
      "                        deepseek: the <think> part goes to reasoning_content; none:\n"
      "                        it stays in content; auto (default): deepseek when the\n"
      "                        vocabulary has <think> and </think> tokens\n"
      "  --mpi                 under mpirun -np N: one replica whose layers are split over\n"
      "                        the ranks (balanced by weight bytes, rank 0's including\n"
      "                        the output; on each rank's --device, or over its --split\n"
      "                        devices, no ranges, as --split-by says);\n"
      "                        rank 0 serves HTTP, the others run their layers. A rank\n"
      "                        that does not answer within QIAO_MPI_TIMEOUT_S (120) s\n"
      "                        takes the replica out: /health answers 503. While idle,\n"
      "                        rank 0 checks the others every QIAO_MPI_HEARTBEAT_S (5) s\n"
      "                        (0: never)\n"
      "  --mpi-depth N         with --mpi: N replicas over the same ranks, each with its own\n"
      "                        --slots and KV cache, their passes in flight together so\n"
      "                        every rank works at once (default: the number of ranks;\n"
      "                        1 = a relay, one rank at a time)\n"
      "The server prints 'qiao serve: listening on http://HOST:PORT' on stderr once it\n"
      "listens; GET /health answers 503 until the model is loaded, then 200.\n"
      "Behind a load balancer (examples/scale-out/), clients send X-Qiao-Session: KEY\n"
      "(1-128 of A-Z a-z 0-9 - . _ ~ : + / = @) with every request of a conversation;\n"
      "balancers hash on it so the conversation stays on the replica whose prefix\n"
      "cache holds it. Every response says who answered in X-Qiao-Replica.\n");
}

/* Reads a chat template file (at most 1 MiB) and compiles it. */
static qiao_status *load_template_file(const char *path, qiao_template **out) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return qiao__error(QIAO_IO, "--chat-template %s: %s", path, strerror(errno));
  char *text = NULL;
  size_t len = 0;
  qiao_status *st = qiao_cli_read_all(f, path, &text, &len);
  fclose(f);
  if (st == NULL && len > (1u << 20))
    st = qiao__error(QIAO_LIMIT, "--chat-template %s is larger than 1 MiB", path);
  if (st == NULL)
    st = qiao__annotate(qiao_template_compile(text, len, out), "--chat-template %s", path);
  free(text);
  return st;
}

/* The template variables bos_token and eos_token, as `qiao chat` sets them. */
static void special_texts(serve_app *app) {
  int32_t bos = qiao_tokenizer_bos_id(app->tokenizer);
  const int32_t *eos_ids = NULL;
  size_t n_eos = qiao_tokenizer_eos_ids(app->tokenizer, &eos_ids);
  const char *bos_text = bos >= 0 ? qiao_tokenizer_token_text(app->tokenizer, bos) : NULL;
  const char *eos_text = n_eos > 0 ? qiao_tokenizer_token_text(app->tokenizer, eos_ids[0]) : NULL;
  snprintf(app->bos_text, sizeof(app->bos_text), "%s", bos_text ? bos_text : "");
  snprintf(app->eos_text, sizeof(app->eos_text), "%s", eos_text ? eos_text : "");
}

#ifdef QIAO_HAVE_MPI
/* --mpi: this rank's engine options, the same on every rank (each opens an
 * engine whose KV cache limits must equal rank 0's): its --device, the
 * slots, the context and KV blocks as the pool would pick them, then its
 * share of the layers. `backend` holds the backend's name. */
static qiao_status *rank_engine_options(const serve_config *c, struct qiao_pipeline *pipe,
                                        const qiao_model *model, const qiao_hparams *hp,
                                        char *backend, size_t cap, qiao_engine_options *eo) {
  *eo = qiao_engine_default_options();
  const char *spec = c->devices[0], *colon = strrchr(spec, ':');
  size_t len = strlen(spec);
  if (strchr(spec, ',') != NULL) { /* --split: this rank's share over its devices */
    eo->split = spec;
    spec = "cpu";
    colon = NULL;
    len = 3;
  }
  if (colon != NULL && colon[1] != '\0' && strlen(colon + 1) <= 6 &&
      strspn(colon + 1, "0123456789") == strlen(colon + 1)) {
    eo->device_index = (uint32_t)strtoul(colon + 1, NULL, 10);
    len = (size_t)(colon - spec);
  }
  if (len == 0 || len >= cap)
    return qiao__error(QIAO_INVALID_ARGUMENT, "--device %s: not BACKEND or BACKEND:INDEX", spec);
  memcpy(backend, spec, len);
  backend[len] = '\0';
  eo->backend = backend;
  eo->n_threads = c->n_threads;
  eo->max_seqs = c->slots;
  eo->max_context = c->ctx;
  uint32_t ctx =
      c->ctx ? c->ctx
             : (hp->context_length && hp->context_length < 4096 ? hp->context_length : 4096);
  uint64_t blocks = ((uint64_t)ctx + 15) / 16 * c->slots; /* 16 positions a block */
  eo->n_blocks = blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)blocks;
  eo->batch_invariant = c->batch_invariant;
  eo->exact_matmul = c->exact_matmul;
  eo->split_by = c->split_by_memory ? QIAO_ENGINE_SPLIT_BY_MEMORY : QIAO_ENGINE_SPLIT_BY_LAYERS;
  eo->verbose = true;
  engine_cli_warn_mpi_threads(qiao__pipeline_rank(pipe), c->n_threads);
  return qiao__pipeline_engine_options(pipe, model, eo);
}

/* --mpi, rank 0: the pool's replicas (one per channel of the pipeline's
 * depth) have the other ranks' layers as external stages. specs[i] (owned
 * by pipe) is replica i's split, users[i] its channel. */
static qiao_status *mpi_pool_options(const serve_app *app, struct qiao_pipeline *pipe,
                                     qiao_pool_options *po, const char **specs, void **users) {
  qiao_hparams hp;
  char backend[160];
  qiao_engine_options eo;
  QIAO__TRY(qiao_model_get_hparams(app->model, &hp));
  QIAO__TRY(rank_engine_options(app->config, pipe, app->model, &hp, backend, sizeof(backend), &eo));
  for (uint32_t i = 0; i < qiao__pipeline_depth(pipe); i++) {
    specs[i] = eo.split;
    users[i] = qiao__pipeline_channel(pipe, i);
  }
  po->external = eo.external;
  po->split_by = eo.split_by; /* each rank's ranges are in its split */
  po->external_users = users;
  po->shared_fate = true; /* a lost rank is every replica's */
  po->kv_blocks = eo.n_blocks;
  return NULL;
}

/* --mpi, rank 0: the idle heartbeat lost a rank: every replica is out
 * (shared_fate), so /health answers 503 naming it and requests fail fast. */
static void mpi_rank_lost(void *user, const char *why) {
  serve_app *app = user;
  qiao_pool_take_out(app->pool, 0, why);
}

/* --mpi, ranks > 0: opens this rank's layers and runs rank 0's passes until
 * rank 0 stops (or the job ends). */
static int run_stage_rank(const serve_config *c, const qiao_cli_model_args *model_args,
                          struct qiao_pipeline *pipe) {
  /* A signal from mpirun ends this rank (its threads inherited a mask). */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
  const int rank = qiao__pipeline_rank(pipe);
  const uint32_t depth = qiao__pipeline_depth(pipe);
  qiao_model *model = NULL;
  qiao_engine *engines[16] = {NULL}; /* one per channel (depth <= 16) */
  qiao_hparams hp;
  char backend[160];
  qiao_engine_options eo;
  qiao_status *st = qiao_cli_open_model(model_args, false, &model);
  if (st == NULL) st = qiao_model_get_hparams(model, &hp);
  if (st == NULL) st = rank_engine_options(c, pipe, model, &hp, backend, sizeof(backend), &eo);
  for (uint32_t i = 0; st == NULL && i < depth; i++)
    st = qiao_engine_create(model, &eo, &engines[i]);
  if (st == NULL) {
    fprintf(stderr, "qiao serve: MPI rank %d: ready, serving rank 0's passes (%u channel%s)\n",
            rank, depth, depth == 1 ? "" : "s");
    engine_cli_print_rank_stages(stderr, rank, engines[0]);
    st = qiao__pipeline_serve(pipe, engines, depth);
  }
  int code = st ? qiao_cli_fail(qiao__annotate(st, "MPI rank %d", rank)) : 0;
  for (uint32_t i = 0; i < depth; i++)
    qiao_engine_destroy(engines[i]);
  qiao_model_close(model);
  qiao__pipeline_close(pipe, code == 0); /* after an error: ends the job */
  return code;
}
#endif

/* Opens the model, tokenizer, template, pool, scheduler and tenants (with
 * --mpi, `pipe`: one replica over the ranks). */
static qiao_status *load(serve_app *app, const qiao_cli_model_args *model_args,
                         struct qiao_pipeline *pipe) {
  const serve_config *c = app->config;
  fprintf(stderr, "qiao serve: loading the model\n");
  QIAO__TRY(qiao_cli_open_model(model_args, true, &app->model));
  QIAO__TRY(engine_cli_open_tokenizer(model_args, app->model, &app->tokenizer));
  if (app->tokenizer == NULL)
    return qiao__error(QIAO_UNSUPPORTED, "the model has no tokenizer (pass --tokenizer)");
  if (app->chat_template == NULL) {
    qiao_string text;
    qiao_status *none = qiao_model_get_string(app->model, "tokenizer.chat_template", &text);
    if (none == NULL) {
      QIAO__TRY(qiao__annotate(qiao_template_compile(text.data, text.len, &app->chat_template),
                               "the model's chat template"));
    } else {
      qiao_status_free(none);
      fprintf(stderr, "qiao serve: the model has no chat template: /v1/chat/completions answers "
                      "400 (pass --chat-template)\n");
    }
  }
  special_texts(app);
  app->reasoning = c->reasoning_format == SERVE_REASONING_DEEPSEEK ||
                   (c->reasoning_format == SERVE_REASONING_AUTO &&
                    serve_reasoning_vocab_has_tags(app->tokenizer));
  if (app->reasoning)
    fprintf(stderr, "qiao serve: chat replies' <think> part goes to reasoning_content%s\n",
            c->reasoning_format == SERVE_REASONING_AUTO
                ? " (the vocabulary has the tags; --reasoning-format none keeps it in content)"
                : "");

  qiao_pool_options po = qiao_pool_default_options();
  po.n_threads = c->n_threads;
  po.slots = c->slots;
  po.max_context = c->ctx;
  po.batch_invariant = c->batch_invariant;
  po.prefix_cache = c->prefix_cache;
  po.exact_matmul = c->exact_matmul;
  po.split_by = c->split_by_memory ? QIAO_ENGINE_SPLIT_BY_MEMORY : QIAO_ENGINE_SPLIT_BY_LAYERS;
  po.verbose = true;
  const char *const *specs = c->devices;
  size_t n_specs = c->n_devices;
#ifdef QIAO_HAVE_MPI
  const char *mpi_specs[16];
  void *mpi_users[16];
  if (pipe != NULL) {
    QIAO__TRY(mpi_pool_options(app, pipe, &po, mpi_specs, mpi_users));
    specs = mpi_specs;
    n_specs = qiao__pipeline_depth(pipe);
  }
#else
  (void)pipe;
#endif
  QIAO__TRY(qiao_pool_create(app->model, specs, n_specs, &po, &app->pool));
  uint32_t model_vocab = qiao_pool_hparams(app->pool)->vocab_size;
  uint32_t tok_vocab = qiao_tokenizer_vocab_size(app->tokenizer);
  app->vocab_size = model_vocab < tok_vocab ? model_vocab : tok_vocab;
  app->max_context = qiao_pool_max_context(app->pool);

  qiao_scheduler_options so = qiao_scheduler_default_options();
  so.max_queued = c->max_queue;
  so.max_step_tokens = c->step_tokens;
  QIAO__TRY(qiao_scheduler_create(app->pool, app->tokenizer, &so, &app->scheduler));
  for (size_t i = 0; app->keys != NULL && i < serve_keys_tenant_count(app->keys); i++) {
    qiao_tenant_limits limits;
    const char *name = serve_keys_tenant(app->keys, i, &limits);
    QIAO__TRY(qiao__annotate(qiao_scheduler_add_tenant(app->scheduler, name, &limits), "tenant %s",
                             name));
  }
  return NULL;
}

static void unload(serve_app *app) {
  qiao_scheduler_destroy(app->scheduler);
  qiao_pool_destroy(app->pool);
  qiao_template_destroy(app->chat_template);
  qiao_tokenizer_destroy(app->tokenizer);
  qiao_model_close(app->model);
  serve_keys_destroy(app->keys);
}

/* The model's name in responses: --model-name, else the file's name. */
static void set_model_name(serve_app *app, const qiao_cli_model_args *m) {
  char path[4096];
  if (app->config->model_name != NULL) {
    snprintf(app->model_name, sizeof(app->model_name), "%s", app->config->model_name);
    return;
  }
  if (m->path != NULL)
    snprintf(path, sizeof(path), "%s", m->path);
  else
    qiao_cli_default_model(path, sizeof(path));
  size_t len = strlen(path);
  while (len > 1 && path[len - 1] == '/') /* a Hugging Face folder given as dir/ */
    path[--len] = '\0';
  snprintf(app->model_name, sizeof(app->model_name), "%s", basename(path));
}

static int run(serve_config *c, const qiao_cli_model_args *model_args, const char *keys_path,
               const char *template_path, struct qiao_pipeline *pipe) {
  serve_app app;
  memset(&app, 0, sizeof(app));
  app.config = c;
  app.started = (int64_t)time(NULL);
  atomic_store(&app.phase, SERVE_LOADING);
  set_model_name(&app, model_args);
  qiao_status *st = NULL;
  /* Problems with the keys or the template refuse to start before listening. */
  if (keys_path != NULL) st = serve_keys_load(keys_path, &app.keys);
  if (st == NULL && template_path != NULL)
    st = load_template_file(template_path, &app.chat_template);
  if (st != NULL) {
    unload(&app);
    return qiao_cli_fail(st);
  }

  /* SIGTERM and SIGINT are taken by sigwait below, in this thread only:
   * block them before any thread starts so that every thread inherits the
   * mask. A peer closing its socket must not kill the server. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
  signal(SIGPIPE, SIG_IGN);

  serve_server *server = NULL;
  st = serve_server_start(&app, &server);
  if (st != NULL) {
    unload(&app);
    return qiao_cli_fail(st);
  }
  const char *host = c->host;
  bool v6 = strchr(host, ':') != NULL;
  if (c->replica_name != NULL)
    snprintf(app.replica_name_buf, sizeof(app.replica_name_buf), "%s", c->replica_name);
  else
    serve_replica_name_default(host, serve_server_port(server), app.replica_name_buf,
                               sizeof(app.replica_name_buf));
  atomic_store_explicit(&app.replica_name, app.replica_name_buf, memory_order_release);
  fprintf(stderr, "qiao serve: listening on http://%s%s%s:%u\n", v6 ? "[" : "", host, v6 ? "]" : "",
          serve_server_port(server));
  fflush(stderr);

  st = load(&app, model_args, pipe);
  if (st != NULL) {
    serve_server_stop(server);
    unload(&app);
    return qiao_cli_fail(st);
  }
#ifdef QIAO_HAVE_MPI
  if (pipe != NULL) st = qiao__pipeline_heartbeat_start(pipe, mpi_rank_lost, &app);
  if (st != NULL) {
    serve_server_stop(server);
    unload(&app);
    return qiao_cli_fail(st);
  }
#endif
  atomic_store_explicit(&app.phase, SERVE_READY, memory_order_release);
  fprintf(stderr, "qiao serve: ready: model %s on %zu device(s), %u slots each, context %u\n",
          app.model_name, c->n_devices, c->slots, app.max_context);
  fflush(stderr);

  int sig = 0;
  while (sigwait(&stop_signals, &sig) != 0)
    continue;
  fprintf(stderr, "qiao serve: %s: draining (up to %u s for running requests)\n",
          sig == SIGINT ? "SIGINT" : "SIGTERM", c->grace_s);
  atomic_store(&app.phase, SERVE_DRAINING);
  serve_server_quiesce(server);
  qiao_scheduler_drain(app.scheduler, c->grace_s * 1000u);
  /* Responses already generated may still be on their way to slow
   * clients: give them until the idle timeout. */
  serve_server_wait_idle(server, c->timeout_s * 1000u);
  serve_server_stop(server);
#ifdef QIAO_HAVE_MPI
  qiao__pipeline_heartbeat_stop(pipe); /* before the pool it takes out goes */
#endif
  unload(&app);
  fprintf(stderr, "qiao serve: stopped\n");
  return 0;
}

/* Parses flag argv[*i] (with its value) into c; 1 consumed, 0 not ours,
 * -1 usage error (printed). */
static int parse_flag(serve_config *c, int argc, char **argv, int *i, const char **keys_path,
                      const char **template_path) {
  const char *a = argv[*i], *v = NULL;
  uint32_t u = 0;
  qiao_status *st = NULL;
#define VALUE()                                                                                    \
  do {                                                                                             \
    if ((v = qiao_cli_flag_value(argc, argv, i)) == NULL) return -1;                               \
  } while (0)
  if (strcmp(a, "--host") == 0) {
    VALUE();
    c->host = v;
  } else if (strcmp(a, "--port") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 0, 65535, &c->port);
  } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 1, 1024, &c->n_threads);
  } else if (strcmp(a, "--device") == 0) {
    VALUE();
    if (c->n_devices == SERVE_MAX_DEVICES)
      st = qiao__error(QIAO_INVALID_ARGUMENT, "--device: at most %d devices", SERVE_MAX_DEVICES);
    else if (*v == '\0')
      st = qiao__error(QIAO_INVALID_ARGUMENT, "--device: empty device spec");
    else
      c->devices[c->n_devices++] = v;
  } else if (strcmp(a, "--split") == 0) { /* one replica whose layers span several devices */
    VALUE();
    if (c->n_devices == SERVE_MAX_DEVICES)
      st = qiao__error(QIAO_INVALID_ARGUMENT, "--split: at most %d replicas", SERVE_MAX_DEVICES);
    else if (*v == '\0')
      st = qiao__error(QIAO_INVALID_ARGUMENT, "--split: empty (want e.g. cpu:0-11,opencl:12-23)");
    else if (strchr(v, ',') == NULL)
      st = qiao__error(QIAO_INVALID_ARGUMENT,
                       "--split: \"%s\" names one device (use --device, or list several)", v);
    else
      c->devices[c->n_devices++] = v;
  } else if (strcmp(a, "--split-by") == 0) {
    VALUE();
    if (strcmp(v, "layers") != 0 && strcmp(v, "memory") != 0)
      st = qiao__error(QIAO_INVALID_ARGUMENT, "--split-by: \"%s\" is not layers or memory", v);
    c->split_by_memory = strcmp(v, "memory") == 0;
  } else if (strcmp(a, "--slots") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 1, 4096, &c->slots);
  } else if (strcmp(a, "--ctx") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 0, 1u << 24, &c->ctx);
  } else if (strcmp(a, "--api-keys") == 0) {
    VALUE();
    *keys_path = v;
  } else if (strcmp(a, "--chat-template") == 0) {
    VALUE();
    *template_path = v;
  } else if (strcmp(a, "--model-name") == 0) {
    VALUE();
    if (*v == '\0' || strlen(v) > 255)
      st = qiao__error(QIAO_INVALID_ARGUMENT, "--model-name: 1 to 255 bytes");
    c->model_name = v;
  } else if (strcmp(a, "--replica-name") == 0) {
    VALUE();
    if (!serve_replica_name_valid(v))
      st = qiao__error(QIAO_INVALID_ARGUMENT,
                       "--replica-name: 1 to %d characters of A-Z a-z 0-9 - . _ : [ ]",
                       SERVE_REPLICA_NAME_MAX);
    c->replica_name = v;
  } else if (strcmp(a, "--max-queue") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 1, 1000000, &c->max_queue);
  } else if (strcmp(a, "--max-body") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 1, 1u << 30, &u);
    c->max_body = u;
  } else if (strcmp(a, "--timeout") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 1, 86400, &c->timeout_s);
  } else if (strcmp(a, "--grace") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 0, 86400, &c->grace_s);
  } else if (strcmp(a, "--step-tokens") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 1, 1u << 20, &c->step_tokens);
  } else if (strcmp(a, "--no-prefix-cache") == 0) {
    c->prefix_cache = false;
  } else if (strcmp(a, "--no-batch-invariant") == 0) {
    c->batch_invariant = false;
  } else if (strcmp(a, "--exact") == 0) {
    c->exact_matmul = true;
  } else if (strcmp(a, "--log-prompts") == 0) {
    c->log_prompts = true;
  } else if (strcmp(a, "--reasoning-format") == 0) {
    VALUE();
    serve_reasoning_format f = SERVE_REASONING_AUTO;
    if (!serve_reasoning_format_parse(v, &f))
      st = qiao__error(QIAO_INVALID_ARGUMENT,
                       "--reasoning-format: \"%s\" is not auto, deepseek or none", v);
    c->reasoning_format = (int)f;
  } else {
    return 0;
  }
#undef VALUE
  if (st != NULL) {
    qiao_cli_fail(st);
    return -1;
  }
  return 1;
}

int qiao_cmd_serve(int argc, char **argv) {
  serve_config c = {
      .host = "127.0.0.1",
      .port = 8080,
      .slots = 8,
      .max_queue = 64,
      .max_body = 1u << 20,
      .timeout_s = 30,
      .grace_s = 10,
      .prefix_cache = true,
      .batch_invariant = true,
  };
  qiao_cli_model_args model = {0};
  const char *keys_path = NULL, *template_path = NULL;
  bool mpi = false;
  const char *mpi_depth = NULL; /* --mpi-depth: default the number of ranks */
  for (int i = 1; i < argc; i++) {
    if (qiao_cli_is_help(argv[i])) {
      usage(stdout);
      return 0;
    }
    if (strcmp(argv[i], "--mpi") == 0) {
      mpi = true;
      continue;
    }
    if (strcmp(argv[i], "--mpi-depth") == 0) {
      if ((mpi_depth = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
      continue;
    }
    int r = qiao_cli_parse_model_arg(&model, false, argc, argv, &i);
    if (r == 2) return 2;
    if (r == 1) continue;
    r = parse_flag(&c, argc, argv, &i, &keys_path, &template_path);
    if (r < 0) return 2;
    if (r == 0) return qiao_cli_unknown_arg("serve", argv[i]);
  }
  if (c.n_devices == 0) c.devices[c.n_devices++] = "cpu";
  if (!mpi && mpi_depth != NULL)
    return qiao_cli_fail(qiao__error(QIAO_INVALID_ARGUMENT, "--mpi-depth: only with --mpi"));
  if (!mpi) return run(&c, &model, keys_path, template_path, NULL);
#ifdef QIAO_HAVE_MPI
  if (c.n_devices > 1)
    return qiao_cli_fail(qiao__error(QIAO_INVALID_ARGUMENT,
                                     "--mpi: one --device or --split per rank (replicas over the "
                                     "same ranks: --mpi-depth)"));
  /* MPI starts threads: they must inherit the mask that leaves SIGTERM and
   * SIGINT to serve's sigwait (see run). */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
  struct qiao_pipeline *pipe = NULL;
  qiao_status *st = qiao__pipeline_open(&argc, &argv, &pipe);
  if (st != NULL) return qiao_cli_fail(st);
  uint32_t depth = (uint32_t)qiao__pipeline_size(pipe);
  if (mpi_depth != NULL) st = qiao_cli_parse_u32("--mpi-depth", mpi_depth, 1, 16, &depth);
  if (st == NULL) st = qiao__pipeline_set_depth(pipe, depth);
  if (st != NULL) {
    qiao_cli_fail(st);
    qiao__pipeline_close(pipe, false);
    return 2;
  }
  if (qiao__pipeline_rank(pipe) > 0) return run_stage_rank(&c, &model, pipe);
  int code = run(&c, &model, keys_path, template_path, pipe);
  /* Stops the other ranks; after an error, or with a rank lost, ends the
   * job (MPI_Abort) so that none waits forever. */
  qiao__pipeline_close(pipe, code == 0);
  return code;
#else
  return qiao_cli_fail(qiao__error(QIAO_UNSUPPORTED, "--mpi: this qiao was built without MPI"));
#endif
}
