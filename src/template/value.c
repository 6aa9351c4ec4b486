/* Values and their Python behaviour: truthiness, ==, <, str() and repr(),
 * json.dumps, and conversion from json-c input. Strings are UTF-8 byte
 * ranges; lengths and indices count code points where Python would. */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template_internal.h"

tpl_value tpl_undef(const char *name) {
  tpl_value v = {.kind = V_UNDEF};
  v.undef_name = name;
  return v;
}
tpl_value tpl_none(void) {
  return (tpl_value){.kind = V_NONE};
}
tpl_value tpl_bool(bool b) {
  return (tpl_value){.kind = V_BOOL, .u.b = b};
}
tpl_value tpl_int(int64_t i) {
  return (tpl_value){.kind = V_INT, .u.i = i};
}
tpl_value tpl_float(double f) {
  return (tpl_value){.kind = V_FLOAT, .u.f = f};
}
tpl_value tpl_str(const char *p, size_t len) {
  tpl_value v = {.kind = V_STR};
  v.u.s.p = p;
  v.u.s.len = len;
  return v;
}
tpl_value tpl_cstr(const char *p) {
  return tpl_str(p, strlen(p));
}
tpl_value tpl_str_copy(tpl_ctx *ctx, const char *p, size_t len) {
  return tpl_str(tpl_strdup(&ctx->arena, p, len), len);
}
tpl_value tpl_new_list(tpl_ctx *ctx, size_t cap) {
  tpl_value v = {.kind = V_LIST};
  v.u.list = tpl_alloc(&ctx->arena, sizeof(tpl_list));
  if (cap) {
    v.u.list->items = tpl_alloc(&ctx->arena, cap * sizeof(tpl_value));
    v.u.list->cap = cap;
  }
  return v;
}
tpl_value tpl_new_dict(tpl_ctx *ctx, size_t cap) {
  tpl_value v = {.kind = V_DICT};
  v.u.dict = tpl_alloc(&ctx->arena, sizeof(tpl_dict));
  if (cap) {
    v.u.dict->keys = tpl_alloc(&ctx->arena, cap * sizeof(tpl_value));
    v.u.dict->vals = tpl_alloc(&ctx->arena, cap * sizeof(tpl_value));
    v.u.dict->cap = cap;
  }
  return v;
}

void tpl_list_push(tpl_ctx *ctx, tpl_list *l, tpl_value v) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 4;
    tpl_value *items = tpl_alloc(&ctx->arena, cap * sizeof(tpl_value));
    if (l->n) memcpy(items, l->items, l->n * sizeof(tpl_value));
    l->items = items;
    l->cap = cap;
  }
  l->items[l->n++] = v;
}

static bool equal(tpl_ctx *ctx, const tpl_value *a, const tpl_value *b, int depth);

tpl_value *tpl_dict_get(tpl_dict *d, tpl_value key) {
  for (size_t i = 0; i < d->n; i++)
    if (equal(NULL, &d->keys[i], &key, 0)) return &d->vals[i];
  return NULL;
}
tpl_value *tpl_dict_get_str(tpl_dict *d, const char *key, size_t len) {
  for (size_t i = 0; i < d->n; i++) {
    tpl_value *k = &d->keys[i];
    if (k->kind == V_STR && k->u.s.len == len && memcmp(k->u.s.p, key, len) == 0)
      return &d->vals[i];
  }
  return NULL;
}
void tpl_dict_set(tpl_ctx *ctx, tpl_dict *d, tpl_value key, tpl_value val) {
  tpl_charge(ctx, d->n / 16); /* the lookup below is linear */
  tpl_value *slot = tpl_dict_get(d, key);
  if (slot) {
    *slot = val;
    return;
  }
  if (d->n == d->cap) {
    size_t cap = d->cap ? d->cap * 2 : 4;
    tpl_value *keys = tpl_alloc(&ctx->arena, cap * sizeof(tpl_value));
    tpl_value *vals = tpl_alloc(&ctx->arena, cap * sizeof(tpl_value));
    if (d->n) {
      memcpy(keys, d->keys, d->n * sizeof(tpl_value));
      memcpy(vals, d->vals, d->n * sizeof(tpl_value));
    }
    d->keys = keys;
    d->vals = vals;
    d->cap = cap;
  }
  d->keys[d->n] = key;
  d->vals[d->n] = val;
  d->n++;
}

