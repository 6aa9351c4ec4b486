/* Byte-level BPE (GPT-2, LLaMA 3, Qwen2/3, DeepSeek):
 *   1. NFC-normalize when the tokenizer asks for it (utf8proc);
 *   2. cut the text into pre-tokens with the family's regexes (pretokenize.c);
 *   3. in each pre-token, start from one symbol per byte (the token of the
 *      byte's GPT-2 character) and repeatedly merge the adjacent pair of the
 *      lowest merge rank (leftmost on ties) until no pair has a merge.
 * Step 3 keeps a heap of candidate pairs over a linked list of symbols:
 * O(n log n) per pre-token, even for a 1 MiB run of spaces. Nothing is
 * cached between calls. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/merge_heap.h"
#include "tokenizer/tokenizer_internal.h"

typedef struct symbol {
  int32_t id; /* -1 once merged into its left neighbour */
  int32_t prev, next;
} symbol;

static const qiao__pair_entry *find_pair(const qiao_tokenizer *t, int32_t left, int32_t right) {
  if (t->pairs == NULL || left < 0 || right < 0) return NULL;
  uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
  uint64_t i = qiao__hash_bytes((const char *)&key, sizeof(key)) & t->pair_mask;
  for (;;) {
    const qiao__pair_entry *e = &t->pairs[i];
    if (e->key == UINT64_MAX) return NULL;
    if (e->key == key) return e;
    i = (i + 1) & t->pair_mask;
  }
}

/* Queues the pair (left, right) when the vocab has a merge for it. The heap
 * entry keeps the two ids: it is stale once either symbol has changed. */
static qiao_status *try_pair(const qiao_tokenizer *t, const symbol *syms, int32_t left,
                             int32_t right, qiao__merge_heap *h) {
  if (left < 0 || right < 0) return NULL;
  const qiao__pair_entry *e = find_pair(t, syms[left].id, syms[right].id);
  if (e == NULL) return NULL;
  qiao__merge m = {((uint64_t)e->rank << 32) | (uint32_t)left, (uint32_t)syms[left].id,
                   (uint32_t)syms[right].id};
  return qiao__merge_heap_push(h, m);
}

/* The vocabulary form of the bytes (each byte as its GPT-2 character). */
static qiao_status *mapped_lookup(const qiao_tokenizer *t, const char *s, size_t len,
                                  int32_t *out_id) {
  char *m = malloc(2 * len + 1);
  if (m == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    n += qiao__byte_to_unicode((uint8_t)s[i], m + n);
  *out_id = qiao__token_map_find(t, m, n);
  free(m);
  return NULL;
}

/* BPE of one pre-token. */
static qiao_status *bpe_word(const qiao_tokenizer *t, const char *s, size_t len, qiao__ids *out) {
  if (len == 0) return NULL;
  if (len > INT32_MAX / 2) return qiao__error(QIAO_LIMIT, "tokenizer: pre-token of %zu bytes", len);
  if (t->ignore_merges) {
    int32_t id = -1;
    QIAO__TRY(mapped_lookup(t, s, len, &id));
    if (id >= 0) return qiao__ids_push(out, id);
  }
  symbol *syms = malloc(len * sizeof(symbol));
  if (syms == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
  for (size_t i = 0; i < len; i++)
    syms[i] =
        (symbol){t->byte_token[(uint8_t)s[i]], (int32_t)i - 1, i + 1 < len ? (int32_t)i + 1 : -1};
  qiao__merge_heap h = {0};
  qiao_status *st = NULL;
  for (size_t i = 0; i + 1 < len && st == NULL; i++)
    st = try_pair(t, syms, (int32_t)i, (int32_t)i + 1, &h);
  while (st == NULL && h.n > 0) {
    qiao__merge c = qiao__merge_heap_pop(&h);
    int32_t left = (int32_t)(uint32_t)c.key;
    symbol *l = &syms[left];
    if (l->id != (int32_t)c.a || l->next < 0 || syms[l->next].id != (int32_t)c.b) continue;
    symbol *r = &syms[l->next];
    l->id = find_pair(t, (int32_t)c.a, (int32_t)c.b)->result;
    l->next = r->next;
    r->id = -1;
    r->prev = r->next = -1;
    if (l->next >= 0) syms[l->next].prev = left;
    st = try_pair(t, syms, l->prev, left, &h);
    if (st == NULL) st = try_pair(t, syms, left, l->next, &h);
  }
  for (int32_t i = 0; st == NULL && i >= 0; i = syms[i].next) {
    int32_t id = syms[i].id;
    if (id < 0) id = t->unk_id; /* a byte whose character the vocabulary lacks */
    if (id >= 0) st = qiao__ids_push(out, id);
  }
  free(h.v);
  free(syms);
  return st;
}

qiao_status *qiao__bpe_encode(const qiao_tokenizer *t, const char *text, size_t len,
                              qiao__ids *out) {
  /* Regexes and NFC need valid UTF-8: work on maximal valid runs; a run of
   * invalid bytes is one pre-token of its own. */
  size_t i = 0;
  while (i < len) {
    size_t j = i;
    while (j < len) {
      size_t cl = qiao__utf8_valid_len((const uint8_t *)text + j, len - j);
      if (cl == 0) break;
      j += cl;
    }
    if (j > i) {
      const char *run = text + i;
      size_t run_len = j - i;
      utf8proc_uint8_t *nfc = NULL;
      if (t->nfc) {
        utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)run, (utf8proc_ssize_t)run_len,
                                          &nfc, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (n < 0)
          return qiao__error(QIAO_INTERNAL, "tokenizer: NFC failed: %s", utf8proc_errmsg(n));
        run = (const char *)nfc;
        run_len = (size_t)n;
      }
      qiao_status *st = qiao__pretok_split(t, run, run_len, bpe_word, out);
      free(nfc);
      QIAO__TRY(st);
      i = j;
    }
    size_t k = i;
    while (k < len && qiao__utf8_valid_len((const uint8_t *)text + k, len - k) == 0)
      k++;
    if (k > i) QIAO__TRY(bpe_word(t, text + i, k - i, out));
    i = k;
  }
  return NULL;
}
