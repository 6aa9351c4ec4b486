/* Disjointness of oneOf branches (see schema_shape.h). Each branch is
 * summarised as a shape: the JSON types its instances may have and, when
 * it allows only listed values (const, enum), those values. Two shapes are
 * disjoint when their types do not meet, when their listed values differ,
 * or, for objects, when a property required by both has disjoint schemas
 * or a property one requires is forbidden by the other
 * (additionalProperties false). */
#include "constrain/schema_shape.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum {
  T_NULL = 1,
  T_BOOL = 2,
  T_INT = 4,  /* numbers with an integral value */
  T_FRAC = 8, /* the other numbers */
  T_STR = 16,
  T_ARR = 32,
  T_OBJ = 64,
  T_ANY = 127
};

#define MAX_SHAPE_DEPTH 16   /* $refs and properties followed inside one proof */
#define WORK_BUDGET 2000000u /* value comparisons and shapes for one oneOf */

typedef struct shape {
  unsigned types;
  json_object *values; /* an array of the only values allowed (owned), or NULL */
  json_object *object; /* the schema's object keywords, when T_OBJ is possible */
} shape;

typedef struct ctx {
  json_object *root;
  uint64_t work;
} ctx;

json_object *qiao__schema_pointer(json_object *root, const char *ref) {
  if (ref == NULL || ref[0] != '#') return NULL;
  json_object *at = root;
  const char *p = ref + 1;
  while (*p != '\0' && at != NULL) {
    if (*p != '/') return NULL;
    p++;
    char seg[256];
    size_t n = 0;
    for (; *p != '\0' && *p != '/'; p++) {
      char ch = *p;
      if (ch == '~' && (p[1] == '0' || p[1] == '1')) ch = *++p == '0' ? '~' : '/';
      if (n + 1 >= sizeof(seg)) return NULL;
      seg[n++] = ch;
    }
    seg[n] = '\0';
    json_object *next = NULL;
    if (json_object_is_type(at, json_type_object)) {
      json_object_object_get_ex(at, seg, &next);
    } else if (json_object_is_type(at, json_type_array)) {
      char *end;
      unsigned long idx = strtoul(seg, &end, 10);
      if (n > 0 && *end == '\0' && idx < json_object_array_length(at))
        next = json_object_array_get_idx(at, idx);
    }
    at = next;
  }
  return at;
}

static unsigned type_of(json_object *v) {
  switch (json_object_get_type(v)) {
  case json_type_null: return T_NULL;
  case json_type_boolean: return T_BOOL;
  case json_type_int: return T_INT;
  case json_type_double: {
    double d = json_object_get_double(v);
    return isfinite(d) && d == floor(d) ? T_INT : T_FRAC;
  }
  case json_type_string: return T_STR;
  case json_type_array: return T_ARR;
  case json_type_object: return T_OBJ;
  }
  return T_ANY;
}

static unsigned type_named(const char *t) {
  if (t == NULL) return T_ANY;
  if (strcmp(t, "null") == 0) return T_NULL;
  if (strcmp(t, "boolean") == 0) return T_BOOL;
  if (strcmp(t, "integer") == 0) return T_INT;
  if (strcmp(t, "number") == 0) return T_INT | T_FRAC;
  if (strcmp(t, "string") == 0) return T_STR;
  if (strcmp(t, "array") == 0) return T_ARR;
  if (strcmp(t, "object") == 0) return T_OBJ;
  return T_ANY;
}

/* Equality as JSON Schema sees it: 1 and 1.0 are the same number. */
static bool same_value(ctx *c, json_object *a, json_object *b) {
  c->work++;
  unsigned ta = type_of(a), tb = type_of(b);
  bool na = ta & (T_INT | T_FRAC), nb = tb & (T_INT | T_FRAC);
  if (na || nb) {
    if (!(na && nb)) return false;
    if (json_object_is_type(a, json_type_int) && json_object_is_type(b, json_type_int))
      return json_object_get_int64(a) == json_object_get_int64(b);
    return json_object_get_double(a) == json_object_get_double(b);
  }
  if (ta != tb) return false;
  if (ta == T_ARR) {
    size_t n = json_object_array_length(a);
    if (n != json_object_array_length(b)) return false;
    for (size_t i = 0; i < n; i++)
      if (!same_value(c, json_object_array_get_idx(a, i), json_object_array_get_idx(b, i)))
        return false;
    return true;
  }
  if (ta == T_OBJ) {
    if (json_object_object_length(a) != json_object_object_length(b)) return false;
    json_object_object_foreach(a, k, va) {
      json_object *vb = NULL;
      if (!json_object_object_get_ex(b, k, &vb) || !same_value(c, va, vb)) return false;
    }
    return true;
  }
  return json_object_equal(a, b) != 0; /* null, booleans, strings */
}

static void shape_free(shape *s) {
  json_object_put(s->values);
  s->values = NULL;
}

