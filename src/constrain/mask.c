/* Which tokens may come next: a walk of the vocabulary's byte trie that
 * advances the matcher's stack set one byte per trie level and skips the
 * whole subtree below a byte the grammar refuses. Masks are cached by state
 * (the full stack set): JSON revisits few states (inside a string, after a
 * key, between values), so most steps cost one lookup. */
#include <stdlib.h>
#include <string.h>

#include "constrain/matcher_internal.h"

static uint32_t mix(uint32_t h) {
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  return h ^ (h >> 16);
}

/* The same for the same set of stacks, whatever their order. */
static uint32_t state_key(const qiao__sset *s) {
  uint32_t k = s->n * 0x9e3779b9u;
  for (uint32_t i = 0; i < s->n; i++)
    k += mix(s->hash[i]);
  return k;
}

static bool has_stack(const qiao__sset *s, const uint32_t *st, uint32_t n, uint32_t h) {
  for (uint32_t i = 0; i < s->n; i++)
    if (s->hash[i] == h && s->off[i + 1] - s->off[i] == n &&
        memcmp(s->data + s->off[i], st, n * sizeof(uint32_t)) == 0)
      return true;
  return false;
}

static bool same_state(const qiao__sset *a, const qiao__sset *b) {
  if (a->n != b->n) return false;
  for (uint32_t i = 0; i < a->n; i++)
    if (!has_stack(b, a->data + a->off[i], a->off[i + 1] - a->off[i], a->hash[i])) return false;
  return true;
}

static void istates_clear(qiao_grammar_matcher *m) {
  for (uint32_t i = 0; i < m->n_istates; i++) {
    qiao__sset_free(&m->istates[i].set);
    free(m->istates[i].trans);
  }
  m->n_istates = 0;
  if (m->islots) memset(m->islots, 0, 2 * QIAO__MAX_ISTATES * sizeof(uint32_t));
}

void qiao__mask_cache_free(qiao_grammar_matcher *m) {
  for (int i = 0; i < QIAO__MASK_CACHE; i++) {
    qiao__sset_free(&m->cache[i].state);
    free(m->cache[i].mask);
    m->cache[i].mask = NULL;
  }
  istates_clear(m);
  free(m->istates);
  free(m->islots);
  free(m->walk_ids);
  m->istates = NULL;
  m->islots = NULL;
  m->walk_ids = NULL;
}

/* The id of state s, interned (copied) if new; QIAO__T_UNSET when the
 * table is full or memory ran out. */
static uint32_t intern(qiao_grammar_matcher *m, const qiao__sset *s) {
  uint32_t key = state_key(s), mask = 2 * QIAO__MAX_ISTATES - 1;
  for (uint32_t h = key & mask;; h = (h + 1) & mask) {
    uint32_t slot = m->islots[h];
    if (slot == 0) {
      if (m->n_istates >= QIAO__MAX_ISTATES) return QIAO__T_UNSET;
      qiao__istate *is = &m->istates[m->n_istates];
      memset(is, 0, sizeof(*is));
      qiao_status *st = qiao__sset_copy(&is->set, s);
      if (st != NULL) {
        qiao_status_free(st);
        qiao__sset_free(&is->set);
        return QIAO__T_UNSET;
      }
      is->key = key;
      m->islots[h] = ++m->n_istates;
      return m->n_istates - 1;
    }
    qiao__istate *is = &m->istates[slot - 1];
    if (is->key == key && same_state(&is->set, s)) return slot - 1;
  }
}

/* The walk with interned states: each trie node costs a table lookup,
 * and a stack-set advance only the first time a (state, byte) pair is met.
 * False when the state table filled up (the caller walks without it). */
