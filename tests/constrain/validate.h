/* An independent JSON Schema validator for the tests (json-c values, PCRE2
 * for patterns), written from the specification, not from the compiler:
 * what the grammar lets through must pass here. Covers the keywords the
 * compiler supports. Header-only. */
#ifndef QIAO_TEST_VALIDATE_H
#define QIAO_TEST_VALIDATE_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <json-c/json.h>
#include <math.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool v_valid(json_object *root, json_object *s, json_object *v, char *why, size_t n);

static bool v_regex(const char *re, const char *text, size_t len) {
  int err;
  PCRE2_SIZE off;
  pcre2_code *code =
      pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
  if (code == NULL) return false;
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, NULL);
  int rc = pcre2_match(code, (PCRE2_SPTR)text, len, 0, 0, md, NULL);
  pcre2_match_data_free(md);
  pcre2_code_free(code);
  return rc >= 0;
}

static size_t v_codepoints(const char *s, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    n += ((unsigned char)s[i] & 0xC0) != 0x80;
  return n;
}

static bool v_is_type(json_object *v, const char *t) {
  json_type jt = json_object_get_type(v);
  if (!strcmp(t, "null")) return jt == json_type_null;
  if (!strcmp(t, "boolean")) return jt == json_type_boolean;
  if (!strcmp(t, "string")) return jt == json_type_string;
  if (!strcmp(t, "object")) return jt == json_type_object;
  if (!strcmp(t, "array")) return jt == json_type_array;
  if (!strcmp(t, "number")) return jt == json_type_int || jt == json_type_double;
  if (!strcmp(t, "integer"))
    return jt == json_type_int || (jt == json_type_double &&
                                   json_object_get_double(v) == floor(json_object_get_double(v)));
  return false;
}

static json_object *v_resolve(json_object *root, const char *ref) {
  if (strcmp(ref, "#") == 0) return root;
  json_object *at = root;
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", ref + 2);
  for (char *seg = strtok(buf, "/"); seg && at; seg = strtok(NULL, "/")) {
    json_object *next = NULL;
    json_object_object_get_ex(at, seg, &next);
    at = next;
  }
  return at;
}

/* JSON Schema equality: numbers by value (1 equals 1.0), the rest by
 * structure. */
static bool v_equal(json_object *a, json_object *b) {
  bool na = json_object_is_type(a, json_type_int) || json_object_is_type(a, json_type_double);
  bool nb = json_object_is_type(b, json_type_int) || json_object_is_type(b, json_type_double);
  if (na || nb) {
    if (!(na && nb)) return false;
    if (json_object_is_type(a, json_type_int) && json_object_is_type(b, json_type_int))
      return json_object_get_int64(a) == json_object_get_int64(b);
    return json_object_get_double(a) == json_object_get_double(b);
  }
  if (json_object_get_type(a) != json_object_get_type(b)) return false;
  if (json_object_is_type(a, json_type_array)) {
    if (json_object_array_length(a) != json_object_array_length(b)) return false;
    for (size_t i = 0; i < json_object_array_length(a); i++)
      if (!v_equal(json_object_array_get_idx(a, i), json_object_array_get_idx(b, i))) return false;
    return true;
  }
  if (json_object_is_type(a, json_type_object)) {
    if (json_object_object_length(a) != json_object_object_length(b)) return false;
    json_object_object_foreach(a, key, va) {
      json_object *vb = NULL;
      if (!json_object_object_get_ex(b, key, &vb) || !v_equal(va, vb)) return false;
    }
    return true;
  }
  return json_object_equal(a, b);
}

#define V_FAIL(...)                                                                                \
  do {                                                                                             \
    snprintf(why, n, __VA_ARGS__);                                                                 \
    return false;                                                                                  \
  } while (0)

