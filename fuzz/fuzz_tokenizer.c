/* libFuzzer target for the tokenizer: the first byte picks what to do with
 * the rest of the input:
 *   0, 1  encode it with a small in-memory byte-level BPE (qwen2 pre-tokenizer,
 *         NFC, merges, special tokens) or SentencePiece vocab, with the flags
 *         of bits 4-5, then decode in one go and streaming and compare;
 *   2, 3  decode it as little-endian int32 ids with either vocab;
 *   4     import it as a tokenizer.json and, if that works, build and use it;
 *   5     import it as a SentencePiece tokenizer.model, likewise.
 * Nothing may crash, leak or disagree. */
#include <stdlib.h>
#include <string.h>

#include "format/import_tokenizer.h"
#include "format/model_internal.h"
#include "qiao/tokenizer.h"

static qiao_tokenizer *bpe, *spm;

static void set_strings(qiao_model *m, const char *key, const char *const *s, size_t n) {
  qiao_string *v = calloc(n, sizeof(*v));
  for (size_t i = 0; i < n; i++)
    v[i] = (qiao_string){s[i], strlen(s[i])};
  qiao_status_free(qiao__model_set_array(m, key, QIAO_VALUE_STRING, n, v));
  free(v);
}

static qiao_tokenizer *make_bpe(void) {
  static char bytes[256][3];
  const char *tokens[270];
  int32_t types[270];
  size_t n = 0;
  for (unsigned b = 0; b < 256; b++) {
    /* GPT-2's byte -> character mapping, spelled out here independently */
    unsigned cp = b, k = 0;
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    if (!printable) {
      for (unsigned i = 0; i < b; i++)
        if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE)) k++;
      cp = 256 + k;
    }
    if (cp < 0x80)
      bytes[b][0] = (char)cp;
    else
      bytes[b][0] = (char)(0xC0 | cp >> 6), bytes[b][1] = (char)(0x80 | (cp & 0x3F));
    tokens[n] = bytes[b];
    types[n++] = 1;
  }
  static const char *const extra[] = {"Ġt", "he", "Ġthe", "in", "ä¸", "ä¸Ń", "ĠĠ", "ĠĠĠĠ"};
  for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++)
    tokens[n] = extra[i], types[n++] = 1;
  tokens[n] = "<|im_start|>", types[n++] = 3;
  tokens[n] = "<think>", types[n++] = 4;
  static const char *const merges[] = {"Ġ t", "h e", "Ġt he", "i n", "ä ¸", "ä¸ Ń", "Ġ Ġ", "ĠĠ ĠĠ"};
  qiao_model *m = NULL;
  qiao_status_free(qiao__model_create("fuzz-bpe", "hf", &m));
  qiao_status_free(qiao__model_set_string(m, "tokenizer.model", "bpe", 3));
  qiao_status_free(qiao__model_set_string(m, "tokenizer.pre", "qwen2", 5));
  qiao_status_free(qiao__model_set_string(m, "tokenizer.normalizer", "nfc", 3));
  set_strings(m, "tokenizer.tokens", tokens, n);
  qiao_status_free(qiao__model_set_array(m, "tokenizer.token_types", QIAO_VALUE_I32, n, types));
  set_strings(m, "tokenizer.merges", merges, sizeof(merges) / sizeof(merges[0]));
  qiao_tokenizer *t = NULL;
  qiao_status *st = qiao_tokenizer_create_from_model(m, &t);
  if (st != NULL) abort();
  qiao_model_close(m);
  return t;
}

static qiao_tokenizer *make_spm(void) {
  static char bytes[256][7];
  const char *tokens[280];
  float scores[280];
  int32_t types[280];
  size_t n = 0;
  tokens[n] = "<unk>", types[n] = 2, scores[n++] = 0;
  tokens[n] = "<s>", types[n] = 3, scores[n++] = 0;
  tokens[n] = "</s>", types[n] = 3, scores[n++] = 0;
  for (unsigned b = 0; b < 256; b++) {
    static const char hex[] = "0123456789ABCDEF";
    memcpy(bytes[b], "<0x", 3);
    bytes[b][3] = hex[b >> 4], bytes[b][4] = hex[b & 15], bytes[b][5] = '>', bytes[b][6] = 0;
    tokens[n] = bytes[b], types[n] = 6, scores[n++] = 0;
  }
  static const char *const pieces[] = {"▁",   "a",  "b",  "c",    "ab", "▁a",
                                       "▁ab", "中", "文", "中文", "▁▁"};
  for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++)
    tokens[n] = pieces[i], types[n] = 1, scores[n++] = -(float)i;
  qiao_model *m = NULL;
  qiao_status_free(qiao__model_create("fuzz-spm", "hf", &m));
  qiao_status_free(qiao__model_set_string(m, "tokenizer.model", "spm", 3));
  set_strings(m, "tokenizer.tokens", tokens, n);
  qiao_status_free(qiao__model_set_array(m, "tokenizer.scores", QIAO_VALUE_F32, n, scores));
  qiao_status_free(qiao__model_set_array(m, "tokenizer.token_types", QIAO_VALUE_I32, n, types));
  qiao_status_free(qiao__model_set_u32(m, "tokenizer.bos_id", 1));
  qiao_status_free(qiao__model_set_u32(m, "tokenizer.unk_id", 0));
  qiao_tokenizer *t = NULL;
  if (qiao_tokenizer_create_from_model(m, &t) != NULL) abort();
  qiao_model_close(m);
  return t;
}

