/* The evaluator: walks the AST with a chain of frames (variables). Scoping
 * follows jinja2: `for` bodies and macros get their own frame (a `set`
 * inside a loop does not leak out; namespace() objects exist for that),
 * `if` bodies share the enclosing one. Every node costs a step; nesting
 * costs depth; both are budgeted. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/checked.h"
#include "template_internal.h"

typedef enum { FLOW_NORMAL, FLOW_BREAK, FLOW_CONTINUE } flow;

static tpl_value eval(tpl_ctx *ctx, tpl_frame *f, const tpl_node *n);
static flow exec_body(tpl_ctx *ctx, tpl_frame *f, const tpl_node *body);

_Noreturn void tpl_fail(tpl_ctx *ctx, qiao_code code, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  ctx->error = qiao__error(code, "template line %d: %s", ctx->line, msg);
  longjmp(ctx->fail, 1);
}

void tpl_charge(tpl_ctx *ctx, uint64_t steps) {
  ctx->steps += steps;
  if (ctx->steps > ctx->max_steps)
    tpl_fail(ctx, QIAO_LIMIT, "step budget exceeded (more than %llu evaluation steps)",
             (unsigned long long)ctx->max_steps);
}

static void enter(tpl_ctx *ctx) {
  if (++ctx->depth > ctx->max_depth)
    tpl_fail(ctx, QIAO_LIMIT, "depth budget exceeded (more than %u nested evaluations)",
             ctx->max_depth);
}
static void leave(tpl_ctx *ctx) {
  ctx->depth--;
}

_Noreturn void tpl_undefined_error(tpl_ctx *ctx, const tpl_value *v) {
  if (v->undef_name) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%s", v->undef_name);
  tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "a value is undefined");
}

static tpl_frame *new_frame(tpl_ctx *ctx, tpl_frame *parent) {
  tpl_frame *f = tpl_alloc(&ctx->arena, sizeof(*f));
  f->parent = parent;
  return f;
}

static void frame_set(tpl_ctx *ctx, tpl_frame *f, const char *name, tpl_value v) {
  tpl_value *slot = tpl_dict_get_str(&f->vars, name, strlen(name));
  if (slot)
    *slot = v;
  else
    tpl_dict_set(ctx, &f->vars, tpl_cstr(name), v);
}

static tpl_value lookup(tpl_ctx *ctx, tpl_frame *f, const char *name) {
  size_t len = strlen(name);
  for (; f; f = f->parent) {
    tpl_value *v = tpl_dict_get_str(&f->vars, name, len);
    if (v) return *v;
  }
  int func = tpl_global_func(name);
  if (func) return (tpl_value){.kind = V_FUNC, .u.func = func};
  char *desc = tpl_alloc(&ctx->arena, len + 20);
  snprintf(desc, len + 20, "'%s' is undefined", name);
  return tpl_undef(desc);
}

/* ---- calls ----------------------------------------------------------------- */

static void eval_args(tpl_ctx *ctx, tpl_frame *f, const tpl_node *n, tpl_args *args) {
  args->n_pos = n->list.n;
  args->pos = n->list.n ? tpl_alloc(&ctx->arena, n->list.n * sizeof(tpl_value)) : NULL;
  for (size_t i = 0; i < n->list.n; i++)
    args->pos[i] = eval(ctx, f, n->list.items[i]);
  args->n_kw = n->list2.n;
  args->kw = n->list2.n ? tpl_alloc(&ctx->arena, n->list2.n * sizeof(tpl_value)) : NULL;
  args->kw_names = n->names.items;
  for (size_t i = 0; i < n->list2.n; i++)
    args->kw[i] = eval(ctx, f, n->list2.items[i]);
}

