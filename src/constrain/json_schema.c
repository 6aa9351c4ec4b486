/* JSON Schema to grammar. Each schema node becomes a rule matching the
 * JSON texts valid against it, laid out canonically (see grammar.h). Every
 * keyword is either handled, or an annotation, or refused by name: a
 * keyword we do not enforce is never silently dropped. */
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "constrain/grammar_internal.h"
#include "constrain/schema_shape.h"

#define MAX_GEN_DEPTH 256u /* schema nodes compiled inside one another (via $ref too) */
#define MAX_DIGITS 19u     /* an int64 */

typedef struct ref_entry {
  char *ref;
  uint32_t rule;
} ref_entry;

typedef struct sc {
  qiao__gbuilder *b;
  json_object *root;
  uint32_t depth;
  char path[512]; /* JSON pointer of the node being compiled, for messages */
  size_t path_len;
  /* Shared rules, made on first use (QIAO__G_NONE until then). */
  uint32_t ws, sep, colon, jchar, string, number, integer, value;
  ref_entry *refs;
  size_t n_refs, cap_refs;
} sc;

static uint32_t gen(sc *c, json_object *schema);

static bool sok(const sc *c) {
  return c->b->err == NULL;
}

static void sfail(sc *c, qiao_code code, const char *fmt, const char *arg) {
  char msg[256];
  snprintf(msg, sizeof(msg), fmt, arg);
  qiao__gb_fail(c->b,
                qiao__error(code, "json schema: %s at '%s'", msg, c->path_len ? c->path : "/"));
}

static size_t path_push(sc *c, const char *seg) {
  size_t old = c->path_len;
  int w = snprintf(c->path + old, sizeof(c->path) - old, "/%s", seg);
  if (w > 0)
    c->path_len = old + (size_t)w < sizeof(c->path) ? old + (size_t)w : sizeof(c->path) - 1;
  return old;
}

static void path_pop(sc *c, size_t old) {
  c->path_len = old;
  c->path[old] = '\0';
}

static uint32_t new_rule(sc *c) {
  return qiao__gb_rule(c->b, NULL, 0);
}

/* ---- Shared pieces ----------------------------------------------------------- */

/* Optional whitespace: nothing, one space, or one line break with an
 * indent. Bounded, so that a model cannot pad forever, yet enough for
 * pretty-printed JSON. */
static uint32_t ws(sc *c) {
  if (c->ws == QIAO__G_NONE) {
    qiao__cprange r[] = {{' ', ' '}, {'\t', '\t'}};
    uint32_t indent = qiao__gb_repeat(c->b, qiao__gb_class(c->b, r, 2, false), 0, 20);
    uint32_t w = new_rule(c);
    qiao__gb_alt(c->b, w); /* the empty alternative first */
    qiao__gb_lit(c->b, w, " ", 1);
    qiao__gb_alt(c->b, w);
    qiao__gb_lit(c->b, w, "\n", 1);
    qiao__gb_ref(c->b, w, indent);
    c->ws = w;
  }
  return c->ws;
}

static uint32_t sep(sc *c) { /* ws "," ws */
  if (c->sep == QIAO__G_NONE) {
    c->sep = new_rule(c);
    qiao__gb_ref(c->b, c->sep, ws(c));
    qiao__gb_lit(c->b, c->sep, ",", 1);
    qiao__gb_ref(c->b, c->sep, ws(c));
  }
  return c->sep;
}

static uint32_t colon(sc *c) { /* ws ":" ws */
  if (c->colon == QIAO__G_NONE) {
    c->colon = new_rule(c);
    qiao__gb_ref(c->b, c->colon, ws(c));
    qiao__gb_lit(c->b, c->colon, ":", 1);
    qiao__gb_ref(c->b, c->colon, ws(c));
  }
  return c->colon;
}

/* One character of a JSON string's content, escaped as JSON requires. */
static uint32_t jchar(sc *c) {
  if (c->jchar == QIAO__G_NONE) {
    qiao__cprange plain[] = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};
    uint32_t cls = qiao__gb_class(c->b, plain, 3, true);
    qiao__cprange hexr[] = {{'0', '9'}, {'a', 'f'}, {'A', 'F'}};
    uint32_t hex = qiao__gb_class(c->b, hexr, 3, false);
    qiao__cprange escr[] = {{'"', '"'}, {'\\', '\\'}, {'/', '/'}, {'b', 'b'},
                            {'f', 'f'}, {'n', 'n'},   {'r', 'r'}, {'t', 't'}};
    uint32_t esc = qiao__gb_class(c->b, escr, 8, false);
    uint32_t r = new_rule(c);
    qiao__gb_ref(c->b, r, cls);
    qiao__gb_alt(c->b, r);
    qiao__gb_lit(c->b, r, "\\", 1);
    qiao__gb_ref(c->b, r, esc);
    qiao__gb_alt(c->b, r);
    qiao__gb_lit(c->b, r, "\\u", 2);
    for (int i = 0; i < 4; i++)
      qiao__gb_ref(c->b, r, hex);
    c->jchar = r;
  }
  return c->jchar;
}

static uint32_t string_of(sc *c, uint32_t content) {
  uint32_t r = new_rule(c);
  qiao__gb_lit(c->b, r, "\"", 1);
  qiao__gb_ref(c->b, r, content);
  qiao__gb_lit(c->b, r, "\"", 1);
  return r;
}

static uint32_t any_string(sc *c) {
  if (c->string == QIAO__G_NONE)
    c->string = string_of(c, qiao__gb_repeat(c->b, jchar(c), 0, QIAO__G_INF));
  return c->string;
}

static uint32_t digits(sc *c, uint32_t min, uint32_t max) {
  qiao__cprange d[] = {{'0', '9'}};
  return qiao__gb_repeat(c->b, qiao__gb_class(c->b, d, 1, false), min, max);
}

static uint32_t nonzero_digit(sc *c) {
  qiao__cprange d[] = {{'1', '9'}};
  return qiao__gb_class(c->b, d, 1, false);
}

/* An integer of at most 16 digits; `sign`: allow a leading '-'. */
static uint32_t int_rule(sc *c, bool sign) {
  uint32_t r = new_rule(c);
  if (sign) {
    uint32_t minus = new_rule(c);
    qiao__gb_lit(c->b, minus, "-", 1);
    qiao__gb_alt(c->b, minus);
    qiao__gb_ref(c->b, r, minus);
  }
  uint32_t mag = new_rule(c);
  qiao__gb_lit(c->b, mag, "0", 1);
  qiao__gb_alt(c->b, mag);
  qiao__gb_ref(c->b, mag, nonzero_digit(c));
  qiao__gb_ref(c->b, mag, digits(c, 0, 15));
  qiao__gb_ref(c->b, r, mag);
  return r;
}

