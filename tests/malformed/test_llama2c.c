/* Malformed llama2.c checkpoints and tok.bin tokenizers, made in memory from
 * stories260K.bin and tok512.bin: each must fail with the stated code.
 *
 * Truncation: EVERY length 0..size-1 of stories260K.bin is tried, on one
 * copy of the file whose 4096 bytes after the cut are poisoned for ASan
 * (the importer reads only the header and adds the weights zero-copy, so an
 * over-read could only come from the header code). Every length
 * 0..size-1 of tok512.bin is tried too, each an exact-length copy. */
#include <math.h>
#include <unistd.h>

#include "format/import_llama2c.h"
#include "malformed_util.h"

static uint8_t *bin;
static size_t bin_len;
static uint8_t *tok;
static size_t tok_len;

static void put_i32(uint8_t *p, int32_t v) {
  memcpy(p, &v, 4);
}

/* stories260K.bin with header field `field` (0 = dim .. 6 = seq_len) set. */
static void header_case(const char *what, int field, int32_t value, qiao_code code) {
  uint8_t *copy = exact_copy(bin, bin_len);
  put_i32(copy + 4 * field, value);
  expect_code(what, try_open_exact(copy, bin_len), code);
  free(copy);
}

static void test_header(void) {
  header_case("dim 0", 0, 0, QIAO_MALFORMED);
  header_case("dim negative", 0, -64, QIAO_MALFORMED);
  header_case("hidden_dim negative", 1, -172, QIAO_MALFORMED);
  header_case("n_layers negative", 2, -5, QIAO_MALFORMED);
  header_case("n_heads 0", 3, 0, QIAO_MALFORMED);
  header_case("n_heads negative", 3, -8, QIAO_MALFORMED);
  header_case("n_kv_heads 0", 4, 0, QIAO_MALFORMED);
  header_case("heads not divisible by kv heads", 4, 3, QIAO_MALFORMED);
  header_case("kv heads above heads", 4, 16, QIAO_MALFORMED);
  header_case("dim not divisible by heads", 3, 7, QIAO_MALFORMED);
  header_case("odd head size", 3, 64, QIAO_MALFORMED); /* head size 1 */
  header_case("vocab 0", 5, 0, QIAO_MALFORMED);
  header_case("vocab INT32_MIN", 5, INT32_MIN, QIAO_MALFORMED);
  header_case("seq_len 0", 6, 0, QIAO_MALFORMED);
  header_case("seq_len negative", 6, -1, QIAO_MALFORMED);
  /* Sizes whose weights lie beyond the file, some overflowing 64 bits. */
  header_case("n_layers huge", 2, 1000000, QIAO_MALFORMED);
  header_case("dim huge", 0, 2147483640, QIAO_MALFORMED); /* divisible by 8 heads */
  header_case("hidden_dim huge", 1, INT32_MAX, QIAO_MALFORMED);
  header_case("vocab huge", 5, INT32_MAX, QIAO_MALFORMED);
  header_case("vocab negative (unshared) without wcls", 5, -512, QIAO_MALFORMED);
  header_case("seq_len huge", 6, INT32_MAX, QIAO_MALFORMED);

  /* Bytes after the last array. */
  uint8_t *longer = malloc(bin_len + 4);
  memcpy(longer, bin, bin_len);
  memset(longer + bin_len, 0, 4);
  expect_code("trailing bytes", try_open_exact(longer, bin_len + 4), QIAO_MALFORMED);
  free(longer);

  /* The "ak42" export header. */
  uint8_t v1[300] = {0};
  put_i32(v1, 0x616b3432);
  put_i32(v1 + 4, 2);
  expect_code("ak42 version 2", try_open_buffer(v1, sizeof(v1)), QIAO_UNSUPPORTED);
  put_i32(v1 + 4, 1);
  memcpy(v1 + 8, bin, 28);
  v1[36] = 7;
  expect_code("ak42 shared flag 7", try_open_buffer(v1, sizeof(v1)), QIAO_MALFORMED);
  v1[36] = 1;
  expect_code("ak42 weights beyond the file", try_open_buffer(v1, sizeof(v1)), QIAO_MALFORMED);
  expect_code("ak42 short header", try_open_buffer(v1, 100), QIAO_MALFORMED);
}