bool tpl_truthy(const tpl_value *v) {
  switch (v->kind) {
  case V_UNDEF:
  case V_NONE: return false;
  case V_BOOL: return v->u.b;
  case V_INT: return v->u.i != 0;
  case V_FLOAT: return v->u.f != 0.0;
  case V_STR: return v->u.s.len != 0;
  case V_LIST: return v->u.list->iterator != NULL || v->u.list->n != 0;
  case V_DICT: return v->u.dict->n != 0;
  default: return true;
  }
}

static bool is_number(const tpl_value *v) {
  return v->kind == V_BOOL || v->kind == V_INT || v->kind == V_FLOAT;
}
static double as_double(const tpl_value *v) {
  return v->kind == V_FLOAT ? v->u.f : v->kind == V_INT ? (double)v->u.i : (double)v->u.b;
}

static bool equal(tpl_ctx *ctx, const tpl_value *a, const tpl_value *b, int depth) {
  if (depth > 200) return false;
  if (is_number(a) && is_number(b)) {
    if (a->kind != V_FLOAT && b->kind != V_FLOAT) {
      int64_t x = a->kind == V_INT ? a->u.i : a->u.b, y = b->kind == V_INT ? b->u.i : b->u.b;
      return x == y;
    }
    return as_double(a) == as_double(b);
  }
  if (a->kind != b->kind) return false;
  switch (a->kind) {
  case V_UNDEF:
  case V_NONE: return true;
  case V_STR:
    if (ctx) tpl_charge(ctx, a->u.s.len / 64);
    return a->u.s.len == b->u.s.len && memcmp(a->u.s.p, b->u.s.p, a->u.s.len) == 0;
  case V_LIST: {
    const tpl_list *x = a->u.list, *y = b->u.list;
    if (x->iterator || y->iterator) return x == y;
    if (x->n != y->n || x->tuple != y->tuple) return false;
    for (size_t i = 0; i < x->n; i++) {
      if (ctx) tpl_charge(ctx, 1);
      if (!equal(ctx, &x->items[i], &y->items[i], depth + 1)) return false;
    }
    return true;
  }
  case V_DICT: {
    tpl_dict *x = a->u.dict, *y = b->u.dict;
    if (x->n != y->n) return false;
    for (size_t i = 0; i < x->n; i++) {
      if (ctx) tpl_charge(ctx, 1 + y->n / 16);
      tpl_value *other = tpl_dict_get(y, x->keys[i]);
      if (!other || !equal(ctx, &x->vals[i], other, depth + 1)) return false;
    }
    return true;
  }
  case V_NS: return a->u.dict == b->u.dict;
  case V_MACRO: return a->u.macro == b->u.macro;
  case V_FUNC: return a->u.func == b->u.func;
  case V_LOOP: return a->u.loop == b->u.loop;
  case V_METHOD:
    return strcmp(a->u.m.name, b->u.m.name) == 0 && equal(ctx, a->u.m.self, b->u.m.self, depth + 1);
  default: return false;
  }
}

bool tpl_equal(tpl_ctx *ctx, const tpl_value *a, const tpl_value *b) {
  return equal(ctx, a, b, 0);
}

