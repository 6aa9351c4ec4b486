/* The grammar builder: rules built element by element, code point classes
 * turned into UTF-8 byte sequences, bounded repetition, and the checks that
 * freeze a grammar (rules defined, no left recursion). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar_internal.h"

void qiao__gb_init(qiao__gbuilder *b) {
  memset(b, 0, sizeof(*b));
}

void qiao__gb_free(qiao__gbuilder *b) {
  for (uint32_t i = 0; i < b->n_rules; i++) {
    free(b->rules[i].e);
    free(b->rules[i].name);
  }
  free(b->rules);
  free(b->sets);
  qiao_status_free(b->err);
  memset(b, 0, sizeof(*b));
}

void qiao__gb_fail(qiao__gbuilder *b, qiao_status *st) {
  if (b->err == NULL)
    b->err = st;
  else
    qiao_status_free(st);
}

static void oom(qiao__gbuilder *b) {
  qiao__gb_fail(b, qiao__error(QIAO_OUT_OF_MEMORY, "grammar: out of memory"));
}

/* Grows an array of `size`-byte items to hold `need`; false on failure. */
static bool grow(void **p, uint32_t *cap, uint32_t need, size_t size) {
  if (need <= *cap) return true;
  uint32_t c = *cap ? *cap : 8;
  while (c < need)
    c = c > UINT32_MAX / 2 ? need : c * 2;
  void *q = realloc(*p, (size_t)c * size);
  if (q == NULL) return false;
  *p = q;
  *cap = c;
  return true;
}

uint32_t qiao__gb_rule(qiao__gbuilder *b, const char *name, size_t name_len) {
  if (b->err != NULL) return QIAO__G_NONE;
  if (b->n_rules >= QIAO_GRAMMAR_MAX_RULES) {
    qiao__gb_fail(b,
                  qiao__error(QIAO_LIMIT, "grammar: more than %u rules", QIAO_GRAMMAR_MAX_RULES));
    return QIAO__G_NONE;
  }
  if (!grow((void **)&b->rules, &b->cap_rules, b->n_rules + 1, sizeof(*b->rules))) {
    oom(b);
    return QIAO__G_NONE;
  }
  qiao__brule *r = &b->rules[b->n_rules];
  memset(r, 0, sizeof(*r));
  if (name != NULL) {
    r->name = malloc(name_len + 1);
    if (r->name == NULL) {
      oom(b);
      return QIAO__G_NONE;
    }
    memcpy(r->name, name, name_len);
    r->name[name_len] = '\0';
  }
  r->defined = true;
  return b->n_rules++;
}

static void push(qiao__gbuilder *b, uint32_t rule, uint32_t kind, uint32_t v) {
  if (b->err != NULL) return;
  if (rule >= b->n_rules) {
    qiao__gb_fail(b, qiao__error(QIAO_INTERNAL, "grammar: rule %u out of range", rule));
    return;
  }
  if (b->n_elems >= QIAO_GRAMMAR_MAX_ELEMENTS) {
    qiao__gb_fail(
        b, qiao__error(QIAO_LIMIT, "grammar: more than %u elements", QIAO_GRAMMAR_MAX_ELEMENTS));
    return;
  }
  qiao__brule *r = &b->rules[rule];
  if (!grow((void **)&r->e, &r->cap, r->n + 1, sizeof(*r->e))) {
    oom(b);
    return;
  }
  r->e[r->n++] = (qiao__gelem){kind, v};
  b->n_elems++;
}

void qiao__gb_set_index(qiao__gbuilder *b, uint32_t rule, uint32_t set) {
  if (b->err == NULL && set >= b->n_sets) {
    qiao__gb_fail(b, qiao__error(QIAO_INTERNAL, "grammar: set %u out of range", set));
    return;
  }
  push(b, rule, QIAO__G_SET, set);
}

