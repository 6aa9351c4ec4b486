#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
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
