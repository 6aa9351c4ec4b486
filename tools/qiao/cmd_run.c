/* qiao run: generate text from a prompt, streamed to stdout as it comes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"
#include "engine_cli.h"
#include "grammar_cli.h"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: qiao run [-m MODEL] [-p PROMPT | --prompt-ids \"1 2 3\"] [-n N] [flags]\n"
      "Generates from the prompt (BOS alone when none is given) and streams the text.\n"
      "Default sampling: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05 (--temp 0 = greedy).\n"
      "  -p PROMPT             the prompt text (encoded with the model's tokenizer, BOS per "
      "model)\n"
      "  --prompt-ids IDS      the prompt as token ids, used as given\n"
      "  -n N                  tokens to generate at most (default 256, bounded by the context)\n"
      "  --ids                 print the generated ids (space-separated, one line), not text\n"
      "  --no-echo             print only the generated text, not the prompt before it\n"
      "  --stop STR            stop when STR appears in the text (repeatable)\n");
  grammar_cli_print_flags(f);
  engine_cli_print_device_flags(f);
  engine_cli_print_sampling_flags(f);
}

int qiao_cmd_run(int argc, char **argv) {
  engine_cli_opts o;
  engine_cli_opts_init(&o);
  const char *prompt = NULL, *prompt_ids = NULL;
  const char *schema_path = NULL, *grammar_path = NULL;
  uint32_t n_new = 256;
  bool print_ids = false, echo = true;
  const char **stops = calloc((size_t)argc, sizeof(char *));
  size_t n_stops = 0;
  if (stops == NULL) return qiao_cli_fail(qiao__error(QIAO_OUT_OF_MEMORY, "out of memory"));
  int rc = 0;
  for (int i = 1; i < argc && rc == 0; i++) {
    const char *a = argv[i];
    int r = engine_cli_parse_flag(&o, argc, argv, &i);
    if (r < 0) rc = 2;
    if (r != 0) continue;
    r = grammar_cli_parse_flag(&schema_path, &grammar_path, argc, argv, &i);
    if (r < 0) rc = 2;
    if (r != 0) continue;
    if (qiao_cli_is_help(a)) {
      usage(stdout);
      free(stops);
      return 0;
    } else if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0) {
      if ((prompt = qiao_cli_flag_value(argc, argv, &i)) == NULL) rc = 2;
    } else if (strcmp(a, "--prompt-ids") == 0) {
      if ((prompt_ids = qiao_cli_flag_value(argc, argv, &i)) == NULL) rc = 2;
    } else if (strcmp(a, "--stop") == 0) {
      if ((stops[n_stops++] = qiao_cli_flag_value(argc, argv, &i)) == NULL) rc = 2;
    } else if (strcmp(a, "-n") == 0) {
      const char *v = qiao_cli_flag_value(argc, argv, &i);
      qiao_status *st = v ? qiao_cli_parse_u32("-n", v, 1, 1u << 24, &n_new) : NULL;
      if (v == NULL || st != NULL) rc = st ? qiao_cli_fail(st) + 1 : 2;
    } else if (strcmp(a, "--ids") == 0) {
      print_ids = true;
    } else if (strcmp(a, "--no-echo") == 0) {
      echo = false;
    } else {
      rc = qiao_cli_unknown_arg("run", a);
    }
  }
  if (rc == 0 && prompt != NULL && prompt_ids != NULL)
    rc = qiao_cli_usage_error("run: give -p or --prompt-ids, not both");
  if (rc != 0) {
    free(stops);
    return rc;
  }
  if (!o.seed_given) {
    o.sampling.seed = (uint64_t)time(NULL);
    if (o.sampling.temperature > 0)
      fprintf(stderr, "seed: %llu\n", (unsigned long long)o.sampling.seed);
  }

  engine_cli_session s;
  qiao_engine_options eo = qiao_engine_default_options();
  eo.max_seqs = 1;
  qiao_status *st = engine_cli_open(&o, &eo, &s);
  if (st != NULL) {
    free(stops);
    return qiao_cli_fail(st);
  }
  if (s.worker) { /* --mpi, rank > 0: served its layers */
    free(stops);
    return engine_cli_end(&s, NULL);
  }
  int32_t *ids = NULL;
  size_t n_ids = 0;
  if (prompt_ids != NULL) {
    st = qiao_cli_parse_ids("--prompt-ids", prompt_ids, &ids, &n_ids);
  } else if (s.tokenizer == NULL) {
    st = qiao__error(QIAO_INVALID_ARGUMENT,
                     "run: the model has no tokenizer: give --prompt-ids or --tokenizer");
  } else if (prompt != NULL && *prompt != '\0') {
    qiao_encode_options enc = {sizeof(enc), qiao_tokenizer_adds_bos(s.tokenizer), false};
    st = qiao_tokenizer_encode(s.tokenizer, prompt, strlen(prompt), &enc, &ids, &n_ids);
  }
  if (st == NULL && n_ids == 0) { /* no prompt: start from BOS */
    int32_t bos = s.tokenizer ? qiao_tokenizer_bos_id(s.tokenizer) : -1;
    if (bos < 0)
      st = qiao__error(QIAO_INVALID_ARGUMENT, "run: the model has no BOS token: give a prompt");
    else if ((ids = malloc(sizeof(int32_t))) == NULL)
      st = qiao__error(QIAO_OUT_OF_MEMORY, "out of memory");
    else {
      ids[0] = bos;
      n_ids = 1;
    }
  }
  qiao_sampler *sampler = NULL;
  if (st == NULL)
    st = qiao_sampler_create(&o.sampling, qiao_engine_hparams(s.engine)->vocab_size, &sampler);
  grammar_cli gr = {0};
  if (st == NULL)
    st = grammar_cli_open(schema_path, grammar_path, s.tokenizer,
                          qiao_engine_hparams(s.engine)->vocab_size, &gr);
  int32_t seq = -1;
  if (st == NULL) st = qiao_engine_seq_create(s.engine, &seq);
  engine_cli_gen g = {0};
  g.max_new = n_new;
  g.print_ids = print_ids || s.tokenizer == NULL;
  g.stops = stops;
  g.n_stops = n_stops;
  g.out = stdout;
  g.grammar = gr.grammar ? &gr : NULL;
  /* The prompt as the user wrote it, then its continuation (as llama.cpp
   * shows it); ids and --prompt-ids are never echoed. */
  if (st == NULL && echo && !g.print_ids && prompt != NULL) fputs(prompt, stdout);
  if (st == NULL) st = engine_cli_generate(&s, seq, sampler, ids, n_ids, &g);
  if (st == NULL && gr.matcher != NULL && !qiao_grammar_matcher_ended(gr.matcher))
    fprintf(stderr, "note: the output ended before the grammar was complete (-n %u)\n", n_new);
  if (st == NULL) {
    if (!g.print_ids) fputc('\n', stdout);
    fflush(stdout);
    uint32_t n_decode = g.n_generated > 1 ? g.n_generated - 1 : 0;
    fprintf(stderr,
            "prefill: %zu tokens in %.3f s (%.1f tokens/s); decode: %u tokens in %.3f s "
            "(%.1f tokens/s) [%s, %s]\n",
            n_ids, g.prefill_s, g.prefill_s > 0 ? (double)n_ids / g.prefill_s : 0.0, n_decode,
            g.decode_s, g.decode_s > 0 ? n_decode / g.decode_s : 0.0,
            qiao_engine_backend_name(s.engine), qiao_engine_device_name(s.engine));
  }
  qiao_sampler_destroy(sampler);
  grammar_cli_close(&gr);
  free(ids);
  free(stops);
  return engine_cli_end(&s, st);
}
