/* Malformed safetensors files, made in memory from stories260K's
 * model.safetensors by editing its JSON header (or its length field, or the
 * data section): each must fail with the stated code.
 *
 * Truncation coverage: every length from 0 to 64 bytes past the end of the
 * JSON header (the whole header region, byte by byte), every length within
 * 16 bytes of every tensor's begin/end, a stride of 257 bytes elsewhere,
 * and size-1. Each attempt uses one copy of the file with everything after the cut
 * poisoned for ASan, so any read past the cut is reported. */
#include <unistd.h>

#include "format/import_safetensors.h"
#include "import/safetensors_writer.h"
#include "malformed_util.h"

static uint8_t *file;
static size_t file_len;
static char *header; /* NUL-terminated copy of the JSON header */
static size_t header_len;
static const uint8_t *data_section;
static size_t data_len;

/* The file with `new_header` and the original data section. */
static qiao_status *try_header(const char *new_header) {
  size_t len;
  uint8_t *bytes = st_assemble(new_header, strlen(new_header), data_section, data_len, &len);
  qiao_status *st = try_safetensors(bytes, len);
  free(bytes);
  return st;
}

/* The header with the first `from` replaced by `to`. */
static char *edit(const char *from, const char *to) {
  const char *p = strstr(header, from);
  if (p == NULL) {
    fprintf(stderr, "edit: '%s' not in the header\n", from);
    exit(1);
  }
  size_t n = strlen(header) - strlen(from) + strlen(to) + 1;
  char *out = malloc(n);
  snprintf(out, n, "%.*s%s%s", (int)(p - header), header, to, p + strlen(from));
  return out;
}

static void header_case(const char *what, const char *from, const char *to, qiao_code code) {
  char *h = edit(from, to);
  expect_code(what, try_header(h), code);
  free(h);
}

static void raw_header_case(const char *what, const char *text, qiao_code code) {
  expect_code(what, try_header(text), code);
}

static void test_length_field(void) {
  uint8_t *copy = exact_copy(file, file_len);
  uint64_t huge = 1ull << 60;
  memcpy(copy, &huge, 8);
  expect_code("header length huge", try_safetensors(copy, file_len), QIAO_LIMIT);
  uint64_t past = file_len; /* below the limit, past the end */
  memcpy(copy, &past, 8);
  expect_code("header length past the end", try_safetensors(copy, file_len), QIAO_MALFORMED);
  uint64_t zero = 0;
  memcpy(copy, &zero, 8);
  expect_code("header length 0", try_safetensors(copy, file_len), QIAO_MALFORMED);
  uint64_t short_len = header_len - 10; /* cuts the JSON */
  memcpy(copy, &short_len, 8);
  expect_code("header length inside the JSON", try_safetensors(copy, file_len), QIAO_MALFORMED);
  free(copy);
}

static void test_json(void) {
  raw_header_case("not JSON", "{this is not json}      ", QIAO_MALFORMED);
  raw_header_case("not an object", "[1, 2, 3]", QIAO_MALFORMED);
  raw_header_case("a string", "\"model\"", QIAO_MALFORMED);
  raw_header_case("unterminated", "{\"a\": {\"dtype\": \"F32\"", QIAO_MALFORMED);
  raw_header_case("bytes after the object", "{} x", QIAO_MALFORMED);
  {
    size_t len;
    char *nul = malloc(header_len);
    memcpy(nul, header, header_len);
    nul[header_len - 1] = '\0'; /* in the space padding after the object */
    uint8_t *bytes = st_assemble(nul, header_len, data_section, data_len, &len);
    expect_code("NUL byte in the header", try_safetensors(bytes, len), QIAO_MALFORMED);
    free(bytes);
    free(nul);
  }
  char deep[2000];
  size_t n = 0;
  n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"__metadata__\":");
  for (int i = 0; i < 200; i++)
    deep[n++] = '[';
  for (int i = 0; i < 200; i++)
    deep[n++] = ']';
  deep[n++] = '}';
  deep[n] = '\0';
  raw_header_case("deeply nested JSON", deep, QIAO_MALFORMED);
  header_case("__metadata__ not an object", "\"__metadata__\":{\"format\":\"pt\",",
              "\"__metadata__\":7,\"x\":{\"format\":\"pt\",", QIAO_MALFORMED);
  /* the safetensors library reads __metadata__ as strings to strings */
  header_case("__metadata__ value not a string", "{\"format\":\"pt\"", "{\"format\":7",
              QIAO_MALFORMED);
  header_case("invalid UTF-8 in a name", "model.embed_tokens.weight", "model.embed\xff\xfe.weight",
              QIAO_MALFORMED);
}

