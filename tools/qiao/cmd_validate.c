/* qiao validate MODEL: a complete check of a model file (structure,
 * hyperparameters against tensor shapes, tokenizer ids, .qiao hashes).
 * Exit 0 when valid; else exit 1 with one line on stderr:
 * "error: <file>: <field>: <problem> [at byte offset N]". */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "qiao/model.h"

static void usage(FILE *f) {
  fprintf(f, "usage: qiao validate MODEL [--tokenizer tok.bin]\n"
             "  checks every structure, the hyperparameters against the tensor shapes, the\n"
             "  tokenizer ids and, for .qiao files, every hash; exit 0 when valid, else 1\n");
}

int qiao_cmd_validate(int argc, char **argv) {
  const char *path = NULL;
  qiao_model_open_options opts = {.struct_size = sizeof(opts)};
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--tokenizer") == 0) {
      if ((opts.tokenizer_path = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
      return qiao_cli_usage_error("validate: unknown flag '%s'", argv[i]);
    } else if (path == NULL) {
      path = argv[i];
    } else {
      return qiao_cli_usage_error("validate: more than one MODEL given");
    }
  }
  if (path == NULL) {
    usage(stderr);
    return 2;
  }
  qiao_model *m;
  qiao_status *st = qiao_model_open(path, &opts, &m);
  if (st) return qiao_cli_fail(st);
  st = qiao_model_validate(m);
  qiao_model_close(m);
  if (st) return qiao_cli_fail(st);
  printf("%s: valid\n", path);
  return 0;
}