tpl_value tpl_call_macro(tpl_ctx *ctx, const tpl_node *m, tpl_args *args) {
  enter(ctx);
  int saved_line = ctx->line;
  tpl_frame *mf = new_frame(ctx, ctx->top);
  size_t np = m->names.n;
  tpl_value varargs = tpl_new_list(ctx, 0), kwargs = tpl_new_dict(ctx, 0);
  varargs.u.list->tuple = true;
  for (size_t i = 0; i < args->n_pos; i++) {
    if (i < np)
      frame_set(ctx, mf, m->names.items[i], args->pos[i]);
    else
      tpl_list_push(ctx, varargs.u.list, args->pos[i]);
  }
  for (size_t k = 0; k < args->n_kw; k++) {
    size_t i;
    for (i = 0; i < np; i++)
      if (strcmp(m->names.items[i], args->kw_names[k]) == 0) break;
    if (i < np) {
      if (i < args->n_pos)
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "macro '%s' got multiple values for argument '%s'",
                 m->s, args->kw_names[k]);
      frame_set(ctx, mf, m->names.items[i], args->kw[k]);
    } else {
      tpl_dict_set(ctx, kwargs.u.dict, tpl_cstr(args->kw_names[k]), args->kw[k]);
    }
  }
  for (size_t i = 0; i < np; i++) {
    if (tpl_dict_get_str(&mf->vars, m->names.items[i], strlen(m->names.items[i]))) continue;
    tpl_value dv = m->list.items[i] ? eval(ctx, mf, m->list.items[i]) : tpl_undef(NULL);
    if (dv.kind == V_UNDEF && !dv.undef_name) {
      size_t len = strlen(m->names.items[i]) + 20;
      char *desc = tpl_alloc(&ctx->arena, len);
      snprintf(desc, len, "'%s' is undefined", m->names.items[i]);
      dv.undef_name = desc;
    }
    frame_set(ctx, mf, m->names.items[i], dv);
  }
  frame_set(ctx, mf, "varargs", varargs);
  frame_set(ctx, mf, "kwargs", kwargs);
  tpl_buf *saved = ctx->out;
  tpl_buf buf = {0};
  ctx->out = &buf;
  exec_body(ctx, mf, m->b);
  ctx->out = saved;
  ctx->line = saved_line;
  leave(ctx);
  return tpl_str(buf.data ? buf.data : "", buf.len);
}

static tpl_value call_value(tpl_ctx *ctx, tpl_value *callee, tpl_args *args) {
  switch (callee->kind) {
  case V_MACRO: return tpl_call_macro(ctx, callee->u.macro, args);
  case V_FUNC: return tpl_call_func(ctx, callee->u.func, args);
  case V_METHOD: return tpl_call_method(ctx, callee->u.m.self, callee->u.m.name, args);
  case V_UNDEF: tpl_undefined_error(ctx, callee);
  default:
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "'%s' object is not callable", tpl_type_name(callee));
  }
}

/* ---- operators ------------------------------------------------------------- */

static bool is_num(const tpl_value *v) {
  return v->kind == V_INT || v->kind == V_FLOAT || v->kind == V_BOOL;
}
static double num_f(const tpl_value *v) {
  return v->kind == V_FLOAT ? v->u.f : v->kind == V_INT ? (double)v->u.i : (double)v->u.b;
}
static int64_t num_i(const tpl_value *v) {
  return v->kind == V_INT ? v->u.i : (int64_t)v->u.b;
}

