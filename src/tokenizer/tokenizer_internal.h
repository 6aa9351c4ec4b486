/* Internal: the in-memory tokenizer shared by the encoders (encode_spm.c,
 * encode_bpe.c), the pre-tokenizer, the special-token splitter and the
 * decoder. Built once by tokenizer.c from canonical tokenizer.* metadata and
 * read-only afterwards, so one tokenizer may serve many threads. */
#ifndef QIAO_TOKENIZER_INTERNAL_H
#define QIAO_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status_internal.h"
#include "qiao/tokenizer.h"

/* Token types of tokenizer.token_types (docs/spec/format.md 7.3). */
enum {
  QIAO__TOK_NORMAL = 1,
  QIAO__TOK_UNKNOWN = 2,
  QIAO__TOK_CONTROL = 3,
  QIAO__TOK_USER_DEFINED = 4,
  QIAO__TOK_UNUSED = 5,
  QIAO__TOK_BYTE = 6
};

typedef enum qiao__tok_kind { QIAO__TOK_SPM = 1, QIAO__TOK_BPE = 2 } qiao__tok_kind;

/* Longest regexes chain of a pre-tokenizer (DeepSeek LLM uses 6). */
#define QIAO__MAX_PRE_REGEXES 8

/* An open-addressing hash table from token text to id. */
typedef struct qiao__token_map {
  int32_t *slots; /* id, or -1 for empty */
  uint64_t mask;
} qiao__token_map;

/* A merge of two adjacent token ids into one, with its priority. */
typedef struct qiao__pair_entry {
  uint64_t key; /* (left << 32) | right; UINT64_MAX for empty */
  uint32_t rank;
  int32_t result;
} qiao__pair_entry;

struct qiao_tokenizer {
  qiao__tok_kind kind;
  uint32_t n_vocab;
  char *text;        /* all token texts, each NUL-terminated */
  uint64_t *offsets; /* (n_vocab + 1): token i is text[offsets[i] .. offsets[i+1]-1) */
  float *scores;     /* (n_vocab) spm merge scores */
  uint8_t *types;    /* (n_vocab) QIAO__TOK_* */
  qiao__token_map map;

  /* bpe: merges keyed by the pair of ids */
  qiao__pair_entry *pairs;
  uint64_t pair_mask;
  bool ignore_merges; /* a whole pre-token found in the vocab is used as is */

  /* Byte tokens: spm <0xXX>, bpe the id of the mapped single character; -1 when absent. */
  int32_t byte_token[256];

  /* Added tokens matched in the text: control (only with parse_special) and
   * user-defined (always), bucketed by first byte, longest first. */
  int32_t *special_ids;
  uint32_t special_start[257]; /* special_ids[special_start[b] .. special_start[b+1]) */

  int32_t bos_id;
  int32_t unk_id;
  bool add_bos;
  bool add_space_prefix; /* spm */
  /* spm: no mergeable piece holds another character followed by "▁", so the
   * text may be cut before each word's "▁" without changing the result */
  bool spm_word_split;
  bool nfc; /* bpe: NFC normalization */
  int32_t *eos_ids;
  size_t n_eos;

  /* bpe pre-tokenizer: a chain of regexes, each splitting the pieces of the
   * previous one, keeping matches and the gaps between them (pcre2_code *). */
  void *regexes[QIAO__MAX_PRE_REGEXES];
  size_t n_regexes;
};

static inline const char *qiao__tok_text(const qiao_tokenizer *t, int32_t id, size_t *len) {
  *len = (size_t)(t->offsets[id + 1] - t->offsets[id] - 1);
  return t->text + t->offsets[id];
}

/* Token lookup by exact text; -1 when absent. */
int32_t qiao__token_map_find(const qiao_tokenizer *t, const char *s, size_t len);
uint64_t qiao__hash_bytes(const char *s, size_t len);

/* A growable array of ids, the output of the encoders. */
typedef struct qiao__ids {
  int32_t *data;
  size_t n, cap;
} qiao__ids;
qiao_status *qiao__ids_push(qiao__ids *ids, int32_t id);

/* Encoders of one piece of text that holds no special tokens.
 * spm: `add_prefix` says whether the dummy-prefix space applies. */
qiao_status *qiao__spm_encode(const qiao_tokenizer *t, const char *text, size_t len,
                              bool add_prefix, qiao__ids *out);
qiao_status *qiao__bpe_encode(const qiao_tokenizer *t, const char *text, size_t len,
                              qiao__ids *out);

/* Pre-tokenizer setup: compiles the regexes of `pre` ("gpt2", "llama3", ...),
 * or `custom_regex` when pre is "regex". Errors name the key. */
qiao_status *qiao__pretok_init(qiao_tokenizer *t, const char *pre, size_t pre_len,
                               const char *custom_regex, size_t custom_len);
void qiao__pretok_free(qiao_tokenizer *t);
/* Cuts `s` (valid UTF-8) into pre-tokens and calls `emit` on each. */
qiao_status *qiao__pretok_split(const qiao_tokenizer *t, const char *s, size_t len,
                                qiao_status *(*emit)(const qiao_tokenizer *, const char *, size_t,
                                                     qiao__ids *),
                                qiao__ids *out);

/* GPT-2's reversible mapping of bytes to printable characters: the UTF-8 of
 * the character for byte b (1 or 2 bytes), and the reverse (-1 when the code
 * point is not one of the 256). */
size_t qiao__byte_to_unicode(uint8_t b, char out[2]);
int qiao__unicode_to_byte(uint32_t cp);

/* UTF-8 helpers. Length of the valid UTF-8 character at s (1-4), or 0 when
 * the bytes there do not start a valid (shortest-form, non-surrogate) one. */
size_t qiao__utf8_valid_len(const uint8_t *s, size_t n);
/* Decodes a valid character (as checked above). */
uint32_t qiao__utf8_decode(const uint8_t *s, size_t len);

/* Incremental UTF-8 sanitizer: invalid sequences become U+FFFD (one per
 * maximal invalid subpart), incomplete ones are held. Shared by one-shot and
 * streaming decoding so both give the same text. */
typedef struct qiao__utf8_state {
  uint8_t held[4];
  uint8_t n_held;
  uint8_t need;
  uint8_t lo, hi; /* allowed range of the next continuation byte */
} qiao__utf8_state;

typedef struct qiao__buf {
  char *data;
  size_t n, cap;
} qiao__buf;
qiao_status *qiao__buf_append(qiao__buf *b, const void *data, size_t len);

qiao_status *qiao__utf8_feed(qiao__utf8_state *st, const uint8_t *bytes, size_t len,
                             qiao__buf *out);
qiao_status *qiao__utf8_finish(qiao__utf8_state *st, qiao__buf *out);

/* The raw bytes of one token as decoding writes them (before UTF-8 checks).
 * `at_start` is true while nothing has been written: spm then drops the
 * dummy-prefix space. Sets *at_start to false once bytes were written. */
qiao_status *qiao__token_bytes(const qiao_tokenizer *t, int32_t id, bool *at_start, qiao__buf *out);

#endif
