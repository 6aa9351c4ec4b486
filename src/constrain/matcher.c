/* The grammar-stack matcher. Its state is a SET of stacks (the grammar may
 * be ambiguous): each stack holds element positions, the top being the next
 * element to match (always a byte set after expansion), those below it the
 * positions to continue at when the rule above ends. An empty stack means
 * the output may end here. A reference that is the last element of its
 * alternative replaces its frame (tail call), so right recursion such as
 * `item*` runs in constant stack depth. */
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar_internal.h"
#include "constrain/matcher_internal.h"

#define EXPAND_BUDGET (1u << 16) /* expansion steps per byte, against pathological grammars */

void qiao__sset_free(qiao__sset *s) {
  free(s->data);
  free(s->off);
  free(s->hash);
  memset(s, 0, sizeof(*s));
}

static bool sset_grow(qiao__sset *s, uint32_t len) {
  if (s->n + 1 >= s->cap) {
    uint32_t c = s->cap ? s->cap * 2 : 16;
    uint32_t *off = realloc(s->off, ((size_t)c + 1) * sizeof(uint32_t));
    if (off == NULL) return false;
    s->off = off;
    uint32_t *h = realloc(s->hash, (size_t)c * sizeof(uint32_t));
    if (h == NULL) return false;
    s->hash = h;
    s->cap = c;
  }
  size_t need = (size_t)(s->n ? s->off[s->n] : 0) + len;
  if (need > s->cap_data || s->data == NULL) {
    size_t c = s->cap_data ? s->cap_data * 2 : 256;
    while (c < need)
      c *= 2;
    uint32_t *d = realloc(s->data, c * sizeof(uint32_t));
    if (d == NULL) return false;
    s->data = d;
    s->cap_data = c;
  }
  return true;
}

void qiao__sset_clear(qiao__sset *s) {
  s->n = 0;
  s->overflow = false;
  s->oom = false;
  if (s->off != NULL) s->off[0] = 0;
}

static uint32_t hash_stack(const uint32_t *st, uint32_t n) {
  uint32_t h = 2166136261u ^ n;
  for (uint32_t i = 0; i < n; i++)
    h = (h ^ st[i]) * 16777619u;
  return h;
}

/* Adds a stack unless it is already there. */
static void sset_add(qiao__sset *s, const uint32_t *st, uint32_t n) {
  uint32_t h = hash_stack(st, n);
  for (uint32_t i = 0; i < s->n; i++)
    if (s->hash[i] == h && s->off[i + 1] - s->off[i] == n &&
        memcmp(s->data + s->off[i], st, n * sizeof(uint32_t)) == 0)
      return;
  if (s->n >= QIAO_GRAMMAR_MAX_STACKS) {
    s->overflow = true;
    return;
  }
  bool fresh = s->off == NULL;
  if (!sset_grow(s, n)) {
    s->oom = true;
    return;
  }
  if (fresh) s->off[0] = 0;
  memcpy(s->data + s->off[s->n], st, n * sizeof(uint32_t));
  s->hash[s->n] = h;
  s->off[s->n + 1] = s->off[s->n] + n;
  s->n++;
}

qiao_status *qiao__sset_copy(qiao__sset *dst, const qiao__sset *src) {
  qiao__sset_clear(dst);
  for (uint32_t i = 0; i < src->n; i++) {
    sset_add(dst, src->data + src->off[i], src->off[i + 1] - src->off[i]);
    if (dst->oom) return qiao__error(QIAO_OUT_OF_MEMORY, "grammar matcher: out of memory");
  }
  return NULL;
}

/* Expands buf[0, n) until its top is a byte set (or it is empty) and adds
 * the results to `out`. Leaves buf[0, n) as it found it. */