static void test_truncation(void) {
  int failures_before = test_failures;
  for (size_t len = 0; len < bin_len; len++) {
    qiao_status *st = with_prefix(bin, bin_len, len, 4096, try_open_exact);
    if (qiao_status_code(st) != QIAO_MALFORMED) {
      char what[64];
      snprintf(what, sizeof(what), "llama2c truncated to %zu bytes", len);
      expect_code(what, st, QIAO_MALFORMED);
      if (test_failures - failures_before > 5) return;
    } else {
      cases_run++;
      qiao_status_free(st);
    }
  }
}

/* tok512.bin parsed for a model of `vocab` tokens. */
static qiao_status *try_tok(const uint8_t *data, size_t len, uint32_t vocab) {
  uint8_t *copy = exact_copy(data, len);
  qiao_model *m = NULL;
  qiao_status *st = qiao__model_create("tok", "llama2c", &m);
  if (st == NULL) st = qiao__llama2c_add_tokenizer(m, copy, len, "mutated tok.bin", vocab);
  qiao_model_close(m);
  free(copy);
  return st;
}

static void tok_case(const char *what, size_t offset, int32_t value, qiao_code code) {
  uint8_t *copy = exact_copy(tok, tok_len);
  put_i32(copy + offset, value);
  expect_code(what, try_tok(copy, tok_len, 512), code);
  free(copy);
}

static void test_tokenizer(void) {
  CHECK_OK(try_tok(tok, tok_len, 512)); /* the control: the real file parses */
  tok_case("max_token_length 0", 0, 0, QIAO_MALFORMED);
  tok_case("max_token_length negative", 0, -7, QIAO_MALFORMED);
  /* Token 0: score at 4, length at 8. */
  tok_case("token length negative", 8, -1, QIAO_MALFORMED);
  tok_case("token length above max_token_length", 8, 8, QIAO_MALFORMED);
  tok_case("token length huge", 8, INT32_MAX, QIAO_MALFORMED);
  float nan_score = NAN;
  int32_t nan_bits;
  memcpy(&nan_bits, &nan_score, 4);
  tok_case("score NaN", 4, nan_bits, QIAO_MALFORMED);
  expect_code("vocab 511 (bytes left over)", try_tok(tok, tok_len, 511), QIAO_MALFORMED);
  expect_code("vocab 513 (truncated)", try_tok(tok, tok_len, 513), QIAO_MALFORMED);
  expect_code("vocab 2", try_tok(tok, tok_len, 2), QIAO_MALFORMED);
  expect_code("vocab huge", try_tok(tok, tok_len, 0x7fffffff), QIAO_MALFORMED);
  for (size_t len = 0; len < tok_len; len++) {
    qiao_status *st = try_tok(tok, len, 512);
    if (qiao_status_code(st) != QIAO_MALFORMED) {
      char what[64];
      snprintf(what, sizeof(what), "tok.bin truncated to %zu bytes", len);
      expect_code(what, st, QIAO_MALFORMED);
    } else {
      cases_run++;
      qiao_status_free(st);
    }
  }

  /* Through qiao_model_open: a truncated tokenizer file. */
  char path[] = "/tmp/qiao-malformed-tok-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  if (fd >= 0) {
    CHECK(write(fd, tok, tok_len - 3) == (ssize_t)(tok_len - 3));
    close(fd);
    qiao_model_open_options opts = {sizeof(opts), path, false};
    qiao_model *m = NULL;
    expect_code("qiao_model_open with a truncated tok.bin",
                qiao_model_open(test_shared_path("models/stories260K/stories260K.bin"), &opts, &m),
                QIAO_MALFORMED);
    qiao_model_close(m);
    unlink(path);
  }
}

int main(void) {
  bin = (uint8_t *)test_read_file(test_shared_path("models/stories260K/stories260K.bin"), &bin_len);
  tok = (uint8_t *)test_read_file(test_shared_path("models/stories260K/tok512.bin"), &tok_len);
  CHECK_OK(try_open_buffer(bin, bin_len)); /* the control: the real file opens and validates */
  test_header();
  test_tokenizer();
  test_truncation();
  fprintf(stderr, "%d malformed llama2.c cases\n", cases_run);
  free(bin);
  free(tok);
  TEST_END();
}
