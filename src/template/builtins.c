/* What templates can call: filters (`x|trim`), tests (`x is string`),
 * methods of strings, lists and dicts (`s.startswith('a')`), attribute and
 * item access, and the globals range, namespace, dict, raise_exception and
 * strftime_now. Behaviour follows jinja2's sandbox as transformers uses it:
 * lists and dicts cannot be modified (their mutating methods are "unsafe"
 * undefined values), and range() is capped at 100000 items. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "template_internal.h"

enum { MAX_RANGE = 100000 };

static bool streq(const char *a, const char *b) {
  return strcmp(a, b) == 0;
}
static bool in_set(const char *name, const char *const *set) {
  for (; *set; set++)
    if (streq(name, *set)) return true;
  return false;
}

static const char *const implemented_filters[] = {
    "abs",     "attr",     "capitalize", "format", "center",     "count",      "d",
    "default", "dictsort", "e",          "escape", "first",      "float",      "forceescape",
    "indent",  "int",      "items",      "join",   "last",       "length",     "list",
    "lower",   "map",      "max",        "min",    "reject",     "rejectattr", "replace",
    "reverse", "round",    "safe",       "select", "selectattr", "sort",       "string",
    "sum",     "title",    "tojson",     "trim",   "unique",     "upper",      "wordcount",
    NULL};
static const char *const other_jinja_filters[] = {
    "batch",    "filesizeformat", "groupby", "pprint",   "random",  "slice", "striptags",
    "truncate", "urlencode",      "urlize",  "wordwrap", "xmlattr", NULL};
static const char *const tests[] = {
    "boolean", "callable", "defined",  "divisibleby", "eq",       "equalto", "escaped",
    "even",    "false",    "filter",   "float",       "ge",       "gt",      "greaterthan",
    "in",      "integer",  "iterable", "le",          "lessthan", "lower",   "lt",
    "mapping", "ne",       "none",     "number",      "odd",      "sameas",  "sequence",
    "string",  "test",     "true",     "undefined",   "upper",    NULL};

bool tpl_known_filter(const char *name) {
  return in_set(name, implemented_filters) || in_set(name, other_jinja_filters);
}
bool tpl_known_test(const char *name) {
  return in_set(name, tests);
}

int tpl_global_func(const char *name) {
  if (streq(name, "range")) return F_RANGE;
  if (streq(name, "namespace")) return F_NAMESPACE;
  if (streq(name, "dict")) return F_DICT;
  if (streq(name, "raise_exception")) return F_RAISE;
  if (streq(name, "strftime_now")) return F_STRFTIME;
  if (streq(name, "joiner")) return F_JOINER;
  if (streq(name, "cycler")) return F_CYCLER;
  if (streq(name, "lipsum")) return F_LIPSUM;
  return 0;
}

/* ---- arguments ------------------------------------------------------------- */

/* The argument at position `pos` or named `name`; NULL when absent. */
static tpl_value *arg(tpl_args *a, size_t pos, const char *name) {
  if (pos < a->n_pos) return &a->pos[pos];
  for (size_t i = 0; i < a->n_kw; i++)
    if (name && streq(a->kw_names[i], name)) return &a->kw[i];
  return NULL;
}

static const char *need_str(tpl_ctx *ctx, tpl_value *v, const char *what, size_t *len) {
  if (v->kind != V_STR)
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%s must be a string, not %s", what, tpl_type_name(v));
  *len = v->u.s.len;
  return v->u.s.p;
}

static int64_t need_int(tpl_ctx *ctx, tpl_value *v, const char *what) {
  if (v->kind == V_INT) return v->u.i;
  if (v->kind == V_BOOL) return v->u.b;
  tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%s must be an integer, not %s", what, tpl_type_name(v));
}

static bool opt_bool(tpl_value *v, bool dflt) {
  return v ? tpl_truthy(v) : dflt;
}

static tpl_value buf_value(tpl_buf *b) {
  return tpl_str(b->data ? b->data : "", b->len);
}

/* ---- strings ----------------------------------------------------------------- */

typedef enum { CASE_UPPER, CASE_LOWER } case_kind;

static void write_case(tpl_ctx *ctx, tpl_buf *b, const char *p, size_t len, case_kind k) {
  size_t i = 0;
  while (i < len) {
    size_t adv;
    uint32_t c = tpl_utf8_decode(p + i, len - i, &adv);
    if (c < 0x80) {
      char ch = (char)c;
      if (k == CASE_UPPER && ch >= 'a' && ch <= 'z') ch = (char)(ch - 32);
      if (k == CASE_LOWER && ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32);
      tpl_buf_putc(ctx, b, ch);
    } else if (c == 0xFFFD && adv == 1) {
      tpl_buf_append(ctx, b, p + i, 1); /* keep invalid bytes as they are */
    } else if (k == CASE_UPPER && (c == 0xDF || (c >= 0xFB00 && c <= 0xFB06))) {
      /* the full (one-to-many) upper-case mappings Python applies */
      static const char *const multi[] = {"FF", "FI", "FL", "FFI", "FFL", "ST", "ST"};
      const char *m = c == 0xDF ? "SS" : multi[c - 0xFB00];
      tpl_buf_append(ctx, b, m, strlen(m));
    } else {
      uint32_t m = (uint32_t)(k == CASE_UPPER ? utf8proc_toupper((utf8proc_int32_t)c)
                                              : utf8proc_tolower((utf8proc_int32_t)c));
      tpl_utf8_encode(ctx, b, m);
    }
    i += adv;
  }
}

static tpl_value str_case(tpl_ctx *ctx, tpl_value *s, case_kind k) {
  tpl_buf b = {0};
  write_case(ctx, &b, s->u.s.p, s->u.s.len, k);
  return buf_value(&b);
}

/* first code point upper, the rest lower (str.capitalize) */
static tpl_value str_capitalize(tpl_ctx *ctx, tpl_value *s) {
  tpl_buf b = {0};
  if (s->u.s.len) {
    size_t first = tpl_utf8_offset(s->u.s.p, s->u.s.len, 1);
    write_case(ctx, &b, s->u.s.p, first, CASE_UPPER);
    write_case(ctx, &b, s->u.s.p + first, s->u.s.len - first, CASE_LOWER);
  }
  return buf_value(&b);
}