void qiao__gb_set(qiao__gbuilder *b, uint32_t rule, const qiao__byteset *set) {
  if (b->err != NULL) return;
  /* The same set as the previous one is common (runs of one class). */
  if (b->n_sets > 0 && memcmp(&b->sets[b->n_sets - 1], set, sizeof(*set)) == 0) {
    push(b, rule, QIAO__G_SET, b->n_sets - 1);
    return;
  }
  if (!grow((void **)&b->sets, &b->cap_sets, b->n_sets + 1, sizeof(*b->sets))) {
    oom(b);
    return;
  }
  b->sets[b->n_sets] = *set;
  push(b, rule, QIAO__G_SET, b->n_sets++);
}

void qiao__gb_byte(qiao__gbuilder *b, uint32_t rule, uint8_t c) {
  qiao__byteset s = {{0}};
  qiao__byteset_add_range(&s, c, c);
  qiao__gb_set(b, rule, &s);
}

void qiao__gb_lit(qiao__gbuilder *b, uint32_t rule, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    qiao__gb_byte(b, rule, (uint8_t)s[i]);
}

void qiao__gb_ref(qiao__gbuilder *b, uint32_t rule, uint32_t target) {
  push(b, rule, QIAO__G_REF, target);
}

void qiao__gb_alt(qiao__gbuilder *b, uint32_t rule) {
  push(b, rule, QIAO__G_ALT, 0);
}

/* ---- Code point classes as UTF-8 ------------------------------------------- */

size_t qiao__utf8_put(uint32_t cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static int cmp_range(const void *a, const void *b) {
  const qiao__cprange *x = a, *y = b;
  return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Adds to `rule` one alternative per run of UTF-8 byte ranges covering the
 * code points [lo, hi] (no surrogates, all of one encoded length or split
 * until they are): the classic split of a range into "rectangles" whose
 * every byte position is an independent range. */
static void utf8_split(qiao__gbuilder *b, uint32_t rule, uint32_t lo, uint32_t hi, bool *first) {
  if (lo > hi || b->err != NULL) return;
  if (lo <= 0xDFFF && hi >= 0xD800) {
    if (lo < 0xD800) utf8_split(b, rule, lo, 0xD7FF, first);
    if (hi > 0xDFFF) utf8_split(b, rule, 0xE000, hi, first);
    return;
  }
  static const uint32_t bounds[] = {0x7F, 0x7FF, 0xFFFF};
  for (int i = 0; i < 3; i++)
    if (lo <= bounds[i] && hi > bounds[i]) {
      utf8_split(b, rule, lo, bounds[i], first);
      utf8_split(b, rule, bounds[i] + 1, hi, first);
      return;
    }
  char a[4], z[4];
  size_t n = qiao__utf8_put(lo, a);
  for (size_t i = 1; i < n; i++) {
    uint32_t m = (1u << (6 * i)) - 1;
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        utf8_split(b, rule, lo, lo | m, first);
        utf8_split(b, rule, (lo | m) + 1, hi, first);
        return;
      }
      if ((hi & m) != m) {
        utf8_split(b, rule, lo, (hi & ~m) - 1, first);
        utf8_split(b, rule, hi & ~m, hi, first);
        return;
      }
    }
  }
  qiao__utf8_put(hi, z);
  if (!*first) qiao__gb_alt(b, rule);
  *first = false;
  for (size_t i = 0; i < n; i++) {
    qiao__byteset s = {{0}};
    qiao__byteset_add_range(&s, (uint8_t)a[i], (uint8_t)z[i]);
    qiao__gb_set(b, rule, &s);
  }
}

