#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/status_internal.h"

int qiao_cli_fail(qiao_status *status) {
  fprintf(stderr, "error: %s\n", qiao_status_message(status));
  qiao_status_free(status);
  return 1;
}

int qiao_cli_usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return 2;
}

qiao_status *qiao_cli_parse_u64(const char *flag, const char *text, uint64_t *out) {
  if (text == NULL || *text == '\0' || *text == '-' || *text == '+' || *text == ' ')
    return qiao__error(QIAO_INVALID_ARGUMENT, "%s: expected a non-negative integer, got '%s'", flag,
                       text ? text : "");
  errno = 0;
  char *end = NULL;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0')
    return qiao__error(QIAO_INVALID_ARGUMENT, "%s: expected a non-negative integer, got '%s'", flag,
                       text);
  *out = (uint64_t)v;
  return NULL;
}

qiao_status *qiao_cli_parse_u32(const char *flag, const char *text, uint32_t min, uint32_t max,
                                uint32_t *out) {
  uint64_t v = 0;
  QIAO__TRY(qiao_cli_parse_u64(flag, text, &v));
  if (v < min || v > max)
    return qiao__error(QIAO_INVALID_ARGUMENT, "%s: %s is out of range [%u, %u]", flag, text, min,
                       max);
  *out = (uint32_t)v;
  return NULL;
}

qiao_status *qiao_cli_parse_f32(const char *flag, const char *text, float min, float max,
                                float *out) {
  if (text == NULL || *text == '\0')
    return qiao__error(QIAO_INVALID_ARGUMENT, "%s: expected a number", flag);
  errno = 0;
  char *end = NULL;
  double v = strtod(text, &end);
  if (errno != 0 || end == text || *end != '\0' || !isfinite(v))
    return qiao__error(QIAO_INVALID_ARGUMENT, "%s: expected a number, got '%s'", flag, text);
  if (v < min || v > max)
    return qiao__error(QIAO_INVALID_ARGUMENT, "%s: %s is out of range [%g, %g]", flag, text,
                       (double)min, (double)max);
  *out = (float)v;
  return NULL;
}

qiao_status *qiao_cli_parse_ids(const char *flag, const char *text, int32_t **out_ids,
                                size_t *out_n) {
  size_t cap = strlen(text) / 2 + 1, n = 0;
  int32_t *ids = malloc(cap * sizeof(*ids));
  if (ids == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "%s: out of memory", flag);
  const char *p = text;
  for (;;) {
    while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n')
      p++;
    if (*p == '\0') break;
    if (*p < '0' || *p > '9') {
      free(ids);
      return qiao__error(QIAO_INVALID_ARGUMENT, "%s: '%s' is not a list of token ids", flag, text);
    }
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno != 0 || v > INT32_MAX) {
      free(ids);
      return qiao__error(QIAO_INVALID_ARGUMENT, "%s: token id out of range in '%s'", flag, text);
    }
    ids[n++] = (int32_t)v;
    p = end;
  }
  if (n == 0) {
    free(ids);
    return qiao__error(QIAO_INVALID_ARGUMENT, "%s: no token ids given", flag);
  }
  *out_ids = ids;
  *out_n = n;
  return NULL;
}

const char *qiao_cli_shared_dir(void) {
  const char *env = getenv("QIAO_SHARED");
  return (env != NULL && *env != '\0') ? env : "../shared";
}

void qiao_cli_default_model(char *buf, size_t size) {
  snprintf(buf, size, "%s/models/stories260K/stories260K.gguf", qiao_cli_shared_dir());
}

const char *qiao_cli_flag_value(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "error: %s needs a value\n", argv[*i]);
    return NULL;
  }
  *i += 1;
  return argv[*i];
}

bool qiao_cli_is_help(const char *arg) {
  return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int qiao_cli_unknown_arg(const char *command, const char *arg) {
  if (arg[0] == '-' && arg[1] != '\0')
    return qiao_cli_usage_error("%s: unknown flag '%s' (see 'qiao %s --help')", command, arg,
                                command);
  return qiao_cli_usage_error("%s: unexpected argument '%s' (see 'qiao %s --help')", command, arg,
                              command);
}

int qiao_cli_parse_backend(int argc, char **argv, int *i, const char **backend) {
  if (strcmp(argv[*i], "--backend") != 0) return 0;
  const char *v = qiao_cli_flag_value(argc, argv, i);
  if (v == NULL) return -1;
  *backend = v;
  return 1;
}

/* ---- The model a command works on --------------------------------------- */

int qiao_cli_parse_model_arg(qiao_cli_model_args *a, bool positional, int argc, char **argv,
                             int *i) {
  const char *arg = argv[*i], *v = arg;
  bool is_flag = arg[0] == '-' && arg[1] != '\0';
  if (strcmp(arg, "--tokenizer") == 0) {
    if ((v = qiao_cli_flag_value(argc, argv, i)) == NULL) return 2;
    a->tokenizer_path = v;
    return 1;
  }
  if (strcmp(arg, "-m") == 0 || strcmp(arg, "--model") == 0) {
    if ((v = qiao_cli_flag_value(argc, argv, i)) == NULL) return 2;
  } else if (is_flag || !positional) {
    return 0;
  }
  if (a->path != NULL) {
    qiao_cli_usage_error("more than one MODEL given ('%s' and '%s')", a->path, v);
    return 2;
  }
  a->path = v;
  return 1;
}

qiao_status *qiao_cli_open_model(const qiao_cli_model_args *a, bool progress, qiao_model **out) {
  char default_model[4096];
  const char *path = a->path;
  if (path == NULL) {
    qiao_cli_default_model(default_model, sizeof(default_model));
    path = default_model;
  }
  qiao_model_open_options o = {
      .struct_size = sizeof(o), .tokenizer_path = a->tokenizer_path, .progress = progress};
  return qiao_model_open(path, &o, out);
}

static bool has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* A tokenizer.json / tokenizer.model, or a folder holding one but no
 * config.json (a folder with config.json is a model). */
static bool is_tokenizer_file(const char *path) {
  struct stat st;
  if (stat(path, &st) != 0) return false;
  if (S_ISDIR(st.st_mode)) {
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

qiao_status *qiao_cli_open_tokenizer(const qiao_cli_model_args *a, qiao_tokenizer **out) {
  if (a->path == NULL && a->tokenizer_path != NULL)
    return qiao_tokenizer_open(a->tokenizer_path, out);
  if (a->path != NULL && a->tokenizer_path == NULL && is_tokenizer_file(a->path))
    return qiao_tokenizer_open(a->path, out);
  qiao_model *m = NULL;
  QIAO__TRY(qiao_cli_open_model(a, false, &m));
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
