/* The parser: tokens -> AST, by recursive descent with jinja2's operator
 * precedence (lowest first): `a if c else b`, or, and, not, comparisons
 * (== != < > <= >= in, not in), + -, ~, * / // %, **, unary - +, then
 * primaries with postfix .attr [key] (call), filters `|f` and tests `is t`.
 * Errors jump out with a status naming the line. */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include "template_internal.h"

enum { MAX_PARSE_DEPTH = 200 }; /* nested expressions and blocks */

typedef struct parser {
  tpl_arena *a;
  const tpl_token *toks;
  size_t n, pos;
  int depth;
  jmp_buf jump;
  qiao_status *err;
  /* jinja2 reports an unknown filter or test when compiling, except inside
   * {% if %} statements and `a if b else c` expressions ("soft" frames),
   * where it fails only if evaluated. Unknown names outside them are
   * counted here and fail the compile at the end. */
  bool soft;
  int n_unknown, unknown_line;
  const char *unknown_name, *unknown_what;
} parser;

static _Noreturn void perr(parser *p, qiao_code code, const char *fmt, ...) QIAO__PRINTF(3, 4);
#include <stdarg.h>
static _Noreturn void perr(parser *p, qiao_code code, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  int line = p->toks[p->pos < p->n ? p->pos : p->n - 1].line;
  p->err = qiao__error(code, "template line %d: %s", line, msg);
  longjmp(p->jump, 1);
}

static const tpl_token *cur(parser *p) {
  return &p->toks[p->pos];
}
static const tpl_token *peek(parser *p, size_t k) {
  return &p->toks[p->pos + k < p->n ? p->pos + k : p->n - 1];
}
static void advance(parser *p) {
  if (p->pos + 1 < p->n) p->pos++;
}
static bool tok_is(const tpl_token *t, tpl_tok_kind kind, const char *text) {
  if (t->kind != kind) return false;
  if (text == NULL) return true;
  return t->len == strlen(text) && memcmp(t->text, text, t->len) == 0;
}
static bool is_op(parser *p, const char *op) {
  return tok_is(cur(p), T_OP, op);
}
static bool is_name(parser *p, const char *name) {
  return tok_is(cur(p), T_NAME, name);
}
static bool skip_op(parser *p, const char *op) {
  if (!is_op(p, op)) return false;
  advance(p);
  return true;
}
static bool skip_name(parser *p, const char *name) {
  if (!is_name(p, name)) return false;
  advance(p);
  return true;
}
static const char *describe(parser *p) {
  static _Thread_local char buf[64];
  const tpl_token *t = cur(p);
  switch (t->kind) {
  case T_EOF: return "end of template";
  case T_BLOCK_END: return "'%}'";
  case T_VAR_END: return "'}}'";
  case T_DATA: return "text";
  default: snprintf(buf, sizeof(buf), "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->text);
  }
  return buf;
}
static void expect_op(parser *p, const char *op) {
  if (!skip_op(p, op)) perr(p, QIAO_MALFORMED, "expected '%s', found %s", op, describe(p));
}
static const char *expect_name(parser *p) {
  if (cur(p)->kind != T_NAME) perr(p, QIAO_MALFORMED, "expected a name, found %s", describe(p));
  const char *s = tpl_strdup(p->a, cur(p)->text, cur(p)->len);
  advance(p);
  return s;
}
static void expect_block_end(parser *p) {
  if (cur(p)->kind != T_BLOCK_END) perr(p, QIAO_MALFORMED, "expected '%%}', found %s", describe(p));
  advance(p);
}

static tpl_node *new_node(parser *p, tpl_node_kind kind) {
  tpl_node *n = tpl_alloc(p->a, sizeof(*n));
  n->kind = kind;
  n->line = cur(p)->line;
  return n;
}
static void nodes_push(parser *p, tpl_nodes *l, tpl_node *n) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    tpl_node **items = tpl_alloc(p->a, cap * sizeof(*items));
    if (l->n) memcpy(items, l->items, l->n * sizeof(*items));
    l->items = items;
    l->cap = cap;
  }
  l->items[l->n++] = n;
}
static void names_push(parser *p, tpl_names *l, const char *s) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    const char **items = tpl_alloc(p->a, cap * sizeof(*items));
    if (l->n) memcpy(items, l->items, l->n * sizeof(*items));
    l->items = items;
    l->cap = cap;
  }
  l->items[l->n++] = s;
}