const char *tpl_type_name(const tpl_value *v) {
  switch (v->kind) {
  case V_UNDEF: return "Undefined";
  case V_NONE: return "NoneType";
  case V_BOOL: return "bool";
  case V_INT: return "int";
  case V_FLOAT: return "float";
  case V_STR: return "str";
  case V_LIST:
    return v->u.list->iterator ? v->u.list->iterator : v->u.list->tuple ? "tuple" : "list";
  case V_DICT: return "dict";
  case V_NS: return "Namespace";
  case V_MACRO: return "Macro";
  case V_FUNC: return "function";
  case V_METHOD: return "builtin_function_or_method";
  case V_LOOP: return "LoopContext";
  }
  return "object";
}

int tpl_compare(tpl_ctx *ctx, const tpl_value *a, const tpl_value *b) {
  if (a->kind == V_UNDEF || b->kind == V_UNDEF)
    tpl_undefined_error(ctx, a->kind == V_UNDEF ? a : b);
  if (is_number(a) && is_number(b)) {
    if (a->kind != V_FLOAT && b->kind != V_FLOAT) {
      int64_t x = a->kind == V_INT ? a->u.i : a->u.b, y = b->kind == V_INT ? b->u.i : b->u.b;
      return x < y ? -1 : x > y;
    }
    double x = as_double(a), y = as_double(b);
    return x < y ? -1 : x > y;
  }
  if (a->kind == V_STR && b->kind == V_STR) {
    size_t n = a->u.s.len < b->u.s.len ? a->u.s.len : b->u.s.len;
    tpl_charge(ctx, n / 64);
    int c = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
    if (c) return c < 0 ? -1 : 1;
    return a->u.s.len < b->u.s.len ? -1 : a->u.s.len > b->u.s.len;
  }
  if (a->kind == V_LIST && b->kind == V_LIST && !a->u.list->iterator && !b->u.list->iterator) {
    const tpl_list *x = a->u.list, *y = b->u.list;
    for (size_t i = 0; i < x->n && i < y->n; i++) {
      if (equal(ctx, &x->items[i], &y->items[i], 0)) continue;
      return tpl_compare(ctx, &x->items[i], &y->items[i]);
    }
    return x->n < y->n ? -1 : x->n > y->n;
  }
  tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "'<' not supported between instances of '%s' and '%s'",
           tpl_type_name(a), tpl_type_name(b));
}

/* ---- UTF-8 --------------------------------------------------------------- */

size_t tpl_utf8_count(const char *p, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    n += ((unsigned char)p[i] & 0xC0) != 0x80;
  return n;
}

size_t tpl_utf8_offset(const char *p, size_t len, size_t nchars) {
  size_t i = 0;
  while (i < len && nchars > 0) {
    i++;
    while (i < len && ((unsigned char)p[i] & 0xC0) == 0x80)
      i++;
    nchars--;
  }
  return i;
}

uint32_t tpl_utf8_decode(const char *s, size_t len, size_t *adv) {
  const unsigned char *p = (const unsigned char *)s;
  uint32_t c = p[0];
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
  if (n == 0 || n > len) {
    *adv = 1;
    return 0xFFFD;
  }
  if (n == 1) {
    *adv = 1;
    return c;
  }
  c &= (0x7Fu >> n);
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) {
      *adv = 1;
      return 0xFFFD;
    }
    c = (c << 6) | (p[i] & 0x3F);
  }
  *adv = n;
  return c;
}