/* Decoding in one go and streaming must agree (when the ids are valid). */
static void decode_both(const qiao_tokenizer *t, const int32_t *ids, size_t n) {
  char *whole = NULL;
  size_t whole_len = 0;
  qiao_status *st = qiao_tokenizer_decode(t, ids, n, &whole, &whole_len);
  qiao_detokenizer *d = NULL;
  qiao_status_free(qiao_detokenizer_create(t, &d));
  size_t at = 0;
  bool valid = st == NULL, same = true;
  for (size_t i = 0; i < n && d != NULL; i++) {
    const char *p;
    size_t pl;
    qiao_status *ps = qiao_detokenizer_push(d, ids[i], &p, &pl);
    if (ps == NULL && valid) {
      same = same && at + pl <= whole_len && memcmp(whole + at, p, pl) == 0;
      at += pl;
    }
    if (ps != NULL && valid) abort(); /* decode accepted what push refused */
    qiao_status_free(ps);
  }
  if (valid && d != NULL) {
    const char *p;
    size_t pl;
    qiao_status_free(qiao_detokenizer_flush(d, &p, &pl));
    same = same && at + pl == whole_len && memcmp(whole + at, p, pl) == 0;
  }
  if (!same) abort();
  qiao_detokenizer_destroy(d);
  qiao_status_free(st);
  free(whole);
}

static void use(const qiao_tokenizer *t, const uint8_t *data, size_t size, uint8_t flags) {
  qiao_encode_options o = {sizeof(o), (flags & 0x10) != 0, (flags & 0x20) != 0};
  int32_t *ids = NULL;
  size_t n = 0;
  qiao_status *st = qiao_tokenizer_encode(t, (const char *)data, size, &o, &ids, &n);
  if (st == NULL) {
    for (size_t i = 0; i < n; i++)
      if (ids[i] < 0 || (uint32_t)ids[i] >= qiao_tokenizer_vocab_size(t)) abort();
    decode_both(t, ids, n);
  }
  qiao_status_free(st);
  free(ids);
}

static void import(int kind, const uint8_t *data, size_t size) {
  qiao_model *m = NULL;
  if (qiao__model_create("fuzz-input", "hf", &m) != NULL) return;
  qiao_status *st = kind == 4 ? qiao__import_tokenizer_json_buffer(m, (const char *)data, size,
                                                                   NULL, 0, "fuzz.json")
                              : qiao__import_spm_model_buffer(m, data, size, "fuzz.model");
  qiao_tokenizer *t = NULL;
  if (st == NULL) st = qiao_tokenizer_create_from_model(m, &t);
  if (st == NULL) use(t, (const uint8_t *)"Hello wor\xE4\xB8\xAD ld 123 <s>", 21, 0x30);
  qiao_tokenizer_destroy(t);
  qiao_status_free(st);
  qiao_model_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  if (bpe == NULL) bpe = make_bpe(), spm = make_spm();
  uint8_t mode = data[0] & 0x0F, flags = data[0];
  data++, size--;
  switch (mode) {
  case 0: use(bpe, data, size, flags); break;
  case 1: use(spm, data, size, flags); break;
  case 2:
  case 3: {
    size_t n = size / 4;
    int32_t *ids = malloc((n ? n : 1) * sizeof(int32_t));
    if (ids == NULL) return 0;
    if (n) memcpy(ids, data, n * 4);
    decode_both(mode == 2 ? bpe : spm, ids, n);
    free(ids);
    break;
  }
  case 4:
  case 5: import(mode, data, size); break;
  default: break;
  }
  return 0;
}
