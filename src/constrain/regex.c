/* JSON Schema `pattern` (an ECMA-262 regex subset) to grammar rules over
 * the JSON-escaped string content. Each code point class is written with
 * `"` and `\` in their escaped forms and without control characters (a
 * tightening: such strings are rarer than they are worth). Unsupported
 * constructs (backreferences, lookaround, \b, \p, ...) are refused. */
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar_internal.h"

typedef struct rx {
  qiao__gbuilder *b;
  const char *s;
  size_t n, i;
  uint32_t json_char;
} rx;

static void rfail(rx *r, qiao_code code, const char *what) {
  qiao__gb_fail(r->b, qiao__error(code, "json schema: pattern: %s at offset %zu", what, r->i));
}

static bool rok(const rx *r) {
  return r->b->err == NULL;
}

static int rpeek(const rx *r) {
  return r->i < r->n ? (unsigned char)r->s[r->i] : -1;
}

/* A growable list of code point ranges. */
typedef struct ranges {
  qiao__cprange *r;
  size_t n, cap;
} ranges;

static bool radd(rx *x, ranges *rs, uint32_t lo, uint32_t hi) {
  if (rs->n == rs->cap) {
    size_t c = rs->cap ? rs->cap * 2 : 8;
    qiao__cprange *g = realloc(rs->r, c * sizeof(*g));
    if (g == NULL) {
      qiao__gb_fail(x->b, qiao__error(QIAO_OUT_OF_MEMORY, "json schema: out of memory"));
      return false;
    }
    rs->r = g;
    rs->cap = c;
  }
  rs->r[rs->n++] = (qiao__cprange){lo, hi};
  return true;
}

static int cmp_lo(const void *a, const void *b) {
  const qiao__cprange *x = a, *y = b;
  return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Sorts and merges in place; with `negate`, replaces by the complement. */
static bool normalize(rx *x, ranges *rs, bool negate) {
  qsort(rs->r, rs->n, sizeof(*rs->r), cmp_lo);
  size_t k = 0;
  for (size_t i = 0; i < rs->n; i++) {
    if (k > 0 && rs->r[i].lo <= rs->r[k - 1].hi + 1) {
      if (rs->r[i].hi > rs->r[k - 1].hi) rs->r[k - 1].hi = rs->r[i].hi;
    } else {
      rs->r[k++] = rs->r[i];
    }
  }
  rs->n = k;
  if (!negate) return true;
  ranges g = {0};
  uint32_t next = 0;
  for (size_t i = 0; i < rs->n; i++) {
    if (rs->r[i].lo > next && !radd(x, &g, next, rs->r[i].lo - 1)) break;
    next = rs->r[i].hi + 1;
  }
  if (next <= 0x10FFFF) radd(x, &g, next, 0x10FFFF);
  free(rs->r);
  *rs = g;
  return rok(x);
}

static const qiao__cprange SPACE[] = {
    {0x09, 0x0D},     {0x20, 0x20},     {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
static const qiao__cprange DIGIT[] = {{'0', '9'}};
static const qiao__cprange WORD[] = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};

/* Adds a shorthand class (\d \w \s, negated for \D \W \S). */
static void add_shorthand(rx *x, ranges *rs, int c) {
  const qiao__cprange *src = DIGIT;
  size_t n = 1;
  int lower = c | 0x20;
  if (lower == 'w') src = WORD, n = 4;
  if (lower == 's') src = SPACE, n = sizeof(SPACE) / sizeof(SPACE[0]);
  ranges t = {0};
  for (size_t i = 0; i < n; i++)
    radd(x, &t, src[i].lo, src[i].hi);
  if (c >= 'A' && c <= 'Z') normalize(x, &t, true);
  for (size_t i = 0; i < t.n && rok(x); i++)
    radd(x, rs, t.r[i].lo, t.r[i].hi);
  free(t.r);
}

static uint32_t rhex(rx *x, int digits) {
  uint32_t v = 0;
  for (int k = 0; k < digits; k++) {
    int c = rpeek(x);
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) {
      rfail(x, QIAO_MALFORMED, "bad hex escape");
      return 0;
    }
    v = v * 16 + (uint32_t)d;
    x->i++;
  }
  return v;
}

/* After a backslash: a single code point (returns true) or a shorthand
 * class added to rs (returns false). */
static bool parse_escape(rx *x, ranges *rs, uint32_t *cp) {
  int c = rpeek(x);
  if (c < 0) {
    rfail(x, QIAO_MALFORMED, "escape at the end");
    return true;
  }
  x->i++;
  switch (c) {
  case 'd':
  case 'D':
  case 'w':
  case 'W':
  case 's':
  case 'S': add_shorthand(x, rs, c); return false;
  case 'n': *cp = '\n'; return true;
  case 'r': *cp = '\r'; return true;
  case 't': *cp = '\t'; return true;
  case 'f': *cp = '\f'; return true;
  case 'v': *cp = '\v'; return true;
  case '0': *cp = 0; return true;
  case 'x': *cp = rhex(x, 2); return true;
  case 'u': *cp = rhex(x, 4); return true;
  default: break;
  }
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9')) {
    x->i--;
    rfail(x, QIAO_UNSUPPORTED, "unsupported escape (backreference, \\b, \\p, ...)");
    return true;
  }
  *cp = (uint32_t)c; /* an escaped punctuation character is itself */
  return true;
}