void tpl_utf8_encode(tpl_ctx *ctx, tpl_buf *b, uint32_t cp) {
  char out[4];
  size_t n;
  if (cp < 0x80) {
    out[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  tpl_buf_append(ctx, b, out, n);
}

/* Python's str.isspace() code points. */
bool tpl_is_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

/* ---- str() and repr() ---------------------------------------------------- */

void tpl_format_float(double f, char *buf, size_t size) {
  if (isnan(f)) {
    snprintf(buf, size, "nan");
    return;
  }
  if (isinf(f)) {
    snprintf(buf, size, f < 0 ? "-inf" : "inf");
    return;
  }
  if (f == 0) {
    snprintf(buf, size, signbit(f) ? "-0.0" : "0.0");
    return;
  }
  /* the shortest digits that read back as the same double, like Python */
  char tmp[64];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, f);
    if (strtod(tmp, NULL) == f) break;
  }
  char digits[32];
  size_t nd = 0;
  const char *p = tmp;
  bool neg = *p == '-';
  if (neg) p++;
  for (; *p && *p != 'e'; p++)
    if (*p >= '0' && *p <= '9') digits[nd++] = *p;
  int exp10 = atoi(p + 1);
  while (nd > 1 && digits[nd - 1] == '0')
    nd--;
  int decpt = exp10 + 1; /* value = 0.DIGITS * 10^decpt */
  char out[64];
  size_t o = 0;
  if (neg) out[o++] = '-';
  if (decpt > 16 || decpt < -3) {
    out[o++] = digits[0];
    if (nd > 1) {
      out[o++] = '.';
      for (size_t i = 1; i < nd; i++)
        out[o++] = digits[i];
    }
    o += (size_t)snprintf(out + o, sizeof(out) - o, "e%c%02d", exp10 < 0 ? '-' : '+',
                          exp10 < 0 ? -exp10 : exp10);
  } else if (decpt <= 0) {
    out[o++] = '0';
    out[o++] = '.';
    for (int i = 0; i < -decpt; i++)
      out[o++] = '0';
    for (size_t i = 0; i < nd; i++)
      out[o++] = digits[i];
  } else {
    for (int i = 0; i < decpt; i++)
      out[o++] = (size_t)i < nd ? digits[i] : '0';
    out[o++] = '.';
    if ((size_t)decpt < nd) {
      for (size_t i = (size_t)decpt; i < nd; i++)
        out[o++] = digits[i];
    } else {
      out[o++] = '0';
    }
  }
  out[o] = '\0';
  snprintf(buf, size, "%s", out);
}

static void write_repr_str(tpl_ctx *ctx, tpl_buf *b, const char *s, size_t len) {
  bool has_single = memchr(s, '\'', len) != NULL, has_double = memchr(s, '"', len) != NULL;
  char q = (has_single && !has_double) ? '"' : '\'';
  tpl_buf_putc(ctx, b, q);
  size_t i = 0;
  while (i < len) {
    size_t adv;
    uint32_t c = tpl_utf8_decode(s + i, len - i, &adv);
    char esc[16];
    if (c == (uint32_t)q || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      tpl_buf_append(ctx, b, esc, 2);
    } else if (c == '\n') {
      tpl_buf_append(ctx, b, "\\n", 2);
    } else if (c == '\r') {
      tpl_buf_append(ctx, b, "\\r", 2);
    } else if (c == '\t') {
      tpl_buf_append(ctx, b, "\\t", 2);
    } else if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) {
      snprintf(esc, sizeof(esc), "\\x%02x", c);
      tpl_buf_append(ctx, b, esc, 4);
    } else if (c == 0x2028 || c == 0x2029) {
      snprintf(esc, sizeof(esc), "\\u%04x", c);
      tpl_buf_append(ctx, b, esc, 6);
    } else {
      tpl_buf_append(ctx, b, s + i, adv);
    }
    i += adv;
  }
  tpl_buf_putc(ctx, b, q);
}