static bool is_cased_word_char(uint32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

/* title: jinja's filter starts words after whitespace - ( { [ <; Python's
 * str.title() method starts them after any uncased character. */
static tpl_value str_title(tpl_ctx *ctx, tpl_value *s, bool filter) {
  tpl_buf b = {0};
  bool start = true;
  size_t i = 0;
  const char *p = s->u.s.p;
  while (i < s->u.s.len) {
    size_t adv;
    uint32_t c = tpl_utf8_decode(p + i, s->u.s.len - i, &adv);
    bool sep = filter
                   ? (tpl_is_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<')
                   : !is_cased_word_char(c);
    if (sep) {
      tpl_buf_append(ctx, &b, p + i, adv);
      start = true;
    } else {
      write_case(ctx, &b, p + i, adv, start ? CASE_UPPER : CASE_LOWER);
      start = false;
    }
    i += adv;
  }
  return buf_value(&b);
}

/* strip/lstrip/rstrip with Python's default (Unicode whitespace) or chars. */
static tpl_value str_strip(tpl_ctx *ctx, tpl_value *s, tpl_value *chars, bool left, bool right) {
  const char *p = s->u.s.p;
  size_t start = 0, end = s->u.s.len;
  const char *set = NULL;
  size_t set_len = 0;
  if (chars && chars->kind != V_NONE) set = need_str(ctx, chars, "strip chars", &set_len);
  tpl_charge(ctx, s->u.s.len / 64);
#define IN_SET(cp, adv, at) (set ? (memmem(set, set_len, p + (at), adv) != NULL) : tpl_is_space(cp))
  while (left && start < end) {
    size_t adv;
    uint32_t c = tpl_utf8_decode(p + start, end - start, &adv);
    if (!IN_SET(c, adv, start)) break;
    start += adv;
  }
  while (right && end > start) {
    size_t k = end - 1;
    while (k > start && ((unsigned char)p[k] & 0xC0) == 0x80)
      k--;
    size_t adv;
    uint32_t c = tpl_utf8_decode(p + k, end - k, &adv);
    if (adv != end - k || !IN_SET(c, adv, k)) break;
    end = k;
  }
#undef IN_SET
  return tpl_str(p + start, end - start);
}

/* split / rsplit: sep None splits on whitespace runs. */
static tpl_value str_split(tpl_ctx *ctx, tpl_value *s, tpl_value *sepv, tpl_value *maxv,
                           bool from_right) {
  const char *p = s->u.s.p;
  size_t len = s->u.s.len;
  int64_t maxsplit = maxv ? need_int(ctx, maxv, "maxsplit") : -1;
  tpl_value out = tpl_new_list(ctx, 0);
  tpl_charge(ctx, len / 32);
  if (sepv == NULL || sepv->kind == V_NONE) {
    /* collect whitespace-separated words as ranges */
    size_t n_words = 0;
    size_t *ranges = tpl_alloc(&ctx->arena, (len + 1) * sizeof(size_t));
    size_t i = 0;
    while (i < len) {
      size_t adv;
      uint32_t c = tpl_utf8_decode(p + i, len - i, &adv);
      if (tpl_is_space(c)) {
        i += adv;
        continue;
      }
      size_t w0 = i;
      while (i < len) {
        c = tpl_utf8_decode(p + i, len - i, &adv);
        if (tpl_is_space(c)) break;
        i += adv;
      }
      ranges[2 * n_words] = w0;
      ranges[2 * n_words + 1] = i;
      n_words++;
    }
    if (maxsplit < 0 || (uint64_t)maxsplit >= n_words) {
      for (size_t w = 0; w < n_words; w++)
        tpl_list_push(ctx, out.u.list,
                      tpl_str(p + ranges[2 * w], ranges[2 * w + 1] - ranges[2 * w]));
      return out;
    }
    /* limited: the remainder runs to the end (split) or from the start
     * (rsplit) of the string, whitespace included */
    size_t k = (size_t)maxsplit;
    if (!from_right) {
      for (size_t w = 0; w < k; w++)
        tpl_list_push(ctx, out.u.list,
                      tpl_str(p + ranges[2 * w], ranges[2 * w + 1] - ranges[2 * w]));
      size_t r0 = ranges[2 * k], r1 = len;
      tpl_list_push(ctx, out.u.list, tpl_str(p + r0, r1 - r0));
    } else {
      size_t first_kept = n_words - k;
      size_t r0 = 0, r1 = ranges[2 * (first_kept - 1) + 1];
      tpl_list_push(ctx, out.u.list, tpl_str(p + r0, r1 - r0));
      for (size_t w = first_kept; w < n_words; w++)
        tpl_list_push(ctx, out.u.list,
                      tpl_str(p + ranges[2 * w], ranges[2 * w + 1] - ranges[2 * w]));
    }
    return out;
  }
  size_t sl;
  const char *sep = need_str(ctx, sepv, "separator", &sl);
  if (sl == 0) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "empty separator");
  if (!from_right) {
    size_t i = 0;
    int64_t done = 0;
    for (;;) {
      const char *hit = (maxsplit < 0 || done < maxsplit) ? memmem(p + i, len - i, sep, sl) : NULL;
      if (!hit) {
        tpl_list_push(ctx, out.u.list, tpl_str(p + i, len - i));
        return out;
      }
      size_t h = (size_t)(hit - p);
      tpl_list_push(ctx, out.u.list, tpl_str(p + i, h - i));
      i = h + sl;
      done++;
    }
  }
  /* rsplit: collect from the right, then reverse */
  tpl_value rev = tpl_new_list(ctx, 0);
  size_t end = len;
  int64_t done = 0;
  for (;;) {
    size_t h = (size_t)-1;
    if ((maxsplit < 0 || done < maxsplit) && end >= sl)
      for (size_t k = end - sl + 1; k-- > 0;)
        if (memcmp(p + k, sep, sl) == 0) {
          h = k;
          break;
        }
    if (h == (size_t)-1) {
      tpl_list_push(ctx, rev.u.list, tpl_str(p, end));
      break;
    }
    tpl_list_push(ctx, rev.u.list, tpl_str(p + h + sl, end - h - sl));
    end = h;
    done++;
  }
  for (size_t k = rev.u.list->n; k-- > 0;)
    tpl_list_push(ctx, out.u.list, rev.u.list->items[k]);
  return out;
}

static tpl_value str_replace(tpl_ctx *ctx, tpl_value *s, tpl_value *oldv, tpl_value *newv,
                             tpl_value *countv) {
  size_t ol, nl;
  const char *old = need_str(ctx, oldv, "replace old", &ol);
  const char *nw = need_str(ctx, newv, "replace new", &nl);
  int64_t count = countv && countv->kind != V_NONE ? need_int(ctx, countv, "replace count") : -1;
  const char *p = s->u.s.p;
  size_t len = s->u.s.len;
  tpl_buf b = {0};
  tpl_charge(ctx, len / 32);
  if (ol == 0) { /* Python inserts `new` between every character */
    size_t i = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
      tpl_buf_append(ctx, &b, nw, nl);
      done++;
      if (i >= len) break;
      size_t adv = tpl_utf8_offset(p + i, len - i, 1);
      tpl_buf_append(ctx, &b, p + i, adv);
      i += adv;
    }
    tpl_buf_append(ctx, &b, p + i, len - i);
    return buf_value(&b);
  }
  size_t i = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const char *hit = memmem(p + i, len - i, old, ol);
    if (!hit) break;
    size_t h = (size_t)(hit - p);
    tpl_buf_append(ctx, &b, p + i, h - i);
    tpl_buf_append(ctx, &b, nw, nl);
    i = h + ol;
    done++;
  }
  tpl_buf_append(ctx, &b, p + i, len - i);
  return buf_value(&b);
}

static int64_t str_find(tpl_ctx *ctx, tpl_value *s, tpl_value *subv, bool rev) {
  size_t sl;
  const char *sub = need_str(ctx, subv, "substring", &sl);
  const char *p = s->u.s.p;
  size_t len = s->u.s.len;
  tpl_charge(ctx, len / 64);
  size_t at = (size_t)-1;
  if (!rev) {
    const char *hit = memmem(p, len, sub, sl);
    if (hit) at = (size_t)(hit - p);
  } else if (sl <= len) {
    for (size_t k = len - sl + 1; k-- > 0;)
      if (memcmp(p + k, sub, sl) == 0) {
        at = k;
        break;
      }
  }
  if (at == (size_t)-1) return -1;
  return (int64_t)tpl_utf8_count(p, at); /* a code point index */
}

static int64_t str_count(tpl_ctx *ctx, tpl_value *s, tpl_value *subv) {
  size_t sl;
  const char *sub = need_str(ctx, subv, "substring", &sl);
  tpl_charge(ctx, s->u.s.len / 64);
  if (sl == 0) return (int64_t)tpl_utf8_count(s->u.s.p, s->u.s.len) + 1;
  int64_t n = 0;
  size_t i = 0;
  const char *hit;
  while ((hit = memmem(s->u.s.p + i, s->u.s.len - i, sub, sl)) != NULL) {
    n++;
    i = (size_t)(hit - s->u.s.p) + sl;
  }
  return n;
}

static bool str_affix(tpl_ctx *ctx, tpl_value *s, tpl_value *affix, bool end) {
  if (affix->kind == V_LIST && affix->u.list->tuple) {
    for (size_t i = 0; i < affix->u.list->n; i++)
      if (str_affix(ctx, s, &affix->u.list->items[i], end)) return true;
    return false;
  }
  size_t al;
  const char *a = need_str(ctx, affix, end ? "endswith argument" : "startswith argument", &al);
  if (al > s->u.s.len) return false;
  return memcmp(end ? s->u.s.p + s->u.s.len - al : s->u.s.p, a, al) == 0;
}

/* str.islower / isupper: at least one cased character and no opposite case */
static bool str_is_case(tpl_value *s, bool lower) {
  bool cased = false;
  size_t i = 0;
  while (i < s->u.s.len) {
    size_t adv;
    uint32_t c = tpl_utf8_decode(s->u.s.p + i, s->u.s.len - i, &adv);
    i += adv;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    if (cat == UTF8PROC_CATEGORY_LL) {
      if (!lower) return false;
      cased = true;
    } else if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) {
      if (lower) return false;
      cased = true;
    }
  }
  return cased;
}

static bool str_all(tpl_value *s, int kind) { /* 0 digit, 1 alpha, 2 alnum, 3 space */
  if (s->u.s.len == 0) return false;
  size_t i = 0;
  while (i < s->u.s.len) {
    size_t adv;
    uint32_t c = tpl_utf8_decode(s->u.s.p + i, s->u.s.len - i, &adv);
    i += adv;
    utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
    bool digit = cat == UTF8PROC_CATEGORY_ND;
    bool alpha = cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO;
    bool ok = kind == 0   ? digit
              : kind == 1 ? alpha
              : kind == 2 ? (digit || alpha)
                          : tpl_is_space(c);
    if (!ok) return false;
  }
  return true;
}

/* ---- iteration, attributes, items ------------------------------------------ */

tpl_list *tpl_iterate(tpl_ctx *ctx, tpl_value *v) {
  switch (v->kind) {
  case V_LIST:
    if (v->u.list->deferred_error)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%s", v->u.list->deferred_error);
    return v->u.list;
  case V_DICT: {
    tpl_list *l = tpl_new_list(ctx, v->u.dict->n).u.list;
    for (size_t i = 0; i < v->u.dict->n; i++)
      tpl_list_push(ctx, l, v->u.dict->keys[i]);
    return l;
  }
  case V_STR: {
    tpl_list *l = tpl_new_list(ctx, 0).u.list;
    size_t i = 0;
    tpl_charge(ctx, v->u.s.len / 16);
    while (i < v->u.s.len) {
      size_t adv = tpl_utf8_offset(v->u.s.p + i, v->u.s.len - i, 1);
      tpl_list_push(ctx, l, tpl_str(v->u.s.p + i, adv));
      i += adv;
    }
    return l;
  }
  case V_UNDEF: return tpl_new_list(ctx, 0).u.list;
  case V_LOOP: return v->u.loop->items;
  default: tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "'%s' object is not iterable", tpl_type_name(v));
  }
}

static const char *const str_methods[] = {
    "startswith", "endswith",   "strip",     "lstrip",     "rstrip",       "split",
    "rsplit",     "splitlines", "upper",     "lower",      "title",        "capitalize",
    "replace",    "find",       "rfind",     "index",      "rindex",       "count",
    "join",       "isdigit",    "isalpha",   "isalnum",    "isspace",      "islower",
    "isupper",    "format",     "center",    "swapcase",   "zfill",        "casefold",
    "ljust",      "rjust",      "partition", "rpartition", "removeprefix", "removesuffix",
    "expandtabs", "isnumeric",  "isdecimal", "istitle",    "encode",       NULL};
static const char *const dict_methods[] = {"items", "keys", "values", "get", "copy", NULL};
static const char *const dict_mutators[] = {"pop",    "popitem", "setdefault",
                                            "update", "clear",   NULL};