/* A UTF-8 code point of the pattern text. */
static uint32_t next_cp(rx *x) {
  unsigned char c = (unsigned char)x->s[x->i];
  size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  uint32_t cp = c;
  if (len > 1 && x->i + len <= x->n) {
    cp = c & (0x3F >> (len - 1));
    for (size_t k = 1; k < len; k++)
      cp = (cp << 6) | ((unsigned char)x->s[x->i + k] & 0x3F);
  } else {
    len = 1;
  }
  x->i += len;
  return cp;
}

/* Emits into `rule` one element matching one code point of `rs` (normalized)
 * in JSON-escaped form. */
static void emit_class(rx *x, uint32_t rule, ranges *rs) {
  bool quote = false, backslash = false;
  ranges keep = {0};
  for (size_t i = 0; i < rs->n && rok(x); i++) {
    uint32_t lo = rs->r[i].lo < 0x20 ? 0x20 : rs->r[i].lo, hi = rs->r[i].hi;
    if (lo > hi) continue;
    /* cut out '"' and '\' */
    for (uint32_t cut = 0; cut < 2; cut++) {
      uint32_t ch = cut ? '\\' : '"';
      if (lo <= ch && ch <= hi) {
        if (cut)
          backslash = true;
        else
          quote = true;
        if (lo < ch) radd(x, &keep, lo, ch - 1);
        lo = ch + 1;
      }
    }
    if (lo <= hi) radd(x, &keep, lo, hi);
  }
  uint32_t cls = qiao__gb_class(x->b, keep.r, keep.n, false);
  free(keep.r);
  if (!quote && !backslash) {
    qiao__gb_ref(x->b, rule, cls);
    return;
  }
  uint32_t alt = qiao__gb_rule(x->b, NULL, 0);
  qiao__gb_ref(x->b, alt, cls);
  if (quote) {
    qiao__gb_alt(x->b, alt);
    qiao__gb_lit(x->b, alt, "\\\"", 2);
  }
  if (backslash) {
    qiao__gb_alt(x->b, alt);
    qiao__gb_lit(x->b, alt, "\\\\", 2);
  }
  qiao__gb_ref(x->b, rule, alt);
}

static void emit_cp(rx *x, uint32_t rule, uint32_t cp) {
  ranges one = {0};
  if (radd(x, &one, cp, cp)) emit_class(x, rule, &one);
  free(one.r);
}

static void rx_alts(rx *x, uint32_t rule, uint32_t depth, bool top);

static uint32_t rx_uint(rx *x) {
  uint32_t v = 0;
  if (rpeek(x) < '0' || rpeek(x) > '9') {
    rfail(x, QIAO_MALFORMED, "expected a number in {}");
    return 0;
  }
  while (rpeek(x) >= '0' && rpeek(x) <= '9') {
    v = v * 10 + (uint32_t)(rpeek(x) - '0');
    if (v > QIAO_GRAMMAR_MAX_REPEAT) {
      rfail(x, QIAO_LIMIT, "repetition count above the limit");
      return 0;
    }
    x->i++;
  }
  return v;
}

/* A sequence up to '|' or ')' or the end; `top` allows the ^ and $ anchors
 * at the ends of a top-level alternative. */
