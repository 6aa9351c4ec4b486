/* Helpers shared by the tokenizer tests: opening tokenizers from the shared
 * folder, encoding with explicit options, comparing id lists. */
#ifndef QIAO_TOK_TEST_UTIL_H
#define QIAO_TOK_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qiao/model.h"
#include "qiao/tokenizer.h"
#include "test_util.h"

/* Opens a tokenizer from a shared file: a .gguf through qiao_model_open, any
 * other file through qiao_tokenizer_open. Exits on failure. */
static inline qiao_tokenizer *tok_open_shared(const char *rel) {
  const char *path = test_shared_path(rel);
  qiao_tokenizer *t = NULL;
  qiao_status *st;
  size_t n = strlen(path);
  if (n > 5 && strcmp(path + n - 5, ".gguf") == 0) {
    qiao_model *m = NULL;
    st = qiao_model_open(path, NULL, &m);
    if (st == NULL) st = qiao_tokenizer_create_from_model(m, &t);
    qiao_model_close(m);
  } else {
    st = qiao_tokenizer_open(path, &t);
  }
  if (st != NULL) {
    fprintf(stderr, "cannot open tokenizer %s: %s\n", path, qiao_status_message(st));
    exit(1);
  }
  return t;
}

static inline int32_t *tok_encode(const qiao_tokenizer *t, const char *text, size_t len,
                                  bool add_bos, bool parse_special, size_t *n) {
  qiao_encode_options o = {sizeof(o), add_bos, parse_special};
  int32_t *ids = NULL;
  qiao_status *st = qiao_tokenizer_encode(t, text, len, &o, &ids, n);
  if (st != NULL) {
    fprintf(stderr, "encode failed: %s\n", qiao_status_message(st));
    qiao_status_free(st);
    *n = 0;
    return NULL;
  }
  return ids;
}

static inline void tok_print_ids(const char *what, const int32_t *ids, size_t n) {
  fprintf(stderr, "  %s:", what);
  for (size_t i = 0; i < n; i++)
    fprintf(stderr, " %d", ids[i]);
  fprintf(stderr, "\n");
}

/* Checks ids == want; prints both on a mismatch. Returns true when equal. */
static inline bool tok_check_ids(const char *label, const int32_t *ids, size_t n,
                                 const int32_t *want, size_t n_want) {
  if (n == n_want && (n == 0 || memcmp(ids, want, n * sizeof(int32_t)) == 0)) return true;
  fprintf(stderr, "mismatch for %s\n", label);
  tok_print_ids("got ", ids, n);
  tok_print_ids("want", want, n_want);
  test_failures++;
  return false;
}

/* decode(ids) == text */
static inline void tok_check_roundtrip(const qiao_tokenizer *t, const char *label,
                                       const int32_t *ids, size_t n, const char *text, size_t len) {
  char *out = NULL;
  size_t out_len = 0;
  CHECK_OK(qiao_tokenizer_decode(t, ids, n, &out, &out_len));
  if (out == NULL || out_len != len || memcmp(out, text, len) != 0) {
    fprintf(stderr, "round trip failed for %s: got \"%.*s\"\n", label, (int)out_len,
            out ? out : "");
    test_failures++;
  }
  free(out);
}

#endif
