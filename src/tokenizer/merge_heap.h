/* Internal: the priority queue of candidate merges used by both BPE
 * encoders. A 4-ary min-heap on a 64-bit key (priority in the high half,
 * symbol position in the low half, so ties go to the leftmost pair): the four
 * children of a node share one cache line, which halves the cache misses of
 * a binary heap on the long pre-tokens (1 MiB of one letter) where the heap
 * holds a million entries. */
#ifndef QIAO_MERGE_HEAP_H
#define QIAO_MERGE_HEAP_H

#include <stdint.h>
#include <stdlib.h>

#include "core/status_internal.h"

typedef struct qiao__merge {
  uint64_t key;  /* (priority << 32) | left position: smaller pops first */
  uint32_t a, b; /* encoder-specific payload */
} qiao__merge;

typedef struct qiao__merge_heap {
  qiao__merge *v;
  size_t n, cap;
} qiao__merge_heap;

static inline qiao_status *qiao__merge_heap_push(qiao__merge_heap *h, qiao__merge m) {
  if (h->n == h->cap) {
    size_t cap = h->cap ? h->cap * 2 : 256;
    qiao__merge *v = realloc(h->v, cap * sizeof(*v));
    if (v == NULL) return qiao__error(QIAO_OUT_OF_MEMORY, "tokenizer: out of memory");
    h->v = v;
    h->cap = cap;
  }
  size_t i = h->n++;
  while (i > 0) {
    size_t p = (i - 1) / 4;
    if (h->v[p].key <= m.key) break;
    h->v[i] = h->v[p];
    i = p;
  }
  h->v[i] = m;
  return NULL;
}

static inline qiao__merge qiao__merge_heap_pop(qiao__merge_heap *h) {
  qiao__merge top = h->v[0], last = h->v[--h->n];
  size_t i = 0, n = h->n;
  for (;;) {
    size_t c = 4 * i + 1;
    if (c >= n) break;
    size_t best = c, end = c + 4 < n ? c + 4 : n;
    for (size_t k = c + 1; k < end; k++)
      if (h->v[k].key < h->v[best].key) best = k;
    if (h->v[best].key >= last.key) break;
    h->v[i] = h->v[best];
    i = best;
  }
  if (n > 0) h->v[i] = last;
  return top;
}

#endif
