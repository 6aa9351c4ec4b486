/* qiao logits: the logits of every position of a prompt, in one forward
 * pass, as float32 little-endian row-major [positions x vocab]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"
#include "engine_cli.h"

static void usage(FILE *f) {
  fprintf(f, "usage: qiao logits [-m MODEL] --ids \"1 2 3\" -o OUT.f32 [-t N] [--backend B]\n"
             "Writes float32 little-endian logits, row-major [positions x vocab].\n"
             "  --ids IDS             the prompt as token ids (spaces or commas between them)\n"
             "  -o FILE               where the logits go\n");
  engine_cli_print_device_flags(f);
}

int qiao_cmd_logits(int argc, char **argv) {
  engine_cli_opts o;
  engine_cli_opts_init(&o);
  const char *ids_text = NULL, *out_path = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = engine_cli_parse_flag(&o, argc, argv, &i);
    if (r < 0) return 2;
    if (r > 0) continue;
    if (qiao_cli_is_help(a)) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--ids") == 0) {
      if ((ids_text = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "-o") == 0) {
      if ((out_path = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else {
      return qiao_cli_unknown_arg("logits", a);
    }
  }
  if (ids_text == NULL || out_path == NULL)
    return qiao_cli_usage_error("logits: --ids and -o are required");
  int32_t *ids = NULL;
  size_t n = 0;
  qiao_status *st = qiao_cli_parse_ids("--ids", ids_text, &ids, &n);
  if (st != NULL) return qiao_cli_fail(st);
  if (n > 65536) {
    free(ids);
    return qiao_cli_usage_error("logits: at most 65536 ids");
  }
  engine_cli_session s;
  qiao_engine_options eo = qiao_engine_default_options();
  eo.max_seqs = 1;
  eo.max_batch_tokens = (uint32_t)n; /* the whole prompt in one pass */
  eo.max_context = (uint32_t)n;
  st = engine_cli_open(&o, &eo, &s);
  if (st != NULL) {
    free(ids);
    return qiao_cli_fail(st);
  }
  if (s.worker) { /* --mpi, rank > 0: served its layers */
    free(ids);
    return engine_cli_end(&s, NULL);
  }
  uint64_t vocab = qiao_engine_hparams(s.engine)->vocab_size;
  float *logits = malloc(n * vocab * sizeof(float));
  int32_t *seqs = calloc(n, sizeof(int32_t)), *pos = malloc(n * sizeof(int32_t));
  uint8_t *want = malloc(n);
  if (logits == NULL || seqs == NULL || pos == NULL || want == NULL)
    st = qiao__error(QIAO_OUT_OF_MEMORY, "logits: out of memory");
  int32_t seq = 0;
  if (st == NULL) st = qiao_engine_seq_create(s.engine, &seq);
  if (st == NULL) {
    for (size_t i = 0; i < n; i++) {
      seqs[i] = seq;
      pos[i] = (int32_t)i;
      want[i] = 1;
    }
    qiao_batch batch = {n, ids, seqs, pos, want};
    st = qiao_engine_forward(s.engine, &batch, logits, NULL);
  }
  if (st == NULL) {
    FILE *f = fopen(out_path, "wb");
    if (f == NULL) {
      st = qiao__error(QIAO_IO, "%s: cannot open for writing", out_path);
    } else {
      /* The host is little-endian on every platform qiao builds for. */
      size_t wrote = fwrite(logits, sizeof(float), n * vocab, f);
      if (fclose(f) != 0 || wrote != n * vocab)
        st = qiao__error(QIAO_IO, "%s: write failed", out_path);
    }
  }
  free(logits);
  free(seqs);
  free(pos);
  free(want);
  free(ids);
  return engine_cli_end(&s, st);
}
