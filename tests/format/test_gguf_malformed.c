/* GGUF inputs the reader must refuse with a clear error (never a crash):
 * wrong value types, nested arrays, unsupported tensor types, bad
 * alignment, misplaced or overlapping data, lying counts, and every
 * truncation of a valid file. */
#include <string.h>

#include "format/model_internal.h"
#include "format_test_util.h"

typedef struct buf {
  uint8_t data[8192];
  size_t n;
} buf;

static void put(buf *b, const void *p, size_t n) {
  memcpy(b->data + b->n, p, n);
  b->n += n;
}
static void u32(buf *b, uint32_t v) {
  put(b, &v, 4);
} /* the test host is little-endian */
static void u64(buf *b, uint64_t v) {
  put(b, &v, 8);
}
static void str(buf *b, const char *s) {
  u64(b, strlen(s));
  put(b, s, strlen(s));
}
static void header(buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
  b->n = 0;
  put(b, "GGUF", 4);
  u32(b, version);
  u64(b, n_tensors);
  u64(b, n_kv);
}
static void kv_u32(buf *b, const char *key, uint32_t v) {
  str(b, key);
  u32(b, 4);
  u32(b, v);
}
/* a tensor info: name, dims (innermost first), type, offset */
static void info(buf *b, const char *name, uint32_t n_dims, const uint64_t *dims, uint32_t type,
                 uint64_t offset) {
  str(b, name);
  u32(b, n_dims);
  for (uint32_t d = 0; d < n_dims; d++)
    u64(b, dims[d]);
  u32(b, type);
  u64(b, offset);
}
static void pad_data(buf *b, size_t data_bytes) {
  while (b->n % 32)
    b->data[b->n++] = 0;
  memset(b->data + b->n, 0, data_bytes);
  b->n += data_bytes;
}

static void expect(const buf *b, qiao_code code, const char *needle) {
  qiao_model *m = NULL;
  qiao_status *st = qiao__model_open_buffer(b->data, b->n, "t.gguf", &m);
  if (st == NULL) st = qiao_model_validate(m);
  if (qiao_status_code(st) != code || strstr(qiao_status_message(st), needle) == NULL) {
    fprintf(stderr, "expected %s with '%s', got %s: %s\n", qiao_code_name(code), needle,
            qiao_code_name(qiao_status_code(st)), qiao_status_message(st));
    test_failures++;
  }
  qiao_status_free(st);
  qiao_model_close(m);
}

static void open_ok(const buf *b) {
  qiao_model *m = NULL;
  CHECK_OK(qiao__model_open_buffer(b->data, b->n, "t.gguf", &m));
  qiao_model_close(m);
}