uint32_t qiao__gb_class(qiao__gbuilder *b, const qiao__cprange *ranges, size_t n, bool negate) {
  if (b->err != NULL) return QIAO__G_NONE;
  qiao__cprange *r = malloc((n + 1) * sizeof(*r));
  if (r == NULL) {
    oom(b);
    return QIAO__G_NONE;
  }
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (ranges[i].lo <= ranges[i].hi && ranges[i].lo <= 0x10FFFF)
      r[m++] = (qiao__cprange){ranges[i].lo, ranges[i].hi > 0x10FFFF ? 0x10FFFF : ranges[i].hi};
  qsort(r, m, sizeof(*r), cmp_range);
  size_t k = 0; /* merge overlapping and adjacent ranges */
  for (size_t i = 0; i < m; i++) {
    if (k > 0 && r[i].lo <= r[k - 1].hi + 1) {
      if (r[i].hi > r[k - 1].hi) r[k - 1].hi = r[i].hi;
    } else {
      r[k++] = r[i];
    }
  }
  if (negate) { /* the gaps between the merged ranges */
    qiao__cprange *g = malloc((k + 1) * sizeof(*g));
    if (g == NULL) {
      free(r);
      oom(b);
      return QIAO__G_NONE;
    }
    size_t gn = 0;
    uint32_t next = 0;
    for (size_t i = 0; i < k; i++) {
      if (r[i].lo > next) g[gn++] = (qiao__cprange){next, r[i].lo - 1};
      next = r[i].hi + 1;
    }
    if (next <= 0x10FFFF) g[gn++] = (qiao__cprange){next, 0x10FFFF};
    free(r);
    r = g;
    k = gn;
  }
  uint32_t rule = qiao__gb_rule(b, NULL, 0);
  /* All single-byte code points in one set: one alternative, not many. */
  qiao__byteset ascii = {{0}};
  bool any_ascii = false, first = true;
  for (size_t i = 0; i < k; i++)
    if (r[i].lo < 0x80) {
      qiao__byteset_add_range(&ascii, (uint8_t)r[i].lo, (uint8_t)(r[i].hi < 0x80 ? r[i].hi : 0x7F));
      any_ascii = true;
    }
  if (any_ascii) {
    qiao__gb_set(b, rule, &ascii);
    first = false;
  }
  for (size_t i = 0; i < k; i++)
    if (r[i].hi >= 0x80) utf8_split(b, rule, r[i].lo < 0x80 ? 0x80 : r[i].lo, r[i].hi, &first);
  free(r);
  if (first && b->err == NULL) /* an empty class matches nothing: an impossible byte */
    qiao__gb_set(b, rule, &(qiao__byteset){{0}});
  return rule;
}

uint32_t qiao__gb_repeat(qiao__gbuilder *b, uint32_t item, uint32_t min, uint32_t max) {
  if (b->err != NULL) return QIAO__G_NONE;
  if (min > QIAO_GRAMMAR_MAX_REPEAT || (max != QIAO__G_INF && max > QIAO_GRAMMAR_MAX_REPEAT)) {
    qiao__gb_fail(
        b, qiao__error(QIAO_LIMIT, "grammar: repetition bound above %u", QIAO_GRAMMAR_MAX_REPEAT));
    return QIAO__G_NONE;
  }
  if (max != QIAO__G_INF && max < min) {
    qiao__gb_fail(
        b, qiao__error(QIAO_MALFORMED, "grammar: repetition {%u,%u} with max < min", min, max));
    return QIAO__G_NONE;
  }
  /* tail: item* (right recursive), or the nested optionals
   * opt_k ::= item opt_{k-1} | ε for up to max - min more items. */
  uint32_t tail = QIAO__G_NONE;
  if (max == QIAO__G_INF) {
    tail = qiao__gb_rule(b, NULL, 0);
    qiao__gb_ref(b, tail, item);
    qiao__gb_ref(b, tail, tail);
    qiao__gb_alt(b, tail);
  } else {
    for (uint32_t k = 0; k < max - min && b->err == NULL; k++) {
      uint32_t opt = qiao__gb_rule(b, NULL, 0);
      qiao__gb_ref(b, opt, item);
      if (tail != QIAO__G_NONE) qiao__gb_ref(b, opt, tail);
      qiao__gb_alt(b, opt);
      tail = opt;
    }
  }
  uint32_t rule = qiao__gb_rule(b, NULL, 0);
  for (uint32_t i = 0; i < min; i++)
    qiao__gb_ref(b, rule, item);
  if (tail != QIAO__G_NONE) qiao__gb_ref(b, rule, tail);
  return rule;
}