static const char *const list_methods[] = {"count", "index", "copy", NULL};
static const char *const list_mutators[] = {"append",  "extend", "insert", "pop", "remove",
                                            "reverse", "sort",   "clear",  NULL};

bool tpl_has_method(const tpl_value *obj, const char *name) {
  switch (obj->kind) {
  case V_STR: return in_set(name, str_methods);
  case V_DICT: return in_set(name, dict_methods);
  case V_LIST: return in_set(name, list_methods);
  default: return false;
  }
}

static tpl_value bound(tpl_ctx *ctx, tpl_value *obj, const char *name) {
  tpl_value m = {.kind = V_METHOD};
  m.u.m.self = tpl_alloc(&ctx->arena, sizeof(tpl_value));
  *m.u.m.self = *obj;
  m.u.m.name = name;
  return m;
}

static tpl_value missing(tpl_ctx *ctx, tpl_value *obj, const char *fmt, const char *name) {
  size_t len = strlen(name) + 80;
  char *desc = tpl_alloc(&ctx->arena, len);
  snprintf(desc, len, fmt, tpl_type_name(obj), name);
  return tpl_undef(desc);
}

static tpl_value loop_attr(tpl_ctx *ctx, tpl_value *obj, const char *name) {
  tpl_loop *l = obj->u.loop;
  size_t n = l->items->n, i = l->index0;
  if (streq(name, "index")) return tpl_int((int64_t)i + 1);
  if (streq(name, "index0")) return tpl_int((int64_t)i);
  if (streq(name, "revindex")) return tpl_int((int64_t)(n - i));
  if (streq(name, "revindex0")) return tpl_int((int64_t)(n - i - 1));
  if (streq(name, "first")) return tpl_bool(i == 0);
  if (streq(name, "last")) return tpl_bool(i + 1 == n);
  if (streq(name, "length")) return tpl_int((int64_t)n);
  if (streq(name, "depth")) return tpl_int(1);
  if (streq(name, "depth0")) return tpl_int(0);
  if (streq(name, "previtem"))
    return i > 0 ? l->items->items[i - 1] : tpl_undef("there is no previous item");
  if (streq(name, "nextitem"))
    return i + 1 < n ? l->items->items[i + 1] : tpl_undef("there is no next item");
  if (streq(name, "cycle")) return bound(ctx, obj, "cycle");
  return missing(ctx, obj, "'%s object' has no attribute '%s'", name);
}

tpl_value tpl_getattr(tpl_ctx *ctx, tpl_value *obj, const char *name) {
  tpl_charge(ctx, 1 + ((obj->kind == V_DICT || obj->kind == V_NS) ? obj->u.dict->n / 16 : 0));
  switch (obj->kind) {
  case V_UNDEF: tpl_undefined_error(ctx, obj);
  case V_DICT:
    if (in_set(name, dict_methods)) return bound(ctx, obj, name);
    if (in_set(name, dict_mutators))
      return missing(ctx, obj, "access to attribute '%2$s' of '%1$s' object is unsafe", name);
    {
      tpl_value *v = tpl_dict_get_str(obj->u.dict, name, strlen(name));
      if (v) return *v;
    }
    return missing(ctx, obj, "'%s object' has no attribute '%s'", name);
  case V_NS: {
    tpl_value *v = tpl_dict_get_str(obj->u.dict, name, strlen(name));
    if (v) return *v;
    return missing(ctx, obj, "'%s object' has no attribute '%s'", name);
  }
  case V_STR:
    if (in_set(name, str_methods)) return bound(ctx, obj, name);
    break;
  case V_LIST:
    if (obj->u.list->iterator) break;
    if (in_set(name, list_methods)) return bound(ctx, obj, name);
    if (in_set(name, list_mutators))
      return missing(ctx, obj, "access to attribute '%2$s' of '%1$s' object is unsafe", name);
    break;
  case V_LOOP: return loop_attr(ctx, obj, name);
  case V_MACRO:
    if (streq(name, "name")) return tpl_cstr(obj->u.macro->s);
    break;
  default: break;
  }
  return missing(ctx, obj, "'%s object' has no attribute '%s'", name);
}

tpl_value tpl_getitem(tpl_ctx *ctx, tpl_value *obj, tpl_value *key) {
  tpl_charge(ctx, 1);
  switch (obj->kind) {
  case V_UNDEF: tpl_undefined_error(ctx, obj);
  case V_DICT: {
    tpl_charge(ctx, obj->u.dict->n / 16);
    tpl_value *v = tpl_dict_get(obj->u.dict, *key);
    if (v) return *v;
    break;
  }
  case V_LIST:
    if (obj->u.list->iterator)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "'%s' object is not subscriptable",
               obj->u.list->iterator);
    if (key->kind == V_INT || key->kind == V_BOOL) {
      int64_t i = key->kind == V_INT ? key->u.i : key->u.b, n = (int64_t)obj->u.list->n;
      if (i < 0) i += n;
      if (i >= 0 && i < n) return obj->u.list->items[i];
      return missing(ctx, obj, "%s object has no element %s", "index");
    }
    break;
  case V_STR:
    if (key->kind == V_INT || key->kind == V_BOOL) {
      int64_t i = key->kind == V_INT ? key->u.i : key->u.b;
      int64_t n = (int64_t)tpl_utf8_count(obj->u.s.p, obj->u.s.len);
      tpl_charge(ctx, obj->u.s.len / 64);
      if (i < 0) i += n;
      if (i >= 0 && i < n) {
        size_t b0 = tpl_utf8_offset(obj->u.s.p, obj->u.s.len, (size_t)i);
        size_t adv = tpl_utf8_offset(obj->u.s.p + b0, obj->u.s.len - b0, 1);
        return tpl_str(obj->u.s.p + b0, adv);
      }
      return missing(ctx, obj, "%s object has no element %s", "index");
    }
    break;
  default: break;
  }
  /* jinja2 falls back to attribute lookup for string keys */
  if (key->kind == V_STR && obj->kind != V_DICT) {
    char *name = tpl_strdup(&ctx->arena, key->u.s.p, key->u.s.len);
    return tpl_getattr(ctx, obj, name);
  }
  if (key->kind == V_STR && obj->kind == V_DICT) {
    char *name = tpl_strdup(&ctx->arena, key->u.s.p, key->u.s.len);
    if (in_set(name, dict_methods)) return bound(ctx, obj, name);
    return missing(ctx, obj, "'%s object' has no attribute '%s'", name);
  }
  return tpl_undef("an item is undefined");
}

/* getattr along a dotted path ("a.b.0"), as jinja2's attribute= arguments */
static tpl_value get_path(tpl_ctx *ctx, tpl_value *obj, tpl_value *path) {
  size_t len;
  const char *p = need_str(ctx, path, "attribute", &len);
  tpl_value cur = *obj;
  size_t i = 0;
  while (i <= len) {
    size_t j = i;
    while (j < len && p[j] != '.')
      j++;
    bool digits = j > i;
    for (size_t k = i; k < j; k++)
      digits &= p[k] >= '0' && p[k] <= '9';
    if (digits && j - i < 18) {
      tpl_value key = tpl_int(strtoll(tpl_strdup(&ctx->arena, p + i, j - i), NULL, 10));
      cur = tpl_getitem(ctx, &cur, &key);
    } else {
      tpl_value key = tpl_str(p + i, j - i);
      cur = tpl_getitem(ctx, &cur, &key);
    }
    if (j >= len) break;
    i = j + 1;
    if (cur.kind == V_UNDEF) break;
  }
  return cur;
}

/* ---- sorting ------------------------------------------------------------------ */

typedef struct sort_key {
  tpl_value key;
  tpl_value item;
} sort_key;

static tpl_value lowered(tpl_ctx *ctx, tpl_value v, bool case_sensitive) {
  if (!case_sensitive && v.kind == V_STR) return str_case(ctx, &v, CASE_LOWER);
  return v;
}

/* stable merge sort by key (Python's sort is stable) */
static void merge_sort(tpl_ctx *ctx, sort_key *a, sort_key *tmp, size_t n, bool reverse) {
  if (n < 2) return;
  size_t h = n / 2;
  merge_sort(ctx, a, tmp, h, reverse);
  merge_sort(ctx, a + h, tmp, n - h, reverse);
  size_t i = 0, j = h, k = 0;
  while (i < h && j < n) {
    tpl_charge(ctx, 1);
    int c = tpl_compare(ctx, &a[j].key, &a[i].key);
    bool take_right = reverse ? c > 0 : c < 0;
    tmp[k++] = take_right ? a[j++] : a[i++];
  }
  while (i < h)
    tmp[k++] = a[i++];
  while (j < n)
    tmp[k++] = a[j++];
  memcpy(a, tmp, n * sizeof(*a));
}

static tpl_value sorted(tpl_ctx *ctx, sort_key *keys, size_t n, bool reverse) {
  sort_key *tmp = tpl_alloc(&ctx->arena, (n ? n : 1) * sizeof(sort_key));
  merge_sort(ctx, keys, tmp, n, reverse);
  tpl_value out = tpl_new_list(ctx, n);
  for (size_t i = 0; i < n; i++)
    tpl_list_push(ctx, out.u.list, keys[i].item);
  return out;
}

static tpl_value make_pair(tpl_ctx *ctx, tpl_value a, tpl_value b) {
  tpl_value t = tpl_new_list(ctx, 2);
  t.u.list->tuple = true;
  tpl_list_push(ctx, t.u.list, a);
  tpl_list_push(ctx, t.u.list, b);
  return t;
}

/* ---- numbers --------------------------------------------------------------- */