static void enter(parser *p) {
  if (++p->depth > MAX_PARSE_DEPTH)
    perr(p, QIAO_LIMIT, "nesting depth budget exceeded (more than %d levels)", MAX_PARSE_DEPTH);
}
static void leave(parser *p) {
  p->depth--;
}

static tpl_node *parse_expression(parser *p, bool with_cond);

/* An unknown filter or test: evaluating it fails (op = 1); outside soft
 * frames the compile fails too. */
static void note_unknown(parser *p, tpl_node *n, const char *what) {
  n->op = 1;
  n->s2 = what;
  if (p->soft) return;
  if (p->n_unknown++ == 0) {
    p->unknown_name = n->s;
    p->unknown_what = what;
    p->unknown_line = n->line;
  }
}
static tpl_node *parse_unary(parser *p, bool with_filter);
static tpl_node *parse_primary(parser *p);
static tpl_node *parse_postfix(parser *p, tpl_node *node);

/* (args...) after a callee, filter or test; positional and name=value. */
static void parse_call_args(parser *p, tpl_node *n) {
  expect_op(p, "(");
  while (!is_op(p, ")")) {
    if (n->list.n + n->list2.n > 0) {
      expect_op(p, ",");
      if (is_op(p, ")")) break;
    }
    if (is_op(p, "*") || is_op(p, "**"))
      perr(p, QIAO_UNSUPPORTED, "*args and **kwargs in calls are not supported");
    if (cur(p)->kind == T_NAME && tok_is(peek(p, 1), T_OP, "=")) {
      names_push(p, &n->names, expect_name(p));
      advance(p); /* = */
      nodes_push(p, &n->list2, parse_expression(p, true));
    } else {
      if (n->list2.n) perr(p, QIAO_MALFORMED, "positional argument after a keyword argument");
      nodes_push(p, &n->list, parse_expression(p, true));
    }
  }
  advance(p); /* ) */
}

static tpl_node *parse_filter(parser *p, tpl_node *operand) {
  tpl_node *n = new_node(p, N_FILTER);
  n->a = operand;
  n->s = expect_name(p);
  while (is_op(p, ".")) { /* dotted filter names are looked up as one */
    advance(p);
    const char *more = expect_name(p);
    size_t l1 = strlen(n->s), l2 = strlen(more);
    char *joined = tpl_alloc(p->a, l1 + l2 + 2);
    memcpy(joined, n->s, l1);
    joined[l1] = '.';
    memcpy(joined + l1 + 1, more, l2);
    n->s = joined;
  }
  if (!tpl_known_filter(n->s)) note_unknown(p, n, "filter");
  if (is_op(p, "(")) parse_call_args(p, n);
  return n;
}

static tpl_node *parse_test(parser *p, tpl_node *operand) {
  bool negate = skip_name(p, "not");
  tpl_node *n = new_node(p, N_TEST);
  n->a = operand;
  n->s = expect_name(p);
  if (!tpl_known_test(n->s)) note_unknown(p, n, "test");
  const tpl_token *t = cur(p);
  if (is_op(p, "(")) {
    parse_call_args(p, n);
  } else if ((t->kind == T_NAME || t->kind == T_STRING || t->kind == T_INT || t->kind == T_FLOAT ||
              is_op(p, "[") || is_op(p, "{")) &&
             !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and")) {
    /* `x is divisibleby 3`: one argument without parentheses */
    tpl_node *arg = parse_postfix(p, parse_primary(p));
    nodes_push(p, &n->list, arg);
  }
  if (negate) {
    tpl_node *nn = new_node(p, N_NOT);
    nn->a = n;
    return nn;
  }
  return n;
}

