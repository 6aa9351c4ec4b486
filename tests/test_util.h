/* Minimal helpers shared by the C test programs: checks that report the
 * file and line, the shared folder, and whole-file reads. Header-only. */
#ifndef QIAO_TEST_UTIL_H
#define QIAO_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qiao/status.h"

static int test_failures = 0;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                     \
      test_failures++;                                                                             \
    }                                                                                              \
  } while (0)

/* Checks that a qiao_status* expression succeeded; prints its message if not. */
#define CHECK_OK(expr)                                                                             \
  do {                                                                                             \
    qiao_status *check_status_ = (expr);                                                           \
    if (check_status_ != NULL) {                                                                   \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #expr,                         \
              qiao_status_message(check_status_));                                                 \
      qiao_status_free(check_status_);                                                             \
      test_failures++;                                                                             \
    }                                                                                              \
  } while (0)

/* Checks that a qiao_status* expression failed with `code`. */
#define CHECK_ERR(expr, code)                                                                      \
  do {                                                                                             \
    qiao_status *check_status_ = (expr);                                                           \
    if (qiao_status_code(check_status_) != (code)) {                                               \
      fprintf(stderr, "%s:%d: %s: expected %s, got %s (%s)\n", __FILE__, __LINE__, #expr,          \
              qiao_code_name(code), qiao_code_name(qiao_status_code(check_status_)),               \
              qiao_status_message(check_status_));                                                 \
      test_failures++;                                                                             \
    }                                                                                              \
    qiao_status_free(check_status_);                                                               \
  } while (0)

/* Ends main(): prints a summary line and returns the exit code. */
#define TEST_END()                                                                                 \
  do {                                                                                             \
    if (test_failures) fprintf(stderr, "%d check(s) failed\n", test_failures);                     \
    return test_failures ? 1 : 0;                                                                  \
  } while (0)

/* The exit status CTest reports as "skipped" (SKIP_RETURN_CODE, set for
 * every test in cmake/QiaoArea.cmake): only for a test that cannot run here
 * (e.g. a processor without the kernels under test), never for missing
 * shared/ files. */
#define TEST_SKIP_CODE 77
#define TEST_SKIP(...)                                                                             \
  do {                                                                                             \
    printf("skipped: ");                                                                           \
    printf(__VA_ARGS__);                                                                           \
    printf("\n");                                                                                  \
    return TEST_SKIP_CODE;                                                                         \
  } while (0)

/* $QIAO_SHARED joined with `rel`; a test that needs shared/ and cannot find
 * it fails loudly (it does not skip). Returns a static buffer. */
static inline const char *test_shared_path(const char *rel) {
  static char buf[4096];
  const char *root = getenv("QIAO_SHARED");
  if (root == NULL || *root == '\0') root = "../shared";
  snprintf(buf, sizeof(buf), "%s/%s", root, rel);
  FILE *f = fopen(buf, "rb");
  if (f == NULL && strchr(rel, '.') != NULL) {
    fprintf(stderr, "missing shared file %s (set QIAO_SHARED)\n", buf);
    exit(1);
  }
  if (f) fclose(f);
  return buf;
}

/* Reads a whole file into a malloc'd, NUL-terminated buffer; exits on failure. */
static inline char *test_read_file(const char *path, size_t *out_len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fprintf(stderr, "cannot open %s\n", path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(1);
  }
  buf[n] = '\0';
  fclose(f);
  if (out_len) *out_len = (size_t)n;
  return buf;
}

/* The generated ids on line 3 of a llama2.c reference file of shared/
 * (reference/stories260K/...); returns their count. */
static inline size_t test_llama2c_ids(const char *rel, int32_t *out, size_t cap) {
  char *text = test_read_file(test_shared_path(rel), NULL);
  char *line = text;
  for (int i = 0; i < 2 && line; i++) {
    line = strchr(line, '\n');
    if (line) line++;
  }
  size_t n = 0;
  char *end = NULL;
  while (line && n < cap) {
    long v = strtol(line, &end, 10);
    if (end == line) break;
    out[n++] = (int32_t)v;
    line = end;
    if (*line == '\n') break;
  }
  free(text);
  return n;
}

#endif
