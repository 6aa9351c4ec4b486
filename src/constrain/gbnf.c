/* The GBNF-like grammar front end: a recursive-descent parser straight into
 * the builder. Names are looked up in a small table; a name used before its
 * definition gets a rule that the definition fills in. */
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar_internal.h"

typedef struct parser {
  qiao__gbuilder *b;
  const char *s;
  size_t n, i;
  uint32_t *names; /* rule ids that carry a name */
  size_t n_names, cap_names;
} parser;

static void fail(parser *p, qiao_code code, const char *what) {
  qiao__gb_fail(p->b, qiao__error(code, "grammar: %s at byte %zu", what, p->i));
}

static bool ok(const parser *p) {
  return p->b->err == NULL;
}

static int peek(const parser *p) {
  return p->i < p->n ? (unsigned char)p->s[p->i] : -1;
}

/* Skips spaces, tabs, comments and, when `newlines`, line ends. */
static void skip(parser *p, bool newlines) {
  while (p->i < p->n) {
    char c = p->s[p->i];
    if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
      p->i++;
    } else if (c == '#') {
      while (p->i < p->n && p->s[p->i] != '\n')
        p->i++;
    } else {
      break;
    }
  }
}

static bool is_name_char(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

/* The rule of a name, created (undefined) on first use. */
static uint32_t rule_of(parser *p, const char *name, size_t len, bool define) {
  for (size_t k = 0; k < p->n_names; k++) {
    qiao__brule *r = &p->b->rules[p->names[k]];
    if (strlen(r->name) == len && memcmp(r->name, name, len) == 0) {
      if (define) {
        if (r->defined) {
          fail(p, QIAO_MALFORMED, "rule defined twice");
          return QIAO__G_NONE;
        }
        r->defined = true;
      }
      return p->names[k];
    }
  }
  uint32_t id = qiao__gb_rule(p->b, name, len);
  if (id == QIAO__G_NONE) return id;
  p->b->rules[id].defined = define;
  if (p->n_names == p->cap_names) {
    size_t c = p->cap_names ? p->cap_names * 2 : 16;
    uint32_t *g = realloc(p->names, c * sizeof(*g));
    if (g == NULL) {
      qiao__gb_fail(p->b, qiao__error(QIAO_OUT_OF_MEMORY, "grammar: out of memory"));
      return QIAO__G_NONE;
    }
    p->names = g;
    p->cap_names = c;
  }
  p->names[p->n_names++] = id;
  return id;
}

static uint32_t hex(parser *p, int digits) {
  uint32_t v = 0;
  for (int k = 0; k < digits; k++) {
    int c = peek(p);
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) {
      fail(p, QIAO_MALFORMED, "bad hex escape");
      return 0;
    }
    v = v * 16 + (uint32_t)d;
    p->i++;
  }
  return v;
}

/* One character of a literal or class: a code point (escapes decoded). */
static uint32_t parse_char(parser *p) {
  unsigned char c = (unsigned char)p->s[p->i];
  if (c == '\\') {
    p->i++;
    int e = peek(p);
    if (e < 0) {
      fail(p, QIAO_MALFORMED, "escape at the end");
      return 0;
    }
    p->i++;
    switch (e) {
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'x': return hex(p, 2);
    case 'u': return hex(p, 4);
    case 'U': return hex(p, 8);
    case '\\':
    case '"':
    case '[':
    case ']':
    case '-':
    case '/':
    case '^': return (uint32_t)e;
    default: fail(p, QIAO_MALFORMED, "unknown escape"); return 0;
    }
  }
  /* A UTF-8 sequence: decode it (invalid bytes are taken one by one). */
  uint32_t cp = c;
  size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
  if (len > 1 && p->i + len <= p->n) {
    cp = c & (0x3F >> (len - 1));
    for (size_t k = 1; k < len; k++)
      cp = (cp << 6) | ((unsigned char)p->s[p->i + k] & 0x3F);
  } else {
    len = 1;
  }
  p->i += len;
  return cp;
}

static void parse_alts(parser *p, uint32_t rule, uint32_t depth);

static uint32_t parse_uint(parser *p) {
  uint32_t v = 0;
  if (peek(p) < '0' || peek(p) > '9') {
    fail(p, QIAO_MALFORMED, "expected a number");
    return 0;
  }
  while (peek(p) >= '0' && peek(p) <= '9') {
    v = v * 10 + (uint32_t)(peek(p) - '0');
    if (v > QIAO_GRAMMAR_MAX_REPEAT) {
      fail(p, QIAO_LIMIT, "repetition count above the limit");
      return 0;
    }
    p->i++;
  }
  return v;
}