static uint32_t integer(sc *c) {
  if (c->integer == QIAO__G_NONE) c->integer = int_rule(c, true);
  return c->integer;
}

/* fraction? exponent? after an integer part */
static void number_tail(sc *c, uint32_t r) {
  uint32_t frac = new_rule(c);
  qiao__gb_lit(c->b, frac, ".", 1);
  qiao__gb_ref(c->b, frac, digits(c, 1, 16));
  qiao__gb_ref(c->b, r, qiao__gb_repeat(c->b, frac, 0, 1));
  uint32_t exp = new_rule(c);
  qiao__cprange e[] = {{'e', 'e'}, {'E', 'E'}};
  qiao__cprange s[] = {{'+', '+'}, {'-', '-'}};
  qiao__gb_ref(c->b, exp, qiao__gb_class(c->b, e, 2, false));
  qiao__gb_ref(c->b, exp, qiao__gb_repeat(c->b, qiao__gb_class(c->b, s, 2, false), 0, 1));
  qiao__gb_ref(c->b, exp, digits(c, 1, 2));
  qiao__gb_ref(c->b, r, qiao__gb_repeat(c->b, exp, 0, 1));
}

static uint32_t number(sc *c) {
  if (c->number == QIAO__G_NONE) {
    c->number = new_rule(c);
    qiao__gb_ref(c->b, c->number, integer(c));
    number_tail(c, c->number);
  }
  return c->number;
}

static uint32_t any_value(sc *c);

/* "{" ws ( key colon value ( sep key colon value )* )? ws "}" */
static uint32_t map_of(sc *c, uint32_t value) {
  uint32_t kv = new_rule(c);
  qiao__gb_ref(c->b, kv, any_string(c));
  qiao__gb_ref(c->b, kv, colon(c));
  qiao__gb_ref(c->b, kv, value);
  uint32_t more = new_rule(c);
  qiao__gb_ref(c->b, more, sep(c));
  qiao__gb_ref(c->b, more, kv);
  uint32_t body = new_rule(c);
  qiao__gb_ref(c->b, body, kv);
  qiao__gb_ref(c->b, body, qiao__gb_repeat(c->b, more, 0, QIAO__G_INF));
  uint32_t r = new_rule(c);
  qiao__gb_lit(c->b, r, "{", 1);
  qiao__gb_ref(c->b, r, ws(c));
  qiao__gb_ref(c->b, r, qiao__gb_repeat(c->b, body, 0, 1));
  qiao__gb_ref(c->b, r, ws(c));
  qiao__gb_lit(c->b, r, "}", 1);
  return r;
}

/* "[" ws ( item ( sep item ){min-1,max-1} )? ws "]" */
static uint32_t array_of(sc *c, uint32_t item, uint32_t min, uint32_t max) {
  uint32_t r = new_rule(c);
  qiao__gb_lit(c->b, r, "[", 1);
  qiao__gb_ref(c->b, r, ws(c));
  if (max != 0) {
    uint32_t more = new_rule(c);
    qiao__gb_ref(c->b, more, sep(c));
    qiao__gb_ref(c->b, more, item);
    uint32_t body = new_rule(c);
    qiao__gb_ref(c->b, body, item);
    qiao__gb_ref(c->b, body,
                 qiao__gb_repeat(c->b, more, min > 0 ? min - 1 : 0,
                                 max == QIAO__G_INF ? QIAO__G_INF : max - 1));
    qiao__gb_ref(c->b, r, min > 0 ? body : qiao__gb_repeat(c->b, body, 0, 1));
  }
  qiao__gb_ref(c->b, r, ws(c));
  qiao__gb_lit(c->b, r, "]", 1);
  return r;
}

static uint32_t any_value(sc *c) {
  if (c->value == QIAO__G_NONE) {
    uint32_t v = c->value = new_rule(c); /* recursive: set before the parts refer to it */
    uint32_t obj = map_of(c, v), arr = array_of(c, v, 0, QIAO__G_INF);
    qiao__gb_ref(c->b, v, obj);
    qiao__gb_alt(c->b, v);
    qiao__gb_ref(c->b, v, arr);
    qiao__gb_alt(c->b, v);
    qiao__gb_ref(c->b, v, any_string(c));
    qiao__gb_alt(c->b, v);
    qiao__gb_ref(c->b, v, number(c));
    const char *lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
      qiao__gb_alt(c->b, v);
      qiao__gb_lit(c->b, v, lits[i], strlen(lits[i]));
    }
  }
  return c->value;
}

/* The JSON text of a value, as one literal alternative of `r`. */
static void literal_value(sc *c, uint32_t r, json_object *v) {
  const char *s =
      json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
  if (s == NULL) {
    qiao__gb_fail(c->b, qiao__error(QIAO_OUT_OF_MEMORY, "json schema: out of memory"));
    return;
  }
  qiao__gb_lit(c->b, r, s, strlen(s));
}

/* ---- Keywords ------------------------------------------------------------------ */

static const char *const ANNOTATIONS[] = {
    "title",      "description", "$schema",   "$id",    "$comment", "default",     "examples",
    "deprecated", "readOnly",    "writeOnly", "strict", "$defs",    "definitions", NULL};
static const char *const KNOWN[] = {"type",
                                    "properties",
                                    "required",
                                    "additionalProperties",
                                    "enum",
                                    "const",
                                    "items",
                                    "minItems",
                                    "maxItems",
                                    "minLength",
                                    "maxLength",
                                    "pattern",
                                    "format",
                                    "minimum",
                                    "maximum",
                                    "exclusiveMinimum",
                                    "exclusiveMaximum",
                                    "anyOf",
                                    "oneOf",
                                    "allOf",
                                    "$ref",
                                    "uniqueItems",
                                    NULL};

static bool in_list(const char *const *list, const char *k) {
  for (size_t i = 0; list[i] != NULL; i++)
    if (strcmp(list[i], k) == 0) return true;
  return false;
}

/* Fails unless every keyword of `schema` other than annotations is in
 * `allowed` (a NULL-terminated list). */
static void only(sc *c, json_object *schema, const char *const *allowed, const char *why) {
  json_object_object_foreach(schema, k, v) {
    (void)v;
    if (!in_list(ANNOTATIONS, k) && !in_list(allowed, k)) {
      char msg[160];
      snprintf(msg, sizeof(msg), "keyword '%%s' is not supported %s", why);
      sfail(c, QIAO_UNSUPPORTED, msg, k);
      return;
    }
  }
}

static bool get_count(sc *c, json_object *schema, const char *key, uint32_t *out) {
  json_object *v;
  if (!json_object_object_get_ex(schema, key, &v)) return false;
  if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0) {
    sfail(c, QIAO_MALFORMED, "'%s' must be a non-negative integer", key);
    return false;
  }
  int64_t n = json_object_get_int64(v);
  if (n > (int64_t)QIAO_GRAMMAR_MAX_REPEAT) {
    sfail(c, QIAO_LIMIT, "'%s' is above the limit of 1000", key);
    return false;
  }
  *out = (uint32_t)n;
  return true;
}