static void write_value(tpl_ctx *ctx, tpl_buf *b, const tpl_value *v, bool repr, int depth) {
  char num[64];
  if (depth > 200) tpl_fail(ctx, QIAO_LIMIT, "depth budget exceeded printing a nested value");
  switch (v->kind) {
  case V_UNDEF:
    if (repr) tpl_buf_append(ctx, b, "Undefined", 9);
    return;
  case V_NONE: tpl_buf_append(ctx, b, "None", 4); return;
  case V_BOOL: tpl_buf_append(ctx, b, v->u.b ? "True" : "False", v->u.b ? 4 : 5); return;
  case V_INT:
    snprintf(num, sizeof(num), "%lld", (long long)v->u.i);
    tpl_buf_append(ctx, b, num, strlen(num));
    return;
  case V_FLOAT:
    tpl_format_float(v->u.f, num, sizeof(num));
    tpl_buf_append(ctx, b, num, strlen(num));
    return;
  case V_STR:
    if (repr)
      write_repr_str(ctx, b, v->u.s.p, v->u.s.len);
    else
      tpl_buf_append(ctx, b, v->u.s.p, v->u.s.len);
    return;
  case V_LIST: {
    const tpl_list *l = v->u.list;
    if (l->iterator) {
      snprintf(num, sizeof(num), "<%s object>", l->iterator);
      tpl_buf_append(ctx, b, num, strlen(num));
      return;
    }
    tpl_buf_putc(ctx, b, l->tuple ? '(' : '[');
    for (size_t i = 0; i < l->n; i++) {
      if (i) tpl_buf_append(ctx, b, ", ", 2);
      write_value(ctx, b, &l->items[i], true, depth + 1);
    }
    if (l->tuple && l->n == 1) tpl_buf_putc(ctx, b, ',');
    tpl_buf_putc(ctx, b, l->tuple ? ')' : ']');
    return;
  }
  case V_DICT: {
    const tpl_dict *d = v->u.dict;
    tpl_buf_putc(ctx, b, '{');
    for (size_t i = 0; i < d->n; i++) {
      if (i) tpl_buf_append(ctx, b, ", ", 2);
      write_value(ctx, b, &d->keys[i], true, depth + 1);
      tpl_buf_append(ctx, b, ": ", 2);
      write_value(ctx, b, &d->vals[i], true, depth + 1);
    }
    tpl_buf_putc(ctx, b, '}');
    return;
  }
  case V_NS: tpl_buf_append(ctx, b, "<Namespace>", 11); return;
  case V_MACRO:
    snprintf(num, sizeof(num), "<Macro '%.40s'>", v->u.macro->s);
    tpl_buf_append(ctx, b, num, strlen(num));
    return;
  case V_FUNC: tpl_buf_append(ctx, b, "<function>", 10); return;
  case V_METHOD:
    snprintf(num, sizeof(num), "<built-in method %.30s>", v->u.m.name);
    tpl_buf_append(ctx, b, num, strlen(num));
    return;
  case V_LOOP:
    snprintf(num, sizeof(num), "<LoopContext %zu/%zu>", v->u.loop->index0 + 1, v->u.loop->items->n);
    tpl_buf_append(ctx, b, num, strlen(num));
    return;
  }
}

void tpl_write_str(tpl_ctx *ctx, tpl_buf *b, const tpl_value *v, bool repr) {
  write_value(ctx, b, v, repr, 0);
}

tpl_value tpl_to_str(tpl_ctx *ctx, const tpl_value *v) {
  if (v->kind == V_STR) return *v;
  if (v->kind == V_UNDEF) return tpl_str("", 0);
  tpl_buf b = {0};
  write_value(ctx, &b, v, false, 0);
  return tpl_str(b.data ? b.data : "", b.len);
}

/* ---- json.dumps ------------------------------------------------------------ */