static void expand(const qiao_grammar *g, uint32_t *buf, uint32_t n, qiao__sset *out,
                   uint32_t *budget) {
  if (*budget == 0) {
    out->overflow = true;
    return;
  }
  (*budget)--;
  if (n == 0) {
    sset_add(out, buf, 0);
    return;
  }
  uint32_t p = buf[n - 1];
  const qiao__gelem *e = &g->elems[p];
  switch (e->kind) {
  case QIAO__G_END:
  case QIAO__G_ALT: expand(g, buf, n - 1, out, budget); return; /* the rule ended: pop */
  case QIAO__G_SET: sset_add(out, buf, n); return;
  default: break;
  }
  /* A reference: continue after it when the referenced rule ends (or drop
   * the frame when nothing follows), and start each alternative. */
  uint32_t saved = buf[n - 1];
  uint32_t next = p + 1, k = n - 1;
  uint32_t nk = g->elems[next].kind;
  if (nk != QIAO__G_END && nk != QIAO__G_ALT) buf[k++] = next;
  if (k + 1 > QIAO_GRAMMAR_MAX_STACK_DEPTH) {
    out->overflow = true;
  } else {
    uint32_t r = e->v;
    for (uint32_t a = g->alt_begin[r]; a < g->alt_begin[r + 1]; a++) {
      buf[k] = g->alts[a];
      expand(g, buf, k + 1, out, budget);
    }
  }
  buf[n - 1] = saved;
}

void qiao__sset_start(const qiao_grammar *g, uint32_t *buf, qiao__sset *out) {
  qiao__sset_clear(out);
  uint32_t budget = EXPAND_BUDGET;
  for (uint32_t a = g->alt_begin[g->root]; a < g->alt_begin[g->root + 1]; a++) {
    buf[0] = g->alts[a];
    expand(g, buf, 1, out, &budget);
  }
}

void qiao__sset_advance(const qiao_grammar *g, const qiao__sset *in, uint8_t c, uint32_t *buf,
                        qiao__sset *out) {
  qiao__sset_clear(out);
  uint32_t budget = EXPAND_BUDGET;
  for (uint32_t i = 0; i < in->n; i++) {
    uint32_t n = in->off[i + 1] - in->off[i];
    if (n == 0) continue;
    const uint32_t *st = in->data + in->off[i];
    uint32_t p = st[n - 1];
    if (!qiao__byteset_has(&g->sets[g->elems[p].v], c)) continue;
    memcpy(buf, st, n * sizeof(uint32_t));
    buf[n - 1] = p + 1;
    expand(g, buf, n, out, &budget);
  }
}

bool qiao__sset_can_end(const qiao__sset *s) {
  for (uint32_t i = 0; i < s->n; i++)
    if (s->off[i + 1] == s->off[i]) return true;
  return false;
}

/* ---- The public matcher ------------------------------------------------------ */

qiao_status *qiao_grammar_matcher_create(qiao_grammar *g, const qiao_token_trie *trie,
                                         qiao_grammar_matcher **out) {
  if (g == NULL || out == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "grammar matcher: NULL grammar or output");
  qiao_grammar_matcher *m = calloc(1, sizeof(*m));
  if (m == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "grammar matcher: out of memory");
  m->g = qiao_grammar_ref(g);
  m->trie = trie;
  m->buf = malloc((QIAO_GRAMMAR_MAX_STACK_DEPTH + 2) * sizeof(uint32_t));
  if (trie != NULL) {
    m->mask_words = (trie->vocab + 31) / 32;
    m->n_levels = trie->max_depth + 1;
    m->levels = calloc(m->n_levels, sizeof(*m->levels));
  }
  if (m->buf == NULL || (trie != NULL && m->levels == NULL)) {
    qiao_grammar_matcher_destroy(m);
    return qiao__error(QIAO_OUT_OF_MEMORY, "grammar matcher: out of memory");
  }
  qiao__sset_start(g, m->buf, &m->cur);
  if (m->cur.oom || m->cur.overflow) {
    qiao_grammar_matcher_destroy(m);
    return qiao__error(QIAO_LIMIT, "grammar matcher: the grammar's start expands past the limits");
  }
  *out = m;
  return NULL;
}

