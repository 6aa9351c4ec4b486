/* Small text helpers of the tokenizer: hashing, growable buffers, UTF-8
 * checks and GPT-2's byte <-> character mapping. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tokenizer_internal.h"

uint64_t qiao__hash_bytes(const char *s, size_t len) {
  /* FNV-1a, then a final mix so that the low bits (used as the slot) depend
   * on every byte. */
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) {
    h ^= (uint8_t)s[i];
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

int32_t qiao__token_map_find(const qiao_tokenizer *t, const char *s, size_t len) {
  if (t->map.slots == NULL) return -1;
  uint64_t i = qiao__hash_bytes(s, len) & t->map.mask;
  for (;;) {
    int32_t id = t->map.slots[i];
    if (id < 0) return -1;
    size_t tl;
    const char *tt = qiao__tok_text(t, id, &tl);
    if (tl == len && memcmp(tt, s, len) == 0) return id;
    i = (i + 1) & t->map.mask;
  }
}

static qiao_status *grow(void **data, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return NULL;
  size_t cap2 = *cap ? *cap : 16;
  while (cap2 < need) {
    if (cap2 > SIZE_MAX / 2 / elem)
      return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: buffer too large");
    cap2 *= 2;
  }
  void *p = realloc(*data, cap2 * elem);
  if (p == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
  *data = p;
  *cap = cap2;
  return NULL;
}

qiao_status *qiao__ids_push(qiao__ids *ids, int32_t id) {
  if (ids->n == ids->cap)
    QIAO__TRY(grow((void **)&ids->data, &ids->cap, ids->n + 1, sizeof(int32_t)));
  ids->data[ids->n++] = id;
  return NULL;
}

qiao_status *qiao__buf_append(qiao__buf *b, const void *data, size_t len) {
  if (len == 0) return NULL;
  if (len > SIZE_MAX - b->n - 1)
    return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: buffer too large");
  QIAO__TRY(grow((void **)&b->data, &b->cap, b->n + len + 1, 1));
  memcpy(b->data + b->n, data, len);
  b->n += len;
  b->data[b->n] = '\0';
  return NULL;
}

size_t qiao__utf8_valid_len(const uint8_t *s, size_t n) {
  if (n == 0) return 0;
  uint8_t c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF)
    len = 2;
  else if (c == 0xE0)
    len = 3, lo = 0xA0;
  else if (c == 0xED)
    len = 3, hi = 0x9F; /* no surrogates */
  else if (c >= 0xE1 && c <= 0xEF)
    len = 3;
  else if (c == 0xF0)
    len = 4, lo = 0x90;
  else if (c == 0xF4)
    len = 4, hi = 0x8F;
  else if (c >= 0xF1 && c <= 0xF3)
    len = 4;
  else
    return 0;
  if (n < len) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80) return 0;
  return len;
}

uint32_t qiao__utf8_decode(const uint8_t *s, size_t len) {
  switch (len) {
  case 1: return s[0];
  case 2: return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
  case 3: return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
  default:
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) |
           ((uint32_t)(s[2] & 0x3F) << 6) | (s[3] & 0x3F);
  }
}

static const char replacement[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

/* Follows the Unicode "maximal subpart" practice (as Python's
 * errors="replace" and WHATWG do): a byte that cannot continue the sequence
 * in progress ends it with one U+FFFD and is then looked at afresh. */
qiao_status *qiao__utf8_feed(qiao__utf8_state *st, const uint8_t *bytes, size_t len,
                             qiao__buf *out) {
  size_t run = 0; /* start of a run of plain ASCII/complete chars copied in one go */
  for (size_t i = 0; i < len; i++) {
    uint8_t c = bytes[i];
    if (st->need == 0) {
      if (c < 0x80) continue; /* part of the run */
      QIAO__TRY(qiao__buf_append(out, bytes + run, i - run));
      run = i + 1;
      st->lo = 0x80, st->hi = 0xBF;
      if (c >= 0xC2 && c <= 0xDF)
        st->need = 1;
      else if (c == 0xE0)
        st->need = 2, st->lo = 0xA0;
      else if (c == 0xED)
        st->need = 2, st->hi = 0x9F;
      else if (c >= 0xE1 && c <= 0xEF)
        st->need = 2;
      else if (c == 0xF0)
        st->need = 3, st->lo = 0x90;
      else if (c == 0xF4)
        st->need = 3, st->hi = 0x8F;
      else if (c >= 0xF1 && c <= 0xF3)
        st->need = 3;
      else {
        QIAO__TRY(qiao__buf_append(out, replacement, 3));
        continue;
      }
      st->held[0] = c;
      st->n_held = 1;
      continue;
    }
    run = i + 1;
    if (c < st->lo || c > st->hi) {
      QIAO__TRY(qiao__buf_append(out, replacement, 3));
      st->need = 0;
      st->n_held = 0;
      i--; /* look at this byte again as a start */
      run = i + 1;
      continue;
    }
    st->held[st->n_held++] = c;
    st->lo = 0x80, st->hi = 0xBF;
    if (--st->need == 0) {
      QIAO__TRY(qiao__buf_append(out, st->held, st->n_held));
      st->n_held = 0;
    }
  }
  if (st->need == 0 && run < len) QIAO__TRY(qiao__buf_append(out, bytes + run, len - run));
  return NULL;
}

qiao_status *qiao__utf8_finish(qiao__utf8_state *st, qiao__buf *out) {
  if (st->need != 0) QIAO__TRY(qiao__buf_append(out, replacement, 3));
  memset(st, 0, sizeof(*st));
  return NULL;
}

/* GPT-2 keeps the printable bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF as the
 * characters of the same code point and gives the other 68 bytes the code
 * points 256, 257, ... in byte order. */
static bool byte_is_printable(unsigned b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The other 68 bytes, in order: 0x00-0x20 (33), 0x7F-0xA0 (34) and 0xAD. */
static uint32_t byte_code_point(unsigned b) {
  if (byte_is_printable(b)) return b;
  if (b <= 0x20) return 256 + b;
  if (b >= 0x7F && b <= 0xA0) return 256 + 33 + (b - 0x7F);
  return 256 + 67; /* 0xAD */
}

size_t qiao__byte_to_unicode(uint8_t b, char out[2]) {
  uint32_t cp = byte_code_point(b);
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  out[0] = (char)(0xC0 | (cp >> 6));
  out[1] = (char)(0x80 | (cp & 0x3F));
  return 2;
}

int qiao__unicode_to_byte(uint32_t cp) {
  if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
  if (cp >= 256 + 68) return -1;
  uint32_t k = cp - 256;
  if (k < 33) return (int)k;
  if (k < 67) return (int)(0x7F + (k - 33));
  return 0xAD;
}