static void test_entries(void) {
  const char *first = "\"dtype\":\"F32\",\"shape\":[512,64],\"data_offsets\":[0,131072]";
  header_case("dtype unknown", "\"dtype\":\"F32\"", "\"dtype\":\"Q99\"", QIAO_UNSUPPORTED);
  header_case("dtype I64", "\"dtype\":\"F32\"", "\"dtype\":\"I64\"", QIAO_UNSUPPORTED);
  header_case("dtype F8_E5M2", "\"dtype\":\"F32\"", "\"dtype\":\"F8_E5M2\"", QIAO_UNSUPPORTED);
  /* F8_E4M3 is read (one byte each) but a lone file has no scales to pair */
  header_case("dtype F8_E4M3, F32 byte range", "\"dtype\":\"F32\"", "\"dtype\":\"F8_E4M3\"",
              QIAO_MALFORMED);
  header_case("dtype not a string", "\"dtype\":\"F32\"", "\"dtype\":32", QIAO_MALFORMED);
  header_case("dtype missing", "\"dtype\":\"F32\",", "", QIAO_MALFORMED);
  header_case("F16 with F32 byte range", "\"dtype\":\"F32\"", "\"dtype\":\"F16\"", QIAO_MALFORMED);
  char *not_object = malloc(strlen(first) + 3);
  sprintf(not_object, "{%s}", first);
  header_case("description not an object", not_object, "[1]", QIAO_MALFORMED);
  free(not_object);
  header_case("five dims", "\"shape\":[512,64]", "\"shape\":[512,1,1,1,64]", QIAO_UNSUPPORTED);
  header_case("no dims", "\"shape\":[64],", "\"shape\":[],", QIAO_UNSUPPORTED);
  header_case("zero dim", "\"shape\":[512,64]", "\"shape\":[0,64]", QIAO_UNSUPPORTED);
  header_case("negative dim", "\"shape\":[512,64]", "\"shape\":[-512,64]", QIAO_MALFORMED);
  header_case("dim not an integer", "\"shape\":[512,64]", "\"shape\":[512.5,64]", QIAO_MALFORMED);
  header_case("dims overflow", "\"shape\":[512,64]", "\"shape\":[4294967296,4294967296,4294967296]",
              QIAO_MALFORMED);
  header_case("dim beyond int64", "\"shape\":[512,64]", "\"shape\":[99999999999999999999,64]",
              QIAO_MALFORMED);
  header_case("shape missing", "\"shape\":[512,64],", "", QIAO_MALFORMED);
  header_case("range smaller than shape x dtype", "\"shape\":[512,64]", "\"shape\":[512,63]",
              QIAO_MALFORMED);
  header_case("range larger than shape x dtype", "\"shape\":[512,64]", "\"shape\":[512,65]",
              QIAO_MALFORMED);
  header_case("range reversed", "\"data_offsets\":[0,131072]", "\"data_offsets\":[131072,0]",
              QIAO_MALFORMED);
  header_case("range past the end", "\"data_offsets\":[1039872,1040128]",
              "\"data_offsets\":[1040128,1040384]", QIAO_MALFORMED);
  header_case("range far past the end", "\"data_offsets\":[1039872,1040128]",
              "\"data_offsets\":[18446744073709551360,18446744073709551615]", QIAO_MALFORMED);
  header_case("negative offset", "\"data_offsets\":[0,131072]", "\"data_offsets\":[-256,130816]",
              QIAO_MALFORMED);
  header_case("offsets not a pair", "\"data_offsets\":[0,131072]", "\"data_offsets\":[0]",
              QIAO_MALFORMED);
  header_case("offsets not integers", "\"data_offsets\":[0,131072]",
              "\"data_offsets\":[\"0\",\"131072\"]", QIAO_MALFORMED);
  header_case("offsets missing", ",\"data_offsets\":[0,131072]", "", QIAO_MALFORMED);
  /* layers.0.input_layernorm [131072,131328) moved onto the embedding. */
  header_case("overlapping ranges", "\"data_offsets\":[131072,131328]",
              "\"data_offsets\":[130816,131072]", QIAO_MALFORMED);
  header_case("same range twice", "\"data_offsets\":[131072,131328]", "\"data_offsets\":[0,256]",
              QIAO_MALFORMED);
  header_case("name empty", "\"model.embed_tokens.weight\"", "\"\"", QIAO_MALFORMED);
  char long_name[400];
  memset(long_name, 'x', sizeof(long_name));
  long_name[0] = '"';
  long_name[sizeof(long_name) - 2] = '"';
  long_name[sizeof(long_name) - 1] = '\0';
  header_case("name over-long", "\"model.embed_tokens.weight\"", long_name, QIAO_MALFORMED);
  /* A duplicate key: JSON keeps one, so the other's bytes become a gap. */
  header_case("duplicate name", "\"model.layers.0.input_layernorm.weight\"",
              "\"model.embed_tokens.weight\"", QIAO_MALFORMED);
  /* A tensor removed: its bytes are covered by nothing. */
  header_case("gap in the data",
              "\"model.layers.0.input_layernorm.weight\":{\"dtype\":\"F32\",\"shape\":[64],"
              "\"data_offsets\":[131072,131328]},",
              "", QIAO_MALFORMED);

  /* Trailing bytes after the last tensor, and a data section cut short. */
  size_t len;
  uint8_t *pad = calloc(1, data_len + 4);
  memcpy(pad, data_section, data_len);
  uint8_t *longer = st_assemble(header, header_len, pad, data_len + 4, &len);
  expect_code("trailing unindexed bytes", try_safetensors(longer, len), QIAO_MALFORMED);
  free(longer);
  free(pad);
}

