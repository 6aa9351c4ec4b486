/* qiao tokenize: text -> token ids, printed space-separated on one line. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "commands.h"
#include "core/status_internal.h"
#include "qiao/model.h"
#include "tokenizer_cli.h"

static const char usage_text[] =
    "usage: qiao tokenize [-m MODEL|tokenizer.json|tokenizer.model] [--tokenizer tok.bin]\n"
    "                     [-p TEXT | -f FILE] [--no-bos] [--no-special]\n"
    "Prints the token ids of TEXT (or of FILE, or of stdin) on one line.\n"
    "  --no-bos      do not prepend BOS (by default it is added when the model does)\n"
    "  --no-special  treat special-token text such as <|im_start|> as plain text\n";

static bool has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool is_tokenizer_file(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return false;
  if (S_ISDIR(st.st_mode)) {
    /* a folder with a tokenizer but no config.json is a tokenizer folder */
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s/config.json", path);
    if (stat(buf, &st) == 0) return false;
    snprintf(buf, sizeof(buf), "%s/tokenizer.json", path);
    if (stat(buf, &st) == 0) return true;
    snprintf(buf, sizeof(buf), "%s/tokenizer.model", path);
    return stat(buf, &st) == 0;
  }
  if (has_suffix(path, ".json") || has_suffix(path, ".model")) return true;
  FILE *f = fopen(path, "rb");
  if (f == NULL) return false;
  int c;
  while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\t' || c == '\r')
    continue;
  fclose(f);
  return c == '{';
}

qiao_status *qiao_cli_open_tokenizer(const char *model_path, const char *tokenizer_path,
                                     qiao_tokenizer **out) {
  if (model_path == NULL && tokenizer_path != NULL) return qiao_tokenizer_open(tokenizer_path, out);
  char def[4096];
  if (model_path == NULL) {
    qiao_cli_default_model(def, sizeof(def));
    model_path = def;
  }
  if (tokenizer_path == NULL && is_tokenizer_file(model_path))
    return qiao_tokenizer_open(model_path, out);
  qiao_model_open_options o = {.struct_size = sizeof(o), .tokenizer_path = tokenizer_path};
  qiao_model *m = NULL;
  QIAO__TRY(qiao_model_open(model_path, &o, &m));
  qiao_status *st = qiao_tokenizer_create_from_model(m, out);
  qiao_model_close(m);
  return st;
}

qiao_status *qiao_cli_read_all(FILE *f, const char *name, char **out, size_t *out_len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  if (buf == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", name);
  for (;;) {
    if (n + 1 >= cap) {
      if (cap > ((size_t)1 << 31)) {
        free(buf);
        return qiao__error(QIAO_LIMIT, "%s: more than 2 GiB", name);
      }
      char *b = realloc(buf, cap * 2);
      if (b == NULL) {
        free(buf);
        return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", name);
      }
      buf = b;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) {
    free(buf);
    return qiao__error(QIAO_IO, "%s: read failed", name);
  }
  buf[n] = '\0';
  *out = buf;
  *out_len = n;
  return NULL;
}

int qiao_cmd_tokenize(int argc, char **argv) {
  const char *model = NULL, *tok = NULL, *text = NULL, *file = NULL;
  bool bos = true, special = true;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage_text, stdout);
      return 0;
    } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
      if ((model = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "--tokenizer") == 0) {
      if ((tok = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0) {
      if ((text = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
      if ((file = qiao_cli_flag_value(argc, argv, &i)) == NULL) return 2;
    } else if (strcmp(a, "--no-bos") == 0) {
      bos = false;
    } else if (strcmp(a, "--no-special") == 0) {
      special = false;
    } else {
      return qiao_cli_usage_error("tokenize: unknown argument '%s' (see --help)", a);
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
    if (f == NULL) return qiao_cli_fail(qiao__error(QIAO_NOT_FOUND, "file %s: cannot open", file));
    st = qiao_cli_read_all(f, file, &buf, &len);
    fclose(f);
    text = buf;
  } else {
    st = qiao_cli_read_all(stdin, "stdin", &buf, &len);
    text = buf;
  }
  if (st != NULL) return qiao_cli_fail(st);

  qiao_tokenizer *t = NULL;
  st = qiao_cli_open_tokenizer(model, tok, &t);
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
