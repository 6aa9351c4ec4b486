/* SentencePiece BPE with byte fallback, as sentencepiece and llama2.c do it:
 *   1. prepend the dummy-prefix space, turn every ' ' into U+2581 "▁";
 *   2. start from one symbol per UTF-8 character (an invalid byte is a
 *      symbol of its own);
 *   3. repeatedly merge the adjacent pair whose concatenation is a vocabulary
 *      piece of the highest score (the leftmost pair on ties);
 *   4. emit each symbol's id, or its bytes as <0xXX> tokens when the symbol is
 *      not a piece (unk when the vocabulary has no byte tokens).
 * Step 3 uses a heap of candidate pairs over a linked list of symbols, so a
 * text of n characters takes O(n log n), not the O(n^2) rescanning loop. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/merge_heap.h"
#include "tokenizer/tokenizer_internal.h"

typedef struct symbol {
  uint32_t start, len; /* bytes of the normalized text */
  int32_t prev, next;  /* -1 at the ends; len 0 once merged away */
} symbol;

/* Higher scores pop first: the key's high half orders floats descending. */
static uint32_t score_order(float score) {
  uint32_t bits;
  memcpy(&bits, &score, sizeof(bits));
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u); /* ascending as unsigned */
  return ~bits;
}

/* Pieces a merge may produce: sentencepiece merges only into normal and
 * user-defined pieces (never control, unknown or byte pieces). */
static bool mergeable(const qiao_tokenizer *t, int32_t id) {
  return id >= 0 && (t->types[id] == QIAO__TOK_NORMAL || t->types[id] == QIAO__TOK_USER_DEFINED);
}

static qiao_status *try_pair(const qiao_tokenizer *t, const char *text, const symbol *syms,
                             int32_t left, int32_t right, qiao__merge_heap *h) {
  if (left < 0 || right < 0) return NULL;
  uint32_t len = syms[left].len + syms[right].len;
  int32_t id = qiao__token_map_find(t, text + syms[left].start, len);
  if (!mergeable(t, id)) return NULL;
  qiao__merge m = {((uint64_t)score_order(t->scores[id]) << 32) | (uint32_t)left, (uint32_t)right,
                   len};
  return qiao__merge_heap_push(h, m);
}

static qiao_status *emit_symbol(const qiao_tokenizer *t, const char *s, size_t len,
                                qiao__ids *out) {
  int32_t id = qiao__token_map_find(t, s, len);
  if (id >= 0 && t->types[id] != QIAO__TOK_CONTROL && t->types[id] != QIAO__TOK_UNUSED &&
      t->types[id] != QIAO__TOK_BYTE)
    return qiao__ids_push(out, id);
  bool have_bytes = true;
  for (size_t i = 0; i < len; i++)
    have_bytes = have_bytes && t->byte_token[(uint8_t)s[i]] >= 0;
  if (!have_bytes) /* one unk for the symbol, as sentencepiece does without byte fallback */
    return t->unk_id >= 0 ? qiao__ids_push(out, t->unk_id) : NULL;
  for (size_t i = 0; i < len; i++)
    QIAO__TRY(qiao__ids_push(out, t->byte_token[(uint8_t)s[i]]));
  return NULL;
}

static qiao_status *spm_run(const qiao_tokenizer *t, const char *text, size_t len, symbol *syms,
                            qiao__merge_heap *h, qiao__ids *out) {
  /* 2. one symbol per character */
  int32_t n = 0;
  for (size_t i = 0; i < len;) {
    size_t cl = qiao__utf8_valid_len((const uint8_t *)text + i, len - i);
    if (cl == 0) cl = 1;
    syms[n] = (symbol){(uint32_t)i, (uint32_t)cl, n - 1, -1};
    if (n > 0) syms[n - 1].next = n;
    n++;
    i += cl;
  }
  /* 3. merge by score */
  for (int32_t i = 0; i + 1 < n; i++)
    QIAO__TRY(try_pair(t, text, syms, i, i + 1, h));
  while (h->n > 0) {
    qiao__merge c = qiao__merge_heap_pop(h);
    int32_t left = (int32_t)(uint32_t)c.key, right = (int32_t)c.a;
    symbol *l = &syms[left], *r = &syms[right];
    if (l->len == 0 || r->len == 0 || l->next != right || l->len + r->len != c.b)
      continue; /* stale: one side was merged since */
    l->len += r->len;
    r->len = 0;
    l->next = r->next;
    if (r->next >= 0) syms[r->next].prev = left;
    QIAO__TRY(try_pair(t, text, syms, l->prev, left, h));
    QIAO__TRY(try_pair(t, text, syms, left, l->next, h));
  }
  /* 4. emit */
  for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = syms[i].next)
    QIAO__TRY(emit_symbol(t, text + syms[i].start, syms[i].len, out));
  return NULL;
}

qiao_status *qiao__spm_encode(const qiao_tokenizer *t, const char *text, size_t len,
                              bool add_prefix, qiao__ids *out) {
  if (len == 0) return NULL;
  /* 1. normalize: each space becomes 3 bytes */
  size_t spaces = add_prefix ? 1 : 0;
  for (size_t i = 0; i < len; i++)
    spaces += text[i] == ' ';
  if ((uint64_t)len + 2 * (uint64_t)spaces + 1 > UINT32_MAX / 2)
    return qiao__error(QIAO_LIMIT, "tokenizer: text of %zu bytes is too long", len);
  size_t nlen = len + 2 * spaces + (add_prefix ? 1 : 0);
  char *norm = malloc(nlen);
  symbol *syms = malloc(nlen * sizeof(symbol));
  if (norm == NULL || syms == NULL) {
    free(norm);
    free(syms);
    return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory for %zu bytes of text", len);
  }
  size_t j = 0;
  static const char mark[3] = {(char)0xE2, (char)0x96, (char)0x81}; /* U+2581 */
  if (add_prefix) memcpy(norm, mark, 3), j = 3;
  for (size_t i = 0; i < len; i++) {
    if (text[i] == ' ')
      memcpy(norm + j, mark, 3), j += 3;
    else
      norm[j++] = text[i];
  }
  qiao__merge_heap h = {0};
  qiao_status *st = NULL;
  /* Cut before each "▁" that follows another character when no piece can
   * span such a cut (checked once per vocab): the same result, smaller heaps. */
  size_t start = 0;
  for (size_t k = 1; t->spm_word_split && k + 3 <= j && st == NULL; k++) {
    if (memcmp(norm + k, mark, 3) != 0 || (k >= 3 && memcmp(norm + k - 3, mark, 3) == 0)) continue;
    h.n = 0;
    st = spm_run(t, norm + start, k - start, syms, &h, out);
    start = k;
  }
  h.n = 0;
  if (st == NULL) st = spm_run(t, norm + start, j - start, syms, &h, out);
  free(h.v);
  free(syms);
  free(norm);
  return st;
}
