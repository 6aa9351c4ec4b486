/* .qiao integrity and malformed headers: a flipped bit in the header,
 * metadata or table is caught at open (header hash); in tensor data by
 * validate (tensor hash). Version, flags, alignment, offsets and sizes are
 * checked with a message naming the field. */
#include <string.h>

#include "format/model_internal.h"
#include "format/qiao_file.h"
#include "format_test_util.h"

static uint8_t *file_bytes;
static size_t file_size;

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

/* A copy of the file with the header hash recomputed after `edit`. */
static uint8_t *edited(void (*edit)(uint8_t *), bool rehash) {
  uint8_t *b = malloc(file_size);
  memcpy(b, file_bytes, file_size);
  edit(b);
  if (rehash) put64(b + QIAO__H_HASH, qiao__qiao_header_hash(b, get64(b + QIAO__H_TABLE_END)));
  return b;
}

/* Opens bytes; expects failure with `code` and a message containing `needle`. */
static void expect_open_error(const uint8_t *b, size_t n, qiao_code code, const char *needle) {
  qiao_model *model = NULL;
  qiao_status *s = qiao__model_create("x.qiao", "qiao", &model);
  if (s == NULL) s = qiao__import_qiao(model, b, n, "x.qiao");
  qiao_model_close(model);
  if (qiao_status_code(s) != code || strstr(qiao_status_message(s), needle) == NULL) {
    fprintf(stderr, "expected %s containing '%s', got %s: %s\n", qiao_code_name(code), needle,
            qiao_code_name(qiao_status_code(s)), qiao_status_message(s));
    test_failures++;
  }
  qiao_status_free(s);
}

static void flip_metadata_bit(uint8_t *b) {
  b[QIAO__FILE_HEADER_SIZE + 3] ^= 0x10;
}
static void flip_table_bit(uint8_t *b) {
  b[get64(b + QIAO__H_TABLE_END) - 20] ^= 0x01;
}
static void bad_major(uint8_t *b) {
  b[QIAO__H_MAJOR] = 2;
}
static void newer_minor(uint8_t *b) {
  b[QIAO__H_MINOR] = 7;
}
static void required_flag(uint8_t *b) {
  b[QIAO__H_FLAGS] = 1;
}
static void optional_flag(uint8_t *b) {
  b[QIAO__H_FLAGS + 2] = 1;
}
static void bad_alignment(uint8_t *b) {
  b[QIAO__H_ALIGNMENT] = 48;
}
static void bad_data_offset(uint8_t *b) {
  put64(b + QIAO__H_DATA_OFFSET, get64(b + QIAO__H_DATA_OFFSET) + 64);
}
static void bad_table_end(uint8_t *b) {
  put64(b + QIAO__H_TABLE_END, 1ull << 40);
}
static void bad_kv_count(uint8_t *b) {
  put64(b + QIAO__H_N_KV, get64(b + QIAO__H_N_KV) + 1);
}
static void huge_kv_count(uint8_t *b) {
  put64(b + QIAO__H_N_KV, ~0ull);
}
/* The first tensor's offset field: 40 bytes before the end of the first
 * table entry is hard to find generically, so shift the table start. */
static void bad_table_offset(uint8_t *b) {
  put64(b + QIAO__H_TABLE_OFFSET, get64(b + QIAO__H_TABLE_OFFSET) - 1);
}