static bool parse_int_text(const char *p, size_t len, int base, int64_t *out) {
  char buf[80];
  size_t n = 0;
  size_t i = 0;
  while (i < len && (p[i] == ' ' || (p[i] >= '\t' && p[i] <= '\r')))
    i++;
  while (len > i && (p[len - 1] == ' ' || (p[len - 1] >= '\t' && p[len - 1] <= '\r')))
    len--;
  if (i == len) return false;
  for (; i < len; i++) {
    if (p[i] == '_') continue;
    if (n >= sizeof(buf) - 1) return false;
    buf[n++] = p[i];
  }
  buf[n] = '\0';
  char *end;
  errno = 0;
  long long v = strtoll(buf, &end, base);
  if (*end != '\0' || end == buf || errno) return false;
  *out = v;
  return true;
}

static bool parse_float_text(const char *p, size_t len, double *out) {
  char buf[80];
  while (len && (*p == ' ' || (*p >= '\t' && *p <= '\r')))
    p++, len--;
  while (len && (p[len - 1] == ' ' || (p[len - 1] >= '\t' && p[len - 1] <= '\r')))
    len--;
  if (len == 0 || len >= sizeof(buf)) return false;
  memcpy(buf, p, len);
  buf[len] = '\0';
  if (strchr(buf, 'x') || strchr(buf, 'X')) return false; /* no hex floats in Python */
  char *end;
  double v = strtod(buf, &end);
  if (*end != '\0') return false;
  *out = v;
  return true;
}

static tpl_value to_int(tpl_ctx *ctx, tpl_value *v, tpl_value dflt, int base) {
  switch (v->kind) {
  case V_INT: return *v;
  case V_BOOL: return tpl_int(v->u.b);
  case V_FLOAT:
    if (!isfinite(v->u.f) || fabs(v->u.f) >= 9.2e18) return dflt;
    return tpl_int((int64_t)v->u.f);
  case V_STR: {
    int64_t i;
    if (parse_int_text(v->u.s.p, v->u.s.len, base, &i)) return tpl_int(i);
    double f;
    if (base == 10 && parse_float_text(v->u.s.p, v->u.s.len, &f) && isfinite(f) && fabs(f) < 9.2e18)
      return tpl_int((int64_t)f);
    return dflt;
  }
  default: return dflt;
  }
}

static tpl_value to_float(tpl_value *v, tpl_value dflt) {
  switch (v->kind) {
  case V_INT: return tpl_float((double)v->u.i);
  case V_BOOL: return tpl_float(v->u.b);
  case V_FLOAT: return *v;
  case V_STR: {
    double f;
    if (parse_float_text(v->u.s.p, v->u.s.len, &f)) return tpl_float(f);
    return dflt;
  }
  default: return dflt;
  }
}

/* ---- printf-style formatting ----------------------------------------------- */

tpl_value tpl_printf(tpl_ctx *ctx, tpl_value *fmtv, tpl_value *args, tpl_args *kw) {
  const char *f = fmtv->u.s.p;
  size_t len = fmtv->u.s.len, next = 0;
  tpl_value *items = NULL, *mapping = NULL, kwmap;
  size_t n_items = 0;
  if (kw) {
    if (kw->n_kw) {
      kwmap = tpl_new_dict(ctx, kw->n_kw);
      for (size_t i = 0; i < kw->n_kw; i++)
        tpl_dict_set(ctx, kwmap.u.dict, tpl_cstr(kw->kw_names[i]), kw->kw[i]);
      mapping = &kwmap;
    } else {
      items = kw->pos;
      n_items = kw->n_pos;
    }
  } else if (args->kind == V_LIST && args->u.list->tuple) {
    items = args->u.list->items;
    n_items = args->u.list->n;
  } else {
    if (args->kind == V_DICT) mapping = args;
    items = args;
    n_items = 1;
  }
  tpl_buf b = {0};
  for (size_t i = 0; i < len; i++) {
    if (f[i] != '%') {
      tpl_buf_putc(ctx, &b, f[i]);
      continue;
    }
    if (++i >= len) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "incomplete format");
    tpl_value *v = NULL;
    if (f[i] == '(') {
      size_t e = i + 1;
      while (e < len && f[e] != ')')
        e++;
      if (e >= len || mapping == NULL || mapping->kind != V_DICT)
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "format requires a mapping");
      v = tpl_dict_get_str(mapping->u.dict, f + i + 1, e - i - 1);
      if (v == NULL)
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "format: missing key '%.*s'", (int)(e - i - 1),
                 f + i + 1);
      i = e + 1;
    }
    char spec[32];
    size_t sn = 0;
    spec[sn++] = '%';
    while (i < len && strchr("-+ #0", f[i]) && sn < 8)
      spec[sn++] = f[i++];
    int width = 0, prec = -1;
    while (i < len && f[i] >= '0' && f[i] <= '9' && width < 10000)
      width = width * 10 + (f[i++] - '0');
    if (i < len && f[i] == '.') {
      prec = 0;
      i++;
      while (i < len && f[i] >= '0' && f[i] <= '9' && prec < 1000)
        prec = prec * 10 + (f[i++] - '0');
    }
    while (i < len && (f[i] == 'h' || f[i] == 'l' || f[i] == 'L'))
      i++;
    if (i >= len) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "incomplete format");
    char conv = f[i];
    if (conv == '%') {
      tpl_buf_putc(ctx, &b, '%');
      continue;
    }
    if (v == NULL) {
      if (next >= n_items)
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "not enough arguments for format string");
      v = &items[next++];
    }
    bool left = memchr(spec, '-', sn) != NULL;
    if (conv == 's' || conv == 'r' || conv == 'a') {
      tpl_buf tmp = {0};
      tpl_write_str(ctx, &tmp, v, conv != 's');
      size_t tl = tmp.len;
      if (prec >= 0) tl = tpl_utf8_offset(tmp.data ? tmp.data : "", tmp.len, (size_t)prec);
      size_t chars = tpl_utf8_count(tmp.data ? tmp.data : "", tl);
      if (!left)
        for (size_t k = chars; k < (size_t)width; k++)
          tpl_buf_putc(ctx, &b, ' ');
      tpl_buf_append(ctx, &b, tmp.data ? tmp.data : "", tl);
      if (left)
        for (size_t k = chars; k < (size_t)width; k++)
          tpl_buf_putc(ctx, &b, ' ');
      continue;
    }
    char out[1200];
    if (strchr("diuxXoc", conv)) {
      if (v->kind != V_INT && v->kind != V_BOOL && v->kind != V_FLOAT)
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%%%c format: a number is required, not %s", conv,
                 tpl_type_name(v));
      long long x = v->kind == V_FLOAT ? (long long)v->u.f : v->kind == V_INT ? v->u.i : v->u.b;
      if (conv == 'c') {
        tpl_utf8_encode(ctx, &b, (uint32_t)x);
        continue;
      }
      snprintf(spec + sn, sizeof(spec) - sn, "*.*ll%c", conv == 'u' || conv == 'i' ? 'd' : conv);
      snprintf(out, sizeof(out), spec, width, prec < 0 ? 1 : prec, x);
    } else if (strchr("eEfFgG", conv)) {
      if (v->kind != V_INT && v->kind != V_BOOL && v->kind != V_FLOAT)
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%%%c format: a number is required, not %s", conv,
                 tpl_type_name(v));
      double x = v->kind == V_FLOAT ? v->u.f : v->kind == V_INT ? (double)v->u.i : v->u.b;
      snprintf(spec + sn, sizeof(spec) - sn, "*.*%c", conv);
      snprintf(out, sizeof(out), spec, width, prec < 0 ? 6 : prec, x);
    } else {
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "unsupported format character '%c'", conv);
    }
    tpl_buf_append(ctx, &b, out, strlen(out));
  }
  if (mapping == NULL && next < n_items)
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "not all arguments converted during string formatting");
  return buf_value(&b);
}

/* ---- tests ------------------------------------------------------------------- */

static bool run_test(tpl_ctx *ctx, const char *name, tpl_value *v, tpl_args *a) {
  tpl_value *x = arg(a, 0, NULL);
  if (streq(name, "defined")) return v->kind != V_UNDEF;
  if (streq(name, "undefined")) return v->kind == V_UNDEF;
  if (streq(name, "none")) return v->kind == V_NONE;
  if (streq(name, "boolean")) return v->kind == V_BOOL;
  if (streq(name, "true")) return v->kind == V_BOOL && v->u.b;
  if (streq(name, "false")) return v->kind == V_BOOL && !v->u.b;
  if (streq(name, "string")) return v->kind == V_STR;
  if (streq(name, "number")) return v->kind == V_INT || v->kind == V_FLOAT || v->kind == V_BOOL;
  if (streq(name, "integer")) return v->kind == V_INT;
  if (streq(name, "float")) return v->kind == V_FLOAT;
  if (streq(name, "mapping")) return v->kind == V_DICT;
  if (streq(name, "iterable"))
    return v->kind == V_STR || v->kind == V_LIST || v->kind == V_DICT || v->kind == V_UNDEF ||
           v->kind == V_LOOP;
  if (streq(name, "sequence"))
    return v->kind == V_STR || (v->kind == V_LIST && !v->u.list->iterator) || v->kind == V_DICT ||
           v->kind == V_UNDEF;
  if (streq(name, "callable"))
    return v->kind == V_MACRO || v->kind == V_FUNC || v->kind == V_METHOD;
  if (streq(name, "escaped")) return false;
  if (streq(name, "filter"))
    return v->kind == V_STR && tpl_known_filter(tpl_strdup(&ctx->arena, v->u.s.p, v->u.s.len));
  if (streq(name, "test"))
    return v->kind == V_STR && tpl_known_test(tpl_strdup(&ctx->arena, v->u.s.p, v->u.s.len));
  if (streq(name, "lower") || streq(name, "upper")) {
    tpl_value s = tpl_to_str(ctx, v);
    tpl_charge(ctx, s.u.s.len / 16);
    return str_is_case(&s, streq(name, "lower"));
  }
  if (x == NULL) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "test '%s' needs an argument", name);
  if (streq(name, "eq") || streq(name, "equalto")) return tpl_equal(ctx, v, x);
  if (streq(name, "ne")) return !tpl_equal(ctx, v, x);
  if (streq(name, "lt") || streq(name, "lessthan")) return tpl_compare(ctx, v, x) < 0;
  if (streq(name, "le")) return tpl_compare(ctx, v, x) <= 0;
  if (streq(name, "gt") || streq(name, "greaterthan")) return tpl_compare(ctx, v, x) > 0;
  if (streq(name, "ge")) return tpl_compare(ctx, v, x) >= 0;
  if (streq(name, "in")) return tpl_contains(ctx, x, v);
  if (streq(name, "sameas")) {
    if (v->kind != x->kind) return false;
    if (v->kind == V_LIST) return v->u.list == x->u.list;
    if (v->kind == V_DICT || v->kind == V_NS) return v->u.dict == x->u.dict;
    if (v->kind == V_STR) return v->u.s.p == x->u.s.p && v->u.s.len == x->u.s.len;
    return tpl_equal(ctx, v, x);
  }
  if (streq(name, "divisibleby")) {
    tpl_value r = tpl_binop(ctx, OP_MOD, v, x);
    return !tpl_truthy(&r);
  }
  return false;
}