static tpl_value repeat(tpl_ctx *ctx, tpl_value *seq, int64_t times) {
  /* an empty sequence stays empty however often it repeats (and must not
   * loop `times` times) */
  size_t n = seq->kind == V_STR ? seq->u.s.len : seq->u.list->n;
  if (times <= 0 || n == 0) {
    if (seq->kind == V_STR) return tpl_str("", 0);
    tpl_value out = tpl_new_list(ctx, 0);
    out.u.list->tuple = seq->u.list->tuple;
    return out;
  }
  if (seq->kind == V_STR) {
    uint64_t total;
    if (!qiao__mul_u64(seq->u.s.len, (uint64_t)times, &total) || total > ctx->max_output)
      tpl_fail(ctx, QIAO_LIMIT, "output budget exceeded by a repeated string");
    char *p = tpl_alloc(&ctx->arena, (size_t)total + 1);
    for (int64_t i = 0; i < times; i++)
      memcpy(p + (size_t)i * seq->u.s.len, seq->u.s.p, seq->u.s.len);
    tpl_charge(ctx, total / 64);
    return tpl_str(p, (size_t)total);
  }
  uint64_t total;
  if (!qiao__mul_u64(seq->u.list->n, (uint64_t)times, &total) || total > (1u << 24))
    tpl_fail(ctx, QIAO_LIMIT, "memory budget exceeded by a repeated list");
  tpl_value out = tpl_new_list(ctx, (size_t)total);
  for (int64_t i = 0; i < times; i++)
    for (size_t k = 0; k < seq->u.list->n; k++)
      tpl_list_push(ctx, out.u.list, seq->u.list->items[k]);
  out.u.list->tuple = seq->u.list->tuple;
  return out;
}

static _Noreturn void bad_operands(tpl_ctx *ctx, const char *op, tpl_value *a, tpl_value *b) {
  tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "unsupported operand type(s) for %s: '%s' and '%s'", op,
           tpl_type_name(a), tpl_type_name(b));
}

tpl_value tpl_binop(tpl_ctx *ctx, int op, tpl_value *a, tpl_value *b) {
  static const char *names[] = {"", "+", "-", "*", "/", "//", "%", "**"};
  if (a->kind == V_UNDEF) tpl_undefined_error(ctx, a);
  if (b->kind == V_UNDEF) tpl_undefined_error(ctx, b);
  if (op == OP_ADD) {
    if (a->kind == V_STR && b->kind == V_STR) {
      size_t n = a->u.s.len + b->u.s.len;
      if (n > ctx->max_output) tpl_fail(ctx, QIAO_LIMIT, "output budget exceeded by a string");
      char *p = tpl_alloc(&ctx->arena, n + 1);
      memcpy(p, a->u.s.p, a->u.s.len);
      memcpy(p + a->u.s.len, b->u.s.p, b->u.s.len);
      tpl_charge(ctx, n / 64);
      return tpl_str(p, n);
    }
    if (a->kind == V_LIST && b->kind == V_LIST && !a->u.list->iterator && !b->u.list->iterator) {
      tpl_value out = tpl_new_list(ctx, a->u.list->n + b->u.list->n);
      for (size_t i = 0; i < a->u.list->n; i++)
        tpl_list_push(ctx, out.u.list, a->u.list->items[i]);
      for (size_t i = 0; i < b->u.list->n; i++)
        tpl_list_push(ctx, out.u.list, b->u.list->items[i]);
      tpl_charge(ctx, out.u.list->n / 16);
      return out;
    }
  }
  if (op == OP_MUL) {
    bool a_seq = a->kind == V_STR || (a->kind == V_LIST && !a->u.list->iterator);
    bool b_seq = b->kind == V_STR || (b->kind == V_LIST && !b->u.list->iterator);
    if (a_seq && (b->kind == V_INT || b->kind == V_BOOL)) return repeat(ctx, a, num_i(b));
    if (b_seq && (a->kind == V_INT || a->kind == V_BOOL)) return repeat(ctx, b, num_i(a));
  }
  if (op == OP_MOD && a->kind == V_STR) return tpl_printf(ctx, a, b, NULL);
  if (!is_num(a) || !is_num(b)) {
    if (op == OP_MOD && a->kind == V_STR) return tpl_printf(ctx, a, b, NULL);
    bad_operands(ctx, names[op], a, b);
  }
  bool floats = a->kind == V_FLOAT || b->kind == V_FLOAT;
  if (!floats) {
    int64_t x = num_i(a), y = num_i(b), r;
    switch (op) {
    case OP_ADD:
      if (__builtin_add_overflow(x, y, &r)) break;
      return tpl_int(r);
    case OP_SUB:
      if (__builtin_sub_overflow(x, y, &r)) break;
      return tpl_int(r);
    case OP_MUL:
      if (__builtin_mul_overflow(x, y, &r)) break;
      return tpl_int(r);
    case OP_DIV:
      if (y == 0) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "division by zero");
      return tpl_float((double)x / (double)y);
    case OP_FLOORDIV:
    case OP_MOD: {
      if (y == 0) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) break;
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) {
        q--;
        m += y;
      }
      return op == OP_FLOORDIV ? tpl_int(q) : tpl_int(m);
    }
    case OP_POW: {
      if (y < 0) return tpl_float(pow((double)x, (double)y));
      int64_t acc = 1, base = x;
      int64_t e = y;
      bool overflow = false;
      while (e > 0 && !overflow) {
        if (e & 1) overflow |= __builtin_mul_overflow(acc, base, &acc);
        e >>= 1;
        if (e) overflow |= __builtin_mul_overflow(base, base, &base);
      }
      if (!overflow) return tpl_int(acc);
      break;
    }
    }
    tpl_fail(ctx, QIAO_UNSUPPORTED,
             "integer overflow in '%s' (Python integers are unbounded; "
             "qiao's are 64-bit)",
             names[op]);
  }
  double x = num_f(a), y = num_f(b);
  switch (op) {
  case OP_ADD: return tpl_float(x + y);
  case OP_SUB: return tpl_float(x - y);
  case OP_MUL: return tpl_float(x * y);
  case OP_DIV:
    if (y == 0) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "float division by zero");
    return tpl_float(x / y);
  case OP_FLOORDIV:
  case OP_MOD: { /* Python's float divmod */
    if (y == 0) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "float modulo by zero");
    double mod = fmod(x, y), div = (x - mod) / y;
    if (mod != 0) {
      if ((y < 0) != (mod < 0)) {
        mod += y;
        div -= 1.0;
      }
    } else {
      mod = copysign(0.0, y);
    }
    if (op == OP_MOD) return tpl_float(mod);
    double fl;
    if (div != 0) {
      fl = floor(div);
      if (div - fl > 0.5) fl += 1.0;
    } else {
      fl = copysign(0.0, x / y);
    }
    return tpl_float(fl);
  }
  case OP_POW: return tpl_float(pow(x, y));
  }
  bad_operands(ctx, names[op], a, b);
}

