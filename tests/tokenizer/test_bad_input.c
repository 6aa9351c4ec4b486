/* Malformed tokenizer inputs give clear errors naming the field (never a
 * crash): tokenizer.json merges naming missing tokens, ids beyond the vocab,
 * duplicate ids, a pre-tokenizer regex that does not compile, invalid JSON;
 * truncated or corrupted SentencePiece tokenizer.model files. Valid small
 * files (both merge spellings, a custom regex) work. */
#include "format/import_tokenizer.h"
#include "format/model_internal.h"
#include "tok_test_util.h"

#define BYTE_LEVEL "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"

/* Imports `json`, then builds a tokenizer. Returns the first error. */
static qiao_status *load(const char *json, qiao_tokenizer **out) {
  qiao_model *m;
  qiao_status *st = qiao__model_create("test.json", "hf", &m);
  if (st) return st;
  st = qiao__import_tokenizer_json_buffer(m, json, strlen(json), NULL, 0, "test.json");
  qiao_tokenizer *t = NULL;
  if (st == NULL) st = qiao_tokenizer_create_from_model(m, &t);
  qiao_model_close(m);
  if (st == NULL && out)
    *out = t;
  else
    qiao_tokenizer_destroy(t);
  return st;
}

static void expect_error(const char *json, qiao_code code, const char *needle) {
  qiao_status *st = load(json, NULL);
  if (qiao_status_code(st) != code || strstr(qiao_status_message(st), needle) == NULL) {
    fprintf(stderr, "expected %s mentioning \"%s\", got %s: %s\n  for %s\n", qiao_code_name(code),
            needle, qiao_code_name(qiao_status_code(st)), qiao_status_message(st), json);
    test_failures++;
  }
  qiao_status_free(st);
}

static void expect_ids(const char *json, const char *text, const int32_t *want, size_t n_want) {
  qiao_tokenizer *t = NULL;
  CHECK_OK(load(json, &t));
  if (t == NULL) return;
  size_t n;
  int32_t *ids = tok_encode(t, text, strlen(text), false, true, &n);
  tok_check_ids(text, ids, n, want, n_want);
  tok_check_roundtrip(t, text, ids, n, text, strlen(text));
  free(ids);
  qiao_tokenizer_destroy(t);
}

