/* qiao detokenize: token ids -> text, written exactly (no newline added). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

static const char usage_text[] =
    "usage: qiao detokenize [-m MODEL|tokenizer.json|tokenizer.model] [--tokenizer tok.bin]\n"
    "                       [--ids \"1 2 3\"]\n"
    "Writes the text of the ids (from --ids, else from stdin; spaces or commas\n"
    "between them) exactly, without adding a newline.\n";

int qiao_cmd_detokenize(int argc, char **argv) {
  qiao_cli_model_args model = {0};
  const char *ids_text = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = qiao_cli_parse_model_arg(&model, false, argc, argv, &i);
    if (r == 2) return 2;
    if (r == 1) continue;
    if (qiao_cli_is_help(a)) {
      fputs(usage_text, stdout);
      return 0;
    } else if (strcmp(a, "--ids") == 0) {
      if ((ids_text = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else {
      return qiao_cli_unknown_arg("detokenize", a);
    }
  }
  char *buf = NULL;
  size_t len;
  qiao_status *st = NULL;
  if (ids_text == NULL) {
    st = qiao_cli_read_all(stdin, "stdin", &buf, &len);
    if (st != NULL) return qiao_cli_fail(st);
    ids_text = buf;
  }
  int32_t *ids = NULL;
  size_t n = 0;
  st = qiao_cli_parse_ids("--ids", ids_text, &ids, &n);
  free(buf);
  if (st != NULL) return qiao_cli_fail(st);
  qiao_tokenizer *t = NULL;
  st = qiao_cli_open_tokenizer(&model, &t);
  char *text = NULL;
  size_t text_len = 0;
  if (st == NULL) st = qiao_tokenizer_decode(t, ids, n, &text, &text_len);
  qiao_tokenizer_destroy(t);
  free(ids);
  if (st != NULL) return qiao_cli_fail(st);
  fwrite(text, 1, text_len, stdout);
  free(text);
  return 0;
}