static bool test_even_odd(tpl_ctx *ctx, const char *name, tpl_value *v) {
  tpl_value two = tpl_int(2);
  tpl_value r = tpl_binop(ctx, OP_MOD, v, &two);
  bool even = !tpl_truthy(&r);
  return streq(name, "even") ? even : !even;
}

bool tpl_apply_test(tpl_ctx *ctx, const char *name, tpl_value *v, tpl_args *a) {
  if (streq(name, "even") || streq(name, "odd")) return test_even_odd(ctx, name, v);
  return run_test(ctx, name, v, a);
}

/* select/reject and selectattr/rejectattr: the test is args from `first` on */
static bool select_test(tpl_ctx *ctx, tpl_value *item, tpl_args *a, size_t first) {
  if (a->n_pos <= first) return tpl_truthy(item);
  size_t tl;
  const char *tn = need_str(ctx, &a->pos[first], "test name", &tl);
  char *name = tpl_strdup(&ctx->arena, tn, tl);
  /* the operator spellings jinja2 accepts as test names */
  if (streq(name, "=="))
    name = "eq";
  else if (streq(name, "!="))
    name = "ne";
  else if (streq(name, "<"))
    name = "lt";
  else if (streq(name, "<="))
    name = "le";
  else if (streq(name, ">"))
    name = "gt";
  else if (streq(name, ">="))
    name = "ge";
  if (!tpl_known_test(name)) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "no test named '%s'", name);
  tpl_args rest = {a->pos + first + 1, a->n_pos - first - 1, a->kw_names, a->kw, a->n_kw};
  return tpl_apply_test(ctx, name, item, &rest);
}

/* ---- filters ------------------------------------------------------------------ */

static void write_indented(tpl_ctx *ctx, tpl_buf *b, tpl_value *s, const char *ind, size_t il,
                           bool first, bool blank) {
  /* jinja2: the lines of (s + "\n"), joined by "\n" + indent (empty lines
   * stay empty unless blank=True); the first line is indented only with
   * first=True */
  if (first) tpl_buf_append(ctx, b, ind, il);
  tpl_buf tmp = {0};
  tpl_buf_append(ctx, &tmp, s->u.s.p, s->u.s.len);
  tpl_buf_putc(ctx, &tmp, '\n');
  const char *p = tmp.data;
  size_t len = tmp.len, i = 0, line_no = 0;
  while (i < len) {
    size_t e = i;
    while (e < len && p[e] != '\n' && p[e] != '\r')
      e++;
    if (line_no > 0) {
      tpl_buf_putc(ctx, b, '\n');
      if (blank || e > i) tpl_buf_append(ctx, b, ind, il);
    }
    tpl_buf_append(ctx, b, p + i, e - i);
    line_no++;
    if (e < len && p[e] == '\r' && e + 1 < len && p[e + 1] == '\n') e++;
    i = e + 1;
  }
}

static tpl_value filter_join(tpl_ctx *ctx, tpl_value *v, tpl_args *a) {
  tpl_value *sepv = arg(a, 0, "d");
  tpl_value *attr = arg(a, 1, "attribute");
  size_t sl = 0;
  const char *sep = "";
  tpl_value sep_str;
  if (sepv) {
    sep_str = tpl_to_str(ctx, sepv);
    sep = sep_str.u.s.p;
    sl = sep_str.u.s.len;
  }
  tpl_list *items = tpl_iterate(ctx, v);
  tpl_buf b = {0};
  for (size_t i = 0; i < items->n; i++) {
    if (i) tpl_buf_append(ctx, &b, sep, sl);
    tpl_value it = items->items[i];
    if (attr) it = get_path(ctx, &it, attr);
    tpl_write_str(ctx, &b, &it, false);
  }
  return buf_value(&b);
}

static tpl_value filter_tojson(tpl_ctx *ctx, tpl_value *v, tpl_args *a) {
  tpl_json_opts o = {0};
  tpl_value *ea = arg(a, 0, "ensure_ascii"), *indent = arg(a, 1, "indent");
  tpl_value *seps = arg(a, 2, "separators"), *sk = arg(a, 3, "sort_keys");
  o.ensure_ascii = opt_bool(ea, false);
  o.sort_keys = opt_bool(sk, false);
  char spaces[256];
  if (indent && indent->kind != V_NONE) {
    if (indent->kind == V_STR) {
      o.indent = indent->u.s.p;
      o.indent_len = indent->u.s.len;
    } else {
      int64_t n = need_int(ctx, indent, "tojson indent");
      if (n < 0) n = 0;
      if (n > (int64_t)sizeof(spaces)) tpl_fail(ctx, QIAO_LIMIT, "tojson indent is too large");
      memset(spaces, ' ', (size_t)n);
      o.indent = spaces;
      o.indent_len = (size_t)n;
    }
  }
  o.item_sep = o.indent ? "," : ", ";
  o.key_sep = ": ";
  if (seps && seps->kind != V_NONE) {
    if (seps->kind != V_LIST || seps->u.list->n != 2)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "tojson separators must be a pair of strings");
    o.item_sep = need_str(ctx, &seps->u.list->items[0], "item separator", &o.item_sep_len);
    o.key_sep = need_str(ctx, &seps->u.list->items[1], "key separator", &o.key_sep_len);
  } else {
    o.item_sep_len = strlen(o.item_sep);
    o.key_sep_len = strlen(o.key_sep);
  }
  tpl_buf b = {0};
  tpl_write_json(ctx, &b, v, &o, 0);
  return buf_value(&b);
}

static tpl_value filter_round(tpl_ctx *ctx, tpl_value *v, tpl_args *a) {
  tpl_value *pv = arg(a, 0, "precision"), *mv = arg(a, 1, "method");
  int64_t prec = pv ? need_int(ctx, pv, "round precision") : 0;
  const char *method = "common";
  size_t ml = 6;
  if (mv) method = need_str(ctx, mv, "round method", &ml);
  if (v->kind != V_INT && v->kind != V_FLOAT && v->kind != V_BOOL)
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "round needs a number, not %s", tpl_type_name(v));
  double x = v->kind == V_FLOAT ? v->u.f : v->kind == V_INT ? (double)v->u.i : v->u.b;
  if (prec < -300 || prec > 300)
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "round precision out of range");
  if (ml == 6 && memcmp(method, "common", 6) == 0) {
    if (v->kind != V_FLOAT) { /* round(int, n) stays an int */
      int64_t i = v->kind == V_INT ? v->u.i : v->u.b;
      if (prec >= 0) return tpl_int(i);
      if (prec < -18) return tpl_int(0);
      int64_t m = 1;
      for (int64_t k = 0; k < -prec; k++)
        m *= 10;
      int64_t q = i / m, r = i % m;
      if (r < 0) {
        r += m;
        q--;
      }
      if (2 * r > m || (2 * r == m && (q & 1))) q++; /* half to even */
      int64_t out;
      if (__builtin_mul_overflow(q, m, &out))
        tpl_fail(ctx, QIAO_UNSUPPORTED, "integer overflow in round");
      return tpl_int(out);
    }
    if (!isfinite(x)) return tpl_float(x);
    if (prec >= 0) { /* Python rounds the exact binary value, half to even */
      char buf[400];
      snprintf(buf, sizeof(buf), "%.*f", (int)prec, x);
      return tpl_float(strtod(buf, NULL));
    }
    double m = pow(10.0, (double)-prec);
    return tpl_float(nearbyint(x / m) * m);
  }
  double m = pow(10.0, (double)prec);
  if (ml == 4 && memcmp(method, "ceil", 4) == 0) return tpl_float(ceil(x * m) / m);
  if (ml == 5 && memcmp(method, "floor", 5) == 0) return tpl_float(floor(x * m) / m);
  tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "round method must be 'common', 'ceil' or 'floor'");
}

static tpl_value filter_escape(tpl_ctx *ctx, tpl_value *v) {
  tpl_value s = tpl_to_str(ctx, v);
  tpl_buf b = {0};
  for (size_t i = 0; i < s.u.s.len; i++) {
    char c = s.u.s.p[i];
    switch (c) {
    case '&': tpl_buf_append(ctx, &b, "&amp;", 5); break;
    case '<': tpl_buf_append(ctx, &b, "&lt;", 4); break;
    case '>': tpl_buf_append(ctx, &b, "&gt;", 4); break;
    case '"': tpl_buf_append(ctx, &b, "&#34;", 5); break;
    case '\'': tpl_buf_append(ctx, &b, "&#39;", 5); break;
    default: tpl_buf_putc(ctx, &b, c);
    }
  }
  return buf_value(&b);
}