static tpl_node *parse_subscript(parser *p, tpl_node *obj) {
  /* after '[' */
  tpl_node *parts[3] = {NULL, NULL, NULL};
  int k = 0;
  bool slice = false;
  for (;;) {
    if (is_op(p, "]")) break;
    if (is_op(p, ":")) {
      slice = true;
      advance(p);
      if (++k > 2) perr(p, QIAO_MALFORMED, "too many ':' in a slice");
      continue;
    }
    if (parts[k]) perr(p, QIAO_MALFORMED, "expected ':' or ']', found %s", describe(p));
    parts[k] = parse_expression(p, true);
  }
  advance(p); /* ] */
  tpl_node *n;
  if (slice) {
    n = new_node(p, N_SLICE);
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
  } else {
    if (!parts[0]) perr(p, QIAO_MALFORMED, "empty subscript");
    n = new_node(p, N_GETITEM);
    n->b = parts[0];
  }
  n->a = obj;
  return n;
}

static tpl_node *parse_postfix(parser *p, tpl_node *node) {
  for (;;) {
    if (is_op(p, ".")) {
      advance(p);
      if (cur(p)->kind == T_INT) { /* x.0 is x[0] */
        tpl_node *n = new_node(p, N_GETITEM);
        n->a = node;
        n->b = new_node(p, N_CONST);
        n->b->v = tpl_int(cur(p)->i);
        advance(p);
        node = n;
      } else {
        tpl_node *n = new_node(p, N_GETATTR);
        n->a = node;
        n->s = expect_name(p);
        node = n;
      }
    } else if (is_op(p, "[")) {
      advance(p);
      node = parse_subscript(p, node);
    } else if (is_op(p, "(")) {
      tpl_node *n = new_node(p, N_CALL);
      n->a = node;
      parse_call_args(p, n);
      node = n;
    } else {
      return node;
    }
  }
}

static tpl_node *parse_filter_expr(parser *p, tpl_node *node) {
  for (;;) {
    if (is_op(p, "|")) {
      advance(p);
      node = parse_filter(p, node);
    } else if (is_name(p, "is")) {
      advance(p);
      node = parse_test(p, node);
    } else if (is_op(p, "(")) {
      tpl_node *n = new_node(p, N_CALL);
      n->a = node;
      parse_call_args(p, n);
      node = n;
    } else {
      return node;
    }
  }
}

static tpl_node *parse_primary(parser *p) {
  const tpl_token *t = cur(p);
  tpl_node *n;
  if (t->kind == T_NAME) {
    n = new_node(p, N_CONST);
    if (tok_is(t, T_NAME, "true") || tok_is(t, T_NAME, "True")) {
      n->v = tpl_bool(true);
    } else if (tok_is(t, T_NAME, "false") || tok_is(t, T_NAME, "False")) {
      n->v = tpl_bool(false);
    } else if (tok_is(t, T_NAME, "none") || tok_is(t, T_NAME, "None")) {
      n->v = tpl_none();
    } else {
      n->kind = N_NAME;
      n->s = tpl_strdup(p->a, t->text, t->len);
    }
    advance(p);
  } else if (t->kind == T_STRING) {
    /* adjacent string literals are joined */
    size_t total = 0, k = p->pos;
    while (p->toks[k].kind == T_STRING)
      total += p->toks[k++].len;
    char *s = tpl_alloc(p->a, total + 1);
    size_t off = 0;
    n = new_node(p, N_CONST);
    while (cur(p)->kind == T_STRING) {
      memcpy(s + off, cur(p)->text, cur(p)->len);
      off += cur(p)->len;
      advance(p);
    }
    n->v = tpl_str(s, total);
  } else if (t->kind == T_INT) {
    n = new_node(p, N_CONST);
    n->v = tpl_int(t->i);
    advance(p);
  } else if (t->kind == T_FLOAT) {
    n = new_node(p, N_CONST);
    n->v = tpl_float(t->f);
    advance(p);
  } else if (is_op(p, "(")) {
    advance(p);
    if (is_op(p, ")")) {
      n = new_node(p, N_LIST);
      n->op = 1; /* empty tuple */
    } else {
      n = parse_expression(p, true);
      if (is_op(p, ",")) {
        tpl_node *tuple = new_node(p, N_LIST);
        tuple->op = 1;
        nodes_push(p, &tuple->list, n);
        while (skip_op(p, ",")) {
          if (is_op(p, ")")) break;
          nodes_push(p, &tuple->list, parse_expression(p, true));
        }
        n = tuple;
      }
    }
    expect_op(p, ")");
  } else if (is_op(p, "[")) {
    advance(p);
    n = new_node(p, N_LIST);
    while (!is_op(p, "]")) {
      if (n->list.n) {
        expect_op(p, ",");
        if (is_op(p, "]")) break;
      }
      nodes_push(p, &n->list, parse_expression(p, true));
    }
    advance(p);
  } else if (is_op(p, "{")) {
    advance(p);
    n = new_node(p, N_DICT);
    while (!is_op(p, "}")) {
      if (n->list.n) {
        expect_op(p, ",");
        if (is_op(p, "}")) break;
      }
      nodes_push(p, &n->list, parse_expression(p, true));
      expect_op(p, ":");
      nodes_push(p, &n->list2, parse_expression(p, true));
    }
    advance(p);
  } else {
    perr(p, QIAO_MALFORMED, "unexpected %s in an expression", describe(p));
  }
  return n;
}