static void shape_of(ctx *c, json_object *schema, unsigned depth, shape *out);

/* anyOf / oneOf inside a branch: the union of the alternatives. */
static void union_of(ctx *c, json_object *list, unsigned depth, shape *out) {
  out->types = 0;
  out->values = json_object_new_array();
  out->object = NULL;
  size_t n = json_object_array_length(list);
  for (size_t i = 0; i < n; i++) {
    shape s;
    shape_of(c, json_object_array_get_idx(list, i), depth + 1, &s);
    out->types |= s.types;
    if (s.values == NULL || out->values == NULL) {
      json_object_put(out->values);
      out->values = NULL;
    } else {
      for (size_t k = 0; k < json_object_array_length(s.values); k++)
        json_object_array_add(out->values, json_object_get(json_object_array_get_idx(s.values, k)));
    }
    if (n == 1) out->object = s.object;
    shape_free(&s);
  }
}

static void shape_of(ctx *c, json_object *schema, unsigned depth, shape *out) {
  out->types = T_ANY;
  out->values = NULL;
  out->object = NULL;
  c->work++;
  if (depth > MAX_SHAPE_DEPTH || c->work > WORK_BUDGET) return;
  if (json_object_is_type(schema, json_type_boolean)) {
    if (!json_object_get_boolean(schema)) out->types = 0;
    return;
  }
  if (!json_object_is_type(schema, json_type_object)) return;
  json_object *v = NULL, *type = NULL;
  json_object_object_get_ex(schema, "type", &type);
  if (json_object_object_get_ex(schema, "$ref", &v)) {
    json_object *target = qiao__schema_pointer(c->root, json_object_get_string(v));
    if (target != NULL) shape_of(c, target, depth + 1, out);
    return;
  }
  if ((json_object_object_get_ex(schema, "anyOf", &v) ||
       json_object_object_get_ex(schema, "oneOf", &v) ||
       json_object_object_get_ex(schema, "allOf", &v)) &&
      json_object_is_type(v, json_type_array) && json_object_array_length(v) > 0) {
    union_of(c, v, depth, out); /* allOf holds exactly one schema (json_schema.c) */
    return;
  }
  unsigned allowed = T_ANY;
  if (type != NULL && json_object_is_type(type, json_type_string)) {
    allowed = type_named(json_object_get_string(type));
  } else if (type != NULL && json_object_is_type(type, json_type_array)) {
    allowed = 0;
    for (size_t i = 0; i < json_object_array_length(type); i++)
      allowed |= type_named(json_object_get_string(json_object_array_get_idx(type, i)));
  }
  json_object *list = NULL;
  bool is_const = json_object_object_get_ex(schema, "const", &v);
  if (!is_const && json_object_object_get_ex(schema, "enum", &list) &&
      !json_object_is_type(list, json_type_array))
    list = NULL;
  if (is_const || list != NULL) { /* only the listed values of the allowed types */
    out->values = json_object_new_array();
    out->types = 0;
    size_t n = is_const ? 1 : json_object_array_length(list);
    for (size_t i = 0; i < n && out->values != NULL; i++) {
      json_object *e = is_const ? v : json_object_array_get_idx(list, i);
      if (!(type_of(e) & allowed)) continue;
      out->types |= type_of(e);
      json_object_array_add(out->values, json_object_get(e));
    }
    if (out->values == NULL) out->types = T_ANY;
    return;
  }
  if (type == NULL) { /* inferred from the keywords, as json_schema.c does */
    json_object_object_foreach(schema, k, kv) {
      (void)kv;
      if (!strcmp(k, "properties") || !strcmp(k, "required") || !strcmp(k, "additionalProperties"))
        allowed = T_OBJ;
      else if (!strcmp(k, "items") || !strcmp(k, "minItems") || !strcmp(k, "maxItems"))
        allowed = T_ARR;
      else if (!strcmp(k, "minLength") || !strcmp(k, "maxLength") || !strcmp(k, "pattern") ||
               !strcmp(k, "format"))
        allowed = T_STR;
      else if (!strcmp(k, "minimum") || !strcmp(k, "maximum") || !strcmp(k, "exclusiveMinimum") ||
               !strcmp(k, "exclusiveMaximum"))
        allowed = T_INT | T_FRAC;
    }
  }
  out->types = allowed;
  if (allowed & T_OBJ) out->object = schema;
}

static bool shapes_disjoint(ctx *c, const shape *a, const shape *b, unsigned depth);

static bool is_required(json_object *object, const char *name) {
  json_object *req = NULL;
  if (!json_object_object_get_ex(object, "required", &req) ||
      !json_object_is_type(req, json_type_array))
    return false;
  for (size_t i = 0; i < json_object_array_length(req); i++) {
    const char *r = json_object_get_string(json_object_array_get_idx(req, i));
    if (r != NULL && strcmp(r, name) == 0) return true;
  }
  return false;
}