static int64_t length_of(tpl_ctx *ctx, tpl_value *v) {
  switch (v->kind) {
  case V_STR:
    tpl_charge(ctx, v->u.s.len / 64);
    return (int64_t)tpl_utf8_count(v->u.s.p, v->u.s.len);
  case V_LIST:
    if (v->u.list->iterator)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "object of type '%s' has no len()", v->u.list->iterator);
    return (int64_t)v->u.list->n;
  case V_DICT: return (int64_t)v->u.dict->n;
  case V_UNDEF: return 0;
  case V_LOOP: return (int64_t)v->u.loop->items->n;
  default:
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "object of type '%s' has no len()", tpl_type_name(v));
  }
}

static tpl_value center(tpl_ctx *ctx, tpl_value *s, int64_t width) {
  tpl_charge(ctx, s->u.s.len / 64);
  int64_t n = (int64_t)tpl_utf8_count(s->u.s.p, s->u.s.len);
  if (width <= n) return *s;
  if (width > (int64_t)ctx->max_output) tpl_fail(ctx, QIAO_LIMIT, "center width is too large");
  int64_t pad = width - n, left = pad / 2 + (pad & width & 1);
  tpl_buf b = {0};
  for (int64_t i = 0; i < left; i++)
    tpl_buf_putc(ctx, &b, ' ');
  tpl_buf_append(ctx, &b, s->u.s.p, s->u.s.len);
  for (int64_t i = 0; i < pad - left; i++)
    tpl_buf_putc(ctx, &b, ' ');
  return buf_value(&b);
}

static tpl_value min_max(tpl_ctx *ctx, tpl_value *v, tpl_args *a, bool want_max) {
  bool cs = opt_bool(arg(a, 0, "case_sensitive"), false);
  tpl_value *attr = arg(a, 1, "attribute");
  tpl_list *items = tpl_iterate(ctx, v);
  if (items->n == 0) return tpl_undef("No aggregated item, sequence was empty.");
  size_t best = 0;
  tpl_value best_key = items->items[0];
  if (attr) best_key = get_path(ctx, &best_key, attr);
  best_key = lowered(ctx, best_key, cs);
  for (size_t i = 1; i < items->n; i++) {
    tpl_value k = items->items[i];
    if (attr) k = get_path(ctx, &k, attr);
    k = lowered(ctx, k, cs);
    int c = tpl_compare(ctx, &k, &best_key);
    if (want_max ? c > 0 : c < 0) {
      best = i;
      best_key = k;
    }
  }
  return items->items[best];
}