bool tpl_contains(tpl_ctx *ctx, tpl_value *c, tpl_value *item) {
  switch (c->kind) {
  case V_STR:
    if (item->kind != V_STR)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "'in <string>' requires string as left operand, not %s",
               tpl_type_name(item));
    if (item->u.s.len == 0) return true;
    tpl_charge(ctx, c->u.s.len / 64);
    return memmem(c->u.s.p, c->u.s.len, item->u.s.p, item->u.s.len) != NULL;
  case V_LIST:
    tpl_iterate(ctx, c); /* a failed generator reports here */
    for (size_t i = 0; i < c->u.list->n; i++) {
      tpl_charge(ctx, 1);
      if (tpl_equal(ctx, &c->u.list->items[i], item)) return true;
    }
    return false;
  case V_DICT:
    if ((item->kind == V_LIST && !item->u.list->tuple) || item->kind == V_DICT)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "unhashable type: '%s'", tpl_type_name(item));
    tpl_charge(ctx, c->u.dict->n / 8);
    return tpl_dict_get(c->u.dict, *item) != NULL;
  case V_UNDEF: return false; /* iterating an undefined value yields nothing */
  default:
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "argument of type '%s' is not iterable", tpl_type_name(c));
  }
}

static bool compare(tpl_ctx *ctx, int op, tpl_value *a, tpl_value *b) {
  switch (op) {
  case CMP_EQ: return tpl_equal(ctx, a, b);
  case CMP_NE: return !tpl_equal(ctx, a, b);
  case CMP_LT: return tpl_compare(ctx, a, b) < 0;
  case CMP_LE: return tpl_compare(ctx, a, b) <= 0;
  case CMP_GT: return tpl_compare(ctx, a, b) > 0;
  case CMP_GE: return tpl_compare(ctx, a, b) >= 0;
  case CMP_IN: return tpl_contains(ctx, b, a);
  case CMP_NOTIN: return !tpl_contains(ctx, b, a);
  }
  return false;
}