/* ---- Integers in a range ------------------------------------------------------- */

/* Digit strings lo, hi of the same length n: rule matching the decimal
 * strings of that length between them (inclusive). */
static uint32_t same_len_range(sc *c, const char *lo, const char *hi, size_t n) {
  if (n > 0 && strspn(lo, "0") >= n && strspn(hi, "9") >= n)
    return digits(c, (uint32_t)n, (uint32_t)n);
  uint32_t r = new_rule(c);
  if (n == 0 || !sok(c)) return r;
  if (lo[0] == hi[0]) {
    qiao__gb_lit(c->b, r, lo, 1);
    qiao__gb_ref(c->b, r, same_len_range(c, lo + 1, hi + 1, n - 1));
    return r;
  }
  char nines[MAX_DIGITS + 1], zeros[MAX_DIGITS + 1];
  memset(nines, '9', n);
  memset(zeros, '0', n);
  qiao__cprange one[1];
  /* lo[0] then anything >= lo[1..] */
  qiao__gb_lit(c->b, r, lo, 1);
  qiao__gb_ref(c->b, r, same_len_range(c, lo + 1, nines, n - 1));
  if (lo[0] + 1 <= hi[0] - 1) {
    qiao__gb_alt(c->b, r);
    one[0] = (qiao__cprange){(uint32_t)lo[0] + 1, (uint32_t)hi[0] - 1};
    qiao__gb_ref(c->b, r, qiao__gb_class(c->b, one, 1, false));
    qiao__gb_ref(c->b, r, digits(c, (uint32_t)n - 1, (uint32_t)n - 1));
  }
  qiao__gb_alt(c->b, r);
  qiao__gb_lit(c->b, r, hi, 1);
  qiao__gb_ref(c->b, r, same_len_range(c, zeros, hi + 1, n - 1));
  return r;
}

/* Non-negative integers in [lo, hi] (hi < 0: unbounded), as alternatives of r. */
static void magnitude_range(sc *c, uint32_t r, uint64_t lo, int64_t hi, bool *first) {
  char a[24], z[24];
  int la = snprintf(a, sizeof(a), "%llu", (unsigned long long)lo);
  int lz = hi < 0 ? (int)MAX_DIGITS : snprintf(z, sizeof(z), "%lld", (long long)hi);
  for (int len = la; len <= lz && sok(c); len++) {
    char from[24], to[24];
    if (len == la) {
      memcpy(from, a, (size_t)la + 1);
    } else {
      memset(from, '0', (size_t)len);
      from[0] = '1';
      from[len] = '\0';
    }
    if (hi >= 0 && len == lz) {
      memcpy(to, z, (size_t)lz + 1);
    } else {
      memset(to, '9', (size_t)len);
      to[len] = '\0';
      if (len == (int)MAX_DIGITS) memcpy(to, "9223372036854775807", 20);
    }
    if (strcmp(from, to) > 0 && len == (int)MAX_DIGITS) continue;
    if (!*first) qiao__gb_alt(c->b, r);
    *first = false;
    qiao__gb_ref(c->b, r, same_len_range(c, from, to, (size_t)len));
  }
}

static bool bound(sc *c, json_object *schema, const char *key, double *out) {
  json_object *v;
  if (!json_object_object_get_ex(schema, key, &v)) return false;
  if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
    sfail(c, QIAO_MALFORMED, "'%s' must be a number", key);
    return false;
  }
  *out = json_object_get_double(v);
  return true;
}

static uint32_t integer_in(sc *c, json_object *schema) {
  double x;
  const double LIM = 9.2e18;
  bool has_lo = false, has_hi = false;
  int64_t lo = 0, hi = 0;
  if (bound(c, schema, "minimum", &x)) has_lo = true, lo = x < -LIM ? INT64_MIN : (int64_t)ceil(x);
  if (bound(c, schema, "exclusiveMinimum", &x)) {
    int64_t v = x < -LIM ? INT64_MIN : (int64_t)floor(x) + 1;
    if (!has_lo || v > lo) lo = v;
    has_lo = true;
  }
  if (bound(c, schema, "maximum", &x)) has_hi = true, hi = x > LIM ? INT64_MAX : (int64_t)floor(x);
  if (bound(c, schema, "exclusiveMaximum", &x)) {
    int64_t v = x > LIM ? INT64_MAX : (int64_t)ceil(x) - 1;
    if (!has_hi || v < hi) hi = v;
    has_hi = true;
  }
  if (!sok(c)) return QIAO__G_NONE;
  if (!has_lo && !has_hi) return integer(c);
  if ((has_lo && fabs((double)lo) > LIM) || (has_hi && fabs((double)hi) > LIM)) {
    sfail(c, QIAO_UNSUPPORTED, "integer bounds beyond +-9.2e18%s", "");
    return QIAO__G_NONE;
  }
  if (has_lo && has_hi && lo > hi) {
    sfail(c, QIAO_MALFORMED, "no integer lies within the bounds%s", "");
    return QIAO__G_NONE;
  }
  uint32_t r = new_rule(c);
  bool first = true;
  /* negative part: "-" then magnitudes [max(1, -hi), -lo] */
  if (!has_lo || lo < 0) {
    uint64_t mlo = has_hi && hi < 0 ? (uint64_t)(-hi) : 1;
    int64_t mhi = has_lo ? -lo : -1;
    uint32_t neg = new_rule(c);
    bool nf = true;
    magnitude_range(c, neg, mlo, mhi, &nf);
    first = false;
    qiao__gb_lit(c->b, r, "-", 1);
    qiao__gb_ref(c->b, r, neg);
  }
  if (!has_hi || hi >= 0) {
    uint64_t plo = has_lo && lo > 0 ? (uint64_t)lo : 0;
    uint32_t pos = new_rule(c);
    bool pf = true;
    magnitude_range(c, pos, plo, has_hi ? hi : -1, &pf);
    if (!first) qiao__gb_alt(c->b, r);
    qiao__gb_ref(c->b, r, pos);
  }
  return r;
}

/* Non-negative decimals I[.F] (no exponent) with value in the range from
 * lo to hi (hi < 0: unbounded), each end inclusive or not; integer ends.
 * The integer part I takes [lo, hi - 1] with any fraction; the ends are
 * added apart: lo itself with a non-zero fraction when lo is excluded, hi
 * itself with a zero fraction when hi is included. */
