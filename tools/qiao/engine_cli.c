#include "engine_cli.h"
#include "grammar_cli.h"

#ifdef __linux__
#include <sched.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "core/status_internal.h"
#ifdef QIAO_HAVE_MPI
#include "pipeline/pipeline.h"
#endif

double engine_cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void engine_cli_opts_init(engine_cli_opts *o) {
  memset(o, 0, sizeof(*o));
  o->backend = "cpu";
  o->sampling = qiao_sampler_default_params();
}

int engine_cli_parse_flag(engine_cli_opts *o, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  qiao_status *st = NULL;
  const char *v = NULL;
#define VALUE()                                                                                    \
  do {                                                                                             \
    v = qiao_cli_flag_value(argc, argv, i);                                                        \
    if (v == NULL) return -1;                                                                      \
  } while (0)
  int r = qiao_cli_parse_model_arg(&o->model, false, argc, argv, i);
  if (r == 0) r = qiao_cli_parse_backend(argc, argv, i, &o->backend);
  if (r != 0) return r == 1 ? 1 : -1;
  if (strcmp(a, "--allow-fallback") == 0) {
    o->allow_fallback = true;
  } else if (strcmp(a, "--batch-invariant") == 0) {
    o->batch_invariant = true;
  } else if (strcmp(a, "--exact") == 0) {
    o->exact_matmul = true;
  } else if (strcmp(a, "--device") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 0, UINT32_MAX, &o->device_index);
  } else if (strcmp(a, "--split") == 0) {
    VALUE();
    if (v[0] == '\0')
      st = qiao__error(QIAO_INVALID_ARGUMENT, "--split: empty (want e.g. cpu:0-11,opencl:12-23)");
    o->split = v;
  } else if (strcmp(a, "--mpi") == 0) {
    o->mpi = true;
  } else if (strcmp(a, "--split-by") == 0) {
    VALUE();
    if (strcmp(v, "layers") == 0)
      o->split_by = QIAO_ENGINE_SPLIT_BY_LAYERS;
    else if (strcmp(v, "memory") == 0)
      o->split_by = QIAO_ENGINE_SPLIT_BY_MEMORY;
    else
      st = qiao__error(QIAO_INVALID_ARGUMENT, "--split-by: \"%s\" is not layers or memory", v);
  } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 1, 1024, &o->n_threads);
  } else if (strcmp(a, "--temp") == 0) {
    VALUE();
    st = qiao_cli_parse_f32(a, v, 0, 100, &o->sampling.temperature);
  } else if (strcmp(a, "--top-k") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 0, UINT32_MAX, &o->sampling.top_k);
  } else if (strcmp(a, "--top-p") == 0) {
    VALUE();
    st = qiao_cli_parse_f32(a, v, 0, 1, &o->sampling.top_p);
  } else if (strcmp(a, "--min-p") == 0) {
    VALUE();
    st = qiao_cli_parse_f32(a, v, 0, 1, &o->sampling.min_p);
  } else if (strcmp(a, "--repeat-penalty") == 0) {
    VALUE();
    st = qiao_cli_parse_f32(a, v, 0.01f, 100, &o->sampling.repeat_penalty);
  } else if (strcmp(a, "--presence-penalty") == 0) {
    VALUE();
    st = qiao_cli_parse_f32(a, v, -100, 100, &o->sampling.presence_penalty);
  } else if (strcmp(a, "--frequency-penalty") == 0) {
    VALUE();
    st = qiao_cli_parse_f32(a, v, -100, 100, &o->sampling.frequency_penalty);
  } else if (strcmp(a, "--repeat-last-n") == 0) {
    VALUE();
    st = qiao_cli_parse_u32(a, v, 0, UINT32_MAX, &o->sampling.penalty_window);
  } else if (strcmp(a, "--seed") == 0) {
    VALUE();
    st = qiao_cli_parse_u64(a, v, &o->sampling.seed);
    o->seed_given = true;
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

void engine_cli_print_device_flags(FILE *f) {
  fprintf(
      f,
      "  -m MODEL              .qiao/.gguf file, HF directory or llama2.c .bin\n"
      "                        (default: stories260K.gguf in $QIAO_SHARED or ../shared)\n"
      "  --tokenizer PATH      the tok.bin of a llama2.c .bin (or a tokenizer for an HF folder)\n"
      "  -t N                  threads (default: the backend's choice)\n"
      "  --backend NAME|PATH   device backend (default cpu)\n"
      "  --device N            which device of the backend (default 0)\n"
      "  --split SPEC          layers across devices: cpu:0-11,opencl:12-23 (BACKEND[:DEVICE]:\n"
      "                        FIRST-LAST, every layer once, in order), or cpu,opencl\n"
      "  --split-by HOW        for a --split without ranges: layers (even, default) or\n"
      "                        memory (in proportion to each device's memory)\n"
      "  --mpi                 under mpirun -np N: each rank runs a share of the layers\n"
      "                        (balanced by weight bytes; rank 0's includes the output) on\n"
      "                        its --backend/--device, or over the devices of its --split\n"
      "                        (no ranges; --split-by applies); rank 0 does the rest\n"
      "  --allow-fallback      run ops the backend lacks on the built-in cpu backend\n"
      "  --batch-invariant     results of a sequence independent of the rest of its batch\n"
      "                        (the device must claim QIAO_DEV_FLAG_BATCH_INVARIANT)\n"
      "  --exact               F32 activations for Q8_0/Q4_0 weights too (default: the\n"
      "                        backend may quantize them to int8, device ABI 1.2)\n");
}

void engine_cli_print_sampling_flags(FILE *f) {
  fprintf(
      f, "  --temp T              temperature, 0 = greedy (default 0.8)\n"
         "  --top-k K             keep the K most likely tokens, 0 = off (default 40)\n"
         "  --top-p P             nucleus sampling, 1 = off (default 0.95)\n"
         "  --min-p P             drop tokens below P x the best one's probability (default 0.05)\n"
         "  --repeat-penalty R    penalize repeats in the last 64 tokens, 1 = off (default)\n"
         "  --presence-penalty X, --frequency-penalty X, --repeat-last-n N\n"
         "  --seed S              PRNG seed (default: from the clock, printed on stderr)\n");
}

void engine_cli_apply(const engine_cli_opts *o, qiao_engine_options *eo) {
  eo->backend = o->backend;
  eo->n_threads = o->n_threads;
  eo->allow_fallback = o->allow_fallback;
  eo->device_index = o->device_index;
  eo->batch_invariant = o->batch_invariant;
  eo->exact_matmul = o->exact_matmul;
  eo->split = o->split;
  eo->split_by = o->split_by;
}

qiao_status *engine_cli_split_status(qiao_status *st) {
  if (st != NULL && strncmp(qiao_status_message(st), "split", 5) == 0)
    return qiao__annotate(st, "--split");
  return st;
}

static void print_size(FILE *f, uint64_t bytes) {
  if (bytes >= (1ull << 30))
    fprintf(f, "%8.2f GiB", (double)bytes / (1ull << 30));
  else
    fprintf(f, "%8.2f MiB", (double)bytes / (1ull << 20));
}

void engine_cli_print_placement(FILE *f, const qiao_engine_stage_info *stages, uint32_t n) {
  fprintf(f, "placement: %u stage%s\n", n, n == 1 ? "" : "s");
  for (uint32_t i = 0; i < n; i++) {
    const qiao_engine_stage_info *g = &stages[i];
    fprintf(f, "  stage %u: %s:%u (%s) layers %u-%u%s%s\n", i, g->backend, g->device_index,
            g->device, g->first_layer, g->last_layer, g->embedding ? ", embedding" : "",
            g->output ? ", output" : "");
    fprintf(f, "    weights ");
    print_size(f, g->weight_bytes);
    fprintf(f, ", KV cache ");
    print_size(f, g->kv_cache_bytes);
    fprintf(f, ", scratch ");
    print_size(f, g->scratch_bytes);
    fprintf(f, ", device memory ");
    if (g->memory_bytes)
      print_size(f, g->memory_bytes);
    else
      fprintf(f, "not reported");
    fprintf(f, "\n");
    if (!g->output)
      fprintf(f, "    to stage %u: %llu bytes per token\n", i + 1,
              (unsigned long long)g->boundary_bytes_per_token);
  }
}

void engine_cli_warn_mpi_threads(int rank, uint32_t n_threads) {
#ifdef __linux__
  cpu_set_t set;
  if (n_threads == 0 || sched_getaffinity(0, sizeof(set), &set) != 0) return;
  const int usable = CPU_COUNT(&set);
  if (usable <= 0 || n_threads <= (uint32_t)usable) return;
  fprintf(stderr,
          "qiao: warning: MPI rank %d may run on %d CPU%s but -t asks for %u threads: they will "
          "take turns (mpirun binds ranks to cores or sockets unless given --bind-to none; "
          "--map-by slot:PE=%u gives each rank %u cores)\n",
          rank, usable, usable == 1 ? "" : "s", n_threads, n_threads, n_threads);
#else
  (void)rank;
  (void)n_threads;
#endif
}

void engine_cli_print_rank_stages(FILE *f, int rank, const qiao_engine *engine) {
  fprintf(f, "MPI rank %d: layers on", rank);
  const char *sep = " ";
  for (uint32_t i = 0; i < qiao_engine_stage_count(engine); i++) {
    qiao_engine_stage_info g = {.struct_size = sizeof(g)};
    qiao_engine_stage_info_get(engine, i, &g);
    if (strcmp(g.backend, "external") == 0) continue;
    fprintf(f, "%s%s:%u (%u-%u)", sep, g.backend, g.device_index, g.first_layer, g.last_layer);
    sep = ", ";
  }
  fprintf(f, "\n");
  fflush(f);
}

qiao_status *engine_cli_open_tokenizer(const qiao_cli_model_args *a, const qiao_model *model,
                                       qiao_tokenizer **out) {
  /* The --tokenizer file when given (unless it was attached to a llama2.c
   * model), else the model's own; none is fine (ids only). */
  *out = NULL;
  if (a->tokenizer_path != NULL && strcmp(qiao_model_format(model), "llama2c") != 0)
    return qiao_tokenizer_open(a->tokenizer_path, out);
  qiao_status *st = qiao_tokenizer_create_from_model(model, out);
  if (qiao_status_code(st) == QIAO_NOT_FOUND) {
    qiao_status_free(st);
    st = NULL;
    *out = NULL;
  }
  return st;
}

qiao_status *engine_cli_open(const engine_cli_opts *o, qiao_engine_options *eo,
                             engine_cli_session *out) {
  memset(out, 0, sizeof(*out));
  QIAO__TRY(qiao_cli_open_model(&o->model, false, &out->model));
  qiao_status *st = engine_cli_open_tokenizer(&o->model, out->model, &out->tokenizer);
  if (st == NULL) st = engine_cli_create_engine(o, eo, out);
  if (st != NULL) engine_cli_close(out);
  return st;
}

qiao_status *engine_cli_create_engine(const engine_cli_opts *o, qiao_engine_options *eo,
                                      engine_cli_session *out) {
  qiao_status *st = NULL;
  engine_cli_apply(o, eo);
  if (o->mpi) {
#ifdef QIAO_HAVE_MPI
    st = qiao__pipeline_open(NULL, NULL, &out->pipeline);
    const uint32_t depth = o->mpi_depth > 1 ? o->mpi_depth : 1;
    if (st == NULL) st = qiao__pipeline_set_depth(out->pipeline, depth);
    if (st == NULL) {
      engine_cli_warn_mpi_threads(qiao__pipeline_rank(out->pipeline), o->n_threads);
      st = qiao__pipeline_engine_options(out->pipeline, out->model, eo);
    }
    if (st == NULL) st = qiao_engine_create(out->model, eo, &out->engine);
    for (uint32_t i = 1; st == NULL && i < depth; i++) { /* one engine per channel */
      qiao_engine_options more = *eo;
      if (more.external != NULL) more.external_user = qiao__pipeline_channel(out->pipeline, i);
      st = qiao_engine_create(out->model, &more, &out->more[i - 1]);
      if (st == NULL) out->n_more = i;
    }
    if (st == NULL && qiao__pipeline_rank(out->pipeline) > 0) {
      engine_cli_print_rank_stages(stderr, qiao__pipeline_rank(out->pipeline), out->engine);
      qiao_engine *engines[16] = {out->engine};
      for (uint32_t i = 1; i < depth; i++)
        engines[i] = out->more[i - 1];
      st = qiao__pipeline_serve(out->pipeline, engines, depth);
      out->worker = st == NULL;
    }
    if (st != NULL && out->pipeline != NULL) { /* no rank may wait for this one */
      fprintf(stderr, "error: rank %d: %s\n", qiao__pipeline_rank(out->pipeline),
              qiao_status_message(st));
      qiao__pipeline_close(out->pipeline, false);
    }
#else
    st = qiao__error(QIAO_UNSUPPORTED, "--mpi: this qiao was built without MPI");
#endif
  } else {
    st = engine_cli_split_status(qiao_engine_create(out->model, eo, &out->engine));
  }
  return st;
}

int engine_cli_end(engine_cli_session *s, qiao_status *st) {
  int code = st ? qiao_cli_fail(st) : 0;
#ifdef QIAO_HAVE_MPI
  if (s->pipeline != NULL) {
    struct qiao_pipeline *p = s->pipeline;
    s->pipeline = NULL;
    engine_cli_close(s);
    qiao__pipeline_close(p, code == 0);
    return code;
  }
#endif
  engine_cli_close(s);
  return code;
}

void engine_cli_close(engine_cli_session *s) {
  for (uint32_t i = 0; i < s->n_more; i++)
    qiao_engine_destroy(s->more[i]);
  qiao_engine_destroy(s->engine);
  qiao_tokenizer_destroy(s->tokenizer);
  qiao_model_close(s->model);
  memset(s, 0, sizeof(*s));
}

/* Feeds tokens at positions [start, start + n) of seq and gets the next
 * token sampled from the last one's logits. */
static qiao_status *feed(engine_cli_session *s, int32_t seq, qiao_sampler *sampler, grammar_cli *gr,
                         const int32_t *tokens, size_t n, float *logits, int32_t *out_next) {
  uint32_t start = qiao_engine_seq_length(s->engine, seq);
  int32_t *seqs = malloc(n * sizeof(int32_t)), *pos = malloc(n * sizeof(int32_t));
  if (seqs == NULL || pos == NULL) {
    free(seqs);
    free(pos);
    return qiao__error(QIAO_OUT_OF_MEMORY, "run: out of memory");
  }
  for (size_t i = 0; i < n; i++) {
    seqs[i] = seq;
    pos[i] = (int32_t)(start + i);
  }
  qiao_batch batch = {n, tokens, seqs, pos, NULL};
  qiao_status *st = NULL;
  if (gr != NULL && gr->matcher != NULL) { /* constrained: mask, sample, advance the grammar */
    const uint32_t *mask = NULL;
    st = qiao_engine_forward(s->engine, &batch, logits, NULL);
    if (st == NULL) st = grammar_cli_mask(gr, &mask);
    if (st == NULL) st = qiao_sampler_sample_masked(sampler, logits, mask, out_next, NULL);
    if (st == NULL) st = qiao_grammar_matcher_accept_token(gr->matcher, *out_next);
  } else if (qiao_sampler_is_greedy(sampler)) {
    st = qiao_engine_forward(s->engine, &batch, NULL, out_next);
  } else {
    st = qiao_engine_forward(s->engine, &batch, logits, NULL);
    if (st == NULL) st = qiao_sampler_sample(sampler, logits, out_next, NULL);
  }
  free(seqs);
  free(pos);
  return st;
}

static qiao_status *show(const engine_cli_gen *g, const char *text, size_t len) {
  FILE *out = g->out;
  if (g->on_text != NULL) {
    if (len > 0) g->on_text(g->on_text_ctx, text, len);
    return NULL;
  }
  if (len > 0 && fwrite(text, 1, len, out) != len)
    return qiao__error(QIAO_IO, "writing the output failed");
  fflush(out);
  return NULL;
}

qiao_status *engine_cli_generate(engine_cli_session *s, int32_t seq, qiao_sampler *sampler,
                                 const int32_t *prompt, size_t n_prompt, engine_cli_gen *g) {
  g->n_generated = 0;
  g->prefill_s = g->decode_s = 0;
  const uint32_t max_ctx = qiao_engine_max_context(s->engine);
  if (n_prompt == 0) return qiao__error(QIAO_INVALID_ARGUMENT, "run: empty prompt");
  if (qiao_engine_seq_length(s->engine, seq) + n_prompt > max_ctx)
    return qiao__error(QIAO_LIMIT, "run: the prompt (%zu tokens) does not fit the context of %u",
                       n_prompt, max_ctx);
  uint32_t vocab = qiao_engine_hparams(s->engine)->vocab_size;
  float *logits = malloc((size_t)vocab * sizeof(float));
  qiao_detokenizer *detok = NULL;
  qiao_stopper *stopper = NULL;
  qiao_status *st = logits ? NULL : qiao__error(QIAO_OUT_OF_MEMORY, "run: out of memory");
  if (st == NULL && s->tokenizer != NULL && !g->print_ids)
    st = qiao_detokenizer_create(s->tokenizer, &detok);
  if (st == NULL) st = qiao_stopper_create(g->stops, g->n_stops, &stopper);
  /* The detokenizer sees the prompt too (e.g. SentencePiece drops the space
   * of the first word after BOS), but its text is not shown. */
  const char *text;
  size_t len;
  for (size_t i = 0; st == NULL && detok != NULL && i < n_prompt; i++)
    st = qiao_detokenizer_push(detok, prompt[i], &text, &len);
  for (size_t i = 0; i < n_prompt; i++)
    qiao_sampler_accept(sampler, prompt[i]);

  int32_t next = 0;
  double t0 = engine_cli_now();
  if (st == NULL) st = feed(s, seq, sampler, g->grammar, prompt, n_prompt, logits, &next);
  double t1 = engine_cli_now();
  g->prefill_s = t1 - t0;
  bool stopped = false, first_id = true;
  while (st == NULL && !stopped) {
    if (s->tokenizer != NULL && qiao_tokenizer_is_eos(s->tokenizer, next)) break;
    if (g->generated) g->generated[g->n_generated] = next;
    g->n_generated++;
    qiao_sampler_accept(sampler, next);
    if (g->print_ids) {
      fprintf(g->out, first_id ? "%d" : " %d", next);
      fflush(g->out);
      first_id = false;
    } else if (detok != NULL) {
      st = qiao_detokenizer_push(detok, next, &text, &len);
      if (st == NULL) st = qiao_stopper_push(stopper, text, len, &text, &len, &stopped);
      if (st == NULL) st = show(g, text, len);
    }
    if (st != NULL || stopped || g->n_generated >= g->max_new ||
        qiao_engine_seq_length(s->engine, seq) >= max_ctx)
      break;
    int32_t token = next;
    st = feed(s, seq, sampler, g->grammar, &token, 1, logits, &next);
  }
  g->decode_s = engine_cli_now() - t1;
  if (st == NULL && detok != NULL && !stopped) {
    st = qiao_detokenizer_flush(detok, &text, &len);
    if (st == NULL) st = qiao_stopper_push(stopper, text, len, &text, &len, &stopped);
    if (st == NULL) st = show(g, text, len);
    if (st == NULL && !stopped) {
      qiao_stopper_flush(stopper, &text, &len);
      st = show(g, text, len);
    }
  }
  if (st == NULL && g->print_ids) fputc('\n', g->out);
  qiao_stopper_destroy(stopper);
  qiao_detokenizer_destroy(detok);
  free(logits);
  return st;
}