void qiao_grammar_matcher_destroy(qiao_grammar_matcher *m) {
  if (m == NULL) return;
  qiao__sset_free(&m->cur);
  qiao__sset_free(&m->tmp);
  qiao__sset_free(&m->tmp2);
  for (uint32_t i = 0; i < m->n_levels; i++)
    qiao__sset_free(&m->levels[i]);
  free(m->levels);
  free(m->buf);
  qiao__mask_cache_free(m);
  qiao_grammar_destroy(m->g);
  free(m);
}

void qiao_grammar_matcher_reset(qiao_grammar_matcher *m) {
  qiao__sset_start(m->g, m->buf, &m->cur);
  m->ended = false;
}

qiao_status *qiao_grammar_matcher_accept_bytes(qiao_grammar_matcher *m, const void *bytes,
                                               size_t len) {
  if (m->ended) return qiao__error(QIAO_INVALID_ARGUMENT, "grammar: the output has ended");
  if (len == 0) return NULL;
  const uint8_t *b = bytes;
  /* cur -> tmp -> cur ...: work on copies so that a refusal changes nothing. */
  qiao__sset *a = &m->tmp, *z = &m->tmp2;
  /* A stack dropped at the limits on the way explains a refusal as LIMIT. */
  bool over = m->cur.overflow;
  qiao__sset_advance(m->g, &m->cur, b[0], m->buf, a);
  for (size_t i = 0;; i++) {
    if (a->oom) return qiao__error(QIAO_OUT_OF_MEMORY, "grammar matcher: out of memory");
    over = over || a->overflow;
    if (a->n == 0) {
      if (over)
        return qiao__error(QIAO_LIMIT,
                           "grammar: byte %zu of the output exceeds the matcher's "
                           "limits (nesting or ambiguity)",
                           i);
      return qiao__error(QIAO_INVALID_ARGUMENT, "grammar: byte %zu (0x%02x) is not allowed here", i,
                         b[i]);
    }
    if (i + 1 == len) break;
    qiao__sset_advance(m->g, a, b[i + 1], m->buf, z);
    qiao__sset *t = a;
    a = z;
    z = t;
  }
  /* Commit: swap the final set into cur. */
  qiao__sset t = m->cur;
  m->cur = *a;
  *a = t;
  return NULL;
}

qiao_status *qiao_grammar_matcher_accept_token(qiao_grammar_matcher *m, int32_t token) {
  const qiao_token_trie *t = m->trie;
  if (t == NULL) return qiao__error(QIAO_INVALID_ARGUMENT, "grammar matcher: no vocabulary");
  if (token < 0 || (uint32_t)token >= t->vocab)
    return qiao__error(QIAO_INVALID_ARGUMENT, "grammar matcher: token %d outside the vocabulary",
                       token);
  switch (t->kinds[token]) {
  case QIAO_TOKEN_END:
    if (m->ended || !qiao__sset_can_end(&m->cur))
      return qiao__error(QIAO_INVALID_ARGUMENT, "grammar: token %d ends an incomplete output",
                         token);
    m->ended = true;
    return NULL;
  case QIAO_TOKEN_NEVER:
    return qiao__error(QIAO_INVALID_ARGUMENT, "grammar: token %d is never allowed", token);
  default: break;
  }
  return qiao_grammar_matcher_accept_bytes(m, t->blob + t->tok_off[token],
                                           t->tok_off[token + 1] - t->tok_off[token]);
}

bool qiao_grammar_matcher_can_end(const qiao_grammar_matcher *m) {
  return !m->ended && qiao__sset_can_end(&m->cur);
}

bool qiao_grammar_matcher_must_end(const qiao_grammar_matcher *m) {
  for (uint32_t i = 0; i < m->cur.n; i++)
    if (m->cur.off[i + 1] != m->cur.off[i]) return false;
  return true;
}

bool qiao_grammar_matcher_ended(const qiao_grammar_matcher *m) {
  return m->ended;
}