static uint32_t decimal_range(sc *c, int64_t lo, bool lo_x, int64_t hi, bool hi_x) {
  uint32_t r = new_rule(c);
  bool first = true;
  uint32_t any_frac = new_rule(c), zero_frac = new_rule(c), nz_frac = new_rule(c);
  qiao__gb_lit(c->b, any_frac, ".", 1);
  qiao__gb_ref(c->b, any_frac, digits(c, 1, 16));
  qiao__gb_lit(c->b, zero_frac, ".", 1);
  qiao__gb_ref(
      c->b, zero_frac,
      qiao__gb_repeat(c->b, qiao__gb_class(c->b, &(qiao__cprange){'0', '0'}, 1, false), 1, 16));
  qiao__gb_lit(c->b, nz_frac, ".", 1);
  qiao__gb_ref(c->b, nz_frac, digits(c, 0, 15));
  qiao__gb_ref(c->b, nz_frac, nonzero_digit(c));
  qiao__gb_ref(c->b, nz_frac, digits(c, 0, 15));
  int64_t start = lo_x ? lo + 1 : lo;
  if (hi < 0 || start <= hi - 1) { /* the interior */
    uint32_t ints = new_rule(c);
    bool f = true;
    magnitude_range(c, ints, (uint64_t)start, hi < 0 ? -1 : hi - 1, &f);
    first = false;
    qiao__gb_ref(c->b, r, ints);
    qiao__gb_ref(c->b, r, qiao__gb_repeat(c->b, any_frac, 0, 1));
  }
  char num[24];
  if (lo_x && (hi < 0 || lo < hi)) { /* just above lo */
    if (!first) qiao__gb_alt(c->b, r);
    first = false;
    snprintf(num, sizeof(num), "%lld", (long long)lo);
    qiao__gb_lit(c->b, r, num, strlen(num));
    qiao__gb_ref(c->b, r, nz_frac);
  }
  if (hi >= 0 && !hi_x && (hi > lo || (hi == lo && !lo_x))) { /* hi itself */
    if (!first) qiao__gb_alt(c->b, r);
    first = false;
    snprintf(num, sizeof(num), "%lld", (long long)hi);
    qiao__gb_lit(c->b, r, num, strlen(num));
    qiao__gb_ref(c->b, r, qiao__gb_repeat(c->b, zero_frac, 0, 1));
  }
  if (first) sfail(c, QIAO_MALFORMED, "no number lies within the bounds%s", "");
  return r;
}

/* Numbers: unbounded (any JSON number), or with integer bounds (written
 * without an exponent, so that the bounds are checked digit by digit). */
static uint32_t number_in(sc *c, json_object *schema) {
  static const char *const keys[] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
  double v[4];
  bool has[4];
  for (int i = 0; i < 4; i++) {
    has[i] = bound(c, schema, keys[i], &v[i]);
    if (has[i] && (v[i] != floor(v[i]) || fabs(v[i]) > 1e15)) {
      sfail(c, QIAO_UNSUPPORTED, "'%s' on a number other than an integer below 1e15", keys[i]);
      return QIAO__G_NONE;
    }
  }
  if (!sok(c)) return QIAO__G_NONE;
  if (!has[0] && !has[1] && !has[2] && !has[3]) return number(c);
  /* The tighter of each pair. */
  bool has_lo = has[0] || has[1], has_hi = has[2] || has[3];
  int64_t lo = 0, hi = 0;
  bool lo_x = false, hi_x = false;
  if (has[0]) lo = (int64_t)v[0];
  if (has[1] && (!has[0] || v[1] >= v[0])) lo = (int64_t)v[1], lo_x = true;
  if (has[2]) hi = (int64_t)v[2];
  if (has[3] && (!has[2] || v[3] <= v[2])) hi = (int64_t)v[3], hi_x = true;
  if (has_lo && has_hi && (lo > hi || (lo == hi && (lo_x || hi_x)))) {
    sfail(c, QIAO_MALFORMED, "no number lies within the bounds%s", "");
    return QIAO__G_NONE;
  }
  uint32_t r = new_rule(c);
  bool first = true;
  /* Values >= 0: [max(lo, 0), hi]. */
  if (!has_hi || hi > 0 || (hi == 0 && !hi_x)) {
    bool from_lo = has_lo && lo >= 0;
    qiao__gb_ref(c->b, r,
                 decimal_range(c, from_lo ? lo : 0, from_lo && lo_x, has_hi ? hi : -1, hi_x));
    first = false;
  }
  /* Values < 0: "-" then the magnitude in (max(-hi, 0), -lo]. */
  if (!has_lo || lo < 0) {
    bool below = has_hi && hi < 0;
    if (!first) qiao__gb_alt(c->b, r);
    qiao__gb_lit(c->b, r, "-", 1);
    qiao__gb_ref(c->b, r,
                 decimal_range(c, below ? -hi : 0, below ? hi_x : true, has_lo ? -lo : -1, lo_x));
  }
  return r;
}

/* ---- Strings ---------------------------------------------------------------------- */

static uint32_t format_rule(sc *c, const char *fmt) {
  /* Written as GBNF-like pieces through the regex front end (anchored). */
  const char *re = NULL;
  if (strcmp(fmt, "date") == 0)
    re = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";
  else if (strcmp(fmt, "time") == 0)
    re = "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5]["
         "0-9])$";
  else if (strcmp(fmt, "date-time") == 0)
    re = "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-"
         "9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";
  else if (strcmp(fmt, "uuid") == 0)
    re = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
  if (re == NULL) {
    sfail(c, QIAO_UNSUPPORTED, "format '%s' is not supported (date, time, date-time, uuid are)",
          fmt);
    return QIAO__G_NONE;
  }
  return string_of(c, qiao__regex_compile(c->b, re, strlen(re), jchar(c)));
}

static uint32_t string_in(sc *c, json_object *schema) {
  json_object *v;
  uint32_t min = 0, max = QIAO__G_INF;
  bool has_min = get_count(c, schema, "minLength", &min);
  bool has_max = get_count(c, schema, "maxLength", &max);
  bool has_pattern = json_object_object_get_ex(schema, "pattern", &v);
  json_object *fmt = NULL;
  bool has_format = json_object_object_get_ex(schema, "format", &fmt);
  if (!sok(c)) return QIAO__G_NONE;
  if ((has_pattern || has_format) && (has_min || has_max)) {
    sfail(c, QIAO_UNSUPPORTED, "'%s' together with pattern or format",
          has_min ? "minLength" : "maxLength");
    return QIAO__G_NONE;
  }
  if (has_pattern && has_format) {
    sfail(c, QIAO_UNSUPPORTED, "'%s' together with format", "pattern");
    return QIAO__G_NONE;
  }
  if (has_format) {
    if (!json_object_is_type(fmt, json_type_string)) {
      sfail(c, QIAO_MALFORMED, "'%s' must be a string", "format");
      return QIAO__G_NONE;
    }
    return format_rule(c, json_object_get_string(fmt));
  }
  if (has_pattern) {
    if (!json_object_is_type(v, json_type_string)) {
      sfail(c, QIAO_MALFORMED, "'%s' must be a string", "pattern");
      return QIAO__G_NONE;
    }
    return string_of(c, qiao__regex_compile(c->b, json_object_get_string(v),
                                            (size_t)json_object_get_string_len(v), jchar(c)));
  }
  if (!has_min && !has_max) return any_string(c);
  if (max != QIAO__G_INF && max < min) {
    sfail(c, QIAO_MALFORMED, "'%s' below minLength", "maxLength");
    return QIAO__G_NONE;
  }
  return string_of(c, qiao__gb_repeat(c->b, jchar(c), min, max));
}

