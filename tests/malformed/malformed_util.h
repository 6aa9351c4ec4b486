/* Shared helpers of the malformed-input suite: expected-failure checks, the
 * open-from-memory attempts for each format, and truncation sweeps.
 *
 * Each mutated input lives in a malloc'd buffer of exactly its own length, so
 * that AddressSanitizer reports any read past its end. The tests run with
 * ASAN_OPTIONS allocator_may_return_null=1:max_allocation_size_mb=512 (see
 * CMakeLists.txt): an allocation sized from a hostile count fails (and the
 * test sees the wrong error code) instead of passing unnoticed. */
#ifndef QIAO_MALFORMED_UTIL_H
#define QIAO_MALFORMED_UTIL_H

#include <stdint.h>
#include <string.h>

#include "format/model_internal.h"
#include "qiao/model.h"
#include "test_util.h"

static int cases_run = 0;
/* When set, the next expect_code also requires this text in the message:
 * the field the check under test names (then it is cleared). */
static const char *expect_field = NULL;

/* Checks that `st` is an error with `code` whose message starts with the
 * input's name ("mutated...", or the path of a temporary file) in the form
 * ("<file>: <field>: <problem> [at byte offset N]", the one
 * style of every reader and importer); `what` names the case. */
static inline void expect_code(const char *what, qiao_status *st, qiao_code code) {
  cases_run++;
  if (qiao_status_code(st) != code) {
    fprintf(stderr, "case '%s': expected %s, got %s: %s\n", what, qiao_code_name(code),
            qiao_code_name(qiao_status_code(st)), qiao_status_message(st));
    test_failures++;
  } else if (code != QIAO_OUT_OF_MEMORY && strncmp(qiao_status_message(st), "mutated", 7) != 0 &&
             qiao_status_message(st)[0] != '/') { /* the name, or a temporary file's path */
    fprintf(stderr, "case '%s': the message does not start with the file name: %s\n", what,
            qiao_status_message(st));
    test_failures++;
  } else if (expect_field != NULL && strstr(qiao_status_message(st), expect_field) == NULL) {
    fprintf(stderr, "case '%s': the message does not name '%s': %s\n", what, expect_field,
            qiao_status_message(st));
    test_failures++;
  } else if (getenv("MALFORMED_VERBOSE")) {
    fprintf(stderr, "case '%s': %s\n", what, qiao_status_message(st));
  }
  expect_field = NULL;
  qiao_status_free(st);
}

/* An exact-length copy of `data`, so that ASan sees reads past `len`. */
static inline uint8_t *exact_copy(const void *data, size_t len) {
  uint8_t *p = malloc(len ? len : 1);
  if (p == NULL) abort();
  if (len) memcpy(p, data, len);
  return p;
}

/* A single-file model (.qiao, .gguf, llama2.c) from memory, then validate. */
static inline qiao_status *try_open_buffer(const uint8_t *data, size_t len) {
  uint8_t *copy = exact_copy(data, len);
  qiao_model *m = NULL;
  qiao_status *st = qiao__model_open_buffer(copy, len, "mutated", &m);
  if (st == NULL) st = qiao_model_validate(m);
  qiao_model_close(m);
  free(copy);
  return st;
}

/* Like try_open_buffer without the copy: for inputs already exact. */
static inline qiao_status *try_open_exact(const uint8_t *data, size_t len) {
  qiao_model *m = NULL;
  qiao_status *st = qiao__model_open_buffer(data, len, "mutated", &m);
  if (st == NULL) st = qiao_model_validate(m);
  qiao_model_close(m);
  return st;
}

/* safetensors bytes imported into an empty model (HF names, no validate). */
static inline qiao_status *try_safetensors(const uint8_t *data, size_t len) {
  uint8_t *copy = exact_copy(data, len);
  qiao_model *m = NULL;
  qiao_status *st = qiao__model_create("mutated.safetensors", "hf", &m);
  if (st == NULL) st = qiao__import_safetensors(m, copy, len, "mutated.safetensors");
  qiao_model_close(m);
  free(copy);
  return st;
}

/* Truncated views of one file without copying it: the bytes after the
 * first `len` are poisoned for AddressSanitizer while the view is used, so a
 * read past `len` is reported as it would be for an exact-length copy. */
#if defined(__SANITIZE_ADDRESS__)
#define MALFORMED_HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MALFORMED_HAVE_ASAN 1
#endif
#endif
#ifdef MALFORMED_HAVE_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* Calls `attempt(data, len)` with bytes [len, len + guard) of `data` (a
 * malloc'd copy of a file of `full_len` bytes) made unreadable; guard 0
 * poisons the whole rest of the file. */
static inline qiao_status *with_prefix(uint8_t *data, size_t full_len, size_t len, size_t guard,
                                       qiao_status *(*attempt)(const uint8_t *, size_t)) {
  size_t n = full_len - len;
  if (guard != 0 && guard < n) n = guard;
  POISON(data + len, n);
  qiao_status *st = attempt(data, len);
  UNPOISON(data + len, n);
  return st;
}

/* safetensors bytes as they are (no copy), imported into an empty model. */
static inline qiao_status *try_safetensors_exact(const uint8_t *data, size_t len) {
  qiao_model *m = NULL;
  qiao_status *st = qiao__model_create("mutated.safetensors", "hf", &m);
  if (st == NULL) st = qiao__import_safetensors(m, data, len, "mutated.safetensors");
  qiao_model_close(m);
  return st;
}

/* Is `len` within `window` bytes of one of the `n` boundaries? */
static inline bool near_boundary(uint64_t len, const uint64_t *boundaries, size_t n,
                                 uint64_t window) {
  for (size_t i = 0; i < n; i++) {
    uint64_t b = boundaries[i];
    if (len + window >= b && len <= b + window) return true;
  }
  return false;
}

#endif