int main(void) {
  const char *dir = scratch_dir("format_integrity");
  const char *path = scratch_file(dir, "s.qiao");
  qiao_model *src = NULL;
  CHECK_OK(qiao_model_open(test_shared_path("models/stories260K/stories260K.gguf"), NULL, &src));
  if (src == NULL) TEST_END();
  qiao_convert_options o = {sizeof(o), QIAO_FILE_QIAO, QIAO_DTYPE_COUNT, false};
  CHECK_OK(qiao_model_write(src, path, &o));
  qiao_model_close(src);
  file_bytes = (uint8_t *)test_read_file(path, &file_size);

  /* the data section starts page-aligned; the file ends with the data */
  CHECK(get64(file_bytes + QIAO__H_DATA_OFFSET) % 4096 == 0);
  CHECK(get64(file_bytes + QIAO__H_DATA_OFFSET) + get64(file_bytes + QIAO__H_DATA_SIZE) ==
        file_size);

  /* intact: opens from a buffer and validates */
  qiao_model *m = NULL;
  CHECK_OK(qiao__model_open_buffer(file_bytes, file_size, "s.qiao", &m));
  if (m) CHECK_OK(qiao_model_validate(m));
  qiao_model_close(m);

  uint8_t *b;
  b = edited(flip_metadata_bit, false);
  expect_open_error(b, file_size, QIAO_MALFORMED, "header hash");
  free(b);
  b = edited(flip_table_bit, false);
  expect_open_error(b, file_size, QIAO_MALFORMED, "header hash");
  free(b);

  /* a flipped bit in tensor data: opens, but validate names the tensor */
  b = malloc(file_size);
  memcpy(b, file_bytes, file_size);
  uint64_t data_offset = get64(b + QIAO__H_DATA_OFFSET);
  b[data_offset + 100] ^= 0x04;
  m = NULL;
  CHECK_OK(qiao__model_open_buffer(b, file_size, "s.qiao", &m));
  if (m) {
    qiao_status *st = qiao_model_validate(m);
    CHECK(qiao_status_code(st) == QIAO_MALFORMED);
    CHECK(strstr(qiao_status_message(st), "token_embd.weight: data hash") != NULL);
    CHECK(strstr(qiao_status_message(st), "at byte offset") != NULL);
    qiao_status_free(st);
  }
  qiao_model_close(m);
  free(b);

  b = edited(bad_major, true);
  expect_open_error(b, file_size, QIAO_UNSUPPORTED, "version");
  free(b);
  b = edited(required_flag, true);
  expect_open_error(b, file_size, QIAO_UNSUPPORTED, "flags");
  free(b);
  b = edited(bad_alignment, true);
  expect_open_error(b, file_size, QIAO_MALFORMED, "alignment");
  free(b);
  b = edited(bad_data_offset, true);
  expect_open_error(b, file_size, QIAO_MALFORMED, "data_offset");
  free(b);
  b = edited(bad_table_end, false);
  expect_open_error(b, file_size, QIAO_MALFORMED, "table_end");
  free(b);
  b = edited(bad_kv_count, true);
  expect_open_error(b, file_size, QIAO_MALFORMED, "");
  free(b);
  b = edited(huge_kv_count, true);
  expect_open_error(b, file_size, QIAO_MALFORMED, "n_kv");
  free(b);
  b = edited(bad_table_offset, true);
  expect_open_error(b, file_size, QIAO_MALFORMED, "");
  free(b);
  /* truncated: data_offset + data_size no longer matches */
  expect_open_error(file_bytes, file_size - 1, QIAO_MALFORMED, "data_size");
  expect_open_error(file_bytes, 50, QIAO_MALFORMED, "header");
  /* a newer minor version and an optional flag are still readable */
  b = edited(newer_minor, true);
  m = NULL;
  CHECK_OK(qiao__model_open_buffer(b, file_size, "s.qiao", &m));
  qiao_model_close(m);
  free(b);
  b = edited(optional_flag, true);
  m = NULL;
  CHECK_OK(qiao__model_open_buffer(b, file_size, "s.qiao", &m));
  qiao_model_close(m);
  free(b);

  /* random byte edits of the metadata and table, re-hashed so that the
   * reader's structural checks (not the hash) must catch them: any result
   * but a crash or a sanitizer report is fine */
  uint32_t rng = 7;
  uint64_t table_end = get64(file_bytes + QIAO__H_TABLE_END);
  b = malloc(file_size);
  for (int iter = 0; iter < 3000; iter++) {
    memcpy(b, file_bytes, file_size);
    for (int k = 0; k < 1 + iter % 3; k++) {
      rng = rng * 1664525u + 1013904223u;
      uint64_t at = (rng >> 8) % table_end;
      if (at >= QIAO__H_HASH && at < QIAO__H_HASH + 8) continue;
      rng = rng * 1664525u + 1013904223u;
      b[at] = (iter & 1) ? (uint8_t)(rng >> 24) : (uint8_t)(b[at] ^ (1u << (rng >> 29)));
    }
    put64(b + QIAO__H_HASH, qiao__qiao_header_hash(b, table_end));
    m = NULL;
    qiao_status *st = qiao__model_open_buffer(b, file_size, "s.qiao", &m);
    if (st == NULL) st = qiao_model_validate(m);
    qiao_status_free(st);
    qiao_model_close(m);
  }
  free(b);

  /* pickle checkpoints are refused, never parsed */
  const uint8_t pickle[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46};
  const uint8_t zip[] = {'P', 'K', 3, 4, 0, 0, 0, 0};
  qiao_status *st = qiao__model_open_buffer(pickle, sizeof(pickle), "p.pt", &m);
  CHECK(qiao_status_code(st) == QIAO_UNSUPPORTED &&
        strstr(qiao_status_message(st), "arbitrary code") != NULL);
  qiao_status_free(st);
  CHECK_ERR(qiao__model_open_buffer(zip, sizeof(zip), "p.pt", &m), QIAO_UNSUPPORTED);

  free(file_bytes);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
  TEST_END();
}
