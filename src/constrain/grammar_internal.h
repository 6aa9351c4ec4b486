/* Internal representation of compiled grammars and the builder that the
 * front ends (GBNF, JSON Schema, regex) share.
 *
 * A grammar is a flat array of elements. Rule r's body starts at
 * rule_start[r]: its alternatives one after another, each ended by ALT
 * except the last, ended by END. An element is a byte set (one byte out of
 * the set) or a reference to a rule. */
#ifndef QIAO_CONSTRAIN_GRAMMAR_INTERNAL_H
#define QIAO_CONSTRAIN_GRAMMAR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status_internal.h"
#include "qiao/grammar.h"

enum { QIAO__G_END = 0, QIAO__G_ALT = 1, QIAO__G_REF = 2, QIAO__G_SET = 3 };

typedef struct qiao__gelem {
  uint32_t kind; /* QIAO__G_* */
  uint32_t v;    /* REF: rule id; SET: index into sets */
} qiao__gelem;

typedef struct qiao__byteset {
  uint64_t w[4]; /* bit b set: byte b is in the set */
} qiao__byteset;

static inline bool qiao__byteset_has(const qiao__byteset *s, uint8_t b) {
  return (s->w[b >> 6] >> (b & 63)) & 1u;
}
static inline void qiao__byteset_add_range(qiao__byteset *s, uint8_t lo, uint8_t hi) {
  for (unsigned b = lo; b <= hi; b++)
    s->w[b >> 6] |= 1ull << (b & 63);
}

/* A token mask shared by every matcher of one grammar over one trie, by
 * the matcher state it is for (see mask.c). */
typedef struct qiao__shared_mask {
  uint32_t *stacks; /* the state's stacks, one after another */
  uint32_t *offs;   /* (n + 1) */
  uint32_t n, key;
  uint32_t *mask;
} qiao__shared_mask;

struct qiao_grammar {
  atomic_uint refs;
  /* The masks computed by any matcher of this grammar, for the first trie
   * it was used with: requests that share a compiled grammar share them.
   * Bounded; under `cache_mu`. The rest of the grammar is immutable. */
  pthread_mutex_t cache_mu;
  uint64_t cache_trie; /* the id of that trie (0: none yet) */
  qiao__shared_mask *cache;
  uint32_t n_cache, cap_cache;
  qiao__gelem *elems; /* (n_elems) all rule bodies */
  uint32_t n_elems;
  uint32_t n_rules;
  uint32_t
      *alt_begin; /* (n_rules + 1) rule r's alternatives are alts[alt_begin[r], alt_begin[r+1]) */
  uint32_t *alts; /* start position of each alternative */
  qiao__byteset *sets; /* (n_sets) */
  uint32_t n_sets;
  uint32_t root;
};

/* ---- Builder -------------------------------------------------------------- */

typedef struct qiao__brule {
  qiao__gelem *e; /* body being built */
  uint32_t n, cap;
  char *name; /* for messages; may be NULL */
  bool defined;
} qiao__brule;

/* Errors are sticky: after the first one every call does nothing and the
 * error comes out of qiao__gb_finish (or is read from `err`). */
typedef struct qiao__gbuilder {
  qiao__brule *rules;
  uint32_t n_rules, cap_rules;
  qiao__byteset *sets;
  uint32_t n_sets, cap_sets;
  size_t n_elems;
  qiao_status *err;
} qiao__gbuilder;

#define QIAO__G_NONE UINT32_MAX /* a rule id that is not there (after an error) */
#define QIAO__G_INF UINT32_MAX  /* an unbounded repetition */

void qiao__gb_init(qiao__gbuilder *b);
void qiao__gb_free(qiao__gbuilder *b);
/* Records an error unless one is already there (then `st` is freed). */
void qiao__gb_fail(qiao__gbuilder *b, qiao_status *st);
/* A new empty rule; `name` copied (may be NULL). defined is set true. */
uint32_t qiao__gb_rule(qiao__gbuilder *b, const char *name, size_t name_len);
void qiao__gb_set(qiao__gbuilder *b, uint32_t rule, const qiao__byteset *set);
/* A set already in the builder, by index. */
void qiao__gb_set_index(qiao__gbuilder *b, uint32_t rule, uint32_t set);
void qiao__gb_byte(qiao__gbuilder *b, uint32_t rule, uint8_t c);
void qiao__gb_lit(qiao__gbuilder *b, uint32_t rule, const char *s, size_t n);
void qiao__gb_ref(qiao__gbuilder *b, uint32_t rule, uint32_t target);
void qiao__gb_alt(qiao__gbuilder *b, uint32_t rule);

/* A code point range [lo, hi]. */
typedef struct qiao__cprange {
  uint32_t lo, hi;
} qiao__cprange;

/* A rule matching one code point (as UTF-8) of the union of `ranges`, or of
 * its complement when `negate`. Surrogates are never matched. */
uint32_t qiao__gb_class(qiao__gbuilder *b, const qiao__cprange *ranges, size_t n, bool negate);
/* A rule matching item{min,max} (max QIAO__G_INF: unbounded). */
uint32_t qiao__gb_repeat(qiao__gbuilder *b, uint32_t item, uint32_t min, uint32_t max);

/* Checks (every rule defined, no left recursion) and freezes the grammar.
 * Frees the builder either way. */
qiao_status *qiao__gb_finish(qiao__gbuilder *b, uint32_t root, qiao_grammar **out);

/* Appends the UTF-8 encoding of code point cp (<= 0x10FFFF) to out; returns
 * its length. */
size_t qiao__utf8_put(uint32_t cp, char out[4]);

/* ---- Token trie ------------------------------------------------------------- */

/* Nodes in depth-first preorder (the root is implicit): node i's subtree is
 * [i, end). The tokens whose bytes end at node i are
 * tok_ids[tok_begin, tok_begin + tok_n). */
typedef struct qiao__trie_node {
  uint32_t end;
  uint32_t tok_begin;
  uint32_t tok_n;
  uint16_t depth; /* 1 for the first byte of a token */
  uint8_t byte;
} qiao__trie_node;

struct qiao_token_trie {
  uint64_t id; /* unique in the process: shared masks name their trie by it */
  uint32_t vocab;
  uint8_t *kinds;    /* (vocab) qiao_token_kind */
  uint32_t *tok_off; /* (vocab + 1) token t's bytes are blob[tok_off[t], tok_off[t+1]) */
  char *blob;
  qiao__trie_node *nodes;
  uint32_t n_nodes;
  int32_t *tok_ids; /* tokens in trie order */
  int32_t *end_ids; /* (n_end) END tokens */
  uint32_t n_end;
  uint32_t max_depth;
};

/* ---- JSON Schema ---------------------------------------------------------------- */

/* Builds the rules of a JSON Schema (text) into b; returns its top rule
 * (errors are recorded in b). */
uint32_t qiao__schema_build(qiao__gbuilder *b, const char *text, size_t len);

/* ---- Regex subset (JSON Schema `pattern`) ------------------------------------ */

/* A rule matching the JSON string CONTENT (between the quotes, escaped as
 * JSON requires) of strings matched by `pattern` (ECMA-262 subset; search
 * semantics unless anchored by ^ and $). `json_char` is a rule matching any
 * one escaped JSON string character. Errors name the pattern offset. */
uint32_t qiao__regex_compile(qiao__gbuilder *b, const char *pattern, size_t len,
                             uint32_t json_char);

#endif
