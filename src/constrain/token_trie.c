/* The byte trie of a vocabulary: token strings sorted, then laid out as a
 * preorder node array so that a walk can skip a whole subtree (every token
 * that starts with a refused prefix) in one jump. */
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar_internal.h"

/* A token to sort: entries carry their bytes (qsort has no context). */
typedef struct entry {
  const char *s;
  uint32_t len;
  int32_t id;
} entry;

static int cmp_entry(const void *a, const void *b) {
  const entry *x = a, *y = b;
  uint32_t n = x->len < y->len ? x->len : y->len;
  int c = n ? memcmp(x->s, y->s, n) : 0;
  if (c != 0) return c;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

void qiao_token_trie_destroy(qiao_token_trie *t) {
  if (t == NULL) return;
  free(t->kinds);
  free(t->tok_off);
  free(t->blob);
  free(t->nodes);
  free(t->tok_ids);
  free(t->end_ids);
  free(t);
}

qiao_status *qiao_token_trie_create(uint32_t n_tokens, const char *const *bytes, const size_t *lens,
                                    const uint8_t *kinds, qiao_token_trie **out) {
  if (n_tokens == 0 || bytes == NULL || lens == NULL || out == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "token trie: empty vocabulary or NULL argument");
  if (n_tokens > (1u << 24))
    return qiao__error(QIAO_LIMIT, "token trie: %u tokens is more than %u", n_tokens, 1u << 24);
  qiao_token_trie *t = calloc(1, sizeof(*t));
  entry *ent = malloc((size_t)n_tokens * sizeof(*ent));
  if (t == NULL || ent == NULL) goto oom;
  static atomic_ullong next_id = 1;
  t->id = atomic_fetch_add(&next_id, 1);
  t->vocab = n_tokens;
  t->kinds = malloc(n_tokens);
  t->tok_off = malloc(((size_t)n_tokens + 1) * sizeof(uint32_t));
  t->tok_ids = malloc((size_t)n_tokens * sizeof(int32_t));
  t->end_ids = malloc((size_t)n_tokens * sizeof(int32_t));
  if (t->kinds == NULL || t->tok_off == NULL || t->tok_ids == NULL || t->end_ids == NULL) goto oom;
  /* Kinds, and the total of bytes kept (bounded: each token is capped). */
  size_t total = 0;
  for (uint32_t i = 0; i < n_tokens; i++) {
    uint8_t k = kinds ? kinds[i] : QIAO_TOKEN_TEXT;
    if (k > QIAO_TOKEN_NEVER) {
      qiao_token_trie_destroy(t);
      free(ent);
      return qiao__error(QIAO_INVALID_ARGUMENT, "token trie: token %u has kind %u", i, k);
    }
    if (k == QIAO_TOKEN_TEXT &&
        (lens[i] == 0 || lens[i] > QIAO_GRAMMAR_MAX_TOKEN_BYTES || bytes[i] == NULL))
      k = QIAO_TOKEN_NEVER;
    t->kinds[i] = k;
    if (k == QIAO_TOKEN_TEXT) total += lens[i];
  }
  if (total >= UINT32_MAX) {
    qiao_token_trie_destroy(t);
    free(ent);
    return qiao__error(QIAO_LIMIT, "token trie: token bytes exceed 4 GiB");
  }
  t->blob = malloc(total ? total : 1);
  if (t->blob == NULL) goto oom;
  uint32_t pos = 0, n_ent = 0;
  for (uint32_t i = 0; i < n_tokens; i++) {
    t->tok_off[i] = pos;
    if (t->kinds[i] == QIAO_TOKEN_END) t->end_ids[t->n_end++] = (int32_t)i;
    if (t->kinds[i] != QIAO_TOKEN_TEXT) continue;
    memcpy(t->blob + pos, bytes[i], lens[i]);
    ent[n_ent++] = (entry){t->blob + pos, (uint32_t)lens[i], (int32_t)i};
    pos += (uint32_t)lens[i];
  }
  t->tok_off[n_tokens] = pos;
  qsort(ent, n_ent, sizeof(*ent), cmp_entry);
  /* Nodes: at most one per kept byte. */
  t->nodes = malloc((total ? total : 1) * sizeof(*t->nodes));
  if (t->nodes == NULL) goto oom;
  uint32_t open[QIAO_GRAMMAR_MAX_TOKEN_BYTES + 1]; /* node index per depth on the current path */
  uint32_t depth = 0, n = 0;
  for (uint32_t k = 0; k < n_ent; k++) {
    const entry *e = &ent[k];
    uint32_t lcp = 0;
    if (k > 0) {
      const entry *p = &ent[k - 1];
      uint32_t m = p->len < e->len ? p->len : e->len;
      while (lcp < m && p->s[lcp] == e->s[lcp])
        lcp++;
    }
    while (depth > lcp) /* close the nodes the previous token went through */
      t->nodes[open[depth--]].end = n;
    for (uint32_t d = lcp + 1; d <= e->len; d++) {
      t->nodes[n] = (qiao__trie_node){0, k, 0, (uint16_t)d, (uint8_t)e->s[d - 1]};
      open[d] = n++;
    }
    depth = e->len;
    qiao__trie_node *at = &t->nodes[open[depth]];
    if (at->tok_n == 0) at->tok_begin = k;
    at->tok_n++;
    t->tok_ids[k] = e->id;
    if (depth > t->max_depth) t->max_depth = depth;
  }
  while (depth > 0)
    t->nodes[open[depth--]].end = n;
  t->n_nodes = n;
  free(ent);
  *out = t;
  return NULL;
oom:
  qiao_token_trie_destroy(t);
  free(ent);
  return qiao__error(QIAO_OUT_OF_MEMORY, "token trie: out of memory");
}

uint32_t qiao_token_trie_vocab_size(const qiao_token_trie *t) {
  return t ? t->vocab : 0;
}

size_t qiao_token_trie_nodes(const qiao_token_trie *t) {
  return t ? t->n_nodes : 0;
}
