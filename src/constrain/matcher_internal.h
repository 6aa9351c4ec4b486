/* The matcher's state: sets of grammar stacks, and the mask cache. */
#ifndef QIAO_CONSTRAIN_MATCHER_INTERNAL_H
#define QIAO_CONSTRAIN_MATCHER_INTERNAL_H

#include "constrain/grammar_internal.h"

/* A set of stacks, stored one after another: stack i is
 * data[off[i], off[i+1]), bottom first. */
typedef struct qiao__sset {
  uint32_t *data;
  size_t cap_data;
  uint32_t *off;  /* (cap + 1) */
  uint32_t *hash; /* (cap) of each stack, to find duplicates fast */
  uint32_t n, cap;
  bool overflow; /* a stack was dropped: too deep, too many, or too much work */
  bool oom;
} qiao__sset;

void qiao__sset_free(qiao__sset *s);
void qiao__sset_clear(qiao__sset *s);
qiao_status *qiao__sset_copy(qiao__sset *dst, const qiao__sset *src);
/* The start state of the grammar. `buf` holds MAX_STACK_DEPTH + 2 entries. */
void qiao__sset_start(const qiao_grammar *g, uint32_t *buf, qiao__sset *out);
/* The stacks of `in` that accept byte c, advanced and expanded. */
void qiao__sset_advance(const qiao_grammar *g, const qiao__sset *in, uint8_t c, uint32_t *buf,
                        qiao__sset *out);
bool qiao__sset_can_end(const qiao__sset *s);

#define QIAO__MASK_CACHE 32 /* masks remembered per matcher, by state */

typedef struct qiao__mask_entry {
  qiao__sset state; /* the state the mask is for */
  uint32_t key;     /* order-independent hash of the state */
  uint32_t *mask;   /* (mask_words) */
  uint64_t used;    /* last use, for eviction */
} qiao__mask_entry;

/* A stack set met during trie walks, interned so that the walk becomes a
 * table lookup per trie node: trans[b] is the state after byte b
 * (QIAO__T_UNSET until computed, QIAO__T_DEAD when no stack survives). */
#define QIAO__T_UNSET UINT32_MAX
#define QIAO__T_DEAD (UINT32_MAX - 1)
#define QIAO__MAX_ISTATES 8192u /* interned states per matcher before the table starts over */

typedef struct qiao__istate {
  qiao__sset set;
  uint32_t key;
  uint32_t *trans; /* (256), allocated on first use */
} qiao__istate;

struct qiao_grammar_matcher {
  qiao_grammar *g;
  const qiao_token_trie *trie;
  qiao__sset cur;       /* the state after what was accepted */
  qiao__sset tmp, tmp2; /* scratch for accept_bytes */
  qiao__sset *levels;   /* (n_levels) scratch for the trie walk, one per depth */
  uint32_t n_levels;
  uint32_t *buf; /* expansion scratch: MAX_STACK_DEPTH + 2 */
  uint32_t mask_words;
  bool ended;
  qiao__mask_entry cache[QIAO__MASK_CACHE];
  uint64_t clock;
  uint64_t hits, misses; /* for benchmarks */
  /* Interned states (see qiao__istate) and their hash index (open
   * addressing, 2 * QIAO__MAX_ISTATES slots of state id + 1, 0 = empty). */
  qiao__istate *istates;
  uint32_t n_istates;
  uint32_t *islots;
  uint32_t *walk_ids; /* (max_depth + 1) the state at each depth of the walk */
};

void qiao__mask_cache_free(qiao_grammar_matcher *m);

#endif
