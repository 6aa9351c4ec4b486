/* qiao tokenize: text -> token ids, printed space-separated on one line. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"

static const char usage_text[] =
    "usage: qiao tokenize [-m MODEL|tokenizer.json|tokenizer.model] [--tokenizer tok.bin]\n"
    "                     [-p TEXT | -f FILE] [--no-bos] [--no-special]\n"
    "Prints the token ids of TEXT (or of FILE, or of stdin) on one line.\n"
    "  --no-bos      do not prepend BOS (by default it is added when the model does)\n"
    "  --no-special  treat special-token text such as <|im_start|> as plain text\n";

int qiao_cmd_tokenize(int argc, char **argv) {
  qiao_cli_model_args model = {0};
  const char *text = NULL, *file = NULL;
  bool bos = true, special = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = qiao_cli_parse_model_arg(&model, false, argc, argv, &i);
    if (r == 2) return 2;
    if (r == 1) continue;
    if (qiao_cli_is_help(a)) {
      fputs(usage_text, stdout);
      return 0;
    } else if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0) {
      if ((text = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
      if ((file = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "--no-bos") == 0) {
      bos = false;
    } else if (strcmp(a, "--no-special") == 0) {
      special = false;
    } else {
      return qiao_cli_unknown_arg("tokenize", a);
    }
  }
  if (text != NULL && file != NULL)
    return qiao_cli_usage_error("tokenize: give -p or -f, not both");

  char *buf = NULL;
  size_t len = 0;
  qiao_status *st = NULL;
  if (text != NULL) {
    len = strlen(text);
  } else if (file != NULL) {
    FILE *f = fopen(file, "rb");
    if (f == NULL) return qiao_cli_fail(qiao__error(QIAO_NOT_FOUND, "%s: cannot open", file));
    st = qiao_cli_read_all(f, file, &buf, &len);
    fclose(f);
    text = buf;
  } else {
    st = qiao_cli_read_all(stdin, "stdin", &buf, &len);
    text = buf;
  }
  if (st != NULL) return qiao_cli_fail(st);

  qiao_tokenizer *t = NULL;
  st = qiao_cli_open_tokenizer(&model, &t);
  if (st != NULL) {
    free(buf);
    return qiao_cli_fail(st);
  }
  qiao_encode_options o = {sizeof(o), bos && qiao_tokenizer_adds_bos(t), special};
  int32_t *ids = NULL;
  size_t n = 0;
  st = qiao_tokenizer_encode(t, text, len, &o, &ids, &n);
  free(buf);
  qiao_tokenizer_destroy(t);
  if (st != NULL) return qiao_cli_fail(st);
  for (size_t i = 0; i < n; i++)
    printf(i ? " %d" : "%d", ids[i]);
  printf("\n");
  free(ids);
  return 0;
}