static void json_string(tpl_ctx *ctx, tpl_buf *b, const char *s, size_t len, bool ascii) {
  tpl_buf_putc(ctx, b, '"');
  size_t i = 0, run = 0; /* bytes copied verbatim in bulk */
  while (i < len) {
    unsigned char c = (unsigned char)s[i];
    const char *esc = NULL;
    char tmp[16];
    size_t adv = 1;
    if (c == '"')
      esc = "\\\"";
    else if (c == '\\')
      esc = "\\\\";
    else if (c == '\n')
      esc = "\\n";
    else if (c == '\r')
      esc = "\\r";
    else if (c == '\t')
      esc = "\\t";
    else if (c == '\b')
      esc = "\\b";
    else if (c == '\f')
      esc = "\\f";
    else if (c < 0x20 || (ascii && c == 0x7F)) {
      snprintf(tmp, sizeof(tmp), "\\u%04x", c);
      esc = tmp;
    } else if (ascii && c >= 0x80) {
      uint32_t cp = tpl_utf8_decode(s + i, len - i, &adv);
      if (cp >= 0x10000) {
        cp -= 0x10000;
        snprintf(tmp, sizeof(tmp), "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
      } else {
        snprintf(tmp, sizeof(tmp), "\\u%04x", cp);
      }
      esc = tmp;
    }
    if (esc) {
      tpl_buf_append(ctx, b, s + i - run, run);
      run = 0;
      tpl_buf_append(ctx, b, esc, strlen(esc));
    } else {
      run++;
    }
    i += adv;
  }
  tpl_buf_append(ctx, b, s + len - run, run);
  tpl_buf_putc(ctx, b, '"');
}

static void json_newline(tpl_ctx *ctx, tpl_buf *b, const tpl_json_opts *o, int level) {
  tpl_buf_putc(ctx, b, '\n');
  for (int i = 0; i < level; i++)
    tpl_buf_append(ctx, b, o->indent, o->indent_len);
}

static int key_order(const void *x, const void *y) {
  const tpl_value *a = *(tpl_value *const *)x, *b = *(tpl_value *const *)y;
  size_t n = a->u.s.len < b->u.s.len ? a->u.s.len : b->u.s.len;
  int c = n ? memcmp(a->u.s.p, b->u.s.p, n) : 0;
  if (c) return c;
  return a->u.s.len < b->u.s.len ? -1 : a->u.s.len > b->u.s.len;
}

void tpl_write_json(tpl_ctx *ctx, tpl_buf *b, const tpl_value *v, const tpl_json_opts *o,
                    int level) {
  char num[64];
  if (level > 200) tpl_fail(ctx, QIAO_LIMIT, "depth budget exceeded in tojson");
  tpl_charge(ctx, 1);
  switch (v->kind) {
  case V_NONE: tpl_buf_append(ctx, b, "null", 4); return;
  case V_BOOL: tpl_buf_append(ctx, b, v->u.b ? "true" : "false", v->u.b ? 4 : 5); return;
  case V_INT:
    snprintf(num, sizeof(num), "%lld", (long long)v->u.i);
    tpl_buf_append(ctx, b, num, strlen(num));
    return;
  case V_FLOAT:
    if (isnan(v->u.f))
      snprintf(num, sizeof(num), "NaN");
    else if (isinf(v->u.f))
      snprintf(num, sizeof(num), v->u.f < 0 ? "-Infinity" : "Infinity");
    else
      tpl_format_float(v->u.f, num, sizeof(num));
    tpl_buf_append(ctx, b, num, strlen(num));
    return;
  case V_STR: json_string(ctx, b, v->u.s.p, v->u.s.len, o->ensure_ascii); return;
  case V_LIST: {
    const tpl_list *l = v->u.list;
    if (l->iterator)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "tojson: Object of type %s is not JSON serializable",
               l->iterator);
    if (l->n == 0) {
      tpl_buf_append(ctx, b, "[]", 2);
      return;
    }
    tpl_buf_putc(ctx, b, '[');
    for (size_t i = 0; i < l->n; i++) {
      if (i) tpl_buf_append(ctx, b, o->item_sep, o->item_sep_len);
      if (o->indent) json_newline(ctx, b, o, level + 1);
      tpl_write_json(ctx, b, &l->items[i], o, level + 1);
    }
    if (o->indent) json_newline(ctx, b, o, level);
    tpl_buf_putc(ctx, b, ']');
    return;
  }
  case V_DICT: {
    const tpl_dict *d = v->u.dict;
    if (d->n == 0) {
      tpl_buf_append(ctx, b, "{}", 2);
      return;
    }
    /* keys become strings as json.dumps converts them */
    tpl_value **keys = tpl_alloc(&ctx->arena, d->n * sizeof(tpl_value *));
    tpl_value *skeys = tpl_alloc(&ctx->arena, d->n * sizeof(tpl_value));
    for (size_t i = 0; i < d->n; i++) {
      const tpl_value *k = &d->keys[i];
      if (k->kind == V_STR)
        skeys[i] = *k;
      else if (k->kind == V_NONE)
        skeys[i] = tpl_cstr("null");
      else if (k->kind == V_BOOL)
        skeys[i] = tpl_cstr(k->u.b ? "true" : "false");
      else if (k->kind == V_INT || k->kind == V_FLOAT)
        skeys[i] = tpl_to_str(ctx, k);
      else
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT,
                 "tojson: keys must be str, int, float, bool or None, not %s", tpl_type_name(k));
      keys[i] = &skeys[i];
    }
    size_t *order = tpl_alloc(&ctx->arena, d->n * sizeof(size_t));
    for (size_t i = 0; i < d->n; i++)
      order[i] = i;
    if (o->sort_keys) {
      /* stable insertion sort over indices keeps it simple and bounded */
      tpl_charge(ctx, (uint64_t)d->n * d->n / 16);
      for (size_t i = 1; i < d->n; i++) {
        size_t x = order[i], j = i;
        while (j > 0 && key_order(&keys[order[j - 1]], &keys[x]) > 0) {
          order[j] = order[j - 1];
          j--;
        }
        order[j] = x;
      }
    }
    tpl_buf_putc(ctx, b, '{');
    for (size_t i = 0; i < d->n; i++) {
      size_t k = order[i];
      if (i) tpl_buf_append(ctx, b, o->item_sep, o->item_sep_len);
      if (o->indent) json_newline(ctx, b, o, level + 1);
      json_string(ctx, b, keys[k]->u.s.p, keys[k]->u.s.len, o->ensure_ascii);
      tpl_buf_append(ctx, b, o->key_sep, o->key_sep_len);
      tpl_write_json(ctx, b, &d->vals[k], o, level + 1);
    }
    if (o->indent) json_newline(ctx, b, o, level);
    tpl_buf_putc(ctx, b, '}');
    return;
  }
  default:
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "tojson: Object of type %s is not JSON serializable",
             tpl_type_name(v));
  }
}