static tpl_value do_filter(tpl_ctx *ctx, const char *name, tpl_value *v, tpl_args *a) {
  tpl_charge(ctx, 1);
  if (streq(name, "length") || streq(name, "count")) return tpl_int(length_of(ctx, v));
  if (streq(name, "safe")) return tpl_to_str(ctx, v); /* Markup(value) is a string */
  if (streq(name, "string")) return tpl_to_str(ctx, v);
  if (streq(name, "default") || streq(name, "d")) {
    tpl_value *dv = arg(a, 0, "default_value");
    bool boolean = opt_bool(arg(a, 1, "boolean"), false);
    if (v->kind == V_UNDEF || (boolean && !tpl_truthy(v))) return dv ? *dv : tpl_str("", 0);
    return *v;
  }
  if (streq(name, "tojson")) return filter_tojson(ctx, v, a);
  if (streq(name, "join")) return filter_join(ctx, v, a);
  if (streq(name, "trim")) {
    tpl_value s = tpl_to_str(ctx, v);
    return str_strip(ctx, &s, arg(a, 0, "chars"), true, true);
  }
  if (streq(name, "upper") || streq(name, "lower")) {
    tpl_value s = tpl_to_str(ctx, v);
    return str_case(ctx, &s, streq(name, "upper") ? CASE_UPPER : CASE_LOWER);
  }
  if (streq(name, "title")) {
    tpl_value s = tpl_to_str(ctx, v);
    return str_title(ctx, &s, true);
  }
  if (streq(name, "capitalize")) {
    tpl_value s = tpl_to_str(ctx, v);
    return str_capitalize(ctx, &s);
  }
  if (streq(name, "replace")) {
    tpl_value s = tpl_to_str(ctx, v);
    tpl_value *o = arg(a, 0, "old"), *n = arg(a, 1, "new");
    if (!o || !n) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "replace needs old and new");
    tpl_value os = tpl_to_str(ctx, o), ns = tpl_to_str(ctx, n);
    return str_replace(ctx, &s, &os, &ns, arg(a, 2, "count"));
  }
  if (streq(name, "escape") || streq(name, "e") || streq(name, "forceescape"))
    return filter_escape(ctx, v);
  if (streq(name, "first") || streq(name, "last")) {
    bool first = streq(name, "first");
    if (v->kind == V_STR) {
      size_t n = tpl_utf8_count(v->u.s.p, v->u.s.len);
      if (n == 0) return tpl_undef("No first item, sequence was empty.");
      tpl_value idx = tpl_int(first ? 0 : -1);
      return tpl_getitem(ctx, v, &idx);
    }
    if (!first && v->kind == V_LIST && v->u.list->iterator)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "'%s' object is not reversible", v->u.list->iterator);
    tpl_list *items = tpl_iterate(ctx, v);
    if (items->n == 0)
      return tpl_undef(first ? "No first item, sequence was empty."
                             : "No last item, sequence was empty.");
    return items->items[first ? 0 : items->n - 1];
  }
  if (streq(name, "list")) {
    tpl_list *items = tpl_iterate(ctx, v);
    tpl_value out = tpl_new_list(ctx, items->n);
    for (size_t i = 0; i < items->n; i++)
      tpl_list_push(ctx, out.u.list, items->items[i]);
    return out;
  }
  if (streq(name, "items")) {
    if (v->kind == V_UNDEF) return tpl_new_list(ctx, 0);
    if (v->kind != V_DICT)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "can only get item pairs from a mapping, not %s",
               tpl_type_name(v));
    tpl_value out = tpl_new_list(ctx, v->u.dict->n);
    for (size_t i = 0; i < v->u.dict->n; i++)
      tpl_list_push(ctx, out.u.list, make_pair(ctx, v->u.dict->keys[i], v->u.dict->vals[i]));
    return out;
  }
  if (streq(name, "map")) {
    tpl_list *items = tpl_iterate(ctx, v);
    tpl_value out = tpl_new_list(ctx, items->n);
    tpl_value *attr = arg(a, SIZE_MAX, "attribute");
    if (attr) {
      tpl_value *dflt = arg(a, SIZE_MAX, "default");
      for (size_t i = 0; i < items->n; i++) {
        tpl_value x = get_path(ctx, &items->items[i], attr);
        if (x.kind == V_UNDEF && dflt) x = *dflt;
        tpl_list_push(ctx, out.u.list, x);
      }
      return out;
    }
    if (a->n_pos == 0)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "map needs a filter name or attribute=");
    size_t fl;
    const char *fn = need_str(ctx, &a->pos[0], "filter name", &fl);
    char *fname = tpl_strdup(&ctx->arena, fn, fl);
    if (!tpl_known_filter(fname))
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "no filter named '%s'", fname);
    tpl_args rest = {a->pos + 1, a->n_pos - 1, a->kw_names, a->kw, a->n_kw};
    for (size_t i = 0; i < items->n; i++)
      tpl_list_push(ctx, out.u.list, tpl_apply_filter(ctx, fname, &items->items[i], &rest));
    return out;
  }
  if (streq(name, "select") || streq(name, "reject") || streq(name, "selectattr") ||
      streq(name, "rejectattr")) {
    bool keep_if = name[0] == 's';
    bool by_attr = strstr(name, "attr") != NULL;
    if (by_attr && a->n_pos == 0)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%s needs an attribute", name);
    tpl_list *items = tpl_iterate(ctx, v);
    tpl_value out = tpl_new_list(ctx, 0);
    for (size_t i = 0; i < items->n; i++) {
      tpl_value x = items->items[i];
      if (by_attr) x = get_path(ctx, &x, &a->pos[0]);
      if (select_test(ctx, &x, a, by_attr ? 1 : 0) == keep_if)
        tpl_list_push(ctx, out.u.list, items->items[i]);
    }
    return out;
  }
  if (streq(name, "int")) {
    tpl_value *dv = arg(a, 0, "default"), *bv = arg(a, 1, "base");
    int64_t base = bv ? need_int(ctx, bv, "int base") : 10;
    if (base < 0 || base == 1 || base > 36) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "bad int base");
    return to_int(ctx, v, dv ? *dv : tpl_int(0), (int)base);
  }
  if (streq(name, "float")) {
    tpl_value *dv = arg(a, 0, "default");
    return to_float(v, dv ? *dv : tpl_float(0.0));
  }
  if (streq(name, "round")) return filter_round(ctx, v, a);
  if (streq(name, "abs")) {
    if (v->kind == V_INT) {
      if (v->u.i == INT64_MIN) tpl_fail(ctx, QIAO_UNSUPPORTED, "integer overflow in abs");
      return tpl_int(v->u.i < 0 ? -v->u.i : v->u.i);
    }
    if (v->kind == V_BOOL) return tpl_int(v->u.b);
    if (v->kind == V_FLOAT) return tpl_float(fabs(v->u.f));
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "bad operand type for abs(): '%s'", tpl_type_name(v));
  }
  if (streq(name, "unique")) {
    bool cs = opt_bool(arg(a, 0, "case_sensitive"), false);
    tpl_value *attr = arg(a, 1, "attribute");
    tpl_list *items = tpl_iterate(ctx, v);
    tpl_value out = tpl_new_list(ctx, 0), seen = tpl_new_list(ctx, 0);
    for (size_t i = 0; i < items->n; i++) {
      tpl_value k = items->items[i];
      if (attr) k = get_path(ctx, &k, attr);
      k = lowered(ctx, k, cs);
      if (tpl_contains(ctx, &seen, &k)) continue;
      tpl_list_push(ctx, seen.u.list, k);
      tpl_list_push(ctx, out.u.list, items->items[i]);
    }
    return out;
  }
  if (streq(name, "dictsort")) {
    bool cs = opt_bool(arg(a, 0, "case_sensitive"), false);
    tpl_value *by = arg(a, 1, "by");
    bool rev = opt_bool(arg(a, 2, "reverse"), false);
    if (v->kind != V_DICT) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "dictsort needs a mapping");
    bool by_value = false;
    if (by) {
      size_t bl;
      const char *bs = need_str(ctx, by, "dictsort by", &bl);
      if (bl == 5 && memcmp(bs, "value", 5) == 0)
        by_value = true;
      else if (!(bl == 3 && memcmp(bs, "key", 3) == 0))
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "You can only sort by either \"key\" or \"value\"");
    }
    size_t n = v->u.dict->n;
    sort_key *keys = tpl_alloc(&ctx->arena, (n ? n : 1) * sizeof(sort_key));
    for (size_t i = 0; i < n; i++) {
      keys[i].item = make_pair(ctx, v->u.dict->keys[i], v->u.dict->vals[i]);
      keys[i].key = lowered(ctx, by_value ? v->u.dict->vals[i] : v->u.dict->keys[i], cs);
    }
    return sorted(ctx, keys, n, rev);
  }
  if (streq(name, "sort")) {
    bool rev = opt_bool(arg(a, 0, "reverse"), false);
    bool cs = opt_bool(arg(a, 1, "case_sensitive"), false);
    tpl_value *attr = arg(a, 2, "attribute");
    tpl_list *items = tpl_iterate(ctx, v);
    sort_key *keys = tpl_alloc(&ctx->arena, (items->n ? items->n : 1) * sizeof(sort_key));
    for (size_t i = 0; i < items->n; i++) {
      keys[i].item = items->items[i];
      tpl_value k = items->items[i];
      if (attr) k = get_path(ctx, &k, attr);
      keys[i].key = lowered(ctx, k, cs);
    }
    return sorted(ctx, keys, items->n, rev);
  }
  if (streq(name, "reverse")) {
    if (v->kind == V_STR) {
      tpl_list *chars = tpl_iterate(ctx, v);
      tpl_buf b = {0};
      for (size_t i = chars->n; i-- > 0;)
        tpl_buf_append(ctx, &b, chars->items[i].u.s.p, chars->items[i].u.s.len);
      return buf_value(&b);
    }
    tpl_list *items = tpl_iterate(ctx, v);
    tpl_value out = tpl_new_list(ctx, items->n);
    for (size_t i = items->n; i-- > 0;)
      tpl_list_push(ctx, out.u.list, items->items[i]);
    /* reversed() of a list or dict is an iterator; of an iterator, a list */
    if (v->kind == V_LIST && !v->u.list->iterator) out.u.list->iterator = "list_reverseiterator";
    if (v->kind == V_DICT) out.u.list->iterator = "dict_reversekeyiterator";
    return out;
  }
  if (streq(name, "indent")) {
    tpl_value *wv = arg(a, 0, "width");
    bool first = opt_bool(arg(a, 1, "first"), false), blank = opt_bool(arg(a, 2, "blank"), false);
    char spaces[256];
    const char *ind = "    ";
    size_t il = 4;
    if (wv && wv->kind == V_STR) {
      ind = wv->u.s.p;
      il = wv->u.s.len;
    } else if (wv) {
      int64_t w = need_int(ctx, wv, "indent width");
      if (w < 0) w = 0;
      if (w > (int64_t)sizeof(spaces)) tpl_fail(ctx, QIAO_LIMIT, "indent width is too large");
      memset(spaces, ' ', (size_t)w);
      ind = spaces;
      il = (size_t)w;
    }
    if (v->kind != V_STR) /* jinja2 appends "\n" to the value itself */
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "indent: can only indent a string, not %s",
               tpl_type_name(v));
    tpl_value s = *v;
    tpl_buf b = {0};
    write_indented(ctx, &b, &s, ind, il, first, blank);
    return buf_value(&b);
  }
  if (streq(name, "wordcount")) {
    tpl_value s = tpl_to_str(ctx, v);
    tpl_charge(ctx, s.u.s.len / 16);
    int64_t n = 0;
    bool in_word = false;
    size_t i = 0;
    while (i < s.u.s.len) {
      size_t adv;
      uint32_t c = tpl_utf8_decode(s.u.s.p + i, s.u.s.len - i, &adv);
      i += adv;
      utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);
      bool w = c == '_' || (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
               (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO) ||
               (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME);
      if (w && !in_word) n++;
      in_word = w;
    }
    return tpl_int(n);
  }
  if (streq(name, "center")) {
    tpl_value s = tpl_to_str(ctx, v);
    tpl_value *wv = arg(a, 0, "width");
    return center(ctx, &s, wv ? need_int(ctx, wv, "center width") : 80);
  }
  if (streq(name, "max") || streq(name, "min")) return min_max(ctx, v, a, streq(name, "max"));
  if (streq(name, "sum")) {
    tpl_value *attr = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
    tpl_value acc = start ? *start : tpl_int(0);
    tpl_list *items = tpl_iterate(ctx, v);
    for (size_t i = 0; i < items->n; i++) {
      tpl_value x = items->items[i];
      if (attr) x = get_path(ctx, &x, attr);
      acc = tpl_binop(ctx, OP_ADD, &acc, &x);
    }
    return acc;
  }
  if (streq(name, "format")) {
    if (a->n_pos && a->n_kw)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT,
               "can't handle positional and keyword arguments at the same time");
    tpl_value s = tpl_to_str(ctx, v);
    return tpl_printf(ctx, &s, NULL, a);
  }
  if (streq(name, "attr")) {
    tpl_value *nv = arg(a, 0, "name");
    size_t nl;
    if (!nv) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "attr needs a name");
    const char *n = need_str(ctx, nv, "attribute name", &nl);
    if (v->kind == V_DICT) {
      /* attr() looks at attributes only, never at items */
      char *s = tpl_strdup(&ctx->arena, n, nl);
      if (in_set(s, dict_methods)) return tpl_getattr(ctx, v, s);
      return missing(ctx, v, "'%s object' has no attribute '%s'", s);
    }
    return tpl_getattr(ctx, v, tpl_strdup(&ctx->arena, n, nl));
  }
  tpl_fail(ctx, QIAO_UNSUPPORTED, "the '%s' filter is not supported", name);
}

tpl_value tpl_apply_filter(tpl_ctx *ctx, const char *name, tpl_value *operand, tpl_args *args) {
  static const char *const lazy[] = {"map",        "select", "reject", "selectattr",
                                     "rejectattr", "items",  "unique", NULL};
  if (in_set(name, lazy)) {
    tpl_kind k = operand->kind;
    bool ok = streq(name, "items")
                  ? (k == V_DICT || k == V_UNDEF)
                  : (k == V_LIST || k == V_DICT || k == V_STR || k == V_UNDEF || k == V_LOOP);
    if (!ok) {
      tpl_value g = tpl_new_list(ctx, 0);
      g.u.list->iterator = "generator";
      size_t len = 80;
      char *msg = tpl_alloc(&ctx->arena, len);
      snprintf(msg, len, "'%s' object is not iterable (in the %s filter)", tpl_type_name(operand),
               name);
      g.u.list->deferred_error = msg;
      return g;
    }
  }
  tpl_value r = do_filter(ctx, name, operand, args);
  /* these return generators in jinja2: truthy even when empty, no len() */
  if (r.kind == V_LIST && in_set(name, lazy)) r.u.list->iterator = "generator";
  return r;
}

/* ---- methods -------------------------------------------------------------------- */

