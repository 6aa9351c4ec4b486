/* The tokenizer test vectors of shared/tokenizers/gguf-vocab: the inputs of
 * NAME.inp (separated by "\n__ggml_vocab_test__\n") encode, without BOS and
 * without special-token parsing, to the ids on the matching line of
 * NAME.out; and each decodes back to its input.
 * Usage: tokenizer_vectors VECTORS_BASENAME TOKENIZER */
#include "tok_test_util.h"

static const char sep[] = "\n__ggml_vocab_test__\n";

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s VECTORS TOKENIZER\n", argv[0]);
    return 2;
  }
  qiao_tokenizer *t = tok_open_shared(argv[2]);
  char rel[512];
  snprintf(rel, sizeof(rel), "tokenizers/gguf-vocab/%s.inp", argv[1]);
  size_t inp_len, out_len;
  char *inp = test_read_file(test_shared_path(rel), &inp_len);
  snprintf(rel, sizeof(rel), "tokenizers/gguf-vocab/%s.out", argv[1]);
  char *out = test_read_file(test_shared_path(rel), &out_len);
  char *in_pos = inp, *out_pos = out;
  size_t count = 0;
  for (;;) {
    char *end = strstr(in_pos, sep);
    if (end == NULL) break;
    char *line_end = strchr(out_pos, '\n');
    CHECK(line_end != NULL);
    if (line_end == NULL) break;
    *line_end = '\0';
    int32_t want[4096];
    size_t n_want = 0;
    for (char *p = out_pos; *p;) {
      char *e;
      long v = strtol(p, &e, 10);
      if (e == p) break;
      want[n_want++] = (int32_t)v;
      p = e;
    }
    size_t len = (size_t)(end - in_pos), n;
    int32_t *ids = tok_encode(t, in_pos, len, false, false, &n);
    char label[160];
    snprintf(label, sizeof(label), "%s input %zu \"%.*s\"", argv[1], count,
             (int)(len > 40 ? 40 : len), in_pos);
    tok_check_ids(label, ids, n, want, n_want);
    tok_check_roundtrip(t, label, ids, n, in_pos, len);
    free(ids);
    count++;
    in_pos = end + strlen(sep);
    out_pos = line_end + 1;
  }
  fprintf(stderr, "%s: %zu inputs checked\n", argv[1], count);
  CHECK(count > 10);
  free(inp);
  free(out);
  qiao_tokenizer_destroy(t);
  TEST_END();
}