/* One atom into a new rule `u` (so a postfix operator can wrap it). */
static bool parse_atom(parser *p, uint32_t u, uint32_t depth) {
  int c = peek(p);
  if (c == '"') {
    p->i++;
    while (ok(p) && peek(p) != '"') {
      if (peek(p) < 0) {
        fail(p, QIAO_MALFORMED, "unterminated literal");
        return false;
      }
      uint32_t cp = parse_char(p);
      char buf[4];
      if (cp > 0x10FFFF) {
        fail(p, QIAO_MALFORMED, "code point above U+10FFFF");
        return false;
      }
      qiao__gb_lit(p->b, u, buf, qiao__utf8_put(cp, buf));
    }
    p->i++;
    return ok(p);
  }
  if (c == '[') {
    p->i++;
    bool negate = peek(p) == '^';
    if (negate) p->i++;
    qiao__cprange *r = NULL;
    size_t n = 0, cap = 0;
    while (ok(p) && peek(p) != ']') {
      if (peek(p) < 0) {
        fail(p, QIAO_MALFORMED, "unterminated character class");
        break;
      }
      uint32_t lo = parse_char(p), hi = lo;
      if (peek(p) == '-' && p->i + 1 < p->n && p->s[p->i + 1] != ']') {
        p->i++;
        hi = parse_char(p);
      }
      if (n == cap) {
        cap = cap ? cap * 2 : 8;
        qiao__cprange *g = realloc(r, cap * sizeof(*g));
        if (g == NULL) {
          qiao__gb_fail(p->b, qiao__error(QIAO_OUT_OF_MEMORY, "grammar: out of memory"));
          break;
        }
        r = g;
      }
      if (lo > hi) fail(p, QIAO_MALFORMED, "class range with its ends reversed");
      r[n++] = (qiao__cprange){lo, hi};
    }
    if (ok(p)) {
      p->i++;
      qiao__gb_ref(p->b, u, qiao__gb_class(p->b, r, n, negate));
    }
    free(r);
    return ok(p);
  }
  if (c == '.') {
    p->i++;
    qiao__gb_ref(p->b, u, qiao__gb_class(p->b, NULL, 0, true));
    return ok(p);
  }
  if (c == '(') {
    if (depth >= QIAO_GRAMMAR_MAX_NESTING) {
      fail(p, QIAO_LIMIT, "groups nested too deep");
      return false;
    }
    p->i++;
    uint32_t g = qiao__gb_rule(p->b, NULL, 0);
    parse_alts(p, g, depth + 1);
    skip(p, true);
    if (ok(p) && peek(p) != ')') fail(p, QIAO_MALFORMED, "expected ')'");
    p->i++;
    qiao__gb_ref(p->b, u, g);
    return ok(p);
  }
  if (is_name_char(c)) {
    size_t start = p->i;
    while (is_name_char(peek(p)))
      p->i++;
    qiao__gb_ref(p->b, u, rule_of(p, p->s + start, p->i - start, false));
    return ok(p);
  }
  return false; /* not an atom: the sequence ends */
}

/* Copies rule u's elements into `rule` when u is one plain sequence. */
static void inline_or_ref(parser *p, uint32_t rule, uint32_t u) {
  if (!ok(p)) return;
  qiao__brule *ru = &p->b->rules[u];
  for (uint32_t k = 0; k < ru->n; k++)
    if (ru->e[k].kind == QIAO__G_ALT) {
      qiao__gb_ref(p->b, rule, u);
      return;
    }
  for (uint32_t k = 0; k < p->b->rules[u].n && ok(p); k++) {
    qiao__gelem e = p->b->rules[u].e[k]; /* re-read: rules may move as they grow */
    if (e.kind == QIAO__G_SET)
      qiao__gb_set_index(p->b, rule, e.v);
    else
      qiao__gb_ref(p->b, rule, e.v);
  }
}