/* Python slice semantics over n elements. */
static size_t slice_indices(tpl_ctx *ctx, int64_t n, tpl_value *start, tpl_value *stop,
                            tpl_value *step, int64_t *out_start, int64_t *out_step) {
  int64_t st = 1;
  if (step && step->kind != V_NONE) {
    if (step->kind != V_INT) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "slice step must be an integer");
    st = step->u.i;
    if (st == 0) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "slice step cannot be zero");
    if (st == INT64_MIN) st = -INT64_MAX;
  }
  int64_t lo, hi;
  int64_t def_lo = st > 0 ? 0 : n - 1, def_hi = st > 0 ? n : -1;
  lo = def_lo;
  hi = def_hi;
  tpl_value *bounds[2] = {start, stop};
  for (int k = 0; k < 2; k++) {
    tpl_value *b = bounds[k];
    if (!b || b->kind == V_NONE) continue;
    if (b->kind != V_INT && b->kind != V_BOOL)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "slice indices must be integers or None");
    int64_t x = num_i(b);
    if (x < 0) {
      x += n;
      if (x < 0) x = st > 0 ? 0 : -1;
    } else if (x >= n) {
      x = st > 0 ? n : n - 1;
    }
    if (k == 0)
      lo = x;
    else
      hi = x;
  }
  size_t count = 0;
  if (st > 0 && hi > lo) count = (size_t)((hi - lo + st - 1) / st);
  if (st < 0 && lo > hi) count = (size_t)((lo - hi + (-st) - 1) / (-st));
  *out_start = lo;
  *out_step = st;
  return count;
}

static tpl_value eval_slice(tpl_ctx *ctx, tpl_frame *f, const tpl_node *n) {
  tpl_value obj = eval(ctx, f, n->a);
  tpl_value start = n->b ? eval(ctx, f, n->b) : tpl_none();
  tpl_value stop = n->c ? eval(ctx, f, n->c) : tpl_none();
  tpl_value step = n->d ? eval(ctx, f, n->d) : tpl_none();
  int64_t lo, st;
  if (obj.kind == V_LIST && !obj.u.list->iterator) {
    size_t count = slice_indices(ctx, (int64_t)obj.u.list->n, &start, &stop, &step, &lo, &st);
    tpl_value out = tpl_new_list(ctx, count);
    for (size_t i = 0; i < count; i++)
      tpl_list_push(ctx, out.u.list, obj.u.list->items[lo + (int64_t)i * st]);
    out.u.list->tuple = obj.u.list->tuple;
    tpl_charge(ctx, count / 16);
    return out;
  }
  if (obj.kind == V_STR) {
    const char *p = obj.u.s.p;
    size_t len = obj.u.s.len, nchars = tpl_utf8_count(p, len);
    size_t count = slice_indices(ctx, (int64_t)nchars, &start, &stop, &step, &lo, &st);
    tpl_charge(ctx, len / 64);
    if (st == 1) {
      size_t b0 = tpl_utf8_offset(p, len, (size_t)lo);
      size_t b1 = b0 + tpl_utf8_offset(p + b0, len - b0, count);
      return tpl_str(p + b0, b1 - b0);
    }
    /* general step: index the code points first */
    size_t *offs = tpl_alloc(&ctx->arena, (nchars + 1) * sizeof(size_t));
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
      if (((unsigned char)p[i] & 0xC0) != 0x80) offs[k++] = i;
    offs[k] = len;
    tpl_buf b = {0};
    for (size_t i = 0; i < count; i++) {
      size_t c = (size_t)(lo + (int64_t)i * st);
      tpl_buf_append(ctx, &b, p + offs[c], offs[c + 1] - offs[c]);
    }
    return tpl_str(b.data ? b.data : "", b.len);
  }
  if (obj.kind == V_UNDEF) tpl_undefined_error(ctx, &obj);
  tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "'%s' object is not subscriptable", tpl_type_name(&obj));
}