/* ---- Objects and arrays -------------------------------------------------------- */

typedef struct prop {
  const char *name;
  json_object *schema; /* NULL: any value */
  bool required;
} prop;

/* key colon value for one property */
static uint32_t member(sc *c, const prop *p) {
  uint32_t r = new_rule(c);
  json_object *key = json_object_new_string(p->name);
  if (key == NULL) {
    qiao__gb_fail(c->b, qiao__error(QIAO_OUT_OF_MEMORY, "json schema: out of memory"));
    return QIAO__G_NONE;
  }
  literal_value(c, r, key);
  json_object_put(key);
  qiao__gb_ref(c->b, r, colon(c));
  size_t old = path_push(c, "properties");
  size_t old2 = path_push(c, p->name);
  uint32_t v = p->schema ? gen(c, p->schema) : any_value(c);
  path_pop(c, old2);
  path_pop(c, old);
  qiao__gb_ref(c->b, r, v);
  return r;
}

static uint32_t object_in(sc *c, json_object *schema) {
  json_object *props = NULL, *req = NULL, *addl = NULL;
  json_object_object_get_ex(schema, "properties", &props);
  json_object_object_get_ex(schema, "required", &req);
  bool has_addl = json_object_object_get_ex(schema, "additionalProperties", &addl);
  if (props != NULL && !json_object_is_type(props, json_type_object)) {
    sfail(c, QIAO_MALFORMED, "'%s' must be an object", "properties");
    return QIAO__G_NONE;
  }
  if (req != NULL && !json_object_is_type(req, json_type_array)) {
    sfail(c, QIAO_MALFORMED, "'%s' must be an array", "required");
    return QIAO__G_NONE;
  }
  bool addl_false =
      has_addl && json_object_is_type(addl, json_type_boolean) && !json_object_get_boolean(addl);
  size_t n_props = props ? (size_t)json_object_object_length(props) : 0;
  size_t n_req = req ? json_object_array_length(req) : 0;
  if (n_props == 0 && n_req == 0) {
    if (addl_false) {
      uint32_t r = new_rule(c);
      qiao__gb_lit(c->b, r, "{", 1);
      qiao__gb_ref(c->b, r, ws(c));
      qiao__gb_lit(c->b, r, "}", 1);
      return r;
    }
    if (!has_addl || json_object_is_type(addl, json_type_boolean)) return map_of(c, any_value(c));
    size_t old = path_push(c, "additionalProperties");
    uint32_t v = gen(c, addl);
    path_pop(c, old);
    return map_of(c, v);
  }
  if (has_addl && !addl_false) {
    sfail(c, QIAO_UNSUPPORTED, "'%s' other than false beside properties or required",
          "additionalProperties");
    return QIAO__G_NONE;
  }
  if (n_props + n_req > QIAO_GRAMMAR_MAX_ENUM) {
    sfail(c, QIAO_LIMIT, "more than 4096 '%s'", "properties");
    return QIAO__G_NONE;
  }
  /* Required ones first (in the order of properties, then of required for
   * names without a schema), then the optional ones in their order. */
  prop *ps = calloc(n_props + n_req + 1, sizeof(*ps));
  if (ps == NULL) {
    qiao__gb_fail(c->b, qiao__error(QIAO_OUT_OF_MEMORY, "json schema: out of memory"));
    return QIAO__G_NONE;
  }
  size_t n = 0;
  for (size_t i = 0; i < n_req; i++) {
    json_object *k = json_object_array_get_idx(req, i);
    if (!json_object_is_type(k, json_type_string)) {
      sfail(c, QIAO_MALFORMED, "'%s' must hold strings", "required");
      free(ps);
      return QIAO__G_NONE;
    }
  }
  for (int pass = 0; pass < 2; pass++) {
    if (props != NULL) {
      json_object_object_foreach(props, k, v) {
        bool is_req = false;
        for (size_t i = 0; i < n_req; i++)
          if (strcmp(json_object_get_string(json_object_array_get_idx(req, i)), k) == 0)
            is_req = true;
        if (is_req == (pass == 0)) ps[n++] = (prop){k, v, is_req};
      }
    }
    if (pass == 0)
      for (size_t i = 0; i < n_req; i++) {
        const char *k = json_object_get_string(json_object_array_get_idx(req, i));
        bool dup = false;
        for (size_t j = 0; j < n; j++)
          dup = dup || strcmp(ps[j].name, k) == 0;
        if (!dup && (props == NULL || !json_object_object_get_ex(props, k, NULL)))
          ps[n++] = (prop){k, NULL, true};
      }
  }
  uint32_t *kv = calloc(n + 1, sizeof(uint32_t));
  if (kv == NULL) {
    free(ps);
    qiao__gb_fail(c->b, qiao__error(QIAO_OUT_OF_MEMORY, "json schema: out of memory"));
    return QIAO__G_NONE;
  }
  for (size_t i = 0; i < n && sok(c); i++)
    kv[i] = member(c, &ps[i]);
  /* tail_j: any subset of the optional members j.. in order, each with a
   * leading separator; head_j: the same without the first separator. */
  uint32_t tail = new_rule(c), head = new_rule(c); /* j = n: empty */
  for (size_t j = n; j-- > 0 && sok(c);) {
    if (ps[j].required) break;
    uint32_t t = new_rule(c), h = new_rule(c);
    qiao__gb_ref(c->b, t, sep(c));
    qiao__gb_ref(c->b, t, kv[j]);
    qiao__gb_ref(c->b, t, tail);
    qiao__gb_alt(c->b, t);
    qiao__gb_ref(c->b, t, tail);
    qiao__gb_ref(c->b, h, kv[j]);
    qiao__gb_ref(c->b, h, tail);
    qiao__gb_alt(c->b, h);
    qiao__gb_ref(c->b, h, head);
    tail = t;
    head = h;
  }
  uint32_t r = new_rule(c);
  qiao__gb_lit(c->b, r, "{", 1);
  qiao__gb_ref(c->b, r, ws(c));
  size_t n_required = 0;
  for (size_t i = 0; i < n; i++)
    if (ps[i].required) {
      if (n_required++ > 0) qiao__gb_ref(c->b, r, sep(c));
      qiao__gb_ref(c->b, r, kv[i]);
    }
  qiao__gb_ref(c->b, r, n_required > 0 ? tail : head);
  qiao__gb_ref(c->b, r, ws(c));
  qiao__gb_lit(c->b, r, "}", 1);
  free(kv);
  free(ps);
  return r;
}