int main(void) {
  buf b;
  const uint64_t d64[] = {64}, d32x2[] = {32, 2}, d33x2[] = {33, 2};

  /* a valid baseline: one f32 tensor */
  header(&b, 3, 1, 1);
  kv_u32(&b, "general.alignment", 32);
  info(&b, "w", 1, d64, 0, 0);
  pad_data(&b, 256);
  open_ok(&b);
  /* every truncation of it fails cleanly */
  buf cut = b;
  for (size_t n = 0; n < b.n; n++) {
    cut.n = n;
    qiao_model *m = NULL;
    qiao_status *st = qiao__model_open_buffer(cut.data, n, "t.gguf", &m);
    if (n >= 4 && st == NULL) {
      fprintf(stderr, "truncation to %zu bytes was accepted\n", n);
      test_failures++;
    }
    qiao_status_free(st);
    qiao_model_close(m);
  }

  /* token scores of the wrong type name the key */
  header(&b, 3, 0, 1);
  str(&b, "tokenizer.ggml.scores");
  u32(&b, 9);
  u32(&b, 1); /* i8 */
  u64(&b, 2);
  put(&b, "\x01\x02", 2);
  expect(&b, QIAO_MALFORMED, "tokenizer.ggml.scores: expected an array of f32, found array of i8");

  /* arrays of arrays */
  header(&b, 3, 0, 1);
  str(&b, "x.nested");
  u32(&b, 9);
  u32(&b, 9);
  u64(&b, 1);
  expect(&b, QIAO_UNSUPPORTED, "arrays of arrays");

  /* unknown value type, bad bool */
  header(&b, 3, 0, 1);
  str(&b, "x.t");
  u32(&b, 13);
  expect(&b, QIAO_MALFORMED, "unknown value type 13");
  header(&b, 3, 0, 1);
  str(&b, "x.b");
  u32(&b, 7);
  put(&b, "\x02", 1);
  expect(&b, QIAO_MALFORMED, "bool value 2");

  /* duplicate keys and tensors */
  header(&b, 3, 0, 2);
  kv_u32(&b, "x.a", 1);
  kv_u32(&b, "x.a", 2);
  expect(&b, QIAO_MALFORMED, "x.a: duplicate");
  header(&b, 3, 0, 4); /* the eos ids are gathered, not stored one by one */
  kv_u32(&b, "tokenizer.ggml.eos_token_id", 1);
  kv_u32(&b, "tokenizer.ggml.eot_token_id", 2);
  kv_u32(&b, "tokenizer.ggml.eos_token_id", 3);
  kv_u32(&b, "tokenizer.ggml.eos_token_id", 4);
  expect(&b, QIAO_MALFORMED, "tokenizer.ggml.eos_token_id: duplicate");
  header(&b, 3, 2, 0);
  info(&b, "w", 1, d64, 0, 0);
  info(&b, "w", 1, d64, 0, 256);
  pad_data(&b, 512);
  expect(&b, QIAO_MALFORMED, "tensor w: duplicate");

  /* unsupported tensor types name the type and the tensor */
  header(&b, 3, 1, 0);
  info(&b, "blk.0.w", 1, d64, 21, 0);
  pad_data(&b, 256);
  expect(&b, QIAO_UNSUPPORTED, "unsupported tensor type IQ3_S (blk.0.w)");
  header(&b, 3, 1, 0);
  info(&b, "w", 1, d64, 99, 0);
  pad_data(&b, 256);
  expect(&b, QIAO_UNSUPPORTED, "unsupported tensor type 99 (w)");

  /* q8_0 rows must be whole blocks */
  header(&b, 3, 1, 0);
  info(&b, "w", 2, d33x2, 8, 0);
  pad_data(&b, 256);
  expect(&b, QIAO_MALFORMED, "not a multiple of the q8_0 block");
  header(&b, 3, 1, 0);
  info(&b, "w", 2, d32x2, 8, 0);
  pad_data(&b, 68);
  open_ok(&b);

  /* iq4_nl (20) rows are whole blocks of 32 in 18 bytes, iq4_xs (23) of 256
   * in 136; their data must be all there; huge shapes overflow */
  header(&b, 3, 1, 0);
  info(&b, "w", 2, d33x2, 20, 0);
  pad_data(&b, 256);
  expect(&b, QIAO_MALFORMED, "not a multiple of the iq4_nl block");
  header(&b, 3, 1, 0);
  info(&b, "w", 1, d64, 23, 0);
  pad_data(&b, 256);
  expect(&b, QIAO_MALFORMED, "not a multiple of the iq4_xs block");
  header(&b, 3, 1, 0);
  info(&b, "w", 2, d32x2, 20, 0);
  pad_data(&b, 36);
  open_ok(&b);
  const uint64_t d256x2[] = {256, 2};
  header(&b, 3, 1, 0);
  info(&b, "w", 2, d256x2, 23, 0);
  pad_data(&b, 272);
  open_ok(&b);
  header(&b, 3, 1, 0);
  info(&b, "w", 2, d256x2, 23, 0);
  pad_data(&b, 271);
  expect(&b, QIAO_MALFORMED, "past the end of the file");
  const uint64_t huge_xs[] = {1ull << 40, 1ull << 40};
  header(&b, 3, 1, 0);
  info(&b, "w", 2, huge_xs, 23, 0);
  pad_data(&b, 64);
  expect(&b, QIAO_MALFORMED, "overflows");

  /* alignment, placement, overlap, bounds */
  header(&b, 3, 0, 1);
  kv_u32(&b, "general.alignment", 48);
  expect(&b, QIAO_MALFORMED, "general.alignment");
  header(&b, 3, 1, 0);
  info(&b, "w", 1, d64, 0, 8);
  pad_data(&b, 512);
  expect(&b, QIAO_MALFORMED, "not a multiple of the alignment");
  header(&b, 3, 2, 0);
  info(&b, "a", 1, d64, 0, 0);
  info(&b, "b", 1, d64, 0, 224);
  pad_data(&b, 512);
  expect(&b, QIAO_MALFORMED, "overlaps");
  header(&b, 3, 1, 0);
  info(&b, "w", 1, d64, 0, 0);
  pad_data(&b, 255);
  expect(&b, QIAO_MALFORMED, "past the end of the file");
  const uint64_t huge[] = {1ull << 40, 1ull << 40};
  header(&b, 3, 1, 0);
  info(&b, "w", 2, huge, 0, 0);
  pad_data(&b, 64);
  expect(&b, QIAO_MALFORMED, "overflows");
  const uint64_t five[] = {1, 1, 1, 1, 1};
  header(&b, 3, 1, 0);
  info(&b, "w", 5, five, 0, 0);
  expect(&b, QIAO_MALFORMED, "5 dimensions");
  const uint64_t zero[] = {0};
  header(&b, 3, 1, 0);
  info(&b, "w", 1, zero, 0, 0);
  pad_data(&b, 32);
  expect(&b, QIAO_MALFORMED, "dimension 0 is zero");

  /* versions and lying counts */
  header(&b, 1, 0, 0);
  expect(&b, QIAO_UNSUPPORTED, "GGUF version 1");
  header(&b, 3, 0, 1ull << 40);
  expect(&b, QIAO_MALFORMED, "metadata count");
  header(&b, 3, 1ull << 40, 0);
  expect(&b, QIAO_MALFORMED, "tensor count");
  header(&b, 3, 0, 1);
  u64(&b, 1ull << 60); /* key length */
  expect(&b, QIAO_LIMIT, "too long");
  header(&b, 3, 0, 1);
  str(&b, "x.arr");
  u32(&b, 9);
  u32(&b, 8);
  u64(&b, 1000000); /* a million strings in a few bytes */
  expect(&b, QIAO_MALFORMED, "file ends early");
  TEST_END();
}