/* A tensor missing from a Hugging Face directory is found by validate. */
static void test_missing_tensor(void) {
  char dir[] = "/tmp/qiao-malformed-st-XXXXXX";
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    test_failures++;
    return;
  }
  char path[256];
  snprintf(path, sizeof(path), "%s/config.json", dir);
  size_t config_len;
  char *config = test_read_file(test_shared_path("models/stories260K/hf/config.json"), &config_len);
  st_write_file(path, config, config_len);
  /* The file rebuilt without layer 2's up_proj. */
  qiao_model *m = NULL;
  qiao_st_table table;
  CHECK_OK(qiao__st_parse(file, file_len, "stories", &table));
  st_entry entries[64];
  size_t n = 0;
  for (uint64_t i = 0; i < table.count; i++) {
    const qiao_st_tensor *t = &table.tensors[i];
    if (strcmp(t->name, "model.layers.2.mlp.up_proj.weight") == 0) continue;
    entries[n] = (st_entry){t->name, "F32", (int)t->n_dims, {0}, t->data, t->n_bytes};
    memcpy(entries[n].shape, t->shape, sizeof(t->shape));
    n++;
  }
  size_t len;
  uint8_t *bytes = st_write(entries, n, &len);
  snprintf(path, sizeof(path), "%s/model.safetensors", dir);
  st_write_file(path, bytes, len);
  qiao_status *st = qiao_model_open(dir, NULL, &m);
  if (st == NULL) st = qiao_model_validate(m);
  expect_code("missing tensor (validate)", st, QIAO_MALFORMED);
  qiao_model_close(m);
  unlink(path);
  snprintf(path, sizeof(path), "%s/config.json", dir);
  unlink(path);
  rmdir(dir);
  free(bytes);
  free(config);
  qiao__st_table_free(&table);
}

static void test_truncation(void) {
  qiao_st_table table;
  CHECK_OK(qiao__st_parse(file, file_len, "stories", &table));
  uint64_t *bounds = calloc(2 * table.count + 1, sizeof(uint64_t));
  size_t nb = 0;
  for (uint64_t i = 0; i < table.count; i++) {
    bounds[nb++] = table.tensors[i].file_offset;
    bounds[nb++] = table.tensors[i].file_offset + table.tensors[i].n_bytes;
  }
  int tried = 0, failures_before = test_failures;
  uint64_t dense_end = 8 + header_len + 64;
  for (size_t len = 0; len < file_len; len++) {
    if (!(len <= dense_end || near_boundary(len, bounds, nb, 16) || len % 257 == 0 ||
          len == file_len - 1))
      continue;
    tried++;
    qiao_status *st = with_prefix(file, file_len, len, 0, try_safetensors_exact);
    if (qiao_status_code(st) != QIAO_MALFORMED) {
      char what[64];
      snprintf(what, sizeof(what), "safetensors truncated to %zu bytes", len);
      expect_code(what, st, QIAO_MALFORMED);
      if (test_failures - failures_before > 5) break;
    } else {
      cases_run++;
      qiao_status_free(st);
    }
  }
  fprintf(stderr, "safetensors: %d truncation lengths tried\n", tried);
  free(bounds);
  qiao__st_table_free(&table);
}

int main(void) {
  file = (uint8_t *)test_read_file(test_shared_path("models/stories260K/hf/model.safetensors"),
                                   &file_len);
  memcpy(&header_len, file, 8);
  header = malloc(header_len + 1);
  memcpy(header, file + 8, header_len);
  header[header_len] = '\0';
  data_section = file + 8 + header_len;
  data_len = file_len - 8 - header_len;
  CHECK_OK(try_safetensors(file, file_len)); /* the control */
  CHECK_OK(try_header(header));              /* the control, reassembled */
  test_length_field();
  test_json();
  test_entries();
  test_missing_tensor();
  test_truncation();
  fprintf(stderr, "%d malformed safetensors cases\n", cases_run);
  free(header);
  free(file);
  TEST_END();
}