static tpl_value apply_filter_node(tpl_ctx *ctx, tpl_frame *f, const tpl_node *n,
                                   tpl_value operand) {
  if (n->op == 1) tpl_fail(ctx, QIAO_MALFORMED, "no filter named '%s'", n->s);
  tpl_args args;
  eval_args(ctx, f, n, &args);
  return tpl_apply_filter(ctx, n->s, &operand, &args);
}

static tpl_value eval_inner(tpl_ctx *ctx, tpl_frame *f, const tpl_node *n) {
  switch (n->kind) {
  case N_CONST: return n->v;
  case N_NAME: return lookup(ctx, f, n->s);
  case N_GETATTR: {
    tpl_value obj = eval(ctx, f, n->a);
    return tpl_getattr(ctx, &obj, n->s);
  }
  case N_GETITEM: {
    tpl_value obj = eval(ctx, f, n->a);
    tpl_value key = eval(ctx, f, n->b);
    return tpl_getitem(ctx, &obj, &key);
  }
  case N_SLICE: return eval_slice(ctx, f, n);
  case N_CALL: {
    tpl_value callee = eval(ctx, f, n->a);
    tpl_args args;
    eval_args(ctx, f, n, &args);
    ctx->line = n->line;
    return call_value(ctx, &callee, &args);
  }
  case N_FILTER: {
    tpl_value operand = eval(ctx, f, n->a);
    ctx->line = n->line;
    return apply_filter_node(ctx, f, n, operand);
  }
  case N_TEST: {
    if (n->op == 1) tpl_fail(ctx, QIAO_MALFORMED, "no test named '%s'", n->s);
    tpl_value operand = eval(ctx, f, n->a);
    tpl_args args;
    eval_args(ctx, f, n, &args);
    ctx->line = n->line;
    return tpl_bool(tpl_apply_test(ctx, n->s, &operand, &args));
  }
  case N_NEG:
  case N_POS: {
    tpl_value x = eval(ctx, f, n->a);
    if (x.kind == V_UNDEF) tpl_undefined_error(ctx, &x);
    if (x.kind == V_BOOL) x = tpl_int(x.u.b);
    if (x.kind == V_INT) {
      if (n->kind == N_POS) return x;
      if (x.u.i == INT64_MIN) tpl_fail(ctx, QIAO_UNSUPPORTED, "integer overflow in unary '-'");
      return tpl_int(-x.u.i);
    }
    if (x.kind == V_FLOAT) return n->kind == N_POS ? x : tpl_float(-x.u.f);
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "bad operand type for unary %s: '%s'",
             n->kind == N_NEG ? "-" : "+", tpl_type_name(&x));
  }
  case N_NOT: {
    tpl_value x = eval(ctx, f, n->a);
    return tpl_bool(!tpl_truthy(&x));
  }
  case N_AND: {
    tpl_value x = eval(ctx, f, n->a);
    return tpl_truthy(&x) ? eval(ctx, f, n->b) : x;
  }
  case N_OR: {
    tpl_value x = eval(ctx, f, n->a);
    return tpl_truthy(&x) ? x : eval(ctx, f, n->b);
  }
  case N_BINOP: {
    tpl_value a = eval(ctx, f, n->a);
    tpl_value b = eval(ctx, f, n->b);
    ctx->line = n->line;
    return tpl_binop(ctx, n->op, &a, &b);
  }
  case N_COMPARE: {
    tpl_value left = eval(ctx, f, n->a);
    for (size_t i = 0; i < n->list.n; i++) {
      tpl_value right = eval(ctx, f, n->list.items[i]);
      ctx->line = n->line;
      if (!compare(ctx, n->ops[i], &left, &right)) return tpl_bool(false);
      left = right;
    }
    return tpl_bool(true);
  }
  case N_CONCAT: {
    tpl_buf b = {0};
    for (size_t i = 0; i < n->list.n; i++) {
      tpl_value x = eval(ctx, f, n->list.items[i]);
      tpl_write_str(ctx, &b, &x, false);
    }
    return tpl_str(b.data ? b.data : "", b.len);
  }
  case N_COND: {
    tpl_value c = eval(ctx, f, n->a);
    if (tpl_truthy(&c)) return eval(ctx, f, n->b);
    return n->c ? eval(ctx, f, n->c) : tpl_undef(NULL);
  }
  case N_LIST: {
    tpl_value l = tpl_new_list(ctx, n->list.n);
    for (size_t i = 0; i < n->list.n; i++)
      tpl_list_push(ctx, l.u.list, eval(ctx, f, n->list.items[i]));
    l.u.list->tuple = n->op == 1;
    return l;
  }
  case N_DICT: {
    tpl_value d = tpl_new_dict(ctx, n->list.n);
    for (size_t i = 0; i < n->list.n; i++) {
      tpl_value k = eval(ctx, f, n->list.items[i]);
      if (k.kind == V_LIST && !k.u.list->tuple)
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "unhashable type: 'list'");
      if (k.kind == V_DICT || k.kind == V_UNDEF)
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "unhashable type: '%s'", tpl_type_name(&k));
      tpl_dict_set(ctx, d.u.dict, k, eval(ctx, f, n->list2.items[i]));
    }
    return d;
  }
  default:
    tpl_fail(ctx, QIAO_INTERNAL, "statement node %d evaluated as an expression", (int)n->kind);
  }
}