static tpl_node *parse_unary(parser *p, bool with_filter) {
  tpl_node *n;
  if (is_op(p, "-") || is_op(p, "+")) {
    enter(p);
    n = new_node(p, is_op(p, "-") ? N_NEG : N_POS);
    advance(p);
    n->a = parse_unary(p, false);
    leave(p);
  } else {
    n = parse_primary(p);
  }
  n = parse_postfix(p, n);
  if (with_filter) n = parse_filter_expr(p, n);
  return n;
}

static tpl_node *binop(parser *p, int op, tpl_node *a, tpl_node *b) {
  tpl_node *n = new_node(p, N_BINOP);
  n->op = op;
  n->a = a;
  n->b = b;
  return n;
}

static tpl_node *parse_pow(parser *p) {
  tpl_node *n = parse_unary(p, true);
  while (skip_op(p, "**"))
    n = binop(p, OP_POW, n, parse_unary(p, true));
  return n;
}
static tpl_node *parse_math2(parser *p) {
  tpl_node *n = parse_pow(p);
  for (;;) {
    int op = is_op(p, "*")    ? OP_MUL
             : is_op(p, "/")  ? OP_DIV
             : is_op(p, "//") ? OP_FLOORDIV
             : is_op(p, "%")  ? OP_MOD
                              : 0;
    if (!op) return n;
    advance(p);
    n = binop(p, op, n, parse_pow(p));
  }
}
static tpl_node *parse_concat(parser *p) {
  tpl_node *first = parse_math2(p);
  if (!is_op(p, "~")) return first;
  tpl_node *n = new_node(p, N_CONCAT);
  nodes_push(p, &n->list, first);
  while (skip_op(p, "~"))
    nodes_push(p, &n->list, parse_math2(p));
  return n;
}
static tpl_node *parse_math1(parser *p) {
  tpl_node *n = parse_concat(p);
  for (;;) {
    int op = is_op(p, "+") ? OP_ADD : is_op(p, "-") ? OP_SUB : 0;
    if (!op) return n;
    advance(p);
    n = binop(p, op, n, parse_concat(p));
  }
}
static tpl_node *parse_compare(parser *p) {
  tpl_node *first = parse_math1(p);
  tpl_node *n = NULL;
  size_t cap = 0;
  for (;;) {
    int op = is_op(p, "==")     ? CMP_EQ
             : is_op(p, "!=")   ? CMP_NE
             : is_op(p, "<")    ? CMP_LT
             : is_op(p, "<=")   ? CMP_LE
             : is_op(p, ">")    ? CMP_GT
             : is_op(p, ">=")   ? CMP_GE
             : is_name(p, "in") ? CMP_IN
                                : 0;
    if (!op && is_name(p, "not") && tok_is(peek(p, 1), T_NAME, "in")) {
      op = CMP_NOTIN;
      advance(p);
    }
    if (!op) break;
    advance(p);
    if (n == NULL) {
      n = new_node(p, N_COMPARE);
      n->a = first;
    }
    if (n->list.n == cap) {
      cap = cap ? cap * 2 : 4;
      int *ops = tpl_alloc(p->a, cap * sizeof(int));
      if (n->list.n) memcpy(ops, n->ops, n->list.n * sizeof(int));
      n->ops = ops;
    }
    n->ops[n->list.n] = op;
    nodes_push(p, &n->list, parse_math1(p));
  }
  return n ? n : first;
}
static tpl_node *parse_not(parser *p) {
  if (is_name(p, "not")) {
    enter(p);
    tpl_node *n = new_node(p, N_NOT);
    advance(p);
    n->a = parse_not(p);
    leave(p);
    return n;
  }
  return parse_compare(p);
}
static tpl_node *parse_and(parser *p) {
  tpl_node *n = parse_not(p);
  while (skip_name(p, "and")) {
    tpl_node *m = new_node(p, N_AND);
    m->a = n;
    m->b = parse_not(p);
    n = m;
  }
  return n;
}
static tpl_node *parse_or(parser *p) {
  tpl_node *n = parse_and(p);
  while (skip_name(p, "or")) {
    tpl_node *m = new_node(p, N_OR);
    m->a = n;
    m->b = parse_and(p);
    n = m;
  }
  return n;
}