static uint32_t array_in(sc *c, json_object *schema) {
  json_object *items = NULL, *uniq = NULL;
  uint32_t min = 0, max = QIAO__G_INF;
  get_count(c, schema, "minItems", &min);
  get_count(c, schema, "maxItems", &max);
  if (json_object_object_get_ex(schema, "uniqueItems", &uniq) &&
      !(json_object_is_type(uniq, json_type_boolean) && !json_object_get_boolean(uniq))) {
    sfail(c, QIAO_UNSUPPORTED, "'%s' (cannot be enforced by a grammar)", "uniqueItems");
    return QIAO__G_NONE;
  }
  if (!sok(c)) return QIAO__G_NONE;
  if (max != QIAO__G_INF && max < min) {
    sfail(c, QIAO_MALFORMED, "'%s' below minItems", "maxItems");
    return QIAO__G_NONE;
  }
  uint32_t item;
  if (!json_object_object_get_ex(schema, "items", &items)) {
    item = any_value(c);
  } else if (json_object_is_type(items, json_type_boolean) && !json_object_get_boolean(items)) {
    if (min > 0) {
      sfail(c, QIAO_MALFORMED, "'%s' > 0 with items false", "minItems");
      return QIAO__G_NONE;
    }
    return array_of(c, QIAO__G_NONE, 0, 0);
  } else {
    size_t old = path_push(c, "items");
    item = gen(c, items);
    path_pop(c, old);
  }
  return array_of(c, item, min, max);
}

/* ---- Dispatch ----------------------------------------------------------------- */

static bool type_matches(json_object *v, const char *type) {
  switch (json_object_get_type(v)) {
  case json_type_null: return strcmp(type, "null") == 0;
  case json_type_boolean: return strcmp(type, "boolean") == 0;
  case json_type_int: return strcmp(type, "integer") == 0 || strcmp(type, "number") == 0;
  case json_type_double:
    return strcmp(type, "number") == 0 ||
           (strcmp(type, "integer") == 0 &&
            json_object_get_double(v) == floor(json_object_get_double(v)));
  case json_type_string: return strcmp(type, "string") == 0;
  case json_type_array: return strcmp(type, "array") == 0;
  case json_type_object: return strcmp(type, "object") == 0;
  }
  return false;
}

static const char *const STRING_KW[] = {"type",    "minLength", "maxLength",
                                        "pattern", "format",    NULL};
static const char *const NUM_KW[] = {
    "type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", NULL};
static const char *const OBJ_KW[] = {"type", "properties", "required", "additionalProperties",
                                     NULL};
static const char *const ARR_KW[] = {"type", "items", "minItems", "maxItems", "uniqueItems", NULL};
static const char *const NONE_KW[] = {"type", NULL};

/* The keywords that constrain instances of a type. */
static const char *const *keywords_of(const char *type) {
  if (strcmp(type, "string") == 0) return STRING_KW;
  if (strcmp(type, "integer") == 0 || strcmp(type, "number") == 0) return NUM_KW;
  if (strcmp(type, "object") == 0) return OBJ_KW;
  if (strcmp(type, "array") == 0) return ARR_KW;
  return NONE_KW;
}

/* One type of the schema. With `one_of_several` (a type array), keywords
 * of the other listed types were checked by the caller and are skipped
 * here: a keyword only constrains instances of its own type. */
static uint32_t typed(sc *c, json_object *schema, const char *type, bool one_of_several) {
  if (strcmp(type, "string") == 0) {
    if (!one_of_several) only(c, schema, STRING_KW, "on a string");
    return sok(c) ? string_in(c, schema) : QIAO__G_NONE;
  }
  if (strcmp(type, "integer") == 0) {
    if (!one_of_several) only(c, schema, NUM_KW, "on an integer");
    return sok(c) ? integer_in(c, schema) : QIAO__G_NONE;
  }
  if (strcmp(type, "number") == 0) {
    if (!one_of_several) only(c, schema, NUM_KW, "on a number");
    return sok(c) ? number_in(c, schema) : QIAO__G_NONE;
  }
  if (strcmp(type, "object") == 0) {
    if (!one_of_several) only(c, schema, OBJ_KW, "on an object");
    return sok(c) ? object_in(c, schema) : QIAO__G_NONE;
  }
  if (strcmp(type, "array") == 0) {
    if (!one_of_several) only(c, schema, ARR_KW, "on an array");
    return sok(c) ? array_in(c, schema) : QIAO__G_NONE;
  }
  const char *lit = strcmp(type, "boolean") == 0 ? NULL : strcmp(type, "null") == 0 ? "null" : "";
  if (lit != NULL && lit[0] == '\0') {
    sfail(c, QIAO_MALFORMED, "unknown type '%s'", type);
    return QIAO__G_NONE;
  }
  if (!one_of_several) only(c, schema, NONE_KW, lit ? "on null" : "on a boolean");
  uint32_t r = new_rule(c);
  if (lit != NULL) {
    qiao__gb_lit(c->b, r, "null", 4);
  } else {
    qiao__gb_lit(c->b, r, "true", 4);
    qiao__gb_alt(c->b, r);
    qiao__gb_lit(c->b, r, "false", 5);
  }
  return r;
}

/* The schema a "$ref" points to: a JSON pointer inside the document. */
static json_object *resolve(sc *c, const char *ref) {
  if (ref[0] != '#') {
    sfail(c, QIAO_UNSUPPORTED, "$ref '%s' (only references inside the schema, '#...')", ref);
    return NULL;
  }
  if (ref[1] != '\0' && ref[1] != '/') {
    sfail(c, QIAO_UNSUPPORTED, "$ref '%s' (only JSON pointers)", ref);
    return NULL;
  }
  json_object *at = qiao__schema_pointer(c->root, ref);
  if (at == NULL) sfail(c, QIAO_MALFORMED, "$ref '%s' points to nothing", ref);
  return at;
}