static tpl_value eval(tpl_ctx *ctx, tpl_frame *f, const tpl_node *n) {
  tpl_charge(ctx, 1);
  enter(ctx);
  ctx->line = n->line;
  tpl_value v = eval_inner(ctx, f, n);
  leave(ctx);
  return v;
}

/* ---- statements -------------------------------------------------------------- */

static void assign_targets(tpl_ctx *ctx, tpl_frame *f, const tpl_names *names, tpl_value v) {
  if (names->n == 1) {
    frame_set(ctx, f, names->items[0], v);
    return;
  }
  tpl_list *items = NULL;
  if (v.kind == V_LIST || v.kind == V_STR || v.kind == V_DICT)
    items = tpl_iterate(ctx, &v);
  else
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "cannot unpack a non-iterable '%s' object",
             tpl_type_name(&v));
  if (items->n != names->n)
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "cannot unpack %zu values into %zu names", items->n,
             names->n);
  for (size_t i = 0; i < names->n; i++)
    frame_set(ctx, f, names->items[i], items->items[i]);
}

static void exec_for(tpl_ctx *ctx, tpl_frame *f, const tpl_node *n) {
  tpl_value seq = eval(ctx, f, n->a);
  tpl_list *items = tpl_iterate(ctx, &seq);
  if (n->d) { /* {% for x in xs if cond %}: filter first, so loop.length counts the kept */
    tpl_list *kept = tpl_new_list(ctx, items->n).u.list;
    tpl_frame *tf = new_frame(ctx, f);
    for (size_t i = 0; i < items->n; i++) {
      tf->vars.n = 0;
      assign_targets(ctx, tf, &n->names, items->items[i]);
      tpl_value c = eval(ctx, tf, n->d);
      if (tpl_truthy(&c)) tpl_list_push(ctx, kept, items->items[i]);
    }
    items = kept;
  }
  tpl_loop *loop = tpl_alloc(&ctx->arena, sizeof(*loop));
  loop->items = items;
  tpl_frame *lf = new_frame(ctx, f);
  for (size_t i = 0; i < items->n; i++) {
    tpl_charge(ctx, 1);
    lf->vars.n = 0;
    loop->index0 = i;
    frame_set(ctx, lf, "loop", (tpl_value){.kind = V_LOOP, .u.loop = loop});
    assign_targets(ctx, lf, &n->names, items->items[i]);
    flow fl = exec_body(ctx, lf, n->b);
    if (fl == FLOW_BREAK) break;
  }
  if (items->n == 0 && n->c) exec_body(ctx, f, n->c);
}