static tpl_node *parse_expression(parser *p, bool with_cond) {
  enter(p);
  int mark = p->n_unknown;
  tpl_node *n = parse_or(p);
  while (with_cond && is_name(p, "if")) {
    advance(p);
    p->n_unknown = mark; /* the whole conditional expression is a soft frame */
    bool soft = p->soft;
    p->soft = true;
    tpl_node *c = new_node(p, N_COND);
    c->b = n;
    c->a = parse_or(p);
    if (skip_name(p, "else")) c->c = parse_expression(p, true);
    p->soft = soft;
    n = c;
  }
  leave(p);
  return n;
}

/* `a, b` (a tuple) or one expression; used by {{ }}, set and for. */
static tpl_node *parse_tuple(parser *p, bool with_cond) {
  tpl_node *first = parse_expression(p, with_cond);
  if (!is_op(p, ",")) return first;
  tpl_node *t = new_node(p, N_LIST);
  t->op = 1;
  nodes_push(p, &t->list, first);
  while (skip_op(p, ",")) {
    if (cur(p)->kind == T_BLOCK_END || cur(p)->kind == T_VAR_END || is_name(p, "in")) break;
    nodes_push(p, &t->list, parse_expression(p, with_cond));
  }
  return t;
}

/* ---- statements ---------------------------------------------------------- */

static tpl_node *parse_body(parser *p, const char *const *ends, const char **which, int open_line);

/* for, macro, with and block bodies are not soft frames */
static tpl_node *parse_hard_body(parser *p, const char *const *ends, const char **which,
                                 int open_line) {
  bool soft = p->soft;
  p->soft = false;
  tpl_node *n = parse_body(p, ends, which, open_line);
  p->soft = soft;
  return n;
}

static bool name_in(const tpl_token *t, const char *const *names) {
  for (; names && *names; names++)
    if (tok_is(t, T_NAME, *names)) return true;
  return false;
}

/* Names separated by commas, optionally in parentheses (for/set targets). */
static void parse_targets(parser *p, tpl_names *out) {
  bool paren = skip_op(p, "(");
  do {
    if (is_op(p, "(")) perr(p, QIAO_UNSUPPORTED, "nested unpacking targets are not supported");
    names_push(p, out, expect_name(p));
  } while (skip_op(p, ","));
  if (paren) expect_op(p, ")");
}

static tpl_node *parse_if_soft(parser *p);
static tpl_node *parse_if(parser *p) {
  bool soft = p->soft;
  p->soft = true;
  tpl_node *n = parse_if_soft(p);
  p->soft = soft;
  return n;
}

static tpl_node *parse_if_soft(parser *p) {
  tpl_node *n = new_node(p, N_IF);
  n->a = parse_tuple(p, true);
  expect_block_end(p);
  static const char *const ends[] = {"elif", "else", "endif", NULL};
  const char *which;
  n->b = parse_body(p, ends, &which, n->line);
  if (strcmp(which, "elif") == 0) {
    advance(p);
    tpl_node *body = new_node(p, N_BODY);
    nodes_push(p, &body->list, parse_if_soft(p));
    n->c = body;
    return n; /* the nested if consumed endif */
  }
  if (strcmp(which, "else") == 0) {
    advance(p);
    expect_block_end(p);
    static const char *const ends2[] = {"endif", NULL};
    n->c = parse_body(p, ends2, &which, n->line);
  }
  advance(p); /* endif */
  expect_block_end(p);
  return n;
}