/* ---- input ---------------------------------------------------------------- */

tpl_value tpl_from_json(tpl_ctx *ctx, struct json_object *j) {
  tpl_charge(ctx, 1);
  switch (json_object_get_type(j)) {
  case json_type_null: return tpl_none();
  case json_type_boolean: return tpl_bool(json_object_get_boolean(j));
  case json_type_int: return tpl_int(json_object_get_int64(j));
  case json_type_double: return tpl_float(json_object_get_double(j));
  case json_type_string:
    return tpl_str(json_object_get_string(j), (size_t)json_object_get_string_len(j));
  case json_type_array: {
    size_t n = json_object_array_length(j);
    tpl_value v = tpl_new_list(ctx, n);
    for (size_t i = 0; i < n; i++)
      tpl_list_push(ctx, v.u.list, tpl_from_json(ctx, json_object_array_get_idx(j, i)));
    return v;
  }
  case json_type_object: {
    tpl_value v = tpl_new_dict(ctx, (size_t)json_object_object_length(j));
    json_object_object_foreach(j, key, val) {
      tpl_value k = tpl_cstr(key);
      /* keys are unique in json-c: append without searching */
      tpl_dict *d = v.u.dict;
      if (d->n < d->cap) {
        d->keys[d->n] = k;
        d->vals[d->n] = tpl_from_json(ctx, val);
        d->n++;
      } else {
        tpl_dict_set(ctx, d, k, tpl_from_json(ctx, val));
      }
    }
    return v;
  }
  }
  return tpl_none();
}