static void rx_seq(rx *x, uint32_t rule, uint32_t depth, bool top) {
  bool anchored_start = false, anchored_end = false;
  if (top && rpeek(x) == '^') {
    x->i++;
    anchored_start = true;
  }
  if (top && !anchored_start)
    qiao__gb_ref(x->b, rule, qiao__gb_repeat(x->b, x->json_char, 0, QIAO__G_INF));
  while (rok(x)) {
    int c = rpeek(x);
    if (c < 0 || c == '|' || c == ')') break;
    if (c == '$') {
      if (!top || (x->i + 1 < x->n && x->s[x->i + 1] != '|')) {
        rfail(x, QIAO_UNSUPPORTED, "'$' other than at the end");
        return;
      }
      x->i++;
      anchored_end = true;
      break;
    }
    if (c == '^') {
      rfail(x, QIAO_UNSUPPORTED, "'^' other than at the start");
      return;
    }
    if (c == '*' || c == '+' || c == '?' || c == '{') {
      rfail(x, QIAO_MALFORMED, "quantifier without an atom");
      return;
    }
    uint32_t u = qiao__gb_rule(x->b, NULL, 0);
    if (c == '(') {
      if (depth >= QIAO_GRAMMAR_MAX_NESTING) {
        rfail(x, QIAO_LIMIT, "groups nested too deep");
        return;
      }
      x->i++;
      if (rpeek(x) == '?') {
        x->i++;
        int k = rpeek(x);
        if (k == ':') {
          x->i++;
        } else if (k == '<' && x->i + 1 < x->n && x->s[x->i + 1] != '=' && x->s[x->i + 1] != '!') {
          while (rpeek(x) >= 0 && rpeek(x) != '>') /* a named group: the name is skipped */
            x->i++;
          x->i++;
        } else {
          rfail(x, QIAO_UNSUPPORTED, "lookaround or group flags");
          return;
        }
      }
      rx_alts(x, u, depth + 1, false);
      if (rok(x) && rpeek(x) != ')') {
        rfail(x, QIAO_MALFORMED, "expected ')'");
        return;
      }
      x->i++;
    } else if (c == '[') {
      x->i++;
      bool negate = rpeek(x) == '^';
      if (negate) x->i++;
      ranges rs = {0};
      while (rok(x) && rpeek(x) != ']') {
        if (rpeek(x) < 0) {
          rfail(x, QIAO_MALFORMED, "unterminated class");
          break;
        }
        uint32_t lo = 0;
        bool single = true;
        if (rpeek(x) == '\\') {
          x->i++;
          single = parse_escape(x, &rs, &lo);
        } else {
          lo = next_cp(x);
        }
        if (!single) continue;
        uint32_t hi = lo;
        if (rpeek(x) == '-' && x->i + 1 < x->n && x->s[x->i + 1] != ']') {
          x->i++;
          if (rpeek(x) == '\\') {
            x->i++;
            ranges dummy = {0};
            if (!parse_escape(x, &dummy, &hi))
              rfail(x, QIAO_MALFORMED, "class shorthand as a range end");
            free(dummy.r);
          } else {
            hi = next_cp(x);
          }
          if (hi < lo) rfail(x, QIAO_MALFORMED, "class range with its ends reversed");
        }
        radd(x, &rs, lo, hi);
      }
      x->i++;
      if (rok(x) && normalize(x, &rs, negate)) emit_class(x, u, &rs);
      free(rs.r);
    } else if (c == '.') {
      x->i++;
      ranges rs = {0};
      radd(x, &rs, '\n', '\n');
      radd(x, &rs, '\r', '\r');
      radd(x, &rs, 0x2028, 0x2029);
      if (normalize(x, &rs, true)) emit_class(x, u, &rs);
      free(rs.r);
    } else if (c == '\\') {
      x->i++;
      ranges rs = {0};
      uint32_t cp = 0;
      if (parse_escape(x, &rs, &cp)) {
        if (rok(x)) emit_cp(x, u, cp);
      } else if (normalize(x, &rs, false)) {
        emit_class(x, u, &rs);
      }
      free(rs.r);
    } else {
      emit_cp(x, u, next_cp(x));
    }
    /* Quantifier (a trailing '?' makes it lazy: the same language). */
    int q = rpeek(x);
    uint32_t min = 1, max = 1;
    if (q == '*')
      min = 0, max = QIAO__G_INF;
    else if (q == '+')
      min = 1, max = QIAO__G_INF;
    else if (q == '?')
      min = 0, max = 1;
    if (q == '*' || q == '+' || q == '?') {
      x->i++;
    } else if (q == '{' && x->i + 1 < x->n && x->s[x->i + 1] >= '0' && x->s[x->i + 1] <= '9') {
      x->i++;
      min = max = rx_uint(x);
      if (rpeek(x) == ',') {
        x->i++;
        max = rpeek(x) == '}' ? QIAO__G_INF : rx_uint(x);
      }
      if (rok(x) && rpeek(x) != '}') rfail(x, QIAO_MALFORMED, "expected '}'");
      x->i++;
    }
    if (min != 1 || max != 1) {
      if (rpeek(x) == '?') x->i++;
      qiao__gb_ref(x->b, rule, qiao__gb_repeat(x->b, u, min, max));
    } else {
      qiao__gb_ref(x->b, rule, u);
    }
  }
  if (top && !anchored_end)
    qiao__gb_ref(x->b, rule, qiao__gb_repeat(x->b, x->json_char, 0, QIAO__G_INF));
}

static void rx_alts(rx *x, uint32_t rule, uint32_t depth, bool top) {
  rx_seq(x, rule, depth, top);
  while (rok(x) && rpeek(x) == '|') {
    x->i++;
    qiao__gb_alt(x->b, rule);
    rx_seq(x, rule, depth, top);
  }
}

uint32_t qiao__regex_compile(qiao__gbuilder *b, const char *pattern, size_t len,
                             uint32_t json_char) {
  rx x = {b, pattern, len, 0, json_char};
  uint32_t rule = qiao__gb_rule(b, NULL, 0);
  rx_alts(&x, rule, 0, true);
  if (rok(&x) && x.i < x.n) rfail(&x, QIAO_MALFORMED, "unbalanced ')'");
  return rule;
}
