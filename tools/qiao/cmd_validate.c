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
             "  MODEL         a .qiao or .gguf file, a Hugging Face directory or a llama2.c .bin\n"
             "                (or -m MODEL)\n"
             "  --tokenizer   the tok.bin of a llama2.c model\n"
             "Checks every structure, the hyperparameters against the tensor shapes, the\n"
             "tokenizer ids and, for .qiao files, every hash. Exit 0 when valid; else 1 with\n"
             "one line on stderr naming the file, the field and, where it applies, the byte\n"
             "offset.\n");
}

int qiao_cmd_validate(int argc, char **argv) {
  qiao_cli_model_args model = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = qiao_cli_parse_model_arg(&model, true, argc, argv, &i);
    if (r == 2) return 2;
    if (r == 1) continue;
    if (qiao_cli_is_help(a)) {
      usage(stdout);
      return 0;
    } else {
      return qiao_cli_unknown_arg("validate", a);
    }
  }
  if (model.path == NULL) {
    usage(stderr);
    return 2;
  }
  qiao_model *m;
  qiao_status *st = qiao_cli_open_model(&model, false, &m);
  if (st) return qiao_cli_fail(st);
  st = qiao_model_validate(m);
  qiao_model_close(m);
  if (st) return qiao_cli_fail(st);
  printf("%s: valid\n", model.path);
  return 0;
}