static uint32_t gen_ref(sc *c, const char *ref) {
  for (size_t i = 0; i < c->n_refs; i++)
    if (strcmp(c->refs[i].ref, ref) == 0) return c->refs[i].rule;
  json_object *target = resolve(c, ref);
  if (target == NULL) return QIAO__G_NONE;
  if (c->n_refs == c->cap_refs) {
    size_t cap = c->cap_refs ? c->cap_refs * 2 : 8;
    ref_entry *g = realloc(c->refs, cap * sizeof(*g));
    if (g == NULL) {
      qiao__gb_fail(c->b, qiao__error(QIAO_OUT_OF_MEMORY, "json schema: out of memory"));
      return QIAO__G_NONE;
    }
    c->refs = g;
    c->cap_refs = cap;
  }
  char *copy = strdup(ref);
  if (copy == NULL) {
    qiao__gb_fail(c->b, qiao__error(QIAO_OUT_OF_MEMORY, "json schema: out of memory"));
    return QIAO__G_NONE;
  }
  /* The rule exists before its body is compiled: recursion refers to it. */
  uint32_t r = qiao__gb_rule(c->b, ref, strlen(ref));
  c->refs[c->n_refs++] = (ref_entry){copy, r};
  char saved[sizeof(c->path)];
  size_t saved_len = c->path_len;
  memcpy(saved, c->path, sizeof(saved));
  snprintf(c->path, sizeof(c->path), "%s", ref + 1);
  c->path_len = strlen(c->path);
  qiao__gb_ref(c->b, r, gen(c, target));
  memcpy(c->path, saved, sizeof(saved));
  c->path_len = saved_len;
  return r;
}

static uint32_t gen_alternatives(sc *c, json_object *list, const char *key) {
  if (!json_object_is_type(list, json_type_array) || json_object_array_length(list) == 0) {
    sfail(c, QIAO_MALFORMED, "'%s' must be a non-empty array", key);
    return QIAO__G_NONE;
  }
  size_t n = json_object_array_length(list);
  if (n > QIAO_GRAMMAR_MAX_ENUM) {
    sfail(c, QIAO_LIMIT, "'%s' has more than 4096 schemas", key);
    return QIAO__G_NONE;
  }
  uint32_t r = new_rule(c);
  for (size_t i = 0; i < n && sok(c); i++) {
    char seg[64];
    snprintf(seg, sizeof(seg), "%s/%zu", key, i);
    size_t old = path_push(c, seg);
    uint32_t a = gen(c, json_object_array_get_idx(list, i));
    path_pop(c, old);
    if (i > 0) qiao__gb_alt(c->b, r);
    qiao__gb_ref(c->b, r, a);
  }
  return r;
}

/* oneOf is compiled as anyOf, which is exact only when no instance can be
 * valid against two branches: refused unless that is proven. */
static void check_one_of(sc *c, json_object *list) {
  if (!json_object_is_type(list, json_type_array) || json_object_array_length(list) == 0)
    return; /* gen_alternatives names the error */
  size_t n = json_object_array_length(list), i, j;
  const char *at = c->path_len ? c->path : "/";
  if (n > QIAO__ONE_OF_MAX_BRANCHES) {
    qiao__gb_fail(c->b, qiao__error(QIAO_LIMIT,
                                    "json schema: oneOf at %s: %zu branches; exclusivity is "
                                    "checked for at most %u",
                                    at, n, QIAO__ONE_OF_MAX_BRANCHES));
    return;
  }
  if (qiao__one_of_disjoint(c->root, list, &i, &j)) return;
  qiao__gb_fail(c->b, qiao__error(QIAO_UNSUPPORTED,
                                  "json schema: oneOf at %s: branches %zu and %zu can both match; "
                                  "exclusivity is not supported (use anyOf, or make the branches "
                                  "disjoint: different types, distinct const or enum values, or "
                                  "a required property with distinct const values)",
                                  at, i, j));
}

static uint32_t gen_enum(sc *c, json_object *schema, json_object *list, json_object *type) {
  if (!json_object_is_type(list, json_type_array) || json_object_array_length(list) == 0) {
    sfail(c, QIAO_MALFORMED, "'%s' must be a non-empty array", "enum");
    return QIAO__G_NONE;
  }
  size_t n = json_object_array_length(list);
  if (n > QIAO_GRAMMAR_MAX_ENUM) {
    sfail(c, QIAO_LIMIT, "'%s' has more than 4096 values", "enum");
    return QIAO__G_NONE;
  }
  uint32_t r = new_rule(c);
  size_t kept = 0;
  for (size_t i = 0; i < n && sok(c); i++) {
    json_object *v = json_object_array_get_idx(list, i);
    bool fits = type == NULL;
    if (type != NULL && json_object_is_type(type, json_type_string))
      fits = type_matches(v, json_object_get_string(type));
    else if (type != NULL && json_object_is_type(type, json_type_array))
      for (size_t k = 0; k < json_object_array_length(type); k++)
        fits = fits || type_matches(v, json_object_get_string(json_object_array_get_idx(type, k)));
    if (!fits) continue; /* a value of another type could never validate */
    if (kept++ > 0) qiao__gb_alt(c->b, r);
    literal_value(c, r, v);
  }
  if (kept == 0 && sok(c)) sfail(c, QIAO_MALFORMED, "no '%s' value has the schema's type", "enum");
  (void)schema;
  return r;
}