static tpl_value str_method(tpl_ctx *ctx, tpl_value *s, const char *name, tpl_args *a) {
  tpl_charge(ctx, s->u.s.len / 64); /* every method may scan the string once */
  tpl_value *x = arg(a, 0, NULL), *y = arg(a, 1, NULL);
  if (streq(name, "startswith") || streq(name, "endswith")) {
    if (!x) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%s needs an argument", name);
    if (a->n_pos > 1) {
      /* start/end bounds: slice first */
      tpl_fail(ctx, QIAO_UNSUPPORTED, "%s with start/end arguments is not supported", name);
    }
    return tpl_bool(str_affix(ctx, s, x, name[0] == 'e'));
  }
  if (streq(name, "strip")) return str_strip(ctx, s, x, true, true);
  if (streq(name, "lstrip")) return str_strip(ctx, s, x, true, false);
  if (streq(name, "rstrip")) return str_strip(ctx, s, x, false, true);
  if (streq(name, "split") || streq(name, "rsplit"))
    return str_split(ctx, s, arg(a, 0, "sep"), arg(a, 1, "maxsplit"), name[0] == 'r');
  if (streq(name, "splitlines")) {
    bool keep = opt_bool(arg(a, 0, "keepends"), false);
    tpl_value out = tpl_new_list(ctx, 0);
    const char *p = s->u.s.p;
    size_t len = s->u.s.len, i = 0;
    while (i < len) {
      size_t e = i;
      while (e < len && p[e] != '\n' && p[e] != '\r')
        e++;
      size_t next = e < len ? e + 1 : e;
      if (e < len && p[e] == '\r' && e + 1 < len && p[e + 1] == '\n') next++;
      tpl_list_push(ctx, out.u.list, tpl_str(p + i, (keep ? next : e) - i));
      i = next;
    }
    return out;
  }
  if (streq(name, "upper")) return str_case(ctx, s, CASE_UPPER);
  if (streq(name, "lower") || streq(name, "casefold")) return str_case(ctx, s, CASE_LOWER);
  if (streq(name, "title")) return str_title(ctx, s, false);
  if (streq(name, "capitalize")) return str_capitalize(ctx, s);
  if (streq(name, "replace")) {
    if (!x || !y) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "replace needs old and new");
    return str_replace(ctx, s, x, y, arg(a, 2, "count"));
  }
  if (streq(name, "find") || streq(name, "rfind") || streq(name, "index") ||
      streq(name, "rindex")) {
    if (!x) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%s needs an argument", name);
    if (a->n_pos > 1) tpl_fail(ctx, QIAO_UNSUPPORTED, "%s with start/end is not supported", name);
    int64_t at = str_find(ctx, s, x, name[0] == 'r');
    if (at < 0 && strstr(name, "index"))
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "substring not found");
    return tpl_int(at);
  }
  if (streq(name, "count")) {
    if (!x) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "count needs an argument");
    return tpl_int(str_count(ctx, s, x));
  }
  if (streq(name, "join")) {
    if (!x) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "join needs an argument");
    tpl_list *items = tpl_iterate(ctx, x);
    tpl_buf b = {0};
    for (size_t i = 0; i < items->n; i++) {
      if (items->items[i].kind != V_STR)
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "sequence item %zu: expected str instance, %s found",
                 i, tpl_type_name(&items->items[i]));
      if (i) tpl_buf_append(ctx, &b, s->u.s.p, s->u.s.len);
      tpl_buf_append(ctx, &b, items->items[i].u.s.p, items->items[i].u.s.len);
    }
    return buf_value(&b);
  }
  if (streq(name, "isdigit") || streq(name, "isnumeric") || streq(name, "isdecimal"))
    return tpl_bool(str_all(s, 0));
  if (streq(name, "isalpha")) return tpl_bool(str_all(s, 1));
  if (streq(name, "isalnum")) return tpl_bool(str_all(s, 2));
  if (streq(name, "isspace")) return tpl_bool(str_all(s, 3));
  if (streq(name, "islower")) return tpl_bool(str_is_case(s, true));
  if (streq(name, "isupper")) return tpl_bool(str_is_case(s, false));
  if (streq(name, "center")) return center(ctx, s, x ? need_int(ctx, x, "center width") : 0);
  if (streq(name, "removeprefix") || streq(name, "removesuffix")) {
    if (!x) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%s needs an argument", name);
    size_t al;
    need_str(ctx, x, "affix", &al);
    bool suffix = streq(name, "removesuffix");
    if (!str_affix(ctx, s, x, suffix)) return *s;
    return tpl_str(s->u.s.p + (suffix ? 0 : al), s->u.s.len - al);
  }
  tpl_fail(ctx, QIAO_UNSUPPORTED, "the str method '%s' is not supported", name);
}

tpl_value tpl_call_method(tpl_ctx *ctx, tpl_value *self, const char *name, tpl_args *a) {
  tpl_charge(ctx, 1);
  tpl_value *x = arg(a, 0, NULL);
  if (self->kind == V_STR) return str_method(ctx, self, name, a);
  if (self->kind == V_DICT) {
    tpl_dict *d = self->u.dict;
    if (streq(name, "items") || streq(name, "keys") || streq(name, "values")) {
      tpl_value out = tpl_new_list(ctx, d->n);
      for (size_t i = 0; i < d->n; i++)
        tpl_list_push(ctx, out.u.list,
                      name[0] == 'i'   ? make_pair(ctx, d->keys[i], d->vals[i])
                      : name[0] == 'k' ? d->keys[i]
                                       : d->vals[i]);
      return out;
    }
    if (streq(name, "get")) {
      if (!x) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "get expected at least 1 argument");
      tpl_value *v = tpl_dict_get(d, *x);
      if (v) return *v;
      tpl_value *dflt = arg(a, 1, NULL);
      return dflt ? *dflt : tpl_none();
    }
    if (streq(name, "copy")) {
      tpl_value out = tpl_new_dict(ctx, d->n);
      for (size_t i = 0; i < d->n; i++)
        tpl_dict_set(ctx, out.u.dict, d->keys[i], d->vals[i]);
      return out;
    }
  }
  if (self->kind == V_LIST) {
    tpl_list *l = self->u.list;
    if (streq(name, "count") || streq(name, "index")) {
      if (!x) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "%s needs an argument", name);
      int64_t n = 0;
      for (size_t i = 0; i < l->n; i++) {
        tpl_charge(ctx, 1);
        if (tpl_equal(ctx, &l->items[i], x)) {
          if (name[0] == 'i') return tpl_int((int64_t)i);
          n++;
        }
      }
      if (name[0] == 'i') tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "value is not in list");
      return tpl_int(n);
    }
    if (streq(name, "copy")) {
      tpl_value out = tpl_new_list(ctx, l->n);
      for (size_t i = 0; i < l->n; i++)
        tpl_list_push(ctx, out.u.list, l->items[i]);
      return out;
    }
  }
  if (self->kind == V_LOOP && streq(name, "cycle")) {
    if (a->n_pos == 0) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "no items for cycling given");
    return a->pos[self->u.loop->index0 % a->n_pos];
  }
  tpl_fail(ctx, QIAO_UNSUPPORTED, "the %s method '%s' is not supported", tpl_type_name(self), name);
}

/* ---- globals -------------------------------------------------------------------- */

tpl_value tpl_call_func(tpl_ctx *ctx, int func, tpl_args *a) {
  tpl_charge(ctx, 1);
  switch (func) {
  case F_RANGE: {
    if (a->n_pos == 0 || a->n_pos > 3 || a->n_kw)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "range expects 1 to 3 integer arguments");
    int64_t start = 0, stop, step = 1;
    if (a->n_pos == 1) {
      stop = need_int(ctx, &a->pos[0], "range stop");
    } else {
      start = need_int(ctx, &a->pos[0], "range start");
      stop = need_int(ctx, &a->pos[1], "range stop");
      if (a->n_pos == 3) step = need_int(ctx, &a->pos[2], "range step");
    }
    if (step == 0) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "range() arg 3 must not be zero");
    /* count without overflow: work in doubles for the bound check */
    double span = step > 0 ? (double)stop - (double)start : (double)start - (double)stop;
    double count_d = span <= 0 ? 0 : ceil(span / fabs((double)step));
    if (count_d > MAX_RANGE)
      tpl_fail(ctx, QIAO_LIMIT,
               "range too big: the sandbox blocks ranges larger than MAX_RANGE (%d)", MAX_RANGE);
    size_t count = (size_t)count_d;
    tpl_value out = tpl_new_list(ctx, count);
    for (size_t i = 0; i < count; i++)
      tpl_list_push(ctx, out.u.list, tpl_int(start + (int64_t)i * step));
    tpl_charge(ctx, count / 16);
    return out;
  }
  case F_NAMESPACE:
  case F_DICT: {
    tpl_value out = tpl_new_dict(ctx, 0);
    if (a->n_pos > 1)
      tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "expected at most 1 positional argument");
    if (a->n_pos == 1) {
      tpl_value *src = &a->pos[0];
      if (src->kind == V_DICT || src->kind == V_NS) {
        for (size_t i = 0; i < src->u.dict->n; i++)
          tpl_dict_set(ctx, out.u.dict, src->u.dict->keys[i], src->u.dict->vals[i]);
      } else if (src->kind == V_LIST) {
        for (size_t i = 0; i < src->u.list->n; i++) {
          tpl_value *p = &src->u.list->items[i];
          if (p->kind != V_LIST || p->u.list->n != 2)
            tpl_fail(ctx, QIAO_INVALID_ARGUMENT,
                     "dictionary update sequence element has wrong length");
          tpl_dict_set(ctx, out.u.dict, p->u.list->items[0], p->u.list->items[1]);
        }
      } else {
        tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "cannot build a mapping from %s", tpl_type_name(src));
      }
    }
    for (size_t i = 0; i < a->n_kw; i++)
      tpl_dict_set(ctx, out.u.dict, tpl_cstr(a->kw_names[i]), a->kw[i]);
    if (func == F_NAMESPACE) out.kind = V_NS;
    return out;
  }
  case F_RAISE: {
    tpl_value msg = a->n_pos ? tpl_to_str(ctx, &a->pos[0]) : tpl_str("", 0);
    tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "raise_exception: %.*s",
             (int)(msg.u.s.len > 400 ? 400 : msg.u.s.len), msg.u.s.p);
  }
  case F_STRFTIME: {
    size_t fl;
    if (a->n_pos != 1) tpl_fail(ctx, QIAO_INVALID_ARGUMENT, "strftime_now takes one format");
    const char *f = need_str(ctx, &a->pos[0], "strftime_now format", &fl);
    if (fl > 200) tpl_fail(ctx, QIAO_LIMIT, "strftime_now format is too long");
    char fmt[256], out[1024];
    memcpy(fmt, f, fl);
    fmt[fl] = '\0';
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    size_t n = strftime(out, sizeof(out), fmt, &tm);
    return tpl_str_copy(ctx, out, n);
  }
  default: tpl_fail(ctx, QIAO_UNSUPPORTED, "joiner, cycler and lipsum are not supported");
  }
}