static tpl_node *parse_for(parser *p) {
  tpl_node *n = new_node(p, N_FOR);
  parse_targets(p, &n->names);
  if (!skip_name(p, "in")) perr(p, QIAO_MALFORMED, "expected 'in', found %s", describe(p));
  n->a = parse_tuple(p, false);
  if (skip_name(p, "if")) n->d = parse_expression(p, true);
  if (skip_name(p, "recursive")) perr(p, QIAO_UNSUPPORTED, "recursive for loops are not supported");
  expect_block_end(p);
  static const char *const ends[] = {"else", "endfor", NULL};
  const char *which;
  n->b = parse_hard_body(p, ends, &which, n->line);
  if (strcmp(which, "else") == 0) {
    advance(p);
    expect_block_end(p);
    static const char *const ends2[] = {"endfor", NULL};
    n->c = parse_hard_body(p, ends2, &which, n->line);
  }
  advance(p);
  expect_block_end(p);
  return n;
}

static void parse_filter_chain(parser *p, tpl_nodes *out) {
  do {
    nodes_push(p, out, parse_filter(p, NULL));
  } while (skip_op(p, "|"));
}

static tpl_node *parse_set(parser *p) {
  tpl_node *n;
  if (cur(p)->kind == T_NAME && tok_is(peek(p, 1), T_OP, ".")) {
    n = new_node(p, N_SET_ATTR);
    n->s = expect_name(p);
    advance(p);
    n->s2 = expect_name(p);
    expect_op(p, "=");
    n->a = parse_tuple(p, true);
    expect_block_end(p);
    return n;
  }
  n = new_node(p, N_SET);
  parse_targets(p, &n->names);
  if (skip_op(p, "=")) {
    n->a = parse_tuple(p, true);
    expect_block_end(p);
    return n;
  }
  /* {% set x %}...{% endset %} */
  if (n->names.n != 1) perr(p, QIAO_MALFORMED, "a block set takes one name");
  n->kind = N_SET_BLOCK;
  if (skip_op(p, "|")) parse_filter_chain(p, &n->list);
  expect_block_end(p);
  static const char *const ends[] = {"endset", NULL};
  const char *which;
  n->b = parse_hard_body(p, ends, &which, n->line);
  advance(p);
  expect_block_end(p);
  return n;
}

static tpl_node *parse_macro(parser *p) {
  tpl_node *n = new_node(p, N_MACRO);
  n->s = expect_name(p);
  expect_op(p, "(");
  while (!is_op(p, ")")) {
    if (n->names.n) {
      expect_op(p, ",");
      if (is_op(p, ")")) break;
    }
    names_push(p, &n->names, expect_name(p));
    nodes_push(p, &n->list, skip_op(p, "=") ? parse_expression(p, true) : NULL);
  }
  advance(p);
  expect_block_end(p);
  static const char *const ends[] = {"endmacro", NULL};
  const char *which;
  n->b = parse_hard_body(p, ends, &which, n->line);
  advance(p);
  if (cur(p)->kind == T_NAME) advance(p); /* {% endmacro name %} */
  expect_block_end(p);
  return n;
}