static flow exec_stmt(tpl_ctx *ctx, tpl_frame *f, const tpl_node *n) {
  tpl_charge(ctx, 1);
  ctx->line = n->line;
  switch (n->kind) {
  case N_TEXT: tpl_buf_append(ctx, ctx->out, n->s, n->slen); return FLOW_NORMAL;
  case N_OUTPUT: {
    tpl_value v = eval(ctx, f, n->a);
    tpl_write_str(ctx, ctx->out, &v, false);
    return FLOW_NORMAL;
  }
  case N_IF: {
    tpl_value c = eval(ctx, f, n->a);
    if (tpl_truthy(&c)) return exec_body(ctx, f, n->b);
    return n->c ? exec_body(ctx, f, n->c) : FLOW_NORMAL;
  }
  case N_FOR: exec_for(ctx, f, n); return FLOW_NORMAL;
  case N_SET: assign_targets(ctx, f, &n->names, eval(ctx, f, n->a)); return FLOW_NORMAL;
  case N_SET_ATTR: {
    tpl_value ns = lookup(ctx, f, n->s);
    if (ns.kind != V_NS)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "cannot assign attribute on non-namespace object");
    tpl_value v = eval(ctx, f, n->a);
    tpl_dict_set(ctx, ns.u.dict, tpl_cstr(n->s2), v);
    return FLOW_NORMAL;
  }
  case N_SET_BLOCK:
  case N_FILTER_BLOCK: {
    tpl_buf *saved = ctx->out;
    tpl_buf buf = {0};
    ctx->out = &buf;
    exec_body(ctx, f, n->b);
    ctx->out = saved;
    tpl_value v = tpl_str(buf.data ? buf.data : "", buf.len);
    for (size_t i = 0; i < n->list.n; i++)
      v = apply_filter_node(ctx, f, n->list.items[i], v);
    if (n->kind == N_SET_BLOCK)
      frame_set(ctx, f, n->names.items[0], v);
    else
      tpl_write_str(ctx, ctx->out, &v, false);
    return FLOW_NORMAL;
  }
  case N_MACRO:
    frame_set(ctx, f, n->s, (tpl_value){.kind = V_MACRO, .u.macro = n});
    return FLOW_NORMAL;
  case N_WITH: {
    tpl_frame *wf = new_frame(ctx, f);
    for (size_t i = 0; i < n->names.n; i++)
      frame_set(ctx, wf, n->names.items[i], eval(ctx, f, n->list.items[i]));
    return exec_body(ctx, wf, n->b);
  }
  case N_BREAK: return FLOW_BREAK;
  case N_CONTINUE: return FLOW_CONTINUE;
  case N_BODY: return exec_body(ctx, f, n);
  default: tpl_fail(ctx, QIAO_INTERNAL, "expression node %d executed as a statement", (int)n->kind);
  }
}

static flow exec_body(tpl_ctx *ctx, tpl_frame *f, const tpl_node *body) {
  if (body == NULL) return FLOW_NORMAL;
  enter(ctx);
  flow fl = FLOW_NORMAL;
  for (size_t i = 0; i < body->list.n && fl == FLOW_NORMAL; i++)
    fl = exec_stmt(ctx, f, body->list.items[i]);
  leave(ctx);
  return fl;
}

void tpl_exec_root(tpl_ctx *ctx, const tpl_node *root);
void tpl_exec_root(tpl_ctx *ctx, const tpl_node *root) {
  ctx->top = new_frame(ctx, ctx->globals);
  exec_body(ctx, ctx->top, root);
}