static bool walk_interned(qiao_grammar_matcher *m, uint32_t *mask) {
  const qiao_token_trie *t = m->trie;
  const qiao__trie_node *nodes = t->nodes;
  if (m->istates == NULL) {
    m->istates = calloc(QIAO__MAX_ISTATES, sizeof(*m->istates));
    m->islots = calloc(2 * QIAO__MAX_ISTATES, sizeof(uint32_t));
    m->walk_ids = calloc((size_t)t->max_depth + 1, sizeof(uint32_t));
    if (m->istates == NULL || m->islots == NULL || m->walk_ids == NULL) return false;
  }
  if (m->n_istates > QIAO__MAX_ISTATES / 2) istates_clear(m); /* start over, keep it bounded */
  uint32_t root = intern(m, &m->cur);
  if (root == QIAO__T_UNSET) return false;
  m->walk_ids[0] = root;
  qiao__sset *scratch = &m->tmp;
  for (uint32_t i = 0; i < t->n_nodes;) {
    const qiao__trie_node *nd = &nodes[i];
    uint32_t from = m->walk_ids[nd->depth - 1];
    qiao__istate *is = &m->istates[from];
    if (is->trans == NULL) {
      is->trans = malloc(256 * sizeof(uint32_t));
      if (is->trans == NULL) return false;
      memset(is->trans, 0xFF, 256 * sizeof(uint32_t)); /* QIAO__T_UNSET */
    }
    uint32_t to = is->trans[nd->byte];
    if (to == QIAO__T_UNSET) {
      qiao__sset_advance(m->g, &is->set, nd->byte, m->buf, scratch);
      if (scratch->oom) return false;
      to = scratch->n == 0 ? QIAO__T_DEAD : intern(m, scratch);
      if (to == QIAO__T_UNSET) return false;
      is->trans[nd->byte] = to; /* the state array is allocated once: `is` is still valid */
    }
    if (to == QIAO__T_DEAD) { /* no token below this prefix can be accepted */
      i = nd->end;
      continue;
    }
    m->walk_ids[nd->depth] = to;
    for (uint32_t k = 0; k < nd->tok_n; k++) {
      uint32_t id = (uint32_t)t->tok_ids[nd->tok_begin + k];
      mask[id >> 5] |= 1u << (id & 31);
    }
    i++;
  }
  return true;
}

/* The walk without the state table: advances the stack sets per node (one
 * scratch set per depth). */
static void walk_plain(qiao_grammar_matcher *m, uint32_t *mask) {
  const qiao_token_trie *t = m->trie;
  const qiao__trie_node *nodes = t->nodes;
  for (uint32_t i = 0; i < t->n_nodes;) {
    const qiao__trie_node *nd = &nodes[i];
    const qiao__sset *src = nd->depth == 1 ? &m->cur : &m->levels[nd->depth - 1];
    qiao__sset *dst = &m->levels[nd->depth];
    qiao__sset_advance(m->g, src, nd->byte, m->buf, dst);
    if (dst->n == 0) { /* no token below this prefix can be accepted */
      i = nd->end;
      continue;
    }
    for (uint32_t k = 0; k < nd->tok_n; k++) {
      uint32_t id = (uint32_t)t->tok_ids[nd->tok_begin + k];
      mask[id >> 5] |= 1u << (id & 31);
    }
    i++;
  }
}

static void walk(qiao_grammar_matcher *m, uint32_t *mask) {
  const qiao_token_trie *t = m->trie;
  memset(mask, 0, m->mask_words * sizeof(uint32_t));
  if (!walk_interned(m, mask)) { /* the table filled up (or memory ran out) */
    istates_clear(m);
    memset(mask, 0, m->mask_words * sizeof(uint32_t));
    walk_plain(m, mask);
  }
  if (qiao__sset_can_end(&m->cur))
    for (uint32_t k = 0; k < t->n_end; k++) {
      uint32_t id = (uint32_t)t->end_ids[k];
      mask[id >> 5] |= 1u << (id & 31);
    }
}

/* ---- The grammar's shared masks --------------------------------------------- */

#define SHARED_BYTES (4u << 20) /* masks kept per grammar, in bytes */

static bool shared_same(const qiao__shared_mask *e, const qiao__sset *s) {
  if (e->n != s->n) return false;
  for (uint32_t i = 0; i < e->n; i++) {
    const uint32_t *st = e->stacks + e->offs[i];
    uint32_t n = e->offs[i + 1] - e->offs[i];
    bool found = false;
    for (uint32_t j = 0; j < s->n && !found; j++)
      found = s->off[j + 1] - s->off[j] == n &&
              memcmp(s->data + s->off[j], st, n * sizeof(uint32_t)) == 0;
    if (!found) return false;
  }
  return true;
}