static void parse_seq(parser *p, uint32_t rule, uint32_t depth) {
  while (ok(p)) {
    skip(p, depth > 0);
    uint32_t u = qiao__gb_rule(p->b, NULL, 0);
    if (!ok(p) || !parse_atom(p, u, depth)) return;
    int c = peek(p);
    uint32_t min = 1, max = 1;
    if (c == '*')
      min = 0, max = QIAO__G_INF;
    else if (c == '+')
      min = 1, max = QIAO__G_INF;
    else if (c == '?')
      min = 0, max = 1;
    if (c == '*' || c == '+' || c == '?') {
      p->i++;
    } else if (c == '{') {
      p->i++;
      skip(p, false);
      min = max = parse_uint(p);
      skip(p, false);
      if (peek(p) == ',') {
        p->i++;
        skip(p, false);
        max = peek(p) == '}' ? QIAO__G_INF : parse_uint(p);
        skip(p, false);
      }
      if (ok(p) && peek(p) != '}') fail(p, QIAO_MALFORMED, "expected '}'");
      p->i++;
    }
    if (min == 1 && max == 1)
      inline_or_ref(p, rule, u);
    else
      qiao__gb_ref(p->b, rule, qiao__gb_repeat(p->b, u, min, max));
  }
}

static void parse_alts(parser *p, uint32_t rule, uint32_t depth) {
  parse_seq(p, rule, depth);
  for (;;) {
    size_t save = p->i;
    skip(p, true); /* an alternative may continue on the next line */
    if (!ok(p) || peek(p) != '|') {
      p->i = save;
      return;
    }
    p->i++;
    qiao__gb_alt(p->b, rule);
    parse_seq(p, rule, depth);
  }
}

qiao_status *qiao_grammar_compile_gbnf(const char *text, size_t len, const char *root,
                                       qiao_grammar **out) {
  return qiao_grammar_compile_gbnf_with_schemas(text, len, root, NULL, 0, out);
}

qiao_status *qiao_grammar_compile_gbnf_with_schemas(const char *text, size_t len, const char *root,
                                                    const qiao_grammar_schema_rule *rules,
                                                    size_t n_rules, qiao_grammar **out) {
  if (text == NULL || out == NULL || (rules == NULL && n_rules > 0))
    return qiao__error(QIAO_INVALID_ARGUMENT, "grammar: NULL text, rules or output");
  if (len > QIAO_GRAMMAR_MAX_TEXT)
    return qiao__error(QIAO_LIMIT, "grammar: %zu bytes is more than %u", len,
                       QIAO_GRAMMAR_MAX_TEXT);
  if (root == NULL) root = "root";
  qiao__gbuilder b;
  qiao__gb_init(&b);
  parser p = {.b = &b, .s = text, .n = len};
  /* Schema rules first: each is a named rule whose body refers to the
   * schema's top rule. */
  for (size_t k = 0; k < n_rules && ok(&p); k++) {
    const char *name = rules[k].name;
    size_t nl = name ? strlen(name) : 0;
    bool valid = nl > 0;
    for (size_t c = 0; c < nl; c++)
      valid = valid && is_name_char((unsigned char)name[c]);
    if (!valid || rules[k].schema == NULL) {
      qiao__gb_fail(&b, qiao__error(QIAO_INVALID_ARGUMENT,
                                    "grammar: schema rule %zu has a bad "
                                    "name or no schema",
                                    k));
      break;
    }
    uint32_t r = rule_of(&p, name, nl, true);
    uint32_t top = qiao__schema_build(&b, rules[k].schema, rules[k].schema_len);
    if (b.err != NULL) {
      qiao_status *st = b.err;
      b.err = qiao__annotate(st, "rule '%s'", name);
      break;
    }
    qiao__gb_ref(&b, r, top);
  }
  for (;;) {
    skip(&p, true);
    if (!ok(&p) || p.i >= p.n) break;
    size_t start = p.i;
    while (is_name_char(peek(&p)))
      p.i++;
    if (p.i == start) {
      fail(&p, QIAO_MALFORMED, "expected a rule name");
      break;
    }
    uint32_t r = rule_of(&p, text + start, p.i - start, true);
    skip(&p, false);
    if (p.i + 3 > p.n || memcmp(text + p.i, "::=", 3) != 0) {
      fail(&p, QIAO_MALFORMED, "expected '::='");
      break;
    }
    p.i += 3;
    parse_alts(&p, r, 0);
    skip(&p, false);
    if (ok(&p) && p.i < p.n && p.s[p.i] != '\n' && p.s[p.i] != '\r')
      fail(&p, QIAO_MALFORMED, "unexpected character");
  }
  uint32_t root_id = QIAO__G_NONE;
  if (ok(&p)) {
    for (size_t k = 0; k < p.n_names; k++)
      if (strcmp(b.rules[p.names[k]].name, root) == 0) root_id = p.names[k];
    if (root_id == QIAO__G_NONE || !b.rules[root_id].defined)
      qiao__gb_fail(&b, qiao__error(QIAO_MALFORMED, "grammar: no rule '%s'", root));
  }
  free(p.names);
  return qiao__gb_finish(&b, root_id, out);
}