static tpl_node *parse_statement(parser *p) {
  const tpl_token *t = cur(p);
  if (t->kind != T_NAME) perr(p, QIAO_MALFORMED, "expected a tag name, found %s", describe(p));
  enter(p);
  tpl_node *n = NULL;
  const char *which;
  if (skip_name(p, "if")) {
    n = parse_if(p);
  } else if (skip_name(p, "for")) {
    n = parse_for(p);
  } else if (skip_name(p, "set")) {
    n = parse_set(p);
  } else if (skip_name(p, "macro")) {
    n = parse_macro(p);
  } else if (is_name(p, "break") || is_name(p, "continue")) {
    n = new_node(p, is_name(p, "break") ? N_BREAK : N_CONTINUE);
    advance(p);
    expect_block_end(p);
  } else if (skip_name(p, "generation")) {
    /* transformers' assistant-mask marker: renders its body unchanged */
    expect_block_end(p);
    static const char *const ends[] = {"endgeneration", NULL};
    n = parse_body(p, ends, &which, t->line);
    advance(p);
    expect_block_end(p);
  } else if (skip_name(p, "filter")) {
    n = new_node(p, N_FILTER_BLOCK);
    parse_filter_chain(p, &n->list);
    expect_block_end(p);
    static const char *const ends[] = {"endfilter", NULL};
    n->b = parse_hard_body(p, ends, &which, n->line);
    advance(p);
    expect_block_end(p);
  } else if (skip_name(p, "with")) {
    n = new_node(p, N_WITH);
    while (cur(p)->kind != T_BLOCK_END) {
      if (n->names.n) expect_op(p, ",");
      names_push(p, &n->names, expect_name(p));
      expect_op(p, "=");
      nodes_push(p, &n->list, parse_expression(p, true));
    }
    expect_block_end(p);
    static const char *const ends[] = {"endwith", NULL};
    n->b = parse_hard_body(p, ends, &which, n->line);
    advance(p);
    expect_block_end(p);
  } else {
    static const char *const unsupported[] = {"call",  "include", "import",     "from",  "extends",
                                              "block", "do",      "autoescape", "trans", NULL};
    if (name_in(t, unsupported))
      perr(p, QIAO_UNSUPPORTED, "the '%.*s' tag is not supported", (int)t->len, t->text);
    perr(p, QIAO_MALFORMED, "unknown tag '%.*s'", (int)(t->len > 40 ? 40 : t->len), t->text);
  }
  leave(p);
  return n;
}

/* Statements until a {% name %} with a name in `ends` (left current, its
 * name in *which) or, when ends is NULL, the end of the template. */
static tpl_node *parse_body(parser *p, const char *const *ends, const char **which, int open_line) {
  tpl_node *body = new_node(p, N_BODY);
  for (;;) {
    const tpl_token *t = cur(p);
    if (t->kind == T_EOF) {
      if (ends == NULL) return body;
      const char *const *e = ends;
      while (e[1])
        e++; /* the last one is the end tag */
      p->err = qiao__error(QIAO_MALFORMED,
                           "template line %d: unexpected end of template: missing {%% %s %%}",
                           open_line, *e);
      longjmp(p->jump, 1);
    }
    if (t->kind == T_DATA) {
      tpl_node *n = new_node(p, N_TEXT);
      n->s = t->text;
      n->slen = t->len;
      nodes_push(p, &body->list, n);
      advance(p);
    } else if (t->kind == T_VAR_BEGIN) {
      advance(p);
      tpl_node *n = new_node(p, N_OUTPUT);
      n->a = parse_tuple(p, true);
      if (cur(p)->kind != T_VAR_END)
        perr(p, QIAO_MALFORMED, "expected '}}', found %s", describe(p));
      advance(p);
      nodes_push(p, &body->list, n);
    } else if (t->kind == T_BLOCK_BEGIN) {
      advance(p);
      if (name_in(cur(p), ends)) {
        *which = ends[0]; /* found below */
        for (const char *const *e = ends; *e; e++)
          if (tok_is(cur(p), T_NAME, *e)) *which = *e;
        return body;
      }
      nodes_push(p, &body->list, parse_statement(p));
    } else {
      perr(p, QIAO_MALFORMED, "unexpected %s", describe(p));
    }
  }
}

qiao_status *tpl_parse(tpl_arena *a, const tpl_tokens *toks, tpl_node **root) {
  parser p = {.a = a, .toks = toks->items, .n = toks->n};
  if (setjmp(p.jump)) return p.err;
  tpl_node *r = parse_body(&p, NULL, NULL, 1);
  if (p.n_unknown)
    return qiao__error(QIAO_MALFORMED, "template line %d: no %s named '%s'", p.unknown_line,
                       p.unknown_what, p.unknown_name);
  *root = r;
  return NULL;
}