/* ---- Freezing ------------------------------------------------------------- */

static const char *rule_name(const qiao__gbuilder *b, uint32_t r, char buf[32]) {
  if (b->rules[r].name != NULL) return b->rules[r].name;
  snprintf(buf, 32, "#%u", r);
  return buf;
}

/* Fails when a rule can reach itself without consuming a byte (left
 * recursion): the matcher would expand it forever. */
static qiao_status *check_left_recursion(const qiao__gbuilder *b) {
  uint32_t n = b->n_rules;
  bool *nullable = calloc(n ? n : 1, sizeof(bool));
  uint8_t *color = calloc(n ? n : 1, 1); /* 0 new, 1 on the path, 2 done */
  uint32_t *stack = malloc((size_t)(n ? n : 1) * 2 * sizeof(uint32_t));
  if (nullable == NULL || color == NULL || stack == NULL) {
    free(nullable);
    free(color);
    free(stack);
    return qiao__error(QIAO_OUT_OF_MEMORY, "grammar: out of memory");
  }
  /* Nullable rules, to a fixpoint. */
  for (bool changed = true; changed;) {
    changed = false;
    for (uint32_t r = 0; r < n; r++) {
      if (nullable[r]) continue;
      const qiao__brule *ru = &b->rules[r];
      bool alt_ok = true;
      for (uint32_t i = 0; i <= ru->n; i++) {
        if (i == ru->n || ru->e[i].kind == QIAO__G_ALT) {
          if (alt_ok) {
            nullable[r] = changed = true;
            break;
          }
          alt_ok = true;
        } else if (ru->e[i].kind == QIAO__G_SET ||
                   (ru->e[i].kind == QIAO__G_REF && !nullable[ru->e[i].v])) {
          alt_ok = false;
        }
      }
    }
  }
  /* Depth-first search over "r may start with s" edges; stack holds
   * (rule, next element index) pairs. */
  qiao_status *st = NULL;
  for (uint32_t start = 0; start < n && st == NULL; start++) {
    if (color[start] != 0) continue;
    size_t sp = 0;
    stack[sp++] = start;
    stack[sp++] = 0;
    color[start] = 1;
    while (sp > 0 && st == NULL) {
      uint32_t r = stack[sp - 2], i = stack[sp - 1];
      const qiao__brule *ru = &b->rules[r];
      /* Find the next element at i that is reachable without consuming. */
      bool pushed = false;
      while (i < ru->n && !pushed) {
        /* the element at i is at an alternative's start or after nullables */
        uint32_t j = i;
        while (j > 0 && ru->e[j - 1].kind == QIAO__G_REF && nullable[ru->e[j - 1].v])
          j--;
        bool at_start = j == 0 || ru->e[j - 1].kind == QIAO__G_ALT;
        const qiao__gelem *e = &ru->e[i++];
        if (!at_start || e->kind != QIAO__G_REF) continue;
        uint32_t s = e->v;
        if (color[s] == 1) {
          char nb[32];
          st = qiao__error(QIAO_UNSUPPORTED, "grammar: rule '%s' is left-recursive",
                           rule_name(b, s, nb));
          break;
        }
        if (color[s] == 0) {
          stack[sp - 1] = i;
          color[s] = 1;
          stack[sp++] = s;
          stack[sp++] = 0;
          pushed = true;
        }
      }
      if (!pushed && st == NULL) {
        color[r] = 2;
        sp -= 2;
      }
    }
  }
  free(nullable);
  free(color);
  free(stack);
  return st;
}