static uint32_t gen(sc *c, json_object *schema) {
  if (!sok(c)) return QIAO__G_NONE;
  if (c->depth >= MAX_GEN_DEPTH) {
    sfail(c, QIAO_LIMIT, "schema nested more than %s deep (via $ref too)", "256");
    return QIAO__G_NONE;
  }
  if (json_object_is_type(schema, json_type_boolean)) {
    if (json_object_get_boolean(schema)) return any_value(c);
    sfail(c, QIAO_UNSUPPORTED, "the schema '%s' (nothing is valid)", "false");
    return QIAO__G_NONE;
  }
  if (!json_object_is_type(schema, json_type_object)) {
    sfail(c, QIAO_MALFORMED, "a schema must be an object or a boolean%s", "");
    return QIAO__G_NONE;
  }
  json_object_object_foreach(schema, key, val) {
    (void)val;
    if (!in_list(ANNOTATIONS, key) && !in_list(KNOWN, key)) {
      sfail(c, QIAO_UNSUPPORTED, "keyword '%s' is not supported", key);
      return QIAO__G_NONE;
    }
  }
  c->depth++;
  uint32_t r = QIAO__G_NONE;
  json_object *v = NULL, *type = NULL;
  json_object_object_get_ex(schema, "type", &type);
  static const char *const REF_KW[] = {"$ref", NULL};
  static const char *const ANY_KW[] = {"anyOf", NULL};
  static const char *const ONE_KW[] = {"oneOf", NULL};
  static const char *const ALL_KW[] = {"allOf", NULL};
  static const char *const ENUM_KW[] = {"enum", "type", NULL};
  static const char *const CONST_KW[] = {"const", "type", NULL};
  if (json_object_object_get_ex(schema, "$ref", &v)) {
    only(c, schema, REF_KW, "beside $ref");
    if (sok(c) && !json_object_is_type(v, json_type_string))
      sfail(c, QIAO_MALFORMED, "'%s' must be a string", "$ref");
    if (sok(c)) r = gen_ref(c, json_object_get_string(v));
  } else if (json_object_object_get_ex(schema, "anyOf", &v)) {
    only(c, schema, ANY_KW, "beside anyOf");
    if (sok(c)) r = gen_alternatives(c, v, "anyOf");
  } else if (json_object_object_get_ex(schema, "oneOf", &v)) {
    only(c, schema, ONE_KW, "beside oneOf");
    if (sok(c)) check_one_of(c, v);
    if (sok(c)) r = gen_alternatives(c, v, "oneOf");
  } else if (json_object_object_get_ex(schema, "allOf", &v)) {
    only(c, schema, ALL_KW, "beside allOf");
    if (sok(c) && (!json_object_is_type(v, json_type_array) || json_object_array_length(v) != 1))
      sfail(c, QIAO_UNSUPPORTED, "'%s' with other than exactly one schema", "allOf");
    if (sok(c)) r = gen_alternatives(c, v, "allOf");
  } else if (json_object_object_get_ex(schema, "const", &v)) {
    only(c, schema, CONST_KW, "beside const");
    if (sok(c)) {
      r = new_rule(c);
      literal_value(c, r, v);
    }
  } else if (json_object_object_get_ex(schema, "enum", &v)) {
    only(c, schema, ENUM_KW, "beside enum");
    if (sok(c)) r = gen_enum(c, schema, v, type);
  } else if (type != NULL && json_object_is_type(type, json_type_string)) {
    r = typed(c, schema, json_object_get_string(type), false);
  } else if (type != NULL && json_object_is_type(type, json_type_array)) {
    size_t n = json_object_array_length(type);
    if (n == 0 || n > 7) sfail(c, QIAO_MALFORMED, "'%s' must list 1 to 7 types", "type");
    /* Every keyword must constrain at least one of the listed types. */
    json_object_object_foreach(schema, k, kv) {
      (void)kv;
      bool used = in_list(ANNOTATIONS, k);
      for (size_t i = 0; i < n && !used; i++) {
        json_object *t = json_object_array_get_idx(type, i);
        used = json_object_is_type(t, json_type_string) &&
               in_list(keywords_of(json_object_get_string(t)), k);
      }
      if (!used && sok(c))
        sfail(c, QIAO_UNSUPPORTED, "keyword '%s' applies to none of the types", k);
    }
    r = new_rule(c);
    for (size_t i = 0; i < n && sok(c); i++) {
      json_object *t = json_object_array_get_idx(type, i);
      if (!json_object_is_type(t, json_type_string)) {
        sfail(c, QIAO_MALFORMED, "'%s' must list strings", "type");
        break;
      }
      uint32_t a = typed(c, schema, json_object_get_string(t), true);
      if (i > 0) qiao__gb_alt(c->b, r);
      qiao__gb_ref(c->b, r, a);
    }
  } else if (type != NULL) {
    sfail(c, QIAO_MALFORMED, "'%s' must be a string or an array", "type");
  } else {
    /* No type: infer it from the keywords present, else any value. */
    const char *inferred = NULL;
    json_object_object_foreach(schema, k, kv) {
      (void)kv;
      if (!strcmp(k, "properties") || !strcmp(k, "required") || !strcmp(k, "additionalProperties"))
        inferred = "object";
      else if (!strcmp(k, "items") || !strcmp(k, "minItems") || !strcmp(k, "maxItems") ||
               !strcmp(k, "uniqueItems"))
        inferred = "array";
      else if (!strcmp(k, "minLength") || !strcmp(k, "maxLength") || !strcmp(k, "pattern") ||
               !strcmp(k, "format"))
        inferred = "string";
      else if (!strcmp(k, "minimum") || !strcmp(k, "maximum") || !strcmp(k, "exclusiveMinimum") ||
               !strcmp(k, "exclusiveMaximum"))
        inferred = "number";
    }
    r = inferred ? typed(c, schema, inferred, false) : any_value(c);
  }
  c->depth--;
  return r;
}

uint32_t qiao__schema_build(qiao__gbuilder *b, const char *text, size_t len) {
  if (b->err != NULL) return QIAO__G_NONE;
  if (len > QIAO_GRAMMAR_MAX_TEXT || len > INT32_MAX) {
    qiao__gb_fail(b, qiao__error(QIAO_LIMIT, "json schema: %zu bytes is more than %u", len,
                                 QIAO_GRAMMAR_MAX_TEXT));
    return QIAO__G_NONE;
  }
  json_tokener *tok = json_tokener_new_ex((int)QIAO_GRAMMAR_MAX_NESTING);
  if (tok == NULL) {
    qiao__gb_fail(b, qiao__error(QIAO_OUT_OF_MEMORY, "json schema: out of memory"));
    return QIAO__G_NONE;
  }
  json_object *root = json_tokener_parse_ex(tok, text, (int)len);
  enum json_tokener_error jerr = json_tokener_get_error(tok);
  size_t used = json_tokener_get_parse_end(tok);
  json_tokener_free(tok);
  if (root == NULL || jerr != json_tokener_success) {
    json_object_put(root);
    if (jerr == json_tokener_error_depth)
      qiao__gb_fail(b, qiao__error(QIAO_LIMIT, "json schema: nested deeper than %u",
                                   QIAO_GRAMMAR_MAX_NESTING));
    else
      qiao__gb_fail(
          b, qiao__error(QIAO_MALFORMED, "json schema: not valid JSON (%s)",
                         jerr == json_tokener_success ? "empty" : json_tokener_error_desc(jerr)));
    return QIAO__G_NONE;
  }
  for (; used < len; used++)
    if (text[used] != ' ' && text[used] != '\n' && text[used] != '\t' && text[used] != '\r') {
      json_object_put(root);
      qiao__gb_fail(
          b, qiao__error(QIAO_MALFORMED, "json schema: text after the schema at byte %zu", used));
      return QIAO__G_NONE;
    }
  sc c;
  memset(&c, 0, sizeof(c));
  c.b = b;
  c.root = root;
  c.ws = c.sep = c.colon = c.jchar = c.string = c.number = c.integer = c.value = QIAO__G_NONE;
  uint32_t top = gen(&c, root);
  for (size_t i = 0; i < c.n_refs; i++)
    free(c.refs[i].ref);
  free(c.refs);
  json_object_put(root);
  return top;
}

qiao_status *qiao_grammar_compile_json_schema(const char *text, size_t len, qiao_grammar **out) {
  if (text == NULL || out == NULL)
    return qiao__error(QIAO_INVALID_ARGUMENT, "json schema: NULL text or output");
  qiao__gbuilder b;
  qiao__gb_init(&b);
  uint32_t top = qiao__schema_build(&b, text, len);
  return qiao__gb_finish(&b, top, out);
}
