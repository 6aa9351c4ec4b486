/* The stories260K vocab (llama2.c tok512.bin and the same vocab inside
 * stories260K.gguf) encodes "Once upon a time" with BOS to the prompt ids
 * llama2.c and Hugging Face use, and decodes llama2.c's greedy output ids to
 * the text llama2.c printed. */
#include "tok_test_util.h"

static const int32_t prompt[] = {1, 403, 407, 261, 378};

/* The ids line and the text after the "# stdout text" line of a reference. */
static void check_greedy(const qiao_tokenizer *t, const char *rel, bool with_prompt) {
  size_t len;
  char *file = test_read_file(test_shared_path(rel), &len);
  char *ids_line = strstr(file, "(greedy;");
  char *text = strstr(file, "# stdout text");
  CHECK(ids_line != NULL && text != NULL);
  if (ids_line == NULL || text == NULL) return;
  ids_line = strchr(ids_line, '\n') + 1;
  text = strchr(text, '\n') + 1;
  int32_t ids[1024];
  size_t n = 0;
  memcpy(ids, prompt, sizeof(prompt));
  n = with_prompt ? 5 : 1; /* the reference lists sampled ids only; BOS starts both */
  for (char *p = ids_line; *p && *p != '\n' && n < 1024;) {
    char *e;
    long v = strtol(p, &e, 10);
    if (e == p) break;
    ids[n++] = (int32_t)v;
    p = e;
  }
  char *out;
  size_t out_len;
  CHECK_OK(qiao_tokenizer_decode(t, ids, n, &out, &out_len));
  size_t want_len = strlen(text);
  while (want_len > 0 && text[want_len - 1] == '\n')
    want_len--; /* run.c ends with "\n" */
  if (out_len != want_len || memcmp(out, text, want_len) != 0) {
    fprintf(stderr, "%s: decoded text differs:\n%s\n---- want ----\n%.*s\n", rel, out,
            (int)want_len, text);
    test_failures++;
  }
  /* streaming gives the same text */
  qiao_detokenizer *d;
  CHECK_OK(qiao_detokenizer_create(t, &d));
  char *acc = calloc(1, out_len + 64);
  size_t acc_n = 0;
  for (size_t i = 0; i < n; i++) {
    const char *piece;
    size_t pl;
    CHECK_OK(qiao_detokenizer_push(d, ids[i], &piece, &pl));
    if (acc_n + pl <= out_len + 32) memcpy(acc + acc_n, piece, pl);
    acc_n += pl;
  }
  CHECK(acc_n == out_len && memcmp(acc, out, out_len) == 0);
  qiao_detokenizer_destroy(d);
  free(acc);
  free(out);
  free(file);
}

static void check(const char *rel) {
  qiao_tokenizer *t = tok_open_shared(rel);
  CHECK(qiao_tokenizer_vocab_size(t) == 512);
  CHECK(qiao_tokenizer_bos_id(t) == 1);
  CHECK(qiao_tokenizer_adds_bos(t));
  CHECK(qiao_tokenizer_is_eos(t, 2));
  size_t n;
  int32_t *ids = tok_encode(t, "Once upon a time", 16, true, true, &n);
  tok_check_ids(rel, ids, n, prompt, 5);
  free(ids);
  check_greedy(t, "reference/stories260K/stories260K_greedy_prompt_64.txt", true);
  check_greedy(t, "reference/stories260K/stories260K_greedy_bos_256.txt", false);
  qiao_tokenizer_destroy(t);
}

int main(void) {
  check("models/stories260K/tok512.bin");
  check("models/stories260K/stories260K.gguf");
  TEST_END();
}
