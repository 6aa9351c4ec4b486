/* Token ids back to text, in one go or streaming. Both go through the same
 * two steps so they always agree:
 *   1. the raw bytes of each token: spm turns "▁" into a space, <0xXX> into
 *      the byte, drops control tokens and, like sentencepiece, the one
 *      dummy-prefix space at the very start; bpe maps each character of the
 *      token back to its byte (added tokens are written as they are);
 *   2. an incremental UTF-8 check that holds an unfinished character until
 *      its last byte arrives and turns invalid bytes into U+FFFD. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

static qiao_status *spm_bytes(const qiao_tokenizer *t, int32_t id, bool *at_start, qiao__buf *out) {
  size_t len;
  const char *s = qiao__tok_text(t, id, &len);
  switch (t->types[id]) {
  case QIAO__TOK_CONTROL: return NULL; /* <s>, </s>: no text */
  case QIAO__TOK_UNKNOWN:
    *at_start = false;
    return qiao__buf_append(out, " \xE2\x81\x87 ", 5); /* sentencepiece's " ⁇ " */
  case QIAO__TOK_BYTE:
    if (len == 6) {
      uint8_t b = 0;
      for (int i = 3; i < 5; i++) {
        char c = s[i];
        b = (uint8_t)(b * 16 + (c >= 'A' ? (c >= 'a' ? c - 'a' : c - 'A') + 10 : c - '0'));
      }
      *at_start = false;
      return qiao__buf_append(out, &b, 1);
    }
    break;
  default: break;
  }
  size_t i = 0;
  if (*at_start && t->add_space_prefix && len >= 3 && memcmp(s, "\xE2\x96\x81", 3) == 0) i = 3;
  if (len > 0) *at_start = false;
  size_t run = i;
  for (; i < len; i++) {
    if (i + 3 <= len && memcmp(s + i, "\xE2\x96\x81", 3) == 0) {
      QIAO__TRY(qiao__buf_append(out, s + run, i - run));
      QIAO__TRY(qiao__buf_append(out, " ", 1));
      i += 2;
      run = i + 1;
    }
  }
  return qiao__buf_append(out, s + run, len - run);
}

static qiao_status *bpe_bytes(const qiao_tokenizer *t, int32_t id, qiao__buf *out) {
  size_t len;
  const char *s = qiao__tok_text(t, id, &len);
  uint8_t type = t->types[id];
  if (type == QIAO__TOK_CONTROL || type == QIAO__TOK_USER_DEFINED || type == QIAO__TOK_UNKNOWN)
    return qiao__buf_append(out, s, len);
  for (size_t i = 0; i < len;) {
    size_t cl = qiao__utf8_valid_len((const uint8_t *)s + i, len - i);
    int b = cl ? qiao__unicode_to_byte(qiao__utf8_decode((const uint8_t *)s + i, cl)) : -1;
    if (cl == 0) cl = 1;
    if (b >= 0) {
      uint8_t c = (uint8_t)b;
      QIAO__TRY(qiao__buf_append(out, &c, 1));
    } else {
      QIAO__TRY(qiao__buf_append(out, s + i, cl)); /* not a mapped character: as is */
    }
    i += cl;
  }
  return NULL;
}

bool qiao_tokenizer_is_control(const qiao_tokenizer *t, int32_t id) {
  return id >= 0 && (uint32_t)id < t->n_vocab && t->types[id] == QIAO__TOK_CONTROL;
}

qiao_status *qiao_tokenizer_token_bytes(const qiao_tokenizer *t, int32_t id, char *buf, size_t cap,
                                        size_t *out_len) {
  qiao__buf b = {0};
  bool at_start = false;
  qiao_status *st = qiao__token_bytes(t, id, &at_start, &b);
  if (st == NULL) {
    *out_len = b.n;
    if (b.n > cap)
      st = qiao__error(QIAO_LIMIT, "token %d has %zu bytes, more than %zu", id, b.n, cap);
    else if (b.n > 0)
      memcpy(buf, b.data, b.n);
  }
  free(b.data);
  return st;
}

qiao_status *qiao__token_bytes(const qiao_tokenizer *t, int32_t id, bool *at_start,
                               qiao__buf *out) {
  if (id < 0 || (uint32_t)id >= t->n_vocab)
    return qiao__error(QIAO_INVALID_ARGUMENT, "token id %d outside the vocabulary of %u tokens", id,
                       t->n_vocab);
  if (t->kind == QIAO__TOK_SPM) return spm_bytes(t, id, at_start, out);
  *at_start = false;
  return bpe_bytes(t, id, out);
}

qiao_status *qiao_tokenizer_decode(const qiao_tokenizer *t, const int32_t *ids, size_t n,
                                   char **out_text, size_t *out_len) {
  if (t == NULL || (ids == NULL && n > 0) || out_text == NULL || out_len == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_tokenizer_decode: NULL argument");
  qiao__buf raw = {0}, text = {0};
  qiao__utf8_state utf8 = {0};
  bool at_start = true;
  qiao_status *st = NULL;
  for (size_t i = 0; i < n && st == NULL; i++) {
    raw.n = 0;
    st = qiao__token_bytes(t, ids[i], &at_start, &raw);
    if (st == NULL) st = qiao__utf8_feed(&utf8, (const uint8_t *)raw.data, raw.n, &text);
  }
  if (st == NULL) st = qiao__utf8_finish(&utf8, &text);
  if (st == NULL && text.data == NULL) {
    text.data = calloc(1, 1);
    if (text.data == NULL) st = qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
  }
  free(raw.data);
  if (st != NULL) {
    free(text.data);
    return st;
  }
  *out_text = text.data;
  *out_len = text.n;
  return NULL;
}

struct qiao_detokenizer {
  const qiao_tokenizer *t;
  bool at_start;
  qiao__utf8_state utf8;
  qiao__buf raw, text;
};

qiao_status *qiao_detokenizer_create(const qiao_tokenizer *t, qiao_detokenizer **out) {
  if (t == NULL || out == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_detokenizer_create: NULL argument");
  qiao_detokenizer *d = calloc(1, sizeof(*d));
  if (d == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
  d->t = t;
  d->at_start = true;
  *out = d;
  return NULL;
}

void qiao_detokenizer_destroy(qiao_detokenizer *d) {
  if (d == NULL) return;
  free(d->raw.data);
  free(d->text.data);
  free(d);
}

static const char empty[1] = "";

qiao_status *qiao_detokenizer_push(qiao_detokenizer *d, int32_t id, const char **out_text,
                                   size_t *out_len) {
  if (d == NULL || out_text == NULL || out_len == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_detokenizer_push: NULL argument");
  d->raw.n = 0;
  d->text.n = 0;
  QIAO__TRY(qiao__token_bytes(d->t, id, &d->at_start, &d->raw));
  QIAO__TRY(qiao__utf8_feed(&d->utf8, (const uint8_t *)d->raw.data, d->raw.n, &d->text));
  *out_text = d->text.n ? d->text.data : empty;
  *out_len = d->text.n;
  return NULL;
}

qiao_status *qiao_detokenizer_flush(qiao_detokenizer *d, const char **out_text, size_t *out_len) {
  if (d == NULL || out_text == NULL || out_len == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "qiao_detokenizer_flush: NULL argument");
  d->text.n = 0;
  QIAO__TRY(qiao__utf8_finish(&d->utf8, &d->text));
  d->at_start = true;
  *out_text = d->text.n ? d->text.data : empty;
  *out_len = d->text.n;
  return NULL;
}