static void json_cases(void) {
  /* valid: both spellings of merges */
  static const int32_t ab[] = {2};
  expect_ids(
      "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]},"
      "\"pre_tokenizer\":" BYTE_LEVEL "}",
      "ab", ab, 1);
  expect_ids("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},"
             "\"merges\":[[\"a\",\"b\"]]},\"pre_tokenizer\":" BYTE_LEVEL "}",
             "ab", ab, 1);
  /* a custom Split regex is kept and used: one piece per character */
  static const int32_t a_b[] = {0, 1};
  expect_ids(
      "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]},"
      "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
      "\"pattern\":{\"Regex\":\"\\\\p{L}\"},\"behavior\":\"Isolated\",\"invert\":false},"
      "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}}",
      "ab", a_b, 2);
  /* an added special token is matched in the text */
  static const int32_t sp[] = {0, 3, 1};
  expect_ids(
      "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a b\"]},"
      "\"added_tokens\":[{\"id\":3,\"content\":\"<|x|>\",\"special\":true}],"
      "\"pre_tokenizer\":" BYTE_LEVEL "}",
      "a<|x|>b", sp, 3);

  /* SentencePiece-style (byte_fallback + Metaspace): dummy prefix, merges in
   * order, byte fallback for the newline, <unk> for a byte with no token */
  static const int32_t sp_ids[] = {8, 3, 0};
  qiao_tokenizer *spt = NULL;
  CHECK_OK(load("{\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\","
                "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0x0A>\":3,\"\xE2\x96\x81\":4,"
                "\"a\":5,\"b\":6,\"ab\":7,\"\xE2\x96\x81"
                "ab\":8},"
                "\"merges\":[\"a b\",\"\xE2\x96\x81 ab\"]},"
                "\"added_tokens\":[{\"id\":1,\"content\":\"<s>\",\"special\":true}],"
                "\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\","
                "\"prepend_scheme\":\"first\",\"split\":false}}",
                &spt));
  if (spt != NULL) {
    size_t n;
    int32_t *ids = tok_encode(spt, "ab\n\t", 4, false, false, &n);
    tok_check_ids("spm-style json", ids, n, sp_ids, 3);
    free(ids);
    qiao_tokenizer_destroy(spt);
  }
  expect_error(
      "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2},\"merges\":[\"a c\"]},"
      "\"pre_tokenizer\":" BYTE_LEVEL "}",
      QIAO_MALFORMED, "model.merges[0]");
  expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]},"
               "\"pre_tokenizer\":" BYTE_LEVEL "}",
               QIAO_MALFORMED, "model.merges[0]");
  expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":7},\"merges\":[]},"
               "\"pre_tokenizer\":" BYTE_LEVEL "}",
               QIAO_MALFORMED, "beyond the vocabulary");
  expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]},"
               "\"pre_tokenizer\":" BYTE_LEVEL "}",
               QIAO_MALFORMED, "duplicate id");
  expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]},"
               "\"added_tokens\":[{\"id\":99,\"content\":\"<s>\",\"special\":true}],"
               "\"pre_tokenizer\":" BYTE_LEVEL "}",
               QIAO_MALFORMED, "added_tokens[0]");
  expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[]},"
               "\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
               "\"pattern\":{\"Regex\":\"(unclosed\"},\"behavior\":\"Isolated\",\"invert\":false},"
               "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}}",
               QIAO_MALFORMED, "tokenizer.pre_regex");
  expect_error("{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", QIAO_UNSUPPORTED, "model.type");
  expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}", QIAO_MALFORMED, "byte offset");
  expect_error("[1,2]", QIAO_MALFORMED, "not a JSON object");
  expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"}}}", QIAO_MALFORMED,
               "model.vocab");
  expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[3]},"
               "\"pre_tokenizer\":" BYTE_LEVEL "}",
               QIAO_MALFORMED, "model.merges[0]");
  expect_error("{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}},\"pre_tokenizer\":"
               "{\"type\":\"Whitespace\"}}",
               QIAO_UNSUPPORTED, "pre_tokenizer");
  /* deep nesting is refused by the parser, not the stack */
  char deep[4096];
  size_t k = 0;
  k += (size_t)snprintf(deep, sizeof(deep), "{\"model\":");
  for (int i = 0; i < 1000; i++)
    deep[k++] = '[';
  deep[k] = '\0';
  expect_error(deep, QIAO_MALFORMED, "test.json");
}

static void spm_cases(void) {
  size_t size;
  char *data = test_read_file(test_shared_path("models/llama2-tokenizer/tokenizer.model"), &size);
  /* every truncation either fails cleanly or (at a field boundary) gives a tokenizer */
  for (size_t cut = 0; cut < size; cut += (cut < 600 ? 1 : 7919)) {
    qiao_model *m;
    CHECK_OK(qiao__model_create("tokenizer.model", "hf", &m));
    qiao_status *st =
        qiao__import_spm_model_buffer(m, (const uint8_t *)data, cut, "tokenizer.model");
    qiao_tokenizer *t = NULL;
    if (st == NULL) st = qiao_tokenizer_create_from_model(m, &t);
    if (st != NULL) CHECK(strstr(qiao_status_message(st), "tokenizer.model") != NULL);
    qiao_status_free(st);
    qiao_tokenizer_destroy(t);
    qiao_model_close(m);
  }
  /* corrupted bytes */
  uint64_t r = 12345;
  for (int iter = 0; iter < 200; iter++) {
    char *copy = malloc(size);
    memcpy(copy, data, size);
    for (int k = 0; k < 8; k++) {
      r = r * 6364136223846793005ull + 1442695040888963407ull;
      copy[(r >> 20) % 2048] = (char)(r >> 56);
    }
    qiao_model *m;
    CHECK_OK(qiao__model_create("tokenizer.model", "hf", &m));
    qiao_status *st =
        qiao__import_spm_model_buffer(m, (const uint8_t *)copy, size, "tokenizer.model");
    qiao_tokenizer *t = NULL;
    if (st == NULL) st = qiao_tokenizer_create_from_model(m, &t);
    if (t != NULL) {
      size_t n;
      int32_t *ids = tok_encode(t, "Hello world 中文", 18, true, true, &n);
      free(ids);
    }
    qiao_status_free(st);
    qiao_tokenizer_destroy(t);
    qiao_model_close(m);
    free(copy);
  }
  free(data);
  qiao_tokenizer *t = NULL;
  CHECK_ERR(qiao_tokenizer_open("/nonexistent/tokenizer.json", &t), QIAO_NOT_FOUND);
}

int main(void) {
  json_cases();
  spm_cases();
  TEST_END();
}