static bool v_valid(json_object *root, json_object *s, json_object *v, char *why, size_t n) {
  json_object *k;
  if (json_object_is_type(s, json_type_boolean)) return json_object_get_boolean(s);
  if (json_object_object_get_ex(s, "$ref", &k))
    return v_valid(root, v_resolve(root, json_object_get_string(k)), v, why, n);
  if (json_object_object_get_ex(s, "anyOf", &k)) {
    for (size_t i = 0; i < json_object_array_length(k); i++)
      if (v_valid(root, json_object_array_get_idx(k, i), v, why, n)) return true;
    V_FAIL("no anyOf branch matches");
  }
  if (json_object_object_get_ex(s, "oneOf", &k)) {
    int m = 0;
    for (size_t i = 0; i < json_object_array_length(k); i++)
      m += v_valid(root, json_object_array_get_idx(k, i), v, why, n);
    if (m != 1) V_FAIL("%d oneOf branches match", m);
    return true;
  }
  if (json_object_object_get_ex(s, "const", &k) && !v_equal(k, v)) V_FAIL("const differs");
  if (json_object_object_get_ex(s, "enum", &k)) {
    bool found = false;
    for (size_t i = 0; i < json_object_array_length(k); i++)
      found = found || v_equal(json_object_array_get_idx(k, i), v);
    if (!found) V_FAIL("not in enum");
  }
  if (json_object_object_get_ex(s, "type", &k)) {
    bool ok = false;
    if (json_object_is_type(k, json_type_string))
      ok = v_is_type(v, json_object_get_string(k));
    else
      for (size_t i = 0; i < json_object_array_length(k); i++)
        ok = ok || v_is_type(v, json_object_get_string(json_object_array_get_idx(k, i)));
    if (!ok) V_FAIL("type %s expected", json_object_to_json_string(k));
  }
  json_type jt = json_object_get_type(v);
  if (jt == json_type_string) {
    const char *str = json_object_get_string(v);
    size_t len = (size_t)json_object_get_string_len(v), cps = v_codepoints(str, len);
    if (json_object_object_get_ex(s, "minLength", &k) && cps < (size_t)json_object_get_int(k))
      V_FAIL("shorter than minLength");
    if (json_object_object_get_ex(s, "maxLength", &k) && cps > (size_t)json_object_get_int(k))
      V_FAIL("longer than maxLength");
    if (json_object_object_get_ex(s, "pattern", &k) &&
        !v_regex(json_object_get_string(k), str, len))
      V_FAIL("pattern %s does not match", json_object_get_string(k));
    if (json_object_object_get_ex(s, "format", &k)) {
      const char *f = json_object_get_string(k);
      const char *re = !strcmp(f, "date") ? "^\\d{4}-(0[1-9]|1[012])-(0[1-9]|[12]\\d|3[01])$"
                       : !strcmp(f, "uuid")
                           ? "^[[:xdigit:]]{8}(-[[:xdigit:]]{4}){3}-[[:xdigit:]]{12}$"
                           : NULL;
      if (re != NULL && !v_regex(re, str, len)) V_FAIL("not a %s", f);
    }
  }
  if (jt == json_type_int || jt == json_type_double) {
    double x = json_object_get_double(v);
    if (json_object_object_get_ex(s, "minimum", &k) && x < json_object_get_double(k))
      V_FAIL("< minimum");
    if (json_object_object_get_ex(s, "maximum", &k) && x > json_object_get_double(k))
      V_FAIL("> maximum");
    if (json_object_object_get_ex(s, "exclusiveMinimum", &k) && x <= json_object_get_double(k))
      V_FAIL("<= exclusiveMinimum");
    if (json_object_object_get_ex(s, "exclusiveMaximum", &k) && x >= json_object_get_double(k))
      V_FAIL(">= exclusiveMaximum");
  }
  if (jt == json_type_array) {
    size_t len = json_object_array_length(v);
    if (json_object_object_get_ex(s, "minItems", &k) && len < (size_t)json_object_get_int(k))
      V_FAIL("minItems");
    if (json_object_object_get_ex(s, "maxItems", &k) && len > (size_t)json_object_get_int(k))
      V_FAIL("maxItems");
    if (json_object_object_get_ex(s, "items", &k))
      for (size_t i = 0; i < len; i++)
        if (!v_valid(root, k, json_object_array_get_idx(v, i), why, n)) return false;
  }
  if (jt == json_type_object) {
    json_object *props = NULL, *addl = NULL;
    json_object_object_get_ex(s, "properties", &props);
    bool has_addl = json_object_object_get_ex(s, "additionalProperties", &addl);
    if (json_object_object_get_ex(s, "required", &k))
      for (size_t i = 0; i < json_object_array_length(k); i++)
        if (!json_object_object_get_ex(v, json_object_get_string(json_object_array_get_idx(k, i)),
                                       NULL))
          V_FAIL("required %s missing", json_object_get_string(json_object_array_get_idx(k, i)));
    json_object_object_foreach(v, key, val) {
      json_object *ps = NULL;
      if (props && json_object_object_get_ex(props, key, &ps)) {
        if (!v_valid(root, ps, val, why, n)) return false;
      } else if (has_addl) {
        if (!v_valid(root, addl, val, why, n)) V_FAIL("additional property %s", key);
      }
    }
  }
  return true;
}

/* Parses `text` strictly (one JSON value, nothing after) and validates it. */
static bool v_check(const char *schema_text, const char *text, size_t len, char *why, size_t n) {
  json_object *schema = json_tokener_parse(schema_text);
  json_tokener *tok = json_tokener_new();
  json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
  json_object *v = json_tokener_parse_ex(tok, text, (int)len);
  /* (json-c gives null as NULL) */
  bool parsed =
      json_tokener_get_error(tok) == json_tokener_success && json_tokener_get_parse_end(tok) == len;
  if (v == NULL && json_tokener_get_error(tok) == json_tokener_continue &&
      json_tokener_get_parse_end(tok) == len) { /* a bare literal: ended by the end of the text */
    v = json_tokener_parse_ex(tok, "", 1);
    parsed = json_tokener_get_error(tok) == json_tokener_success;
  }
  json_tokener_free(tok);
  bool ok = parsed;
  if (!parsed)
    snprintf(why, n, "does not parse as JSON");
  else
    ok = v_valid(schema, schema, v, why, n);
  json_object_put(v);
  json_object_put(schema);
  return ok;
}

#endif