qiao_status *qiao__gb_finish(qiao__gbuilder *b, uint32_t root, qiao_grammar **out) {
  qiao_status *st = b->err;
  b->err = NULL;
  if (st == NULL && root >= b->n_rules) st = qiao__error(QIAO_INTERNAL, "grammar: no root rule");
  for (uint32_t r = 0; r < b->n_rules && st == NULL; r++) {
    char nb[32];
    if (!b->rules[r].defined)
      st = qiao__error(QIAO_MALFORMED, "grammar: rule '%s' is used but not defined",
                       rule_name(b, r, nb));
    for (uint32_t i = 0; i < b->rules[r].n && st == NULL; i++)
      if (b->rules[r].e[i].kind == QIAO__G_REF && b->rules[r].e[i].v >= b->n_rules)
        st = qiao__error(QIAO_INTERNAL, "grammar: reference out of range");
  }
  if (st == NULL) st = check_left_recursion(b);
  qiao_grammar *g = NULL;
  if (st == NULL) {
    g = calloc(1, sizeof(*g));
    size_t n_alts = 0;
    for (uint32_t r = 0; r < b->n_rules; r++) {
      n_alts++;
      for (uint32_t i = 0; i < b->rules[r].n; i++)
        n_alts += b->rules[r].e[i].kind == QIAO__G_ALT;
    }
    size_t n_elems = b->n_elems + b->n_rules; /* plus one END per rule */
    if (g != NULL) {
      g->elems = malloc(n_elems * sizeof(*g->elems));
      g->alt_begin = malloc(((size_t)b->n_rules + 1) * sizeof(uint32_t));
      g->alts = malloc(n_alts * sizeof(uint32_t));
      g->sets = malloc((b->n_sets ? b->n_sets : 1) * sizeof(*g->sets));
    }
    if (g == NULL || g->elems == NULL || g->alt_begin == NULL || g->alts == NULL ||
        g->sets == NULL) {
      st = qiao__error(QIAO_OUT_OF_MEMORY, "grammar: out of memory");
    } else {
      uint32_t pos = 0, na = 0;
      for (uint32_t r = 0; r < b->n_rules; r++) {
        g->alt_begin[r] = na;
        g->alts[na++] = pos;
        for (uint32_t i = 0; i < b->rules[r].n; i++) {
          g->elems[pos++] = b->rules[r].e[i];
          if (b->rules[r].e[i].kind == QIAO__G_ALT) g->alts[na++] = pos;
        }
        g->elems[pos++] = (qiao__gelem){QIAO__G_END, 0};
      }
      g->alt_begin[b->n_rules] = na;
      if (b->n_sets) memcpy(g->sets, b->sets, b->n_sets * sizeof(*g->sets));
      g->n_sets = b->n_sets;
      g->n_elems = pos;
      g->n_rules = b->n_rules;
      g->root = root;
      atomic_init(&g->refs, 1);
      pthread_mutex_init(&g->cache_mu, NULL);
    }
  }
  qiao__gb_free(b);
  if (st != NULL) {
    if (g != NULL) {
      free(g->elems);
      free(g->alt_begin);
      free(g->alts);
      free(g->sets);
      free(g);
    }
    return st;
  }
  *out = g;
  return NULL;
}

qiao_grammar *qiao_grammar_ref(qiao_grammar *g) {
  if (g != NULL) atomic_fetch_add(&g->refs, 1);
  return g;
}

void qiao_grammar_destroy(qiao_grammar *g) {
  if (g == NULL || atomic_fetch_sub(&g->refs, 1) != 1) return;
  for (uint32_t i = 0; i < g->n_cache; i++) {
    free(g->cache[i].stacks);
    free(g->cache[i].offs);
    free(g->cache[i].mask);
  }
  free(g->cache);
  pthread_mutex_destroy(&g->cache_mu);
  free(g->elems);
  free(g->alt_begin);
  free(g->alts);
  free(g->sets);
  free(g);
}

void qiao_grammar_size(const qiao_grammar *g, size_t *out_rules, size_t *out_elements) {
  if (out_rules) *out_rules = g ? g->n_rules : 0;
  if (out_elements) *out_elements = g ? g->n_elems : 0;
}
