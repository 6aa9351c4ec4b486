/* Property tests: random valid UTF-8 round-trips exactly through encode and
 * decode (tokenizers without a normalizer are lossless); random bytes never
 * crash and decode to valid UTF-8; special-token text round-trips too.
 * Usage: tokenizer_props TOKENIZER [SPECIAL_TOKEN_TEXT] */
#include "tok_test_util.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_rand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 16);
}

static size_t put_utf8(uint32_t cp, char *out) {
  if (cp < 0x80) return out[0] = (char)cp, 1;
  if (cp < 0x800) return out[0] = (char)(0xC0 | cp >> 6), out[1] = (char)(0x80 | (cp & 0x3F)), 2;
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | cp >> 12);
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | cp >> 18);
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static uint32_t random_code_point(void) {
  static const uint32_t common[] = {
      ' ',    ' ',    '\n',   '\t',    'a',     'e',    'Z',    '7',    '\'',   '.',    0x4E2D,
      0x6587, 0x3042, 0xAC00, 0x1F999, 0x1F680, 0x200D, 0x0301, 0x00A0, 0x2009, 0x0430, 0x05D0};
  switch (next_rand() % 4) {
  case 0: return common[next_rand() % (sizeof(common) / sizeof(common[0]))];
  case 1: return 0x20 + next_rand() % 95;
  default: {
    uint32_t cp;
    do
      cp = next_rand() % 0x110000;
    while ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0x2581 || cp == 0);
    return cp;
  }
  }
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  qiao_tokenizer *t = tok_open_shared(argv[1]);
  const char *special = argc > 2 ? argv[2] : NULL;
  char text[2048];
  for (int iter = 0; iter < 300; iter++) {
    size_t len = 0, n_chars = next_rand() % 120;
    for (size_t c = 0; c < n_chars; c++) {
      if (special != NULL && next_rand() % 40 == 0) {
        size_t sl = strlen(special);
        memcpy(text + len, special, sl);
        len += sl;
      } else {
        len += put_utf8(random_code_point(), text + len);
      }
    }
    size_t n;
    int32_t *ids = tok_encode(t, text, len, false, special != NULL, &n);
    CHECK(ids != NULL);
    tok_check_roundtrip(t, "random UTF-8", ids, n, text, len);
    free(ids);
  }
  for (int iter = 0; iter < 300; iter++) {
    size_t len = next_rand() % 200;
    for (size_t i = 0; i < len; i++)
      text[i] = (char)(next_rand() & 0xFF);
    size_t n;
    int32_t *ids = tok_encode(t, text, len, true, true, &n);
    CHECK(ids != NULL);
    char *out;
    size_t out_len;
    CHECK_OK(qiao_tokenizer_decode(t, ids, n, &out, &out_len));
    /* the output is valid UTF-8 */
    for (size_t i = 0; i < out_len;) {
      unsigned char c = (unsigned char)out[i];
      size_t l = c < 0x80                  ? 1
                 : (c >= 0xC2 && c < 0xE0) ? 2
                 : (c >= 0xE0 && c < 0xF0) ? 3
                 : (c >= 0xF0 && c < 0xF5) ? 4
                                           : 0;
      CHECK(l > 0 && i + l <= out_len);
      if (l == 0) break;
      for (size_t k = 1; k < l && i + k < out_len; k++)
        CHECK(((unsigned char)out[i + k] & 0xC0) == 0x80);
      i += l;
    }
    free(out);
    free(ids);
  }
  qiao_tokenizer_destroy(t);
  TEST_END();
}