static json_object *property(json_object *object, const char *name) {
  json_object *props = NULL, *p = NULL;
  if (json_object_object_get_ex(object, "properties", &props) &&
      json_object_is_type(props, json_type_object) && json_object_object_get_ex(props, name, &p))
    return p;
  return NULL;
}

/* The object schema forbids a property of this name. */
static bool forbids(json_object *object, const char *name) {
  json_object *addl = NULL;
  return property(object, name) == NULL &&
         json_object_object_get_ex(object, "additionalProperties", &addl) &&
         json_object_is_type(addl, json_type_boolean) && !json_object_get_boolean(addl);
}

/* Objects valid against `a` have a property that no object valid against
 * `b` can have (or can have with that value). */
static bool required_excludes(ctx *c, json_object *a, json_object *b, unsigned depth) {
  json_object *req = NULL;
  if (!json_object_object_get_ex(a, "required", &req) || !json_object_is_type(req, json_type_array))
    return false;
  for (size_t i = 0; i < json_object_array_length(req) && c->work <= WORK_BUDGET; i++) {
    const char *name = json_object_get_string(json_object_array_get_idx(req, i));
    if (name == NULL) continue;
    if (forbids(b, name)) return true;
    if (!is_required(b, name)) continue;
    json_object *pa = property(a, name), *pb = property(b, name);
    if (pa == NULL || pb == NULL) continue;
    shape sa, sb;
    shape_of(c, pa, depth + 1, &sa);
    shape_of(c, pb, depth + 1, &sb);
    bool d = shapes_disjoint(c, &sa, &sb, depth + 1);
    shape_free(&sa);
    shape_free(&sb);
    if (d) return true;
  }
  return false;
}

/* The value `v` is certainly not valid against the shape `b`. */
static bool value_excluded(ctx *c, json_object *v, const shape *b, unsigned depth) {
  c->work++;
  if (!(type_of(v) & b->types)) return true;
  if (b->values != NULL) {
    for (size_t k = 0; k < json_object_array_length(b->values); k++)
      if (same_value(c, v, json_object_array_get_idx(b->values, k))) return false;
    return true;
  }
  if (type_of(v) != T_OBJ || b->object == NULL || depth > MAX_SHAPE_DEPTH || c->work > WORK_BUDGET)
    return false;
  json_object *req = NULL;
  if (json_object_object_get_ex(b->object, "required", &req) &&
      json_object_is_type(req, json_type_array))
    for (size_t i = 0; i < json_object_array_length(req); i++) {
      const char *name = json_object_get_string(json_object_array_get_idx(req, i));
      if (name != NULL && !json_object_object_get_ex(v, name, NULL)) return true;
    }
  json_object_object_foreach(v, k, pv) {
    if (forbids(b->object, k)) return true;
    json_object *ps = property(b->object, k);
    if (ps == NULL) continue;
    shape sp;
    shape_of(c, ps, depth + 1, &sp);
    bool out = value_excluded(c, pv, &sp, depth + 1);
    shape_free(&sp);
    if (out) return true;
  }
  return false;
}

/* Every listed value of `a` is excluded by `b`. */
static bool values_excluded(ctx *c, const shape *a, const shape *b, unsigned depth) {
  for (size_t i = 0; i < json_object_array_length(a->values); i++)
    if (!value_excluded(c, json_object_array_get_idx(a->values, i), b, depth)) return false;
  return true;
}

static bool shapes_disjoint(ctx *c, const shape *a, const shape *b, unsigned depth) {
  if (c->work > WORK_BUDGET) return false;
  unsigned common = a->types & b->types;
  if (common == 0) return true;
  if (a->values != NULL) return values_excluded(c, a, b, depth);
  if (b->values != NULL) return values_excluded(c, b, a, depth);
  if (common == T_OBJ && a->object != NULL && b->object != NULL && depth <= MAX_SHAPE_DEPTH)
    return required_excludes(c, a->object, b->object, depth) ||
           required_excludes(c, b->object, a->object, depth);
  return false;
}

bool qiao__one_of_disjoint(json_object *root, json_object *branches, size_t *bi, size_t *bj) {
  size_t n = json_object_array_length(branches);
  ctx c = {root, 0};
  shape *s = calloc(n ? n : 1, sizeof(*s));
  bool ok = s != NULL && n <= QIAO__ONE_OF_MAX_BRANCHES;
  *bi = 0;
  *bj = n > 1 ? 1 : 0;
  for (size_t i = 0; i < n && ok; i++)
    shape_of(&c, json_object_array_get_idx(branches, i), 0, &s[i]);
  for (size_t i = 0; i < n && ok; i++)
    for (size_t j = i + 1; j < n && ok; j++)
      if (!shapes_disjoint(&c, &s[i], &s[j], 0)) {
        *bi = i;
        *bj = j;
        ok = false;
      }
  for (size_t i = 0; s != NULL && i < n; i++)
    shape_free(&s[i]);
  free(s);
  return ok;
}
