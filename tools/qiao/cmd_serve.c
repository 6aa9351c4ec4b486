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
#include "serve/server.h"

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
      "  --slots N             sequences each device runs at once (default 8)\n"
      "  --ctx N               positions per sequence (default: min(model context, 4096))\n"
      "  --api-keys FILE       require keys: lines 'KEY TENANT [max_running=N] [max_queued=N]\n"
      "                        [tpm=N] [weight=N]'; the file must be chmod 600\n"
      "  --chat-template FILE  a Jinja chat template instead of the model's own\n"
      "  --model-name NAME     the model's name in responses (default: the file's name)\n"
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
      "The server prints 'qiao serve: listening on http://HOST:PORT' on stderr once it\n"
      "listens; GET /health answers 503 until the model is loaded, then 200.\n");
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

/* Opens the model, tokenizer, template, pool, scheduler and tenants. */
static qiao_status *load(serve_app *app, const qiao_cli_model_args *model_args) {
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

  qiao_pool_options po = qiao_pool_default_options();
  po.n_threads = c->n_threads;
  po.slots = c->slots;
  po.max_context = c->ctx;
  po.batch_invariant = c->batch_invariant;
  po.prefix_cache = c->prefix_cache;
  po.exact_matmul = c->exact_matmul;
  po.verbose = true;
  QIAO__TRY(qiao_pool_create(app->model, c->devices, c->n_devices, &po, &app->pool));
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
               const char *template_path) {
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
  fprintf(stderr, "qiao serve: listening on http://%s%s%s:%u\n", v6 ? "[" : "", host, v6 ? "]" : "",
          serve_server_port(server));
  fflush(stderr);

  st = load(&app, model_args);
  if (st != NULL) {
    serve_server_stop(server);
    unload(&app);
    return qiao_cli_fail(st);
  }
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
  for (int i = 1; i < argc; i++) {
    if (qiao_cli_is_help(argv[i])) {
      usage(stdout);
      return 0;
    }
    int r = qiao_cli_parse_model_arg(&model, false, argc, argv, &i);
    if (r == 2) return 2;
    if (r == 1) continue;
    r = parse_flag(&c, argc, argv, &i, &keys_path, &template_path);
    if (r < 0) return 2;
    if (r == 0) return qiao_cli_unknown_arg("serve", argv[i]);
  }
  if (c.n_devices == 0) c.devices[c.n_devices++] = "cpu";
  return run(&c, &model, keys_path, template_path);
}