/* Copies the shared mask of state `s` into `mask`; false when none. */
static bool shared_get(qiao_grammar_matcher *m, uint32_t key, uint32_t *mask) {
  qiao_grammar *g = m->g;
  bool hit = false;
  pthread_mutex_lock(&g->cache_mu);
  if (g->cache_trie == m->trie->id)
    for (uint32_t i = 0; i < g->n_cache && !hit; i++)
      if (g->cache[i].key == key && shared_same(&g->cache[i], &m->cur)) {
        memcpy(mask, g->cache[i].mask, m->mask_words * sizeof(uint32_t));
        hit = true;
      }
  pthread_mutex_unlock(&g->cache_mu);
  return hit;
}

/* Offers a computed mask to the grammar (kept while there is room). */
static void shared_put(qiao_grammar_matcher *m, uint32_t key, const uint32_t *mask) {
  qiao_grammar *g = m->g;
  const qiao__sset *s = &m->cur;
  size_t words = m->mask_words, cap = SHARED_BYTES / (words * sizeof(uint32_t) + 1);
  pthread_mutex_lock(&g->cache_mu);
  if (g->cache_trie == 0) g->cache_trie = m->trie->id;
  if (g->cache_trie == m->trie->id && g->n_cache < cap) {
    if (g->n_cache == g->cap_cache) {
      uint32_t c = g->cap_cache ? g->cap_cache * 2 : 16;
      qiao__shared_mask *grown = realloc(g->cache, c * sizeof(*grown));
      if (grown != NULL) {
        g->cache = grown;
        g->cap_cache = c;
      }
    }
    qiao__shared_mask e = {0};
    size_t n_data = s->n ? s->off[s->n] : 0;
    e.stacks = malloc((n_data ? n_data : 1) * sizeof(uint32_t));
    e.offs = malloc(((size_t)s->n + 1) * sizeof(uint32_t));
    e.mask = malloc(words * sizeof(uint32_t));
    if (g->n_cache < g->cap_cache && e.stacks && e.offs && e.mask) {
      if (n_data) memcpy(e.stacks, s->data, n_data * sizeof(uint32_t));
      if (s->n)
        memcpy(e.offs, s->off, ((size_t)s->n + 1) * sizeof(uint32_t));
      else
        e.offs[0] = 0;
      memcpy(e.mask, mask, words * sizeof(uint32_t));
      e.n = s->n;
      e.key = key;
      g->cache[g->n_cache++] = e;
    } else {
      free(e.stacks);
      free(e.offs);
      free(e.mask);
    }
  }
  pthread_mutex_unlock(&g->cache_mu);
}

qiao_status *qiao_grammar_matcher_mask(qiao_grammar_matcher *m, const uint32_t **out_mask) {
  if (m == NULL || m->trie == NULL || out_mask == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "grammar matcher: no vocabulary to mask");
  uint32_t key = state_key(&m->cur);
  qiao__mask_entry *victim = &m->cache[0];
  for (int i = 0; i < QIAO__MASK_CACHE; i++) {
    qiao__mask_entry *e = &m->cache[i];
    if (e->mask != NULL && e->key == key && same_state(&e->state, &m->cur)) {
      e->used = ++m->clock;
      m->hits++;
      *out_mask = e->mask;
      return NULL;
    }
    if (e->mask == NULL || (victim->mask != NULL && e->used < victim->used)) victim = e;
  }
  m->misses++;
  if (victim->mask == NULL) {
    victim->mask = malloc(m->mask_words * sizeof(uint32_t));
    if (victim->mask == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "grammar mask: out of memory");
  }
  if (!shared_get(m, key, victim->mask)) { /* no matcher of this grammar met the state yet */
    walk(m, victim->mask);
    shared_put(m, key, victim->mask);
  }
  qiao_status *st = qiao__sset_copy(&victim->state, &m->cur);
  if (st != NULL) {
    free(victim->mask);
    victim->mask = NULL;
    return st;
  }
  victim->key = key;
  victim->used = ++m->clock;
  *out_mask = victim->mask;
  return NULL;
}
